#!/usr/bin/env python3
"""The HTTP API's benchmark, against a real `jobctl serve`, PostgreSQL, Redis and worker
processes; a benchmark, not a test.

  scripts/bench_api.py [--rows 1000000] [--clients 20] [--seconds 5] [--paced-rate 40] [--streams 200]
                       [--rate 10] [--stream-seconds 20] [--phases reads,streams] [--keep] [--profile DIR]

reads: job_status filled by SQL to --rows (scripts/bench_api_fill.py), then GET /api/jobs (a
member, an admin, an operator; the first page, a deep keyset page, filters) and GET
/api/jobs/{id}, each case for --seconds from --clients concurrent keep-alive clients that send
their next request as soon as the last is answered (requests/s, p50/p99, and the CPU the server
spent per request: its process and its PostgreSQL backends, from /proc, beside the whole
machine's, which other work shares), then for --seconds from the same clients asking
--paced-rate times a second in all (p50/p99: what users see when the server is not saturated).
A 404 comes first, as a reference: what any request costs, and what the machine adds.

streams: real worker processes run --rate short jobs a second (and a few long ones that report
progress), once with one stream open and once with --streams open (a mix of /api/stream as
members, admins and operators and /api/jobs/{id}/stream): the server's CPU and memory per
stream, and the time from an event's insert (its created_at, by the database's clock, which is
this machine's) to its arrival on a stream.

Everything runs on a database of its own (`<DATABASE_URL's name>_bench_api`), created, filled
and dropped at the end (kept with --keep, and reused by the next run), and Redis namespace
`jobs-bench-api`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode, urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_env import own_servers  # noqa: E402

from middleware.settings import Settings  # noqa: E402

DATABASE_SUFFIX = "_bench_api"


def _bench_env() -> dict[str, str]:
    """The environment of the benchmark: its own database and Redis namespace."""
    return {
        **own_servers(DATABASE_SUFFIX, "jobs-bench-api"),
        "JOBS_LOG_FORMAT": "json",
    }


os.environ.update(_bench_env())

import psycopg2  # noqa: E402
from bench_api_client import Connection, Stream  # noqa: E402
from bench_api_fill import COURSES_PER_ORG, USERS_PER_ORG, fill  # noqa: E402
from bench_api_profile import Profile, available  # noqa: E402
from polling import wait_until  # noqa: E402
from psycopg2 import sql  # noqa: E402

import db  # noqa: E402
from db import worker_limits  # noqa: E402
from db.queries import job_cursor  # noqa: E402
from jobs.demo_server import DemoServer  # noqa: E402
from web import tokens  # noqa: E402

JOBCTL = Path(sys.executable).with_name("jobctl")
#: What the server's and the workers' connections call themselves (libpq reads PGAPPNAME), so
#: that their backends' CPU can be told apart; the listener names itself jobs-listener.
SERVER_APP, WORKER_APP = "bench-api-server", "bench-api-worker"


# ---------------------------------------------------------------------------------------------
# CPU and memory, from /proc


def process_cpu_s(pid: int) -> float:
    """User and system CPU time of a process so far (all its threads); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def machine_cpu_s() -> float:
    """CPU time spent by the whole machine so far (every process, user and system)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


class Meter:
    """CPU spent between `start` and `stop` by the server's process, by its PostgreSQL backends
    (the connections named SERVER_APP and the listener), and by the whole machine."""

    def __init__(self, admin, server_pid: int) -> None:
        self.admin, self.server_pid = admin, server_pid

    def _backends(self) -> list[int]:
        with self.admin.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name IN (%s, %s)",
                (SERVER_APP, "jobs-listener"),
            )
            return [row[0] for row in cursor.fetchall()]

    def start(self) -> Meter:
        self.pids = self._backends()
        self.cpu = (process_cpu_s(self.server_pid), {pid: process_cpu_s(pid) for pid in self.pids}, machine_cpu_s())
        self.started = time.monotonic()
        return self

    def stop(self) -> tuple[float, float, float, float]:
        """Seconds elapsed, and CPU seconds of the server, of its backends, of the machine."""
        elapsed = time.monotonic() - self.started
        server, backends, machine = self.cpu
        # A backend that came during the phase counts from its start.
        backend_cpu = sum(process_cpu_s(pid) - backends.get(pid, 0.0) for pid in set(self._backends()) | set(backends))
        return elapsed, process_cpu_s(self.server_pid) - server, backend_cpu, machine_cpu_s() - machine


# ---------------------------------------------------------------------------------------------
# The server and the workers


class Server(DemoServer):
    """`jobctl serve --port 0` (this checkout's, or `jobctl`) on the bench's database, its log in a file."""

    def __init__(self, secret: str, log_path: str, jobctl: Path = JOBCTL) -> None:
        env = {**os.environ, "JOBS_API_SECRET": secret, "PGAPPNAME": SERVER_APP}
        super().__init__(0, Path(log_path), env, command=str(jobctl))
        address = urlparse(self.url)
        self.host, self.port = address.hostname, address.port

    @property
    def pid(self) -> int:
        return self.process.pid


def start_workers(processes: int, threads: int, log_path: str) -> subprocess.Popen:
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "jobs.worker", "--processes", str(processes), "--threads", str(threads)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DATABASE_URL": os.environ["WORKER_DATABASE_URL"], "PGAPPNAME": WORKER_APP},
        )


def stop_workers(workers: subprocess.Popen) -> None:
    # To the main process only: it passes SIGTERM on, and a second one would kill the workers.
    workers.send_signal(signal.SIGTERM)
    workers.wait(timeout=120)


# ---------------------------------------------------------------------------------------------
# Who asks, and for what


@dataclass
class Subjects:
    """The users, tokens and request paths of the phases."""

    admin: str  # of the largest organization
    member: str  # of the largest organization
    operator: str
    paths: dict[str, tuple[str, list[str]]]  # case: (token, paths)
    orgs: list[dict]  # by rank: {"id", "admin", "members", "courses"}
    secret: bytes


def subjects(admin_url: str, secret: bytes, rng: random.Random) -> Subjects:
    conn = psycopg2.connect(admin_url)
    orgs = []
    with conn, conn.cursor() as cursor:
        cursor.execute("SELECT id FROM organizations WHERE name LIKE 'Bench Org %%' ORDER BY name")
        for (org_id,) in cursor.fetchall():
            cursor.execute("SELECT id, role FROM users WHERE organization_id = %s ORDER BY email", (org_id,))
            users = cursor.fetchall()
            cursor.execute("SELECT id FROM courses WHERE organization_id = %s ORDER BY title", (org_id,))
            orgs.append(
                {
                    "id": str(org_id),
                    "admin": next(str(u) for u, role in users if role == "admin"),
                    "members": [str(u) for u, role in users if role == "member"],
                    "courses": [str(c) for (c,) in cursor.fetchall()],
                }
            )
        assert len(orgs[0]["members"]) == USERS_PER_ORG - 1 and len(orgs[0]["courses"]) == COURSES_PER_ORG
        big = orgs[0]
        admin, member = big["admin"], big["members"][0]

        def position(where: sql.Composable, args: tuple, offset: int) -> str:
            """The cursor of the row at `offset` of a list (newest first): a deep page."""
            cursor.execute(
                sql.SQL(
                    "SELECT created_at, job_id FROM job_status WHERE {} ORDER BY created_at DESC, job_id DESC"
                    " OFFSET %s LIMIT 1"
                ).format(where),
                (*args, offset),
            )
            created_at, job_id = cursor.fetchone()
            return job_cursor({"created_at": created_at, "job_id": job_id})

        def counted(where: sql.Composable, args: tuple) -> int:
            cursor.execute(sql.SQL("SELECT count(*) FROM job_status WHERE {}").format(where), args)
            return cursor.fetchone()[0]

        by_org, by_user = sql.SQL("organization_id = %s"), sql.SQL("user_id = %s")
        org_rows, member_rows, all_rows = (
            counted(by_org, (big["id"],)),
            counted(by_user, (member,)),
            counted(sql.SQL("true"), ()),
        )

        def sample(where: sql.Composable, args: tuple, n: int = 500) -> list[str]:
            cursor.execute(
                sql.SQL("SELECT job_id FROM job_status TABLESAMPLE SYSTEM (1) WHERE {} LIMIT %s").format(where),
                (*args, n),
            )
            return [str(row[0]) for row in cursor.fetchall()]

        admin_deep = position(by_org, (big["id"],), org_rows // 2)
        member_deep = position(by_user, (member,), member_rows // 2)
        operator_deep = position(sql.SQL("true"), (), all_rows // 2)
        shows = {
            "admin": sample(by_org, (big["id"],)),
            "member": sample(by_user, (member,)),
            "operator": sample(sql.SQL("true"), ()),
        }
    conn.close()

    hour = timedelta(hours=2)
    token = {
        "member": tokens.mint(secret, member, hour),
        "admin": tokens.mint(secret, admin, hour),
        "operator": tokens.mint(secret, "bench", hour, operator=True),
    }
    course = big["courses"][0]
    other_courses = [c for org in orgs[:20] for c in org["courses"]]

    def jobs(**query: str) -> str:
        return "/api/jobs" + (f"?{urlencode(query)}" if query else "")

    paths = {
        # No work: what the server and the machine add to any request (a 404 before the routes).
        "reference: a 404": ("member", ["/api/no-such-thing"]),
        "list, member, first page": ("member", [jobs()]),
        "list, member, deep page": ("member", [jobs(before=member_deep)]),
        "list, member, course": ("member", [jobs(course=course)]),
        "list, admin, first page": ("admin", [jobs()]),
        "list, admin, deep page": ("admin", [jobs(before=admin_deep)]),
        "list, admin, failed": ("admin", [jobs(status="failed")]),
        "list, admin, initialize": ("admin", [jobs(type="initialize")]),
        "list, admin, course": ("admin", [jobs(course=course)]),
        "list, operator, first page": ("operator", [jobs()]),
        "list, operator, deep page": ("operator", [jobs(before=operator_deep)]),
        "list, operator, failed": ("operator", [jobs(status="failed")]),
        "list, operator, course": ("operator", [jobs(course=c) for c in other_courses]),
        "show, member": ("member", [f"/api/jobs/{job}" for job in shows["member"]]),
        "show, admin": ("admin", [f"/api/jobs/{job}" for job in shows["admin"]]),
        "show, operator": ("operator", [f"/api/jobs/{job}" for job in shows["operator"]]),
    }
    print(
        f"  subjects: the largest organization holds {org_rows:,} jobs, its member {member_rows:,};"
        f" deep pages start half-way down each list",
        flush=True,
    )
    return Subjects(
        admin, member, token["operator"], {case: (token[who], p) for case, (who, p) in paths.items()}, orgs, secret
    )


# ---------------------------------------------------------------------------------------------
# reads


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def closed_loop(
    host: str,
    port: int,
    token: str,
    paths: list[str],
    clients: int,
    seconds: float,
    rng: random.Random,
    rate: float | None = None,
    expect: int = 200,
) -> tuple[list[float], int]:
    """`clients` connections, each sending its next GET as soon as the last is answered (or,
    given a `rate` for them all, after a pause drawn so that together they ask that many times a
    second: users who read what they got), for `seconds`; the latencies, and the answers that
    were not `expect`."""
    latencies: list[float] = []
    errors = 0
    stop_at = time.monotonic() + seconds

    async def client() -> None:
        nonlocal errors
        connection = await Connection(host, port).open()
        try:
            while time.monotonic() < stop_at:
                if rate is not None:
                    # The clients' own pace (exponential pauses), not a wait for an outcome.
                    await asyncio.sleep(rng.expovariate(rate / clients))
                path = rng.choice(paths)
                started = time.perf_counter()
                status, _ = await connection.get(path, token)
                latencies.append(time.perf_counter() - started)
                errors += status != expect
        finally:
            connection.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, errors


def run_reads(server: Server, meter: Meter, who: Subjects, args: argparse.Namespace, rng: random.Random) -> None:
    print(
        f"\nreads: {args.clients} clients, {args.seconds:.0f} s a case, back to back and then {args.paced_rate:.0f}"
        f" requests/s in all (load average {load_average()})"
    )
    print(
        f"  {'case':<28} {'req/s':>6} {'p50 ms':>7} {'p99 ms':>7} {'server CPU ms/req':>19} {'machine':>8}"
        f" | {'paced p50':>9} {'p99 ms':>7}"
    )
    for case, (token, paths) in who.paths.items():
        if args.cases and not any(wanted in case for wanted in args.cases.split(",")):
            continue
        expect = 404 if case.startswith("reference") else 200
        # Warm: every thread's connection open, the plans cached.
        asyncio.run(closed_loop(server.host, server.port, token, paths, args.clients, 1.0, rng))
        profile = Profile(server.pid, args.profile, case, args.seconds) if args.profile else None
        meter.start()
        latencies, errors = asyncio.run(
            closed_loop(server.host, server.port, token, paths, args.clients, args.seconds, rng, expect=expect)
        )
        elapsed, server_cpu, backend_cpu, machine = meter.stop()
        paced, paced_errors = asyncio.run(
            closed_loop(
                server.host, server.port, token, paths, args.clients, args.seconds, rng, args.paced_rate, expect=expect
            )
        )
        n = len(latencies)
        print(
            f"  {case:<28} {n / elapsed:6.0f} {1000 * percentile(latencies, 50):7.1f} {1000 * percentile(latencies, 99):7.1f}"
            f" {1000 * server_cpu / n:8.2f} + {1000 * backend_cpu / n:4.2f} db {1000 * machine / n:8.2f}"
            f" | {1000 * percentile(paced, 50):9.1f} {1000 * percentile(paced, 99):7.1f}"
            + (f"  ({errors + paced_errors} not {expect}!)" if errors + paced_errors else ""),
            flush=True,
        )
        if profile is not None:
            print("\n".join(profile.summary()), flush=True)


# ---------------------------------------------------------------------------------------------
# streams


class Load(threading.Thread):
    """Sends `rate` short test_jobs a second (each 100 to 1,000 ms, reporting progress) as the
    members of the `orgs` largest organizations, until stopped."""

    def __init__(self, who: Subjects, rate: float, orgs: int, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.who, self.rate, self.orgs, self.rng = who, rate, orgs, rng
        self.stopping = threading.Event()
        self.sent = 0

    def run(self) -> None:
        from jobs import service

        started = time.monotonic()
        while not self.stopping.is_set():
            org = self.who.orgs[self.rng.randrange(self.orgs)]
            user = self.rng.choice(org["members"])
            service.send_job("test_job", user_id=user, args={"delay_ms": self.rng.randrange(100, 1000)})
            self.sent += 1
            # The load's own schedule, not a wait for an outcome.
            self.stopping.wait(max(0.0, started + self.sent / self.rate - time.monotonic()))


def stream_mix(who: Subjects, long_jobs: list[tuple[str, str]], count: int) -> list[tuple[str, str, str]]:
    """(path, token) of `count` streams: half /api/stream (60 % members and 30 % admins of the
    organizations the load runs in and beyond, 10 % operators), half the streams of the long
    jobs, as their owner, their organization's admin or an operator."""
    hour = timedelta(hours=2)
    secret = who.secret
    every, jobs = count // 2, count - count // 2
    mix = []
    for n in range(every):
        kind = n % 10
        if kind < 6:  # members of the 10 organizations the load runs in
            org = who.orgs[n % 10]
            user = org["members"][(n // 10) % len(org["members"])]
            mix.append(("/api/stream", tokens.mint(secret, user, hour), "member"))
        elif kind < 9:  # admins of the 30 largest
            mix.append(("/api/stream", tokens.mint(secret, who.orgs[n % 30]["admin"], hour), "admin"))
        else:
            mix.append(("/api/stream", tokens.mint(secret, f"bench-{n}", hour, operator=True), "operator"))
    for n in range(jobs):
        job_id, owner = long_jobs[n % len(long_jobs)]
        org = next(o for o in who.orgs if owner in o["members"])
        viewer = (
            tokens.mint(secret, owner, hour)
            if n % 3 == 0
            else tokens.mint(secret, org["admin"], hour)
            if n % 3 == 1
            else tokens.mint(secret, f"bench-job-{n}", hour, operator=True)
        )
        mix.append((f"/api/jobs/{job_id}/stream", viewer, "job"))
    return mix


async def watch(
    server: Server,
    mix: list[tuple[str, str, str]],
    seconds: float,
    meter: Meter,
    opened_rss: list[float],
    profile_to: Path | None = None,
) -> tuple[list[Stream], tuple[float, float, float, float], float, float]:
    """Opens the streams of `mix`, waits until each has answered, then measures for `seconds`:
    the streams, the meter's figures, and the window (time.time()) whose arrivals count."""
    streams = [Stream(path, token, kind) for path, token, kind in mix]
    tasks = [asyncio.create_task(stream.run(server.host, server.port)) for stream in streams]
    await asyncio.wait_for(asyncio.gather(*(stream.opened.wait() for stream in streams)), 120)
    failed = [stream.error for stream in streams if stream.error]
    if failed:
        raise SystemExit(f"{len(failed)} streams failed to open: {failed[:3]}")
    await asyncio.sleep(1.0)  # the first reads done; the load's own schedule
    opened_rss.append(rss_mb(server.pid))
    profile = Profile(server.pid, profile_to, f"{len(mix)} streams", seconds) if profile_to else None
    meter.start()
    window_start = time.time()
    await asyncio.sleep(seconds)  # the phase's length: the load runs meanwhile
    figures = meter.stop()
    window_end = time.time()
    if profile is not None:
        await asyncio.to_thread(lambda: print("\n".join(profile.summary()), flush=True))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return streams, figures, window_start, window_end


def latencies_ms(streams: list[Stream], start: float, end: float) -> list[float]:
    return [
        1000 * (arrived - created)
        for stream in streams
        for arrived, created in stream.arrivals
        if start <= created <= end
    ]


def run_streams(
    server: Server, meter: Meter, who: Subjects, args: argparse.Namespace, rng: random.Random, logs: str
) -> None:
    import actors  # noqa: F401 - configures the database and the broker from the environment above
    from db.connection import database
    from jobs import service
    from jobs.errors import JobError

    workers = start_workers(args.processes, args.threads, f"{logs}/workers.log")
    admin = psycopg2.connect(os.environ["ADMIN_DATABASE_URL"])
    admin.autocommit = True
    load = None
    long_jobs: list[tuple[str, str]] = []
    try:

        def live_workers() -> bool:
            with admin.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM workers WHERE stopped_at IS NULL AND lease_expires_at > now()")
                return cursor.fetchone()[0] >= args.processes

        wait_until(
            live_workers, what=f"{args.processes} worker processes to heartbeat (log: {logs}/workers.log)", timeout=60
        )
        # Long jobs that report progress while the phases run: the jobs the job streams follow.
        long_ms = int(1000 * (2 * args.stream_seconds + 60))
        for n in range(args.long_jobs):
            owner = who.orgs[n]["members"][0]
            long_jobs.append((service.send_job("test_job", user_id=owner, args={"delay_ms": long_ms}), owner))

        def long_jobs_running() -> bool:
            with admin.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM job_status WHERE job_id = ANY(%s::uuid[]) AND status = 'active'",
                    ([job for job, _ in long_jobs],),
                )
                return cursor.fetchone()[0] == len(long_jobs)

        wait_until(long_jobs_running, what="the long jobs to start", timeout=60)
        load = Load(who, args.rate, 10, rng)
        load.start()
        print(
            f"\nstreams: {args.processes} worker processes x {args.threads} threads; {args.rate:.0f} short jobs/s and"
            f" {args.long_jobs} long ones running; {args.stream_seconds:.0f} s a phase (load average {load_average()})"
        )
        print(
            f"  {'open streams':<13} {'server CPU %':>12} {'db CPU %':>9} {'machine CPU %':>14} {'server RSS MB':>14}"
            f" {'events':>7} {'latency p50 ms':>15} {'p99 ms':>7}"
        )
        results = {}
        probe = ("/api/stream", tokens.mint(who.secret, "latency-probe", timedelta(hours=2), operator=True), "operator")
        for count in (0, args.streams):
            mix = [probe] + (stream_mix(who, long_jobs, count) if count else [])
            rss: list[float] = []
            streams, (elapsed, server_cpu, backend_cpu, machine), start, end = asyncio.run(
                watch(server, mix, args.stream_seconds, meter, rss, args.profile)
            )
            lat = latencies_ms(streams, start, end)
            arrived = sum(len(stream.arrivals) for stream in streams)
            results[count] = (server_cpu / elapsed, backend_cpu / elapsed, rss[0])
            print(
                f"  {len(mix):<13} {100 * server_cpu / elapsed:12.1f} {100 * backend_cpu / elapsed:9.1f}"
                f" {100 * machine / elapsed:14.1f} {rss[0]:14.1f} {arrived:7}"
                f" {percentile(lat, 50) if lat else float('nan'):15.1f} {percentile(lat, 99) if lat else float('nan'):7.1f}",
                flush=True,
            )
            if count:
                kinds: dict[str, list[int]] = {}
                for stream in streams:
                    kinds.setdefault(stream.kind, []).append(sum(start <= c <= end for _, c in stream.arrivals))
                print(
                    "  events a stream received in the phase, by kind: "
                    + ", ".join(f"{kind} {sum(n) / len(n):.0f} ({len(n)} streams)" for kind, n in kinds.items()),
                    flush=True,
                )
        (cpu0, db0, rss0), (cpu1, db1, rss1) = results[0], results[args.streams]
        print(
            f"  per stream: server CPU {1000 * (cpu1 - cpu0) / args.streams:.2f} ms/s,"
            f" its database backends {1000 * (db1 - db0) / args.streams:.2f} ms/s,"
            f" RSS {1024 * (rss1 - rss0) / args.streams:.0f} kB"
        )
    finally:
        if load is not None:
            load.stopping.set()
            load.join()
        for job_id, owner in long_jobs:
            try:
                service.cancel_job(job_id, owner, reason="the benchmark is over")
            except JobError as error:  # finished already, or the database went away: say so
                print(f"  cancel of long job {job_id}: {error}", file=sys.stderr)
        stop_workers(workers)
        admin.close()
        database.close()


# ---------------------------------------------------------------------------------------------


def drop_database(admin_url: str) -> None:
    parts = urlparse(admin_url)
    conn = psycopg2.connect(urlunparse(parts._replace(path="/postgres")))
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(parts.path.lstrip("/")))
        )
    conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0, help="of each read case, back to back and paced")
    parser.add_argument("--paced-rate", type=float, default=40.0, help="requests/s of all the paced clients")
    parser.add_argument("--cases", help="only the read cases whose names hold one of these (comma-separated)")
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="short jobs a second while streams are open")
    parser.add_argument("--long-jobs", type=int, default=6)
    parser.add_argument("--stream-seconds", type=float, default=20.0)
    parser.add_argument("--processes", type=int, default=2, help="worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process")
    parser.add_argument("--phases", default="reads,streams")
    parser.add_argument("--keep", action="store_true", help="keep the database (the next run reuses it)")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="profile the server with py-spy into DIR")
    parser.add_argument(
        "--jobctl",
        type=Path,
        default=JOBCTL,
        help="the jobctl whose server is measured (another checkout's, to compare two versions; default: this one's)",
    )
    args = parser.parse_args()
    if args.profile:
        if not available():
            parser.error("--profile needs py-spy: pip install py-spy")
        args.profile.mkdir(parents=True, exist_ok=True)
    phases = set(args.phases.split(","))
    if not phases or phases - {"reads", "streams"}:
        parser.error(f"--phases takes reads and/or streams, not {args.phases!r}")
    admin_url = os.environ["ADMIN_DATABASE_URL"]
    rng = random.Random(7)
    logs = tempfile.mkdtemp(prefix="bench-api-")
    print(
        f"bench api: rows={args.rows:,} clients={args.clients} streams={args.streams} | {platform.node()}"
        f" {os.cpu_count()} cpus, Python {platform.python_version()} | load average {load_average()} | logs: {logs}",
        flush=True,
    )
    server = None
    try:
        db.migrate(admin_url)
        worker_limits.record(admin_url, Settings.from_env().worker_limits())
        fill_s = fill(admin_url, args.rows, log=lambda line: print(line, flush=True))
        print(
            f"  job_status at {args.rows:,} rows" + (f" (filled in {fill_s:.0f} s)" if fill_s else " (kept)"),
            flush=True,
        )
        secret = secrets.token_hex(32)
        who = subjects(admin_url, secret.encode(), rng)
        server = Server(secret, f"{logs}/server.log", args.jobctl)
        admin = psycopg2.connect(admin_url)
        admin.autocommit = True
        meter = Meter(admin, server.pid)
        if "reads" in phases:
            run_reads(server, meter, who, args, rng)
        if "streams" in phases:
            run_streams(server, meter, who, args, rng, logs)
        print(f"\nserver RSS at the end {rss_mb(server.pid):.0f} MB; load average {load_average()}")
        admin.close()
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            drop_database(admin_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
