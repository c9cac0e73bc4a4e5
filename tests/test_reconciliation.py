"""Reconciliation with Stripe (issue 11): what a capture and a refund book, the daily comparison with
localstripe, payouts mapped to our payments, and who may resolve an issue."""

from datetime import timedelta

import pytest
import requests
from django.contrib.auth.models import Group, Permission, User
from django.urls import reverse
from django.utils import timezone

from checkout import payments, reconciliation, refunds, services, tasks
from checkout.models import Payment, Payout, ReconciliationIssue, Refund, StripeEvent
from checkout.states import PaymentStatus as P
from tests.payout_peer import PayoutLedger
from tests.peers import signed

AUTH = ("sk_test_localstripe", "")
K = ReconciliationIssue.Kind


def at_stripe(stripe, path, method="GET", **data):
    response = requests.request(
        method, f"{stripe.base}/v1/{path}", data=data, auth=AUTH, timeout=10
    )
    response.raise_for_status()
    return response.json()


def run():
    """The daily task's service over a period that holds every payment of the test."""
    now = timezone.now()
    return reconciliation.reconcile(since=now - timedelta(days=1), until=now + timedelta(minutes=1))


def open_issues(payment):
    return sorted(
        payment.reconciliation_issues.filter(resolved_at=None).values_list("kind", flat=True)
    )


def refund(payment, amount, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        made = refunds.payment_refund(
            payment_id=payment.pk, amount=amount, reason="service_issue", requested_by="finance"
        )
    made.refresh_from_db()
    assert made.status == Refund.Status.SUCCEEDED
    return made


def test_capture_stores_charge_balance_transaction_fee_and_net(finished, stripe):
    payment = Payment.objects.get(session=finished)
    intent = stripe.intent(payment.stripe_payment_intent_id)
    charge_id = (
        intent["latest_charge"]["id"]
        if isinstance(intent["latest_charge"], dict)
        else intent["latest_charge"]
    )
    charge = stripe.charge(charge_id)
    assert payment.stripe_charge_id == charge_id
    assert payment.stripe_balance_transaction_id == charge["balance_transaction"]
    booked = at_stripe(stripe, f"balance_transactions/{charge['balance_transaction']}")
    assert booked["source"] == charge_id and booked["fee"] == 0
    # localstripe books the whole hold and refunds the rest; our net is what was captured, less the fee.
    assert (payment.stripe_fee, payment.stripe_net) == (0, 666)


def test_a_refund_stores_its_balance_transaction(
    finished,
    stripe,
    django_capture_on_commit_callbacks,
):
    made = refund(finished.payment, 250, django_capture_on_commit_callbacks)
    theirs = at_stripe(stripe, f"refunds/{made.stripe_refund_id}")
    assert made.stripe_balance_transaction_id == theirs["balance_transaction"]
    booked = at_stripe(stripe, f"balance_transactions/{made.stripe_balance_transaction_id}")
    assert booked["amount"] == -250 and booked["source"] == made.stripe_refund_id
    assert (made.stripe_fee, made.stripe_net) == (0, -250)


def test_a_clean_period_has_no_issues_and_fills_what_was_not_booked(
    finished,
    stripe,
    django_capture_on_commit_callbacks,
):
    refund(finished.payment, 100, django_capture_on_commit_callbacks)
    payment = Payment.objects.get(session=finished)
    stored = (payment.stripe_charge_id, payment.stripe_balance_transaction_id)
    # As if the balance transaction had not been booked yet when we captured.
    Payment.objects.filter(pk=payment.pk).update(
        stripe_balance_transaction_id="", stripe_fee=None, stripe_net=None
    )
    counts = run()
    assert counts == {"payments": 1, "with_issues": 0, "skipped": 0}
    assert not ReconciliationIssue.objects.exists()
    payment.refresh_from_db()
    assert (payment.stripe_charge_id, payment.stripe_balance_transaction_id) == stored
    assert (payment.stripe_fee, payment.stripe_net) == (0, 666)


def test_a_capture_stores_what_is_there_and_the_follow_up_fills_the_rest(finished, stripe):
    # A charge whose balance transaction Stripe has not booked yet: the capture keeps the charge id.
    assert services.charge_booked(
        payments.ChargeState(id="ch_1", amount=666), captured=666, currency="EUR"
    ) == {"stripe_charge_id": "ch_1"}
    payment = Payment.objects.get(session=finished)
    booked = (payment.stripe_balance_transaction_id, payment.stripe_fee, payment.stripe_net)
    Payment.objects.filter(pk=payment.pk).update(
        stripe_balance_transaction_id="", stripe_fee=None, stripe_net=None
    )
    tasks.payment_booked_fill.delay(payment.pk)
    payment.refresh_from_db()
    assert (payment.stripe_balance_transaction_id, payment.stripe_fee, payment.stripe_net) == booked


def test_a_refund_made_at_stripe_behind_our_back_is_one_open_issue_per_kind(
    finished,
    stripe,
    settings,
):
    payment = Payment.objects.get(session=finished)
    at_stripe(
        stripe, "refunds", "POST", payment_intent=payment.stripe_payment_intent_id, amount=200
    )
    run()
    assert open_issues(payment) == [K.REFUND_UNKNOWN, K.REFUNDED]
    issue = payment.reconciliation_issues.get(kind=K.REFUNDED)
    assert (issue.ours, issue.stripe) == ("0.00", "2.00")
    first_seen = issue.last_seen_at

    tasks.reconcile_stripe.delay()  # the daily task sees the same: still one open issue of each
    assert "money-reconcile-stripe" in settings.CELERY_BEAT_SCHEDULE
    assert open_issues(payment) == [K.REFUND_UNKNOWN, K.REFUNDED]
    issue.refresh_from_db()
    assert issue.found_at < issue.last_seen_at and issue.last_seen_at > first_seen

    # Resolved issues stay as history; the difference, still there, opens a new one.
    reconciliation.issue_resolve(issue_id=issue.pk, by="finance")
    run()
    assert payment.reconciliation_issues.filter(kind=K.REFUNDED).count() == 2
    assert payment.reconciliation_issues.filter(kind=K.REFUNDED, resolved_at=None).count() == 1


def test_fees_and_balance_transactions_that_differ_from_the_balance_history_are_mismatches(
    finished, stripe, django_capture_on_commit_callbacks
):
    made = refund(finished.payment, 100, django_capture_on_commit_callbacks)
    payment = Payment.objects.get(session=finished)
    Payment.objects.filter(pk=payment.pk).update(stripe_fee=25, stripe_net=641)
    Refund.objects.filter(pk=made.pk).update(stripe_balance_transaction_id="txn_not_at_stripe")
    run()
    assert open_issues(payment) == [K.BALANCE, K.FEE]
    fee = payment.reconciliation_issues.get(kind=K.FEE)
    assert (fee.ours, fee.stripe) == ("fee 0.25, net 6.41", "fee 0.00, net 6.66")
    balance = payment.reconciliation_issues.get(kind=K.BALANCE)
    assert balance.ours.endswith("txn_not_at_stripe")
    assert balance.stripe == made.stripe_balance_transaction_id


def test_a_canceled_payment_that_stripe_shows_captured_is_a_mismatch(connector, pay, stripe):
    session = pay(connector)
    payment = Payment.objects.get(session=session)
    assert payment.status == P.AUTHORIZED
    # Captured at Stripe while our books say the hold was released.
    at_stripe(
        stripe,
        f"payment_intents/{payment.stripe_payment_intent_id}/capture",
        "POST",
        amount_to_capture=500,
    )
    Payment.objects.filter(pk=payment.pk).update(status=P.CANCELED)
    counts = run()
    assert counts["with_issues"] == 1
    issue = payment.reconciliation_issues.get()
    assert issue.kind == K.STATUS and issue.ours == P.CANCELED
    assert issue.stripe.startswith("succeeded")


def payout_event(event_id, payout_id, kind="payout.paid"):
    return {
        "id": event_id,
        "object": "event",
        "type": kind,
        "data": {"object": {"id": payout_id, "object": "payout", "status": "paid"}},
    }


@pytest.fixture
def ledger(stripe, settings):
    peer = PayoutLedger(stripe.base)
    settings.STRIPE_API_BASE = peer.base
    yield peer
    peer.stop()


def test_payout_paid_maps_the_payout_to_our_payments_and_refunds(
    client,
    admin_client,
    settings,
    finished,
    stripe,
    ledger,
    django_capture_on_commit_callbacks,
):
    made = refund(finished.payment, 100, django_capture_on_commit_callbacks)
    payment = Payment.objects.get(session=finished)
    po = at_stripe(stripe, "payouts", "POST", amount=566, currency="eur", status="paid")
    ledger.assign(
        po["id"], [payment.stripe_balance_transaction_id, made.stripe_balance_transaction_id]
    )
    for event_id in ("evt_po_1", "evt_po_1", "evt_po_2"):  # a duplicate, then a second event
        with django_capture_on_commit_callbacks(execute=True):
            assert signed(client, settings, payout_event(event_id, po["id"])).status_code == 200
    assert StripeEvent.objects.filter(processed_at__isnull=False).count() == 2

    payout = Payout.objects.get()
    assert (payout.stripe_payout_id, payout.amount, payout.status) == (po["id"], 566, "paid")
    assert payout.lines_error == ""
    lines = {line.stripe_balance_transaction_id: line for line in payout.lines.all()}
    assert len(lines) == 2  # the second event wrote the same lines again, not new ones
    charge = lines[payment.stripe_balance_transaction_id]
    assert (charge.payment_id, charge.refund_id, charge.type) == (payment.pk, None, "charge")
    back = lines[made.stripe_balance_transaction_id]
    assert (back.payment_id, back.refund_id, back.amount) == (payment.pk, made.pk, -100)
    assert ledger.listed  # the lines came from Stripe's list, not from the event body

    page = admin_client.get(reverse("admin:checkout_payout_change", args=[payout.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert payment.receipt.number in html and made.credit_note.number in html


def test_a_payout_whose_transactions_stripe_does_not_list_is_kept_and_says_so(
    client, settings, stripe, db, django_capture_on_commit_callbacks
):
    po = at_stripe(stripe, "payouts", "POST", amount=1000, currency="eur", status="paid")
    with django_capture_on_commit_callbacks(execute=True):
        signed(client, settings, payout_event("evt_po_unlisted", po["id"]))
    payout = Payout.objects.get()
    assert payout.status == "paid" and not payout.lines.exists()
    assert payout.lines_error.startswith("Stripe did not list")
    assert "could not be listed" in StripeEvent.objects.get().outcome


@pytest.fixture
def an_issue(finished, stripe):
    payment = Payment.objects.get(session=finished)
    now = timezone.now()
    return ReconciliationIssue.objects.create(
        payment=payment,
        kind=K.FEE,
        ours="fee 0.00",
        stripe="fee 0.10",
        found_at=now,
        last_seen_at=now,
    )


def resolve(client, issue):
    return client.post(
        reverse("admin:checkout_reconciliationissue_changelist"),
        {"action": "mark_resolved", "_selected_action": [issue.pk]},
        follow=True,
    )


def test_only_staff_with_the_resolve_permission_may_mark_an_issue_resolved(client, an_issue):
    viewer = User.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_reconciliationissue"))
    client.force_login(viewer)
    listed = client.get(reverse("admin:checkout_reconciliationissue_changelist") + "?state=open")
    assert listed.status_code == 200 and "fee 0.10" in listed.content.decode()
    resolve(client, an_issue)
    an_issue.refresh_from_db()
    assert an_issue.resolved_at is None

    viewer.user_permissions.add(Permission.objects.get(codename="resolve_reconciliationissue"))
    client.force_login(User.objects.get(pk=viewer.pk))
    said = [str(m) for m in resolve(client, an_issue).context["messages"]]
    an_issue.refresh_from_db()
    assert an_issue.resolved_at is not None and an_issue.resolved_by == "viewer"
    assert said == ["1 issue(s) marked as resolved."]
    resolved = client.get(reverse("admin:checkout_reconciliationissue_changelist") + "?state=open")
    assert "fee 0.10" not in resolved.content.decode()


def test_finance_sees_issues_and_payouts_and_resolves(client, an_issue):
    finance = User.objects.create_user("finance-user", is_staff=True)
    finance.groups.add(Group.objects.get(name="Finance"))
    client.force_login(finance)
    assert client.get(reverse("admin:checkout_payout_changelist")).status_code == 200
    resolve(client, an_issue)
    an_issue.refresh_from_db()
    assert an_issue.resolved_by == "finance-user"
