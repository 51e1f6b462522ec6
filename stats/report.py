"""A one-page committee report of a period's participation (`timecredits report 2026-Q3`).

The report is one self-contained HTML document: inline CSS, charts drawn here as inline SVG, no scripts and no
external assets, so it can be e-mailed, attached to committee papers and printed on A4 (it reads in greyscale:
every bar carries its figure as text).

Small numbers: a cell describing fewer than 5 volunteers shows `[c]` in place of every figure, in tables, bar
labels and summaries alike, and draws no bar (as UK official statistics do). Because the headline totals are
shown, a single `[c]` in a breakdown could be worked out by subtraction: the rule of stats/suppression.py, shared
with the API, hides the next smallest cell too (docs/design.md §5.3). A figure worked out from a hidden count (a
cold spot's rate per 1,000 residents, its cold score, its rank) is never printed either.
"""
from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from ledger.pg import schema
from stats.model import ACTIVITY_LABELS, SUPPRESSION_THRESHOLD, ColdSpot, Figures, Participation
from stats.numbers import hours_text
from stats.suppression import protect
from stats.queries import (
    COLD_SPOT_METHOD,
    MONTHS,
    SEB_LABELS,
    UNDISCLOSED,
    area_sources,
    cold_spots,
    months_before,
    participation,
)

__all__ = ["SUPPRESSED", "date_range", "period_name", "period_title", "previous_period", "render_report"]

SUPPRESSED = "[c]"
LONDON = ZoneInfo("Europe/London")
CATEGORY_LABELS = {
    "sport": "Sport and leisure",
    "culture": "Theatre, cinema and museums",
    "course": "Courses and adult learning",
    "training": "Training",
    "work_experience": "Work experience and taster days",
    "none": "Direct spends with partners",
}
AGE_LABELS = {"not_given": "Not given", "prefer_not_to_say": "Prefer not to say",
              UNDISCLOSED: "Undisclosed (no consent)"}
SEB_ORDER = ("professional", "intermediate", "lower", "other", "prefer_not_to_say", "not_given", UNDISCLOSED)
SEB_SHORT = {**SEB_LABELS, "professional": "Professional", "intermediate": "Intermediate",
             "lower": "Lower", "other": "Other (retired, n/a)", "not_given": "Not given",
             UNDISCLOSED: "Undisclosed (no consent)"}


# --- periods ------------------------------------------------------------------------------------------------


def _month_end(day: date) -> date:
    return months_before(date(day.year, day.month, 1), -1) - timedelta(days=1)


def _whole_months(start: date, end: date) -> int | None:
    """How many calendar months [start, end] spans, when it is made of whole months."""
    if start.day != 1 or end != _month_end(end) or end < start:
        return None
    return (end.year * 12 + end.month) - (start.year * 12 + start.month) + 1


def previous_period(start: date, end: date) -> tuple[date, date]:
    """The period of the same length just before: the previous quarter of a quarter, month of a month, and so on;
    the same number of days before a period that is not made of whole months."""
    months = _whole_months(start, end)
    if months:
        return months_before(start, months), start - timedelta(days=1)
    last = start - timedelta(days=1)
    return last - (end - start), last


def period_name(start: date, end: date) -> str | None:
    """'2026 Q3', 'July 2026' or '2026' for a calendar quarter, month or year; None otherwise."""
    months = _whole_months(start, end)
    if months == 3 and start.month in (1, 4, 7, 10):
        return f"{start.year} Q{(start.month - 1) // 3 + 1}"
    if months == 1:
        return f"{MONTHS[start.month - 1]} {start.year}"
    if months == 12 and start.month == 1:
        return str(start.year)
    return None


def date_range(start: date, end: date) -> str:
    """'1 July – 30 September 2026', '1 – 31 July 2026', '1 December 2025 – 28 February 2026'."""
    if start == end:
        return f"{start.day} {MONTHS[start.month - 1]} {start.year}"
    if (start.year, start.month) == (end.year, end.month):
        return f"{start.day} – {end.day} {MONTHS[end.month - 1]} {end.year}"
    if start.year == end.year:
        return f"{start.day} {MONTHS[start.month - 1]} – {end.day} {MONTHS[end.month - 1]} {end.year}"
    return f"{start.day} {MONTHS[start.month - 1]} {start.year} – {end.day} {MONTHS[end.month - 1]} {end.year}"


def period_title(start: date, end: date) -> str:
    """'2026 Q3: 1 July – 30 September 2026'."""
    name = period_name(start, end)
    return f"{name}: {date_range(start, end)}" if name else date_range(start, end)


def _short(start: date, end: date) -> str:
    """A period's name for tight places: '2026 Q2', 'Jun 2026', '2025', or its dates."""
    if _whole_months(start, end) == 1:
        return f"{MONTHS[start.month - 1][:3]} {start.year}"
    return period_name(start, end) or date_range(start, end)


# --- numbers ------------------------------------------------------------------------------------------------


def _count(value: int) -> str:
    return f"{value:,}"


def _hundredths(value: int) -> str:
    """150 -> '1.50', 123456 -> '1,234.56'."""
    sign = "-" if value < 0 else ""
    whole, part = divmod(abs(value), 100)
    return f"{sign}{whole:,}.{part:02d}"


def _hours(minutes: int) -> str:
    """Minutes as hours, written as the dashboard writes them: '3,110', '9,640.5'."""
    return hours_text(minutes)


def _small(count: int) -> bool:
    return 0 < count < SUPPRESSION_THRESHOLD


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


# --- rows and suppression -----------------------------------------------------------------------------------


@dataclass
class _Line:
    group: str
    label: str
    figures: Figures
    hidden: bool = False
    primary: bool = False  # hidden for its own small count, not to protect another cell


def _lines(report: Participation, labels: Callable[[str, str], str] | None = None) -> list[_Line]:
    return [_Line(row.group, labels(row.group, row.label) if labels else row.label, row.figures)
            for row in report.rows]


#: The figures the report prints of a row of people (areas, ages, backgrounds, kinds of activity, months) and of
#: a row of spending (partner categories).
PEOPLE_SHOWN = ("active_volunteers", "hours")
SPENDING_SHOWN = ("credits_spent",)


def _protect(lines: list[_Line], group_by: str, totals: Figures, shown: tuple[str, ...]) -> list[_Line]:
    """Hide each line any of whose printed figures suppression hides (stats/suppression.py: cells describing
    fewer than 5 volunteers, and enough others that none of them can be worked out from the totals)."""
    protection = protect([(line.group, line.figures) for line in lines], totals, group_by, figures=shown)
    for line in lines:
        line.primary = any(line.figures.hidden(name) for name in shown)
        line.hidden = bool(protection.row(line.group))
    return lines


# --- charts (inline SVG) ------------------------------------------------------------------------------------


@dataclass
class _Column:
    group: str
    label: str
    note: str  # second line under the label
    value: int | None  # None: suppressed, no bar
    text: str
    current: bool


def _column_chart(columns: Sequence[_Column], *, width: int, height: int, title: str, breakdown: str,
                  small: bool = False) -> str:
    top, bottom = 16, 20 if small else 32
    plot = height - top - bottom
    slot = width / max(len(columns), 1)
    bar = min(slot * 0.62, 46)
    highest = max((c.value for c in columns if c.value is not None), default=0) or 1
    parts = [(f'<svg class="chart{" small" if small else ""}" width="{width}" height="{height}" '
              f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}" data-breakdown="{breakdown}">'),
             f'<line x1="0" y1="{top + plot}" x2="{width}" y2="{top + plot}" class="axis"/>']
    for n, column in enumerate(columns):
        middle = slot * n + slot / 2
        kind = "now" if column.current else "before"
        parts.append(f'<g data-group="{_e(column.group)}">')
        if column.value is None:
            parts.append(f'<text x="{middle:.1f}" y="{top + plot - 4}" class="value c">{SUPPRESSED}</text>')
        else:
            h = plot * column.value / highest
            parts.append(f'<rect x="{middle - bar / 2:.1f}" y="{top + plot - h:.1f}" width="{bar:.1f}" '
                         f'height="{h:.1f}" class="{kind}"><title>{_e(column.label)}: {_e(column.text)}</title></rect>')
            parts.append(f'<text x="{middle:.1f}" y="{top + plot - h - 4:.1f}" class="value">{_e(column.text)}</text>')
        parts.append(f'<text x="{middle:.1f}" y="{top + plot + 13}" class="label {kind}">{_e(column.label)}</text>')
        parts.append(f'<text x="{middle:.1f}" y="{top + plot + 26}" class="note">{_e(column.note)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass
class _Bar:
    group: str
    label: str
    value: int | None  # None: suppressed, no bar
    text: str


def _bar_chart(bars: Sequence[_Bar], *, width: int, label_width: int, title: str, breakdown: str,
               text_width: int = 92) -> str:
    row = 19
    height = row * len(bars) + 4
    span = width - label_width - text_width
    highest = max((b.value for b in bars if b.value is not None), default=0) or 1
    parts = [(f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
              f'aria-label="{_e(title)}" data-breakdown="{breakdown}">'),
             f'<line x1="{label_width}" y1="0" x2="{label_width}" y2="{height}" class="axis"/>']
    for n, item in enumerate(bars):
        y = n * row + 2
        parts.append(f'<g data-group="{_e(item.group)}">')
        parts.append(f'<text x="{label_width - 6}" y="{y + 12.5}" class="hlabel">{_e(_clip(item.label, 32))}</text>')
        if item.value is None:
            parts.append(f'<text x="{label_width + 5}" y="{y + 12.5}" class="hvalue c">{SUPPRESSED}</text></g>')
            continue
        w = max(span * item.value / highest, 0)
        parts.append(f'<rect x="{label_width}" y="{y + 2}" width="{w:.1f}" height="{row - 6}" class="now">'
                     f'<title>{_e(item.label)}: {_e(item.text)}</title></rect>')
        parts.append(f'<text x="{label_width + w + 5:.1f}" y="{y + 12.5}" class="hvalue">{_e(item.text)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _clip(text: str, longest: int) -> str:
    return text if len(text) <= longest else text[: longest - 1].rstrip() + "…"


# --- sections -----------------------------------------------------------------------------------------------

# Credits earned is no tile of its own: at one credit an hour it is hours given again (docs/design.md §5.3).
_TILES = (  # (figure, title, what it counts, kind)
    ("active_volunteers", "Active volunteers", "gave hours", "people"),
    ("new_volunteers", "New volunteers", "first hours ever", "people"),
    ("retained_volunteers", "Retained", "also active before", "people"),
    ("minutes", "Hours given", "approved hours", "hours"),
    ("credits_spent", "Credits spent", "with partners", "credits"),
    ("credits_gifted", "Credits gifted", "to other volunteers", "credits"),
)


def _tile_value(figures: Figures, name: str, kind: str) -> int | None:
    """The figure, or None where it must not be shown."""
    if figures.suppressed and figures.volunteers > 0:
        return None
    value: int = getattr(figures, name)
    if kind == "people" and _small(value):
        return None
    return value


def _format(value: int, kind: str) -> str:
    return {"people": _count, "hours": _hours, "credits": _hundredths}[kind](value)


def _change(now: int | None, before: int | None, kind: str, before_label: str) -> str:
    if before is None:
        return f'<span class="was">{_e(before_label)}: {SUPPRESSED}</span>'
    was = f'<span class="was">{_e(before_label)}: {_format(before, kind)}</span>'
    if now is None:
        return was
    if before == 0:
        arrow = "" if now else '<span class="delta">no change</span>'
    elif now == before:
        arrow = '<span class="delta">no change</span>'
    else:
        percent = (now - before) * 100 / before
        shown = f"{abs(percent):.0f}" if abs(percent) >= 1 else "<1"
        arrow = f'<span class="delta">{"▲ up" if now > before else "▼ down"} {shown}%</span>'
    return arrow + was


def _tiles(now: Figures, before: Figures, before_label: str) -> str:
    cells = []
    for name, title, note, kind in _TILES:
        value = _tile_value(now, name, kind)
        previous = _tile_value(before, name, kind)
        shown = SUPPRESSED if value is None else _format(value, kind)
        cells.append(
            f'<div class="tile" data-figure="{"hours" if name == "minutes" else name}">'
            f'<div class="tile-title">{_e(title)}</div>'
            f'<div class="tile-value{" c" if value is None else ""}">{shown}</div>'
            f'<div class="tile-note">{_e(note)}</div>'
            f'<div class="tile-change">{_change(value, previous, kind, before_label)}</div></div>'
        )
    return f'<section class="tiles" aria-label="Headline figures">{"".join(cells)}</section>'


def _key_points(now: Figures, before: Figures, before_label: str, spots: list[_Spot],
                categories: list[_Line]) -> str:
    points = []
    if now.suppressed and now.volunteers > 0:
        points.append(f"Fewer than {SUPPRESSION_THRESHOLD} volunteers took part in this period, so its figures are "
                      f"shown as {SUPPRESSED}.")
    elif now.volunteers == 0:
        points.append("No activity was recorded in this period.")
    else:
        active = _tile_value(now, "active_volunteers", "people")
        who = f"{_count(active)} volunteers" if active is not None else "Volunteers"
        text = f"{who} gave {_hours(now.minutes)} hours"
        previous = _tile_value(before, "minutes", "hours")
        if previous:
            change = (now.minutes - previous) * 100 / previous
            text += (f", {'up' if change >= 0 else 'down'} {abs(change):.0f}% on {before_label}"
                     if round(change) else f", about the same as in {before_label}")
        points.append(text + f", and spent {_hundredths(now.credits_spent)} credits with partners.")
    if spots and spots[0].rank is not None:  # the coldest shown area: hidden ones are not ranked
        first = spots[0]
        how = f", {first.rate_text} active volunteers per 1,000 residents"
        points.append(f"Coldest area against need: <b>{_e(first.spot.name)}</b> (need decile "
                      f"{first.spot.need_decile}){how}.")
    shown = [line for line in categories if not line.hidden and line.figures.credits_spent > 0 and line.group != "none"]
    if shown and not now.suppressed and now.credits_spent > 0:
        top = max(shown, key=lambda line: line.figures.credits_spent)
        share = top.figures.credits_spent * 100 / now.credits_spent
        points.append(f"The partner category where most credits were spent: {_e(top.label.lower())} "
                      f"({_hundredths(top.figures.credits_spent)} credits, {share:.0f}% of all credits spent).")
    return "<ul class=\"points\">" + "".join(f"<li>{p}</li>" for p in points) + "</ul>"


def _month_chart(lines_now: list[_Line], lines_before: list[_Line], width: int, with_hours: bool) -> str:
    columns = []
    for line, current in [*((line, False) for line in lines_before), *((line, True) for line in lines_now)]:
        month = int(line.group[5:])
        first = month == 1 or line is (lines_before or lines_now)[0]
        label = MONTHS[month - 1][:3] + (f" {line.group[:4]}" if first and with_hours else "")
        if line.hidden:
            note, value, text = SUPPRESSED, None, SUPPRESSED
        else:
            note, value, text = f"{_hours(line.figures.minutes)} h", line.figures.active_volunteers, \
                _count(line.figures.active_volunteers)
        columns.append(_Column(line.group, label, note if with_hours else "", value, text, current))
    return _column_chart(columns, width=width, height=140 if with_hours else 128, breakdown="month",
                         title="Active volunteers by month", small=not with_hours)


def _month_lines(report: Participation, first: date, last: date) -> list[_Line]:
    """One line a month from `first` to `last`, a month without activity as zeros."""
    found = {line.group: line for line in _lines(report)}
    lines, month = [], date(first.year, first.month, 1)
    while month <= last:
        key = f"{month.year}-{month.month:02d}"
        lines.append(found.get(key) or _Line(key, key, Figures()))
        month = months_before(month, -1)
    return lines


@dataclass
class _Spot:
    spot: ColdSpot
    rank: int | None  # None: hidden, and not ranked among the hidden (docs/design.md §5.3)
    hidden: bool
    active_text: str
    rate_text: str
    score_text: str


def _cold_rows(spots: list[ColdSpot], area_lines: list[_Line]) -> tuple[list[_Spot], bool]:
    """The cold-spot table's cells, the shown areas ranked and the hidden ones after them in order of need
    decile; (rows, whether the cold scores had to be withheld)."""
    hidden = {s.area for s in spots if s.hidden} | {line.group for line in area_lines if line.hidden}
    measured = [s for s in spots if not s.hidden]
    best = max(measured, key=lambda s: s.per_1000_residents) if measured else None
    # Cold scores are measured against the best-served area: with its count hidden, every score would tell it.
    withheld = best is None or best.area in hidden or best.per_1000_residents == 0
    rows = []
    for rank, spot in enumerate((s for s in spots if s.area not in hidden), 1):
        rows.append(_Spot(spot, rank, False, _count(spot.active_volunteers), f"{spot.per_1000_residents:.2f}",
                          SUPPRESSED if withheld else f"{spot.cold_score:.2f}"))
    for spot in sorted((s for s in spots if s.area in hidden), key=lambda s: (s.need_decile, s.area)):
        active = f"fewer than {SUPPRESSION_THRESHOLD}" if spot.suppressed else SUPPRESSED
        rows.append(_Spot(spot, None, True, active, SUPPRESSED, SUPPRESSED))
    return rows, withheld


def _cold_table(rows: list[_Spot], withheld: bool) -> str:
    if not rows:
        return ('<p class="empty">No areas with need figures have been imported yet: run '
                '<code>timecredits import-areas FILE.csv</code> to rank areas by need against participation.</p>')
    body, coldest = [], ' class="coldest"'
    for row in rows:
        s = row.spot
        body.append(
            f'<tr data-area="{_e(s.area)}"{coldest if row.rank is not None and row.rank <= 3 else ""}>'
            f'<td class="num rank">{"" if row.rank is None else row.rank}</td><td class="name">{_e(s.name)}</td>'
            f'<td class="num">{s.need_decile}</td><td class="num">{_count(s.population)}</td>'
            f'<td class="num active{" c" if row.hidden else ""}">{row.active_text}</td>'
            f'<td class="num rate{" c" if row.rate_text == SUPPRESSED else ""}">{row.rate_text}</td>'
            f'<td class="num score{" c" if row.hidden or withheld else ""}">{row.score_text}</td></tr>'
        )
    note = ('<p class="small">Cold scores are withheld this period: the count of the best-served area, which they '
            'are measured against, is hidden.</p>' if withheld else "")
    if any(row.hidden for row in rows):
        note += ('<p class="small">Areas without a rank have fewer than 5 active volunteers, or are hidden so that '
                 'such an area’s count cannot be worked out; they are listed by need decile, not ranked.</p>')
    return (
        '<table class="cold" data-breakdown="cold_spots"><thead><tr><th class="num">Rank</th><th>Area</th>'
        '<th class="num">Need decile</th><th class="num">Residents</th><th class="num">Active volunteers</th>'
        '<th class="num">Per 1,000 residents</th><th class="num">Cold score</th></tr></thead><tbody>'
        + "".join(body) + "</tbody></table>" + note
    )


def _demography_table(lines: list[_Line], total_active: int | None, caption: str, breakdown: str) -> str:
    body = []
    widest = max((line.figures.active_volunteers for line in lines if not line.hidden), default=0) or 1
    for line in lines:
        f = line.figures
        if line.hidden:
            cells = (f'<td class="num active c">{SUPPRESSED}</td><td class="num hours c">{SUPPRESSED}</td>'
                     f'<td class="share c">{SUPPRESSED}</td>')
        else:
            share = f.active_volunteers * 100 / total_active if total_active else None
            bar = ("" if share is None else
                   f'<svg width="56" height="9" viewBox="0 0 56 9" aria-hidden="true"><rect x="0" y="1" '
                   f'width="{max(56 * f.active_volunteers / widest, 0.5):.1f}" height="7" class="now"/></svg>')
            cells = (f'<td class="num active">{_count(f.active_volunteers)}</td>'
                     f'<td class="num hours">{_hours(f.minutes)}</td>'
                     f'<td class="share">{bar}<span>{"" if share is None else f"{share:.0f}%"}</span></td>')
        body.append(f'<tr data-group="{_e(line.group)}"><td class="label">{_e(line.label)}</td>{cells}</tr>')
    if not body:
        body.append('<tr><td colspan="4" class="empty">No activity in the period.</td></tr>')
    return (f'<table class="demo" data-breakdown="{breakdown}"><caption>{_e(caption)}</caption><thead><tr><th></th>'
            '<th class="num">Active volunteers</th><th class="num">Hours given</th><th>Share of active</th></tr>'
            '</thead><tbody>' + "".join(body) + "</tbody></table>")


# --- the document -------------------------------------------------------------------------------------------


def render_report(engine: Engine, start: date, end: date, *, programme: str = "Time Credits programme") -> str:
    """The report for [start, end] as one self-contained HTML document."""
    if end < start:
        raise ValueError("the period ends before it starts")
    before_start, before_end = previous_period(start, end)
    before_label = _short(before_start, before_end)
    totals = participation(engine, "month", start, end)
    now, before = totals.totals, participation(engine, "month", before_start, before_end).totals
    # Fewer than 5 volunteers in all: no breakdown either, since which rows exist would say who they are.
    few = now.suppressed

    # Months: the period's and, for a short period, enough months before it to show a trend.
    months = _whole_months(date(start.year, start.month, 1), _month_end(end)) or 1
    history = max(months, 6 - months) if months <= 6 else 0
    chart_start = months_before(date(start.year, start.month, 1), history)
    monthly = participation(engine, "month", chart_start, end) if history else totals
    month_lines = _month_lines(monthly, chart_start, end)
    now_key = f"{start.year}-{start.month:02d}"
    earlier = [line for line in month_lines if line.group < now_key]
    lines_before = _protect(earlier, "month", participation(engine, "month", chart_start, start - timedelta(days=1)).totals
                            if earlier else Figures(), PEOPLE_SHOWN)
    lines_now = _protect([line for line in month_lines if line.group >= now_key], "month", now, PEOPLE_SHOWN)
    with_hours = len(month_lines) <= 7  # under each month's bar, while there is room for them
    month_block = (
        '<figure><h2>Participation by month</h2>'
        f'<p class="legend"><span class="key now"></span>{_e(_short(start, end))} '
        + ('<span class="key before"></span>earlier ' if history else "")
        + f'<span class="dim">· bars: active volunteers{"; below: hours given" if with_hours else ""}</span></p>'
        f'{_month_chart(lines_now, lines_before, 330, with_hours)}</figure>'
    )

    few_note = ('<p class="empty">No activity was recorded in this period.</p>' if now.volunteers == 0 else
                f'<p class="empty">Not broken down: fewer than {SUPPRESSION_THRESHOLD} volunteers took part in '
                'this period.</p>')
    categories: list[_Line] = []
    spots: list[_Spot] = []
    if few:
        spend_figure, area_figure, cold_block, people_block = few_note, few_note, "", few_note
        activity_figure = few_note
    else:
        # Rows without spending add nothing to the credits spent: leaving them out keeps the relation to the total.
        categories = _protect(
            [line for line in _lines(participation(engine, "category", start, end),
                                     lambda group, label: CATEGORY_LABELS.get(group, label.capitalize()))
             if line.figures.credits_spent or line.figures.attendances or line.figures.redemptions],
            "category", now, SPENDING_SHOWN)
        spend_figure = _bar_chart(
            [_Bar(line.group, line.label, None if line.hidden else line.figures.credits_spent,
                  SUPPRESSED if line.hidden else _hundredths(line.figures.credits_spent))
             for line in sorted(categories, key=lambda line: (line.hidden, -line.figures.credits_spent
                                                              * (not line.hidden), line.label))],
            width=340, label_width=170, text_width=64, title="Credits spent by partner category",
            breakdown="category",
        ) if categories else '<p class="empty">No credits were spent in this period.</p>'
        spend_figure = (f'<p class="legend dim">{_count(now.attendances)} bookings attended and '
                        f'{_count(now.redemptions)} direct redemptions.</p>' + spend_figure)

        kinds = _protect(_lines(participation(engine, "activity", start, end),
                                lambda group, label: ACTIVITY_LABELS.get(group, label)), "activity", now, PEOPLE_SHOWN)
        activity_figure = _bar_chart(
            [_Bar(line.group, line.label, None if line.hidden else line.figures.minutes,
                  SUPPRESSED if line.hidden
                  else f"{_hours(line.figures.minutes)} h · {_count(line.figures.active_volunteers)}")
             for line in sorted(kinds, key=lambda line: (line.hidden, -line.figures.minutes * (not line.hidden),
                                                         line.label))],
            width=340, label_width=170, text_width=90, title="Hours given by kind of activity", breakdown="activity",
        ) if kinds else '<p class="empty">No hours were given in this period.</p>'
        activity_figure = ('<p class="legend dim">Hours given · active volunteers, by kind of activity</p>'
                           + activity_figure)

        areas = _protect(_lines(participation(engine, "area", start, end)), "area", now, PEOPLE_SHOWN)
        spots, withheld = _cold_rows(cold_spots(engine, start, end), areas)
        area_figure = _bar_chart(
            [_Bar(line.group, line.label, None if line.hidden else line.figures.active_volunteers,
                  SUPPRESSED if line.hidden
                  else f"{_count(line.figures.active_volunteers)} · {_hours(line.figures.minutes)} h")
             for line in sorted(areas, key=lambda line: (line.hidden, -line.figures.active_volunteers
                                                         * (not line.hidden), line.label))],
            width=300, label_width=100, text_width=100, title="Active volunteers by area", breakdown="area",
        ) if areas else '<p class="empty">No activity in the period.</p>'
        area_figure = '<p class="legend dim">Active volunteers · hours given, by home area</p>' + area_figure
        cold_block = _cold_table(spots, withheld)

        ages = _protect(_lines(participation(engine, "age_band", start, end),
                               lambda group, label: AGE_LABELS.get(group, label)), "age_band", now, PEOPLE_SHOWN)
        sebs = _protect(sorted(_lines(participation(engine, "seb", start, end),
                                      lambda group, label: SEB_SHORT.get(group, label)),
                               key=lambda line: SEB_ORDER.index(line.group) if line.group in SEB_ORDER else 99),
                        "seb", now, PEOPLE_SHOWN)
        total_active = _tile_value(now, "active_volunteers", "people")
        people_block = (
            f'<div class="grid">{_demography_table(ages, total_active, "By age band", "age_band")}'
            f'{_demography_table(sebs, total_active, "By socio-economic background", "seb")}</div>'
        )

    method = COLD_SPOT_METHOD
    sources = area_sources(engine)
    generated = datetime.now(LONDON)
    body = f"""
<header>
  <div class="programme">{_e(programme)}</div>
  <h1>Participation report</h1>
  <div class="period">{_e(period_title(start, end))}</div>
  <div class="meta">Prepared {generated.day} {MONTHS[generated.month - 1]} {generated.year} from the programme
  ledger · compared with {_e(before_label)} ({_e(date_range(before_start, before_end))})</div>
</header>
{_tiles(now, before, before_label)}
{_key_points(now, before, before_label, spots, categories)}
<div class="grid">{month_block}
  <figure><h2>Redemptions by partner category</h2>{spend_figure}</figure>
</div>
<section class="activities"><h2>Participation by kind of activity</h2>
  <figure>{activity_figure}</figure>
</section>
<section class="areas"><h2>Participation by area, and cold spots against need</h2>
  <div class="grid area-grid"><figure>{area_figure}</figure><div>{cold_block}</div></div>
  <p class="small method">{_e(method)} Area figures: {_e("; ".join(sources) if sources else "not stated")}.</p>
</section>
<section class="people"><h2>Who takes part</h2>
  {people_block}
  <p class="small">Age and background are broken down only for volunteers who consented to demographic statistics;
  the others are counted as “undisclosed”. Shares are of all active volunteers in the period.</p>
</section>
<footer>
  <p><b>{SUPPRESSED}</b> Cells describing fewer than {SUPPRESSION_THRESHOLD} volunteers are shown as {SUPPRESSED}
  (confidential), as UK official statistics do; where a single such cell could be worked out from a total, the
  next smallest cell is shown as {SUPPRESSED} too. Hidden areas are not ranked as cold spots.</p>
  <p>Active volunteers gave approved hours in the period; new volunteers gave their first hours ever; retained
  volunteers were also active in the three months before it. Hours count on the day they were given; one hour
  earns one credit (rounded to the hundredth on each entry), so credits earned are hours given again. Credits spent are those that reached partners (bookings attended and redemptions). Corrections
  count in the period of the entry they correct, so earlier figures can change slightly.</p>
</footer>
"""
    return _document(f"{programme}: participation report, {period_title(start, end)}", body)


CSS = """
@page { size: A4; margin: 10mm 11mm 10mm; }
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0; background: #e6e8eb; color: #1b1f24;
       font: 8.6pt/1.35 Arial, "Liberation Sans", Helvetica, sans-serif; }
.page { width: 210mm; min-height: 297mm; margin: 8mm auto; padding: 10mm 11mm; background: #fff;
        box-shadow: 0 1px 6px rgba(0, 0, 0, .25); }
header { border-bottom: 2.5pt solid #1d3557; padding-bottom: 4pt; margin-bottom: 6pt; }
.programme { text-transform: uppercase; letter-spacing: .08em; font-size: 7.6pt; color: #4a5563; }
h1 { font-size: 17pt; margin: 1pt 0 0; color: #1d3557; }
.period { font-size: 11.5pt; font-weight: bold; margin-top: 1pt; }
.meta { font-size: 7.4pt; color: #4a5563; margin-top: 2pt; }
h2 { font-size: 9.6pt; margin: 0 0 3pt; color: #1d3557; text-transform: uppercase; letter-spacing: .04em; }
.tiles { display: grid; grid-template-columns: repeat(6, 1fr); gap: 4pt; margin-bottom: 6pt; }
.tile { border: .75pt solid #b9c0ca; border-top: 3pt solid #1d3557; padding: 4pt 5pt 4pt; }
.tile-title { font-weight: bold; font-size: 7.6pt; line-height: 1.2; white-space: nowrap; }
.tile-value { font-size: 14.5pt; font-weight: bold; margin: 2pt 0 0; white-space: nowrap; }
.tile-note { font-size: 6.8pt; color: #4a5563; line-height: 1.2; }
.tile-change { font-size: 6.8pt; margin-top: 2pt; line-height: 1.25; }
.tile-change .delta { display: block; font-weight: bold; }
.tile-change .was { display: block; color: #4a5563; white-space: nowrap; }
.points { margin: 0 0 6pt; padding: 3pt 8pt 3pt 18pt; background: #f1f3f5; border-left: 3pt solid #1d3557; }
.points li { margin: 1pt 0; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 8pt 12pt; align-items: start; }
.grid > * { min-width: 0; }
.area-grid { grid-template-columns: 292px 1fr; align-items: start; }
.cold th, .cold td { padding-left: 3pt; padding-right: 3pt; }
figure { margin: 0 0 6pt; }
section { margin-bottom: 6pt; }
section, figure, table, .tiles, .points, footer { break-inside: avoid; page-break-inside: avoid; }
.legend { margin: 0 0 3pt; font-size: 7pt; }
.key { display: inline-block; width: 8pt; height: 8pt; vertical-align: -1pt; margin: 0 2pt 0 6pt; }
.key.now { background: #1d3557; margin-left: 0; }
.key.before { background: #b4bdc9; }
.dim { color: #4a5563; }
svg.chart { display: block; overflow: visible; }
svg .axis { stroke: #6b7480; stroke-width: 1; }
svg rect.now, .share rect { fill: #1d3557; }
svg rect.before { fill: #b4bdc9; }
svg text { font-family: Arial, "Liberation Sans", Helvetica, sans-serif; fill: #1b1f24; }
svg .value { font-size: 10px; font-weight: bold; text-anchor: middle; }
svg .label { font-size: 10px; text-anchor: middle; }
svg .label.before { fill: #4a5563; }
svg .note { font-size: 9px; text-anchor: middle; fill: #4a5563; }
svg.small .value { font-size: 8.5px; }
svg.small .label { font-size: 9px; }
svg .hlabel { font-size: 10px; text-anchor: end; }
svg .hvalue { font-size: 9.5px; }
svg .c, td.c, .tile-value.c { font-style: italic; }
table { border-collapse: collapse; width: 100%; font-size: 7.8pt; }
caption { text-align: left; font-weight: bold; font-size: 8.2pt; padding-bottom: 2pt; }
th { text-align: left; font-size: 7pt; color: #4a5563; font-weight: bold; border-bottom: 1pt solid #1d3557;
     padding: 2pt 4pt; vertical-align: bottom; }
td { padding: 1.3pt 4pt; border-bottom: .5pt solid #d5dae0; }
td.label, .cold td:nth-child(2) { white-space: nowrap; }
.num { text-align: right; white-space: nowrap; }
th.num { white-space: normal; }
tr.coldest td { font-weight: bold; }
tr.coldest td:first-child { border-left: 3pt solid #1d3557; }
.share { white-space: nowrap; }
.share svg { vertical-align: -1px; margin-right: 3pt; }
.small { font-size: 7pt; color: #39414b; margin: 3pt 0 0; }
.empty { color: #4a5563; font-style: italic; }
footer { border-top: 1pt solid #1d3557; padding-top: 3pt; font-size: 6.8pt; color: #39414b; }
footer p { margin: 0 0 2pt; }
@media print {
  body { background: none; }
  .page { width: auto; min-height: 0; margin: 0; padding: 0; box-shadow: none; }
}
"""


def _document(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en-GB\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body>\n<main class=\"page\">{body}</main>\n</body>\n</html>\n"
    )
