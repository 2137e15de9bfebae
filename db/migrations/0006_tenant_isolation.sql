-- Tenant isolation, enforced by PostgreSQL: three roles with least privilege, and row-level
-- security on every table that holds an organization's data, so that no query, however wrong,
-- shows one organization's rows to another.
--
--   jobs_owner   owns the schema (migrations hand every object to it); logs in as nobody.
--   jobs_worker  what workers and services log in as: runs the lifecycle, sees every tenant.
--   jobs_user    queries made on behalf of one user, whose id is set for one transaction in
--                `jobs.user_id` (db/scope.py); reads what that user may see, writes nothing
--                except through job_cancel_request. jobs_worker may SET ROLE to it; NOINHERIT
--                keeps its privileges and policies from applying to the worker itself.
--
-- Roles belong to the whole server, not to one database: several databases (or several
-- migrations at once) may create them, and the first one wins.
DO $$
DECLARE
    wanted text[][] := ARRAY[
        ARRAY['jobs_owner', 'NOLOGIN'],
        ARRAY['jobs_worker', 'LOGIN NOINHERIT'],
        ARRAY['jobs_user', 'NOLOGIN']];
    i integer;
BEGIN
    FOR i IN 1 .. array_length(wanted, 1) LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = wanted[i][1]) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I %s', wanted[i][1], wanted[i][2]);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by a migration of another database
            END;
        END IF;
    END LOOP;
    IF NOT pg_has_role('jobs_worker', 'jobs_user', 'MEMBER') THEN
        BEGIN
            GRANT jobs_user TO jobs_worker;
        EXCEPTION WHEN unique_violation THEN
            NULL;
        END;
    END IF;
END $$;

-- Who is asking, for the policies below. The setting is transaction-local; an empty or unset
-- one means nobody, and nobody sees anything.
CREATE FUNCTION jobs_current_user() RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('jobs.user_id', true), '')::uuid
$$;

-- SECURITY DEFINER: the user's own row is read past the users policy, which itself needs it.
CREATE FUNCTION jobs_current_org() RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT organization_id FROM users WHERE id = jobs_current_user()
$$;

CREATE FUNCTION jobs_current_is_admin() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT coalesce((SELECT role = 'admin' FROM users WHERE id = jobs_current_user()), false)
$$;

-- A user's cancellation: the requester is the identity of the transaction, never an argument,
-- so it can't be spoofed. A job of another organization does not exist for the requester: the
-- answer is 'missing' and nothing is written into that organization's history.
CREATE FUNCTION job_cancel_request(p_job_id uuid, p_reason text)
RETURNS TABLE (outcome text, previous text, status text, attempts integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_user uuid := jobs_current_user();
    v_org uuid;
BEGIN
    SELECT u.organization_id INTO v_org FROM users u WHERE u.id = v_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown user %', coalesce(v_user::text, '(none set)') USING ERRCODE = 'JB001';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM job_status j WHERE j.job_id = p_job_id AND j.organization_id = v_org) THEN
        RETURN QUERY SELECT 'missing', NULL::text, NULL::text, 0;
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM job_cancel(p_job_id, v_user, p_reason);
END $$;

-- Row-level security, forced so that the owner too goes through the policies: each role gets
-- exactly the rows named below, and a role without a policy gets none.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['organizations', 'users', 'courses', 'course_modules', 'job_status', 'job_events'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY %I ON %I TO jobs_owner USING (true) WITH CHECK (true)', t || '_owner', t);
        EXECUTE format('CREATE POLICY %I ON %I TO jobs_worker USING (true) WITH CHECK (true)', t || '_worker', t);
    END LOOP;
END $$;

-- What a user sees: their organization, its people and courses; their own jobs, or, for an
-- admin, every job of the organization; the events of the jobs they see. Read-only: no
-- INSERT, UPDATE or DELETE policy exists for jobs_user, so even a stray grant writes nothing.
-- The sub-selects make each identity function run once per query, not once per row. The job
-- policy names the organization first and has no OR across columns: the planner then walks the
-- (organization_id, created_at) index for a list, instead of gathering the whole organization
-- to sort it. A member's own jobs are in their organization (the composite key says so).
CREATE POLICY organizations_user ON organizations FOR SELECT TO jobs_user
    USING (id = (SELECT jobs_current_org()));
CREATE POLICY users_user ON users FOR SELECT TO jobs_user
    USING (organization_id = (SELECT jobs_current_org()));
CREATE POLICY courses_user ON courses FOR SELECT TO jobs_user
    USING (organization_id = (SELECT jobs_current_org()));
CREATE POLICY course_modules_user ON course_modules FOR SELECT TO jobs_user
    USING (EXISTS (SELECT 1 FROM courses c WHERE c.id = course_modules.course_id));
CREATE POLICY job_status_user ON job_status FOR SELECT TO jobs_user
    USING (organization_id = (SELECT jobs_current_org())
           AND (user_id = (SELECT jobs_current_user()) OR (SELECT jobs_current_is_admin())));
CREATE POLICY job_events_user ON job_events FOR SELECT TO jobs_user
    USING (EXISTS (SELECT 1 FROM job_status j WHERE j.job_id = job_events.job_id));

-- Hands every object of the schema to jobs_owner; migrate() calls it after each run, so that
-- objects of later migrations follow. SECURITY DEFINER functions then run as jobs_owner, who is
-- bound by the policies above, and not as whoever ran the migration.
CREATE PROCEDURE jobs_assign_owner() LANGUAGE plpgsql AS $$
DECLARE
    o record;
BEGIN
    FOR o IN
        SELECT c.oid::regclass AS name FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
           AND c.relowner <> 'jobs_owner'::regrole
    LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO jobs_owner', o.name);
    END LOOP;
    FOR o IN
        SELECT p.oid::regprocedure AS name FROM pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace AND p.proowner <> 'jobs_owner'::regrole
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO jobs_owner', o.name);
    END LOOP;
END $$;

-- Privileges. Functions are executable by PUBLIC by default: nobody gets one unless named here.
REVOKE ALL ON ALL ROUTINES IN SCHEMA public FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO jobs_owner, jobs_worker, jobs_user;

-- The worker runs the lifecycle (the transition functions run with its privileges), initializes
-- courses and heart-beats; it never deletes, and never changes who belongs to an organization.
GRANT SELECT ON organizations, users, job_states, job_transitions TO jobs_worker;
GRANT SELECT, UPDATE ON courses TO jobs_worker;
GRANT SELECT, INSERT ON course_modules, job_events TO jobs_worker;
GRANT SELECT, INSERT, UPDATE ON job_status, workers TO jobs_worker;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO jobs_worker;
GRANT EXECUTE ON ALL ROUTINES IN SCHEMA public TO jobs_worker;
-- A cancellation is a user's act: it goes through jobs_user and job_cancel_request.
REVOKE EXECUTE ON FUNCTION job_cancel(uuid, uuid, text), job_cancel_request(uuid, text) FROM jobs_worker;

GRANT SELECT ON organizations, users, courses, course_modules, job_status, job_events TO jobs_user;
GRANT EXECUTE ON FUNCTION jobs_current_user(), jobs_current_org(), jobs_current_is_admin(),
    job_cancel_request(uuid, text) TO jobs_user;
