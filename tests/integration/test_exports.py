"""The exports on a real ledger (docs/design.md §5.12): the lead's activity export leaves out reversed hours and
shows a background only with consent; the partner's takings say which redemption a reversal undid."""
from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine

from api.auth import Principal, Role
from api.deps import Services
from api.errors import ApiError
from api.services import exports, hours
from ledger.events import CreditsRedeemed, DecodedEvent, EntryReversed, HoursApproved, HoursLogged, HoursRejected
from ledger.pg import notes
from tests.integration.test_statistics import AREAS, END, START, _apply, _ev, _registry

DAY = date(2026, 6, 10)
AT = datetime(2026, 6, 10, 12, tzinfo=UTC)
LATER = datetime(2026, 6, 11, 12, tzinfo=UTC)


def _logged(volunteer: str, minutes: int, decision: str | None) -> list[DecodedEvent]:
    log = _ev(HoursLogged(volunteer_id=volunteer, org_id="club", date=DAY, minutes=minutes,
                          category="befriending"), AT)
    if decision == "approved":
        return [log, _ev(HoursApproved(log_event_id=log.event_id, volunteer_id=volunteer, org_id="club"), AT)]
    if decision == "rejected":
        return [log, _ev(HoursRejected(log_event_id=log.event_id, volunteer_id=volunteer, org_id="club"), AT)]
    return [log]


def _services(engine: Engine) -> Services:
    return Services(engine=engine, producer=None, admin_token=None)  # type: ignore[arg-type]  # reads only


def test_the_activity_export_has_approved_unreversed_hours_and_a_background_only_with_consent(engine: Engine) -> None:
    _apply(engine, _registry([("v-agrees", AREAS[1], "25-34", True), ("v-declines", AREAS[2], "45-54", False)]))
    reversed_, kept = _logged("v-agrees", 60, "approved"), _logged("v-agrees", 30, "approved")
    everything = (reversed_ + kept + _logged("v-declines", 45, "approved") + _logged("v-declines", 20, None)
                  + _logged("v-declines", 15, "rejected"))
    _apply(engine, everything)
    with engine.begin() as conn:  # as the API keeps each log's description (docs/design.md §5.16)
        notes.write_many(conn, [(e.event_id, notes.HOURS_ACTIVITY, "Free text") for e in everything
                                if isinstance(e.payload, HoursLogged)])
    _apply(engine, [_ev(EntryReversed(target_event_id=reversed_[1].event_id, volunteer_id="v-agrees",
                                      reason="mistake"), LATER)])

    table = exports.activity_table(_services(engine), Principal(Role.LEAD), START, END)
    assert table.header == exports.ACTIVITY_HEADER
    rows = [dict(zip(table.header, row)) for row in table.rows]
    assert sorted((r["area"], r["minutes"], r["age_band"], r["seb"]) for r in rows) == [
        (AREAS[1], 30, "25-34", "lower"), (AREAS[2], 45, "", "")]
    assert {(r["org_id"], r["month"], r["category"]) for r in rows} == {("club", "2026-06", "befriending")}
    assert len({r["volunteer"] for r in rows}) == 2 and not {r["volunteer"] for r in rows} & {"v-agrees", "v-declines"}
    assert "Free text" not in repr(table.rows)
    club = hours.every_log(_services(engine), Principal(Role.ORG, org_id="club"), "club", hours.LogFilter())
    assert {h.activity for h in club} == {"Free text"} and len(club) == 5  # the organisation's own export has it
    assert exports.activity_table(_services(engine), Principal(Role.LEAD), date(2026, 7, 1), END).rows == []
    for who in (Principal(Role.ORG, org_id="club"), Principal(Role.VOLUNTEER, volunteer_id="v-agrees")):
        with pytest.raises(ApiError) as refused:
            exports.activity_table(_services(engine), who, START, END)
        assert (refused.value.status, refused.value.code) == (403, "forbidden")


def test_the_partners_takings_mark_the_redemption_a_reversal_undid(engine: Engine) -> None:
    _apply(engine, _registry([("v-spends", AREAS[0], "25-34", True)]))
    _apply(engine, _logged("v-spends", 120, "approved"))
    kept = _ev(CreditsRedeemed(volunteer_id="v-spends", partner_id="lido", amount=50), LATER)
    undone = _ev(CreditsRedeemed(volunteer_id="v-spends", partner_id="lido", amount=25), LATER)
    _apply(engine, [kept, undone])
    _apply(engine, [_ev(EntryReversed(target_event_id=undone.event_id, volunteer_id="v-spends", reason="refund"),
                        LATER)])

    table = exports.partner_table(_services(engine), Principal(Role.ORG, org_id="lido"), "lido")
    rows = sorted((dict(zip(table.header, row)) for row in table.rows), key=lambda r: r["credits"])
    assert [(r["kind"], r["event_id"], r["credits"], r["reversed"], r["date"]) for r in rows] == [
        ("redemption", str(undone.event_id), "0.25", "yes", "2026-06-11"),
        ("redemption", str(kept.event_id), "0.50", "", "2026-06-11")]
    assert exports.partner_table(_services(engine), Principal(Role.ADMIN), "lido").rows == table.rows
    with pytest.raises(ApiError) as refused:
        exports.partner_table(_services(engine), Principal(Role.ORG, org_id="club"), "lido")
    assert (refused.value.status, refused.value.code) == (403, "forbidden")
