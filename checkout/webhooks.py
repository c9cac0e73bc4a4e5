"""Stripe webhooks: verify, store once by event id, process in a task (unless the payment is
settled already). A second path, never the only one."""

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import payments, stripe_events, tasks


@csrf_exempt
@require_POST
def stripe_webhook(request):
    try:
        payload = payments.verify_webhook(request.body, request.headers.get("Stripe-Signature", ""))
    except ValueError:
        return HttpResponse("bad signature", status=400)
    if not isinstance(payload, dict) or "id" not in payload:
        return HttpResponse("not an event", status=400)
    event_pk = stripe_events.stripe_event_receive(payload)  # stored, committed
    if event_pk is not None:
        tasks.stripe_event_process.delay(event_pk)
    return HttpResponse("ok")
