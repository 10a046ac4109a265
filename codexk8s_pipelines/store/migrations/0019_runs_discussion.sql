-- Whether a run was a discussion (`mode:discussion` on its issue: the agent only comments, nothing is written).
--
-- qa and release need "a dev run that succeeded" on the issue (sensors/decide.py). A discussion's dev run that
-- succeeded pushed nothing, so it must not count; the run's mode lived only in its audit payload and its Dagster
-- tag, so the runs table could not tell it apart.
ALTER TABLE runs ADD COLUMN discussion BOOLEAN NOT NULL DEFAULT FALSE;

-- Runs recorded before: the decision that requested the run says whether it was a discussion.
UPDATE runs SET discussion = TRUE
    WHERE EXISTS (
        SELECT 1 FROM flow_events e
        WHERE e.correlation_key = runs.correlation_key
          AND e.event_type = 'run.requested'
          AND e.payload ->> 'discussion' = 'true'
    );
