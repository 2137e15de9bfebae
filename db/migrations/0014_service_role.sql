-- Acting on behalf of a user belongs to the services that authenticated that user, not to the
-- processes that run arbitrary job code. Two login roles:
--
--   jobs_worker   what worker processes log in as: reads every tenant, writes only through the
--                 lifecycle functions (0013). No longer a member of jobs_user: a compromised
--                 worker can't `SET ROLE jobs_user` with another organization's identity.
--   jobs_service  what services (and `jobctl`) log in as: everything jobs_worker may (a service
--                 sends jobs; in tests and the demo it runs workers in its own process too), and
--                 it may act as a user (db/scope.py: SET ROLE jobs_user for one transaction).
--
-- Roles belong to the server: the first migration of any database makes them, and takes
-- jobs_user from jobs_worker for all of them.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'jobs_service') THEN
        BEGIN
            -- INHERIT: it has jobs_worker's privileges and policies without a SET ROLE.
            CREATE ROLE jobs_service LOGIN INHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- made meanwhile by a migration of another database
        END;
    END IF;
    BEGIN
        IF NOT pg_has_role('jobs_service', 'jobs_worker', 'MEMBER') THEN
            GRANT jobs_worker TO jobs_service;
        END IF;
        IF NOT pg_has_role('jobs_service', 'jobs_user', 'MEMBER') THEN
            GRANT jobs_user TO jobs_service;
        END IF;
    EXCEPTION WHEN unique_violation THEN
        NULL;
    END;
    IF pg_has_role('jobs_worker', 'jobs_user', 'MEMBER') THEN
        REVOKE jobs_user FROM jobs_worker;
    END IF;
END $$;
GRANT USAGE ON SCHEMA public TO jobs_service;
