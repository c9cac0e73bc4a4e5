"""Stripe webhooks: verify, store once by event id, process in a task. A second path, never the only one."""

from django.db import transaction
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
    with transaction.atomic():
        event, created = stripe_events.stripe_event_record(payload)
        if created:
            transaction.on_commit(lambda: tasks.stripe_event_process.delay(event.pk))
    return HttpResponse("ok")
