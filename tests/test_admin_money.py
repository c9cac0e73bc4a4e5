"""Staff and money in the admin: refunds through the refund page, the attention flag, read-only records."""

import pytest
import requests
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from checkout import refunds, services
from checkout.models import ChargingSession, Dispute, PaymentEvent, Refund, StripeEvent
from checkout.states import PaymentStatus as P
from tests.factories import ConnectorFactory


@pytest.fixture
def staff_client(client, db):
    """Staff who may look at sessions (and clear flags) but not refund: what Operations will be."""
    user = User.objects.create_user("operator", password="pw-for-test-only", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="checkout", codename__in=["view_chargingsession", "view_refund"]
        )
    )
    client.force_login(user)
    return client


def refund_url(session):
    return reverse("admin:checkout_chargingsession_refund", args=[session.pk])


def change_url(session):
    return reverse("admin:checkout_chargingsession_change", args=[session.pk])


def stripe_refunds(stripe, intent_id):
    response = requests.get(
        f"{stripe.base}/v1/refunds",
        params={"payment_intent": intent_id},
        auth=("sk_test_localstripe", ""),
        timeout=10,
    )
    response.raise_for_status()
    return response.json()["data"]


def open_refund_page(client, session):
    response = client.get(refund_url(session))
    assert response.status_code == 200
    return response


def test_partial_refund_from_the_refund_page(
    admin_client, finished, stripe, django_capture_on_commit_callbacks
):
    page = open_refund_page(admin_client, finished)
    form = page.context["form"]
    assert form["amount"].value() == "6.66"  # what is still refundable
    assert "Request refund" in page.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            refund_url(finished),
            {
                "amount": "3.50",
                "reason": Refund.Reason.SERVICE_ISSUE,
                "note": "charger stopped early",
                "seen": form["seen"].value(),
            },
        )
    assert response.status_code == 302 and response["Location"] == change_url(finished)

    refund = Refund.objects.get()
    assert (refund.amount, refund.reason, refund.requested_by) == (350, "service_issue", "admin")
    assert refund.status == Refund.Status.SUCCEEDED and refund.stripe_refund_id
    payment = finished.payment
    payment.refresh_from_db()
    assert payment.status == P.PARTIALLY_REFUNDED
    assert payment.amount_refunded == 350 and payment.refundable == 316
    at_stripe = {r["id"]: r for r in stripe_refunds(stripe, payment.stripe_payment_intent_id)}
    assert at_stripe[refund.stripe_refund_id]["amount"] == 350
    assert at_stripe[refund.stripe_refund_id]["metadata"]["refund"] == str(refund.pk)
    requested = finished.events.get(kind="refund_requested")
    assert requested.actor == "staff:admin" and requested.amount == 350

    page = admin_client.get(change_url(finished))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Refund of 3.50 EUR requested; it shows as succeeded once Stripe confirms." in html
    assert refund.stripe_refund_id in html and "3.50 EUR" in html and "Charging problem" in html
    assert "staff:admin" in html  # the actor column of the audit trail
    assert refund_url(finished) in html  # 3.16 EUR can still be refunded

    # The rest, in a second refund: the payment is then refunded in full and the link goes away.
    page = open_refund_page(admin_client, finished)
    assert page.context["form"]["amount"].value() == "3.16"
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            refund_url(finished),
            {
                "amount": "3.16",
                "reason": Refund.Reason.REQUESTED_BY_CUSTOMER,
                "seen": page.context["form"]["seen"].value(),
            },
        )
    payment.refresh_from_db()
    assert payment.status == P.REFUNDED and payment.amount_refunded == 666
    assert refund_url(finished) not in admin_client.get(change_url(finished)).content.decode()


def test_refund_above_what_is_refundable_is_refused(
    admin_client, finished, django_capture_on_commit_callbacks
):
    seen = open_refund_page(admin_client, finished).context["form"]["seen"].value()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(
            refund_url(finished),
            {
                "amount": "6.67",
                "reason": Refund.Reason.REQUESTED_BY_CUSTOMER,
                "seen": seen,
            },
        )
    assert response.status_code == 200
    assert (
        "A refund must be between 0.01 and 6.66 EUR. Nothing was refunded."
        in response.content.decode()
    )
    assert not callbacks
    assert not Refund.objects.exists()
    assert not finished.events.filter(kind="refund_requested").exists()
    finished.payment.refresh_from_db()
    assert finished.payment.status == P.CAPTURED and finished.payment.amount_refunded == 0


@pytest.mark.parametrize("amount", ["1.005", "0", "-1", "abc", ""])
def test_refund_amount_must_be_cents(admin_client, finished, amount):
    seen = open_refund_page(admin_client, finished).context["form"]["seen"].value()
    response = admin_client.post(
        refund_url(finished),
        {
            "amount": amount,
            "reason": Refund.Reason.REQUESTED_BY_CUSTOMER,
            "seen": seen,
        },
    )
    assert response.status_code == 200
    assert response.context["form"].errors["amount"]
    assert not Refund.objects.exists()


def test_a_second_submit_of_the_same_page_refunds_once(
    admin_client, finished, django_capture_on_commit_callbacks
):
    seen = open_refund_page(admin_client, finished).context["form"]["seen"].value()
    data = {"amount": "2.00", "reason": Refund.Reason.DUPLICATE, "seen": seen}
    with django_capture_on_commit_callbacks(execute=True):
        assert admin_client.post(refund_url(finished), data).status_code == 302
        again = admin_client.post(refund_url(finished), data)  # a double click
    assert again.status_code == 200
    assert "Another refund was requested for this payment" in again.content.decode()
    assert Refund.objects.count() == 1
    # The page shown again is up to date: submitting it now is a deliberate second refund.
    assert again.context["form"]["seen"].value() != seen
    assert again.context["form"]["amount"].value() == "2.00"


def test_staff_without_refund_permission_get_403(staff_client, finished):
    assert staff_client.get(refund_url(finished)).status_code == 403
    response = staff_client.post(
        refund_url(finished), {"amount": "1.00", "reason": "duplicate", "seen": "none"}
    )
    assert response.status_code == 403
    assert not Refund.objects.exists()
    page = staff_client.get(change_url(finished))
    assert page.status_code == 200
    assert refund_url(finished) not in page.content.decode()


def test_refund_page_needs_a_staff_login(client, finished):
    response = client.get(refund_url(finished))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_no_refund_before_capture(admin_client, connector, pay):
    session = pay(connector)
    assert session.payment.status == P.AUTHORIZED
    assert refund_url(session) not in admin_client.get(change_url(session)).content.decode()
    response = admin_client.get(refund_url(session), follow=True)
    assert "Only a captured payment can be refunded." in response.content.decode()
    assert not Refund.objects.exists()


def test_attention_filter_and_mark_as_dealt_with(admin_client, stripe):
    flagged = services.session_create(
        evse=(c := ConnectorFactory()).evse, connector=c, hold_amount=2000
    )
    calm = services.session_create(
        evse=(c := ConnectorFactory()).evse, connector=c, hold_amount=2000
    )
    ChargingSession.objects.filter(pk=flagged.pk).update(
        attention="final cost 36.30 is above the hold"
    )
    changelist = reverse("admin:checkout_chargingsession_changelist")

    html = admin_client.get(changelist, {"needs_attention": "yes"}).content.decode()
    assert change_url(flagged) in html and change_url(calm) not in html
    html = admin_client.get(changelist, {"needs_attention": "no"}).content.decode()
    assert change_url(calm) in html and change_url(flagged) not in html
    html = admin_client.get(change_url(flagged)).content.decode()
    assert "final cost 36.30 is above the hold" in html

    response = admin_client.post(
        changelist,
        {
            "action": "mark_dealt_with",
            "_selected_action": [flagged.pk, calm.pk],
            "index": 0,
        },
        follow=True,
    )
    assert "1 session(s) marked as dealt with." in response.content.decode()
    flagged.refresh_from_db()
    assert flagged.attention == ""
    cleared = PaymentEvent.objects.get(kind="attention_cleared")
    assert cleared.session_id == flagged.pk and cleared.actor == "staff:admin"
    assert cleared.message == "final cost 36.30 is above the hold"
    assert (
        change_url(flagged)
        not in admin_client.get(changelist, {"needs_attention": "yes"}).content.decode()
    )


def test_marking_as_dealt_with_needs_the_change_permission(staff_client, stripe):
    c = ConnectorFactory()
    session = services.session_create(evse=c.evse, connector=c, hold_amount=2000)
    ChargingSession.objects.filter(pk=session.pk).update(attention="look at me")
    changelist = reverse("admin:checkout_chargingsession_changelist")
    assert "mark_dealt_with" not in staff_client.get(changelist).content.decode()
    staff_client.post(
        changelist, {"action": "mark_dealt_with", "_selected_action": [session.pk], "index": 0}
    )
    session.refresh_from_db()
    assert session.attention == "look at me"
    assert not PaymentEvent.objects.filter(kind="attention_cleared").exists()


def test_session_page_shows_disputes_and_shortfall(admin_client, finished):
    Dispute.objects.create(
        payment=finished.payment,
        stripe_dispute_id="dp_test_1",
        amount=666,
        reason="fraudulent",
        status="needs_response",
    )
    finished.payment.__class__.objects.filter(pk=finished.payment.pk).update(shortfall=1630)
    page = admin_client.get(change_url(finished))
    assert page.status_code == 200
    html = page.content.decode()
    assert "dp_test_1" in html and "needs_response" in html and "6.66 EUR" in html
    listing = admin_client.get(
        reverse("admin:checkout_chargingsession_changelist")
    ).content.decode()
    assert "16.30 EUR" in listing


def test_refund_dispute_and_event_lists(admin_client, finished, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), services.acting_as("staff:admin"):
        refunds.payment_refund(
            payment_id=finished.payment.pk, amount=100, reason="duplicate", requested_by="admin"
        )
    Dispute.objects.create(
        payment=finished.payment, stripe_dispute_id="dp_test_2", amount=666, status="lost"
    )
    StripeEvent.objects.create(
        event_id="evt_orphan",
        type="charge.refunded",
        payload={},
        outcome="no payment for pi_unknown: stored for staff",
    )
    StripeEvent.objects.create(
        event_id="evt_matched",
        type="payment_intent.succeeded",
        payload={},
        outcome="payment 1: nothing to do",
    )

    refund_list = admin_client.get(
        reverse("admin:checkout_refund_changelist"), {"status": "succeeded", "reason": "duplicate"}
    )
    assert refund_list.status_code == 200 and "1.00 EUR" in refund_list.content.decode()
    assert Refund.objects.get().stripe_refund_id in refund_list.content.decode()
    disputes = admin_client.get(reverse("admin:checkout_dispute_changelist"), {"status": "lost"})
    assert disputes.status_code == 200 and "dp_test_2" in disputes.content.decode()
    events = admin_client.get(
        reverse("admin:checkout_stripeevent_changelist"), {"match": "unmatched"}
    )
    html = events.content.decode()
    assert "evt_orphan" in html and "evt_matched" not in html
    refund = Refund.objects.get()
    assert (
        admin_client.get(reverse("admin:checkout_refund_change", args=[refund.pk])).status_code
        == 200
    )
