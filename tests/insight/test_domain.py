"""The pure parts of delivery insight: percentiles, launch profiles, verdicts on empty days, odd keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from codexk8s_pipelines.domain import delivery_metrics as dm
from codexk8s_pipelines.domain.rules import DEFAULT_LAUNCH_PROFILES

T = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.mark.parametrize("values", [[5.0], [1.0, 2.0], [3.0, 1.0, 2.0, 10.0], list(np.arange(0, 97, 3.5))])
def test_percentile_interpolates_like_numpy(values: list[float]) -> None:
    for q in (0, 50, 95, 100):
        assert dm.percentile(values, q) == pytest.approx(float(np.percentile(values, q)), abs=1e-12)
    assert dm.percentile([], 50) is None


def test_launch_profile_is_the_shortest_path_holding_every_stage() -> None:
    profiles = DEFAULT_LAUNCH_PROFILES
    assert dm.infer_profile(["plan", "dev", "qa"], profiles) == "quick-fix"
    assert dm.infer_profile(["prd", "dev"], profiles) == "feature"
    assert dm.infer_profile(["vision", "dev", "doc-audit"], profiles) == "new-service"  # off-path stages ignored
    # No main-path stage: the off-path stage it ran names it (an empty set of main-path stages fits every profile).
    assert dm.infer_profile(["self-improve"], profiles) == "self-improve"
    assert dm.infer_profile(["doc-audit", dm.REVIEWER], profiles) == "doc-audit"
    assert dm.infer_profile([], profiles) == "unknown"
    assert dm.infer_profile([dm.REVIEWER], profiles) == "unknown"
    assert dm.infer_profile(["doc-audit", "self-improve"], profiles) == "unknown"
    assert dm.infer_profile(["dev"], {"only-plan": ("plan",)}) == "unknown"


def test_an_empty_day_passes_its_checks_and_says_why() -> None:
    empty = dm.approval_latency([], T, T + timedelta(days=1))
    verdict = dm.approval_slo(empty, 24)
    assert verdict.passed and "no approval granted" in verdict.description
    target = dm.bypass_target(dm.BypassRate("dev", 0, 0, {}), 0.95)
    assert target.passed and "no first run:dev run finished" in target.description


def test_keys_that_are_not_runs_are_skipped() -> None:
    def ev(key: str, kind: str) -> dm.AuditEvent:
        return dm.AuditEvent(1, key, kind, "system", "x", {}, T)

    assert dm.run_fact("acme/shop#1:intake:2026-03-02T00:00:00Z", [ev("k", "intake.item_failed")]) is None
    assert dm.run_fact("not a key", [ev("not a key", "run.started")]) is None
    assert dm.run_fact("acme/shop#1:run:dev:1", [ev("acme/shop#1:run:dev:1", "approval.requested")]) is None
    fact = dm.run_fact("acme/shop#1:run:dev:1", [ev("acme/shop#1:run:dev:1", "run.failed")])
    assert fact is not None and fact.outcome == "failed" and fact.reason == "unknown" and fact.duration_seconds is None


def test_tokens_of_an_agent_step_are_read_from_the_usage_the_runner_writes() -> None:
    # `run.agent.finished` carries `Usage.to_dict()`: tokens as `input`/`output` (cached input inside input).
    from codexk8s_pipelines.agents.usage import Usage

    key = "acme/shop#1:run:dev:1"
    usage = Usage("codex", input=1200, cached_input=200, output=300, reasoning=50, cost_usd=0.25)

    def ev(i: int, kind: str, payload: dict[str, object]) -> dm.AuditEvent:
        return dm.AuditEvent(i, key, kind, "system", "x", payload, T + timedelta(minutes=i))

    events = [
        ev(1, "run.started", {}),
        ev(2, "run.agent.finished", {"usage": usage.to_dict()}),
        ev(3, "run.succeeded", {}),
    ]
    fact = dm.run_fact(key, events)
    assert fact is not None
    assert (fact.tokens, fact.cost, fact.currency) == (1500, 0.25, "USD")
    silent = dm.run_fact(key, [events[0], ev(2, "run.agent.finished", {"usage": Usage("aider").to_dict()}), events[2]])
    assert silent is not None and (silent.tokens, silent.cost, silent.currency) == (None, None, None)
