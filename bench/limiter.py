"""What the Pay abuse limits cost a driver: checkout Pay p50 over HTTP with and without them.

Starts the product the way tests/stack.py does (its own PostgreSQL database, Redis as broker and as
the limits' cache, localstripe), then two identical gunicorns on that database, one with the limits
off (PAY_LIMITS_ENABLED=false). Pay is pressed alternately on each, `--rounds` times, at the demo AC
charger with a card that localstripe declines (a decline frees the charger at once and makes the same
Stripe calls up to the decline). The limits are set high so none refuses: what is measured is their
counting (Redis round trips, the card's fingerprint read), not a 429's shortcut.

Run: .venv/bin/python bench/limiter.py [--rounds 100]
     (needs PostgreSQL and Redis on 127.0.0.1; loopback only; prints, asserts no time)
"""

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.peers import free_port, wait_for_http
from tests.stack import Stack

DECLINED = "4000000000000341"
EVSE = "NL*DPY*E0001*1"
TARGET_MS = 5.0
HIGH = {
    "PAY_RATE_PER_IP": "1000000/h",
    "PAY_RATE_PER_EVSE": "1000000/h",
    "PAY_RATE_PER_CARD": "1000000/h",
    "PAY_DECLINES_PER_EVSE": "1000000/h",
    "PAY_DECLINES_SPIKE_TOTAL": "1000000/h",
}

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--rounds", type=int, default=100, help="presses of Pay on each (max 1000)")
args = parser.parse_args()
ROUNDS = max(1, min(args.rounds, 1000))


def say(text=""):
    print(text, flush=True)


class Client:
    def __init__(self, stack, base):
        self.stack = stack
        self.http = requests.Session()
        self.url = stack.checkout_url(EVSE).replace(stack.base, base)
        page = self.http.get(self.url, timeout=10)
        page.raise_for_status()
        self.csrf = self.http.cookies["csrftoken"]
        self.price = re.search(r'name="price" value="([0-9a-f]+)"', page.text)[1]
        self.connector = stack.one(
            "SELECT c.id FROM stations_connector c JOIN stations_evse e ON e.id = c.evse_id"
            " WHERE e.evse_id = %s",
            (EVSE,),
        )["id"]
        self.times = []

    def pay(self):
        token = self.stack.localstripe.card_token(DECLINED)  # not timed: the browser's part
        began = time.perf_counter()
        response = self.http.post(
            self.url + "/pay",
            data={
                "csrfmiddlewaretoken": self.csrf,
                "connector": self.connector,
                "hold_amount": "2000",
                "price": self.price,
                "payment_method": token,
            },
            headers={"X-CSRFToken": self.csrf},
            timeout=60,
        )
        self.times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 402, (response.status_code, response.text[:200])


os.environ.update(HIGH)
stack = Stack()
say("starting the stack (PostgreSQL, Redis, localstripe, gunicorn, worker, beat)...")
try:
    stack.start()

    # Two identical web servers on the same database, one with the limits off.
    def web(name, **extra):
        port = free_port()
        env, stack.env = stack.env, {**stack.env, **extra}
        stack._spawn(
            name,
            [
                sys.executable,
                "-m",
                "gunicorn",
                "directpay.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--no-control-socket",
            ],
        )
        stack.env = env
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        return f"http://127.0.0.1:{port}"

    limited = Client(stack, web("web-limits"))
    unlimited = Client(stack, web("web-nolimits", PAY_LIMITS_ENABLED="false"))
    for client in (limited, unlimited):  # warm up: connections, imports, first queries
        for _ in range(3):
            client.pay()
        client.times.clear()
    for n in range(ROUNDS):
        # Alternate which goes first, so neither always follows the other's writes.
        for client in (limited, unlimited) if n % 2 else (unlimited, limited):
            client.pay()

    with_p50 = statistics.median(limited.times)
    without_p50 = statistics.median(unlimited.times)
    added = with_p50 - without_p50
    say(f"Pay (declined card), {ROUNDS} presses each, over HTTP on 127.0.0.1:")
    say(f"  without the limits  p50 {without_p50:7.2f} ms")
    say(f"  with the limits     p50 {with_p50:7.2f} ms")
    say(
        f"  added               p50 {added:+7.2f} ms   (target <= {TARGET_MS:.0f} ms: "
        f"{'met' if added <= TARGET_MS else 'NOT met'})"
    )
finally:
    stack.stop()
    stack.cleanup_files()
