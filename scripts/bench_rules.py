"""The rules mode of scripts/bench.py: what each rule the database enforces costs the server per
job, against the naive prototype's statements.

Each variant is measured in a scratch database, migrated as the system's, from which the DDL of
the variant takes rules away (never a real database: the variants exist only to price the
rules), made anew for each measure and dropped after it. In it, one session of the services'
role sends --jobs jobs (job_send), then one session of the workers' role takes them through the
worker's two writes (job_start, job_finish), one call each, autocommit, after a warm-up. The
naive prototype's statements are measured the same way: an INSERT, then two UPDATEs by id of a
table with a primary key only. Variants and the naive prototype alternate in every round;
figures are medians over the rounds.

It reports the server's CPU per job (the backend process's user and system time, from /proc:
what PostgreSQL itself spent on the statements, not the client or the network) and the
wall-clock time per job from one client. Commits don't wait for the disk here
(synchronous_commit off, in these sessions only): the flush is the same for every variant and
for the naive prototype, and would only add noise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from typing import Any
from urllib.parse import urlparse

import psycopg2
from bench_cpu import load_average, process_cpu_s
from bench_env import with_database
from bench_naive import NAIVE_TABLE
from psycopg2 import sql

import db
from db import worker_limits
from db.fixtures import seed
from middleware.settings import Settings

#: The rules each variant takes away (DDL run as the administrator on its scratch database).
LIMIT_TRIGGERS = (
    "SELECT format('DROP TRIGGER %I ON %s', tgname, tgrelid::regclass) FROM pg_trigger"
    " WHERE NOT tgisinternal AND tgname LIKE '%\\_limits' AND tgrelid IN ('job_status'::regclass, 'job_events'::regclass)"
)
CHECKS = (
    "SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', conrelid::regclass, conname) FROM pg_constraint"
    " WHERE contype = 'c' AND conrelid IN ('job_status'::regclass, 'job_events'::regclass)"
)
STATE_KEYS = (
    "SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', conrelid::regclass, conname) FROM pg_constraint"
    " WHERE contype = 'f' AND confrelid = 'job_states'::regclass"
)
RULES: dict[str, list[str]] = {
    "the guard of transitions": ["DROP TRIGGER job_status_guard ON job_status"],
    "the stored limits' triggers": [LIMIT_TRIGGERS],
    "the CHECK constraints": [CHECKS],
    "the foreign keys to job_states": [STATE_KEYS],
    "the notifications": [
        "DROP TRIGGER job_events_notify ON job_events",
        "DROP TRIGGER job_progress_notify ON job_status",
    ],
    "the lists' indexes": [
        "DROP INDEX job_status_created_idx, job_status_status_created_idx, job_status_org_created_idx,"
        " job_status_org_status_idx, job_status_org_user_idx, job_status_course_created_idx"
    ],
    "the events' extra indexes": ["DROP INDEX job_events_writer_xid_idx, job_events_recovered_idx"],
}
VARIANTS = {"as shipped": [], **{f"without {rule}": ddl for rule, ddl in RULES.items()}}
VARIANTS["without all of these"] = [statement for ddl in RULES.values() for statement in ddl]

#: The worker process the writes stand for; its token, presented as the workers' is (db/worker_token.py).
WORKER = f"rules:{os.getpid()}:{uuid.uuid4().hex[:8]}"
TOKEN = uuid.uuid4().hex + uuid.uuid4().hex
#: Jobs through each scratch database before the measure.
WARM_UP = 300


class Scratch:
    """A scratch database, migrated, seeded, with a variant's rules taken away; dropped when the
    `with` block ends, or at once if it can't be made. Its name is the benchmark database's with
    `_rules_<pid>`: never a database of the system, and one per run of the benchmark."""

    def __init__(self, admin_url: str, ddl: list[str]) -> None:
        bench_database = urlparse(admin_url).path.lstrip("/")
        if not bench_database.endswith("_bench"):
            raise SystemExit(f"bench rules: {bench_database!r} is not a benchmark's database (<name>_bench)")
        self.admin_root = with_database(admin_url, "postgres")
        self.name = f"{bench_database}_rules_{os.getpid()}"
        self.admin_url = with_database(admin_url, self.name)
        self.worker = self.service = None
        self.drop()
        try:
            self._make(ddl)
        except BaseException:
            self.close()
            raise

    def _make(self, ddl: list[str]) -> None:
        db.migrate(self.admin_url)
        worker_limits.record(self.admin_url, Settings.from_env().worker_limits())
        self.user = seed(self.admin_url)["organizations"][0]["users"][1]["id"]
        admin = self._connect(self.admin_url)
        try:
            with admin.cursor() as cursor:
                cursor.execute(NAIVE_TABLE)
                cursor.execute("GRANT ALL ON naive_jobs TO jobs_worker, jobs_service")
                for statement in ddl:
                    if statement.startswith("SELECT"):
                        cursor.execute(statement)
                        for (generated,) in cursor.fetchall():
                            cursor.execute(generated)
                    else:
                        cursor.execute(statement)
        finally:
            admin.close()
        settings = Settings.from_env()
        options = "-c synchronous_commit=off"
        self.worker = self._connect(
            with_database(settings.worker_database_url, self.name), f"{options} -c jobs.worker_token={TOKEN}"
        )
        self.service = self._connect(with_database(settings.database_url, self.name), options)

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _connect(url: str, options: str = "") -> Any:
        conn = psycopg2.connect(url, options=options) if options else psycopg2.connect(url)
        conn.autocommit = True
        return conn

    def analyze(self) -> None:
        """Statistics, as a database that has run a while has them. Without them the plans of
        the foreign keys' checks, made while the tables were empty, scan job_status whole, and
        a send costs more with every row until autovacuum first analyzes it."""
        admin = self._connect(self.admin_url)
        with admin.cursor() as cursor:
            cursor.execute("ANALYZE job_status, job_events, naive_jobs")
        admin.close()

    def drop(self) -> None:
        root = self._connect(self.admin_root)
        try:
            with root.cursor() as cursor:
                cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))
        finally:
            root.close()

    def close(self) -> None:
        for conn in (self.worker, self.service):
            if conn is not None:
                conn.close()
        self.drop()


def _backend(conn: Any) -> int:
    """The server process of `conn`, which must run on this machine: its CPU is read from /proc."""
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            command = cmdline.read()
    except OSError:
        command = b""
    if not command.startswith(b"postgres"):
        raise SystemExit("bench rules: the database server must run on this machine (its CPU is read from /proc)")
    return pid


def _timed(conn: Any, calls: list[tuple[str, tuple[Any, ...]]], per: int) -> tuple[float, float]:
    """Server CPU and wall-clock time, in µs per job, of `calls` run one after the other."""
    pid = _backend(conn)
    cpu, started = process_cpu_s(pid), time.perf_counter()
    with conn.cursor() as cursor:
        for sql, params in calls:
            cursor.execute(sql, params)
            if cursor.description:
                cursor.fetchall()
    wall = time.perf_counter() - started
    return 1e6 * (process_cpu_s(pid) - cpu) / per, 1e6 * wall / per


def measure_system(scratch: Scratch, jobs: int) -> dict[str, tuple[float, float]]:
    ids = [str(uuid.uuid4()) for _ in range(jobs)]
    send = "SELECT * FROM job_send(%s::uuid, 'test_job', 'default', %s::uuid, NULL, '[]', '{}', '{}', 4, NULL, NULL)"
    sends = _timed(scratch.service, [(send, (job_id, scratch.user)) for job_id in ids], jobs)
    with scratch.worker.cursor() as cursor:
        # A live lease for the run (the database gives at most its longest, 30 s by default).
        cursor.execute("SELECT worker_heartbeat(%s, 'bench', %s, 30000, NULL)", (WORKER, os.getpid()))
    thread = f"{WORKER}/1"
    writes = []
    for job_id in ids:
        writes.append(("SELECT * FROM job_start(%s::uuid, %s)", (job_id, thread)))
        writes.append(
            (
                "SELECT * FROM job_finish(%s::uuid, 1, 'completed', %s, '{\"waited_ms\": 0}', NULL, NULL, NULL, 0)",
                (job_id, thread),
            )
        )
    worker = _timed(scratch.worker, writes, jobs)
    with scratch.worker.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM job_events WHERE event = 'completed' AND job_id = ANY(%s::uuid[])", (ids,))
        completed = cursor.fetchone()[0]
    if completed != jobs:
        raise SystemExit(f"bench rules: {jobs - completed} of {jobs} jobs did not complete in {scratch.name}")
    return {"send": sends, "start + finish": worker}


def measure_naive(scratch: Scratch, jobs: int) -> dict[str, tuple[float, float]]:
    ids = [str(uuid.uuid4()) for _ in range(jobs)]
    insert = (
        "INSERT INTO naive_jobs (job_id, job_type, user_id, args, status) VALUES (%s, 'test_job', %s, '{}', 'pending')"
    )
    sends = _timed(scratch.service, [(insert, (job_id, scratch.user)) for job_id in ids], jobs)
    writes = []
    for job_id in ids:
        writes.append(
            (
                "UPDATE naive_jobs SET status = 'active', started_at = now(), worker_id = %s WHERE job_id = %s",
                (WORKER, job_id),
            )
        )
        writes.append(
            (
                "UPDATE naive_jobs SET status = 'completed', completed_at = now(), result = %s WHERE job_id = %s",
                ('{"waited_ms": 0}', job_id),
            )
        )
    return {"send": sends, "start + finish": _timed(scratch.worker, writes, jobs)}


def run_rules(args: argparse.Namespace) -> int:
    admin_url = os.environ["ADMIN_DATABASE_URL"]
    print(f"bench rules: {args.jobs} jobs a round, {args.rounds} rounds, load {load_average()}")
    results: dict[str, list[dict[str, tuple[float, float]]]] = {name: [] for name in ["naive prototype", *VARIANTS]}
    measures = {
        "naive prototype": ([], measure_naive),
        **{name: (ddl, measure_system) for name, ddl in VARIANTS.items()},
    }
    for _ in range(args.rounds):
        for name, (ddl, measure) in measures.items():
            # A database of its own for each measure, dropped right after: every one starts from
            # the same small tables, and together they never outgrow the server's shared buffers
            # (a run that kept them all grew slower with every round, from reading pages back).
            with Scratch(admin_url, ddl) as scratch:
                measure(scratch, WARM_UP)  # plans cached, catalogs read
                scratch.analyze()
                results[name].append(measure(scratch, args.jobs))
    print("server CPU per job, µs (wall clock from one client), medians over the rounds:")
    print(f"  {'':<38} {'send':>16} {'start + finish':>18}")
    for name, rounds in results.items():
        cells = []
        for part in ("send", "start + finish"):
            cpu = statistics.median(r[part][0] for r in rounds)
            wall = statistics.median(r[part][1] for r in rounds)
            cells.append(f"{cpu:6.0f} ({wall:5.0f})")
        print(f"  {name:<38} {cells[0]:>16} {cells[1]:>18}")
    print(f"load average at the end: {load_average()}")
    return 0
