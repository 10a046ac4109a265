-- Findings of the periodic runs (security, freshness, drift) and the issues the platform itself opened and keeps
-- (dashboards, the self-improve evidence issue, fix issues of critical findings).

CREATE TABLE findings (
    id              BIGSERIAL PRIMARY KEY,
    repository      TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('security', 'freshness', 'drift')),
    -- Stable identity chosen by the scanner: what the finding is about, never its line or current value, so
    -- that a moved lockfile entry or a new still-vulnerable version is the same finding.
    fingerprint     TEXT NOT NULL,
    title           TEXT NOT NULL,
    severity        TEXT,
    details         JSONB NOT NULL DEFAULT '{}'::jsonb,
    first_seen      TIMESTAMPTZ NOT NULL,
    last_seen       TIMESTAMPTZ NOT NULL,
    -- A finding that disappears is resolved, not deleted; if it comes back it is reopened.
    resolved_at     TIMESTAMPTZ,
    reopened        INTEGER NOT NULL DEFAULT 0,
    UNIQUE (repository, kind, fingerprint)
);
CREATE INDEX findings_open_idx ON findings (repository, kind) WHERE resolved_at IS NULL;

CREATE TABLE platform_issues (
    id              BIGSERIAL PRIMARY KEY,
    repository      TEXT NOT NULL,
    -- 'dashboard:security', 'dashboard:freshness', 'dashboard:drift', 'self-improve', 'fix:<fingerprint>'
    purpose         TEXT NOT NULL,
    issue_number    INTEGER NOT NULL,
    -- The login GitHub answered as when the platform opened the issue: the only bot whose trigger label on
    -- this issue starts a run (see sensors/intake.py).
    opened_by       TEXT NOT NULL,
    trigger_label   TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (repository, purpose)
);
CREATE INDEX platform_issues_number_idx ON platform_issues (repository, issue_number);
