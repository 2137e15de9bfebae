-- Worker liveness, judged by this server's clock, and recovery of the jobs of silent workers.

CREATE TABLE workers (
    worker_id     text PRIMARY KEY,  -- host:pid:boot, the process part of job_status.worker_id
    hostname      text NOT NULL,
    pid           integer NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    heartbeat_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    stopped_at    timestamptz
);

-- Deliveries lost with their worker, counted apart from Retries' retries: a job that kills its
-- worker every time must stop after a bounded number of them.
ALTER TABLE job_status ADD COLUMN lost_deliveries integer NOT NULL DEFAULT 0 CHECK (lost_deliveries >= 0);
ALTER TABLE job_status ADD COLUMN worker_process text GENERATED ALWAYS AS (split_part(worker_id, '/', 1)) STORED;
CREATE INDEX job_status_active_idx ON job_status (worker_process, updated_at) WHERE status = 'active';

CREATE FUNCTION worker_heartbeat(p_worker text, p_host text, p_pid integer) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO workers (worker_id, hostname, pid) VALUES (p_worker, p_host, p_pid)
    ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = clock_timestamp(), stopped_at = NULL;
$$;

CREATE FUNCTION worker_stopped(p_worker text) RETURNS void LANGUAGE sql AS $$
    UPDATE workers SET stopped_at = clock_timestamp(), heartbeat_at = clock_timestamp()
     WHERE worker_id = p_worker;
$$;

-- Active jobs whose worker has been silent (or stopped, or never known) for longer than the
-- window, and that have not been updated for as long: each goes back to `retrying` (returned,
-- for the caller to publish again) or, once it has lost p_max_lost deliveries, ends `failed`.
-- SKIP LOCKED and the status guard let every worker run this at once: a job is reaped once.
CREATE FUNCTION job_reap(p_window_ms bigint, p_max_lost integer)
RETURNS TABLE (job_id uuid, job_type text, queue text, user_id uuid, course_id uuid,
               args jsonb, kwargs jsonb, outcome text)
LANGUAGE plpgsql AS $$
DECLARE
    r job_status;
    v_now timestamptz;
    v_cutoff timestamptz := clock_timestamp() - p_window_ms * interval '1 millisecond';
    v_lost text;
BEGIN
    FOR r IN
        SELECT j.* FROM job_status j
          LEFT JOIN workers w ON w.worker_id = j.worker_process
         WHERE j.status = 'active' AND j.updated_at < v_cutoff
           AND (w.worker_id IS NULL OR w.stopped_at IS NOT NULL OR w.heartbeat_at < v_cutoff)
         ORDER BY j.updated_at
           FOR UPDATE OF j SKIP LOCKED
    LOOP
        v_now := GREATEST(clock_timestamp(), r.updated_at);
        v_lost := format('worker %s was lost during attempt %s', r.worker_id, r.attempts);
        IF r.lost_deliveries + 1 >= p_max_lost THEN
            UPDATE job_status j
               SET status = 'failed', failed_at = v_now, lost_deliveries = r.lost_deliveries + 1,
                   error_type = 'WorkerLost',
                   error_message = v_lost || format(' (%s deliveries lost: the limit)', r.lost_deliveries + 1),
                   error_stack = NULL, updated_at = v_now
             WHERE j.job_id = r.job_id;
            PERFORM job_event(r.job_id, 'failed', 'active', 'failed', r.attempts, NULL, r.worker_id,
                              jsonb_build_object('error_type', 'WorkerLost', 'lost_deliveries', r.lost_deliveries + 1),
                              v_now);
            outcome := 'failed';
        ELSE
            UPDATE job_status j
               SET status = 'retrying', lost_deliveries = r.lost_deliveries + 1,
                   error_type = 'WorkerLost', error_message = v_lost, error_stack = NULL, updated_at = v_now
             WHERE j.job_id = r.job_id;
            PERFORM job_event(r.job_id, 'worker_lost', 'active', 'retrying', r.attempts, NULL, r.worker_id,
                              jsonb_build_object('lost_deliveries', r.lost_deliveries + 1), v_now);
            outcome := 'retrying';
        END IF;
        job_id := r.job_id; job_type := r.job_type; queue := r.queue; user_id := r.user_id;
        course_id := r.course_id; args := r.args; kwargs := r.kwargs;
        RETURN NEXT;
    END LOOP;
END $$;
