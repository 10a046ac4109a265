-- At a year's size: indexes for reads every sensor tick or MCP call makes that no index served, and drained webhook
-- deliveries without their bodies.
-- PostgreSQL before 18 has no skip scan: an index is read as a range only on a condition on its first column(s).

-- The repositories whose webhook delivered lately (store/intake.py HEALTHY_SQL), every intake tick. The index on
-- (repository, received_at) was read whole for it (12.4 ms at 200,000 deliveries on PostgreSQL 15, against 0.09 ms
-- with this one), and nothing else reads it: this one replaces it. Only the rows the read counts, with the repository
-- in the index, so the read never touches the table.
CREATE INDEX webhook_deliveries_received_idx ON webhook_deliveries (received_at) INCLUDE (repository)
    WHERE status <> 'rejected' AND repository IS NOT NULL;
DROP INDEX webhook_deliveries_repo_idx;

-- An issue's or a PR's runs whatever the case of the repository (store/database.py RUNS_OF_ITEM_SQL, the MCP run
-- history): a run launched by hand from the Dagster UI keeps the repository as its run config spelled it, so the read
-- compares lower(repository), which runs_issue_idx and runs_pr_idx cannot serve (3 to 10 ms at 100,000 runs).
CREATE INDEX runs_lower_issue_idx ON runs (lower(repository), issue_number);
CREATE INDEX runs_lower_pr_idx ON runs (lower(repository), pr_number);

-- Holds released within the rescue window whose run was never recorded (store/usage.py RELEASED_NOT_STARTED_SQL):
-- the only index on released_at kept the open holds alone.
CREATE INDEX budget_holds_released_idx ON budget_holds (released_at);

-- A drained delivery keeps no GitHub body (store/intake.py mark_drained): nothing reads it again, and a year's bodies
-- were ~286 MB of a table that only grew. The deliveries drained before drop theirs now, and their space is reused by
-- the next ones (about 2 s for 19,000 drained deliveries of 10 kB; the receiver's inserts wait for the migration).
ALTER TABLE webhook_deliveries ALTER COLUMN payload DROP NOT NULL;
UPDATE webhook_deliveries SET payload = NULL WHERE status = 'drained';
