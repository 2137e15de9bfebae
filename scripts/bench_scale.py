"""The scale mode of scripts/bench.py: the product's reads and the send rate as job_status grows.

job_status is filled by SQL (not through the queue) to each size in turn, spread evenly over 100
organizations of 10 users each, with the status mix of a system that has run for a while and
two events per job. At each size: the send rate (single sends and batches), and the latency of
`show` (service.show_job, as `jobctl show --as` calls it), of `list` (the newest 50) and of the
dashboard's status counts, as users see them through db.scope.as_user and row-level security,
exactly as services call them (an operator's counts on the services' connection).
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable

import psycopg2

from db import queries
from db.fixtures import seed
from jobs import reads, service

ORGS = 100
USERS_PER_ORG = 10
FILL_CHUNK = 100_000

# Valid under every constraint of job_status; session_replication_role = replica skips the
# triggers (and the foreign-key checks, whose targets exist), not the CHECK constraints.
FILL = """
WITH staff AS (
    SELECT array_agg(id ORDER BY email) AS users, array_agg(organization_id ORDER BY email) AS orgs FROM users
), new AS (
    INSERT INTO job_status (job_id, job_type, queue, organization_id, user_id, status, attempts, max_attempts,
                            progress, kwargs, result, error_type, error_message, worker_id,
                            created_at, started_at, completed_at, failed_at, cancelled_at, updated_at)
    SELECT gen_random_uuid(), 'test_job', 'default', staff.orgs[k], staff.users[k], status,
           CASE WHEN status IN ('completed', 'failed') THEN 1 ELSE 0 END, 4,
           CASE WHEN status = 'completed' THEN 100 ELSE 0 END,
           jsonb_build_object('delay_ms', (r * 1000)::int),
           CASE WHEN status = 'completed' THEN '{"waited_ms": 0, "attempt": 1}'::jsonb END,
           CASE WHEN status = 'failed' THEN 'IntentionalFailure' END,
           CASE WHEN status = 'failed' THEN 'intentional failure (should_fail=True)' END,
           CASE WHEN status IN ('completed', 'failed') THEN 'bench:1:1/1' END,
           created, CASE WHEN status IN ('completed', 'failed') THEN created + interval '1 second' END,
           CASE WHEN status = 'completed' THEN created + interval '2 seconds' END,
           CASE WHEN status = 'failed' THEN created + interval '2 seconds' END,
           CASE WHEN status = 'cancelled' THEN created + interval '1 second' END,
           created + interval '2 seconds'
      FROM staff,
           -- A subquery over the series, so that random() is drawn for each row, not once.
           (SELECT 1 + floor(random() * (SELECT count(*) FROM users))::int AS k,
                   random() AS r, clock_timestamp() - random() * interval '90 days' AS created
              FROM generate_series(1, %(count)s)) AS pick,
           LATERAL (SELECT CASE WHEN pick.r < 0.80 THEN 'completed' WHEN pick.r < 0.90 THEN 'failed'
                                WHEN pick.r < 0.95 THEN 'cancelled' ELSE 'pending' END AS status) AS s
    RETURNING job_id, status, attempts, created_at, updated_at
)
INSERT INTO job_events (job_id, event, from_status, to_status, attempt, created_at)
SELECT job_id, 'enqueued', NULL, 'pending', 0, created_at FROM new
UNION ALL
SELECT job_id, status, CASE WHEN attempts = 0 THEN 'pending' ELSE 'active' END, status, attempts, updated_at
  FROM new WHERE status <> 'pending'
"""


def fill(admin_url: str, target: int) -> float:
    """Adds jobs until job_status holds `target` rows; returns the seconds it took."""
    started = time.monotonic()
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM job_status")
        have = cursor.fetchone()[0]
        cursor.execute("SET session_replication_role = replica")
        while have < target:
            count = min(FILL_CHUNK, target - have)
            cursor.execute(FILL, {"count": count})
            have += count
        cursor.execute("SET session_replication_role = DEFAULT")
        # As autovacuum would have by then: fresh statistics and visibility map.
        cursor.execute("VACUUM ANALYZE job_status")
        cursor.execute("VACUUM ANALYZE job_events")
    conn.close()
    return time.monotonic() - started


def tenants(admin_url: str) -> dict[str, list[str]]:
    """The seed's tenants and enough others to make 100 organizations of 10 users: users by org."""
    seed(admin_url)
    conn = psycopg2.connect(admin_url)
    with conn, conn.cursor() as cursor:
        for n in range(ORGS - 2):  # and the seed's two
            cursor.execute(
                "INSERT INTO organizations (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (f"Bench Org {n:03}",)
            )
        cursor.execute("SELECT id, name FROM organizations")
        for org_id, name in cursor.fetchall():
            cursor.execute("SELECT count(*) FROM users WHERE organization_id = %s", (org_id,))
            for n in range(cursor.fetchone()[0], USERS_PER_ORG):
                cursor.execute(
                    "INSERT INTO users (organization_id, email, name, role) VALUES (%s, %s, %s, %s)",
                    (org_id, f"bench{n}@{name.lower().replace(' ', '-')}.example", f"Bench {n}", "member"),
                )
        cursor.execute(
            "SELECT u.organization_id, array_agg(u.id::text ORDER BY u.role, u.email) FROM users u"
            " JOIN organizations o ON o.id = u.organization_id WHERE o.name = 'Acme Learning'"
            " GROUP BY u.organization_id"
        )
        _, acme = cursor.fetchone()
    conn.close()
    return {"acme": acme}


def org_size(admin_url: str, user: str) -> int:
    """How many jobs the organization of `user` has: what its admin's list looks through."""
    conn = psycopg2.connect(admin_url)
    with conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM job_status WHERE organization_id = (SELECT organization_id FROM users WHERE id = %s)",
            (user,),
        )
        count = cursor.fetchone()[0]
    conn.close()
    return count


def timed(call: Callable[[], object], samples: int) -> tuple[float, float]:
    """p50 and p99 of `call`, in milliseconds."""
    durations = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        durations.append(time.perf_counter() - started)
    durations.sort()
    return 1000 * durations[len(durations) // 2], 1000 * durations[min(len(durations) - 1, int(0.99 * len(durations)))]


def send_rates(user: str, count: int, batch: int) -> tuple[float, float]:
    started = time.perf_counter()
    for _ in range(count):
        service.send_job("test_job", user_id=user)
    single = count / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(0, count, batch):
        service.send_jobs("test_job", [{}] * batch, user_id=user)
    return single, count / (time.perf_counter() - started)


def run_scale(args: argparse.Namespace) -> int:
    import actors

    admin_url = os.environ["ADMIN_DATABASE_URL"]
    sizes = sorted(int(size) for size in args.sizes.split(","))
    conn = psycopg2.connect(admin_url)
    with conn, conn.cursor() as cursor:
        cursor.execute("TRUNCATE job_events, job_status")
    conn.close()
    acme = tenants(admin_url)["acme"]
    admin, member = acme[0], acme[1]  # admins sort first
    rng = random.Random(1)
    print(f"bench scale: sizes={sizes} samples={args.samples} orgs={ORGS}x{USERS_PER_ORG} users | batch={args.batch}")
    print(
        f"  {'rows':>9} {'org rows':>8} {'fill s':>7} {'send/s':>7} {'batch/s':>8}  {'show p50/p99 ms':>16}  {'list org':>12}"
        f"  {'list failed':>12}  {'list member':>12}  {'counts ops':>12}  {'counts org':>12}  {'counts member':>13}"
    )
    for size in sizes:
        fill_s = fill(admin_url, size)
        actors.broker.flush_all()
        single, batched = send_rates(member, 200, args.batch)
        actors.broker.flush_all()
        jobs = [row["job_id"] for row in service.list_jobs(as_user=admin, limit=1_000)]
        org_rows = org_size(admin_url, admin)

        def show(jobs: list[str] = jobs) -> None:
            service.show_job(rng.choice(jobs), as_user=admin)

        results = [
            timed(show, args.samples),
            timed(lambda: service.list_jobs(as_user=admin, limit=50), args.samples),
            timed(lambda: service.list_jobs(as_user=admin, status="failed", limit=50), args.samples),
            timed(lambda: service.list_jobs(as_user=member, limit=50), args.samples),
            # The dashboard's status counts (each status up to 1,000): an operator's, on the
            # services' connection; an admin's and a member's, through as_user.
            timed(lambda: queries.status_counts(cap=1_000), args.samples),
            timed(lambda: reads.status_counts(as_user=admin, cap=1_000), args.samples),
            timed(lambda: reads.status_counts(as_user=member, cap=1_000), args.samples),
        ]
        cells = "  ".join(f"{p50:6.2f} / {p99:5.2f}" for p50, p99 in results)
        print(f"  {size:>9} {org_rows:>8} {fill_s:7.1f} {single:7.0f} {batched:8.0f}  {cells}", flush=True)
    return 0
