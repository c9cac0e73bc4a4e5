"""Importing stations from CSV: the template, updates in place, row errors with nothing written, the admin page."""

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from stations import imports, qr, tariffs
from stations.models import Connector, Evse, Location, Tariff
from tests.factories import EvseFactory, OperatorFactory, TariffFactory

pytestmark = pytest.mark.django_db

HEADER = list(imports.COLUMNS)
ROW = dict(zip(HEADER, imports.TEMPLATE_ROWS[0]))  # AC, energy only


def csv_bytes(rows, *, delimiter=",", bom=False, header=HEADER):
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(c, "") for c in header])
    return (("\ufeff" if bom else "") + out.getvalue()).encode()


def row(**changes):
    return {**ROW, **changes}


def counts():
    return [m.objects.count() for m in (Location, Evse, Connector, Tariff)]


@pytest.fixture
def operator():
    return OperatorFactory(currency="EUR")


def test_the_template_imports_cleanly(operator):
    result = imports.import_stations(operator=operator, file=imports.template_csv())
    assert result.ok, result.errors
    assert result.rows == 3
    assert result.created == {"location": 1, "evse": 2, "connector": 3, "tariff": 2}
    dc = Evse.objects.get(uid="NL-ABC-E0002-1")
    assert dc.evse_id == "NL*ABC*E0002*1" and dc.location.operator == operator
    assert sorted(dc.connectors.values_list("connector_id", "standard")) == [
        ("1", "IEC_62196_T2_COMBO"),
        ("2", "CHADEMO"),
    ]
    assert dc.connectors.get(connector_id="2").max_power_kw == Decimal(50)
    lines = tariffs.price_lines(Tariff.objects.get(name="DC ad hoc").ocpi)
    assert [(line["type"], line["price_excl_vat"]) for line in lines] == [
        ("ENERGY", Decimal("0.5900")),
        ("FLAT", Decimal("1.0000")),
        ("PARKING_TIME", Decimal("6.0000")),
    ]
    assert "Created: 1 location, 2 EVSEs, 3 connectors, 2 tariffs" in result.summary()


def test_a_reimport_updates_in_place_and_stickers_stay_valid(operator):
    assert imports.import_stations(operator=operator, file=imports.template_csv()).ok
    evse = Evse.objects.get(uid="NL-ABC-E0001-1")
    code = qr.code_for(evse)
    tariff_pk = Tariff.objects.get(name="AC ad hoc").pk

    again = imports.import_stations(operator=operator, file=imports.template_csv())
    assert again.ok and not again.created and not again.updated
    assert again.unchanged == {"location": 1, "evse": 2, "connector": 3, "tariff": 2}

    changed = csv_bytes(
        [
            row(
                address="Stationsplein 2",
                evse_id="NL*ABC*E0009*1",
                max_power_kw="11",
                energy_price="0.49",
            )
        ]
    )
    result = imports.import_stations(operator=operator, file=changed)
    assert result.ok, result.errors
    assert result.updated == {"location": 1, "evse": 1, "connector": 1, "tariff": 1}
    assert counts() == [1, 2, 3, 2]
    assert qr.verify(code).pk == evse.pk
    evse.refresh_from_db()
    assert evse.evse_id == "NL*ABC*E0009*1" and evse.location.address == "Stationsplein 2"
    assert evse.connectors.get().max_power_kw == Decimal(11)
    tariff = Tariff.objects.get(pk=tariff_pk)
    assert tariffs.price_lines(tariff.ocpi)[0]["price_excl_vat"] == Decimal("0.4900")


BAD_ROWS = [
    ({"country": "XX"}, "country", "ISO 3166-1"),
    ({"country": ""}, "country", "required"),
    ({"time_zone": "Europe/Atlantis"}, "time_zone", "not a time zone"),
    ({"max_power_kw": "22kW"}, "max_power_kw", "not a number"),
    ({"max_power_kw": "0"}, "max_power_kw", "between"),
    ({"energy_price": "0,45"}, "energy_price", "decimal point"),
    ({"energy_price": "-1"}, "energy_price", "between"),
    ({"vat_percent": ""}, "vat_percent", "required"),
    ({"currency": "EURO"}, "currency", "ISO 4217"),
    ({"location_name": ""}, "location_name", "required"),
    ({"evse_uid": ""}, "evse_uid", "required"),
    ({"evse_id": "E0001"}, "evse_id", "eMI3"),
    ({"standard": "Type 3"}, "standard", "not one of"),
    ({"power_type": "AC"}, "power_type", "not one of"),
    ({"energy_price": "", "vat_percent": "21"}, "energy_price", "at least one price"),
    (
        {"tariff_name": "Unknown", "energy_price": "", "vat_percent": "", "currency": ""},
        "tariff_name",
        "no tariff",
    ),
]


@pytest.mark.parametrize(
    "changes, column, message", BAD_ROWS, ids=[b[1] + ":" + b[2] for b in BAD_ROWS]
)
def test_a_bad_row_names_row_and_column_and_nothing_is_written(operator, changes, column, message):
    good = row(evse_uid="GOOD-1", evse_id="NL*ABC*E0100*1", location_name="Elsewhere")
    before = counts()
    result = imports.import_stations(operator=operator, file=csv_bytes([good, row(**changes)]))
    assert not result.ok
    assert [(e.row, e.column) for e in result.errors] == [(3, column)], result.errors
    assert message in result.errors[0].message
    assert counts() == before


def test_rows_that_contradict_each_other(operator):
    rows = [
        row(),
        row(
            evse_uid="NL-ABC-E0002-1", evse_id="NL*ABC*E0002*1", energy_price="0.50"
        ),  # tariff differs
        row(
            address="Other street 1", evse_uid="NL-ABC-E0003-1", evse_id="NL*ABC*E0003*1"
        ),  # location differs
        row(evse_uid="NL-ABC-E0004-1"),  # EVSE ID of row 2's EVSE
        row(),  # same EVSE and connector as row 2
        row(connector_id="2", evse_id="NL*ABC*E0005*1"),  # same uid, other EVSE ID
    ]
    result = imports.import_stations(operator=operator, file=csv_bytes(rows))
    assert [(e.row, e.column) for e in result.errors] == [
        (3, "energy_price"),
        (4, "address"),
        (5, "evse_uid"),
        (6, "connector_id"),
        (7, "evse_id"),
    ]
    assert counts() == [0, 0, 0, 0]


def test_clashes_with_stations_in_the_database(operator):
    other = EvseFactory(uid="THEIRS-1", evse_id="NL*OTH*E0001*1")  # another operator's EVSE
    before = counts()
    rows = [
        row(evse_uid="THEIRS-1", evse_id="NL*ABC*E0101*1"),
        row(evse_uid="MINE-2", evse_id=other.evse_id),
    ]
    result = imports.import_stations(operator=operator, file=csv_bytes(rows))
    assert [(e.row, e.column, e.message) for e in result.errors] == [
        (2, "evse_uid", "this EVSE uid belongs to another operator"),
        (3, "evse_id", "already used by the EVSE with uid 'THEIRS-1'"),
    ]
    assert counts() == before


def test_semicolons_and_a_bom(operator):
    data = csv_bytes([row(location_name="Café Zuid", energy_price="0.45")], delimiter=";", bom=True)
    result = imports.import_stations(operator=operator, file=io.BytesIO(data))
    assert result.ok, result.errors
    assert Location.objects.get().name == "Café Zuid"


def test_file_level_errors(operator, monkeypatch):
    cases = [
        (b"", "empty"),
        (csv_bytes([]), "no rows"),
        ("location_name\nCafé".encode("latin-1"), "not UTF-8"),
        (csv_bytes([row()], header=[c for c in HEADER if c != "city"]), "missing column"),
        (csv_bytes([row()], header=[*HEADER, "colour"]), "unknown column"),
    ]
    for data, message in cases:
        result = imports.import_stations(operator=operator, file=data)
        assert message in result.errors[0].message, (message, result.errors)
    monkeypatch.setattr(imports, "MAX_ROWS", 2)
    result = imports.import_stations(operator=operator, file=imports.template_csv())
    assert "at most 2" in result.errors[0].message
    monkeypatch.setattr(imports, "MAX_BYTES", 100)
    result = imports.import_stations(operator=operator, file=imports.template_csv())
    assert "larger than" in result.errors[0].message
    assert counts() == [0, 0, 0, 0]


def test_empty_prices_use_an_existing_tariff_as_it_is(operator):
    """A tariff the CSV cannot express (restrictions) is only referred to, never flattened."""
    complex_ocpi = {
        "id": "T-DC",
        "currency": "EUR",
        "elements": [
            {
                "price_components": [
                    {"type": "ENERGY", "price": "0.59", "vat": 21.0, "step_size": 1}
                ]
            },
            {
                "price_components": [
                    {"type": "TIME", "price": "6.00", "vat": 21.0, "step_size": 60}
                ],
                "restrictions": {"min_duration": 3600},
            },
        ],
    }
    tariff = TariffFactory(operator=operator, name="DC special", ocpi=complex_ocpi)
    data = csv_bytes([row(tariff_name="DC special", energy_price="", vat_percent="", currency="")])
    result = imports.import_stations(operator=operator, file=data)
    assert result.ok, result.errors
    assert Connector.objects.get().tariff == tariff
    tariff.refresh_from_db()
    assert tariff.ocpi == complex_ocpi


def test_an_imported_tariff_prices_like_one_made_in_the_admin(operator, admin_client):
    hand_made = {
        "id": "T-HAND",
        "currency": "EUR",
        "type": "AD_HOC_PAYMENT",
        "elements": [
            {
                "price_components": [
                    {"type": "ENERGY", "price": "0.45", "vat": 21, "step_size": 1},
                    {"type": "TIME", "price": "1.20", "vat": 21, "step_size": 1},
                    {"type": "PARKING_TIME", "price": "6", "vat": 21, "step_size": 1},
                    {"type": "FLAT", "price": "0.35", "vat": 21, "step_size": 1},
                ]
            }
        ],
    }
    response = admin_client.post(
        reverse("admin:stations_tariff_add"),
        {"operator": operator.pk, "name": "Hand made", "ocpi": json.dumps(hand_made)},
    )
    assert response.status_code == 302
    data = csv_bytes(
        [
            row(
                tariff_name="Imported",
                energy_price="0.45",
                time_price_per_hour="1.2",
                parking_price_per_hour="6",
                session_fee="0.35",
                vat_percent="21",
            )
        ]
    )
    assert imports.import_stations(operator=operator, file=data).ok
    admin_made, imported = Tariff.objects.get(name="Hand made"), Tariff.objects.get(name="Imported")
    assert tariffs.price_lines(imported.ocpi) == tariffs.price_lines(admin_made.ocpi)
    start = datetime(2025, 3, 1, 10, tzinfo=UTC)
    usage = tariffs.Usage(
        start=start, end=start + timedelta(minutes=95), kwh=Decimal("17.3"), parking_minutes=20
    )
    assert tariffs.quote(imported.ocpi, usage, "Europe/Amsterdam") == tariffs.quote(
        admin_made.ocpi, usage, "Europe/Amsterdam"
    )


# --- the admin page


def import_url():
    return reverse("admin:stations_location_import")


def test_admin_shows_row_errors_and_imports_nothing(admin_client, operator):
    page = admin_client.get(reverse("admin:stations_location_changelist"))
    assert import_url() in page.content.decode()
    upload = SimpleUploadedFile(
        "stations.csv", csv_bytes([row(country="XX")]), content_type="text/csv"
    )
    response = admin_client.post(import_url(), {"operator": operator.pk, "file": upload})
    assert response.status_code == 200
    html = response.content.decode()
    assert "nothing was imported" in html
    assert "<td>2</td><td>country</td>" in html
    assert counts() == [0, 0, 0, 0]


def test_admin_imports_and_says_what_it_did(admin_client, operator):
    upload = SimpleUploadedFile("stations.csv", imports.template_csv(), content_type="text/csv")
    response = admin_client.post(
        import_url(), {"operator": operator.pk, "file": upload}, follow=True
    )
    assert response.redirect_chain[-1][0] == reverse("admin:stations_location_changelist")
    assert "Created: 1 location, 2 EVSEs, 3 connectors, 2 tariffs" in response.content.decode()
    assert counts() == [1, 2, 3, 2]


def test_admin_template_download(admin_client, operator):
    response = admin_client.get(import_url())
    assert reverse("admin:stations_location_import_template") in response.content.decode()
    download = admin_client.get(reverse("admin:stations_location_import_template"))
    assert download["Content-Type"].startswith("text/csv")
    assert "attachment" in download["Content-Disposition"]
    assert download.content == imports.template_csv()


def test_admin_import_needs_add_and_change_permissions(client, operator):
    user = User.objects.create_user("viewer", password="pw-for-test-only", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="stations",
            codename__regex=r"^(view|add|change)_(location|evse|connector)$",
        )
    )
    client.force_login(user)  # everything but the tariff permissions
    assert client.get(import_url()).status_code == 403
    assert client.get(reverse("admin:stations_location_import_template")).status_code == 403
    upload = SimpleUploadedFile("stations.csv", imports.template_csv(), content_type="text/csv")
    assert client.post(import_url(), {"operator": operator.pk, "file": upload}).status_code == 403
    assert (
        import_url()
        not in client.get(reverse("admin:stations_location_changelist")).content.decode()
    )
    assert counts() == [0, 0, 0, 0]

    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_tariff", "change_tariff"])
    )
    user = User.objects.get(pk=user.pk)  # permissions are cached on the instance
    client.force_login(user)
    assert client.get(import_url()).status_code == 200


def test_stations_kept_in_step_by_ocpi_and_ambiguous_names_are_refused(operator):
    from stations.models import OcpiConnection

    connection = OcpiConnection.objects.create(name="CPO", token_ours="t" * 32, operator=operator)
    Location.objects.create(
        operator=operator,
        name="Synced",
        address="A 1",
        city="Utrecht",
        country="NL",
        ocpi_connection=connection,
        ocpi_id="LOC1",
    )
    TariffFactory.create_batch(2, operator=operator, name="Twice")
    before = counts()
    rows = [
        row(location_name="Synced"),
        row(evse_uid="X-2", evse_id="NL*ABC*E0102*1", tariff_name="Twice"),
    ]
    result = imports.import_stations(operator=operator, file=csv_bytes(rows))
    assert [(e.row, e.column) for e in result.errors] == [(2, "location_name"), (3, "tariff_name")]
    assert (
        "OCPI connection CPO" in result.errors[0].message
        and "2 tariffs" in result.errors[1].message
    )
    assert counts() == before
