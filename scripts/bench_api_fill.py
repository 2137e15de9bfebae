"""The tenants and the history of scripts/bench_api.py: 100 organizations of uneven size and
job_status filled to 10^6 rows by SQL, with their events.

The organizations are uneven, as a platform's customers are: organization k (0 to 99) gets a
share of the jobs that falls with k (ranks drawn as floor(100 * random()^2): the largest holds
10 % of all jobs, the smallest 0.1 %). Each has one admin, nine members and five courses. Of
the jobs, 60 % are test_jobs (30 % of them about a course) and 40 % initialize a course; 85 %
completed, 10 % failed, 5 % cancelled, created over the last 180 days. Only finished jobs: a
waiting row would be published again by the workers' reconcile pass, and an active one taken
back by their reaper, during the phases that run workers.
"""

from __future__ import annotations

import time

import psycopg2

ORGS = 100
USERS_PER_ORG = 10  # user 0 is the admin
COURSES_PER_ORG = 5
CHUNK = 100_000

# Rows valid under every constraint of job_status and job_events; session_replication_role =
# replica skips their triggers for the fill: the transition guards (which only judge updates),
# and the NOTIFY of every event (0018), which would queue millions of notifications that no one
# needs. The rows are made consistent here instead: each course of its job's organization, each
# event in order, each timestamp after the one before.
FILL = """
WITH tenants AS (
    SELECT (SELECT array_agg(u.id ORDER BY o.name, u.email) FROM users u JOIN organizations o ON o.id = u.organization_id
             WHERE o.name LIKE 'Bench Org %%') AS users,
           (SELECT array_agg(o.id ORDER BY o.name) FROM organizations o WHERE o.name LIKE 'Bench Org %%') AS orgs,
           (SELECT array_agg(c.id ORDER BY o.name, c.title) FROM courses c JOIN organizations o ON o.id = c.organization_id
             WHERE o.name LIKE 'Bench Org %%') AS courses
), pick AS (
    -- A subquery over the series, so that random() is drawn for each row, not once.
    SELECT floor(%(orgs)s * random() ^ 2)::int AS org, floor(%(users)s * random())::int AS member,
           floor(%(courses)s * random())::int AS course, random() AS r, random() AS t,
           clock_timestamp() - random() * interval '180 days' AS created
      FROM generate_series(1, %(count)s)
), job AS (
    SELECT pick.*, tenants.orgs[pick.org + 1] AS organization_id,
           tenants.users[pick.org * %(users)s + pick.member + 1] AS user_id,
           CASE WHEN pick.t < 0.40 OR pick.t > 0.82 THEN tenants.courses[pick.org * %(courses)s + pick.course + 1] END
             AS course_id,
           CASE WHEN pick.t < 0.40 THEN 'initialize' ELSE 'test_job' END AS job_type,
           CASE WHEN pick.r < 0.85 THEN 'completed' WHEN pick.r < 0.95 THEN 'failed' ELSE 'cancelled' END AS status
      FROM pick, tenants
), new AS (
    INSERT INTO job_status (job_id, job_type, queue, organization_id, user_id, course_id, status, attempts,
                            max_attempts, progress, kwargs, result, error_type, error_message, worker_id,
                            created_at, started_at, completed_at, failed_at, cancelled_at, cancelled_by, updated_at)
    SELECT gen_random_uuid(), job_type, 'default', organization_id, user_id, course_id, status,
           CASE WHEN status = 'cancelled' THEN 0 ELSE 1 END, 4,
           CASE WHEN status = 'completed' THEN 100 ELSE 0 END,
           CASE WHEN job_type = 'initialize' THEN jsonb_build_object('course_id', course_id)
                ELSE jsonb_build_object('delay_ms', (r * 1000)::int) END,
           CASE WHEN status <> 'completed' THEN NULL
                WHEN job_type = 'initialize' THEN jsonb_build_object('course_id', course_id, 'modules', 5)
                ELSE '{"waited_ms": 500, "attempt": 1}'::jsonb END,
           CASE WHEN status = 'failed' THEN 'IntentionalFailure' END,
           CASE WHEN status = 'failed' THEN 'intentional failure (should_fail=True)' END,
           CASE WHEN status <> 'cancelled' THEN 'bench-host:4242:1a2b3c4d/3' END,
           created, CASE WHEN status <> 'cancelled' THEN created + interval '40 ms' END,
           CASE WHEN status = 'completed' THEN created + interval '600 ms' END,
           CASE WHEN status = 'failed' THEN created + interval '600 ms' END,
           CASE WHEN status = 'cancelled' THEN created + interval '5 s' END,
           CASE WHEN status = 'cancelled' THEN user_id END,
           created + CASE WHEN status = 'cancelled' THEN interval '5 s' ELSE interval '600 ms' END
      FROM job
    RETURNING job_id, user_id, status, created_at, updated_at
)
INSERT INTO job_events (job_id, event, from_status, to_status, attempt, actor_user_id, worker_id, details, created_at)
SELECT job_id, 'enqueued', NULL, 'pending', 0, user_id, NULL, '{}'::jsonb, created_at FROM new
UNION ALL
SELECT job_id, 'started', 'pending', 'active', 1, NULL, 'bench-host:4242:1a2b3c4d/3', '{}'::jsonb,
       created_at + interval '40 ms'
  FROM new WHERE status <> 'cancelled'
UNION ALL
SELECT job_id, status, CASE WHEN status = 'cancelled' THEN 'pending' ELSE 'active' END, status,
       CASE WHEN status = 'cancelled' THEN 0 ELSE 1 END, CASE WHEN status = 'cancelled' THEN user_id END,
       CASE WHEN status = 'cancelled' THEN NULL ELSE 'bench-host:4242:1a2b3c4d/3' END,
       CASE WHEN status = 'failed' THEN '{"error_type": "IntentionalFailure"}'::jsonb
            WHEN status = 'cancelled' THEN '{"reason": "not needed"}'::jsonb ELSE '{}'::jsonb END,
       updated_at
  FROM new
"""


def tenants(cursor) -> None:
    """The bench's organizations, people and courses (again: nothing is added twice)."""
    for org in range(ORGS):
        cursor.execute(
            "INSERT INTO organizations (name) VALUES (%s) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name"
            " RETURNING id",
            (f"Bench Org {org:03}",),
        )
        org_id = cursor.fetchone()[0]
        for n in range(USERS_PER_ORG):
            role = "admin" if n == 0 else "member"
            cursor.execute(
                "INSERT INTO users (organization_id, email, name, role) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (email) DO NOTHING",
                (org_id, f"{role}{n}@org-{org:03}.bench.example", f"{role.title()} {n} of org {org:03}", role),
            )
        cursor.execute("SELECT id FROM users WHERE organization_id = %s AND role = 'admin'", (org_id,))
        admin = cursor.fetchone()[0]
        for n in range(COURSES_PER_ORG):
            cursor.execute(
                "INSERT INTO courses (organization_id, owner_id, title) VALUES (%s, %s, %s)"
                " ON CONFLICT (organization_id, title) DO NOTHING",
                (org_id, admin, f"Bench course {n}"),
            )


def fill(admin_url: str, target: int, log=print) -> float:
    """Tenants, then jobs until job_status holds `target` rows; the seconds it took (0 when it
    already held them: a database kept by --keep)."""
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    started = time.monotonic()
    try:
        with conn.cursor() as cursor:
            tenants(cursor)
            cursor.execute("SELECT count(*) FROM job_status")
            have = cursor.fetchone()[0]
            if have >= target:
                return 0.0
            cursor.execute("SELECT setseed(0.13)")
            cursor.execute("SET session_replication_role = replica")
            while have < target:
                count = min(CHUNK, target - have)
                cursor.execute(FILL, {"count": count, "orgs": ORGS, "users": USERS_PER_ORG, "courses": COURSES_PER_ORG})
                have += count
                log(f"  filled {have:,} jobs ({time.monotonic() - started:.0f} s)")
            cursor.execute("SET session_replication_role = DEFAULT")
            # As autovacuum would have by then: fresh statistics and the visibility map.
            cursor.execute("VACUUM ANALYZE job_status")
            cursor.execute("VACUUM ANALYZE job_events")
    finally:
        conn.close()
    return time.monotonic() - started
