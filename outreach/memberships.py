"""Track who is in a set (a lifecycle stage, a rule's segment) since when.

``sync`` is two set-based statements: insert members who have no open
membership (entered now), close open memberships of those who left. The
first evaluation of a key marks its members as *baseline*: they were already
there, they did not enter, and entry triggers do not message them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, exists, insert, literal, null, select, update
from sqlalchemy.orm import Session, aliased

from outreach.models import Membership


def sync(session: Session, *, key: str, members: Select, now: datetime) -> None:
    first = not session.scalar(select(exists().where(Membership.key == key)))
    current = members.subquery("members")
    member_id = list(current.c)[0]
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
