"""Excel workbooks (.xlsx) read as the rows of a CSV file, so that one parser reads both (producers.sheets).

The first worksheet is read, values only (formulas as last calculated by Excel); a date cell is written the UK
way (31/10/2026), a number without a needless ".0", an empty cell as nothing.
"""
from __future__ import annotations

import csv
import io
from datetime import date, datetime, time

#: A .xlsx file is a zip archive: its first bytes say so.
XLSX_SIGNATURE = b"PK\x03\x04"


def is_xlsx(data: bytes) -> bool:
    return data.startswith(XLSX_SIGNATURE)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%d/%m/%Y") if value.time() == time(0) else value.strftime("%d/%m/%Y %H:%M")
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y")
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def xlsx_as_csv(data: bytes) -> str:
    """The first worksheet's rows as CSV text. Raises ValueError for a file openpyxl cannot read."""
    from openpyxl import load_workbook  # only when a workbook comes: the CSV path needs none of it

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - a zip that is not a workbook, a damaged file: all one to the reader
        raise ValueError(f"the file looks like an Excel workbook but cannot be read ({type(exc).__name__})") from exc
    try:
        sheet = workbook.worksheets[0]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for row in sheet.iter_rows(values_only=True):
            writer.writerow([_cell(value) for value in row])
        return out.getvalue()
    finally:
        workbook.close()
