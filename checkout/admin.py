from django.contrib import admin

from .models import ChargingSession, Payment, PaymentEvent, Receipt, StripeEvent


class ReadOnlyMixin:
    """Money records change only through services, never by hand in the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class PaymentEventInline(ReadOnlyMixin, admin.TabularInline):
    model = PaymentEvent
    fields = ["created_at", "kind", "from_status", "to_status", "amount", "stripe_id", "message"]
    readonly_fields = fields


class PaymentInline(ReadOnlyMixin, admin.StackedInline):
    model = Payment
    readonly_fields = [
        "status", "currency", "amount_held", "amount_captured", "amount_refunded", "shortfall",
        "stripe_payment_intent_id", "card_brand", "card_last4", "wallet", "capture_before",
    ]
    fields = readonly_fields


@admin.register(ChargingSession)
class ChargingSessionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["created_at", "evse", "status", "kwh", "cost_incl_vat", "payment_status"]
    list_filter = ["status", "payment__status", "evse__location__operator"]
    search_fields = ["evse__evse_id", "csms_reference", "payment__stripe_payment_intent_id", "public_id"]
    inlines = [PaymentInline, PaymentEventInline]
    readonly_fields = ["tariff_snapshot", "cdr", "final_breakdown"]

    @admin.display(description="payment")
    def payment_status(self, session):
        return session.payment.get_status_display()


@admin.register(Receipt)
class ReceiptAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["number", "issued_at", "operator", "total_incl_vat", "emailed_at"]
    list_filter = ["operator", "year"]
    search_fields = ["number"]
    exclude = ["pdf"]


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["event_id", "type", "received_at", "processed_at", "outcome"]
    list_filter = ["type"]
    search_fields = ["event_id"]
