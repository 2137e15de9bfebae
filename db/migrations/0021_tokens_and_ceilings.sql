-- Worker tokens (0016) and the ceilings on what is stored (0017) were written side by side; here
-- they become one set of rules (issue 12).
--
-- * A due time. 0017 refuses a job due more than 70 days after its creation; 0016 cuts a worker's
--   reschedule (a retry's backoff, the due time of a job published again) to worker_limits'
--   longest delay from now. Together a reschedule could be refused instead of cut: always once
--   the longest delay is raised to the 70 days that JOBS_MAX_DELAY_MS may be, and for any job
--   that has waited long enough (the worker then logs reschedule_not_recorded, and the row loses
--   the due time that reconcile publishes by). Now the reschedule is cut to both, and the longest
--   delay recorded for the workers can't exceed the ceiling: no worker's call meets the ceiling's
--   refusal, which stays for every other writer.
-- * A worker's id. 0016's heartbeat takes a process's id (host:pid:boot) of 1 to 300 characters;
--   0017's ceiling on workers.worker_id said 500, the length of a thread's id (host:pid:boot/thread)
--   in job_status and job_events. The workers table holds processes: its ceiling is 300, and the
--   heartbeat's refusal of a longer id is the ceiling's (check_violation, saying by how much).
--   The token's column needs none: it holds a sha256, 32 bytes, whatever the token's length.
-- * A course's writer. 0017 lets a course be written only for an initialize job's running
--   attempt, and said that any worker naming that attempt could: the workers share one role.
--   With tokens the database knows the worker process of a session: only the process that runs
--   the attempt writes its course.
-- * Privileges: nothing to change. 0017 says no function was made between 0015 and 0017; 0016
--   did make some, and revoked each from PUBLIC by name, and 0017's revoke covers them too. This
--   migration makes no function, it replaces some: each keeps its grants.

-- The ceilings, with a process's id (0017_stored_limits.sql holds why each number is what it is).
CREATE OR REPLACE FUNCTION jobs_ceilings() RETURNS TABLE (name text, ceiling bigint)
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, public, pg_temp AS $$
    VALUES
        ('name_chars', 200::bigint),
        ('args_bytes', 16000000),
        ('result_bytes', 16000000),
        ('json_depth', 100),
        ('options_bytes', 1000000),
        ('error_message_chars', 40000),
        ('error_stack_chars', 160000),
        ('reason_chars', 100000),
        ('progress_message_chars', 10000),
        ('details_bytes', 1000000),
        -- A thread's id, host:pid:boot/thread (job_status, job_events), and its process's,
        -- host:pid:boot (workers: host 255 at most, a pid, 8 hex digits), and the host alone.
        ('worker_id_chars', 500),
        ('worker_process_chars', 300),
        ('hostname_chars', 255),
        ('broker_id_chars', 200),
        ('delay_ms', 6048000000),
        ('module_title_chars', 200),
        ('module_positions', 1000)
$$;

-- The longest reschedule, no longer than the longest send. A value recorded before (JOBS_MAX_DELAY_MS
-- had no ceiling) is cut to it; `jobctl migrate` records no more (middleware/settings.py).
UPDATE worker_limits SET max_delay_ms = LEAST(max_delay_ms, jobs_ceiling('delay_ms'));
-- delay_ms, as a number (a CHECK is kept by the table, not by the function that says it).
ALTER TABLE worker_limits ADD CONSTRAINT worker_limits_max_delay_ms_ceiling CHECK (max_delay_ms <= 6048000000);

-- As 0016's, but the due time is cut to the ceiling after the job's creation as well: a job that
-- old is due at once (its backoff is what the cut loses).
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
       SET scheduled_for = LEAST(
               clock_timestamp() + LEAST(GREATEST(coalesce(p_delay_ms, 0), 0), v_max_delay_ms) * interval '1 millisecond',
               j.created_at + jobs_ceiling('delay_ms') * interval '1 millisecond'),
           options = v_options,
           updated_at = GREATEST(clock_timestamp(), j.updated_at)
     WHERE j.job_id = p_job_id;
    RETURN true;
END $$;

-- The workers table's ids are processes'.
CREATE OR REPLACE FUNCTION workers_limits() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF length(NEW.worker_id) NOT BETWEEN 1 AND jobs_ceiling('worker_process_chars') THEN
        PERFORM jobs_refuse_text('workers.worker_id', NEW.worker_id, 'worker_process_chars');
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
DROP TRIGGER workers_limits ON workers;
-- worker_process_chars, hostname_chars, broker_id_chars.
CREATE TRIGGER workers_limits BEFORE INSERT OR UPDATE OF worker_id, hostname, broker_id ON workers
    FOR EACH ROW WHEN (
        length(NEW.worker_id) NOT BETWEEN 1 AND 300 OR length(NEW.hostname) > 255 OR length(NEW.broker_id) > 200)
    EXECUTE FUNCTION workers_limits();

-- As 0016's, but an id's length is left to the ceiling (the trigger above says it); what is not a
-- length, a thread's id where a process's is due, is still refused here.
CREATE OR REPLACE FUNCTION worker_heartbeat(p_worker text, p_host text, p_pid integer, p_lease_ms bigint, p_broker text)
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
    IF p_worker IS NULL OR strpos(p_worker, '/') > 0 THEN
        RAISE EXCEPTION 'a heartbeat names its process (host:pid:boot), without "/"' USING ERRCODE = 'invalid_parameter_value';
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

-- A refusal names the worker its caller claimed to be as a thread's id is stored (0016 cut it
-- to a process's length, 300, which could cut off the thread).
CREATE OR REPLACE FUNCTION job_refuse_unproven(r job_status, p_wanted text, p_worker text, p_at timestamptz)
RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM job_event(r.job_id, 'transition_rejected', r.status, NULL, r.attempts, NULL, NULL,
                      jsonb_build_object('wanted', p_wanted,
                                         'why', 'the caller does not present the token of the worker it names',
                                         'claimed_worker', left(p_worker, jobs_ceiling('worker_id_chars')::integer)),
                      p_at);
    RETURN 'forbidden';
END $$;

-- A course is written by the worker process that runs its initialization's attempt, on a session
-- that presents that process's token: another worker that names the attempt is refused.
CREATE OR REPLACE FUNCTION course_writer_check(p_job_id uuid, p_attempt integer, p_course_id uuid) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_worker text;
BEGIN
    SELECT j.worker_id INTO v_worker FROM job_status j
     WHERE j.job_id = p_job_id AND j.attempts = p_attempt AND j.status = 'active'
       AND j.job_type = 'initialize' AND j.course_id = p_course_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % (attempt %) is not a running initialize job of course %: it may not write to it',
            p_job_id, p_attempt, p_course_id USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT coalesce(worker_proven(v_worker), false) THEN
        RAISE EXCEPTION 'job % (attempt %) runs in another worker process: this session may not write its course',
            p_job_id, p_attempt USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;
