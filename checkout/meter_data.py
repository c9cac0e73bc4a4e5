"""Calibration law (Eichrecht) data: the meter's signed readings of a session, checked and kept.

German calibration law lets a driver be billed only for meter values they can check. The CSMS's
final record may carry the meter's own signed data (OCPI SignedData, e.g. OCMF); we keep it on the
session, verify each OCMF record's signature with pyocmf, print the meter id, readings and the result
on the receipt, and offer the records for download in the XML that the S.A.F.E. transparency software
reads. None of this stands in the way of the money: missing or bad signed data is recorded as such,
the session is billed and the receipt issued all the same.
"""

from __future__ import annotations

import base64
import binascii
import logging
import warnings
from dataclasses import dataclass, field
from decimal import Decimal
from xml.etree import ElementTree

import pyocmf
from django.db import transaction
from django.utils.translation import gettext as _

from directpay.prepared import PreparedInsert
from stations.csms.base import SignedData

from . import vat
from .models import ChargingSession, SignedMeterData
from .transitions import flag_attention

log = logging.getLogger(__name__)

V = SignedMeterData.Verification
# The XML's reading context per OCPI nature (OCPP ReadingContext names, as the software shows them).
CONTEXTS = {"start": "Transaction.Begin", "end": "Transaction.End"}
# One statement per final record (stored once per session), not update_or_create's five.
_STORE = PreparedInsert(SignedMeterData, unique=("session",))
# The meter's register and the billed energy may differ by rounding only.
KWH_TOLERANCE = Decimal("0.001")


@dataclass
class Checked:
    verification: str
    problem: str = ""
    public_key: str = ""
    meter_id: str = ""
    start_kwh: Decimal | None = None
    end_kwh: Decimal | None = None
    values: list[dict] = field(default_factory=list)


def _ocmf_text(value: str) -> str:
    """The OCMF record in a signed value: plain, or hex or base64 of it, as CSMSs send it."""
    value = value.strip()
    if value.startswith("OCMF|"):
        return value
    for decode in (bytes.fromhex, lambda v: base64.b64decode(v, validate=True)):
        try:
            decoded = decode(value).decode()
        except (binascii.Error, ValueError):
            continue
        if decoded.startswith("OCMF|"):
            return decoded
    return value


# What the columns hold (16 digits, 4 of them decimals).
MAX_REGISTER_KWH = Decimal(10) ** 12


def _kwh(reading) -> Decimal | None:
    if reading.RV is None:
        return None
    value = Decimal(reading.RV)
    value = (value / 1000 if str(reading.RU) == "Wh" else value).quantize(Decimal("0.0001"))
    return value if abs(value) < MAX_REGISTER_KWH else None


def _normal_key(public_key: str) -> str:
    """The public key as hex DER (CSMSs send hex or base64); as given if it is neither."""
    try:
        return pyocmf.PublicKey.from_string(public_key).key.upper()
    except (pyocmf.PyOCMFError, ValueError, TypeError):
        return public_key


def check(signed: SignedData) -> Checked:
    """Parse and verify signed meter data. Pure: raises nothing for bad input, reports it."""
    if signed.problem:
        return Checked(V.UNREADABLE, problem=signed.problem)
    values = [{"nature": v.nature, "signed_data": v.signed_data, "ocmf": ""} for v in signed.values]
    if signed.encoding_method.upper() != "OCMF":
        return Checked(
            V.UNREADABLE,
            problem=f"encoding {signed.encoding_method!r} is not supported (OCMF is)",
            public_key=signed.public_key,
            values=values,
        )
    result = Checked(V.VERIFIED, public_key=_normal_key(signed.public_key.strip()), values=values)
    for value, signed_value in zip(values, signed.values, strict=True):
        text = _ocmf_text(signed_value.signed_data)
        if not text.startswith("OCMF|") and signed_value.plain_data.strip().startswith("OCMF|"):
            text = signed_value.plain_data.strip()
        try:
            with warnings.catch_warnings():  # deviations the transparency software tolerates
                warnings.simplefilter("ignore", pyocmf.SpecWarning)
                record = pyocmf.OCMF.from_string(text)
                value["ocmf"] = text  # as signed: a re-serialised payload would not verify
                key = result.public_key or record.embedded_public_key
                if not key:
                    raise pyocmf.SignatureVerificationError("no public key was sent")
                good = record.verify_signature(key)
        except (pyocmf.PyOCMFError, ValueError, TypeError) as exc:
            result.verification = V.UNREADABLE
            result.problem = result.problem or f"{value['nature']}: {exc}"[:300]
            continue
        if not good and result.verification == V.VERIFIED:
            result.verification = V.INVALID
            result.problem = f"{value['nature']}: the signature does not match the data"
        payload = record.payload
        result.meter_id = result.meter_id or (payload.MS or payload.GS or "")[:64]
        for reading in payload.RD:
            reason = reading.TX
            if reason == pyocmf.MeterReadingReason.BEGIN and result.start_kwh is None:
                result.start_kwh = _kwh(reading)
            elif isinstance(reason, pyocmf.MeterReadingReason) and reason.is_end_reading():
                result.end_kwh = _kwh(reading)
    if not signed.values:
        result.verification, result.problem = V.UNREADABLE, "no signed values"
    return result


def record(session: ChargingSession, signed: SignedData | None) -> SignedMeterData | None:
    """Keep the final record's signed meter data on the session. Never raises: the caller is the
    money path, which must go on whatever the meter data holds."""
    if signed is None:
        return None
    try:
        checked = check(signed)
        row = SignedMeterData(
            session=session,
            encoding_method=signed.encoding_method[:36],
            public_key=checked.public_key,
            values=checked.values,
            url=signed.url[:512],
            meter_id=checked.meter_id,
            start_kwh=checked.start_kwh,
            end_kwh=checked.end_kwh,
            verification=checked.verification,
            problem=checked.problem[:300],
        )
        with transaction.atomic():  # a savepoint: a failure here leaves the caller's work intact
            if _STORE.save(row) is None:
                # Kept already: only a session's first final record is billed, so its data stands.
                return SignedMeterData.objects.get(session=session)
            _compare(session, row)
        return row
    except Exception:
        log.exception("session %s: signed meter data could not be stored", session.pk)
        return None


def _compare(session: ChargingSession, row: SignedMeterData) -> None:
    unsupported = row.encoding_method and row.encoding_method.upper() != "OCMF"
    if not row.verified and not unsupported:  # another format is not ours to check
        flag_attention(session, f"the signed meter data did not verify: {row.problem}"[:300])
    elif row.start_kwh is not None and row.end_kwh is not None:
        measured = row.end_kwh - row.start_kwh
        if abs(measured - Decimal(session.kwh)) > KWH_TOLERANCE:
            flag_attention(
                session,
                f"the signed meter readings give {measured} kWh, the CSMS billed {session.kwh}",
            )


def for_session(session: ChargingSession) -> SignedMeterData | None:
    """The session's signed meter data, or None (read with the session where it was selected)."""
    return getattr(session, "meter_data", None)


def receipt_section(page, session: ChargingSession) -> None:
    """The receipt's lines on the signed meter data (none when the CSMS sent none)."""
    row = for_session(session)
    if row is None:
        return
    page.line(_("Calibration law (Eichrecht) data"), bold=True)
    if row.meter_id:
        page.row(_("Meter ID"), row.meter_id, indent=4)
    if row.start_kwh is not None:
        page.row(_("Meter reading at start"), f"{vat.fmt_decimal(row.start_kwh, 4)} kWh", indent=4)
    if row.end_kwh is not None:
        page.row(_("Meter reading at end"), f"{vat.fmt_decimal(row.end_kwh, 4)} kWh", indent=4)
    page.row(
        _("Signed meter data"),
        _("verified") if row.verified else _("did not verify"),
        indent=4,
    )
    page.line(
        _("Check it with the transparency software: download the data from your status page."),
        size=9,
    )
    page.gap()


def safe_xml(row: SignedMeterData) -> bytes:
    """The OCMF records in the XML container of the S.A.F.E. transparency software."""
    root = ElementTree.Element("values")
    for value in row.values:
        if not value.get("ocmf"):
            continue
        context = CONTEXTS.get(str(value.get("nature", "")).lower(), "Sample.Periodic")
        # One transaction per file: the software pairs its Begin and End records by this id.
        item = ElementTree.SubElement(root, "value", {"transactionId": "1", "context": context})
        data = ElementTree.SubElement(item, "signedData", {"format": "OCMF", "encoding": "plain"})
        data.text = value["ocmf"]  # no whitespace around it, or the signature cannot be checked
        if row.public_key:
            key = ElementTree.SubElement(item, "publicKey", {"encoding": "hex"})
            key.text = row.public_key
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)


def has_download(row: SignedMeterData | None) -> bool:
    return row is not None and row.downloadable
