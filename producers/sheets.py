"""Reading spreadsheets saved as CSV, the way organisations and programmes really send them.

Shared by the hours import and the areas import: the encoding (UTF-8 with or without a byte-order mark,
Windows-1252, UTF-16 "Unicode text"), the separator (comma, or tab or semicolon when a line has no comma),
blank rows, and a header row whose names are matched case-, space-, '_' and '-' insensitively, with aliases.
"""
from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass


class SheetError(ValueError):
    """The file as a whole cannot be read (encoding, no header, missing or doubled column, not CSV)."""


class RowProblem(ValueError):
    """One row cannot be used; `code` is the parser's machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Header:
    columns: dict[str, int]  # field name -> cell index
    width: int  # cells up to the last heading; a row with values beyond it is misaligned


@dataclass
class Sheet:
    encoding: str
    header: Header
    rows: Iterator[tuple[int, tuple[str, ...]]]  # (line as the spreadsheet shows it, cells), blank rows left out


def open_sheet(
    data: bytes | str,
    columns: Mapping[str, Sequence[str]],
    *,
    required: Sequence[str],
    expected: str,
    error: type[SheetError] = SheetError,
) -> Sheet:
    """Decode `data`, read its header row, and give its data rows lazily (a CSV error raises `error`)."""
    text, encoding = (data, "text") if isinstance(data, str) else decode_text(data, error)
    records = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), delimiter=_delimiter(text),
                         strict=False)
    rows = _non_blank(records, error)
    for line, cells in rows:
        return Sheet(encoding, read_header(cells, line, columns, required, expected, error), rows)
    raise error(f"the file is empty: expected a header row ({expected})")


def _non_blank(records: Iterator[list[str]], error: type[SheetError]) -> Iterator[tuple[int, tuple[str, ...]]]:
    line = 0
    try:
        for line, cells in enumerate(records, start=1):
            if any(cell.strip() for cell in cells):
                yield line, tuple(cells)
    except csv.Error as exc:
        raise error(f"line {line + 1}: not valid CSV ({exc})") from exc


def decode_text(data: bytes, error: type[SheetError] = SheetError) -> tuple[str, str]:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # Excel's "Unicode text"
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise error(f"the file starts with a UTF-16 byte-order mark but is not UTF-16: {exc}") from exc
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError as exc:
        raise error(f"the file is neither UTF-8 nor Windows-1252 text: {exc}") from exc


def _delimiter(text: str) -> str:
    """Comma, unless the first non-blank line has none but a tab or semicolon (UTF-16 and some exports)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    if "," not in first:
        for candidate in ("\t", ";"):
            if candidate in first:
                return candidate
    return ","


def normalise_heading(cell: str) -> str:
    return re.sub(r"[\s_-]+", " ", cell.replace("\ufeff", "").strip().lower()).rstrip(".").strip()


def read_header(
    cells: tuple[str, ...],
    line: int,
    columns: Mapping[str, Sequence[str]],
    required: Sequence[str],
    expected: str,
    error: type[SheetError] = SheetError,
) -> Header:
    names = [normalise_heading(cell) for cell in cells]
    found_columns: dict[str, int] = {}
    for field_name, aliases in columns.items():
        found = [index for index, name in enumerate(names) if name in aliases]
        if len(found) > 1:
            headings = " and ".join(repr(cells[index].strip()) for index in found)
            raise error(f"line {line}: columns {headings} both give the {field_name}; keep one")
        if found:
            found_columns[field_name] = found[0]
    missing = [name for name in required if name not in found_columns]
    if missing:
        shown = ", ".join(repr(cell.strip()) for cell in cells if cell.strip())
        raise error(f"line {line}: missing column(s) {', '.join(missing)} in the header row (found: {shown}); "
                    f"expected {expected}")
    width = max(index for index, cell in enumerate(cells) if cell.strip()) + 1
    return Header(found_columns, width)
