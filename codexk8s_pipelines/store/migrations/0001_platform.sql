-- Runs, the append-only audit trail and approvals: the platform's own memory of what it decided and did.

CREATE TABLE runs (
    id              BIGSERIAL PRIMARY KEY,
    correlation_key TEXT NOT NULL UNIQUE,
    repository      TEXT NOT NULL,
    issue_number    INTEGER,
    pr_number       INTEGER,
    stage           TEXT,
    revise          BOOLEAN NOT NULL DEFAULT FALSE,
    role            TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'requested'
                    CHECK (status IN ('requested', 'queued', 'running', 'succeeded', 'failed', 'canceled')),
    dagster_run_id  TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at      TIMESTAMPTZ,
    finished_at     TIMESTAMPTZ,
    CHECK (issue_number IS NOT NULL OR pr_number IS NOT NULL)
);
CREATE INDEX runs_issue_idx ON runs (repository, issue_number, stage);
CREATE INDEX runs_pr_idx ON runs (repository, pr_number);

CREATE TABLE flow_events (
    id              BIGSERIAL PRIMARY KEY,
    correlation_key TEXT NOT NULL,
    actor_type      TEXT NOT NULL CHECK (actor_type IN ('human', 'agent', 'system')),
    actor_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    payload         JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX flow_events_key_idx ON flow_events (correlation_key, id);
CREATE INDEX flow_events_type_idx ON flow_events (event_type, created_at);

-- The audit trail is append-only, enforced by the database for every client, not by convention.
CREATE FUNCTION flow_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'flow_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER flow_events_no_update_delete BEFORE UPDATE OR DELETE ON flow_events
    FOR EACH ROW EXECUTE FUNCTION flow_events_refuse_change();
CREATE TRIGGER flow_events_no_truncate BEFORE TRUNCATE ON flow_events
    FOR EACH STATEMENT EXECUTE FUNCTION flow_events_refuse_change();

CREATE TABLE approvals (
    id              BIGSERIAL PRIMARY KEY,
    correlation_key TEXT NOT NULL UNIQUE,
    repository      TEXT NOT NULL,
    issue_number    INTEGER,
    stage           TEXT NOT NULL,
    revise          BOOLEAN NOT NULL DEFAULT FALSE,
    trigger_label   TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'requested'
                    CHECK (status IN ('requested', 'approved', 'denied', 'expired', 'applied')),
    requested_by    TEXT NOT NULL,
    approver        TEXT,
    requested_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at      TIMESTAMPTZ NOT NULL,
    decided_at      TIMESTAMPTZ,
    applied_at      TIMESTAMPTZ
);
CREATE INDEX approvals_open_idx ON approvals (status, expires_at);
