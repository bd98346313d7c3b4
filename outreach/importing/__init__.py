"""The pieces of the CSV importer; the public API is ``outreach.importer``.

    source.py     reading the file (encoding, rows, row numbers), the reject file
    values.py     one cell -> one clean value (phone, email, time, amount, ...)
    base.py       what every kind shares: located cell problems, bulk upserts
    customers.py  orders.py  consents.py  events.py   one module per kind
"""
