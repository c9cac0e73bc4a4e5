"""An independent OCPI 2.2.1 CPO for our tests: extrawest-ocpi (import name `py_ocpi`) on uvicorn.

Run from the peer venv (`.venv-cpo`, see requirements.lock), never from the main one:

    .venv-cpo/bin/python tests/extrawest_cpo/app.py --token-a TOKEN [--port 0]

It binds 127.0.0.1 (port 0 = any free port), prints `LISTENING <port>` on stdout once bound, and
serves extrawest's own routers under /ocpi (versions, credentials, commands, locations, tariffs,
sessions and cdrs as a CPO) plus a small JSON control API under /control for tests/extrawest.py.
State lives in memory and dies with the process. Where extrawest has a bug that would stop the
walk, it is patched here, narrowly; each patch says why (see also README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import sys
import threading
import time
from datetime import UTC, datetime
from urllib.parse import urlencode

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=0)
parser.add_argument(
    "--token-a", default=None, help="Token A an eMSP registers with (random if absent)"
)
parser.add_argument("--country-code", default="NL")
parser.add_argument("--party-id", default="EXA")
parser.add_argument("--name", default="Extrawest CPO")
args = parser.parse_args()

# extrawest reads its settings from the environment once, at import: bind first, then configure.
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", args.port))
PORT = sock.getsockname()[1]
os.environ.update(
    {
        "OCPI_HOST": f"127.0.0.1:{PORT}",
        "PROTOCOL": "http",
        "COUNTRY_CODE": args.country_code,  # extrawest builds push URLs from these, not from the object
        "PARTY_ID": args.party_id,
        "ENVIRONMENT": "production",
        # extrawest polls crud.get for a CommandResult every 2 s, 30 * COMMAND_AWAIT_TIME times, then
        # POSTs FAILED. Make that "never", so a result configured as None is really lost.
        "COMMAND_AWAIT_TIME": "1000000",
    }
)
os.chdir(os.path.dirname(os.path.abspath(__file__)))  # its BaseSettings also reads ./.env

import httpx
import py_ocpi.core.utils as ocpi_utils
import py_ocpi.modules.commands.v_2_2_1.api.cpo as commands_api
import uvicorn
from fastapi import Body
from fastapi.responses import JSONResponse
from py_ocpi.core import push
from py_ocpi.core.adapter import BaseAdapter
from py_ocpi.core.authentication.authenticator import Authenticator
from py_ocpi.core.crud import Crud
from py_ocpi.core.endpoints import ENDPOINTS
from py_ocpi.core.endpoints.v_2_2_1.utils import cpo_generator
from py_ocpi.core.enums import Action, ModuleID, RoleEnum
from py_ocpi.core.utils import encode_string_base64
from py_ocpi.main import get_application
from py_ocpi.modules.versions.enums import VersionNumber
from py_ocpi.modules.versions.v_2_2_1.schemas import InterfaceRole
from pydantic import ValidationError

V221 = VersionNumber.v_2_2_1
VERSIONS_URL = f"http://127.0.0.1:{PORT}/ocpi/versions"


class State:
    def __init__(self, token_a: str):
        self.token_a: str | None = token_a  # discarded once an eMSP registered with it
        self.token_c: str | None = None  # what the eMSP calls us with, issued at registration
        self.emsp: dict | None = (
            None  # {"credentials": ..., "endpoints": [...]}: what the eMSP told us
        )
        self.config = {
            "start_response": "ACCEPTED",
            "command_result": "ACCEPTED",
            "command_timeout": 30,
            "stop_response": "ACCEPTED",
            "stop_result": "ACCEPTED",
            "result_delay": 0,
        }
        self.commands: list[dict] = []
        self.objects: dict[ModuleID, list[dict]] = {
            m: [] for m in (ModuleID.locations, ModuleID.tariffs, ModuleID.sessions, ModuleID.cdrs)
        }
        self.seen: list[dict] = []  # requests we received
        self.sent: list[dict] = []  # requests we made (extrawest's httpx calls included)


state = State(args.token_a or secrets.token_hex(8))


def our_credentials(token: str) -> dict:
    return {
        "token": token,
        "url": VERSIONS_URL,
        "roles": [
            {
                "role": "CPO",
                "party_id": args.party_id,
                "country_code": args.country_code,
                "business_details": {"name": args.name},
            }
        ],
    }


def _parse_dt(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _find(module: ModuleID, object_id) -> dict | None:
    # extrawest lower-cases CiString ids (path params too); OCPI ids are case-insensitive.
    return next(
        (
            o
            for o in state.objects[module]
            if str(o.get("id", "")).lower() == str(object_id).lower()
        ),
        None,
    )


def _command_entry(response_url: str) -> dict | None:
    return next((c for c in state.commands if c["response_url"] == response_url), None)


class MemoryCrud(Crud):
    @classmethod
    async def get(cls, module, role, id, *args, **kwargs):
        if module == ModuleID.credentials_and_registration:
            token = kwargs.get("auth_token")
            return our_credentials(token) if state.emsp and token == state.token_c else None
        if module == ModuleID.commands:
            # Polled by extrawest's background task until it returns a CommandResult.
            entry = _command_entry(str(kwargs["command_data"].response_url))
            if entry is None or entry["result"] is None:
                return None
            if state.config["result_delay"] and not entry.get("delayed"):
                entry["delayed"] = True
                await asyncio.sleep(state.config["result_delay"])
            return {"result": entry["result"], "message": []}
        if module in state.objects:
            return _find(module, id)
        return None

    @classmethod
    async def list(cls, module, role, filters, *args, **kwargs):
        items = state.objects.get(module, [])
        date_from, date_to = _parse_dt(filters.get("date_from")), _parse_dt(filters.get("date_to"))
        if date_from:  # OCPI: last_updated >= date_from, < date_to
            items = [o for o in items if _aware(_parse_dt(o["last_updated"])) >= _aware(date_from)]
        if date_to:
            items = [o for o in items if _aware(_parse_dt(o["last_updated"])) < _aware(date_to)]
        offset, limit = filters["offset"], filters["limit"]
        return items[offset : offset + limit], len(items), offset + limit >= len(items)

    @classmethod
    async def create(cls, module, role, data, *args, **kwargs):
        if module == ModuleID.credentials_and_registration:
            # data = {"credentials": the eMSP's, "endpoints": its 2.2.1 version details}
            state.emsp = {
                "credentials": data["credentials"],
                "endpoints": data["endpoints"].get("endpoints", []),
            }
            state.token_a, state.token_c = None, secrets.token_hex(16)
            return our_credentials(state.token_c)
        return None

    @classmethod
    async def update(cls, module, role, data, id, *args, **kwargs):
        if module == ModuleID.credentials_and_registration:
            state.emsp = {
                "credentials": data["credentials"],
                "endpoints": data["endpoints"].get("endpoints", []),
            }
            state.token_c = secrets.token_hex(16)
            return our_credentials(state.token_c)
        return data

    @classmethod
    async def delete(cls, module, role, id, *args, **kwargs):
        if module == ModuleID.credentials_and_registration:
            state.emsp, state.token_c = None, None

    @classmethod
    async def do(cls, module, role, action, *args, data=None, **kwargs):
        if action == Action.get_client_token:
            return state.emsp["credentials"]["token"]
        if action == Action.send_command:
            command = kwargs["command"].value
            body = args[0] if args else data
            stop = command == "STOP_SESSION"
            answer = state.config["stop_response" if stop else "start_response"]
            state.commands.append(
                {
                    "command": command,
                    "body": _last_body(f"/commands/{command}"),  # as the eMSP sent it
                    "parsed": json.loads(
                        json.dumps(body, default=str)
                    ),  # as extrawest understood it
                    "response_url": str(body["response_url"]),
                    "response": answer,
                    "result": state.config["stop_result" if stop else "command_result"]
                    if answer == "ACCEPTED"
                    else None,
                }
            )
            return {"result": answer, "timeout": state.config["command_timeout"], "message": []}
        return None


def _last_body(path_end: str):
    entry = next((r for r in reversed(state.seen) if r["path"].endswith(path_end)), None)
    return entry and entry["body"]


class MemoryAuthenticator(Authenticator):
    @classmethod
    async def get_valid_token_c(cls):
        return [state.token_c] if state.token_c else []

    @classmethod
    async def get_valid_token_a(cls):
        return [state.token_a] if state.token_a else []


# --- patches to extrawest ------------------------------------------------------------------------

# 1. Its 2.2.1 CPO ENDPOINTS table has no `commands`, so version details would not offer the
#    module even though the router is mounted. Register it as a RECEIVER, built as it builds others.
ENDPOINTS[V221][RoleEnum.cpo][ModuleID.commands] = cpo_generator.generate_endpoint(
    ModuleID.commands, InterfaceRole.receiver
)

# 2. Push URLs are `{base_url}{COUNTRY_CODE}/{PARTY_ID}/{id}`: no "/" after a base URL that does not
#    end in one (ours do not). Keep its logic, add the missing separator.
_client_url = push.client_url


def client_url(module_id, object_id, base_url):
    if module_id != ModuleID.cdrs and base_url and not base_url.endswith("/"):
        base_url += "/"
    return _client_url(module_id, object_id, base_url)


push.client_url = client_url


# 3. Pagination Link header: `https://` always, a path of `VersionNumber.v_2_2_1/ModuleID.locations`
#    (enum formatting on Python 3.11), and `date_from=None` in the query (which it then refuses).
#    Keep its paging (next offset = offset + limit, same filters), rebuild the URL properly.
async def get_list(response, filters, module, role, version, *a, **kw):
    data = await ocpi_utils.get_list(response, filters, module, role, version, *a, **kw)
    if response.headers.get("Link"):
        params = {**filters, "offset": filters["offset"] + filters["limit"]}
        query = urlencode(
            {
                k: v.isoformat().replace("+00:00", "Z") if isinstance(v, datetime) else v
                for k, v in params.items()
                if v is not None
            }
        )
        url = f"http://127.0.0.1:{PORT}/ocpi/cpo/{version.value}/{module.value}/?{query}"
        response.headers["Link"] = f'<{url}>; rel="next"'
    return data


for _module in ("locations", "tariffs", "sessions", "cdrs"):
    sys.modules[f"py_ocpi.modules.{_module}.v_2_2_1.api.cpo"].get_list = get_list

# 4. The CommandResult is sent by a BackgroundTask that polls crud.get every 2 s: it holds the
#    eMSP's keep-alive connection (uvicorn starts no next request on it) until it has posted, i.e.
#    forever for a lost result. Run extrawest's own function detached instead.
_send_command_result = commands_api.send_command_result
_detached: set = set()


async def send_command_result(**kwargs):
    task = asyncio.create_task(_send_command_result(**kwargs))
    _detached.add(task)
    task.add_done_callback(_detached.discard)


commands_api.send_command_result = send_command_result

# 5. Record every outgoing call (extrawest's included): CommandResults, pushes, credentials reads.
_send = httpx.AsyncClient.send


async def send(self, request, *a, **kw):
    answer = await _send(self, request, *a, **kw)
    await answer.aread()
    state.sent.append(
        {
            "method": request.method,
            "url": str(request.url),
            "headers": dict(request.headers),
            "body": _json(request.content),
            "status": answer.status_code,
            "response_headers": dict(answer.headers),
            "response": _json(answer.content),
        }
    )
    return answer


httpx.AsyncClient.send = send


def _json(raw: bytes):
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


app = get_application(
    version_numbers=[V221],
    roles=[RoleEnum.cpo],
    crud=MemoryCrud,
    modules=[
        ModuleID.credentials_and_registration,
        ModuleID.commands,
        ModuleID.locations,
        ModuleID.tariffs,
        ModuleID.sessions,
        ModuleID.cdrs,
    ],
    authenticator=MemoryAuthenticator,
    adapter=BaseAdapter,
)


class RecordRequests:
    """Pure ASGI (a BaseHTTPMiddleware would consume the body): log each request with its body."""

    def __init__(self, app):
        self.inner = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith("/control"):
            return await self.inner(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        entry = {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode(),
            "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
            "body": _json(raw),
        }
        state.seen.append(entry)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        async def record_status(message):
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        await self.inner(scope, replay, record_status)


app.add_middleware(RecordRequests)


# --- control API for the tests (not OCPI) --------------------------------------------------------


def _endpoint(identifier: str) -> str | None:
    """The eMSP's URL for a module, from its version details (its RECEIVER interface first)."""
    endpoints = sorted(
        (state.emsp or {}).get("endpoints", []), key=lambda e: e.get("role") != "RECEIVER"
    )
    return next((e["url"] for e in endpoints if e["identifier"] == identifier), None)


def _emsp_auth() -> str:
    return f"Token {encode_string_base64(state.emsp['credentials']['token'])}"


def _answer(response: httpx.Response) -> dict:
    return {
        "status": response.status_code,
        "headers": dict(response.headers),
        "body": _json(response.content),
    }


def _not_registered():
    return JSONResponse({"error": "no eMSP has registered with this CPO"}, status_code=409)


@app.get("/control/state")
async def control_state():
    return {
        "versions_url": VERSIONS_URL,
        "token_a": state.token_a,
        "token_c": state.token_c,
        "emsp_token": state.emsp and state.emsp["credentials"]["token"],
        "emsp_credentials": state.emsp and state.emsp["credentials"],
        "emsp_endpoints": state.emsp and state.emsp["endpoints"],
        "config": state.config,
    }


@app.post("/control/configure")
async def control_configure(changes: dict = Body(...)):  # noqa: B008 - FastAPI declares bodies this way
    unknown = set(changes) - set(state.config)
    if unknown:
        return JSONResponse({"error": f"unknown settings {sorted(unknown)}"}, status_code=400)
    state.config.update(changes)
    return state.config


@app.get("/control/commands")
async def control_commands():
    return state.commands


@app.post("/control/commands/{index}/result")
async def control_command_result(index: int, result: str = Body(..., embed=True)):
    """Let a command whose result was held back (None) have one now; extrawest posts it within ~2 s."""
    state.commands[index]["result"] = result
    return state.commands[index]


@app.put("/control/{module}")
async def control_set_objects(module: str, objects: list = Body(...)):  # noqa: B008 - FastAPI declares bodies this way
    state.objects[ModuleID(module)] = objects
    return {"count": len(objects)}


async def _push(module: ModuleID, obj: dict):
    """Store the object and send it with extrawest's push code (adapter, URL, method, token)."""
    if not state.emsp:
        return _not_registered()
    if not any(
        e["identifier"] == module and e.get("role") == "RECEIVER" for e in state.emsp["endpoints"]
    ):
        # extrawest would build a relative URL and fail obscurely.
        return JSONResponse(
            {"error": f"the eMSP's version details offer no {module.value} RECEIVER"},
            status_code=409,
        )
    state.objects[module] = [o for o in state.objects[module] if o.get("id") != obj.get("id")] + [
        obj
    ]
    try:
        response = await push.send_push_request(
            obj["id"], obj, module, BaseAdapter, _emsp_auth(), state.emsp["endpoints"], V221
        )
    except ValidationError as exc:
        return JSONResponse(
            {"error": f"extrawest refuses this {module.value} object", "detail": exc.errors()},
            status_code=422,
        )
    except httpx.HTTPError as exc:
        return JSONResponse({"error": f"push failed: {exc!r}"}, status_code=502)
    return {
        **_answer(response),
        "url": str(response.request.url),
        "method": response.request.method,
        "sent": _json(response.request.content),
    }


@app.post("/control/push/sessions")
async def control_push_session(session: dict = Body(...)):  # noqa: B008 - FastAPI declares bodies this way
    return await _push(ModuleID.sessions, session)


@app.post("/control/push/cdrs")
async def control_push_cdr(cdr: dict = Body(...)):  # noqa: B008 - FastAPI declares bodies this way
    return await _push(ModuleID.cdrs, cdr)


@app.post("/control/call")
async def control_call(call: dict = Body(...)):  # noqa: B008 - FastAPI declares bodies this way
    """A raw OCPI call to the eMSP with the token it issued us: {method, url | module + path, json}.

    extrawest cannot send a Session PATCH (nor GET an eMSP's objects); this is how tests do it."""
    if not state.emsp:
        return _not_registered()
    url = call.get("url") or (_endpoint(call["module"]) or "").rstrip("/") + call.get("path", "")
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.request(
            call["method"],
            url,
            json=call.get("json"),
            headers={
                "Authorization": _emsp_auth(),
                "X-Request-ID": secrets.token_hex(8),
                "X-Correlation-ID": secrets.token_hex(8),
                "OCPI-from-country-code": args.country_code,
                "OCPI-from-party-id": args.party_id,
            },
        )
    return {**_answer(response), "url": url}


@app.get("/control/requests")
async def control_requests():
    return {"seen": state.seen, "sent": state.sent}


def exit_with_parent(parent: int):
    """Tests that die without stop() must not leave us running: exit when our parent goes."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


if __name__ == "__main__":
    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()
    print(f"LISTENING {PORT}", flush=True)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1)
    uvicorn.Server(config).run(sockets=[sock])
