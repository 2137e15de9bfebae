-- Cancellation: who may cancel is decided here, in the same transaction as the change, so that
-- no caller can skip the check; the request (who, when, why) is the row itself.

ALTER TABLE job_status ADD COLUMN cancel_reason text;
ALTER TABLE job_status ADD CONSTRAINT job_status_cancel_check
    CHECK (status = 'cancelled' OR (cancelled_by IS NULL AND cancel_reason IS NULL));

-- Outcomes: 'applied' (cancelled now), 'already_cancelled', 'finished' (completed or failed:
-- refused), 'forbidden' (neither the owner nor an admin of the job's organization: refused),
-- 'missing' (no such job). Refusals are recorded as events.
CREATE FUNCTION job_cancel(p_job_id uuid, p_user uuid, p_reason text)
RETURNS TABLE (outcome text, previous text, status text, attempts integer) LANGUAGE plpgsql AS $$
DECLARE
    r job_status;
    u users;
    v_now timestamptz;
BEGIN
    SELECT * INTO u FROM users WHERE id = p_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown user %', p_user USING ERRCODE = 'JB001';
    END IF;
    SELECT * INTO r FROM job_status j WHERE j.job_id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'missing', NULL::text, NULL::text, 0;
        RETURN;
    END IF;
    v_now := GREATEST(clock_timestamp(), r.updated_at);
    IF NOT (r.user_id = u.id OR (u.role = 'admin' AND u.organization_id = r.organization_id)) THEN
        PERFORM job_event(p_job_id, 'cancel_refused', r.status, NULL, r.attempts, p_user, NULL,
                          jsonb_build_object('why', 'not the owner nor an admin of its organization'), v_now);
        RETURN QUERY SELECT 'forbidden', r.status, r.status, r.attempts;
        RETURN;
    END IF;
    IF r.status = 'cancelled' THEN
        RETURN QUERY SELECT 'already_cancelled', r.status, r.status, r.attempts;
        RETURN;
    END IF;
    IF r.status IN ('completed', 'failed') THEN
        PERFORM job_event(p_job_id, 'cancel_refused', r.status, NULL, r.attempts, p_user, NULL,
                          jsonb_build_object('why', 'the job has finished'), v_now);
        RETURN QUERY SELECT 'finished', r.status, r.status, r.attempts;
        RETURN;
    END IF;
    UPDATE job_status j
       SET status = 'cancelled', cancelled_at = v_now, cancelled_by = p_user, cancel_reason = p_reason,
           scheduled_for = NULL, updated_at = v_now
     WHERE j.job_id = p_job_id;
    PERFORM job_event(p_job_id, 'cancelled', r.status, 'cancelled', r.attempts, p_user, NULL,
                      jsonb_strip_nulls(jsonb_build_object('reason', p_reason)), v_now);
    RETURN QUERY SELECT 'applied', r.status, 'cancelled'::text, r.attempts;
END $$;

-- A running attempt stopped because of a cancellation (interrupted, or it noticed and stopped).
-- Usually the row is cancelled already: the stop is recorded. A job stopped without a
-- cancellation in the database (an abort sent from elsewhere) is cancelled here, by nobody.
CREATE FUNCTION job_stop(p_job_id uuid, p_attempt integer, p_worker text, p_how text)
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
        RETURN QUERY SELECT job_refuse(r, 'transition_rejected', 'cancelled', p_worker, NULL, v_now),
                            r.status, r.status, r.attempts;
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
