"""Every state change of a purchase. Views, tasks and the CSMS call these and nothing else.

Each service locks the rows it changes (select_for_update), returns quietly when the change was
already made (retries and duplicate events are no-ops), checks the transition against
checkout/states.py, appends a PaymentEvent, and queues follow-up work with on_commit (the building
blocks are in checkout/transitions.py). Refunds live in checkout/refunds.py, webhook handling in
checkout/stripe_events.py, the repair sweeps in checkout/sweeps.py.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

# Marks a driver's text for the catalogues; stored in English, translated when shown (reasons.py).
from django.utils.translation import gettext_noop as N_

from directpay.prepared import STAND_IN_TEXT, PreparedInsert, PreparedQuery, PreparedUpdate
from stations import tariffs
from stations.csms import get_adapter
from stations.csms.base import (
    CsmsError,
    Limits,
    SessionUpdate,
    StartResult,
    StartStatus,
)
from stations.csms.base import (
    SessionStatus as CsmsStatus,
)
from stations.models import Connector, Evse, Location

from . import meter_data, pay_limits, payments, tasks
from .models import ChargingSession, Payment
from .selectors import (
    authentication_overdue,
    connector_for_pay,
    overdue_checkouts,
    session_for_attempt,
)
from .states import PaymentStatus as P
from .states import SessionStatus as S
from .transitions import (
    acting_as,
    flag_attention,
    lock_payment,
    lock_session,
    queue_on_commit,
    record_event,
    set_payment_status,
    set_session_status,
)

log = logging.getLogger(__name__)


class CheckoutError(Exception):
    """A request we refuse; the message is for the driver, and nothing was held."""


# What a driver is told of any decline (the session's failure_reason); staff see the real reason.
DECLINED = N_("Your card was declined.")
# The browser's ConfirmationToken was refused (expired, already used, unknown): no card was asked.
CARD_DETAILS_UNUSABLE = N_("These card details can no longer be used. Please enter them again.")


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
        session = lock_session(pk=session_id)
        if session is None or not session.attention:
            return False  # cleared by someone else meanwhile
        record_event(session, "attention_cleared", message=session.attention[:500])
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
        flag_attention(session, message)


# --- checkout -----------------------------------------------------------------------------------


PRICE_CHANGED = N_(
    "The price changed since this page was loaded. Reload to see the new price. "
    "Nothing has been charged."
)
AUTHENTICATION_EXPIRED = N_("This checkout expired before card authentication was completed.")


# A purchase's two rows, each one statement compiled once (Model.save's work was most of their cost).
_INSERT_SESSION = PreparedInsert(ChargingSession)
_INSERT_PAYMENT = PreparedInsert(Payment)


def session_create(
    *,
    evse: Evse,
    connector: Connector,
    hold_amount: int,
    email: str = "",
    language: str = "en",
    attempt: str | None = None,
    price_shown: str | None = None,
) -> ChargingSession:
    """Open a purchase for an EVSE. Refuses an EVSE that is busy, out of order or already paid for.

    `attempt` is the browser's id for one press of Pay: the same press sent twice (a double tap,
    a resent request) finds the session the first one opened instead of being refused.
    `price_shown` is the digest of the price the page showed (stations.tariffs.price_digest): if
    the price differs now (an edit, an import, a CPO's update, a planned change taking effect),
    the driver is asked to reload rather than charged a price not seen. The driver's page always
    sends it; None is for callers that showed no price (tests, staff tools).
    """
    if attempt:
        # The same press again: it gets the first one's session (and answer), even if the price or
        # the charger changed in between; that press was checked when it arrived.
        same = session_for_attempt(evse, attempt)
        if same is not None:
            return same
    operator = evse.location.operator
    now = timezone.now()
    # One fresh read of the price: the digest is checked against it and the session keeps exactly
    # this content, whatever the row says a moment later.
    tariff = connector_for_pay(connector.pk).tariff_at(now)
    priced, currency = tariff.ocpi, tariff.currency
    digest = tariffs.price_digest(priced, currency)
    if price_shown is not None and price_shown != digest:
        raise CheckoutError(PRICE_CHANGED)
    if connector.evse_id != evse.pk:
        raise CheckoutError(
            N_("That connector does not belong to this charger. Nothing has been charged.")
        )
    if hold_amount not in operator.hold_amounts:
        raise CheckoutError(
            N_("Please choose one of the amounts offered. Nothing has been charged.")
        )
    if evse.status != Evse.Status.AVAILABLE:
        raise CheckoutError(
            N_("This charger is not available right now. Nothing has been charged.")
        )
    if connector.status != Evse.Status.AVAILABLE:
        raise CheckoutError(
            N_("This connector is not available right now. Nothing has been charged.")
        )
    # A checkout left waiting for 3-D Secure past its limit must not make this driver wait for
    # the sweep: fail it now (its hold is released as usual), then this one may take the EVSE.
    for stale in overdue_checkouts(evse, now):
        session_expire_authentication(session_id=stale, now=now)
    try:
        with transaction.atomic():
            session = ChargingSession(
                evse=evse,
                connector=connector,
                tariff_snapshot=priced,
                time_zone=evse.location.time_zone,
                email=email,
                language=language,
                csms_reference=f"DP{uuid.uuid4().hex[:22].upper()}",
                checkout_attempt=attempt or None,
            )
            _INSERT_SESSION.save(session)
            _INSERT_PAYMENT(session=session, currency=currency, amount_held=hold_amount)
            record_event(
                session,
                "created",
                to_status=S.CREATED,
                amount=hold_amount,
                message=f"price {digest}",
            )
    except IntegrityError:
        same = session_for_attempt(evse, attempt) if attempt else None
        if same is not None:
            return same
        raise CheckoutError(
            N_(
                "Another driver is already paying for or using this charger. Nothing has been charged."
            )
        ) from None
    return session


def payment_authorize(
    *,
    session_id: int,
    payment_method_id: str = "",
    confirmation_token: str = "",
    radar_session: str = "",
) -> Payment:
    """Hold the amount on the driver's card (server-side confirmation, manual capture).

    The card comes as a payment method (the embedded default's card element) or as a Stripe.js
    ConfirmationToken (production), exactly one of them; the token is passed at confirm.
    Two steps, each committed: create the PaymentIntent and remember its id, then confirm it.
    Whatever happens to the confirm call (a timeout, a crash), we know which intent to retrieve or
    cancel, so no hold can be left behind unknown to us. A repeated call finds the work done, or
    asks Stripe how far the first call got before confirming again.
    """
    if bool(payment_method_id) == bool(confirmation_token):
        raise ValueError("payment_authorize needs a payment method or a confirmation token")
    with transaction.atomic():
        session = lock_session("evse", pk=session_id)  # the intent's metadata names the EVSE
        payment = lock_payment(session=session)
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
                    radar_session=radar_session,
                )
            except payments.PaymentDeclined as exc:
                return _declined(session, payment, str(exc))
            # An intent that is only created holds nothing; from here on, a confirm may be in flight.
            payment.stripe_payment_intent_id = state.id
            payment.client_secret = state.client_secret
            payment.write_in_flight = "confirm"
            payment.save(
                update_fields=[
                    "stripe_payment_intent_id",
                    "client_secret",
                    "write_in_flight",
                    "updated_at",
                ]
            )
            set_session_status(session, S.AUTHORIZING)
            record_event(
                session,
                "stripe_intent_created",
                stripe_id=state.id,
                amount=state.amount,
                message=state.status,
            )

    with transaction.atomic():
        session = lock_session(pk=session_id)
        payment = lock_payment(session=session)
        if payment.status != P.PENDING or payment.write_in_flight != "confirm":
            return payment
        state = payments.retrieve(payment.stripe_payment_intent_id) if resumed else None
        if state is None or _unconfirmed(state, token=bool(confirmation_token)):
            try:
                state = payments.confirm(
                    payment.stripe_payment_intent_id,
                    return_url=f"{settings.PUBLIC_BASE_URL}{reverse('checkout:status', args=[session.public_id])}",
                    idempotency_key=f"payment-{payment.pk}-confirm",
                    confirmation_token=confirmation_token,
                )
            except payments.CardDetailsUnusable as exc:
                payment.write_in_flight = ""
                return _declined(session, payment, str(exc), shown=CARD_DETAILS_UNUSABLE)
            except payments.PaymentDeclined as exc:
                payment.write_in_flight = ""
                return _declined(session, payment, str(exc))
        payment.write_in_flight = ""
        _apply_intent(session, payment, state)
    return payment


def _unconfirmed(state: payments.IntentState, *, token: bool) -> bool:
    """The first confirm never reached Stripe: a payment method's intent still waits for it, a
    token's intent still has no payment method (and no decline, which would say it did reach)."""
    if token:
        return state.status == "requires_payment_method" and not state.error_message
    return state.status == "requires_confirmation"


def _declined(
    session: ChargingSession, payment: Payment, reason: str, *, shown: str = DECLINED
) -> Payment:
    """The card was refused. The driver is told only that (telling why helps card testers); the
    issuer's reason stays in the audit trail and on the payment for staff.

    `shown` CARD_DETAILS_UNUSABLE: Stripe refused the ConfirmationToken before asking any issuer,
    so it is not counted as a decline (a replayed token must not pause an EVSE's Pay)."""
    set_session_status(session, S.FAILED, failure_reason=shown)
    if (
        set_payment_status(payment, P.FAILED, message=reason, decline_message=reason)
        and shown == DECLINED
    ):
        # Counted once per payment, however often the same decline is reported.
        spike = pay_limits.decline_counted(evse=session.evse)
        if spike:
            flag_attention(session, spike)
    return payment


def payment_refresh(*, session_id: int) -> Payment:
    """After the browser finished 3-D Secure: ask Stripe (the truth) where the payment stands."""
    with transaction.atomic():
        session = lock_session(pk=session_id)
        payment = lock_payment(session=session)
        expired = session.status == S.FAILED
        if (
            not expired
            and payment.status in (P.PENDING, P.REQUIRES_ACTION)
            and payment.stripe_payment_intent_id
        ):
            state = payments.retrieve(payment.stripe_payment_intent_id)
            _apply_intent(session, payment, state)
    if expired and payment.status in (P.PENDING, P.REQUIRES_ACTION):
        # The checkout expired (or was abandoned) while the driver was still authenticating: it
        # must not turn into a hold now. Release it before answering, so the answer can say
        # truthfully that nothing is held (the queued cancel then finds it done).
        payment_cancel(payment_id=payment.pk, reason=session.failure_reason)
        payment.refresh_from_db()
    return payment


def _apply_intent(session: ChargingSession, payment: Payment, state: payments.IntentState) -> None:
    payment.card_brand = state.card_brand or payment.card_brand
    payment.card_last4 = state.card_last4 or payment.card_last4
    payment.wallet = state.wallet or payment.wallet
    payment.wallet_last4 = state.wallet_last4[-4:] or payment.wallet_last4
    saved = False  # a status change saves the whole row, the card's details with it
    if state.status == "requires_capture":
        if state.amount != payment.amount_held:
            log.error(
                "intent %s holds %s, expected %s", state.id, state.amount, payment.amount_held
            )
        saved = set_payment_status(
            payment, P.AUTHORIZED, amount=state.amount, capture_before=state.capture_before
        )
        set_session_status(session, S.AUTHORIZED)
        queue_on_commit(tasks.session_start, session.pk)
    elif state.status in ("requires_action", "requires_confirmation", "processing"):
        saved = set_payment_status(payment, P.REQUIRES_ACTION)
    elif state.status == "requires_payment_method":
        _declined(session, payment, state.error_message or "The payment was not authorised.")
    elif state.status == "canceled":
        saved = set_payment_status(payment, P.CANCELED, message="canceled at Stripe")
        set_session_status(session, S.FAILED, failure_reason=N_("The payment was canceled."))
    else:
        log.error("intent %s in unexpected status %s for manual capture", state.id, state.status)
    if not saved:
        payment.save()


# --- starting and stopping ----------------------------------------------------------------------


def session_request_start(*, session_id: int) -> None:
    """Ask the CSMS to start charging. Transient CSMS errors propagate so the task retries."""
    with transaction.atomic():
        # What the start asks the CSMS with, read with the lock: the charger, its location and
        # operator (which adapter, the cap's margin), the connector and the hold.
        session = lock_session("payment", "evse__location__operator", "connector", pk=session_id)
        if session is None:
            return
        session.connector.evse = session.evse  # the same row; the adapter reads it from here
        if session.status == S.AUTHORIZED:
            set_session_status(session, S.STARTING, start_requested_at=timezone.now())
        elif session.status != S.STARTING or session.events.filter(kind="csms_start").exists():
            return  # started already, or a retry after the CSMS answered
    try:
        result = get_adapter(session.evse.location).start_session(
            connector=session.connector,
            reference=session.csms_reference,
            limits=Limits(max_cost=Decimal(_cap_cents(session)) / 100),
        )
    except CsmsError as exc:
        if not exc.permanent:
            raise
        session_fail(session_id=session.pk, reason=N_("The charger could not be reached."))
        return
    with transaction.atomic():
        session = lock_session(pk=session_id)
        record_event(session, "csms_start", message=f"{result.status} {result.message}".strip())
        if result.status != StartStatus.REJECTED:
            _wait_for_start(session, result.wait_seconds or settings.CSMS_START_TIMEOUT_SECONDS)
    if result.status == StartStatus.REJECTED:
        session_fail(
            session_id=session.pk, reason=result.message or N_("The charger refused to start.")
        )


def _wait_for_start(session: ChargingSession, seconds: float) -> None:
    """Give the charger `seconds` more to start; after that the hold is released (by the start
    time-out sweep, every few seconds: no countdown task per session)."""
    deadline = timezone.now() + timedelta(seconds=seconds)
    if session.status == S.STARTING and (
        session.start_deadline is None or deadline > session.start_deadline
    ):
        session.start_deadline = deadline
        session.save(update_fields=["start_deadline", "updated_at"])


def session_apply_start_result(reference: str, result: StartResult) -> None:
    """The CSMS answered a start it had left pending (an OCPI CommandResult)."""
    with acting_as("csms"), transaction.atomic():
        session = lock_session(csms_reference=reference)
        if session is None:
            log.warning("start result for unknown session reference %s", reference)
            return
        record_event(
            session, "csms_start_result", message=f"{result.status} {result.message}".strip()
        )
        if result.status == StartStatus.ACCEPTED:
            if session.status == S.FAILED:
                # We gave the money back already: a charge starting now would be unpaid.
                record_event(
                    session,
                    "late_start_accepted",
                    message="charger accepted after the session failed",
                )
                queue_on_commit(tasks.csms_stop, session.csms_reference)
            else:
                # Accepted: the session record comes next; allow it the usual time to arrive.
                _wait_for_start(session, settings.CSMS_START_TIMEOUT_SECONDS)
            return
    if result.status == StartStatus.REJECTED:
        session_fail(
            session_id=session.pk, reason=result.message or N_("The charger refused to start.")
        )


def start_overdue(now) -> Q:
    """Sessions still starting whose charger has had its time."""
    waited = now - timedelta(seconds=settings.CSMS_START_TIMEOUT_SECONDS)
    return Q(status=S.STARTING) & (
        Q(start_deadline__lte=now) | Q(start_deadline__isnull=True, start_requested_at__lte=waited)
    )


def session_expire_authentication(*, session_id: int, now=None) -> bool:
    """A checkout waited too long for 3-D Secure: fail it so the EVSE is free, release any hold.

    Checked again under the row lock: a driver who completed authentication meanwhile keeps it.
    """
    now = now or timezone.now()
    with transaction.atomic():
        session = lock_session(pk=session_id)
        if (
            session is None
            or not ChargingSession.objects.filter(
                authentication_overdue(now), pk=session_id
            ).exists()
        ):
            return False
        record_event(
            session,
            "authentication_expired",
            message=f"waited more than {settings.CHECKOUT_3DS_MINUTES} min for 3-D Secure",
        )
        set_session_status(session, S.FAILED, failure_reason=AUTHENTICATION_EXPIRED)
        queue_on_commit(tasks.payment_cancel, session.payment.pk, AUTHENTICATION_EXPIRED)
    return True


def session_is_live(reference: str) -> bool:
    """Whether the purchase with this CSMS reference may charge now (a CSMS asking to authorise)."""
    return ChargingSession.objects.filter(
        csms_reference=reference, status__in=[S.STARTING, S.CHARGING]
    ).exists()


def session_check_start_timeout(*, session_id: int, now=None) -> None:
    """The charger had its time to start: if it has not, give the driver's money back."""
    session = ChargingSession.objects.filter(
        start_overdue(now or timezone.now()), pk=session_id
    ).first()
    if session:
        session_fail(session_id=session_id, reason=N_("The charger did not respond."))


def session_fail(*, session_id: int, reason: str) -> None:
    """The session will not charge: mark it failed and release the hold."""
    with transaction.atomic():
        session = lock_session(pk=session_id)
        if session.status in (S.FAILED, S.FINISHED, S.CHARGING, S.STOPPING):
            if session.status != S.FAILED:
                log.warning("not failing session %s: it is %s", session.pk, session.status)
            return
        set_session_status(session, S.FAILED, failure_reason=reason)
        queue_on_commit(tasks.payment_cancel, session.payment.pk, reason)


def session_request_stop(*, session_id: int, why: str = "driver pressed Stop") -> None:
    """The driver pressed Stop (or staff stopped the charge for them)."""
    with transaction.atomic():
        session = lock_session(pk=session_id)
        if session.status == S.CHARGING:
            _stop(session, why=why)


def _stop(session: ChargingSession, *, why: str) -> None:
    set_session_status(session, S.STOPPING, stop_requested_at=timezone.now())
    record_event(session, "stop_requested", message=why)
    queue_on_commit(tasks.csms_stop, session.csms_reference)


def _cap_cents(session: ChargingSession) -> int:
    """The hold is a spending cap: charging stops once the running cost is within the operator's
    margin of it (a charger that can enforce the cap itself is given this figure)."""
    operator = session.evse.location.operator
    hold = session.payment.amount_held
    return hold - max(hold * operator.cap_margin_percent // 100, operator.cap_margin_min)


def _near_cap(session: ChargingSession) -> bool:
    return _cents(Decimal(session.cost_incl_vat)) >= _cap_cents(session)


def session_resend_stop(*, session_id: int) -> None:
    """The CSMS did not confirm a stop: ask once more (the sweep calls this)."""
    with transaction.atomic():
        session = lock_session(pk=session_id)
        if session.status != S.STOPPING:
            return
        record_event(session, "stop_resent", message="no final record yet: stop asked again")
        queue_on_commit(tasks.csms_stop, session.csms_reference)


# A stop needs only the session's location (which CSMS to ask): that row, read by the reference.
_location_of_reference = PreparedQuery(
    "csms_location_of_reference",
    lambda reference: Location.objects.filter(evses__sessions__csms_reference=reference),
    reference=STAND_IN_TEXT,
)


def csms_stop(*, reference: str) -> None:
    location = _location_of_reference.get(reference=reference)
    get_adapter(location).stop_session(reference=reference)


# The session's columns a CSMS report sets (session_apply_update); status changes save on their own.
REPORTED_FIELDS = [
    "kwh",
    "parking_minutes",
    "started_at",
    "csms_session_id",
    "measured_at",
    "ended_at",
    "cdr",
    "cost_incl_vat",
    "updated_at",
]
_write_report = PreparedUpdate(ChargingSession, REPORTED_FIELDS)


def session_apply_update(update: SessionUpdate) -> None:
    """What the CSMS reports: progress, and the final record that lets us capture."""
    with acting_as("csms"), transaction.atomic():
        # Every progress report checks the spending cap: read the hold and the operator's margin with it.
        session = lock_session(
            "payment", "evse__location__operator", csms_reference=update.reference
        )
        if session is None:
            log.warning("CSMS update for unknown session reference %s", update.reference)
            return
        if update.credit:
            # The CSMS takes back a final record: whatever we captured stands until staff decide.
            flag_attention(
                session,
                f"the CSMS sent a credit record ({update.cdr.get('id', '')}): "
                "check whether a refund is due",
            )
            return
        if session.status == S.FINISHED:
            if update.final and not session.cdr:
                # We closed it ourselves (the CSMS never sent its record in time): staff compare.
                session.cdr = update.cdr
                session.save(update_fields=["cdr", "updated_at"])
                meter_data.record(session, update.signed_data)
                flag_attention(
                    session, "the CSMS sent its final record after we had closed the session"
                )
            return  # a duplicate or late record: the capture was already decided
        if session.status == S.FAILED:
            if (
                update.status == CsmsStatus.ACTIVE
                and not session.events.filter(kind="late_start_stopped").exists()
            ):
                # It started after we gave the money back: stop it rather than charge unpaid energy.
                record_event(
                    session,
                    "late_start_stopped",
                    message="charger started after the session failed",
                )
                queue_on_commit(tasks.csms_stop, session.csms_reference)
            return
        if update.status == CsmsStatus.INVALID:
            # OCPI: the CPO declares the session void and will not bill it; no final record follows.
            if session.status == S.STARTING:
                session_fail(session_id=session.pk, reason=N_("The charger could not start."))
            else:
                flag_attention(
                    session, "the CSMS declared the session invalid: no final record will come"
                )
            return
        session.kwh = update.kwh
        session.parking_minutes = update.parking_minutes
        session.started_at = update.started_at or session.started_at
        session.csms_session_id = update.csms_session_id or session.csms_session_id
        session.measured_at = update.measured_at or timezone.now()
        if (
            update.status in (CsmsStatus.ACTIVE, CsmsStatus.COMPLETED)
            and session.status == S.STARTING
        ):
            set_session_status(session, S.CHARGING)
        if (
            update.status == CsmsStatus.COMPLETED
            and not update.final
            and session.status in (S.CHARGING, S.STOPPING)
        ):
            # The charge is over (our Stop, a full car, a pulled cable): wait for the final record,
            # asking nothing more of the charger; the sweep bills this reading if that never comes.
            if session.status == S.CHARGING:
                set_session_status(session, S.STOPPING, stop_requested_at=timezone.now())
            if not session.events.filter(kind="csms_ended").exists():
                record_event(
                    session,
                    "csms_ended",
                    message="the charge has ended; waiting for its final record",
                )
        if update.final:
            session.ended_at = update.ended_at or timezone.now()
            session.cdr = update.cdr
            meter_data.record(session, update.signed_data)  # never raises
        session.cost_incl_vat = price_session(
            session, end=session.ended_at or update.measured_at
        ).total_incl_vat
        if update.final and session.status in (S.CHARGING, S.STOPPING):
            set_session_status(session, S.FINISHED)  # saves the figures above with it
            queue_on_commit(tasks.payment_capture, session.payment.pk)
            return
        # Only what a report changes: a progress report comes every few seconds per charge, and
        # the row's other columns (the tariff snapshot among them) need not be written again.
        _write_report(session)
        if not update.final and session.status == S.CHARGING and _near_cap(session):
            _stop(
                session,
                why=f"spending cap: {session.cost_incl_vat} of {session.payment.amount_held / 100:.2f}",
            )


def session_close_unconfirmed(*, session_id: int, why: str) -> None:
    """Close a session the CSMS never finished (its record is lost or the hold is about to expire).

    The meter as last reported is what we bill: it is all we know, and the hold must not lapse.
    """
    with transaction.atomic():
        session = lock_session(pk=session_id)
        if session is None or session.status not in (S.CHARGING, S.STOPPING):
            return
        if session.status == S.CHARGING:
            _stop(session, why=why)
        session.ended_at = session.measured_at or session.started_at or timezone.now()
        session.save()
        set_session_status(session, S.FINISHED)
        flag_attention(
            session,
            f"closed without the CSMS's final record ({why}); billed the last meter reading",
        )
        queue_on_commit(tasks.payment_capture, session.payment.pk)


def payment_canceled_at_stripe(*, payment_id: int) -> None:
    """The authorisation expired or was canceled outside this app: there is no money to charge."""
    with transaction.atomic():
        payment = lock_payment(pk=payment_id)
        if payment.status != P.AUTHORIZED:
            return
        set_payment_status(payment, P.CANCELED, message="canceled at Stripe")
        session = lock_session(pk=payment.session_id)
        if session.status == S.CHARGING:
            _stop(session, why="the hold was canceled at Stripe")
        elif session.status in (S.AUTHORIZED, S.STARTING):
            set_session_status(session, S.FAILED, failure_reason=N_("The payment was canceled."))
        flag_attention(session, "the hold was canceled at Stripe while we still held it")


# --- money --------------------------------------------------------------------------------------
#
# Each Stripe write is recorded as in flight (committed) before it is sent and cleared in the same
# transaction that records its result. The row lock is held during the call, so a racing worker
# waits and then finds the work done. If the mark is still there when a write begins, an earlier
# attempt may have reached Stripe: we retrieve the intent and act on what Stripe says, instead of
# trusting the idempotency key alone (localstripe, for one, ignores it).


def _mark_write(
    payment: Payment, operation: str, amount: int | None = None, *, with_fields: tuple = ()
) -> bool:
    """Record a Stripe write about to be sent (and `with_fields`, changed by the caller, in the
    same UPDATE). Returns True if the same write was already in flight."""
    if payment.write_in_flight == operation:
        return True
    payment.write_in_flight, payment.write_amount = operation, amount
    payment.save(update_fields=["write_in_flight", "write_amount", *with_fields, "updated_at"])
    record_event(
        payment.session,
        f"{operation}_requested",
        amount=amount,
        stripe_id=payment.stripe_payment_intent_id or "",
    )
    return False


def payment_cancel(*, payment_id: int, reason: str) -> None:
    """Release the hold. Nothing was charged."""
    with transaction.atomic():
        payment = lock_payment(pk=payment_id)
        if payment.status not in (P.PENDING, P.REQUIRES_ACTION, P.AUTHORIZED):
            return
        if not payment.stripe_payment_intent_id:  # nothing was ever sent to Stripe
            set_payment_status(payment, P.CANCELED, message=reason, amount=payment.amount_held)
            return
        resumed = _mark_write(payment, "cancel")

    with transaction.atomic():
        payment = lock_payment(pk=payment_id)
        if (
            payment.status not in (P.PENDING, P.REQUIRES_ACTION, P.AUTHORIZED)
            or payment.write_in_flight != "cancel"
        ):
            return
        state = payments.retrieve(payment.stripe_payment_intent_id, card=False) if resumed else None
        if state is None or state.status not in ("canceled", "succeeded"):
            state = payments.cancel(
                payment.stripe_payment_intent_id, idempotency_key=f"payment-{payment.pk}-cancel"
            )
        payment.write_in_flight, payment.write_amount = "", None
        if (
            state.status == "succeeded"
        ):  # captured elsewhere (Stripe's dashboard): nothing to release
            payment.save()
            flag_attention(
                payment.session, "asked to release a hold that was already captured at Stripe"
            )
            return
        set_payment_status(payment, P.CANCELED, message=reason, amount=payment.amount_held)


def _csms_cost(cdr: dict) -> int | None:
    """The total incl. VAT of the CSMS's final record, in cents, if it states one."""
    total = (cdr or {}).get("total_cost")
    try:
        return (
            _cents(Decimal(str(total["incl_vat"])))
            if isinstance(total, dict) and total.get("incl_vat") is not None
            else None
        )
    except ArithmeticError:
        return None


def _settle_with_csms(session: ChargingSession, ours: int) -> int:
    """What to charge: our price of the session, or the CSMS's total if that is lower.

    The driver agreed to our price; a CPO billing less must not make us charge more than it asks.
    A difference above the tolerance is flagged for staff either way.
    """
    theirs = _csms_cost(session.cdr)
    if theirs is None:
        return ours
    if abs(theirs - ours) > settings.CSMS_COST_TOLERANCE_CENTS:
        flag_attention(
            session,
            f"the CSMS's final record says {theirs / 100:.2f}, our price is {ours / 100:.2f}",
        )
    if theirs < ours:
        record_event(
            session,
            "csms_cost_lower",
            message=f"charging the CSMS's {theirs / 100:.2f} instead of our {ours / 100:.2f}",
            amount=theirs,
        )
        return theirs
    return ours


def charge_booked(charge: payments.ChargeState | None, *, captured: int, currency: str) -> dict:
    """The Payment fields for what Stripe booked for a capture: charge, balance transaction, fee, net.

    localstripe books the whole hold and then refunds the uncaptured rest; Stripe books only what
    was captured. Where the booked amount (same currency) is not what was captured, the net is the
    captured amount less the fee."""
    if charge is None:
        return {}
    fields = {"stripe_charge_id": charge.id}
    booked = charge.balance
    if booked is not None:
        net = booked.net
        if booked.currency == currency.upper() and booked.amount != captured:
            net = captured - booked.fee
        fields.update(
            stripe_balance_transaction_id=booked.id, stripe_fee=booked.fee, stripe_net=net
        )
    return fields


def payment_capture(*, payment_id: int) -> None:
    """Charge the final cost under the snapshot tariff, never above the hold; release the rest."""
    with transaction.atomic():
        payment = lock_payment(pk=payment_id)
        session = payment.session
        if payment.status != P.AUTHORIZED or session.status != S.FINISHED:
            return
        resumed = payment.write_in_flight == "capture"
        if not resumed:
            priced = price_session(session)
            session.final_breakdown = priced.as_dict()
            session.cost_incl_vat = priced.total_incl_vat
            session.save(update_fields=["final_breakdown", "cost_incl_vat", "updated_at"])
            cost = _settle_with_csms(session, _cents(priced.total_incl_vat))
            if cost <= 0:
                record_event(
                    session, "zero_cost", message="nothing to charge: hold canceled instead"
                )
                queue_on_commit(tasks.payment_cancel, payment.pk, "Nothing to charge.")
                return
            if cost > payment.amount_held:
                flag_attention(
                    session,
                    f"final cost {cost / 100:.2f} is above the hold; "
                    f"{(cost - payment.amount_held) / 100:.2f} not charged",
                )
            payment.shortfall = max(0, cost - payment.amount_held)
            _mark_write(
                payment, "capture", min(cost, payment.amount_held), with_fields=("shortfall",)
            )

    with transaction.atomic():
        payment = lock_payment(pk=payment_id)
        session = payment.session
        if payment.status != P.AUTHORIZED or payment.write_in_flight != "capture":
            return
        amount = payment.write_amount
        state = payments.retrieve(payment.stripe_payment_intent_id, card=False) if resumed else None
        if state is None or state.status == "requires_capture":
            state = payments.capture(
                payment.stripe_payment_intent_id,
                amount=amount,
                idempotency_key=f"payment-{payment.pk}-capture",
            )
        payment.write_in_flight, payment.write_amount = "", None
        if state.status == "canceled":  # the authorisation lapsed or was canceled at Stripe
            set_payment_status(payment, P.CANCELED, message="the hold was gone when we captured")
            flag_attention(
                session, "the hold had expired or was canceled before capture: nothing was charged"
            )
            return
        if state.status != "succeeded":
            payment.save()
            raise payments.PaymentGatewayError(
                f"capture left the intent {state.status}", permanent=True
            )
        captured = state.amount_received if state.amount_received is not None else amount
        set_payment_status(
            payment,
            P.CAPTURED,
            amount=captured,
            amount_captured=captured,
            **charge_booked(state.charge, captured=captured, currency=payment.currency),
        )
        queue_on_commit(tasks.receipt_issue, payment.pk)
        if not payment.stripe_balance_transaction_id:  # not booked yet: never wait for it here
            queue_on_commit(tasks.payment_booked_fill, payment.pk, countdown=60)
