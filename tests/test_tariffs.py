"""Tests for the OCPI 2.2.1 pricing engine (stations.tariffs) and the `quote` command.

The engine tests are plain functions without Django. Every expected amount is worked out by hand
in the comment next to it. Tariffs written inline here are our own fixtures, modelled on the
prose of the OCPI 2.2.1 mod_tariffs examples; the upstream example files are read as they are.
"""

import io
import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import pytest

from stations.tariffs import PricedComponent, Quote, TariffError, Usage, price_lines, quote
from tests.ocpi_examples import examples

AMS = ZoneInfo("Europe/Amsterdam")
WEEKDAYS = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY"]


def load(name: str) -> dict:
    return json.loads((examples() / name).read_text())


def usage(start, minutes, kwh, parking=0, **kw) -> Usage:
    """`minutes` is the whole session (charging + parking); the last `parking` minutes park."""
    return Usage(start, start + timedelta(minutes=minutes), D(str(kwh)), D(str(parking)), **kw)


def totals(q: Quote) -> tuple[str, str]:
    return str(q.total_excl_vat), str(q.total_incl_vat)


def price(t: dict, u: Usage, tz: str | None = None) -> tuple[str, str]:
    return totals(quote(t, u, tz=tz))


def pc(type_, price, step, vat=None) -> dict:
    component = {"type": type_, "price": price, "step_size": step}
    if vat is not None:
        component["vat"] = vat
    return component


def element(*components, **restrictions) -> dict:
    el = {"price_components": list(components)}
    if restrictions:
        el["restrictions"] = restrictions
    return el


def tariff(*elements, **extra) -> dict:
    return {"currency": "EUR", "elements": list(elements), **extra}


MONDAY = datetime(2024, 1, 15, 9, 30, tzinfo=UTC)  # 2024-01-15 is a Monday


# --------------------------------------------------------------------------- upstream examples

# Standard session for every example file: Monday 09:30 UTC, 150 min, 20 kWh, no parking,
# current/power unknown.
EXAMPLE_TOTALS = {
    # TIME 2.00/h, 10 %: 2.5 h * 2.00 = 5.00; * 1.10 = 5.50
    "tariff_1_simple_2hour.json": ("5.00", "5.50"),
    # TIME 1.90/h, 5.2 %: 2.5 h * 1.90 = 4.75; * 1.052 = 4.997 -> 5.00 (as the spec says)
    "tariff_2_alt_text.json": ("4.75", "5.00"),
    # ENERGY 0.25, 10 %, step 100 Wh: 20 000 Wh is a whole number of steps: 5.00 / 5.50
    # + FLAT 0.50, 20 %: 0.60  ->  5.50 / 6.10
    "tariff_3_alt_url.json": ("5.50", "6.10"),
    # FLAT 0.00
    "tariff_5_free_of_charge.json": ("0.00", "0.00"),
    # ENERGY 0.25, 10 %: 20 * 0.25 = 5.00; 5.50 (spec: 5.00 / 5.50 for 20 kWh)
    "tariff_8_simple_025kwh.json": ("5.00", "5.50"),
    # 5.00 / 5.50 energy + 0.50 / 0.60 start fee = 5.50 / 6.10 (spec: the same)
    "tariff_9_025kwh_start.json": ("5.50", "6.10"),
    # TIME 4.75 / 4.997 + FLAT 0.40 * 1.25 = 0.50 -> 5.15 / 5.497 -> 5.50
    "tariff_11_not_possible_alt_text.json": ("5.15", "5.50"),
    # Reservation elements are ignored for an ad hoc session: FLAT 0.50 + ENERGY 20 * 0.25
    # -> 5.50; incl. 0.60 + 5.50 = 6.10 (the spec's 6.75 etc. add the reservation time)
    "tariff_15_reservation_5_euro_per_hour.json": ("5.50", "6.10"),
    "tariff_16_reservation_2_euro_fee_5_euro_per_hour.json": ("5.50", "6.10"),
    "tariff_17_reservation_with_expire_fee.json": ("5.50", "6.10"),
    "tariff_18_reservation_with_expire_time.json": ("5.50", "6.10"),
    # TIME 2.00/h, 10 %, step 300: 150 min is 30 steps: 5.00 / 5.50
    "tariff_put_example.json": ("5.00", "5.50"),
    # 8 kWh/h: 0-30 min 4 kWh free; 30-60 min 4 kWh * 0.25 = 1.00; 60-150 min 12 kWh * 0.40
    # = 4.80 -> 5.80; all 20 % VAT -> 6.96
    "tariffrestriction_example_max_duration.json": ("5.80", "6.96"),
    # Power unknown: no max_power restriction holds -> fallback 0.50 * 20 = 10.00; * 1.2 = 12.00
    "tariffrestriction_example_max_power.json": ("10.00", "12.00"),
}


def example_files() -> list[str]:
    return sorted(p.name for p in examples().glob("tariff_*.json")) + sorted(
        p.name for p in examples().glob("tariffrestriction_*.json")
    )


def test_every_example_file_has_a_hand_checked_expectation():
    assert set(example_files()) == set(EXAMPLE_TOTALS)


@pytest.mark.parametrize("name", sorted(EXAMPLE_TOTALS))
def test_example_file_prices(name):
    t = load(name)
    q = quote(t, usage(MONDAY, 150, 20))
    assert totals(q) == EXAMPLE_TOTALS[name]
    assert q.currency == "EUR"
    assert json.loads(json.dumps(q.as_dict()))["total_excl_vat"] == EXAMPLE_TOTALS[name][0]
    lines = price_lines(t)
    assert lines and all(line["unit"] in ("kWh", "hour", "session") for line in lines)


def test_example_components_are_itemised():
    q = quote(load("tariff_9_025kwh_start.json"), usage(MONDAY, 150, 20))
    assert q.components == (
        PricedComponent("ENERGY", D("20.000000"), D("0.25"), D("10.0"), D("5.0000"), D("5.5000")),
        PricedComponent("FLAT", D("1.000000"), D("0.5"), D("20.0"), D("0.5000"), D("0.6000")),
    )


def test_free_of_charge_example():
    q = quote(load("tariff_5_free_of_charge.json"), usage(MONDAY, 600, 75, parking=120))
    assert totals(q) == ("0.00", "0.00")
    assert [(c.type, c.excl_vat, c.vat) for c in q.components] == [("FLAT", D("0.0000"), None)]


def test_reservation_elements_are_ignored_in_price_lines():
    lines = price_lines(load("tariff_16_reservation_2_euro_fee_5_euro_per_hour.json"))
    assert [(line["type"], line["price_excl_vat"]) for line in lines] == [
        ("ENERGY", D("0.25")),
        ("FLAT", D("0.5")),
    ]


# --------------------------------------------------------------------------- spec worked examples


def test_spec_min_price_example():
    # ENERGY 0.25, 10 %; min_price 0.50 / 0.55.
    t = dict(load("tariff_8_simple_025kwh.json"), min_price={"excl_vat": 0.50, "incl_vat": 0.55})
    assert price(t, usage(MONDAY, 60, 20)) == ("5.00", "5.50")  # 20 * 0.25, above min
    assert price(t, usage(MONDAY, 60, 1)) == ("0.50", "0.55")  # 0.25 / 0.275 raised
    # The components still show what was consumed.
    assert quote(t, usage(MONDAY, 60, 1)).components[0].excl_vat == D("0.2500")


def test_spec_max_price_example():
    # Start fee 0.50 (20 %) + ENERGY 0.25 (10 %); max_price 10 / 11.
    t = dict(load("tariff_9_025kwh_start.json"), max_price={"excl_vat": 10.00, "incl_vat": 11.00})
    # 50 kWh: 0.50 + 12.50 = 13.00 / 0.60 + 13.75 = 14.35 -> capped at 10.00 / 11.00
    assert price(t, usage(MONDAY, 120, 50)) == ("10.00", "11.00")
    # 30 kWh: 0.50 + 7.50 = 8.00 / 0.60 + 8.25 = 8.85 (spec: 8.00 / 8.85)
    assert price(t, usage(MONDAY, 120, 30)) == ("8.00", "8.85")


def test_spec_energy_parking_and_start_fee_example():
    # Start 0.50 (20 %), ENERGY 0.25 (10 %), PARKING 2.00/h (20 %) per 15 min.
    t = tariff(
        element(
            pc("FLAT", 0.50, 1, 20.0),
            pc("ENERGY", 0.25, 1, 10.0),
            pc("PARKING_TIME", 2.00, 900, 20.0),
        )
    )
    # 20 kWh, then 40 min parking -> billed 45 min = 0.75 h * 2.00 = 1.50 (incl 1.80)
    # 0.50 + 5.00 + 1.50 = 7.00; 0.60 + 5.50 + 1.80 = 7.90 (spec: 7.00 / 7.90)
    q = quote(t, usage(MONDAY, 100, 20, parking=40))
    assert totals(q) == ("7.00", "7.90")
    parking = [c for c in q.components if c.type == "PARKING_TIME"]
    assert parking[0].volume == D("0.750000")


def test_spec_time_and_parking_example():
    # TIME 3.00/h (10 %) per minute, PARKING 5.00/h (20 %) per 5 min.
    t = tariff(element(pc("TIME", 3.00, 60, 10.0), pc("PARKING_TIME", 5.00, 300, 20.0)))
    # 150 min charging: 7.50 / 8.25; 42 min parking -> 45 min: 3.75 / 4.50
    # 11.25 / 12.75 (spec: the same)
    assert price(t, usage(MONDAY, 192, 30, parking=42)) == ("11.25", "12.75")


COMPLEX = tariff(
    element(pc("FLAT", 2.50, 1, 15.0)),
    element(pc("TIME", 1.00, 900, 20.0), max_current=32.00),
    element(pc("TIME", 2.00, 600, 20.0), min_current=32.00, day_of_week=WEEKDAYS),
    element(pc("TIME", 1.25, 600, 20.0), min_current=32.00, day_of_week=["SATURDAY", "SUNDAY"]),
    element(
        pc("PARKING_TIME", 5.00, 300, 10.0),
        start_time="09:00",
        end_time="18:00",
        day_of_week=WEEKDAYS,
    ),
    element(
        pc("PARKING_TIME", 6.00, 300, 10.0),
        start_time="10:00",
        end_time="17:00",
        day_of_week=["SATURDAY"],
    ),
)


def test_spec_complex_example_monday():
    # Monday 09:30 local, 147 min charging at 16 A, then 42 min parking (11:57-12:39).
    start = datetime(2024, 1, 15, 9, 30, tzinfo=AMS)
    q = quote(
        COMPLEX, usage(start, 147 + 42, 20, parking=42, max_current_a=16), tz="Europe/Amsterdam"
    )
    # FLAT 2.50 / 2.875
    # TIME < 32 A: 147 min -> 150 min (900 s steps) = 2.5 h * 1.00 = 2.50 / 3.00
    # PARKING weekday 09-18: 42 -> 45 min = 0.75 h * 5.00 = 3.75 / 4.125
    # 8.75 / 10.00 (spec: 8.75 / 10)
    assert totals(q) == ("8.75", "10.00")
    assert [(c.type, c.price, c.volume) for c in q.components] == [
        ("TIME", D("1.0"), D("2.500000")),
        ("FLAT", D("2.5"), D("1.000000")),
        ("PARKING_TIME", D("5.0"), D("0.750000")),
    ]


def test_spec_complex_example_saturday():
    # Saturday 13:30 local, 114 min charging at 43 A, then 71 min parking (15:24-16:35).
    start = datetime(2024, 1, 20, 13, 30, tzinfo=AMS)
    q = quote(
        COMPLEX, usage(start, 114 + 71, 30, parking=71, max_current_a=43), tz="Europe/Amsterdam"
    )
    # FLAT 2.50 / 2.875
    # TIME >= 32 A weekend: 114 -> 120 min (600 s steps) = 2 h * 1.25 = 2.50 / 3.00
    # PARKING Saturday 10-17: 71 -> 75 min = 1.25 h * 6.00 = 7.50 / 8.25
    # 12.50 / 14.125 -> 14.13 (spec: 12.50 / 14,13)
    assert totals(q) == ("12.50", "14.13")


def test_complex_parking_becomes_free_after_18h():
    # Monday 16:00 local, 90 min at 16 A, then parking 17:30-18:20.
    start = datetime(2024, 1, 15, 16, 0, tzinfo=AMS)
    q = quote(COMPLEX, usage(start, 140, 10, parking=50, max_current_a=16), tz="Europe/Amsterdam")
    # FLAT 2.50 / 2.875; TIME 1.5 h * 1.00 = 1.50 / 1.80 (90 min = 6 steps of 900 s)
    # PARKING 17:30-18:00 = 30 min * 5.00/h = 2.50 / 2.75; after 18:00 no parking element: free
    # 6.50 / 7.425 -> 7.43
    assert totals(q) == ("6.50", "7.43")


FIRST_HOUR_FREE = tariff(
    element(pc("PARKING_TIME", 0.00, 60), min_duration=0, max_duration=3600),
    element(pc("PARKING_TIME", 2.00, 60), min_duration=3600, max_duration=10800),
    element(pc("PARKING_TIME", 3.00, 60), min_duration=10800),
    element(pc("ENERGY", 0.00, 1), max_kwh=1.0),
    element(pc("ENERGY", 0.20, 1), min_kwh=1.0),
)


def test_spec_first_hour_free_example():
    # The spec's numbers assume parking starts at the session start: 20 kWh "at once", 2.75 h
    # parking. ENERGY: 1 kWh free + 19 * 0.20 = 3.80. PARKING (durations count from the session
    # start): 0-1 h free, 1-2.75 h = 1.75 h * 2.00 = 3.50. Total 7.30 (spec: 7.30); no VAT given.
    q = quote(FIRST_HOUR_FREE, usage(MONDAY, 165, 20, parking=165))
    assert totals(q) == ("7.30", "7.30")
    assert all(c.vat is None for c in q.components)


def test_first_hour_free_counts_durations_from_session_start():
    # 60 min charging, then 165 min parking (1 h - 3 h 45 min after start).
    # ENERGY 3.80 as above. PARKING 1-3 h = 2 h * 2.00 = 4.00; 3-3.75 h = 0.75 h * 3.00 = 2.25.
    # 3.80 + 4.00 + 2.25 = 10.05
    assert price(FIRST_HOUR_FREE, usage(MONDAY, 225, 20, parking=165)) == ("10.05", "10.05")


def test_spec_alt_url_example_step_100wh():
    # 20.45 kWh billed as 20.5 kWh (100 Wh steps).
    t = load("tariff_3_alt_url.json")
    # 20.5 * 0.25 = 5.125 + start fee 0.50 = 5.625 -> 5.63; 5.6375 + 0.60 = 6.2375 -> 6.24.
    # (The spec text says 5.50 / 6.05: it leaves out the start fee and mis-multiplies.)
    q = quote(t, usage(MONDAY, 120, "20.45"))
    assert totals(q) == ("5.63", "6.24")
    assert q.components[0].volume == D("20.500000")
    # The spec's "real-time price" variant without a start fee: 20.5 * 0.22 = 4.51; * 1.1 = 4.961
    # -> 4.96 (spec: 4.51 / 4.96).
    t2 = tariff(element(pc("ENERGY", 0.22, 100, 10.0)))
    assert price(t2, usage(MONDAY, 120, "20.45")) == ("4.51", "4.96")


STEP_EXAMPLE = tariff(
    element(
        pc("TIME", 1.20, 1800), pc("PARKING_TIME", 1.00, 900), start_time="00:00", end_time="17:00"
    ),
    element(
        pc("TIME", 2.40, 900), pc("PARKING_TIME", 1.00, 900), start_time="17:00", end_time="20:00"
    ),
    element(pc("TIME", 2.40, 900), start_time="20:00", end_time="23:59"),
)


def test_spec_step_size_switching_example_2():
    # 16:35, 35 min charging, unplug. 25 min before 17:00 at 1.20/h = 0.50 (its 30-min step is
    # ignored: not the last element). After 17:00: 10 min; total 35 -> 45 min (last step 900 s),
    # so 20 min at 2.40/h = 0.80. Total 1.30 (spec: 1.30).
    start = datetime(2024, 1, 15, 16, 35, tzinfo=UTC)
    q = quote(STEP_EXAMPLE, usage(start, 35, 5))
    assert totals(q) == ("1.30", "1.30")
    assert [(c.price, c.excl_vat) for c in q.components] == [
        (D("1.2"), D("0.5000")),
        (D("2.4"), D("0.8000")),
    ]


def test_spec_step_size_switching_example_1_rounds_parking_separately():
    # 16:55, 10 min charging, 2 min parking. TIME: 5 min * 1.20/h = 0.10; total 10 -> 15 min, so
    # 10 min * 2.40/h = 0.40. PARKING (17:05-17:07): 2 -> 15 min * 1.00/h = 0.25. Total 0.75.
    # The spec says 0.50 ("parking falls within the extra charging minutes"), which contradicts
    # its complex example where TIME and PARKING_TIME are rounded independently (ocpi#396).
    start = datetime(2024, 1, 15, 16, 55, tzinfo=UTC)
    assert price(STEP_EXAMPLE, usage(start, 12, 2, parking=2)) == ("0.75", "0.75")


def test_spec_step_size_switching_to_free_parking():
    # 19:55, 10 min charging, 2 min parking. TIME 5 min + 5 min, both 2.40/h (one line); total
    # 10 -> 15 min * 2.40/h = 0.60. Parking 20:05-20:07: no parking element after 20:00 -> free.
    # Total 0.60 (spec: 0.60).
    start = datetime(2024, 1, 15, 19, 55, tzinfo=UTC)
    q = quote(STEP_EXAMPLE, usage(start, 12, 2, parking=2))
    assert totals(q) == ("0.60", "0.60")
    assert [(c.type, c.volume) for c in q.components] == [("TIME", D("0.250000"))]


def test_step_size_of_last_used_component_when_dimension_becomes_free():
    # 19:40 charge 10 min: 10 -> 15 min * 2.40/h = 0.60. Park 19:50-20:10: 10 min billed before
    # 20:00, rounded with that (last used) component's 900 s -> 15 min * 1.00/h = 0.25. 0.85.
    start = datetime(2024, 1, 15, 19, 40, tzinfo=UTC)
    assert price(STEP_EXAMPLE, usage(start, 30, 2, parking=20)) == ("0.85", "0.85")


@pytest.mark.parametrize(
    "step, amount, total",
    [
        (1, "0.0290", "0.03"),  # 115.2 Wh -> 116 Wh * 0.25/kWh = 0.029
        (25, "0.0313", "0.03"),  # -> 125 Wh = 0.03125
        (500, "0.1250", "0.13"),  # -> 500 Wh = 0.125 -> 0.13 (half up)
    ],
)
def test_spec_step_size_energy_note(step, amount, total):
    t = tariff(element(pc("ENERGY", 0.25, step)))
    q = quote(t, usage(MONDAY, 10, "0.1152"))
    assert q.components[0].excl_vat == D(amount)
    assert q.total_excl_vat == D(total)


def test_spec_max_power_example_with_session_peak():
    # The spec's 20.30 needs a power profile; a Usage has one peak value for the session.
    t = load("tariffrestriction_example_max_power.json")
    # 41.5 kWh at 48 kW peak: fallback 0.50 -> 20.75; * 1.2 = 24.90
    assert price(t, usage(MONDAY, 60, "41.5", max_power_kw=48)) == ("20.75", "24.90")
    # 6 kW: < 16 -> 0.20 * 41.5 = 8.30; 9.96
    assert price(t, usage(MONDAY, 60, "41.5", max_power_kw=6)) == ("8.30", "9.96")
    # exactly 16 kW: max_power is exclusive -> 0.35 * 41.5 = 14.525 -> 14.53; 17.43
    assert price(t, usage(MONDAY, 60, "41.5", max_power_kw=16)) == ("14.53", "17.43")


def test_spec_max_duration_example_with_uniform_energy():
    # The spec's 0.30 assumes 5 kWh in the first 30 min and 1.2 kWh in the last 10; a Usage
    # delivers energy uniformly: 6.2 kWh over 40 min -> 4.65 kWh free, 1.55 kWh * 0.25 = 0.3875
    # -> 0.39; * 1.2 = 0.465 -> 0.47
    t = load("tariffrestriction_example_max_duration.json")
    assert price(t, usage(MONDAY, 40, "6.2")) == ("0.39", "0.47")


# --------------------------------------------------------------------------- restrictions


def test_time_window_past_midnight():
    night = tariff(
        element(pc("ENERGY", 0.20, 1), start_time="22:00", end_time="06:00"),
        element(pc("ENERGY", 0.40, 1)),
    )
    # 21:00-07:00 local, 10 kWh at 1 kWh/h: 8 h in the window * 0.20 = 1.60, 2 h * 0.40 = 0.80
    start = datetime(2024, 1, 15, 21, 0, tzinfo=AMS)
    assert price(night, usage(start, 600, 10), tz="Europe/Amsterdam") == ("2.40", "2.40")
    # 23:00-01:00: entirely inside the wrapping window: 2 kWh * 0.20 = 0.40
    start = datetime(2024, 1, 15, 23, 0, tzinfo=AMS)
    assert price(night, usage(start, 120, 2), tz="Europe/Amsterdam") == ("0.40", "0.40")
    # 06:00-22:00: never inside: 16 kWh * 0.40 = 6.40 (end_time exclusive, start_time inclusive)
    start = datetime(2024, 1, 16, 6, 0, tzinfo=AMS)
    assert price(night, usage(start, 960, 16), tz="Europe/Amsterdam") == ("6.40", "6.40")


def test_day_of_week_uses_location_time_zone():
    weekend = tariff(
        element(pc("TIME", 3.00, 60), day_of_week=["SATURDAY", "SUNDAY"]),
        element(pc("TIME", 2.00, 60)),
    )
    start = datetime(2024, 1, 19, 22, 0, tzinfo=UTC)  # Friday 23:00 in Amsterdam
    u = usage(start, 120, 10)
    # Amsterdam: Fri 23:00-24:00 at 2.00 + Sat 00:00-01:00 at 3.00 = 5.00
    assert price(weekend, u, tz="Europe/Amsterdam") == ("5.00", "5.00")
    # UTC (default): Fri 22:00-24:00 at 2.00 = 4.00
    assert price(weekend, u) == ("4.00", "4.00")


def test_start_and_end_date():
    promo = tariff(
        element(pc("ENERGY", 0.10, 1), start_date="2024-01-16", end_date="2024-01-17"),
        element(pc("ENERGY", 0.30, 1)),
    )
    # Jan 15 12:00 - Jan 17 12:00, 48 kWh at 1 kWh/h: Jan 16 (24 kWh) at 0.10 = 2.40;
    # Jan 15 afternoon + Jan 17 morning (24 kWh; end_date exclusive) at 0.30 = 7.20 -> 9.60
    start = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)
    assert price(promo, usage(start, 48 * 60, 48)) == ("9.60", "9.60")


def test_min_duration():
    t = tariff(element(pc("TIME", 6.00, 60), min_duration=7200), element(pc("TIME", 2.00, 60)))
    # 3 h: 2 h * 2.00 + 1 h * 6.00 = 10.00
    assert price(t, usage(MONDAY, 180, 30)) == ("10.00", "10.00")
    # exactly 2 h: the dearer element would start at 7200 s, which is the end: 4.00
    assert price(t, usage(MONDAY, 120, 20)) == ("4.00", "4.00")
    assert price_lines(t)[0]["restrictions"] == "after 2 h"


def test_min_and_max_kwh_split_energy_and_time():
    t = tariff(
        element(pc("ENERGY", 0.10, 1), pc("TIME", 1.00, 60), max_kwh=4),
        element(pc("ENERGY", 0.30, 1), pc("TIME", 2.00, 60)),
    )
    # 2 h, 10 kWh at 5 kWh/h: 4 kWh reached after 48 min.
    # ENERGY 4 * 0.10 + 6 * 0.30 = 0.40 + 1.80 = 2.20
    # TIME 0.8 h * 1.00 + 1.2 h * 2.00 = 0.80 + 2.40 = 3.20 -> 5.40
    q = quote(t, usage(MONDAY, 120, 10))
    assert totals(q) == ("5.40", "5.40")
    assert [(c.type, c.volume) for c in q.components] == [
        ("ENERGY", D("4.000000")),
        ("ENERGY", D("6.000000")),
        ("TIME", D("0.800000")),
        ("TIME", D("1.200000")),
    ]


def test_current_restrictions_use_session_values():
    t = tariff(
        element(pc("TIME", 1.00, 1), max_current=32),
        element(pc("TIME", 2.00, 1), min_current=32),
        element(pc("TIME", 5.00, 1)),
    )
    assert price(t, usage(MONDAY, 60, 5, max_current_a=16)) == ("1.00", "1.00")
    assert price(t, usage(MONDAY, 60, 5, max_current_a=32)) == ("2.00", "2.00")  # max excl.
    # min_current is compared with the session minimum when given
    assert price(t, usage(MONDAY, 60, 5, max_current_a=40, min_current_a=10)) == ("5.00", "5.00")
    assert price(t, usage(MONDAY, 60, 5)) == ("5.00", "5.00")  # unknown -> fallback


def test_min_power_restriction():
    t = tariff(element(pc("ENERGY", 0.60, 1), min_power=50), element(pc("ENERGY", 0.40, 1)))
    assert price(t, usage(MONDAY, 30, 40, max_power_kw=150)) == ("24.00", "24.00")  # 40 * 0.60
    assert price(t, usage(MONDAY, 30, 40, max_power_kw=22)) == ("16.00", "16.00")  # 40 * 0.40
    u = usage(MONDAY, 30, 40, max_power_kw=150, min_power_kw=20)  # the minimum decides
    assert price(t, u) == ("16.00", "16.00")


def test_fallback_is_per_dimension():
    t = tariff(
        element(
            pc("ENERGY", 0.30, 1, 21),
            pc("TIME", 1.00, 60, 21),
            start_time="08:00",
            end_time="20:00",
        ),
        element(pc("ENERGY", 0.20, 1, 21)),  # active at night but has no TIME
        element(pc("TIME", 0.50, 60, 21)),
    )
    # 19:00-21:00, 4 kWh. ENERGY 2 * 0.30 + 2 * 0.20 = 1.00; TIME 1 h * 1.00 + 1 h * 0.50 = 1.50
    # 2.50; incl. 0.726 + 0.484 + 1.21 + 0.605 = 3.025 -> 3.03
    q = quote(t, usage(datetime(2024, 1, 15, 19, 0, tzinfo=UTC), 120, 4))
    assert totals(q) == ("2.50", "3.03")
    assert [(c.type, c.price) for c in q.components] == [
        ("ENERGY", D("0.3")),
        ("ENERGY", D("0.2")),
        ("TIME", D("1.0")),
        ("TIME", D("0.5")),
    ]


def test_dimension_without_matching_element_is_free():
    t = tariff(element(pc("ENERGY", 0.30, 1), start_time="08:00", end_time="09:00"))
    # 07:00-09:00, 2 kWh: only 08:00-09:00 (1 kWh) is priced: 0.30
    assert price(t, usage(datetime(2024, 1, 15, 7, 0, tzinfo=UTC), 120, 2)) == ("0.30", "0.30")


def test_flat_fee_once_from_first_active_element():
    t = tariff(
        element(pc("FLAT", 1.00, 1), start_time="18:00"),
        element(pc("FLAT", 0.50, 1)),
        element(pc("ENERGY", 0.0, 1)),
    )
    start = datetime(2024, 1, 15, 17, 30, tzinfo=UTC)
    q = quote(t, usage(start, 60, 10))  # starts before 18:00: the fallback's 0.50, only once
    assert [(c.type, c.price) for c in q.components if c.type == "FLAT"] == [("FLAT", D("0.5"))]
    assert q.total_excl_vat == D("0.50")
    assert quote(t, usage(start + timedelta(minutes=30), 60, 10)).total_excl_vat == D("1.00")


def test_empty_session_still_pays_flat_fee():
    q = quote(load("tariff_9_025kwh_start.json"), usage(MONDAY, 0, 0))
    assert totals(q) == ("0.50", "0.60")


def test_daylight_saving_gap():
    # 2024-03-31 Amsterdam: 02:00 local jumps to 03:00. The window 00:00-02:30 ends at the jump.
    t = tariff(
        element(pc("TIME", 2.00, 1), start_time="00:00", end_time="02:30"),
        element(pc("TIME", 1.00, 1)),
    )
    start = datetime(2024, 3, 31, 0, 0, tzinfo=AMS)  # 23:00 UTC
    end = datetime(2024, 3, 31, 4, 0, tzinfo=AMS)  # 02:00 UTC: 3 real hours
    q = quote(t, Usage(start, end, D(3)), tz="Europe/Amsterdam")
    # 2 h (23:00-01:00 UTC) * 2.00 + 1 h (03:00-04:00 local) * 1.00 = 5.00
    assert totals(q) == ("5.00", "5.00")


def test_daylight_saving_repeated_hour():
    # 2024-10-27 Amsterdam: 03:00 local goes back to 02:00, so 02:00-02:30 happens twice.
    t = tariff(element(pc("TIME", 6.00, 1), start_time="02:00", end_time="02:30"))
    start = datetime(2024, 10, 26, 23, 0, tzinfo=UTC)  # 01:00 local (+02)
    q = quote(t, usage(start, 240, 4), tz="Europe/Amsterdam")
    # 2 * 30 min * 6.00/h = 6.00
    assert totals(q) == ("6.00", "6.00")


# --------------------------------------------------------------------------- step size, VAT, bounds


def test_energy_step_size_of_last_component_rounds_the_total():
    t = tariff(element(pc("ENERGY", 0.20, 1000), max_kwh=10), element(pc("ENERGY", 0.30, 500)))
    # 12.2 kWh: 10 * 0.20 = 2.00; total 12.2 -> 12.5 kWh (500 Wh), the extra 0.3 kWh at 0.30:
    # 2.5 * 0.30 = 0.75 -> 2.75
    q = quote(t, usage(MONDAY, 60, "12.2"))
    assert totals(q) == ("2.75", "2.75")
    assert [c.volume for c in q.components] == [D("10.000000"), D("2.500000")]
    # 5.2 kWh only uses the first element: 5.2 -> 6 kWh * 0.20 = 1.20
    assert price(t, usage(MONDAY, 60, "5.2")) == ("1.20", "1.20")


def test_time_step_rounds_up_to_next_block():
    t = tariff(element(pc("TIME", 6.00, 300)))
    # 6 min -> 10 min (spec's step_size text) = 1/6 h * 6.00 = 1.00
    assert price(t, usage(MONDAY, 6, 1)) == ("1.00", "1.00")
    # 10 min 1 s -> 15 min = 1.50
    u = Usage(MONDAY, MONDAY + timedelta(minutes=10, seconds=1), D(1))
    assert price(t, u) == ("1.50", "1.50")


def test_parking_is_not_charging_time():
    # TIME only: the 30 parking minutes are free: 2 h * 2.00 = 4.00; * 1.1 = 4.40
    u = usage(MONDAY, 150, 20, parking=30)
    assert price(load("tariff_1_simple_2hour.json"), u) == ("4.00", "4.40")
    # PARKING_TIME only: charging is free, 30 min * 1.00/h = 0.50
    t = tariff(element(pc("PARKING_TIME", 1.00, 60)))
    assert price(t, u) == ("0.50", "0.50")


def test_vat_per_component_and_missing_vat():
    t = tariff(element(pc("ENERGY", 0.30, 1, 21.0), pc("FLAT", 1.00, 1), pc("TIME", 1.00, 60, 0)))
    q = quote(t, usage(MONDAY, 60, 10))
    # ENERGY 3.00 * 1.21 = 3.63; TIME 1.00 at 0 %; FLAT 1.00 without VAT -> counted as 0 %
    assert totals(q) == ("5.00", "5.63")
    d = q.as_dict()
    assert [(c["type"], c["vat"], c["incl_vat"]) for c in d["components"]] == [
        ("ENERGY", "21.0", "3.6300"),
        ("TIME", "0", "1.0000"),
        ("FLAT", None, "1.0000"),
    ]


def test_min_and_max_price_clamp_excl_and_incl_independently():
    t = dict(
        load("tariff_8_simple_025kwh.json"), min_price={"excl_vat": "0.50", "incl_vat": "0.70"}
    )
    # 1 kWh: 0.25 / 0.275 -> 0.50 / 0.70
    assert price(t, usage(MONDAY, 60, 1)) == ("0.50", "0.70")
    # min_price without incl_vat: bound incl = 1.00 * (0.275 / 0.25) = 1.10
    t = dict(load("tariff_8_simple_025kwh.json"), min_price={"excl_vat": 1.00})
    assert price(t, usage(MONDAY, 60, 1)) == ("1.00", "1.10")
    # max_price only on excl; incl scaled the same way: 20 kWh 5.00 / 5.50 -> 4.00 / 4.40
    t = dict(load("tariff_8_simple_025kwh.json"), max_price={"excl_vat": 4.00})
    assert price(t, usage(MONDAY, 60, 20)) == ("4.00", "4.40")


def test_decimal_artefacts_do_not_add_a_step():
    # 30.25 kWh over 9928 s, cut at five duration boundaries: the parts are 28-digit quotients
    # whose sum comes out as 30.25000000000000000000000001 kWh. With 1 Wh steps that must still
    # bill 30.25 kWh (not 30.251). All parts cost 1.00/kWh: 30.25.
    t = tariff(
        *[element(pc("ENERGY", 1, 1), max_duration=s) for s in (1517, 2560, 6951, 7724, 8154)],
        element(pc("ENERGY", 1, 1)),
    )
    q = quote(t, Usage(MONDAY, MONDAY + timedelta(seconds=9928), D("30.25")))
    assert [(c.volume, c.excl_vat) for c in q.components] == [(D("30.250000"), D("30.2500"))]


# --------------------------------------------------------------------------- API details


def test_as_dict_is_json_with_strings():
    q = quote(load("tariff_11_not_possible_alt_text.json"), usage(MONDAY, 150, 20))
    d = json.loads(json.dumps(q.as_dict()))
    assert set(d) == {"currency", "total_excl_vat", "total_incl_vat", "components"}
    assert d["total_excl_vat"] == "5.15" and d["total_incl_vat"] == "5.50"
    assert d["components"][0] == {
        "type": "TIME",
        "volume": "2.500000",
        "price": "1.9",
        "vat": "5.2",
        "excl_vat": "4.7500",
        "incl_vat": "4.9970",
    }


def test_usage_coerces_numbers():
    u = Usage(MONDAY, MONDAY + timedelta(hours=1), 0.1, parking_minutes=5, max_power_kw="22")
    assert (u.kwh, u.parking_minutes, u.max_power_kw) == (D("0.1"), D(5), D(22))


def test_price_lines_order_units_and_texts():
    lines = price_lines(COMPLEX)
    assert [line["type"] for line in lines] == [
        "TIME",
        "TIME",
        "TIME",
        "FLAT",
        "PARKING_TIME",
        "PARKING_TIME",
    ]
    assert [line["restrictions"] for line in lines] == [
        "below 32 A",
        "on weekdays, from 32 A",
        "on weekends, from 32 A",
        "",
        "between 09:00 and 18:00, on weekdays",
        "between 10:00 and 17:00, on Saturday",
    ]
    time_line = lines[1]
    # 2.00 * 1.2 = 2.40 / h; 0.04 / min
    assert time_line["price_incl_vat"] == D("2.40")
    assert time_line["per_minute_incl_vat"] == D("0.04")
    assert time_line["unit"] == "hour" and time_line["step_size"] == 600
    assert lines[3]["unit"] == "session" and lines[3]["per_minute_incl_vat"] is None


def test_price_lines_energy_first_and_texts():
    night = {"start_time": "22:00", "end_time": "06:00"}
    t = tariff(
        element(pc("FLAT", 0.50, 1)),
        element(pc("PARKING_TIME", 6.00, 60, 20), min_duration=7200),
        element(pc("TIME", 2.00, 60, 10)),
        element(pc("ENERGY", 0.20, 1, 21), **night),
        element(pc("ENERGY", 0.20, 1, 21), **night),
    )  # duplicate: listed once
    lines = price_lines(t)
    assert [(line["type"], line["restrictions"]) for line in lines] == [
        ("ENERGY", "between 22:00 and 06:00"),
        ("TIME", ""),
        ("FLAT", ""),
        ("PARKING_TIME", "after 2 h"),
    ]
    energy, time_, _, parking = lines
    assert energy["price_incl_vat"] == D("0.242") and energy["unit"] == "kWh"
    assert time_["per_minute_incl_vat"] == D("0.036667")  # 2.20 / 60
    assert parking["per_minute_incl_vat"] == D("0.12")  # 7.20 / 60
    assert [line["restrictions"] for line in price_lines(FIRST_HOUR_FREE)] == [
        "first 1 kWh",
        "after 1 kWh",
        "first 1 h",
        "from 1 h to 3 h",
        "after 3 h",
    ]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "bad, message",
    [
        ([], "JSON object"),
        ({"elements": [element(pc("FLAT", 1, 1))]}, "currency"),
        ({"currency": 978, "elements": [element(pc("FLAT", 1, 1))]}, "currency"),
        ({"currency": "EUR"}, "elements"),
        ({"currency": "EUR", "elements": []}, "elements"),
        (tariff("nope"), "elements[0]"),
        (tariff({"price_components": []}), "price_components"),
        (tariff(element(pc("KWH", 1, 1))), "type"),
        (tariff(element(pc("ENERGY", "cheap", 1))), "price"),
        (tariff(element(pc("ENERGY", True, 1))), "price"),
        (tariff(element({"type": "ENERGY", "step_size": 1})), "price"),
        (tariff(element(pc("ENERGY", -0.1, 1))), "price"),
        (tariff(element(pc("ENERGY", 0.1, 1, "high"))), "vat"),
        (tariff(element(pc("ENERGY", 0.1, -1))), "step_size"),
        (tariff(element(pc("ENERGY", 0.1, 1.5))), "step_size"),
        (tariff(element(pc("ENERGY", 0.1, "60"))), "step_size"),
        (tariff(element(pc("ENERGY", 0.1, 1), start_time="25:00")), "start_time"),
        (tariff(element(pc("ENERGY", 0.1, 1), end_time="7:00")), "end_time"),
        (tariff(element(pc("ENERGY", 0.1, 1), start_date="2024-02-30")), "start_date"),
        (tariff(element(pc("ENERGY", 0.1, 1), day_of_week=["FUNDAY"])), "day_of_week"),
        (tariff(element(pc("ENERGY", 0.1, 1), day_of_week="MONDAY")), "day_of_week"),
        (tariff(element(pc("ENERGY", 0.1, 1), max_kwh="lots")), "max_kwh"),
        (tariff(element(pc("ENERGY", 0.1, 1), reservation="MAYBE")), "reservation"),
        (tariff(element(pc("FLAT", 1, 1)), min_price=5), "min_price"),
        (tariff(element(pc("FLAT", 1, 1)), max_price={}), "max_price.excl_vat"),
    ],
)
def test_malformed_tariffs(bad, message):
    with pytest.raises(TariffError, match=message.replace("[", r"\[").replace("]", r"\]")):
        quote(bad, usage(MONDAY, 60, 1))
    with pytest.raises(TariffError):
        price_lines(bad)


def test_tariff_error_is_a_value_error():
    assert issubclass(TariffError, ValueError)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"start": datetime(2024, 1, 15, 9, 30)}, "timezone-aware"),
        ({"end": MONDAY - timedelta(seconds=1)}, "before start"),
        ({"kwh": D(-1)}, "kwh must not be negative"),
        ({"kwh": "a lot"}, "kwh must be a number"),
        ({"parking_minutes": D(61)}, "exceeds"),
        ({"max_power_kw": D(-5)}, "max_power_kw"),
    ],
)
def test_bad_usage(kwargs, message):
    base = {"start": MONDAY, "end": MONDAY + timedelta(hours=1), "kwh": D(1)}
    with pytest.raises(ValueError, match=message):
        Usage(**{**base, **kwargs})


def test_unknown_time_zone():
    with pytest.raises(ValueError, match="time zone"):
        quote(load("tariff_8_simple_025kwh.json"), usage(MONDAY, 60, 1), tz="Mars/Olympus")


# --------------------------------------------------------------------------- management command


def write(tmp_path, text: str) -> str:
    path = tmp_path / "tariff.json"
    path.write_text(text)
    return str(path)


def test_quote_from_args(tmp_path):
    from stations.management.commands.quote import quote_from_args

    path = write(
        tmp_path,
        json.dumps(
            tariff(
                element(
                    pc("FLAT", 0.50, 1, 20.0),
                    pc("ENERGY", 0.25, 1, 10.0),
                    pc("PARKING_TIME", 2.00, 900, 20.0),
                )
            )
        ),
    )
    # Naive times are UTC. 20 kWh + 40 min parking: 7.00 / 7.90 (spec example above)
    result = quote_from_args(
        path,
        "2024-01-15T09:30",
        "2024-01-15T11:10",
        "20",
        parking_minutes="40",
        tz="Europe/Amsterdam",
    )
    assert (result["total_excl_vat"], result["total_incl_vat"]) == ("7.00", "7.90")
    complex_path = write(tmp_path, json.dumps(COMPLEX))
    # Saturday 13:30 Amsterdam = 12:30 UTC; see test_spec_complex_example_saturday: 12.50
    result = quote_from_args(
        complex_path,
        "2024-01-20T13:30:00+01:00",
        "2024-01-20T16:35:00+01:00",
        "30",
        parking_minutes="71",
        max_current="43",
        tz="Europe/Amsterdam",
    )
    assert result["total_excl_vat"] == "12.50"


@pytest.mark.parametrize(
    "content, args, message",
    [
        (None, {}, "cannot read"),
        ("{not json", {}, "not valid JSON"),
        ("{}", {}, "not a usable OCPI 2.2.1 tariff"),
        ("GOOD", {"start": "yesterday"}, "--start"),
        ("GOOD", {"end": "2024-01-15T08:00:00Z"}, "before start"),
        ("GOOD", {"kwh": "-3"}, "--kwh"),
        ("GOOD", {"kwh": "many"}, "--kwh"),
        ("GOOD", {"parking_minutes": "600"}, "exceeds"),
        ("GOOD", {"max_power": "fast"}, "--max-power"),
        ("GOOD", {"tz": "Nowhere/Town"}, "time zone"),
    ],
)
def test_quote_from_args_errors(tmp_path, content, args, message):
    from django.core.management import CommandError

    from stations.management.commands.quote import quote_from_args

    if content is None:
        path = str(tmp_path / "missing.json")
    else:
        good = json.dumps(load("tariff_8_simple_025kwh.json"))
        path = write(tmp_path, good if content == "GOOD" else content)
    call = {"start": "2024-01-15T09:30:00Z", "end": "2024-01-15T10:30:00Z", "kwh": "5", **args}
    with pytest.raises(CommandError, match=message):
        quote_from_args(path, call.pop("start"), call.pop("end"), call.pop("kwh"), **call)


def test_quote_command_prints_json(tmp_path):
    from django.conf import settings
    from django.core.management import call_command

    from stations.management.commands.quote import Command

    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        command = "quote"  # the project's settings: also checks that Django finds the command
    else:  # engine-only run (-p no:django): bare settings suffice for a command without models
        if not settings.configured:
            settings.configure()
        command = Command()
    out = io.StringIO()
    call_command(
        command,
        "--tariff",
        str(examples() / "tariff_9_025kwh_start.json"),
        "--start",
        "2024-01-15T09:30:00+01:00",
        "--end",
        "2024-01-15T11:00:00+01:00",
        "--kwh",
        "20",
        stdout=out,
    )
    # 0.50 + 20 * 0.25 = 5.50; 0.60 + 5.50 = 6.10
    result = json.loads(out.getvalue())
    assert (result["currency"], result["total_excl_vat"], result["total_incl_vat"]) == (
        "EUR",
        "5.50",
        "6.10",
    )
    assert [c["type"] for c in result["components"]] == ["ENERGY", "FLAT"]
