"""How the dashboard and the committee report write hours: one format everywhere (docs/design.md §5.3)."""
from __future__ import annotations


def hours_text(minutes: int) -> str:
    """Minutes as hours, to the hundredth of an hour, thousands separated, without trailing zero decimals:
    186600 -> '3,110', 578430 -> '9,640.5', 15 -> '0.25'. The dashboard writes hours the same way."""
    hundredths = round(minutes * 100 / 60)
    sign = "-" if hundredths < 0 else ""
    whole, part = divmod(abs(hundredths), 100)
    decimals = f"{part:02d}".rstrip("0")
    return f"{sign}{whole:,}" + (f".{decimals}" if decimals else "")
