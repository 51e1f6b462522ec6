"""What each event asks of the ledger and the registry: pure translation, no storage (docs/design.md §2, §4).

`plan_event` turns a decoded event into a `Plan` (a ledger command, an hours log or decision to record, a
registry row to upsert) against a read-only `RegistryView`, or raises `Rejection` with a reason code.
The view also sees what earlier events in the same batch planned (see `BatchRegistry`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol
from uuid import UUID

from ledger.amounts import minutes_to_hundredths
from ledger.domain import (
    AttendBooking,
    BookOpportunity,
    CancelBooking,
    EarnCredits,
    GiftCredits,
    LedgerCommand,
    RedeemCredits,
    Rejection,
    ReverseEntry,
)
from ledger.events import (
    BookingAttended,
    BookingCancelled,
    CreditsGifted,
    CreditsRedeemed,
    DecodedEvent,
    EntryReversed,
    EventPayload,
    HoursApproved,
    HoursLogged,
    HoursRejected,
    MembershipEnded,
    MembershipStarted,
    OpportunityBooked,
    OpportunityListed,
    OrganisationRegistered,
    VolunteerRegistered,
    new_event,
)


class IntakeReason(StrEnum):
    """Why an event was refused before it reached the ledger's rules; part of the public contract."""

    UNKNOWN_VOLUNTEER = "unknown_volunteer"
    UNKNOWN_ORGANISATION = "unknown_organisation"
    NOT_A_COMMUNITY_ORGANISATION = "not_a_community_organisation"
    NOT_A_PARTNER = "not_a_partner"
    UNKNOWN_LOG = "unknown_log"
    ALREADY_DECIDED = "already_decided"
    WRONG_ORGANISATION = "wrong_organisation"
    WRONG_VOLUNTEER = "wrong_volunteer"
    UNKNOWN_OPPORTUNITY = "unknown_opportunity"
    OPPORTUNITY_MISMATCH = "opportunity_mismatch"
    UNSUPPORTED_EVENT = "unsupported_event"
    NOT_A_MEMBER = "not_a_member"


@dataclass(frozen=True, slots=True)
class Organisation:
    id: str
    kinds: frozenset[str]
    auto_approve: bool


@dataclass(frozen=True, slots=True)
class Opportunity:
    id: str
    partner_id: str
    cost: int


@dataclass(frozen=True, slots=True)
class HoursLog:
    event_id: UUID
    volunteer_id: str
    org_id: str
    worked_on: object  # datetime.date
    minutes: int
    activity: str
    logged_at: datetime
    actor: str


@dataclass(frozen=True, slots=True)
class HoursDecision:
    log_event_id: UUID
    decision_event_id: UUID
    approved: bool
    reason: str
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class RegistryUpsert:
    table: str  # "organisations" | "volunteers" | "opportunities" | "memberships"
    row: dict[str, object]


@dataclass(slots=True)
class Plan:
    """What one event does. An approval's decision is written only if its ledger command is applied."""

    event: DecodedEvent
    command: LedgerCommand | None = None
    hours_log: HoursLog | None = None
    decision: HoursDecision | None = None
    registry: list[RegistryUpsert] = field(default_factory=list)


class RegistryView(Protocol):
    def volunteer_exists(self, volunteer_id: str) -> bool: ...

    def organisation(self, org_id: str) -> Organisation | None: ...

    def opportunity(self, opportunity_id: str) -> Opportunity | None: ...

    def hours_log(self, event_id: UUID) -> HoursLog | None: ...

    def is_decided(self, log_event_id: UUID) -> bool: ...

    def is_member(self, org_id: str, volunteer_id: str) -> bool:
        """Whether the volunteer is a current member of the organisation (docs/design.md §5.4)."""
        ...


def check_payload(payload: EventPayload, registry: RegistryView, *, actor: str) -> None:
    """The intake rules for a payload about to be produced, so that a request is refused at once by the very rule
    the worker would apply to its event (the API's pre-checks). Raises `Rejection`."""
    envelope = new_event(payload, actor=actor)
    plan_event(DecodedEvent(envelope, payload), registry)


def plan_event(event: DecodedEvent, registry: RegistryView) -> Plan:
    payload = event.payload
    planner = _PLANNERS.get(type(payload))
    if planner is None:
        raise Rejection(IntakeReason.UNSUPPORTED_EVENT, f"{event.type} is not applied by the ledger")
    return planner(event, payload, registry)


def _volunteer(registry: RegistryView, volunteer_id: str) -> None:
    if not registry.volunteer_exists(volunteer_id):
        raise Rejection(IntakeReason.UNKNOWN_VOLUNTEER, f"no volunteer {volunteer_id}")


def _organisation(registry: RegistryView, org_id: str, kind: str) -> Organisation:
    organisation = registry.organisation(org_id)
    if organisation is None:
        raise Rejection(IntakeReason.UNKNOWN_ORGANISATION, f"no organisation {org_id}")
    if kind not in organisation.kinds:
        reason = IntakeReason.NOT_A_PARTNER if kind == "partner" else IntakeReason.NOT_A_COMMUNITY_ORGANISATION
        raise Rejection(reason, f"organisation {org_id} is not a {kind} organisation")
    return organisation


def _member(registry: RegistryView, org_id: str, volunteer_id: str) -> None:
    """An organisation logs hours only for its current members (docs/design.md §5.4)."""
    if not registry.is_member(org_id, volunteer_id):
        raise Rejection(IntakeReason.NOT_A_MEMBER,
                        f"volunteer {volunteer_id} is not a member of {org_id}: add them as a member first")


def _undecided_log(registry: RegistryView, log_event_id: UUID, org_id: str, volunteer_id: str) -> HoursLog:
    log = registry.hours_log(log_event_id)
    if log is None:
        raise Rejection(IntakeReason.UNKNOWN_LOG, f"no hours logged with event id {log_event_id}")
    if log.org_id != org_id:
        raise Rejection(IntakeReason.WRONG_ORGANISATION, f"hours {log_event_id} were logged with {log.org_id}")
    if log.volunteer_id != volunteer_id:
        raise Rejection(IntakeReason.WRONG_VOLUNTEER, f"hours {log_event_id} belong to another volunteer")
    if registry.is_decided(log_event_id):
        raise Rejection(IntakeReason.ALREADY_DECIDED, f"hours {log_event_id} were already approved or rejected")
    return log


def _earn_for(log: HoursLog, event_id: UUID, occurred_at: datetime) -> EarnCredits:
    return EarnCredits(event_id, occurred_at, log.volunteer_id, log.org_id, minutes_to_hundredths(log.minutes))


def _hours_logged(event: DecodedEvent, p: HoursLogged, registry: RegistryView) -> Plan:
    _volunteer(registry, p.volunteer_id)
    organisation = _organisation(registry, p.org_id, "community")
    _member(registry, p.org_id, p.volunteer_id)
    occurred_at = event.envelope.occurred_at
    log = HoursLog(event.event_id, p.volunteer_id, p.org_id, p.date, p.minutes, p.activity, occurred_at,
                   event.envelope.actor)
    plan = Plan(event, hours_log=log)
    if organisation.auto_approve:
        plan.command = _earn_for(log, event.event_id, occurred_at)
        plan.decision = HoursDecision(event.event_id, event.event_id, True, "auto_approve", occurred_at)
    return plan


def _hours_approved(event: DecodedEvent, p: HoursApproved, registry: RegistryView) -> Plan:
    log = _undecided_log(registry, p.log_event_id, p.org_id, p.volunteer_id)
    occurred_at = event.envelope.occurred_at
    return Plan(
        event,
        command=_earn_for(log, event.event_id, occurred_at),
        decision=HoursDecision(p.log_event_id, event.event_id, True, "", occurred_at),
    )


def _hours_rejected(event: DecodedEvent, p: HoursRejected, registry: RegistryView) -> Plan:
    _undecided_log(registry, p.log_event_id, p.org_id, p.volunteer_id)
    return Plan(event, decision=HoursDecision(p.log_event_id, event.event_id, False, p.reason, event.envelope.occurred_at))


def _booked(event: DecodedEvent, p: OpportunityBooked, registry: RegistryView) -> Plan:
    _volunteer(registry, p.volunteer_id)
    opportunity = registry.opportunity(p.opportunity_id)
    if opportunity is None:
        raise Rejection(IntakeReason.UNKNOWN_OPPORTUNITY, f"no opportunity {p.opportunity_id}")
    if (opportunity.partner_id, opportunity.cost) != (p.partner_id, p.amount):
        raise Rejection(
            IntakeReason.OPPORTUNITY_MISMATCH,
            f"opportunity {p.opportunity_id} is offered by {opportunity.partner_id} for {opportunity.cost} hundredths",
        )
    command = BookOpportunity(event.event_id, event.envelope.occurred_at, p.volunteer_id, p.partner_id, p.amount,
                              p.opportunity_id)
    return Plan(event, command=command)


def _cancelled(event: DecodedEvent, p: BookingCancelled, _: RegistryView) -> Plan:
    return Plan(event, command=CancelBooking(event.event_id, event.envelope.occurred_at, p.booking_event_id))


def _attended(event: DecodedEvent, p: BookingAttended, _: RegistryView) -> Plan:
    return Plan(event, command=AttendBooking(event.event_id, event.envelope.occurred_at, p.booking_event_id))


def _redeemed(event: DecodedEvent, p: CreditsRedeemed, registry: RegistryView) -> Plan:
    _volunteer(registry, p.volunteer_id)
    _organisation(registry, p.partner_id, "partner")
    if p.opportunity_id is not None:
        opportunity = registry.opportunity(p.opportunity_id)
        if opportunity is None:
            raise Rejection(IntakeReason.UNKNOWN_OPPORTUNITY, f"no opportunity {p.opportunity_id}")
        if opportunity.partner_id != p.partner_id:
            raise Rejection(IntakeReason.OPPORTUNITY_MISMATCH,
                                  f"opportunity {p.opportunity_id} is offered by {opportunity.partner_id}")
    command = RedeemCredits(event.event_id, event.envelope.occurred_at, p.volunteer_id, p.partner_id, p.amount,
                            p.opportunity_id)
    return Plan(event, command=command)


def _gifted(event: DecodedEvent, p: CreditsGifted, registry: RegistryView) -> Plan:
    _volunteer(registry, p.from_volunteer_id)
    _volunteer(registry, p.to_volunteer_id)
    command = GiftCredits(event.event_id, event.envelope.occurred_at, p.from_volunteer_id, p.to_volunteer_id, p.amount)
    return Plan(event, command=command)


def _reversed(event: DecodedEvent, p: EntryReversed, _: RegistryView) -> Plan:
    return Plan(event, command=ReverseEntry(event.event_id, event.envelope.occurred_at, p.target_event_id))


def _organisation_registered(event: DecodedEvent, p: OrganisationRegistered, _: RegistryView) -> Plan:
    row = {"id": p.org_id, "name": p.name, "area": p.area, "kinds": sorted(p.kinds), "auto_approve": p.auto_approve}
    return Plan(event, registry=[RegistryUpsert("organisations", row)])


def _volunteer_registered(event: DecodedEvent, p: VolunteerRegistered, _: RegistryView) -> Plan:
    row = {
        "id": p.volunteer_id,
        "area": p.area,
        "age_band": p.age_band,
        "seb": p.seb,
        "seb_detail": p.seb_detail,
        "first_time_volunteer": p.first_time_volunteer,
        "consent_stats": p.consent_stats,
    }
    return Plan(event, registry=[RegistryUpsert("volunteers", row)])


def _opportunity_listed(event: DecodedEvent, p: OpportunityListed, registry: RegistryView) -> Plan:
    _organisation(registry, p.partner_id, "partner")
    row = {
        "id": p.opportunity_id,
        "partner_id": p.partner_id,
        "title": p.title,
        "category": p.category,
        "cost": p.cost,
        "capacity": p.capacity,
        "area": p.area,
        "starts_at": p.starts_at,
    }
    return Plan(event, registry=[RegistryUpsert("opportunities", row)])


def _membership_started(event: DecodedEvent, p: MembershipStarted, registry: RegistryView) -> Plan:
    _volunteer(registry, p.volunteer_id)
    if registry.organisation(p.org_id) is None:
        raise Rejection(IntakeReason.UNKNOWN_ORGANISATION, f"no organisation {p.org_id}")
    row = {"id": p.membership_id, "org_id": p.org_id, "volunteer_id": p.volunteer_id,
           "started_at": event.envelope.occurred_at}
    return Plan(event, registry=[RegistryUpsert(MEMBERSHIPS, row)])


def _membership_ended(event: DecodedEvent, p: MembershipEnded, _: RegistryView) -> Plan:
    """Not refused when the registry shows it ended already: the API ends it in PostgreSQL before the worker
    hears of it (docs/design.md §2, registry writes are synchronous)."""
    row = {"id": p.membership_id, "org_id": p.org_id, "volunteer_id": p.volunteer_id,
           "ended_at": event.envelope.occurred_at}
    return Plan(event, registry=[RegistryUpsert(MEMBERSHIPS, row)])


#: The registry table of memberships; an upsert of it with `ended_at` ends a membership.
MEMBERSHIPS = "memberships"

_PLANNERS = {
    HoursLogged: _hours_logged,
    HoursApproved: _hours_approved,
    HoursRejected: _hours_rejected,
    OpportunityBooked: _booked,
    BookingCancelled: _cancelled,
    BookingAttended: _attended,
    CreditsRedeemed: _redeemed,
    CreditsGifted: _gifted,
    EntryReversed: _reversed,
    OrganisationRegistered: _organisation_registered,
    VolunteerRegistered: _volunteer_registered,
    OpportunityListed: _opportunity_listed,
    MembershipStarted: _membership_started,
    MembershipEnded: _membership_ended,
}


class BatchRegistry:
    """A `RegistryView` over rows loaded for one batch, advanced by the plans accepted earlier in it."""

    def __init__(
        self,
        volunteers: set[str],
        organisations: dict[str, Organisation],
        opportunities: dict[str, Opportunity],
        logs: dict[UUID, HoursLog],
        decided: set[UUID],
        members: set[tuple[str, str]] | None = None,
    ) -> None:
        self._volunteers = set(volunteers)
        self._organisations = dict(organisations)
        self._opportunities = dict(opportunities)
        self._logs = dict(logs)
        self._decided = set(decided)
        #: Current memberships as (org_id, volunteer_id).
        self._members = set(members or ())

    def volunteer_exists(self, volunteer_id: str) -> bool:
        return volunteer_id in self._volunteers

    def organisation(self, org_id: str) -> Organisation | None:
        return self._organisations.get(org_id)

    def opportunity(self, opportunity_id: str) -> Opportunity | None:
        return self._opportunities.get(opportunity_id)

    def hours_log(self, event_id: UUID) -> HoursLog | None:
        return self._logs.get(event_id)

    def is_decided(self, log_event_id: UUID) -> bool:
        return log_event_id in self._decided

    def is_member(self, org_id: str, volunteer_id: str) -> bool:
        return (org_id, volunteer_id) in self._members

    def accept(self, plan: Plan) -> None:
        if plan.hours_log is not None:
            self._logs[plan.hours_log.event_id] = plan.hours_log
        if plan.decision is not None:
            self._decided.add(plan.decision.log_event_id)
        for upsert in plan.registry:
            row = upsert.row
            if upsert.table == "volunteers":
                self._volunteers.add(str(row["id"]))
            elif upsert.table == "organisations":
                self._organisations[str(row["id"])] = Organisation(
                    str(row["id"]), frozenset(row["kinds"]), bool(row["auto_approve"])  # type: ignore[arg-type]
                )
            elif upsert.table == MEMBERSHIPS:
                pair = (str(row["org_id"]), str(row["volunteer_id"]))
                if "ended_at" in row:
                    self._members.discard(pair)
                else:
                    self._members.add(pair)
            elif upsert.table == "opportunities":
                self._opportunities[str(row["id"])] = Opportunity(
                    str(row["id"]), str(row["partner_id"]), int(row["cost"])  # type: ignore[call-overload]
                )
