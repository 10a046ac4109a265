-- Delivery insight: the whole story of one issue is every audit row whose correlation key starts with
-- `<owner>/<repo>#<number>:`. A prefix LIKE can use a btree only with pattern ordering (the database's collation
-- may not be C), so the trace and the per-issue lookups of the daily metrics get their own index. The daily
-- scans themselves use flow_events_type_idx (event_type, created_at): their cost follows the day's rows.
CREATE INDEX flow_events_key_prefix_idx ON flow_events (correlation_key text_pattern_ops, id);
