"""Thin Celery tasks: they take ids and call a service.

Money tasks retry transient errors (Stripe 5xx/429/timeouts, CSMS timeouts) with backoff and stop
at once on permanent ones, flagging the session for staff. Receipts and e-mail run on their own
queue (settings.CELERY_TASK_ROUTES) so a slow mail server never delays a capture.
"""

import functools
import logging
import random

from celery import shared_task

from stations.csms.base import CsmsError

from . import (
    credit_notes,
    invoices,
    receipts,
    reconciliation,
    refunds,
    services,
    stripe_events,
    sweeps,
)
from .payments import PaymentGatewayError

log = logging.getLogger(__name__)

TRANSIENT = (PaymentGatewayError, CsmsError)
MAX_RETRIES = 12


def _backoff(retries: int) -> float:
    # 2, 4, 8 ... seconds up to 5 minutes, with jitter so a recovering peer is not hit all at once.
    return min(2 ** (retries + 1), 300) * random.uniform(0.8, 1.2)


def money_task(subject: str):
    """A task whose errors matter: transient ones retry, permanent ones (and exhausted retries) are flagged.

    `subject` says what the first argument identifies (session, payment, reference, refund, event),
    so staff see the failure on the right session.
    """

    def wrap(fn):
        @shared_task(
            bind=True, name=f"checkout.tasks.{fn.__name__}", acks_late=True, max_retries=MAX_RETRIES
        )
        @functools.wraps(fn)
        def task(self, *args):
            try:
                return fn(*args)
            except TRANSIENT as exc:
                if exc.permanent or self.request.retries >= self.max_retries:
                    why = (
                        "failed permanently"
                        if exc.permanent
                        else f"gave up after {self.max_retries} retries"
                    )
                    log.error("%s%r %s: %s", fn.__name__, args, why, exc)
                    services.flag_task_failure(subject, args[0], f"{fn.__name__} {why}: {exc}")
                    return None
                raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc

        return task

    return wrap


@money_task("session")
def session_start(session_id: int):
    services.session_request_start(session_id=session_id)


@money_task("session")
def session_start_timeout(session_id: int):
    # No longer queued (sweep_start_timeouts does it); kept for messages queued before an upgrade.
    services.session_check_start_timeout(session_id=session_id)


@money_task("reference")
def csms_stop(reference: str):
    services.csms_stop(reference=reference)


@money_task("payment")
def payment_cancel(payment_id: int, reason: str):
    services.payment_cancel(payment_id=payment_id, reason=reason)


@money_task("payment")
def payment_capture(payment_id: int):
    services.payment_capture(payment_id=payment_id)


@money_task("refund")
def refund_send(refund_id: int):
    refunds.refund_send(refund_id=refund_id)


@money_task("event")
def stripe_event_process(event_pk: int):
    with services.acting_as("stripe"):
        stripe_events.stripe_event_process(event_pk=event_pk)


@shared_task
def sweep_start_timeouts():
    sweeps.start_timeouts()


@shared_task
def sweep_abandoned_checkouts():
    sweeps.abandoned_checkouts()


@shared_task
def sweep_strays():
    sweeps.strays()


@shared_task
def reconcile_stripe():
    reconciliation.reconcile_recent()


# A capture whose balance transaction Stripe had not booked yet: looked up again a little later.
@shared_task(autoretry_for=(PaymentGatewayError,), retry_backoff=60, max_retries=6)
def payment_booked_fill(payment_id: int):
    if not reconciliation.payment_fill_booked(payment_id=payment_id):
        raise PaymentGatewayError(f"payment {payment_id}: balance transaction not booked yet")


@shared_task(autoretry_for=(Exception,), retry_backoff=5, max_retries=8)
def receipt_issue(payment_id: int):
    # The number is committed first; rendering the PDF after it keeps the counter's lock short.
    receipt = receipts.receipt_issue(payment_id=payment_id)
    if receipt:
        receipt_render(receipt.pk)


@shared_task(autoretry_for=(Exception,), retry_backoff=5, max_retries=8)
def receipt_render(receipt_id: int):
    receipt = receipts.receipt_render(receipt_id=receipt_id)
    if receipt.payment.session.email and not receipt.emailed_at:
        receipt_email.delay(receipt.pk)


@shared_task(autoretry_for=(Exception,), retry_backoff=30, max_retries=8)
def receipt_email(receipt_id: int):
    receipts.receipt_email(receipt_id=receipt_id)


# Named receipt_* so that it runs on the receipts queue (settings.CELERY_TASK_ROUTES).
@shared_task(autoretry_for=(Exception,), retry_backoff=5, max_retries=8)
def receipt_credit_note(refund_id: int):
    note = credit_notes.credit_note_issue(refund_id=refund_id)
    if note:
        note = credit_notes.credit_note_render(credit_note_id=note.pk)
        if note.refund.payment.session.email and not note.emailed_at:
            receipt_credit_note_email.delay(note.pk)


@shared_task(autoretry_for=(Exception,), retry_backoff=30, max_retries=8)
def receipt_credit_note_email(credit_note_id: int):
    credit_notes.credit_note_email(credit_note_id=credit_note_id)


# Named receipt_* so that it runs on the receipts queue (settings.CELERY_TASK_ROUTES).
@shared_task(autoretry_for=(Exception,), retry_backoff=5, max_retries=8)
def receipt_invoice_render(invoice_id: int):
    invoice = invoices.invoice_render(invoice_id=invoice_id)
    receipts.receipt_render(receipt_id=invoice.receipt_id)  # again, with its "replaced by" mark


# receipt_* routes it to the receipts queue, next to PDF rendering; a failure is shown on the export.
@shared_task
def receipt_pdf_export(export_id: int):
    from . import pdf_exports  # imported here: it imports receipts, which imports this module

    pdf_exports.pdf_export_build(export_id=export_id)
