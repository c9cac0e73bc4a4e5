"""Copy the gallery the tests saved (test-artifacts/gallery/) into docs/gallery/ for the README.

Each picture is made small enough to commit: at most 780 px wide, reduced to a palette, and
shrunk further until it is under 120 KB. Run by `make gallery` after the tests that take them.
"""

import io
import sys
from pathlib import Path

from PIL import Image

BASE_DIR = Path(__file__).resolve().parent.parent
SOURCE = BASE_DIR / "test-artifacts" / "gallery"
TARGET = BASE_DIR / "docs" / "gallery"
LIMIT = 120 * 1024
WIDTH = 780


def small_png(path: Path) -> bytes:
    image = Image.open(path).convert("RGB")
    width = min(WIDTH, image.width)
    for colours in (128, 64, 32, 16):
        for scale in (1.0, 0.8, 0.65, 0.5):
            w = max(1, round(width * scale))
            resized = image.resize((w, round(image.height * w / image.width)), Image.LANCZOS)
            out = io.BytesIO()
            resized.quantize(colours, method=Image.Quantize.MEDIANCUT).save(
                out, format="PNG", optimize=True
            )
            if out.tell() < LIMIT:
                return out.getvalue()
    raise SystemExit(f"{path.name}: cannot be made smaller than {LIMIT // 1024} KB")


def main() -> int:
    pictures = sorted(SOURCE.glob("*.png"))
    if not pictures:
        print(f"no pictures in {SOURCE.relative_to(BASE_DIR)}: run the gallery tests first")
        return 1
    TARGET.mkdir(parents=True, exist_ok=True)
    for old in TARGET.glob("*.png"):
        old.unlink()
    for path in pictures:
        data = small_png(path)
        (TARGET / path.name).write_bytes(data)
        print(f"{path.name}: {len(data) // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
