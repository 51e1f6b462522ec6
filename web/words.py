"""What a refusal means, in plain words for the person at the screen (docs/design.md §8.2): never a reason code
or an amount in hundredths."""
from __future__ import annotations

from ledger.amounts import format_credits

_SENTENCES = {
    "insufficient_credits": "there are not enough credits for this",
    "authorisation_required": "the volunteer's spend code is needed",
    "invalid_code": "that is not a spend code for this partner: check the digits",
    "code_expired": "that spend code has expired: ask the volunteer to make a new one",
    "code_used": "that spend code has been used already: ask the volunteer to make a new one",
    "code_amount_exceeded": "that is more than the spend code allows",
    "rate_limited": "too many wrong codes were typed: wait a few minutes and try again",
    "not_a_partner": "that organisation does not take credits",
    "unknown_organisation": "there is no such organisation",
    "invalid_amount": "enter an amount of credits more than zero, like 2 or 1.50",
    "fully_booked": "there are no places left",
    "volunteer_erased": "that volunteer's personal data was erased: nothing new can be recorded for them",
    "places_left": "there are places left: you can book it",
    "already_booked": "you have booked this already",
    "not_waiting": "you are not on that waiting list",
    "too_many_hours": "that would be more than 24 hours in one day",
    "date_too_old": "those hours are too long ago to log here: ask the programme's admin",
    "date_in_future": "those hours have not happened yet",
    "not_a_member": "that volunteer is not a member of this organisation",
    "booking_closed": "that booking was settled already (attended, cancelled, missed or released)",
    "wrong_partner": "that booking is of another organisation's opportunity",
    "unknown_booking": "there is no such booking: it may have been settled already",
    "unknown_opportunity": "there is no such opportunity",
    "opportunity_exists": "an opportunity with that id is listed already",
    "forbidden": "that belongs to another organisation",
    "broker_unavailable": "the system is busy: nothing was done, please try again in a moment",
    "unknown_entry": "there is no such entry: check the id on the statement",
    "not_reversible": "that kind of entry cannot be corrected",
    "already_reversed": "that entry has been corrected already",
    "not_yours_to_correct": "an organisation corrects only its own approvals of hours: ask the programme's admin",
    "correction_window_closed": "approvals can be corrected here for 30 days: ask the programme's admin",
}


def refusal(code: str) -> str:
    """A sentence for a reason code; the same sentence for codes a person need not tell apart."""
    return _SENTENCES.get(code, "that could not be done: please try again, or ask for help")


def not_booked(code: str, title: str) -> str:
    """'Not booked: there are no places left on Swim session.'"""
    words = refusal(code)
    return f"Not booked: {words} on {title}." if code == "fully_booked" else f"Not booked: {words}."


def credits(hundredths: int) -> str:
    """'1 credit', '2.50 credits': amounts as people say them."""
    text = format_credits(hundredths)
    if text.endswith(".00"):
        text = text[:-3]
    return f"{text} credit{'' if text == '1' else 's'}"
