"""Events on Kafka: the versioned envelope, every payload schema, and how bytes become an event (docs/design.md §4).

Pure: pydantic and the standard library only. A worker hands whatever bytes it consumed to `decode_event`,
which never raises: it answers a `DecodedEvent`, or an `Undecodable` whose `reason` is one of the
machine-readable codes in `RejectReason` (the rejection then goes to `tc.rejected`).

Payloads carry pseudonymous ids, codes and amounts only, never personal data or words a person typed about a
person: topics cannot be erased (docs/design.md §3.4, §5.16). The words stay in PostgreSQL, keyed by the event id.
Free text that still travels (an organisation's name, an opportunity's title) is checked for characters PostgreSQL
or UTF-8 cannot store, so that an accepted event can always be written down.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Protocol
from uuid import UUID, uuid4

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_serializer,
    model_validator,
)

TOPIC_ACTIVITY = "tc.activity"
TOPIC_ADMIN = "tc.admin"
TOPIC_LEDGER = "tc.ledger"
TOPIC_REJECTED = "tc.rejected"

#: Validation context of a payload read from a topic: rules for what producers write now do not refuse what an
#: older producer wrote (docs/design.md §5.16).
FROM_TOPIC = "from_topic"
#: Larger messages are refused unread; the biggest legitimate event is a few hundred bytes.
MAX_EVENT_BYTES = 64 * 1024
#: A logged day may be at most this many days after the event's `occurred_at` (time zones, late-night entry).
MAX_DAYS_AHEAD = 1
_MAX_DETAIL_CHARS = 500


class RejectReason(StrEnum):
    """`Undecodable.reason` codes; part of the public contract."""

    UNDECODABLE = "undecodable"  # not UTF-8, not JSON, not a JSON object, too large
    INVALID_ENVELOPE = "invalid_envelope"
    UNKNOWN_TYPE = "unknown_type"
    UNKNOWN_VERSION = "unknown_version"
    INVALID_PAYLOAD = "invalid_payload"
    WRONG_KEY = "wrong_key"  # a valid event on a record not keyed by its partition key (see `check_key`)


# --- field types ----------------------------------------------------------------------------

# C0 controls other than tab, newline and carriage return, and lone surrogates (which JSON's "\ud800" escape
# can produce but UTF-8 cannot encode). PostgreSQL refuses NUL in text.
_UNSTORABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ISO_DATETIME_START = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ]")


def _storable(text: str) -> str:
    if _UNSTORABLE.search(text):
        raise ValueError("contains a control character or an invalid Unicode code point")
    return text


def _iso_date(value: object) -> object:
    """Only `YYYY-MM-DD` (or a `date`): pydantic alone would also read 0 as 1970-01-01."""
    if isinstance(value, datetime):
        raise ValueError("expected a date, not a date and time")
    if isinstance(value, date) or (isinstance(value, str) and _ISO_DATE.fullmatch(value)):
        return value
    raise ValueError("expected a date as YYYY-MM-DD")


def _iso_datetime(value: object) -> object:
    """Only ISO 8601 text (or a `datetime`): pydantic alone would also read numbers as Unix time."""
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_DATETIME_START.match(value)):
        return value
    raise ValueError("expected an ISO 8601 date and time with a UTC offset")


def _to_utc(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:  # 0001-01-01T00:00+01:00 has no UTC equivalent
        raise ValueError("date and time out of range once converted to UTC") from exc
    _within_calendar(utc.date())
    return utc


#: The days a date or a moment of a programme may fall on: anything else is a typing error or hostile input, and
#: the ends of Python's calendar (year 1, year 9999) have no local day in London, which the statistics need.
EARLIEST_DAY = date(1900, 1, 1)
LATEST_DAY = date(2100, 12, 31)


def _within_calendar(day: date) -> date:
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise ValueError(f"dates run from {EARLIEST_DAY} to {LATEST_DAY}")
    return day


Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
"""A pseudonymous id. No ':' so it can be part of an account key (`volunteer:{id}`)."""

Amount = Annotated[int, Field(strict=True, gt=0, le=100_000_000)]
"""Hundredths of a credit: a positive whole number, never a float, a string or a bool."""

AreaCode = Annotated[str, StringConstraints(pattern=r"^[EWSN][0-9]{8}$")]
"""An ONS area code, e.g. `E09000030` (Tower Hamlets)."""

UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_datetime), AfterValidator(_to_utc)]
IsoDate = Annotated[date, BeforeValidator(_iso_date), AfterValidator(_within_calendar)]
#: A date in a query (`from`, `to`): the same calendar as the events', so a far-past day is a 422, not a 500.
CalendarDate = Annotated[date, AfterValidator(_within_calendar)]
StrictBool = Annotated[bool, Field(strict=True)]
_TYPE_NAME = r"[A-Za-z][A-Za-z0-9_.-]{0,99}"
EventType = Annotated[str, StringConstraints(pattern=f"^{_TYPE_NAME}$")]


def _text(min_length: int, max_length: int) -> Any:
    return Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length),
        AfterValidator(_storable),
    ]


Text200 = _text(1, 200)
Text500 = _text(1, 500)
OptionalText500 = _text(0, 500)
OptionalText100 = _text(0, 100)
OptionalText200 = _text(0, 200)

AgeBand = Literal["under_16", "16-24", "25-34", "35-44", "45-54", "55-64", "65+", "prefer_not_to_say"]
SebGroup = Literal["professional", "intermediate", "lower", "other", "prefer_not_to_say"]
#: The volunteer's background in detail, as a code (docs/design.md §5.16): the answers to the Social Mobility
#: Commission's question "What was the occupation of your main household earner when you were aged about 14?"
#: (Social Mobility Commission, "Simplifying how employers measure socio-economic background", 2021). Kept in
#: PostgreSQL only (`volunteers.seb_detail`), never on Kafka.
SebOccupation = Literal[
    "modern_professional", "clerical_and_intermediate", "senior_manager_or_administrator", "technical_and_craft",
    "semi_routine_manual_and_service", "routine_manual_and_service", "middle_or_junior_manager",
    "traditional_professional", "long_term_unemployed", "small_business_owner", "other", "dont_know",
    "prefer_not_to_say",
]
SEB_OCCUPATIONS: tuple[str, ...] = SebOccupation.__args__  # type: ignore[attr-defined]
OrgKind = Literal["community", "partner"]
OpportunityCategory = Literal["course", "training", "culture", "sport", "work_experience", "other"]
#: The kind of activity logged hours were (docs/design.md §5.9); hours logged before it existed count as "other".
ActivityCategory = Literal[
    "befriending", "food_and_essentials", "environment", "sport_and_wellbeing", "arts_and_culture",
    "education_and_mentoring", "admin_and_fundraising", "other",
]
ACTIVITY_CATEGORIES: tuple[str, ...] = ActivityCategory.__args__  # type: ignore[attr-defined]
#: Why an entry is corrected (docs/design.md §5.14): the code travels on Kafka, the words stay in PostgreSQL.
CorrectionReason = Literal["approved_in_error", "wrong_volunteer", "wrong_amount", "duplicate", "made_by_mistake",
                           "other"]
CORRECTION_REASONS: tuple[str, ...] = CorrectionReason.__args__  # type: ignore[attr-defined]


# --- envelope -------------------------------------------------------------------------------


class Envelope(BaseModel):
    """What travels on every topic. `payload` is the event's own fields, as JSON-ready values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID
    type: EventType
    version: Annotated[int, Field(strict=True, ge=1)]
    occurred_at: UtcDatetime
    actor: Text200
    payload: dict[str, Any]


# --- payloads -------------------------------------------------------------------------------


class EventPayload(BaseModel):
    """Base of every payload. The type name on the wire is the class name; `version` is the schema version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: ClassVar[int] = 1
    topic: ClassVar[str]
    #: Fields read from events written before they were dropped, never written (docs/design.md §5.16): left out
    #: of every event `new_event` makes, whatever the payload holds.
    read_only_fields: ClassVar[frozenset[str]] = frozenset()

    @property
    def partition_key(self) -> str:
        raise NotImplementedError


class ActivityPayload(EventPayload):
    """Touches a volunteer's credits; keyed by that volunteer on `tc.activity` so it is applied in order."""

    topic: ClassVar[str] = TOPIC_ACTIVITY

    @property
    def partition_key(self) -> str:
        return self.volunteer_id  # type: ignore[attr-defined,no-any-return]


class AdminPayload(EventPayload):
    """A registry change, keyed by the entity it describes."""

    topic: ClassVar[str] = TOPIC_ADMIN


class HoursLogged(ActivityPayload):
    """Hours an organisation reports; they earn nothing until approved. `date` is checked against the envelope.
    The description of the work stays in PostgreSQL (`event_notes`, docs/design.md §5.16); `activity` is read from
    events written before that, and ignored: never written."""

    read_only_fields: ClassVar[frozenset[str]] = frozenset({"activity"})

    volunteer_id: Id
    org_id: Id
    date: IsoDate
    minutes: Annotated[int, Field(strict=True, ge=1, le=1440)]
    activity: OptionalText200 = ""
    #: Optional and defaulted, so version 1 events written before it still decode (as "other").
    category: ActivityCategory = "other"


class HoursApproved(ActivityPayload):
    log_event_id: UUID
    volunteer_id: Id
    org_id: Id


class HoursRejected(ActivityPayload):
    """The reason's words stay in PostgreSQL (`event_notes`, docs/design.md §5.16); `reason` is read from events
    written before that, and ignored: never written."""

    read_only_fields: ClassVar[frozenset[str]] = frozenset({"reason"})

    log_event_id: UUID
    volunteer_id: Id
    org_id: Id
    reason: OptionalText500 = ""


class OpportunityBooked(ActivityPayload):
    volunteer_id: Id
    opportunity_id: Id
    partner_id: Id
    amount: Amount
    #: The volunteer's spend code that authorises a booking made by someone else (docs/design.md §5.6).
    spend_code_id: UUID | None = None


class BookingCancelled(ActivityPayload):
    booking_event_id: UUID
    volunteer_id: Id


class BookingAttended(ActivityPayload):
    booking_event_id: UUID
    volunteer_id: Id


class BookingExpired(ActivityPayload):
    """A hold that lapsed: neither attended nor cancelled in time after its session (docs/design.md §5.11).
    Produced by the hold-release job only, with an event id derived from the booking's."""

    booking_event_id: UUID
    volunteer_id: Id


class BookingNoShow(ActivityPayload):
    """The partner says the volunteer did not come (docs/design.md §5.11). `forfeit` is the programme's no-show
    cost as the API applied it when it accepted the request: true, the held credits go to the partner; false,
    back to the volunteer. On the event, so a replay decides the same whatever the settings are by then."""

    booking_event_id: UUID
    volunteer_id: Id
    forfeit: StrictBool


class CreditsRedeemed(ActivityPayload):
    volunteer_id: Id
    partner_id: Id
    amount: Amount
    opportunity_id: Id | None = None
    #: The volunteer's spend code that authorises a redemption made by someone else (docs/design.md §5.6).
    spend_code_id: UUID | None = None


class CreditsGifted(ActivityPayload):
    """Keyed by the sender: the balance that must cover it."""

    from_volunteer_id: Id
    to_volunteer_id: Id
    amount: Amount

    @model_validator(mode="after")
    def _not_to_self(self) -> CreditsGifted:
        if self.from_volunteer_id == self.to_volunteer_id:
            raise ValueError("a volunteer cannot gift credits to themselves")
        return self

    @property
    def partition_key(self) -> str:
        return self.from_volunteer_id


class EntryReversed(ActivityPayload):
    """A correction: ids and a coded reason only; the reason's words are kept in PostgreSQL, where they can be
    erased (docs/design.md §5.14). `reason` is read from events written before the code existed, never written."""

    read_only_fields: ClassVar[frozenset[str]] = frozenset({"reason"})

    target_event_id: UUID
    volunteer_id: Id
    reason_code: CorrectionReason = "other"
    reason: OptionalText500 = ""


class OrganisationRegistered(AdminPayload):
    org_id: Id
    name: Text200
    area: AreaCode
    kinds: Annotated[frozenset[OrgKind], Field(min_length=1)]
    auto_approve: StrictBool = False

    @field_serializer("kinds", when_used="json")
    def _kinds_in_order(self, kinds: frozenset[str]) -> list[str]:
        return sorted(kinds)

    @property
    def partition_key(self) -> str:
        return self.org_id


class VolunteerRegistered(AdminPayload):
    """What the stream processors need only: names, contact details and the detailed background stay in the API's
    database (docs/design.md §3.4, §5.16); the coded answers travel only with consent to statistics.

    `seb_detail` is read from events written before it was dropped, and ignored. An event written before the
    consent rule, with answers and no consent, still decodes: `without_unconsented_answers` is what the worker
    keeps of it."""

    read_only_fields: ClassVar[frozenset[str]] = frozenset({"seb_detail"})

    volunteer_id: Id
    area: AreaCode
    age_band: AgeBand | None = None
    seb: SebGroup | None = None
    seb_detail: OptionalText100 | None = None
    first_time_volunteer: StrictBool | None = None
    consent_stats: StrictBool

    @model_validator(mode="after")
    def _answers_only_with_consent(self, info: ValidationInfo) -> VolunteerRegistered:
        if (info.context or {}).get(FROM_TOPIC):
            return self  # written before the rule: decoded, and the worker keeps only what consent allows
        if self.seb_detail is not None:
            raise ValueError("the detailed background stays in PostgreSQL and never travels")
        if not self.consent_stats and (self.age_band is not None or self.seb is not None):
            raise ValueError("age band and background travel only with consent to statistics")
        return self

    def without_unconsented_answers(self) -> VolunteerRegistered:
        """The event as the worker applies it: the age band and background only with consent, never the detail."""
        if self.consent_stats:
            return self.model_copy(update={"seb_detail": None})
        return self.model_copy(update={"age_band": None, "seb": None, "seb_detail": None})

    @property
    def partition_key(self) -> str:
        return self.volunteer_id


class ConsentChanged(AdminPayload):
    """A volunteer gives or withdraws consent to statistics (docs/design.md §5.7): the coded answers travel only
    with consent, and never the free-text detail."""

    volunteer_id: Id
    consent_stats: StrictBool
    age_band: AgeBand | None = None
    seb: SebGroup | None = None

    @model_validator(mode="after")
    def _answers_only_with_consent(self) -> ConsentChanged:
        if not self.consent_stats and (self.age_band is not None or self.seb is not None):
            raise ValueError("age band and background travel only with consent to statistics")
        return self

    @property
    def partition_key(self) -> str:
        return self.volunteer_id  # after the volunteer's registration, on the same partition


class OpportunityListed(AdminPayload):
    opportunity_id: Id
    partner_id: Id
    title: Text200
    category: OpportunityCategory
    cost: Amount
    capacity: Annotated[int, Field(strict=True, ge=1, le=100_000)] | None = None
    area: AreaCode
    starts_at: UtcDatetime | None = None
    #: The series a session of a repeating opportunity belongs to (docs/design.md §5.13): an id only. Optional
    #: and defaulted, so version 1 events written before it still decode (as a one-off opportunity).
    series_id: Id | None = None

    @property
    def partition_key(self) -> str:
        return self.partner_id  # after the partner's registration, on the same partition


class MembershipStarted(AdminPayload):
    """A volunteer joins an organisation: ids only, nothing personal (docs/design.md §4, §5.4)."""

    membership_id: UUID
    org_id: Id
    volunteer_id: Id

    @property
    def partition_key(self) -> str:
        return self.volunteer_id  # after the volunteer's registration, before the membership ends


class MembershipEnded(AdminPayload):
    """A membership ends; its start stays in the history (docs/design.md §5.4)."""

    membership_id: UUID
    org_id: Id
    volunteer_id: Id

    @property
    def partition_key(self) -> str:
        return self.volunteer_id


class PostingOut(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    account: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    amount: Annotated[int, Field(strict=True)]


class EntryCommitted(EventPayload):
    """An entry the ledger committed, published on `tc.ledger` for the statistics processor."""

    topic: ClassVar[str] = TOPIC_LEDGER

    entry_id: Annotated[int, Field(strict=True)]
    event_id: UUID
    kind: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    occurred_at: UtcDatetime
    volunteer_id: str | None
    org_id: str | None
    opportunity_id: str | None
    related_event_id: UUID | None
    postings: tuple[PostingOut, ...]

    @model_validator(mode="after")
    def _balanced(self) -> EntryCommitted:
        if len(self.postings) < 2:
            raise ValueError("an entry has at least two postings")
        if sum(p.amount for p in self.postings) != 0:
            raise ValueError("postings of an entry must sum to zero")
        return self

    @property
    def partition_key(self) -> str:
        return self.volunteer_id or self.org_id or str(self.event_id)


class PostingLike(Protocol):
    @property
    def account(self) -> str: ...
    @property
    def amount(self) -> int: ...


@dataclass(frozen=True, slots=True)
class CommittedEntry:
    """An entry the ledger has just committed, as the worker publishes it on `tc.ledger`.

    The fields and the JSON of `EntryCommitted`, without a pydantic model per entry: every value comes from a
    draft the ledger rules made from a validated event and PostgreSQL has just accepted, so building and
    validating a thousand models a batch (then serialising them) would check again what is known. The
    statistics consumer reads the JSON back through `EntryCommitted`, which validates it.
    """

    entry_id: int
    event_id: UUID
    kind: str
    occurred_at: datetime
    volunteer_id: str | None
    org_id: str | None
    opportunity_id: str | None
    related_event_id: UUID | None
    postings: tuple[PostingLike, ...]

    @property
    def partition_key(self) -> str:
        return self.volunteer_id or self.org_id or str(self.event_id)

    def to_json(self) -> bytes:
        """The bytes `EntryCommitted.model_dump_json()` gives for the same entry."""
        return json.dumps(
            {
                "entry_id": self.entry_id,
                "event_id": str(self.event_id),
                "kind": self.kind,
                "occurred_at": _json_utc(self.occurred_at),
                "volunteer_id": self.volunteer_id,
                "org_id": self.org_id,
                "opportunity_id": self.opportunity_id,
                "related_event_id": None if self.related_event_id is None else str(self.related_event_id),
                "postings": [{"account": p.account, "amount": p.amount} for p in self.postings],
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()


def _json_utc(value: datetime) -> str:
    """pydantic's JSON form of an aware datetime in UTC: ISO 8601 ending in `Z`."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


_PAYLOAD_CLASSES: tuple[type[EventPayload], ...] = (
    HoursLogged,
    HoursApproved,
    HoursRejected,
    OpportunityBooked,
    BookingCancelled,
    BookingAttended,
    BookingExpired,
    BookingNoShow,
    CreditsRedeemed,
    CreditsGifted,
    EntryReversed,
    OrganisationRegistered,
    VolunteerRegistered,
    ConsentChanged,
    OpportunityListed,
    MembershipStarted,
    MembershipEnded,
    EntryCommitted,
)

#: (type name, version) -> payload model.
EVENT_TYPES: dict[tuple[str, int], type[BaseModel]] = {(cls.__name__, cls.version): cls for cls in _PAYLOAD_CLASSES}
#: type name -> the topic it is produced to.
TOPIC_OF: dict[str, str] = {cls.__name__: cls.topic for cls in _PAYLOAD_CLASSES}

Payload = (
    HoursLogged
    | HoursApproved
    | HoursRejected
    | OpportunityBooked
    | BookingCancelled
    | BookingAttended
    | BookingExpired
    | BookingNoShow
    | CreditsRedeemed
    | CreditsGifted
    | EntryReversed
    | OrganisationRegistered
    | VolunteerRegistered
    | ConsentChanged
    | OpportunityListed
    | MembershipStarted
    | MembershipEnded
    | EntryCommitted
)


# --- decoding -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodedEvent:
    envelope: Envelope
    payload: EventPayload

    @property
    def type(self) -> str:
        return self.envelope.type

    @property
    def event_id(self) -> UUID:
        return self.envelope.event_id

    @property
    def version(self) -> int:
        return self.envelope.version

    @property
    def topic(self) -> str:
        return TOPIC_OF[self.envelope.type]

    @property
    def partition_key(self) -> str:
        return self.payload.partition_key


@dataclass(frozen=True)
class Undecodable:
    """Why bytes are not an event. `event_id` and `type` are filled in whenever they could be read."""

    reason: str
    detail: str
    event_id: UUID | None = None
    type: str | None = None


class _BadJson(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _BadJson(f"{name} is not a number JSON allows")


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _BadJson("duplicate key in a JSON object")  # parsers disagree on which value wins
    return obj


def decode_event(raw: bytes) -> DecodedEvent | Undecodable:
    """Bytes from a topic -> the event, or why not. Never raises."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        return Undecodable(RejectReason.UNDECODABLE.value, f"expected bytes, got {type(raw).__name__}")
    if len(raw) > MAX_EVENT_BYTES:
        return Undecodable(RejectReason.UNDECODABLE.value, "too large")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return Undecodable(RejectReason.UNDECODABLE.value, "not UTF-8")
    try:
        obj = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_refuse_duplicates)
    except _BadJson as exc:
        return Undecodable(RejectReason.UNDECODABLE.value, f"not JSON: {exc}")
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        return Undecodable(RejectReason.UNDECODABLE.value, _clip(f"not JSON: {_printable(str(exc))}"))
    except RecursionError:
        return Undecodable(RejectReason.UNDECODABLE.value, "not JSON: nested too deeply")
    if not isinstance(obj, dict):
        return Undecodable(RejectReason.UNDECODABLE.value, f"not a JSON object but {_json_kind(obj)}")

    try:
        envelope = Envelope.model_validate(obj)
    except ValidationError as exc:
        event_id, event_type = _salvage_ids(obj)
        return Undecodable(RejectReason.INVALID_ENVELOPE.value, summarise(exc), event_id, event_type)

    if envelope.type not in TOPIC_OF:
        return _rejected(RejectReason.UNKNOWN_TYPE, f"no event type {envelope.type!r}", envelope)
    model = EVENT_TYPES.get((envelope.type, envelope.version))
    if model is None:
        known = sorted(version for name, version in EVENT_TYPES if name == envelope.type)
        return _rejected(
            RejectReason.UNKNOWN_VERSION,
            f"{envelope.type} version {envelope.version} is not supported (known: {', '.join(map(str, known))})",
            envelope,
        )
    try:
        payload = model.model_validate(envelope.payload, context={FROM_TOPIC: True})
    except ValidationError as exc:
        return _rejected(RejectReason.INVALID_PAYLOAD, summarise(exc), envelope)
    problem = _inconsistency(envelope, payload)  # type: ignore[arg-type]
    if problem is not None:
        return _rejected(RejectReason.INVALID_PAYLOAD, problem, envelope)
    return DecodedEvent(envelope, payload)  # type: ignore[arg-type]


def check_key(item: DecodedEvent | Undecodable, key: bytes | None) -> DecodedEvent | Undecodable:
    """The event, if its record was keyed by its partition key; else why not (`wrong_key`). Never raises.

    A volunteer's events are applied in order only because they share a key, hence a partition (docs/design.md §4).
    An event on another key, or on none, may sit on another partition and overtake the events before it.
    """
    if isinstance(item, Undecodable) or key == item.partition_key.encode("utf-8"):
        return item
    came = "no key" if key is None else f"key {bytes(key[:80])!r}"
    return _rejected(RejectReason.WRONG_KEY, f"{item.type} is keyed by {item.partition_key!r}, came with {came}",
                     item.envelope)


def _rejected(reason: RejectReason, detail: str, envelope: Envelope) -> Undecodable:
    return Undecodable(reason.value, _clip(detail), envelope.event_id, envelope.type)


def _inconsistency(envelope: Envelope, payload: EventPayload) -> str | None:
    """Rules that need both the envelope and the payload."""
    if isinstance(payload, HoursLogged):
        if (payload.date - envelope.occurred_at.date()).days > MAX_DAYS_AHEAD:
            return f"date: {payload.date.isoformat()} is in the future (event occurred {envelope.occurred_at.date()})"
    return None


def _salvage_ids(obj: dict[str, Any]) -> tuple[UUID | None, str | None]:
    """Best effort, so that even a rejected envelope can be looked up by its event id."""
    event_id: UUID | None = None
    raw_id = obj.get("event_id")
    if isinstance(raw_id, str) and len(raw_id) <= 64:
        try:
            event_id = UUID(raw_id)
        except ValueError:
            pass
    raw_type = obj.get("type")
    event_type = raw_type if isinstance(raw_type, str) and re.fullmatch(_TYPE_NAME, raw_type) else None
    return event_id, event_type


def summarise(exc: ValidationError) -> str:
    """pydantic's errors as `field.path: message; ...`, short enough to store and show."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        message = _printable(error["msg"].removeprefix("Value error, "))
        path = ".".join(_printable(str(p))[:40] for p in error["loc"])
        parts.append(f"{path}: {message}" if path else message)
    return _clip("; ".join(parts))


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii") for c in text)


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL_CHARS else text[: _MAX_DETAIL_CHARS - 1] + "…"


def _json_kind(value: object) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


# --- encoding -------------------------------------------------------------------------------


def new_event(
    payload: EventPayload,
    *,
    actor: str,
    event_id: UUID | None = None,
    occurred_at: datetime | None = None,
) -> Envelope:
    """Wrap a payload in an envelope. Raises `ValueError` (or pydantic's `ValidationError`, a subclass)
    rather than build an event `decode_event` would refuse."""
    model = type(payload)
    if EVENT_TYPES.get((model.__name__, getattr(model, "version", None))) is not model:  # type: ignore[arg-type]
        raise TypeError(f"{model.__name__} is not a registered event payload")
    envelope = Envelope(
        event_id=event_id if event_id is not None else uuid4(),
        type=model.__name__,
        version=model.version,
        occurred_at=occurred_at if occurred_at is not None else datetime.now(UTC),
        actor=actor,
        payload=payload.model_dump(mode="json", exclude=set(model.read_only_fields)),
    )
    problem = _inconsistency(envelope, payload)
    if problem is not None:
        raise ValueError(problem)
    return envelope


def encode_envelope(envelope: Envelope) -> bytes:
    """Compact UTF-8 JSON, as produced to Kafka."""
    data = json.dumps(envelope.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return data.encode("utf-8")


def encode_event(
    payload: EventPayload,
    *,
    actor: str,
    event_id: UUID | None = None,
    occurred_at: datetime | None = None,
) -> tuple[Envelope, bytes]:
    envelope = new_event(payload, actor=actor, event_id=event_id, occurred_at=occurred_at)
    raw = encode_envelope(envelope)
    if len(raw) > MAX_EVENT_BYTES:
        raise ValueError(f"event is {len(raw)} bytes, more than {MAX_EVENT_BYTES}")
    return envelope, raw
