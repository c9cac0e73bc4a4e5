"""The receipt and a credit note as a driver sees them, rendered for the README's gallery.

A session charged 6.66 EUR and captured (the `finished` fixture, tests/conftest.py), then refunded
1.00 EUR: the first page of each PDF is rendered with pypdfium2 into test-artifacts/gallery/
(`make gallery` copies it to docs/gallery/).
"""

import io

import pypdfium2
from pypdf import PdfReader

from checkout import credit_notes
from checkout.models import CreditNote
from tests.stack import ARTIFACTS
from tests.test_receipts import refund

GALLERY = ARTIFACTS / "gallery"


def save_first_page(pdf: bytes, name: str) -> None:
    document = pypdfium2.PdfDocument(pdf)
    try:
        image = document[0].render(scale=110 / 72).to_pil()
    finally:
        document.close()
    # A page with something on it: many pixels that are not paper.
    dark = sum(image.convert("L").point(lambda v: v < 128 and 255).histogram()[255:])
    assert dark > 2000, f"{name}: the page is nearly blank"
    GALLERY.mkdir(parents=True, exist_ok=True)
    image.save(GALLERY / name)


def first_page_text(pdf: bytes) -> str:
    return " ".join(PdfReader(io.BytesIO(pdf)).pages[0].extract_text().split())


def test_the_receipt_and_a_credit_note_for_the_gallery(
    finished,
    django_capture_on_commit_callbacks,
):
    receipt = finished.payment.receipt
    pdf = bytes(receipt.pdf)
    assert f"{receipt.number}" in first_page_text(pdf)
    save_first_page(pdf, "20-receipt.png")

    refund(finished.payment, 100, django_capture_on_commit_callbacks)
    note = CreditNote.objects.get(refund__payment=finished.payment)
    pdf = credit_notes.credit_note_pdf(note)
    assert f"Corrects receipt {receipt.number}" in first_page_text(pdf)
    save_first_page(pdf, "21-credit-note.png")
