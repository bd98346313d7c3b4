"""consents.csv: rows appended to the consent ledger.

The ledger is history: a grant followed by a revocation is two rows, and
nothing is ever overwritten. A row identical to one already in the ledger
(same customer, channel, status and ``recorded_at``) is skipped, so importing
the same file twice adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, insert, select

from outreach.domain import Channel, ConsentStatus
from outreach.importing.base import Cells, CustomerRef, Kind, Parsed, Rejected, Written, resolve_customers
from outreach.importing.values import check_length, parse_choice, parse_instant
from outreach.store.models import ConsentRecord

CHANNELS = tuple(c.value for c in Channel)
STATUSES = tuple(s.value for s in ConsentStatus)
EXTERNAL_ID_MAX, SOURCE_MAX = 128, 64

LedgerKey = tuple[int, Channel, ConsentStatus, datetime]


@dataclass
class ConsentRow:
    customer: CustomerRef
    channel: Channel
    status: ConsentStatus
    source: str
    evidence: str | None
    recorded_at: datetime

    def key(self) -> LedgerKey:
        assert self.customer.id is not None
        return (self.customer.id, self.channel, self.status, self.recorded_at)


#: How far a consent's time may be ahead of ours (another machine's clock).
CLOCK_SKEW = timedelta(minutes=5)


class Consents(Kind[ConsentRow]):
    name = "consents"
    columns = ("customer_id", "channel", "status", "source", "evidence", "recorded_at")
    required_columns = ("customer_id", "channel", "status", "source")

    def parse(self, cells: Cells) -> ConsentRow | None:
        customer = cells.required(
            "customer_id", lambda s: check_length(s, EXTERNAL_ID_MAX),
            hint="write the customer's external_id from customers.csv",
        )
        channel = cells.required(
            "channel", lambda s: parse_choice(s, CHANNELS), hint=f"write one of {', '.join(CHANNELS)}"
        )
        status = cells.required(
            "status", lambda s: parse_choice(s, STATUSES), hint=f"write one of {', '.join(STATUSES)}"
        )
        source = cells.required(
            "source", lambda s: check_length(s, SOURCE_MAX),
            hint="say where the consent was given or withdrawn, e.g. checkout or preference-centre",
        )
        evidence = cells.raw("evidence") or None
        recorded_at = cells.get("recorded_at", parse_instant, self.now)
        if recorded_at > self.now + CLOCK_SKEW:
            # A consent "from the future" would outrank every real opt-out until then.
            cells.problem("recorded_at", f"{recorded_at:%Y-%m-%d %H:%M} UTC is later than now "
                          f"({self.now:%Y-%m-%d %H:%M} UTC)",
                          hint="write the time with its offset (2026-03-01T09:30:00+08:00): a local time "
                               "without one is read as UTC")
        if cells.problems or customer is None or channel is None or status is None or source is None:
            return None
        return ConsentRow(
            CustomerRef(customer), Channel(channel), ConsentStatus(status), source, evidence, recorded_at
        )

    def resolve(self, conn: Connection, batch: list[Parsed[ConsentRow]]) -> list[Rejected]:
        return resolve_customers(conn, batch, file=self.file)

    def write(self, conn: Connection, batch: list[Parsed[ConsentRow]]) -> Written:
        ids = sorted({p.record.customer.id for p in batch if p.record.customer.id is not None})
        seen: set[LedgerKey] = {
            (customer_id, Channel(channel), ConsentStatus(status), recorded_at)
            for customer_id, channel, status, recorded_at in conn.execute(
                select(
                    ConsentRecord.customer_id,
                    ConsentRecord.channel,
                    ConsentRecord.status,
                    ConsentRecord.recorded_at,
                ).where(ConsentRecord.customer_id.in_(ids))
            )
        }
        new = []
        for parsed in batch:
            record = parsed.record
            if record.key() in seen:
                continue
            seen.add(record.key())
            new.append(
                {"customer_id": record.customer.id, "channel": record.channel, "status": record.status,
                 "source": record.source, "evidence": record.evidence, "recorded_at": record.recorded_at}
            )
        if new:
            conn.execute(insert(ConsentRecord), new)
        return Written(inserted=len(new))
