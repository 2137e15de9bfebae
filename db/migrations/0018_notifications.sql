-- Live views (the API's streams) learn of changes from PostgreSQL, as they are committed.
--
-- NOTIFY carries ids only: any role that can connect can LISTEN on any channel, so a payload is
-- visible across tenants. A stream that hears of a job re-reads it as its own user, under
-- row-level security.
--
-- Channel `job_events`: the id of a job that gained events; channel `job_progress`: the id of a
-- job whose progress was written. PostgreSQL drops a payload already sent by the same
-- transaction, so a job written twice in one transaction (a group commit's batch) is announced
-- once. The progress writer of each worker process writes at most one batch per interval
-- (JOBS_PROGRESS_INTERVAL_MS), so a chatty job can't flood the server or the database.
--
-- Delivery is at commit, in commit order. A notification is lost while its listener is
-- disconnected; streams don't depend on it for what they send, only for when they look:
-- each reads what was committed since its last read (below), and reads again after a reconnect.

-- Which transaction wrote each event. A reader remembers the snapshot of its last read; the
-- events new to it are those whose transaction that snapshot did not see and its own does
-- (pg_visible_in_snapshot). Ids don't give that order: an event's id is drawn when it is inserted,
-- and a transaction that drew a smaller id can commit after one that drew a larger. Rows of
-- earlier releases keep NULL (no rewrite of the table): they were committed before any reader
-- of this release started.
ALTER TABLE job_events ADD COLUMN writer_xid xid8;
ALTER TABLE job_events ALTER COLUMN writer_xid SET DEFAULT pg_current_xact_id();
CREATE INDEX job_events_writer_xid_idx ON job_events (writer_xid);

-- Only the lifecycle functions (owned by jobs_owner) insert events, and none names this column
-- (0013_writes_through_functions.sql): the default is always what is stored.

CREATE FUNCTION job_events_notify() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM pg_notify('job_events', NEW.job_id::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER job_events_notify AFTER INSERT ON job_events
    FOR EACH ROW EXECUTE FUNCTION job_events_notify();

-- Progress is a column of the row, not an event.
CREATE FUNCTION job_progress_notify() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM pg_notify('job_progress', NEW.job_id::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER job_progress_notify AFTER UPDATE OF progress, progress_message ON job_status
    FOR EACH ROW
    WHEN (OLD.progress IS DISTINCT FROM NEW.progress OR OLD.progress_message IS DISTINCT FROM NEW.progress_message)
    EXECUTE FUNCTION job_progress_notify();
