-- job_event, which every send runs (and every cancellation, retry and refusal), was planned again
-- at every call: a SQL function with a SET clause is never inlined into its caller, and
-- PostgreSQL keeps no plan of a SQL function's statements from one call to the next. PL/pgSQL
-- keeps its plans for the session. Same arguments, result, privileges, owner and search_path;
-- only the language. (The services' job_send, a SQL function planned at every call too, is
-- PL/pgSQL since 0017_stored_limits.sql.) Server CPU per send, in loops of 1,000 in one
-- transaction on this machine: see BENCHMARKS.md.

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
