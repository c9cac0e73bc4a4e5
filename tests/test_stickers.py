"""QR sticker sheets: the PDF is opened and every QR on it decoded, as a phone would scan it.

Pages are rendered with pypdfium2 and decoded with zxing-cpp; text is read with pypdf. One sheet is
also shown in Chromium and saved to test-artifacts/sticker-sheet.png for a person to look at.
"""

import base64
import io
import itertools
import os
import tempfile
import threading
import tracemalloc
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import PIL.Image
import pypdfium2
import pytest
import zxingcpp
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.db import connections
from django.urls import reverse
from pypdf import PdfReader

from stations import qr, stickers
from stations.models import Evse, PrintBatch, PrintedSticker
from tests.factories import EvseFactory, LocationFactory, OperatorFactory
from tests.stack import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

BASE = "https://pay.example.com"
DPI = 200  # the smallest stickers (3 x 8) have 0.7 mm modules: about 5.5 pixels each at this resolution


@pytest.fixture(autouse=True)
def qr_settings(settings):
    settings.PUBLIC_BASE_URL = BASE
    settings.QR_SIGNING_KEYS = ["sticker-key-one"]
    return settings


@pytest.fixture
def location(db):
    operator = OperatorFactory(
        name="Laadpunt Noord",
        languages="nl,en,de",
        support_contact="help@laadpunt.example · +31 20 123 4567",
    )
    return LocationFactory(operator=operator)


def make_evses(location, count):
    return [EvseFactory(location=location) for _ in range(count)]


def pdf_of(batch) -> bytes:
    out = io.BytesIO()
    stickers.render_pdf(batch, out)
    return out.getvalue()


def scanned(pdf: bytes) -> list[list[str]]:
    """The text of every QR code on every page, page by page."""
    document = pypdfium2.PdfDocument(pdf)
    try:
        pages = []
        for page in document:
            image = page.render(scale=DPI / 72, grayscale=True).to_pil()
            found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
            pages.append([barcode.text for barcode in found])
            page.close()
        return pages
    finally:
        document.close()


def code_of(url: str) -> str:
    assert url.startswith(f"{BASE}/q/"), url
    return url.removeprefix(f"{BASE}/q/")


@pytest.mark.parametrize(
    ("layout", "count"), [("a4-2x4", 10), ("a4-3x8", 26), ("single-a6", 3), ("single-100x150", 2)]
)
def test_every_sticker_scans_to_its_evse(location, layout, count):
    evses = make_evses(location, count)
    batch = stickers.print_batch_create(
        evses=Evse.objects.filter(location=location), layout=layout, user=None
    )
    pdf = pdf_of(batch)

    per_page = stickers.LAYOUTS[layout].per_page
    pages = scanned(pdf)
    full, rest = divmod(count, per_page)
    assert [len(codes) for codes in pages] == [per_page] * full + (
        [rest] if rest else []
    )  # every page, every code
    urls = [url for codes in pages for url in codes]
    assert Counter(urls) == Counter(
        qr.url_for(evse) for evse in evses
    )  # each EVSE once, and only these
    assert sorted(qr.verify(code_of(url)).pk for url in urls) == sorted(evse.pk for evse in evses)

    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    for evse in evses:
        assert evse.evse_id in text
        assert qr.url_for(evse).removeprefix("https://").split("/q/")[1] in text.replace("\n", "")
    assert (
        "Scan om te betalen" in text
        and "Laadpunt Noord" in text
        and "help@laadpunt.example" in text
    )


def test_the_admins_images_use_the_fixed_mask_and_scan(location):
    """Stickers and the admin's PNG/SVG are encoded with one fixed mask (no search) and still scan."""
    for evse in make_evses(location, 40):
        assert qr.make(evse).mask == qr.MASK
        png = qr.render(evse, "png", scale=4)
        found = zxingcpp.read_barcodes(
            PIL.Image.open(io.BytesIO(png)), formats=zxingcpp.BarcodeFormat.QRCode
        )
        assert [code.text for code in found] == [qr.url_for(evse)]


@pytest.mark.parametrize("layout", stickers.LAYOUTS.values(), ids=list(stickers.LAYOUTS))
def test_labels_lie_on_the_page_without_overlapping(layout):
    boxes = [layout.box(slot) for slot in range(layout.per_page)]
    width, height = layout.page
    for x, y, w, h in boxes:
        assert 0 <= x and x + w <= width + 0.01 and 0 <= y and y + h <= height + 0.01
    for (x1, y1, w1, h1), (x2, y2, w2, h2) in itertools.pairwise(boxes):
        assert x2 >= x1 + w1 - 0.01 or y2 + h2 <= y1 + 0.01  # the next one is to the right or below


def test_languages_are_the_operators_first_known_ones():
    operator = OperatorFactory.build(languages=" FR, xx ,it,nl,de")
    assert stickers.languages(operator) == ["fr", "nl", "de"]
    assert stickers.languages(OperatorFactory.build(languages="")) == ["en"]


def test_stickers_speak_the_languages_of_the_pages():
    """A sticker promises the page after the scan in its languages: the same set as LANGUAGES."""
    assert set(stickers.PHRASES) == {code for code, _name in settings.LANGUAGES}


def test_a_reprint_voids_the_old_sticker(location, django_user_model):
    evse, other = make_evses(location, 2)
    staff = django_user_model.objects.create_user("printer", is_staff=True)

    first = stickers.print_batch_create(evses=[evse], layout="single-a6", user=staff)
    evse.refresh_from_db()
    assert evse.sticker_version == 1  # the first print keeps the version the EVSE was created with
    old_code = code_of(scanned(pdf_of(first))[0][0])
    assert qr.verify(old_code).pk == evse.pk

    second = stickers.print_batch_create(
        evses=Evse.objects.filter(pk__in=[evse.pk, other.pk]), layout="a4-2x4", user=staff
    )
    evse.refresh_from_db()
    other.refresh_from_db()
    assert (evse.sticker_version, other.sticker_version) == (
        2,
        1,
    )  # only the one printed before moves on
    with pytest.raises(qr.InvalidCode) as voided:
        qr.verify(old_code)
    assert voided.value.reason == "voided"
    new_codes = [code_of(url) for url in scanned(pdf_of(second))[0]]
    assert sorted(qr.verify(code).pk for code in new_codes) == sorted([evse.pk, other.pk])

    rows = {(s.evse_id, s.sticker_version, s.key_id) for s in second.stickers.all()}
    assert rows == {(evse.pk, 2, qr.key_id()), (other.pk, 1, qr.key_id())}
    assert (
        second.created_by == staff
        and second.layout == "a4-2x4"
        and second.created_at >= first.created_at
    )
    assert PrintedSticker.objects.filter(batch=first).get().sticker_version == 1
    with pytest.raises(stickers.StaleBatch):
        pdf_of(first)  # an old batch is never printed again by mistake


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("requires_postgres")
def test_two_prints_at_once_take_turns(location):
    evse = make_evses(location, 1)[
        0
    ]  # never printed: the second print must see the first and void it
    barrier = threading.Barrier(2)

    def reprint():
        try:
            barrier.wait()
            return stickers.print_batch_create(
                evses=Evse.objects.filter(pk=evse.pk), layout="a4-3x8", user=None
            )
        finally:
            connections.close_all()

    with ThreadPoolExecutor(2) as pool:
        batches = [f.result(timeout=60) for f in [pool.submit(reprint), pool.submit(reprint)]]
    evse.refresh_from_db()
    assert evse.sticker_version == 2  # no two batches hold the same valid sticker
    assert sorted(b.stickers.get().sticker_version for b in batches) == [1, 2]


def test_key_ids_are_short_fingerprints_not_keys(settings):
    assert len(qr.key_id()) == 12 and "sticker-key-one" not in qr.key_id()
    assert qr.key_id() == qr.key_id("sticker-key-one") != qr.key_id("another")


def test_rotating_the_key_keeps_printed_stickers_until_staff_reprint(
    location, settings, admin_client
):
    evse, fresh = make_evses(location, 2)
    old_batch = stickers.print_batch_create(evses=[evse], layout="single-a6", user=None)
    old_code = code_of(scanned(pdf_of(old_batch))[0][0])
    stickers.print_batch_create(evses=[fresh], layout="single-a6", user=None)

    settings.QR_SIGNING_KEYS = ["sticker-key-two", "sticker-key-one"]
    assert qr.verify(old_code).pk == evse.pk
    changelist = reverse("admin:stations_evse_changelist")
    listed = admin_client.get(changelist, {"sticker": "old_key"}).context["cl"].result_list
    assert {e.pk for e in listed} == {evse.pk, fresh.pk}

    stickers.print_batch_create(evses=[evse], layout="single-a6", user=None)
    listed = admin_client.get(changelist, {"sticker": "old_key"}).context["cl"].result_list
    assert {e.pk for e in listed} == {fresh.pk}
    assert PrintedSticker.objects.filter(evse=evse).latest("pk").key_id == qr.key_id(
        "sticker-key-two"
    )
    with pytest.raises(qr.InvalidCode) as voided:
        qr.verify(old_code)
    assert voided.value.reason == "voided"


def test_sticker_filter_and_printed_column(location, admin_client):
    never, printed, outdated = make_evses(location, 3)
    stickers.print_batch_create(evses=[printed, outdated], layout="a4-3x8", user=None)
    Evse.objects.filter(pk=outdated.pk).update(sticker_version=5)  # e.g. bumped without printing
    changelist = reverse("admin:stations_evse_changelist")

    def listed(state):
        return {
            e.pk for e in admin_client.get(changelist, {"sticker": state}).context["cl"].result_list
        }

    assert listed("never") == {never.pk}
    assert listed("voided") == {outdated.pk}
    assert listed("current") == {printed.pk}
    assert listed("old_key") == set()
    page = admin_client.get(changelist).content.decode()
    assert "v1 (voided)" in page and "Printed sticker voided / outdated" in page


def post_action(client, url, action, pks, **extra):
    return client.post(
        url, {"action": action, "_selected_action": [str(pk) for pk in pks], **extra}
    )


def test_printing_needs_the_permission(location, client):
    evse = make_evses(location, 1)[0]
    user = User.objects.create_user("ops", password="x", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_evse", "change_evse", "view_location"])
    )
    client.force_login(user)
    evses_url, locations_url = (
        reverse("admin:stations_evse_changelist"),
        reverse("admin:stations_location_changelist"),
    )

    def actions(url):
        form = client.get(url).context["action_form"]  # None: no action at all is offered
        return dict(form.fields["action"].choices) if form else {}

    assert "print_stickers" not in actions(evses_url)
    assert "print_stickers" not in actions(locations_url)
    refused = post_action(
        client, evses_url, "print_stickers", [evse.pk], post="yes", layout="a4-3x8"
    )
    assert refused["Content-Type"] != "application/pdf" and not PrintBatch.objects.exists()

    user.user_permissions.add(Permission.objects.get(codename="print_sticker"))
    user = User.objects.get(pk=user.pk)  # drop the permission cache
    client.force_login(user)
    assert (
        actions(evses_url)["print_stickers"]
        == actions(locations_url)["print_stickers"]
        == "Print QR stickers…"
    )
    confirm = post_action(client, evses_url, "print_stickers", [evse.pk])
    assert confirm.status_code == 200 and b"None of them has been printed before" in confirm.content
    response = post_action(
        client, evses_url, "print_stickers", [evse.pk], post="yes", layout="a4-3x8"
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"].startswith("attachment;")
    pdf = b"".join(response.streaming_content)
    assert scanned(pdf) == [[qr.url_for(evse)]]
    assert PrintBatch.objects.get().created_by == user


def test_a_current_batch_can_be_downloaded_again_without_voiding(location, admin_client, client):
    evses = make_evses(location, 3)
    batch = stickers.print_batch_create(
        evses=Evse.objects.filter(pk__in=[e.pk for e in evses]), layout="a4-2x4", user=None
    )
    url = reverse("admin:stations_printbatch_pdf", args=[batch.pk])
    again = admin_client.get(url)
    assert again["Content-Type"] == "application/pdf"
    codes = sorted(
        code_of(url) for page in scanned(b"".join(again.streaming_content)) for url in page
    )
    assert codes == sorted(
        qr.code_for(e) for e in Evse.objects.filter(pk__in=[e.pk for e in evses])
    )
    assert (
        list(
            Evse.objects.filter(pk__in=[e.pk for e in evses]).values_list(
                "sticker_version", flat=True
            )
        )
        == [1] * 3
    )
    client.force_login(User.objects.create_user("viewer", is_staff=True))
    assert client.get(url).status_code == 403
    # A later print voids it: no more downloads of stickers that would not scan.
    stickers.print_batch_create(
        evses=Evse.objects.filter(pk=evses[0].pk), layout="a4-2x4", user=None
    )
    refused = admin_client.get(url, follow=True)
    assert "out of date" in refused.content.decode() and refused.redirect_chain
    page = admin_client.get(
        reverse("admin:stations_printbatch_change", args=[batch.pk])
    ).content.decode()
    assert "Voided by a later print" in page


def test_location_action_prints_all_its_evses_and_warns_of_reprints(location, admin_client):
    evses = make_evses(location, 3)
    make_evses(LocationFactory(operator=location.operator), 2)  # another location's: not printed
    stickers.print_batch_create(evses=evses[:1], layout="a4-3x8", user=None)
    url = reverse("admin:stations_location_changelist")

    confirm = post_action(admin_client, url, "print_stickers", [location.pk])
    assert confirm.status_code == 200
    assert confirm.context["count"] == 3 and confirm.context["reprint_count"] == 1
    assert evses[0].evse_id in confirm.content.decode()
    response = post_action(
        admin_client, url, "print_stickers", [location.pk], post="yes", layout="single-100x150"
    )
    assert response["Content-Type"] == "application/pdf"
    batch = PrintBatch.objects.filter(layout="single-100x150").get()
    assert {s.evse_id for s in batch.stickers.all()} == {e.pk for e in evses}
    assert len(scanned(b"".join(response.streaming_content))) == 3

    page = admin_client.get(
        reverse("admin:stations_printbatch_change", args=[batch.pk])
    ).content.decode()
    assert all(e.evse_id in page for e in evses) and qr.key_id() in page
    listing = admin_client.get(reverse("admin:stations_printbatch_changelist")).content.decode()
    assert "single-100x150" in listing


def test_a_thousand_stickers_render_in_little_memory(location, monkeypatch):
    Evse.objects.bulk_create(
        Evse(location=location, uid=f"mem-{n}", evse_id=f"NL*MEM*E{n:04d}*1") for n in range(1000)
    )
    batch = stickers.print_batch_create(
        evses=Evse.objects.filter(location=location), layout="a4-3x8", user=None
    )
    # segno's mask search is most of the time (5x more under tracemalloc) and its memory is freed
    # after each code; what could pile up over 1,000 stickers is the PDF. So every sticker gets the
    # same real-sized code here; bench/stickers.py measures the whole thing.
    sample = qr.make(Evse.objects.filter(location=location).last())
    monkeypatch.setattr(qr, "make", lambda evse: sample)
    with tempfile.TemporaryFile() as out:
        tracemalloc.start()
        try:
            count = stickers.render_pdf(batch, out)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        size = out.tell()
        out.seek(0)
        assert len(PdfReader(out).pages) == 42  # 1,000 / 24 per sheet
    assert (
        count == 1000
    )  # reportlab keeps each page's drawing operators until save(): a few KB a sticker.
    assert peak < 32 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.1f} MiB PDF"


@pytest.mark.browser
def test_a_sheet_as_a_person_sees_it(location):
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(
                f"Chromium at {CHROMIUM} is needed (CI must run this test, not skip it)",
                pytrace=False,
            )
        pytest.skip(f"needs Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    make_evses(location, 10)
    batch = stickers.print_batch_create(
        evses=Evse.objects.filter(location=location), layout="a4-2x4", user=None
    )
    document = pypdfium2.PdfDocument(pdf_of(batch))
    png = io.BytesIO()
    document[0].render(scale=150 / 72).to_pil().save(png, format="PNG")
    document.close()
    ARTIFACTS.mkdir(exist_ok=True)
    # The page itself for the README's gallery (`make gallery` copies it to docs/gallery/).
    (ARTIFACTS / "gallery").mkdir(exist_ok=True)
    (ARTIFACTS / "gallery" / "22-sticker-sheet.png").write_bytes(png.getvalue())

    html = (
        f'<body style="margin:0;padding:24px;background:#777"><img alt="sticker sheet" style="display:block;'
        f'width:100%;background:#fff" src="data:image/png;base64,{base64.b64encode(png.getvalue()).decode()}">'
    )
    with (
        sync_playwright() as playwright
    ):  # after the database work: Django refuses it inside an event loop
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 900, "height": 1200})
            page.set_content(html)
            page.screenshot(path=str(ARTIFACTS / "sticker-sheet.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "sticker-sheet.png").stat().st_size > 10_000
