"""Chargers we are the CSMS of, over OCPP 2.0.1 / 2.1 (stations/csms/ocpp/)."""

import secrets

from django.contrib.auth.hashers import check_password, make_password
from django.core.validators import RegexValidator
from django.db import models

# OCPP's identity is the last segment of the connection URL: keep it URL-safe and short.
identity_validator = RegexValidator(
    r"^[A-Za-z0-9._\-]{1,48}$", "Letters, digits, '.', '_' and '-' only (at most 48)."
)


class ChargingStation(models.Model):
    """A charger that connects to our gateway (we are its CSMS), with security profile 2."""

    class Protocol(models.TextChoices):
        V201 = "ocpp2.0.1", "OCPP 2.0.1"
        V21 = "ocpp2.1", "OCPP 2.1"

    identity = models.CharField(
        max_length=48,
        unique=True,
        validators=[identity_validator],
        help_text="The charger connects to wss://<gateway>/ocpp/<identity>.",
    )
    protocol = models.CharField(
        max_length=10,
        choices=Protocol,
        default=Protocol.V201,
        help_text="What the station speaks; updated to what it negotiates when it connects.",
    )
    location = models.ForeignKey(
        "stations.Location", on_delete=models.PROTECT, related_name="charging_stations"
    )
    password_hash = models.CharField(max_length=200, editable=False)
    vendor = models.CharField(max_length=50, blank=True, editable=False)
    model = models.CharField(max_length=50, blank=True, editable=False)
    serial_number = models.CharField(max_length=25, blank=True, editable=False)
    firmware_version = models.CharField(max_length=50, blank=True, editable=False)
    connected = models.BooleanField(default=False, editable=False)
    # The control address of the gateway process that holds the socket (host:port): commands go there.
    gateway = models.CharField(max_length=100, blank=True, editable=False)
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_message = models.CharField(max_length=200, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "OCPP charging station"

    def __str__(self):
        return self.identity

    def set_new_password(self) -> str:
        """A fresh password (OCPP 2.0.1 allows 16-40 characters); only its hash is stored."""
        password = secrets.token_urlsafe(24)  # 32 characters
        self.password_hash = make_password(password)
        return password

    def password_matches(self, password: str) -> bool:
        return bool(self.password_hash) and check_password(password, self.password_hash)


class OcppEvse(models.Model):
    """Which of a station's EVSEs (its own evseId) is our Evse; connector ids are our Connector's."""

    evse = models.OneToOneField("stations.Evse", on_delete=models.CASCADE, related_name="ocpp")
    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="evses")
    evse_number = models.PositiveIntegerField("station's evseId", default=1)
    status = models.CharField(
        max_length=20, blank=True, editable=False, help_text="Last StatusNotification."
    )

    class Meta:
        verbose_name = "OCPP EVSE binding"
        constraints = (
            models.UniqueConstraint(
                fields=["station", "evse_number"], name="ocpp_evse_unique_per_station"
            ),
        )

    def __str__(self):
        return f"{self.station.identity} evse {self.evse_number}"


class OcppTransaction(models.Model):
    """A charge on an OCPP station: our start request and the TransactionEvents it reports.

    `reference` is empty for a transaction the station started by itself (kept for staff).
    """

    class State(models.TextChoices):
        REQUESTED = "requested", "Start requested"
        REJECTED = "rejected", "Start rejected"
        STARTED = "started", "Started"
        ENDED = "ended", "Ended"

    station = models.ForeignKey(
        ChargingStation, on_delete=models.PROTECT, related_name="transactions"
    )
    reference = models.CharField(max_length=64, unique=True, null=True, blank=True)
    connector = models.ForeignKey(
        "stations.Connector", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    id_token = models.CharField(max_length=36, blank=True, help_text="The ad hoc idToken we sent.")
    # A charge its own payment terminal authorised (idToken type DirectPayment): the PSP reference.
    psp_ref = models.CharField("terminal's PSP reference", max_length=255, blank=True)
    transaction_id = models.CharField("station's transactionId", max_length=36, blank=True)
    state = models.CharField(max_length=10, choices=State, default=State.REQUESTED)
    max_cost = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, help_text="Spending cap (2.1)."
    )
    meter_start_wh = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    meter_wh = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    last_seq_no = models.IntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    measured_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    stopped_reason = models.CharField(max_length=30, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "OCPP transaction"
        ordering = ("-created_at",)
        constraints = (
            models.UniqueConstraint(
                fields=["station", "transaction_id"],
                condition=~models.Q(transaction_id=""),
                name="ocpp_transaction_unique_per_station",
            ),
        )

    def __str__(self):
        return self.reference or f"{self.station.identity} {self.transaction_id}"


class OcppTransactionEvent(models.Model):
    """Each TransactionEvent once: a replay (offline=true, after a reconnect) finds its seqNo taken."""

    transaction = models.ForeignKey(
        OcppTransaction, on_delete=models.CASCADE, related_name="events"
    )
    seq_no = models.IntegerField()
    event_type = models.CharField(max_length=10)
    offline = models.BooleanField(default=False)
    timestamp = models.DateTimeField()
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("seq_no",)
        constraints = (
            models.UniqueConstraint(
                fields=["transaction", "seq_no"], name="ocpp_event_once_per_seq_no"
            ),
        )
