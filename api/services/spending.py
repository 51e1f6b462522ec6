"""Writes that move credits, for the API and the web app alike (docs/design.md §5.6, §8.2): who pays, by whose
act, checked at once by the worker's own intake rules, then published as one event."""
from __future__ import annotations

from uuid import UUID

from sqlalchemy import Connection, select

from api.auth import Principal, Role
from api.deps import Services, forbid
from api.errors import ApiError
from api.intake import refuse_what_the_worker_would
from api.publishing import publish
from api.spend_codes import redeemable_code
from ledger.events import CreditsGifted, CreditsRedeemed, EventPayload, OpportunityBooked
from ledger.pg import schema
from ledger.pg.registry import StoredRegistry


def publish_checked(services: Services, principal: Principal, payload: EventPayload) -> UUID:
    """Refuse at once what the worker's intake rules would refuse, then publish the event; its id."""
    with services.engine.connect() as conn:
        refuse_what_the_worker_would(conn, principal, payload, services.policy)
    return publish(services, principal, payload).event_id


def redeem(services: Services, principal: Principal, partner_id: str, amount: int, *, volunteer_id: str | None = None,
           spend_code: str | None = None, opportunity_id: str | None = None) -> UUID:
    """A payment of `amount` hundredths to `partner_id`: the volunteer's own, or with their spend code."""
    with services.engine.connect() as conn:
        partner(conn, partner_id)
        payer, code_id = spender(conn, services, principal, volunteer_id, partner_id, amount, spend_code)
    return publish_checked(services, principal, CreditsRedeemed(
        volunteer_id=payer, partner_id=partner_id, amount=amount, opportunity_id=opportunity_id,
        spend_code_id=code_id))


def check_redeem(services: Services, principal: Principal, partner_id: str, amount: int, spend_code: str) -> str:
    """What `redeem` would check before publishing, without publishing: the volunteer whose code it is, or the
    `ApiError` (a wrong code counts as a guess, as it would in `redeem`). For a front desk's "take 2 credits?"
    step (docs/design.md §8.3); the worker still decides when the payment is made."""
    with services.engine.connect() as conn:
        partner(conn, partner_id)
        payer, _ = spender(conn, services, principal, None, partner_id, amount, spend_code)
    return payer


def book(services: Services, principal: Principal, opportunity_id: str, *, volunteer_id: str | None = None,
         spend_code: str | None = None) -> UUID:
    """Hold an opportunity's cost: by the volunteer, or by its partner (or an admin) with their spend code."""
    op = schema.opportunities
    with services.engine.connect() as conn:
        opportunity = conn.execute(select(op.c.partner_id, op.c.cost).where(op.c.id == opportunity_id)).first()
        if opportunity is None:
            raise ApiError(404, "unknown_opportunity", f"no opportunity {opportunity_id}")
        if principal.role is Role.ORG and principal.org_id != opportunity.partner_id:
            raise forbid("an organisation books its own opportunities only")
        payer, code_id = spender(conn, services, principal, volunteer_id, opportunity.partner_id, opportunity.cost,
                                 spend_code)
    return publish_checked(services, principal, OpportunityBooked(
        volunteer_id=payer, opportunity_id=opportunity_id, partner_id=opportunity.partner_id,
        amount=opportunity.cost, spend_code_id=code_id))


def partner(conn: Connection, partner_id: str) -> None:
    """That the partner takes credits, before its front desk is asked for a code it could not use."""
    found = StoredRegistry(conn).organisation(partner_id)
    if found is None:
        raise ApiError(404, "unknown_organisation", f"no organisation {partner_id}")
    if "partner" not in found.kinds:
        raise ApiError(422, "not_a_partner", f"organisation {partner_id} is not a partner organisation")


def spender(conn: Connection, services: Services, principal: Principal, volunteer_id: str | None,
            partner_id: str, amount: int, spend_code: str | None) -> tuple[str, UUID | None]:
    """Whose credits a payment takes, and the spend code that authorises it when the volunteer is not the one
    asking (docs/design.md §5.6): the volunteer pays by their own act, anyone else with their code."""
    if principal.role is Role.VOLUNTEER:
        if volunteer_id not in (None, principal.volunteer_id):
            raise forbid("a volunteer spends their own credits only")
        if spend_code is not None:
            raise ApiError(422, "invalid_request", "a volunteer spends their own credits without a spend code")
        assert principal.volunteer_id is not None
        return principal.volunteer_id, None
    if spend_code is None:
        raise ApiError(403, "authorisation_required", "ask the volunteer for a spend code: credits are taken only "
                                                      "with the volunteer's agreement")
    code = redeemable_code(conn, principal.actor, partner_id, spend_code, amount, services.spend_code_guesses)
    if volunteer_id not in (None, code.volunteer_id):
        raise ApiError(422, "invalid_code", "that spend code belongs to another volunteer")
    return code.volunteer_id, code.id


def gift(services: Services, principal: Principal, to_volunteer_id: str, amount: int) -> UUID:
    """A volunteer gives `amount` hundredths to another, from their own credits only (docs/design.md §5.6)."""
    if principal.role is not Role.VOLUNTEER or principal.volunteer_id is None:
        raise forbid("only a volunteer gives credits, their own")
    if to_volunteer_id == principal.volunteer_id:
        raise ApiError(422, "self_gift", "a volunteer cannot gift credits to themselves")
    if amount <= 0:
        raise ApiError(422, "invalid_amount", "the amount must be more than zero")
    return publish_checked(services, principal, CreditsGifted(
        from_volunteer_id=principal.volunteer_id, to_volunteer_id=to_volunteer_id, amount=amount))
