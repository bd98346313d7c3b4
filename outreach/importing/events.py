"""events.csv: custom events (``name`` happened to ``customer_id`` at ``occurred_at``).

Other columns become the event's ``properties``. A row with an
``external_id`` is upserted by it; a row without one is skipped when the
customer already has an event of that name at that time, so importing the
same file twice adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from outreach.importing.base import (
    Cells,
    CustomerRef,
    Kind,
    Parsed,
    Rejected,
    Written,
    keep_last,
    resolve_customers,
    upsert,
)
from outreach.importing.values import check_length, parse_instant
from outreach.store.models import CustomEvent

EXTERNAL_ID_MAX, NAME_MAX = 128, 64
#: An event upserted by its external_id is replaced as a whole.
UPDATES = ("customer_id", "name", "occurred_at", "properties")

EventKey = tuple[int, str, datetime]


@dataclass
class EventRow:
    external_id: str | None
    customer: CustomerRef
    name: str
    occurred_at: datetime
    properties: dict[str, str] = field(default_factory=dict)

    def key(self) -> EventKey:
        assert self.customer.id is not None
        return (self.customer.id, self.name, self.occurred_at)

    def params(self) -> dict[str, Any]:
        return {
            "external_id": self.external_id,
            "customer_id": self.customer.id,
            "name": self.name,
            "occurred_at": self.occurred_at,
            "properties": self.properties,
        }


class Events(Kind[EventRow]):
    name = "events"
    columns = ("external_id", "customer_id", "name", "occurred_at")
    required_columns = ("customer_id", "name")
    extra_into = "properties"

    def parse(self, cells: Cells) -> EventRow | None:
        external_id = cells.get("external_id", lambda s: check_length(s, EXTERNAL_ID_MAX), None)
        customer = cells.required(
            "customer_id", lambda s: check_length(s, EXTERNAL_ID_MAX),
            hint="write the customer's external_id from customers.csv",
        )
        name = cells.required(
            "name", lambda s: check_length(s, NAME_MAX), hint="name what happened, e.g. tasting_attended"
        )
        occurred_at = cells.get("occurred_at", parse_instant, self.now)
        if cells.problems or customer is None or name is None:
            return None
        return EventRow(external_id, CustomerRef(customer), name, occurred_at, self.extra_values(cells.row))

    def resolve(self, conn: Connection, batch: list[Parsed[EventRow]]) -> list[Rejected]:
        return resolve_customers(conn, batch, file=self.file)

    def write(self, conn: Connection, batch: list[Parsed[EventRow]]) -> Written:
        keyed = keep_last([p for p in batch if p.record.external_id], lambda r: r.external_id or "")
        written = Written()
        if keyed:
            existing = set(
                conn.scalars(
                    select(CustomEvent.external_id).where(
                        CustomEvent.external_id.in_([p.record.external_id for p in keyed])
                    )
                )
            )
            stmt = upsert(conn, CustomEvent, key="external_id", update=UPDATES)
            conn.execute(stmt, [p.record.params() for p in keyed])
            written.inserted = len(keyed) - len(existing)
            written.updated = sum(1 for p in batch if p.record.external_id) - written.inserted
        plain = [p.record for p in batch if not p.record.external_id]
        if plain:
            seen: set[EventKey] = {
                (customer_id, name, occurred_at)
                for customer_id, name, occurred_at in conn.execute(
                    select(CustomEvent.customer_id, CustomEvent.name, CustomEvent.occurred_at).where(
                        CustomEvent.customer_id.in_({r.customer.id for r in plain}),
                        CustomEvent.name.in_({r.name for r in plain}),
                    )
                )
            }
            new = []
            for record in plain:
                if record.key() not in seen:
                    seen.add(record.key())
                    new.append(record.params())
            if new:
                conn.execute(insert(CustomEvent), new)
            written.inserted += len(new)
        return written
