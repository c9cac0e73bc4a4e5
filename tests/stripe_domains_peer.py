"""A stand-in for Stripe's payment method domains API, which localstripe does not have.

It answers the three calls `manage.py stripe_register_domain` makes, with the shapes and errors of
Stripe's API reference (PaymentMethodDomain: id, domain_name, enabled, one status object per
wallet with status_details.error_message when inactive; errors as {"error": {...}}):

  GET  /v1/payment_method_domains?domain_name=...   list, filtered
  POST /v1/payment_method_domains                  create (400 if the name is already registered)
  POST /v1/payment_method_domains/<id>/validate    validate again

Apple Pay needs the domain association file on the live site; `apple_pay_ready` says whether this
peer finds it (as Stripe would when it fetches the file), so a test can fix it and validate again.
"""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

APPLE_MISSING = (
    "The domain association file was not found at "
    "/.well-known/apple-developer-merchantid-domain-association."
)


class StripeDomainsPeer:
    def __init__(self, *, api_key: str = "sk_test_domains"):
        self.api_key = api_key
        self.apple_pay_ready = True
        self.domains: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def _wallets(self) -> dict:
        def active():
            return {"status": "active"}

        apple = (
            active()
            if self.apple_pay_ready
            else {"status": "inactive", "status_details": {"error_message": APPLE_MISSING}}
        )
        return {"apple_pay": apple, "google_pay": active(), "link": active(), "paypal": active()}

    def _handler(self):
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str, type_="invalid_request_error"):
                self._send(status, {"error": {"type": type_, "message": message}})

            def _authorised(self) -> bool:
                header = self.headers.get("Authorization", "")
                if header.startswith("Bearer "):
                    key = header[7:]
                elif header.startswith("Basic "):
                    key = base64.b64decode(header[6:]).decode().split(":")[0]
                else:
                    key = ""
                if key != peer.api_key:
                    self._error(401, "Invalid API Key provided.", "authentication_error")
                    return False
                return True

            def do_GET(self):
                url = urlsplit(self.path)
                peer.calls.append(("GET", url.path))
                if not self._authorised():
                    return
                if url.path != "/v1/payment_method_domains":
                    return self._error(404, f"Unrecognized request URL (GET: {url.path}).")
                name = parse_qs(url.query).get("domain_name", [None])[0]
                data = [d for d in peer.domains.values() if name in (None, d["domain_name"])]
                self._send(
                    200,
                    {
                        "object": "list",
                        "url": url.path,
                        "has_more": False,
                        "data": data,
                    },
                )

            def do_POST(self):
                url = urlsplit(self.path)
                peer.calls.append(("POST", url.path))
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                if not self._authorised():
                    return
                parts = url.path.strip("/").split("/")
                if url.path == "/v1/payment_method_domains":
                    name = form.get("domain_name", [""])[0]
                    if not name:
                        return self._error(400, "Missing required param: domain_name.")
                    if any(d["domain_name"] == name for d in peer.domains.values()):
                        return self._error(400, f"The domain {name} is already registered.")
                    pmd = {
                        "id": f"pmd_{len(peer.domains) + 1:04d}",
                        "object": "payment_method_domain",
                        "domain_name": name,
                        "enabled": True,
                        "livemode": False,
                        "created": 1764547200,
                        **peer._wallets(),
                    }
                    peer.domains[pmd["id"]] = pmd
                    return self._send(200, pmd)
                if parts[:2] == ["v1", "payment_method_domains"] and parts[3:] == ["validate"]:
                    pmd = peer.domains.get(parts[2])
                    if pmd is None:
                        return self._error(404, f"No such payment_method_domain: '{parts[2]}'")
                    pmd.update(peer._wallets())
                    return self._send(200, pmd)
                return self._error(404, f"Unrecognized request URL (POST: {url.path}).")

        return Handler
