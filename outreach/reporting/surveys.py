"""Survey results: NPS and satisfaction per rule and customer type.

NPS = % promoters (9–10) − % detractors (0–6), from −100 to 100.
Satisfaction (1–5): the mean, and the share of 4s and 5s ("satisfied").
Each row also has ``answers`` (n): a score from a handful of answers is noise.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, case, func, select
from sqlalchemy.orm import Session

from outreach.store.models import Customer, Rule, SurveyAnswer

PROMOTER_MIN, DETRACTOR_MAX = 9, 6
SATISFIED_MIN = 4


@dataclass(frozen=True)
class SurveyRow:
    rule: str
    customer_type: str
    kind: str
    answers: int
    #: NPS rows: promoters, passives, detractors and the score; satisfaction rows: the mean and % satisfied.
    promoters: int
    passives: int
    detractors: int
    score: float


def survey_results(engine: Engine) -> list[SurveyRow]:
    """One row per (rule, customer type, survey kind) with answers, and an
    ``all`` row per rule and kind."""
    promoter = func.sum(case((SurveyAnswer.score >= PROMOTER_MIN, 1), else_=0))
    detractor = func.sum(case((SurveyAnswer.score <= DETRACTOR_MAX, 1), else_=0))
    satisfied = func.sum(case((SurveyAnswer.score >= SATISFIED_MIN, 1), else_=0))
    rows: list[SurveyRow] = []
    with Session(engine) as session:
        for by_type in (True, False):
            columns = [Rule.name, SurveyAnswer.kind] + ([Customer.customer_type] if by_type else [])
            query = (select(*columns, func.count(), promoter, detractor, satisfied, func.avg(SurveyAnswer.score))
                     .join(Rule, Rule.id == SurveyAnswer.rule_id)
                     .join(Customer, Customer.id == SurveyAnswer.customer_id)
                     .group_by(*columns))
            for found in session.execute(query):
                name, kind = str(found[0]), str(found[1])
                customer_type = getattr(found[2], "value", str(found[2])) if by_type else "all"
                n, promoters, detractors, happy = (int(v or 0) for v in found[-5:-1])
                mean = float(found[-1] or 0)
                if kind == "nps":
                    rows.append(SurveyRow(rule=name, customer_type=customer_type, kind=kind, answers=n,
                                          promoters=promoters, passives=n - promoters - detractors,
                                          detractors=detractors, score=round(100 * (promoters - detractors) / n, 1)))
                else:
                    rows.append(SurveyRow(rule=name, customer_type=customer_type, kind=kind, answers=n,
                                          promoters=happy, passives=0, detractors=n - happy,
                                          score=round(mean, 2)))
    return sorted(rows, key=lambda r: (r.rule, r.kind, r.customer_type == "all", r.customer_type))


def render_table(rows: list[SurveyRow]) -> object:
    from rich.table import Table

    table = Table(title="Surveys: NPS (% promoters 9–10 − % detractors 0–6) and satisfaction (mean of 1–5)")
    for name in ("Rule", "Customers", "Survey", "Answers", "Promoters / satisfied", "Passives", "Detractors",
                 "Score"):
        table.add_column(name, justify="left" if name in ("Rule", "Customers", "Survey") else "right")
    for r in rows:
        table.add_row(r.rule, r.customer_type, r.kind, str(r.answers), str(r.promoters),
                      str(r.passives) if r.kind == "nps" else "", str(r.detractors),
                      f"{r.score:+.1f}" if r.kind == "nps" else f"{r.score:.2f}")
    return table
