"""localstripe plus the one Stripe list it lacks: GET /v1/balance_transactions?payout=po_...

localstripe (1.15) creates payouts but books no balance transactions into them and refuses the
`payout` filter. This proxy forwards every request to localstripe, except that list: the test says
which of localstripe's own balance transactions a payout paid out (`ledger.assign`), and the proxy
answers as Stripe does (a paged list, `limit`/`starting_after`, `expand[]=data.source`), reading
each transaction from localstripe.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import requests

AUTH = ("sk_test_localstripe", "")


class PayoutLedger:
    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.payouts: dict[str, list[str]] = {}
        self.listed: list[dict] = []  # the `payout=` list requests it answered (their query)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def assign(self, payout_id: str, txn_ids: list[str]) -> None:
        self.payouts[payout_id] = list(txn_ids)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _txn(self, txn_id: str, expand_source: bool) -> dict:
        txn = requests.get(
            f"{self.upstream}/v1/balance_transactions/{txn_id}", auth=AUTH, timeout=10
        )
        txn.raise_for_status()
        body = txn.json()
        if expand_source:
            kind = "charges" if body["source"].startswith("ch_") else "refunds"
            source = requests.get(
                f"{self.upstream}/v1/{kind}/{body['source']}", auth=AUTH, timeout=10
            )
            source.raise_for_status()
            body["source"] = source.json()
        return body

    def _list(self, query: dict) -> dict:
        self.listed.append(query)
        ids = self.payouts.get(query["payout"][0], [])
        limit = int(query.get("limit", ["10"])[0])
        after = query.get("starting_after", [None])[0]
        start = ids.index(after) + 1 if after in ids else 0
        page = ids[start : start + limit]
        expand = "data.source" in query.get("expand[]", []) + query.get("expand[0]", [])
        return {
            "object": "list",
            "url": "/v1/balance_transactions",
            "has_more": start + limit < len(ids),
            "data": [self._txn(txn_id, expand) for txn_id in page],
        }

    def _handler(self):
        ledger = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, body: bytes, headers: dict) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                if (
                    self.command == "GET"
                    and url.path == "/v1/balance_transactions"
                    and "payout" in query
                ):
                    payload = json.dumps(ledger._list(query)).encode()
                    return self._send(200, payload, {"Content-Type": "application/json"})
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length")
                }
                upstream = requests.request(
                    self.command,
                    ledger.upstream + self.path,
                    data=body,
                    headers=headers,
                    timeout=30,
                )
                self._send(
                    upstream.status_code,
                    upstream.content,
                    {"Content-Type": upstream.headers.get("Content-Type", "application/json")},
                )

            do_GET = do_POST = do_DELETE = _handle

        return Handler
