"""The naive prototype's table, which the throughput mode (scripts/bench.py) and the rules mode
(scripts/bench_rules.py) both write: the system this one replaces kept a job's status in one
table with a primary key only, and no events."""

NAIVE_TABLE = """
CREATE TABLE IF NOT EXISTS naive_jobs (
    job_id uuid PRIMARY KEY,
    job_type text NOT NULL,
    user_id uuid NOT NULL,
    args jsonb NOT NULL,
    status text NOT NULL,
    worker_id text,
    result jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    completed_at timestamptz
)"""
