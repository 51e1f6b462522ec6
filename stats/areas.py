"""The areas a programme reports on, with their need, from a CSV the programme supplies (`timecredits import-areas`).

What the file looks like:

    code,name,need_decile,population,source
    E09000030,Tower Hamlets,2,310000,"IMD 2019, synthetic"

- Header row, matched case-insensitively with spaces, `_` and `-` alike: `code` (or `area code`), `name` (or
  `area name`), `need decile` (or `imd decile`, `decile`), `population` (or `residents`), and optionally
  `source`. Other columns are ignored; a missing one makes the whole file unusable (`AreasFileError`).
- `code`: an ONS code, a letter for the nation (E, W, S, N) and eight digits: a local authority
  (`E09000030`), a ward (`E05009317`) or an LSOA (`E01000001`). Lower case is accepted and upper-cased.
- `need_decile`: 1 (the most deprived 10 % of areas, as in the English Indices of Deprivation) to 10.
- `population`: residents, a whole number more than 0 (`310000`, or `310,000` when the cell is quoted).
- `source`: where the figures come from (`IMD 2019`, `ONS mid-2022 estimates`), shown in reports.
- Blank rows are skipped; UTF-8 with or without a byte-order mark, else Windows-1252 (Excel's "CSV").

Every row is validated and every bad one is reported with its line (the spreadsheet's row number, header = 1)
and reason. A file with any bad row imports nothing: an area table half-imported would mislead a committee.
A good file is upserted by code in one transaction; areas missing from the file are left as they are.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from sqlalchemy import Engine, literal_column, tuple_
from sqlalchemy.dialects.postgresql import insert

from ledger.pg import schema
from producers.sheets import Header, RowProblem, SheetError, open_sheet

__all__ = [
    "AREA_CODE",
    "Area",
    "AreaRejectCode",
    "AreasFileError",
    "ImportResult",
    "ParsedAreas",
    "RejectedArea",
    "import_areas",
    "parse_areas",
    "read_areas",
    "upsert_areas",
]

#: ONS (GSS) codes: a nation letter and eight digits. Northern Ireland's "N" codes follow the same pattern.
AREA_CODE = re.compile(r"[EWSN]\d{8}")
MAX_POPULATION = 100_000_000  # more than the United Kingdom: a typo, not an area
MAX_NAME = 200
MAX_SOURCE = 500


class AreaRejectCode(StrEnum):
    """Why a row was refused."""

    MISSING_VALUE = "missing_value"
    BAD_CODE = "bad_code"
    DUPLICATE_CODE = "duplicate_code"
    BAD_NAME = "bad_name"
    BAD_DECILE = "bad_decile"
    BAD_POPULATION = "bad_population"
    BAD_SOURCE = "bad_source"
    INVALID_ROW = "invalid_row"


class AreasFileError(SheetError):
    """The file as a whole cannot be read as an areas file (encoding, no header, missing column, no rows)."""


@dataclass(frozen=True)
class Area:
    line: int
    code: str
    name: str
    need_decile: int
    population: int
    source: str


@dataclass(frozen=True)
class RejectedArea:
    line: int
    reason: AreaRejectCode
    message: str
    raw: tuple[str, ...]

    def __str__(self) -> str:
        return f"line {self.line}: {self.message} ({self.reason})"


@dataclass
class ParsedAreas:
    areas: list[Area] = field(default_factory=list)
    rejected: list[RejectedArea] = field(default_factory=list)
    encoding: str = "utf-8"

    @property
    def ok(self) -> bool:
        return not self.rejected


@dataclass(frozen=True)
class ImportResult:
    """What an import did. With any rejected row, nothing was written (all counts are 0)."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: tuple[RejectedArea, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.rejected

    @property
    def rows(self) -> int:
        return self.inserted + self.updated + self.unchanged


_COLUMNS: dict[str, tuple[str, ...]] = {
    "code": ("code", "area code"),
    "name": ("name", "area name"),
    "need_decile": ("need decile", "imd decile", "decile"),
    "population": ("population", "residents"),
    "source": ("source",),
}
_REQUIRED = ("code", "name", "need_decile", "population")
_THOUSANDS = re.compile(r"\d{1,3}(?:[, ]\d{3})+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def read_areas(path: Path | str) -> ParsedAreas:
    """Read and parse the CSV file at `path` (see `parse_areas`); raises `AreasFileError` or `OSError`."""
    return parse_areas(Path(path).read_bytes())


def parse_areas(data: bytes | str) -> ParsedAreas:
    """Parse an areas file. Raises `AreasFileError` when the file as a whole is unusable."""
    table = open_sheet(data, _COLUMNS, required=_REQUIRED,
                       expected="code, name, need_decile, population and optionally source", error=AreasFileError)
    parsed = ParsedAreas(encoding=table.encoding)
    first_line: dict[str, int] = {}
    for line, raw in table.rows:
        try:
            area = _row(raw, table.header, line)
            if area.code in first_line:
                raise RowProblem(AreaRejectCode.DUPLICATE_CODE,
                                  f"{area.code} is also on line {first_line[area.code]}: one row an area")
        except RowProblem as problem:
            parsed.rejected.append(RejectedArea(line, problem.code, problem.message, raw))
            continue
        first_line[area.code] = line
        parsed.areas.append(area)
    if not parsed.areas and not parsed.rejected:
        raise AreasFileError("the file has a header row but no areas")
    return parsed


def import_areas(engine: Engine, path: Path | str) -> ImportResult:
    """Validate the file and, only if every row is good, upsert its areas by code in one transaction.

    Raises `AreasFileError` (or `OSError`) when the file cannot be read; bad rows come back in `rejected`.
    """
    parsed = read_areas(path)
    if parsed.rejected:
        return ImportResult(rejected=tuple(parsed.rejected))
    inserted, updated, unchanged = upsert_areas(engine, parsed.areas)
    return ImportResult(inserted, updated, unchanged)


def upsert_areas(engine: Engine, areas: list[Area]) -> tuple[int, int, int]:
    """Insert new codes, update changed ones, leave identical ones alone; (inserted, updated, unchanged)."""
    if not areas:
        return 0, 0, 0
    table = schema.areas
    statement = insert(table)
    excluded = statement.excluded
    columns = ("name", "need_decile", "population", "source")
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.code],
        set_={**{name: excluded[name] for name in columns}, "updated_at": literal_column("now()")},
        # an identical row is not rewritten: its updated_at keeps saying when its figures last changed
        where=tuple_(*(table.c[name] for name in columns)).is_distinct_from(tuple_(*(excluded[n] for n in columns))),
    ).returning(table.c.code, literal_column("xmax = 0").label("inserted"))
    rows = [{"code": a.code, "name": a.name, "need_decile": a.need_decile, "population": a.population,
             "source": a.source} for a in areas]
    with engine.begin() as conn:  # one transaction: all of the file or none of it
        written = conn.execute(statement, rows).all()  # batched by SQLAlchemy's "insertmanyvalues"
    inserted = sum(1 for row in written if row.inserted)
    updated = len(written) - inserted
    return inserted, updated, len(areas) - len(written)


def _row(raw: tuple[str, ...], header: Header, line: int) -> Area:
    if any(cell.strip() for cell in raw[header.width:]):
        raise RowProblem(
            AreaRejectCode.INVALID_ROW,
            f"{len(raw)} cells but {header.width} headings: a value holding a comma must be in quotes",
        )
    values = {name: raw[index].strip() if index < len(raw) else "" for name, index in header.columns.items()}
    missing = [name for name in _REQUIRED if not values[name]]
    if missing:
        raise RowProblem(AreaRejectCode.MISSING_VALUE, f"no {', no '.join(missing)}")
    return Area(
        line=line,
        code=_code(values["code"]),
        name=_text(values["name"], "name", MAX_NAME, AreaRejectCode.BAD_NAME),
        need_decile=_decile(values["need_decile"]),
        population=_population(values["population"]),
        source=_text(values.get("source", ""), "source", MAX_SOURCE, AreaRejectCode.BAD_SOURCE),
    )


def _code(text: str) -> str:
    code = text.upper()
    if not AREA_CODE.fullmatch(code):
        raise RowProblem(
            AreaRejectCode.BAD_CODE,
            f"{text!r} is not an ONS area code (a letter E, W, S or N and eight digits, e.g. E09000030)",
        )
    return code


def _text(text: str, what: str, longest: int, code: AreaRejectCode) -> str:
    if _CONTROL.search(text):
        raise RowProblem(code, f"the {what} holds a line break or control character")
    if len(text) > longest:
        raise RowProblem(code, f"the {what} is {len(text)} characters long (at most {longest})")
    return text


def _decile(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 10:
        raise RowProblem(
            AreaRejectCode.BAD_DECILE,
            f"need decile {text!r} is not a whole number from 1 (the most deprived 10 %) to 10 (the least)",
        )
    return int(text)


def _population(text: str) -> int:
    digits = text.replace(",", "").replace(" ", "") if _THOUSANDS.fullmatch(text) else text
    if not digits.isascii() or not digits.isdigit():
        raise RowProblem(AreaRejectCode.BAD_POPULATION,
                          f"population {text!r} is not a whole number of residents (e.g. 310000)")
    population = int(digits)
    if population <= 0:
        raise RowProblem(AreaRejectCode.BAD_POPULATION, f"population {text!r}: an area has more than 0 residents")
    if population > MAX_POPULATION:
        raise RowProblem(AreaRejectCode.BAD_POPULATION,
                          f"population {text!r} is more than the United Kingdom's: check the figure")
    return population
