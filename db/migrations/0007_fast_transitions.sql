-- The usual transitions in fewer steps: one guarded UPDATE ... RETURNING and its event, with no
-- separate row lock beforehand (the UPDATE takes it, and re-checks its guard on the row it locks).
-- When the guard refuses, the functions of 0003_transitions.sql run unchanged, under a new name,
-- to lock the row and say why (or to find the write already done by the same writer): same
-- outcomes, timestamps and events as before.

ALTER FUNCTION job_start(uuid, text) RENAME TO job_start_checked;
ALTER FUNCTION job_finish(uuid, integer, text, text, jsonb, text, text, text) RENAME TO job_finish_checked;

CREATE FUNCTION job_start(p_job_id uuid, p_worker text)
RETURNS TABLE (outcome text, previous text, status text, attempts integer) LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_attempts integer;
    v_from text;
    v_at timestamptz;
BEGIN
    UPDATE job_status j
       SET status = 'active', attempts = j.attempts + 1,
           started_at = COALESCE(j.started_at, GREATEST(v_now, j.updated_at)),
           scheduled_for = NULL, worker_id = p_worker, updated_at = GREATEST(v_now, j.updated_at)
     WHERE j.job_id = p_job_id AND j.status IN ('pending', 'retrying')
    RETURNING j.attempts, j.updated_at INTO v_attempts, v_at;
    IF NOT FOUND THEN
        RETURN QUERY SELECT * FROM job_start_checked(p_job_id, p_worker);
        RETURN;
    END IF;
    -- Only the first attempt starts from pending (job_status_started_check).
    v_from := CASE WHEN v_attempts = 1 THEN 'pending' ELSE 'retrying' END;
    INSERT INTO job_events (job_id, event, from_status, to_status, attempt, worker_id, created_at)
    VALUES (p_job_id, 'started', v_from, 'active', v_attempts, p_worker, v_at);
    RETURN QUERY SELECT 'applied', v_from, 'active'::text, v_attempts;
END $$;

CREATE FUNCTION job_finish(
    p_job_id uuid, p_attempt integer, p_to text, p_worker text, p_result jsonb,
    p_error_type text, p_error_message text, p_error_stack text
) RETURNS TABLE (outcome text, previous text, status text, attempts integer) LANGUAGE plpgsql AS $$
DECLARE
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
    IF NOT FOUND THEN
        RETURN QUERY SELECT * FROM job_finish_checked(p_job_id, p_attempt, p_to, p_worker, p_result,
                                                      p_error_type, p_error_message, p_error_stack);
        RETURN;
    END IF;
    INSERT INTO job_events (job_id, event, from_status, to_status, attempt, worker_id, details, created_at)
    VALUES (p_job_id, CASE p_to WHEN 'retrying' THEN 'retry_scheduled' ELSE p_to END, 'active', p_to,
            p_attempt, p_worker,
            jsonb_strip_nulls(jsonb_build_object('error_type', p_error_type, 'error_message', p_error_message)),
            v_at);
    RETURN QUERY SELECT 'applied', 'active'::text, p_to, p_attempt;
END $$;

-- New functions are executable by PUBLIC by default (0006 revoked that only from those it saw).
REVOKE ALL ON FUNCTION job_start(uuid, text), job_finish(uuid, integer, text, text, jsonb, text, text, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION job_start(uuid, text), job_finish(uuid, integer, text, text, jsonb, text, text, text)
    TO jobs_worker;
