"""Calibration law (Eichrecht) data: the meter's signed readings, checked, printed, downloadable.

The simulated chargers sign their readings in OCMF with their own key; a CPO's CDR carries them
in OCPI's signed_data. Verification is pyocmf's; the download is the S.A.F.E. transparency
software's XML, read back here with pyocmf's own reader of that format.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta
from decimal import Decimal
from xml.etree import ElementTree

import pyocmf
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.urls import reverse
from django.utils import timezone

from checkout import meter_data, receipts, services
from checkout.models import SignedMeterData
from checkout.states import PaymentStatus as P
from checkout.states import SessionStatus as S
from stations import ocmf
from stations.csms import simulator
from stations.csms.base import SignedData, SignedValue
from stations.csms.ocpi import messages
from stations.models import SimulatedSession
from tests import test_ocpi_sessions as ocpi_walk
from tests.factories import ConnectorFactory
from tests.ocpi_examples import examples
from tests.test_receipts import energy, finished_payment, issue, pdf_text

V = SignedMeterData.Verification
# The OCPI walk's CPO, its connector and the CPO's calls to us (tests/test_ocpi_sessions.py).
cpo, ocpi_connector, send = ocpi_walk.cpo, ocpi_walk.ocpi_connector, ocpi_walk.send
cdr_object, session_object, start_of = (
    ocpi_walk.cdr_object,
    ocpi_walk.session_object,
    ocpi_walk.start_of,
)


def simulated(db, kwh="11.0000", earlier=()) -> tuple[SimulatedSession, object]:
    """A finished simulated charge (after `earlier` ones on the same EVSE) and its end time."""
    connector = ConnectorFactory()
    start = timezone.now() - timedelta(hours=2)
    for before in earlier:
        SimulatedSession.objects.create(
            reference=uuid.uuid4().hex,
            connector=connector,
            power_kw=Decimal(22),
            accept_at=start,
            started_at=start,
            finished_at=start,
            kwh=Decimal(before),
        )
    sim = SimulatedSession.objects.create(
        reference=uuid.uuid4().hex,
        connector=connector,
        power_kw=Decimal(22),
        accept_at=start,
        started_at=start,
        kwh=Decimal(kwh),
    )
    return sim, start + timedelta(minutes=30)


def test_the_simulators_signed_data_verifies_with_pyocmf(db):
    sim, end = simulated(db, kwh="11.0000", earlier=["2.5000", "4.2500"])
    signed = simulator.signed_meter_data(sim, end)
    assert signed.encoding_method == "OCMF"
    assert [v.nature for v in signed.values] == ["Start", "End"]
    readings = []
    for value in signed.values:
        record = pyocmf.OCMF.from_string(value.signed_data, strict=True)
        assert record.verify_signature(signed.public_key) is True
        assert record.payload.MS == f"DPYSIM{sim.connector.evse.pk:08d}"
        assert record.payload.CI == sim.connector.evse.evse_id
        readings += [(str(r.TX), r.RV, str(r.RU)) for r in record.payload.RD]
    # The meter counts on from the EVSE's earlier charges: 6.75 kWh before, 11 kWh in this one.
    assert readings == [("B", Decimal("6.75"), "kWh"), ("E", Decimal("17.75"), "kWh")]
    # The transparency software's rules for a begin and end pair hold (no errors).
    begin, ending = (pyocmf.OCMF.from_string(v.signed_data) for v in signed.values)
    assert begin.check_eichrecht(ending, errors_only=True) == []
    # Another key does not verify it: the check is real.
    other = ocmf.public_key_hex(ocmf.simulator_key("another meter"))
    assert pyocmf.OCMF.from_string(signed.values[0].signed_data).verify_signature(other) is False
    checked = meter_data.check(signed)
    assert (checked.verification, checked.start_kwh, checked.end_kwh) == (
        V.VERIFIED,
        Decimal("6.75"),
        Decimal("17.75"),
    )


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: text.encode().hex().upper(),
        lambda text: base64.b64encode(text.encode()).decode(),
    ],
    ids=["hex", "base64"],
)
def test_encoded_records_are_read_and_kept_as_signed(db, encode):
    sim, end = simulated(db)
    signed = simulator.signed_meter_data(sim, end)
    encoded = SignedData(
        encoding_method="OCMF",
        public_key=signed.public_key,
        values=tuple(SignedValue(v.nature, encode(v.signed_data)) for v in signed.values),
    )
    checked = meter_data.check(encoded)
    assert checked.verification == V.VERIFIED, checked.problem
    # The download holds the records exactly as the meter signed them.
    assert [v["ocmf"] for v in checked.values] == [v.signed_data for v in signed.values]


def flip_payload(record: str) -> str:
    head, payload, signature = record.split("|")
    assert '"MF":"1.0"' in payload
    return "|".join([head, payload.replace('"MF":"1.0"', '"MF":"1.1"'), signature])


def flip_signature(record: str) -> str:
    head, payload, signature = record.split("|")
    # The last hex digit of SD lies inside the DER-encoded s value: still a well-formed signature.
    position = signature.rindex('"}') - 1
    digit = signature[position]
    flipped = "0" if digit != "0" else "1"
    return "|".join([head, payload, signature[:position] + flipped + signature[position + 1 :]])


@pytest.mark.parametrize("tamper", [flip_payload, flip_signature])
def test_one_flipped_byte_does_not_verify_and_the_receipt_says_so(db, tamper):
    sim, end = simulated(db)
    signed = simulator.signed_meter_data(sim, end)
    bad = SignedData(
        encoding_method="OCMF",
        public_key=signed.public_key,
        values=(signed.values[0], SignedValue("End", tamper(signed.values[1].signed_data))),
    )
    assert (
        pyocmf.OCMF.from_string(bad.values[1].signed_data).verify_signature(signed.public_key)
        is False
    )
    payment = finished_payment(energy("0.50", 21), kwh="11")
    row = meter_data.record(payment.session, bad)
    assert row.verification == V.INVALID and "End" in row.problem
    payment.session.refresh_from_db()
    assert "did not verify" in payment.session.attention  # staff see it too
    text = pdf_text(issue(payment))
    assert "Signed meter data did not verify" in text
    assert "Signed meter data verified" not in text


def test_the_untouched_data_prints_verified_on_the_receipt(db):
    sim, end = simulated(db)
    payment = finished_payment(energy("0.50", 21), kwh="11")
    row = meter_data.record(payment.session, simulator.signed_meter_data(sim, end))
    assert row.verified
    text = pdf_text(issue(payment))
    assert "Signed meter data verified" in text
    assert f"Meter ID {row.meter_id}" in text


def test_a_full_simulated_session_ends_with_the_meter_data_on_receipt_and_download(
    connector, finished, client, admin_client, tmp_path
):
    session = finished
    assert (session.status, session.payment.status) == (S.FINISHED, P.CAPTURED)
    assert not session.attention

    row = SignedMeterData.objects.get(session=session)
    meter = f"DPYSIM{connector.evse.pk:08d}"
    assert (row.meter_id, row.start_kwh, row.end_kwh) == (meter, Decimal(0), Decimal(11))
    assert row.verified
    assert session.cdr["signed_data"]["signed_values"][1]["nature"] == "End"  # as OCPI carries it

    text = pdf_text(session.payment.receipt)
    assert "Calibration law (Eichrecht) data" in text
    assert f"Meter ID {meter}" in text
    assert "Meter reading at start 0.0000 kWh" in text
    assert "Meter reading at end 11.0000 kWh" in text
    assert "Signed meter data verified" in text

    # The status page offers the data; the download is the transparency software's XML.
    page = client.get(reverse("checkout:status", args=[session.public_id])).content.decode()
    url = reverse("checkout:meter_data", args=[session.public_id])
    assert f'href="{url}"' in page
    answer = client.get(url)
    assert answer.status_code == 200
    assert answer["Content-Type"] == "application/xml; charset=utf-8"
    assert answer["Content-Disposition"] == (
        f'attachment; filename="meter-data-{session.payment.receipt.number}.xml"'
    )
    assert answer["X-Content-Type-Options"] == "nosniff"
    root = ElementTree.fromstring(answer.content)
    assert root.tag == "values"
    values = root.findall("value")
    assert [v.get("context") for v in values] == ["Transaction.Begin", "Transaction.End"]
    assert [v.find("signedData").text for v in values] == [v["ocmf"] for v in row.values]
    assert all(v.find("signedData").text.startswith("OCMF|{") for v in values)
    assert {v.find("publicKey").text for v in values} == {row.public_key}
    assert values[0].find("signedData").get("format") == "OCMF"

    # Read back as the transparency software reads it: a transaction whose records verify.
    path = tmp_path / "meter-data.xml"
    path.write_bytes(answer.content)
    container = pyocmf.OcmfContainer.from_xml(path)
    assert [record.verify_signature() for record in container] == [True, True]
    assert [result.issues for result in container.check_eichrecht(errors_only=True)] == [[]]

    # Staff see it on the session.
    admin_page = admin_client.get(
        reverse("admin:checkout_chargingsession_change", args=[session.pk])
    ).content.decode()
    assert meter in admin_page and "Signature verified" in admin_page


def test_the_download_needs_the_sessions_link_and_signed_data(db, client):
    payment = finished_payment(energy("0.50", 21), kwh="11")
    session = payment.session
    url = reverse("checkout:meter_data", args=[session.public_id])
    assert client.get(url).status_code == 404  # no signed data
    sim, end = simulated(db)
    meter_data.record(session, simulator.signed_meter_data(sim, end))
    assert client.get(url).status_code == 200
    assert client.get(reverse("checkout:meter_data", args=[uuid.uuid4()])).status_code == 404
    assert client.post(url).status_code == 405


# --- a CPO's CDR over OCPI ------------------------------------------------------------------------


def cpo_signed_data(kwh_start: str, kwh_end: str) -> tuple[dict, str]:
    """OCPI signed_data from a CPO's own certified meter (a key of its own, public key in base64)."""
    key = ec.generate_private_key(ec.SECP256R1())
    common = {
        "gateway": "CPO gateway",
        "meter_serial": "EXA-METER-0042",
        "charge_point": "NL*EXA*E3256",
    }
    now = timezone.now()
    begin = ocmf.reading_payload(
        page=7,
        moment=now - timedelta(hours=1),
        reason="B",
        register_kwh=Decimal(kwh_start),
        **common,
    )
    ending = ocmf.reading_payload(
        page=8, moment=now, reason="E", register_kwh=Decimal(kwh_end), **common
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "encoding_method": "OCMF",
        "encoding_method_version": 1,
        "public_key": base64.b64encode(der).decode(),
        "signed_values": [
            {"nature": "Start", "plain_data": "", "signed_data": ocmf.sign(begin, key)},
            {"nature": "End", "plain_data": "", "signed_data": ocmf.sign(ending, key)},
        ],
        "url": "https://transparency.example/",
    }, der.hex().upper()


def test_the_cdr_example_with_signed_data_is_mapped(db):
    cdr = json.loads((examples() / "cdr_example.json").read_text())
    assert "signed_data" not in cdr
    assert messages.parse_cdr(cdr).signed_data is None
    cdr["signed_data"], _ = cpo_signed_data("100.0000", "106.0000")
    parsed = messages.parse_cdr(cdr).signed_data
    assert parsed.encoding_method == "OCMF" and parsed.url == "https://transparency.example/"
    assert [v.nature for v in parsed.values] == ["Start", "End"]
    assert parsed.values[0].signed_data == cdr["signed_data"]["signed_values"][0]["signed_data"]
    # Broken signed data never rejects the CDR: it is kept as a problem.
    cdr["signed_data"] = {"encoding_method": "OCMF", "signed_values": "OCMF|{}|{}"}
    assert "signed_values" in messages.parse_cdr(cdr).signed_data.problem


def charge_over_ocpi(connector, pay, peer, send, **cdr_extra):
    session = pay(connector, hold=2000)
    start = start_of(peer)
    send.result(start["response_url"], "ACCEPTED")
    send.put_session(session_object(start, kwh=0))
    with send.capture(execute=True):
        services.session_request_stop(session_id=session.pk)
    answer = send.post_cdr(cdr_object(start, kwh=6.0, incl_vat=3.63, **cdr_extra))
    assert answer.json()["status_code"] == 1000
    session.refresh_from_db()
    assert (session.status, session.payment.status) == (S.FINISHED, P.CAPTURED)
    return session


def test_an_ocpi_cdr_with_signed_data_reaches_the_receipt(
    ocpi_connector,
    pay,
    peer,
    send,
):
    signed, public_key = cpo_signed_data("100.0000", "106.0000")
    session = charge_over_ocpi(ocpi_connector, pay, peer, send, signed_data=signed)
    row = SignedMeterData.objects.get(session=session)
    assert row.verified, row.problem
    assert (row.meter_id, row.start_kwh, row.end_kwh) == (
        "EXA-METER-0042",
        Decimal(100),
        Decimal(106),
    )
    assert row.public_key == public_key  # base64 from the CPO, hex for the software
    assert row.url == "https://transparency.example/"
    assert not session.attention
    text = pdf_text(session.payment.receipt)
    assert "Meter ID EXA-METER-0042" in text
    assert "Meter reading at start 100.0000 kWh" in text
    assert "Meter reading at end 106.0000 kWh" in text
    assert "Signed meter data verified" in text


def test_an_ocpi_cdr_with_unreadable_signed_data_is_billed_and_says_so(
    ocpi_connector,
    pay,
    peer,
    send,
):
    signed, _ = cpo_signed_data("100.0000", "106.0000")
    signed["signed_values"][1]["signed_data"] = "OCMF|not json|{}"
    session = charge_over_ocpi(ocpi_connector, pay, peer, send, signed_data=signed)
    assert session.payment.amount_captured == 363
    row = SignedMeterData.objects.get(session=session)
    assert row.verification == V.UNREADABLE and row.problem.startswith("End")
    assert "did not verify" in session.attention
    assert "Signed meter data did not verify" in pdf_text(session.payment.receipt)


def test_a_cdr_without_signed_data_gives_a_receipt_without_the_section(
    ocpi_connector,
    pay,
    peer,
    send,
    client,
):
    session = charge_over_ocpi(ocpi_connector, pay, peer, send)
    assert not SignedMeterData.objects.filter(session=session).exists()
    text = pdf_text(session.payment.receipt)
    assert "Total (incl. VAT)" in text  # the receipt is there
    assert "Calibration law" not in text and "Meter ID" not in text
    page = client.get(reverse("checkout:status", args=[session.public_id])).content.decode()
    assert "meter-data" not in page


def test_a_sessions_meter_data_is_stored_once_the_first_records_standing(db):
    """A CSMS that sends its final record twice: the data of the one that was billed stays."""
    sim, end = simulated(db)
    payment = finished_payment(energy("0.50", 21), kwh="11")
    first = meter_data.record(payment.session, simulator.signed_meter_data(sim, end))
    assert first.pk and first.created_at and first.verified
    other = SignedData(encoding_method="EDL", public_key="AB", values=(SignedValue("End", "AA"),))
    again = meter_data.record(payment.session, other)
    assert again.pk == first.pk and again.verified and again.encoding_method == "OCMF"
    assert SignedMeterData.objects.filter(session=payment.session).count() == 1


def test_another_encoding_is_kept_unchecked_and_not_flagged(db):
    payment = finished_payment(energy("0.50", 21), kwh="11")
    signed = SignedData(
        encoding_method="EDL", public_key="AB", values=(SignedValue("End", "PD94bWw="),)
    )
    row = meter_data.record(payment.session, signed)
    assert row.verification == V.UNREADABLE and "EDL" in row.problem
    payment.session.refresh_from_db()
    assert not payment.session.attention and not row.downloadable
    assert "Signed meter data did not verify" in pdf_text(issue(payment))


def test_signed_data_that_breaks_the_store_does_not_stop_the_money(db, monkeypatch):
    payment = finished_payment(energy("0.50", 21), kwh="11")

    def broken(signed):
        raise RuntimeError("a bug in the meter data code")

    monkeypatch.setattr(meter_data, "check", broken)
    assert meter_data.record(payment.session, SignedData(encoding_method="OCMF")) is None
    assert not SignedMeterData.objects.exists()


def test_the_receipts_signed_link_offers_the_download_too(db, client):
    from checkout import lookup

    payment = finished_payment(energy("0.50", 21), kwh="11")
    receipts.receipt_issue(payment_id=payment.pk)
    payment.refresh_from_db()
    token = lookup.receipt_token(payment.receipt)
    url = reverse("checkout:document_meter", args=[token])
    assert client.get(url).status_code == 404  # no signed data yet
    sim, end = simulated(db)
    meter_data.record(payment.session, simulator.signed_meter_data(sim, end))
    page = client.get(reverse("checkout:document", args=[token])).content.decode()
    assert url in page
    answer = client.get(url)
    assert answer.status_code == 200 and answer.content.lstrip().startswith(b"<?xml")
    assert client.get(reverse("checkout:document_meter", args=[token + "x"])).status_code == 404
