"""The purchase over plain HTTP against the whole product: a real Celery worker on Redis and PostgreSQL.

No browser: the test does what checkout.js does (GET the page for the CSRF cookie, POST .../pay with
a localstripe card id, poll status.json, POST stop) and checks that the worker process, not the web
process, started the charge, captured the money, issued the receipt and e-mailed it.
"""

import re
import threading
from decimal import Decimal

import pytest

from tests.stack import VISA, Driver, poll, require_stack, stack_fixture_body

pytestmark = [pytest.mark.stack]

AC = "NL*DPY*E0001*1"
DC = "NL*DPY*E0002*1"


@pytest.fixture(scope="module")
def stack(request):
    require_stack()
    yield from stack_fixture_body(request)


def sessions_of(stack, evse_id):
    return stack.query(
        "SELECT s.id, p.stripe_payment_intent_id FROM checkout_chargingsession s"
        " JOIN stations_evse e ON e.id = s.evse_id JOIN checkout_payment p ON p.session_id = s.id"
        " WHERE e.evse_id = %s ORDER BY s.id",
        (evse_id,),
    )


def session_transitions(stack, session_id):
    rows = stack.query(
        "SELECT to_status FROM checkout_paymentevent WHERE session_id = %s AND kind = 'session_status'"
        " ORDER BY created_at, id",
        (session_id,),
    )
    return [row["to_status"] for row in rows]


def worker_ran(stack, task, worker):
    log = (stack.log_dir / f"{worker}.log").read_text(errors="replace")
    return re.search(rf"Task {re.escape(task)}\[[0-9a-f-]+\] succeeded", log) is not None


def test_worker_starts_captures_and_issues_the_receipt(stack):
    driver = Driver(stack, AC)
    assert driver.holds == [2000, 3500, 5000]
    code, answer = driver.pay(hold=2000, email="fleet@example.com")
    assert (code, answer["ok"], answer["next"]) == (200, True, "status")

    driver.wait_for(lambda s: s["status"] == "charging", what="charging")
    charging = driver.wait_for(lambda s: Decimal(s["kwh"]) >= 1, what="a kWh delivered")
    assert Decimal(charging["cost"]) > 0 and charging["payment_status"] == "authorized"
    driver.stop()

    final = driver.wait_for(lambda s: s["receipt"], timeout=60, what="the receipt")
    assert (final["status"], final["payment_status"], final["settled"]) == (
        "finished",
        "captured",
        True,
    )
    assert Decimal(final["kwh"]) >= Decimal(charging["kwh"])

    session = stack.latest_session(AC)
    total = session["receipt_total"]
    assert 0 < total == session["amount_captured"] <= session["amount_held"] == 2000
    assert Decimal(final["cost"]) == Decimal(total) / 100
    assert session_transitions(stack, session["session_id"]) == [
        "authorizing",
        "authorized",
        "starting",
        "charging",
        "stopping",
        "finished",
    ]

    pdf = driver.http.get(driver.status_url + "receipt.pdf", timeout=10)
    assert pdf.status_code == 200 and pdf.headers["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")

    intent = stack.localstripe.intent(session["stripe_payment_intent_id"])
    charge = intent["latest_charge"]
    if isinstance(charge, str):
        charge = stack.localstripe.charge(charge)
    assert intent["status"] == "succeeded" and charge["captured"] is True
    assert charge["amount"] - charge["amount_refunded"] == total

    mail = poll(
        lambda: next((m for m in stack.mails() if session["receipt_number"] in m), None),
        timeout=60,
        what="the receipt e-mail",
    )
    assert "To: fleet@example.com" in mail

    # The web process only queued: the workers did the work through Redis, each on its own queue.
    for task, worker in [
        ("checkout.tasks.session_start", "csms"),
        ("checkout.tasks.csms_stop", "csms"),
        ("checkout.tasks.payment_capture", "worker"),
        ("checkout.tasks.receipt_issue", "receipts"),
        ("checkout.tasks.receipt_email", "receipts"),
        ("stations.tasks.simulator_tick", "simulator"),
    ]:
        # Polled: a task's "succeeded" line is written just after its work (the mail) is visible.
        poll(
            lambda task=task, worker=worker: worker_ran(stack, task, worker),
            timeout=30,
            what=f"a successful {task} in the {worker} worker's log",
        )
    # localstripe sends the capture's webhook a second later, when the capture is recorded: the
    # web process concludes it as it stores it (nothing to ask Stripe), and queues no task.
    event = poll(
        lambda: stack.one(
            "SELECT processed_at, outcome FROM checkout_stripeevent"
            " WHERE type = 'payment_intent.succeeded' AND payload #>> '{data,object,id}' = %s",
            (session["stripe_payment_intent_id"],),
        ),
        timeout=60,
        what="the capture's webhook",
    )
    assert event["processed_at"] is not None
    assert event["outcome"].endswith("nothing to do (captured when received)")
    assert not worker_ran(stack, "checkout.tasks.stripe_event_process", "worker")


def test_charger_that_never_answers_gets_the_hold_released(stack):
    stack.set_sim_behaviour(DC, "timeout")
    try:
        driver = Driver(stack, DC)
        code, answer = driver.pay()
        assert (code, answer["ok"]) == (200, True)
        starting = driver.wait_for(lambda s: s["status"] == "starting", what="starting")
        assert starting["payment_status"] == "authorized"
        # CSMS_START_TIMEOUT_SECONDS later (a countdown task on Redis, or beat's sweep) the hold goes back.
        final = driver.wait_for(
            lambda s: s["settled"],
            timeout=stack.start_timeout_seconds + 30,
            what="the start timeout",
        )
    finally:
        stack.set_sim_behaviour(DC, "accept")
    assert (final["status"], final["payment_status"], final["receipt"]) == (
        "failed",
        "canceled",
        False,
    )
    session = stack.latest_session(DC)
    assert session["failure_reason"] == "The charger did not respond."
    assert stack.localstripe.intent(session["stripe_payment_intent_id"])["status"] == "canceled"


def test_two_drivers_paying_at_once_get_one_session(stack):
    """Two phones press Pay for the same free EVSE at about the same moment.

    The charger stays silent, so the winner's session holds the EVSE until the start times out,
    however the two requests are scheduled: on a busy machine gunicorn may serve them one after the
    other, and a charger that refused at once would free the EVSE for the second in between."""
    stack.set_sim_behaviour(DC, "timeout")
    try:
        before = {row["id"] for row in sessions_of(stack, DC)}
        drivers = [Driver(stack, DC), Driver(stack, DC)]
        cards = [stack.localstripe.card_token(VISA) for _ in drivers]
        results = [None, None]
        barrier = threading.Barrier(2)

        def pay(i):
            barrier.wait()
            results[i] = drivers[i].pay(payment_method=cards[i])

        threads = [threading.Thread(target=pay, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        codes = sorted(code for code, _ in results)
        assert codes == [200, 409], results
        loser = next(answer for code, answer in results if code == 409)
        assert "Nothing has been charged" in loser["message"] and loser["held"] is False
        winner = next(d for d, (code, _) in zip(drivers, results) if code == 200)
        final = winner.wait_for(
            lambda s: s["settled"],
            timeout=stack.start_timeout_seconds + 30,
            what="the start timeout to release the hold",
        )
    finally:
        stack.set_sim_behaviour(DC, "accept")
    assert (final["status"], final["payment_status"]) == ("failed", "canceled")
    sessions = [row for row in sessions_of(stack, DC) if row["id"] not in before]
    assert len(sessions) == 1, sessions
    assert stack.localstripe.intent(sessions[0]["stripe_payment_intent_id"])["status"] == "canceled"


FLOOD = 3000


@pytest.mark.filterwarnings(
    "ignore::celery.exceptions.AlwaysEagerIgnored"
)  # send_task is never eager
def test_a_webhook_flood_does_not_delay_a_capture(stack):
    """Thousands of stored webhooks are queued just before the driver stops: the capture does not
    wait behind them (they are on the events queue, not the money queue)."""
    from directpay.celery import app

    driver = Driver(stack, AC)
    code, answer = driver.pay(hold=2000)
    assert (code, answer["ok"]) == (200, True)
    driver.wait_for(lambda s: s["status"] == "charging", what="charging")

    # Webhooks about intents that are not ours: each is stored, processed, and answers "no payment".
    flood = stack.query(
        """
        INSERT INTO checkout_stripeevent (event_id, type, payload, received_at, outcome)
        SELECT 'evt_flood_' || n, 'payment_intent.succeeded',
               jsonb_build_object('id', 'evt_flood_' || n, 'type', 'payment_intent.succeeded',
                                  'data', jsonb_build_object('object', jsonb_build_object(
                                      'id', 'pi_flood_' || n, 'object', 'payment_intent'))),
               now(), ''
        FROM generate_series(1, %s) AS n
        RETURNING id
        """,
        (FLOOD,),
    )
    with app.connection_for_write(stack.env["CELERY_BROKER_URL"]) as connection:
        for row in flood:  # routed by CELERY_TASK_ROUTES, as the web process queues them
            app.send_task(
                "checkout.tasks.stripe_event_process", (row["id"],), connection=connection
            )
    try:
        driver.stop()
        final = driver.wait_for(lambda s: s["receipt"], timeout=120, what="the receipt")
        assert final["payment_status"] == "captured"
        session = stack.latest_session(AC)
        captured = stack.one(
            "SELECT min(created_at) AS at FROM checkout_paymentevent"
            " WHERE session_id = %s AND kind = 'payment_status' AND to_status = 'captured'",
            (session["session_id"],),
        )["at"]
        waiting = stack.one(
            "SELECT count(*) AS n FROM checkout_stripeevent WHERE event_id LIKE 'evt_flood_%%'"
            " AND (processed_at IS NULL OR processed_at > %s)",
            (captured,),
        )["n"]
        # Had the capture queued behind the flood, every flood event would be processed before it.
        assert waiting > 0, "the capture waited for the whole webhook flood"
        processed = stack.one(
            "SELECT count(*) AS n FROM checkout_stripeevent WHERE event_id LIKE 'evt_flood_%%'"
            " AND processed_at IS NOT NULL"
        )["n"]
        assert processed > 0, "the events worker processed none of the flood"
    finally:
        stack._redis().delete("events")  # what is left of the flood: the next test need not wait
