"""Track who is in a set (a lifecycle stage, a rule's segment) since when.

``sync`` is two set-based statements: insert members who have no open
membership (entered now), close open memberships of those who left. The
first evaluation of a key marks its members as *baseline*: they were already
there, they did not enter, and entry triggers do not message them. An
evaluation that found nobody leaves no row, so a finished run of a rule that
watches the key also means "evaluated before".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Select, exists, insert, literal, null, select, update
from sqlalchemy.orm import Session, aliased

from outreach.rules.spec import RuleSpec
from outreach.store.models import CampaignRun, Membership, Rule


def evaluated_before(session: Session, key: str) -> bool:
    """Whether an earlier run evaluated ``key``: it left members, or a rule
    watching the key (as stored at that run) has a run — an empty first
    evaluation is still the first."""
    if session.scalar(select(exists().where(Membership.key == key))):
        return True
    ran = select(Rule.definition).where(exists().where(CampaignRun.rule_id == Rule.id))
    for definition in session.scalars(ran):
        try:
            spec = RuleSpec.model_validate(definition)
        except ValidationError:  # stored by an older version of the rule language
            continue
        if spec.membership_key == key:
            return True
    return False


def sync(session: Session, *, key: str, members: Select[*tuple[Any, ...]], now: datetime) -> None:
    first = not evaluated_before(session, key)
    current = members.subquery("members")
    member_id = next(iter(current.c))
    open_ = aliased(Membership)
    session.execute(
        insert(Membership).from_select(
            ["key", "customer_id", "entered_at", "left_at", "baseline"],
            select(literal(key), member_id, literal(now), null(), literal(first)).where(
                ~exists().where(
                    open_.key == key, open_.customer_id == member_id, open_.left_at.is_(None)
                )
            ),
        )
    )
    session.execute(
        update(Membership)
        .where(
            Membership.key == key,
            Membership.left_at.is_(None),
            Membership.customer_id.not_in(select(member_id)),
        )
        .values(left_at=now)
    )
