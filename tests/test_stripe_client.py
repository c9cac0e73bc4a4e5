"""The Stripe client takes its proxy from the environment once, when it is made (requests would
read the environment on every request), and sends every call through it."""

from __future__ import annotations

import http.server
import threading
from typing import ClassVar

import pytest

from checkout import payments


class Proxy(http.server.BaseHTTPRequestHandler):
    """A forward proxy that records each request line and answers 503 (no upstream)."""

    seen: ClassVar[list[str]] = []

    def do_GET(self):
        self.seen.append(self.requestline)
        body = b'{"error": {"message": "no upstream", "type": "api_error"}}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def proxy():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Proxy.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def fresh_clients():
    payments._client.cache_clear()
    yield
    payments._client.cache_clear()  # the next test's client reads the real environment


def test_the_proxy_is_read_once_and_used_for_every_call(monkeypatch, proxy, fresh_clients):
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", proxy)
    # Port 9 (discard) on loopback: only the proxy can answer for it.
    client = payments._client("sk_test_proxy", "http://127.0.0.1:9", 5)
    monkeypatch.delenv("http_proxy")  # read when the client was made, not per request
    for _ in range(2):
        with pytest.raises(payments.PaymentGatewayError):
            payments._call(client.v1.payment_intents.retrieve, "pi_through_the_proxy")
    assert (
        Proxy.seen
        == ["GET http://127.0.0.1:9/v1/payment_intents/pi_through_the_proxy HTTP/1.1"] * 2
    )


def test_no_proxy_excludes_stripe_s_address(monkeypatch, proxy, fresh_clients):
    monkeypatch.setenv("http_proxy", proxy)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    client = payments._client("sk_test_proxy", "http://127.0.0.1:9", 5)
    with pytest.raises(payments.PaymentGatewayError):  # nothing listens on port 9
        payments._call(client.v1.payment_intents.retrieve, "pi_direct")
    assert Proxy.seen == []
