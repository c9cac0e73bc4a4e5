"""CSV for staff to open in a spreadsheet: cells that a spreadsheet would run as a formula are escaped.

Text from outside (an OCPI `evse_id`, a location name, an operator's name) can start with `=`, `+`,
`-`, `@`, a tab or a carriage return; Excel and LibreOffice then evaluate it (`=HYPERLINK(...)`
sends data away when clicked). As OWASP recommends, such a cell gets a leading `'`, which shows the
text as it is. Plain numbers (`-1.50`) are left alone: they are not formulas, and bookkeeping needs them.
"""

from __future__ import annotations

import csv
import re

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^[+-]?[0-9]+(\.[0-9]+)?$")


def escape(value):
    """The cell as written: strings that would start a formula get a leading apostrophe."""
    if (
        isinstance(value, str)
        and value.startswith(FORMULA_START)
        and not _PLAIN_NUMBER.match(value)
    ):
        return "'" + value
    return value


def writer(out, **kwargs) -> SafeWriter:
    """A drop-in for csv.writer whose rows are escaped; use it for every CSV we write for staff."""
    return SafeWriter(out, **kwargs)


class SafeWriter:
    def __init__(self, out, **kwargs):
        self._writer = csv.writer(out, **kwargs)

    def writerow(self, row):
        # escape() only for text that starts like a formula: the rest needs no call (big exports).
        return self._writer.writerow(
            [
                escape(cell) if isinstance(cell, str) and cell.startswith(FORMULA_START) else cell
                for cell in row
            ]
        )

    def writerows(self, rows):
        for row in rows:
            self.writerow(row)
