"""Erased customers' addresses, kept only as hashes, and the audit of erasures.

An erasure (``outreach customers erase``) removes a customer's addresses but
must keep their opt-out: the address must never be mailed again, even when
the shop exports the same person once more. What stays is one row per
(channel, hash of the address) in ``erased_addresses``; every path that can
bring an address back in (the customers CSV import) looks new addresses up
there and suppresses the ones it finds (:func:`suppress_erased`).

The hash is SHA-256 over a fixed domain-separation prefix, the channel and
the normalized address (an email trimmed and lowercased, a phone in E.164 —
what the importer stores). It has no key, so it survives secret rotation, a
restore on another machine and a lost configuration; the trade-off is that
whoever holds the database can test a guessed address against it (see
docs/privacy.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from outreach.domain import Channel
from outreach.store.base import Base, BigId, enum_column

#: Domain separation: these hashes mean "an erased address of Outreach", version 1.
#: Changing it makes every stored hash useless — the erased addresses could be mailed again.
HASH_PREFIX = "outreach:erased-address:v1:"
#: The suppression reason of an address that matches an erased one.
ERASED_REASON = "erased customer"
#: Hashes looked up per query (bound parameters: well under SQLite's limit).
LOOKUP_CHUNK = 1000


class ErasedAddress(Base):
    """An address of an erased customer, as :func:`address_hash`: never to be contacted again."""

    __tablename__ = "erased_addresses"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[Channel] = mapped_column(enum_column(Channel, "channel"))
    address_hash: Mapped[str] = mapped_column(String(64))
    erased_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (UniqueConstraint("channel", "address_hash", name="uq_erased_addresses_hash"),)


class Erasure(Base):
    """The audit line of one erasure: which (anonymized) customer row, when,
    and how many of what was removed — never a personal value."""

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: The customer row kept, anonymized, for the books (no foreign key: the audit outlives it).
    customer_id: Mapped[int] = mapped_column(BigId)
    erased_at: Mapped[datetime] = mapped_column(DateTime)
    summary: Mapped[dict[str, Any]] = mapped_column()


def normalized(channel: Channel, address: str) -> str:
    """The form an address is hashed in: emails trimmed and lowercased, phones
    trimmed (the importer already stores them in E.164)."""
    text = address.strip()
    return text.lower() if channel is Channel.EMAIL else text


def address_hash(channel: Channel, address: str) -> str:
    """Hex SHA-256 of the prefix, the channel and the normalized address."""
    material = f"{HASH_PREFIX}{channel.value}:{normalized(channel, address)}"
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def any_erased(session: Session | Any) -> bool:
    """Whether any customer was ever erased (most imports need not hash a thing)."""
    return session.scalar(select(ErasedAddress.id).limit(1)) is not None


def erased_among(session: Session | Any, addresses: Iterable[tuple[Channel, str]]) -> set[tuple[Channel, str]]:
    """The (channel, address) pairs among ``addresses`` that belong to an erased customer."""
    by_hash: dict[Channel, dict[str, str]] = {}
    for channel, address in addresses:
        by_hash.setdefault(channel, {})[address_hash(channel, address)] = address
    found: set[tuple[Channel, str]] = set()
    for channel, hashes in by_hash.items():
        digests = list(hashes)
        for start in range(0, len(digests), LOOKUP_CHUNK):
            rows = session.scalars(select(ErasedAddress.address_hash).where(
                ErasedAddress.channel == channel,
                ErasedAddress.address_hash.in_(digests[start:start + LOOKUP_CHUNK])))
            found.update((channel, hashes[digest]) for digest in rows)
    return found
