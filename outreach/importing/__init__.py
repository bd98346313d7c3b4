"""Streaming CSV import of customers, orders, consents and custom events.

    run.py        ``import_csv``: batches, one transaction, strict or --skip-invalid
    source.py     reading the file (encoding, rows, row numbers), the reject file
    values.py     one cell -> one clean value (phone, email, time, amount, ...)
    base.py       what every kind shares: located cell problems, bulk upserts
    customers.py  orders.py  consents.py  events.py   one module per kind
    coupons.py    a pool's codes from the shop (``import_coupons``: always strict)
"""

from __future__ import annotations

from outreach.importing.coupons import import_coupons
from outreach.importing.run import KINDS, ImportKind, ImportResult, import_csv
from outreach.importing.values import InvalidValue, normalize_email, normalize_phone

__all__ = ["KINDS", "ImportKind", "ImportResult", "InvalidValue", "import_coupons", "import_csv", "normalize_email",
           "normalize_phone"]
