"""Shared fixtures: real databases, real services.

A test that needs a service (PostgreSQL, Redis) skips on a machine without it
and *fails* when ``CI=true``. Every run creates and drops its own PostgreSQL
database and uses its own Redis key namespace, so two runs never collide.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from outreach.store.engine import make_engine, migrate
from outreach.store.models import Base

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get(
    "OUTREACH_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("OUTREACH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_ID = uuid.uuid4().hex[:10]


def service_unavailable(name: str, reason: str) -> None:
    """Skip locally, fail in CI."""
    message = f"{name} is not available: {reason}"
    if IN_CI:
        pytest.fail(message + " (CI=true: services are required)")
    pytest.skip(message)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------- databases
@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    if not _port_open("127.0.0.1", 5432):
        service_unavailable("PostgreSQL", "nothing listens on 127.0.0.1:5432")
    name = f"outreach_test_{RUN_ID}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - reported as a service problem
        service_unavailable("PostgreSQL", str(exc))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_pg(engine: Engine) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: SQLite file or PostgreSQL."""
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "outreach.db"
        shutil.copy(template, path)
        yield f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_database")
        engine = make_engine(url)
        _truncate_pg(engine)
        engine.dispose()
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def pg_engine(pg_database: str) -> Iterator[Engine]:
    """PostgreSQL only, migrated and empty: for what only PostgreSQL does (concurrent transactions)."""
    eng = make_engine(pg_database)
    _truncate_pg(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """SQLite only, for tests whose point is not the database."""
    path = tmp_path / "outreach.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


# ---------------------------------------------------------------- redis and brokers
@pytest.fixture
def redis_url() -> str:
    if not _port_open("127.0.0.1", 6379):
        service_unavailable("Redis", "nothing listens on 127.0.0.1:6379")
    return REDIS_URL


@pytest.fixture
def redis_namespace() -> Iterator[str]:
    """A key namespace of this test's own, emptied afterwards."""
    namespace = f"outreach-test-{RUN_ID}-{uuid.uuid4().hex[:6]}"
    yield namespace
    if _port_open("127.0.0.1", 6379):
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{namespace}*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(params=["memory", "redis"])
def broker(request: pytest.FixtureRequest) -> dict[str, str]:
    """Every broker Outreach ships, as the settings that select it: the
    embedded in-process broker and Redis (its own key namespace)."""
    if request.param == "memory":
        return {"broker_url": "memory://"}
    return {"broker_url": request.getfixturevalue("redis_url"),
            "broker_namespace": request.getfixturevalue("redis_namespace")}


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point every OUTREACH_* path at the test's own directory."""
    from outreach.config import reset_settings_cache

    for key in list(os.environ):
        if key.startswith("OUTREACH_") and not key.startswith("OUTREACH_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("OUTREACH_CONFIG", str(tmp_path / "outreach.toml"))
    monkeypatch.setenv("OUTREACH_OUTBOX_DIR", str(tmp_path / "outbox"))
    reset_settings_cache()
    yield tmp_path
    reset_settings_cache()
