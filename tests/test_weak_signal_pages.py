"""A weak signal, server side (issue 12): compressed pages, and a Stop that may arrive more than once.

The browser side (offline banner, Stop retried after a dropped connection, Stripe.js not loading)
is in tests/test_weak_signal.py.
"""

import gzip
import io

import pytest
from pypdf import PdfReader

from checkout.models import ChargingSession, PaymentEvent
from checkout.states import SessionStatus as S
from stations import demo
from stations.models import Evse
from tests.test_pages import _finished_session, _pay, checkout_path

GZIP = {"HTTP_ACCEPT_ENCODING": "gzip, deflate, br"}
JSON = {"HTTP_ACCEPT": "application/json"}


@pytest.fixture
def dc(db, stripe):
    demo.seed()
    return Evse.objects.get(evse_id="NL*DPY*E0002*1")


def test_checkout_html_is_served_compressed(client, dc):
    response = client.get(checkout_path(dc), **GZIP)
    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in response["Vary"]
    html = gzip.decompress(response.content).decode()
    assert "NL*DPY*E0002*1" in html and 'id="pay-form"' in html
    # BREACH: the same page twice is not the same bytes (random padding and a fresh CSRF mask).
    again = client.get(checkout_path(dc), **GZIP)
    assert again.content != response.content


def test_checkout_html_plain_for_a_client_without_gzip(client, dc):
    response = client.get(checkout_path(dc))
    assert not response.has_header("Content-Encoding")
    assert b"NL*DPY*E0002*1" in response.content


def test_receipt_pdf_survives_compression(
    client, connector, stripe, django_capture_on_commit_callbacks
):
    session = _finished_session(connector, stripe, django_capture_on_commit_callbacks)
    response = client.get(f"/s/{session.public_id}/receipt.pdf", **GZIP)
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    body = (
        gzip.decompress(response.content)
        if response.get("Content-Encoding") == "gzip"
        else response.content
    )
    assert body.startswith(b"%PDF")
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(body)).pages)
    assert session.payment.receipt.number in text


def _charging(client, connector, stripe, capture):
    with capture(execute=True):
        assert _pay(client, connector.evse, stripe).status_code == 200  # this browser paid
    session = ChargingSession.objects.get()
    ChargingSession.objects.filter(pk=session.pk).update(status=S.CHARGING)
    return session


def test_stop_by_script_answers_json_and_may_be_sent_again(
    client, connector, stripe, django_capture_on_commit_callbacks
):
    session = _charging(client, connector, stripe, django_capture_on_commit_callbacks)
    url = f"/s/{session.public_id}/stop"
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(url, **JSON)
    assert first.status_code == 200 and first.json() == {"ok": True, "status": S.STOPPING}
    # The answer was lost on the way back: status.js sends the same press again.
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        again = client.post(url, **JSON)
    assert again.status_code == 200 and again.json()["ok"] is True
    assert callbacks == []  # nothing queued twice: the charger is asked to stop once
    assert PaymentEvent.objects.filter(session=session, kind="stop_requested").count() == 1
    # A plain form post (no JavaScript) still gets the status page.
    with django_capture_on_commit_callbacks(execute=True):
        plain = client.post(url)
    assert plain.status_code == 302 and plain["Location"].endswith(f"/s/{session.public_id}/")


def test_stop_by_script_from_another_browser_is_refused_in_json(
    client, connector, stripe, django_capture_on_commit_callbacks
):
    session = _charging(client, connector, stripe, django_capture_on_commit_callbacks)
    client.cookies.clear()  # not the browser that paid
    response = client.post(f"/s/{session.public_id}/stop", **JSON)
    assert response.status_code == 403
    assert response.json()["ok"] is False and "browser that paid" in response.json()["message"]
    session.refresh_from_db()
    assert session.status == S.CHARGING
