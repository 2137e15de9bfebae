-- The roles that run code write only through the lifecycle functions. jobs_worker had INSERT and
-- UPDATE on job_status, job_events, courses, course_modules and workers, and EXECUTE on every
-- function: a compromised worker could cancel any job, stop a job it didn't hold, append events
-- in any user's name, insert a job that started out completed in 2000, or move a course to
-- another organization. Now the tables are read-only to it, and each write is a function owned
-- by jobs_owner (SECURITY DEFINER) that checks what it writes: the states and their order (the
-- guards), timestamps from the database clock, the actor of an event (never an argument of a
-- function the worker may call).
--
-- Stop the workers of the previous release before migrating: their progress writer, their
-- course initialization and their sends (job_enqueue, dropped) wrote directly.

-- A running attempt's progress.
CREATE FUNCTION job_progress(p_job_id uuid, p_attempt integer, p_progress integer, p_message text)
RETURNS boolean LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    UPDATE job_status
       SET progress = p_progress, progress_message = p_message,
           updated_at = GREATEST(clock_timestamp(), updated_at)
     WHERE job_id = p_job_id AND status = 'active' AND attempts = p_attempt
    RETURNING true;
$$;

-- What the `initialize` job writes: a course's modules, then its status, in the caller's
-- transaction, under the course's row lock (taken first, so that two deliveries take turns).
-- Nothing else of a course (its organization, owner, title) can change.
CREATE FUNCTION course_lock(p_course_id uuid) RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT status FROM courses WHERE id = p_course_id FOR UPDATE;
$$;

CREATE FUNCTION course_add_module(p_course_id uuid, p_position integer, p_title text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    INSERT INTO course_modules (course_id, position, title) VALUES (p_course_id, p_position, p_title);
$$;

CREATE FUNCTION course_mark_initialized(p_course_id uuid) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    UPDATE courses SET status = 'initialized', initialized_at = clock_timestamp()
     WHERE id = p_course_id AND status <> 'initialized'
    RETURNING true;
$$;

-- A send as workers and services make it: no retry link and no actor other than the owner
-- (those belong to job_retry_request, which calls the full job_send as jobs_owner).
CREATE FUNCTION job_send(
    p_job_id uuid, p_job_type text, p_queue text, p_user_id uuid, p_course_id uuid,
    p_args jsonb, p_kwargs jsonb, p_options jsonb, p_max_attempts integer, p_delay_ms bigint,
    p_key text, OUT created boolean, OUT job_id uuid
) LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT s.created, s.job_id FROM job_send(p_job_id, p_job_type, p_queue, p_user_id, p_course_id, p_args,
                                             p_kwargs, p_options, p_max_attempts, p_delay_ms, p_key, NULL, NULL) s;
$$;

-- A running attempt stopped because of a cancellation: recorded only by the worker that runs
-- it (another worker's stop is refused and recorded, and the job runs on as its own). A job
-- stopped without a cancellation in the database (an abort sent from elsewhere) is cancelled by
-- nobody, as before: only its own worker can end it so, as it could end it `failed`.
CREATE OR REPLACE FUNCTION job_stop(p_job_id uuid, p_attempt integer, p_worker text, p_how text, p_ended_ms_ago integer)
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
    IF r.attempts <> p_attempt OR r.status NOT IN ('cancelled', 'active') OR r.worker_id IS DISTINCT FROM p_worker THEN
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

DROP FUNCTION job_enqueue(uuid, text, text, uuid, uuid, jsonb, jsonb, jsonb, integer, bigint);

-- The functions workers call write as jobs_owner.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'job_send(uuid,text,text,uuid,uuid,jsonb,jsonb,jsonb,integer,bigint,text,uuid,uuid)',
        'job_reschedule(uuid,bigint,jsonb)', 'job_start(uuid,text)',
        'job_finish(uuid,integer,text,text,jsonb,text,text,text,integer)',
        'job_stop(uuid,integer,text,text,integer)', 'job_lease_expired(uuid,integer,text,integer,integer)',
        'job_reap(bigint,integer,timestamp with time zone)', 'worker_heartbeat(text,text,integer,bigint,text)',
        'worker_stopped(text,boolean)']::regprocedure[]
    LOOP
        EXECUTE format('ALTER ROUTINE %s SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp', f);
    END LOOP;
END $$;

-- Privileges: the tables are read-only to the roles that run code; each write is one of these.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public FROM jobs_worker;
REVOKE USAGE ON ALL SEQUENCES IN SCHEMA public FROM jobs_worker;
REVOKE ALL ON ALL ROUTINES IN SCHEMA public FROM PUBLIC, jobs_worker;
GRANT EXECUTE ON FUNCTION
    job_send(uuid, text, text, uuid, uuid, jsonb, jsonb, jsonb, integer, bigint, text),
    job_reschedule(uuid, bigint, jsonb), job_start(uuid, text),
    job_finish(uuid, integer, text, text, jsonb, text, text, text, integer),
    job_stop(uuid, integer, text, text, integer), job_lease_expired(uuid, integer, text, integer, integer),
    job_reap(bigint, integer, timestamptz), job_progress(uuid, integer, integer, text),
    worker_heartbeat(text, text, integer, bigint, text), worker_stopped(text, boolean),
    course_lock(uuid), course_add_module(uuid, integer, text), course_mark_initialized(uuid)
    TO jobs_worker;
-- What a user's transaction calls (db/scope.py); they were granted to jobs_user already.
GRANT EXECUTE ON FUNCTION jobs_current_user(), jobs_current_org(), jobs_current_is_admin(),
    job_cancel_request(uuid, text), job_retry_request(uuid, uuid, text[])
    TO jobs_user;
