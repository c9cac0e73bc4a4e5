"""The OCPI specification's example messages, unmodified, from the team's shared/ folder."""

import os
from pathlib import Path

import pytest

# The team's shared/ folder lies beside the checkout (in CI too); OCPI_EXAMPLES_DIR overrides it.
EXAMPLES = Path(
    os.environ.get(
        "OCPI_EXAMPLES_DIR",
        Path(__file__).resolve().parents[2] / "shared/ocpi-examples/v2.2.1-d2/examples",
    )
)


def examples() -> Path:
    """The upstream examples; a clone without shared/ beside it skips them, CI never does."""
    if not EXAMPLES.is_dir():
        message = f"OCPI examples not found at {EXAMPLES} (set OCPI_EXAMPLES_DIR)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return EXAMPLES
