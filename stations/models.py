"""What is on the ground: operators, locations, EVSEs, connectors and their tariffs."""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from .identifiers import time_zone_valid
from .tariffs import TariffError, price_digest, price_lines


def validate_time_zone(value):
    if value and not time_zone_valid(value):
        raise ValidationError(f"{value} is not an IANA time zone (e.g. Europe/Lisbon).")


def page_language_codes(value: str) -> list[str]:
    return [code.strip().lower() for code in (value or "").split(",") if code.strip()]


def validate_page_languages(value):
    known = dict(settings.LANGUAGES)
    unknown = [code for code in page_language_codes(value) if code not in known]
    if unknown:
        raise ValidationError(
            f"No page translation for {', '.join(unknown)}; choose from {', '.join(known)}."
        )


class Operator(models.Model):
    """The legal seller named on receipts."""

    name = models.CharField(max_length=200, help_text="Name shown to drivers.")
    legal_name = models.CharField(max_length=200)
    address = models.TextField(help_text="Registered address, as printed on receipts.")
    vat_id = models.CharField("VAT id", max_length=40)
    receipt_prefix = models.CharField(
        max_length=12, unique=True, help_text="Receipt numbers read PREFIX-YEAR-000001."
    )
    support_contact = models.CharField(max_length=200, blank=True)
    currency = models.CharField(max_length=3, default="EUR")
    hold_amounts = models.JSONField(
        default=list,
        help_text="Amounts drivers may hold, in minor units (cents), e.g. [2000, 3500, 5000].",
    )
    default_hold = models.PositiveIntegerField(help_text="Pre-selected hold, in minor units.")
    # The hold is a spending cap: charging stops once the running cost comes within this margin of it
    # (the larger of the two), so the final cost, which arrives later, stays under the hold.
    cap_margin_percent = models.PositiveSmallIntegerField(
        default=5, help_text="Stop charging when the running cost is within this % of the hold."
    )
    cap_margin_min = models.PositiveIntegerField(
        default=100, help_text="...or within this many minor units of it, whichever is larger."
    )
    languages = models.CharField(
        max_length=40,
        default="en",
        validators=[validate_page_languages],
        help_text="Languages on stickers, most used first, e.g. nl,en (en, nl, de, fr).",
    )
    # The driver's pages (checkout/languages.py) offer only languages with full catalogues.
    page_languages = models.CharField(
        max_length=40,
        blank=True,
        validators=[validate_page_languages],
        help_text="Languages of the driver's pages and receipts, the default first, e.g. nl,en "
        "(en, nl, de, fr). Empty: all of them, English by default.",
    )
    # Receipts: a tariff component without VAT is taxed at this rate (empty: DEFAULT_VAT_PERCENT,
    # and the receipt is flagged); a 0 % rate must say why (reverse charge, exemption) on the receipt.
    vat_rate = models.DecimalField(
        "VAT rate (%)",
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Used on receipts for tariff prices that state no VAT, e.g. 21.",
    )
    vat_exemption_text = models.CharField(
        "VAT exemption text",
        max_length=300,
        blank=True,
        help_text="Printed on receipts with 0 % VAT: the legal reason no VAT is charged.",
    )
    time_zone = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_time_zone],
        help_text="Zone whose calendar year numbers receipts (e.g. Europe/Lisbon). "
        "Empty: the zone of the session's location.",
    )

    def __str__(self):
        return self.name


class Location(models.Model):
    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="locations")
    name = models.CharField(max_length=200)
    address = models.CharField(max_length=200)
    postal_code = models.CharField(max_length=20)
    city = models.CharField(max_length=100)
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2")
    time_zone = models.CharField(max_length=64, default="Europe/Amsterdam")
    # Kept current by the CPO's Locations module when the location comes from an OCPI connection.
    ocpi_connection = models.ForeignKey(
        "OcpiConnection", null=True, blank=True, on_delete=models.PROTECT, related_name="locations"
    )
    ocpi_id = models.CharField("OCPI location id", max_length=36, blank=True)
    ocpi = models.JSONField(
        default=dict, blank=True, editable=False, help_text="The Location as the CPO last sent it."
    )
    # Which CSMS starts its sessions: an OCPI connection's location always uses OCPI.
    csms = models.CharField(
        "CSMS",
        max_length=10,
        blank=True,
        choices=(("", "Default (CSMS_BACKEND)"), ("ocpp", "OCPP direct (our gateway)")),
        help_text="OCPP direct: its chargers connect to our OCPP gateway.",
    )

    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=["ocpi_connection", "ocpi_id"],
                condition=models.Q(ocpi_connection__isnull=False),
                name="location_unique_per_ocpi_connection",
            ),
        )

    def __str__(self):
        return self.name

    @property
    def full_address(self):
        return f"{self.address}, {self.postal_code} {self.city}"


class Tariff(models.Model):
    """An ad hoc tariff, kept as an OCPI 2.2.1 Tariff object so one engine prices everything."""

    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="tariffs")
    name = models.CharField(max_length=200)
    ocpi = models.JSONField(
        help_text="OCPI 2.2.1 Tariff object: currency, elements, min_price, max_price."
    )
    ocpi_connection = models.ForeignKey(
        "OcpiConnection", null=True, blank=True, on_delete=models.PROTECT, related_name="tariffs"
    )
    ocpi_id = models.CharField("OCPI tariff id", max_length=36, blank=True)
    # A price change planned ahead: from `valid_until` on, connectors with this tariff are priced
    # with `replaced_by`. A session keeps the tariff its driver saw at checkout.
    valid_until = models.DateTimeField(
        null=True, blank=True, help_text="When the replacement takes over."
    )
    replaced_by = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="replaces",
        help_text="The tariff that applies from 'valid until' on.",
    )

    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=["ocpi_connection", "ocpi_id"],
                condition=models.Q(ocpi_connection__isnull=False),
                name="tariff_unique_per_ocpi_connection",
            ),
        )

    def __str__(self):
        return self.name

    def clean(self):
        # Refuse in the admin what the pricing engine could not price at checkout.
        try:
            price_lines(self.ocpi)
        except TariffError as exc:
            raise ValidationError({"ocpi": str(exc)}) from exc
        if bool(self.valid_until) != bool(self.replaced_by_id):
            raise ValidationError(
                "Give both 'valid until' and the tariff that replaces it, or neither."
            )
        if self.replaced_by_id:
            seen, nxt = {self.pk}, self.replaced_by
            while nxt is not None:
                if nxt.pk in seen:
                    raise ValidationError(
                        {"replaced_by": "A tariff cannot (in the end) replace itself."}
                    )
                if nxt.operator_id != self.operator_id:
                    raise ValidationError(
                        {"replaced_by": "The replacement must belong to the same operator."}
                    )
                seen.add(nxt.pk)
                nxt = nxt.replaced_by

    def in_force(self, at) -> "Tariff":
        """The tariff that prices a session starting at `at`: this one, or a replacement."""
        tariff, hops = self, 0
        while (
            tariff.valid_until and at >= tariff.valid_until and tariff.replaced_by_id and hops < 50
        ):
            tariff, hops = tariff.replaced_by, hops + 1
        return tariff

    @property
    def currency(self):
        return self.ocpi.get("currency") or self.operator.currency

    @property
    def price_digest(self) -> str:
        """What the checkout page posts back and Pay checks: this price's content, not this row."""
        return price_digest(self.ocpi, self.currency)


class Evse(models.Model):
    class Status(models.TextChoices):
        AVAILABLE = "AVAILABLE", "Available"
        CHARGING = "CHARGING", "In use"
        OUT_OF_ORDER = "OUT_OF_ORDER", "Out of order"
        UNKNOWN = "UNKNOWN", "Unknown"

    class SimBehaviour(models.TextChoices):
        ACCEPT = "accept", "Accept starts"
        REJECT = "reject", "Reject starts"
        OCCUPIED = "occupied", "Reject: occupied"
        TIMEOUT = "timeout", "Never answer"
        SLOW = "slow", "Start slowly"

    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="evses")
    uid = models.CharField(max_length=36, unique=True, help_text="Stable key (OCPI EVSE uid).")
    evse_id = models.CharField(
        "EVSE ID",
        max_length=48,
        unique=True,
        help_text="eMI3 id printed on the charger, e.g. NL*DPY*E0001*1.",
    )
    status = models.CharField(max_length=20, choices=Status, default=Status.AVAILABLE)
    sticker_version = models.PositiveIntegerField(
        default=1, help_text="Reprinting a sticker raises this and voids the old QR code."
    )
    sim_behaviour = models.CharField(
        "simulator behaviour",
        max_length=10,
        choices=SimBehaviour,
        default=SimBehaviour.ACCEPT,
        help_text="Only used by the simulated CSMS.",
    )

    class Meta:
        verbose_name = "EVSE"
        verbose_name_plural = "EVSEs"
        permissions = (
            (
                "print_sticker",
                "Can print and reprint QR stickers (a reprint voids the old sticker)",
            ),
        )

    def __str__(self):
        return self.evse_id


class Connector(models.Model):
    class Standard(models.TextChoices):
        TYPE2 = "IEC_62196_T2", "Type 2"
        CCS = "IEC_62196_T2_COMBO", "CCS"
        CHADEMO = "CHADEMO", "CHAdeMO"
        TYPE1 = "IEC_62196_T1", "Type 1"
        CCS1 = "IEC_62196_T1_COMBO", "CCS (Type 1)"
        SCHUKO = "DOMESTIC_F", "Schuko"

    class PowerType(models.TextChoices):
        AC_1_PHASE = "AC_1_PHASE", "AC"
        AC_2_PHASE = "AC_2_PHASE", "AC"
        AC_2_PHASE_SPLIT = "AC_2_PHASE_SPLIT", "AC"
        AC_3_PHASE = "AC_3_PHASE", "AC"
        DC = "DC", "DC"

    evse = models.ForeignKey(Evse, on_delete=models.CASCADE, related_name="connectors")
    connector_id = models.CharField(max_length=36, default="1")
    standard = models.CharField(max_length=30, choices=Standard)
    power_type = models.CharField(max_length=20, choices=PowerType)
    max_power_kw = models.DecimalField(
        max_digits=7, decimal_places=2, validators=[MinValueValidator(Decimal("0.1"))]
    )
    tariff = models.ForeignKey(Tariff, on_delete=models.PROTECT, related_name="connectors")
    # One connector out of order while the EVSE's others work (a broken CHAdeMO cable beside a good
    # CCS one): drivers see it, cannot choose it. The EVSE's own status still rules them all.
    status = models.CharField(
        max_length=20,
        choices=Evse.Status,
        default=Evse.Status.AVAILABLE,
        help_text="This connector only; the EVSE's status applies to all its connectors.",
    )

    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=["evse", "connector_id"], name="connector_unique_per_evse"
            ),
        )

    def __str__(self):
        return f"{self.evse.evse_id} #{self.connector_id}"

    def tariff_at(self, at) -> Tariff:
        """The tariff that prices a session starting at `at` (a planned price change may have taken over)."""
        return self.tariff.in_force(at)


class SimulatedSession(models.Model):
    """State of a charge on the simulated CSMS (the embedded default)."""

    reference = models.CharField(max_length=64, unique=True)
    connector = models.ForeignKey(Connector, on_delete=models.CASCADE)
    power_kw = models.DecimalField(max_digits=7, decimal_places=2)
    battery_kwh = models.DecimalField(max_digits=7, decimal_places=2, default=Decimal(60))
    accept_at = models.DateTimeField(help_text="When the simulated charger answers the start.")
    started_at = models.DateTimeField(null=True, blank=True)
    stop_requested_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    kwh = models.DecimalField(max_digits=10, decimal_places=4, default=Decimal(0))


class OcpiConnection(models.Model):
    """A CPO platform we talk OCPI 2.2.1 with (we are the eMSP).

    Two tokens: `token_ours` is the one the CPO presents when it calls us (we issued it: Token A
    until the handshake, then Token C in the spec's naming from their side), `token_theirs` the one
    we present when we call them (their Token A before we register, then the token they gave us).
    Both are secrets: the admin shows only their last characters, never the values.
    """

    class State(models.TextChoices):
        INVITED = "invited", "Invited (waiting for the CPO to register)"
        PENDING = "pending", "Pending (we have not registered yet)"
        CONNECTED = "connected", "Connected"
        SUSPENDED = "suspended", "Suspended (credentials deleted)"

    name = models.CharField(max_length=100, unique=True)
    state = models.CharField(max_length=20, choices=State, default=State.PENDING)
    versions_url = models.URLField(blank=True, help_text="The CPO's OCPI versions endpoint.")
    version = models.CharField(max_length=10, blank=True)
    endpoints = models.JSONField(
        default=list, blank=True, help_text="Their modules, as their version details list them."
    )
    country_code = models.CharField(max_length=2, blank=True)
    party_id = models.CharField(max_length=3, blank=True)
    business_name = models.CharField(max_length=100, blank=True)
    token_ours = models.CharField(max_length=64, unique=True, editable=False)
    token_theirs = models.CharField(max_length=64, blank=True, editable=False)
    # A Token A we issued (state INVITED) opens nothing after this; revoking sets it to now.
    token_a_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # OCPI 2.2.1 sends tokens base64-encoded; some platforms still send (and expect) the raw token.
    raw_token = models.BooleanField(
        default=False, help_text="Send our token to this peer without base64."
    )
    last_error = models.CharField(max_length=300, blank=True)
    operator = models.ForeignKey(
        Operator,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="ocpi_connections",
        help_text="The seller of the chargers this CPO runs: synced locations and tariffs belong to it.",
    )
    synced_at = models.DateTimeField(
        null=True, blank=True, help_text="Start of the last complete pull."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "OCPI connection"

    def __str__(self):
        return f"{self.name} ({self.state})"

    def token_a_expired(self, now) -> bool:
        return (
            self.state == self.State.INVITED
            and self.token_a_expires_at is not None
            and self.token_a_expires_at <= now
        )

    def endpoint(self, identifier: str, role: str | None = None) -> str | None:
        for endpoint in self.endpoints:
            if endpoint.get("identifier") == identifier and (
                role is None or endpoint.get("role") == role
            ):
                return endpoint.get("url")
        return None


class OcpiSession(models.Model):
    """A charge on an OCPI connection: the START_SESSION we sent and the Session the CPO reports.

    `reference` is our authorization_reference; it is empty for a Session the CPO sent that matches
    nothing of ours (kept for staff, never dropped).
    """

    connection = models.ForeignKey(
        OcpiConnection, on_delete=models.PROTECT, related_name="sessions"
    )
    reference = models.CharField(max_length=64, unique=True, null=True, blank=True)
    # The last path segment of our response_url: unguessable, so only the CPO we told can answer.
    command_id = models.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)
    token_uid = models.CharField(
        max_length=36, blank=True, help_text="The AD_HOC_USER token we started with."
    )
    country_code = models.CharField(max_length=2, blank=True)
    party_id = models.CharField(max_length=3, blank=True)
    session_id = models.CharField("CPO session id", max_length=36, blank=True)
    start_response = models.CharField(
        max_length=20, blank=True, help_text="CommandResponse to START_SESSION."
    )
    start_timeout = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seconds the CPO said it needs."
    )
    start_result = models.CharField(
        max_length=30, blank=True, help_text="CommandResult of START_SESSION."
    )
    stop_result = models.CharField(
        max_length=30, blank=True, help_text="CommandResult of STOP_SESSION."
    )
    data = models.JSONField(
        default=dict, blank=True, help_text="The Session as the CPO last sent it."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "OCPI session"
        ordering = ("-created_at",)

    def __str__(self):
        return self.reference or f"unmatched {self.country_code}*{self.party_id} {self.session_id}"


class OcpiCdr(models.Model):
    """A charge detail record a CPO posted; `session` is empty when it matched nothing of ours."""

    connection = models.ForeignKey(OcpiConnection, on_delete=models.PROTECT, related_name="cdrs")
    session = models.ForeignKey(
        OcpiSession, null=True, blank=True, on_delete=models.PROTECT, related_name="cdrs"
    )
    country_code = models.CharField(max_length=2)
    party_id = models.CharField(max_length=3)
    cdr_id = models.CharField("CDR id", max_length=39)
    credit = models.BooleanField(default=False)
    data = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "OCPI CDR"
        ordering = ("-received_at",)
        constraints = (
            models.UniqueConstraint(
                fields=["connection", "country_code", "party_id", "cdr_id"], name="cdr_unique"
            ),
        )

    def __str__(self):
        return f"{self.country_code}*{self.party_id} {self.cdr_id}"


class PrintBatch(models.Model):
    """One print of QR stickers: who printed which EVSEs, at which sticker versions, with which key."""

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    layout = models.CharField(max_length=20)

    class Meta:
        verbose_name_plural = "print batches"
        ordering = ("-created_at",)

    def __str__(self):
        return f"Print {self.pk} ({self.created_at:%Y-%m-%d %H:%M})"


class PrintedSticker(models.Model):
    batch = models.ForeignKey(PrintBatch, on_delete=models.CASCADE, related_name="stickers")
    evse = models.ForeignKey(Evse, on_delete=models.CASCADE, related_name="printed_stickers")
    sticker_version = models.PositiveIntegerField()
    key_id = models.CharField(
        max_length=16, help_text="Fingerprint of the signing key (never the key)."
    )

    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=["batch", "evse"], name="one_sticker_per_evse_per_batch"
            ),
        )


class ScanDay(models.Model):
    """Distinct clients that scanned QR codes per EVSE and day: counts only, nothing about who.

    Rows are written when a day's ScanMarks are rolled up (stations/scans.py). `evse` is empty for
    codes that name no EVSE of ours. `voided` counts clients that scanned an EVSE's older sticker,
    `invalid` clients whose code's signature does not verify: both may mean a fake sticker.
    """

    evse = models.ForeignKey(
        Evse, null=True, blank=True, on_delete=models.CASCADE, related_name="scan_days"
    )
    day = models.DateField()
    valid = models.PositiveIntegerField(default=0)
    voided = models.PositiveIntegerField(default=0)
    invalid = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = (
            models.UniqueConstraint(fields=["evse", "day"], name="one_scan_row_per_evse_day"),
        )


class ScanMark(models.Model):
    """A client seen scanning an EVSE's code today, so that it counts once per EVSE, kind and day.

    `client` is a 16-bit bucket of a keyed hash of the client's address under a key that changes
    every day: some 65,000 IPv4 addresses share a bucket, so a mark does not say who scanned, and
    the day's marks are counted into ScanDay and deleted soon after the day (stations/scans.py).
    """

    evse = models.ForeignKey(
        Evse, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    day = models.DateField()
    kind = models.CharField(max_length=7)  # valid, voided or invalid
    client = models.PositiveIntegerField()

    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=["evse", "day", "kind", "client"], name="one_scan_mark_per_client"
            ),
            # NULLs never conflict in the constraint above: codes that name no EVSE need their own.
            models.UniqueConstraint(
                fields=["day", "kind", "client"],
                condition=models.Q(evse__isnull=True),
                name="one_unknown_scan_mark_per_client",
            ),
        )


# OCPP direct (stations/csms/ocpp/): defined in their own module, registered with this app here.
from .ocpp_models import (  # noqa: F401
    ChargingStation,
    OcppEvse,
    OcppTransaction,
    OcppTransactionEvent,
)
