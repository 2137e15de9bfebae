-- Worker tokens (issue 12). A worker's identity was a string its caller chose, and every code that
-- runs as jobs_worker could name any worker: finish a job another worker holds (job_finish had no
-- holder check at all), stop it, record its lease as expired, release another live worker's lease
-- (worker_stopped) so that the reaper takes its running jobs back while they still run, or
-- heartbeat for a dead worker so that its jobs are never taken back; and it chose the numbers the
-- rules run on: a lease of hours, a reaper's window of 0 and a delivery limit of 1, a due time in
-- the year 5000, a job's options replaced whole.
--
-- Now each worker process has a secret token, made at random when it starts (db/worker_token.py),
-- and presents it on every connection it opens, as the session setting jobs.worker_token, set in
-- the connection's startup packet: never in a statement's text, which pg_stat_activity shows to
-- every session of the same role (all workers log in as jobs_worker) and the server logs with a
-- failed statement. Its first heartbeat records the token's sha256 with its worker id; a
-- heartbeat for that id on a session that presents another token is refused, and so is every
-- call that acts as that worker: its starts, ends, stops, lease expiries and its stop. A refused
-- call on a job is recorded in the job's history, without the claimed worker as its writer.
--
-- The numbers are the server's (worker_limits, written by `jobctl migrate` from its
-- configuration): a heartbeat gets the lease it asks for up to the configured window (a shorter
-- one hurts only its own jobs), the reaper's window and the delivery limit are the configured
-- ones, a reschedule puts a job off by at most the longest delay a send may have and changes
-- only the retry count among its options, and the end of an execution a late writer reports
-- lies between that attempt's start and now.
--
-- Stop the workers of the previous release before migrating: they present no token, so the
-- database refuses their heartbeats and writes; job_lease_expired and job_reap take fewer arguments.

-- What the server decides for the workers' calls: one row, written by `jobctl migrate` (db/worker_limits.py)
-- from JOBS_RECOVERY_WINDOW_S, JOBS_MAX_DELIVERIES and JOBS_MAX_DELAY_MS. A cap, not a fixed
-- lease: a worker configured with a shorter window (tests, the chaos run) gets what it asks for;
-- a longer one is cut to this, and the heartbeat tells it so.
CREATE TABLE worker_limits (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    -- The longest lease a heartbeat gives; also how long an active job whose worker the database
    -- has no row for is left alone before the reaper takes it back.
    max_lease_ms bigint NOT NULL DEFAULT 30000 CHECK (max_lease_ms > 0),
    -- Deliveries a job may lose with its worker before it fails.
    max_deliveries integer NOT NULL DEFAULT 3 CHECK (max_deliveries >= 1),
    -- The longest a reschedule may put a waiting job off (a retry's backoff).
    max_delay_ms bigint NOT NULL DEFAULT 604800000 CHECK (max_delay_ms >= 0),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
INSERT INTO worker_limits DEFAULT VALUES;

-- sha256 of the process's token; NULL for the rows of workers from before tokens (never matched).
ALTER TABLE workers ADD COLUMN token_hash bytea;

-- The token the calling session presents, hashed as the workers table keeps it; NULL if none.
CREATE FUNCTION worker_token_presented() RETURNS bytea
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RETURN sha256(convert_to(NULLIF(current_setting('jobs.worker_token', true), ''), 'UTF8'));
END $$;

-- Whether the calling session is the process of p_worker (host:pid:boot, or one of its threads,
-- host:pid:boot/thread): true when it presents that process's token, false when it presents
-- another or none, NULL when no such process is recorded. On every end of a job: PL/pgSQL, whose
-- plans are kept per session (a SQL function called from a statement was planned again at every
-- call), and the hash made here as worker_token_presented() makes it (calling a function with a
-- search_path of its own cost 10 us more a call: 22 us in all, in a loop on this machine).
CREATE FUNCTION worker_proven(p_worker text) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_hash bytea;
BEGIN
    SELECT w.token_hash INTO v_hash FROM workers w WHERE w.worker_id = split_part(p_worker, '/', 1);
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN coalesce(v_hash = sha256(convert_to(NULLIF(current_setting('jobs.worker_token', true), ''), 'UTF8')), false);
END $$;

-- A call on a job by a session that is not the worker it names: recorded, and answered
-- 'forbidden'. The event has no writer: the audit reads a worker's own events as the ends of its
-- executions (db/audit.py), so a forged one must not be taken for the named worker's; what the
-- caller claimed to be is kept in the details, for operators (a tenant doesn't see it).
CREATE FUNCTION job_refuse_unproven(r job_status, p_wanted text, p_worker text, p_at timestamptz)
RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM job_event(r.job_id, 'transition_rejected', r.status, NULL, r.attempts, NULL, NULL,
                      jsonb_build_object('wanted', p_wanted,
                                         'why', 'the caller does not present the token of the worker it names',
                                         'claimed_worker', left(p_worker, 300)),
                      p_at);
    RETURN 'forbidden';
END $$;

-- What a late writer says about itself: its attempt, and when its execution ended, measured as an
-- age when it sent the statement, counted back from when this server received it; never before
-- that attempt started (an execution ends after it starts: moving its end earlier would hide an
-- overlap from the audit), nor moved back at all for an attempt that never started.
CREATE FUNCTION job_writer(p_job_id uuid, p_attempt integer, p_ended_ms_ago integer) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_build_object(
        'writer_attempt', p_attempt,
        'ended_at', GREATEST(
            statement_timestamp() - GREATEST(p_ended_ms_ago, 0) * interval '1 millisecond',
            coalesce((SELECT max(e.created_at) FROM job_events e
                       WHERE e.job_id = p_job_id AND e.event = 'started' AND e.attempt = p_attempt),
                     statement_timestamp())));
$$;

-- Renews the lease of the process of this session: recorded with the token the session presents
-- at its first heartbeat, and renewed only by a session that presents the same one. Returns the
-- lease given, in milliseconds: what was asked, up to worker_limits.max_lease_ms. The worker counts
-- it from when it sent the heartbeat (middleware/lease.py), so its view still ends first; a lease's
-- end never moves earlier (the limit lowered while it runs), so that a heartbeat whose reply was
-- lost can't have cut short the lease the worker counts on.
DROP FUNCTION worker_heartbeat(text, text, integer, bigint, text);
CREATE FUNCTION worker_heartbeat(p_worker text, p_host text, p_pid integer, p_lease_ms bigint, p_broker text)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_token bytea := worker_token_presented();
    v_lease_ms bigint;
BEGIN
    -- token_urlsafe(32) gives 43 characters: a shorter one is a mistake, not a secret.
    IF v_token IS NULL OR length(current_setting('jobs.worker_token', true)) < 32 THEN
        RAISE EXCEPTION 'a heartbeat must present its process''s worker token (jobs.worker_token, 32 characters or more)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_worker IS NULL OR p_worker = '' OR length(p_worker) > 300 OR strpos(p_worker, '/') > 0 THEN
        RAISE EXCEPTION 'a worker id is 1 to 300 characters, without "/"' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_lease_ms := LEAST(GREATEST(coalesce(p_lease_ms, 0), 0), (SELECT l.max_lease_ms FROM worker_limits l));
    INSERT INTO workers (worker_id, hostname, pid, broker_id, token_hash, lease_expires_at)
    VALUES (p_worker, p_host, p_pid, p_broker, v_token, clock_timestamp() + v_lease_ms * interval '1 millisecond')
    ON CONFLICT (worker_id) DO UPDATE
       SET heartbeat_at = clock_timestamp(), stopped_at = NULL, broker_id = EXCLUDED.broker_id,
           lease_expires_at = GREATEST(workers.lease_expires_at,
                                       clock_timestamp() + v_lease_ms * interval '1 millisecond')
     WHERE workers.token_hash = EXCLUDED.token_hash;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'worker % is recorded with another token: a heartbeat renews only its own process''s lease', p_worker
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN v_lease_ms;
END $$;

-- p_release: the worker's threads have all ended, so its lease ends now; otherwise it runs out.
-- Only the process itself says so: releasing another live worker's lease would let the reaper
-- take back jobs that still run.
CREATE OR REPLACE FUNCTION worker_stopped(p_worker text, p_release boolean)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    UPDATE workers
       SET stopped_at = clock_timestamp(), heartbeat_at = clock_timestamp(),
           lease_expires_at = CASE WHEN p_release THEN LEAST(lease_expires_at, clock_timestamp())
                                   ELSE lease_expires_at END
     WHERE worker_id = p_worker AND token_hash = worker_token_presented();
    IF NOT FOUND AND EXISTS (SELECT 1 FROM workers WHERE worker_id = p_worker) THEN
        RAISE EXCEPTION 'worker % is recorded with another token: only its own process says it stopped', p_worker
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;

-- When a waiting job becomes due, and its retry count as its message is enqueued now (a retry's
-- backoff is known only once the broker has chosen it). Any worker may call it, for any waiting
-- job: the reaper and reconcile publish jobs that other workers ran, and their enqueue records the
-- due time again. So it can change nothing that harms: the delay is cut to worker_limits.max_delay_ms
-- (the longest a send may ask for), and of the options only `retries` moves, up, and only while a
-- retry is being scheduled (at most one per attempt started), with Dramatiq's `requeue_timestamp`;
-- every other option (max_retries, time_limit, ...) stays as the job was sent.
CREATE OR REPLACE FUNCTION job_reschedule(p_job_id uuid, p_delay_ms bigint, p_options jsonb)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    r job_status;
    v_max_delay_ms bigint := (SELECT l.max_delay_ms FROM worker_limits l);
    v_retries numeric := 0;
    v_asked numeric;
    v_options jsonb;
BEGIN
    SELECT * INTO r FROM job_status j WHERE j.job_id = p_job_id AND j.status IN ('pending', 'retrying') FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    v_options := r.options;
    IF jsonb_typeof(r.options -> 'retries') = 'number' THEN
        v_retries := (r.options ->> 'retries')::numeric;
    END IF;
    IF r.status = 'retrying' AND jsonb_typeof(p_options -> 'retries') = 'number' THEN
        v_asked := (p_options ->> 'retries')::numeric;
        IF v_asked = trunc(v_asked) AND v_asked >= v_retries AND v_asked <= r.attempts THEN
            v_options := v_options || jsonb_build_object('retries', v_asked);
            IF jsonb_typeof(p_options -> 'requeue_timestamp') = 'number' THEN
                v_options := v_options || jsonb_build_object('requeue_timestamp', p_options -> 'requeue_timestamp');
            END IF;
        END IF;
    END IF;
    UPDATE job_status j
       SET scheduled_for = clock_timestamp()
                           + LEAST(GREATEST(coalesce(p_delay_ms, 0), 0), v_max_delay_ms) * interval '1 millisecond',
           options = v_options,
           updated_at = GREATEST(clock_timestamp(), j.updated_at)
     WHERE j.job_id = p_job_id;
    RETURN true;
END $$;

-- pending|retrying -> active, for a worker that holds a live lease and presents its token. The
-- first UPDATE is the usual case; when it finds nothing, the row is locked to say why (or, if it
-- turns out startable after all, the loop starts it while it is locked).
CREATE OR REPLACE FUNCTION job_start(p_job_id uuid, p_worker text)
RETURNS TABLE (outcome text, previous text, status text, attempts integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    r job_status;
    v_now timestamptz;
    v_attempts integer;
    v_from text;
    v_at timestamptz;
    v_leased boolean;
    v_proven boolean;
    -- As worker_token_presented() makes it (inline, as in worker_proven).
    v_token bytea := sha256(convert_to(NULLIF(current_setting('jobs.worker_token', true), ''), 'UTF8'));
BEGIN
    LOOP
        v_now := clock_timestamp();
        -- Whether the process of this thread (host:pid:boot/thread) holds a live lease, and this
        -- session is that process. (A statement of its own: as a function called from the UPDATE
        -- it cost a plan per call.) No row: both NULL.
        SELECT w.stopped_at IS NULL AND w.lease_expires_at > v_now, coalesce(w.token_hash = v_token, false)
          INTO v_leased, v_proven
          FROM workers w WHERE w.worker_id = split_part(p_worker, '/', 1);
        UPDATE job_status j
           SET status = 'active', attempts = j.attempts + 1,
               started_at = COALESCE(j.started_at, GREATEST(v_now, j.updated_at)),
               scheduled_for = NULL, worker_id = p_worker, updated_at = GREATEST(v_now, j.updated_at)
         WHERE j.job_id = p_job_id AND j.status IN ('pending', 'retrying') AND v_leased AND v_proven
        RETURNING j.attempts, j.updated_at INTO v_attempts, v_at;
        IF FOUND THEN
            -- Only the first attempt starts from pending (job_status_started_check).
            v_from := CASE WHEN v_attempts = 1 THEN 'pending' ELSE 'retrying' END;
            INSERT INTO job_events (job_id, event, from_status, to_status, attempt, worker_id, created_at)
            VALUES (p_job_id, 'started', v_from, 'active', v_attempts, p_worker, v_at);
            RETURN QUERY SELECT 'applied', v_from, 'active'::text, v_attempts;
            RETURN;
        END IF;
        SELECT * INTO r FROM job_status j WHERE j.job_id = p_job_id FOR UPDATE;
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'missing', NULL::text, NULL::text, 0;
            RETURN;
        END IF;
        v_now := GREATEST(clock_timestamp(), r.updated_at);
        IF v_proven IS FALSE THEN
            RETURN QUERY SELECT job_refuse_unproven(r, 'active', p_worker, v_now), r.status, r.status, r.attempts;
            RETURN;
        END IF;
        -- The same worker thread asking again: its first call committed but the reply was lost.
        IF r.status = 'active' AND r.worker_id = p_worker THEN
            RETURN QUERY SELECT 'applied', r.status, r.status, r.attempts;
            RETURN;
        END IF;
        IF r.status NOT IN ('pending', 'retrying') THEN
            RETURN QUERY SELECT job_refuse(r, CASE WHEN r.status IN ('completed', 'failed', 'cancelled')
                                                   THEN 'delivery_skipped' ELSE 'transition_rejected' END,
                                           'active', p_worker, NULL, v_now), r.status, r.status, r.attempts;
            RETURN;
        END IF;
        -- A process not recorded yet (before its first heartbeat) holds no lease either.
        IF NOT coalesce(v_leased, false) THEN
            PERFORM job_refuse(r, 'transition_rejected', 'active', p_worker, NULL, v_now,
                               jsonb_build_object('why', 'the worker holds no live lease'));
            RETURN QUERY SELECT 'no_lease', r.status, r.status, r.attempts;
            RETURN;
        END IF;
    END LOOP;
END $$;

-- Ends an attempt: 'completed', 'failed' or 'retrying'. Only the worker thread that holds the
-- attempt may end it, on a session that presents its process's token; a late writer from an
-- earlier attempt is refused, and its refusal says when its execution ended.
CREATE OR REPLACE FUNCTION job_finish(
    p_job_id uuid, p_attempt integer, p_to text, p_worker text, p_result jsonb,
    p_error_type text, p_error_message text, p_error_stack text, p_ended_ms_ago integer
) RETURNS TABLE (outcome text, previous text, status text, attempts integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    r job_status;
    v_now timestamptz := clock_timestamp();
    v_at timestamptz;
    v_proven boolean := worker_proven(p_worker);
BEGIN
    -- Before the update: active -> cancelled is a legal transition, but not this function's.
    IF p_to NOT IN ('completed', 'failed', 'retrying') THEN
        RAISE EXCEPTION 'job_finish can not move a job to %', p_to USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE job_status j
       SET status = p_to,
           completed_at = CASE WHEN p_to = 'completed' THEN GREATEST(v_now, j.updated_at) END,
           failed_at = CASE WHEN p_to = 'failed' THEN GREATEST(v_now, j.updated_at) END,
           progress = CASE WHEN p_to = 'completed' THEN 100 ELSE j.progress END,
           result = p_result,
           error_type = p_error_type, error_message = p_error_message, error_stack = p_error_stack,
           updated_at = GREATEST(v_now, j.updated_at)
     WHERE j.job_id = p_job_id AND j.status = 'active' AND j.attempts = p_attempt
       AND j.worker_id = p_worker AND v_proven
    RETURNING j.updated_at INTO v_at;
    IF FOUND THEN
        INSERT INTO job_events (job_id, event, from_status, to_status, attempt, worker_id, details, created_at)
        VALUES (p_job_id, CASE p_to WHEN 'retrying' THEN 'retry_scheduled' ELSE p_to END, 'active', p_to,
                p_attempt, p_worker,
                jsonb_strip_nulls(jsonb_build_object('error_type', p_error_type, 'error_message', p_error_message)),
                v_at);
        RETURN QUERY SELECT 'applied', 'active'::text, p_to, p_attempt;
        RETURN;
    END IF;
    SELECT * INTO r FROM job_status j WHERE j.job_id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'missing', NULL::text, NULL::text, 0;
        RETURN;
    END IF;
    IF NOT coalesce(v_proven, false) THEN
        RETURN QUERY SELECT job_refuse_unproven(r, p_to, p_worker, GREATEST(clock_timestamp(), r.updated_at)),
                            r.status, r.status, r.attempts;
        RETURN;
    END IF;
    -- The same write again: its first try committed but the reply was lost. (The reaper also
    -- leaves the worker's id, but writes its own error type: WorkerLost.)
    IF r.status = p_to AND r.attempts = p_attempt AND r.worker_id = p_worker
       AND r.error_type IS NOT DISTINCT FROM p_error_type THEN
        RETURN QUERY SELECT 'applied', r.status, r.status, r.attempts;
        RETURN;
    END IF;
    RETURN QUERY SELECT job_refuse(r, 'transition_rejected', p_to, p_worker, NULL,
                                   GREATEST(clock_timestamp(), r.updated_at),
                                   job_writer(p_job_id, p_attempt, p_ended_ms_ago)),
                        r.status, r.status, r.attempts;
END $$;

-- A running attempt stopped because of a cancellation: recorded only by the worker thread that
-- runs it, on a session that presents its process's token (another worker's stop is refused and
-- recorded, and the job runs on as its own). A job stopped without a cancellation in the database
-- (an abort sent from elsewhere) is cancelled by nobody, as before.
CREATE OR REPLACE FUNCTION job_stop(p_job_id uuid, p_attempt integer, p_worker text, p_how text, p_ended_ms_ago integer)
RETURNS TABLE (outcome text, previous text, status text, attempts integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    r job_status;
    v_now timestamptz;
    v_proven boolean := worker_proven(p_worker);
BEGIN
    SELECT * INTO r FROM job_status j WHERE j.job_id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'missing', NULL::text, NULL::text, 0;
        RETURN;
    END IF;
    v_now := GREATEST(clock_timestamp(), r.updated_at);
    IF NOT coalesce(v_proven, false) THEN
        RETURN QUERY SELECT job_refuse_unproven(r, 'cancelled', p_worker, v_now), r.status, r.status, r.attempts;
        RETURN;
    END IF;
    IF r.attempts <> p_attempt OR r.status NOT IN ('cancelled', 'active') OR r.worker_id IS DISTINCT FROM p_worker THEN
        RETURN QUERY SELECT job_refuse(r, 'transition_rejected', 'cancelled', p_worker, NULL, v_now,
                                       job_writer(p_job_id, p_attempt, p_ended_ms_ago)),
                            r.status, r.status, r.attempts;
        RETURN;
    END IF;
    -- The same write again: its first try committed but the reply was lost.
    IF r.status = 'cancelled' AND EXISTS (
        SELECT 1 FROM job_events e
         WHERE e.job_id = p_job_id AND e.event = 'execution_stopped' AND e.attempt = p_attempt
           AND e.worker_id = p_worker
    ) THEN
        RETURN QUERY SELECT 'applied', r.status, r.status, r.attempts;
        RETURN;
    END IF;
    IF r.status = 'active' THEN
        UPDATE job_status j SET status = 'cancelled', cancelled_at = v_now, updated_at = v_now
         WHERE j.job_id = p_job_id;
        PERFORM job_event(p_job_id, 'cancelled', 'active', 'cancelled', r.attempts, NULL, p_worker,
                          jsonb_build_object('how', p_how), v_now);
    END IF;
    PERFORM job_event(p_job_id, 'execution_stopped', 'cancelled', NULL, r.attempts, NULL, p_worker,
                      jsonb_build_object('how', p_how), v_now);
    RETURN QUERY SELECT 'applied', r.status, 'cancelled'::text, r.attempts;
END $$;

-- A worker stopped an attempt because its lease was running out. If the job is still its own,
-- it goes back to `retrying` (for the worker to publish again) or, at the server's delivery limit,
-- ends `failed`, as the reaper would have done; otherwise the reaper took it first, and only the
-- end of the execution is recorded. Only on a session that presents the worker's token.
DROP FUNCTION job_lease_expired(uuid, integer, text, integer, integer);
CREATE FUNCTION job_lease_expired(p_job_id uuid, p_attempt integer, p_worker text, p_ended_ms_ago integer)
RETURNS TABLE (outcome text, previous text, status text, attempts integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    r job_status;
    v_now timestamptz;
    v_to text;
    v_writer jsonb;
    v_proven boolean := worker_proven(p_worker);
    v_max_lost integer := (SELECT l.max_deliveries FROM worker_limits l);
BEGIN
    SELECT * INTO r FROM job_status j WHERE j.job_id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'missing', NULL::text, NULL::text, 0;
        RETURN;
    END IF;
    v_now := GREATEST(clock_timestamp(), r.updated_at);
    IF NOT coalesce(v_proven, false) THEN
        RETURN QUERY SELECT job_refuse_unproven(r, 'retrying', p_worker, v_now), r.status, r.status, r.attempts;
        RETURN;
    END IF;
    -- The same write again: its first try committed but the reply was lost.
    IF r.status IN ('retrying', 'failed') AND r.attempts = p_attempt AND r.worker_id = p_worker
       AND r.error_type = 'LeaseExpired' THEN
        RETURN QUERY SELECT 'applied', 'active'::text, r.status, r.attempts;
        RETURN;
    END IF;
    v_writer := job_writer(p_job_id, p_attempt, p_ended_ms_ago);
    IF r.status <> 'active' OR r.attempts <> p_attempt OR r.worker_id <> p_worker THEN
        PERFORM job_event(p_job_id, 'execution_stopped', r.status, NULL, r.attempts, NULL, p_worker,
                          jsonb_build_object('how', 'lease_expired') || v_writer, v_now);
        RETURN QUERY SELECT CASE WHEN (SELECT terminal FROM job_states s WHERE s.status = r.status)
                                 THEN 'terminal' ELSE 'rejected' END, r.status, r.status, r.attempts;
        RETURN;
    END IF;
    v_to := CASE WHEN r.lost_deliveries + 1 >= v_max_lost THEN 'failed' ELSE 'retrying' END;
    UPDATE job_status j
       SET status = v_to, failed_at = CASE WHEN v_to = 'failed' THEN v_now END,
           lost_deliveries = r.lost_deliveries + 1, error_type = 'LeaseExpired',
           error_message = format('worker %s could not renew its lease and stopped attempt %s', p_worker, r.attempts)
                           || CASE WHEN v_to = 'failed'
                                   THEN format(' (%s deliveries lost: the limit)', r.lost_deliveries + 1) ELSE '' END,
           error_stack = NULL, updated_at = v_now
     WHERE j.job_id = p_job_id;
    PERFORM job_event(p_job_id, 'lease_expired', 'active', v_to, r.attempts, NULL, p_worker,
                      jsonb_build_object('lost_deliveries', r.lost_deliveries + 1) || v_writer, v_now);
    RETURN QUERY SELECT 'applied', 'active'::text, v_to, r.attempts;
END $$;

-- Active jobs whose worker's lease has run out (by p_expired_by, when given: the moment the
-- caller judged the workers' Redis consumers; it can only make the pass take less), or, for a
-- worker never recorded, that have not been updated for the server's longest lease: each goes
-- back to `retrying` (returned, for the caller to publish again) or, once it has lost the
-- server's limit of deliveries, ends `failed`. The events name the lost worker in their details;
-- they are written by nobody's worker. SKIP LOCKED and the status guard let every worker run this
-- at once: a job is reaped once.
DROP FUNCTION job_reap(bigint, integer, timestamptz);
CREATE FUNCTION job_reap(p_expired_by timestamptz)
RETURNS TABLE (job_id uuid, job_type text, queue text, user_id uuid, course_id uuid,
               args jsonb, kwargs jsonb, options jsonb, outcome text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    r job_status;
    v_limits worker_limits;
    v_now timestamptz;
    v_cutoff timestamptz;
    v_lost text;
    v_details jsonb;
BEGIN
    SELECT * INTO v_limits FROM worker_limits;
    v_cutoff := clock_timestamp() - v_limits.max_lease_ms * interval '1 millisecond';
    FOR r IN
        SELECT j.* FROM job_status j
          LEFT JOIN workers w ON w.worker_id = j.worker_process
         WHERE j.status = 'active'
           AND CASE WHEN w.worker_id IS NULL THEN j.updated_at < v_cutoff
                    ELSE w.lease_expires_at < LEAST(clock_timestamp(), p_expired_by) END
         ORDER BY j.updated_at
           FOR UPDATE OF j SKIP LOCKED
    LOOP
        v_now := GREATEST(clock_timestamp(), r.updated_at);
        v_lost := format('worker %s was lost during attempt %s', r.worker_id, r.attempts);
        v_details := jsonb_build_object('lost_worker', r.worker_id, 'lost_deliveries', r.lost_deliveries + 1);
        IF r.lost_deliveries + 1 >= v_limits.max_deliveries THEN
            UPDATE job_status j
               SET status = 'failed', failed_at = v_now, lost_deliveries = r.lost_deliveries + 1,
                   error_type = 'WorkerLost',
                   error_message = v_lost || format(' (%s deliveries lost: the limit)', r.lost_deliveries + 1),
                   error_stack = NULL, updated_at = v_now
             WHERE j.job_id = r.job_id;
            PERFORM job_event(r.job_id, 'failed', 'active', 'failed', r.attempts, NULL, NULL,
                              v_details || jsonb_build_object('error_type', 'WorkerLost'), v_now);
            outcome := 'failed';
        ELSE
            UPDATE job_status j
               SET status = 'retrying', lost_deliveries = r.lost_deliveries + 1,
                   error_type = 'WorkerLost', error_message = v_lost, error_stack = NULL, updated_at = v_now
             WHERE j.job_id = r.job_id;
            PERFORM job_event(r.job_id, 'worker_lost', 'active', 'retrying', r.attempts, NULL, NULL,
                              v_details, v_now);
            outcome := 'retrying';
        END IF;
        job_id := r.job_id; job_type := r.job_type; queue := r.queue; user_id := r.user_id;
        course_id := r.course_id; args := r.args; kwargs := r.kwargs; options := r.options;
        RETURN NEXT;
    END LOOP;
END $$;

-- Every function above is now the only user of these: the old writer's record goes.
DROP FUNCTION job_writer(integer, integer);

-- Privileges. The helpers run inside the functions (as jobs_owner) and are nobody else's; the
-- functions dropped and made again are granted again, by name.
REVOKE ALL ON TABLE worker_limits FROM PUBLIC;
REVOKE ALL ON FUNCTION worker_token_presented(), worker_proven(text),
    job_refuse_unproven(job_status, text, text, timestamptz), job_writer(uuid, integer, integer),
    worker_heartbeat(text, text, integer, bigint, text), job_lease_expired(uuid, integer, text, integer),
    job_reap(timestamptz)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    worker_heartbeat(text, text, integer, bigint, text), job_lease_expired(uuid, integer, text, integer),
    job_reap(timestamptz)
    TO jobs_worker;
