"""Participation statistics for programme leads, with small-number suppression (docs/design.md §5)."""
from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from api.auth import Principal, Role
from api.deps import ServicesDep, require
from api.errors import ApiError, responses
from api.spreadsheet_cells import inert
from ledger.events import CalendarDate
from api.models import credits
from stats.model import FIGURES, Figures, Participation
from stats.suppression import Protection, protect
from stats.queries import (
    COLD_SPOT_METHOD,
    WHOLE_PERIODS_MESSAGE,
    area_sources,
    cold_spots,
    last_twelve_months,
    months_before,
    parse_period,
    participation,
    synthetic_source,
    whole_months,
)

router = APIRouter(prefix="/v1/stats", tags=["statistics"])
LeadOrAdmin = Annotated[Principal, Depends(require(Role.ADMIN, Role.LEAD))]
GroupBy = Literal["month", "quarter", "org", "area", "age_band", "seb", "category", "activity"]


class Cell(BaseModel):
    """Figures of one group. Every figure is null when the cell describes fewer than 5 volunteers
    (`suppressed`); a single figure is null, and named in `withheld`, when it describes 1 to 4 volunteers or
    when it would let a hidden figure be worked out from the total (docs/design.md §5.3)."""

    suppressed: bool
    withheld: list[str] = Field(default_factory=list)
    volunteers: int | None = None
    active_volunteers: int | None = None
    new_volunteers: int | None = None
    retained_volunteers: int | None = None
    first_time_volunteers: int | None = None
    hours: str | None = Field(None, description="hours given, decimal string")
    credits_earned: str | None = None
    credits_spent: str | None = None
    credits_gifted: str | None = None
    bookings: int | None = None
    attendances: int | None = None
    cancellations: int | None = None
    redemptions: int | None = None


class Group(Cell):
    group: str
    label: str
    kinds: list[str] = Field(default_factory=list, description=(
        "grouped by organisation: its kinds, `community` (volunteers give hours there) and/or `partner` "
        "(volunteers spend credits there)"))


class ParticipationOut(BaseModel):
    group_by: GroupBy
    start: date = Field(alias="from")
    end: date = Field(alias="to")
    rows: list[Group]
    totals: Cell

    model_config = {"populate_by_name": True}


class ColdSpotOut(BaseModel):
    rank: int | None = Field(description=(
        "1 for the coldest shown area; null for an area whose count is withheld: such areas come after the "
        "ranked ones, in order of need decile, and are not ranked among themselves"))
    area: str
    name: str
    need_decile: int
    population: int
    suppressed: bool = Field(description=(
        "count, rate and score are withheld: fewer than 5 active volunteers, or hidden so that such an area's "
        "count cannot be worked out from the totals"))
    active_volunteers: int | None
    per_1000_residents: str | None
    cold_score: float | None


class ColdSpotsOut(BaseModel):
    start: date = Field(alias="from")
    end: date = Field(alias="to")
    method: str = Field(description="how the cold score is worked out, in plain words")
    sources: list[str] = Field(description="where the areas' need deciles and populations come from")
    synthetic: bool = Field(description="some area figures are made up (the demo's sample), not official")
    areas: list[ColdSpotOut]

    model_config = {"populate_by_name": True}


def hours_text(minutes: int) -> str:
    return credits(round(minutes * 100 / 60))


def cell_values(figures: Figures, hidden: set[str]) -> dict[str, object]:
    """The cell as the API shows it: `hidden` names the figures suppression withholds (stats/suppression.py)."""
    if figures.suppressed:
        return {"suppressed": True}
    shown: dict[str, object] = {
        "volunteers": figures.volunteers,
        "active_volunteers": figures.active_volunteers,
        "new_volunteers": figures.new_volunteers,
        "retained_volunteers": figures.retained_volunteers,
        "first_time_volunteers": figures.first_time_volunteers,
        "hours": hours_text(figures.minutes),
        "credits_earned": credits(figures.credits_earned),
        "credits_spent": credits(figures.credits_spent),
        "credits_gifted": credits(figures.credits_gifted),
        "bookings": figures.bookings,
        "attendances": figures.attendances,
        "cancellations": figures.cancellations,
        "redemptions": figures.redemptions,
    }
    withheld = [name for name in shown if name in hidden]
    return {"suppressed": False, "withheld": withheld,
            **{name: None if name in withheld else value for name, value in shown.items()}}


def participation_out(report: Participation, shown: Protection) -> ParticipationOut:
    """The answer: every figure `shown` hides is null (docs/design.md §5.3)."""
    return ParticipationOut(
        group_by=report.group_by, start=report.start, end=report.end,  # type: ignore[arg-type]
        totals=Cell(**cell_values(report.totals, shown.totals)),  # type: ignore[arg-type]
        rows=[Group(group=row.group, label=row.label, kinds=row.kinds,  # type: ignore[arg-type]
                    **cell_values(row.figures, shown.row(row.group))) for row in report.rows],
    )


def resolve_period(start: date | None, end: date | None, period: str | None, *,
                   whole_months_only: bool = True) -> tuple[date, date]:
    """The period asked for: `to` is the last day included. Figures are for whole months only (docs/design.md
    §5.3); the activity export, one row a log already, takes any days (`whole_months_only=False`)."""
    if period:
        try:
            return parse_period(period)
        except ValueError as exc:
            raise ApiError(422, "invalid_period", str(exc)) from exc
    today = datetime.now(ZoneInfo("Europe/London")).date()
    if start is None and end is None:
        start, end = last_twelve_months(today)
    # With `from` alone: to the end of the last whole month for figures (this month is not over yet), today for rows.
    end = end or (date(today.year, today.month, 1) - timedelta(days=1) if whole_months_only else today)
    try:
        start = start or months_before(date(end.year, end.month, 1), 11)
    except ValueError as exc:  # twelve months before the first year there is
        raise ApiError(422, "invalid_period", "give `from` too: the twelve months to `to` start before year 1") from exc
    if end < start:
        raise ApiError(422, "invalid_period", "`from` is after `to`")
    if (end - start).days > 3660:
        raise ApiError(422, "invalid_period", "a period is at most ten years")
    if whole_months_only and not whole_months(start, end):
        raise ApiError(422, "whole_periods_only", WHOLE_PERIODS_MESSAGE)
    return start, end


FromQ = Annotated[CalendarDate | None, Query(alias="from", description=(
    "first day, the 1st of a month (default: the 12 whole months before this one, or the 12 months to `to`)"))]
ToQ = Annotated[CalendarDate | None, Query(alias="to", description=(
    "last day included, the last day of a month (default: the end of last month)"))]
PeriodQ = Annotated[str | None, Query(description="instead of from/to: 2026-Q3, 2026-07 or 2026",
                                      max_length=7, pattern=r"^[0-9]{4}(-Q[1-4]|-[0-9]{2})?$")]


@router.get("/participation", response_model=ParticipationOut, response_model_by_alias=True,
            responses=responses(401, 403, 422))
def get_participation(services: ServicesDep, _: LeadOrAdmin, group_by: GroupBy = "month", start: FromQ = None,
                      end: ToQ = None, period: PeriodQ = None) -> ParticipationOut:
    """Hours, credits, active/new/retained volunteers, bookings, attendance and redemptions by group."""
    first, last = resolve_period(start, end, period)
    report = participation(services.engine, group_by, first, last)
    return participation_out(report, protect([(row.group, row.figures) for row in report.rows], report.totals,
                                             group_by))


@router.get("/participation.csv", response_class=Response, responses={
    200: {"content": {"text/csv": {}}, "description": "the same figures as CSV; suppressed cells are [c]"},
    **responses(401, 403, 422)})
def get_participation_csv(services: ServicesDep, _: LeadOrAdmin, group_by: GroupBy = "month", start: FromQ = None,
                          end: ToQ = None, period: PeriodQ = None) -> Response:
    first, last = resolve_period(start, end, period)
    report = participation(services.engine, group_by, first, last)
    shown = protect([(row.group, row.figures) for row in report.rows], report.totals, group_by)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([group_by, "label", *FIGURES])
    lines = [*((r.group, r.label, r.figures, shown.row(r.group)) for r in report.rows),
             ("total", "Total", report.totals, shown.totals)]
    for group, label, figures, hidden in lines:
        values = cell_values(figures, hidden)
        # An organisation's name is typed by people: made inert as a formula, as in every export.
        writer.writerow([inert(group), inert(label),
                         *("[c]" if figures.suppressed or name in hidden else values[name] for name in FIGURES)])
    filename = f"participation-{group_by}-{first}-{last}.csv"
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{filename}"'})


@router.get("/cold-spots", response_model=ColdSpotsOut, response_model_by_alias=True,
            responses=responses(401, 403, 422))
def get_cold_spots(services: ServicesDep, _: LeadOrAdmin, start: FromQ = None, end: ToQ = None,
                   period: PeriodQ = None) -> ColdSpotsOut:
    """Areas ranked by need against participation per resident (areas come from `timecredits import-areas`)."""
    first, last = resolve_period(start, end, period)
    spots = cold_spots(services.engine, first, last)
    sources = area_sources(services.engine)
    return ColdSpotsOut(start=first, end=last, method=COLD_SPOT_METHOD, sources=sources,
                        synthetic=any(synthetic_source(source) for source in sources), areas=[
        ColdSpotOut(rank=s.rank, area=s.area, name=s.name, need_decile=s.need_decile, population=s.population,
                    suppressed=s.hidden, active_volunteers=None if s.hidden else s.active_volunteers,
                    per_1000_residents=None if s.hidden else f"{s.per_1000_residents:.2f}",
                    cold_score=None if s.hidden else s.cold_score)
        for s in spots
    ])
