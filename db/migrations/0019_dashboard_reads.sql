-- What the dashboard's pages read on every view, kept to index ranges at 10^6 jobs.
--
-- Status counts: each status counted up to a bound (db.queries.status_counts), one index range
-- per status. A tenant's counts begin with the organization (job_status_org_status_idx of 0002);
-- the operators' cover every tenant, and without this index a rare status (`failed` among 10^6
-- completed jobs) was a scan of the whole table. The operators' list filtered by status reads its
-- keyset pages from it as well.
CREATE INDEX job_status_status_created_idx ON job_status (status, created_at DESC, job_id DESC);

-- The workers page's recent recoveries: the jobs a reaper took back from a lost worker (0009's
-- job_reap writes `worker_lost`, or `failed` with error_type WorkerLost once the deliveries ran
-- out), newest first. They are rare among the events, so a partial index holds them alone; the
-- query repeats this predicate word for word, so that the planner can use it.
CREATE INDEX job_events_recovered_idx ON job_events (id)
    WHERE event = 'worker_lost' OR (event = 'failed' AND details ->> 'error_type' = 'WorkerLost');
