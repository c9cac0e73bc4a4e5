"""The whole product as real processes, the way production runs it, for end-to-end tests.

`Stack` gives a test its own PostgreSQL database, its own Redis database as the Celery broker,
its own localstripe, and starts the web app (gunicorn), a Celery worker and Celery beat against
them, with the simulated CSMS running fast enough for a test to charge in seconds:

    stack = Stack().start()
    page.goto(stack.checkout_url("NL*DPY*E0001*1"))
    stack.one("SELECT status FROM checkout_chargingsession ORDER BY id DESC LIMIT 1")
    stack.stop()

The test process itself runs with tests/pytest_env.py's settings (an in-memory broker, eager
tasks, the pytest database): every child process gets the stack's values explicitly.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import requests
from psycopg import sql
from psycopg.rows import dict_row

from tests import pytest_env
from tests.faultproxy import FaultProxy
from tests.peers import LocalStripe, free_port, wait_for_http

BASE_DIR = Path(__file__).resolve().parent.parent
ARTIFACTS = BASE_DIR / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
SIM_BEHAVIOURS = ("accept", "reject", "occupied", "timeout", "slow")
# Worker process name -> (queue, threads; None = the stack's worker_concurrency), as in Procfile.dev.
WORKERS = {
    "worker": ("money", None),
    "events": ("events", 1),
    "csms": ("csms", 2),
    "receipts": ("receipts", 1),
    "simulator": ("simulator", 1),
}

VISA = "4242424242424242"

# Extra text (e.g. a browser's console) a test wants shown next to the process logs when it fails.
EXTRA_LOGS = pytest.StashKey[dict]()


def require_stack(*, browser: bool = False) -> None:
    """Skip when a service the stack needs is missing; in CI (CI=true) fail instead, never skip."""
    missing = []
    if not pytest_env.POSTGRES:
        missing.append("PostgreSQL on 127.0.0.1:5432")
    if not pytest_env.REDIS:
        missing.append("Redis on 127.0.0.1:6379")
    if browser and not os.path.exists(CHROMIUM):
        missing.append(f"Chromium at {CHROMIUM}")
    if missing:
        message = "the end-to-end stack needs " + ", ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI must run these tests, not skip them)", pytrace=False)
        pytest.skip(message)


def poll(
    condition: Callable[[], object],
    *,
    timeout: float,
    interval: float = 0.25,
    what: str = "condition",
):
    """Call `condition` until it returns something truthy (and return that) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what} (last value: {value!r})"
            )
        time.sleep(interval)


class Stack:
    """Web (gunicorn), Celery worker and beat, localstripe, PostgreSQL and Redis: the product."""

    def __init__(
        self,
        *,
        speedup: float = 60,
        tick_seconds: float = 1,
        start_timeout_seconds: int = 10,
        web: str = "gunicorn",
        stripe_proxy: bool = False,
        stripe_timeout_seconds: int = 20,
        worker_pool: str = "threads",
        worker_concurrency: int = 2,
        visibility_timeout_seconds: int | None = None,
        ocpp: bool = False,
        localstripe_command: list[str] | None = None,
        ocpp_gateways: int = 1,
    ):
        """`stripe_proxy`: the children reach localstripe through a FaultProxy (`stack.proxy`) run by
        the test process, so a test can inject Stripe faults and count the requests that got through;
        `stripe_timeout_seconds` is then the app's Stripe timeout and the proxy's "timeout" silence.
        `visibility_timeout_seconds`: the Redis broker hands a task taken by a worker that died
        unacknowledged out again after this long (CELERY_VISIBILITY_TIMEOUT; default one hour).
        `localstripe_command`: how to start the Stripe stand-in (default tests/peers.LOCALSTRIPE)."""
        self.speedup = speedup
        self.tick_seconds = tick_seconds
        self.start_timeout_seconds = start_timeout_seconds
        self.web = web
        self.stripe_proxy = stripe_proxy
        self.stripe_timeout_seconds = stripe_timeout_seconds
        self.worker_pool = worker_pool
        self.worker_concurrency = worker_concurrency
        self.visibility_timeout_seconds = visibility_timeout_seconds
        # The OCPP gateway and the demo's simulated OCPP chargers (Procfile.dev's ocpp and chargers).
        self.ocpp = ocpp
        self.ocpp_port = free_port() if ocpp else None
        self.localstripe_command = localstripe_command
        # More than one gateway process: the demo stations are spread over them (round robin),
        # each gateway's chargers run by their own `ocpp_charger`. (ws port, control port) each.
        self.ocpp_gateways = [
            (self.ocpp_port if n == 0 else free_port(), free_port())
            for n in range(ocpp_gateways if ocpp else 0)
        ]
        self.proxy: FaultProxy | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="directpay-stack-"))
        self.var_dir = self.tmp / "var"
        self.mail_dir = self.var_dir / "mail"
        self.log_dir = self.tmp / "logs"
        self.db_name = f"directpay_e2e_{secrets.token_hex(6)}"
        self.dsn = f"host=127.0.0.1 port=5432 user=postgres dbname={self.db_name}"
        self.redis_db: int | None = None
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.localstripe: LocalStripe | None = None
        self.processes: dict[str, subprocess.Popen] = {}
        self._log_files: list = []
        self._db_created = False
        self._urls: dict[str, str] = {}
        self.env: dict[str, str] = {}

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Stack:
        # The children run in their own sessions (Ctrl-C does not reach them): stop them at exit too.
        atexit.register(self.stop)
        try:
            self._start()
        except Exception as exc:
            tails = self.tails()
            self.stop()
            raise RuntimeError(f"the stack did not start: {exc!r}\n{tails}") from exc
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        for directory in (self.var_dir, self.mail_dir, self.log_dir):
            directory.mkdir(parents=True, exist_ok=True)
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.db_name)))
        self._db_created = True
        self.redis_db = self._pick_redis_db()
        self._redis().flushdb()
        self.localstripe = LocalStripe(command=self.localstripe_command)
        stripe_api_base = self.localstripe.base
        if self.stripe_proxy:
            self.proxy = FaultProxy(
                self.localstripe.base, client_timeout=self.stripe_timeout_seconds
            )
            stripe_api_base = self.proxy.base

        venv_bin = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "directpay.settings",
            "DEBUG": "true",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "VAR_DIR": str(self.var_dir),
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{self.db_name}",
            "CELERY_BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{self.redis_db}",
            # The Pay abuse limits count in Redis, shared by the web workers, as in production.
            "CACHE_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{self.redis_db}",
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "DB_CONN_MAX_AGE": "300",  # as in production (tests/pytest_env.py turns it off in-process)
            "STRIPE_API_BASE": stripe_api_base,
            "STRIPE_JS_URL": f"{self.localstripe.base}/js.stripe.com/v3/",
            "STRIPE_SECRET_KEY": "sk_test_localstripe",
            "STRIPE_PUBLISHABLE_KEY": "pk_test_localstripe",
            "STRIPE_WEBHOOK_SECRET": "whsec_localstripe",
            "PUBLIC_BASE_URL": self.base,
            "CSMS_BACKEND": "simulator",
            "SIMULATOR_SPEEDUP": str(self.speedup),
            "SIMULATOR_TICK_SECONDS": str(self.tick_seconds),
            "CSMS_START_TIMEOUT_SECONDS": str(self.start_timeout_seconds),
            # Four slashes: django-environ drops the first one of the path.
            "EMAIL_URL": f"filemail:///{self.mail_dir}",
            "LOG_LEVEL": "INFO",
        }
        if self.stripe_proxy:
            self.env["STRIPE_TIMEOUT_SECONDS"] = str(self.stripe_timeout_seconds)
        if self.visibility_timeout_seconds is not None:
            self.env["CELERY_VISIBILITY_TIMEOUT"] = str(self.visibility_timeout_seconds)
        self.manage("migrate", "--noinput")
        self.manage("seed_demo")

        if self.web == "gunicorn":
            web = [
                sys.executable,
                "-m",
                "gunicorn",
                "directpay.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--timeout",
                "60",
                "--access-logfile",
                "-",
                "--no-control-socket",
            ]
        else:
            web = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{self.port}", "--noreload"]
        self._spawn("web", web)
        wait_for_http(f"{self.base}/healthz", timeout=60, process=self.processes["web"])
        # One worker per queue, as the Procfile runs them; "worker" is the money worker.
        for name in WORKERS:
            self._spawn(name, self._worker_command(name))
        self._spawn(
            "beat",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "directpay",
                "beat",
                "-s",
                str(self.tmp / "beat-schedule"),
                "--loglevel",
                "info",
            ],
        )
        for name in WORKERS:
            self._wait_for_log(name, " ready.", timeout=60)
        self._wait_for_log("beat", "beat: Starting", timeout=60)
        self.manage("localstripe_webhook", "--url", f"{self.base}/webhooks/stripe/")
        if self.ocpp:
            self._start_ocpp()

    def _start_ocpp(self) -> None:
        from stations import demo

        identities = sorted(demo.OCPP_STATIONS)
        for n, (port, control) in enumerate(self.ocpp_gateways):
            name = "ocpp" if n == 0 else f"ocpp{n + 1}"
            self._spawn(
                name,
                [
                    sys.executable,
                    "manage.py",
                    "ocpp_gateway",
                    "--port",
                    str(port),
                    "--control-port",
                    str(control),
                ],
            )
            self._wait_for_log(name, "server listening", timeout=60)
            stations = []
            if len(self.ocpp_gateways) > 1:
                for identity in identities[n :: len(self.ocpp_gateways)]:
                    stations += ["--station", identity]
            self._spawn(
                "chargers" if n == 0 else f"chargers{n + 1}",
                [
                    sys.executable,
                    "manage.py",
                    "ocpp_charger",
                    "--url",
                    f"ws://127.0.0.1:{port}/ocpp",
                    "--speedup",
                    str(self.speedup * 15),
                    "--meter-interval",
                    "0.5",
                    *stations,
                ],
            )
        poll(
            lambda: (
                (
                    self.one(
                        "SELECT count(*) AS n FROM stations_ocppevse WHERE status = 'Available'"
                    )
                    or {}
                ).get("n")
                == 2
            ),
            timeout=60,
            what="the OCPP demo chargers to boot and report Available",
        )

    def stop(self) -> None:
        """Terminate every process (SIGTERM, then SIGKILL), drop the database, empty the broker."""
        atexit.unregister(self.stop)
        for process in reversed(list(self.processes.values())):
            self._terminate(process)
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        if self.localstripe is not None:
            self.localstripe.stop()
            self.localstripe = None
        for handle in self._log_files:
            handle.close()
        self._log_files.clear()
        if self._db_created:
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(self.db_name)
                    )
                )
            self._db_created = False
        if self.redis_db is not None:
            with contextlib.suppress(Exception):  # nothing to clean if Redis went away
                self._redis().flushdb()
            self.redis_db = None

    def cleanup_files(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- helpers for tests ----------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"

    def manage(self, *args: str, timeout: float = 120) -> str:
        """Run a management command against the stack (its database, broker, localstripe)."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=BASE_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,  # the exit code is checked below, after logging
        )
        with open(self.log_dir / "manage.log", "a") as log:
            log.write(
                f"$ manage.py {' '.join(args)} -> {result.returncode}\n{result.stdout}{result.stderr}\n"
            )
        if result.returncode != 0:
            raise RuntimeError(
                f"manage.py {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def checkout_url(self, evse_id: str) -> str:
        """The signed URL printed on the EVSE's QR sticker (manage.py qr_url)."""
        if evse_id not in self._urls:
            self._urls[evse_id] = self.manage("qr_url", evse_id).strip()
        assert self._urls[evse_id].startswith(self.base + "/q/"), self._urls[evse_id]
        return self._urls[evse_id]

    def query(self, statement: str, params: tuple | dict | None = None) -> list[dict]:
        """Read (or change) the stack's database directly; rows come back as dicts."""
        with psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def one(self, statement: str, params: tuple | dict | None = None) -> dict | None:
        rows = self.query(statement, params)
        assert len(rows) <= 1, f"expected at most one row, got {len(rows)}"
        return rows[0] if rows else None

    def latest_session(self, evse_id: str) -> dict | None:
        """The EVSE's most recent charging session with its payment and receipt, as one row."""
        return self.one(
            """
            SELECT s.id AS session_id, s.public_id, s.status, s.failure_reason, s.kwh, s.cost_incl_vat,
                   s.email,
                   p.id AS payment_id, p.status AS payment_status, p.amount_held, p.amount_captured,
                   p.stripe_payment_intent_id, p.decline_message, p.card_last4,
                   r.number AS receipt_number, r.total_incl_vat AS receipt_total, r.emailed_at
            FROM checkout_chargingsession s
            JOIN stations_evse e ON e.id = s.evse_id
            JOIN checkout_payment p ON p.session_id = s.id
            LEFT JOIN checkout_receipt r ON r.payment_id = p.id
            WHERE e.evse_id = %s
            ORDER BY s.created_at DESC, s.id DESC
            LIMIT 1
            """,
            (evse_id,),
        )

    def set_sim_behaviour(self, evse_id: str, behaviour: str) -> None:
        """How the simulated charger answers a start: accept, reject, occupied, timeout or slow."""
        assert behaviour in SIM_BEHAVIOURS, behaviour
        rows = self.query(
            "UPDATE stations_evse SET sim_behaviour = %s WHERE evse_id = %s RETURNING id",
            (behaviour, evse_id),
        )
        assert len(rows) == 1, f"no EVSE {evse_id}"

    def payment_intents(self) -> list[dict]:
        """Every PaymentIntent localstripe knows (for checks that no hold exists)."""
        return self.localstripe.payment_intents()

    def mails(self) -> list[str]:
        """The e-mails the product sent (Django's file backend, one file per connection)."""
        return [path.read_text(errors="replace") for path in sorted(self.mail_dir.glob("*"))]

    def tails(self, lines: int = 60) -> str:
        """The last lines of every process's output, for a failure report."""
        parts = []
        for path in sorted(self.log_dir.glob("*.log")) if self.log_dir.exists() else []:
            text = path.read_text(errors="replace").splitlines()
            parts.append(
                f"===== {path.name} (last {min(lines, len(text))} of {len(text)} lines) ====="
            )
            parts.extend(text[-lines:])
        for name, process in self.processes.items():
            if process.poll() is not None:
                parts.append(f"!!! {name} exited with {process.returncode}")
        return "\n".join(parts) or "(no process output)"

    def kill_worker(self) -> None:
        """SIGKILL the Celery worker and everything in its process group, as a crash or the OOM killer
        would: no warm shutdown, nothing acknowledged or handed back to the broker."""
        process = self.processes["worker"]
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(10)

    def start_worker(self, timeout: float = 60) -> None:
        """Start a fresh worker (the same command; its output appended to worker.log) and wait until it
        is ready. The previous one must be gone (kill_worker)."""
        assert self.processes["worker"].poll() is not None, "the worker is still running"
        log = self.log_dir / "worker.log"
        since = log.stat().st_size if log.exists() else 0
        self._spawn("worker", self._worker_command("worker"), append=True)
        self._wait_for_log("worker", " ready.", timeout=timeout, since=since)

    def assert_running(self) -> None:
        dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        assert not dead, f"stack processes exited: {dead}"

    # --- internals ------------------------------------------------------------------------------

    def _redis(self):
        import redis

        return redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=self.redis_db, socket_timeout=5)

    def _pick_redis_db(self) -> int:
        """A random database 1..15, preferring an empty one (another stack may be running)."""
        import redis

        candidates = list(range(1, 16))
        random.shuffle(candidates)
        for db in candidates:
            if redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_timeout=5).dbsize() == 0:
                return db
        return candidates[0]

    def _worker_command(self, name: str) -> list[str]:
        queue, concurrency = WORKERS[name]
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "directpay",
            "worker",
            "--queues",
            queue,
            "--concurrency",
            str(concurrency or self.worker_concurrency),
            "--pool",
            self.worker_pool,
            "--loglevel",
            "info",
            "--hostname",
            f"{queue}-{self.db_name}@%h",
        ]

    def database_url(self, application: str) -> str:
        return f"{self.env['DATABASE_URL']}?application_name={application}"

    def _spawn(self, name: str, args: list[str], *, append: bool = False) -> None:
        log = open(self.log_dir / f"{name}.log", "a" if append else "w")  # noqa: SIM115 - closed in stop()
        self._log_files.append(log)
        self.processes[name] = subprocess.Popen(
            args,
            cwd=BASE_DIR,
            # Its PostgreSQL connections carry its name (pg_stat_activity.application_name).
            env=self.env | {"DATABASE_URL": self.database_url(name)},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() reaches gunicorn's and celery's children
        )

    def _wait_for_log(self, name: str, text: str, timeout: float, since: int = 0) -> None:
        """Wait for `text` in the process's log, after byte offset `since` (a restarted process appends)."""
        process, path = self.processes[name], self.log_dir / f"{name}.log"

        def seen():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}")
            with open(path, "rb") as handle:
                handle.seek(since)
                return text in handle.read().decode(errors="replace")

        poll(seen, timeout=timeout, what=f"{name} to log {text!r}")

    @staticmethod
    def _terminate(process: subprocess.Popen) -> None:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of its group (a worker thread pool, gunicorn workers) gets SIGKILL.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            pass


class _FailureLogs:
    """A pytest plugin, registered while a stack runs: failing tests get the processes' output."""

    def __init__(self, stack: Stack):
        self.stack = stack

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if report.failed and "stack" in getattr(item, "fixturenames", ()):
            report.sections.append(("stack process logs (tails)", self.stack.tails()))
            for title, lines in item.stash.get(EXTRA_LOGS, {}).items():
                report.sections.append((title, "\n".join(lines[-200:]) or "(empty)"))


def stack_fixture_body(request, environ: dict[str, str] | None = None, **options):
    """Body of a module-scoped `stack` fixture: start, report logs on failure, always stop.

    `environ`: settings for the stack's processes (which take the test's environment), e.g. the
    abuse limits raised for a module that pays many times from one address."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in (environ or {}).items():
            env.setenv(name, value)
        stack = Stack(**options).start()
        plugin = _FailureLogs(stack)
        name = f"directpay-stack-{id(stack)}"
        request.config.pluginmanager.register(plugin, name)
        failed_before = request.session.testsfailed
        try:
            yield stack
        finally:
            request.config.pluginmanager.unregister(name=name)
            keep = (
                request.session.testsfailed > failed_before
                or os.environ.get("E2E_KEEP_LOGS") == "1"
            )
            if keep:
                sys.stderr.write(f"\n[stack] process logs kept in {stack.log_dir}\n")
            stack.stop()
            if not keep:
                stack.cleanup_files()


class Driver:
    """One phone's worth of HTTP against a stack, doing what checkout.js does: a cookie jar and the
    checkout page's form fields; pay, poll status.json, press Stop."""

    def __init__(self, stack, evse_id):
        self.stack = stack
        self.http = requests.Session()
        self.checkout_url = stack.checkout_url(evse_id)
        page = self.http.get(self.checkout_url, timeout=10)
        assert page.status_code == 200, page.status_code
        self.csrf = self.http.cookies["csrftoken"]
        self.connector = re.search(r'name="connector" value="(\d+)"', page.text)[1]
        self.holds = [int(v) for v in re.findall(r'name="hold_amount" value="(\d+)"', page.text)]
        self.price = re.search(r'name="price" value="([0-9a-f]+)"', page.text)[1]
        self.status_url = None

    def pay(self, card=VISA, hold=None, email="", payment_method=None):
        response = self.http.post(
            self.checkout_url + "/pay",
            data={
                "csrfmiddlewaretoken": self.csrf,
                "connector": self.connector,
                "hold_amount": str(hold or self.holds[0]),
                "email": email,
                "price": self.price,
                "payment_method": payment_method or self.stack.localstripe.card_token(card),
            },
            headers={"X-CSRFToken": self.csrf},
            timeout=60,
        )
        answer = response.json()
        if answer.get("ok"):
            self.status_url = self.stack.url(answer["status_url"])
        return response.status_code, answer

    def status(self):
        response = self.http.get(self.status_url + "status.json", timeout=10)
        response.raise_for_status()
        return response.json()

    def wait_for(self, predicate, *, timeout=30, what="status"):
        def check():
            status = self.status()
            return status if predicate(status) else None

        return poll(check, timeout=timeout, interval=0.5, what=what)

    def stop(self):
        response = self.http.post(
            self.status_url + "stop",
            data={"csrfmiddlewaretoken": self.csrf},
            headers={"X-CSRFToken": self.csrf},
            allow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 302, response.status_code
