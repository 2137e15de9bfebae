-- The operators' list of every tenant's jobs (jobctl list without --as), newest first in keyset
-- pages of (created_at, job_id). The indexes of 0002 and 0008 all begin with the organization,
-- so without this one the list sorted the whole table on every page (a parallel scan of 10^6
-- rows: ~0.4 s), and `list --watch` did it at every redraw. Tenants' lists keep theirs.
CREATE INDEX job_status_created_idx ON job_status (created_at DESC, job_id DESC);
