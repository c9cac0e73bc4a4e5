"""Demo data for the embedded default: one operator, two locations, an AC and a DC charger, and a
DC charger with two connectors (CCS and CHAdeMO) at different prices."""

from decimal import Decimal

from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.utils.crypto import salted_hmac

from .models import ChargingStation, Connector, Evse, Location, OcppEvse, Operator, Tariff

AC_TARIFF = {
    "id": "DEMO-AC",
    "currency": "EUR",
    "type": "AD_HOC_PAYMENT",
    "elements": [
        {"price_components": [{"type": "ENERGY", "price": "0.4500", "vat": 21.0, "step_size": 1}]}
    ],
}

# DC: a start fee, a price per kWh, and a per-minute idle fee once the car has been connected
# longer than a one-hour grace period.
DC_TARIFF = {
    "id": "DEMO-DC",
    "currency": "EUR",
    "type": "AD_HOC_PAYMENT",
    "elements": [
        {
            "price_components": [
                {"type": "ENERGY", "price": "0.5900", "vat": 21.0, "step_size": 1},
                {"type": "FLAT", "price": "1.0000", "vat": 21.0, "step_size": 1},
            ]
        },
        {
            "price_components": [{"type": "TIME", "price": "6.0000", "vat": 21.0, "step_size": 60}],
            "restrictions": {"min_duration": 3600},
        },
    ],
}

# CHAdeMO on the dual DC charger: slower, so cheaper per kWh; the same start fee.
CHADEMO_TARIFF = {
    "id": "DEMO-CHADEMO",
    "currency": "EUR",
    "type": "AD_HOC_PAYMENT",
    "elements": [
        {
            "price_components": [
                {"type": "ENERGY", "price": "0.4900", "vat": 21.0, "step_size": 1},
                {"type": "FLAT", "price": "1.0000", "vat": 21.0, "step_size": 1},
            ]
        }
    ],
}


@transaction.atomic
def seed() -> list[Evse]:
    """Create or update the demo rows (idempotent: safe to run at every start)."""
    operator, _ = Operator.objects.update_or_create(
        receipt_prefix="DPY",
        defaults={
            "name": "Direct Pay Demo Charging",
            "legal_name": "Direct Pay Demo Charging B.V.",
            "address": "Stationsplein 1\n1012 AB Amsterdam\nThe Netherlands",
            "vat_id": "NL000099998B57",
            "support_contact": "support@directpay.invalid · +31 20 000 0000",
            "currency": "EUR",
            "hold_amounts": [2000, 3500, 5000],
            "default_hold": 3500,
        },
    )
    ac_tariff, _ = Tariff.objects.update_or_create(
        operator=operator, name="AC ad hoc", defaults={"ocpi": AC_TARIFF}
    )
    dc_tariff, _ = Tariff.objects.update_or_create(
        operator=operator, name="DC ad hoc", defaults={"ocpi": DC_TARIFF}
    )
    chademo_tariff, _ = Tariff.objects.update_or_create(
        operator=operator, name="DC CHAdeMO ad hoc", defaults={"ocpi": CHADEMO_TARIFF}
    )
    garage, _ = Location.objects.update_or_create(
        operator=operator,
        name="Central Station Garage",
        defaults={
            "address": "Stationsplein 1",
            "postal_code": "1012 AB",
            "city": "Amsterdam",
            "country": "NL",
        },
    )
    hub, _ = Location.objects.update_or_create(
        operator=operator,
        name="A10 Fast Charging Hub",
        defaults={
            "address": "Ringweg-Zuid 12",
            "postal_code": "1083 HP",
            "city": "Amsterdam",
            "country": "NL",
        },
    )
    rows = [
        (
            "NL*DPY*E0001*1",
            garage,
            Connector.Standard.TYPE2,
            Connector.PowerType.AC_3_PHASE,
            "22",
            ac_tariff,
        ),
        ("NL*DPY*E0002*1", hub, Connector.Standard.CCS, Connector.PowerType.DC, "150", dc_tariff),
    ]
    evses = []
    for evse_id, location, standard, power_type, kw, tariff in rows:
        evses.append(_seed_evse(evse_id, location, [("1", standard, power_type, kw, tariff)]))
    evses.append(_seed_dual(hub, dc_tariff, chademo_tariff))
    evses += _seed_ocpp(operator, ac_tariff, dc_tariff)
    return evses


def _seed_dual(location, ccs_tariff, chademo_tariff) -> Evse:
    """One DC EVSE with two connectors, each with its own power and price: the driver chooses."""
    dc = Connector.PowerType.DC
    return _seed_evse(
        "NL*DPY*E0002*2",
        location,
        [
            ("1", Connector.Standard.CCS, dc, "150", ccs_tariff),
            ("2", Connector.Standard.CHADEMO, dc, "50", chademo_tariff),
        ],
    )


def _seed_evse(evse_id: str, location, connectors) -> Evse:
    """An EVSE and its connectors (connector id, standard, power type, kW, tariff), as seeded."""
    evse, _ = Evse.objects.update_or_create(
        evse_id=evse_id, defaults={"location": location, "uid": evse_id.replace("*", "-")}
    )
    for connector_id, standard, power_type, kw, tariff in connectors:
        Connector.objects.update_or_create(
            evse=evse,
            connector_id=connector_id,
            defaults={
                "standard": standard,
                "power_type": power_type,
                "max_power_kw": Decimal(kw),
                "tariff": tariff,
            },
        )
    return evse


# OCPP direct: one 2.0.1 AC and one 2.1 DC station that `manage.py ocpp_charger` simulates.
OCPP_STATIONS = {"DPY-AC-201": "ocpp2.0.1", "DPY-DC-21": "ocpp2.1"}


def ocpp_password(identity: str) -> str:
    """The demo stations' password: derived from SECRET_KEY, so the simulated chargers know it."""
    return salted_hmac("stations.demo.ocpp", identity).hexdigest()[:32]


def _seed_ocpp(operator, ac_tariff, dc_tariff) -> list[Evse]:
    depot, _ = Location.objects.update_or_create(
        operator=operator,
        name="Harbour Depot (OCPP direct)",
        defaults={
            "address": "Veemkade 500",
            "postal_code": "1019 HE",
            "city": "Amsterdam",
            "country": "NL",
            "csms": "ocpp",
        },
    )
    rows = [
        ("DPY-AC-201", "NL*DPY*E0101*1", Connector.Standard.TYPE2, "AC_3_PHASE", "22", ac_tariff),
        ("DPY-DC-21", "NL*DPY*E0102*1", Connector.Standard.CCS, "DC", "150", dc_tariff),
    ]
    evses = []
    for identity, evse_id, standard, power_type, kw, tariff in rows:
        station, created = ChargingStation.objects.get_or_create(
            identity=identity,
            defaults={"location": depot, "protocol": OCPP_STATIONS[identity]},
        )
        if created or not station.password_matches(ocpp_password(identity)):
            station.password_hash = make_password(ocpp_password(identity))
            station.save(update_fields=["password_hash"])
        evse = _seed_evse(evse_id, depot, [("1", standard, power_type, kw, tariff)])
        OcppEvse.objects.update_or_create(
            evse=evse, defaults={"station": station, "evse_number": 1}
        )
        evses.append(evse)
    return evses
