"""A fault-injecting HTTP proxy in front of localstripe: Stripe's bad days, on demand.

The app talks to the proxy exactly as it talks to Stripe (STRIPE_API_BASE). Each request is
forwarded to localstripe unless a rule matches it first; the proxy also records every request
that reached localstripe, so a test can count, say, the captures that really happened.

    proxy = FaultProxy(localstripe.base)
    proxy.fail("POST", r"/capture$", "lost")     # capture happens, the answer never arrives
    ...
    assert proxy.count("POST", r"/capture$") == 1

Faults:
- "500", "429": answered by the proxy with Stripe's error body; localstripe never sees the request.
- "timeout": the proxy says nothing until the client gives up; localstripe never sees it.
- "lost": forwarded (localstripe acts), then the client gets a 500 instead of the answer.
- "lost_timeout": forwarded (localstripe acts), then nothing until the client gives up.
- "hold": forwarded (localstripe acts), then the answer waits until `release()` (or `hold_seconds`),
  so a test can kill the caller while the write has happened and its answer has not arrived.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

FAULTS = ("500", "429", "timeout", "lost", "lost_timeout", "hold")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "server",
    "date",
}


@dataclass
class Rule:
    method: str
    pattern: re.Pattern
    fault: str
    times: int  # how many requests it still applies to; -1 = every one
    hits: int = 0


@dataclass
class Call:
    method: str
    path: str
    forwarded: bool
    status: int  # what localstripe answered (0 if never forwarded)
    fault: str = ""


@dataclass
class _State:
    rules: list[Rule] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: threading.Event = field(default_factory=threading.Event)
    held: threading.Event = field(default_factory=threading.Event)


class FaultProxy:
    def __init__(self, upstream: str, *, client_timeout: float = 2.0, hold_seconds: float = 30.0):
        self.upstream = upstream.rstrip("/")
        # How long "timeout" faults stay silent: longer than the app's STRIPE_TIMEOUT_SECONDS.
        self.client_timeout = client_timeout
        self.hold_seconds = hold_seconds
        self.state = _State()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="faultproxy", daemon=True
        )
        self._thread.start()

    # --- rules ----------------------------------------------------------------------------------

    def fail(self, method: str, path_regex: str, fault: str, *, times: int = 1) -> Rule:
        assert fault in FAULTS, fault
        if fault == "hold":  # a new hold waits for a new release()
            self.state.released.clear()
            self.state.held.clear()
        rule = Rule(method.upper(), re.compile(path_regex), fault, times)
        with self.state.lock:
            self.state.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self.state.lock:
            self.state.rules.clear()
        self.release()

    def release(self) -> None:
        """Let held answers go."""
        self.state.released.set()

    def wait_held(self, timeout: float = 30) -> None:
        """Wait until a "hold" rule has forwarded a request and is holding its answer."""
        if not self.state.held.wait(timeout):
            raise AssertionError("no request was held by the fault proxy")

    # --- observations ---------------------------------------------------------------------------

    def calls(self) -> list[Call]:
        with self.state.lock:
            return list(self.state.calls)

    def count(self, method: str, path_regex: str, *, ok_only: bool = True) -> int:
        """Requests that reached localstripe (and, by default, that it accepted)."""
        pattern = re.compile(path_regex)
        return sum(
            1
            for c in self.calls()
            if c.forwarded
            and c.method == method.upper()
            and pattern.search(c.path)
            and (not ok_only or 200 <= c.status < 300)
        )

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    # --- the server -----------------------------------------------------------------------------

    def _take_rule(self, method: str, path: str) -> Rule | None:
        with self.state.lock:
            for rule in self.state.rules:
                if rule.times != 0 and rule.method == method and rule.pattern.search(path):
                    rule.hits += 1
                    if rule.times > 0:
                        rule.times -= 1
                    return rule
        return None

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                method = self.command
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                rule = proxy._take_rule(method, path)
                fault = rule.fault if rule else ""
                if fault in ("500", "429"):
                    proxy._record(Call(method, path, False, 0, fault))
                    return self._error(int(fault))
                if fault == "timeout":
                    proxy._record(Call(method, path, False, 0, fault))
                    time.sleep(proxy.client_timeout + 0.5)
                    return self._close()
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length")
                }
                upstream = requests.request(
                    method, proxy.upstream + self.path, data=body, headers=headers, timeout=30
                )
                proxy._record(Call(method, path, True, upstream.status_code, fault))
                if fault == "lost":
                    return self._error(500)
                if fault == "lost_timeout":
                    time.sleep(proxy.client_timeout + 0.5)
                    return self._close()
                if fault == "hold":
                    proxy.state.held.set()
                    proxy.state.released.wait(proxy.hold_seconds)
                self.send_response(upstream.status_code)
                for key, value in upstream.headers.items():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(upstream.content)))
                self.end_headers()
                self.wfile.write(upstream.content)

            def _error(self, status: int):
                kind = "rate_limit_error" if status == 429 else "api_error"
                payload = json.dumps(
                    {"error": {"type": kind, "message": f"injected {status}"}}
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _close(self):
                self.close_connection = True

            do_GET = do_POST = do_DELETE = _handle

        return Handler

    def _record(self, call: Call) -> None:
        with self.state.lock:
            self.state.calls.append(call)


@contextmanager
def stripe_behind_proxy(
    settings, localstripe, *, timeout: float | None = None
) -> Iterator[FaultProxy]:
    """Point the app (pytest-django `settings`) at a FaultProxy in front of `localstripe`.

    With `timeout`, the app gives up on Stripe after that many seconds and the proxy's silences last
    longer than that; without it, both keep their defaults.
    """
    proxy = (
        FaultProxy(localstripe.base)
        if timeout is None
        else FaultProxy(localstripe.base, client_timeout=timeout)
    )
    settings.STRIPE_API_BASE = proxy.base
    if timeout is not None:
        settings.STRIPE_TIMEOUT_SECONDS = timeout
    try:
        yield proxy
    finally:
        proxy.stop()
