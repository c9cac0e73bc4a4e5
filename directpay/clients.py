"""Who is asking: the client's IP address, also behind reverse proxies.

X-Forwarded-For is written by whoever sent the request, so only the entries our own proxies appended
can be believed. Each of TRUSTED_PROXY_COUNT proxies appends the address it received from; the
client is the entry that many places from the right. With no proxy (the default) the header is
ignored and the client is the peer that connected to us (REMOTE_ADDR).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings


def client_ip(request) -> str:
    """The client's address as text ("" if none is known). Usable as django-ratelimit's
    RATELIMIT_IP_META_KEY ("directpay.clients.client_ip")."""
    peer = request.META.get("REMOTE_ADDR", "")
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return peer
    forwarded = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if len(forwarded) < proxies:  # not through all our proxies: only the peer is known
        return peer
    candidate = forwarded[-proxies]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:  # a proxy wrote something odd: do not trust it
        return peer
