"""How a worker reaches a station: through the control port of the gateway holding its socket.

A TCP connection to the gateway's control address (stored on the station when it connects),
one JSON line each way. It works the same with or without Redis (the embedded default has none),
and needs nothing shared between gateways: each station row names its gateway.
"""

from __future__ import annotations

import hmac
import json
import socket

from django.utils.crypto import salted_hmac


class Unreachable(Exception):
    """The gateway did not answer (down, restarting): a retry may succeed."""


def key() -> str:
    # Control requests carry a key derived from SECRET_KEY, which the workers and gateways share.
    return salted_hmac("stations.csms.ocpp.control", "v1").hexdigest()


def key_valid(candidate: str) -> bool:
    return hmac.compare_digest(str(candidate), key())


def send(gateway: str, station: str, action: str, payload: dict, *, timeout: float) -> dict:
    """Ask the station to do `action`; returns {"result": {...}} or {"error": "timeout" | ...}."""
    host, _, port = gateway.rpartition(":")
    request = {
        "key": key(),
        "station": station,
        "action": action,
        "payload": payload,
        "timeout": timeout,
    }
    try:
        with socket.create_connection((host, int(port)), timeout=timeout + 5) as sock:
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = sock.makefile("rb").readline(1_000_000)
    except (OSError, ValueError) as exc:
        raise Unreachable(f"gateway {gateway}: {exc}") from exc
    if not data:
        raise Unreachable(f"gateway {gateway} closed without an answer")
    return json.loads(data)
