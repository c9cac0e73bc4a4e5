"""Thin Celery tasks: they take ids and call a service.

Money tasks (queue "money") retry transient gateway/CSMS errors with backoff; receipts and e-mail
run on their own queue so a slow mail server never delays a capture.
"""

from celery import shared_task

from stations.csms.base import CsmsError

from . import receipts, selectors, services
from .payments import PaymentGatewayError

TRANSIENT = (PaymentGatewayError, CsmsError)
money = dict(autoretry_for=TRANSIENT, retry_backoff=2, retry_backoff_max=300, max_retries=12, acks_late=True)


@shared_task(**money)
def session_start(session_id: int):
    services.session_request_start(session_id=session_id)


@shared_task(**money)
def session_start_timeout(session_id: int):
    services.session_check_start_timeout(session_id=session_id)


@shared_task(**money)
def csms_stop(reference: str):
    services.csms_stop(reference=reference)


@shared_task(**money)
def payment_cancel(payment_id: int, reason: str):
    services.payment_cancel(payment_id=payment_id, reason=reason)


@shared_task(**money)
def payment_capture(payment_id: int):
    services.payment_capture(payment_id=payment_id)


@shared_task(**money)
def stripe_event_process(event_pk: int):
    services.stripe_event_process(event_pk=event_pk)


@shared_task(**money)
def sweep_start_timeouts():
    for session_id in selectors.sessions_past_start_timeout():
        services.session_check_start_timeout(session_id=session_id)


@shared_task(**money)
def sweep_abandoned_checkouts():
    for session_id in selectors.abandoned_checkouts():
        services.session_fail(session_id=session_id, reason="The payment was not completed in time.")


@shared_task(autoretry_for=(Exception,), retry_backoff=5, max_retries=8)
def receipt_issue(payment_id: int):
    receipt = receipts.receipt_issue(payment_id=payment_id)
    if receipt and receipt.payment.session.email and not receipt.emailed_at:
        receipt_email.delay(receipt.pk)


@shared_task(autoretry_for=(Exception,), retry_backoff=30, max_retries=8)
def receipt_email(receipt_id: int):
    receipts.receipt_email(receipt_id=receipt_id)
