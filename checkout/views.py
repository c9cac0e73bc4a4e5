"""Driver-facing pages: scan, pay, follow the charge, stop, download the receipt.

Views parse input and render; every change goes through checkout.services.
"""

import logging
from decimal import Decimal

from django.conf import settings
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from directpay.clients import client_ip
from stations import qr, scans, shown_prices
from stations.models import Evse

from . import (
    credit_notes,
    energy,
    languages,
    lookup,
    pay_limits,
    payer,
    reasons,
    receipts,
    selectors,
    services,
)
from .forms import PayForm, ResumeForm
from .payments import PaymentGatewayError
from .states import PaymentStatus as P
from .states import SessionStatus as S

log = logging.getLogger(__name__)


def _evse_or_invalid(request, code, *, count=False, load=None):
    try:
        evse = qr.verify(code, load) if load else qr.verify(code)
    except qr.InvalidCode as exc:
        # Possible tampering or a voided sticker: log it, count it, and let no payment happen.
        log.warning(
            "invalid QR code scanned: reason=%s code=%r evse=%s", exc.reason, code[:80], exc.evse
        )
        if count:
            scans.scan_seen(code, client=client_ip(request), error=exc)
        context = languages.activate_for(request)
        return None, render(request, "checkout/invalid_code.html", context, status=404)
    if count:
        scans.scan_seen(code, client=client_ip(request), evse=evse)
    return evse, None


@require_GET
def scan(request, code):
    # One query and no write (the scan is counted in Redis where the cache is Redis).
    evse, invalid = _evse_or_invalid(request, code, count=True, load=selectors.evse_for_checkout)
    if invalid:
        return invalid
    connectors = evse.checkout_connectors
    if not connectors:
        raise Http404("no connector")
    operator = evse.location.operator
    now = timezone.now()
    # Each connector is sold at its own price (e.g. CCS and CHAdeMO on one DC EVSE); the first
    # available one is preselected. The EVSE's status rules all its connectors.
    evse_state = evse.status
    if evse_state == Evse.Status.AVAILABLE and evse.in_use:
        evse_state = Evse.Status.CHARGING
    options = []
    for connector in connectors:
        tariff = connector.tariff_at(now)
        state = connector.status if evse_state == Evse.Status.AVAILABLE else evse_state
        options.append(
            {
                "connector": connector,
                "state": state,
                "available": state == Evse.Status.AVAILABLE,
                "tariff": tariff,
                # What Pay checks: the content of the price shown here, not the tariff's row.
                "price_digest": tariff.price_digest,
                "price_lines": shown_prices.price_lines(tariff),
                "currency": tariff.currency,
            }
        )
    chosen = next((option for option in options if option["available"]), options[0])
    available = chosen["available"]
    context = languages.activate_for(request, operator) | {
        "evse": evse,
        "location": evse.location,
        "operator": operator,
        "options": options,
        "connector": chosen["connector"],
        "tariff": chosen["tariff"],
        "price_digest": chosen["price_digest"],
        "price_lines": chosen["price_lines"],
        "currency": chosen["currency"],
        "holds": [(amount, Decimal(amount) / 100) for amount in operator.hold_amounts],
        "default_hold": operator.default_hold,
        "available": available,
        "chosen": chosen,
        "stripe_js_url": settings.STRIPE_JS_URL,
        "stripe_publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
        "stripe_mode": "localstripe" if settings.STRIPE_API_BASE else "stripe",
        "pay_url": reverse("checkout:pay", args=[code]),
        "resume_url": reverse("checkout:resume", args=[code]),
        "challenge_site_key": settings.PAY_CHALLENGE_SITE_KEY,
        "stripe_js_timeout": settings.CHECKOUT_STRIPE_JS_TIMEOUT_SECONDS,
    }
    return render(request, "checkout/checkout.html", context)


def _error(message, *, status=400, held=False):
    return JsonResponse({"ok": False, "message": message, "held": held}, status=status)


def _refused(request, refusal, *, code, operator):
    """Pay over an abuse limit: nothing reached Stripe. JSON for checkout.js, a page for a plain form."""
    if "text/html" in request.headers.get("Accept", ""):
        # The switch returns to the checkout page: the refused POST cannot be fetched again.
        back = reverse("checkout:scan", args=[code])
        context = languages.activate_for(request, operator, next_url=back) | {"refusal": refusal}
        response = render(request, "checkout/too_many.html", context, status=refusal.status)
    else:
        response = JsonResponse(
            {
                "ok": False,
                "message": refusal.message,
                "held": False,
                "retry_after": refusal.retry_after,
            },
            status=refusal.status,
        )
    if refusal.retry_after:
        response["Retry-After"] = str(refusal.retry_after)
    return response


def _posted_to(request, code):
    """A script's POST to a sticker's URL: (EVSE, operator, None) with the page's language active
    (every answer, and a session's receipt, speak it), or (None, None, the answer to a bad code)."""
    evse, invalid = _evse_or_invalid(request, code)
    if invalid:
        return (
            None,
            None,
            _error(_("This code is not valid. Nothing has been charged."), status=404),
        )
    operator = evse.location.operator
    languages.activate_for(request, operator)
    return evse, operator, None


@require_POST
def pay(request, code):
    evse, operator, invalid = _posted_to(request, code)
    if invalid:
        return invalid
    form = PayForm(request.POST)
    if not form.is_valid():
        first = next(iter(form.errors.values()))[0]
        return _error(_("%(error)s Nothing has been charged.") % {"error": first})
    card = {
        "payment_method_id": form.cleaned_data["payment_method"],
        "confirmation_token": form.cleaned_data["confirmation_token"],
    }
    refusal = pay_limits.pay_refusal(request, evse=evse, **card)
    if refusal:
        return _refused(request, refusal, code=code, operator=operator)
    connector = (
        evse.connectors.select_related("tariff").filter(pk=form.cleaned_data["connector"]).first()
    )
    if connector is None:
        return _error(
            _("That connector does not belong to this charger. Nothing has been charged.")
        )
    try:
        with services.acting_as("driver"):
            session = services.session_create(
                evse=evse,
                connector=connector,
                hold_amount=form.cleaned_data["hold_amount"],
                email=form.cleaned_data["email"],
                language=get_language() or "en",
                attempt=form.cleaned_data["attempt"] or None,
                price_shown=form.cleaned_data["price"],
            )
            payment = services.payment_authorize(
                session_id=session.pk,
                radar_session=form.cleaned_data["radar_session"],
                **card,
            )
    except services.CheckoutError as exc:
        return _error(reasons.for_driver(str(exc)), status=409)
    except PaymentGatewayError:
        log.exception("payment gateway error at checkout")
        with services.acting_as("driver"):
            services.session_fail(session_id=session.pk, reason=reasons.GATEWAY_UNREACHABLE)
        return _error(
            _(
                "The payment service did not answer. Nothing will be charged: if an amount was "
                "held on your card, it is being released. Please try again."
            ),
            status=503,
            held=True,
        )
    return _answer_payer(session, payment)


@require_POST
def resume(request, code):
    """A tab that pressed Pay but never heard the answer (the connection dropped, the page was
    reloaded) asks which charge its press opened. The press's id is that tab's secret, as in a
    repeated Pay: the answer carries the payer cookie the lost answer would have, so the driver can
    follow and stop their own charge."""
    evse, operator, invalid = _posted_to(request, code)
    if invalid:
        return invalid
    form = ResumeForm(request.POST)
    if not form.is_valid():
        return _error(_("Nothing was paid with this page. Nothing has been charged."))
    refusal = pay_limits.resume_refusal(request, evse=evse)
    if refusal:
        return _refused(request, refusal, code=code, operator=operator)
    session = selectors.session_for_attempt(evse, form.cleaned_data["attempt"])
    if session is None:
        return _error(_("Nothing was paid with this page. Nothing has been charged."), status=404)
    status_url = reverse("checkout:status", args=[session.public_id])
    return payer.grant(JsonResponse({"ok": True, "status_url": status_url}), session)


def _answer_payer(session, payment):
    """The answer to the browser that paid: it alone gets the cookie that lets it stop the charge."""
    response = _payment_response(session, payment)
    return payer.grant(response, session) if response.status_code == 200 else response


def _payment_response(session, payment):
    status_url = reverse("checkout:status", args=[session.public_id])
    session.refresh_from_db(fields=["status", "failure_reason"])
    if payment.status == P.FAILED:
        if session.failure_reason == services.CARD_DETAILS_UNUSABLE:
            # Stripe refused the browser's ConfirmationToken (expired, used): no card was asked.
            return _error(
                _("%(reason)s Nothing has been charged.")
                % {"reason": reasons.for_driver(session.failure_reason)},
                status=400,
            )
        # Never the issuer's reason (a card tester's oracle): staff find it on the payment.
        return _error(
            _(
                "Your card was declined. Nothing has been charged. "
                "Try another card or payment method."
            ),
            status=402,
        )
    if session.status == S.FAILED:
        reason = reasons.for_driver(session.failure_reason)
        # Abandoned authentication, or the same press of Pay arriving again after it failed.
        if payment.status == P.CANCELED or (
            payment.status == P.PENDING and not payment.stripe_payment_intent_id
        ):
            return _error(
                _("%(reason)s Nothing has been charged.") % {"reason": reason}, status=409
            )
        return _error(
            _(
                "%(reason)s Nothing will be charged: if an amount was held on your card, "
                "it is being released."
            )
            % {"reason": reason},
            status=409,
            held=True,
        )
    if payment.status == P.REQUIRES_ACTION:
        return JsonResponse(
            {
                "ok": True,
                "next": "authenticate",
                "client_secret": payment.client_secret,
                "confirm_url": reverse("checkout:confirm", args=[session.public_id]),
                "status_url": status_url,
            }
        )
    return JsonResponse({"ok": True, "next": "status", "status_url": status_url})


@require_POST
def confirm(request, public_id):
    """The browser finished 3-D Secure; Stripe tells us how it went."""
    session = selectors.session_for_driver(public_id)
    if session is None:
        raise Http404
    languages.activate_for(request, session.evse.location.operator)
    if not payer.is_payer(request, session):
        # Only the browser that pressed Pay may finish (or, by not finishing, abandon) its checkout.
        return _error(
            _("This payment was started in another browser. Nothing has been charged here."),
            status=403,
        )
    try:
        with services.acting_as("driver"):
            payment = services.payment_refresh(session_id=session.pk)
    except PaymentGatewayError:
        return _error(
            _(
                "We could not confirm your payment yet. If an amount is held, it is released "
                "automatically when charging does not start."
            ),
            status=503,
            held=True,
        )
    if payment.status == P.REQUIRES_ACTION:
        # Authentication abandoned or failed without a final answer: release whatever may be held.
        with services.acting_as("driver"):
            services.session_fail(session_id=session.pk, reason=reasons.AUTHENTICATION_INCOMPLETE)
        payment.refresh_from_db()
    return _answer_payer(session, payment)


def _duration(session) -> str:
    if not session.started_at:
        return "–"
    minutes = max(
        0, int(((session.ended_at or timezone.now()) - session.started_at).total_seconds() // 60)
    )
    return _("%(hours)s h %(minutes)s min") % {"hours": minutes // 60, "minutes": minutes % 60}


def _status_context(session, *, is_payer=False):
    payment = session.payment
    receipt = getattr(payment, "receipt", None)
    return {
        "duration": _duration(session),
        "checkout_url": reverse("checkout:scan", args=[qr.code_for(session.evse)]),
        "session": session,
        "payment": payment,
        "receipt": receipt,
        **lookup.status_links(receipt),
        "held": Decimal(payment.amount_held) / 100,
        "captured": Decimal(payment.amount_captured) / 100,
        "released": Decimal(payment.amount_released) / 100,
        "refunded": Decimal(payment.amount_refunded) / 100,
        # Nothing more will change for the driver: no need to keep polling.
        "settled": receipt is not None or payment.status in (P.CANCELED, P.FAILED),
        "charging": session.status == S.CHARGING,
        # Stop needs the browser that paid; others see how to stop at the charger instead.
        "can_stop": session.status == S.CHARGING and is_payer,
        "stale_after": settings.CHECKOUT_STATUS_STALE_SECONDS,
    }


@require_GET
def status(request, public_id):
    session = selectors.session_for_driver(public_id)
    if session is None:
        raise Http404
    context = languages.activate_for(request, session.evse.location.operator)
    is_payer = payer.is_payer(request, session)
    if is_payer:
        languages.remember(session, get_language())  # the payer switched: documents follow
    context |= _status_context(session, is_payer=is_payer)
    return render(request, "checkout/status.html", context)


@require_GET
def status_json(request, public_id):
    session = selectors.session_for_driver(public_id)
    if session is None:
        raise Http404
    languages.activate_for(request, session.evse.location.operator)
    ctx = _status_context(session)
    payment = ctx["payment"]
    return JsonResponse(
        {
            "status": session.status,
            "payment_status": payment.status,
            # As the page prints them (1,250 in nl/de/fr): status.js only swaps the text.
            "kwh": number_format(energy.kwh_value(session.kwh), 3),
            "cost": number_format(session.cost_incl_vat, 2),
            "started_at": session.started_at.isoformat() if session.started_at else None,
            "ended_at": session.ended_at.isoformat() if session.ended_at else None,
            "receipt": bool(ctx["receipt"]),
            "settled": ctx["settled"],
        }
    )


@require_POST
def stop(request, public_id):
    """Stop: a plain form post gets the status page back; status.js (Accept: application/json) gets
    JSON, and sends the same press again until it is answered. A stop for a session already stopping,
    finished or failed is answered as done: pressing Stop twice, or once more after a lost answer, is fine."""
    session = selectors.session_for_driver(public_id)
    if session is None:
        raise Http404
    wants_json = "application/json" in request.headers.get("Accept", "")
    if not payer.is_payer(request, session):
        # Anyone may know the status URL; only the payer's browser (or staff, or the charger) stops.
        if wants_json:
            return JsonResponse(
                {
                    "ok": False,
                    "message": _("Only the browser that paid can stop this charge here."),
                },
                status=403,
            )
        back = reverse("checkout:status", args=[session.public_id])
        context = languages.activate_for(request, session.evse.location.operator, next_url=back)
        context["session"] = session
        return render(request, "checkout/stop_refused.html", context, status=403)
    with services.acting_as("driver"):
        services.session_request_stop(session_id=session.pk)
    if wants_json:
        session.refresh_from_db(fields=["status"])
        return JsonResponse({"ok": True, "status": session.status})
    return redirect("checkout:status", public_id=session.public_id)


@require_GET
def receipt_pdf(request, public_id):
    session = selectors.session_for_driver(public_id)
    receipt = getattr(getattr(session, "payment", None), "receipt", None) if session else None
    if receipt is None:
        raise Http404
    response = HttpResponse(receipts.receipt_pdf(receipt), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{receipt.number}.pdf"'
    return response


@require_GET
def credit_note_pdf(request, public_id, pk):
    session = selectors.session_for_driver(public_id)
    receipt = getattr(getattr(session, "payment", None), "receipt", None) if session else None
    note = receipt.credit_notes.filter(pk=pk).first() if receipt else None
    if note is None:
        raise Http404
    response = HttpResponse(credit_notes.credit_note_pdf(note), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{note.number}.pdf"'
    return response
