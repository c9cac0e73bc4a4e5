# ruff: noqa: F811 (the fixtures imported from tests/test_ocpp.py are parameters here)
"""A charger's own payment terminal (OCPP 2.1): a card tap starts a charge the terminal authorised,
and NotifySettlement at the end is recorded as a terminal payment with a numbered receipt whose
signed link goes back to the charger (for its QR code). The gateway and the simulated chargers
run in the test process's asyncio loop thread (tests/test_ocpp.py), over WebSocket on 127.0.0.1."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.urls import reverse
from ocpp.exceptions import OCPPError
from pypdf import PdfReader
from websockets.asyncio.client import connect

from checkout.lookup import receipt_from_token
from checkout.models import ChargingSession, Payment, Receipt, ReceiptCounter
from checkout.refunds import RefundError, payment_refund
from checkout.states import PaymentStatus as P
from checkout.states import SessionStatus as S
from stations.csms.ocpp.charger import SimulatedStation
from stations.models import OcppTransaction
from tests.factories import ConnectorFactory
from tests.test_ocpp import _basic, charger, gateway, loop, make_station, wait_for  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def terminal_station(charger):
    """An OCPP 2.1 station with a payment terminal, connected and Available: (connector, sim)."""
    return charger("ocpp2.1")


def pdf_text(content: bytes) -> str:
    reader = PdfReader(io.BytesIO(content))
    return " ".join(" ".join(page.extract_text().split()) for page in reader.pages)


def settle_again(loop, sim, tap, amount=None):
    return loop.run(
        sim.cp.call(
            sim.cp.calls.NotifySettlement(
                psp_ref=tap["psp_ref"],
                status="Settled",
                settlement_amount=tap["amount"] if amount is None else amount,
                settlement_time="2026-06-01T10:00:00Z",
                transaction_id=tap["transaction_id"],
            ),
            suppress=False,
        )
    )


def test_tap_settles_into_a_receipt_the_terminal_links_to(
    terminal_station,
    loop,
    client,
    settings,
    admin_client,
):
    connector, sim = terminal_station
    tap = loop.run(sim.tap(seconds=1))

    receipt = Receipt.objects.select_related("payment__session").get()
    payment, session = receipt.payment, receipt.payment.session
    assert payment.method == Payment.Method.TERMINAL and payment.is_terminal
    assert payment.psp_reference == tap["psp_ref"] and payment.stripe_payment_intent_id is None
    assert payment.status == P.CAPTURED
    assert payment.amount_captured == round(Decimal(str(tap["amount"])) * 100) > 0
    assert receipt.total_incl_vat == payment.amount_captured
    assert receipt.total_excl_vat + receipt.vat_amount == receipt.total_incl_vat
    assert (session.status, session.connector) == (S.FINISHED, connector)
    tx = OcppTransaction.objects.get(transaction_id=tap["transaction_id"])
    assert tx.psp_ref == tap["psp_ref"] and tx.reference == session.csms_reference
    assert session.kwh == (tx.meter_wh - tx.meter_start_wh) / 1000 > 0
    assert session.attention == ""  # it settled our price

    # The answer names the receipt and carries its signed link: the page and its PDF open.
    assert tap["receipt_id"] == receipt.number

    # Finance sees it beside card payments, marked and filterable by method.
    listed = admin_client.get("/admin/checkout/receipt/?payment__method__exact=terminal")
    assert listed.status_code == 200
    assert receipt.number in listed.content.decode()
    assert "Payment terminal at the charger" in listed.content.decode()
    cards = admin_client.get("/admin/checkout/receipt/?payment__method__exact=card")
    assert cards.status_code == 200 and receipt.number not in cards.content.decode()
    export = admin_client.get(reverse("admin:checkout_receipt_export"))
    assert export.status_code == 200
    (row,) = csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode()))
    assert (row["method"], row["psp_reference"], row["payment_intent"]) == (
        "terminal",
        tap["psp_ref"],
        "",
    )
    assert tap["receipt_url"].startswith(settings.PUBLIC_BASE_URL + "/")
    path = tap["receipt_url"].removeprefix(settings.PUBLIC_BASE_URL)
    page = client.get(path)
    assert page.status_code == 200 and receipt.number in page.content.decode()
    pdf = client.get(path + "receipt.pdf")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    text = pdf_text(pdf.content)
    settled = f"{payment.amount_captured // 100}.{payment.amount_captured % 100:02d}"
    assert f"Total (incl. VAT) {settled} {payment.currency}" in text
    assert "Payment terminal at the charger" in text and tap["psp_ref"] in text

    # The terminal sends it again (it missed our answer): nothing changes, the same receipt.
    counter = ReceiptCounter.objects.get().last
    again = settle_again(loop, sim, tap)
    assert again.receipt_id == receipt.number
    assert receipt_from_token(again.receipt_url.rsplit("/", 2)[-2]) == receipt
    assert (Receipt.objects.count(), Payment.objects.count(), ChargingSession.objects.count()) == (
        1,
        1,
        1,
    )
    assert ReceiptCounter.objects.get().last == counter
    # Even with another amount: the first settlement stands.
    assert settle_again(loop, sim, tap, amount=55.0).receipt_id == receipt.number
    assert Payment.objects.get().amount_captured == payment.amount_captured


def test_a_settlement_other_than_our_price_is_flagged(terminal_station, loop, settings):
    settings.TERMINAL_SETTLEMENT_TOLERANCE_CENTS = 1
    _, sim = terminal_station
    tap = loop.run(sim.tap(seconds=0.6, amount=12.34))
    payment = Payment.objects.select_related("session", "receipt").get()
    session = payment.session
    ours = round(session.cost_incl_vat * 100)
    assert ours != 1234 and ours > 0
    assert payment.amount_captured == payment.receipt.total_incl_vat == 1234
    assert "settled 12.34" in session.attention and f"{ours / 100:.2f}" in session.attention
    # The receipt's VAT is a split of what was settled, not of our price.
    receipt = payment.receipt
    assert receipt.total_excl_vat + receipt.vat_amount == 1234
    assert tap["receipt_id"] == receipt.number


def _settlement(**fields):
    payload = {
        "pspRef": "PSP-RAW-1",
        "status": "Settled",
        "settlementAmount": 1.23,
        "settlementTime": "2026-06-01T10:05:00Z",
        "transactionId": "TERM-1",
    }
    payload.update(fields)
    return {k: v for k, v in payload.items() if v is not None}


def _tx_event(seq, kind, wh, tid="TERM-1"):
    payload = {
        "eventType": kind,
        "timestamp": f"2026-06-01T10:0{seq}:00Z",
        "triggerReason": "Authorized" if kind == "Started" else "StopAuthorized",
        "seqNo": seq,
        "transactionInfo": {"transactionId": tid},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [
            {
                "timestamp": f"2026-06-01T10:0{seq}:00Z",
                "sampledValue": [{"value": wh, "unitOfMeasure": {"unit": "kWh"}}],
            }
        ],
    }
    if kind == "Started":
        payload["idToken"] = {"idToken": "PSP-RAW-1", "type": "DirectPayment"}
    return payload


def test_malformed_settlements_get_callerror_and_change_nothing(gateway, loop):
    connector = ConnectorFactory()
    station, password = make_station(connector, protocol="ocpp2.1")
    bad = [
        _settlement(settlementAmount=None),  # required
        _settlement(settlementAmount="1.23"),  # a string
        _settlement(status="Paid"),  # not an enum value
        _settlement(settlementTime="yesterday"),
        _settlement(transactionId="NO-SUCH"),  # not a transaction of this station
        _settlement(transactionId=None),
        _settlement(pspRef="PSP-OTHER"),  # not what authorised it
        _settlement(settlementAmount=-1.0),
        _settlement(settlementAmount=1.234),  # not in cents
    ]

    async def converse():
        async with connect(
            f"{gateway.url}/{station.identity}",
            subprotocols=["ocpp2.1"],
            additional_headers=_basic(station.identity, password),
        ) as ws:

            async def call(n, action, payload):
                await ws.send(json.dumps([2, f"m{n}", action, payload]))
                return json.loads(await asyncio.wait_for(ws.recv(), 10))

            started = await call(0, "TransactionEvent", _tx_event(0, "Started", 100.0))
            early = await call(1, "NotifySettlement", _settlement())  # before it has ended
            await call(2, "TransactionEvent", _tx_event(1, "Ended", 102.0))
            replies = [await call(10 + n, "NotifySettlement", p) for n, p in enumerate(bad)]
            good = await call(99, "NotifySettlement", _settlement())
            # A second charge presenting the same PSP reference: not the first one's receipt.
            await call(100, "TransactionEvent", _tx_event(2, "Started", 102.0, tid="TERM-2"))
            await call(101, "TransactionEvent", _tx_event(3, "Ended", 103.0, tid="TERM-2"))
            reused = await call(102, "NotifySettlement", _settlement(transactionId="TERM-2"))
            return started, early, replies, good, reused

    started, early, replies, good, reused = loop.run(converse())
    assert reused[0] == 4 and "another charge" in reused[3]
    assert started[2]["idTokenInfo"]["status"] == "Accepted"  # the terminal's authorisation
    assert early[0] == 4
    assert [r[0] for r in replies] == [4] * len(bad), replies
    assert [r[1] for r in replies] == [f"m{10 + n}" for n in range(len(bad))]
    # Nothing of them was recorded; the well-formed one afterwards was.
    assert good[0] == 3 and good[2]["receiptId"] and good[2]["receiptUrl"]
    assert Payment.objects.count() == Receipt.objects.count() == 1
    payment = Payment.objects.get()
    assert (payment.amount_captured, payment.psp_reference) == (123, "PSP-RAW-1")


def test_a_tap_needs_ocpp_21(gateway, loop):
    sim = SimulatedStation(url=gateway.url, identity="X", password="x", version="ocpp2.0.1")
    with pytest.raises(ValueError, match="2.1"):
        loop.run(sim.tap())


def test_settlement_errors_reach_the_charger_as_ocpp_errors(terminal_station, loop):
    _, sim = terminal_station
    with pytest.raises(OCPPError):
        loop.run(
            sim.cp.call(
                sim.cp.calls.NotifySettlement(
                    psp_ref="PSP-NONE",
                    status="Settled",
                    settlement_amount=1.0,
                    settlement_time="2026-06-01T10:00:00Z",
                    transaction_id="NONE",
                ),
                suppress=False,
            )
        )
    assert not Payment.objects.exists()


def test_ocpp_tap_command_taps_as_the_station_and_prints_the_receipt(gateway):
    connector = ConnectorFactory()
    station, password = make_station(connector, protocol="ocpp2.1")
    out = io.StringIO()
    call_command(
        "ocpp_tap",
        station.identity,
        url=gateway.url,
        password=password,
        seconds=1,
        amount=3.21,
        speedup=900,
        meter_interval=0.2,
        stdout=out,
    )
    printed = json.loads(out.getvalue())
    receipt = Receipt.objects.select_related("payment").get()
    assert printed["receipt_id"] == receipt.number and printed["amount"] == 3.21
    assert receipt.payment.amount_captured == 321 and receipt.payment.is_terminal
    assert receipt_from_token(printed["receipt_url"].rsplit("/", 2)[-2]) == receipt
    # Its PSP took the money: a refund from our admin (through Stripe) is refused, nothing recorded.
    with pytest.raises(RefundError, match="payment terminal"):
        payment_refund(
            payment_id=receipt.payment.pk,
            amount=100,
            reason="requested_by_customer",
            requested_by="finance",
        )
    assert not receipt.payment.refunds.exists()
