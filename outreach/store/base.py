"""What every table shares: the declarative base with its naming
convention, the id type, and enums stored as checked strings."""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, Integer, MetaData, Numeric
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase

# BigInteger primary keys on PostgreSQL, INTEGER (rowid alias) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, Decimal: Numeric(14, 2)}


def enum_column(cls: type[enum.Enum], name: str) -> SAEnum:
    return SAEnum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=24,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )
