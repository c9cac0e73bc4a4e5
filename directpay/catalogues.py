"""The translation catalogues (locale/<lang>/LC_MESSAGES/{django,djangojs}.po), with Babel only.

Pure Python, so neither a fresh clone nor a server needs GNU gettext:

    python -m directpay.catalogues            compile the .po files to .mo (make messages; make run,
                                              make test and the Procfile's processes do it)
    python -m directpay.catalogues extract    refresh the .po files from the sources (make
                                              makemessages): new strings come in untranslated,
                                              gone ones leave, translations stay

The sources are the driver's side only (DRIVER_SOURCES); tests/test_languages.py extracts them
the same way and fails on any string that is missing, untranslated or fuzzy in a catalogue.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
LOCALE_DIR = ROOT / "locale"
# Every language but English (the source) has a catalogue; settings.LANGUAGES lists the same.
TRANSLATED = ("nl", "de", "fr")

# What a driver can read: pages, e-mails, scripts, and the Python that words answers, documents
# and failure reasons. Globs relative to the repository.
DRIVER_SOURCES = {
    "django": [
        "templates/*.html",
        "templates/checkout/*.html",
        "templates/emails/*.txt",
        "checkout/*.py",
        "checkout/templatetags/*.py",
        "directpay/csrf.py",
        "stations/csms/*.py",
        "stations/csms/ocpi/*.py",
    ],
    "djangojs": ["static/js/*.js"],
}

PYTHON_KEYWORDS = {
    "_": None,
    "gettext": None,
    "gettext_lazy": None,
    "gettext_noop": None,
    "N_": None,
    "ngettext": (1, 2),
    "ngettext_lazy": (1, 2),
    "pgettext": ((1, "c"), 2),
    "pgettext_lazy": ((1, "c"), 2),
    "npgettext": ((1, "c"), 2, 3),
    "npgettext_lazy": ((1, "c"), 2, 3),
}
JS_KEYWORDS = {"gettext": None, "_": None, "ngettext": (1, 2), "pgettext": ((1, "c"), 2)}


def _python_source(path: Path) -> bytes:
    if path.suffix in (".html", ".txt"):
        # Django's own template lexer turns {% translate %} / {% blocktranslate %} into gettext()
        # calls (what makemessages hands to xgettext); Babel's Python extractor reads those.
        from django.utils.translation.template import templatize

        return templatize(path.read_text(encoding="utf-8"), origin=str(path)).encode("utf-8")
    return path.read_bytes()


def source_files(domain: str, root: Path = ROOT) -> list[Path]:
    return sorted({p for pattern in DRIVER_SOURCES[domain] for p in root.glob(pattern)})


def extract_messages(domain: str, root: Path = ROOT) -> Catalog:
    """A template catalogue of every translatable string of the driver's sources in `domain`."""
    template = Catalog(domain=domain, fuzzy=False)
    for path in source_files(domain, root):
        if domain == "djangojs":
            method, keywords, data = "javascript", JS_KEYWORDS, path.read_bytes()
        else:
            method, keywords, data = "python", PYTHON_KEYWORDS, _python_source(path)
        where = str(path.relative_to(root))
        for lineno, message, comments, context in extract(
            method, io.BytesIO(data), keywords=keywords, comment_tags=("Translators:",)
        ):
            template.add(
                message, locations=[(where, lineno)], auto_comments=comments, context=context
            )
    return template


def _settings():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "directpay.settings")
    import django

    django.setup()


def update_all(root: Path = ROOT) -> list[Path]:
    """Merge the sources' strings into every language's .po files (no fuzzy guesses)."""
    _settings()
    written = []
    for domain in DRIVER_SOURCES:
        template = extract_messages(domain, root)
        for lang in TRANSLATED:
            po = root / "locale" / lang / "LC_MESSAGES" / f"{domain}.po"
            if po.exists():
                with po.open("rb") as f:
                    catalog = read_po(f, locale=lang, domain=domain)
            else:
                po.parent.mkdir(parents=True, exist_ok=True)
                catalog = Catalog(locale=lang, domain=domain, project="QR Direct Pay", fuzzy=False)
            catalog.update(template, no_fuzzy_matching=True, update_header_comment=False)
            out = io.BytesIO()
            write_po(
                out,
                catalog,
                width=100,
                ignore_obsolete=True,
                include_lineno=False,
                sort_output=True,
            )
            # Rewritten only when an entry changed, not for a new extraction date in the header.
            if not po.exists() or _entries(po.read_bytes()) != _entries(out.getvalue()):
                po.write_bytes(out.getvalue())
                written.append(po)
    return written


def _entries(po_bytes: bytes) -> list[bytes]:
    return [line for line in po_bytes.splitlines() if not line.startswith(b'"POT-Creation-Date')]


def compile_all(locale_dir: Path = LOCALE_DIR) -> list[Path]:
    """.po -> .mo where the .po is newer. Fuzzy entries are left out, as msgfmt does."""
    written = []
    for po in sorted(locale_dir.glob("*/LC_MESSAGES/*.po")):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as f:
            catalog = read_po(f, locale=po.parent.parent.name)
        # Written aside, then renamed: a process starting meanwhile reads the old or the new file.
        tmp = mo.with_suffix(f".mo.{os.getpid()}")
        with tmp.open("wb") as f:
            write_mo(f, catalog, use_fuzzy=False)
        os.replace(tmp, mo)
        written.append(mo)
    return written


if __name__ == "__main__":
    if sys.argv[1:] == ["extract"]:
        for path in update_all():
            print(f"updated {path.relative_to(ROOT)}", file=sys.stderr)
    for path in compile_all():
        print(f"compiled {path.relative_to(ROOT)}", file=sys.stderr)
