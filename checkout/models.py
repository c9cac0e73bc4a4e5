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


class Payment(models.Model):
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
    stripe_payment_intent_id = models.CharField(max_length=64, unique=True, null=True, blank=True)
    client_secret = models.CharField(max_length=128, blank=True, editable=False)
    card_brand = models.CharField(max_length=20, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    wallet = models.CharField(max_length=20, blank=True)
    decline_message = models.CharField(max_length=300, blank=True)
    capture_before = models.DateTimeField(null=True, blank=True)
    # A Stripe write that was sent and may have taken effect though we never saw its answer
    # (a timeout, a crash). The next attempt asks Stripe first instead of writing twice.
    write_in_flight = models.CharField(max_length=20, blank=True, editable=False)
    write_amount = models.PositiveIntegerField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.amount_held / 100:.2f} {self.currency} ({self.status})"

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


class ReceiptCounter(models.Model):
    """Gapless numbering: the last number issued per operator and year, taken under a row lock."""

    operator = models.ForeignKey(Operator, on_delete=models.PROTECT)
    year = models.PositiveIntegerField()
    last = models.PositiveIntegerField(default=0)

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


class CreditNoteCounter(models.Model):
    """Credit notes have their own gapless series per operator and year (as receipts do)."""

    operator = models.ForeignKey(Operator, on_delete=models.PROTECT)
    year = models.PositiveIntegerField()
    last = models.PositiveIntegerField(default=0)

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

    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=["operator", "year", "sequence"], name="credit_note_number_unique"
            ),
        )
        ordering = ("-issued_at",)

    def __str__(self):
        return self.number


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
