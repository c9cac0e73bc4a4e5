"""Stations kept in sync with a CPO: Locations and Tariffs pulled (paginated) and pushed (PUT/PATCH).

Pushes go through our receivers with the token we issued; pulls go to tests/ocpi_peer.py over
HTTP, which paginates as the specification's transport chapter says.
"""

from __future__ import annotations

import base64
import copy
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from stations import qr
from stations.csms.ocpi import locations
from stations.models import Connector, Evse, Location, OcpiConnection, Tariff
from tests.factories import OperatorFactory
from tests.ocpi_examples import examples

TOKEN = "token-the-cpo-calls-us-with"
AUTH = {"HTTP_AUTHORIZATION": "Token " + base64.b64encode(TOKEN.encode()).decode()}


def example(name: str) -> dict:
    return json.loads((examples() / name).read_text())


def tariff(
    tariff_id: str, *, kind: str | None = "AD_HOC_PAYMENT", name="tariff_1_simple_2hour.json"
) -> dict:
    """A specification example tariff under another id (the file itself stays as it is)."""
    data = {**example(name), "id": tariff_id, "country_code": "BE", "party_id": "BEC"}
    return {**data, "type": kind} if kind else data


@pytest.fixture
def cpo(db, peer):
    return OcpiConnection.objects.create(
        name="BeCharged",
        state=OcpiConnection.State.CONNECTED,
        token_ours=TOKEN,
        token_theirs=peer.token_a,
        country_code="BE",
        party_id="BEC",
        operator=OperatorFactory(),
        version="2.2.1",
        endpoints=[
            {"identifier": "locations", "role": "SENDER", "url": f"{peer.base}/2.2.1/locations"},
            {"identifier": "tariffs", "role": "SENDER", "url": f"{peer.base}/2.2.1/tariffs"},
        ],
    )


def send(client, method: str, path: str, body) -> dict:
    answer = getattr(client, method)(
        f"/ocpi/emsp/2.2.1/{path}", data=json.dumps(body), content_type="application/json", **AUTH
    )
    return {"http": answer.status_code, **answer.json()}


@pytest.fixture
def pushed(cpo, client):
    """The specification's location_example.json pushed, after its three tariffs."""
    for tariff_id in ("11", "12", "13"):
        assert (
            send(client, "put", f"tariffs/BE/BEC/{tariff_id}", tariff(tariff_id))["status_code"]
            == 1000
        )
    assert (
        send(client, "put", "locations/BE/BEC/LOC1", example("location_example.json"))[
            "status_code"
        ]
        == 1000
    )
    return Location.objects.get(ocpi_connection=cpo, ocpi_id="LOC1")


def test_a_pushed_location_becomes_payable_stations(pushed, cpo):
    assert (pushed.country, pushed.time_zone, pushed.city, pushed.operator) == (
        "BE",
        "Europe/Brussels",
        "Gent",
        cpo.operator,
    )
    evses = {e.uid: e for e in pushed.evses.all()}
    assert (
        evses["3256"].evse_id == "BE*BEC*E041503001"
        and evses["3256"].status == Evse.Status.AVAILABLE
    )
    assert evses["3257"].status == Evse.Status.CHARGING  # RESERVED: someone else's, not payable now
    first = Connector.objects.get(evse=evses["3256"], connector_id="1")
    # AC three-phase: 3 x 220 V x 16 A.
    assert (first.max_power_kw, first.tariff.ocpi_id, first.power_type) == (
        Decimal("10.56"),
        "11",
        "AC_3_PHASE",
    )


def test_patches_of_the_specification_examples(pushed, client):
    evse = Evse.objects.get(uid="3256")
    code = qr.code_for(evse)
    assert (
        send(
            client,
            "patch",
            "locations/BE/BEC/LOC1/3256",
            example("location_patch_example_status.json"),
        )["status_code"]
        == 1000
    )
    evse.refresh_from_db()
    assert evse.status == Evse.Status.CHARGING
    assert (
        send(
            client,
            "patch",
            "locations/BE/BEC/LOC1",
            example("location_patch_example_location.json"),
        )["status_code"]
        == 1000
    )
    pushed.refresh_from_db()
    assert pushed.name == "Interparking Gent Zuid" and pushed.evses.count() == 2
    # Connector 1 is told to use tariff 15, which we do not have: it keeps the price it had.
    assert (
        send(
            client,
            "patch",
            "locations/BE/BEC/LOC1/3256/1",
            example("location_patch_example_tariff.json"),
        )["status_code"]
        == 1000
    )
    assert Connector.objects.get(evse=evse, connector_id="1").tariff.ocpi_id == "11"
    assert send(client, "put", "tariffs/BE/BEC/15", tariff("15"))["status_code"] == 1000
    assert Connector.objects.get(evse=evse, connector_id="1").tariff.ocpi_id == "15"
    assert (
        send(
            client,
            "patch",
            "locations/BE/BEC/LOC1/3256",
            example("location_patch_example_remove_evse.json"),
        )["status_code"]
        == 1000
    )
    evse.refresh_from_db()
    assert evse.status == Evse.Status.OUT_OF_ORDER
    # Through all of it the EVSE kept its row, so the printed sticker still opens it.
    assert qr.verify(code) == evse


def test_an_evse_put_example_replaces_the_evse(pushed, client):
    # The specification's EVSE PUT leaves out the connector's power: the connector keeps what it had.
    answer = send(
        client, "put", "locations/BE/BEC/LOC1/3256", example("location_put_example_add_evse.json")
    )
    assert answer["status_code"] == 1000
    evse = Evse.objects.get(uid="3256")
    connector = Connector.objects.get(evse=evse, connector_id="1")
    assert evse.evse_id == "BE*BEC*E041503003"
    assert (connector.max_power_kw, connector.tariff.ocpi_id) == (Decimal("10.56"), "11")
    got = json.loads(client.get("/ocpi/emsp/2.2.1/locations/BE/BEC/LOC1/3256", **AUTH).content)
    assert got["data"]["evse_id"] == "BE*BEC*E041503003" and len(got["data"]["connectors"]) == 1


def test_the_ad_hoc_tariff_is_preferred(cpo, client):
    send(client, "put", "tariffs/BE/BEC/REG", tariff("REG", kind="REGULAR"))
    send(client, "put", "tariffs/BE/BEC/ADHOC", tariff("ADHOC", name="tariff_8_simple_025kwh.json"))
    location = example("location_example.json")
    location["evses"] = location["evses"][:1]
    location["evses"][0]["connectors"][0]["tariff_ids"] = ["REG", "ADHOC"]
    send(client, "put", "locations/BE/BEC/LOC1", location)
    assert Connector.objects.get(evse__uid="3256", connector_id="1").tariff.ocpi_id == "ADHOC"
    # The connector with only tariff 13, which we do not have, is left out: it cannot be paid for.
    assert not Connector.objects.filter(evse__uid="3256", connector_id="2").exists()


def test_bad_pushes_get_ocpi_codes_and_change_nothing(pushed, client, cpo):
    before = json.dumps(Location.objects.get(pk=pushed.pk).ocpi, sort_keys=True)
    broken = copy.deepcopy(example("location_example.json"))
    broken["evses"][0]["status"] = "ON_FIRE"
    assert send(client, "put", "locations/BE/BEC/LOC1", broken)["status_code"] == 2001
    assert send(client, "patch", "locations/BE/BEC/NOWHERE", {"name": "x"})["status_code"] == 2003
    assert (
        send(client, "patch", "locations/BE/BEC/LOC1/9999", {"status": "AVAILABLE"})["status_code"]
        == 2003
    )
    assert (
        send(client, "put", "locations/BE/BEC/OTHER", example("location_example.json"))[
            "status_code"
        ]
        == 2001
    )
    assert (
        send(client, "put", "tariffs/BE/BEC/11", {"id": "11", "currency": "EUR", "elements": []})[
            "status_code"
        ]
        == 2001
    )
    bad_country = {**example("location_example.json"), "country": "XXX"}
    assert "country" in send(client, "put", "locations/BE/BEC/LOC1", bad_country)["status_message"]
    assert json.dumps(Location.objects.get(pk=pushed.pk).ocpi, sort_keys=True) == before
    assert Evse.objects.get(uid="3256").status == Evse.Status.AVAILABLE
    wrong = client.put(
        "/ocpi/emsp/2.2.1/locations/BE/BEC/LOC1",
        data="{}",
        content_type="application/json",
        HTTP_AUTHORIZATION="Token nope",
    )
    assert wrong.status_code == 401


def test_a_connection_without_an_operator_is_refused_clearly(cpo, client):
    OcpiConnection.objects.filter(pk=cpo.pk).update(operator=None)
    answer = send(client, "put", "locations/BE/BEC/LOC1", example("location_example.json"))
    assert answer["status_code"] == 2001 and "operator" in answer["status_message"]
    assert not Location.objects.exists()


def _location(location_id: str, uid: str, updated) -> dict:
    data = copy.deepcopy(example("location_example.json"))
    data["id"], data["last_updated"] = location_id, updated
    data["evses"] = [{**data["evses"][0], "uid": uid, "evse_id": f"BE*BEC*E{uid}"}]
    return data


def test_the_scheduled_pull_follows_pages_and_date_from(cpo, peer):
    old, new = (
        "2026-01-01T00:00:00Z",
        (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    peer.lists["tariffs"] = [{**tariff(t), "last_updated": old} for t in ("11", "12", "13")]
    peer.lists["locations"] = [_location(f"L{i}", f"U{i}", old) for i in range(5)]
    report = locations.sync_pull(connection_id=cpo.pk)
    assert (report.tariffs, report.locations, report.evses) == (3, 5, 5)
    gets = [path for method, path, _ in peer.requests if method == "GET" and "/locations" in path]
    assert len(gets) == 3 and "offset=4" in gets[-1]  # five locations, two per page
    cpo.refresh_from_db()
    assert cpo.synced_at and not cpo.last_error
    sticker = qr.code_for(Evse.objects.get(uid="U3"))
    # The next pull asks only for what changed since, and applies it.
    changed = _location("L3", "U3", new)
    changed["evses"][0]["status"] = "OUTOFORDER"
    peer.lists["locations"][3] = changed
    report = locations.sync_pull(connection_id=cpo.pk)
    assert report.locations == 1 and "date_from=" in peer.requests[-1][1]
    evse = Evse.objects.get(uid="U3")
    assert evse.status == Evse.Status.OUT_OF_ORDER and qr.verify(sticker) == evse
    assert Tariff.objects.filter(ocpi_connection=cpo).count() == 3


def test_a_pull_keeps_going_past_a_bad_object(cpo, peer):
    peer.lists["tariffs"] = [tariff("11")]
    bad = _location("BAD", "UB", "2026-01-01T00:00:00Z")
    bad["country"] = 42
    peer.lists["locations"] = [bad, _location("GOOD", "UG", "2026-01-01T00:00:00Z")]
    report = locations.sync_pull(connection_id=cpo.pk)
    assert report.locations == 1 and "BAD" in str(report)
    cpo.refresh_from_db()
    assert "BAD" in cpo.last_error


def test_staff_pull_from_the_admin_and_see_what_matched_nothing(cpo, peer, admin_client, client):
    peer.lists["tariffs"] = [tariff("11")]
    peer.lists["locations"] = [_location("L1", "U1", "2026-01-01T00:00:00Z")]
    answer = admin_client.post(
        "/admin/stations/ocpiconnection/",
        {"action": "sync_now", "_selected_action": [cpo.pk]},
        follow=True,
    )
    assert "pull queued" in answer.content.decode()
    assert Evse.objects.filter(uid="U1").exists()  # tasks run at once in these tests
    cpo.refresh_from_db()
    assert cpo.synced_at is not None
    stranger = example("session_example_1_simple_start.json")
    send(client, "put", f"sessions/BE/BEC/{stranger['id']}", stranger)
    unmatched = admin_client.get("/admin/stations/ocpisession/?matched=no").content.decode()
    assert "unmatched BE*BEC 101" in unmatched
    assert admin_client.get("/admin/stations/ocpicdr/?matched=no").status_code == 200
