-- Every function and trigger function finds the tables it names in this schema, whoever calls
-- it and whatever the caller's search_path: a session's temporary schema is searched FIRST
-- unless the path names it, so two `CREATE TEMP TABLE`s called job_states and job_transitions
-- let a direct UPDATE rewrite a finished job through job_status_guard(). pg_temp goes last,
-- where nothing of ours can be shadowed. Later migrations set it on the functions they add.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace LOOP
        EXECUTE format('ALTER ROUTINE %s SET search_path = pg_catalog, public, pg_temp', f);
    END LOOP;
END $$;

-- And the roles that run code can't make temporary tables at all: nothing of the system needs
-- them. (TEMPORARY belongs to the database: each database of the server revokes its own.)
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END $$;
