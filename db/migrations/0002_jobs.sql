-- One row per job (job_status) and its append-only history (job_events).
-- The rules of the lifecycle live here, so that no client, however buggy, can break them.

CREATE TABLE job_states (
    status    text PRIMARY KEY,
    terminal  boolean NOT NULL
);
INSERT INTO job_states VALUES
    ('pending', false), ('active', false), ('retrying', false),
    ('completed', true), ('failed', true), ('cancelled', true);

-- Every status change that may ever happen; the trigger below refuses any other.
CREATE TABLE job_transitions (
    from_status  text NOT NULL REFERENCES job_states (status),
    to_status    text NOT NULL REFERENCES job_states (status),
    PRIMARY KEY (from_status, to_status)
);
INSERT INTO job_transitions VALUES
    ('pending', 'active'), ('pending', 'cancelled'),
    ('retrying', 'active'), ('retrying', 'cancelled'),
    ('active', 'completed'), ('active', 'failed'), ('active', 'retrying'), ('active', 'cancelled');

CREATE TABLE job_status (
    job_id            uuid PRIMARY KEY,
    job_type          text NOT NULL,
    queue             text NOT NULL,
    organization_id   uuid NOT NULL REFERENCES organizations (id),
    user_id           uuid NOT NULL,
    course_id         uuid,
    status            text NOT NULL DEFAULT 'pending' REFERENCES job_states (status),
    attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts      integer NOT NULL CHECK (max_attempts >= 1),
    progress          smallint NOT NULL DEFAULT 0,
    progress_message  text,
    args              jsonb NOT NULL DEFAULT '[]',
    kwargs            jsonb NOT NULL DEFAULT '{}',
    result            jsonb,
    error_type        text,
    error_message     text,
    error_stack       text,
    scheduled_for     timestamptz,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at        timestamptz,
    completed_at      timestamptz,
    failed_at         timestamptz,
    cancelled_at      timestamptz,
    cancelled_by      uuid REFERENCES users (id),
    updated_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    worker_id         text,
    FOREIGN KEY (user_id, organization_id) REFERENCES users (id, organization_id),
    FOREIGN KEY (course_id, organization_id) REFERENCES courses (id, organization_id),
    CONSTRAINT job_status_progress_check CHECK (progress BETWEEN 0 AND 100),
    CONSTRAINT job_status_timestamps_check CHECK (
        created_at <= started_at
        AND started_at <= completed_at
        AND started_at <= failed_at
        AND started_at <= cancelled_at
        AND created_at <= failed_at
        AND created_at <= cancelled_at
        AND created_at <= updated_at
    ),
    -- A terminal status has its own timestamp and no other one's.
    CONSTRAINT job_status_terminal_check CHECK (
        (status = 'completed') = (completed_at IS NOT NULL)
        AND (status = 'failed') = (failed_at IS NOT NULL)
        AND (status = 'cancelled') = (cancelled_at IS NOT NULL)
    ),
    CONSTRAINT job_status_started_check CHECK (
        (status = 'pending') = (attempts = 0 AND started_at IS NULL)
        OR status = 'cancelled' OR status = 'failed'
    )
);
-- NULL comparisons in a CHECK count as passing, which is what an unset timestamp needs.

CREATE INDEX job_status_org_status_idx ON job_status (organization_id, status, created_at DESC);
CREATE INDEX job_status_user_idx ON job_status (user_id, created_at DESC);
CREATE INDEX job_status_org_created_idx ON job_status (organization_id, created_at DESC);

CREATE TABLE job_events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id         uuid NOT NULL REFERENCES job_status (job_id),
    event          text NOT NULL,
    from_status    text REFERENCES job_states (status),
    to_status      text REFERENCES job_states (status),
    attempt        integer NOT NULL,
    actor_user_id  uuid REFERENCES users (id),
    worker_id      text,
    details        jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX job_events_job_idx ON job_events (job_id, id);

CREATE FUNCTION job_status_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT terminal FROM job_states WHERE status = OLD.status) THEN
        RAISE EXCEPTION 'job % is % and can no longer change', OLD.job_id, OLD.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_status_transition_check';
    END IF;
    IF NEW.status <> OLD.status AND NOT EXISTS (
        SELECT 1 FROM job_transitions WHERE from_status = OLD.status AND to_status = NEW.status
    ) THEN
        RAISE EXCEPTION 'illegal transition % -> % for job %', OLD.status, NEW.status, OLD.job_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_status_transition_check';
    END IF;
    IF NEW.job_id <> OLD.job_id OR NEW.created_at <> OLD.created_at
       OR NEW.organization_id <> OLD.organization_id OR NEW.user_id <> OLD.user_id THEN
        RAISE EXCEPTION 'the identity of job % can not change', OLD.job_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_status_identity_check';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER job_status_guard BEFORE UPDATE ON job_status
    FOR EACH ROW EXECUTE FUNCTION job_status_guard();

CREATE FUNCTION job_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'job_events is append-only' USING ERRCODE = 'check_violation';
END $$;

CREATE TRIGGER job_events_append_only BEFORE UPDATE OR DELETE ON job_events
    FOR EACH ROW EXECUTE FUNCTION job_events_append_only();
