-- The product's reads under row-level security. A user's policy always names their organization
-- (0006), so a member's list is (organization, user, newest first): one index walks it in order.
-- The statistics tell the planner that a user belongs to one organization; without them it
-- multiplies the two selectivities, expects a handful of rows, and sorts thousands instead.
CREATE INDEX job_status_org_user_idx ON job_status (organization_id, user_id, created_at DESC);
DROP INDEX job_status_user_idx;
CREATE STATISTICS job_status_user_org (dependencies) ON user_id, organization_id FROM job_status;
ANALYZE job_status;
