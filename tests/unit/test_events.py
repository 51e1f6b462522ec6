"""Event schemas and decoding (docs/design.md §4): what goes on Kafka, and what a worker makes of any bytes."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from ledger.domain import Posting

from ledger.events import (
    EVENT_TYPES,
    FROM_TOPIC,
    SEB_OCCUPATIONS,
    MAX_EVENT_BYTES,
    TOPIC_ACTIVITY,
    TOPIC_ADMIN,
    TOPIC_LEDGER,
    TOPIC_OF,
    BookingAttended,
    BookingExpired,
    BookingNoShow,
    BookingCancelled,
    CommittedEntry,
    ConsentChanged,
    CreditsGifted,
    CreditsRedeemed,
    DecodedEvent,
    EntryCommitted,
    EntryReversed,
    Envelope,
    HoursApproved,
    HoursLogged,
    HoursRejected,
    MembershipEnded,
    MembershipStarted,
    OpportunityBooked,
    OpportunityListed,
    OrganisationRegistered,
    PostingOut,
    RejectReason,
    Undecodable,
    VolunteerRegistered,
    decode_event,
    encode_envelope,
    encode_event,
    new_event,
)

WHEN = datetime(2026, 3, 14, 10, 30, tzinfo=UTC)
REASONS = {r.value for r in RejectReason}


def samples() -> list[BaseModel]:
    return [
        HoursLogged(volunteer_id="v-1", org_id="org.1", date=date(2026, 3, 13), minutes=90, category="environment"),
        HoursApproved(log_event_id=uuid4(), volunteer_id="v-1", org_id="org.1"),
        HoursRejected(log_event_id=uuid4(), volunteer_id="v-1", org_id="org.1"),
        OpportunityBooked(volunteer_id="v-1", opportunity_id="swim-01", partner_id="leisure", amount=200),
        BookingCancelled(booking_event_id=uuid4(), volunteer_id="v-1"),
        BookingAttended(booking_event_id=uuid4(), volunteer_id="v-1"),
        BookingExpired(booking_event_id=uuid4(), volunteer_id="v-1"),
        BookingNoShow(booking_event_id=uuid4(), volunteer_id="v-1", forfeit=False),
        CreditsRedeemed(volunteer_id="v-1", partner_id="theatre", amount=150, opportunity_id="panto"),
        CreditsGifted(from_volunteer_id="v-1", to_volunteer_id="v-2", amount=50),
        EntryReversed(target_event_id=uuid4(), volunteer_id="v-1", reason_code="wrong_volunteer"),
        OrganisationRegistered(
            org_id="org.1", name="Mile End Community Café", area="E09000030", kinds=frozenset({"community", "partner"})
        ),
        VolunteerRegistered(
            volunteer_id="v-1",
            area="E09000012",
            age_band="25-34",
            seb="lower",
            first_time_volunteer=True,
            consent_stats=True,
        ),
        ConsentChanged(volunteer_id="v-1", consent_stats=True, age_band="16-24", seb="intermediate"),
        OpportunityListed(
            opportunity_id="swim-01",
            partner_id="leisure",
            title="Swimming session",
            category="sport",
            cost=100,
            capacity=20,
            area="E09000025",
            starts_at=datetime(2026, 4, 1, 18, 0, tzinfo=timezone(timedelta(hours=1))),
        ),
        MembershipStarted(membership_id=uuid4(), org_id="garden", volunteer_id="v-0123456789ab"),
        MembershipEnded(membership_id=uuid4(), org_id="garden", volunteer_id="v-0123456789ab"),
        EntryCommitted(
            entry_id=7,
            event_id=uuid4(),
            kind="credits_gifted",
            occurred_at=WHEN,
            volunteer_id="v-1",
            org_id=None,
            opportunity_id=None,
            related_event_id=None,
            postings=(PostingOut(account="volunteer:v-1", amount=-50), PostingOut(account="volunteer:v-2", amount=50)),
        ),
    ]


def valid_json(payload: BaseModel, /, **envelope_changes: Any) -> dict[str, Any]:
    """A valid event as a JSON object, for tests that then break one part of it."""
    _, raw = encode_event(payload, actor="org:org.1", occurred_at=WHEN)
    obj = json.loads(raw)
    obj.update(envelope_changes)
    return obj


def with_payload(payload: BaseModel, /, **changes: Any) -> bytes:
    obj = valid_json(payload)
    obj["payload"].update(changes)
    return json.dumps(obj).encode()


def rejected(raw: bytes) -> Undecodable:
    result = decode_event(raw)
    assert isinstance(result, Undecodable), result
    assert result.reason in REASONS
    assert len(result.detail) <= 500
    return result


def gift(**changes: Any) -> bytes:
    return with_payload(CreditsGifted(from_volunteer_id="v-1", to_volunteer_id="v-2", amount=50), **changes)


# --- registry -------------------------------------------------------------------------------


def test_every_registered_type_has_a_sample_and_a_topic() -> None:
    assert {(type(p).__name__, 1) for p in samples()} == set(EVENT_TYPES)
    assert set(TOPIC_OF) == {name for name, _ in EVENT_TYPES}
    for (name, version), model in EVENT_TYPES.items():
        assert model.__name__ == name and model.version == version  # type: ignore[attr-defined]


def test_topics() -> None:
    activity = {"HoursLogged", "HoursApproved", "HoursRejected", "OpportunityBooked", "BookingCancelled",
                "BookingAttended", "BookingExpired", "BookingNoShow", "CreditsRedeemed", "CreditsGifted",
                "EntryReversed"}
    assert {n for n, t in TOPIC_OF.items() if t == TOPIC_ACTIVITY} == activity
    assert {n for n, t in TOPIC_OF.items() if t == TOPIC_ADMIN} == {
        "OrganisationRegistered", "VolunteerRegistered", "ConsentChanged", "OpportunityListed", "MembershipStarted", "MembershipEnded"}
    assert {n for n, t in TOPIC_OF.items() if t == TOPIC_LEDGER} == {"EntryCommitted"}


def test_partition_keys() -> None:
    by_type = {type(p).__name__: p for p in samples()}
    assert by_type["CreditsGifted"].partition_key == "v-1"  # the sender  # type: ignore[attr-defined]
    assert by_type["OrganisationRegistered"].partition_key == "org.1"  # type: ignore[attr-defined]
    assert by_type["OpportunityListed"].partition_key == "leisure"  # with its partner  # type: ignore[attr-defined]
    for name in ("HoursLogged", "HoursApproved", "OpportunityBooked", "EntryReversed", "VolunteerRegistered"):
        assert by_type[name].partition_key == "v-1"  # type: ignore[attr-defined]


# --- round trip -----------------------------------------------------------------------------


@pytest.mark.parametrize("payload", samples(), ids=lambda p: type(p).__name__)
def test_round_trip(payload: BaseModel) -> None:
    event_id = uuid4()
    envelope, raw = encode_event(payload, actor="admin", event_id=event_id, occurred_at=WHEN)
    assert envelope.event_id == event_id
    assert envelope.type == type(payload).__name__ and envelope.version == 1

    decoded = decode_event(raw)

    assert isinstance(decoded, DecodedEvent), decoded
    assert decoded.envelope == envelope
    assert decoded.payload == payload
    assert decoded.type == type(payload).__name__
    assert decoded.event_id == event_id
    assert decoded.topic == TOPIC_OF[decoded.type]
    assert encode_envelope(decoded.envelope) == raw


def test_encoding_is_compact_utf8_json() -> None:
    payload = OrganisationRegistered(org_id="o1", name="Café Ünïcode", area="E09000030", kinds=frozenset({"partner"}))
    _, raw = encode_event(payload, actor="admin", occurred_at=WHEN)
    assert "Café Ünïcode".encode() in raw
    assert b": " not in raw and b", " not in raw
    obj = json.loads(raw)
    assert set(obj) == {"event_id", "type", "version", "occurred_at", "actor", "payload"}
    assert obj["occurred_at"] == "2026-03-14T10:30:00Z"


def test_kinds_are_encoded_in_a_stable_order() -> None:
    a = OrganisationRegistered(org_id="o1", name="X", area="E09000030", kinds=["partner", "community"])
    b = OrganisationRegistered(org_id="o1", name="X", area="E09000030", kinds=["community", "partner"])
    eid = uuid4()
    assert encode_event(a, actor="x", event_id=eid, occurred_at=WHEN)[1] == encode_event(
        b, actor="x", event_id=eid, occurred_at=WHEN)[1]


def test_occurred_at_is_normalised_to_utc() -> None:
    local = datetime(2026, 3, 14, 11, 30, tzinfo=timezone(timedelta(hours=1)))
    envelope = new_event(samples()[1], actor="admin", occurred_at=local)
    assert envelope.occurred_at == WHEN and envelope.occurred_at.utcoffset() == timedelta(0)
    obj = valid_json(samples()[1], occurred_at="2026-03-14T11:30:00+01:00")
    decoded = decode_event(json.dumps(obj).encode())
    assert isinstance(decoded, DecodedEvent) and decoded.envelope.occurred_at.tzinfo == UTC


def test_new_event_defaults_an_id_and_the_time() -> None:
    before = datetime.now(UTC)
    a, b = new_event(samples()[1], actor="admin"), new_event(samples()[1], actor="admin")
    assert a.event_id != b.event_id and a.occurred_at >= before


def test_new_event_refuses_what_decode_would_refuse() -> None:
    with pytest.raises(ValidationError):
        new_event(samples()[1], actor="admin", occurred_at=datetime(2026, 3, 14))  # naive
    with pytest.raises(ValidationError):
        new_event(samples()[1], actor="")
    with pytest.raises(ValueError):
        new_event(HoursLogged(volunteer_id="v", org_id="o", date=date(2026, 3, 20), minutes=60, activity="a"),
                  actor="admin", occurred_at=WHEN)

    class NotAnEvent(BaseModel):
        x: int = 1

    with pytest.raises(TypeError):
        encode_event(NotAnEvent(), actor="admin")  # type: ignore[arg-type]


def test_text_is_stripped() -> None:
    logged = HoursLogged(volunteer_id="v", org_id="o", date=date(2026, 3, 1), minutes=60, activity="  gardening \n")
    assert logged.activity == "gardening"


# --- rejections: undecodable ----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe{}",
        b"not json",
        b"{\"event_id\": ",
        b"[1, 2, 3]",
        b"\"a string\"",
        b"42",
        b"null",
        b"{\"a\": NaN}",
        b"{\"a\": Infinity}",
        b"{\"a\": -Infinity}",
        b"{\"a\": 1, \"a\": 2}",
        b"\xef\xbb\xbf{}",  # a byte-order mark
        b"[" * 50_000 + b"]" * 50_000,
        b"{\"a\": " + b"9" * 5000 + b"}",
        "{}".encode("utf-16"),
    ],
)
def test_undecodable(raw: bytes) -> None:
    result = rejected(raw)
    assert result.reason == "undecodable"
    assert result.event_id is None and result.type is None


def test_too_large() -> None:
    obj = valid_json(samples()[0])
    obj["payload"]["activity"] = "x" * MAX_EVENT_BYTES
    result = rejected(json.dumps(obj).encode())
    assert (result.reason, result.detail) == ("undecodable", "too large")


def test_not_bytes() -> None:
    assert rejected(None).reason == "undecodable"  # type: ignore[arg-type]  # a Kafka tombstone


def test_duplicate_payload_key_is_undecodable() -> None:
    raw = gift().replace(b'"amount": 50', b'"amount": 50, "amount": 5000')
    assert b'"amount": 5000' in raw
    assert rejected(raw).reason == "undecodable"


# --- rejections: envelope -------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"event_id": "not-a-uuid"},
        {"event_id": 12},
        {"type": ""},
        {"type": 7},
        {"type": "Hours\u0000Logged"},
        {"version": "1"},
        {"version": 1.0},
        {"version": True},
        {"version": 0},
        {"occurred_at": "2026-03-14T10:30:00"},  # no offset
        {"occurred_at": 1773484200},  # Unix time
        {"occurred_at": "1773484200"},
        {"occurred_at": "0001-01-01T00:00:00+01:00"},  # before year 1 in UTC
        {"actor": ""},
        {"actor": "x" * 201},
        {"actor": None},
        {"payload": []},
        {"payload": "{}"},
        {"extra": "field"},
    ],
    ids=repr,
)
def test_invalid_envelope(change: dict[str, Any]) -> None:
    obj = valid_json(samples()[0], **change)
    result = rejected(json.dumps(obj).encode())
    assert result.reason == "invalid_envelope", result
    assert list(change)[0] in result.detail


@pytest.mark.parametrize("field", ["event_id", "type", "version", "occurred_at", "actor", "payload"])
def test_missing_envelope_field(field: str) -> None:
    obj = valid_json(samples()[0])
    del obj[field]
    result = rejected(json.dumps(obj).encode())
    assert result.reason == "invalid_envelope" and field in result.detail


def test_invalid_envelope_keeps_what_could_be_read() -> None:
    eid = uuid4()
    obj = valid_json(samples()[0], event_id=str(eid), actor="")
    result = rejected(json.dumps(obj).encode())
    assert (result.reason, result.event_id, result.type) == ("invalid_envelope", eid, "HoursLogged")


# --- rejections: type and version -----------------------------------------------------------


def test_unknown_type() -> None:
    eid = uuid4()
    obj = valid_json(samples()[1], event_id=str(eid), type="HoursStolen")
    result = rejected(json.dumps(obj).encode())
    assert (result.reason, result.event_id, result.type) == ("unknown_type", eid, "HoursStolen")


def test_unknown_version() -> None:
    eid = uuid4()
    obj = valid_json(samples()[1], event_id=str(eid), version=2)
    result = rejected(json.dumps(obj).encode())
    assert (result.reason, result.event_id, result.type) == ("unknown_version", eid, "HoursApproved")
    assert "2" in result.detail


# --- rejections: payload --------------------------------------------------------------------


@pytest.mark.parametrize("amount", [1.5, 50.0, "150", "1.50", True, False, None, 0, -50, 100_000_001, [50], {"v": 50}])
def test_amount_must_be_a_positive_whole_number(amount: Any) -> None:
    result = rejected(gift(amount=amount))
    assert result.reason == "invalid_payload"
    assert result.detail.startswith("amount: ")
    assert result.type == "CreditsGifted" and result.event_id is not None


@pytest.mark.parametrize("amount", [1, 100_000_000])
def test_amount_limits(amount: int) -> None:
    assert isinstance(decode_event(gift(amount=amount)), DecodedEvent)


@pytest.mark.parametrize(
    "bad_id", ["v:1", "volunteer:v-1", "", " v1", "v1 ", ".v1", "-v1", "v\n", "v/1", "x" * 65, "vé", 17, None]
)
def test_ids_are_refused_unless_they_can_name_an_account(bad_id: Any) -> None:
    result = rejected(gift(to_volunteer_id=bad_id))
    assert result.reason == "invalid_payload" and "to_volunteer_id" in result.detail


def test_id_with_colon_is_refused_in_python_too() -> None:
    with pytest.raises(ValidationError):
        CreditsRedeemed(volunteer_id="volunteer:x", partner_id="p", amount=1)


def test_gift_to_self_is_refused() -> None:
    result = rejected(gift(to_volunteer_id="v-1"))
    assert result.reason == "invalid_payload" and "themselves" in result.detail
    with pytest.raises(ValidationError):
        CreditsGifted(from_volunteer_id="v-1", to_volunteer_id="v-1", amount=1)


@pytest.mark.parametrize("payload", samples(), ids=lambda p: type(p).__name__)
def test_extra_payload_fields_are_refused(payload: BaseModel) -> None:
    result = rejected(with_payload(payload, surplus="x"))
    assert result.reason == "invalid_payload" and "surplus" in result.detail


def test_no_personal_data_on_volunteer_events() -> None:
    volunteer = next(p for p in samples() if isinstance(p, VolunteerRegistered))
    for field in ("display_name", "name", "email"):
        assert field not in VolunteerRegistered.model_fields
        assert rejected(with_payload(volunteer, **{field: "Ada"})).reason == "invalid_payload"


@pytest.mark.parametrize("payload", samples(), ids=lambda p: type(p).__name__)
def test_missing_required_payload_field(payload: BaseModel) -> None:
    required = [n for n, f in type(payload).model_fields.items() if f.is_required()]
    obj = valid_json(payload)
    del obj["payload"][required[0]]
    result = rejected(json.dumps(obj).encode())
    assert result.reason == "invalid_payload" and required[0] in result.detail


def hours(day: date | str | int, occurred_at: datetime = WHEN, **changes: Any) -> bytes:
    obj = valid_json(
        HoursLogged(volunteer_id="v", org_id="o", date=date(2026, 3, 1), minutes=60, activity="a"),
        occurred_at=occurred_at.isoformat(),
    )
    obj["payload"]["date"] = day.isoformat() if isinstance(day, date) else day
    obj["payload"].update(changes)
    return json.dumps(obj).encode()


def test_hours_may_be_dated_up_to_a_day_ahead() -> None:
    assert isinstance(decode_event(hours(WHEN.date())), DecodedEvent)
    assert isinstance(decode_event(hours(WHEN.date() + timedelta(days=1))), DecodedEvent)
    assert isinstance(decode_event(hours(date(2020, 1, 1))), DecodedEvent)


def test_future_dated_hours_are_refused() -> None:
    result = rejected(hours(WHEN.date() + timedelta(days=2)))
    assert result.reason == "invalid_payload" and "future" in result.detail and result.type == "HoursLogged"
    # The day is taken in UTC: 00:30 on the 15th at +01:00 is still the 14th.
    late = datetime(2026, 3, 15, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert rejected(hours(date(2026, 3, 16), occurred_at=late)).reason == "invalid_payload"
    assert rejected(hours(date(9999, 12, 31))).reason == "invalid_payload"


@pytest.mark.parametrize(
    "day", ["14/03/2026", "2026-3-4", "2026-03-14T00:00:00", "2026-02-30", 0, 20260314, None, "1773446400"]
)
def test_hours_date_must_be_an_iso_date(day: Any) -> None:
    result = rejected(hours(day))
    assert result.reason == "invalid_payload" and "date" in result.detail


@pytest.mark.parametrize(
    "changes",
    [
        {"minutes": 0},
        {"minutes": 1441},
        {"minutes": 90.0},
        {"minutes": "90"},
        {"activity": "x" * 201},  # read from older events, so still checked
        {"activity": "a\u0000b"},
        {"activity": "\ud800"},
    ],
    ids=repr,
)
def test_hours_fields(changes: dict[str, Any]) -> None:
    result = rejected(hours(date(2026, 3, 1), **changes))
    assert result.reason == "invalid_payload" and list(changes)[0] in result.detail


def test_emoji_in_text_is_fine() -> None:
    decoded = decode_event(hours(date(2026, 3, 1), activity="Gardening \U0001F33B"))
    assert isinstance(decoded, DecodedEvent) and decoded.payload.activity.endswith("\U0001F33B")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "changes",
    [
        {"area": "E0900003"},
        {"area": "e09000030"},
        {"area": "X09000030"},
        {"area": "E09\u0660\u0660\u0660\u0660\u0660"},  # Arabic-Indic digits are not ONS digits
        {"kinds": []},
        {"kinds": ["charity"]},
        {"kinds": "partner"},
        {"auto_approve": "true"},
        {"auto_approve": 1},
        {"name": ""},
    ],
    ids=repr,
)
def test_organisation_fields(changes: dict[str, Any]) -> None:
    org = next(p for p in samples() if isinstance(p, OrganisationRegistered))
    result = rejected(with_payload(org, **changes))
    assert result.reason == "invalid_payload" and list(changes)[0] in result.detail


@pytest.mark.parametrize(
    "changes",
    [
        {"age_band": "18-24"},
        {"seb": "working_class"},
        {"seb_detail": "x" * 101},  # read from older events, so still checked
        {"consent_stats": "yes"},
        {"consent_stats": None},
        {"first_time_volunteer": 0},
    ],
    ids=repr,
)
def test_volunteer_fields(changes: dict[str, Any]) -> None:
    volunteer = next(p for p in samples() if isinstance(p, VolunteerRegistered))
    result = rejected(with_payload(volunteer, **changes))
    assert result.reason == "invalid_payload" and list(changes)[0] in result.detail


def test_volunteer_optional_attributes() -> None:
    minimal = VolunteerRegistered(volunteer_id="v", area="E09000030", consent_stats=False)
    decoded = decode_event(encode_event(minimal, actor="admin")[1])
    assert isinstance(decoded, DecodedEvent) and decoded.payload == minimal


@pytest.mark.parametrize(
    "changes",
    [{"category": "party"}, {"cost": 0}, {"capacity": 0}, {"capacity": 100_001}, {"starts_at": "2026-04-01T18:00:00"}],
    ids=repr,
)
def test_opportunity_fields(changes: dict[str, Any]) -> None:
    listed = next(p for p in samples() if isinstance(p, OpportunityListed))
    result = rejected(with_payload(listed, **changes))
    assert result.reason == "invalid_payload" and list(changes)[0] in result.detail


@pytest.mark.parametrize(
    "postings",
    [
        [{"account": "volunteer:a", "amount": -50}, {"account": "volunteer:b", "amount": 40}],
        [{"account": "volunteer:a", "amount": 0}],
        [{"account": "volunteer:a", "amount": -1.5}, {"account": "volunteer:b", "amount": 1.5}],
    ],
)
def test_entry_committed_must_balance(postings: list[dict[str, Any]]) -> None:
    entry = next(p for p in samples() if isinstance(p, EntryCommitted))
    assert rejected(with_payload(entry, postings=postings)).reason == "invalid_payload"


def test_a_correction_carries_a_coded_reason_and_no_words() -> None:
    """docs/design.md §5.14: the reason's words stay in PostgreSQL; an older event's words still decode."""
    reversal = EntryReversed(target_event_id=uuid4(), volunteer_id="v-1", reason_code="duplicate")
    assert valid_json(reversal)["payload"].get("reason", "") == ""
    assert rejected(with_payload(reversal, reason_code="because")).reason == "invalid_payload"
    older = decode_event(with_payload(reversal, reason="hours logged against the wrong person"))
    assert isinstance(older, DecodedEvent) and older.payload.reason_code == "duplicate"


def test_payload_detail_stays_short_and_printable() -> None:
    obj = valid_json(samples()[0])
    obj["payload"].update({f"surplus\u0000{i:04d}" + "k" * 100: i for i in range(300)})
    obj["payload"]["minutes"] = "ninety"
    result = rejected(json.dumps(obj).encode())
    assert result.reason == "invalid_payload"
    assert len(result.detail) <= 500 and result.detail.isprintable()
    assert "minutes" in result.detail


# --- fuzzing: decode_event never raises -----------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


def check(raw: bytes) -> None:
    result = decode_event(raw)
    assert isinstance(result, (DecodedEvent, Undecodable))
    if isinstance(result, Undecodable):
        assert result.reason in REASONS and len(result.detail) <= 500
        result.detail.encode("utf-8")  # storable
    else:  # whatever was accepted can be written out again and means the same
        again = decode_event(encode_envelope(result.envelope))
        assert isinstance(again, DecodedEvent) and again.payload == result.payload


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_fuzz_bytes(raw: bytes) -> None:
    check(raw)


@settings(max_examples=300)
@given(json_values)
def test_fuzz_json(value: Any) -> None:
    check(json.dumps(value).encode())


@settings(max_examples=300)
@given(
    st.fixed_dictionaries(
        {
            "event_id": st.uuids().map(str) | json_values,
            "type": st.sampled_from(sorted(TOPIC_OF)) | json_values,
            "version": st.integers(-1, 3) | json_values,
            "occurred_at": st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()) | json_values,
            "actor": st.text(max_size=210) | json_values,
            "payload": st.dictionaries(st.text(max_size=12), json_values, max_size=6),
        }
    )
)
def test_fuzz_envelopes(obj: dict[str, Any]) -> None:
    check(json.dumps(obj).encode())


@settings(max_examples=500)
@given(st.sampled_from(samples()), st.data())
def test_fuzz_one_payload_field(payload: BaseModel, data: st.DataObject) -> None:
    obj = valid_json(payload)
    field = data.draw(st.sampled_from(sorted(obj["payload"])))
    obj["payload"][field] = data.draw(json_values | st.integers() | st.text())
    check(json.dumps(obj).encode())


@given(st.sampled_from(samples()), st.uuids(),
       st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 12, 30), timezones=st.timezones()))
def test_fuzz_round_trip_times_and_ids(payload: BaseModel, event_id: UUID, occurred_at: datetime) -> None:
    if occurred_at.utcoffset() is None:
        return
    if isinstance(payload, HoursLogged) and payload.date > (occurred_at.astimezone(UTC) + timedelta(days=1)).date():
        return
    envelope, raw = encode_event(payload, actor="admin", event_id=event_id, occurred_at=occurred_at)
    decoded = decode_event(raw)
    assert isinstance(decoded, DecodedEvent) and decoded.envelope == envelope and decoded.payload == payload
    # Compared in UTC: a wall-clock time that a DST change skips never equals anything in another zone (PEP 495).
    assert isinstance(envelope, Envelope) and envelope.occurred_at == occurred_at.astimezone(UTC)
    assert envelope.occurred_at.tzinfo == UTC


@given(
    entry_id=st.integers(min_value=1, max_value=2**62),
    kind=st.sampled_from(["hours_approved", "credits_gifted", "entry_reversed"]),
    occurred_at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    volunteer_id=st.one_of(st.none(), st.text(min_size=1, max_size=20)),
    org_id=st.one_of(st.none(), st.text(min_size=1, max_size=20)),
    related=st.one_of(st.none(), st.uuids()),
    amount=st.integers(min_value=1, max_value=100_000_000),
    account=st.text(min_size=1, max_size=40),
)
def test_a_committed_entry_is_published_as_entry_committed_would_be(
    entry_id: int, kind: str, occurred_at: datetime, volunteer_id: str | None, org_id: str | None,
    related: UUID | None, amount: int, account: str,
) -> None:
    """The worker's hand-built tc.ledger JSON is byte for byte pydantic's, and reads back as the same entry."""
    postings = (Posting(account, -amount), Posting("volunteer:x", amount))
    event_id = uuid4()
    fast = CommittedEntry(entry_id, event_id, kind, occurred_at, volunteer_id, org_id, None, related, postings)
    model = EntryCommitted(entry_id=entry_id, event_id=event_id, kind=kind, occurred_at=occurred_at,
                           volunteer_id=volunteer_id, org_id=org_id, opportunity_id=None, related_event_id=related,
                           postings=tuple(PostingOut(account=p.account, amount=p.amount) for p in postings))
    assert fast.to_json() == model.model_dump_json().encode()
    assert EntryCommitted.model_validate_json(fast.to_json()) == model
    assert fast.partition_key == model.partition_key


def test_a_committed_entry_in_another_offset_is_published_in_utc() -> None:
    postings = (Posting("issuer:o", -100), Posting("volunteer:v", 100))
    at = datetime(2026, 6, 1, 13, 30, tzinfo=timezone(timedelta(hours=1)))
    fast = CommittedEntry(1, uuid4(), "hours_approved", at, "v", "o", None, None, postings)
    assert b'"occurred_at":"2026-06-01T12:30:00Z"' in fast.to_json()


def test_a_consent_change_carries_answers_only_with_consent() -> None:
    withdrawn = ConsentChanged(volunteer_id="v-1", consent_stats=False)
    assert withdrawn.age_band is None and withdrawn.seb is None and withdrawn.partition_key == "v-1"
    for answers in ({"age_band": "25-34"}, {"seb": "lower"}):
        with pytest.raises(ValidationError, match="only with consent"):
            ConsentChanged(volunteer_id="v-1", consent_stats=False, **answers)
    assert "seb_detail" not in ConsentChanged.model_fields  # free text never travels on the topic
    assert TOPIC_OF["ConsentChanged"] == TOPIC_ADMIN


@pytest.mark.parametrize(("field", "value"), [
    ("occurred_at", "1899-12-31T23:59:59Z"), ("occurred_at", "2101-01-01T00:00:00Z"),
    ("occurred_at", "0001-01-01T00:00:00Z"), ("occurred_at", "9999-12-31T00:00:00+00:00"),
])
def test_a_moment_outside_1900_to_2100_is_refused(field: str, value: str) -> None:
    """docs/design.md §4.2: dates run from 1900 to 2100; the decoder refuses any other, the worker dead-letters it."""
    assert rejected(json.dumps(valid_json(samples()[0], **{field: value})).encode()).reason == "invalid_envelope"


@pytest.mark.parametrize("day", ["1899-12-31", "2101-01-01", "0001-01-01"])
def test_a_date_outside_1900_to_2100_is_refused(day: str) -> None:
    logged = next(p for p in samples() if isinstance(p, HoursLogged))
    assert rejected(with_payload(logged, date=day)).reason == "invalid_payload"


# --- nothing personal on the topics (docs/design.md §5.16) ------------------------------------------------------


def test_words_set_on_a_payload_never_travel() -> None:
    logged = HoursLogged(volunteer_id="v", org_id="o", date=date(2026, 3, 1), minutes=60, activity="Visited Mrs Patel")
    rejected_ = HoursRejected(log_event_id=uuid4(), volunteer_id="v", org_id="o", reason="Ann was ill")
    fixed = EntryReversed(target_event_id=uuid4(), volunteer_id="v", reason="Ben's hours, not Ann's")
    for payload, field in ((logged, "activity"), (rejected_, "reason"), (fixed, "reason")):
        envelope, raw = encode_event(payload, actor="admin", occurred_at=WHEN)
        assert field not in envelope.payload
        assert b"Patel" not in raw and b"Ann" not in raw


def test_events_written_with_words_before_still_decode() -> None:
    old = new_event(HoursLogged(volunteer_id="v", org_id="o", date=date(2026, 3, 1), minutes=60), actor="admin",
                    occurred_at=WHEN)
    raw = encode_envelope(old.model_copy(update={"payload": {**old.payload, "activity": "Gardening"}}))
    decoded = decode_event(raw)
    assert isinstance(decoded, DecodedEvent) and decoded.payload.activity == "Gardening"  # type: ignore[attr-defined]


def test_a_registration_carries_answers_only_with_consent_and_never_the_detail() -> None:
    for answers in ({"age_band": "25-34"}, {"seb": "lower"}):
        with pytest.raises(ValidationError, match="only with consent"):
            VolunteerRegistered(volunteer_id="v", area="E09000030", consent_stats=False, **answers)
    with pytest.raises(ValidationError, match="never travels"):
        VolunteerRegistered(volunteer_id="v", area="E09000030", consent_stats=True, seb_detail="routine manual")


def test_an_older_registration_with_answers_and_no_consent_decodes_and_loses_them() -> None:
    minimal = new_event(VolunteerRegistered(volunteer_id="v", area="E09000030", consent_stats=False), actor="admin",
                        occurred_at=WHEN)
    raw = encode_envelope(minimal.model_copy(update={"payload": {
        **minimal.payload, "age_band": "25-34", "seb": "lower", "seb_detail": "my dad drove a bus"}}))
    decoded = decode_event(raw)
    assert isinstance(decoded, DecodedEvent)
    kept = decoded.payload.without_unconsented_answers()  # type: ignore[attr-defined]
    assert (kept.age_band, kept.seb, kept.seb_detail, kept.consent_stats) == (None, None, None, False)
    consented = VolunteerRegistered.model_validate(
        {"volunteer_id": "v", "area": "E09000030", "consent_stats": True, "seb": "lower", "seb_detail": "x"},
        context={FROM_TOPIC: True}).without_unconsented_answers()
    assert (consented.seb, consented.seb_detail) == ("lower", None)


def test_the_background_detail_is_the_social_mobility_commissions_list() -> None:
    assert len(SEB_OCCUPATIONS) == 13 and len(set(SEB_OCCUPATIONS)) == 13
    assert {"long_term_unemployed", "small_business_owner", "dont_know", "prefer_not_to_say"} <= set(SEB_OCCUPATIONS)
