"""A resumed revise run is capped on its own usage, not its session's: Codex's token counts and Claude Code's cost
are session totals after a resume (`usage.CUMULATIVE_ON_RESUME`), so the meter takes the session's earlier figures
off (`UsageMeter.baseline`) exactly as the recorded usage is taken (`Usage.since`).

Before the fix the meter checked the per-run cap against the session's total: a revise that used 42k tokens after a
first run of 495k was stopped as `budget_exceeded` at "537,000 tokens used > 500,000", its work discarded."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from codexk8s_pipelines.agents.agent_setup import SESSION_RECORD, AgentSettings
from codexk8s_pipelines.agents.agent_turn import AgentTurn
from codexk8s_pipelines.agents.runner_spec import SpendGuard
from codexk8s_pipelines.agents.transcript import AgentKind
from codexk8s_pipelines.agents.usage import Usage
from codexk8s_pipelines.agents.usage_meter import UsageMeter
from codexk8s_pipelines.domain.spend import Budgets, Limit, Price, PriceTable

PRICES = PriceTable("USD", {"gpt-5.5": Price(Decimal("1.25"), Decimal("0.125"), Decimal(10))})
TOKEN_CAP = Budgets(per_run=Limit(tokens=500_000))
COST_CAP = Budgets(per_run=Limit(cost=Decimal(2)))

# The session's first run, as archive_session kept it: 480k in + 15k out = 495k tokens.
CODEX_BEFORE = Usage("codex", input=480_000, cached_input=300_000, output=15_000, reasoning=0)
CLAUDE_BEFORE = Usage("claude-code", input=1_000, output=100, cost_usd=1.90)


def codex_turn(inp: int, cached: int, out: int) -> str:
    usage = {"input_tokens": inp, "cached_input_tokens": cached, "output_tokens": out, "reasoning_output_tokens": 0}
    return json.dumps({"type": "turn.completed", "usage": usage})


def claude_result(cost: float) -> str:
    usage = {"input_tokens": 100, "cache_read_input_tokens": 900, "output_tokens": 80}
    return json.dumps({"type": "result", "subtype": "success", "total_cost_usd": cost, "num_turns": 2, "usage": usage})


def test_a_resumed_codex_run_is_capped_on_its_own_tokens() -> None:
    meter = UsageMeter("codex", "gpt-5.5", PRICES, TOKEN_CAP, baseline=CODEX_BEFORE)
    # Codex reports the session's total: 520k in, 17k out = 537k, of which 42k are this run's
    assert meter.feed(codex_turn(520_000, 330_000, 17_000)) is None
    assert (meter.own.input, meter.own.output) == (40_000, 2_000)
    assert (meter.usage.input, meter.usage.output) == (520_000, 17_000)  # the figures as reported stay the floor


def test_a_resumed_codex_run_still_stops_when_its_own_tokens_pass_the_cap() -> None:
    meter = UsageMeter("codex", "gpt-5.5", PRICES, TOKEN_CAP, baseline=CODEX_BEFORE)
    stop = meter.feed(codex_turn(970_000, 330_000, 35_000))  # 490k in + 20k out of its own: 510k
    assert stop is not None and stop.reason == "budget_exceeded"
    assert stop.detail == "run budget: 510,000 tokens used > 500,000"


def test_a_resumed_claude_run_is_capped_on_its_own_cost() -> None:
    meter = UsageMeter("claude-code", "claude-sonnet-4-6", PriceTable("USD", {}), COST_CAP, baseline=CLAUDE_BEFORE)
    assert meter.feed(claude_result(2.05)) is None  # the session's $2.05, of which $0.15 is this run's
    assert meter.cost() == Decimal("0.15")
    over = UsageMeter("claude-code", "claude-sonnet-4-6", PriceTable("USD", {}), COST_CAP, baseline=CLAUDE_BEFORE)
    stop = over.feed(claude_result(4.00))  # $2.10 of its own
    assert stop is not None and stop.reason == "budget_exceeded" and "$2.10" in stop.detail


def test_a_fresh_session_is_capped_on_what_it_reports() -> None:
    meter = UsageMeter("codex", "gpt-5.5", PRICES, TOKEN_CAP)
    stop = meter.feed(codex_turn(520_000, 330_000, 17_000))
    assert stop is not None and stop.detail == "run budget: 537,000 tokens used > 500,000"


def _resumed_turn(tmp_path: Path, kind: AgentKind, session: str, previous: Usage, guard: SpendGuard) -> AgentTurn:
    """A revise as the runner runs it: metered first, then prepared, which resumes the kept session."""
    sessions = tmp_path / "sessions"
    files = sessions / "files" / (".codex/sessions/2026/01/01" if kind == "codex" else ".claude/projects/p")
    files.mkdir(parents=True)
    (files / (f"rollout-{session}.jsonl" if kind == "codex" else f"{session}.jsonl")).write_text("{}\n")
    record = {"kind": kind, "session_id": session, "usage": previous.to_dict()}
    (sessions / SESSION_RECORD).write_text(json.dumps(record), encoding="utf-8")
    launch = AgentSettings(kind=kind, model=guard.model or "", resume=True, session_dir=str(sessions))
    turn = AgentTurn(launch, tmp_path / "home", nested=True)
    turn.metered(guard)
    command = (
        ["codex", "exec", "--json", "-"] if kind == "codex" else ["claude", "-p", "--output-format", "stream-json"]
    )
    turn.prepare(command, {})
    assert turn.prepared is not None and turn.prepared.resumed_session == session
    return turn


@pytest.mark.parametrize("kind", ["codex", "claude-code"])
def test_the_runners_resumed_turn_stops_and_records_on_the_same_own_usage(tmp_path: Path, kind: AgentKind) -> None:
    """Through `AgentTurn` as the runner drives it: the meter gets the session's baseline from `prepare` (it is
    metered before), the run is not stopped, and the usage recorded is the figure the cap was checked against."""
    if kind == "codex":
        guard = SpendGuard(model="gpt-5.5", price_input=Decimal("1.25"), price_output=Decimal(10), max_tokens=500_000)
        turn = _resumed_turn(tmp_path, kind, "0199aaaa-bbbb", CODEX_BEFORE, guard)
        line = codex_turn(520_000, 330_000, 17_000)
    else:
        guard = SpendGuard(model="claude-sonnet-4-6", max_cost=Decimal(2))
        turn = _resumed_turn(tmp_path, kind, "s-1", CLAUDE_BEFORE, guard)
        line = claude_result(2.05)
    turn.line(line)
    assert turn.stop is None
    turn.finish()
    assert turn.meter is not None and turn.usage is not None
    own = turn.meter.own
    assert (turn.usage.input, turn.usage.output, turn.usage.cost_usd) == (own.input, own.output, own.cost_usd)
    if kind == "codex":
        assert (turn.usage.input, turn.usage.output) == (40_000, 2_000)
    else:
        assert turn.usage.cost_usd == pytest.approx(0.15)


def test_a_malformed_session_record_does_not_break_the_meter(tmp_path: Path) -> None:
    """The baseline comes from the kept session's record: a figure that is not a count is unknown, never a crash of
    the meter (which would leave the agent unmetered) nor a figure that lowers the run's own usage."""
    guard = SpendGuard(model="gpt-5.5", max_tokens=500_000)
    turn = _resumed_turn(tmp_path, "codex", "0199aaaa-cccc", CODEX_BEFORE, guard)
    assert turn.prepared is not None
    turn.prepared.previous_usage = {"input": "lots", "output": -5, "cost_usd": float("nan")}
    assert turn.baseline is not None and turn.baseline.input is None and turn.baseline.output is None
    assert turn.meter is not None
    turn.meter.baseline = turn.baseline
    stop = turn.meter.feed(codex_turn(520_000, 330_000, 17_000))
    assert stop is not None and stop.reason == "budget_exceeded"  # nothing known to take off: the whole report
