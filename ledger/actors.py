"""Who an event says asked for it (its envelope's `actor`), spelt one way for the API, the worker and the tools.

The spending rules read it (docs/design.md §5.6): credits leave a volunteer's account by that volunteer's own act,
an admin may log hours outside the programme's dates, and only the programme's own scheduler (`system:`) releases
a hold that lapsed (§5.11).
"""
from __future__ import annotations

VOLUNTEER_PREFIX = "volunteer:"
ORG_PREFIX = "org:"
ADMIN_PREFIX = "admin:"
SYSTEM_PREFIX = "system:"
#: The actor of the events the hold-release job produces (docs/design.md §5.11).
HOLD_RELEASE_ACTOR = SYSTEM_PREFIX + "hold-release"


def volunteer_actor(volunteer_id: str) -> str:
    return VOLUNTEER_PREFIX + volunteer_id


def org_actor(org_id: str) -> str:
    return ORG_PREFIX + org_id


def admin_actor(token_id: str | None) -> str:
    return ADMIN_PREFIX + (token_id or "bootstrap")


def is_admin(actor: str) -> bool:
    return actor.startswith(ADMIN_PREFIX)


def org_of(actor: str) -> str | None:
    """The organisation an `org:{id}` actor acts as; None for any other actor."""
    return actor.removeprefix(ORG_PREFIX) if actor.startswith(ORG_PREFIX) else None
