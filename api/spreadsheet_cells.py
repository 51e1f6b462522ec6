"""Cells a spreadsheet would run as a formula, made inert (OWASP's advice on CSV injection): every export whose
cells people typed (an activity, a reason, a name) passes each cell through `inert`."""
from __future__ import annotations

import re

#: What Excel, LibreOffice and Google Sheets read as the start of a formula (a tab or carriage return too, as
#: some of them strip it before looking).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: A plain number is no formula: "-2.00" in a column of amounts stays a number a spreadsheet can add up.
_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def inert(cell: str) -> str:
    """The cell with a leading `'` when it would start a formula; any other cell unchanged."""
    if cell.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(cell):
        return "'" + cell
    return cell
