"""The monthly summary, on a March built by hand: two operators, their own months, a refund.

"A Lisbon" counts in Europe/Lisbon (its own zone; UTC+0, UTC+1 from 29 March 2026); "B Helsinki"
has no zone, so its location's counts (Europe/Helsinki, UTC+2, UTC+3 from 29 March). Each has a
receipt that UTC would put in the wrong month.
"""

import csv
import io
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from checkout.finance_summary import month_summary
from checkout.models import ChargingSession, CreditNote, Dispute, Payment, Receipt, Refund
from tests.test_finance_exports import refund
from tests.test_receipts import energy, finished_payment, issue, staff


def at(moment: datetime, receipt: Receipt, connector) -> Receipt:
    """Issued at `moment`, at `connector` (one location per operator)."""
    Receipt.objects.filter(pk=receipt.pk).update(issued_at=moment)
    ChargingSession.objects.filter(pk=receipt.payment.session_id).update(
        evse=connector.evse, connector=connector
    )
    return receipt


@pytest.fixture
def march(db):
    first = finished_payment(
        energy("0.50", 23),
        kwh="20",
        zone="Europe/Lisbon",
        country="PT",
        name="A Lisbon",
        time_zone="Europe/Lisbon",
    )
    lisbon = first.session.connector
    seller = lisbon.evse.location.operator
    # 00:30 on 1 March in Lisbon: 12.30 charged, net 10.00, VAT 2.30.
    at(datetime(2026, 3, 1, 0, 30, tzinfo=UTC), issue(first), lisbon)
    Payment.objects.filter(pk=first.pk).update(stripe_fee=36)  # Stripe's fee on the capture
    # 23:30 on 31 March in Lisbon: 6.15, net 5.00, VAT 1.15; 1.00 refunded in March (0.81 + 0.19).
    late = finished_payment(energy("0.50", 23), kwh="10", zone="Europe/Lisbon", seller=seller)
    at(datetime(2026, 3, 31, 22, 30, tzinfo=UTC), issue(late), lisbon)
    note = refund(late, 100)
    Refund.objects.filter(pk=note.refund_id).update(stripe_fee=2)  # and on the refund
    CreditNote.objects.filter(pk=note.pk).update(issued_at=datetime(2026, 3, 15, tzinfo=UTC))
    # 00:30 on 1 April in Lisbon (still March in UTC): not in March.
    april = finished_payment(energy("0.50", 23), kwh="10", zone="Europe/Lisbon", seller=seller)
    at(datetime(2026, 3, 31, 23, 30, tzinfo=UTC), issue(april), lisbon)

    # 00:30 on 1 March in Helsinki (February in UTC): 6.20 priced, held 5.00, so 1.20 short;
    # net 4.03, VAT 0.97; disputed in March.
    early = finished_payment(
        energy("0.50", 24),
        kwh="10",
        hold=500,
        zone="Europe/Helsinki",
        country="FI",
        name="B Helsinki",
    )
    helsinki = early.session.connector
    at(datetime(2026, 2, 28, 22, 30, tzinfo=UTC), issue(early), helsinki)
    dispute = Dispute.objects.create(payment=early, stripe_dispute_id="dp_1", amount=500)
    Dispute.objects.filter(pk=dispute.pk).update(created_at=datetime(2026, 3, 10, tzinfo=UTC))
    # 00:30 on 1 April in Helsinki: not in March.
    after = finished_payment(
        energy("0.50", 24),
        kwh="10",
        zone="Europe/Helsinki",
        seller=early.session.evse.location.operator,
    )
    at(datetime(2026, 3, 31, 21, 30, tzinfo=UTC), issue(after), helsinki)
    return lisbon.evse.location, helsinki.evse.location


def test_the_march_summary_per_operator_and_location(march):
    lisbon, helsinki = march
    summary = month_summary(2026, 3)
    assert summary.rates == ["23", "24"]
    assert [(ln.operator, ln.location) for ln in summary.lines] == [
        ("A Lisbon", lisbon.name),
        ("B Helsinki", helsinki.name),
    ]
    a, b = summary.lines
    assert (a.sessions, a.kwh, a.net, a.vat, a.gross) == (2, 30, 1500, 345, 1845)
    assert a.per_rate == {"23": [1500, 345]}
    assert (a.refunds, a.refunds_net, a.refunds_vat, a.credit_notes) == (100, 81, 19, 1)
    assert (a.shortfall, a.disputes, a.disputed) == (0, 0, 0)
    assert a.stripe_fees == 38
    assert (b.sessions, b.kwh, b.net, b.vat, b.gross) == (1, 10, 403, 97, 500)
    assert b.per_rate == {"24": [403, 97]}
    assert (b.shortfall, b.disputes, b.disputed, b.refunds) == (120, 1, 500, 0)


def test_finance_sees_the_summary_and_downloads_it_as_csv(march, client):
    finance = staff(client, "view_receipt")
    page = finance.get(reverse("admin:checkout_receipt_summary"), {"month": "2026-03"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "18.45" in html and "3.45" in html and "A Lisbon" in html
    response = finance.get(reverse("admin:checkout_receipt_summary_csv"), {"month": "2026-03"})
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["Operator"] for r in rows] == ["A Lisbon", "B Helsinki"]
    assert rows[0]["Gross"] == "18.45" and rows[0]["Refunds"] == "1.00"
    assert rows[0]["Net 23%"] == "15.00" and rows[0]["VAT 24%"] == "0.00"
    assert rows[1]["Shortfalls"] == "1.20" and rows[1]["Disputed"] == "5.00"
    assert rows[0]["Stripe fees"] == "0.38" and rows[1]["Stripe fees"] == "0.00"
    bad = finance.get(reverse("admin:checkout_receipt_summary_csv"), {"month": "2026-13"})
    assert bad.status_code == 400


def test_the_summary_needs_the_view_permission(march, client):
    other = staff(client, "view_chargingsession")
    for name in ("admin:checkout_receipt_summary", "admin:checkout_receipt_summary_csv"):
        assert other.get(reverse(name), {"month": "2026-03"}).status_code == 403
