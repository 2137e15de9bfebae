-- The usual transitions in fewer steps: one guarded UPDATE ... RETURNING and its event, with no
-- separate row lock beforehand (the UPDATE takes it, and re-checks its guard on the row it locks).
-- Only when the guard refuses does the function lock and read the row, to say why, exactly as
-- before. Same outcomes, timestamps and events as 0003_transitions.sql.

CREATE OR REPLACE FUNCTION job_start(p_job_id uuid, p_worker text)
RETURNS TABLE (outcome text, previous text, status text, attempts integer) LANGUAGE plpgsql AS $$
DECLARE
    r job_status;
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
    RETURN QUERY SELECT job_refuse(r, CASE WHEN r.status IN ('completed', 'failed', 'cancelled')
                                           THEN 'delivery_skipped' ELSE 'transition_rejected' END,
                                   'active', p_worker, NULL, GREATEST(v_now, r.updated_at)),
                        r.status, r.status, r.attempts;
END $$;

CREATE OR REPLACE FUNCTION job_finish(
    p_job_id uuid, p_attempt integer, p_to text, p_worker text, p_result jsonb,
    p_error_type text, p_error_message text, p_error_stack text
) RETURNS TABLE (outcome text, previous text, status text, attempts integer) LANGUAGE plpgsql AS $$
DECLARE
    r job_status;
    v_now timestamptz := clock_timestamp();
    v_at timestamptz;
BEGIN
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
    IF r.status = p_to AND r.attempts = p_attempt THEN
        RETURN QUERY SELECT 'applied', r.status, r.status, r.attempts;
        RETURN;
    END IF;
    RETURN QUERY SELECT job_refuse(r, 'transition_rejected', p_to, p_worker, NULL, GREATEST(v_now, r.updated_at)),
                        r.status, r.status, r.attempts;
END $$;
