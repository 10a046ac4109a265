"""Self-improve cadence after the evidence issue was taken up: the new evidence goes to a new labelled issue.

An evidence issue starts one self-improve run; after it the issue keeps what its run read and its PR cites.
Refreshing it in place would start nothing (the trigger label is off, or the run already happened) and use up the
evidence; only an issue no run has taken up yet is refreshed, and while its run is in flight the evidence waits.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from codexk8s_pipelines.autonomous.self_improve import self_improve_evidence
from codexk8s_pipelines.autonomous.self_improve.placement import place
from codexk8s_pipelines.config import PlatformConfig
from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.database import RunRecord
from codexk8s_pipelines.store.evidence import PREPARED_EVENT, cadence_key, last_prepared
from tests.autonomous import test_self_improve as base
from tests.autonomous.test_self_improve import REPO, _cadence_tick, _history, _run
from tests.github_server import GitHubState, github_server  # noqa: F401  (fixture)

LABEL = "run:self-improve"
cadence = base.cadence  # the fixture of the cadence tests: the fake GitHub, the config, a Dagster instance


def _materialize(env: dict) -> tuple[dict, dg.AssetCheckEvaluation]:
    """One cadence run: its materialization metadata and its check (the check names the evidence issue)."""
    result = dg.materialize(
        [self_improve_evidence], partition_key=REPO, instance=env["instance"], resources=env["resources"]
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    (check,) = result.get_asset_check_evaluations()
    return {k: v.value for k, v in event.materialization.metadata.items()}, check


def _first_issue(env: dict, store: PlatformStore) -> int:
    _history(store)
    _run(store, 8, "dev", "failed", 20, reason="agent_timeout")
    meta, _ = _materialize(env)
    assert meta["action"] == "opened" and env["state"].issue(REPO, meta["issue"]).labels == [LABEL]
    return int(meta["issue"])


def _more_runs(store: PlatformStore, first: int, count: int = 6) -> None:
    """`count` runs finished after the evidence was taken (qa, failed on tests)."""
    for n in range(first, first + count):
        _run(store, n, "qa", "failed", 3, reason="tests_failed", finished_now=True)
    with store.connect() as conn:
        conn.execute("UPDATE runs SET finished_at = now() WHERE issue_number >= %s AND stage = 'qa'", (first,))


def _self_improve_run(store: PlatformStore, issue: int, status: str) -> str:
    key = f"{REPO}#{issue}:run:self-improve:{status}"
    store.register_run(RunRecord(key, REPO, "km", stage="self-improve", issue_number=issue))
    if status != "requested":
        store.set_run_status(key, status)
    return key


def _relabel(state: GitHubState, number: int, off: list[str], on: list[str]) -> None:
    bot = state.user("codexk8s-bot", "Bot")
    for name in off:
        state.change_label(REPO, number, name, bot, add=False)
    for name in on:
        state.change_label(REPO, number, name, bot, add=True)


def test_an_issue_in_review_keeps_its_body_and_the_new_evidence_opens_a_labelled_issue(
    cadence: dict, store: PlatformStore
) -> None:
    state = cadence["state"]
    first = _first_issue(cadence, store)
    old_body, prepared = state.issue(REPO, first).body, last_prepared(store, REPO)
    # Its run succeeded: the platform took the trigger label off and put state:in-review on (the PR waits).
    _self_improve_run(store, first, "succeeded")
    _relabel(state, first, off=[LABEL], on=["state:in-review"])
    _more_runs(store, 10)
    assert len(_cadence_tick(cadence).run_requests) == 1

    meta, check = _materialize(cadence)

    second = meta["issue"]
    assert meta["action"] == "opened" and second != first and meta["previous_issue"] == first
    issue = state.issue(REPO, second)
    assert issue.labels == [LABEL] and issue.state == "open"  # the new evidence starts a self-improve run
    assert "| tests_failed | 6 |" in issue.body and "write_scope_violation" not in issue.body
    assert f"Follows #{first}" in issue.body
    old = state.issue(REPO, first)
    assert old.body == old_body and old.labels == ["state:in-review"]  # what its PR cites stays as it was
    assert last_prepared(store, REPO) is not None and last_prepared(store, REPO) != prepared
    assert check.passed and check.description is not None
    assert check.description.startswith(f"#{second} is open (it holds the evidence since #{first}")
    assert "0 of 5 runs finished" in (_cadence_tick(cadence).skip_message or "")

    # The next cadence, while the PR of #first is still in review, refreshes the new issue, not the old one.
    _more_runs(store, 30, count=5)
    again, _ = _materialize(cadence)
    assert again["action"] == "updated" and again["issue"] == second
    assert state.issue(REPO, first).body == old_body


def test_a_blocked_issue_that_kept_its_label_is_not_refreshed(cadence: dict, store: PlatformStore) -> None:
    state = cadence["state"]
    first = _first_issue(cadence, store)
    old_body = state.issue(REPO, first).body
    _self_improve_run(store, first, "failed")  # blocked: the trigger label stays, state:blocked goes on
    _relabel(state, first, off=[], on=["state:blocked"])
    _more_runs(store, 10)

    meta, _ = _materialize(cadence)

    assert meta["action"] == "opened" and meta["issue"] != first
    assert state.issue(REPO, meta["issue"]).labels == [LABEL]
    assert state.issue(REPO, first).body == old_body


def test_an_issue_whose_label_a_human_took_off_is_not_refreshed(cadence: dict, store: PlatformStore) -> None:
    state = cadence["state"]
    first = _first_issue(cadence, store)
    old_body = state.issue(REPO, first).body
    state.change_label(REPO, first, LABEL, state.user("alice"), add=False)  # no run will start from it
    _more_runs(store, 10)

    meta, _ = _materialize(cadence)

    assert meta["action"] == "opened" and meta["issue"] != first
    assert state.issue(REPO, meta["issue"]).labels == [LABEL]
    assert state.issue(REPO, first).body == old_body


def test_an_issue_no_run_took_up_yet_is_refreshed_in_place(cadence: dict, store: PlatformStore) -> None:
    state = cadence["state"]
    first = _first_issue(cadence, store)
    _more_runs(store, 10)

    meta, check = _materialize(cadence)

    assert meta["action"] == "updated" and meta["issue"] == first and "previous_issue" not in meta
    issue = state.issue(REPO, first)
    assert issue.labels == [LABEL] and "| tests_failed | 6 |" in issue.body
    assert check.passed and check.description == f"#{first} is open"
    assert "0 of 5 runs finished" in (_cadence_tick(cadence).skip_message or "")


def test_evidence_waits_while_the_issue_run_is_in_flight_then_opens_a_new_issue(
    cadence: dict, store: PlatformStore
) -> None:
    state = cadence["state"]
    first = _first_issue(cadence, store)
    old_body, prepared = state.issue(REPO, first).body, last_prepared(store, REPO)
    key = _self_improve_run(store, first, "running")  # the label is still on while its agent works
    _more_runs(store, 10)

    meta, check = _materialize(cadence)

    assert meta["action"] == "waiting" and meta["issue"] == first
    assert state.issue(REPO, first).body == old_body and list(state.repo(REPO).issues) == [first]
    assert last_prepared(store, REPO) == prepared  # not used up: the next cadence gathers it again
    assert check.passed and check.description is not None and "in flight" in check.description
    assert len(_cadence_tick(cadence).run_requests) == 1

    store.set_run_status(key, "succeeded")
    _relabel(state, first, off=[LABEL], on=["state:in-review"])
    meta, _ = _materialize(cadence)
    assert meta["action"] == "opened" and meta["issue"] != first
    assert "| tests_failed | 6 |" in state.issue(REPO, meta["issue"]).body
    assert state.issue(REPO, first).body == old_body


def test_place_reads_labels_states_and_runs(store: PlatformStore) -> None:
    scheme = PlatformConfig().label_scheme()

    def verdict(labels: list[str], issue_state: str = "open", number: int = 7) -> str:
        issue = {"number": number, "state": issue_state, "labels": [{"name": name} for name in labels]}
        return place(issue, LABEL, scheme, store, REPO).verdict

    assert verdict(["Run:Self-Improve"]) == "refresh"  # GitHub label names are case-insensitive
    assert verdict([LABEL, "state:approved"]) == "refresh"  # an approval comes before the run it approves
    assert verdict([LABEL, "state:abandoned"]) == "replace"
    assert verdict([]) == "replace"
    assert verdict([LABEL], issue_state="closed") == "replace"
    _self_improve_run(store, 7, "canceled")
    assert verdict([LABEL]) == "replace"  # a finished run took the issue up, whatever its labels say
    _self_improve_run(store, 8, "queued")
    assert verdict([], number=8) == "wait"


def test_the_prepared_event_names_the_issue_it_follows(cadence: dict, store: PlatformStore) -> None:
    state = cadence["state"]
    first = _first_issue(cadence, store)
    _relabel(state, first, off=[LABEL], on=["state:in-review"])
    _more_runs(store, 10)
    meta, _ = _materialize(cadence)
    events = [e for e in store.events(cadence_key(REPO)) if e["event_type"] == PREPARED_EVENT]
    assert [(e["payload"]["issue"], e["payload"]["previous_issue"]) for e in events][-1] == (meta["issue"], first)
    assert datetime.now(UTC) >= events[-1]["created_at"]
