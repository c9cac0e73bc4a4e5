"""A Celery worker killed (SIGKILL) in the middle of a capture: after a restart, exactly one capture.

Real parts: PostgreSQL, Redis as the broker, a real worker process, localstripe behind a fault proxy.
The proxy lets the capture reach localstripe (the money has moved there) and holds its answer; the test
then kills the whole worker, as a crash or the OOM killer would. The task was taken with acks_late and
never acknowledged, so Redis hands it out again once the visibility timeout has passed; the fresh
worker finds the capture marked in flight, asks Stripe, sees it done and records it without capturing
a second time.
"""

import re
import time
from decimal import Decimal

import pytest

from tests.stack import Driver, poll, require_stack, stack_fixture_body

pytestmark = [pytest.mark.stack]

AC = "NL*DPY*E0001*1"
CAPTURE = r"^/v1/payment_intents/[^/]+/capture$"
# How long Redis keeps a task taken by a worker that died before handing it out again
# (CELERY_VISIBILITY_TIMEOUT). Short here; production keeps the hour.
VISIBILITY_TIMEOUT = 4


@pytest.fixture(scope="module")
def stack(request):
    require_stack()
    yield from stack_fixture_body(
        request, stripe_proxy=True, visibility_timeout_seconds=VISIBILITY_TIMEOUT
    )


def payment_row(stack, payment_id):
    return stack.one(
        "SELECT status, write_in_flight, write_amount, amount_held, amount_captured"
        " FROM checkout_payment WHERE id = %s",
        (payment_id,),
    )


def events(stack, session_id, kind):
    return stack.query(
        "SELECT kind, to_status, amount, message FROM checkout_paymentevent"
        " WHERE session_id = %s AND kind = %s ORDER BY created_at, id",
        (session_id, kind),
    )


def test_worker_killed_during_capture_captures_exactly_once_after_restart(stack):
    proxy = stack.proxy
    driver = Driver(stack, AC)
    code, answer = driver.pay(hold=2000)
    assert (code, answer.get("ok")) == (200, True), answer
    driver.wait_for(
        lambda s: s["status"] == "charging" and Decimal(s["cost"]) > 0, what="charging at a cost"
    )

    # The capture reaches localstripe (which captures) and its answer is held back: the worker is
    # inside payment_capture's second transaction, holding the payment's row lock, waiting for Stripe.
    proxy.fail("POST", CAPTURE, "hold")
    driver.stop()
    proxy.wait_held(timeout=30)
    session = stack.latest_session(AC)
    intent = stack.localstripe.intent(session["stripe_payment_intent_id"])
    assert intent["status"] == "succeeded", intent["status"]

    stack.kill_worker()
    killed_at = time.monotonic()
    proxy.clear()  # the held answer goes to a dead socket; later requests pass untouched
    assert proxy.count("POST", CAPTURE) == 1

    # The kill rolled back the transaction that waited for Stripe: only the in-flight mark remains.
    payment_id = session["payment_id"]
    before = payment_row(stack, payment_id)
    assert (before["status"], before["write_in_flight"], before["amount_captured"]) == (
        "authorized",
        "capture",
        0,
    )
    assert 0 < before["write_amount"] <= before["amount_held"] == 2000
    assert session["status"] == "finished" and session["receipt_number"] is None
    # ...and the row lock went with the killed worker's database connection.
    poll(
        lambda: stack.query(
            "SELECT id FROM checkout_payment WHERE id = %s FOR UPDATE SKIP LOCKED", (payment_id,)
        ),
        timeout=10,
        what="the killed worker's row lock to be released",
    )

    # The unacknowledged capture task comes back from Redis once it is older than the visibility
    # timeout; a starting worker hands such tasks out again (kombu's restore at start-up).
    time.sleep(max(0.0, killed_at + VISIBILITY_TIMEOUT + 1 - time.monotonic()))
    stack.start_worker()

    final = driver.wait_for(
        lambda s: s["receipt"], timeout=30, what="the capture and receipt after the restart"
    )
    assert (final["status"], final["payment_status"], final["settled"]) == (
        "finished",
        "captured",
        True,
    )

    # Exactly one capture reached Stripe, and what we recorded is what Stripe captured.
    assert proxy.count("POST", CAPTURE) == 1
    after = payment_row(stack, payment_id)
    assert (after["status"], after["write_in_flight"], after["write_amount"]) == (
        "captured",
        "",
        None,
    )
    assert after["amount_captured"] == before["write_amount"]
    intent = stack.localstripe.intent(session["stripe_payment_intent_id"])
    charge = intent["latest_charge"]
    if isinstance(charge, str):
        charge = stack.localstripe.charge(charge)
    assert intent["status"] == "succeeded" and charge["captured"] is True
    assert charge["amount"] == 2000
    assert charge["amount"] - charge["amount_refunded"] == after["amount_captured"]

    # One receipt, for the amount captured; one capture in the audit trail; nothing for staff to fix.
    receipts = stack.query(
        "SELECT number, total_incl_vat FROM checkout_receipt WHERE payment_id = %s", (payment_id,)
    )
    assert len(receipts) == 1 and receipts[0]["total_incl_vat"] == after["amount_captured"]
    assert len(events(stack, session["session_id"], "capture_requested")) == 1
    assert [e["to_status"] for e in events(stack, session["session_id"], "payment_status")].count(
        "captured"
    ) == 1
    assert events(stack, session["session_id"], "attention") == []
    assert stack.latest_session(AC)["receipt_number"] == receipts[0]["number"]

    # The very task the killed worker had taken came back from Redis and succeeded in the fresh worker.
    log = (stack.log_dir / "worker.log").read_text(errors="replace")
    restart = log.rindex(" ready.")
    taken = re.findall(
        r"Task checkout\.tasks\.payment_capture\[([0-9a-f-]+)\] received", log[:restart]
    )
    assert len(taken) == 1, taken
    assert f"Task checkout.tasks.payment_capture[{taken[0]}] succeeded" not in log[:restart]
    assert f"Task checkout.tasks.payment_capture[{taken[0]}] succeeded" in log[restart:], (
        "the restarted worker did not run the capture task the killed one had taken"
    )
