"""Spend codes: a volunteer's one-time authorisation of one payment to one partner (docs/design.md §5.6).

Pure: the digits, how a typed code is read, and the digest under which a code is stored and looked up.
"""
from __future__ import annotations

import hashlib
import re
import secrets

DIGITS = 8
#: How long a code lives unless the volunteer asks otherwise, and the longest it may.
DEFAULT_VALID_MINUTES = 10
MAX_VALID_MINUTES = 30
#: Spaces and dashes a person may type or a display may show between the digits.
_SEPARATORS = re.compile(r"[\s-]+")


def new_code() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(DIGITS))


def read_code(typed: str) -> str | None:
    """The digits of a code as typed ("1234 5678", "1234-5678"), or None if it cannot be a code."""
    digits = _SEPARATORS.sub("", typed)
    return digits if len(digits) == DIGITS and digits.isascii() and digits.isdigit() else None


def shown(code: str) -> str:
    """The digits in two groups of four, as a person reads them out."""
    return f"{code[:4]} {code[4:]}"


def code_digest(partner_id: str, code: str) -> bytes:
    """What is stored: the digits are looked up under the partner's name, never kept. A code lives minutes and
    is single use, so a plain SHA-256 is enough (a stolen table holds nothing still worth guessing for long)."""
    return hashlib.sha256(f"{partner_id}\n{code}".encode()).digest()
