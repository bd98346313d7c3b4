"""customers.csv: upsert by external_id.

The columns a file has are authoritative for the customers it names (an
empty ``email`` cell clears the address, an empty ``tags`` cell removes all
tags); columns it does not have are left as they are.
An address that belonged to an erased customer (``outreach customers erase``)
is suppressed as it comes in, so that person is never contacted again. ``created_at`` of an
existing customer is kept. Other columns go into ``attributes`` key by key:
a filled cell sets the key, an empty cell removes it, keys of columns the file
does not have stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from outreach.domain import CustomerType
from outreach.importing.base import Cells, Kind, Parsed, Written, keep_last, upsert
from outreach.importing.values import (
    check_length,
    normalize_email,
    normalize_phone,
    parse_choice,
    parse_date,
    parse_instant,
    parse_locale,
    parse_name,
    parse_timezone,
)
from outreach.store.models import Customer, CustomerTag
from outreach.store.permission import suppress_erased

CUSTOMER_TYPES = tuple(t.value for t in CustomerType)
DEFAULT_TIMEZONE = "UTC"
DEFAULT_LOCALE = "en"
TAG_SEPARATOR = ";"
#: Column widths of the schema, checked per cell so they are row errors.
EXTERNAL_ID_MAX, NAME_MAX, TAG_MAX = 128, 256, 64
#: File columns -> the customer columns they set on update.
UPDATES = {
    "name": ("name",),
    "email": ("email",),
    "phone": ("phone",),
    "birthday": ("birthday", "birth_month", "birth_day"),
    "timezone": ("timezone",),
    "locale": ("locale",),
    "customer_type": ("customer_type",),
}


@dataclass
class CustomerRecord:
    external_id: str
    name: str
    email: str | None
    phone: str | None
    birthday: date | None
    timezone: str
    locale: str
    customer_type: CustomerType
    tags: list[str]
    created_at: datetime
    attributes: dict[str, str] = field(default_factory=dict)


def parse_tags(raw: str) -> list[str]:
    tags = list(dict.fromkeys(tag.strip() for tag in raw.split(TAG_SEPARATOR) if tag.strip()))
    for tag in tags:
        check_length(tag, TAG_MAX)
    return tags


class Customers(Kind[CustomerRecord]):
    name = "customers"
    columns = (
        "external_id", "name", "email", "phone", "birthday", "timezone",
        "locale", "customer_type", "tags", "created_at",
    )
    required_columns = ("external_id",)
    extra_into = "attributes"

    def parse(self, cells: Cells) -> CustomerRecord | None:
        external_id = cells.required(
            "external_id", lambda s: check_length(s, EXTERNAL_ID_MAX),
            hint="every customer needs the id your shop system knows them by",
        )
        record = CustomerRecord(
            external_id=external_id or "",
            name=cells.get("name", lambda s: parse_name(s, NAME_MAX), ""),
            email=cells.get("email", normalize_email, None),
            phone=cells.get("phone", normalize_phone, None),
            birthday=cells.get("birthday", parse_date, None),
            timezone=cells.get("timezone", parse_timezone, DEFAULT_TIMEZONE),
            locale=cells.get("locale", parse_locale, DEFAULT_LOCALE),
            customer_type=CustomerType(
                cells.get("customer_type", lambda s: parse_choice(s, CUSTOMER_TYPES), CustomerType.RETAIL.value)
            ),
            tags=cells.get("tags", parse_tags, []),
            created_at=cells.get("created_at", parse_instant, self.now),
            attributes=self.extra_values(cells.row),
        )
        if record.birthday and record.birthday > self.now.date():
            cells.problem("birthday", f"birthday {record.birthday} is in the future", "check the year of birth")
        return None if cells.problems else record

    def write(self, conn: Connection, batch: list[Parsed[CustomerRecord]]) -> Written:
        rows = keep_last(batch, lambda r: r.external_id)
        existing = {
            ext: (pk, attrs or {})
            for ext, pk, attrs in conn.execute(
                select(Customer.external_id, Customer.id, Customer.attributes).where(
                    Customer.external_id.in_([p.record.external_id for p in rows])
                )
            )
        }
        params = [self._params(p.record, existing.get(p.record.external_id)) for p in rows]
        update = ["updated_at"]
        update += [col for column, cols in UPDATES.items() if self.header.has(column) for col in cols]
        if self.extras:
            update.append("attributes")
        stmt = upsert(conn, Customer, key="external_id", update=update)
        returned = conn.execute(stmt.returning(Customer.external_id, Customer.id), params)
        by_external: dict[str, int] = {ext: pk for ext, pk in returned}
        if self.header.has("tags"):
            conn.execute(delete(CustomerTag).where(CustomerTag.customer_id.in_(by_external.values())))
            tags = [
                {"customer_id": by_external[p.record.external_id], "tag": tag}
                for p in rows
                for tag in p.record.tags
            ]
            if tags:
                conn.execute(insert(CustomerTag), tags)
        inserted = sum(1 for p in rows if p.record.external_id not in existing)
        # A person erased earlier is never contacted again: their addresses, back in, are suppressed.
        suppressed = suppress_erased(conn, list(by_external.values()), now=self.now)
        return Written(inserted=inserted, updated=len(batch) - inserted, suppressed=suppressed)

    def _params(self, record: CustomerRecord, existing: tuple[int, dict[str, Any]] | None) -> dict[str, Any]:
        attributes: dict[str, Any] = dict(existing[1]) if existing else {}
        for _, column in self.extras:
            attributes.pop(column, None)
        attributes.update(record.attributes)
        birthday = record.birthday
        return {
            "external_id": record.external_id,
            "name": record.name,
            "email": record.email,
            "phone": record.phone,
            "birthday": birthday,
            "birth_month": birthday.month if birthday else None,
            "birth_day": birthday.day if birthday else None,
            "timezone": record.timezone,
            "locale": record.locale,
            "customer_type": record.customer_type,
            "attributes": attributes,
            "created_at": record.created_at,
            "updated_at": self.now,
        }
