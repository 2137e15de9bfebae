-- Leases. A worker process holds its jobs only while its lease lives: its last recorded
-- heartbeat plus the lease it asked for, by this server's clock. It starts no job without one,
-- it stops its own jobs before the lease can run out (by its own clock, with a margin: see
-- middleware/lease.py), and the reaper takes a job back only once the lease has run out. So an
-- execution that lost its worker and the next one never overlap, however long the outage.
--
-- Also here: the options a job was sent with (a re-sent job is the same job), and the end of
-- an execution as its worker measured it, on every refusal of a late write (the history then
-- says when each execution really stopped: db/audit.py).

ALTER TABLE workers
    ADD COLUMN lease_expires_at timestamptz,
    -- The Redis consumer's id (RedisBroker.broker_id): where its unacknowledged messages are.
    ADD COLUMN broker_id text;
UPDATE workers SET lease_expires_at = heartbeat_at;
ALTER TABLE workers ALTER COLUMN lease_expires_at SET NOT NULL;
CREATE INDEX workers_broker_idx ON workers (broker_id);

-- Message options (retries so far, max_retries, time_limit, ...), as of the last enqueue.
ALTER TABLE job_status ADD COLUMN options jsonb NOT NULL DEFAULT '{}';

DROP FUNCTION worker_heartbeat(text, text, integer);
CREATE FUNCTION worker_heartbeat(p_worker text, p_host text, p_pid integer, p_lease_ms bigint, p_broker text)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO workers (worker_id, hostname, pid, broker_id, lease_expires_at)
    VALUES (p_worker, p_host, p_pid, p_broker, clock_timestamp() + p_lease_ms * interval '1 millisecond')
    ON CONFLICT (worker_id) DO UPDATE
       SET heartbeat_at = clock_timestamp(), stopped_at = NULL, broker_id = EXCLUDED.broker_id,
           lease_expires_at = clock_timestamp() + p_lease_ms * interval '1 millisecond';
$$;

-- p_release: the worker's threads have all ended, so its lease ends now; otherwise it runs out.
DROP FUNCTION worker_stopped(text);
CREATE FUNCTION worker_stopped(p_worker text, p_release boolean) RETURNS void LANGUAGE sql AS $$
    UPDATE workers
       SET stopped_at = clock_timestamp(), heartbeat_at = clock_timestamp(),
           lease_expires_at = CASE WHEN p_release THEN LEAST(lease_expires_at, clock_timestamp())
                                   ELSE lease_expires_at END
     WHERE worker_id = p_worker;
$$;

-- Refusals carry what the refused writer said (its attempt, when its execution ended).
DROP FUNCTION job_refuse(job_status, text, text, text, uuid, timestamptz);
CREATE FUNCTION job_refuse(r job_status, p_event text, p_wanted text, p_worker text, p_actor uuid,
                           p_at timestamptz, p_details jsonb DEFAULT '{}')
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM job_event(r.job_id, p_event, r.status, NULL, r.attempts, p_actor, p_worker,
                      jsonb_build_object('wanted', p_wanted) || p_details, p_at);
    RETURN CASE WHEN (SELECT terminal FROM job_states WHERE status = r.status)
                THEN 'terminal' ELSE 'rejected' END;
END $$;

-- What a late writer says about itself: its attempt, and when its execution ended, which it
-- measured as an age at the moment it sent the statement (the write may arrive long after, once
-- the database is back): counted back from when this server received the statement.
CREATE FUNCTION job_writer(p_attempt integer, p_ended_ms_ago integer) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('writer_attempt', p_attempt,
                              'ended_at', statement_timestamp() - GREATEST(p_ended_ms_ago, 0) * interval '1 millisecond');
$$;

DROP FUNCTION job_enqueue(uuid, text, text, uuid, uuid, jsonb, jsonb, integer, bigint);
CREATE FUNCTION job_enqueue(
    p_job_id uuid, p_job_type text, p_queue text, p_user_id uuid, p_course_id uuid,
    p_args jsonb, p_kwargs jsonb, p_options jsonb, p_max_attempts integer, p_delay_ms bigint
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_org uuid;
    v_now timestamptz;
BEGIN
    SELECT organization_id INTO v_org FROM users WHERE id = p_user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown user %', p_user_id USING ERRCODE = 'JB001';
    END IF;
    IF p_course_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM courses WHERE id = p_course_id AND organization_id = v_org
    ) THEN
        RAISE EXCEPTION 'course % does not exist in the organization of user %', p_course_id, p_user_id
            USING ERRCODE = 'JB002';
    END IF;
    v_now := clock_timestamp();
    INSERT INTO job_status (job_id, job_type, queue, organization_id, user_id, course_id,
                            max_attempts, args, kwargs, options, scheduled_for, created_at, updated_at)
    VALUES (p_job_id, p_job_type, p_queue, v_org, p_user_id, p_course_id,
            p_max_attempts, p_args, p_kwargs, COALESCE(p_options, '{}'),
            v_now + p_delay_ms * interval '1 millisecond', v_now, v_now)
    ON CONFLICT (job_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM job_event(p_job_id, 'enqueued', NULL, 'pending', 0, p_user_id, NULL,
                      jsonb_strip_nulls(jsonb_build_object('delay_ms', p_delay_ms)), v_now);
    RETURN true;
END $$;

-- When a waiting job becomes due, and the options of its message as enqueued now (a retry's
-- count): known only once the broker has chosen a retry's backoff.
DROP FUNCTION job_reschedule(uuid, bigint);
CREATE FUNCTION job_reschedule(p_job_id uuid, p_delay_ms bigint, p_options jsonb) RETURNS boolean
LANGUAGE sql AS $$
    UPDATE job_status
       SET scheduled_for = clock_timestamp() + p_delay_ms * interval '1 millisecond',
           options = COALESCE(p_options, options),
           updated_at = GREATEST(clock_timestamp(), updated_at)
     WHERE job_id = p_job_id AND status IN ('pending', 'retrying')
    RETURNING true;
$$;

-- pending|retrying -> active, for a worker that holds a live lease. The first UPDATE is the
-- usual case; when it finds nothing, the row is locked to say why (or, if it turns out
-- startable after all, the loop starts it while it is locked).
DROP FUNCTION job_start(uuid, text);
DROP FUNCTION job_start_checked(uuid, text);
CREATE FUNCTION job_start(p_job_id uuid, p_worker text)
RETURNS TABLE (outcome text, previous text, status text, attempts integer) LANGUAGE plpgsql AS $$
DECLARE
    r job_status;
    v_now timestamptz;
    v_attempts integer;
    v_from text;
    v_at timestamptz;
    v_leased boolean;
BEGIN
    LOOP
        v_now := clock_timestamp();
        -- Whether the process of this thread (host:pid:boot/thread) holds a live lease. (A
        -- statement of its own: as a function called from the UPDATE it cost a plan per call.)
        v_leased := EXISTS (SELECT 1 FROM workers w
                             WHERE w.worker_id = split_part(p_worker, '/', 1)
                               AND w.stopped_at IS NULL AND w.lease_expires_at > v_now);
        UPDATE job_status j
           SET status = 'active', attempts = j.attempts + 1,
               started_at = COALESCE(j.started_at, GREATEST(v_now, j.updated_at)),
               scheduled_for = NULL, worker_id = p_worker, updated_at = GREATEST(v_now, j.updated_at)
         WHERE j.job_id = p_job_id AND j.status IN ('pending', 'retrying') AND v_leased
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
        -- The same worker thread asking again: its first call committed but the reply was lost.
        IF r.status = 'active' AND r.worker_id = p_worker THEN
            RETURN QUERY SELECT 'applied', r.status, r.status, r.attempts;
            RETURN;
        END IF;
        v_now := GREATEST(clock_timestamp(), r.updated_at);
        IF r.status NOT IN ('pending', 'retrying') THEN
            RETURN QUERY SELECT job_refuse(r, CASE WHEN r.status IN ('completed', 'failed', 'cancelled')
                                                   THEN 'delivery_skipped' ELSE 'transition_rejected' END,
                                           'active', p_worker, NULL, v_now), r.status, r.status, r.attempts;
            RETURN;
        END IF;
        IF NOT v_leased THEN
            PERFORM job_refuse(r, 'transition_rejected', 'active', p_worker, NULL, v_now,
                               jsonb_build_object('why', 'the worker holds no live lease'));
            RETURN QUERY SELECT 'no_lease', r.status, r.status, r.attempts;
            RETURN;
        END IF;
    END LOOP;
END $$;

-- Ends an attempt: 'completed', 'failed' or 'retrying'. Only the attempt that holds the row may
-- end it, so a late writer from an earlier attempt is refused, and its refusal says when its
-- execution ended.
DROP FUNCTION job_finish(uuid, integer, text, text, jsonb, text, text, text);
DROP FUNCTION job_finish_checked(uuid, integer, text, text, jsonb, text, text, text);
CREATE FUNCTION job_finish(
    p_job_id uuid, p_attempt integer, p_to text, p_worker text, p_result jsonb,
    p_error_type text, p_error_message text, p_error_stack text, p_ended_ms_ago integer
) RETURNS TABLE (outcome text, previous text, status text, attempts integer) LANGUAGE plpgsql AS $$
DECLARE
    r job_status;
    v_now timestamptz := clock_timestamp();
    v_at timestamptz;
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
    -- The same write again: its first try committed but the reply was lost. (The reaper also
    -- leaves the worker's id, but writes its own error type: WorkerLost.)
    IF r.status = p_to AND r.attempts = p_attempt AND r.worker_id = p_worker
       AND r.error_type IS NOT DISTINCT FROM p_error_type THEN
        RETURN QUERY SELECT 'applied', r.status, r.status, r.attempts;
        RETURN;
    END IF;
    RETURN QUERY SELECT job_refuse(r, 'transition_rejected', p_to, p_worker, NULL,
                                   GREATEST(clock_timestamp(), r.updated_at),
                                   job_writer(p_attempt, p_ended_ms_ago)),
                        r.status, r.status, r.attempts;
END $$;

-- A running attempt stopped because of a cancellation (interrupted, or it noticed and stopped).
-- Usually the row is cancelled already: the stop is recorded. A job stopped without a
-- cancellation in the database (an abort sent from elsewhere) is cancelled here, by nobody.
DROP FUNCTION job_stop(uuid, integer, text, text);
CREATE FUNCTION job_stop(p_job_id uuid, p_attempt integer, p_worker text, p_how text, p_ended_ms_ago integer)
RETURNS TABLE (outcome text, previous text, status text, attempts integer) LANGUAGE plpgsql AS $$
DECLARE
    r job_status;
    v_now timestamptz;
BEGIN
    SELECT * INTO r FROM job_status j WHERE j.job_id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'missing', NULL::text, NULL::text, 0;
        RETURN;
    END IF;
    v_now := GREATEST(clock_timestamp(), r.updated_at);
    IF r.attempts <> p_attempt OR r.status NOT IN ('cancelled', 'active') THEN
        RETURN QUERY SELECT job_refuse(r, 'transition_rejected', 'cancelled', p_worker, NULL, v_now,
                                       job_writer(p_attempt, p_ended_ms_ago)),
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
-- it goes back to `retrying` (for the worker to publish again) or, at the delivery limit, ends
-- `failed`, as the reaper would have done; otherwise the reaper took it first, and only the end
-- of the execution is recorded.
CREATE FUNCTION job_lease_expired(p_job_id uuid, p_attempt integer, p_worker text, p_ended_ms_ago integer,
                                  p_max_lost integer)
RETURNS TABLE (outcome text, previous text, status text, attempts integer) LANGUAGE plpgsql AS $$
DECLARE
    r job_status;
    v_now timestamptz;
    v_to text;
    v_writer jsonb := job_writer(p_attempt, p_ended_ms_ago);
BEGIN
    SELECT * INTO r FROM job_status j WHERE j.job_id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'missing', NULL::text, NULL::text, 0;
        RETURN;
    END IF;
    -- The same write again: its first try committed but the reply was lost.
    IF r.status IN ('retrying', 'failed') AND r.attempts = p_attempt AND r.worker_id = p_worker
       AND r.error_type = 'LeaseExpired' THEN
        RETURN QUERY SELECT 'applied', 'active'::text, r.status, r.attempts;
        RETURN;
    END IF;
    v_now := GREATEST(clock_timestamp(), r.updated_at);
    IF r.status <> 'active' OR r.attempts <> p_attempt OR r.worker_id <> p_worker THEN
        PERFORM job_event(p_job_id, 'execution_stopped', r.status, NULL, r.attempts, NULL, p_worker,
                          jsonb_build_object('how', 'lease_expired') || v_writer, v_now);
        RETURN QUERY SELECT CASE WHEN (SELECT terminal FROM job_states s WHERE s.status = r.status)
                                 THEN 'terminal' ELSE 'rejected' END, r.status, r.status, r.attempts;
        RETURN;
    END IF;
    v_to := CASE WHEN r.lost_deliveries + 1 >= p_max_lost THEN 'failed' ELSE 'retrying' END;
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
-- caller judged the workers' Redis consumers), or, for a worker never recorded, that have not
-- been updated for p_window_ms: each goes back to `retrying` (returned, for the caller to
-- publish again) or, once it has lost p_max_lost deliveries, ends `failed`. The events name the
-- lost worker in their details; they are written by nobody's worker. SKIP LOCKED and the status
-- guard let every worker run this at once: a job is reaped once.
DROP FUNCTION job_reap(bigint, integer);
CREATE FUNCTION job_reap(p_window_ms bigint, p_max_lost integer, p_expired_by timestamptz)
RETURNS TABLE (job_id uuid, job_type text, queue text, user_id uuid, course_id uuid,
               args jsonb, kwargs jsonb, options jsonb, outcome text)
LANGUAGE plpgsql AS $$
DECLARE
    r job_status;
    v_now timestamptz;
    v_cutoff timestamptz := clock_timestamp() - p_window_ms * interval '1 millisecond';
    v_lost text;
    v_details jsonb;
BEGIN
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
        IF r.lost_deliveries + 1 >= p_max_lost THEN
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

-- New functions are executable by PUBLIC by default: nobody gets one unless named here.
REVOKE ALL ON ALL ROUTINES IN SCHEMA public FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    worker_heartbeat(text, text, integer, bigint, text), worker_stopped(text, boolean),
    job_refuse(job_status, text, text, text, uuid, timestamptz, jsonb), job_writer(integer, integer),
    job_enqueue(uuid, text, text, uuid, uuid, jsonb, jsonb, jsonb, integer, bigint),
    job_reschedule(uuid, bigint, jsonb), job_start(uuid, text),
    job_finish(uuid, integer, text, text, jsonb, text, text, text, integer),
    job_stop(uuid, integer, text, text, integer), job_lease_expired(uuid, integer, text, integer, integer),
    job_reap(bigint, integer, timestamptz)
    TO jobs_worker;
