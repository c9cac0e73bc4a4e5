"""QR sticker sheets: print batches (who printed which sticker versions, with which key) and the PDF.

Reprinting an EVSE's sticker raises its sticker_version, which voids the QR on the old sticker
(qr.verify answers "voided"); each batch records the versions and the signing key's fingerprint so
staff can find chargers that still carry an old sticker. The PDF is drawn with reportlab: the QR as
vector rectangles from segno's module matrix (sharp at any printer resolution, no raster images),
one sheet per showPage(), EVSEs read in chunks so a 1,000-EVSE print stays small in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from django.db import transaction
from django.db.models import F, OuterRef, QuerySet, Subquery
from reportlab.lib.pagesizes import A4, A6
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen import canvas

from . import qr
from .models import Evse, PrintBatch, PrintedSticker

CHUNK = 200  # EVSEs read from the database at a time while drawing
LEADING = 1.15  # line height, as a multiple of the font size
BREAK_AFTER = "*-./"  # where an EVSE ID or a host name may break when it must


@dataclass(frozen=True)
class Layout:
    """Where stickers go on a page. Lengths in points, the label grid counted from the top left."""

    name: str
    page: tuple[float, float]  # width, height
    columns: int
    rows: int
    label: tuple[float, float]  # width, height
    origin: tuple[float, float]  # left and top margin to the first label
    pitch: tuple[float, float]  # from one label to the next, across and down (label + gap)
    padding: float  # kept clear inside a label: die-cut and printer tolerance
    arrangement: str  # "row": QR left, text right; "column": text above and below the QR
    type_scale: float  # font sizes relative to the 2x4 label

    @property
    def per_page(self) -> int:
        return self.columns * self.rows

    def pages(self, count: int) -> int:
        return -(-count // self.per_page)

    def box(self, slot: int) -> tuple[float, float, float, float]:
        """x, y (bottom left), width and height of the label in `slot` (0 = top left, row by row)."""
        row, column = divmod(slot, self.columns)
        x = self.origin[0] + column * self.pitch[0]
        y = self.page[1] - self.origin[1] - row * self.pitch[1] - self.label[1]
        return x, y, *self.label


# Label-sheet geometry as sold (Avery codes for reference; other brands sell the same grids).
LAYOUTS: dict[str, Layout] = {
    "a4-2x4": Layout(
        "A4 sheet, 8 labels 99.1 × 67.7 mm (2 × 4, as Avery L7165)",
        A4,
        2,
        4,
        (99.1 * mm, 67.7 * mm),
        (4.65 * mm, 13.1 * mm),
        (101.6 * mm, 67.7 * mm),
        4 * mm,
        "row",
        1.0,
    ),
    "a4-3x8": Layout(
        "A4 sheet, 24 labels 63.5 × 33.9 mm (3 × 8, as Avery L7159)",
        A4,
        3,
        8,
        (63.5 * mm, 33.9 * mm),
        (7.25 * mm, 12.9 * mm),
        (66.0 * mm, 33.9 * mm),
        1.5 * mm,
        "row",
        0.62,
    ),
    "single-a6": Layout(
        "One per page, A6 105 × 148 mm",
        A6,
        1,
        1,
        A6,
        (0, 0),
        A6,
        7 * mm,
        "column",
        1.45,
    ),
    "single-100x150": Layout(
        "One per page, 100 × 150 mm (4 × 6 in label printer)",
        (100 * mm, 150 * mm),
        1,
        1,
        (100 * mm, 150 * mm),
        (0, 0),
        (100 * mm, 150 * mm),
        6 * mm,
        "column",
        1.4,
    ),
}

# (Scan to pay, Check that this ID matches the charger): the ID check is the driver's defence
# against a fake sticker stuck on a different charger.
PHRASES = {
    "en": ("Scan to pay", "Check that this ID matches the charger"),
    "nl": ("Scan om te betalen", "Controleer of dit ID overeenkomt met de laadpaal"),
    "de": ("Zum Bezahlen scannen", "Prüfen Sie, ob diese ID mit der Ladesäule übereinstimmt"),
    "fr": ("Scannez pour payer", "Vérifiez que cet ID correspond à la borne"),
}
# Only the languages the driver's pages speak (settings.LANGUAGES): a sticker in a language the
# page after the scan cannot show would be a promise the page breaks. tests/test_stickers.py checks.
MAX_LANGUAGES = 3


class StaleBatch(Exception):
    """A batch whose stickers would no longer verify as printed (reprinted since, or new key)."""


def languages(operator) -> list[str]:
    """The operator's sticker languages we have phrases for, most used first (English if none)."""
    wanted = [code.strip().lower() for code in (operator.languages or "").split(",")]
    known = list(dict.fromkeys(code for code in wanted if code in PHRASES))
    return known[:MAX_LANGUAGES] or ["en"]


def short_url(evse: Evse) -> str:
    """The URL as a driver would type it: no https:// (browsers add it), the rest exactly."""
    url = qr.url_for(evse)
    return url.removeprefix("https://")


# --- Which sticker each EVSE carries -------------------------------------------------------------


def with_printed(queryset: QuerySet) -> QuerySet:
    """Annotate EVSEs with their latest printed sticker: printed_version, printed_key_id (or None)."""
    latest = PrintedSticker.objects.filter(evse=OuterRef("pk")).order_by("-pk")
    return queryset.annotate(
        printed_version=Subquery(latest.values("sticker_version")[:1]),
        printed_key_id=Subquery(latest.values("key_id")[:1]),
    )


def sticker_state(queryset: QuerySet, state: str) -> QuerySet:
    """EVSEs whose sticker is: "never" printed; "voided" (printed version older than the current);
    signed with an "old_key" (staff decide when to reprint those); or "current"."""
    queryset = with_printed(queryset)
    if state == "never":
        return queryset.filter(printed_version__isnull=True)
    if state == "voided":
        return queryset.filter(printed_version__lt=F("sticker_version"))
    if state == "old_key":
        return queryset.filter(printed_key_id__isnull=False).exclude(printed_key_id=qr.key_id())
    if state == "current":
        return queryset.filter(printed_version=F("sticker_version"), printed_key_id=qr.key_id())
    raise ValueError(f"unknown sticker state {state!r}")


def reprinted(evses: QuerySet) -> QuerySet:
    """Those of these EVSEs that have been printed before: printing them again voids their sticker."""
    return evses.filter(printed_stickers__isnull=False).distinct()


def print_batch_create(*, evses, layout: str, user) -> PrintBatch:
    """Record a print of these EVSEs' stickers. An EVSE printed before gets a new sticker version,
    which voids the QR on its old sticker; the row locks make two prints of one EVSE take turns."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}")
    ids = (
        list(evses.values_list("pk", flat=True))
        if isinstance(evses, QuerySet)
        else [e.pk for e in evses]
    )
    if not ids:
        raise ValueError("no EVSEs to print")
    with transaction.atomic():
        ids = list(
            Evse.objects.select_for_update()
            .filter(pk__in=ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        printed = (
            PrintedSticker.objects.filter(evse_id__in=ids)
            .values_list("evse_id", flat=True)
            .distinct()
        )
        Evse.objects.filter(pk__in=list(printed)).update(sticker_version=F("sticker_version") + 1)
        batch = PrintBatch.objects.create(created_by=user, layout=layout)
        key = qr.key_id()
        versions = Evse.objects.filter(pk__in=ids).values_list("pk", "sticker_version")
        PrintedSticker.objects.bulk_create(
            (
                PrintedSticker(batch=batch, evse_id=pk, sticker_version=version, key_id=key)
                for pk, version in versions
            ),
            batch_size=500,
        )
    return batch


# --- The PDF -------------------------------------------------------------------------------------


def batch_is_stale(batch: PrintBatch) -> bool:
    """Whether a later print or a new signing key voided any sticker of this batch."""
    return batch.stickers.exclude(
        sticker_version=F("evse__sticker_version"), key_id=qr.key_id()
    ).exists()


def render_pdf(batch: PrintBatch, out) -> int:
    """Write the batch's stickers as a PDF to the file-like `out`; return how many were drawn.

    Refuses (StaleBatch) a batch whose stickers would not verify any more, so an old batch is never
    printed by mistake: print the EVSEs again instead.
    """
    layout = LAYOUTS[batch.layout]
    pdf = canvas.Canvas(out, pagesize=layout.page, pageCompression=1)
    pdf.setTitle(f"QR stickers, print {batch.pk}")
    pdf.setCreator("QR Direct Pay")
    key = qr.key_id()
    stickers = (
        batch.stickers.select_related("evse__location__operator")
        .order_by("evse__location__name", "evse__evse_id")
        .iterator(chunk_size=CHUNK)
    )
    count = 0
    for sticker in stickers:
        evse = sticker.evse
        if (sticker.sticker_version, sticker.key_id) != (evse.sticker_version, key):
            raise StaleBatch(
                f"{evse.evse_id} has a newer sticker or the signing key changed since print {batch.pk}"
            )
        slot = count % layout.per_page
        if slot == 0 and count:
            pdf.showPage()
        draw_sticker(pdf, evse, layout, *layout.box(slot))
        count += 1
    if not count:
        raise ValueError(f"print {batch.pk} has no stickers")
    pdf.save()
    return count


def draw_qr(pdf: canvas.Canvas, code, x: float, y: float, side: float) -> None:
    """The QR code with its 4-module quiet zone in a square, as one filled vector path.

    Each row's dark runs become one rectangle in module units (the transform scales them), written
    as PDF operators directly: a few KB of page stream per code, and fast to produce.
    """
    matrix = code.matrix
    modules = len(matrix) + 8
    runs = []
    for r, row in enumerate(matrix):
        start = None
        for c, dark in enumerate([*row, 0]):
            if dark and start is None:
                start = c
            elif not dark and start is not None:
                runs.append(f"{start + 4} {r + 4} {c - start} 1 re")
                start = None
    pdf.saveState()
    pdf.setFillColorRGB(0, 0, 0)
    pdf.translate(x, y + side)
    pdf.scale(side / modules, -side / modules)  # module units, rows counting downwards
    pdf.addLiteral("\n".join(runs) + "\nf")
    pdf.restoreState()


@dataclass(frozen=True)
class _Text:
    text: str
    font: str
    size: float  # the largest size
    min_size: float
    prose: bool = False  # wrap at this size (up to max_lines) rather than shrink to one line first
    drop: int = 0  # 0: always shown; others are left out, highest first, when the label is full
    max_lines: int = 1
    url: bool = False  # may break after the host, never at a space
    foot: bool = False  # set at the bottom of the label
    gap: float = 0.0  # space above, in multiples of the size


def _texts(evse: Evse, scale: float) -> tuple[list[_Text], list[_Text]]:
    """What the sticker says: (above the QR or at the top, below the QR or under it)."""
    operator = evse.location.operator
    langs = languages(operator)
    s = scale
    head = [
        _Text(
            PHRASES[lang][0],
            "Helvetica-Bold" if i == 0 else "Helvetica",
            (13 if i == 0 else 10) * s,
            7,
            drop=i,
        )
        for i, lang in enumerate(langs)
    ]
    body = [_Text(evse.evse_id, "Helvetica-Bold", 20 * s, 8, max_lines=2, gap=0.25)]
    body += [
        _Text(
            PHRASES[lang][1],
            "Helvetica",
            7 * s,
            5,
            prose=True,
            drop=10 + i,
            max_lines=2,
            gap=0.1 if i else 0.2,
        )
        for i, lang in enumerate(langs)
    ]
    body.append(
        _Text(short_url(evse), "Courier-Bold", 9 * s, 6, max_lines=2, url=True, foot=True, gap=0.4)
    )
    body.append(_Text(operator.name, "Helvetica-Bold", 7 * s, 5, max_lines=2, foot=True, gap=0.3))
    if operator.support_contact:
        body.append(_Text(operator.support_contact, "Helvetica", 7 * s, 5, max_lines=2, foot=True))
    return head, body


def _wrap(item: _Text, size: float, width: float) -> list[str]:
    """Lines of `item` at `size`: broken at spaces (a URL after its host), words too long by character."""

    def fits(text):
        return stringWidth(text, item.font, size) <= width

    if fits(item.text):
        return [item.text]
    if item.url:
        host, slash, path = item.text.partition("/")
        parts, sep = [host, slash + path], ""
    else:
        parts, sep = item.text.split(" "), " "
    lines, current = [], ""
    for part in parts:
        if current and fits(current + sep + part):
            current += sep + part
            continue
        if current:
            lines.append(current)
        current = part
        while len(current) > 1 and not fits(current):
            cut = max((k for k in range(1, len(current)) if fits(current[:k])), default=1)
            soft = max(
                (k for k in range(max(1, cut // 2), cut + 1) if current[k - 1] in BREAK_AFTER),
                default=0,
            )
            cut = soft or cut  # after a separator when there is one not too far back
            lines.append(current[:cut])
            current = current[cut:]
    lines.append(current)
    return lines


@lru_cache(maxsize=512)  # an operator's phrases, name and contact repeat on every sticker
def _lay(item: _Text, width: float, shrink: float) -> tuple[_Text, float, tuple[str, ...]]:
    """The item's size and lines. An ID or a name shrinks to stay on one line (to 60 % at most),
    then wraps to max_lines; prose and the URL wrap first. Below min_size they wrap as they must."""
    largest, smallest = item.size * shrink, min(item.size, item.min_size) * shrink
    phases = [(item.max_lines, smallest)]
    if not (item.prose or item.url):
        phases.insert(0, (1, max(smallest, largest * 0.6)))
    for most, floor in phases:
        size = largest
        while True:
            lines = _wrap(item, size, width)
            if len(lines) <= most:
                return item, size, tuple(lines)
            if size <= floor:
                break
            size = max(floor, size - 0.5)
    return item, size, tuple(lines)


def _height(laid) -> float:
    return sum((item.gap + len(lines) * LEADING) * size for item, size, lines in laid)


def _fit(items: list[_Text], width: float, height: float) -> list:
    """Lay the items out in a box: leave out droppable ones, then shrink everything, until it fits."""
    for shrink in (1, 0.9, 0.8, 0.7, 0.6, 0.5):
        laid = [_lay(item, width, shrink) for item in items]
        while _height(laid) > height and any(item.drop for item, _, _ in laid):
            worst = max(range(len(laid)), key=lambda k: (laid[k][0].drop, k))
            del laid[worst]
        if _height(laid) <= height:
            return laid
    return laid


def _draw_lines(
    pdf: canvas.Canvas, laid, x: float, top: float, width: float, centred: bool
) -> None:
    y = top
    for item, size, lines in laid:
        y -= item.gap * size
        pdf.setFont(item.font, size)
        for line in lines:
            y -= size * LEADING
            baseline = y + size * 0.28  # room for descenders
            if centred:
                pdf.drawCentredString(x + width / 2, baseline, line)
            else:
                pdf.drawString(x, baseline, line)


def _draw_column(pdf, laid, x, bottom, top, width, centred):
    """Body lines from the top down, foot lines (URL, operator) set against the bottom."""
    body = [entry for entry in laid if not entry[0].foot]
    foot = [entry for entry in laid if entry[0].foot]
    _draw_lines(pdf, body, x, top, width, centred)
    _draw_lines(pdf, foot, x, bottom + _height(foot), width, centred)


def draw_sticker(
    pdf: canvas.Canvas, evse: Evse, layout: Layout, x: float, y: float, w: float, h: float
) -> None:
    """One sticker in the label box at x, y (bottom left), w × h."""
    pad = layout.padding
    x, y, w, h = x + pad, y + pad, w - 2 * pad, h - 2 * pad
    head, body = _texts(evse, layout.type_scale)
    code = qr.make(evse)
    if layout.arrangement == "row":
        side = min(h, w * 0.48)
        draw_qr(pdf, code, x, y + (h - side) / 2, side)
        text_x, text_w = x + side, w - side
        laid = _fit(head + body, text_w, h)
        _draw_column(pdf, laid, text_x, y, y + h, text_w, centred=False)
    else:
        above = _fit(head, w, h * 0.16)
        _draw_lines(pdf, above, x, y + h, w, centred=True)
        side = min(w, h * 0.52)
        qr_top = y + h - _height(above) - 1 * mm
        draw_qr(pdf, code, x + (w - side) / 2, qr_top - side, side)
        laid = _fit(body, w, qr_top - side - y)
        _draw_column(pdf, laid, x, y, qr_top - side, w, centred=True)
