"""A CPO's OCPI 2.2.1 platform, running as a real HTTP server, written from the specification.

Transport, versions and credentials chapters: every response in the envelope, tokens base64-encoded
in `Authorization: Token ...` (or raw, if told so), and the handshake as a CPO performs it: when an
eMSP POSTs its credentials, the CPO reads the eMSP's versions with the token it was given before
answering with its own credentials. Commands: it records each command and answers with the
CommandResponse it is told (`command_response`); the test posts the CommandResult itself. Locations
and Tariffs (Sender): the lists it is given, paginated with offset/limit, `Link`, `X-Total-Count`
and `X-Limit`, and filtered by `date_from` on last_updated.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import requests


class CpoPeer:
    def __init__(self, *, versions: list[dict] | None = None, raw_tokens: bool = False):
        self.token_a = secrets.token_hex(8)  # what the CPO hands an eMSP to register with
        self.tokens = {self.token_a}  # tokens accepted from the eMSP
        self.raw_tokens = raw_tokens
        self.emsp_token: str | None = None  # the token we call the eMSP with
        self.emsp_credentials: dict | None = None
        self.emsp_versions_seen: list | None = None
        self.requests: list[tuple[str, str, dict]] = []
        self.commands: list[tuple[str, dict]] = []  # (command, body) as received
        self.command_response = {"result": "ACCEPTED", "timeout": 30}
        self.lists: dict[str, list[dict]] = {"locations": [], "tariffs": []}
        self.page_limit = 2
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/ocpi/cpo"
        self.versions = (
            versions
            if versions is not None
            else [{"version": "2.2.1", "url": f"{self.base}/2.2.1"}]
        )
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def versions_url(self) -> str:
        return f"{self.base}/versions"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def header(self, token: str) -> str:
        return f"Token {token if self.raw_tokens else base64.b64encode(token.encode()).decode()}"

    def register_with(self, emsp_versions_url: str, emsp_token_a: str) -> dict:
        """The CPO side of a handshake it starts: read the eMSP's versions, POST our credentials."""
        self.emsp_token = emsp_token_a
        versions = self._get(emsp_versions_url)
        details = self._get(next(v["url"] for v in versions if v["version"] == "2.2.1"))
        url = next(e["url"] for e in details["endpoints"] if e["identifier"] == "credentials")
        token_b = secrets.token_hex(8)
        self.tokens.add(token_b)
        answer = requests.post(
            url,
            json=self.credentials(token_b),
            headers={"Authorization": self.header(emsp_token_a)},
            timeout=10,
        )
        body = answer.json()
        if answer.ok and body["status_code"] == 1000:
            self.emsp_token = body["data"]["token"]
        return {"http": answer.status_code, **body}

    def credentials(self, token: str) -> dict:
        return {
            "token": token,
            "url": self.versions_url,
            "roles": [
                {
                    "role": "CPO",
                    "party_id": "EXA",
                    "country_code": "NL",
                    "business_details": {"name": "Example Operator"},
                }
            ],
        }

    def _get(self, url: str):
        answer = requests.get(
            url,
            headers={
                "Authorization": self.header(self.emsp_token),
                "X-Request-ID": "cpo-1",
                "X-Correlation-ID": "cpo-1",
            },
            timeout=10,
        )
        answer.raise_for_status()
        body = answer.json()
        assert body["status_code"] == 1000, body
        return body["data"]

    def _handler(self):
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _token(self) -> str | None:
                scheme, _, value = self.headers.get("Authorization", "").partition(" ")
                if scheme != "Token":
                    return None
                if peer.raw_tokens:
                    return value
                try:
                    return base64.b64decode(value, validate=True).decode()
                except ValueError:
                    return None

            def _send(self, status: int, body: dict, headers: dict | None = None):
                payload = json.dumps({**body, "timestamp": "2026-11-25T12:00:00Z"}).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                peer.requests.append((self.command, self.path, dict(self.headers)))
                if self._token() not in peer.tokens:
                    return self._send(401, {"status_code": 2000, "status_message": "Unauthorized"})
                path = self.path.removeprefix("/ocpi/cpo")
                if self.command == "GET" and path == "/versions":
                    return self._send(200, {"status_code": 1000, "data": peer.versions})
                if self.command == "GET" and path == "/2.2.1":
                    return self._send(
                        200,
                        {
                            "status_code": 1000,
                            "data": {
                                "version": "2.2.1",
                                "endpoints": [
                                    {
                                        "identifier": "credentials",
                                        "role": "RECEIVER",
                                        "url": f"{peer.base}/2.2.1/credentials",
                                    },
                                    {
                                        "identifier": "locations",
                                        "role": "SENDER",
                                        "url": f"{peer.base}/2.2.1/locations",
                                    },
                                    {
                                        "identifier": "commands",
                                        "role": "RECEIVER",
                                        "url": f"{peer.base}/2.2.1/commands",
                                    },
                                    {
                                        "identifier": "tariffs",
                                        "role": "SENDER",
                                        "url": f"{peer.base}/2.2.1/tariffs",
                                    },
                                ],
                            },
                        },
                    )
                if self.command == "POST" and path.startswith("/2.2.1/commands/"):
                    peer.commands.append((path.rsplit("/", 1)[1], body))
                    return self._send(200, {"status_code": 1000, "data": peer.command_response})
                module = path.partition("?")[0].removeprefix("/2.2.1/")
                if self.command == "GET" and module in peer.lists:
                    return self._page(module)
                if self.command == "POST" and path == "/2.2.1/credentials":
                    # As a CPO must: use the eMSP's token to read its versions before answering.
                    peer.emsp_credentials = body
                    peer.emsp_token = body["token"]
                    try:
                        peer.emsp_versions_seen = peer._get(body["url"])
                    except Exception as exc:  # noqa: BLE001 - reported to the eMSP as OCPI says
                        return self._send(
                            200,
                            {"status_code": 3001, "status_message": f"cannot use your API: {exc}"},
                        )
                    token_c = secrets.token_hex(8)
                    peer.tokens = {token_c}  # Token A stops working
                    return self._send(200, {"status_code": 1000, "data": peer.credentials(token_c)})
                return self._send(404, {"status_code": 2000, "status_message": "no such endpoint"})

            def _page(self, module: str):
                query = parse_qs(urlsplit(self.path).query)
                offset = int(query.get("offset", ["0"])[0])
                limit = min(int(query.get("limit", [str(peer.page_limit)])[0]), peer.page_limit)
                date_from = query.get("date_from", [""])[0]
                items = [
                    i for i in peer.lists[module] if not date_from or i["last_updated"] >= date_from
                ]
                headers = {"X-Total-Count": str(len(items)), "X-Limit": str(peer.page_limit)}
                if offset + limit < len(items):
                    next_query = urlencode(
                        {
                            **{k: v[0] for k, v in query.items()},
                            "offset": offset + limit,
                            "limit": limit,
                        }
                    )
                    headers["Link"] = f'<{peer.base}/2.2.1/{module}?{next_query}>; rel="next"'
                return self._send(
                    200, {"status_code": 1000, "data": items[offset : offset + limit]}, headers
                )

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        return Handler
