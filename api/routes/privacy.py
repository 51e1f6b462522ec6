"""A volunteer's consent to statistics, everything held about them (docs/design.md §5.7), and its erasure
(§5.15)."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.deps import PrincipalDep, ServicesDep
from api.errors import responses
from api.models import Id
from api.services import consent, erasure, subject_access
from api.services.consent import ConsentAnswer

router = APIRouter(prefix="/v1/volunteers", tags=["privacy"])


class ConsentChangeOut(BaseModel):
    consent_stats: bool
    changed_at: datetime
    recorded_by: str


class ConsentOut(BaseModel):
    volunteer_id: str
    consent_stats: bool
    age_band: str | None = Field(description="only with consent")
    seb: str | None = Field(description="socio-economic background, only with consent")
    history: list[ConsentChangeOut]


def _out(found: consent.Consent) -> ConsentOut:
    return ConsentOut(volunteer_id=found.volunteer_id, consent_stats=found.consent_stats,
                      age_band=found.age_band, seb=found.seb,
                      history=[ConsentChangeOut(consent_stats=c.consent_stats, changed_at=c.changed_at,
                                                recorded_by=c.recorded_by) for c in found.history])


@router.get("/{volunteer_id}/consent", response_model=ConsentOut, responses=responses(401, 403, 404, 422))
def read_consent(volunteer_id: Id, services: ServicesDep, principal: PrincipalDep) -> ConsentOut:
    """The current answer and each change, oldest first: the volunteer, an admin, or an organisation they are a
    current member of."""
    return _out(consent.read(services, principal, volunteer_id))


@router.put("/{volunteer_id}/consent", response_model=ConsentOut,
         responses=responses(400, 401, 403, 404, 410, 422, 503))
def change_consent(volunteer_id: Id, body: ConsentAnswer, services: ServicesDep, principal: PrincipalDep) -> ConsentOut:
    """Give or withdraw consent to statistics. Withdrawing deletes the age group and background answers; giving it
    may bring them again. Takes effect for every figure computed afterwards."""
    return _out(consent.change(services, principal, volunteer_id, body))


@router.get("/{volunteer_id}/export", responses={**responses(401, 403, 404, 422),
                                                 200: {"content": {"application/json": {}}}})
def export(volunteer_id: Id, services: ServicesDep, principal: PrincipalDep) -> Response:
    """Everything held about the volunteer, section by section: the volunteer themself, or an admin."""
    body = subject_access.as_json(subject_access.export(services.engine, principal, volunteer_id))
    return Response(body, media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="timecredits-{volunteer_id}.json"'})


@router.get("/{volunteer_id}/export.zip", response_class=Response,
            responses={**responses(401, 403, 404, 422), 200: {"content": {"application/zip": {}}}})
def export_bundle(volunteer_id: Id, services: ServicesDep, principal: PrincipalDep) -> Response:
    """The same as CSV files, one a section, in a zip with a README."""
    body = subject_access.as_csv_bundle(subject_access.export(services.engine, principal, volunteer_id))
    return Response(body, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="timecredits-{volunteer_id}.zip"'})


class ErasureOut(BaseModel):
    volunteer_id: str
    erased_at: datetime
    deleted: dict[str, int] = Field(description="how many rows of each kind of personal data were deleted or blanked")
    kept: list[str] = Field(description="what stays, in words")


@router.delete("/{volunteer_id}", response_model=ErasureOut, responses=responses(401, 403, 404, 410, 422))
async def erase(volunteer_id: Id, services: ServicesDep, principal: PrincipalDep) -> ErasureOut:
    """Erase the volunteer's personal data (an admin only): name, e-mail, sign-in, references, reasons in words,
    unused spend codes, waiting lists. The pseudonymous ledger, the statistics and the audit log stay; nothing new
    can be recorded for them afterwards (`410 volunteer_erased`)."""
    done = await run_in_threadpool(erasure.erase, services.engine, principal, volunteer_id)
    services.principals.clear()  # their tokens are revoked: not one more request from this process's cache
    return ErasureOut(volunteer_id=done.volunteer_id, erased_at=done.erased_at, deleted=done.counts,
                      kept=list(erasure.KEPT))
