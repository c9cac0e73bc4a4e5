"""The OCPI specification's example messages, unmodified, kept in tests/data/ocpi-examples (see its README)."""

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent / "data/ocpi-examples/v2.2.1-d2/examples"


def examples() -> Path:
    return EXAMPLES
