"""Exports as files (docs/design.md §5.12): an organisation's hours as CSV or Excel, a partner's redemptions,
a lead's pseudonymous activity export. Each reads through `api.services.exports`, as the pages' links do."""
from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from api.auth import Principal, Role
from api.deps import PrincipalDep, ServicesDep, require
from api.errors import responses
from api.models import Id
from api.routes.hours_queue import FromQ, StatusQ, ToQ, VolunteerQ
from api.routes.statistics import resolve_period
from api.services import exports, hours

router = APIRouter(prefix="/v1", tags=["exports"])
CSV = "text/csv; charset=utf-8"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _file(content: bytes, media_type: str, filename: str) -> Response:
    return Response(content, media_type=media_type,
                    headers={"content-disposition": f'attachment; filename="{filename}"'})


def _documented(media_type: str, what: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"content": {media_type: {}}, "description": what}, **responses(401, 403, 422)}


def _org_hours(services: ServicesDep, principal: Principal, org_id: str, status: str | None,
               volunteer_id: str | None, start: date | None, end: date | None) -> exports.Table:
    found = hours.every_log(services, principal, org_id, hours.LogFilter(status, volunteer_id, start, end))
    return exports.hours_table(org_id, found)


@router.get("/organisations/{org_id}/hours.csv", response_class=Response,
            responses=_documented("text/csv", "the organisation's logs with their status, as the queue lists them"))
def hours_csv(org_id: Id, services: ServicesDep, principal: PrincipalDep, status: StatusQ = None,
              volunteer_id: VolunteerQ = None, start: FromQ = None, end: ToQ = None) -> Response:
    table = _org_hours(services, principal, org_id, status, volunteer_id, start, end)
    return _file(exports.csv_bytes(table), CSV, f"{table.name}.csv")


@router.get("/organisations/{org_id}/hours.xlsx", response_class=Response,
            responses=_documented(XLSX, "the same logs as an Excel workbook of one worksheet"))
def hours_xlsx(org_id: Id, services: ServicesDep, principal: PrincipalDep, status: StatusQ = None,
               volunteer_id: VolunteerQ = None, start: FromQ = None, end: ToQ = None) -> Response:
    table = _org_hours(services, principal, org_id, status, volunteer_id, start, end)
    return _file(exports.xlsx_bytes(table), XLSX, f"{table.name}.xlsx")


@router.get("/partners/{partner_id}/redemptions.csv", response_class=Response,
            responses=_documented("text/csv", "the partner's redemptions and attended bookings"))
def redemptions_csv(partner_id: Id, services: ServicesDep, principal: PrincipalDep) -> Response:
    table = exports.partner_table(services, principal, partner_id)
    return _file(exports.csv_bytes(table), CSV, f"{table.name}.csv")


LeadOrAdmin = Annotated[Principal, Depends(require(Role.ADMIN, Role.LEAD))]
PeriodQ = Annotated[str | None, Query(description="instead of from/to: 2026-Q3, 2026-07 or 2026",
                                      max_length=7, pattern=r"^[0-9]{4}(-Q[1-4]|-[0-9]{2})?$")]


@router.get("/stats/activity.csv", response_class=Response,
            responses=_documented("text/csv", "one row per approved log, pseudonymous, for analysis"))
def activity_csv(services: ServicesDep, principal: LeadOrAdmin, start: FromQ = None, end: ToQ = None,
                 period: PeriodQ = None) -> Response:
    """The period as the statistics read it (by default the last twelve whole months)."""
    first, last = resolve_period(start, end, period, whole_months_only=False)
    table = exports.activity_table(services, principal, first, last)
    return _file(exports.csv_bytes(table), CSV, f"{table.name}.csv")
