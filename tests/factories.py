from decimal import Decimal

import factory

from stations.models import Connector, Evse, Location, Operator, Tariff

ENERGY_TARIFF = {
    "id": "T-ENERGY",
    "currency": "EUR",
    "elements": [
        {"price_components": [{"type": "ENERGY", "price": "0.50", "vat": 21.0, "step_size": 1}]}
    ],
}


class OperatorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Operator

    name = factory.Sequence(lambda n: f"Operator {n}")
    legal_name = factory.LazyAttribute(lambda o: f"{o.name} B.V.")
    address = "Stationsplein 1\n1012 AB Amsterdam"
    vat_id = "NL000099998B57"
    receipt_prefix = factory.Sequence(lambda n: f"OP{n}")
    hold_amounts = (2000, 3500, 5000)
    default_hold = 3500


class LocationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Location

    operator = factory.SubFactory(OperatorFactory)
    name = factory.Sequence(lambda n: f"Garage {n}")
    address = "Stationsplein 1"
    postal_code = "1012 AB"
    city = "Amsterdam"
    country = "NL"


class TariffFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tariff

    operator = factory.SubFactory(OperatorFactory)
    name = "Energy"
    ocpi = ENERGY_TARIFF


class EvseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Evse

    location = factory.SubFactory(LocationFactory)
    evse_id = factory.Sequence(lambda n: f"NL*TST*E{n:04d}*1")
    uid = factory.LazyAttribute(lambda e: e.evse_id.replace("*", "-"))


class ConnectorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Connector

    evse = factory.SubFactory(EvseFactory)
    connector_id = "1"
    standard = Connector.Standard.TYPE2
    power_type = Connector.PowerType.AC_3_PHASE
    max_power_kw = Decimal(22)
    tariff = factory.SubFactory(
        TariffFactory, operator=factory.SelfAttribute("..evse.location.operator")
    )
