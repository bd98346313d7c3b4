"""The Alembic migration builds exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from outreach.models import Base


def test_migration_from_empty_matches_models(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_messages_cannot_hold_the_same_occurrence_twice(engine: Engine) -> None:
    uniques = inspect(engine).get_unique_constraints("messages")
    assert {"rule_id", "customer_id", "occurrence_key"} in [set(u["column_names"]) for u in uniques]
