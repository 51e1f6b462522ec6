"""Volunteer ids: made by the server only, random, pseudonymous (docs/design.md §5.4).

A volunteer's id travels on Kafka, in account keys and in the hash chain, none of which can forget, so it must
say nothing about the person: no name, no e-mail, no number chosen by a client. It is `v-` and 12 hex digits
(48 random bits).
"""
from __future__ import annotations

import random
import re
import secrets

VOLUNTEER_ID = re.compile(r"v-[0-9a-f]{12}")


def new_volunteer_id(rng: random.Random | None = None) -> str:
    """A fresh id from the system's randomness, or from `rng` (the demo's seeded generator, so the demo is the same
    on every run)."""
    bits = rng.getrandbits(48) if rng is not None else secrets.randbits(48)
    return f"v-{bits:012x}"
