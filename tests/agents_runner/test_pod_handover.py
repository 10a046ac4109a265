"""A Kubernetes pod's handover from the agent's container to the finish container: the usage and the stop are the
agent container's meter's (`MeterAccount`), not a replay of the newest 500 kB of output lines.

Before the fix the finish container re-read usage from the handed-over lines only: an OpenCode run whose tool calls
carried big outputs was recorded at $1.25 / 25 steps of its $3.00 / 60, and the budget stop the agent container made
was lost (the run was not judged `budget_exceeded`)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from codexk8s_pipelines.agents.agent_setup import AgentSettings
from codexk8s_pipelines.agents.agent_turn import MAX_KEPT_LINES, AgentTurn
from codexk8s_pipelines.agents.runner_spec import SpendGuard
from codexk8s_pipelines.agents.transcript import AgentKind

from .test_git_workspace import remote_head
from .test_runner import BRANCH, EDIT_CODE, _phase, make_agent, make_spec


def opencode_output(steps: int) -> list[str]:
    """`opencode run --format json`: a tool call that read a 20 kB file, then its step's usage ($0.05), per step."""
    lines = []
    for i in range(steps):
        state = {"status": "completed", "input": {"filePath": f"src/f{i}.py"}, "output": "x" * 20_000}
        lines.append(json.dumps({"type": "tool_use", "part": {"tool": "read", "state": state}}))
        tokens = {"input": 10_000, "output": 500, "reasoning": 0, "cache": {"read": 40_000, "write": 0}}
        lines.append(json.dumps({"type": "step_finish", "part": {"cost": 0.05, "tokens": tokens}}))
    return lines


def agent_container(tmp_path: Path, guard: SpendGuard, lines: list[str], kind: AgentKind = "opencode") -> AgentTurn:
    """The agent's container: every line through `line`, until the meter stops the agent (which the runner kills)."""
    turn = AgentTurn(AgentSettings(kind=kind), tmp_path / "agent-home")
    turn.metered(guard)
    for line in lines:
        turn.line(line)
        if turn.stop is not None:
            break
    turn.finish()
    return turn


def finish_container(
    tmp_path: Path, guard: SpendGuard, lines: list[str], account: Any, kind: AgentKind = "opencode"
) -> AgentTurn:
    """The finish container (`runner._finish_phase`): a new turn over the handed-over lines, the account taken."""
    turn = AgentTurn(AgentSettings(kind=kind), tmp_path / "finish-home")
    turn.lines = lines
    turn.metered(guard)
    turn.take_over(account)
    turn.finish()
    return turn


def handover(turn: AgentTurn) -> tuple[list[str], Any]:
    """What the outcome file carries, through JSON as the file does."""
    record = json.loads(json.dumps({"lines": turn.handover_lines(), "meter": turn.account().to_dict()}))
    return record["lines"], record["meter"]


UNCAPPED = SpendGuard(model="gpt-5.5", max_cost=Decimal(100))
CAPPED = SpendGuard(model="gpt-5.5", max_cost=Decimal(2))


def test_the_finish_container_records_the_agent_containers_full_usage(tmp_path: Path) -> None:
    agent = agent_container(tmp_path, UNCAPPED, opencode_output(60))
    lines, account = handover(agent)
    assert len(lines) < 120  # only the newest lines fit in the handover
    finished = finish_container(tmp_path, UNCAPPED, lines, account)
    assert finished.usage is not None and agent.usage is not None
    assert finished.usage.cost_usd == pytest.approx(3.0) and finished.usage.model_requests == 60
    assert (
        (finished.usage.input, finished.usage.output) == (agent.usage.input, agent.usage.output) == (3_000_000, 30_000)
    )
    assert finished.stop is None
    assert f"the transcript holds the newest {len(lines):,} of the agent's 120 output lines" in finished.notes


def test_the_finish_container_keeps_the_agent_containers_budget_stop(tmp_path: Path) -> None:
    agent = agent_container(tmp_path, CAPPED, opencode_output(60))
    assert agent.stop is not None and agent.stop.reason == "budget_exceeded"
    lines, account = handover(agent)
    finished = finish_container(tmp_path, CAPPED, lines, account)
    assert finished.stop == agent.stop  # the replay of the newest lines alone finds no stop ($1.25)
    assert finished.usage is not None and finished.usage.cost_usd == pytest.approx(2.05)


@pytest.mark.parametrize(
    "account",
    [
        None,
        "not an account",
        {"usage": {"agent": "codex", "cost_usd": 0.5}, "stop": None, "lines": 120},  # another agent's
        {"usage": {"agent": "opencode", "input": -5}, "stop": None, "lines": 120},  # a count that is none
        {"usage": {"agent": "opencode", "cost_usd": float("inf")}, "stop": None, "lines": 120},
        {"usage": {"agent": "opencode", "input": 1}, "stop": {"reason": "all_good", "detail": "x"}, "lines": 120},
        {"usage": {"agent": "opencode", "input": 1}, "stop": {"reason": "agent_loop"}, "lines": 120},
        {"usage": {"agent": "opencode", "input": 1}, "stop": None, "lines": "many"},
        {"usage": [1], "stop": None, "lines": 1},
    ],
)
def test_a_missing_or_malformed_account_falls_back_to_the_replay_of_the_lines(tmp_path: Path, account: Any) -> None:
    """The agent can rewrite the handover file: an account that cannot be read is ignored, as before there was one."""
    agent = agent_container(tmp_path, UNCAPPED, opencode_output(60))
    lines, _ = handover(agent)
    finished = finish_container(tmp_path, UNCAPPED, lines, account)
    assert finished.usage is not None and finished.usage.cost_usd == pytest.approx(1.25)  # today's replay
    assert finished.usage.model_requests == 25 and finished.stop is None
    assert any("no readable account of its usage" in note for note in finished.notes)


def test_a_malformed_account_still_keeps_a_stop_the_replay_finds(tmp_path: Path) -> None:
    agent = agent_container(tmp_path, UNCAPPED, opencode_output(60))
    lines, _ = handover(agent)  # the newest 25 steps: $1.25
    finished = finish_container(tmp_path, SpendGuard(model="gpt-5.5", max_cost=Decimal(1)), lines, {"junk": 1})
    assert finished.stop is not None and finished.stop.reason == "budget_exceeded"


def test_an_account_never_lowers_the_usage_or_drops_the_stop_the_replay_finds(tmp_path: Path) -> None:
    """An account rewritten to say less (or no stop) counts for nothing below what the lines show."""
    capped = SpendGuard(model="gpt-5.5", max_cost=Decimal(1))
    agent = agent_container(tmp_path, UNCAPPED, opencode_output(60))
    lines, account = handover(agent)  # the newest 25 steps: $1.25, past the finish container's $1 cap
    account["usage"].update(input=1, output=1, cost_usd=0.0001, model_requests=1)
    account["stop"] = None
    finished = finish_container(tmp_path, capped, lines, account)
    assert finished.usage is not None and finished.usage.cost_usd == pytest.approx(1.25)  # the replay's floor
    assert finished.usage.input == 1_250_000 and finished.usage.model_requests == 25
    assert finished.stop is not None and finished.stop.reason == "budget_exceeded"


def test_a_handed_over_stop_detail_is_one_bounded_line(tmp_path: Path) -> None:
    agent = agent_container(tmp_path, CAPPED, opencode_output(60))
    lines, account = handover(agent)
    account["stop"]["detail"] = "forged\n\n" + "y" * 10_000
    finished = finish_container(tmp_path, CAPPED, lines, account)
    assert finished.stop is not None and finished.stop.reason == "budget_exceeded"
    assert "\n" not in finished.stop.detail and len(finished.stop.detail) == 500


def test_the_final_report_past_the_kept_lines_is_handed_over(tmp_path: Path) -> None:
    """AgentTurn keeps the first MAX_KEPT_LINES lines for its transcript; the final `turn.completed` after them is
    still metered, in the account, and among the handed-over lines (the newest are kept for the handover)."""
    guard = SpendGuard(model="gpt-5.5", max_tokens=10**9)
    chatter = [
        json.dumps({"type": "item.started", "item": {"id": f"i{i}", "type": "reasoning"}})
        for i in range(MAX_KEPT_LINES + 50)
    ]
    final = json.dumps({"type": "turn.completed", "usage": {"input_tokens": 90_000, "output_tokens": 4_000}})
    agent = agent_container(tmp_path, guard, [*chatter, final], kind="codex")
    assert agent.usage is not None and (agent.usage.input, agent.usage.output) == (90_000, 4_000)
    lines, account = handover(agent)
    assert lines[-1] == final and account["lines"] == MAX_KEPT_LINES + 51
    finished = finish_container(tmp_path, guard, lines, account, kind="codex")
    assert finished.usage is not None and (finished.usage.input, finished.usage.output) == (90_000, 4_000)


# ------------------------------------------------------------------------------------------------ the pod's steps

OPENCODE_AGENT = (
    EDIT_CODE
    + """\
for i in range(60):
    state = {"status": "completed", "input": {"filePath": f"src/f{i}.py"}, "output": "x" * 20_000}
    print(json.dumps({"type": "tool_use", "part": {"tool": "read", "state": state}}), flush=True)
    tokens = {"input": 10_000, "output": 500, "reasoning": 0, "cache": {"read": 40_000, "write": 0}}
    print(json.dumps({"type": "step_finish", "part": {"cost": 0.05, "tokens": tokens}}), flush=True)
    time.sleep(0.01)
"""
)


def _pod(tmp_path: Path, remote: Path, max_cost: str) -> dict[str, Any]:
    spec = make_spec(
        tmp_path,
        remote,
        make_agent(tmp_path, OPENCODE_AGENT),
        git_dir=str(tmp_path / "runner-volume" / "git"),
        agent={"kind": "opencode", "model": "gpt-5.5"},
        spend={"model": "gpt-5.5", "max_cost": max_cost},
    )
    assert _phase(spec, tmp_path, "prepare", {})[1]["reason"] == "prepared"
    assert _phase(spec, tmp_path, "agent", {})[1]["reason"] == "agent_ran"
    return _phase(spec, tmp_path, "finish", {})[1]


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    from .test_git_workspace import make_remote

    return make_remote(tmp_path)


def test_the_pods_finish_step_records_the_agent_containers_usage(remote: Path, tmp_path: Path) -> None:
    finished = _pod(tmp_path, remote, "100")
    assert (finished["status"], finished["reason"]) == ("succeeded", "pushed")
    assert finished["usage"]["cost_usd"] == pytest.approx(3.0) and finished["usage"]["model_requests"] == 60


def test_the_pods_finish_step_judges_the_agent_containers_budget_stop(remote: Path, tmp_path: Path) -> None:
    finished = _pod(tmp_path, remote, "2")
    assert (finished["status"], finished["reason"]) == ("failed", "budget_exceeded")
    assert "run budget: $2.05 used > $2.00" in finished["message"] and "nothing was pushed" in finished["message"]
    assert finished["usage"]["cost_usd"] >= 2.05 and remote_head(remote, BRANCH) is None
