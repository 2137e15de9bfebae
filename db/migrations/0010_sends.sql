-- Idempotent sends, retries of finished jobs, and cancellations by operators.

-- A key the sender chose, unique per user: a second send with the same key is the first job.
-- A retry names the job it retries; a job is retried once (retry the retry to go on), so that
-- a repeated click can't start two.
ALTER TABLE job_status
    ADD COLUMN idempotency_key text CONSTRAINT job_status_key_check CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    ADD COLUMN retry_of uuid;
CREATE UNIQUE INDEX job_status_key_idx ON job_status (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX job_status_retry_of_idx ON job_status (retry_of) WHERE retry_of IS NOT NULL;
-- No foreign key on retry_of: deleting an old finished job must not have to touch its retry.

-- A job's queue is the queue its actor consumes, never Redis' delay queue of it (`default.DQ`):
-- a job sent with a delay was recorded with that name, and once due (in `default`) reconcile
-- looked for it in the wrong place and sent it again. Waiting and running rows are put right;
-- finished ones can't change, and the constraint holds for every row from now on.
UPDATE job_status SET queue = regexp_replace(queue, '\.(DQ|XQ)$', '')
 WHERE queue ~ '\.(DQ|XQ)$' AND status IN ('pending', 'retrying', 'active');
ALTER TABLE job_status ADD CONSTRAINT job_status_queue_check CHECK (queue !~ '\.(DQ|XQ)$') NOT VALID;

-- Both are facts about how the job came to be: fixed once written.
CREATE FUNCTION job_status_origin_fixed() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, public AS $$
BEGIN
    IF NEW.idempotency_key IS DISTINCT FROM OLD.idempotency_key OR NEW.retry_of IS DISTINCT FROM OLD.retry_of THEN
        RAISE EXCEPTION 'the key and the retried job of job % can not change', OLD.job_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_status_origin_check';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER job_status_origin_fixed BEFORE UPDATE OF idempotency_key, retry_of ON job_status
    FOR EACH ROW EXECUTE FUNCTION job_status_origin_fixed();

-- Records a send: the pending row and its 'enqueued' event, or nothing when the send is one
-- already recorded. Returns whether it was new, and the job the send stands for: itself, or
-- the user's earlier job with the same key (whatever became of it; a key given to a job of
-- another type is refused: a key names one job). p_actor is who asked, when not the owner (a
-- retry by an admin). p_queue may name the delay queue: the queue is recorded.
CREATE FUNCTION job_send(
    p_job_id uuid, p_job_type text, p_queue text, p_user_id uuid, p_course_id uuid,
    p_args jsonb, p_kwargs jsonb, p_options jsonb, p_max_attempts integer, p_delay_ms bigint,
    p_key text, p_retry_of uuid, p_actor uuid, OUT created boolean, OUT job_id uuid
) LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
    v_org uuid;
    v_now timestamptz;
    v_first job_status;
BEGIN
    SELECT u.organization_id INTO v_org FROM users u WHERE u.id = p_user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown user %', p_user_id USING ERRCODE = 'JB001';
    END IF;
    IF p_course_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM courses c WHERE c.id = p_course_id AND c.organization_id = v_org
    ) THEN
        RAISE EXCEPTION 'course % does not exist in the organization of user %', p_course_id, p_user_id
            USING ERRCODE = 'JB002';
    END IF;
    v_now := clock_timestamp();
    -- Either conflict (the same job recorded again, another job with this key) inserts nothing;
    -- a concurrent send with the same key waits here for the first one's commit.
    INSERT INTO job_status (job_id, job_type, queue, organization_id, user_id, course_id,
                            max_attempts, args, kwargs, options, scheduled_for, created_at, updated_at,
                            idempotency_key, retry_of)
    VALUES (p_job_id, p_job_type,
            CASE WHEN right(p_queue, 3) IN ('.DQ', '.XQ') THEN left(p_queue, -3) ELSE p_queue END,
            v_org, p_user_id, p_course_id,
            p_max_attempts, p_args, p_kwargs, COALESCE(p_options, '{}'),
            v_now + p_delay_ms * interval '1 millisecond', v_now, v_now, p_key, p_retry_of)
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        PERFORM job_event(p_job_id, 'enqueued', NULL, 'pending', 0, COALESCE(p_actor, p_user_id), NULL,
                          jsonb_strip_nulls(jsonb_build_object('delay_ms', p_delay_ms, 'key', p_key,
                                                               'retry_of', p_retry_of)), v_now);
        created := true;
        job_id := p_job_id;
        RETURN;
    END IF;
    IF p_key IS NOT NULL THEN
        SELECT * INTO v_first FROM job_status j WHERE j.user_id = p_user_id AND j.idempotency_key = p_key;
        IF FOUND AND v_first.job_type <> p_job_type THEN
            RAISE EXCEPTION 'the key % was given to job % of type %, not %', p_key, v_first.job_id,
                v_first.job_type, p_job_type USING ERRCODE = 'JB003';
        END IF;
    END IF;
    created := false;
    job_id := COALESCE(v_first.job_id, p_job_id);
END $$;

-- The previous release's send, for its workers while both run.
CREATE OR REPLACE FUNCTION job_enqueue(
    p_job_id uuid, p_job_type text, p_queue text, p_user_id uuid, p_course_id uuid,
    p_args jsonb, p_kwargs jsonb, p_options jsonb, p_max_attempts integer, p_delay_ms bigint
) RETURNS boolean LANGUAGE sql AS $$
    SELECT s.created FROM job_send(p_job_id, p_job_type, p_queue, p_user_id, p_course_id, p_args, p_kwargs,
                                   p_options, p_max_attempts, p_delay_ms, NULL, NULL, NULL) s;
$$;

-- A user's retry of a failed or cancelled job: a new pending job (p_new_job_id) with the old
-- one's type, owner, course, arguments and options (its retries counted from zero again), that
-- names the old one, and a 'retried' event on the old one naming who asked, in one transaction.
-- The requester is the identity of the transaction (db.scope.as_user), and must own the job or
-- be an admin of its organization. Outcomes: 'retried', 'already_retried' (with its retry's
-- id: nothing new), 'forbidden' and 'not_retryable' (recorded), 'missing' (another
-- organization's job, or none: nothing recorded), 'unknown_type' (no code of the caller's
-- release runs that type, p_job_types: nothing recorded). The new job's type, arguments and
-- options are returned, so that the caller publishes exactly what was recorded.
CREATE FUNCTION job_retry_request(p_job_id uuid, p_new_job_id uuid, p_job_types text[])
RETURNS TABLE (outcome text, status text, job_id uuid, job_type text, user_id uuid, course_id uuid, args jsonb,
               kwargs jsonb, options jsonb)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    v_user uuid := jobs_current_user();
    u users;
    r job_status;
    v_now timestamptz;
    v_retry uuid;
    v_options jsonb;
BEGIN
    SELECT * INTO u FROM users WHERE id = v_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown user %', coalesce(v_user::text, '(none set)') USING ERRCODE = 'JB001';
    END IF;
    -- Locked: two retries of one job at once are one retry and one 'already_retried'.
    SELECT * INTO r FROM job_status j WHERE j.job_id = p_job_id AND j.organization_id = u.organization_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'missing', NULL::text, NULL::uuid, NULL::text, NULL::uuid, NULL::uuid, NULL::jsonb,
                            NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    v_now := GREATEST(clock_timestamp(), r.updated_at);
    IF NOT (r.user_id = u.id OR u.role = 'admin') THEN
        PERFORM job_event(p_job_id, 'retry_refused', r.status, NULL, r.attempts, v_user, NULL,
                          jsonb_build_object('why', 'not the owner nor an admin of its organization'), v_now);
        RETURN QUERY SELECT 'forbidden', r.status, NULL::uuid, NULL::text, NULL::uuid, NULL::uuid, NULL::jsonb,
                            NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    IF r.status NOT IN ('failed', 'cancelled') THEN
        PERFORM job_event(p_job_id, 'retry_refused', r.status, NULL, r.attempts, v_user, NULL,
                          jsonb_build_object('why', 'only a failed or cancelled job can be retried'), v_now);
        RETURN QUERY SELECT 'not_retryable', r.status, NULL::uuid, NULL::text, NULL::uuid, NULL::uuid, NULL::jsonb,
                            NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    SELECT j.job_id INTO v_retry FROM job_status j WHERE j.retry_of = p_job_id;
    IF FOUND THEN
        RETURN QUERY SELECT 'already_retried', r.status, v_retry, NULL::text, NULL::uuid, NULL::uuid, NULL::jsonb,
                            NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    IF NOT r.job_type = ANY (p_job_types) THEN
        RETURN QUERY SELECT 'unknown_type', r.status, NULL::uuid, r.job_type, NULL::uuid, NULL::uuid, NULL::jsonb,
                            NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    v_options := r.options - 'retries';
    IF NOT (SELECT s.created FROM job_send(p_new_job_id, r.job_type, r.queue, r.user_id, r.course_id, r.args,
                                           r.kwargs, v_options, r.max_attempts, NULL, NULL, p_job_id, v_user) s) THEN
        RAISE EXCEPTION 'job % exists already: a retry needs a new id', p_new_job_id USING ERRCODE = 'unique_violation';
    END IF;
    PERFORM job_event(p_job_id, 'retried', r.status, NULL, r.attempts, v_user, NULL,
                      jsonb_build_object('retry_job_id', p_new_job_id), v_now);
    RETURN QUERY SELECT 'retried', r.status, p_new_job_id, r.job_type, r.user_id, r.course_id, r.args, r.kwargs,
                        v_options;
END $$;

-- A cancellation, by a user (p_user: the owner or an admin of the job's organization; refused
-- and recorded otherwise) or by an operator (p_operator, platform staff: no user, their name in
-- the event). One body for both, so that an operator's cancellation is the same change. The
-- outcomes of job_cancel (0004_cancellation.sql), which now calls it.
CREATE FUNCTION job_cancel_by(p_job_id uuid, p_user uuid, p_operator text, p_reason text)
RETURNS TABLE (outcome text, previous text, status text, attempts integer) LANGUAGE plpgsql
SET search_path = pg_catalog, public AS $$
DECLARE
    r job_status;
    u users;
    v_now timestamptz;
    v_who jsonb := jsonb_strip_nulls(jsonb_build_object('operator', p_operator));
BEGIN
    IF (p_user IS NULL) = (p_operator IS NULL) OR length(p_operator) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'a cancellation is by one user, or by one operator named in 1 to 200 characters'
            USING ERRCODE = '22023';
    END IF;
    IF p_user IS NOT NULL THEN
        SELECT * INTO u FROM users WHERE id = p_user;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'unknown user %', p_user USING ERRCODE = 'JB001';
        END IF;
    END IF;
    SELECT * INTO r FROM job_status j WHERE j.job_id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'missing', NULL::text, NULL::text, 0;
        RETURN;
    END IF;
    v_now := GREATEST(clock_timestamp(), r.updated_at);
    IF p_user IS NOT NULL AND NOT (r.user_id = u.id OR (u.role = 'admin' AND u.organization_id = r.organization_id)) THEN
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
                          jsonb_build_object('why', 'the job has finished') || v_who, v_now);
        RETURN QUERY SELECT 'finished', r.status, r.status, r.attempts;
        RETURN;
    END IF;
    UPDATE job_status j
       SET status = 'cancelled', cancelled_at = v_now, cancelled_by = p_user, cancel_reason = p_reason,
           scheduled_for = NULL, updated_at = v_now
     WHERE j.job_id = p_job_id;
    PERFORM job_event(p_job_id, 'cancelled', r.status, 'cancelled', r.attempts, p_user, NULL,
                      jsonb_strip_nulls(jsonb_build_object('reason', p_reason)) || v_who, v_now);
    RETURN QUERY SELECT 'applied', r.status, 'cancelled'::text, r.attempts;
END $$;

CREATE OR REPLACE FUNCTION job_cancel(p_job_id uuid, p_user uuid, p_reason text)
RETURNS TABLE (outcome text, previous text, status text, attempts integer) LANGUAGE sql
SET search_path = pg_catalog, public AS $$
    SELECT * FROM job_cancel_by(p_job_id, p_user, NULL, p_reason);
$$;

CREATE FUNCTION job_cancel_by_operator(p_job_id uuid, p_operator text, p_reason text)
RETURNS TABLE (outcome text, previous text, status text, attempts integer) LANGUAGE sql
SET search_path = pg_catalog, public AS $$
    SELECT * FROM job_cancel_by(p_job_id, NULL, coalesce(p_operator, ''), p_reason);
$$;

-- New functions are executable by PUBLIC by default: nobody gets one unless named here. Sends
-- are the workers' and services' (jobs_worker); a retry is a user's act, as a cancellation is;
-- an operator's cancellation is the administrators' only (the login that migrates), never a
-- worker's or a user's.
REVOKE ALL ON ALL ROUTINES IN SCHEMA public FROM PUBLIC;
GRANT EXECUTE ON FUNCTION job_send(uuid, text, text, uuid, uuid, jsonb, jsonb, jsonb, integer, bigint, text, uuid, uuid)
    TO jobs_worker;
GRANT EXECUTE ON FUNCTION job_retry_request(uuid, uuid, text[]) TO jobs_user;
