"""A driver's purchase: the charging session, its payment, the audit trail and the receipt.

Money is kept in integer minor units (cents); prices and energy in Decimal.
"""

import uuid

from django.db import models
from django.db.models import Q

from stations.models import Connector, Evse, Operator

from .states import ACTIVE_SESSION_STATUSES, PaymentStatus, SessionStatus


class ChargingSession(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    evse = models.ForeignKey(Evse, on_delete=models.PROTECT, related_name="sessions")
    connector = models.ForeignKey(Connector, on_delete=models.PROTECT, related_name="sessions")
    status = models.CharField(max_length=20, choices=SessionStatus, default=SessionStatus.CREATED)
    failure_reason = models.CharField(max_length=300, blank=True, help_text="Shown to the driver.")
    # The price the driver saw is the price charged: the tariff as it was at checkout.
    tariff_snapshot = models.JSONField()
    time_zone = models.CharField(max_length=64)
    email = models.EmailField(blank=True)
    language = models.CharField(max_length=8, default="en")
    csms_reference = models.CharField(max_length=64, unique=True, editable=False)
    csms_session_id = models.CharField(max_length=64, blank=True)
    kwh = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    parking_minutes = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    cost_incl_vat = models.DecimalField(
        max_digits=10, decimal_places=2, default=0, help_text="Running cost."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    measured_at = models.DateTimeField(
        null=True, blank=True, help_text="When the CSMS last reported the meter."
    )
    ended_at = models.DateTimeField(null=True, blank=True)
    start_requested_at = models.DateTimeField(null=True, blank=True)
    # When we give up waiting for the charger to start (the CSMS may say how long it needs).
    start_deadline = models.DateTimeField(null=True, blank=True)
    stop_requested_at = models.DateTimeField(null=True, blank=True)
    cdr = models.JSONField(default=dict, blank=True)
    final_breakdown = models.JSONField(default=dict, blank=True)
    # Set when the browser sends the same Pay twice (a double tap): the second finds this session.
    checkout_attempt = models.CharField(
        max_length=64, unique=True, null=True, blank=True, editable=False
    )
    # Something staff should look at: a shortfall, a permanent error, a sweep that had to step in.
    attention = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = (
            # One active session per EVSE, enforced by the database so two drivers cannot both win.
            models.UniqueConstraint(
                fields=["evse"],
                condition=Q(status__in=ACTIVE_SESSION_STATUSES),
                name="one_active_session_per_evse",
            ),
        )
        ordering = ("-created_at",)
        permissions = (("stop_chargingsession", "Can stop a driver's charging session"),)

    def __str__(self):
        return f"{self.evse.evse_id} {self.created_at:%Y-%m-%d %H:%M} ({self.status})"


class SignedMeterData(models.Model):
    """The meter's signed readings of a session (German calibration law), as the CSMS's final
    record carried them, with what we found when we checked them (checkout/meter_data.py)."""

    class Verification(models.TextChoices):
        VERIFIED = "verified", "Signature verified"
        INVALID = "invalid", "Signature does not match"
        UNREADABLE = "unreadable", "Could not be checked"

    session = models.OneToOneField(
        ChargingSession, on_delete=models.PROTECT, related_name="meter_data"
    )
    encoding_method = models.CharField(max_length=36, blank=True)
    public_key = models.TextField(blank=True, help_text="DER, hex.")
    # [{"nature": "Start"|"End"|..., "signed_data": what the CSMS sent, "ocmf": the OCMF record}]
    values = models.JSONField(default=list, blank=True)
    url = models.CharField(max_length=512, blank=True)
    meter_id = models.CharField(max_length=64, blank=True)
    start_kwh = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)
    end_kwh = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)
    verification = models.CharField(max_length=20, choices=Verification)
    problem = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "signed meter data"
        verbose_name_plural = "signed meter data"

    def __str__(self):
        return f"{self.meter_id or self.encoding_method} ({self.verification})"

    @property
    def verified(self) -> bool:
        return self.verification == self.Verification.VERIFIED

    @property
    def downloadable(self) -> bool:
        """Whether there is an OCMF record for the transparency software."""
        return any(isinstance(v, dict) and v.get("ocmf") for v in self.values)


class Payment(models.Model):
    """What the driver paid for a session: a Stripe hold we capture (card), or the settlement a
    charger's own payment terminal reports over OCPP 2.1 (terminal; no Stripe object at all)."""

    class Method(models.TextChoices):
        CARD = "card", "Card not present (Stripe)"
        TERMINAL = "terminal", "Payment terminal at the charger"

    session = models.OneToOneField(
        ChargingSession, on_delete=models.PROTECT, related_name="payment"
    )
    status = models.CharField(max_length=20, choices=PaymentStatus, default=PaymentStatus.PENDING)
    currency = models.CharField(max_length=3)
    amount_held = models.PositiveIntegerField(help_text="Pre-authorised amount, minor units.")
    amount_captured = models.PositiveIntegerField(default=0)
    amount_refunded = models.PositiveIntegerField(default=0)
    shortfall = models.PositiveIntegerField(
        default=0, help_text="Final cost above the hold, not charged."
    )
    method = models.CharField(max_length=10, choices=Method, default=Method.CARD, editable=False)
    # The terminal's PSP reference (NotifySettlement.pspRef): a repeated settlement finds it.
    psp_reference = models.CharField(
        max_length=255, unique=True, null=True, blank=True, editable=False
    )
    stripe_payment_intent_id = models.CharField(max_length=64, unique=True, null=True, blank=True)
    client_secret = models.CharField(max_length=128, blank=True, editable=False)
    card_brand = models.CharField(max_length=20, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    wallet = models.CharField(max_length=20, blank=True)
    # A phone wallet pays with a device account number: the driver's wallet shows these digits,
    # not the card's (Stripe: card.wallet.dynamic_last4). Kept so the receipt lookup accepts both.
    wallet_last4 = models.CharField(max_length=4, blank=True)
    decline_message = models.CharField(max_length=300, blank=True)
    capture_before = models.DateTimeField(null=True, blank=True)
    # A Stripe write that was sent and may have taken effect though we never saw its answer
    # (a timeout, a crash). The next attempt asks Stripe first instead of writing twice.
    write_in_flight = models.CharField(max_length=20, blank=True, editable=False)
    write_amount = models.PositiveIntegerField(null=True, blank=True, editable=False)
    # What Stripe booked for the capture (reconciliation, exports): stored when it is captured.
    stripe_charge_id = models.CharField(max_length=64, blank=True)
    stripe_balance_transaction_id = models.CharField(max_length=64, blank=True, db_index=True)
    stripe_fee = models.IntegerField(null=True, blank=True, help_text="Stripe's fee, minor units.")
    stripe_net = models.IntegerField(
        null=True, blank=True, help_text="Captured minus Stripe's fee, minor units."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = (
            # A terminal payment is settled by the terminal's PSP: it never has a Stripe intent.
            models.CheckConstraint(
                condition=Q(method="card", psp_reference__isnull=True)
                | Q(method="terminal", psp_reference__isnull=False, stripe_payment_intent_id=None),
                name="payment_method_matches_references",
            ),
        )

    def __str__(self):
        return f"{self.amount_held / 100:.2f} {self.currency} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.method == self.Method.TERMINAL

    @property
    def refundable(self) -> int:
        return self.amount_captured - self.amount_refunded

    @property
    def amount_released(self) -> int:
        if self.status in (PaymentStatus.CANCELED,):
            return self.amount_held
        if self.status in (
            PaymentStatus.CAPTURED,
            PaymentStatus.PARTIALLY_REFUNDED,
            PaymentStatus.REFUNDED,
        ):
            return self.amount_held - self.amount_captured
        return 0


class PaymentEvent(models.Model):
    """Append-only audit trail: every state change and every call to Stripe or the CSMS."""

    session = models.ForeignKey(ChargingSession, on_delete=models.PROTECT, related_name="events")
    kind = models.CharField(max_length=40)
    # Who caused it: driver, worker, csms, stripe (a webhook), sweep, or staff:<username>.
    actor = models.CharField(max_length=60, blank=True)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    amount = models.IntegerField(null=True, blank=True)
    stripe_id = models.CharField(max_length=64, blank=True)
    message = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("created_at", "pk")


class Refund(models.Model):
    """Money given back after a capture. Created before Stripe is asked, so its id keys the write."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Reason(models.TextChoices):
        REQUESTED_BY_CUSTOMER = "requested_by_customer", "Requested by the driver"
        DUPLICATE = "duplicate", "Duplicate"
        FRAUDULENT = "fraudulent", "Fraudulent"
        SERVICE_ISSUE = "service_issue", "Charging problem"

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    amount = models.PositiveIntegerField(help_text="Minor units.")
    reason = models.CharField(max_length=30, choices=Reason)
    note = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=20, choices=Status, default=Status.PENDING)
    stripe_refund_id = models.CharField(max_length=64, blank=True)
    requested_by = models.CharField(max_length=150)
    failure_message = models.CharField(max_length=300, blank=True)
    # What Stripe booked for the refund: a negative amount in the balance, its fee (usually 0).
    stripe_balance_transaction_id = models.CharField(max_length=64, blank=True, db_index=True)
    stripe_fee = models.IntegerField(null=True, blank=True, help_text="Minor units.")
    stripe_net = models.IntegerField(
        null=True, blank=True, help_text="Minor units; negative: money leaving the balance."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("created_at", "pk")

    def __str__(self):
        return f"refund {self.amount / 100:.2f} ({self.status})"


class Dispute(models.Model):
    """A chargeback the driver's bank opened (charge.dispute.*), recorded for finance."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="disputes")
    stripe_dispute_id = models.CharField(max_length=64, unique=True)
    amount = models.PositiveIntegerField()
    reason = models.CharField(max_length=60, blank=True)
    status = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"dispute {self.stripe_dispute_id} ({self.status})"


class StripeEvent(models.Model):
    """A webhook as received: stored once by event id, processed later by a task."""

    event_id = models.CharField(max_length=64, unique=True)
    type = models.CharField(max_length=64)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=300, blank=True)


class NumberCounter(models.Model):
    """Gapless numbering: the last number issued per operator and year, taken under a row lock
    (checkout.receipts.take_number); each kind of document has its own series."""

    operator = models.ForeignKey(Operator, on_delete=models.PROTECT)
    year = models.PositiveIntegerField()
    last = models.PositiveIntegerField(default=0)

    class Meta:
        abstract = True


class ReceiptCounter(NumberCounter):
    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=["operator", "year"], name="one_counter_per_operator_year"
            ),
        )


class Receipt(models.Model):
    payment = models.OneToOneField(Payment, on_delete=models.PROTECT, related_name="receipt")
    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="receipts")
    year = models.PositiveIntegerField()
    sequence = models.PositiveIntegerField()
    number = models.CharField(max_length=40, unique=True)
    issued_at = models.DateTimeField()
    total_incl_vat = models.PositiveIntegerField(
        help_text="Minor units; equals the amount captured."
    )
    # The charge split gross first (checkout/vat.py): net + VAT == total_incl_vat, to the cent.
    total_excl_vat = models.PositiveIntegerField(default=0, help_text="Minor units.")
    vat_amount = models.PositiveIntegerField("VAT", default=0, help_text="Minor units.")
    # What the PDF prints, fixed when the number is taken: lines, adjustments, VAT per rate.
    document = models.JSONField(default=dict, blank=True, editable=False)
    # Rendered after the number is committed (empty until then; see receipts.receipt_render).
    pdf = models.BinaryField(editable=False, default=b"", blank=True)
    rendered_at = models.DateTimeField(null=True, blank=True, editable=False)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=["operator", "year", "sequence"], name="receipt_number_unique"
            ),
        )
        ordering = ("-issued_at",)
        permissions = (("export_receipts", "Can export receipts and payments (CSV)"),)

    def __str__(self):
        return self.number


class CreditNoteCounter(NumberCounter):
    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=["operator", "year"], name="one_credit_note_counter_per_operator_year"
            ),
        )


class CreditNote(models.Model):
    """A refund, documented: it refers to the receipt, with the refunded amount's VAT split."""

    refund = models.OneToOneField(Refund, on_delete=models.PROTECT, related_name="credit_note")
    receipt = models.ForeignKey(Receipt, on_delete=models.PROTECT, related_name="credit_notes")
    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="credit_notes")
    year = models.PositiveIntegerField()
    sequence = models.PositiveIntegerField()
    number = models.CharField(max_length=40, unique=True)
    issued_at = models.DateTimeField()
    # Amounts given back, in minor units: net + VAT == total_incl_vat == the refund.
    total_incl_vat = models.PositiveIntegerField()
    total_excl_vat = models.PositiveIntegerField()
    vat_amount = models.PositiveIntegerField("VAT")
    document = models.JSONField(default=dict, blank=True, editable=False)
    pdf = models.BinaryField(editable=False, default=b"", blank=True)
    rendered_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Sent to the address the driver gave at Pay, with the PDF (once: a retry finds it sent).
    emailed_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=["operator", "year", "sequence"], name="credit_note_number_unique"
            ),
        )
        ordering = ("-issued_at",)

    def __str__(self):
        return self.number


class InvoiceCounter(NumberCounter):
    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=["operator", "year"], name="one_invoice_counter_per_operator_year"
            ),
        )


class Invoice(models.Model):
    """A full VAT invoice to a business, issued after the fact: it replaces the simplified receipt
    (whose number is not reused) and carries the receipt's money unchanged (money rule 9)."""

    receipt = models.OneToOneField(Receipt, on_delete=models.PROTECT, related_name="invoice")
    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="invoices")
    year = models.PositiveIntegerField()
    sequence = models.PositiveIntegerField()
    number = models.CharField(max_length=40, unique=True)
    issued_at = models.DateTimeField()
    buyer_name = models.CharField(max_length=200)
    buyer_address = models.TextField()
    buyer_country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2")
    buyer_vat_id = models.CharField("buyer VAT id", max_length=20)
    # None: not looked up (INVOICE_VIES_CHECK off); else what VIES answered at issue.
    vies_valid = models.BooleanField(null=True, blank=True)
    total_incl_vat = models.PositiveIntegerField(help_text="Minor units; equals the receipt's.")
    total_excl_vat = models.PositiveIntegerField()
    vat_amount = models.PositiveIntegerField("VAT")
    document = models.JSONField(default=dict, blank=True, editable=False)
    pdf = models.BinaryField(editable=False, default=b"", blank=True)
    rendered_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=["operator", "year", "sequence"], name="invoice_number_unique"
            ),
        )
        ordering = ("-issued_at",)

    def __str__(self):
        return self.number


class ReconciliationIssue(models.Model):
    """A difference between our books and Stripe's, found by the daily reconciliation."""

    class Kind(models.TextChoices):
        STATUS = "status", "Status"
        CAPTURED = "captured", "Amount captured"
        REFUNDED = "refunded", "Amount refunded"
        REFUND_UNKNOWN = "refund_unknown", "Refund made outside this app"
        REFUND_MISSING = "refund_missing", "Refund missing at Stripe"
        BALANCE = "balance", "Balance transaction"
        FEE = "fee", "Fee or net"
        UNREADABLE = "unreadable", "Stripe could not be read"

    payment = models.ForeignKey(
        Payment, on_delete=models.PROTECT, related_name="reconciliation_issues"
    )
    kind = models.CharField(max_length=20, choices=Kind)
    ours = models.CharField(max_length=200, blank=True)
    stripe = models.CharField(max_length=200, blank=True)
    found_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)

    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=["payment", "kind"],
                condition=Q(resolved_at=None),
                name="one_open_reconciliation_issue_per_kind",
            ),
        )
        ordering = ("-found_at", "pk")
        permissions = (("resolve_reconciliationissue", "Can mark reconciliation issues resolved"),)

    def __str__(self):
        return f"{self.get_kind_display()}: ours {self.ours or '-'}, Stripe {self.stripe or '-'}"


class Payout(models.Model):
    """Money Stripe sent to the bank (payout.paid), with the balance transactions it contained."""

    stripe_payout_id = models.CharField(max_length=64, unique=True)
    amount = models.IntegerField(help_text="Minor units.")
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=20)
    arrival_date = models.DateTimeField(null=True, blank=True)
    automatic = models.BooleanField(default=False)
    # Why its lines could not be read (Stripe lists them for automatic payouts only); blank if they were.
    lines_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-arrival_date", "-pk")

    def __str__(self):
        return self.stripe_payout_id


class PayoutLine(models.Model):
    """One balance transaction in a payout: a capture (payment), a refund, or something of Stripe's."""

    payout = models.ForeignKey(Payout, on_delete=models.PROTECT, related_name="lines")
    stripe_balance_transaction_id = models.CharField(max_length=64, unique=True)
    type = models.CharField(max_length=40, blank=True)
    amount = models.IntegerField(help_text="Minor units.")
    fee = models.IntegerField(default=0, help_text="Minor units.")
    net = models.IntegerField(help_text="Minor units.")
    currency = models.CharField(max_length=3, blank=True)
    source = models.CharField(max_length=64, blank=True)
    payment = models.ForeignKey(
        Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="payout_lines"
    )
    refund = models.ForeignKey(
        Refund, on_delete=models.PROTECT, null=True, blank=True, related_name="payout_lines"
    )

    class Meta:
        ordering = ("pk",)

    def __str__(self):
        return self.stripe_balance_transaction_id


def pdf_export_path(export, filename):
    return f"exports/pdf/{export.operator_id}/{filename}"


class PdfExport(models.Model):
    """A ZIP of one operator's receipt and credit-note PDFs for a period, built by a worker."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="pdf_exports")
    # Days in the operator's zone (else each location's), both included.
    period_start = models.DateField()
    period_end = models.DateField()
    status = models.CharField(max_length=10, choices=Status, default=Status.QUEUED)
    done = models.PositiveIntegerField(default=0, help_text="PDFs written so far.")
    total = models.PositiveIntegerField(default=0, help_text="PDFs in the period.")
    # Not under MEDIA_URL: downloaded only through the admin, which checks permissions.
    file = models.FileField(upload_to=pdf_export_path, blank=True, editable=False)
    requested_by = models.CharField(max_length=150, editable=False)
    error = models.CharField(max_length=500, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ("-created_at",)
        verbose_name = "PDF export"
        constraints = (
            models.CheckConstraint(
                condition=Q(period_end__gte=models.F("period_start")), name="pdf_export_period"
            ),
        )

    def __str__(self):
        return f"{self.operator} {self.period_start}..{self.period_end}"
