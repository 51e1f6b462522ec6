"""Opportunities that repeat (docs/design.md §5.13): a series is its sessions, each an opportunity of its own.

Pure and framework-free, so the API, the partner's pages and the tests share one copy of the rule: how often a
series may repeat, how many sessions it may have, when each starts, what each session's id is, and that the
sessions share everything (partner, title, kind, cost, places, area) but their start.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from ledger.events import OpportunityListed

#: Sessions repeat at the same London wall-clock time, so a 10:00 class stays at 10:00 across a change of clocks.
LONDON = ZoneInfo("Europe/London")

Every = Literal["week", "fortnight"]
#: Days between sessions for each `every` a series may take.
INTERVALS: dict[str, int] = {"week": 7, "fortnight": 14}
FEWEST_SESSIONS = 2
MOST_SESSIONS = 52
#: The longest id an event carries (`ledger.events.Id`).
_ID_LENGTH = 64
#: A series id leaves room for the session number its sessions' ids end with (`-52`).
SERIES_ID_LENGTH = _ID_LENGTH - len(f"-{MOST_SESSIONS}")


class SeriesRefused(ValueError):
    """A repeat that cannot be listed; `code` is machine-readable, the message plain words."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Repeat:
    """How a series repeats: every week or fortnight, `sessions` times in all (the first included)."""

    every: str
    sessions: int


def session_id(series_id: str, number: int) -> str:
    """The id of session `number` (from 1) of a series: the same series and number give the same id, so listing
    a series again finds its sessions already there."""
    return f"{series_id}-{number}"


def check_repeat(repeat: Repeat) -> None:
    """`SeriesRefused` for a repeat other than every week or fortnight, or a count outside 2 to 52."""
    if repeat.every not in INTERVALS:
        raise SeriesRefused("unknown_repeat", f"a series repeats every {' or '.join(INTERVALS)}")
    if not FEWEST_SESSIONS <= repeat.sessions <= MOST_SESSIONS:
        raise SeriesRefused("too_many_sessions" if repeat.sessions > MOST_SESSIONS else "too_few_sessions",
                            f"a series has {FEWEST_SESSIONS} to {MOST_SESSIONS} sessions")


def session_starts(first: datetime | None, repeat: Repeat, now: datetime) -> list[datetime]:
    """When each session starts, in UTC, the first at `first`; or `SeriesRefused` for a repeat that is not sane."""
    check_repeat(repeat)
    if first is None:
        raise SeriesRefused("starts_at_required", "a series needs the date and time its first session starts")
    if first <= now:
        raise SeriesRefused("starts_in_past", "the first session must start in the future")
    local = first.astimezone(LONDON).replace(tzinfo=None)
    step = timedelta(days=INTERVALS[repeat.every])
    try:
        return [(local + step * n).replace(tzinfo=LONDON).astimezone(UTC) for n in range(repeat.sessions)]
    except OverflowError as exc:
        raise SeriesRefused("invalid_request", "the last session would start after the year 9999") from exc


def check_series_id(series_id: str) -> None:
    if len(series_id) > SERIES_ID_LENGTH:
        raise SeriesRefused("invalid_request",
                            f"a series id has at most {SERIES_ID_LENGTH} characters, so its sessions' ids fit")


def series_events(series_id: str, first: OpportunityListed, repeat: Repeat, now: datetime) -> list[OpportunityListed]:
    """The `OpportunityListed` of every session of a series whose first session is `first` (its id and series id
    are replaced): the same listing, each with its own id and start."""
    check_series_id(series_id)
    return [first.model_copy(update={"opportunity_id": session_id(series_id, number), "starts_at": start,
                                     "series_id": series_id})
            for number, start in enumerate(session_starts(first.starts_at, repeat, now), start=1)]
