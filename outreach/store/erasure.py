"""The right to erasure: remove what identifies a customer, keep the books
and the opt-out.

One transaction (:func:`erase`): everything below happens, or nothing does.

Removed (set empty, or scrubbed of personal values):

* the profile: name, email, phone, birthday, attributes, tags, time zone and
  locale (reset to the defaults); the external id becomes ``erased-<row id>``
  so the shop's id no longer leads to the row;
* messages: ``to_address`` and the rendered ``subject`` (a template may have
  put anything of the customer into it); ``last_error`` scrubbed;
* tracking events (of the customer, their messages or their orders): the
  raw ``payload`` (a provider's copy of the address, the reply text, a user
  agent, the shop's order body with its customer id) and a clicked URL's
  query string and fragment;
* custom events: their ``properties`` (free data from the shop);
* segment and lifecycle memberships;
* preferences: topics turned off, a break, double opt-in requests (their
  addresses); the evidence of preference changes is kept, scrubbed;
* suppressions of the customer's addresses — replaced by hashes in
  ``erased_addresses`` (see ``outreach.store.erased``), which keep the opt-out;
* the text of the coupon codes given to the customer's messages (the shop
  can tell whose a code was), on the codes and on every order that carried one.

Kept, anonymized: the customer row itself (its id, type and creation time),
orders with their lines (amounts, currency, dates, SKUs, coupon codes other
than their personal ones — the books and the revenue reports need them),
the redemptions of their codes (message, order, revenue, discount), the consent ledger (status,
channel, time, source; the evidence text scrubbed of addresses, names and IP
addresses) plus one ``revoked`` entry per channel still granted, message
rows (rule, channel, status, times, cost, provider id), event names and
times, and the statistics derived from orders. An ``erasures`` row records
what was erased and when — counts, no personal values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import Engine, delete, func, or_, select, update
from sqlalchemy.orm import Session

from outreach.domain import Channel, ConsentStatus
from outreach.logs import get_logger
from outreach.store import coupons, dialect, permission
from outreach.store.erased import ErasedAddress, Erasure, address_hash
from outreach.store.export import find_customer
from outreach.store.models import (
    ConsentRecord,
    CurrentConsent,
    Customer,
    CustomerTag,
    CustomEvent,
    MarketingPause,
    Membership,
    Message,
    Order,
    PreferenceRecord,
    Suppression,
    TopicOptOut,
    TrackingEvent,
)
from outreach.store.preference_rows import ConsentConfirmation

#: What a scrubbed personal value becomes in free text (evidence, errors).
PLACEHOLDER = "[erased]"
#: The external id an erased customer's row gets (with its row id).
ERASED_ID_PREFIX = "erased-"
#: What the time zone and locale are reset to (the importer's defaults).
DEFAULT_TIMEZONE, DEFAULT_LOCALE = "UTC", "en"
#: The ledger source of the revocation an erasure appends.
ERASURE_SOURCE = "erasure"
#: Name parts shorter than this are not scrubbed on their own ("Li" in "Lime").
MIN_NAME_PART = 3
#: Things in free text that look like an address of someone, whoever's.
LOOKS_PERSONAL = re.compile(
    r"[^@\s<>()\[\],;:'\"]+@[^@\s<>()\[\],;:'\"]+"      # an email address
    r"|\+\d[\d \-().]{5,}\d|\b\d{7,}\b"                # a phone number (+ and digits, or 7+ digits)
    r"|\b\d{1,3}(?:\.\d{1,3}){3}\b"                     # an IPv4 address
    r"|\b(?:[0-9a-fA-F]{1,4}:){3,7}[0-9a-fA-F]{1,4}\b"  # an IPv6 address
)


@dataclass
class ErasureReport:
    """What an erasure removed (or, in a dry run, would remove) — counts, no personal values."""

    customer_id: int
    dry_run: bool
    #: Profile fields that held a value.
    fields: list[str] = field(default_factory=list)
    tags: int = 0
    addresses_hashed: int = 0
    suppressions_replaced: int = 0
    consent_records_scrubbed: int = 0
    consents_revoked: int = 0
    messages_anonymized: int = 0
    tracking_events_scrubbed: int = 0
    events_scrubbed: int = 0
    memberships_removed: int = 0
    preferences_removed: int = 0
    preference_records_scrubbed: int = 0
    other_customers_suppressed: int = 0
    coupon_codes_erased: int = 0
    orders_kept: int = 0
    revenue_kept: Decimal = Decimal("0")

    def summary(self) -> dict[str, object]:
        """The audit line's content (JSON-ready)."""
        out = asdict(self)
        out.pop("dry_run")
        out["revenue_kept"] = str(self.revenue_kept)
        return out


def scrub(text: str | None, values: Iterable[str]) -> str | None:
    """``text`` with each personal value (and anything that looks like an
    address, a phone number or an IP address) replaced by ``[erased]``."""
    if not text:
        return text
    for value in sorted({v for v in values if v}, key=len, reverse=True):
        text = re.sub(re.escape(value), PLACEHOLDER, text, flags=re.IGNORECASE)
    return LOOKS_PERSONAL.sub(PLACEHOLDER, text)


def _personal_values(customer: Customer, addresses: set[tuple[Channel, str]]) -> list[str]:
    parts = [p for p in re.split(r"\s+", customer.name.strip()) if len(p) >= MIN_NAME_PART]
    return [customer.name.strip(), *parts, *(address for _, address in addresses)]


def _count(result: Any) -> int:
    """Rows a DELETE or UPDATE touched."""
    return int(getattr(result, "rowcount", 0) or 0)


def _scrub_evidence(records: Iterable[ConsentRecord | PreferenceRecord], values: list[str]) -> int:
    """Scrub the evidence of ledger rows; how many changed."""
    changed = 0
    for record in records:
        cleaned = scrub(record.evidence, values)
        if cleaned != record.evidence:
            record.evidence = cleaned
            changed += 1
    return changed


def _without_query(url: str | None) -> str | None:
    if not url:
        return url
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def erase_customer(session: Session, external_id: str, *, now: datetime, dry_run: bool = False) -> ErasureReport:
    """Erase one customer in the session's transaction (see the module's docstring)."""
    customer = find_customer(session, external_id)
    cid = customer.id
    report = ErasureReport(customer_id=cid, dry_run=dry_run)
    report.fields = [name for name, value in (
        ("external_id", True), ("name", customer.name), ("email", customer.email), ("phone", customer.phone),
        ("birthday", customer.birthday), ("attributes", customer.attributes),
        ("timezone", customer.timezone != DEFAULT_TIMEZONE), ("locale", customer.locale != DEFAULT_LOCALE),
    ) if value]
    # Every address the customer had: the profile's and those messages went to.
    addresses = {(channel, address) for channel, address in (
        (Channel.EMAIL, customer.email), (Channel.SMS, customer.phone)) if address}
    addresses.update((channel, address) for channel, address in session.execute(
        select(Message.channel, Message.to_address).distinct().where(Message.customer_id == cid)) if address)
    values = _personal_values(customer, addresses)

    # The opt-out, kept as hashes; the plain suppressions go.
    for channel, address in sorted(addresses):
        session.execute(dialect.insert(session, ErasedAddress)
                        .values(channel=channel, address_hash=address_hash(channel, address), erased_at=now)
                        .on_conflict_do_nothing(index_elements=["channel", "address_hash"]))
    report.addresses_hashed = len({(c, address_hash(c, a)) for c, a in addresses})
    for channel, address in addresses:
        gone = session.execute(delete(Suppression).where(Suppression.channel == channel,
                                                         Suppression.address == address))
        report.suppressions_replaced += _count(gone)

    # Consent proof, anonymized; still-granted channels revoked.
    report.consent_records_scrubbed = _scrub_evidence(session.scalars(
        select(ConsentRecord).where(ConsentRecord.customer_id == cid)).all(), values)
    granted = session.scalars(select(CurrentConsent.channel).where(
        CurrentConsent.customer_id == cid, CurrentConsent.status == ConsentStatus.GRANTED)).all()
    for channel in granted:
        session.add(ConsentRecord(customer_id=cid, channel=channel, status=ConsentStatus.REVOKED,
                                  source=ERASURE_SOURCE, evidence="erased at the customer's request",
                                  recorded_at=now))
    report.consents_revoked = len(granted)

    # Messages: no address, no rendered subject, errors scrubbed.
    messages = select(Message.id).where(Message.customer_id == cid)
    report.messages_anonymized = _count(session.execute(
        update(Message).where(Message.customer_id == cid).values(to_address=None, subject=None)))
    for message in session.scalars(select(Message).where(Message.customer_id == cid,
                                                         Message.last_error.is_not(None))).all():
        message.last_error = scrub(message.last_error, values)

    # Responses: the raw payloads go, clicked URLs lose their query.
    orders = select(Order.id).where(Order.customer_id == cid)
    for event in session.scalars(select(TrackingEvent).where(or_(
            TrackingEvent.customer_id == cid, TrackingEvent.message_id.in_(messages),
            TrackingEvent.order_id.in_(orders)))).all():
        event.payload = {}
        event.url = _without_query(event.url)
        report.tracking_events_scrubbed += 1
    report.events_scrubbed = _count(session.execute(
        update(CustomEvent).where(CustomEvent.customer_id == cid).values(properties={})))
    report.memberships_removed = _count(session.execute(
        delete(Membership).where(Membership.customer_id == cid)))
    report.preferences_removed = sum(_count(session.execute(delete(table).where(table.customer_id == cid)))
                                     for table in (TopicOptOut, MarketingPause, ConsentConfirmation))
    report.preference_records_scrubbed = _scrub_evidence(session.scalars(
        select(PreferenceRecord).where(PreferenceRecord.customer_id == cid)).all(), values)
    report.coupon_codes_erased = coupons.erase_codes(session, cid)
    report.tags = _count(session.execute(delete(CustomerTag).where(CustomerTag.customer_id == cid)))
    session.expire(customer, ["tags"])

    # The profile, last: other customers who share an address are suppressed on it.
    customer.external_id, customer.name, customer.email, customer.phone = f"{ERASED_ID_PREFIX}{cid}", "", None, None
    customer.birthday = customer.birth_month = customer.birth_day = None
    customer.attributes, customer.timezone, customer.locale = {}, DEFAULT_TIMEZONE, DEFAULT_LOCALE
    customer.updated_at = now
    session.flush()
    emails = [a for c, a in addresses if c is Channel.EMAIL]
    phones = [a for c, a in addresses if c is Channel.SMS]
    sharing = session.scalars(select(Customer.id).where(
        Customer.id != cid, or_(Customer.email.in_(emails), Customer.phone.in_(phones)))).all()
    report.other_customers_suppressed = permission.suppress_erased(session, list(sharing), now=now)

    report.orders_kept, revenue = session.execute(
        select(func.count(), func.coalesce(func.sum(Order.amount), 0)).where(Order.customer_id == cid)).one()
    report.revenue_kept = Decimal(revenue)
    session.add(Erasure(customer_id=cid, erased_at=now, summary=report.summary()))
    session.flush()
    return report


def erase(engine: Engine, external_id: str, *, now: datetime, dry_run: bool = False) -> ErasureReport:
    """Erase one customer in one transaction; a dry run reports and rolls back."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            report = erase_customer(session, external_id, now=now, dry_run=dry_run)
        except BaseException:
            session.rollback()
            raise
        if dry_run:
            session.rollback()
        else:
            session.commit()
            # The audit line in the log too: the row id and counts, no personal value.
            get_logger("outreach.privacy").warning("customer erased", erased_at=now.isoformat(),
                                                   **report.summary())
        return report
