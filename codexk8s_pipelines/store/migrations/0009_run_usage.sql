-- What each run consumed (its agent's own report) and what starting runs hold against the budgets.

CREATE TABLE run_usage (
    id                   BIGSERIAL PRIMARY KEY,
    correlation_key      TEXT NOT NULL UNIQUE,
    repository           TEXT NOT NULL,
    issue_number         INTEGER,
    stage                TEXT,
    agent                TEXT NOT NULL,
    model                TEXT,
    -- NULL means the agent did not say ("unknown"), never 0.
    input_tokens         BIGINT,
    cached_input_tokens  BIGINT,
    output_tokens        BIGINT,
    reasoning_tokens     BIGINT,
    cost                 NUMERIC(16, 6),
    currency             TEXT NOT NULL,
    cost_source          TEXT NOT NULL,
    recorded_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Budgets and the spend asset sum a repository's, an agent's or everybody's runs over a time range.
CREATE INDEX run_usage_repository_time_idx ON run_usage (repository, recorded_at)
    INCLUDE (input_tokens, output_tokens, cost);
CREATE INDEX run_usage_agent_time_idx ON run_usage (agent, recorded_at) INCLUDE (input_tokens, output_tokens, cost);
CREATE INDEX run_usage_time_idx ON run_usage (recorded_at);
CREATE INDEX run_usage_issue_idx ON run_usage (repository, issue_number) WHERE issue_number IS NOT NULL;

-- A launch holds its reservation until its usage is recorded (or the run ends without one): two launches at
-- the same moment see each other's hold, so a budget with room for one starts one.
CREATE TABLE budget_reservations (
    correlation_key      TEXT PRIMARY KEY,
    repository           TEXT NOT NULL,
    issue_number         INTEGER,
    agent                TEXT NOT NULL,
    tokens               BIGINT NOT NULL,
    cost                 NUMERIC(16, 6) NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    released_at          TIMESTAMPTZ
);
CREATE INDEX budget_reservations_held_idx ON budget_reservations (repository, created_at) WHERE released_at IS NULL;

-- A run the budgets refused: what it would have been, until the budget is raised (the next tick starts it) or
-- an approver adds the override label.
CREATE TABLE budget_holds (
    correlation_key      TEXT PRIMARY KEY,
    repository           TEXT NOT NULL,
    issue_number         INTEGER,
    pr_number            INTEGER,
    agent                TEXT NOT NULL,
    actor                TEXT NOT NULL,
    decision             JSONB NOT NULL,
    held_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    released_at          TIMESTAMPTZ,
    released_how         TEXT CHECK (released_how IN ('budget', 'override')),
    released_by          TEXT
);
CREATE INDEX budget_holds_open_idx ON budget_holds (repository, issue_number) WHERE released_at IS NULL;
