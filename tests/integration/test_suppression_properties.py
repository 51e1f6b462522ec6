"""No hidden figure of the statistics can be worked out from what the answers show (docs/design.md §5.3).

For random programmes, every breakdown of the year is asked for as the API answers it. The shown figures and
the relations the answers expose (for each additive figure, the rows add up to the total, the same total in
every breakdown of the period) make a system of linear equations in the hidden figures; exact Gaussian
elimination over the rationals decides whether any hidden figure is determined by it. With complementary
suppression switched off, the same check finds a figure given away, so it can fail.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Any
from uuid import uuid4

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert

from api.routes.statistics import participation_out
from ledger.pg import schema
from stats.model import GROUPINGS
from stats.queries import participation
from stats.suppression import TOTAL, additive_figures, protect

AREAS = ("E09000001", "E09000002", "E09000003", "E09000004")
COMMUNITY = ("club", "garden")
PARTNERS = ("lido", "cinema")
YEARS = itertools.count(2001, 2)  # a year of its own for each example, and a quiet one between for retention


@dataclass(frozen=True)
class Person:
    area: str
    age_band: str | None
    seb: str | None
    consent: bool
    first_time: bool


@dataclass(frozen=True)
class Act:
    kind: str  # hours, book, attend, cancel, redeem, gift
    who: int
    month: int
    where: int
    size: int


# Skewed choices, so that cells fall either side of 5: big groups beside small ones, busy months beside quiet ones.
people = st.builds(Person, st.sampled_from(AREAS[:1] * 4 + AREAS[1:2] * 2 + AREAS[2:]),
                   st.sampled_from(("25-34",) * 4 + ("16-24", "65+", None)),
                   st.sampled_from(("lower",) * 3 + ("professional", None)), st.booleans(), st.booleans())
acts = st.builds(Act, st.sampled_from(("hours",) * 5 + ("book", "attend", "cancel", "redeem", "gift")),
                 st.integers(0, 10_000), st.sampled_from((3,) * 6 + (4, 4, 7, 11)),
                 st.sampled_from((0,) * 5 + (1, 1, 2, 3, 4, 5)), st.integers(1, 240))
programmes = st.tuples(st.lists(people, min_size=2, max_size=40), st.lists(acts, min_size=1, max_size=160))


def _load(engine: Engine, year: int, programme: tuple[list[Person], list[Act]]) -> None:
    """The programme's volunteers and facts, written where the statistics read them."""
    persons, activity = programme
    ns = uuid4().hex[:8]
    ids = [f"{ns}-v{n}" for n in range(len(persons))]
    with engine.begin() as conn:
        if not conn.execute(schema.organisations.select()).first():
            conn.execute(insert(schema.organisations), [
                {"id": org, "name": org.title(), "area": AREAS[0], "kinds": ["community"], "auto_approve": True}
                for org in COMMUNITY] + [
                {"id": org, "name": org.title(), "area": AREAS[0], "kinds": ["partner"], "auto_approve": False}
                for org in PARTNERS])
        conn.execute(insert(schema.volunteers), [
            {"id": volunteer, "area": p.area, "age_band": p.age_band, "seb": p.seb, "consent_stats": p.consent,
             "first_time_volunteer": p.first_time} for volunteer, p in zip(ids, persons, strict=True)])
        facts: list[dict[str, Any]] = []
        for act in activity:
            volunteer = ids[act.who % len(ids)]
            day = date(year, act.month, 1 + act.size % 28)
            base = {"entry_id": uuid4().int % 2**62, "occurred_on": day, "volunteer_id": volunteer, "sign": 1,
                    "other_volunteer_id": None, "org_id": None, "category": None, "activity_category": None,
                    "minutes": 0, "original_entry_id": None}
            partner, category = PARTNERS[act.where % 2], ("sport", "culture", "course")[act.where % 3]
            match act.kind:
                case "hours":
                    facts.append({**base, "kind": "hours_approved", "org_id": COMMUNITY[act.where % 2],
                                  "activity_category": ("befriending", "environment", "other")[act.where % 3],
                                  "minutes": act.size, "amount": round(act.size * 100 / 60)})
                case "book" | "attend" | "cancel" | "redeem":
                    kind = {"book": "opportunity_booked", "attend": "booking_attended",
                            "cancel": "booking_cancelled", "redeem": "credits_redeemed"}[act.kind]
                    facts.append({**base, "kind": kind, "org_id": partner, "category": category,
                                  "amount": act.size * 10})
                case "gift":
                    facts.append({**base, "kind": "credits_gifted", "amount": act.size,
                                  "other_volunteer_id": ids[(act.who + 1) % len(ids)]})
        conn.execute(insert(schema.stats_facts), facts)


def _number(shown: object) -> Fraction:
    return Fraction(str(shown))


def _answers(engine: Engine, year: int, complementary: bool) -> tuple[dict[str, dict[str, Any]],
                                                                      dict[tuple[str, str, str], int]]:
    """Every breakdown of the year, as the API answers it (with complementary suppression on or off), and how
    many volunteers each hidden figure truly describes."""
    start, end = date(year, 1, 1), date(year, 12, 31)
    answers, behind = {}, {}
    for group_by in GROUPINGS:
        report = participation(engine, group_by, start, end)
        shown = protect([(row.group, row.figures) for row in report.rows], report.totals, group_by,
                        complementary=complementary)
        answers[group_by] = participation_out(report, shown).model_dump(by_alias=True)
        for row in report.rows:
            for name in additive_figures(group_by):
                behind[(group_by, row.group, name)] = row.figures.contributors.get(name, 0)
        for name in additive_figures(group_by):
            behind[("*", TOTAL, name)] = report.totals.contributors.get(name, 0)
    return answers, behind


def _given_away(answers: dict[str, dict[str, Any]], behind: dict[tuple[str, str, str], int]) -> list[tuple[str, ...]]:
    """The determined hidden figures that describe somebody: a zero nobody is behind (the rows of a total of
    zero) tells nothing about anyone."""
    return [(*x, f"{behind[x]} volunteer(s)") for x in determined(answers) if behind[x] > 0]


def _reduced(rows: list[dict[Any, Fraction]], columns: list[Any]) -> list[list[Fraction]]:
    """The reduced row echelon form of a matrix of exact rationals (rows as {column: coefficient})."""
    matrix = [[row.get(column, Fraction(0)) for column in columns] for row in rows]
    rank = 0
    for col in range(len(columns)):
        pivot = next((r for r in range(rank, len(matrix)) if matrix[r][col] != 0), None)
        if pivot is None:
            continue
        matrix[rank], matrix[pivot] = matrix[pivot], matrix[rank]
        lead = matrix[rank][col]
        matrix[rank] = [a / lead for a in matrix[rank]]
        for r in range(len(matrix)):
            if r != rank and matrix[r][col] != 0:
                factor = matrix[r][col]
                matrix[r] = [a - factor * b for a, b in zip(matrix[r], matrix[rank], strict=True)]
        rank += 1
    return matrix[:rank]


def determined(answers: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """The hidden figures (breakdown, group, figure) that the shown figures and the exposed relations determine.

    Unknowns: each hidden row figure, and each total hidden in every breakdown (the totals are one period's, the
    same in each). Relations: for every additive figure of a breakdown, the sum of its rows equals its total.
    A hidden figure x is determined exactly when the unit vector of x lies in the span of the relations'
    coefficient rows, that is when a row of their reduced row echelon form is that unit vector."""
    known_totals: dict[str, Fraction] = {}
    for answer in answers.values():
        for name, shown in answer["totals"].items():
            if shown is not None and not isinstance(shown, (bool, list)):
                known_totals[name] = _number(shown)
    relations: list[dict[Any, Fraction]] = []
    unknowns: set[tuple[str, str, str]] = set()
    for group_by, answer in answers.items():
        for name in additive_figures(group_by):
            relation: dict[Any, Fraction] = {}
            for row in answer["rows"]:
                if row[name] is None:
                    relation[(group_by, row["group"], name)] = Fraction(1)
                    unknowns.add((group_by, row["group"], name))
            if name not in known_totals:
                relation[("*", TOTAL, name)] = Fraction(-1)
                unknowns.add(("*", TOTAL, name))
            if relation:
                relations.append(relation)
            elif all(row[name] is not None for row in answer["rows"]):
                # Nothing hidden: the relation the test relies on is true of the figures themselves.
                assert sum(_number(row[name]) for row in answer["rows"]) == known_totals[name], (group_by, name)
    columns = sorted(unknowns)
    found = []
    for row in _reduced(relations, columns):
        support = [n for n, a in enumerate(row) if a != 0]
        if len(support) == 1:
            found.append(columns[support[0]])
    return found


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(programme=programmes)
def test_no_hidden_figure_of_any_breakdown_can_be_worked_out(engine: Engine,
                                                             programme: tuple[list[Person], list[Act]]) -> None:
    year = next(YEARS)
    _load(engine, year, programme)
    answers, behind = _answers(engine, year, complementary=True)
    assert _given_away(answers, behind) == []
    for answer in answers.values():  # hidden means hidden: null in the answer, and named as withheld
        for row in answer["rows"]:
            assert row["suppressed"] or all(row[name] is None for name in row["withheld"]), row


def test_without_complementary_suppression_a_hidden_figure_is_given_away(engine: Engine) -> None:
    """Three volunteers in one area, seven in another: primary suppression alone hides the three's hours, and
    the total less the seven's gives them."""
    persons = [Person(AREAS[0], "25-34", "lower", True, False)] * 7 + [Person(AREAS[1], "25-34", "lower", True, False)] * 3
    programme = (persons, [Act("hours", n, 3, 0, 30 + n) for n in range(10)])
    year = next(YEARS)
    _load(engine, year, programme)
    leaked = _given_away(*_answers(engine, year, complementary=False))
    assert ("area", AREAS[1], "hours", "3 volunteer(s)") in leaked, leaked
    assert _given_away(*_answers(engine, year, complementary=True)) == []
