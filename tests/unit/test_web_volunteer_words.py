"""The volunteer's pages speak in credits and words (docs/design.md §8.3): statement lines, durations, dates."""
from __future__ import annotations

from datetime import UTC, datetime

from ledger.domain import EntryKind
from web.volunteer import _line_words, duration, when


def test_each_kind_of_statement_line_reads_as_a_sentence() -> None:
    assert _line_words(EntryKind.HOURS_APPROVED, 300, "Brixton Lunch Club", None) == (
        "Earned 3 credits for hours at Brixton Lunch Club")
    assert _line_words(EntryKind.CREDITS_REDEEMED, -200, "York Hall Leisure Centre", None) == (
        "Paid 2 credits at York Hall Leisure Centre")
    assert _line_words(EntryKind.OPPORTUNITY_BOOKED, -150, "York Hall", "Swim") == (
        "Held 1.50 credits for Swim at York Hall")
    assert _line_words(EntryKind.BOOKING_CANCELLED, 100, "York Hall", "Swim") == "1 credit back: Swim was cancelled"
    assert _line_words(EntryKind.BOOKING_EXPIRED, 200, "York Hall", "Swim") == (
        "2 credits back. Booking released: Swim was not attended in time")
    assert _line_words(EntryKind.BOOKING_NO_SHOW, 150, "York Hall", "Swim") == (
        "1.50 credits back. Did not come to Swim at York Hall")
    assert _line_words(EntryKind.CREDITS_GIFTED, -100, None, None) == "Gave 1 credit as a gift"
    assert _line_words(EntryKind.CREDITS_GIFTED, 250, None, None) == "Received 2.50 credits as a gift"
    assert _line_words(EntryKind.ENTRY_REVERSED, -300, "Brixton Lunch Club", None) == "Correction: 3 credits taken off"


def test_no_line_shows_hundredths_or_a_reason_code() -> None:
    for kind in EntryKind:
        for amount in (-1234, 1234):
            words = _line_words(kind, amount, "Org", "Thing")
            assert "12.34 credits" in words and "1234" not in words and "_" not in words, words


def test_durations_and_starts_are_said_as_people_say_them() -> None:
    assert [duration(m) for m in (45, 60, 90, 300)] == ["45 minutes", "1 hour", "1 hour 30 minutes", "5 hours"]
    assert when(datetime(2027, 1, 9, 10, 0, tzinfo=UTC)) == "Saturday 9 January at 10:00"
    assert when(datetime(2026, 7, 4, 9, 30, tzinfo=UTC)) == "Saturday 4 July at 10:30"  # British Summer Time
    assert when(None) == "any time"
