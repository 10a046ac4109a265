-- GitHub webhook deliveries: stored by the receiver before it answers, drained by the intake sensors.
-- `delivery_id` is GitHub's X-GitHub-Delivery: a redelivery of the same event is a no-op.

CREATE TABLE webhook_deliveries (
    id            BIGSERIAL PRIMARY KEY,
    delivery_id   TEXT NOT NULL UNIQUE,
    event         TEXT NOT NULL,
    action        TEXT,
    repository    TEXT,
    item_number   INTEGER,
    intake        TEXT CHECK (intake IN ('issue_labels', 'pull_requests')),
    status        TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'drained', 'ignored', 'rejected')),
    reason        TEXT,
    payload       JSONB NOT NULL DEFAULT '{}'::jsonb,
    received_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    drained_at    TIMESTAMPTZ
);
CREATE INDEX webhook_deliveries_pending_idx ON webhook_deliveries (intake, id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_repo_idx ON webhook_deliveries (repository, received_at);
