"""Many rows into a table in one statement, their values rendered in bulk rather than bound one by one.

A worker's batch writes thousands of rows a transaction. Through SQLAlchemy's executemany each value passes
through Python-level bind processing, and PostgreSQL then parses a VALUES list of thousands of literals,
which costs more than storing the rows. `COPY ... FROM STDIN` takes the rows as text with no parsing or
planning per value. It fires the same
constraints and statement-level triggers as an INSERT. Both helpers run on the Connection's own DBAPI
connection, so they are part of the caller's transaction.
"""
from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any
from uuid import UUID

import psycopg2
from sqlalchemy import ARRAY, Connection, Table
from sqlalchemy.exc import DBAPIError

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> int:
    """COPY `rows` (dicts with the same keys, which must be `table`'s column names) in ONE statement.

    One statement, never pages: the database checks an entry's postings together at the end of the statement
    that inserts them (migration 0005), so postings must not be split across statements. Returns rows written.
    """
    if not rows:
        return 0
    columns = _columns(table, rows)
    text = "".join(["\t".join([_copy_text(row[column]) for column in columns]) + "\n" for row in rows])
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    with _as_sqlalchemy_errors(conn, statement), conn.connection.cursor() as cursor:
        cursor.copy_expert(statement, io.StringIO(text))
        return max(cursor.rowcount, 0)


def insert_rows_ignoring_conflicts(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> int:
    """INSERT ... ON CONFLICT DO NOTHING in one statement (COPY cannot skip conflicts); returns rows inserted.

    The rows travel as one array literal a column, unnested by the server: rendering them as a VALUES list
    (psycopg2's execute_values) would quote every value in Python, once a value for thousands of rows a batch.
    """
    if not rows:
        return 0
    columns = _columns(table, rows)
    arrays = ", ".join(f"CAST(%s AS {_array_type(conn, table, column)})" for column in columns)
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) ON CONFLICT DO NOTHING"
    parameters = [array_literal([row[column] for row in rows]) for column in columns]
    with _as_sqlalchemy_errors(conn, sql), conn.connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        return max(cursor.rowcount, 0)


def _array_type(conn: Connection, table: Table, column: str) -> str:
    column_type = table.c[column].type
    if isinstance(column_type, ARRAY):
        raise TypeError(f"{table.name}.{column} is an array: unnest would flatten it")
    return f"{column_type.compile(dialect=conn.dialect)}[]"


_ARRAY_ELEMENT_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})


def array_literal(values: Iterable[Any]) -> str:
    """A PostgreSQL array literal (`{"a","b",NULL}`): NULL for None, every other value quoted in its text form,
    so commas, braces, spaces and the word NULL inside a value stay part of it. One parameter carries a whole
    column or lookup list, where psycopg2 would adapt a Python list value by value."""
    return "{" + ",".join([_array_element(value) for value in values]) + "}"


def _array_element(value: Any) -> str:
    if value is None:
        return "NULL"
    text = _element_text(value)
    if "\\" in text or '"' in text:
        text = text.translate(_ARRAY_ELEMENT_ESCAPES)
    return '"' + text + '"'


def _element_text(value: Any) -> str:
    """A value's text form, as PostgreSQL reads it for the column's type (unescaped)."""
    convert = _ELEMENT_TEXT_BY_TYPE.get(type(value))
    if convert is not None:
        return convert(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int | UUID):
        return str(value)
    if isinstance(value, datetime):
        return _aware_isoformat(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return "\\x" + bytes(value).hex()
    raise TypeError(f"no text form for {type(value).__name__}")


@contextmanager
def _as_sqlalchemy_errors(conn: Connection, statement: str) -> Iterator[None]:
    """Raise what SQLAlchemy would have raised for the same failure (IntegrityError, OperationalError, ...), so
    callers handle a refusal or an outage the same way whichever path wrote the rows; a dropped connection is
    invalidated so that the pool does not hand it out again."""
    try:
        yield
    except psycopg2.Error as exc:
        disconnected = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, None)
        if disconnected:
            conn.invalidate(exc)
        raise DBAPIError.instance(statement, None, exc, psycopg2.Error, hide_parameters=True,
                                  connection_invalidated=disconnected, dialect=conn.dialect) from exc


def _columns(table: Table, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns = list(rows[0])
    unknown = set(columns) - set(table.columns.keys())
    if unknown:
        raise ValueError(f"not columns of {table.name}: {sorted(unknown)}")
    return columns


def _copy_text(value: Any) -> str:
    """One value in COPY's text format: by exact type first (a dict lookup, where the isinstance chain below
    cost a noticeable share of a worker's batch), then by isinstance for subclasses."""
    convert = _COPY_TEXT_BY_TYPE.get(type(value))
    if convert is not None:
        return convert(value)
    return _copy_text_of_subclass(value)


def _aware_isoformat(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not written to the ledger")
    return value.isoformat()


def _bytes_text(value: bytes | memoryview) -> str:
    return "\\\\x" + bytes(value).hex()


def _str_copy_text(value: str) -> str:
    # Four scans in C are cheaper than translating every string, and almost none needs escaping.
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_ESCAPES)
    return value


#: The exact types of the hot columns (an exact-type lookup, before `_element_text`'s isinstance chain).
_ELEMENT_TEXT_BY_TYPE: dict[type, Callable[[Any], str]] = {
    str: str.__str__,
    int: int.__repr__,
    UUID: UUID.__str__,
}

_COPY_TEXT_BY_TYPE: dict[type, Callable[[Any], str]] = {
    type(None): lambda _: "\\N",
    str: _str_copy_text,
    bool: lambda value: "t" if value else "f",
    int: str,
    UUID: str,
    datetime: _aware_isoformat,
    date: date.isoformat,
    bytes: _bytes_text,
    memoryview: _bytes_text,
}


def _copy_text_of_subclass(value: Any) -> str:
    return _element_text(value).translate(_ESCAPES)
