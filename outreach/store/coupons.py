"""Pools of coupon codes: making codes, giving one to each message, counting them.

Codes are unguessable (``secrets``), from an alphabet without look-alike
characters, unique across all pools (``uq_coupons_code``; a collision is
drawn again). A code is *given* to a message when a worker claims it for
sending (:func:`give`), in the claim's transaction, one statement per pool:
the message's first free code in pool order, unless it has one already — so
a message retried or handed over twice keeps its code, a held-out or skipped
customer never takes one, and ``uq_coupons_message_id`` makes sure no
message ever holds two. On PostgreSQL the pool's row is locked while codes
are given (workers giving from the same pool take turns for a few
milliseconds; SQLite has one writer anyway), so a code is never given twice
and a pool is only called dry when it is.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, case, exists, func, literal, or_, select, update
from sqlalchemy.orm import Session

from outreach.domain import MessageStatus
from outreach.rules.offers import Offer
from outreach.store import dialect
from outreach.store.models import Coupon, CouponPool, CouponRedemption, Message, Order, Rule

#: Digits and capitals without those read as another: 0/O, 1/I/L, U/V.
SAFE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Random characters per generated code: 30**10 ≈ 6e14 (49 bits); at least 8 (39 bits).
DEFAULT_LENGTH, MIN_LENGTH, MAX_LENGTH = 10, 8, 32
#: What a generated code's prefix may be (capitals, digits, - and _).
PREFIX = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,23}$")
#: What any code may be, imported ones too: capitals, digits, '-', '_', '.'; 3 to 64.
CODE = re.compile(r"^[A-Z0-9][A-Z0-9_.-]{2,63}$")
#: Why a message of an offer rule was not sent: its pool had no code left.
NO_CODE = "no coupon code left"
#: Codes written per statement when generating.
INSERT_CHUNK = 5000
COUPONS = cast(Table, Coupon.__table__)
C = COUPONS.c


def normalize_code(raw: str) -> str:
    """A code as stored and compared: trimmed, in capitals (shops treat codes without regard to case)."""
    return raw.strip().upper()


def random_code(length: int, prefix: str = "", choice: Callable[[str], str] = secrets.choice) -> str:
    return prefix + "".join(choice(SAFE_ALPHABET) for _ in range(length))


def distinct_codes(count: int, *, length: int, prefix: str = "", avoid: Iterable[str] = (),
                   choice: Callable[[str], str] = secrets.choice) -> list[str]:
    """``count`` different random codes, none of them in ``avoid``."""
    taken, codes = set(avoid), list[str]()
    while len(codes) < count:
        code = random_code(length, prefix, choice)
        if code not in taken:
            taken.add(code)
            codes.append(code)
    return codes


def pool_named(session: Session | Connection, name: str, *, now: datetime, create: bool = True) -> int | None:
    """The pool's id; with ``create``, made if it does not exist (two makers at once: one row)."""
    found = session.scalar(select(CouponPool.id).where(CouponPool.name == name))
    if found is None and create:
        session.execute(dialect.insert(session, CouponPool).values(name=name, created_at=now)
                        .on_conflict_do_nothing(index_elements=["name"]))
        found = session.scalar(select(CouponPool.id).where(CouponPool.name == name))
    return found


def generate(session: Session, pool: str, *, count: int, now: datetime, length: int = DEFAULT_LENGTH,
             prefix: str = "", expires_on: date | None = None,
             choice: Callable[[str], str] = secrets.choice) -> int:
    """Add ``count`` new codes to ``pool`` (made if new); returns how many
    were added — always ``count``: a code that exists already, in any pool,
    is drawn again."""
    pool_id = pool_named(session, pool, now=now)
    added, drawn = 0, set[str]()
    while added < count:
        codes = distinct_codes(min(count - added, INSERT_CHUNK), length=length, prefix=prefix, avoid=drawn,
                               choice=choice)
        drawn.update(codes)
        stmt = dialect.insert(session, COUPONS).on_conflict_do_nothing(index_elements=["code"]).returning(C.id)
        added += len(session.execute(stmt, [
            {"pool_id": pool_id, "code": code, "source": "generated", "added_at": now, "expires_on": expires_on}
            for code in codes]).all())
    return added


# ------------------------------------------------------------------ giving codes (send time)
@dataclass(frozen=True)
class Given:
    """The code a message holds, and the last day it is good for."""

    code: str
    expires_on: date | None


def give(conn: Connection, wanted: Sequence[tuple[int, Offer]], *, now: datetime) -> tuple[dict[int, Given], list[int]]:
    """Give each message of ``wanted`` (message id, its rule's offer) a code
    of the offer's pool unless it holds one already. Returns every message's
    code, and the ids of the codes given now (their orders may be in already)."""
    if not wanted:
        return {}, []
    by_pool: dict[str, list[tuple[int, Offer]]] = {}
    for message_id, offer in wanted:
        by_pool.setdefault(offer.pool, []).append((message_id, offer))
    pools = dict(conn.execute(select(CouponPool.name, CouponPool.id).where(CouponPool.name.in_(list(by_pool)))).all())
    if dialect.is_postgresql(conn) and pools:  # givers of the same pool take turns (see the module)
        conn.execute(select(CouponPool.id).where(CouponPool.id.in_(list(pools.values())))
                     .order_by(CouponPool.id).with_for_update())
    new: list[int] = []
    for name, group in sorted(by_pool.items()):
        if name not in pools:
            continue
        # Rules sharing a pool may promise other days: one statement per (discount, last day).
        terms: dict[tuple[str, date | None], tuple[Offer, list[int]]] = {}
        for message_id, offer in group:
            terms.setdefault((offer.discount, offer.expires_on(now)), (offer, []))[1].append(message_id)
        for (_, last_day), (offer, ids) in terms.items():
            new += _give(conn, pools[name], ids, offer, last_day=last_day, now=now)
    return held(conn, [m for m, _ in wanted]), new


def _give(conn: Connection, pool_id: int, ids: Sequence[int], offer: Offer, *, last_day: date | None,
          now: datetime) -> list[int]:
    """One statement: the i-th message without a code gets the i-th free code of the pool."""
    holds = exists().where(C.message_id == Message.id)
    want = (select(Message.id.label("message_id"), func.row_number().over(order_by=Message.id).label("n"))
            .where(dialect.among(conn, Message.id, ids), ~holds).cte("want"))
    usable = or_(C.expires_on.is_(None), C.expires_on >= now.date())
    free = (select(C.id.label("coupon_id"), func.row_number().over(order_by=C.id).label("n"))
            .where(C.pool_id == pool_id, C.given_at.is_(None), usable)
            .order_by(C.id).limit(len(ids)).cte("free"))
    pairs = select(free.c.coupon_id, want.c.message_id).join(want, want.c.n == free.c.n).cte("pairs")
    expires: Any = C.expires_on
    if last_day is not None:
        expires = case((or_(C.expires_on.is_(None), C.expires_on > last_day), literal(last_day)), else_=C.expires_on)
    stmt = (update(COUPONS).where(C.id == pairs.c.coupon_id)
            .values(message_id=pairs.c.message_id, given_at=now, expires_on=expires, percent_off=offer.percent,
                    amount_off=offer.amount, currency=offer.currency)
            .returning(C.id))
    return [int(i) for i in conn.execute(stmt).scalars()]


def held(conn: Connection, message_ids: Sequence[int]) -> dict[int, Given]:
    """The codes these messages hold."""
    if not message_ids:
        return {}
    return {int(m): Given(code, expires) for m, code, expires in conn.execute(
        select(C.message_id, C.code, C.expires_on).where(dialect.among(conn, C.message_id, message_ids)))}


# ------------------------------------------------------------------ what pools hold
@dataclass
class PoolCounts:
    """One pool, as ``outreach coupons list`` shows it."""

    pool: str
    created_at: datetime
    total: int = 0
    #: Can still be given: not given, not past its last day.
    free: int = 0
    #: Given to a message (sent, or being sent).
    used: int = 0
    #: Never given and past their last day.
    expired: int = 0
    #: Given codes an order redeemed; later orders with the same code are duplicate uses.
    redeemed: int = 0
    duplicate_uses: int = 0
    rules: list[str] = field(default_factory=list)


def pool_counts(session: Session, *, today: date, pool: str | None = None) -> list[PoolCounts]:
    """Every pool (or one) with its counts and the rules that name it."""
    found = {name: PoolCounts(pool=name, created_at=created) for name, created in session.execute(
        select(CouponPool.name, CouponPool.created_at).where(CouponPool.name == pool if pool else literal(True))
        .order_by(CouponPool.name))}
    never = Coupon.given_at.is_(None)
    late = and_(Coupon.expires_on.is_not(None), Coupon.expires_on < today)
    rows = session.execute(
        select(CouponPool.name, func.count(Coupon.id),
               func.sum(case((and_(never, ~late), 1), else_=0)), func.sum(case((never, 0), else_=1)),
               func.sum(case((and_(never, late), 1), else_=0)))
        .join(Coupon, Coupon.pool_id == CouponPool.id).where(CouponPool.name.in_(list(found)))
        .group_by(CouponPool.name))
    for name, total, free, used, expired in rows:
        entry = found[name]
        entry.total, entry.free = int(total), int(free or 0)
        entry.used, entry.expired = int(used or 0), int(expired or 0)
    for name, duplicate, uses in session.execute(
        select(CouponPool.name, CouponRedemption.duplicate, func.count())
        .join(Coupon, Coupon.pool_id == CouponPool.id).join(CouponRedemption, CouponRedemption.coupon_id == Coupon.id)
        .where(CouponPool.name.in_(list(found))).group_by(CouponPool.name, CouponRedemption.duplicate)):
        if duplicate:
            found[name].duplicate_uses = int(uses)
        else:
            found[name].redeemed = int(uses)
    for name, definition in session.execute(select(Rule.name, Rule.definition).order_by(Rule.name)):
        named = ((definition or {}).get("offer") or {}).get("pool")
        if named in found:
            found[named].rules.append(name)
    return list(found.values())


def free_codes(session: Session, pool: str, *, today: date) -> int:
    """Codes of ``pool`` that can still be given (0 for a pool that does not exist)."""
    return int(session.scalar(
        select(func.count()).select_from(Coupon).join(CouponPool, CouponPool.id == Coupon.pool_id)
        .where(CouponPool.name == pool, Coupon.given_at.is_(None),
               or_(Coupon.expires_on.is_(None), Coupon.expires_on >= today))) or 0)


def codes_wanted(session: Session, pool: str) -> int:
    """Messages of the rules naming ``pool`` that wait to be sent and hold no code yet."""
    rule_ids = [rule_id for rule_id, definition in session.execute(select(Rule.id, Rule.definition))
                if ((definition or {}).get("offer") or {}).get("pool") == pool]
    if not rule_ids:
        return 0
    waiting = (MessageStatus.PLANNED, MessageStatus.QUEUED, MessageStatus.SENDING)
    return int(session.scalar(select(func.count()).select_from(Message).where(
        Message.rule_id.in_(rule_ids), Message.status.in_(waiting), ~exists().where(C.message_id == Message.id))) or 0)


# ------------------------------------------------------------------ privacy
#: What an erased customer's code becomes (with the code's row id: still unique).
ERASED_CODE = "ERASED-"


def customer_codes(session: Session, customer_id: int) -> list[dict[str, Any]]:
    """The codes given to the customer's messages, with their redemptions
    (another customer's order that used one is shown without its number or amounts)."""
    found = []
    for coupon, pool in session.execute(
            select(Coupon, CouponPool.name).join(CouponPool, CouponPool.id == Coupon.pool_id)
            .join(Message, Message.id == Coupon.message_id).where(Message.customer_id == customer_id)
            .order_by(Coupon.given_at, Coupon.id)):
        uses = []
        for use, order_ext, owner in session.execute(
                select(CouponRedemption, Order.external_id, Order.customer_id)
                .join(Order, Order.id == CouponRedemption.order_id).where(CouponRedemption.coupon_id == coupon.id)
                .order_by(CouponRedemption.ordered_at, CouponRedemption.order_id)):
            own = owner == customer_id
            uses.append({"order": order_ext if own else None, "ordered_at": use.ordered_at,
                         "duplicate": use.duplicate, "amount": use.amount if own else None,
                         "currency": use.currency if own else None, "discount": use.discount if own else None})
        found.append({"code": coupon.code, "pool": pool, "message_id": coupon.message_id, "given_at": coupon.given_at,
                      "expires_on": coupon.expires_on, "percent_off": coupon.percent_off,
                      "amount_off": coupon.amount_off, "currency": coupon.currency, "redemptions": uses})
    return found


def erase_codes(session: Session, customer_id: int) -> int:
    """The codes given to the customer's messages lose their text (the shop
    can tell whose a code was), on the codes and on every order that carried
    them (someone they passed it to included); the redemptions stay, for the
    revenue figures. Returns how many."""
    given = session.execute(select(Coupon.id, Coupon.code).join(Message, Message.id == Coupon.message_id)
                            .where(Message.customer_id == customer_id)).all()
    for coupon_id, code in given:
        session.execute(update(Order).where(Order.coupon_code == code).values(coupon_code=f"{ERASED_CODE}{coupon_id}"))
        session.execute(update(COUPONS).where(C.id == coupon_id).values(code=f"{ERASED_CODE}{coupon_id}"))
    return len(given)


def codes_of(session: Session, pool: str) -> list[tuple[str, date | None, bool]]:
    """(code, last day, given) of every code of ``pool``, in pool order — to load into the shop."""
    return [(code, expires, given is not None) for code, expires, given in session.execute(
        select(Coupon.code, Coupon.expires_on, Coupon.given_at).join(CouponPool, CouponPool.id == Coupon.pool_id)
        .where(CouponPool.name == pool).order_by(Coupon.id))]
