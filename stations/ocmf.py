"""Signed meter data in OCMF (Open Charge Metering Format), as an Eichrecht-certified meter sends it.

The simulated chargers sign their meter readings like a real one: one OCMF record per reading
(`OCMF|{payload}|{signature}`), ECDSA over the exact payload bytes with secp256r1 and SHA-256. The
key pair of each simulated meter is derived from SECRET_KEY and the EVSE (nothing is stored, no key
is committed): it is a demo key, as good as the secret it comes from and meant for nothing else.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.utils.crypto import salted_hmac

SIGNATURE_METHOD = "ECDSA-secp256r1-SHA256"
# Order of the secp256r1 group: a private key is an integer in [1, n - 1].
_CURVE_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
# OBIS code of the meter's import register (active energy delivered to the car), as meters report it.
IMPORT_REGISTER = "01-00:01.08.00.FF"


def simulator_key(meter_serial: str) -> ec.EllipticCurvePrivateKey:
    """The demo key pair of one simulated meter, the same every time for the same meter."""
    seed = salted_hmac("stations.ocmf.simulator-meter-key", meter_serial, algorithm="sha256")
    return ec.derive_private_key(
        int.from_bytes(seed.digest(), "big") % (_CURVE_ORDER - 1) + 1, ec.SECP256R1()
    )


def public_key_hex(key: ec.EllipticCurvePrivateKey) -> str:
    """The public key as OCMF and the transparency software take it: DER (SubjectPublicKeyInfo), hex."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der.hex().upper()


def timestamp(moment: datetime) -> str:
    """OCMF time: ISO 8601 with a comma before the milliseconds, +hhmm offset, then the time status
    (S: the clock is synchronised)."""
    text = moment.isoformat(timespec="milliseconds").replace(".", ",")
    return f"{text[:-3]}{text[-2:]} S"  # +00:00 -> +0000


def sign(payload: dict, key: ec.EllipticCurvePrivateKey) -> str:
    """One OCMF record: the payload as compact JSON, signed over exactly those bytes."""
    payload_json = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    signature = key.sign(payload_json.encode(), ec.ECDSA(hashes.SHA256()))
    signature_json = json.dumps(
        {"SA": SIGNATURE_METHOD, "SD": signature.hex().upper()}, separators=(",", ":")
    )
    return f"OCMF|{payload_json}|{signature_json}"


def reading_payload(
    *,
    gateway: str,
    meter_serial: str,
    page: int,
    charge_point: str,
    moment: datetime,
    reason: str,
    register_kwh: Decimal,
    current_type: str = "AC",
) -> dict:
    """The payload of one signed reading (reason B: transaction begins, E: it ends)."""
    return {
        "FV": "1.0",
        "GI": gateway,
        "GS": meter_serial,
        "GV": "1.0",
        "PG": f"T{page}",
        "MV": "QR Direct Pay",
        "MM": "Simulated meter",
        "MS": meter_serial,
        "MF": "1.0",
        "IS": True,
        "IL": "NONE",
        "IF": [],
        "IT": "UNDEFINED",
        "ID": "",
        "CT": "EVSEID",
        "CI": charge_point,
        "RD": [
            {
                "TM": timestamp(moment),
                "TX": reason,
                # A JSON number, as OCMF requires: the register in kWh to the tenth of a Wh.
                "RV": float(register_kwh.quantize(Decimal("0.0001"))),
                "RI": IMPORT_REGISTER,
                "RU": "kWh",
                "RT": current_type,
                "EF": "",
                "ST": "G",
            }
        ],
    }
