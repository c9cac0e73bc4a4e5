"""Our tokens, as the CPO may ask about them (Tokens module, eMSP as Sender).

Each purchase gets one fresh AD_HOC_USER token that the CPO must never whitelist. START_SESSION
carries it already authorised; a CPO that still asks (real-time authorisation) is told ALLOWED only
while that purchase may charge.
"""

from __future__ import annotations

from django.conf import settings

from stations.models import OcpiConnection, OcpiSession

from ..base import purchase_is_live
from . import envelope


def ad_hoc_token(record: OcpiSession, *, valid: bool) -> dict:
    return {
        "country_code": settings.OCPI_COUNTRY_CODE,
        "party_id": settings.OCPI_PARTY_ID,
        "uid": record.token_uid,
        "type": "AD_HOC_USER",
        "contract_id": record.token_uid,
        "issuer": settings.OCPI_BUSINESS_NAME,
        "valid": valid,
        "whitelist": "NEVER",
        "last_updated": envelope.timestamp(),
    }


def ours(connection: OcpiConnection):
    """The tokens we gave this CPO, oldest first (for the paginated GET)."""
    return (
        OcpiSession.objects.filter(connection=connection, reference__isnull=False)
        .exclude(token_uid="")
        .order_by("pk")
    )


def as_token(record: OcpiSession) -> dict:
    return ad_hoc_token(record, valid=purchase_is_live(record.reference))


def authorize(*, connection: OcpiConnection, uid: str, token_type: str) -> dict | None:
    """AuthorizationInfo for one of our tokens, or None if we never issued it to this CPO."""
    if token_type != "AD_HOC_USER":
        return None
    record = ours(connection).filter(token_uid__iexact=uid).first()
    if record is None:
        return None
    live = purchase_is_live(record.reference)
    return {
        "allowed": "ALLOWED" if live else "NOT_ALLOWED",
        "token": ad_hoc_token(record, valid=live),
        "authorization_reference": record.reference,
    }
