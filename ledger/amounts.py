"""Credit amounts: integers in hundredths of a credit, never floats.

One hour earns one credit (100 hundredths) at the default rate.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

HUNDREDTHS_PER_CREDIT = 100
DEFAULT_HUNDREDTHS_PER_HOUR = 100
MAX_HUNDREDTHS = 10**14  # far beyond any real programme, well inside a PostgreSQL bigint


class AmountError(ValueError):
    """An amount that is not a whole number of hundredths of a credit."""


def parse_credits(text: str) -> int:
    """'1.5' or '1.50' -> 150. Refuses more than two decimal places rather than rounding money."""
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError) as exc:
        raise AmountError(f"not a number of credits: {text!r}") from exc
    if not value.is_finite():
        raise AmountError(f"not a number of credits: {text!r}")
    if abs(value) > MAX_HUNDREDTHS // HUNDREDTHS_PER_CREDIT:
        raise AmountError(f"too large: {text!r}")
    hundredths = value * HUNDREDTHS_PER_CREDIT
    if hundredths != hundredths.to_integral_value():
        raise AmountError(f"more than two decimal places: {text!r}")
    return int(hundredths)


def format_credits(hundredths: int) -> str:
    """150 -> '1.50', -5 -> '-0.05'."""
    sign = "-" if hundredths < 0 else ""
    whole, part = divmod(abs(hundredths), HUNDREDTHS_PER_CREDIT)
    return f"{sign}{whole}.{part:02d}"


def minutes_to_hundredths(minutes: int, hundredths_per_hour: int = DEFAULT_HUNDREDTHS_PER_HOUR) -> int:
    """Credits earned for `minutes` of volunteering, rounded half up to the hundredth (90 min -> 150)."""
    if minutes < 0:
        raise AmountError("minutes cannot be negative")
    exact = Decimal(minutes * hundredths_per_hour) / 60
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
