"""What each event asks of the ledger and the registry: pure translation, no storage (docs/design.md §2, §4).

`plan_event` turns a decoded event into a `Plan` (a ledger command, an hours log or decision to record, a
registry row to upsert) against a read-only `RegistryView`, or raises `Rejection` with a reason code.
The view also sees what earlier events in the same batch planned (see `BatchRegistry`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Protocol
from uuid import UUID

from ledger.actors import HOLD_RELEASE_ACTOR, is_admin, org_of, volunteer_actor
from ledger.amounts import format_credits, minutes_to_hundredths
from ledger.domain import (
    AttendBooking,
    BookOpportunity,
    CancelBooking,
    EarnCredits,
    ExpireBooking,
    GiftCredits,
    LedgerCommand,
    MarkNoShow,
    RedeemCredits,
    Rejection,
    ReverseEntry,
)
from ledger.events import (
    BookingAttended,
    BookingCancelled,
    BookingExpired,
    BookingNoShow,
    ConsentChanged,
    CreditsGifted,
    CreditsRedeemed,
    DecodedEvent,
    EntryReversed,
    EventPayload,
    HoursApproved,
    HoursLogged,
    HoursRejected,
    MAX_DAYS_AHEAD,
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
    AUTHORISATION_REQUIRED = "authorisation_required"
    INVALID_CODE = "invalid_code"
    CODE_AMOUNT_EXCEEDED = "code_amount_exceeded"
    CODE_EXPIRED = "code_expired"
    CODE_USED = "code_used"
    TOO_MANY_HOURS = "too_many_hours"
    DATE_TOO_OLD = "date_too_old"
    DATE_IN_FUTURE = "date_in_future"
    FULLY_BOOKED = "fully_booked"
    VOLUNTEER_ERASED = "volunteer_erased"


#: At most this many approved minutes for one volunteer on one day, across every organisation (§5.6).
MAX_MINUTES_A_DAY = 24 * 60


@dataclass(frozen=True, slots=True)
class IntakePolicy:
    """The programme's settings that the intake rules apply (docs/design.md §5.6)."""

    #: Hours worked more than this many days before their event are refused unless an admin logs them.
    max_days_back: int = 92


DEFAULT_POLICY = IntakePolicy()


@dataclass(frozen=True, slots=True)
class SpendCode:
    """A volunteer's one-time authorisation of one payment to one partner (docs/design.md §5.6)."""

    id: UUID
    volunteer_id: str
    partner_id: str
    max_amount: int
    expires_at: datetime


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
    #: At most this many open bookings (docs/design.md §5.8); None: open to everyone.
    capacity: int | None = None


@dataclass(frozen=True, slots=True)
class HoursLog:
    event_id: UUID
    volunteer_id: str
    org_id: str
    worked_on: object  # datetime.date
    minutes: int
    logged_at: datetime
    actor: str
    #: Only the statistics read it, so the rows loaded for intake's checks leave it at its default.
    category: str = "other"


@dataclass(frozen=True, slots=True)
class HoursDecision:
    log_event_id: UUID
    decision_event_id: UUID
    approved: bool
    #: "auto_approve" for an automatic approval, "" for one by hand; none for a rejection, whose words are the
    #: API's (docs/design.md §5.16).
    reason: str | None
    decided_at: datetime
    #: The actor of the decision (for an automatic approval, the one who logged the hours).
    decided_by: str


@dataclass(frozen=True, slots=True)
class RegistryUpsert:
    table: str  # "organisations" | "volunteers" | "opportunities" | "memberships" | "consents"
    row: dict[str, object]


@dataclass(slots=True)
class Plan:
    """What one event does. An approval's decision is written only if its ledger command is applied."""

    event: DecodedEvent
    command: LedgerCommand | None = None
    hours_log: HoursLog | None = None
    decision: HoursDecision | None = None
    registry: list[RegistryUpsert] = field(default_factory=list)
    #: The hours this plan approves, counted against the volunteer's day once the plan is applied.
    approves: HoursLog | None = None
    #: The spend code this plan uses up once applied.
    spend_code_id: UUID | None = None
    #: The place this booking takes once applied, as (opportunity_id, volunteer_id) (docs/design.md §5.8).
    takes_place: tuple[str, str] | None = None


class RegistryView(Protocol):
    def volunteer_exists(self, volunteer_id: str) -> bool: ...

    def volunteer_erased(self, volunteer_id: str) -> bool:
        """Whether the volunteer's personal data was erased (docs/design.md §5.15)."""
        ...

    def organisation(self, org_id: str) -> Organisation | None: ...

    def opportunity(self, opportunity_id: str) -> Opportunity | None: ...

    def hours_log(self, event_id: UUID) -> HoursLog | None: ...

    def is_decided(self, log_event_id: UUID) -> bool: ...

    def is_member(self, org_id: str, volunteer_id: str) -> bool:
        """Whether the volunteer is a current member of the organisation (docs/design.md §5.4)."""
        ...

    def spend_code(self, code_id: UUID) -> SpendCode | None: ...

    def is_code_used(self, code_id: UUID) -> bool: ...

    def approved_minutes(self, volunteer_id: str, day: date) -> int:
        """Minutes approved so far for the volunteer's work on `day`, across every organisation."""
        ...

    def places_taken(self, opportunity_id: str, volunteer_id: str, at: datetime) -> int:
        """Open bookings of the opportunity plus the waiting-list offers live at `at` to volunteers other than
        `volunteer_id` (docs/design.md §5.8)."""
        ...


def check_payload(payload: EventPayload, registry: RegistryView, *, actor: str,
                  policy: IntakePolicy = DEFAULT_POLICY) -> None:
    """The intake rules for a payload about to be produced, so that a request is refused at once by the very rule
    the worker would apply to its event (the API's pre-checks). Raises `Rejection`."""
    if isinstance(payload, HoursLogged):  # before the envelope, which refuses a future date without a code
        check_hours_date(datetime.now(UTC), actor, payload.date, policy)
    envelope = new_event(payload, actor=actor)
    plan_event(DecodedEvent(envelope, payload), registry, policy)


def plan_event(event: DecodedEvent, registry: RegistryView, policy: IntakePolicy = DEFAULT_POLICY) -> Plan:
    payload = event.payload
    if isinstance(payload, HoursLogged):
        return _hours_logged(event, payload, registry, policy)
    planner = _PLANNERS.get(type(payload))
    if planner is None:
        raise Rejection(IntakeReason.UNSUPPORTED_EVENT, f"{event.type} is not applied by the ledger")
    return planner(event, payload, registry)


def own_actor(payload: EventPayload) -> str | None:
    """The actor of the volunteer whose credits `payload` spends or gives, as the volunteer's own act (for tools
    that produce such events for a volunteer, like the demo); None for a payload that spends nobody's credits."""
    if isinstance(payload, CreditsGifted):
        return volunteer_actor(payload.from_volunteer_id)
    if isinstance(payload, CreditsRedeemed | OpportunityBooked):
        return volunteer_actor(payload.volunteer_id)
    return None


def authorise_spend(event: DecodedEvent, volunteer_id: str, partner_id: str, amount: int,
                    spend_code_id: UUID | None, registry: RegistryView) -> UUID | None:
    """Credits leave a volunteer's account only by their own act (docs/design.md §5.6): the event is theirs, or
    it carries a spend code they made for this partner, this amount or more, not expired and not used.

    Returns the code to mark used once the payment is applied (None for the volunteer's own act)."""
    if event.envelope.actor == volunteer_actor(volunteer_id) and spend_code_id is None:
        return None
    if spend_code_id is None:
        raise Rejection(IntakeReason.AUTHORISATION_REQUIRED,
                        "the volunteer's spend code is needed to take their credits: ask them for one")
    code = registry.spend_code(spend_code_id)
    if code is None or code.volunteer_id != volunteer_id or code.partner_id != partner_id:
        raise Rejection(IntakeReason.INVALID_CODE, "that spend code is not this volunteer's code for this partner")
    if amount > code.max_amount:
        raise Rejection(IntakeReason.CODE_AMOUNT_EXCEEDED,
                        f"the spend code allows at most {format_credits(code.max_amount)} credits, "
                        f"not {format_credits(amount)}")
    if event.envelope.occurred_at > code.expires_at:
        raise Rejection(IntakeReason.CODE_EXPIRED, "the spend code has expired: ask the volunteer for a new one")
    if registry.is_code_used(spend_code_id):
        raise Rejection(IntakeReason.CODE_USED, "the spend code was used already: ask the volunteer for a new one")
    return spend_code_id


def check_hours_date(occurred_at: datetime, actor: str, worked_on: date, policy: IntakePolicy) -> None:
    """Hours are dated no more than the programme's days back (an admin may log older ones) and not after the
    event, with a day's slack for time zones (docs/design.md §5.6)."""
    day = occurred_at.date()
    if (worked_on - day).days > MAX_DAYS_AHEAD:
        raise Rejection(IntakeReason.DATE_IN_FUTURE, f"hours cannot be logged for {worked_on.isoformat()}, "
                                                     f"which has not happened yet")
    if (day - worked_on).days > policy.max_days_back and not is_admin(actor):
        raise Rejection(IntakeReason.DATE_TOO_OLD,
                        f"hours worked on {worked_on.isoformat()} are more than {policy.max_days_back} days old: "
                        f"ask the programme's admin to log them")


def check_day_total(log: HoursLog, registry: RegistryView) -> None:
    """At most 24 approved hours for one volunteer on one day, across every organisation (docs/design.md §5.6)."""
    approved = registry.approved_minutes(log.volunteer_id, log.worked_on)  # type: ignore[arg-type]
    if approved + log.minutes > MAX_MINUTES_A_DAY:
        raise Rejection(IntakeReason.TOO_MANY_HOURS,
                        f"{_hours(approved)} already approved for this volunteer on {log.worked_on}; "
                        f"{_hours(log.minutes)} more would pass 24 hours in one day")


def check_places(opportunity: Opportunity, volunteer_id: str, at: datetime, registry: RegistryView) -> None:
    """A booking takes a place only while one is left for this volunteer: open bookings and offers held for
    others count as taken (docs/design.md §5.8)."""
    if opportunity.capacity is None:
        return
    taken = registry.places_taken(opportunity.id, volunteer_id, at)
    if taken >= opportunity.capacity:
        raise Rejection(IntakeReason.FULLY_BOOKED,
                        f"there are no places left on opportunity {opportunity.id}: "
                        f"all {opportunity.capacity} are taken or offered to others")


def _hours(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    text = f"{hours} hour{'' if hours == 1 else 's'}"
    return text if not rest else f"{text} {rest} minute{'' if rest == 1 else 's'}"


def _volunteer(registry: RegistryView, volunteer_id: str) -> None:
    """A registered volunteer who was not erased: nothing new happens to an erased one (docs/design.md §5.15)."""
    if not registry.volunteer_exists(volunteer_id):
        raise Rejection(IntakeReason.UNKNOWN_VOLUNTEER, f"no volunteer {volunteer_id}")
    if registry.volunteer_erased(volunteer_id):
        raise Rejection(IntakeReason.VOLUNTEER_ERASED,
                        f"volunteer {volunteer_id} was erased: nothing new can be recorded for them")


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


def _hours_logged(event: DecodedEvent, p: HoursLogged, registry: RegistryView, policy: IntakePolicy) -> Plan:
    _volunteer(registry, p.volunteer_id)
    organisation = _organisation(registry, p.org_id, "community")
    _member(registry, p.org_id, p.volunteer_id)
    check_hours_date(event.envelope.occurred_at, event.envelope.actor, p.date, policy)
    occurred_at = event.envelope.occurred_at
    actor = event.envelope.actor
    # The description is the API's, in `event_notes`; an older event's `activity` is not kept (docs/design.md §5.16).
    log = HoursLog(event.event_id, p.volunteer_id, p.org_id, p.date, p.minutes, occurred_at, actor, p.category)
    plan = Plan(event, hours_log=log)
    if organisation.auto_approve:
        check_day_total(log, registry)
        plan.command = _earn_for(log, event.event_id, occurred_at)
        plan.decision = HoursDecision(event.event_id, event.event_id, True, "auto_approve", occurred_at, actor)
        plan.approves = log
    return plan


def _hours_approved(event: DecodedEvent, p: HoursApproved, registry: RegistryView) -> Plan:
    log = _undecided_log(registry, p.log_event_id, p.org_id, p.volunteer_id)
    _volunteer(registry, log.volunteer_id)
    check_day_total(log, registry)
    occurred_at = event.envelope.occurred_at
    return Plan(
        event,
        command=_earn_for(log, event.event_id, occurred_at),
        decision=HoursDecision(p.log_event_id, event.event_id, True, "", occurred_at, event.envelope.actor),
        approves=log,
    )


def _hours_rejected(event: DecodedEvent, p: HoursRejected, registry: RegistryView) -> Plan:
    _undecided_log(registry, p.log_event_id, p.org_id, p.volunteer_id)
    # The reason's words are the API's, in `event_notes` (docs/design.md §5.16): the decision keeps none.
    return Plan(event, decision=HoursDecision(p.log_event_id, event.event_id, False, None,
                                              event.envelope.occurred_at, event.envelope.actor))


def _booked(event: DecodedEvent, p: OpportunityBooked, registry: RegistryView) -> Plan:
    _volunteer(registry, p.volunteer_id)
    opportunity = registry.opportunity(p.opportunity_id)
    if opportunity is None:
        raise Rejection(IntakeReason.UNKNOWN_OPPORTUNITY, f"no opportunity {p.opportunity_id}")
    if (opportunity.partner_id, opportunity.cost) != (p.partner_id, p.amount):
        raise Rejection(
            IntakeReason.OPPORTUNITY_MISMATCH,
            f"opportunity {p.opportunity_id} is offered by {opportunity.partner_id} for "
            f"{format_credits(opportunity.cost)} credits",
        )
    code = authorise_spend(event, p.volunteer_id, p.partner_id, p.amount, p.spend_code_id, registry)
    check_places(opportunity, p.volunteer_id, event.envelope.occurred_at, registry)
    command = BookOpportunity(event.event_id, event.envelope.occurred_at, p.volunteer_id, p.partner_id, p.amount,
                              p.opportunity_id)
    place = (p.opportunity_id, p.volunteer_id) if opportunity.capacity is not None else None
    return Plan(event, command=command, spend_code_id=code, takes_place=place)


def _cancelled(event: DecodedEvent, p: BookingCancelled, _: RegistryView) -> Plan:
    return Plan(event, command=CancelBooking(event.event_id, event.envelope.occurred_at, p.booking_event_id))


def _attended(event: DecodedEvent, p: BookingAttended, _: RegistryView) -> Plan:
    return Plan(event, command=AttendBooking(event.event_id, event.envelope.occurred_at, p.booking_event_id))


def _expired(event: DecodedEvent, p: BookingExpired, _: RegistryView) -> Plan:
    """Only the programme's hold-release job releases a hold that lapsed (docs/design.md §5.11)."""
    if event.envelope.actor != HOLD_RELEASE_ACTOR:
        raise Rejection(IntakeReason.AUTHORISATION_REQUIRED,
                        "only the programme's hold-release job releases a booking that was not attended")
    return Plan(event, command=ExpireBooking(event.event_id, event.envelope.occurred_at, p.booking_event_id))


def _no_show(event: DecodedEvent, p: BookingNoShow, _: RegistryView) -> Plan:
    """The partner whose opportunity it is (checked against the booking by the ledger's rules) or an admin says
    the volunteer did not come (docs/design.md §5.11)."""
    actor = event.envelope.actor
    partner_id = org_of(actor)
    if partner_id is None and not is_admin(actor):
        raise Rejection(IntakeReason.AUTHORISATION_REQUIRED,
                        "only the partner whose opportunity it is, or an admin, says a volunteer did not come")
    return Plan(event, command=MarkNoShow(event.event_id, event.envelope.occurred_at, p.booking_event_id, p.forfeit,
                                          partner_id))


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
    code = authorise_spend(event, p.volunteer_id, p.partner_id, p.amount, p.spend_code_id, registry)
    command = RedeemCredits(event.event_id, event.envelope.occurred_at, p.volunteer_id, p.partner_id, p.amount,
                            p.opportunity_id)
    return Plan(event, command=command, spend_code_id=code)


def _gifted(event: DecodedEvent, p: CreditsGifted, registry: RegistryView) -> Plan:
    _volunteer(registry, p.from_volunteer_id)
    _volunteer(registry, p.to_volunteer_id)
    if event.envelope.actor != volunteer_actor(p.from_volunteer_id):
        raise Rejection(IntakeReason.AUTHORISATION_REQUIRED, "only the volunteer can give their credits away")
    command = GiftCredits(event.event_id, event.envelope.occurred_at, p.from_volunteer_id, p.to_volunteer_id, p.amount)
    return Plan(event, command=command)


def _reversed(event: DecodedEvent, p: EntryReversed, _: RegistryView) -> Plan:
    """A correction is an admin's, or an organisation's for its own recent approvals (docs/design.md §5.14); the
    ledger's `check_correction` applies the second part, where the entry is known."""
    actor = event.envelope.actor
    by_org = org_of(actor)
    if by_org is None and not is_admin(actor):
        raise Rejection(IntakeReason.AUTHORISATION_REQUIRED,
                        "only an admin, or the organisation that approved the hours, can correct an entry")
    return Plan(event, command=ReverseEntry(event.event_id, event.envelope.occurred_at, p.target_event_id, by_org))


def _organisation_registered(event: DecodedEvent, p: OrganisationRegistered, _: RegistryView) -> Plan:
    row = {"id": p.org_id, "name": p.name, "area": p.area, "kinds": sorted(p.kinds), "auto_approve": p.auto_approve}
    return Plan(event, registry=[RegistryUpsert("organisations", row)])


def _volunteer_registered(event: DecodedEvent, p: VolunteerRegistered, registry: RegistryView) -> Plan:
    if registry.volunteer_erased(p.volunteer_id):
        raise Rejection(IntakeReason.VOLUNTEER_ERASED, f"volunteer {p.volunteer_id} was erased and cannot return")
    # Never the detail (the API's alone), and the coded answers only with consent, whatever an older event carried
    # (docs/design.md §5.16).
    p = p.without_unconsented_answers()
    row = {
        "id": p.volunteer_id,
        "area": p.area,
        "age_band": p.age_band,
        "seb": p.seb,
        "first_time_volunteer": p.first_time_volunteer,
        "consent_stats": p.consent_stats,
    }
    return Plan(event, registry=[RegistryUpsert("volunteers", row)])


def _consent_changed(event: DecodedEvent, p: ConsentChanged, registry: RegistryView) -> Plan:
    """The answers as the event gives them (none without consent), and the free-text detail cleared either way:
    it is never on the topic, and a changed answer may no longer match it (docs/design.md §5.7)."""
    _volunteer(registry, p.volunteer_id)
    row = {"id": p.volunteer_id, "consent_stats": p.consent_stats, "age_band": p.age_band, "seb": p.seb,
           "changed_at": event.envelope.occurred_at}
    return Plan(event, registry=[RegistryUpsert(CONSENTS, row)])


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
        "series_id": p.series_id,
        # The version the row holds: an older listing met late (the API may have written a newer edit already)
        # changes nothing (docs/design.md §5.13).
        "updated_at": event.envelope.occurred_at,
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
#: A change of a registered volunteer's consent and answers: an update of their row, never an insert.
CONSENTS = "consents"

_PLANNERS = {
    HoursApproved: _hours_approved,
    HoursRejected: _hours_rejected,
    OpportunityBooked: _booked,
    BookingCancelled: _cancelled,
    BookingAttended: _attended,
    BookingExpired: _expired,
    BookingNoShow: _no_show,
    CreditsRedeemed: _redeemed,
    CreditsGifted: _gifted,
    EntryReversed: _reversed,
    OrganisationRegistered: _organisation_registered,
    VolunteerRegistered: _volunteer_registered,
    ConsentChanged: _consent_changed,
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
        spend_codes: dict[UUID, SpendCode] | None = None,
        used_codes: set[UUID] | None = None,
        day_minutes: dict[tuple[str, date], int] | None = None,
        places: Places | None = None,
        erased: set[str] | None = None,
    ) -> None:
        self._volunteers = set(volunteers)
        #: Volunteers whose personal data was erased (docs/design.md §5.15).
        self._erased = set(erased or ())
        self._organisations = dict(organisations)
        self._opportunities = dict(opportunities)
        self._logs = dict(logs)
        self._decided = set(decided)
        #: Current memberships as (org_id, volunteer_id).
        self._members = set(members or ())
        self._spend_codes = dict(spend_codes or {})
        self._used_codes = set(used_codes or ())
        #: Approved minutes by (volunteer_id, day); a pair missing here has none.
        self._day_minutes = dict(day_minutes or {})
        self.places = places or Places()

    def volunteer_exists(self, volunteer_id: str) -> bool:
        return volunteer_id in self._volunteers

    def volunteer_erased(self, volunteer_id: str) -> bool:
        return volunteer_id in self._erased

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

    def spend_code(self, code_id: UUID) -> SpendCode | None:
        return self._spend_codes.get(code_id)

    def is_code_used(self, code_id: UUID) -> bool:
        return code_id in self._used_codes

    def approved_minutes(self, volunteer_id: str, day: date) -> int:
        return self._day_minutes.get((volunteer_id, day), 0)

    def places_taken(self, opportunity_id: str, volunteer_id: str, at: datetime) -> int:
        return self.places.taken(opportunity_id, volunteer_id, at)

    def accept(self, plan: Plan) -> None:
        """What an applied plan changes for the events after it in the batch."""
        if plan.spend_code_id is not None:
            self._used_codes.add(plan.spend_code_id)
        if plan.takes_place is not None:
            self.places.take(*plan.takes_place)
        if plan.approves is not None:
            key = (plan.approves.volunteer_id, plan.approves.worked_on)
            self._day_minutes[key] = self._day_minutes.get(key, 0) + plan.approves.minutes  # type: ignore[index]
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
                capacity = row.get("capacity")
                self._opportunities[str(row["id"])] = Opportunity(
                    str(row["id"]), str(row["partner_id"]), int(row["cost"]),  # type: ignore[call-overload]
                    int(capacity) if capacity is not None else None,  # type: ignore[call-overload]
                )


class Places:
    """The places of opportunities with a capacity as one batch sees them (docs/design.md §5.8): open bookings
    loaded with the batch, advanced by the bookings and settlements applied earlier in it, and the waiting-list
    offers live when the batch began."""

    def __init__(self, open_bookings: dict[str, int] | None = None,
                 offers: dict[str, dict[str, datetime]] | None = None) -> None:
        #: Open bookings by opportunity; an opportunity missing here has none (or was not loaded).
        self._open = dict(open_bookings or {})
        #: Live offers by opportunity: volunteer_id -> offered_until.
        self._offers = {opportunity: dict(held) for opportunity, held in (offers or {}).items()}

    def taken(self, opportunity_id: str, volunteer_id: str, at: datetime) -> int:
        held = sum(1 for who, until in self._offers.get(opportunity_id, {}).items()
                   if who != volunteer_id and until > at)
        return self._open.get(opportunity_id, 0) + held

    def take(self, opportunity_id: str, volunteer_id: str) -> None:
        """A booking applied: one more open booking, and the volunteer's offer (if any) is used."""
        self._open[opportunity_id] = self._open.get(opportunity_id, 0) + 1
        self._offers.get(opportunity_id, {}).pop(volunteer_id, None)

    def free(self, opportunity_id: str) -> None:
        """A booking settled (cancelled, attended, reversed, lapsed, missed): its place is free again."""
        if self._open.get(opportunity_id, 0) > 0:
            self._open[opportunity_id] -= 1
