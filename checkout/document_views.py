"""Public pages for a driver's documents after the charge: find a receipt again without an account,
open it through a signed link, and ask for a business invoice that replaces it.

Kept apart from checkout/views.py (the live checkout) so each stays small; the services are in
checkout/lookup.py and checkout/invoices.py.
"""

from __future__ import annotations

from decimal import Decimal

from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import credit_notes, invoices, lookup, meter_views, receipts, selectors
from .forms import InvoiceForm, ReceiptFindForm
from .states import PaymentStatus as P


def _too_many(request, limited, *, what: str):
    response = render(
        request,
        "checkout/documents_too_many.html",
        {"limited": limited, "what": what},
        status=429,
    )
    response["Retry-After"] = str(limited.retry_after)
    return response


@require_http_methods(["GET", "POST"])
def receipt_find(request):
    """Find a receipt again with four facts the payer has; a match goes to its signed link."""
    if request.method != "POST":
        return render(request, "checkout/receipt_find.html", {"form": ReceiptFindForm()})
    # Counted before the form is read, so a malformed try costs as much as any other.
    limited = lookup.lookup_refusal(request, evse_id=request.POST.get("evse_id", "")[:48])
    if limited:
        return _too_many(request, limited, what="lookup")
    form = ReceiptFindForm(request.POST)
    if not form.is_valid():  # the format of what was typed, never whether it exists
        return render(request, "checkout/receipt_find.html", {"form": form}, status=400)
    receipt = lookup.receipt_find(**form.cleaned_data)
    if receipt is not None:
        return redirect(lookup.receipt_link(receipt))
    # One answer whatever did not match, or whether the EVSE exists at all.
    return render(
        request, "checkout/receipt_find.html", {"form": form, "not_found": True}, status=404
    )


def _receipt_or_404(token):
    receipt = lookup.receipt_from_token(token)
    if receipt is None:
        raise Http404
    return receipt


def invoice_allowed(receipt) -> bool:
    return receipt.payment.status in (P.CAPTURED, P.PARTIALLY_REFUNDED)


def _document_page(request, receipt, token, form=None, *, status=200):
    payment = receipt.payment
    session = payment.session
    return render(
        request,
        "checkout/document.html",
        {
            "receipt": receipt,
            "token": token,
            "session": session,
            "payment": payment,
            "charged": Decimal(payment.amount_captured) / 100,
            "invoice": getattr(receipt, "invoice", None),
            "invoice_allowed": invoice_allowed(receipt),
            "form": form or InvoiceForm(initial={"country": session.evse.location.country}),
        },
        status=status,
    )


@require_GET
def document(request, token):
    return _document_page(request, _receipt_or_404(token), token)


@require_POST
def document_invoice(request, token):
    """A business invoice replacing the receipt; asking again shows the one already issued."""
    receipt = _receipt_or_404(token)
    if getattr(receipt, "invoice", None):
        return redirect("checkout:document", token=token)
    limited = lookup.invoice_refusal(request)
    if limited:
        return _too_many(request, limited, what="invoice")
    form = InvoiceForm(request.POST)
    if not form.is_valid():
        return _document_page(request, receipt, token, form, status=400)
    data = form.cleaned_data
    try:
        buyer, registered = invoices.buyer_check(
            name=data["company"],
            address=data["address"],
            country=data["country"],
            vat_id=data["vat_id"],
        )
        invoices.invoice_issue(receipt_id=receipt.pk, buyer=buyer, vies_valid=registered)
    except invoices.InvoiceRefused as exc:
        form.add_error(exc.field, str(exc))
        return _document_page(request, receipt, token, form, status=400)
    return redirect("checkout:document", token=token)


def _pdf(content: bytes, number: str) -> HttpResponse:
    response = HttpResponse(content, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{number}.pdf"'
    return response


@require_GET
def document_receipt_pdf(request, token):
    receipt = _receipt_or_404(token)
    return _pdf(receipts.receipt_pdf(receipt), receipt.number)


@require_GET
def document_meter_data(request, token):
    return meter_views.xml_download(_receipt_or_404(token).payment.session)


@require_GET
def document_credit_note_pdf(request, token, pk):
    note = _receipt_or_404(token).credit_notes.filter(pk=pk).first()
    if note is None:
        raise Http404
    return _pdf(credit_notes.credit_note_pdf(note), note.number)


@require_GET
def document_invoice_pdf(request, token):
    invoice = getattr(_receipt_or_404(token), "invoice", None)
    if invoice is None:
        raise Http404
    return _pdf(invoices.invoice_pdf(invoice), invoice.number)


@require_GET
def invoice_pdf(request, public_id):
    """The invoice from the status page (its URL is the session's unguessable one)."""
    session = selectors.session_for_driver(public_id)
    receipt = getattr(getattr(session, "payment", None), "receipt", None) if session else None
    invoice = getattr(receipt, "invoice", None) if receipt else None
    if invoice is None:
        raise Http404
    return _pdf(invoices.invoice_pdf(invoice), invoice.number)
