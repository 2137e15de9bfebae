-- Each lifecycle transition is one function: it locks the row, checks the guard, applies the
-- change and appends its event in one transaction and one round trip, or appends a refusal and
-- changes nothing. Times come from this server's clock, never from a worker's, and never run
-- backwards within a job (GREATEST with the last update), so the timestamp check can't be broken
-- by two writers whose transactions started in one order and locked the row in the other.
--
-- Outcomes: 'applied' (done now, or done already by this same writer), 'terminal' (the job has
-- finished: nothing to do), 'rejected' (the guard refused), 'missing' (no such job); with the
-- status before the call (`previous`) and after it.

CREATE FUNCTION job_event(
    p_job_id uuid, p_event text, p_from text, p_to text, p_attempt integer,
    p_actor uuid, p_worker text, p_details jsonb, p_at timestamptz
) RETURNS void LANGUAGE sql AS $$
    INSERT INTO job_events (job_id, event, from_status, to_status, attempt, actor_user_id,
                            worker_id, details, created_at)
    VALUES (p_job_id, p_event, p_from, p_to, p_attempt, p_actor, p_worker,
            COALESCE(p_details, '{}'), p_at);
$$;

-- Records a refusal; says 'terminal' when the job has finished, 'rejected' otherwise.
CREATE FUNCTION job_refuse(r job_status, p_event text, p_wanted text, p_worker text, p_actor uuid,
                           p_at timestamptz)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM job_event(r.job_id, p_event, r.status, NULL, r.attempts, p_actor, p_worker,
                      jsonb_build_object('wanted', p_wanted), p_at);
    RETURN CASE WHEN (SELECT terminal FROM job_states WHERE status = r.status)
                THEN 'terminal' ELSE 'rejected' END;
END $$;

CREATE FUNCTION job_enqueue(
    p_job_id uuid, p_job_type text, p_queue text, p_user_id uuid, p_course_id uuid,
    p_args jsonb, p_kwargs jsonb, p_max_attempts integer, p_delay_ms bigint
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
                            max_attempts, args, kwargs, scheduled_for, created_at, updated_at)
    VALUES (p_job_id, p_job_type, p_queue, v_org, p_user_id, p_course_id,
            p_max_attempts, p_args, p_kwargs,
            v_now + p_delay_ms * interval '1 millisecond', v_now, v_now)
    ON CONFLICT (job_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM job_event(p_job_id, 'enqueued', NULL, 'pending', 0, p_user_id, NULL,
                      jsonb_strip_nulls(jsonb_build_object('delay_ms', p_delay_ms)), v_now);
    RETURN true;
END $$;

CREATE FUNCTION job_start(p_job_id uuid, p_worker text)
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
    UPDATE job_status j
       SET status = 'active', attempts = r.attempts + 1, started_at = COALESCE(r.started_at, v_now),
           scheduled_for = NULL, worker_id = p_worker, updated_at = v_now
     WHERE j.job_id = p_job_id;
    PERFORM job_event(p_job_id, 'started', r.status, 'active', r.attempts + 1, NULL, p_worker,
                      NULL, v_now);
    RETURN QUERY SELECT 'applied', r.status, 'active'::text, r.attempts + 1;
END $$;

-- Ends an attempt: 'completed', 'failed' or 'retrying'. Only the attempt that holds the row
-- may end it, so a late writer from an earlier attempt is refused.
CREATE FUNCTION job_finish(
    p_job_id uuid, p_attempt integer, p_to text, p_worker text, p_result jsonb,
    p_error_type text, p_error_message text, p_error_stack text
) RETURNS TABLE (outcome text, previous text, status text, attempts integer) LANGUAGE plpgsql AS $$
DECLARE
    r job_status;
    v_now timestamptz;
BEGIN
    IF p_to NOT IN ('completed', 'failed', 'retrying') THEN
        RAISE EXCEPTION 'job_finish can not move a job to %', p_to USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO r FROM job_status j WHERE j.job_id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'missing', NULL::text, NULL::text, 0;
        RETURN;
    END IF;
    IF r.status = p_to AND r.attempts = p_attempt THEN
        RETURN QUERY SELECT 'applied', r.status, r.status, r.attempts;
        RETURN;
    END IF;
    v_now := GREATEST(clock_timestamp(), r.updated_at);
    IF r.status <> 'active' OR r.attempts <> p_attempt THEN
        RETURN QUERY SELECT job_refuse(r, 'transition_rejected', p_to, p_worker, NULL, v_now),
                            r.status, r.status, r.attempts;
        RETURN;
    END IF;
    UPDATE job_status j
       SET status = p_to,
           completed_at = CASE WHEN p_to = 'completed' THEN v_now END,
           failed_at = CASE WHEN p_to = 'failed' THEN v_now END,
           progress = CASE WHEN p_to = 'completed' THEN 100 ELSE r.progress END,
           result = p_result,
           error_type = p_error_type, error_message = p_error_message, error_stack = p_error_stack,
           updated_at = v_now
     WHERE j.job_id = p_job_id;
    PERFORM job_event(p_job_id,
                      CASE p_to WHEN 'retrying' THEN 'retry_scheduled' ELSE p_to END,
                      'active', p_to, p_attempt, NULL, p_worker,
                      jsonb_strip_nulls(jsonb_build_object('error_type', p_error_type,
                                                           'error_message', p_error_message)),
                      v_now);
    RETURN QUERY SELECT 'applied', 'active'::text, p_to, p_attempt;
END $$;

-- When a waiting job becomes due: known only once the broker has chosen a retry's backoff.
CREATE FUNCTION job_reschedule(p_job_id uuid, p_delay_ms bigint) RETURNS boolean
LANGUAGE sql AS $$
    UPDATE job_status
       SET scheduled_for = clock_timestamp() + p_delay_ms * interval '1 millisecond',
           updated_at = GREATEST(clock_timestamp(), updated_at)
     WHERE job_id = p_job_id AND status IN ('pending', 'retrying')
    RETURNING true;
$$;
