"""Station operations: scans and tamper signals, planned price changes, and the two staff roles."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from functools import partial

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from checkout import services
from checkout.states import SessionStatus as S
from stations import qr, scans
from stations.models import Evse, PrintBatch, ScanDay, ScanMark, SimulatedSession
from tests.factories import ENERGY_TARIFF, ConnectorFactory, TariffFactory
from tests.test_concurrency import race


def scanned(client, code: str, ip: str = "192.0.2.1", **headers) -> int:
    return client.get(reverse("checkout:scan", args=[code]), REMOTE_ADDR=ip, **headers).status_code


def addresses(n: int) -> list[str]:
    """`n` addresses the scan counter tells apart today (two clients may share one of its 65,536
    buckets: the tests skip such a pair rather than depend on the date)."""
    day, found = timezone.localdate(), {}
    for i in range(1, 255):
        found.setdefault(scans.client_bucket(f"198.51.100.{i}", day), f"198.51.100.{i}")
        if len(found) == n:
            return list(found.values())
    raise AssertionError("not enough distinct buckets")


# --- scans -------------------------------------------------------------------------------------


def test_every_scan_is_counted_by_kind_once_per_client_without_personal_data(client, connector):
    evse = connector.evse
    good = qr.code_for(evse)
    assert scanned(client, good) == 200 and scanned(client, good) == 200
    Evse.objects.filter(pk=evse.pk).update(sticker_version=2)  # a reprint voided the old sticker
    assert scanned(client, good) == 404
    forged = f"{evse.pk}-2-{'a' * 16}"  # names the EVSE, but we never signed it
    assert scanned(client, forged) == 404
    assert scanned(client, "not-a-code") == 404 and scanned(client, "not-a-code") == 404
    scans.roll_up(timezone.localdate() + timedelta(days=1))  # the day is over
    today = ScanDay.objects.get(evse=evse)
    assert (today.valid, today.voided, today.invalid) == (1, 1, 1)
    assert ScanDay.objects.get(evse=None).invalid == 1
    # Counts and a day: nothing that could identify who scanned.
    assert {f.name for f in ScanDay._meta.fields} == {
        "id",
        "evse",
        "day",
        "valid",
        "voided",
        "invalid",
    }
    assert not ScanMark.objects.exists()


def test_one_client_with_a_forged_code_does_not_flag_a_charger(client, connector):
    evse = connector.evse
    forged = f"{evse.pk}-1-{'a' * 16}"  # EVSE ids are sequential: anyone can name any charger
    assert scanned(client, forged) == 404
    assert evse.pk not in scans.flagged_evse_ids()
    # Hammering, or changing the browser it claims to be, is still one client.
    for n in range(50):
        scanned(client, forged, HTTP_USER_AGENT=f"agent {n}")
    assert scans.signals([evse.pk])[evse.pk].suspicious == 1
    assert evse.pk not in scans.flagged_evse_ids()


def test_forged_and_voided_codes_from_several_clients_flag_it(
    client, admin_client, connector, settings
):
    assert settings.SCAN_TAMPER_MIN_CLIENTS == 3
    evse = connector.evse
    voided = qr.code_for(evse)
    Evse.objects.filter(pk=evse.pk).update(sticker_version=2)
    first, second, third = addresses(3)
    scanned(client, f"{evse.pk}-2-{'a' * 16}", ip=first)
    scanned(client, voided, ip=second)
    assert evse.pk not in scans.flagged_evse_ids()
    scanned(client, f"{evse.pk}-2-{'b' * 16}", ip=third)
    assert evse.pk in scans.flagged_evse_ids()
    page = admin_client.get(reverse("admin:stations_evse_changelist")).content.decode()
    assert "3 clients scanned voided or invalid codes" in page


def test_fifty_scans_of_a_genuine_code_by_one_client_count_once(client, connector):
    evse = connector.evse
    for _ in range(50):
        assert scanned(client, qr.code_for(evse)) == 200
    assert scans.signals([evse.pk])[evse.pk].recent == 1
    assert ScanMark.objects.count() == 1


def test_a_covered_sticker_shows_even_when_one_client_hammers_the_code(client, connector):
    evse = connector.evse
    _history(evse, 5, range(7, 35), timezone.localdate())  # 35 clients a week expected
    for _ in range(50):  # someone keeps the count up from one phone, or one script
        scanned(client, qr.code_for(evse))
    found = scans.signals([evse.pk])[evse.pk]
    assert (found.recent, found.dropped) == (1, True)
    assert evse.pk in scans.flagged_evse_ids()


def test_the_client_hash_changes_daily_and_no_address_is_kept(client, connector, monkeypatch):
    evse, ip = connector.evse, "203.0.113.7"
    monday = timezone.make_aware(datetime(2030, 1, 7, 12))
    for day in (monday, monday + timedelta(days=1)):
        monkeypatch.setattr(timezone, "now", lambda day=day: day)
        assert scanned(client, qr.code_for(evse), ip=ip) == 200
    marks = list(ScanMark.objects.order_by("day").values())
    assert [m["day"].isoformat() for m in marks] == ["2030-01-07", "2030-01-08"]
    assert marks[0]["client"] != marks[1]["client"]  # the same client, not recognisable a day later
    rows = marks + list(ScanDay.objects.values())
    assert not any(ip in str(value) for row in rows for value in row.values())
    # An IPv6 client is its /64: one machine cannot pose as many by changing its interface id.
    day = monday.date()
    assert scans.client_bucket("2001:db8:1:2::1", day) == scans.client_bucket(
        "2001:db8:1:2::9", day
    )
    assert scans.client_bucket("2001:db8:1:2::1", day) != scans.client_bucket(
        "2001:db8:1:3::1", day
    )


def test_marks_become_counts_after_the_day_and_are_deleted(client, connector, monkeypatch):
    evse = connector.evse
    today = timezone.localdate()
    yesterday = timezone.now() - timedelta(days=1)
    ScanDay.objects.create(evse=evse, day=yesterday.date(), valid=2)  # counted by an earlier run
    with monkeypatch.context() as clock:
        clock.setattr(timezone, "now", lambda: yesterday)
        for ip in addresses(3):
            scanned(client, qr.code_for(evse), ip=ip)
        scanned(client, "not-a-code")
    scanned(client, qr.code_for(evse))  # today's mark stays until the day is over
    before = scans.signals([evse.pk])[evse.pk]
    assert scans.roll_up() == 4 and scans.roll_up() == 0  # a second run counts nothing twice
    assert scans.signals([evse.pk])[evse.pk] == before and before.recent == 6
    assert ScanDay.objects.get(evse=evse, day=yesterday.date()).valid == 5
    assert ScanDay.objects.get(evse=None, day=yesterday.date()).invalid == 1
    assert list(ScanMark.objects.values_list("day", flat=True)) == [today]


def _history(evse, per_day: int, days: range, today):
    ScanDay.objects.bulk_create(
        ScanDay(evse=evse, day=today - timedelta(days=d), valid=per_day) for d in days
    )


def test_a_sharp_drop_against_its_own_history_is_flagged(db):
    today = timezone.localdate()
    covered, quiet, steady = (ConnectorFactory().evse for _ in range(3))
    _history(
        covered, 3, range(7, 35), today
    )  # busy for four weeks, then nothing: a covered sticker?
    _history(quiet, 1, range(7, 17), today)  # too little history to call a drop
    _history(steady, 3, range(35), today)
    found = scans.signals([covered.pk, quiet.pk, steady.pk], today)
    assert found[covered.pk].dropped and found[covered.pk].expected == 21
    assert not found[quiet.pk].flagged and not found[steady.pk].flagged
    ScanDay.objects.filter(evse=steady, day=today).update(voided=1, invalid=1)
    assert scans.flagged_evse_ids(today) == {covered.pk}  # two clients: not yet a signal
    ScanDay.objects.filter(evse=steady, day=today - timedelta(days=6)).update(invalid=1)
    assert scans.flagged_evse_ids(today) == {covered.pk, steady.pk}  # three in the week


def test_the_admin_shows_scans_checkouts_conversion_and_flags(
    admin_client, connector, pay, tick, client
):
    evse = connector.evse
    for ip in addresses(4):
        scanned(client, qr.code_for(evse), ip=ip)
    pay(connector)
    tick(timezone.now() + timedelta(minutes=1))  # it charges: a conversion
    _history(evse, 5, range(7, 35), timezone.localdate())
    page = admin_client.get(reverse("admin:stations_evse_changelist")).content.decode()
    assert "scans dropped: 4 against 35 expected" in page
    assert "25 %" in page  # 4 scans, 1 charge
    other = ConnectorFactory().evse
    scanned(client, f"{other.pk}-1-{'a' * 16}")  # one client forging a code: shown, not flagged
    page = admin_client.get(reverse("admin:stations_evse_changelist")).content.decode()
    assert "ok (1 with voided or invalid codes)" in page
    flagged = admin_client.get(
        reverse("admin:stations_evse_changelist") + "?tamper=flagged"
    ).content.decode()
    assert evse.evse_id in flagged and other.evse_id not in flagged


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("requires_postgres")
def test_simultaneous_roll_ups_and_scans_count_every_client_once():
    evse = ConnectorFactory().evse
    yesterday = timezone.localdate() - timedelta(days=1)
    ScanMark.objects.bulk_create(
        ScanMark(evse=evse, day=yesterday, kind="valid", client=n) for n in range(2000)
    )
    same_client = partial(scans.scan_record, evse_id=evse.pk, kind="valid", client="192.0.2.1")
    results = race(scans.roll_up, scans.roll_up, scans.roll_up, same_client, same_client)
    assert sum(results[:3]) == 2000 and results[3:] == [None, None]
    assert ScanDay.objects.get(evse=evse, day=yesterday).valid == 2000
    assert ScanMark.objects.filter(day=timezone.localdate()).count() == 1


# --- planned price changes --------------------------------------------------------------------


@pytest.fixture
def price_change(connector):
    """The connector's tariff is replaced by one twice the price from an hour from now."""
    old = connector.tariff
    dearer = {
        **ENERGY_TARIFF,
        "elements": [
            {"price_components": [{"type": "ENERGY", "price": "1.00", "vat": 21.0, "step_size": 1}]}
        ],
    }
    new = TariffFactory(operator=old.operator, name="Dearer", ocpi=dearer)
    old.valid_until, old.replaced_by = timezone.now() + timedelta(hours=1), new
    old.full_clean()
    old.save()
    return old, new


def test_a_replacement_tariff_takes_over_at_its_time(connector, price_change):
    old, new = price_change
    assert connector.tariff_at(timezone.now()) == old
    assert connector.tariff_at(old.valid_until) == new


def test_the_page_and_the_session_use_the_tariff_in_force(
    client, connector, price_change, stripe, monkeypatch
):
    old, new = price_change
    later = old.valid_until + timedelta(minutes=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    page = client.get(reverse("checkout:scan", args=[qr.code_for(connector.evse)])).content.decode()
    assert "1.21 EUR" in page and f'name="price" value="{new.price_digest}"' in page
    session = services.session_create(
        evse=connector.evse, connector=connector, hold_amount=2000, price_shown=new.price_digest
    )
    assert session.tariff_snapshot == new.ocpi


def test_a_price_change_between_page_and_pay_is_refused_not_charged(
    connector, price_change, monkeypatch
):
    old, _ = price_change
    monkeypatch.setattr(timezone, "now", lambda: old.valid_until + timedelta(seconds=1))
    with pytest.raises(services.CheckoutError, match="price changed since this page was loaded"):
        services.session_create(
            evse=connector.evse, connector=connector, hold_amount=2000, price_shown=old.price_digest
        )


def test_replacements_are_checked(connector, price_change):
    old, new = price_change
    new.valid_until, new.replaced_by = timezone.now() + timedelta(days=1), old
    with pytest.raises(ValidationError, match="replace itself"):
        new.full_clean()
    foreign = TariffFactory()
    old.replaced_by = foreign
    with pytest.raises(ValidationError, match="same operator"):
        old.full_clean()
    old.replaced_by = None
    with pytest.raises(ValidationError, match="or neither"):
        old.full_clean()


def test_staff_preview_prices_with_the_checkout_code(admin_client, connector):
    page = admin_client.get(
        reverse("admin:stations_tariff_change", args=[connector.tariff.pk])
    ).content.decode()
    assert "0.605 EUR" in page or "0.61 EUR" in page  # the same price table as the checkout page
    assert "6.66 EUR" in page  # 11 kWh x 0.50 + 21 % VAT


# --- roles -------------------------------------------------------------------------------------


def staff(role: str) -> User:
    user = User.objects.create_user(f"{role.lower()}-user", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def captured(connector, pay, tick, django_capture_on_commit_callbacks):
    session = pay(connector)
    sim = SimulatedSession.objects.get(reference=session.csms_reference)
    tick(sim.accept_at)
    with django_capture_on_commit_callbacks(execute=True):
        services.session_request_stop(session_id=session.pk)
    SimulatedSession.objects.filter(pk=sim.pk).update(
        stop_requested_at=sim.accept_at + timedelta(minutes=30)
    )
    tick(sim.accept_at + timedelta(minutes=30))
    session.refresh_from_db()
    assert session.payment.status == "captured"
    return session


def test_operations_run_stations_and_sessions_but_cannot_refund(client, captured):
    client.force_login(staff("Operations"))
    assert (
        "print_stickers" in client.get(reverse("admin:stations_evse_changelist")).content.decode()
    )
    assert (
        client.get(reverse("admin:checkout_chargingsession_refund", args=[captured.pk])).status_code
        == 403
    )
    assert client.get(reverse("admin:checkout_receipt_changelist")).status_code == 403
    assert client.get(reverse("admin:checkout_refund_changelist")).status_code == 403
    actions = client.get(reverse("admin:checkout_chargingsession_changelist")).content.decode()
    assert "stop_charging" in actions


def test_finance_handles_money_but_cannot_touch_stickers(client, captured):
    client.force_login(staff("Finance"))
    assert (
        client.get(reverse("admin:checkout_chargingsession_refund", args=[captured.pk])).status_code
        == 200
    )
    export = client.post(
        reverse("admin:checkout_receipt_changelist"),
        {"action": "export_csv", "_selected_action": [captured.payment.receipt.pk]},
    )
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert rows[1][0] == captured.payment.receipt.number
    user = User.objects.get(username="finance-user")
    assert user.has_perm("checkout.add_pdfexport") and user.has_perm("checkout.view_pdfexport")
    assert not user.has_perm("stations.print_sticker") and not user.has_perm("stations.change_evse")
    evses = reverse("admin:stations_evse_changelist")
    assert "print_stickers" not in client.get(evses).content.decode()
    # Printing is what voids a sticker; the action is refused, and the version stays.
    client.post(
        evses,
        {
            "action": "print_stickers",
            "_selected_action": [captured.evse.pk],
            "post": "yes",
            "layout": "a4-3x8",
        },
    )
    assert Evse.objects.get(pk=captured.evse.pk).sticker_version == captured.evse.sticker_version
    assert not PrintBatch.objects.exists()
    sessions = client.get(reverse("admin:checkout_chargingsession_changelist")).content.decode()
    assert "stop_charging" not in sessions


def test_staff_stop_a_charge_for_a_driver(admin_client, connector, pay, tick):
    session = pay(connector)
    tick(timezone.now() + timedelta(minutes=1))
    session.refresh_from_db()
    assert session.status == S.CHARGING
    admin_client.post(
        reverse("admin:checkout_chargingsession_changelist"),
        {"action": "stop_charging", "_selected_action": [session.pk]},
    )
    session.refresh_from_db()
    assert session.status == S.STOPPING
    assert session.events.get(kind="stop_requested").message == "stopped by staff:admin"
