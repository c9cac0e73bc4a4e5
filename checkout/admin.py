from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join

from stations.admin_ops import ReadOnlyMixin

from . import (
    admin_finance,
    credit_notes,
    currencies,
    exports,
    invoices,
    receipts,
    reconciliation,
    refunds,
    services,
)
from .models import (
    ChargingSession,
    CreditNote,
    Dispute,
    Invoice,
    Payment,
    PaymentEvent,
    Payout,
    PdfExport,
    Receipt,
    ReconciliationIssue,
    Refund,
    SignedMeterData,
    StripeEvent,
)
from .states import PaymentStatus
from .states import SessionStatus as S

REFUNDABLE_STATUSES = (PaymentStatus.CAPTURED, PaymentStatus.PARTIALLY_REFUNDED)


def money(cents, currency: str) -> str:
    """Minor units as staff read them: 666 -> "6.66 EUR" (the currency's own decimals)."""
    return currencies.display(cents, currency)


def when(moment) -> str:
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT") if moment else "-"


def payment_of(session: ChargingSession) -> Payment | None:
    try:
        return session.payment
    except Payment.DoesNotExist:
        return None


def html_table(css_class: str, headers: list[str], rows: list[tuple]) -> str:
    """A small read-only table for a detail page; every cell is escaped."""
    if not rows:
        return "None"
    head = format_html_join("", "<th>{}</th>", [(h,) for h in headers])
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        [(format_html_join("", "<td>{}</td>", [(cell,) for cell in row]),) for row in rows],
    )
    return format_html(
        '<table class="{}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
        css_class,
        head,
        body,
    )


def session_link(session: ChargingSession):
    return format_html(
        '<a href="{}">{}</a>',
        reverse("admin:checkout_chargingsession_change", args=[session.pk]),
        session,
    )


class PaymentEventInline(ReadOnlyMixin, admin.TabularInline):
    model = PaymentEvent
    fields = (
        "created_at",
        "kind",
        "actor",
        "from_status",
        "to_status",
        "amount",
        "stripe_id",
        "message",
    )
    readonly_fields = fields


class PaymentInline(ReadOnlyMixin, admin.StackedInline):
    model = Payment
    readonly_fields = (
        "status",
        "currency",
        "held",
        "captured",
        "refunded",
        "shortfall_display",
        "stripe_payment_intent_id",
        "card_brand",
        "card_last4",
        "wallet",
        "wallet_last4",
        "capture_before",
        "stripe_charge_id",
        "stripe_balance_transaction_id",
        "stripe_fee",
        "stripe_net",
    )
    fields = readonly_fields

    @admin.display(description="held")
    def held(self, payment):
        return money(payment.amount_held, payment.currency)

    @admin.display(description="captured")
    def captured(self, payment):
        return money(payment.amount_captured, payment.currency)

    @admin.display(description="refunded")
    def refunded(self, payment):
        return money(payment.amount_refunded, payment.currency)

    @admin.display(description="shortfall")
    def shortfall_display(self, payment):
        return money(payment.shortfall, payment.currency)


class SignedMeterDataInline(ReadOnlyMixin, admin.StackedInline):
    """The meter's signed readings (Eichrecht) as the CSMS sent them, and whether they verified."""

    model = SignedMeterData
    readonly_fields = (
        "verification",
        "problem",
        "meter_id",
        "start_kwh",
        "end_kwh",
        "encoding_method",
        "public_key",
        "values",
        "url",
    )
    fields = readonly_fields


class NeedsAttentionFilter(admin.SimpleListFilter):
    title = "needs attention"
    parameter_name = "needs_attention"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(attention="")
        if self.value() == "no":
            return queryset.filter(attention="")
        return queryset


class RefundForm(forms.Form):
    amount = forms.DecimalField(
        min_value=Decimal("0.01"),
        max_digits=10,
        decimal_places=2,
        help_text="In major units, e.g. 3.50. At most what is still refundable.",
    )
    reason = forms.ChoiceField(choices=Refund.Reason.choices)
    note = forms.CharField(
        required=False,
        max_length=300,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why, for the audit trail (the driver does not see it).",
    )
    # What the payment looked like when the page was opened: a second submit (a double click, or
    # someone else refunding meanwhile) is refused instead of refunding twice.
    seen = forms.CharField(widget=forms.HiddenInput)

    def cents(self) -> int:
        return int((self.cleaned_data["amount"] * 100).to_integral_exact())


@admin.register(ChargingSession)
class ChargingSessionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "evse",
        "status",
        "kwh",
        "cost_incl_vat",
        "payment_status",
        "shortfall",
        "needs_attention",
    )
    list_filter = (NeedsAttentionFilter, "status", "payment__status", "evse__location__operator")
    list_select_related = ("evse", "payment")
    search_fields = (
        "evse__evse_id",
        "csms_reference",
        "payment__stripe_payment_intent_id",
        "public_id",
    )
    inlines = (PaymentInline, SignedMeterDataInline, PaymentEventInline)
    readonly_fields = (
        "attention",
        "tariff_snapshot",
        "cdr",
        "final_breakdown",
        "refunds_table",
        "disputes_table",
    )
    actions = ("mark_dealt_with", "stop_charging")

    def get_fieldsets(self, request, obj=None):
        fields = [
            f for f in self.get_fields(request, obj) if f not in ("refunds_table", "disputes_table")
        ]
        head = [
            f for f in ("evse", "connector", "status", "attention", "failure_reason") if f in fields
        ]
        return [
            (None, {"fields": head}),
            ("Refunds and disputes", {"fields": ["refunds_table", "disputes_table"]}),
            ("Details", {"fields": [f for f in fields if f not in head]}),
        ]

    # --- list ---

    @admin.display(description="payment")
    def payment_status(self, session):
        payment = payment_of(session)
        return payment.get_status_display() if payment else "-"

    @admin.display(description="shortfall", ordering="payment__shortfall")
    def shortfall(self, session):
        payment = payment_of(session)
        return money(payment.shortfall, payment.currency) if payment and payment.shortfall else "-"

    @admin.display(description="attention", boolean=True, ordering="attention")
    def needs_attention(self, session):
        return bool(session.attention)

    # --- detail ---

    @admin.display(description="refunds")
    def refunds_table(self, session):
        payment = payment_of(session)
        return html_table(
            "refunds",
            [
                "Created",
                "Amount",
                "Reason",
                "Note",
                "Status",
                "Stripe refund",
                "Requested by",
                "Failure",
            ],
            [
                (
                    when(r.created_at),
                    money(r.amount, payment.currency),
                    r.get_reason_display(),
                    r.note,
                    r.get_status_display(),
                    r.stripe_refund_id or "-",
                    r.requested_by,
                    r.failure_message,
                )
                for r in (payment.refunds.all() if payment else [])
            ],
        )

    @admin.display(description="disputes")
    def disputes_table(self, session):
        payment = payment_of(session)
        return html_table(
            "disputes",
            ["Created", "Stripe dispute", "Amount", "Reason", "Status"],
            [
                (
                    when(d.created_at),
                    d.stripe_dispute_id,
                    money(d.amount, payment.currency),
                    d.reason or "-",
                    d.status or "-",
                )
                for d in (payment.disputes.order_by("created_at", "pk") if payment else [])
            ],
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        session = self.get_object(request, object_id)
        payment = payment_of(session) if session else None
        if (
            payment
            and payment.status in REFUNDABLE_STATUSES
            and self.has_refund_permission(request)
        ):
            extra_context["refund_url"] = reverse(
                "admin:checkout_chargingsession_refund", args=[session.pk]
            )
        return super().change_view(request, object_id, form_url, extra_context)

    # --- clearing the attention flag ---

    def has_deal_with_permission(self, request):
        # The admin never edits sessions by form; clearing the flag is the one change it makes.
        return request.user.has_perm("checkout.change_chargingsession")

    @admin.action(description="Mark as dealt with", permissions=["deal_with"])
    def mark_dealt_with(self, request, queryset):
        """Empty `attention`; the audit trail keeps who did it and what the flag said."""
        with services.acting_as(f"staff:{request.user.get_username()}"):
            cleared = sum(
                services.session_clear_attention(session_id=pk)
                for pk in queryset.exclude(attention="").values_list("pk", flat=True)
            )
        if cleared:
            self.message_user(
                request, f"{cleared} session(s) marked as dealt with.", messages.SUCCESS
            )
        else:
            self.message_user(
                request, "None of the selected sessions needed attention.", messages.WARNING
            )

    # --- stopping a charge (a driver who cannot, a charger left running) ---

    def has_stop_permission(self, request):
        return request.user.has_perm("checkout.stop_chargingsession")

    @admin.action(description="Stop charging", permissions=["stop"])
    def stop_charging(self, request, queryset):
        who = f"staff:{request.user.get_username()}"
        charging = list(queryset.filter(status=S.CHARGING).values_list("pk", flat=True))
        with services.acting_as(who):
            for pk in charging:
                services.session_request_stop(session_id=pk, why=f"stopped by {who}")
        if charging:
            self.message_user(
                request,
                f"Stop sent for {len(charging)} session(s); each is billed when the "
                "charger confirms.",
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request, "None of the selected sessions is charging.", messages.WARNING
            )

    # --- refunds ---

    def has_refund_permission(self, request):
        return request.user.has_perm("checkout.add_refund")

    def get_urls(self):
        own = [
            path(
                "<int:pk>/refund/",
                self.admin_site.admin_view(self.refund_view),
                name="checkout_chargingsession_refund",
            ),
        ]
        return own + super().get_urls()

    def refund_view(self, request, pk):
        if not self.has_refund_permission(request):
            raise PermissionDenied
        session = get_object_or_404(
            ChargingSession.objects.select_related("payment", "evse"), pk=pk
        )
        change_url = reverse("admin:checkout_chargingsession_change", args=[session.pk])
        payment = payment_of(session)
        if payment is None or payment.status not in REFUNDABLE_STATUSES:
            self.message_user(request, "Only a captured payment can be refunded.", messages.ERROR)
            return HttpResponseRedirect(change_url)

        if request.method == "POST":
            form = RefundForm(request.POST)
            if form.is_valid():
                username = request.user.get_username()
                try:
                    with services.acting_as(f"staff:{username}"):
                        refund = refunds.payment_refund(
                            payment_id=payment.pk,
                            amount=form.cents(),
                            reason=form.cleaned_data["reason"],
                            note=form.cleaned_data["note"],
                            requested_by=username,
                            seen=form.cleaned_data["seen"],
                        )
                except refunds.RefundError as exc:
                    form.add_error(None, str(exc))
                else:
                    self.message_user(
                        request,
                        f"Refund of {money(refund.amount, payment.currency)} requested; "
                        "it shows as succeeded once Stripe confirms.",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(change_url)
            # Shown again: with the payment as it stands now, which the next submit is checked against.
            payment.refresh_from_db()
            form.data = form.data.copy()
            form.data["seen"] = refunds.refunds_seen(payment)
        else:
            available = payment.refundable - refunds.refunds_pending(payment)
            form = RefundForm(
                initial={
                    "amount": f"{Decimal(max(available, 0)) / 100:.2f}",
                    "reason": Refund.Reason.REQUESTED_BY_CUSTOMER,
                    "seen": refunds.refunds_seen(payment),
                }
            )

        pending = refunds.refunds_pending(payment)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Refund {session}",
            "opts": self.opts,
            "session": session,
            "payment": payment,
            "change_url": change_url,
            "form": form,
            "summary": [
                ("Captured", money(payment.amount_captured, payment.currency)),
                ("Refunded", money(payment.amount_refunded, payment.currency)),
                ("Refund pending", money(pending, payment.currency)),
                ("Still refundable", money(payment.refundable - pending, payment.currency)),
            ],
            "refunds_table": self.refunds_table(session),
        }
        return TemplateResponse(request, "admin/checkout/chargingsession/refund.html", context)


@admin.register(Refund)
class RefundAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "session",
        "amount_display",
        "reason",
        "status",
        "requested_by",
        "stripe_refund_id",
    )
    list_filter = ("status", "reason")
    list_select_related = ("payment__session__evse",)
    search_fields = (
        "stripe_refund_id",
        "payment__stripe_payment_intent_id",
        "requested_by",
        "note",
    )
    readonly_fields = ("session",)

    @admin.display(description="session")
    def session(self, refund):
        return session_link(refund.payment.session)

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, refund):
        return money(refund.amount, refund.payment.currency)


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "stripe_dispute_id",
        "session",
        "amount_display",
        "reason",
        "status",
    )
    list_filter = ("status", "reason")
    list_select_related = ("payment__session__evse",)
    search_fields = ("stripe_dispute_id", "payment__stripe_payment_intent_id")
    readonly_fields = ("session",)

    @admin.display(description="session")
    def session(self, dispute):
        return session_link(dispute.payment.session)

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, dispute):
        return money(dispute.amount, dispute.payment.currency)


class DocumentAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Receipts, credit notes and invoices: numbered PDFs, amounts shown as money, one download
    each (needs the model's view permission); the PDF bytes stay in the database until then."""

    def currency(self, document) -> str:
        raise NotImplementedError

    def document_pdf(self, document) -> bytes:
        raise NotImplementedError

    def extra_urls(self) -> list:
        return []

    def get_queryset(self, request):
        return super().get_queryset(request).defer("pdf")

    @admin.display(description="net", ordering="total_excl_vat")
    def net_display(self, document):
        return money(document.total_excl_vat, self.currency(document))

    @admin.display(description="VAT", ordering="vat_amount")
    def vat_display(self, document):
        return money(document.vat_amount, self.currency(document))

    @admin.display(description="total", ordering="total_incl_vat")
    def total_display(self, document):
        return money(document.total_incl_vat, self.currency(document))

    def _pdf_url_name(self) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_pdf"

    @admin.display(description="PDF")
    def pdf_link(self, document):
        url = reverse(f"admin:{self._pdf_url_name()}", args=[document.pk])
        return format_html('<a href="{}">{}.pdf</a>', url, document.number)

    def get_urls(self):
        own = [
            path(
                "<int:pk>/pdf/",
                self.admin_site.admin_view(self.pdf_view),
                name=self._pdf_url_name(),
            ),
        ]
        return own + self.extra_urls() + super().get_urls()

    def pdf_view(self, request, pk):
        if not request.user.has_perm(f"{self.opts.app_label}.view_{self.opts.model_name}"):
            raise PermissionDenied
        document = get_object_or_404(self.model, pk=pk)
        response = HttpResponse(self.document_pdf(document), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{document.number}.pdf"'
        return response


@admin.register(Receipt)
class ReceiptAdmin(DocumentAdmin):
    list_display = (
        "number",
        "issued_at",
        "operator",
        "net_display",
        "vat_display",
        "total_display",
        "emailed_at",
        "replaced_by",
        "pdf_link",
    )
    list_filter = admin_finance.finance_filters("payment__session__evse__location")
    date_hierarchy = "issued_at"
    list_select_related = ("operator", "payment", "invoice")
    search_fields = ("number",)
    fields = (
        "number",
        "operator",
        "payment",
        "issued_at",
        "net_display",
        "vat_display",
        "total_display",
        "vat_table",
        "emailed_at",
        "replaced_by",
        "pdf_link",
    )
    readonly_fields = fields
    actions = ("export_csv",)

    @admin.display(description="replaced by invoice")
    def replaced_by(self, receipt):
        invoice = getattr(receipt, "invoice", None)
        if invoice is None:
            return "-"
        url = reverse("admin:checkout_invoice_change", args=[invoice.pk])
        return format_html('<a href="{}">{}</a>', url, invoice.number)

    def currency(self, receipt) -> str:
        return receipt.payment.currency

    def document_pdf(self, receipt) -> bytes:
        return receipts.receipt_pdf(receipt)

    @admin.display(description="VAT per rate")
    def vat_table(self, receipt):
        currency = receipt.payment.currency
        return html_table(
            "vat",
            ["Rate", "Net", "VAT", "Gross"],
            [
                (
                    f"{line['rate']} %",
                    money(line["net"], currency),
                    money(line["vat"], currency),
                    money(line["gross"], currency),
                )
                for line in (receipt.document or {}).get("vat_lines", [])
            ],
        )

    def extra_urls(self) -> list:
        return [
            path(
                "export/",
                self.admin_site.admin_view(lambda r: admin_finance.export_view(self, r)),
                name="checkout_receipt_export",
            ),
            path(
                "summary/",
                self.admin_site.admin_view(lambda r: admin_finance.summary_view(self, r)),
                name="checkout_receipt_summary",
            ),
            path(
                "summary/csv/",
                self.admin_site.admin_view(lambda r: admin_finance.summary_csv_view(self, r)),
                name="checkout_receipt_summary_csv",
            ),
        ]

    def has_export_permission(self, request):
        return request.user.has_perm("checkout.export_receipts")

    @admin.action(description="Export as CSV (for bookkeeping)", permissions=["export"])
    def export_csv(self, request, queryset) -> StreamingHttpResponse:
        """The selected receipts and, for who may see them, the credit notes correcting them."""
        selected = Receipt.objects.filter(pk__in=queryset.values("pk"))
        notes = (
            exports.notes_of(selected)
            if request.user.has_perm("checkout.view_creditnote")
            else None
        )
        return admin_finance.csv_response(selected, notes, "receipts.csv")


@admin.register(CreditNote)
class CreditNoteAdmin(DocumentAdmin):
    list_display = (
        "number",
        "issued_at",
        "operator",
        "receipt",
        "net_display",
        "vat_display",
        "total_display",
        "pdf_link",
    )
    list_filter = admin_finance.finance_filters("refund__payment__session__evse__location")
    date_hierarchy = "issued_at"
    list_select_related = ("operator", "receipt", "refund__payment")
    search_fields = ("number", "receipt__number")
    fields = (
        "number",
        "operator",
        "receipt",
        "refund",
        "issued_at",
        "net_display",
        "vat_display",
        "total_display",
        "pdf_link",
    )
    readonly_fields = fields

    def currency(self, note) -> str:
        return note.refund.payment.currency

    def document_pdf(self, note) -> bytes:
        return credit_notes.credit_note_pdf(note)

    @admin.display(description="refunded", ordering="total_incl_vat")
    def total_display(self, note):
        return super().total_display(note)


@admin.register(Invoice)
class InvoiceAdmin(DocumentAdmin):
    list_display = (
        "number",
        "issued_at",
        "operator",
        "buyer_name",
        "buyer_vat_id",
        "receipt",
        "net_display",
        "vat_display",
        "total_display",
        "pdf_link",
    )
    list_filter = ("operator", "year", "buyer_country")
    list_select_related = ("operator", "receipt__payment")
    search_fields = ("number", "receipt__number", "buyer_name", "buyer_vat_id")
    fields = (
        "number",
        "operator",
        "receipt",
        "issued_at",
        "buyer_name",
        "buyer_address",
        "buyer_country",
        "buyer_vat_id",
        "vies_valid",
        "net_display",
        "vat_display",
        "total_display",
        "pdf_link",
    )
    readonly_fields = fields

    def currency(self, invoice) -> str:
        return invoice.receipt.payment.currency

    def document_pdf(self, invoice) -> bytes:
        return invoices.invoice_pdf(invoice)


class UnmatchedEventFilter(admin.SimpleListFilter):
    title = "payment match"
    parameter_name = "match"

    def lookups(self, request, model_admin):
        return [("unmatched", "Unmatched (no payment found)"), ("matched", "Matched")]

    def queryset(self, request, queryset):
        if self.value() == "unmatched":
            return queryset.filter(outcome__startswith="no payment for")
        if self.value() == "matched":
            return queryset.exclude(processed_at=None).exclude(outcome__startswith="no payment for")
        return queryset


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("event_id", "type", "received_at", "processed_at", "outcome")
    list_filter = (UnmatchedEventFilter, "type")
    search_fields = ("event_id",)


class OpenIssueFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", "Open"), ("resolved", "Resolved")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(resolved_at=None)
        if self.value() == "resolved":
            return queryset.exclude(resolved_at=None)
        return queryset


@admin.register(ReconciliationIssue)
class ReconciliationIssueAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """What the daily reconciliation found different at Stripe; finance resolves it here."""

    list_display = (
        "found_at",
        "kind",
        "session",
        "ours",
        "stripe",
        "last_seen_at",
        "resolved_at",
        "resolved_by",
    )
    list_filter = (OpenIssueFilter, "kind", "found_at")
    list_select_related = ("payment__session__evse",)
    search_fields = ("payment__stripe_payment_intent_id", "payment__stripe_charge_id")
    readonly_fields = ("session",)
    actions = ("mark_resolved",)

    @admin.display(description="session")
    def session(self, issue):
        return session_link(issue.payment.session)

    def has_resolve_permission(self, request):
        return request.user.has_perm("checkout.resolve_reconciliationissue")

    @admin.action(description="Mark as resolved", permissions=["resolve"])
    def mark_resolved(self, request, queryset):
        by = request.user.get_username()
        resolved = sum(
            reconciliation.issue_resolve(issue_id=pk, by=by)
            for pk in queryset.filter(resolved_at=None).values_list("pk", flat=True)
        )
        if resolved:
            self.message_user(request, f"{resolved} issue(s) marked as resolved.", messages.SUCCESS)
        else:
            self.message_user(
                request, "The selected issues were already resolved.", messages.WARNING
            )


@admin.register(Payout)
class PayoutAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Money Stripe sent to the bank, and the receipts (and credit notes) it contained."""

    list_display = ("stripe_payout_id", "amount_display", "status", "arrival_date", "line_count")
    list_filter = ("status", "arrival_date")
    search_fields = ("stripe_payout_id", "lines__source", "lines__payment__receipt__number")
    fields = (
        "stripe_payout_id",
        "amount_display",
        "status",
        "arrival_date",
        "automatic",
        "lines_error",
        "lines_table",
    )
    readonly_fields = fields

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, payout):
        return money(payout.amount, payout.currency)

    @admin.display(description="lines")
    def line_count(self, payout):
        return payout.lines.count()

    @admin.display(description="balance transactions")
    def lines_table(self, payout):
        lines = payout.lines.select_related(
            "payment__session", "payment__receipt", "refund__credit_note"
        )
        rows = []
        for line in lines:
            payment = line.payment
            receipt = getattr(payment, "receipt", None) if payment else None
            note = getattr(line.refund, "credit_note", None) if line.refund else None
            rows.append(
                (
                    line.stripe_balance_transaction_id,
                    line.type,
                    money(line.amount, line.currency),
                    money(line.fee, line.currency),
                    money(line.net, line.currency),
                    session_link(payment.session) if payment else line.source or "-",
                    receipt.number if receipt else "-",
                    note.number if note else "-",
                )
            )
        return html_table(
            "payout-lines",
            ["Transaction", "Type", "Amount", "Fee", "Net", "Session", "Receipt", "Credit note"],
            rows,
        )


admin.site.register(PdfExport, admin_finance.PdfExportAdmin)
