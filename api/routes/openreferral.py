"""Open Referral UK feed of the opportunities catalogue, readable without signing in (docs/design.md §5.10)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from api.deps import ServicesDep
from api.errors import ApiError, responses
from api.services import openreferral

router = APIRouter(prefix="/openreferral", tags=["open data"])
_OPEN = {"Access-Control-Allow-Origin": "*"}  # the UK profile's compliance rules ask every answer for it


def _category(taxonomy_id: str | None, taxonomy_term_id: str | None) -> str | None:
    wanted = taxonomy_term_id or taxonomy_id
    if wanted is None or wanted == openreferral.TAXONOMY_ID:
        return None
    found = openreferral.category_of(wanted)
    if found is None:
        raise ApiError(422, "unknown_taxonomy_term", f"{wanted!r} is no category of opportunity (use one of "
                                                     f"{', '.join(openreferral.CATEGORY_WORDS)}, or a term's id)")
    return found


@router.get("/services", responses=responses(422))
def list_services(request: Request, services: ServicesDep, area: str | None = None,
                  taxonomy_id: str | None = None, taxonomy_term_id: str | None = None,
                  page: Annotated[int, Query(ge=1)] = 1,
                  per_page: Annotated[int, Query(ge=1, le=openreferral.MAX_PER_PAGE)] = 50) -> Response:
    """Partners' opportunities as Open Referral UK services, by area (ONS code) and category, paged."""
    found = openreferral.services(services.engine, str(request.base_url), area=area,
                                  category=_category(taxonomy_id, taxonomy_term_id), page=page, per_page=per_page)
    return JSONResponse(openreferral.page_body(found), headers=_OPEN)


@router.get("/services/{service_id}", responses=responses(404))
def get_service(service_id: str, request: Request, services: ServicesDep) -> Response:
    found: dict[str, Any] | None = openreferral.service(services.engine, str(request.base_url), service_id)
    if found is None:
        raise ApiError(404, "unknown_service", f"no service has the id {service_id}")
    return JSONResponse(found, headers=_OPEN)
