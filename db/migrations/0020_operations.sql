-- Operations (issue 15): numbers to alert on, and a database that doesn't grow for ever.
--
-- Metrics. What is counted comes from the events, the history every transition already writes,
-- and is added up apart from the status writes: job_metrics_count() reads the events committed
-- since its last pass (the snapshot it recorded, as a live view does: db/feed.py) and adds them
-- to job_metrics, one row per series. So the status writes pay nothing for it (no counter row
-- that every worker's transaction would lock in turn, and could deadlock on), the counters only
-- grow, outlive every process, and every server reads the same numbers. It runs at every scrape
-- and in every worker (middleware/maintenance.py), one at a time (an advisory lock; a pass that
-- finds another running skips: the numbers it then reads are a few seconds old).
--
-- Retention. job_prune() is the one way anything is deleted: finished jobs whose end is older
-- than their outcome's retention, with their events, a batch per call (a short transaction; the
-- rows taken with SKIP LOCKED, oldest first, by an index). It counts the events first, so a
-- counter never goes down when its events go. job_events stays append-only for everyone else:
-- its DELETE trigger lets through only a statement run by job_prune itself (the call stack says
-- so: a session can't fake it, as it could a setting). The workers call job_prune_expired(),
-- which prunes by the retention the database holds (job_retention, written by `jobctl migrate`),
-- so a worker can't choose what goes; `jobctl prune --older-than` is the administrator's.

-- The series, each a row: name (sent, finished, retries, worker_lost, lease_expired,
-- cancel_requests, pruned; wait_seconds_* and run_seconds_* for the histograms), job type, and
-- one more label (an outcome, a cause, a bucket's upper bound). No user or organization.
CREATE TABLE job_metrics (
    name      text NOT NULL,
    job_type  text NOT NULL,
    label     text NOT NULL DEFAULT '',
    value     double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (name, job_type, label)
);

-- The snapshot of the last count: the events it did not see are those to count next. NULL:
-- nothing counted yet (every event, from before 0018's writer_xid too, is counted at once, by
-- this migration). A count takes at most a page of events, in (writer_xid, id) order: while a
-- backlog is being counted, `upto` is the snapshot that bounds it and `after_*` the last event
-- counted, so that no count, however far behind, outlasts a statement timeout.
CREATE TABLE job_metrics_position (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    seen        pg_snapshot,
    upto        pg_snapshot,
    after_xid   xid8,
    after_id    bigint,
    counted_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
INSERT INTO job_metrics_position DEFAULT VALUES;

-- How long finished jobs are kept, by outcome, in milliseconds; 0: for ever. One row, written by
-- `jobctl migrate` from JOBS_RETAIN_*_DAYS (db/retention.py).
CREATE TABLE job_retention (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    completed_ms  bigint NOT NULL DEFAULT 2592000000 CHECK (completed_ms >= 0),
    failed_ms     bigint NOT NULL DEFAULT 7776000000 CHECK (failed_ms >= 0),
    cancelled_ms  bigint NOT NULL DEFAULT 7776000000 CHECK (cancelled_ms >= 0),
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
INSERT INTO job_retention DEFAULT VALUES;

-- What each worker process says of itself (its progress writer, group commit, status writes'
-- latency, re-sends): written by the process, on a session that presents its token, and read by
-- /metrics for the live workers. The numbers of a process that has gone stay until it is pruned
-- with its worker's row; /metrics shows those of live workers only.
CREATE TABLE worker_reports (
    worker_id    text PRIMARY KEY,
    reported_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    report       jsonb NOT NULL
);

-- Waiting and running jobs, counted by an index-only scan of these rows alone (however many
-- finished ones the table holds), and the oldest due waiting job of a queue in one probe each.
-- COALESCE(scheduled_for, updated_at): when a waiting job became due (db/queries.py says so too).
CREATE INDEX job_status_unfinished_idx ON job_status (queue, status, (COALESCE(scheduled_for, updated_at)), job_type)
    WHERE status IN ('pending', 'retrying', 'active');
-- Finished jobs, oldest end first: what retention walks. A finished row never changes
-- (job_status_guard), so its updated_at is when it ended.
CREATE INDEX job_status_finished_idx ON job_status (status, updated_at)
    WHERE status IN ('completed', 'failed', 'cancelled');

-- The next page of events to count: not seen by p_seen, seen by p_upto (by the calling
-- statement's snapshot when NULL), after (p_after_xid, p_after_id), at most p_limit in
-- (writer_xid, id) order; every event when p_seen is NULL (the migration's first count). STABLE:
-- it reads with the snapshot of the statement that calls it, so that the events counted and the
-- snapshot recorded are of one moment. Dynamic SQL, so that each call is planned for its values
-- (the index on writer_xid, walked in order from the last event counted).
CREATE FUNCTION job_metrics_events(p_seen pg_snapshot, p_upto pg_snapshot, p_after_xid xid8, p_after_id bigint,
                                   p_limit integer)
RETURNS SETOF job_events LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF p_seen IS NULL THEN
        RETURN QUERY SELECT * FROM job_events;
    ELSE
        RETURN QUERY EXECUTE
            'SELECT * FROM job_events e WHERE e.writer_xid >= pg_snapshot_xmin($1)'
            ' AND NOT pg_visible_in_snapshot(e.writer_xid, $1)'
            ' AND ($2::pg_snapshot IS NULL OR pg_visible_in_snapshot(e.writer_xid, $2))'
            ' AND ($3::xid8 IS NULL OR (e.writer_xid, e.id) > ($3, $4))'
            ' ORDER BY e.writer_xid, e.id LIMIT $5'
            USING p_seen, p_upto, p_after_xid, p_after_id, p_limit;
    END IF;
END $$;

-- Adds the events committed since the last count to job_metrics, p_limit at most (the caller
-- calls again while a page comes back full); returns how many it counted, or NULL when another
-- count was running and p_wait is false. Histograms: the wait of a job
-- (from when it was sent, or its delay ran out, to its first start) and the run of each attempt
-- (its start to its end: completed, failed, retrying, cancelled, its worker lost), by type, in
-- the buckets below (an observation goes to the first bucket whose bound it is under; its upper
-- bound is the label, '+Inf' past the last). Prometheus makes them cumulative (jobs/metrics.py).
CREATE FUNCTION job_metrics_count(p_wait boolean, p_limit integer) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_at job_metrics_position;
    v_counted bigint;
BEGIN
    IF p_wait THEN
        PERFORM pg_advisory_xact_lock(7140020);
    ELSIF NOT pg_try_advisory_xact_lock(7140020) THEN
        RETURN NULL;
    END IF;
    IF p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION 'a count takes 1 event or more' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A statement of its own after the lock: it sees the position the last count committed.
    SELECT * INTO v_at FROM job_metrics_position;
    WITH page AS (
        SELECT * FROM job_metrics_events(v_at.seen, v_at.upto, v_at.after_xid, v_at.after_id, p_limit)
    ), ev AS (
        SELECT e.*, j.job_type, j.created_at AS job_created_at
          FROM page e JOIN job_status j ON j.job_id = e.job_id
    ), last AS (
        SELECT p.writer_xid, p.id FROM page p ORDER BY p.writer_xid DESC, p.id DESC LIMIT 1
    ), done AS (
        -- Caught up: the next count starts from the snapshot this page was bounded by.
        SELECT v_at.seen IS NULL OR (SELECT count(*) FROM page) < p_limit AS yes
    ), bounds AS (
        SELECT ARRAY[0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]::float8[] AS b
    ), observed (kind, job_type, seconds) AS (
        SELECT 'wait', ev.job_type,
               greatest(0, extract(epoch FROM ev.created_at - ev.job_created_at)
                           - coalesce((sent.details ->> 'delay_ms')::float8, 0) / 1000)
          FROM ev LEFT JOIN LATERAL (
                SELECT q.details FROM job_events q WHERE q.job_id = ev.job_id AND q.event = 'enqueued'
                 ORDER BY q.id LIMIT 1) sent ON true
         WHERE ev.event = 'started' AND ev.attempt = 1
        UNION ALL
        SELECT 'run', ev.job_type, greatest(0, extract(epoch FROM ev.created_at - started.created_at))
          FROM ev JOIN LATERAL (
                SELECT q.created_at FROM job_events q
                 WHERE q.job_id = ev.job_id AND q.event = 'started' AND q.attempt = ev.attempt
                 ORDER BY q.id DESC LIMIT 1) started ON true
         WHERE ev.from_status = 'active' AND ev.to_status IS NOT NULL
    ), facts (name, job_type, label, value) AS (
        SELECT 'sent', job_type, '', 1 FROM ev WHERE event = 'enqueued'
        UNION ALL
        SELECT 'finished', job_type, to_status, 1 FROM ev WHERE to_status IN ('completed', 'failed', 'cancelled')
        UNION ALL
        SELECT 'retries', job_type, CASE event WHEN 'retry_scheduled' THEN 'error' ELSE event END, 1
          FROM ev WHERE to_status = 'retrying'
        UNION ALL
        -- The reaper's: a lost worker's job back to retrying, or failed at the delivery limit.
        SELECT 'worker_lost', job_type, to_status, 1
          FROM ev WHERE event = 'worker_lost' OR (event = 'failed' AND details ->> 'error_type' = 'WorkerLost')
        UNION ALL
        SELECT 'lease_expired', job_type, to_status, 1 FROM ev WHERE event = 'lease_expired'
        UNION ALL
        -- A user's or an operator's request (a worker's stop says `how`, and asks nothing).
        SELECT 'cancel_requests', job_type,
               CASE WHEN event = 'cancelled' THEN 'cancelled'
                    WHEN details ->> 'why' = 'the job has finished' THEN 'refused_finished'
                    ELSE 'refused_forbidden' END, 1
          FROM ev WHERE (event = 'cancelled' AND NOT details ? 'how') OR event = 'cancel_refused'
        UNION ALL
        SELECT kind || '_seconds_bucket', job_type, coalesce((bounds.b)[width_bucket(seconds, bounds.b) + 1]::text, '+Inf'), 1
          FROM observed, bounds
        UNION ALL
        SELECT kind || '_seconds_sum', job_type, '', seconds FROM observed
        UNION ALL
        SELECT kind || '_seconds_count', job_type, '', 1 FROM observed
    ), added AS (
        INSERT INTO job_metrics AS m (name, job_type, label, value)
        SELECT f.name, f.job_type, f.label, sum(f.value) FROM facts f GROUP BY f.name, f.job_type, f.label
        ON CONFLICT (name, job_type, label) DO UPDATE SET value = m.value + EXCLUDED.value
        RETURNING 1
    ), moved AS (
        UPDATE job_metrics_position
           SET seen = CASE WHEN done.yes THEN coalesce(v_at.upto, pg_current_snapshot()) ELSE v_at.seen END,
               upto = CASE WHEN done.yes THEN NULL ELSE coalesce(v_at.upto, pg_current_snapshot()) END,
               after_xid = CASE WHEN done.yes THEN NULL ELSE (SELECT writer_xid FROM last) END,
               after_id = CASE WHEN done.yes THEN NULL ELSE (SELECT id FROM last) END,
               counted_at = clock_timestamp()
          FROM done
        RETURNING 1
    )
    SELECT count(*) INTO v_counted FROM page;
    RETURN v_counted;
END $$;

-- Deletes finished jobs (p_statuses: some of completed, failed, cancelled; NULL: all three)
-- whose end is older than p_older_than_ms (NULL: the retention of each outcome, job_retention;
-- 0 there keeps them for ever), with their events: at most p_limit jobs, oldest first, rows
-- another session holds skipped. A dry run deletes nothing and counts every job that would go,
-- and its events. Never a waiting or running job: only these three statuses are ever read, and a
-- finished row never changes. One row per status: the jobs and events deleted (or that would be).
CREATE FUNCTION job_prune(p_statuses text[], p_older_than_ms bigint, p_limit integer, p_dry_run boolean)
RETURNS TABLE (status text, jobs bigint, events bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_finished constant text[] := ARRAY['completed', 'failed', 'cancelled'];
    v_kept job_retention;
    v_status text;
    v_age_ms bigint;
    v_cutoff timestamptz;
    v_left integer := p_limit;
    v_ids uuid[];
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'a batch is 1 to 10000 jobs' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_older_than_ms IS NOT NULL AND p_older_than_ms < 1 THEN
        RAISE EXCEPTION 'an age to prune from is more than 0' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_statuses IS NOT NULL AND (cardinality(p_statuses) = 0 OR NOT p_statuses <@ v_finished
                                   OR array_position(p_statuses, NULL) IS NOT NULL) THEN
        RAISE EXCEPTION 'only finished jobs are pruned: completed, failed, cancelled'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO v_kept FROM job_retention;
    IF NOT p_dry_run THEN
        -- Every event is counted before it can go: the counters never go down. (A backlog too
        -- long to count within this statement fails the prune; the workers' counts work it off.)
        LOOP
            EXIT WHEN job_metrics_count(true, 50000) < 50000;
        END LOOP;
    END IF;
    FOREACH v_status IN ARRAY v_finished LOOP
        CONTINUE WHEN p_statuses IS NOT NULL AND NOT v_status = ANY (p_statuses);
        status := v_status;
        jobs := 0;
        events := 0;
        v_age_ms := coalesce(p_older_than_ms, CASE v_status WHEN 'completed' THEN v_kept.completed_ms
                                                            WHEN 'failed' THEN v_kept.failed_ms
                                                            ELSE v_kept.cancelled_ms END);
        IF v_age_ms > 0 THEN
            v_cutoff := clock_timestamp() - v_age_ms * interval '1 millisecond';
            IF p_dry_run THEN
                SELECT count(*), coalesce(sum((SELECT count(*) FROM job_events e WHERE e.job_id = j.job_id)), 0)
                  INTO jobs, events
                  FROM job_status j WHERE j.status = v_status AND j.updated_at < v_cutoff;
            ELSIF v_left > 0 THEN
                -- Planned for this status (the partial index of finished jobs), oldest first.
                EXECUTE 'SELECT array_agg(t.job_id) FROM ('
                        ' SELECT j.job_id FROM job_status j WHERE j.status = $1 AND j.updated_at < $2'
                        ' ORDER BY j.updated_at LIMIT $3 FOR UPDATE SKIP LOCKED) t'
                   INTO v_ids USING v_status, v_cutoff, v_left;
                IF v_ids IS NOT NULL THEN
                    DELETE FROM job_events e WHERE e.job_id = ANY (v_ids);
                    GET DIAGNOSTICS events = ROW_COUNT;
                    WITH gone AS (
                        DELETE FROM job_status j WHERE j.job_id = ANY (v_ids) RETURNING j.job_type
                    )
                    INSERT INTO job_metrics AS m (name, job_type, label, value)
                    SELECT 'pruned', g.job_type, v_status, count(*) FROM gone g GROUP BY g.job_type
                    ON CONFLICT (name, job_type, label) DO UPDATE SET value = m.value + EXCLUDED.value;
                    jobs := cardinality(v_ids);
                    v_left := v_left - jobs;
                END IF;
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
END $$;

-- The workers' periodic pass: one batch by the retention the database holds; how many jobs went.
CREATE FUNCTION job_prune_expired(p_limit integer) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce(sum(p.jobs), 0)::bigint FROM job_prune(NULL, NULL, p_limit, false) p;
$$;

-- The events stay append-only: an UPDATE is refused, always (the trigger of 0002, kept for
-- updates), and a DELETE unless job_prune runs it. Checked once per statement, from the call
-- stack (a setting would do for the roles that can't delete anyway, but anyone may set one).
CREATE FUNCTION job_events_pruned_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_stack text;
BEGIN
    GET DIAGNOSTICS v_stack = PG_CONTEXT;
    IF v_stack !~ '\nPL/pgSQL function job_prune\(text\[\],bigint,integer,boolean\) line \d+ at SQL statement' THEN
        RAISE EXCEPTION 'job_events is append-only: events go only with their finished job, through job_prune'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER job_events_append_only ON job_events;
CREATE TRIGGER job_events_append_only BEFORE UPDATE ON job_events
    FOR EACH ROW EXECUTE FUNCTION job_events_append_only();
CREATE TRIGGER job_events_pruned_only BEFORE DELETE ON job_events
    FOR EACH STATEMENT EXECUTE FUNCTION job_events_pruned_only();

-- A worker process's numbers (middleware/report.py), on a session that presents its token: a
-- process reports for itself only. At most 16 kB of JSON.
CREATE FUNCTION worker_report(p_worker text, p_report jsonb) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF jsonb_typeof(p_report) IS DISTINCT FROM 'object' OR octet_length(p_report::text) > 16384 THEN
        RAISE EXCEPTION 'a worker''s report is a JSON object of at most 16 kB' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF strpos(p_worker, '/') > 0 OR NOT coalesce(worker_proven(p_worker), false) THEN
        RAISE EXCEPTION 'worker % is not this session''s process: a process reports for itself only', left(p_worker, 300)
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO worker_reports AS r (worker_id, report) VALUES (p_worker, p_report)
    ON CONFLICT (worker_id) DO UPDATE SET report = EXCLUDED.report, reported_at = clock_timestamp();
    RETURN true;
END $$;

-- What the database held before this migration is counted now, in one statement (whose
-- snapshot is recorded with it).
SELECT job_metrics_count(true, 1);

-- Privileges, by name (the default that later functions are nobody's is 0015's, and may be
-- another's by then): the workers count, prune by the database's retention and report on
-- themselves; jobs_service inherits that for /metrics and `jobctl metrics`. job_prune itself
-- is the administrators' (`jobctl prune`), and the helpers are nobody's.
REVOKE ALL ON TABLE job_metrics, job_metrics_position, job_retention, worker_reports FROM PUBLIC;
GRANT SELECT ON TABLE job_metrics, job_retention, worker_reports TO jobs_worker;
REVOKE ALL ON FUNCTION job_metrics_events(pg_snapshot, pg_snapshot, xid8, bigint, integer),
    job_metrics_count(boolean, integer),
    job_prune(text[], bigint, integer, boolean), job_prune_expired(integer), job_events_pruned_only(),
    worker_report(text, jsonb)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION job_metrics_count(boolean, integer), job_prune_expired(integer), worker_report(text, jsonb)
    TO jobs_worker;
