"""Configuration from the environment, with defaults for PostgreSQL and Redis on this machine.

It lives here, below the actors, so that reading it configures nothing: importing `actors` sets
up the broker and the database from it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from db.connection import Limits
from db.errors import JobError
from db.redact import mask_url
from db.retention import DAY_MS, Retention
from db.storable import CEILINGS, StorageLimits
from db.worker_limits import WorkerLimits


class ConfigurationError(JobError):
    pass


@dataclass(frozen=True)
class Settings:
    """Every setting, named after its environment variable (upper-cased, `JOBS_` where noted)."""

    #: DATABASE_URL: what this process logs in as. Services and `jobctl`: the jobs_service role,
    #: which may act as a user (0014_service_role.sql); a worker process: jobs_worker.
    database_url: str = "postgresql://jobs_service@127.0.0.1:5432/jobs"
    #: WORKER_DATABASE_URL: what the worker processes that `jobctl worker` (python -m jobs.worker)
    #: and the demo start log in as: the jobs_worker role, which can't act as a user.
    worker_database_url: str = "postgresql://jobs_worker@127.0.0.1:5432/jobs"
    #: ADMIN_DATABASE_URL: an administrator of the same database, for `jobctl migrate` and `jobctl seed`.
    admin_database_url: str = "postgresql://postgres@127.0.0.1:5432/jobs"
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: JOBS_NAMESPACE: prefix of every Redis key, so that several deployments share a server.
    namespace: str = "jobs"
    #: JOBS_MAX_RETRIES: retries after the first attempt, unless an actor says otherwise.
    max_retries: int = 3
    #: JOBS_MIN_BACKOFF_MS / JOBS_MAX_BACKOFF_MS: the retry backoff.
    min_backoff_ms: int = 1_000
    max_backoff_ms: int = 300_000
    #: JOBS_SEND_DEADLINE_S: how long send() keeps trying an unreachable database, then fails.
    send_deadline_s: float = 5.0
    #: JOBS_HEARTBEAT_S: how often a worker process renews its lease and looks for lost jobs.
    heartbeat_s: float = 5.0
    #: JOBS_RECOVERY_WINDOW_S: a worker's lease: it holds its jobs for this long after its last
    #: recorded heartbeat (database clock); then they are taken back. What a worker asks for; the
    #: database gives at most what `jobctl migrate` recorded from its own (worker_limits()).
    recovery_window_s: float = 30.0
    #: JOBS_LEASE_MARGIN_S: a worker that could not renew its lease stops its jobs this long
    #: before the lease runs out (by its own clock), and exits if one does not stop within half of
    #: it (so half of it should exceed JOBS_DB_CONNECT_TIMEOUT_S: a job opening a connection
    #: can't be interrupted).
    lease_margin_s: float = 10.0
    #: JOBS_MAX_DELIVERIES: deliveries a job may lose with its worker before it fails (the
    #: database's rule, recorded by `jobctl migrate`: worker_limits()).
    max_deliveries: int = 3
    #: JOBS_RECONCILE_S: how often a worker looks for waiting jobs whose messages Redis lost.
    reconcile_s: float = 60.0
    #: JOBS_BROKER_HEARTBEAT_TIMEOUT_MS / JOBS_BROKER_MAINTENANCE_CHANCE: the Redis broker's own
    #: requeue of a dead worker's unacknowledged messages (dramatiq's defaults).
    broker_heartbeat_timeout_ms: int = 60_000
    broker_maintenance_chance: int = 1_000
    #: JOBS_DB_CONNECT_TIMEOUT_S: how long opening a database connection may take.
    db_connect_timeout_s: int = 3
    #: JOBS_DB_STATEMENT_TIMEOUT_MS: the longest any statement of the system may run.
    db_statement_timeout_ms: int = 30_000
    #: JOBS_DB_LOCK_TIMEOUT_MS: the longest a statement waits for a row lock (a status write
    #: then gives way to the others and tries again).
    db_lock_timeout_ms: int = 5_000
    #: JOBS_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: a session left idle inside a transaction is ended.
    db_idle_in_transaction_timeout_ms: int = 60_000
    #: JOBS_DB_KEEPALIVE_S: TCP keepalives: a connection whose peer went silent is found dead
    #: within about four times this (well within a lease, so that a heartbeat reconnects in time).
    db_keepalive_s: int = 3
    #: JOBS_ALLOW_FAULT_INJECTION=1: tests and the chaos run may ask workers to crash.
    allow_fault_injection: int = 0
    #: JOBS_WORKER_MAY_ACT_AS_USERS=1: a worker may log in as a role that can act as a user (tests
    #: and tools that run workers in a service's process); otherwise it refuses to start.
    worker_may_act_as_users: int = 0
    #: JOBS_PROGRESS_QUEUE: most progress updates waiting to be written; more are dropped.
    progress_queue: int = 10_000
    #: JOBS_PROGRESS_INTERVAL_MS: a worker process writes progress at most once this often (the
    #: newest report of each job; each write is announced to the live views, 0018_notifications.sql).
    progress_interval_ms: int = 100
    #: JOBS_RETAIN_COMPLETED_DAYS, JOBS_RETAIN_FAILED_DAYS, JOBS_RETAIN_CANCELLED_DAYS: how long
    #: finished jobs are kept, by outcome (0: for ever). The database's rule, recorded by `jobctl
    #: migrate` (retention()); the workers prune by it every JOBS_PRUNE_S, JOBS_PRUNE_BATCH jobs a
    #: transaction (JOBS_PRUNE_S=0: this worker never prunes).
    retain_completed_days: float = 30.0
    retain_failed_days: float = 90.0
    retain_cancelled_days: float = 90.0
    prune_s: float = 300.0
    prune_batch: int = 500
    #: JOBS_MAX_ARGS_BYTES, JOBS_MAX_ARGS_DEPTH, JOBS_MAX_RESULT_BYTES,
    #: JOBS_MAX_ERROR_MESSAGE_CHARS, JOBS_MAX_ERROR_STACK_CHARS, JOBS_MAX_REASON_CHARS,
    #: JOBS_MAX_DELAY_MS: limits on what is stored (db.storable.StorageLimits says what each bounds).
    max_args_bytes: int = StorageLimits.max_args_bytes
    max_args_depth: int = StorageLimits.max_args_depth
    max_result_bytes: int = StorageLimits.max_result_bytes
    max_error_message_chars: int = StorageLimits.max_error_message_chars
    max_error_stack_chars: int = StorageLimits.max_error_stack_chars
    max_reason_chars: int = StorageLimits.max_reason_chars
    max_delay_ms: int = StorageLimits.max_delay_ms
    #: JOBS_LOG_FORMAT: json, console, or auto (console on a terminal, JSON otherwise).
    log_format: str = "auto"
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values = {}
        for field in fields(cls):
            name = field.name.upper() if field.name.endswith("_url") else f"JOBS_{field.name.upper()}"
            if name not in env:
                continue
            raw = env[name]
            try:
                values[field.name] = type(field.default)(raw)
            except ValueError:
                raise ConfigurationError(f"{name}={raw!r} is not a valid {type(field.default).__name__}") from None
        settings = cls(**values)
        settings._check()
        return settings

    def _check(self) -> None:
        if self.heartbeat_s <= 0 or self.lease_margin_s <= 0:
            raise ConfigurationError("JOBS_HEARTBEAT_S and JOBS_LEASE_MARGIN_S must be more than 0")
        if self.recovery_window_s - self.lease_margin_s <= 2 * self.heartbeat_s:
            raise ConfigurationError(
                "JOBS_RECOVERY_WINDOW_S minus JOBS_LEASE_MARGIN_S must be more than twice JOBS_HEARTBEAT_S, "
                "or live workers stop their jobs for want of a renewed lease"
            )
        if min(self.retain_completed_days, self.retain_failed_days, self.retain_cancelled_days) < 0:
            raise ConfigurationError("JOBS_RETAIN_*_DAYS must be 0 (keep for ever) or more")
        if self.prune_s < 0 or not 1 <= self.prune_batch <= 10_000:
            raise ConfigurationError("JOBS_PRUNE_S must be 0 (never) or more, JOBS_PRUNE_BATCH from 1 to 10000")
        if self.max_deliveries < 1:
            raise ConfigurationError("JOBS_MAX_DELIVERIES must be 1 or more")
        if self.log_format not in ("auto", "json", "console"):
            raise ConfigurationError(f"JOBS_LOG_FORMAT must be auto, json or console, not {self.log_format!r}")
        for name in (field.name for field in fields(StorageLimits)):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"JOBS_{name.upper()} must be 1 or more")
            # Past the database's own ceiling, what this process accepts the database refuses.
            ceiling = getattr(CEILINGS, name)
            if getattr(self, name) > ceiling:
                raise ConfigurationError(f"JOBS_{name.upper()} may be {ceiling} at most: the database stores no more")
        for name in ("db_connect_timeout_s", "db_statement_timeout_ms", "db_lock_timeout_ms", "db_keepalive_s"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"JOBS_{name.upper()} must be 1 or more")

    def describe(self) -> dict[str, str]:
        """What a worker connects to, as it may be logged: the URLs without their passwords."""
        return {"database": mask_url(self.database_url), "redis": mask_url(self.redis_url), "namespace": self.namespace}

    def db_limits(self) -> Limits:
        return Limits(
            connect_timeout_s=self.db_connect_timeout_s,
            statement_timeout_ms=self.db_statement_timeout_ms,
            lock_timeout_ms=self.db_lock_timeout_ms,
            idle_in_transaction_timeout_ms=self.db_idle_in_transaction_timeout_ms,
            keepalive_s=self.db_keepalive_s,
        )

    def worker_limits(self) -> WorkerLimits:
        """What `jobctl migrate` records for the database to decide the workers' calls by, whatever
        they ask: the longest lease, the delivery limit, the longest reschedule."""
        return WorkerLimits(
            max_lease_ms=int(self.recovery_window_s * 1000),
            max_deliveries=self.max_deliveries,
            max_delay_ms=self.max_delay_ms,
        )

    def retention(self) -> Retention:
        """What `jobctl migrate` records as how long finished jobs are kept, by outcome."""
        return Retention(
            completed_ms=round(self.retain_completed_days * DAY_MS),
            failed_ms=round(self.retain_failed_days * DAY_MS),
            cancelled_ms=round(self.retain_cancelled_days * DAY_MS),
        )

    def storage_limits(self) -> StorageLimits:
        return StorageLimits(**{field.name: getattr(self, field.name) for field in fields(StorageLimits)})
