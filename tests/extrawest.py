"""An independent OCPI 2.2.1 CPO for end-to-end tests: extrawest-ocpi, run as a real HTTP server.

extrawest pins old fastapi/pydantic 1, so it runs from its own venv (`.venv-cpo`, made by
`make test` from tests/extrawest_cpo/requirements.lock) as a subprocess: tests/extrawest_cpo/app.py.
This module only needs `requests` and the standard library. Use:

    from tests.extrawest import cpo_peer    # the fixture; or ExtrawestCpo() / `with ExtrawestCpo() as cpo:`

    OcpiConnection(versions_url=cpo_peer.versions_url, token_theirs=cpo_peer.token_a, ...)
    cpo_peer.configure(start_response="ACCEPTED", command_result=None)   # the result will be lost
    cpo_peer.commands()  -> [{"command": "START_SESSION", "body": {...}, ...}]
    cpo_peer.push_session(session) -> {"status": 200, "headers": {...}, "body": {...envelope...}, ...}

Quirks of extrawest our side sees (and the patches app.py makes) are in tests/extrawest_cpo/README.md.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "tests" / "extrawest_cpo" / "app.py"
PYTHON = Path(os.environ.get("EXTRAWEST_CPO_PYTHON", ROOT / ".venv-cpo" / "bin" / "python"))


def available() -> bool:
    return PYTHON.exists()


def require() -> None:
    """Skip when the peer venv is missing; in CI (CI=true) fail instead: no skips in CI."""
    if available():
        return
    message = f"extrawest CPO venv missing ({PYTHON}): run `make test` (or `make install-cpo`)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


class ExtrawestCpo:
    """The peer process. Country code, party id and business name are what it registers as."""

    def __init__(
        self,
        *,
        country_code: str = "NL",
        party_id: str = "EXA",
        name: str = "Extrawest CPO",
        token_a: str | None = None,
        start_timeout: float = 60,
    ):
        self.token_a = token_a or secrets.token_hex(8)  # the Token A an eMSP registers with
        self.country_code, self.party_id, self.name = country_code, party_id, name
        # Its stderr, gone when it stops; appended to (the child writes while we may read).
        self._log = tempfile.TemporaryFile(mode="a+", prefix="extrawest-cpo-", suffix=".log")  # noqa: SIM115 - lives as long as the peer
        self.process = subprocess.Popen(
            [
                str(PYTHON),
                str(APP),
                "--port",
                "0",
                "--token-a",
                self.token_a,
                "--country-code",
                country_code,
                "--party-id",
                party_id,
                "--name",
                name,
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=APP.parent,
        )
        line = self.process.stdout.readline()  # "LISTENING <port>" once the socket is bound
        if not line.startswith("LISTENING "):
            self.stop()
            raise RuntimeError(f"extrawest CPO did not start: {line!r}\n{self.log()}")
        self.port = int(line.split()[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.versions_url = f"{self.base_url}/ocpi/versions"
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                requests.get(f"{self.base_url}/control/state", timeout=2).raise_for_status()
                break
            except requests.RequestException:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"extrawest CPO does not answer\n{self.log()}")
                time.sleep(0.1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self._log.close()

    def log(self) -> str:
        """Its stderr (uvicorn errors, extrawest's INFO log): worth printing when a test fails."""
        self._log.seek(0)
        return self._log.read()

    # --- control API -----------------------------------------------------------------------------

    def _control(self, method: str, path: str, json=None):
        answer = requests.request(method, f"{self.base_url}/control/{path}", json=json, timeout=60)
        if answer.status_code >= 400:
            raise RuntimeError(
                f"extrawest CPO control {method} {path}: HTTP {answer.status_code} {answer.text}"
            )
        return answer.json()

    def state(self) -> dict:
        """versions_url, token_a (None once used), token_c, emsp_token, emsp_credentials, emsp_endpoints, config."""
        return self._control("GET", "state")

    def emsp_token(self) -> str | None:
        """The token the eMSP issued it at registration (Token C, from the CPO's point of view)."""
        return self.state()["emsp_token"]

    def token_c(self) -> str | None:
        """The token it issued the eMSP (what our OcpiConnection.token_theirs should end up as)."""
        return self.state()["token_c"]

    def emsp_endpoint(self, identifier: str) -> str | None:
        """The eMSP's endpoint for a module, as read from its version details at registration."""
        endpoints = self.state()["emsp_endpoints"] or []
        matches = [e for e in endpoints if e["identifier"] == identifier]
        receiver = [e for e in matches if e.get("role") == "RECEIVER"]
        return (receiver or matches or [{}])[0].get("url")

    def configure(
        self,
        start_response: str = "ACCEPTED",
        command_result: str | None = "ACCEPTED",
        command_timeout: int = 30,
        stop_response: str = "ACCEPTED",
        stop_result: str | None = "ACCEPTED",
        result_delay: float = 0,
    ) -> dict:
        """How START_SESSION (and STOP_SESSION) commands are answered from now on (sticky, not one-shot).

        start_response: the CommandResponse result (ACCEPTED, REJECTED, NOT_SUPPORTED, UNKNOWN_SESSION),
        with `command_timeout` seconds. command_result: the CommandResult POSTed to response_url when
        the response was ACCEPTED (ACCEPTED, FAILED, EVSE_OCCUPIED, REJECTED, TIMEOUT, ...), or None:
        never posted (unless release_result() later). stop_*: the same for STOP_SESSION.
        result_delay: seconds before the CommandResult is posted.
        A START_SESSION for a location it does not have (set_locations) is answered REJECTED with
        status_code 2003, as extrawest does."""
        return self._control(
            "POST",
            "configure",
            {
                "start_response": start_response,
                "command_result": command_result,
                "command_timeout": command_timeout,
                "stop_response": stop_response,
                "stop_result": stop_result,
                "result_delay": result_delay,
            },
        )

    def commands(self) -> list[dict]:
        """Commands received, in order: {"command", "body" (as sent), "parsed" (as extrawest read it),
        "response_url", "response" (our CommandResponse result), "result" (CommandResult or None)}."""
        return self._control("GET", "commands")

    def release_result(self, index: int, result: str = "ACCEPTED") -> dict:
        """Give command number `index` (held back with command_result=None) a late CommandResult;
        extrawest posts it within about 2 seconds (it polls)."""
        return self._control("POST", f"commands/{index}/result", {"result": result})

    def command_results_sent(self) -> list[dict]:
        """The CommandResult POSTs it made: {url, body, status, response} each."""
        urls = {c["response_url"] for c in self.commands()}
        return [
            r for r in self.requests_seen()["sent"] if r["method"] == "POST" and r["url"] in urls
        ]

    def push_session(self, session: dict) -> dict:
        """PUT a Session to the eMSP with extrawest's push code (URL from its own COUNTRY_CODE/PARTY_ID
        and session["id"]). Returns {status, headers, body, url, method, sent}; `sent` is what
        extrawest put on the wire (ids lower-cased, optional fields as nulls, numbers as floats)."""
        return self._control("POST", "push/sessions", session)

    def push_cdr(self, cdr: dict) -> dict:
        """POST a CDR to the eMSP's cdrs endpoint with extrawest's push code (which drops evse_uid).
        Returns {status, headers (Location), body, url, method, sent}."""
        return self._control("POST", "push/cdrs", cdr)

    def patch_session(self, country_code: str, party_id: str, session_id: str, patch: dict) -> dict:
        """A plain PATCH of a Session to the eMSP (extrawest cannot send one), with the eMSP's token."""
        return self.call_emsp(
            "PATCH", json=patch, module="sessions", path=f"/{country_code}/{party_id}/{session_id}"
        )

    def call_emsp(
        self,
        method: str,
        url: str | None = None,
        *,
        json=None,
        module: str | None = None,
        path: str = "",
    ) -> dict:
        """Any raw OCPI call to the eMSP, from the peer, with the token the eMSP issued it:
        to `url`, or to the eMSP's `module` endpoint + `path`. Returns {status, headers, body, url}."""
        return self._control(
            "POST",
            "call",
            {"method": method, "url": url, "module": module, "path": path, "json": json},
        )

    def set_locations(self, locations: list[dict]) -> None:
        """What its Locations sender serves (paginated: offset, limit, date_from, date_to; Link rel=next,
        X-Total-Count, X-Limit). Objects must satisfy extrawest's Location model."""
        self._control("PUT", "locations", locations)

    def set_tariffs(self, tariffs: list[dict]) -> None:
        """What its Tariffs sender serves, paginated as set_locations."""
        self._control("PUT", "tariffs", tariffs)

    def requests_seen(self) -> dict:
        """{"seen": requests it received (method, path, query, headers, body, status),
        "sent": requests it made (method, url, headers, body, status, response_headers, response)}."""
        return self._control("GET", "requests")


@pytest.fixture
def cpo_peer():
    """A fresh extrawest CPO for one test (skipped without its venv, failed in CI)."""
    require()
    peer = ExtrawestCpo()
    yield peer
    peer.stop()
