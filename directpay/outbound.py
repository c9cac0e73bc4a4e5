"""The one HTTP client for URLs a remote party gives us (OCPI versions, endpoints, `Link` pages).

Such a URL must not make this server reach what only it can reach (loopback, private networks,
cloud metadata). So every call: plain HTTP only to `OUTBOUND_HTTP_ALLOWED_HOSTS`; the host is
resolved once and every address checked, and the socket connects to the checked address (no DNS
rebinding between check and connect) while TLS SNI, the certificate check and the Host header keep
the name; no redirects (a 3xx is an error); a size cap; one total deadline, enforced by closing the
socket. Every failure is one `OutboundError` whose text is the same whatever happened (no port-scan
oracle for the party that chose the URL); the detail goes to our log only.

`requests-hardened` (PyPI) filters addresses at connect time too, but only allows all of loopback
or none of it, not a list of hosts, so this is our own small adapter on requests/urllib3.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

log = logging.getLogger(__name__)

GENERIC = "the remote platform could not be used"

# Not covered (or not on every Python) by ipaddress's is_global and friends.
EXTRA_BLOCKED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "192.0.0.0/24",  # IETF protocol assignments
        "192.88.99.0/24",  # 6to4 relay anycast
        "198.18.0.0/15",  # benchmarking
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments (Teredo, ORCHID, ...)
        "2001:db8::/32",  # documentation
        "fec0::/10",  # deprecated site-local
        "5f00::/16",  # segment routing
        "3fff::/20",  # documentation
    )
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class OutboundError(Exception):
    """Any failure of a guarded call. str() is the same generic text for all; `detail` is for our log."""

    def __init__(self, detail: str):
        super().__init__(GENERIC)
        self.detail = detail


def address_allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a public-internet peer may have this address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not address_allowed(embedded):
            return False
        if ip.ipv4_mapped is not None:
            return True  # judged by its IPv4 form alone (::ffff:0:0/96 is never global itself)
    return not (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or any(ip in net for net in EXTRA_BLOCKED if net.version == ip.version)
    )


def resolve(host: str, port: int) -> list[str]:
    """The host's addresses (a seam for tests: they stub this, never the network)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]


_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="outbound-dns")


def _checked_address(host: str, port: int, deadline: float) -> str:
    allowed = host.lower().rstrip(".") in {h.lower() for h in settings.OUTBOUND_HTTP_ALLOWED_HOSTS}
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        # getaddrinfo has no timeout of its own: wait for it no longer than the deadline.
        try:
            addresses = _resolver.submit(resolve, host, port).result(
                timeout=max(deadline - time.monotonic(), 0.001)
            )
        except FutureTimeout as exc:
            raise OutboundError(f"resolving {host} took too long") from exc
        except OSError as exc:
            raise OutboundError(f"cannot resolve {host}: {exc}") from exc
    if not addresses:
        raise OutboundError(f"{host} has no address")
    if not allowed:
        for address in addresses:
            if not address_allowed(ipaddress.ip_address(address.split("%")[0])):
                raise OutboundError(f"{host} resolves to {address}, which is not public")
    return addresses[0]


def _pinned_adapter(address: str, sockets: list) -> HTTPAdapter:
    """A requests adapter whose connections go to `address`, whatever the URL's host resolves to now."""

    class Pinned:
        def _new_conn(self):
            # urllib3 connects to _dns_host, and `host` (Host header, SNI, certificate check)
            # reads it too: swap the checked address in only for the connect.
            name, self._dns_host = self._dns_host, address
            try:
                sock = super()._new_conn()
            finally:
                self._dns_host = name
            sockets.append(sock)
            return sock

    class Http(Pinned, HTTPConnection):
        pass

    class Https(Pinned, HTTPSConnection):
        pass

    class HttpPool(HTTPConnectionPool):
        ConnectionCls = Http

    class HttpsPool(HTTPSConnectionPool):
        ConnectionCls = Https

    adapter = HTTPAdapter(max_retries=0, pool_connections=1, pool_maxsize=1)
    adapter.poolmanager.pool_classes_by_scheme = {"http": HttpPool, "https": HttpsPool}
    return adapter


def request(
    method: str,
    url: str,
    *,
    headers: dict | None = None,
    json=None,
    params=None,
    timeout: float,
    max_bytes: int | None = None,
) -> requests.Response:
    """One guarded call, all of it within `timeout` seconds. The body is read in full (at most
    `max_bytes`, default OUTBOUND_MAX_BYTES) before it returns."""
    max_bytes = max_bytes if max_bytes is not None else settings.OUTBOUND_MAX_BYTES
    deadline = time.monotonic() + timeout
    try:
        return _request(method, url, headers, json, params, deadline, max_bytes)
    except OutboundError as exc:
        log.warning("outbound %s %s refused or failed: %s", method, url, exc.detail)
        raise


def _request(method, url, headers, json, params, deadline, max_bytes) -> requests.Response:
    parts = urlsplit(url)
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise OutboundError(f"bad port in {url}") from exc
    if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
        raise OutboundError(f"not an http(s) URL without credentials: {url}")
    if parts.scheme == "http" and host.lower().rstrip(".") not in {
        h.lower() for h in settings.OUTBOUND_HTTP_ALLOWED_HOSTS
    }:
        raise OutboundError(f"plain HTTP to {host} is not allowed (OUTBOUND_HTTP_ALLOWED_HOSTS)")
    port = port or (443 if parts.scheme == "https" else 80)
    address = _checked_address(host, port, deadline)

    sockets: list[socket.socket] = []
    expired = threading.Event()

    def _cut():
        expired.set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked read: the deadline is total
            except OSError:
                pass

    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise OutboundError("no time left")
    watchdog = threading.Timer(remaining, _cut)
    watchdog.daemon = True
    session = requests.Session()
    session.trust_env = False  # no proxy or .netrc from the environment: it would bypass the pin
    session.mount(f"{parts.scheme}://", _pinned_adapter(address, sockets))
    watchdog.start()
    try:
        answer = session.request(
            method,
            url,
            # Uncompressed, so that the size cap counts what we hold (no gzip bomb).
            headers={"Accept-Encoding": "identity", **(headers or {})},
            json=json,
            params=params,
            timeout=(remaining, remaining),
            allow_redirects=False,
            stream=True,
        )
        if answer.is_redirect or 300 <= answer.status_code < 400:
            raise OutboundError(f"{url} answered with a redirect ({answer.status_code})")
        declared = answer.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise OutboundError(f"{url} announced {declared} bytes, more than {max_bytes}")
        body = bytearray()
        for chunk in answer.iter_content(64 * 1024):
            body += chunk
            if len(body) > max_bytes:
                raise OutboundError(f"{url} sent more than {max_bytes} bytes")
        if expired.is_set():
            raise OutboundError(f"{url} took longer than the deadline")
        answer._content, answer._content_consumed = bytes(body), True
        return answer
    except requests.RequestException as exc:
        why = "the deadline passed" if expired.is_set() else exc.__class__.__name__
        raise OutboundError(f"{method} {url}: {why}: {exc}") from exc
    except OSError as exc:  # a read cut by the watchdog can surface as a bare socket error
        raise OutboundError(f"{method} {url}: {exc}") from exc
    finally:
        watchdog.cancel()
        session.close()
