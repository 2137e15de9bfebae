-- Two SQL functions that every send runs were planned again at every call: a SQL function that
-- has a SET clause or is SECURITY DEFINER is never inlined into its caller, and PostgreSQL keeps
-- no plan of a SQL function's statements from one call to the next. PL/pgSQL keeps its plans for
-- the session. Same arguments, results, privileges, owner and search_path; only the language.
-- Server CPU per send, in loops of 1,000 in one transaction on this machine: 480 us -> 360 us
-- (medians of 5, a loaded machine; BENCHMARKS.md).

-- Every event of a send, a cancellation, a retry, a refusal.
CREATE OR REPLACE FUNCTION job_event(
    p_job_id uuid, p_event text, p_from text, p_to text, p_attempt integer,
    p_actor uuid, p_worker text, p_details jsonb, p_at timestamptz
) RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    INSERT INTO job_events (job_id, event, from_status, to_status, attempt, actor_user_id,
                            worker_id, details, created_at)
    VALUES (p_job_id, p_event, p_from, p_to, p_attempt, p_actor, p_worker,
            COALESCE(p_details, '{}'), p_at);
END $$;

-- A send as workers and services make it (0013_writes_through_functions.sql).
CREATE OR REPLACE FUNCTION job_send(
    p_job_id uuid, p_job_type text, p_queue text, p_user_id uuid, p_course_id uuid,
    p_args jsonb, p_kwargs jsonb, p_options jsonb, p_max_attempts integer, p_delay_ms bigint,
    p_key text, OUT created boolean, OUT job_id uuid
) LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    SELECT s.created, s.job_id INTO created, job_id
      FROM job_send(p_job_id, p_job_type, p_queue, p_user_id, p_course_id, p_args,
                    p_kwargs, p_options, p_max_attempts, p_delay_ms, p_key, NULL, NULL) s;
END $$;
