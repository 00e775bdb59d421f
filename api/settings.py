"""Service settings from the environment (RACKPLAN_*), read once at start."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("RACKPLAN_DATA_DIR", "rackplan-data"))
    )
    database_url: str | None = field(
        default_factory=lambda: os.environ.get("RACKPLAN_DATABASE_URL")
    )
    """SQLAlchemy URL; default an SQLite file in data_dir (PostgreSQL: postgresql+psycopg://…)."""
    anonymous_reads: bool = field(default_factory=lambda: _bool("RACKPLAN_ANONYMOUS_READS", False))
    """Opt-in: let requests without a key read (only) the objects of the default tenant.
    Off by default: reads and writes need a key."""
    keys_for_reads: bool = True
    """Deprecated, no effect: reads need a key by default since tenants (schema v4); kept so
    code that passed it still constructs its settings."""
    cors_origins: tuple[str, ...] = field(
        default_factory=lambda: tuple(
            o for o in os.environ.get("RACKPLAN_CORS_ORIGINS", "").split(",") if o
        )
    )
    max_body_bytes: int = field(
        default_factory=lambda: int(os.environ.get("RACKPLAN_MAX_BODY_BYTES", 2_000_000))
    )
    max_upload_bytes: int = field(
        default_factory=lambda: int(os.environ.get("RACKPLAN_MAX_UPLOAD_BYTES", 10_000_000))
    )
    solve_workers: int = field(
        default_factory=lambda: int(os.environ.get("RACKPLAN_SOLVE_WORKERS", 2))
    )
    queue_limit: int = field(default_factory=lambda: int(os.environ.get("RACKPLAN_QUEUE_LIMIT", 8)))
    """Queued + running jobs allowed before new solves are refused with 429."""
    tenant_queue_limit: int = field(
        default_factory=lambda: int(os.environ.get("RACKPLAN_TENANT_QUEUE_LIMIT", 4))
    )
    """Queued + running jobs one tenant may have (the rest of the queue stays for others)."""
    max_waiters_per_key: int = field(
        default_factory=lambda: int(os.environ.get("RACKPLAN_MAX_WAITERS_PER_KEY", 4))
    )
    """Requests of one key that may wait (``wait_s``) at once; more answer 202 at once."""
    job_budget_factor: float = field(
        default_factory=lambda: float(os.environ.get("RACKPLAN_JOB_BUDGET_FACTOR", 3))
    )
    job_budget_slack_s: float = field(
        default_factory=lambda: float(os.environ.get("RACKPLAN_JOB_BUDGET_SLACK_S", 30))
    )
    """A job's wall-clock budget: factor × its time limit + slack (plan, baselines and shadow
    prices together); past it the solver process is killed and the job fails."""
    solve_time_limit_s: float = field(
        default_factory=lambda: float(os.environ.get("RACKPLAN_SOLVE_TIME_LIMIT_S", 60))
    )

    web_session_ttl_s: float = field(
        default_factory=lambda: float(os.environ.get("RACKPLAN_WEB_SESSION_TTL_S", 8 * 3600))
    )
    """How long a browser stays signed in (the pages at /) before it must sign in again."""

    @property
    def url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'rackplan.sqlite3').resolve()}"
