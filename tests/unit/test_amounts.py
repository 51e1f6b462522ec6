import pytest

from ledger.amounts import AmountError, format_credits, minutes_to_hundredths, parse_credits


@pytest.mark.parametrize(("text", "hundredths"), [("1", 100), ("1.5", 150), ("1.50", 150), ("0.01", 1), (" 12.34 ", 1234)])
def test_parse_credits(text: str, hundredths: int) -> None:
    assert parse_credits(text) == hundredths


@pytest.mark.parametrize("text", ["1.005", "abc", "", "NaN", "Infinity", "1e400000"])
def test_parse_credits_refuses_what_is_not_a_hundredth(text: str) -> None:
    with pytest.raises(AmountError):
        parse_credits(text)


@pytest.mark.parametrize(("hundredths", "text"), [(150, "1.50"), (0, "0.00"), (5, "0.05"), (-5, "-0.05"), (100000, "1000.00")])
def test_format_credits(hundredths: int, text: str) -> None:
    assert format_credits(hundredths) == text


@pytest.mark.parametrize(("minutes", "hundredths"), [(60, 100), (90, 150), (1, 2), (20, 33), (45, 75), (0, 0)])
def test_minutes_earn_credits_rounded_half_up(minutes: int, hundredths: int) -> None:
    assert minutes_to_hundredths(minutes) == hundredths


def test_negative_minutes_are_refused() -> None:
    with pytest.raises(AmountError):
        minutes_to_hundredths(-1)
