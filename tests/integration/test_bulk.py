"""COPY of the hot rows (ledger/bulk.py): awkward text survives byte for byte, and failures are SQLAlchemy's."""
from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError

from ledger import schema
from ledger.bulk import copy_rows, insert_rows_ignoring_conflicts

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
