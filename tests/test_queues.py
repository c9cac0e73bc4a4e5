"""Which worker runs what: a burst of Stripe webhooks, a slow charger or a slow mail server must
never queue in front of a capture. Every queue a task is routed to has a worker in each Procfile
and in the test stack, or its tasks would wait forever."""

import re
from pathlib import Path

import pytest

from directpay.celery import app
from tests.stack import WORKERS

ROOT = Path(__file__).resolve().parent.parent

MONEY = [
    "checkout.tasks.payment_capture",
    "checkout.tasks.payment_cancel",
    "checkout.tasks.refund_send",
    "checkout.tasks.session_start_timeout",
    "checkout.tasks.sweep_strays",
]


def queue_of(task_name: str) -> str:
    return app.amqp.router.route({}, task_name)["queue"].name


def test_webhook_processing_has_its_own_queue_apart_from_captures():
    assert queue_of("checkout.tasks.stripe_event_process") == "events"
    for name in MONEY:
        assert queue_of(name) == "money", name


def test_receipts_and_charger_commands_stay_off_the_money_queue():
    assert queue_of("checkout.tasks.receipt_issue") == "receipts"
    assert queue_of("checkout.tasks.receipt_render") == "receipts"
    assert queue_of("checkout.tasks.session_start") == "csms"
    assert queue_of("checkout.tasks.csms_stop") == "csms"


def routed_queues() -> set[str]:
    names = [name for name in app.tasks if name.startswith(("checkout.", "stations."))]
    return {queue_of(name) for name in names}


def procfile_queues(path: Path) -> set[str]:
    queues = set()
    for line in path.read_text().splitlines():
        match = re.search(r"celery .*worker .*--queues (\S+)", line)
        if match:
            queues.update(match.group(1).split(","))
    return queues


@pytest.mark.parametrize("procfile", ["Procfile", "Procfile.dev"])
def test_every_queue_has_a_worker_in_the_procfile(procfile):
    app.loader.import_default_modules()  # the task modules, so app.tasks lists ours
    # The simulated chargers do not run in production.
    optional = {"simulator"} if procfile == "Procfile" else set()
    missing = routed_queues() - procfile_queues(ROOT / procfile) - optional
    assert not missing, f"{procfile} runs no worker for {sorted(missing)}"


def test_every_queue_has_a_worker_in_the_test_stack():
    app.loader.import_default_modules()
    assert routed_queues() <= {queue for queue, _ in WORKERS.values()}
