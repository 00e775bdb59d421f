"""Persistence: SQLAlchemy 2 ORM, SQLite by default, PostgreSQL when configured.

The schema is versioned: ``MIGRATIONS`` lists the steps, ``migrate`` applies the missing
ones at start. Every write goes through ``transaction`` (commit or roll back as a whole), so
a crash never leaves a half-written scenario, plan or session.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

DEFAULT_TENANT = "default"
"""The tenant that rows and keys from before tenants (schema version 3 and older) belong to."""
SHARED_TENANT = "*shared*"
"""The owner of shared catalogs (readable by every tenant, written with the admin scope)."""
TENANT_LENGTH = 64


def new_id() -> str:
    return uuid.uuid4().hex


def _tenant_column() -> Mapped[str]:
    return mapped_column(String(TENANT_LENGTH), default=DEFAULT_TENANT, index=True)


def now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """The declarative base of every table."""


class SchemaVersion(Base):
    __tablename__ = "schema_version"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    scopes: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    tenant: Mapped[str] = _tenant_column()
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ScenarioRow(Base):
    __tablename__ = "scenarios"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    body: Mapped[dict] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, index=True)
    tenant: Mapped[str] = _tenant_column()


class PlanRow(Base):
    __tablename__ = "plans"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    scenario_id: Mapped[str] = mapped_column(ForeignKey("scenarios.id"), index=True)
    status: Mapped[str] = mapped_column(String(32))
    result: Mapped[dict] = mapped_column(JSON)
    audit: Mapped[dict] = mapped_column(JSON)
    """Reproduction record: scenario, catalog entries used, rate-table hash, solver name and
    version, options, timings, who asked."""
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    tenant: Mapped[str] = _tenant_column()


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_idempotency", "created_by", "idempotency_key", unique=True),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32), index=True)
    """queued | running | succeeded | failed | cancelled"""
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    request: Mapped[dict] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    plan_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    """host:pid of the service process whose pool runs the job (schema version 2)."""
    tenant: Mapped[str] = _tenant_column()


class AnalysisRow(Base):
    """A robust plan or a stress test (schema version 5); its id is the id of the job that
    made it."""

    __tablename__ = "analyses"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    """robust | stress"""
    scenario_id: Mapped[str] = mapped_column(String(32), index=True)
    plan_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """The stress-tested plan (stress tests only)."""
    status: Mapped[str] = mapped_column(String(32))
    result: Mapped[dict] = mapped_column(JSON)
    """The same keys as the CLI's robust.json / stress.json."""
    tables: Mapped[dict] = mapped_column(JSON)
    """Export tables: name -> list of records."""
    audit: Mapped[dict] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    tenant: Mapped[str] = _tenant_column()


class SessionRow(Base):
    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    scenario_id: Mapped[str] = mapped_column(ForeignKey("scenarios.id"))
    comparison: Mapped[list | None] = mapped_column(JSON, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    tenant: Mapped[str] = _tenant_column()


class VariantRow(Base):
    __tablename__ = "variants"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    changes: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    tenant: Mapped[str] = _tenant_column()


class CatalogEntryRow(Base):
    __tablename__ = "catalog_entries"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    catalog: Mapped[str] = mapped_column(String(100), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    """racks | llms"""
    entry_id: Mapped[str] = mapped_column(String(100))
    body: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    tenant: Mapped[str] = _tenant_column()
    """The owning tenant, or SHARED_TENANT for a shared catalog."""


class WebSessionRow(Base):
    """A browser's signed-in session (``api/web``): the cookie holds a random token, the
    database its hash, the key it was opened with (never the key itself) and a CSRF token."""

    __tablename__ = "web_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """SHA-256 of the cookie's token."""
    key_id: Mapped[str] = mapped_column(String(32), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    tenant: Mapped[str] = _tenant_column()


class SweepRow(Base):
    """A Pareto sweep of a what-if session: TCO at ``steps`` values of one parameter."""

    __tablename__ = "sweeps"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    parameter: Mapped[str] = mapped_column(String(200))
    start: Mapped[float] = mapped_column(Float)
    stop: Mapped[float] = mapped_column(Float)
    steps: Mapped[int] = mapped_column(Integer)
    result: Mapped[list | None] = mapped_column(JSON, nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    tenant: Mapped[str] = _tenant_column()


def _create_v1(engine: Engine) -> None:
    Base.metadata.create_all(engine)


def _job_owner_v2(engine: Engine) -> None:
    """jobs.owner: which service process runs a job (several HTTP workers share a database)."""
    columns = {c["name"] for c in inspect(engine).get_columns("jobs")}
    if "owner" not in columns:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE jobs ADD COLUMN owner VARCHAR(100)"))


def _idempotency_unique_v3(engine: Engine) -> None:
    """One job per (key id, Idempotency-Key), enforced by the database (no check-then-insert
    race between HTTP workers)."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "CREATE UNIQUE INDEX IF NOT EXISTS ix_jobs_idempotency "
                "ON jobs (created_by, idempotency_key)"
            )
        )


TENANT_TABLES = (
    "api_keys",
    "scenarios",
    "plans",
    "jobs",
    "sessions",
    "variants",
    "catalog_entries",
)
"""Every table whose rows belong to a tenant (schema version 4; since version 6 also
``web_sessions`` and ``sweeps``, created with their tenant column)."""


def _add_column(engine: Engine, table: str, column: str, ddl: str) -> None:
    """ALTER TABLE … ADD COLUMN unless the column exists (a fresh database has it already)."""
    if column not in {c["name"] for c in inspect(engine).get_columns(table)}:
        with engine.begin() as connection:
            connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))


def _tenants_v4(engine: Engine) -> None:
    """Tenants: every row and key belongs to one; rows and keys from before belong to
    DEFAULT_TENANT. Keys get an optional expiry and a revocation time."""
    for table in TENANT_TABLES:
        _add_column(
            engine,
            table,
            "tenant",
            f"VARCHAR({TENANT_LENGTH}) NOT NULL DEFAULT '{DEFAULT_TENANT}'",
        )
        with engine.begin() as connection:
            connection.execute(
                text(f"CREATE INDEX IF NOT EXISTS ix_{table}_tenant ON {table} (tenant)")
            )
    for column in ("expires_at", "revoked_at"):
        _add_column(engine, "api_keys", column, "TIMESTAMP WITH TIME ZONE")
    with engine.begin() as connection:
        connection.execute(
            text(
                "CREATE INDEX IF NOT EXISTS ix_scenarios_tenant_created "
                "ON scenarios (tenant, created_at)"
            )
        )


def _analyses_v5(engine: Engine) -> None:
    """The analyses table: robust plans and stress tests made by jobs."""
    AnalysisRow.__table__.create(engine, checkfirst=True)


def _web_v6(engine: Engine) -> None:
    """The browser pages' sessions and the what-if sessions' Pareto sweeps (and the analyses
    table again, for a database an unreleased branch took to a v5 without it)."""
    Base.metadata.create_all(
        engine, tables=[WebSessionRow.__table__, SweepRow.__table__, AnalysisRow.__table__]
    )


MIGRATIONS: tuple[tuple[int, Callable[[Engine], None]], ...] = (
    (1, _create_v1),
    (2, _job_owner_v2),
    (3, _idempotency_unique_v3),
    (4, _tenants_v4),
    (5, _analyses_v5),
    (6, _web_v6),
)
"""(version, step): applied in order to databases below that version."""
SCHEMA_VERSION = MIGRATIONS[-1][0]


def current_version(engine: Engine) -> int:
    SchemaVersion.__table__.create(engine, checkfirst=True)
    with Session(engine) as session:
        row = session.scalars(select(SchemaVersion).order_by(SchemaVersion.version.desc())).first()
        return row.version if row else 0


def migrate(engine: Engine) -> int:
    """Apply every missing migration; return the schema version now in force."""
    version = current_version(engine)
    for target, step in MIGRATIONS:
        if target > version:
            step(engine)
            with Session(engine) as session, session.begin():
                session.add(SchemaVersion(version=target))
            version = target
    return version


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class Database:
    def __init__(self, url: str):
        self.engine = make_engine(url)
        self.version = migrate(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A unit of work: everything in it commits together or not at all."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session
