-- Approvals asked for on a pull request, and approvals withdrawn (sensors/decide.py `approval_decision`).
--
-- A review that requests changes of a stage that needs an approver asks for the approval on the PR: the "waiting
-- for approval" comment is there, the approver's `state:approved` may be put there, and the approved revise must
-- work on the PR's branch. The approval kept only the linked issue (none for a PR without one, which could then
-- never be approved), so it now keeps the PR as well. A request made by a label on an issue has no PR.
--
-- `withdrawn`: the trigger label was taken off the issue before the approval came; the approval then starts
-- nothing and closes the request.
ALTER TABLE approvals ADD COLUMN pr_number INTEGER;

-- Requests already waiting: a review's correlation key is `<repo>#<PR>:<label>:review-<id>`.
UPDATE approvals SET pr_number = substring(correlation_key FROM '#([0-9]+):')::integer
    WHERE pr_number IS NULL AND correlation_key ~ '#[0-9]+:.+:review-[0-9]+$';

ALTER TABLE approvals DROP CONSTRAINT approvals_status_check;
ALTER TABLE approvals ADD CONSTRAINT approvals_status_check
    CHECK (status IN ('requested', 'approved', 'denied', 'expired', 'applied', 'withdrawn'));
