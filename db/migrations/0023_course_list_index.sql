-- The job list filtered by course (GET /api/jobs?course=...), newest first in keyset pages of
-- (created_at, job_id). Without it, an operator's list of one
-- course walked the whole table's (created_at, job_id) index until 50 rows of that course came
-- by (0.2 s at 10^6 jobs, a course holding 0.1 % of them), an admin's walked the organization's,
-- and a member's gathered all of theirs to sort them (0.26 s for a member of 10^4 jobs). With it:
-- 0.4 ms, 0.7 ms and 20-30 ms (scripts/bench_api.py; BENCHMARKS.md). Partial: most jobs are
-- about no course, and they need no entry.
CREATE INDEX job_status_course_created_idx ON job_status (course_id, created_at DESC, job_id DESC)
    WHERE course_id IS NOT NULL;
