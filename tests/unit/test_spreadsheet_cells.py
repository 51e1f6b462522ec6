from __future__ import annotations

import pytest

from api.spreadsheet_cells import inert


@pytest.mark.parametrize("cell", ['=HYPERLINK("http://x","y")', "+1+2", "-1+2", "@SUM(A1)", "\t=1", "\r=1", "=",
                                  "-", "+cmd|' /C calc'!A0"])
def test_a_cell_a_spreadsheet_would_run_is_made_inert(cell: str) -> None:
    assert inert(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["", "Gardening", "2.00", "-2.00", "+3", "12", "a=b", "v-2957f17abc4b"])
def test_other_cells_and_plain_numbers_are_kept(cell: str) -> None:
    assert inert(cell) == cell
