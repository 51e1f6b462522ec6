"""Kinds of activity that logged hours are (docs/design.md §5.9): codes, their plain words, and reading either."""
from __future__ import annotations

import re

from ledger.events import ACTIVITY_CATEGORIES

#: Each kind's plain words, in the order forms and reports list them.
ACTIVITY_LABELS: dict[str, str] = {
    "befriending": "Befriending",
    "food_and_essentials": "Food and essentials",
    "environment": "Environment",
    "sport_and_wellbeing": "Sport and wellbeing",
    "arts_and_culture": "Arts and culture",
    "education_and_mentoring": "Education and mentoring",
    "admin_and_fundraising": "Admin and fundraising",
    "other": "Other",
}
assert tuple(ACTIVITY_LABELS) == ACTIVITY_CATEGORIES

_SEPARATORS = re.compile(r"[\s_\-/]+")


def _folded(text: str) -> str:
    return _SEPARATORS.sub(" ", text.strip().lower().replace("&", " and ")).strip()


_BY_WORDS = {_folded(words): code for code, words in ACTIVITY_LABELS.items()} | {
    _folded(code): code for code in ACTIVITY_CATEGORIES
}


def activity_category(text: str) -> str | None:
    """The code a person wrote, as the code or the words ("Food & essentials", "food_and_essentials"), or None."""
    return _BY_WORDS.get(_folded(text))
