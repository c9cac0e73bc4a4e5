"""Every state change of a purchase. Views, tasks and the CSMS call these and nothing else.

Each service locks the rows it changes (select_for_update), returns quietly when the change was
already made (retries and duplicate events are no-ops), checks the transition against
checkout/states.py, appends a PaymentEvent, and queues follow-up work with on_commit.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from contextlib import contextmanager
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from stations import tariffs
from stations.csms import get_adapter
from stations.csms.base import CsmsError, Limits, SessionStatus as CsmsStatus, SessionUpdate, StartStatus
from stations.models import Connector, Evse

from . import payments, tasks
from .models import ChargingSession, Dispute, Payment, PaymentEvent, Refund, StripeEvent
from .states import (
    PAYMENT_TRANSITIONS,
    SESSION_TRANSITIONS,
    PaymentStatus as P,
    SessionStatus as S,
    check_transition,
)

log = logging.getLogger(__name__)


class CheckoutError(Exception):
    """A request we refuse; the message is for the driver, and nothing was held."""


class RefundError(Exception):
    """A refund staff asked for that we refuse; the message is for them, and nothing was refunded."""


# Who is acting, written on every audit event: driver, worker, csms, stripe, sweep, staff:<name>.
_actor = contextvars.ContextVar("actor", default="worker")


@contextmanager
def acting_as(actor: str):
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


# --- helpers (callers hold the row locks) -------------------------------------------------------


def _event(session: ChargingSession, kind: str, **fields) -> None:
    PaymentEvent.objects.create(session=session, kind=kind, actor=_actor.get(), **fields)


def _flag(session: ChargingSession, why: str) -> None:
    """Ask staff to look at this session (shown and filterable in the admin); keep the first reason."""
    log.warning("session %s needs attention: %s", session.pk, why)
    _event(session, "attention", message=why[:500])
    if not session.attention:
        ChargingSession.objects.filter(pk=session.pk).update(attention=why[:300])
        session.attention = why[:300]


def _set_session_status(session: ChargingSession, target: str, **changes) -> bool:
    if session.status == target:
        return False
    check_transition(SESSION_TRANSITIONS, session.status, target)
    _event(session, "session_status", from_status=session.status, to_status=target,
           message=changes.get("failure_reason", ""))
    session.status = target
    for name, value in changes.items():
        setattr(session, name, value)
    session.save()
    return True


def _set_payment_status(payment: Payment, target: str, *, message: str = "", amount: int | None = None,
                        **changes) -> bool:
    if payment.status == target:
        return False
    check_transition(PAYMENT_TRANSITIONS, payment.status, target)
    _event(payment.session, "payment_status", from_status=payment.status, to_status=target, amount=amount,
           stripe_id=payment.stripe_payment_intent_id or "", message=message[:500])
    payment.status = target
    for name, value in changes.items():
        setattr(payment, name, value)
    payment.save()
    return True


def _locked_session(**lookup) -> ChargingSession | None:
    return ChargingSession.objects.select_for_update().filter(**lookup).first()


def _locked_payment(**lookup) -> Payment | None:
    return Payment.objects.select_for_update().select_related("session").filter(**lookup).first()


def _queue(task, *args) -> None:
    transaction.on_commit(lambda: task.delay(*args))


def _cents(amount: Decimal) -> int:
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def price_session(session: ChargingSession, *, end=None) -> tariffs.Quote:
    """Price the session under the tariff the driver was sold (the snapshot), as it stands."""
    start = session.started_at or session.created_at
    end = max(end or session.ended_at or timezone.now(), start)
    elapsed_minutes = Decimal((end - start).total_seconds()) / 60
    usage = tariffs.Usage(
        start=start,
        end=end,
        kwh=Decimal(session.kwh),
        # A CSMS may report parking to the second past our view of the end: never more than elapsed.
        parking_minutes=min(Decimal(session.parking_minutes), elapsed_minutes),
    )
    return tariffs.quote(session.tariff_snapshot, usage, tz=session.time_zone)


def session_clear_attention(*, session_id: int) -> bool:
    """Staff dealt with what the flag said: clear it, keeping the reason in the audit trail."""
    with transaction.atomic():
        session = _locked_session(pk=session_id)
        if session is None or not session.attention:
            return False  # cleared by someone else meanwhile
        _event(session, "attention_cleared", message=session.attention[:500])
        session.attention = ""
        session.save(update_fields=["attention", "updated_at"])
        return True


def flag_task_failure(subject: str, key, message: str) -> None:
    """A money task failed for good: put it on its session so staff see it (the sweep retries later)."""
    lookup = {
        "session": lambda: ChargingSession.objects.filter(pk=key),
        "payment": lambda: ChargingSession.objects.filter(payment__pk=key),
        "reference": lambda: ChargingSession.objects.filter(csms_reference=key),
        "refund": lambda: ChargingSession.objects.filter(payment__refunds__pk=key),
        "event": lambda: ChargingSession.objects.none(),
    }[subject]
    with transaction.atomic():
        session = lookup().select_for_update().first()
        if session is None:
            log.error("task failure with no session (%s %s): %s", subject, key, message)
            return
        _flag(session, message)


# --- checkout -----------------------------------------------------------------------------------


def session_create(*, evse: Evse, connector: Connector, hold_amount: int, email: str = "",
                   language: str = "en", attempt: str | None = None) -> ChargingSession:
    """Open a purchase for an EVSE. Refuses an EVSE that is busy, out of order or already paid for.

    `attempt` is the browser's id for one press of Pay: the same press sent twice (a double tap,
    a resent request) finds the session the first one opened instead of being refused.
    """
    operator = evse.location.operator
    if connector.evse_id != evse.pk:
        raise CheckoutError("That connector does not belong to this charger. Nothing has been charged.")
    if hold_amount not in operator.hold_amounts:
        raise CheckoutError("Please choose one of the amounts offered. Nothing has been charged.")
    if evse.status != Evse.Status.AVAILABLE:
        raise CheckoutError("This charger is not available right now. Nothing has been charged.")
    try:
        with transaction.atomic():
            session = ChargingSession.objects.create(
                evse=evse,
                connector=connector,
                tariff_snapshot=connector.tariff.ocpi,
                time_zone=evse.location.time_zone,
                email=email,
                language=language,
                csms_reference=f"DP{uuid.uuid4().hex[:22].upper()}",
                checkout_attempt=attempt or None,
            )
            Payment.objects.create(session=session, currency=connector.tariff.currency, amount_held=hold_amount)
            _event(session, "created", to_status=S.CREATED, amount=hold_amount)
    except IntegrityError:
        same = ChargingSession.objects.filter(checkout_attempt=attempt, evse=evse).first() if attempt else None
        if same is not None:
            return same
        raise CheckoutError(
            "Another driver is already paying for or using this charger. Nothing has been charged."
        ) from None
    return session


def payment_authorize(*, session_id: int, payment_method_id: str) -> Payment:
    """Hold the amount on the driver's card (server-side confirmation, manual capture).

    Two steps, each committed: create the PaymentIntent and remember its id, then confirm it.
    Whatever happens to the confirm call (a timeout, a crash), we know which intent to retrieve or
    cancel, so no hold can be left behind unknown to us. A repeated call finds the work done, or
    asks Stripe how far the first call got before confirming again.
    """
    with transaction.atomic():
        session = _locked_session(pk=session_id)
        payment = _locked_payment(session=session)
        if payment.status != P.PENDING or session.status not in (S.CREATED, S.AUTHORIZING):
            return payment
        resumed = bool(payment.stripe_payment_intent_id)
        if not resumed:
            try:
                state = payments.create(
                    amount=payment.amount_held,
                    currency=payment.currency,
                    payment_method=payment_method_id,
                    metadata={"session": str(session.public_id), "evse_id": session.evse.evse_id},
                    idempotency_key=f"payment-{payment.pk}-create",
                )
            except payments.PaymentDeclined as exc:
                return _declined(session, payment, exc)
            # An intent that is only created holds nothing; from here on, a confirm may be in flight.
            payment.stripe_payment_intent_id = state.id
            payment.client_secret = state.client_secret
            payment.write_in_flight = "confirm"
            payment.save()
            _set_session_status(session, S.AUTHORIZING)
            _event(session, "stripe_intent_created", stripe_id=state.id, amount=state.amount, message=state.status)

    with transaction.atomic():
        session = _locked_session(pk=session_id)
        payment = _locked_payment(session=session)
        if payment.status != P.PENDING or payment.write_in_flight != "confirm":
            return payment
        state = payments.retrieve(payment.stripe_payment_intent_id) if resumed else None
        if state is None or state.status == "requires_confirmation":
            try:
                state = payments.confirm(
                    payment.stripe_payment_intent_id,
                    return_url=f"{settings.PUBLIC_BASE_URL}{reverse('checkout:status', args=[session.public_id])}",
                    idempotency_key=f"payment-{payment.pk}-confirm",
                )
            except payments.PaymentDeclined as exc:
                payment.write_in_flight = ""
                return _declined(session, payment, exc)
        payment.write_in_flight = ""
        _apply_intent(session, payment, state)
    return payment


def _declined(session: ChargingSession, payment: Payment, exc: payments.PaymentDeclined) -> Payment:
    _set_session_status(session, S.FAILED, failure_reason=f"Payment declined: {exc}")
    _set_payment_status(payment, P.FAILED, message=str(exc), decline_message=str(exc))
    return payment


def payment_refresh(*, session_id: int) -> Payment:
    """After the browser finished 3-D Secure: ask Stripe (the truth) where the payment stands."""
    with transaction.atomic():
        session = _locked_session(pk=session_id)
        payment = _locked_payment(session=session)
        if payment.status not in (P.PENDING, P.REQUIRES_ACTION) or not payment.stripe_payment_intent_id:
            return payment
        state = payments.retrieve(payment.stripe_payment_intent_id)
        _apply_intent(session, payment, state)
    return payment


def _apply_intent(session: ChargingSession, payment: Payment, state: payments.IntentState) -> None:
    payment.card_brand = state.card_brand or payment.card_brand
    payment.card_last4 = state.card_last4 or payment.card_last4
    payment.wallet = state.wallet or payment.wallet
    if state.status == "requires_capture":
        if state.amount != payment.amount_held:
            log.error("intent %s holds %s, expected %s", state.id, state.amount, payment.amount_held)
        _set_payment_status(payment, P.AUTHORIZED, amount=state.amount, capture_before=state.capture_before)
        _set_session_status(session, S.AUTHORIZED)
        _queue(tasks.session_start, session.pk)
    elif state.status in ("requires_action", "requires_confirmation", "processing"):
        _set_payment_status(payment, P.REQUIRES_ACTION)
    elif state.status == "requires_payment_method":
        message = state.error_message or "The payment was not authorised."
        _set_payment_status(payment, P.FAILED, message=message, decline_message=message)
        _set_session_status(session, S.FAILED, failure_reason=f"Payment not authorised: {message}")
    elif state.status == "canceled":
        _set_payment_status(payment, P.CANCELED, message="canceled at Stripe")
        _set_session_status(session, S.FAILED, failure_reason="The payment was canceled.")
    else:
        log.error("intent %s in unexpected status %s for manual capture", state.id, state.status)
    payment.save()


# --- starting and stopping ----------------------------------------------------------------------


def session_request_start(*, session_id: int) -> None:
    """Ask the CSMS to start charging. Transient CSMS errors propagate so the task retries."""
    with transaction.atomic():
        session = _locked_session(pk=session_id)
        if session is None:
            return
        if session.status == S.AUTHORIZED:
            _set_session_status(session, S.STARTING, start_requested_at=timezone.now())
        elif session.status != S.STARTING or session.events.filter(kind="csms_start").exists():
            return  # started already, or a retry after the CSMS answered
    try:
        result = get_adapter().start_session(
            connector=session.connector, reference=session.csms_reference, limits=Limits()
        )
    except CsmsError as exc:
        if not exc.permanent:
            raise
        session_fail(session_id=session.pk, reason="The charger could not be reached.")
        return
    with transaction.atomic():
        session = _locked_session(pk=session_id)
        _event(session, "csms_start", message=f"{result.status} {result.message}".strip())
    if result.status == StartStatus.REJECTED:
        session_fail(session_id=session.pk, reason=result.message or "The charger refused to start.")
    else:
        tasks.session_start_timeout.apply_async((session.pk,), countdown=settings.CSMS_START_TIMEOUT_SECONDS)


def session_check_start_timeout(*, session_id: int, now=None) -> None:
    """The charger had its time to start: if it has not, give the driver's money back."""
    started_before = (now or timezone.now()) - timedelta(seconds=settings.CSMS_START_TIMEOUT_SECONDS)
    session = ChargingSession.objects.filter(
        pk=session_id, status=S.STARTING, start_requested_at__lte=started_before
    ).first()
    if session:
        session_fail(session_id=session_id, reason="The charger did not respond.")


def session_fail(*, session_id: int, reason: str) -> None:
    """The session will not charge: mark it failed and release the hold."""
    with transaction.atomic():
        session = _locked_session(pk=session_id)
        if session.status in (S.FAILED, S.FINISHED, S.CHARGING, S.STOPPING):
            if session.status != S.FAILED:
                log.warning("not failing session %s: it is %s", session.pk, session.status)
            return
        _set_session_status(session, S.FAILED, failure_reason=reason)
        _queue(tasks.payment_cancel, session.payment.pk, reason)


def session_request_stop(*, session_id: int) -> None:
    """The driver pressed Stop."""
    with transaction.atomic():
        session = _locked_session(pk=session_id)
        if session.status == S.CHARGING:
            _stop(session, why="driver pressed Stop")


def _stop(session: ChargingSession, *, why: str) -> None:
    _set_session_status(session, S.STOPPING, stop_requested_at=timezone.now())
    _event(session, "stop_requested", message=why)
    _queue(tasks.csms_stop, session.csms_reference)


def _near_cap(session: ChargingSession) -> bool:
    """The hold is a spending cap: stop once the running cost is within the operator's margin of it."""
    operator = session.evse.location.operator
    hold = session.payment.amount_held
    margin = max(hold * operator.cap_margin_percent // 100, operator.cap_margin_min)
    return _cents(Decimal(session.cost_incl_vat)) >= hold - margin


def session_resend_stop(*, session_id: int) -> None:
    """The CSMS did not confirm a stop: ask once more (the sweep calls this)."""
    with transaction.atomic():
        session = _locked_session(pk=session_id)
        if session.status != S.STOPPING:
            return
        _event(session, "stop_resent", message="no final record yet: stop asked again")
        _queue(tasks.csms_stop, session.csms_reference)


def csms_stop(*, reference: str) -> None:
    get_adapter().stop_session(reference=reference)


def session_apply_update(update: SessionUpdate) -> None:
    """What the CSMS reports: progress, and the final record that lets us capture."""
    with acting_as("csms"), transaction.atomic():
        session = _locked_session(csms_reference=update.reference)
        if session is None:
            log.warning("CSMS update for unknown session reference %s", update.reference)
            return
        if session.status == S.FINISHED:
            if update.final and not session.cdr:
                # We closed it ourselves (the CSMS never sent its record in time): staff compare.
                session.cdr = update.cdr
                session.save(update_fields=["cdr", "updated_at"])
                _flag(session, "the CSMS sent its final record after we had closed the session")
            return  # a duplicate or late record: the capture was already decided
        if session.status == S.FAILED:
            if update.status == CsmsStatus.ACTIVE:
                # It started after we gave the money back: stop it rather than charge unpaid energy.
                _event(session, "late_start_stopped", message="charger started after the session failed")
                _queue(tasks.csms_stop, session.csms_reference)
            return
        session.kwh = update.kwh
        session.parking_minutes = update.parking_minutes
        session.started_at = update.started_at or session.started_at
        session.csms_session_id = update.csms_session_id or session.csms_session_id
        session.measured_at = update.measured_at or timezone.now()
        if update.status in (CsmsStatus.ACTIVE, CsmsStatus.COMPLETED) and session.status == S.STARTING:
            _set_session_status(session, S.CHARGING)
        if update.final:
            session.ended_at = update.ended_at or timezone.now()
            session.cdr = update.cdr
        session.cost_incl_vat = price_session(session, end=session.ended_at or update.measured_at).total_incl_vat
        session.save()
        if not update.final and session.status == S.CHARGING and _near_cap(session):
            _stop(session, why=f"spending cap: {session.cost_incl_vat} of {session.payment.amount_held / 100:.2f}")
        if update.final and session.status in (S.CHARGING, S.STOPPING):
            _set_session_status(session, S.FINISHED)
            _queue(tasks.payment_capture, session.payment.pk)


def session_close_unconfirmed(*, session_id: int, why: str) -> None:
    """Close a session the CSMS never finished (its record is lost or the hold is about to expire).

    The meter as last reported is what we bill: it is all we know, and the hold must not lapse.
    """
    with transaction.atomic():
        session = _locked_session(pk=session_id)
        if session is None or session.status not in (S.CHARGING, S.STOPPING):
            return
        if session.status == S.CHARGING:
            _stop(session, why=why)
        session.ended_at = session.measured_at or session.started_at or timezone.now()
        session.save()
        _set_session_status(session, S.FINISHED)
        _flag(session, f"closed without the CSMS's final record ({why}); billed the last meter reading")
        _queue(tasks.payment_capture, session.payment.pk)


# --- money --------------------------------------------------------------------------------------
#
# Each Stripe write is recorded as in flight (committed) before it is sent and cleared in the same
# transaction that records its result. The row lock is held during the call, so a racing worker
# waits and then finds the work done. If the mark is still there when a write begins, an earlier
# attempt may have reached Stripe: we retrieve the intent and act on what Stripe says, instead of
# trusting the idempotency key alone (localstripe, for one, ignores it).


def _mark_write(payment: Payment, operation: str, amount: int | None = None) -> bool:
    """Record a Stripe write about to be sent. Returns True if the same write was already in flight."""
    if payment.write_in_flight == operation:
        return True
    payment.write_in_flight, payment.write_amount = operation, amount
    payment.save(update_fields=["write_in_flight", "write_amount", "updated_at"])
    _event(payment.session, f"{operation}_requested", amount=amount, stripe_id=payment.stripe_payment_intent_id or "")
    return False


def payment_cancel(*, payment_id: int, reason: str) -> None:
    """Release the hold. Nothing was charged."""
    with transaction.atomic():
        payment = _locked_payment(pk=payment_id)
        if payment.status not in (P.PENDING, P.REQUIRES_ACTION, P.AUTHORIZED):
            return
        if not payment.stripe_payment_intent_id:  # nothing was ever sent to Stripe
            _set_payment_status(payment, P.CANCELED, message=reason, amount=payment.amount_held)
            return
        resumed = _mark_write(payment, "cancel")

    with transaction.atomic():
        payment = _locked_payment(pk=payment_id)
        if payment.status not in (P.PENDING, P.REQUIRES_ACTION, P.AUTHORIZED) or payment.write_in_flight != "cancel":
            return
        state = payments.retrieve(payment.stripe_payment_intent_id) if resumed else None
        if state is None or state.status not in ("canceled", "succeeded"):
            state = payments.cancel(payment.stripe_payment_intent_id, idempotency_key=f"payment-{payment.pk}-cancel")
        payment.write_in_flight, payment.write_amount = "", None
        if state.status == "succeeded":  # captured elsewhere (Stripe's dashboard): nothing to release
            payment.save()
            _flag(payment.session, "asked to release a hold that was already captured at Stripe")
            return
        _set_payment_status(payment, P.CANCELED, message=reason, amount=payment.amount_held)


def payment_capture(*, payment_id: int) -> None:
    """Charge the final cost under the snapshot tariff, never above the hold; release the rest."""
    with transaction.atomic():
        payment = _locked_payment(pk=payment_id)
        session = payment.session
        if payment.status != P.AUTHORIZED or session.status != S.FINISHED:
            return
        resumed = payment.write_in_flight == "capture"
        if not resumed:
            priced = price_session(session)
            session.final_breakdown = priced.as_dict()
            session.cost_incl_vat = priced.total_incl_vat
            session.save()
            cost = _cents(priced.total_incl_vat)
            if cost <= 0:
                _event(session, "zero_cost", message="nothing to charge: hold canceled instead")
                _queue(tasks.payment_cancel, payment.pk, "Nothing to charge.")
                return
            if cost > payment.amount_held:
                _flag(session, f"final cost {cost / 100:.2f} is above the hold; "
                               f"{(cost - payment.amount_held) / 100:.2f} not charged")
            _mark_write(payment, "capture", min(cost, payment.amount_held))

    with transaction.atomic():
        payment = _locked_payment(pk=payment_id)
        session = payment.session
        if payment.status != P.AUTHORIZED or payment.write_in_flight != "capture":
            return
        amount = payment.write_amount
        state = payments.retrieve(payment.stripe_payment_intent_id) if resumed else None
        if state is None or state.status == "requires_capture":
            state = payments.capture(payment.stripe_payment_intent_id, amount=amount,
                                     idempotency_key=f"payment-{payment.pk}-capture")
        payment.write_in_flight, payment.write_amount = "", None
        if state.status == "canceled":  # the authorisation lapsed or was canceled at Stripe
            _set_payment_status(payment, P.CANCELED, message="the hold was gone when we captured")
            _flag(session, "the hold had expired or was canceled before capture: nothing was charged")
            return
        if state.status != "succeeded":
            payment.save()
            raise payments.PaymentGatewayError(f"capture left the intent {state.status}", permanent=True)
        captured = state.amount_received if state.amount_received is not None else amount
        _set_payment_status(payment, P.CAPTURED, amount=captured, amount_captured=captured,
                            shortfall=max(0, _cents(Decimal(session.cost_incl_vat)) - payment.amount_held))
        _queue(tasks.receipt_issue, payment.pk)


# --- refunds and disputes -----------------------------------------------------------------------


def refunds_seen(payment: Payment) -> str:
    """What a refund form was shown: the payment's refunds so far (see payment_refund's `seen`)."""
    return ",".join(str(pk) for pk in payment.refunds.order_by("pk").values_list("pk", flat=True)) or "none"


def payment_refund(*, payment_id: int, amount: int, reason: str, note: str = "", requested_by: str,
                   seen: str | None = None) -> Refund:
    """Staff give money back: never more than was captured and not yet refunded (or being refunded).

    `seen` is refunds_seen() as the form showed it: a form submitted twice, or after a colleague's
    refund, is refused instead of refunding on stale figures.
    """
    with transaction.atomic():
        payment = _locked_payment(pk=payment_id)
        if payment.status not in (P.CAPTURED, P.PARTIALLY_REFUNDED):
            raise RefundError("Only a captured payment can be refunded. Nothing was refunded.")
        if seen is not None and seen != refunds_seen(payment):
            raise RefundError("Another refund was requested for this payment since this page was opened. "
                              "Check the amounts and submit again. Nothing was refunded.")
        pending = sum(payment.refunds.filter(status=Refund.Status.PENDING).values_list("amount", flat=True))
        available = payment.refundable - pending
        if amount <= 0 or amount > available:
            raise RefundError(f"A refund must be between 0.01 and {available / 100:.2f} {payment.currency}. "
                              "Nothing was refunded.")
        if reason not in Refund.Reason.values:
            raise RefundError("Please choose a reason. Nothing was refunded.")
        refund = Refund.objects.create(payment=payment, amount=amount, reason=reason, note=note[:300],
                                       requested_by=requested_by)
        _event(payment.session, "refund_requested", amount=amount, message=f"{reason}: {note}"[:500])
        _queue(tasks.refund_send, refund.pk)
    return refund


def refund_send(*, refund_id: int) -> None:
    """Send a refund to Stripe once: first look for it there (an earlier attempt may have landed)."""
    with transaction.atomic():
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        payment = _locked_payment(pk=refund.payment_id)
        if refund.status != Refund.Status.PENDING:
            return
        intent = payment.stripe_payment_intent_id
        state = next((r for r in payments.refunds(intent) if r.reference == str(refund.pk)), None)
        if state is None:
            try:
                state = payments.refund(intent, amount=refund.amount, reference=str(refund.pk), reason=refund.reason,
                                        idempotency_key=f"payment-{payment.pk}-refund-{refund.pk}")
            except payments.PaymentGatewayError as exc:
                if not exc.permanent:
                    raise
                refund.status, refund.failure_message = Refund.Status.FAILED, str(exc)[:300]
                refund.save()
                _flag(payment.session, f"refund of {refund.amount / 100:.2f} failed at Stripe: {exc}")
                return
        refund.status, refund.stripe_refund_id = Refund.Status.SUCCEEDED, state.id
        refund.save()
        refunded = payment.amount_refunded + refund.amount
        target = P.REFUNDED if refunded >= payment.amount_captured else P.PARTIALLY_REFUNDED
        if not _set_payment_status(payment, target, amount=refund.amount, message=f"refund {state.id}",
                                   amount_refunded=refunded):
            # A further partial refund: the status stays, the total grows.
            payment.amount_refunded = refunded
            payment.save()
            _event(payment.session, "refunded", amount=refund.amount, stripe_id=state.id)


def dispute_record(*, payment: Payment, dispute: dict) -> Dispute:
    """A chargeback: keep it (and its status as it moves) for finance to answer."""
    record, created = Dispute.objects.update_or_create(
        stripe_dispute_id=dispute["id"],
        defaults={"payment": payment, "amount": int(dispute.get("amount") or 0),
                  "reason": dispute.get("reason") or "", "status": dispute.get("status") or ""},
    )
    if created:
        _flag(payment.session, f"the driver's bank opened a dispute ({record.reason or 'no reason given'})")
    _event(payment.session, "dispute", amount=record.amount, stripe_id=record.stripe_dispute_id,
           message=record.status)
    return record


# --- Stripe webhooks ----------------------------------------------------------------------------


def stripe_event_record(payload: dict) -> tuple[StripeEvent, bool]:
    """Store a verified webhook once by its event id."""
    return StripeEvent.objects.get_or_create(
        event_id=payload["id"], defaults={"type": payload.get("type", ""), "payload": payload}
    )


def payment_sync(*, payment_id: int) -> str:
    """Bring our payment in line with Stripe's intent (retrieved, never taken from an event body)."""
    payment = Payment.objects.select_related("session").get(pk=payment_id)
    if payment.status in (P.PENDING, P.REQUIRES_ACTION):
        payment_refresh(session_id=payment.session_id)
        return "checked against Stripe"
    if payment.status != P.AUTHORIZED or not payment.stripe_payment_intent_id:
        return "nothing to do"
    state = payments.retrieve(payment.stripe_payment_intent_id)
    if state.status == "canceled":
        # The authorisation expired or was canceled outside this app: there is no money to charge.
        with transaction.atomic():
            payment = _locked_payment(pk=payment_id)
            if payment.status != P.AUTHORIZED:
                return "already changed"
            _set_payment_status(payment, P.CANCELED, message="canceled at Stripe")
            session = _locked_session(pk=payment.session_id)
            if session.status in (S.CHARGING,):
                _stop(session, why="the hold was canceled at Stripe")
            elif session.status in (S.AUTHORIZED, S.STARTING):
                _set_session_status(session, S.FAILED, failure_reason="The payment was canceled.")
            _flag(session, "the hold was canceled at Stripe while we still held it")
        return "hold canceled at Stripe"
    if state.status == "succeeded" and payment.write_in_flight == "capture":
        payment_capture(payment_id=payment_id)  # the capture's answer was lost; this records it
        return "capture recorded"
    return f"intent {state.status}: nothing to do"


def stripe_event_process(*, event_pk: int) -> None:
    """Act on a webhook by retrieving the object from Stripe first: the event body is only a hint."""
    with transaction.atomic():
        event = StripeEvent.objects.select_for_update().get(pk=event_pk)
        if event.processed_at:
            return
        obj = (event.payload.get("data") or {}).get("object") or {}
        kind = obj.get("object")
        intent_id = obj.get("id") if kind == "payment_intent" else obj.get("payment_intent")
        payment = Payment.objects.filter(stripe_payment_intent_id=intent_id).first() if intent_id else None
        if payment is None:
            event.outcome = f"no payment for {intent_id or 'this object'}: stored for staff"
            log.warning("stripe event %s (%s): %s", event.event_id, event.type, event.outcome)
        elif kind == "dispute":
            dispute_record(payment=payment, dispute=obj)
            event.outcome = f"dispute recorded on payment {payment.pk}"
        elif kind in ("charge", "refund") and event.type.startswith(("charge.refund", "refund.")):
            event.outcome = f"payment {payment.pk}: {refunds_check(payment_id=payment.pk)}"
        else:
            event.outcome = f"payment {payment.pk}: {payment_sync(payment_id=payment.pk)}"
        event.processed_at = timezone.now()
        event.save()


def refunds_check(*, payment_id: int) -> str:
    """A refund seen at Stripe that this app did not make (one from the dashboard) is shown to staff."""
    payment = Payment.objects.select_related("session").get(pk=payment_id)
    ours = set(payment.refunds.values_list("stripe_refund_id", flat=True))
    # Some Stripe stand-ins show a partial capture as a refund of the uncaptured rest: not a refund.
    release = payment.amount_held - payment.amount_captured
    foreign = [r for r in payments.refunds(payment.stripe_payment_intent_id)
               if r.id not in ours and not r.reference and r.amount != release]
    if foreign:
        with transaction.atomic():
            _flag(_locked_session(pk=payment.session_id),
                  f"refunds made at Stripe, not here: {', '.join(r.id for r in foreign)}")
        return f"{len(foreign)} refund(s) made outside this app"
    return "refunds match"
