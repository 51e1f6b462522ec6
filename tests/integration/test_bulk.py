"""COPY of the hot rows (ledger/bulk.py): awkward text survives byte for byte, and failures are SQLAlchemy's."""
from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError

from ledger.pg import schema
from ledger.pg.bulk import copy_rows, insert_rows_ignoring_conflicts

pytestmark = pytest.mark.integration

AWKWARD = ["tab\there", "new\nline", "back\\slash", "\\N", "carriage\rreturn", "Zoë 🌳 ;=|", "", "\\x41"]


def test_awkward_text_round_trips_through_copy(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO volunteers (id, area, consent_stats) VALUES ('v1', 'E09000025', true)"))
        conn.execute(text("INSERT INTO organisations (id, name, area, kinds, auto_approve) "
                          "VALUES ('o1', 'O', 'E09000025', ARRAY['community'], false)"))
        rows = [
            {"event_id": uuid.uuid4(), "volunteer_id": "v1", "org_id": "o1", "worked_on": date(2026, 10, 31),
             "minutes": 60, "activity": activity, "logged_at": datetime(2026, 11, 1, 9, 30, 0, 123456, tzinfo=UTC),
             "actor": "org:o1"}
            for activity in AWKWARD
        ]
        assert copy_rows(conn, schema.hours_logs, rows) == len(rows)
    with engine.connect() as conn:
        stored = {r.event_id: r for r in conn.execute(select(schema.hours_logs))}
    for row in rows:
        back = stored[row["event_id"]]
        assert back.activity == row["activity"]
        assert back.logged_at == row["logged_at"] and back.worked_on == row["worked_on"]


def test_bytes_and_nulls_round_trip_and_a_refusal_is_an_integrity_error(engine: Engine) -> None:
    event_id = uuid.uuid4()
    with engine.begin() as conn:
        copy_rows(conn, schema.rejections, [{"event_id": event_id, "reason": "r", "message": "m\tx",
                                             "recorded_at": datetime.now(UTC)}])
    with pytest.raises(IntegrityError) as caught, engine.begin() as conn:
        copy_rows(conn, schema.rejections, [{"event_id": event_id, "reason": "again", "message": "",
                                             "recorded_at": datetime.now(UTC)}])
    assert caught.value.orig.diag.constraint_name == "rejections_pkey"  # type: ignore[union-attr]
    with engine.begin() as conn:
        assert insert_rows_ignoring_conflicts(conn, schema.rejections, [
            {"event_id": event_id, "reason": "again", "message": "", "recorded_at": datetime.now(UTC)}]) == 0


def test_unknown_columns_and_naive_times_are_refused_before_anything_is_sent(engine: Engine) -> None:
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="not columns"):
            copy_rows(conn, schema.rejections, [{"event_id": uuid.uuid4(), "nope": 1}])
        with pytest.raises(ValueError, match="naive"):
            copy_rows(conn, schema.rejections, [{"event_id": uuid.uuid4(), "reason": "r", "message": "m",
                                                 "recorded_at": datetime(2026, 1, 1)}])


def test_awkward_values_round_trip_through_the_conflict_ignoring_insert(engine: Engine) -> None:
    """Text with quotes, braces, commas, backslashes and the word NULL, real NULLs, dates, integers and bytes
    survive the array literals byte for byte; a repeated key is skipped, not an error."""
    values = [*AWKWARD, 'quote"d', "{braces}", "a,b", "NULL", " padded "]
    facts = [
        {"entry_id": n + 1, "kind": "hours_approved", "occurred_on": date(2026, 10, 31), "volunteer_id": value,
         "other_volunteer_id": None if n % 2 else value, "org_id": None, "category": None, "amount": -n - 1,
         "minutes": 60, "sign": 1, "original_entry_id": None}
        for n, value in enumerate(values)
    ]
    blob = bytes(range(256))
    keys = [{"caller": blob, "path": "/v1/{x}", "key": 'k"\\', "body_sha256": b"\x00\\", "status_code": None,
             "response": None}]
    with engine.begin() as conn:
        assert insert_rows_ignoring_conflicts(conn, schema.stats_facts, facts) == len(facts)
        assert insert_rows_ignoring_conflicts(conn, schema.stats_facts, facts[:3]) == 0
        assert insert_rows_ignoring_conflicts(conn, schema.idempotency_keys, keys) == 1
    with engine.connect() as conn:
        stored = {r.entry_id: r for r in conn.execute(select(schema.stats_facts))}
        key = conn.execute(select(schema.idempotency_keys)).one()
    for fact in facts:
        back = stored[fact["entry_id"]]
        assert (back.volunteer_id, back.other_volunteer_id, back.amount, back.occurred_on) == (
            fact["volunteer_id"], fact["other_volunteer_id"], fact["amount"], fact["occurred_on"])
    assert (bytes(key.caller), key.path, key.key, bytes(key.body_sha256), key.status_code) == (
        blob, "/v1/{x}", 'k"\\', b"\x00\\", None)


def test_an_array_column_is_refused_by_the_conflict_ignoring_insert(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(TypeError, match="array"):
        insert_rows_ignoring_conflicts(conn, schema.organisations, [
            {"id": "o", "name": "O", "area": "E09000025", "kinds": ["community"], "auto_approve": False}])
