"""A synthetic delivery history with known timings, written through the store's own API.

Each issue goes through a launch profile's stages (plan, prd or arch, then dev), with some approvals (granted or
expired), queue waits, failures, cancellations, failed preconditions and their reruns, revise loops from review
comments, need:input, launches by hand, PRs and merges. Besides the audit rows, the generator keeps its own record
of the truth (`Truth`): the tests compute every expected figure from that record, never from the audit trail.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from codexk8s_pipelines.domain.correlation import correlation_key
from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.database import EventRecord, RunRecord

BASE = datetime(2026, 3, 1, tzinfo=UTC)  # the history spans 2026-03-01 .. 2026-03-04; the tests look at 03-02
REPOS = ("acme/shop", "acme/api")
PROFILE_STAGE = {"quick-fix": "plan", "feature": "prd", "new-service": "arch"}
FAIL_REASONS = ("agent_failed", "write_scope_violation", "timeout")


@dataclass
class TRun:
    key: str
    repository: str
    issue: int
    stage: str
    revise: bool
    requested: datetime | None
    started: datetime
    finished: datetime
    outcome: str  # succeeded | failed | canceled
    reason: str | None
    precondition: bool = False
    manual: bool = False
    interventions: set[str] = field(default_factory=set)


@dataclass
class TApproval:
    repository: str
    stage: str
    requested: datetime
    granted: datetime | None
    expired: datetime | None


@dataclass
class TIssue:
    repository: str
    number: int
    profile: str
    first_trigger: datetime
    merged: datetime | None = None
    approval_wait: float = 0.0
    queue_wait: float = 0.0
    working: float = 0.0


@dataclass
class Truth:
    runs: list[TRun] = field(default_factory=list)
    approvals: list[TApproval] = field(default_factory=list)
    issues: list[TIssue] = field(default_factory=list)
    events: int = 0


class _Writer:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.events: list[EventRecord] = []
        self.manual_runs: list[RunRecord] = []
        self.truth = Truth()
        self.next_event = 1000

    def event_id(self) -> int:
        self.next_event += 1
        return self.next_event

    def add(
        self, key: str, event_type: str, at: datetime, actor: str = "dagster", actor_type: str = "system", **payload
    ):
        self.events.append(EventRecord(key, event_type, actor_type, actor, payload, at))

    def seconds(self, low: int, high: int) -> timedelta:
        return timedelta(seconds=self.rng.randint(low, high))

    def run(
        self, issue: TIssue, stage: str, at: datetime, *, revise: bool = False, pr: int | None = None,
        approval: bool = False, manual: bool = False, force: str | None = None,
    ) -> TRun:  # fmt: skip
        """One run from its trigger at `at`: approval (maybe), queue, agent work, finish. Returns the truth."""
        repo, number = issue.repository, issue.number
        label = f"run:{stage}" + (":revise" if revise else "")
        where = pr if pr is not None else number
        event = f"review-{self.event_id()}" if revise else self.event_id()
        key = correlation_key(repo, where, label, "manual" if manual else event)
        decision = {"kind": "run", "stage": stage, "revise": revise, "trigger_label": label, "add_labels": []}
        requested: datetime | None = at
        if manual:
            requested = None
            self.manual_runs.append(RunRecord(key, repo, "dev", stage, revise, number))
        elif approval:
            self.add(key, "approval.requested", at, "alice", "human", **{**decision, "kind": "approval_required"})
            expire = self.rng.random() < 0.15
            if expire:
                expired_at = at + timedelta(hours=24)
                self.add(key, "approval.expired", expired_at, "github-sensor")
                self.truth.approvals.append(TApproval(repo, stage, at, None, expired_at))
                issue.approval_wait += 24 * 3600
                # The maintainer puts the label back: a new event, this time without an approval request.
                return self.run(issue, stage, expired_at + self.seconds(600, 7200), revise=revise, pr=pr, force=force)
            granted = at + self.seconds(300, 40 * 3600)
            self.add(key, "approval.approved", granted, "mallory", "human")
            self.truth.approvals.append(TApproval(repo, stage, at, granted, None))
            issue.approval_wait += (granted - at).total_seconds()
            requested = granted
            self.add(key, "run.requested", granted, "mallory", "human", **decision)
            self.add(key, "approval.applied", granted, "github-sensor")
        else:
            self.add(key, "run.requested", at, "alice", "human", **decision)
        started = (requested or at) + self.seconds(5, 900)
        self.add(key, "run.started", started, dagster_run_id=f"run-{self.event_id():08d}")
        self.add(key, "service_comment.upserted", started, comment_id=1, phase="started")
        if requested is not None:
            issue.queue_wait += (started - requested).total_seconds()
        finished = started + self.seconds(60, 3 * 3600)
        issue.working += (finished - started).total_seconds()
        roll = self.rng.random()
        outcome = force or (
            "succeeded" if roll < 0.78 else "failed" if roll < 0.90 else "precondition" if roll < 0.95 else "canceled"
        )
        truth = TRun(key, repo, number, stage, revise, requested, started, finished, "succeeded", None, manual=manual)
        if self.rng.random() < 0.05:
            mid = started + (finished - started) / 2
            self.add(key, "run.labels.changed", mid, "mcp", "agent", removed=[], added={str(number): ["need:input"]})
            truth.interventions.add("need_input")
        if outcome == "succeeded":
            self.add(key, "run.agent.finished", finished, status="succeeded", reason="ok", duration_seconds=1.0,
                     usage={"cost_usd": 0.25})  # fmt: skip
            self.add(key, "run.succeeded", finished)
        elif outcome == "failed":
            truth.outcome, truth.reason = "failed", self.rng.choice(FAIL_REASONS)
            self.add(key, "run.failed", finished, reason=truth.reason, message="it broke")
            if self.rng.random() < 0.25:  # someone re-executes the failed Dagster run from the UI: an override
                again = finished + self.seconds(60, 600)
                self.add(key, "run.started", again, dagster_run_id=f"run-{self.event_id():08d}")
                done = again + self.seconds(5, 60)
                self.add(key, "run.failed.outside_ops", done, message="crashed again")
                truth.interventions.add("override")
                # The run is its last attempt (outcome, reason, duration, day); both attempts are work.
                truth.started, truth.finished, truth.reason = again, done, "outside_ops"
                issue.working += (done - again).total_seconds()
        elif outcome == "precondition":
            truth.outcome, truth.reason, truth.precondition = "failed", "no_branch", True
            self.add(key, "run.failed.precondition", finished, reason="no_branch", message="branch missing")
        else:
            truth.outcome, truth.reason = "canceled", "cancelled"
            self.add(key, "run.canceled", finished, message="cancelled in Dagster")
        self.truth.runs.append(truth)
        return truth


def generate(store: PlatformStore, issues: int = 1000, seed: int = 18) -> Truth:
    w = _Writer(seed)
    for i in range(issues):
        repo = REPOS[i % len(REPOS)]
        number = 1 + i // len(REPOS)
        self_improve = i % 10 == 9
        profile = ("quick-fix", "feature", "new-service")[w.rng.randrange(3)]
        t0 = BASE + w.seconds(0, 3 * 86400)
        issue = TIssue(repo, number, "self-improve" if self_improve else profile, t0)
        need_input_at: list[datetime] = []
        if w.rng.random() < 0.05:  # a refused label first: the lead time starts there
            key = correlation_key(repo, number, "run:dev", w.event_id())
            w.add(key, "trigger.ignored", t0, "eve", "human", kind="ignored", reason="actor_not_permitted",
                  add_labels=[], stage="dev")  # fmt: skip
            t0 += w.seconds(600, 3600)
        if w.rng.random() < 0.04:  # conflicting labels: need:input, then the maintainer fixes them
            label = "run:self-improve" if self_improve else "run:dev"
            key = correlation_key(repo, number, label, w.event_id())
            w.add(key, "trigger.conflict", t0, "alice", "human", kind="conflict", reason="multiple_run_labels",
                  add_labels=["need:input"])  # fmt: skip
            need_input_at.append(t0)
            t0 += w.seconds(600, 3600)
        stages = ["self-improve"] if self_improve else [PROFILE_STAGE[profile], "dev"]
        at = t0
        last_dev: TRun | None = None
        for stage in stages:
            attempts = 0
            while True:
                attempts += 1
                manual = stage == "dev" and attempts == 1 and w.rng.random() < 0.03
                approval = not manual and stage == "dev" and w.rng.random() < 0.2
                force = "succeeded" if attempts >= 3 else None
                run = w.run(issue, stage, at, approval=approval, manual=manual, force=force)
                if stage in ("dev", "self-improve"):
                    previous = last_dev
                    since = previous.finished if previous else None
                    if any((since is None or t > since) and t <= run.finished for t in need_input_at):
                        run.interventions.add("need_input")
                    if run.manual:
                        run.interventions.add("override")
                    if previous is not None and previous.precondition:
                        run.interventions.add("rerun_after_failed_precondition")
                    last_dev = run
                at = run.finished + w.seconds(60, 4 * 3600)
                if run.outcome == "succeeded":
                    break
        if self_improve or last_dev is None:
            w.truth.issues.append(issue)
            continue
        pr = 100000 + i
        w.add(last_dev.key, "run.pr.created", last_dev.finished, number=pr, url=f"https://github.test/{repo}/pull/{pr}")
        # Revise loops: a reviewer asks for changes on the PR, the dev revise runs.
        for _ in range(w.rng.choice((0, 0, 1, 2))):
            w.run(issue, "dev", at, revise=True, pr=pr, force="succeeded")
            at = w.truth.runs[-1].finished + w.seconds(60, 4 * 3600)
        if w.rng.random() < 0.7:
            issue.merged = at + w.seconds(600, 48 * 3600)
            if w.rng.random() < 0.1:  # someone pushed to the PR by hand: seen when it merges
                hand = correlation_key(repo, number, "pr:hand_edited", pr)
                w.add(hand, "pr.hand_edited", issue.merged, "github-sensor", number=pr, head="a", platform_commit="b")
                last_dev.interventions.add("hand_edited_pr")
            key = correlation_key(repo, number, "pr:merged", pr)
            w.add(key, "pr.merged", issue.merged, "bob", "human", number=pr, merged_by="bob")
        w.truth.issues.append(issue)
    for record in w.manual_runs:
        store.register_run(record)
    w.events.sort(key=lambda e: e.at or BASE)
    w.truth.events = store.append_events(w.events)
    return w.truth
