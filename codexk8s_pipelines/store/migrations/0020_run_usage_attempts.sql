-- Each attempt of a run keeps its own usage (store/usage.py `record_usage`).
--
-- An operator who re-executes a failed run from the Dagster UI starts a new Dagster run with the same run config,
-- hence the same correlation key. Usage was one row per key, so the second attempt's usage replaced the first's:
-- the money the first attempt spent left the spend tables, the budgets, the issue's running total, delivery
-- insight and the MCP run history (budgets under-counted, and a team could overspend). A row is now one attempt:
-- one Dagster run of the key. The same Dagster run reporting twice still replaces its own row.
--
-- Rows recorded before keep `dagster_run_id` '': the one attempt recorded under their key.
ALTER TABLE run_usage ADD COLUMN dagster_run_id TEXT NOT NULL DEFAULT '';

ALTER TABLE run_usage DROP CONSTRAINT run_usage_correlation_key_key;
-- Leads with the key: a run's attempts (`run_usage`, `usage_for_runs`, insight's `run_infos`) are one index range.
ALTER TABLE run_usage ADD CONSTRAINT run_usage_correlation_key_attempt_key UNIQUE (correlation_key, dagster_run_id);
