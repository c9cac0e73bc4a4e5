"""One rounding of kWh for display (checkout.energy): receipt, status page and status.json agree."""

from decimal import Decimal

import pytest

from checkout import energy
from checkout.models import ChargingSession
from checkout.states import SessionStatus as S
from tests.test_pages import _pay
from tests.test_receipts import energy as energy_tariff
from tests.test_receipts import finished_payment, issue, pdf_text


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("3.6625", "3.663"),
        ("3.6624", "3.662"),
        ("3.66249", "3.663"),  # a reading with more decimals: as recorded (3.6625), then shown
        ("10.13", "10.130"),
        ("0", "0.000"),
    ],
)
def test_kwh_text(value, shown):
    assert energy.kwh_text(Decimal(value)) == shown


def test_the_receipt_energy_row_and_its_price_line_agree(db):
    # Priced from the reading (3.66249 kWh), recorded with 4 decimals (3.6625): one figure printed.
    payment = finished_payment(energy_tariff("0.50", 21), kwh="3.66249")
    text = pdf_text(issue(payment))
    assert "Energy 3.663 kWh" in text
    assert "Energy: 3.663 kWh ×" in text
    assert "3.662 kWh" not in text


def test_status_page_and_status_json_show_the_same_kwh(
    client, connector, stripe, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert _pay(client, connector.evse, stripe).status_code == 200
    session = ChargingSession.objects.get()
    # Half-up everywhere (a half-even format would show 1.000 in one place and 1.001 in the other).
    ChargingSession.objects.filter(pk=session.pk).update(status=S.CHARGING, kwh=Decimal("1.0005"))
    page = client.get(f"/s/{session.public_id}/").content.decode()
    assert '<span id="kwh">1.001</span>' in page
    assert client.get(f"/s/{session.public_id}/status.json").json()["kwh"] == "1.001"
