"""Every record of every topic after the demo is loaded through the real pipeline, and after the API has registered
a named volunteer and logged and rejected hours in words: nothing personal, no free text, and no background of a
volunteer who did not consent (docs/design.md §5.16).

The check is an allowlist, field by field, of what each event type may carry and of what shape: an id, a UUID, an
amount, a code from a fixed list, a date. A field not listed fails the test, so a field added to an event later
must be added here, and judged, first.
"""
from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from uuid import UUID

import pytest
from rich.console import Console
from sqlalchemy import text

from api.auth import Principal, Role
from api.broker import BrokerLink
from api.deps import Services
from api.services import hours, volunteers
from api.services.volunteers import NewVolunteer
from ledger.events import (
    ACTIVITY_CATEGORIES,
    CORRECTION_REASONS,
    TOPIC_ACTIVITY,
    TOPIC_ADMIN,
    TOPIC_LEDGER,
    TOPIC_REJECTED,
    AgeBand,
    OpportunityCategory,
    RejectReason,
    SebGroup,
)
from ledger.pg.processing import event_status
from tests.e2e.conftest import Stack
from tests.e2e.stack import topic_records, wait_until
from timecredits import demo, demo_people
from timecredits.demo_loader import load_demo

pytestmark = [pytest.mark.broker, pytest.mark.integration]

ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
AREA = re.compile(r"^[EWSN][0-9]{8}$")
ACTOR = re.compile(r"^[a-z_]+(:[A-Za-z0-9._-]+)?$|^[a-z]+$")
DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
DATETIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9]{2}:[0-9]{2})$")
ACCOUNT = re.compile(r"^[a-z_]+(:[A-Za-z0-9._-]+)?$")


def _id(value: object) -> bool:
    return isinstance(value, str) and bool(ID.match(value))


def _uuid(value: object) -> bool:
    try:
        UUID(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


def _optional(check: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda value: value is None or check(value)


def _one_of(values: tuple[str, ...] | Any) -> Callable[[object], bool]:
    allowed = set(values if isinstance(values, tuple) else values.__args__)
    return lambda value: value in allowed


def _amount(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bool(value: object) -> bool:
    return isinstance(value, bool)


def _matches(pattern: re.Pattern[str]) -> Callable[[object], bool]:
    return lambda value: isinstance(value, str) and bool(pattern.match(value))


def _kinds(value: object) -> bool:
    return isinstance(value, list) and all(kind in ("community", "partner") for kind in value)


def _organisation_words(value: object) -> bool:
    """An organisation's name or an opportunity's title: published open data about an organisation, never about a
    person (docs/design.md §5.10); checked against the people's names and words below."""
    return isinstance(value, str) and 0 < len(value) <= 200


#: type -> field -> what its value may be. Nothing else may travel (docs/design.md §5.16).
ALLOWED: dict[str, dict[str, Callable[[object], bool]]] = {
    "HoursLogged": {"volunteer_id": _id, "org_id": _id, "date": _matches(DATE), "minutes": _amount,
                    "category": _one_of(ACTIVITY_CATEGORIES)},
    "HoursApproved": {"log_event_id": _uuid, "volunteer_id": _id, "org_id": _id},
    "HoursRejected": {"log_event_id": _uuid, "volunteer_id": _id, "org_id": _id},
    "OpportunityBooked": {"volunteer_id": _id, "opportunity_id": _id, "partner_id": _id, "amount": _amount,
                          "spend_code_id": _optional(_uuid)},
    "BookingCancelled": {"booking_event_id": _uuid, "volunteer_id": _id},
    "BookingAttended": {"booking_event_id": _uuid, "volunteer_id": _id},
    "BookingExpired": {"booking_event_id": _uuid, "volunteer_id": _id},
    "BookingNoShow": {"booking_event_id": _uuid, "volunteer_id": _id, "forfeit": _bool},
    "CreditsRedeemed": {"volunteer_id": _id, "partner_id": _id, "amount": _amount,
                        "opportunity_id": _optional(_id), "spend_code_id": _optional(_uuid)},
    "CreditsGifted": {"from_volunteer_id": _id, "to_volunteer_id": _id, "amount": _amount},
    "EntryReversed": {"target_event_id": _uuid, "volunteer_id": _id, "reason_code": _one_of(CORRECTION_REASONS)},
    "OrganisationRegistered": {"org_id": _id, "name": _organisation_words, "area": _matches(AREA), "kinds": _kinds,
                               "auto_approve": _bool},
    "VolunteerRegistered": {"volunteer_id": _id, "area": _matches(AREA), "age_band": _optional(_one_of(AgeBand)),
                            "seb": _optional(_one_of(SebGroup)), "first_time_volunteer": _optional(_bool),
                            "consent_stats": _bool},
    "ConsentChanged": {"volunteer_id": _id, "consent_stats": _bool, "age_band": _optional(_one_of(AgeBand)),
                       "seb": _optional(_one_of(SebGroup))},
    "OpportunityListed": {"opportunity_id": _id, "partner_id": _id, "title": _organisation_words,
                          "category": _one_of(OpportunityCategory), "cost": _amount, "capacity": _optional(_amount),
                          "area": _matches(AREA), "starts_at": _optional(_matches(DATETIME)),
                          "series_id": _optional(_id)},
    "MembershipStarted": {"membership_id": _uuid, "org_id": _id, "volunteer_id": _id},
    "MembershipEnded": {"membership_id": _uuid, "org_id": _id, "volunteer_id": _id},
}
ENVELOPE = {"event_id": _uuid, "type": lambda t: t in ALLOWED, "version": _amount,
            "occurred_at": _matches(DATETIME), "actor": _matches(ACTOR), "payload": lambda p: isinstance(p, dict)}
#: What `tc.ledger` carries: an entry the ledger committed, ids and amounts only.
ENTRY = {"entry_id": _amount, "event_id": _uuid, "kind": _id, "occurred_at": _matches(DATETIME),
         "volunteer_id": _optional(_id), "org_id": _optional(_id), "opportunity_id": _optional(_id),
         "related_event_id": _optional(_uuid), "postings": lambda p: isinstance(p, list)}
POSTING = {"account": _matches(ACCOUNT), "amount": lambda a: isinstance(a, int) and not isinstance(a, bool)}

#: The words the API is given in this test: they must reach PostgreSQL and never a topic.
NAME, EMAIL = "Zanele Featherstonehaugh", "zanele.f@example.net"
DESCRIPTION, REASON = "Read the paper to Mr Ogunleye", "Zanele was ill that day"


def _fields_ok(record: dict[str, Any], allowed: dict[str, Callable[[object], bool]], where: str) -> list[str]:
    problems = [f"{where}: field {name!r} may not travel" for name in record if name not in allowed]
    problems += [f"{where}: {name}={record[name]!r} is not the shape allowed" for name, check in allowed.items()
                 if name in record and not check(record[name])]
    return problems


def _event_problems(raw: bytes, where: str) -> list[str]:
    envelope = json.loads(raw)
    problems = _fields_ok(envelope, ENVELOPE, where)
    if problems:
        return problems
    payload, kind = envelope["payload"], envelope["type"]
    problems = _fields_ok(payload, ALLOWED[kind], f"{where} {kind}")
    if kind == "VolunteerRegistered" and not payload["consent_stats"]:
        if payload.get("age_band") is not None or payload.get("seb") is not None:
            problems.append(f"{where}: a volunteer's background without consent: {payload}")
    return problems


def _through_the_api(stack: Stack) -> tuple[str, str, UUID, UUID]:
    """A coordinator registers a named volunteer with an e-mail and a coded background, logs their hours in words
    and rejects them with a reason: the API's own producers."""
    org = "brixton-lunch-club"
    coordinator = Principal(Role.ORG, org_id=org)
    services = Services(engine=stack.engine, producer=BrokerLink(stack.bootstrap, topic_prefix=stack.prefix),
                        admin_token=None)
    try:
        volunteer_id = volunteers.register(services, coordinator, NewVolunteer(
            display_name=NAME, email=EMAIL, area="E09000022", age_band="25-34", seb="lower",
            seb_detail="routine_manual_and_service", consent_stats=False))
        consenting = volunteers.register(services, coordinator, NewVolunteer(
            display_name=NAME + " Junior", email="junior." + EMAIL, area="E09000022", age_band="16-24", seb="lower",
            seb_detail="routine_manual_and_service", consent_stats=True))
        day = date.today() - timedelta(days=1)
        log_id = hours.log(services, coordinator, volunteer_id, org, day, 90, DESCRIPTION, "befriending")
        wait_until(lambda: getattr(event_status(stack.engine, log_id), "status", None) == "applied", 60,
                   "the hours logged through the API to be applied")
        rejection_id = hours.decide(services, coordinator, log_id, False, REASON)
        wait_until(lambda: hours.decision(services, log_id) == "rejected", 60, "the rejection to be applied")
    finally:
        services.producer.close()
    return volunteer_id, consenting, log_id, rejection_id


def test_no_topic_carries_a_name_an_email_free_text_or_an_unconsented_background(stack: Stack) -> None:
    stack.start_worker()
    with stack.producer() as producer:
        loaded = load_demo(producer, stack.engine, Console(quiet=True), lambda: True)
    volunteer_id, consenting, log_id, rejection_id = _through_the_api(stack)

    # The words are kept in PostgreSQL, keyed by the events that carry none.
    with stack.engine.connect() as conn:
        kept = dict(conn.execute(text("SELECT event_id, text FROM event_notes WHERE event_id IN (:l, :r)"),
                                 {"l": log_id, "r": rejection_id}).all())
        detail = {row.id: (row.seb_detail, row.age_band) for row in conn.execute(
            text("SELECT id, seb_detail, age_band FROM volunteers WHERE id IN (:v, :c)"),
            {"v": volunteer_id, "c": consenting})}
        demo_notes = conn.execute(text("SELECT count(*) FROM event_notes")).scalar_one()
    assert kept == {log_id: DESCRIPTION, rejection_id: REASON}
    # No consent, no answers kept at all (docs/design.md §5.7); with consent, the detail's code in PostgreSQL only.
    assert detail == {volunteer_id: (None, None), consenting: ("routine_manual_and_service", "16-24")}
    assert demo_notes > 1000  # every demo log's description

    forbidden = [NAME, EMAIL, DESCRIPTION, REASON, "Featherstonehaugh", "Ogunleye", "routine_manual_and_service",
                 *demo.ACTIVITIES, "logged twice"]
    for _, name, _, _, email in demo_people.STAFF:
        forbidden += [name, email]

    problems: list[str] = []
    counts: dict[str, int] = {}
    for logical in (TOPIC_ACTIVITY, TOPIC_ADMIN, TOPIC_LEDGER, TOPIC_REJECTED):
        records = topic_records(stack, logical)
        counts[logical] = len(records)
        for n, raw in enumerate(records):
            where = f"{logical}#{n}"
            decoded_text = raw.decode("utf-8")
            problems += [f"{where}: carries {word!r}" for word in forbidden if word in decoded_text]
            if logical == TOPIC_LEDGER:
                entry = json.loads(raw)
                problems += _fields_ok(entry, ENTRY, where)
                for posting in entry.get("postings", []):
                    problems += _fields_ok(posting, POSTING, f"{where} posting")
            elif logical == TOPIC_REJECTED:
                dead = json.loads(raw)
                assert dead["reason"] in {r.value for r in RejectReason} or _id(dead["reason"]), dead
                original = base64.b64decode(dead["original"])
                problems += [f"{where}: the original carries {word!r}" for word in forbidden
                             if word.encode() in original]
                if dead["reason"] != RejectReason.UNDECODABLE.value:  # else not JSON: the words checked above
                    problems += _event_problems(original, f"{where} original")
            else:
                problems += _event_problems(raw, where)
    assert not problems, "\n".join(problems[:40])
    assert counts[TOPIC_ACTIVITY] + counts[TOPIC_ADMIN] >= loaded + 4  # the demo's and the API's events
    assert counts[TOPIC_LEDGER] > 1000
