-- Ceilings on everything stored, enforced by the database whoever calls (issue 12). The
-- JOBS_MAX_... settings (db/storable.py) stay the first line: a send over one is refused in
-- Python in one line, a job's overlong output cut. But a compromised worker (jobs_worker) or a
-- buggy service (jobs_service) calling the functions directly stored whatever it gave: a 1 GB
-- error, arguments nested 10,000 deep that no Python process could read back, an event's
-- details of any size, a job due in the year 9999. Here the database refuses them, with one
-- line that names what and by how much, and writes nothing.
--
-- The ceilings are above the settings' defaults, so that they never refuse what the first line
-- lets through (db.storable.CEILINGS holds the same numbers, and the settings may not be raised
-- past them). Text is counted in characters, as Python counts it; JSON in bytes of its text
-- as PostgreSQL writes it out: what every read of it receives.
--
-- Triggers, not CHECK constraints: a CHECK is evaluated on every column at every UPDATE, so
-- each transition would measure the job's arguments again (a megabyte of them, three times
-- per job), and a row stored before the ceilings could never change status again, not even
-- to be failed or cancelled. Each trigger below measures only what a statement writes (the
-- columns of its `UPDATE OF`; every column of an INSERT), and does it in its WHEN clause.

-- The ceilings, by name: what the refusals say (and the tests read). IMMUTABLE: a call with a
-- constant name is folded into the plan that makes it.
CREATE FUNCTION jobs_ceilings() RETURNS TABLE (name text, ceiling bigint)
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, public, pg_temp AS $$
    VALUES
        -- A job's type and queue, an error's type, an event's name: names.
        ('name_chars', 200::bigint),
        -- A job's arguments (args and kwargs together). 16 times the default of
        -- JOBS_MAX_ARGS_BYTES and JOBS_MAX_RESULT_BYTES: Python writes a float as 1e+308
        -- where PostgreSQL writes its 309 digits, 13 times longer.
        ('args_bytes', 16000000),
        ('result_bytes', 16000000),
        -- How deep an argument, an option or a result nests lists and objects (JOBS_MAX_ARGS_DEPTH: 32).
        ('json_depth', 100),
        ('options_bytes', 1000000),
        ('error_message_chars', 40000),
        ('error_stack_chars', 160000),
        ('reason_chars', 100000),
        ('progress_message_chars', 10000),
        -- An event's details hold at most a reason or an error message, each character of
        -- which JSON may write as six (\u0001).
        ('details_bytes', 1000000),
        -- host:pid:boot/thread, and the host alone (a DNS name has 253 characters at most).
        ('worker_id_chars', 500),
        ('hostname_chars', 255),
        ('broker_id_chars', 200),
        -- How long after its creation a job may be due: 70 days (JOBS_MAX_DELAY_MS: 7).
        ('delay_ms', 6048000000),
        ('module_title_chars', 200),
        ('module_positions', 1000)
$$;

CREATE FUNCTION jobs_ceiling(p_name text) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v bigint;
BEGIN
    SELECT c.ceiling INTO v FROM jobs_ceilings() c WHERE c.name = p_name;
    IF v IS NULL THEN
        -- A misspelt name must not pass every check as a NULL comparison would.
        RAISE EXCEPTION 'no ceiling is named %', p_name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN v;
END $$;

-- Whether a JSON value nests lists and objects more than p_depth deep (a scalar is 0 deep, [] 1,
-- [[1]] 2): whether a list or an object is found p_depth levels down. jsonpath's `.**{n}` walks
-- the value in C, without copying it, and no deeper than level n: a value nested 10,000 deep
-- costs no more than one nested n deep, with no recursion in SQL (nor in C beyond n levels).
CREATE FUNCTION jsonb_deeper_than(p_value jsonb, p_depth bigint) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_path_exists(
        p_value,
        ('strict $.**{' || GREATEST(p_depth, 0) || '} ? (@.type() == "array" || @.type() == "object")')::jsonpath)
$$;

-- The refusal of a value over its ceiling: one line, check_violation, the rule's name.
CREATE FUNCTION jobs_refuse(p_rule text, p_message text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RAISE EXCEPTION '%', p_message USING ERRCODE = 'check_violation', CONSTRAINT = p_rule;
END $$;

CREATE FUNCTION jobs_refuse_text(p_column text, p_value text, p_ceiling text) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jobs_refuse(replace(p_column, '.', '_') || '_limit',
                       CASE WHEN p_value = ''
                            THEN format('%s is empty: the database stores 1 to %s characters', p_column,
                                        jobs_ceiling(p_ceiling))
                            ELSE format('%s: %s characters, more than the %s the database stores', p_column,
                                        length(p_value), jobs_ceiling(p_ceiling)) END);
$$;

CREATE FUNCTION jobs_refuse_json(p_column text, p_bytes bigint, p_ceiling text) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jobs_refuse(replace(p_column, '.', '_') || '_limit',
                       format('%s: %s bytes of JSON, more than the %s the database stores', p_column, p_bytes,
                              jobs_ceiling(p_ceiling)));
$$;

CREATE FUNCTION jobs_refuse_depth(p_column text, p_what text) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jobs_refuse(replace(p_column, '.', '_') || '_depth_limit',
                       format('%s: %s nests lists and objects more than %s deep, deeper than the database stores',
                              p_column, p_what, jobs_ceiling('json_depth')));
$$;

-- Each trigger below calls its function only when a value is over a ceiling: its WHEN clause,
-- evaluated in C, holds the ceilings of jobs_ceilings() as numbers (a function called there would
-- cost a call per statement, a trigger function ~20 us per row). The function then says which
-- value, and by how much; the tests hold each clause to its ceiling, at the ceiling and past it.

-- Which value of job_status is over its ceiling: TG_ARGV[0] names the group of columns whose
-- trigger fired.
CREATE FUNCTION job_status_limits() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_group text := TG_ARGV[0];
    v_bytes bigint;
BEGIN
    IF v_group = 'origin' THEN
        IF length(NEW.job_type) NOT BETWEEN 1 AND jobs_ceiling('name_chars') THEN
            PERFORM jobs_refuse_text('job_status.job_type', NEW.job_type, 'name_chars');
        END IF;
        IF length(NEW.queue) NOT BETWEEN 1 AND jobs_ceiling('name_chars') THEN
            PERFORM jobs_refuse_text('job_status.queue', NEW.queue, 'name_chars');
        END IF;
        IF jsonb_deeper_than(NEW.args, jobs_ceiling('json_depth') + 1)
           OR jsonb_deeper_than(NEW.kwargs, jobs_ceiling('json_depth') + 1) THEN
            PERFORM jobs_refuse_depth('job_status.args', 'an argument');
        END IF;
        v_bytes := octet_length(NEW.args::text) + octet_length(NEW.kwargs::text);
        IF v_bytes > jobs_ceiling('args_bytes') THEN
            PERFORM jobs_refuse_json('job_status.args and kwargs', v_bytes, 'args_bytes');
        END IF;
    ELSIF v_group = 'options' THEN
        IF jsonb_deeper_than(NEW.options, jobs_ceiling('json_depth') + 1) THEN
            PERFORM jobs_refuse_depth('job_status.options', 'an option');
        END IF;
        IF octet_length(NEW.options::text) > jobs_ceiling('options_bytes') THEN
            PERFORM jobs_refuse_json('job_status.options', octet_length(NEW.options::text), 'options_bytes');
        END IF;
    ELSIF v_group = 'schedule' THEN
        IF NEW.scheduled_for > NEW.created_at + jobs_ceiling('delay_ms') * interval '1 millisecond' THEN
            PERFORM jobs_refuse('job_status_scheduled_for_limit',
                                format('job_status.scheduled_for is %s after the job was created: the database'
                                       ' schedules a job %s ms after its creation at most',
                                       NEW.scheduled_for - NEW.created_at, jobs_ceiling('delay_ms')));
        END IF;
        IF length(NEW.worker_id) > jobs_ceiling('worker_id_chars') THEN
            PERFORM jobs_refuse_text('job_status.worker_id', NEW.worker_id, 'worker_id_chars');
        END IF;
    ELSIF v_group = 'output' THEN
        IF jsonb_deeper_than(NEW.result, jobs_ceiling('json_depth')) THEN
            PERFORM jobs_refuse_depth('job_status.result', 'the result');
        END IF;
        IF octet_length(NEW.result::text) > jobs_ceiling('result_bytes') THEN
            PERFORM jobs_refuse_json('job_status.result', octet_length(NEW.result::text), 'result_bytes');
        END IF;
        IF length(NEW.error_type) > jobs_ceiling('name_chars') THEN
            PERFORM jobs_refuse_text('job_status.error_type', NEW.error_type, 'name_chars');
        END IF;
        IF length(NEW.error_message) > jobs_ceiling('error_message_chars') THEN
            PERFORM jobs_refuse_text('job_status.error_message', NEW.error_message, 'error_message_chars');
        END IF;
        IF length(NEW.error_stack) > jobs_ceiling('error_stack_chars') THEN
            PERFORM jobs_refuse_text('job_status.error_stack', NEW.error_stack, 'error_stack_chars');
        END IF;
    ELSIF v_group = 'progress' THEN
        IF length(NEW.progress_message) > jobs_ceiling('progress_message_chars') THEN
            PERFORM jobs_refuse_text('job_status.progress_message', NEW.progress_message, 'progress_message_chars');
        END IF;
    ELSIF v_group = 'cancel' THEN
        IF length(NEW.cancel_reason) > jobs_ceiling('reason_chars') THEN
            PERFORM jobs_refuse_text('job_status.cancel_reason', NEW.cancel_reason, 'reason_chars');
        END IF;
    END IF;
    -- Fired, yet nothing found over: a clause and the list disagree. Refuse all the same.
    PERFORM jobs_refuse(TG_NAME, format('%s: a value of job_status is over a ceiling', TG_NAME));
    RETURN NULL;
END $$;

-- Each group is what one kind of write writes: a send writes them all; a start the worker and
-- the due time; a reschedule the due time and the options; an end (and the reaper, and a lease's
-- expiry) the output; progress its message; a cancellation its reason. Nothing rewrites a job's
-- type, queue or arguments: those are measured once, when it is sent. The ceilings, in order:
-- name_chars, json_depth (+ 1: the list or object holding the arguments), args_bytes;
-- json_depth + 1, options_bytes; delay_ms, worker_id_chars; json_depth, result_bytes,
-- name_chars, error_message_chars, error_stack_chars; progress_message_chars; reason_chars.
CREATE TRIGGER job_status_origin_limits BEFORE INSERT OR UPDATE OF job_type, queue, args, kwargs ON job_status
    FOR EACH ROW WHEN (
        length(NEW.job_type) NOT BETWEEN 1 AND 200 OR length(NEW.queue) NOT BETWEEN 1 AND 200
        OR jsonb_path_exists(NEW.args, 'strict $.**{101} ? (@.type() == "array" || @.type() == "object")')
        OR jsonb_path_exists(NEW.kwargs, 'strict $.**{101} ? (@.type() == "array" || @.type() == "object")')
        OR octet_length(NEW.args::text) + octet_length(NEW.kwargs::text) > 16000000)
    EXECUTE FUNCTION job_status_limits('origin');
CREATE TRIGGER job_status_options_limits BEFORE INSERT OR UPDATE OF options ON job_status
    FOR EACH ROW WHEN (
        jsonb_path_exists(NEW.options, 'strict $.**{101} ? (@.type() == "array" || @.type() == "object")')
        OR octet_length(NEW.options::text) > 1000000)
    EXECUTE FUNCTION job_status_limits('options');
CREATE TRIGGER job_status_schedule_limits BEFORE INSERT OR UPDATE OF scheduled_for, worker_id ON job_status
    FOR EACH ROW WHEN (
        NEW.scheduled_for > NEW.created_at + interval '6048000000 milliseconds' OR length(NEW.worker_id) > 500)
    EXECUTE FUNCTION job_status_limits('schedule');
CREATE TRIGGER job_status_output_limits
    BEFORE INSERT OR UPDATE OF result, error_type, error_message, error_stack ON job_status
    FOR EACH ROW WHEN (
        jsonb_path_exists(NEW.result, 'strict $.**{100} ? (@.type() == "array" || @.type() == "object")')
        OR octet_length(NEW.result::text) > 16000000 OR length(NEW.error_type) > 200
        OR length(NEW.error_message) > 40000 OR length(NEW.error_stack) > 160000)
    EXECUTE FUNCTION job_status_limits('output');
CREATE TRIGGER job_status_progress_limits BEFORE INSERT OR UPDATE OF progress_message ON job_status
    FOR EACH ROW WHEN (length(NEW.progress_message) > 10000)
    EXECUTE FUNCTION job_status_limits('progress');
CREATE TRIGGER job_status_cancel_limits BEFORE INSERT OR UPDATE OF cancel_reason ON job_status
    FOR EACH ROW WHEN (length(NEW.cancel_reason) > 100000)
    EXECUTE FUNCTION job_status_limits('cancel');

-- job_events is append-only: only what is inserted. Its details come from the callers of the
-- lifecycle functions (a stop's `how`, a reason, an error), its worker from the worker.
CREATE FUNCTION job_events_limits() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF length(NEW.event) > jobs_ceiling('name_chars') THEN
        PERFORM jobs_refuse_text('job_events.event', NEW.event, 'name_chars');
    END IF;
    IF length(NEW.worker_id) > jobs_ceiling('worker_id_chars') THEN
        PERFORM jobs_refuse_text('job_events.worker_id', NEW.worker_id, 'worker_id_chars');
    END IF;
    IF jsonb_deeper_than(NEW.details, jobs_ceiling('json_depth')) THEN
        PERFORM jobs_refuse_depth('job_events.details', 'the value');
    END IF;
    IF octet_length(NEW.details::text) > jobs_ceiling('details_bytes') THEN
        PERFORM jobs_refuse_json('job_events.details', octet_length(NEW.details::text), 'details_bytes');
    END IF;
    PERFORM jobs_refuse(TG_NAME, format('%s: a value of job_events is over a ceiling', TG_NAME));
    RETURN NULL;
END $$;
-- name_chars, worker_id_chars, json_depth, details_bytes.
CREATE TRIGGER job_events_limits BEFORE INSERT ON job_events
    FOR EACH ROW WHEN (
        length(NEW.event) > 200 OR length(NEW.worker_id) > 500
        OR jsonb_path_exists(NEW.details, 'strict $.**{100} ? (@.type() == "array" || @.type() == "object")')
        OR octet_length(NEW.details::text) > 1000000)
    EXECUTE FUNCTION job_events_limits();

-- A heartbeat inserts its worker's row, or updates it (with the Redis consumer's id).
CREATE FUNCTION workers_limits() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF length(NEW.worker_id) NOT BETWEEN 1 AND jobs_ceiling('worker_id_chars') THEN
        PERFORM jobs_refuse_text('workers.worker_id', NEW.worker_id, 'worker_id_chars');
    END IF;
    IF length(NEW.hostname) > jobs_ceiling('hostname_chars') THEN
        PERFORM jobs_refuse_text('workers.hostname', NEW.hostname, 'hostname_chars');
    END IF;
    IF length(NEW.broker_id) > jobs_ceiling('broker_id_chars') THEN
        PERFORM jobs_refuse_text('workers.broker_id', NEW.broker_id, 'broker_id_chars');
    END IF;
    PERFORM jobs_refuse(TG_NAME, format('%s: a value of workers is over a ceiling', TG_NAME));
    RETURN NULL;
END $$;
-- worker_id_chars, hostname_chars, broker_id_chars.
CREATE TRIGGER workers_limits BEFORE INSERT OR UPDATE OF worker_id, hostname, broker_id ON workers
    FOR EACH ROW WHEN (
        length(NEW.worker_id) NOT BETWEEN 1 AND 500 OR length(NEW.hostname) > 255 OR length(NEW.broker_id) > 200)
    EXECUTE FUNCTION workers_limits();

-- A course's modules: a title each, and a bounded number of them (one per position).
CREATE FUNCTION course_modules_limits() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF length(NEW.title) NOT BETWEEN 1 AND jobs_ceiling('module_title_chars') THEN
        PERFORM jobs_refuse_text('course_modules.title', NEW.title, 'module_title_chars');
    END IF;
    IF NEW.position > jobs_ceiling('module_positions') THEN
        PERFORM jobs_refuse('course_modules_position_limit',
                            format('course_modules.position is %s: a course has %s modules at most',
                                   NEW.position, jobs_ceiling('module_positions')));
    END IF;
    PERFORM jobs_refuse(TG_NAME, format('%s: a value of course_modules is over a ceiling', TG_NAME));
    RETURN NULL;
END $$;
-- module_title_chars, module_positions.
CREATE TRIGGER course_modules_limits BEFORE INSERT OR UPDATE OF title, position ON course_modules
    FOR EACH ROW WHEN (length(NEW.title) NOT BETWEEN 1 AND 200 OR NEW.position > 1000)
    EXECUTE FUNCTION course_modules_limits();

-- A send's delay, said as a delay (the trigger would say it as a due time; and a delay too long
-- for an interval would fail before it could).
CREATE OR REPLACE FUNCTION job_send(
    p_job_id uuid, p_job_type text, p_queue text, p_user_id uuid, p_course_id uuid,
    p_args jsonb, p_kwargs jsonb, p_options jsonb, p_max_attempts integer, p_delay_ms bigint,
    p_key text, OUT created boolean, OUT job_id uuid
) LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF p_delay_ms NOT BETWEEN 0 AND jobs_ceiling('delay_ms') THEN
        PERFORM jobs_refuse('job_status_delay_limit',
                            format('a delay of %s ms: the database takes 0 to %s', p_delay_ms, jobs_ceiling('delay_ms')));
    END IF;
    SELECT s.created, s.job_id INTO created, job_id
      FROM job_send(p_job_id, p_job_type, p_queue, p_user_id, p_course_id, p_args, p_kwargs, p_options,
                    p_max_attempts, p_delay_ms, p_key, NULL, NULL) s;
END $$;

-- A course is written only by a running `initialize` job of that very course: the caller names
-- its job and attempt, which must be active now. Before, any worker could rewrite any course of
-- any organization. (Workers share one role: the database can't tell which worker calls, so one
-- that lies about its job can still act on a course whose initialization is running.)
CREATE FUNCTION course_writer_check(p_job_id uuid, p_attempt integer, p_course_id uuid) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM job_status j
         WHERE j.job_id = p_job_id AND j.attempts = p_attempt AND j.status = 'active'
           AND j.job_type = 'initialize' AND j.course_id = p_course_id
    ) THEN
        RAISE EXCEPTION 'job % (attempt %) is not a running initialize job of course %: it may not write to it',
            p_job_id, p_attempt, p_course_id USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;

DROP FUNCTION course_lock(uuid);
DROP FUNCTION course_add_module(uuid, integer, text);
DROP FUNCTION course_mark_initialized(uuid);

-- What the `initialize` job writes: a course's modules, then its status, in the caller's
-- transaction, under the course's row lock (taken first, so that two deliveries take turns).
CREATE FUNCTION course_lock(p_job_id uuid, p_attempt integer, p_course_id uuid) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_status text;
BEGIN
    PERFORM course_writer_check(p_job_id, p_attempt, p_course_id);
    SELECT c.status INTO v_status FROM courses c WHERE c.id = p_course_id FOR UPDATE;
    RETURN v_status;
END $$;

CREATE FUNCTION course_add_module(p_job_id uuid, p_attempt integer, p_course_id uuid, p_position integer,
                                  p_title text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM course_writer_check(p_job_id, p_attempt, p_course_id);
    INSERT INTO course_modules (course_id, position, title) VALUES (p_course_id, p_position, p_title);
END $$;

CREATE FUNCTION course_mark_initialized(p_job_id uuid, p_attempt integer, p_course_id uuid) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM course_writer_check(p_job_id, p_attempt, p_course_id);
    UPDATE courses SET status = 'initialized', initialized_at = clock_timestamp()
     WHERE id = p_course_id AND status <> 'initialized';
    RETURN FOUND;
END $$;

-- Rows stored before these ceilings may hold arguments or options over them, which no worker
-- could be sent (Python can't even read arguments nested 10,000 deep). Reconcile and the reaper,
-- which would publish such a waiting job again and again, fail it instead: a waiting job may
-- now go to `failed` without running, but only through this function, and only when what it
-- holds is over a ceiling (so a compromised worker can fail no other job with it).
INSERT INTO job_transitions VALUES ('pending', 'failed'), ('retrying', 'failed');

-- Why the stored arguments or options of a job can't be sent, or NULL.
CREATE FUNCTION job_unsendable(r job_status) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF jsonb_deeper_than(r.args, jobs_ceiling('json_depth') + 1)
       OR jsonb_deeper_than(r.kwargs, jobs_ceiling('json_depth') + 1) THEN
        RETURN format('an argument nests lists and objects more than %s deep', jobs_ceiling('json_depth'));
    END IF;
    IF jsonb_deeper_than(r.options, jobs_ceiling('json_depth') + 1) THEN
        RETURN format('an option nests lists and objects more than %s deep', jobs_ceiling('json_depth'));
    END IF;
    IF octet_length(r.args::text) + octet_length(r.kwargs::text) > jobs_ceiling('args_bytes') THEN
        RETURN format('its arguments are more than %s bytes of JSON', jobs_ceiling('args_bytes'));
    END IF;
    IF octet_length(r.options::text) > jobs_ceiling('options_bytes') THEN
        RETURN format('its options are more than %s bytes of JSON', jobs_ceiling('options_bytes'));
    END IF;
    RETURN NULL;
END $$;

-- Outcomes: 'applied' (failed now), 'rejected' (not waiting, or nothing over a ceiling: nothing
-- written, nothing recorded), 'missing'.
CREATE FUNCTION job_fail_unsendable(p_job_id uuid)
RETURNS TABLE (outcome text, previous text, status text, attempts integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    r job_status;
    v_why text;
    v_now timestamptz;
BEGIN
    SELECT * INTO r FROM job_status j WHERE j.job_id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'missing', NULL::text, NULL::text, 0;
        RETURN;
    END IF;
    v_why := CASE WHEN r.status IN ('pending', 'retrying') THEN job_unsendable(r) END;
    IF v_why IS NULL THEN
        RETURN QUERY SELECT 'rejected', r.status, r.status, r.attempts;
        RETURN;
    END IF;
    v_why := format('%s, more than the database stores: it was stored before that limit, and can''t be sent'
                    ' to a worker', v_why);
    v_now := GREATEST(clock_timestamp(), r.updated_at);
    UPDATE job_status j
       SET status = 'failed', failed_at = v_now, error_type = 'Unsendable', error_message = v_why,
           error_stack = NULL, scheduled_for = NULL, updated_at = v_now
     WHERE j.job_id = p_job_id;
    PERFORM job_event(p_job_id, 'failed', r.status, 'failed', r.attempts, NULL, NULL,
                      jsonb_build_object('error_type', 'Unsendable', 'error_message', v_why), v_now);
    RETURN QUERY SELECT 'applied', r.status, 'failed'::text, r.attempts;
END $$;

-- Nobody gets a new function unless named here: the ceilings, checks and triggers run as the
-- functions that write (jobs_owner), never called directly. 0015's default did not take: a
-- default given IN SCHEMA can only add to the database-wide one, which grants EXECUTE to PUBLIC,
-- so the functions above were made open to PUBLIC (none was made between the two). The
-- database-wide default of the role that migrates is revoked instead, for later migrations.
REVOKE ALL ON ALL ROUTINES IN SCHEMA public FROM PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    course_lock(uuid, integer, uuid), course_add_module(uuid, integer, uuid, integer, text),
    course_mark_initialized(uuid, integer, uuid), job_fail_unsendable(uuid)
    TO jobs_worker;
