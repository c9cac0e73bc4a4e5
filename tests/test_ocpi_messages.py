"""The OCPI objects we receive: the specification's examples parse, bad ones are refused by field."""

import json
from decimal import Decimal

import pytest

from stations.csms.ocpi import messages
from tests.ocpi_examples import examples


def example(name: str):
    return json.loads((examples() / name).read_text())


def test_session_examples_parse():
    started = messages.parse_session(example("session_example_1_simple_start.json"))
    assert (started.id, started.status, started.kwh, started.end) == (
        "101",
        "PENDING",
        Decimal("0.00"),
        None,
    )
    finished = messages.parse_session(example("session_example_2_short_finished.json"))
    # kwh is what we read; this example's ENERGY volumes are in Wh (an upstream quirk we must not use).
    assert (finished.status, finished.kwh) == ("COMPLETED", Decimal("41.12"))
    assert finished.parking_hours == Decimal("0.718")
    assert finished.token_uid == "123abc"


def test_session_patch_examples_append_charging_periods():
    stored = example("session_example_1_simple_start.json")
    merged = messages.merge_session_patch(
        stored, example("session_patch_example_charging_period.json")
    )
    merged = messages.merge_session_patch(
        merged, example("session_patch_example_charging_period.json")
    )
    assert len(merged["charging_periods"]) == 2
    assert messages.parse_session(merged).kwh == Decimal("15.00")
    total = messages.merge_session_patch(merged, example("session_patch_example_total_cost.json"))
    assert len(total["charging_periods"]) == 2 and total["total_cost"]["incl_vat"] is not None
    messages.parse_session(total)


def test_cdr_example_parses():
    cdr = messages.parse_cdr(example("cdr_example.json"))
    assert (cdr.id, cdr.country_code, cdr.party_id) == ("12345", "BE", "BEC")
    assert cdr.total_cost_incl_vat == Decimal("4.40") and cdr.total_energy == Decimal("15.342")
    assert cdr.credit is False and cdr.session_id == ""


@pytest.mark.parametrize(
    "name",
    [
        "location_example.json",
        "location_example_parking_garage_opening_hours.json",
        "location_example_uc2_destination_charger.json",
        "location_example_uc3_destination_charger_not_published.json",
        "location_example_uc4_limited_visibility.json",
        "location_example_uc5_home_charge_point.json",
    ],
)
def test_location_examples_pass_the_checks(name):
    assert messages.check_location(example(name))["id"]


@pytest.mark.parametrize(
    "name",
    [
        "tariff_1_simple_2hour.json",
        "tariff_2_alt_text.json",
        "tariff_3_alt_url.json",
        "tariff_5_free_of_charge.json",
        "tariff_8_simple_025kwh.json",
        "tariff_9_025kwh_start.json",
        "tariff_put_example.json",
    ],
)
def test_tariff_examples_pass_the_checks(name):
    assert messages.check_tariff(example(name))["id"]


def test_command_answers_tolerate_a_list_and_display_text():
    answer = messages.parse_command_response(
        [{"result": "ACCEPTED", "timeout": 30.0, "message": None}]
    )
    assert (answer.result, answer.timeout) == ("ACCEPTED", 30)
    result = messages.parse_command_result(
        {"result": "EVSE_OCCUPIED", "message": [{"language": "en", "text": "Occupied"}]}
    )
    assert (result.result, result.message) == ("EVSE_OCCUPIED", "Occupied")


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda s: s.pop("kwh"), "kwh"),
        (lambda s: s.update(kwh=-1), "kwh"),
        (lambda s: s.update(kwh="lots"), "kwh"),
        (lambda s: s.update(status="CHARGING"), "status"),
        (lambda s: s.update(start_date_time="yesterday"), "start_date_time"),
        (lambda s: s.pop("cdr_token"), "cdr_token"),
        (lambda s: s.update(charging_periods={}), "charging_periods"),
        (lambda s: s.update(id=["101"]), "id"),
    ],
)
def test_bad_sessions_are_refused_by_field(change, field):
    session = example("session_example_1_simple_start.json")
    change(session)
    with pytest.raises(messages.Invalid, match=field):
        messages.parse_session(session)


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda c: c.pop("total_cost"), "total_cost"),
        (lambda c: c["total_cost"].update(excl_vat=None), "excl_vat"),
        (lambda c: c.update(credit="yes"), "credit"),
        (lambda c: c.pop("end_date_time"), "end_date_time"),
        (lambda c: c.update(total_energy=None), "total_energy"),
    ],
)
def test_bad_cdrs_are_refused_by_field(change, field):
    cdr = example("cdr_example.json")
    change(cdr)
    with pytest.raises(messages.Invalid, match=field):
        messages.parse_cdr(cdr)


def test_a_patch_without_last_updated_is_refused():
    with pytest.raises(messages.Invalid, match="last_updated"):
        messages.merge_session_patch({}, {"kwh": 3})


def test_bad_locations_and_tariffs_are_refused_by_field():
    location = example("location_example.json")
    location["evses"][0]["status"] = "BROKEN"
    with pytest.raises(messages.Invalid, match="status"):
        messages.check_location(location)
    tariff = example("tariff_1_simple_2hour.json")
    tariff["elements"] = "free"
    with pytest.raises(messages.Invalid, match="elements"):
        messages.check_tariff(tariff)
