"""Account keys: `kind:owner_id` strings (docs/design.md §3)."""
from __future__ import annotations

from enum import StrEnum


class AccountKind(StrEnum):
    VOLUNTEER = "volunteer"  # what a volunteer holds; never below zero
    ISSUER = "issuer"  # where an organisation's earned credits come from; negative by design
    HOLDS = "holds"  # credits held for a volunteer's bookings not yet attended
    PARTNER = "partner"  # credits spent with a partner organisation


#: Kinds whose balance may never go below zero. Only issuers go negative.
NON_NEGATIVE_KINDS = frozenset({AccountKind.VOLUNTEER, AccountKind.HOLDS, AccountKind.PARTNER})


def account_key(kind: AccountKind, owner_id: str) -> str:
    if not owner_id or ":" in owner_id:
        raise ValueError(f"invalid owner id for an account: {owner_id!r}")
    return f"{kind.value}:{owner_id}"


def volunteer_account(volunteer_id: str) -> str:
    return account_key(AccountKind.VOLUNTEER, volunteer_id)


def issuer_account(org_id: str) -> str:
    return account_key(AccountKind.ISSUER, org_id)


def holds_account(volunteer_id: str) -> str:
    return account_key(AccountKind.HOLDS, volunteer_id)


def partner_account(org_id: str) -> str:
    return account_key(AccountKind.PARTNER, org_id)


def split_account_key(key: str) -> tuple[AccountKind, str]:
    kind, _, owner = key.partition(":")
    return AccountKind(kind), owner
