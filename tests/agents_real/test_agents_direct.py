"""Each real agent program, set up by the platform, edits a checkout through the scripted model; its own report
gives the usage and the verdict. Failures are judged from what the agent did, not from its exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

from codexk8s_pipelines.agents.agent_setup import archive_session
from codexk8s_pipelines.agents.usage import Usage
from tests.helpers import free_port
from tests.model_server import USAGE, HttpError, ModelServer, Say, Shell, WriteFile

from .conftest import MODEL_KEY, run_direct

PROMPT = "Fix the empty-cart crash in src/app.py. Marker: PROMPT-7f3a."


def _auth(model: ModelServer) -> set[str]:
    return {r.headers.get("authorization") or r.headers.get("x-api-key") or "" for r in model.turns()}


@pytest.mark.parametrize("kind", ["codex", "claude-code"])  # OpenCode and aider: test_stage_real (slow starts)
def test_the_agent_edits_the_checkout_as_scripted_and_reports_its_usage(
    kind: str, model: ModelServer, checkout: Path, tmp_path: Path
) -> None:
    model.script(
        Shell("echo ran > ran.txt"), WriteFile("NOTES.md", "# Notes\nempty carts handled\n"), Say("Done."),
        workdir=checkout,
    )  # fmt: skip
    run = run_direct(kind, checkout, tmp_path / "home", PROMPT, base_url=model.v1)

    assert run.exit_code == 0, run.lines[-20:]
    assert (checkout / "NOTES.md").read_text() == "# Notes\nempty carts handled\n"
    assert (checkout / "ran.txt").read_text().strip() == "ran"
    assert model.remaining == 0
    turns = model.turns()
    assert "PROMPT-7f3a" in turns[0].text  # the platform's prompt reached the model
    assert all(MODEL_KEY in a for a in _auth(model))  # with the key named by the endpoint
    # The model and the reasoning effort the platform chose, in the agent's own request format.
    body = turns[0].body
    assert body["model"] == {"codex": "gpt-5.5", "claude-code": "claude-sonnet-4-6"}[kind]
    if kind == "codex":
        assert body["reasoning"]["effort"] == "high"

    usage = run.usage
    assert usage.known and usage.agent == kind
    n = len(turns)
    if kind == "codex":
        assert (usage.input, usage.cached_input, usage.output, usage.reasoning) == (
            n * USAGE["input"], n * USAGE["cached"], n * USAGE["output"], n * USAGE["reasoning"],
        )  # fmt: skip
        assert usage.cost_usd is None  # Codex reports no cost: unknown, never 0
    else:
        assert usage.input == n * USAGE["input"] and usage.output == n * USAGE["output"]
        assert usage.cost_usd is not None and usage.cost_usd > 0  # Claude prices its own usage
    assert run.transcript.session_id
    assert run.judge().verdict == "succeeded"


@pytest.mark.parametrize("kind", ["codex", "claude-code"])
def test_an_agent_whose_tools_all_failed_is_judged_failed_although_it_exits_0(
    kind: str, model: ModelServer, checkout: Path, tmp_path: Path
) -> None:
    model.script(Shell("false"), Shell("cat no-such-file"), Say("I fixed src/app.py."), workdir=checkout)
    run = run_direct(kind, checkout, tmp_path / "home", PROMPT, base_url=model.v1)
    assert run.exit_code == 0  # what the agent says
    assert run.transcript.tools and run.transcript.all_tools_failed
    outcome = run.judge()
    assert (outcome.verdict, outcome.reason) == ("failed", "agent_tools_failed")
    assert "I fixed src/app.py." in (outcome.diagnosis or "")  # its claim is shown as a claim, with the failures


def test_codex_against_an_endpoint_answering_500_is_a_model_error_with_the_agents_words(
    model: ModelServer, checkout: Path, tmp_path: Path
) -> None:
    model.script(*[HttpError(500, "upstream exploded")] * 4)
    run = run_direct("codex", checkout, tmp_path / "home", PROMPT, base_url=model.v1, timeout=60)
    assert run.exit_code == 1 and not run.changed
    outcome = run.judge(report_status=None, report_problem="the agent wrote no result file")
    assert (outcome.verdict, outcome.reason) == ("failed", "model_error")
    assert "the agent reported" in (outcome.diagnosis or "")


@pytest.mark.parametrize("kind", ["codex", "claude-code"])
def test_a_closed_model_port_reads_as_model_unreachable(kind: str, checkout: Path, tmp_path: Path) -> None:
    # Codex never exits on its own here (it waits for the network forever): the runner bounds it; this only
    # checks that its output is read as an unreachable endpoint.
    url = f"http://127.0.0.1:{free_port()}/v1"
    run = run_direct(kind, checkout, tmp_path / "home", PROMPT, base_url=url, timeout=5)
    assert run.transcript.unreachable and not run.transcript.model_answered
    outcome = run.judge(report_status=None, report_problem="the agent wrote no result file")
    assert (outcome.verdict, outcome.reason) == ("failed", "model_unreachable")


@pytest.mark.parametrize("kind", ["codex", "claude-code"])
def test_a_revise_resumes_the_kept_session_and_counts_only_its_own_usage(
    kind: str, model: ModelServer, checkout: Path, tmp_path: Path
) -> None:
    sessions = tmp_path / "sessions"
    model.script(Say("First pass done."), workdir=checkout)
    first = run_direct(kind, checkout, tmp_path / "home1", PROMPT, base_url=model.v1, session_dir=sessions)
    assert first.exit_code == 0 and first.transcript.session_id
    note = archive_session(kind, tmp_path / "home1", sessions, first.transcript.session_id, first.usage.to_dict())
    assert note is None

    model.script(Say("Revised."), workdir=checkout)
    second = run_direct(
        kind, checkout, tmp_path / "home2", "Reviewers asked: REVISE-91b.", base_url=model.v1, resume=True,
        session_dir=sessions,
    )  # fmt: skip
    assert second.exit_code == 0, second.lines[-10:]
    assert second.prepared.resumed_session == first.transcript.session_id
    assert second.transcript.session_id == first.transcript.session_id
    (turn,) = model.turns()
    assert "PROMPT-7f3a" in turn.text and "REVISE-91b" in turn.text  # the conversation continued
    own = second.usage.since(Usage.from_dict(first.usage.to_dict()))
    if kind == "codex":
        assert own.input == USAGE["input"]  # Codex reports the session's total after a resume
    else:
        assert own.cost_usd is not None and 0 < own.cost_usd < (second.usage.cost_usd or 0)


def test_a_revise_without_a_kept_session_starts_fresh_and_says_so(
    model: ModelServer, checkout: Path, tmp_path: Path
) -> None:
    model.script(Say("Fresh."), workdir=checkout)
    run = run_direct(
        "codex", checkout, tmp_path / "home", PROMPT, base_url=model.v1, resume=True, session_dir=tmp_path / "none"
    )
    assert run.exit_code == 0 and run.prepared.resumed_session is None
    assert any("fresh session" in n for n in run.prepared.notes)
