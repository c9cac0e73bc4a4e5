"""Periodic repairs (Celery beat): find purchases a lost message or a crash left half done, and finish them.

Every sweep calls the same services as the normal path (locked, idempotent), so running a sweep
while the normal path is still busy changes nothing twice. Each repair is logged and written to
the session's audit trail with the actor "sweep".
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

# Marks a driver's text for the catalogues; stored in English, translated when shown (reasons.py).
from django.utils.translation import gettext_noop as N_

from stations.csms.base import CsmsError

from . import selectors, services, tasks
from .models import ChargingSession, Payment, Receipt, Refund
from .payments import PaymentGatewayError
from .states import PaymentStatus as P
from .states import SessionStatus as S

log = logging.getLogger(__name__)

CREDIT_NOTE_REPAIR_DAYS = 7


def _run(what: str, fn, **kwargs) -> bool:
    """One repair; a failing peer must not stop the sweep from fixing the others."""
    log.info("sweep: %s", what)
    try:
        with services.acting_as("sweep"):
            fn(**kwargs)
        return True
    except (PaymentGatewayError, CsmsError) as exc:
        log.warning("sweep: %s failed, will try again next time: %s", what, exc)
        if (
            exc.permanent
        ):  # retrying will not help: staff must see it (said once, see flag_attention)
            subject = "session" if "session_id" in kwargs else "payment"
            with services.acting_as("sweep"):
                services.flag_task_failure(
                    subject, kwargs[f"{subject}_id"], f"sweep: {what}: {exc}"
                )
        return False


def start_timeouts(now=None) -> int:
    now = now or timezone.now()
    ids = ChargingSession.objects.filter(services.start_overdue(now)).values_list("pk", flat=True)
    return sum(
        _run(
            f"session {pk}: the charger never started",
            services.session_check_start_timeout,
            session_id=pk,
            now=now,
        )
        for pk in ids
    )


def abandoned_checkouts(now=None) -> int:
    """Checkouts nobody finished paying for (page closed, 3-D Secure abandoned): they block the EVSE."""
    now = now or timezone.now()
    # Waiting for 3-D Secure: a short limit, or one unanswered request per charger blocks a network.
    expired = sum(
        _run(
            f"session {pk}: 3-D Secure not completed in time",
            services.session_expire_authentication,
            session_id=pk,
            now=now,
        )
        for pk in ChargingSession.objects.filter(selectors.authentication_overdue(now)).values_list(
            "pk", flat=True
        )
    )
    cutoff = now - timedelta(minutes=settings.CHECKOUT_ABANDON_MINUTES)
    ids = ChargingSession.objects.filter(
        status__in=[S.CREATED, S.AUTHORIZING], created_at__lte=cutoff
    ).values_list("pk", flat=True)
    return expired + sum(
        _run(
            f"session {pk}: checkout abandoned",
            services.session_fail,
            session_id=pk,
            reason=N_("The payment was not completed in time."),
        )
        for pk in ids
    )


def strays(now=None) -> int:
    """Holds with no live session, sessions stuck stopping, holds about to expire, receipts not issued."""
    now = now or timezone.now()
    settled_before = now - timedelta(seconds=settings.SWEEP_GRACE_SECONDS)
    fixed = 0
    open_payments = [P.PENDING, P.REQUIRES_ACTION, P.AUTHORIZED]

    # A capture without its receipt.
    for pk in Payment.objects.filter(
        status__in=[P.CAPTURED, P.PARTIALLY_REFUNDED, P.REFUNDED],
        receipt__isnull=True,
        updated_at__lte=settled_before,
    ).values_list("pk", flat=True):
        log.info("sweep: payment %s: captured without a receipt", pk)
        tasks.receipt_issue.delay(pk)
        fixed += 1

    # A receipt whose PDF was never rendered (the worker died between the two steps).
    for pk in Receipt.objects.filter(rendered_at=None, issued_at__lte=settled_before).values_list(
        "pk", flat=True
    ):
        log.info("sweep: receipt %s: not rendered", pk)
        tasks.receipt_render.delay(pk)
        fixed += 1

    # A refund without its credit note (lost, or made before the receipt that now exists). Only
    # recent ones: refunds from before credit notes existed are for finance to document, not us.
    for pk in Refund.objects.filter(
        status=Refund.Status.SUCCEEDED,
        credit_note__isnull=True,
        payment__receipt__isnull=False,
        updated_at__lte=settled_before,
        updated_at__gte=now - timedelta(days=CREDIT_NOTE_REPAIR_DAYS),
    ).values_list("pk", flat=True):
        log.info("sweep: refund %s: no credit note", pk)
        tasks.receipt_credit_note.delay(pk)
        fixed += 1

    # A hold whose session failed: the cancel was lost (or is failing).
    for pk in Payment.objects.filter(
        status__in=open_payments, session__status=S.FAILED, updated_at__lte=settled_before
    ).values_list("pk", flat=True):
        fixed += _run(
            f"payment {pk}: hold left after a failed session",
            services.payment_cancel,
            payment_id=pk,
            reason=N_("Released by the sweep: the session did not charge."),
        )

    # A hold whose session finished: the capture was lost (or is failing).
    for pk in Payment.objects.filter(
        status=P.AUTHORIZED, session__status=S.FINISHED, updated_at__lte=settled_before
    ).values_list("pk", flat=True):
        fixed += _run(
            f"payment {pk}: finished session not captured", services.payment_capture, payment_id=pk
        )

    # A stop the CSMS never confirmed: ask again, then close on the last meter reading.
    stop_cutoff = now - timedelta(seconds=settings.CSMS_STOP_TIMEOUT_SECONDS)
    give_up = now - timedelta(seconds=settings.CSMS_STOP_GIVE_UP_SECONDS)
    for session in ChargingSession.objects.filter(
        status=S.STOPPING, stop_requested_at__lte=stop_cutoff
    ):
        ended = session.events.filter(kind="csms_ended").exists()  # the charger stopped by itself
        if session.stop_requested_at <= give_up:
            why = (
                "the charger never sent its final record"
                if ended
                else "the charger never confirmed the stop"
            )
            fixed += _run(
                f"session {session.pk}: {why}",
                services.session_close_unconfirmed,
                session_id=session.pk,
                why=why,
            )
        elif not ended and not session.events.filter(kind="stop_resent").exists():
            fixed += _run(
                f"session {session.pk}: stop not confirmed, asking again",
                services.session_resend_stop,
                session_id=session.pk,
            )

    # An authorisation about to lapse: capture what is known, or release it.
    expiring = now + timedelta(seconds=settings.AUTH_EXPIRY_MARGIN_SECONDS)
    for payment in Payment.objects.select_related("session").filter(
        status=P.AUTHORIZED, capture_before__lte=expiring
    ):
        session = payment.session
        if session.status in (S.CHARGING, S.STOPPING):
            fixed += _run(
                f"session {session.pk}: hold expires {payment.capture_before}",
                services.session_close_unconfirmed,
                session_id=session.pk,
                why="the card hold was about to expire",
            )
        elif session.status in (S.AUTHORIZED, S.STARTING):
            fixed += _run(
                f"session {session.pk}: hold expires before charging started",
                services.session_fail,
                session_id=session.pk,
                reason=N_("The charger did not start in time."),
            )

    return fixed
