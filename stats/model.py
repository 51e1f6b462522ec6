"""What the statistics answer: rows of figures for a grouping and a period, and cold spots."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from ledger.activities import ACTIVITY_LABELS  # noqa: F401  (re-exported: the statistics label rows with it)

#: A cell describing fewer volunteers than this shows no figures (docs/design.md §5, as UK official statistics do).
SUPPRESSION_THRESHOLD = 5
GROUPINGS = ("month", "quarter", "org", "area", "age_band", "seb", "category", "activity")
#: The figures of a row, in the order CSV exports and reports show them.
FIGURES = (
    "volunteers", "active_volunteers", "new_volunteers", "retained_volunteers", "first_time_volunteers", "hours",
    "credits_earned",
    "credits_spent", "credits_gifted", "bookings", "attendances", "cancellations", "redemptions",
)


@dataclass
class Figures:
    """Counts are integers; hours and credits are integers in minutes and hundredths of a credit."""

    volunteers: int = 0  # distinct volunteers the row describes (any activity): decides suppression
    active_volunteers: int = 0  # approved hours in the period
    new_volunteers: int = 0  # first approved hours ever in the period
    retained_volunteers: int = 0  # active in the period and in the quarter before it
    first_time_volunteers: int = 0  # active, and volunteering for the first time in their lives (asked at sign-up)
    minutes: int = 0
    credits_earned: int = 0
    credits_spent: int = 0  # attended bookings and redemptions: what reached partners
    credits_gifted: int = 0
    bookings: int = 0
    attendances: int = 0
    cancellations: int = 0
    redemptions: int = 0
    #: how many distinct volunteers each figure describes (figure name -> count)
    contributors: dict[str, int] = field(default_factory=dict)

    @property
    def suppressed(self) -> bool:
        """The whole cell describes fewer than 5 volunteers: no figure of it is shown."""
        return self.volunteers < SUPPRESSION_THRESHOLD

    def hidden(self, name: str) -> bool:
        """Whether figure `name` must not be shown: its cell is suppressed, or it describes 1 to 4 volunteers."""
        described = self.contributors.get(name, 0)
        return self.suppressed or 0 < described < SUPPRESSION_THRESHOLD


@dataclass
class Row:
    group: str
    label: str
    figures: Figures
    #: an organisation's kinds (community, partner) when grouped by organisation: which measures it can have
    kinds: list[str] = field(default_factory=list)


@dataclass
class Participation:
    group_by: str
    start: date
    end: date
    rows: list[Row] = field(default_factory=list)
    totals: Figures = field(default_factory=Figures)


@dataclass
class ColdSpot:
    rank: int | None  # None: the area's count is hidden, and it is not ranked (docs/design.md §5.3)
    area: str
    name: str
    need_decile: int
    population: int
    active_volunteers: int  # the true count: callers must not show it when `suppressed`
    per_1000_residents: float
    cold_score: float  # need x (1 - participation relative to the best-served shown area): higher is colder
    #: the count, rate and score must not be shown: fewer than 5 active volunteers, or hidden to protect such an area
    hidden: bool = False

    @property
    def suppressed(self) -> bool:
        """Fewer than 5 active volunteers (and at least one): callers say so only with `hidden` (always set then)."""
        return 0 < self.active_volunteers < SUPPRESSION_THRESHOLD
