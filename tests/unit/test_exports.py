"""The export files (docs/design.md §5.12): formulas inert in CSV and in Excel, numbers kept as numbers, and
pseudonyms stable within one export and different in the next."""
from __future__ import annotations

import csv
import io

from openpyxl import load_workbook

from api.services.exports import Table, csv_bytes, pseudonymiser, xlsx_bytes

TABLE = Table("hours-club", ["activity", "minutes", "credits"], [
    ['=HYPERLINK("http://example.com","click")', 60, "1.00"],
    ["+44 7700 900123", 30, "-0.50"],
    ["Sorting tins", 15, "0.25"],
])


def test_a_csv_cell_a_spreadsheet_would_run_starts_with_a_quote() -> None:
    rows = list(csv.reader(io.StringIO(csv_bytes(TABLE).decode())))
    assert rows == [["activity", "minutes", "credits"],
                    ['\'=HYPERLINK("http://example.com","click")', "60", "1.00"],
                    ["'+44 7700 900123", "30", "-0.50"],
                    ["Sorting tins", "15", "0.25"]]


def test_a_workbook_holds_text_cells_never_formulas_and_numbers_as_numbers() -> None:
    sheet = load_workbook(io.BytesIO(xlsx_bytes(TABLE))).active
    assert sheet.title == "hours-club"
    cells = list(sheet.iter_rows(min_row=2))
    assert [(c[0].value, c[0].data_type) for c in cells] == [
        ('\'=HYPERLINK("http://example.com","click")', "s"), ("'+44 7700 900123", "s"), ("Sorting tins", "s")]
    assert [(c[1].value, c[1].data_type) for c in cells] == [(60, "n"), (30, "n"), (15, "n")]
    assert [(c[2].value, c[2].data_type) for c in cells] == [("1.00", "s"), ("-0.50", "s"), ("0.25", "s")]


def test_a_pseudonym_is_stable_within_one_export_and_links_to_no_other() -> None:
    first, second = pseudonymiser(), pseudonymiser()
    assert first.of("v-0123456789ab") == first.of("v-0123456789ab")
    assert first.of("v-0123456789ab") != first.of("v-ba9876543210")
    assert first.of("v-0123456789ab") != second.of("v-0123456789ab")
    assert first.of("v-0123456789ab").startswith("p-") and "0123456789ab" not in first.of("v-0123456789ab")
