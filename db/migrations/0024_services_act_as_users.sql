-- jobs_service must be a member of jobs_user in its own right (0014_service_role.sql): services
-- act as the users they authenticated (db/scope.py: SET ROLE jobs_user for one transaction).
--
-- 0014 granted it only when pg_has_role(..., 'MEMBER') said it was not a member yet, and that
-- counts membership through other roles. On a server's first migration, 0006 has just made
-- jobs_worker a member of jobs_user and 0014 makes jobs_service a member of jobs_worker, so the
-- grant was skipped; then 0014 took jobs_user from jobs_worker, and jobs_service could act as no
-- user: every request of the HTTP API failed on a new machine. Roles belong to the server, so
-- every database's migration checks the direct grant, whichever migration ran first.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_auth_members m
         WHERE m.roleid = 'jobs_user'::regrole AND m.member = 'jobs_service'::regrole
    ) THEN
        BEGIN
            GRANT jobs_user TO jobs_service;
        EXCEPTION WHEN unique_violation THEN
            NULL;  -- granted meanwhile by a migration of another database
        END;
    END IF;
END $$;
