"""The opportunities catalogue as Open Referral UK services (HSDS 3.0, UK profile; docs/design.md §5.10).

Partners and their opportunities only: nothing about a volunteer. Ids are UUIDs, as the standard asks, made
from our own ids with uuid5 under a fixed namespace, so a service keeps its id from one reading to the next.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid5

from sqlalchemy import Engine, func, select

from ledger.pg import schema

#: Never change it: every published id depends on it. uuid5(NAMESPACE_URL, "urn:timecredits:openreferral").
NAMESPACE = uuid5(UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8"), "urn:timecredits:openreferral")
TAXONOMY = "timecredits opportunity categories"
#: Opportunity categories (ledger.events.OpportunityCategory) in words, the terms of the feed's taxonomy.
CATEGORY_WORDS = {
    "course": "Course", "training": "Training", "culture": "Culture", "sport": "Sport",
    "work_experience": "Work experience", "other": "Other",
}
MAX_PER_PAGE = 100


def published_id(kind: str, own_id: str) -> str:
    return str(uuid5(NAMESPACE, f"{kind}:{own_id}"))


TAXONOMY_ID = published_id("taxonomy", "opportunity-categories")
_TERM_BY_ID = {published_id("category", code): code for code in CATEGORY_WORDS}


def category_of(term: str) -> str | None:
    """A filter's category: a term's published id, or the category's code."""
    return _TERM_BY_ID.get(term) or (term if term in CATEGORY_WORDS else None)


@dataclass(frozen=True)
class Page:
    services: list[dict[str, Any]]
    total: int
    number: int
    size: int


def services(engine: Engine, base_url: str, *, area: str | None = None, category: str | None = None,
             page: int = 1, per_page: int = 50) -> Page:
    op = schema.opportunities
    where = []
    if area is not None:
        where.append(op.c.area == area)
    if category is not None:
        where.append(op.c.category == category)
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(op).where(*where)).scalar_one()
        rows = conn.execute(_query().where(*where).order_by(op.c.created_at, op.c.id)
                            .limit(per_page).offset((page - 1) * per_page)).all()
    return Page([_service(row, base_url) for row in rows], total, page, per_page)


def service(engine: Engine, base_url: str, service_id: str) -> dict[str, Any] | None:
    """One service by its published id, or None."""
    op = schema.opportunities
    with engine.connect() as conn:
        # Published ids are made from ours, not stored: a catalogue of a few thousand is read through once.
        for row in conn.execute(_query().order_by(op.c.id)):
            if published_id("opportunity", row.id) == service_id:
                return _service(row, base_url)
    return None


def page_body(page: Page) -> dict[str, Any]:
    """The page as HSDS 3.0 pages a list, with the names the first Open Referral UK API gave them too."""
    pages = max(1, math.ceil(page.total / page.size))
    first, last = page.number == 1, page.number >= pages
    return {
        "total_items": page.total, "total_pages": pages, "page_number": page.number, "size": page.size,
        "first_page": first, "last_page": last, "empty": not page.services, "contents": page.services,
        "totalElements": page.total, "totalPages": pages, "number": page.number, "first": first, "last": last,
        "content": page.services,
    }


def _query() -> Any:
    op, o, a = schema.opportunities, schema.organisations, schema.areas
    return (select(op.c.id, op.c.title, op.c.category, op.c.cost, op.c.capacity, op.c.area, op.c.starts_at,
                   op.c.updated_at, op.c.partner_id, o.c.name.label("partner_name"), a.c.name.label("area_name"))
            .join(o, o.c.id == op.c.partner_id).outerjoin(a, a.c.code == op.c.area))


def _credits(hundredths: int) -> str:
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def _service(row: Any, base_url: str) -> dict[str, Any]:
    service_id = published_id("opportunity", row.id)
    organisation_id = published_id("organisation", row.partner_id)
    cost = _credits(row.cost)
    places = f" {row.capacity} places." if row.capacity is not None else ""
    area_name = row.area_name or row.area
    body: dict[str, Any] = {
        "id": service_id,
        "organization_id": organisation_id,
        "name": row.title,
        "description": (f"{row.title}, offered by {row.partner_name} in {area_name} to volunteers of the "
                        f"time-credits programme for {cost} credits.{places}"),
        "url": f"{base_url.rstrip('/')}/openreferral/services/{service_id}",
        "status": "active",
        "last_modified": row.updated_at.isoformat(),
        "organization": {"id": organisation_id, "name": row.partner_name,
                         "description": f"{row.partner_name}, a partner where volunteers spend time credits."},
        "service_areas": [{"id": published_id("service_area", row.id), "service_id": service_id,
                           "name": area_name, "extent": row.area, "extent_type": "ONS area code"}],
        "cost_options": [{"id": published_id("cost_option", row.id), "service_id": service_id,
                          "option": "Time credits", "amount": row.cost / 100,
                          "amount_description": f"{cost} time credits, earned by volunteering"}],
        "attributes": [{
            "id": published_id("attribute", row.id), "link_id": service_id, "link_type": "service",
            "taxonomy_term_id": published_id("category", row.category),
            "taxonomy_term": {"id": published_id("category", row.category), "name": row.category,
                              "description": CATEGORY_WORDS.get(row.category, row.category),
                              "taxonomy_id": TAXONOMY_ID, "taxonomy": TAXONOMY},
        }],
        "schedules": [],
    }
    if row.starts_at is not None:
        body["schedules"] = [{"id": published_id("schedule", row.id), "service_id": service_id,
                              "dtstart": row.starts_at.date().isoformat(),
                              "description": f"Starts {row.starts_at.isoformat()}"}]
    return body
