"""Every state change of a purchase. Views, tasks and the CSMS call these and nothing else.

Each service locks the rows it changes (select_for_update), returns quietly when the change was
already made (retries and duplicate events are no-ops), checks the transition against
checkout/states.py, appends a PaymentEvent, and queues follow-up work with on_commit.
"""

from __future__ import annotations

import logging
import uuid
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
from .models import ChargingSession, Payment, PaymentEvent, StripeEvent
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


# --- helpers (callers hold the row locks) -------------------------------------------------------


def _event(session: ChargingSession, kind: str, **fields) -> None:
    PaymentEvent.objects.create(session=session, kind=kind, **fields)


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


# --- checkout -----------------------------------------------------------------------------------


def session_create(*, evse: Evse, connector: Connector, hold_amount: int, email: str = "",
                   language: str = "en") -> ChargingSession:
    """Open a purchase for an EVSE. Refuses an EVSE that is busy, out of order or already paid for."""
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
            )
            Payment.objects.create(session=session, currency=connector.tariff.currency, amount_held=hold_amount)
            _event(session, "created", to_status=S.CREATED, amount=hold_amount)
    except IntegrityError:
        raise CheckoutError(
            "Another driver is already paying for or using this charger. Nothing has been charged."
        ) from None
    return session


def payment_authorize(*, session_id: int, payment_method_id: str) -> Payment:
    """Hold the amount on the driver's card (server-side confirmation, manual capture).

    Two steps, each committed: create the PaymentIntent and remember its id, then confirm it.
    Whatever happens to the confirm call (a timeout, a crash), we know which intent to retrieve or
    cancel, so no hold can be left behind unknown to us. A repeated call finds the work done.
    """
    with transaction.atomic():
        session = _locked_session(pk=session_id)
        payment = _locked_payment(session=session)
        if payment.status != P.PENDING or session.status != S.CREATED:
            return payment
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
        payment.stripe_payment_intent_id = state.id
        payment.client_secret = state.client_secret
        payment.save()
        _set_session_status(session, S.AUTHORIZING)
        _event(session, "stripe_intent_created", stripe_id=state.id, amount=state.amount, message=state.status)

    with transaction.atomic():
        session = _locked_session(pk=session_id)
        payment = _locked_payment(session=session)
        if payment.status != P.PENDING:
            return payment
        try:
            state = payments.confirm(
                payment.stripe_payment_intent_id,
                return_url=f"{settings.PUBLIC_BASE_URL}{reverse('checkout:status', args=[session.public_id])}",
                idempotency_key=f"payment-{payment.pk}-confirm",
            )
        except payments.PaymentDeclined as exc:
            return _declined(session, payment, exc)
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


def session_check_start_timeout(*, session_id: int) -> None:
    """The charger had its time to start: if it has not, give the driver's money back."""
    started_before = timezone.now() - timedelta(seconds=settings.CSMS_START_TIMEOUT_SECONDS)
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
    """The hold is a spending cap: stop once the running cost is within a margin of it."""
    hold = session.payment.amount_held
    margin = max(hold * settings.SPENDING_CAP_MARGIN_PERCENT // 100, settings.SPENDING_CAP_MARGIN_MIN)
    return _cents(Decimal(session.cost_incl_vat)) >= hold - margin


def csms_stop(*, reference: str) -> None:
    get_adapter().stop_session(reference=reference)


def session_apply_update(update: SessionUpdate) -> None:
    """What the CSMS reports: progress, and the final record that lets us capture."""
    with transaction.atomic():
        session = _locked_session(csms_reference=update.reference)
        if session is None:
            log.warning("CSMS update for unknown session reference %s", update.reference)
            return
        if session.status == S.FINISHED:
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


# --- money --------------------------------------------------------------------------------------


def payment_cancel(*, payment_id: int, reason: str) -> None:
    """Release the hold. Nothing was charged."""
    with transaction.atomic():
        payment = _locked_payment(pk=payment_id)
        if payment.status in (P.CANCELED, P.FAILED):
            return
        if payment.stripe_payment_intent_id and payment.status in (P.PENDING, P.REQUIRES_ACTION, P.AUTHORIZED):
            payments.cancel(payment.stripe_payment_intent_id, idempotency_key=f"payment-{payment.pk}-cancel")
        _set_payment_status(payment, P.CANCELED, message=reason, amount=payment.amount_held)


def payment_capture(*, payment_id: int) -> None:
    """Charge the final cost under the snapshot tariff, never above the hold; release the rest."""
    with transaction.atomic():
        payment = _locked_payment(pk=payment_id)
        session = payment.session
        if payment.status != P.AUTHORIZED or session.status != S.FINISHED:
            return
        priced = price_session(session)
        session.final_breakdown = priced.as_dict()
        session.cost_incl_vat = priced.total_incl_vat
        session.save()
        cost = _cents(priced.total_incl_vat)
        if cost <= 0:
            _event(session, "zero_cost", message="nothing to charge: hold canceled instead")
            payment_cancel(payment_id=payment.pk, reason="Nothing to charge.")
            return
        amount = min(cost, payment.amount_held)
        payments.capture(payment.stripe_payment_intent_id, amount=amount,
                         idempotency_key=f"payment-{payment.pk}-capture")
        _set_payment_status(payment, P.CAPTURED, amount=amount, amount_captured=amount,
                            shortfall=max(0, cost - payment.amount_held))
        _queue(tasks.receipt_issue, payment.pk)


# --- Stripe webhooks ----------------------------------------------------------------------------


def stripe_event_record(payload: dict) -> tuple[StripeEvent, bool]:
    """Store a verified webhook once by its event id."""
    return StripeEvent.objects.get_or_create(
        event_id=payload["id"], defaults={"type": payload.get("type", ""), "payload": payload}
    )


def stripe_event_process(*, event_pk: int) -> None:
    """Act on a webhook by retrieving the object from Stripe first: the event body is only a hint."""
    with transaction.atomic():
        event = StripeEvent.objects.select_for_update().get(pk=event_pk)
        if event.processed_at:
            return
        obj = (event.payload.get("data") or {}).get("object") or {}
        intent_id = obj.get("id") if obj.get("object") == "payment_intent" else obj.get("payment_intent")
        payment = Payment.objects.filter(stripe_payment_intent_id=intent_id).first() if intent_id else None
        if payment is None:
            event.outcome = f"no payment for {intent_id or 'this object'}: stored for staff"
            log.warning("stripe event %s (%s): %s", event.event_id, event.type, event.outcome)
        else:
            payment_refresh(session_id=payment.session_id)
            event.outcome = f"payment {payment.pk} checked against Stripe"
        event.processed_at = timezone.now()
        event.save()
