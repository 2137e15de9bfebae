-- A send is a service's act: no job code sends jobs (retries and re-sends publish rows already
-- recorded), so the workers' role loses job_send: a compromised worker can't record a job, and
-- its `enqueued` event, in any user's name. jobs_service, which sends, gets it by name.
REVOKE EXECUTE ON FUNCTION job_send(uuid, text, text, uuid, uuid, jsonb, jsonb, jsonb, integer, bigint, text)
    FROM jobs_worker;
GRANT EXECUTE ON FUNCTION job_send(uuid, text, text, uuid, uuid, jsonb, jsonb, jsonb, integer, bigint, text)
    TO jobs_service;

-- Functions of later migrations are executable by nobody until one names who may: the
-- migrating role's default, so that a new SECURITY DEFINER function is never open to PUBLIC.
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
