"""The demo's spend code, through the running API as a volunteer and a partner's front desk would use it
(docs/design.md §5.6): the volunteer makes a code for one partner, the desk takes a payment with it, and the
same code offered again is refused."""
from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
from rich.console import Console
from sqlalchemy import Engine

from api.auth import Role, create_token
from ledger.amounts import format_credits, parse_credits
from ledger.pg.repository import LedgerRepository
from ledger.spend_codes import shown


@dataclass(frozen=True, slots=True)
class SpendShown:
    volunteer_id: str
    partner_id: str
    code: str
    paid: str
    outcome: str
    second_attempt: str


def _outcome(client: httpx.Client, event_id: str, token: str, timeout_s: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = client.get(f"/v1/events/{event_id}", headers={"Authorization": f"Bearer {token}"}).json()
        if answer["status"] != "pending" or time.monotonic() > deadline:
            return answer  # type: ignore[no-any-return]
        time.sleep(0.1)


def show_spend_code(url: str, engine: Engine, volunteer_ids: list[str], partner_id: str,
                    amount: str = "1.00") -> SpendShown | None:
    """A spend code made and used by the first of `volunteer_ids` with `amount` credits to spare; None if none has."""
    repository = LedgerRepository(engine)
    volunteer_id = next((v for v in volunteer_ids
                         if repository.volunteer_balance(v).available >= parse_credits(amount)), None)
    if volunteer_id is None:
        return None
    volunteer_token, _ = create_token(engine, Role.VOLUNTEER, volunteer_id=volunteer_id, label="demo spend code")
    desk_token, _ = create_token(engine, Role.ORG, org_id=partner_id, label="demo front desk")
    with httpx.Client(base_url=url, timeout=30) as client:
        made = client.post(f"/v1/volunteers/{volunteer_id}/spend-codes",
                           headers={"Authorization": f"Bearer {volunteer_token}"},
                           json={"partner_id": partner_id, "max_amount": amount})
        made.raise_for_status()
        code = made.json()["code"]
        desk = {"Authorization": f"Bearer {desk_token}"}
        paid = client.post("/v1/redemptions", headers=desk, json={"amount": amount, "spend_code": code})
        paid.raise_for_status()
        outcome = _outcome(client, paid.json()["event_id"], desk_token)
        again = client.post("/v1/redemptions", headers=desk, json={"amount": amount, "spend_code": code})
    told = "applied" if outcome["status"] == "applied" else f"refused: {outcome.get('reason')}"
    second = again.json().get("error", {}).get("code", str(again.status_code))
    return SpendShown(volunteer_id, partner_id, shown(code), format_credits(parse_credits(amount)), told, second)


def print_spend_code(console: Console, result: SpendShown | None) -> None:
    if result is None:
        console.print("spend code: no demo volunteer had credits to spend")
        return
    console.print(f"spend code: {result.volunteer_id} made {result.code} for {result.partner_id}; the front desk "
                  f"took {result.paid} credits with it ({result.outcome}); offered again: {result.second_attempt}")
