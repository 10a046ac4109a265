"""A whole `stage_dev` run with a real agent program: the sensor's RunRequest, the real binary against the scripted
model (through the runner, its sandbox and the agent setup), a commit pushed to a bare remote, the PR on the test
GitHub server, and the service comment with the agent's usage. Then what must not look like success."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.delivery.conftest import REPO, Stage, stage
from tests.github_server import github_server
from tests.helpers import free_port
from tests.mcp_tools.test_http_serve import _command, _wait_for_port
from tests.model_server import LAST_OUTPUT, CallTool, ModelServer, Say, Shell, WriteFile, edit_block

from .conftest import AGENT_BIN, KINDS, MODEL_KEY, require_agent

CART = "def checkout(cart):\n    return sum(cart) if cart else 0\n"
DONE = json.dumps(
    {"summary": "Empty carts no longer crash.", "status": "done", "diagnosis": None, "next_step_hint": "run:qa"}
)


@pytest.fixture
def model() -> Iterator[ModelServer]:
    with ModelServer() as server:
        yield server


@pytest.fixture
def mcp_http(stage: Stage, tmp_path: Path) -> Iterator[str]:
    """`codexk8s mcp serve --transport http` on the stage's database, GitHub and signing secret."""
    port = free_port()
    log = tmp_path / "mcp-serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*_command(), "mcp", "serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port)],
            env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
    try:
        _wait_for_port(proc, port, log)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _use_agent(
    stage: Stage,
    model: ModelServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    kind: str,
    base_url: str | None = None,
    extra: str = "",
) -> None:
    """The catalog the run uses: role `dev` (and `plan`'s em) played by `kind`, its endpoint the scripted model."""
    require_agent(kind)
    catalog = tmp_path / "real-agents.yaml"
    url = base_url or model.v1
    catalog.write_text(
        f"kinds:\n  {kind}: {{endpoint: {{base_url: '{url}', key_env: SCRIPTED_MODEL_KEY}}}}\n"
        f"agents:\n  dev: {{kind: {kind}}}\n  em: {{kind: {kind}}}\n{extra}"
    )
    monkeypatch.setenv("CODEXK8S_AGENT_CATALOG", str(catalog))
    monkeypatch.setenv("SCRIPTED_MODEL_KEY", MODEL_KEY)
    monkeypatch.setenv("PATH", f"{AGENT_BIN}:/usr/local/bin:/usr/bin:/bin")


def _issue_run(stage: Stage, label: str = "run:dev", title: str = "Checkout fails on an empty cart"):
    number = stage.state.add_issue(REPO, title, body="Steps: open the cart, pay. Expected: no crash.")
    stage.trigger()
    stage.state.label(REPO, number, label, actor="alice")
    (request,) = stage.trigger()
    return number, request


def _comment(stage: Stage, number: int) -> str:
    bodies = [c["body"] for c in stage.state.comments(REPO, number) if "<!-- codexk8s:run " in c["body"]]
    assert len(bodies) == 1, bodies
    return bodies[0]


def _edit_steps(kind: str) -> list:
    if kind == "aider":  # one answer with both files as SEARCH/REPLACE blocks
        return [Say(edit_block("src/cart_guard.py", CART) + edit_block(".codexk8s/result.json", DONE))]
    return [
        Shell("echo checked > /dev/null"),
        WriteFile("src/cart_guard.py", CART),
        WriteFile(".codexk8s/result.json", DONE),
        Say("Done."),
    ]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", KINDS)
def test_run_dev_with_a_real_agent_pushes_opens_the_pr_and_reports_usage(
    kind: str,
    stage: Stage,
    model: ModelServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _use_agent(stage, model, monkeypatch, tmp_path, kind)
    model.script(*_edit_steps(kind))
    number, request = _issue_run(stage)
    result = stage.execute(request)
    comment = _comment(stage, number)
    assert result.success, comment

    branch = f"codex/issue-{number}"
    assert stage.branches() == sorted([branch, "main"])
    assert "Empty carts no longer crash." in comment and "`src/cart_guard.py`" in comment
    assert "Usage" in comment and "tokens" in comment  # the agent's own figures, in the comment
    turns = model.turns()
    assert "Checkout fails on an empty cart" in turns[0].text  # the platform's prompt reached the model
    # A model the pinned agent knows (the platform default gpt-5.4 is not in Codex's, Claude's or aider's list, so
    # their default stands in; OpenCode declares the gateway's model itself), the reasoning effort in the agent's
    # own request format, and the key the endpoint names.
    expected = {"codex": "gpt-5.5", "claude-code": "claude-sonnet-4-6", "opencode": "gpt-5.4", "aider": "gpt-5.2"}
    assert turns[0].body["model"] == expected[kind]
    effort = {"codex": ("reasoning", "effort"), "aider": ("reasoning_effort",)}.get(kind)
    if effort:
        value = turns[0].body
        for key in effort:
            value = value[key]
        assert value == "high"
    auth = {r.headers.get("authorization") or r.headers.get("x-api-key") or "" for r in turns}
    assert all(MODEL_KEY in a for a in auth)
    events = stage.store.events(request.run_key or "")
    finished = next(e for e in events if e["event_type"] == "run.agent.finished")
    assert finished["payload"]["sandboxed"] is True  # the real program ran inside the platform's own sandbox
    usage = finished["payload"]["usage"]
    assert usage["agent"] == kind and usage["input"] and usage["input"] > 0
    types = [e["event_type"] for e in events]
    assert "run.pr.created" in types
    assert ("run.model.substituted" in types) == (kind != "opencode")  # audited where the default stood in


@pytest.mark.timeout(240)
def test_codex_whose_tools_all_fail_is_a_failed_run_with_its_diagnosis_and_no_pr(
    stage: Stage,
    model: ModelServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _use_agent(stage, model, monkeypatch, tmp_path, "codex")
    model.script(Shell("false"), Shell("cat no-such-file"), Say("I fixed the empty cart."))
    number, request = _issue_run(stage)
    result = stage.execute(request)
    assert not result.success
    comment = _comment(stage, number)
    assert "Run finished" not in comment and "agent_tools_failed" in comment
    assert "I fixed the empty cart." in comment  # the agent's claim, shown as what it said, not as a result
    assert stage.branches() == ["main"]
    assert not [e for e in stage.store.events(request.run_key or "") if e["event_type"] == "run.pr.created"]
    assert "state:in-review" not in stage.state.labels(REPO, number)


@pytest.mark.timeout(240)
def test_an_unreachable_model_fails_fast_as_model_unreachable(
    stage: Stage,
    model: ModelServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _use_agent(stage, model, monkeypatch, tmp_path, "codex", base_url=f"http://127.0.0.1:{free_port()}/v1")
    number, request = _issue_run(stage)
    result = stage.execute(request)
    assert not result.success
    comment = _comment(stage, number)
    assert "model_unreachable" in comment and "127.0.0.1" in comment
    run = stage.store.get_run(request.run_key or "")
    assert run is not None and run["status"] == "failed"


@pytest.mark.timeout(240)
def test_a_markdown_only_stage_refuses_the_code_the_real_agent_wrote(
    stage: Stage,
    model: ModelServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _use_agent(stage, model, monkeypatch, tmp_path, "codex")
    model.script(WriteFile("src/cart_guard.py", CART), WriteFile("docs/plan.md", "# Plan\n"),
                 WriteFile(".codexk8s/result.json", DONE), Say("Planned."))  # fmt: skip
    number, request = _issue_run(stage, "run:plan", "Plan the refactoring")
    assert not stage.execute(request).success
    comment = _comment(stage, number)
    assert "write_scope_violation" in comment and "`src/cart_guard.py`" in comment
    assert stage.branches() == ["main"]


@pytest.mark.timeout(300)
def test_a_codex_revise_resumes_the_session_of_the_branch_and_audits_it(
    stage: Stage,
    model: ModelServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _use_agent(stage, model, monkeypatch, tmp_path, "codex")
    model.script(*_edit_steps("codex"))
    number, first = _issue_run(stage)
    assert stage.execute(first).success
    first_done = next(e for e in stage.store.events(first.run_key or "") if e["event_type"] == "run.agent.finished")
    session = first_done["payload"]["session_id"]
    assert session

    revised = json.dumps({"summary": "Revised as asked.", "status": "done", "diagnosis": None, "next_step_hint": None})
    model.script(WriteFile("src/cart_note.md", "reviewed\n"), WriteFile(".codexk8s/result.json", revised), Say("ok"))
    stage.state.label(REPO, number, "run:dev:revise", actor="alice")
    (revise,) = stage.trigger()
    assert stage.execute(revise).success
    turn = model.turns()[0]
    assert "Checkout fails on an empty cart" in turn.text  # the first run's conversation went on
    done = next(e for e in stage.store.events(revise.run_key or "") if e["event_type"] == "run.agent.finished")
    assert done["payload"]["previous_session_id"] == session and done["payload"]["session_id"] == session
    assert done["payload"]["usage"]["input"] == 3 * 1200  # its own turns only, not the session's total
    marker = f"<!-- codexk8s:run {revise.run_key} -->"
    (comment,) = [c["body"] for c in stage.state.comments(REPO, number) if marker in c["body"]]
    assert f"continuing session {session}" in comment  # the humans see that the conversation went on


@pytest.mark.timeout(300)
def test_codex_reports_its_status_through_the_platforms_mcp_server_into_the_service_comment(
    stage: Stage,
    model: ModelServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    mcp_http: str,
) -> None:
    _use_agent(stage, model, monkeypatch, tmp_path, "codex")
    monkeypatch.setenv("CODEXK8S_MCP_URL", mcp_http)
    model.script(
        Shell("printenv CODEXK8S_MCP_TOKEN"),
        CallTool("run_status_report", {"token": LAST_OUTPUT, "status_line": "Reading the cart code through MCP"}),
        *_edit_steps("codex")[1:],
    )
    _number, request = _issue_run(stage)
    assert stage.execute(request).success
    statuses = [e for e in stage.store.events(request.run_key or "") if e["event_type"] == "run.agent.status_reported"]
    assert [e["payload"]["status"] for e in statuses] == ["Reading the cart code through MCP"]
    assert "Reading the cart code through MCP" in _comment(stage, _number)  # the agent's status, for the humans


__all__ = ["github_server", "stage"]


@pytest.mark.timeout(240)
def test_a_blocked_agent_opens_no_pr_and_its_diagnosis_is_in_the_comment(
    stage: Stage,
    model: ModelServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _use_agent(stage, model, monkeypatch, tmp_path, "codex")
    blocked = json.dumps(
        {"summary": "Not done.", "status": "blocked", "diagnosis": "Which currency should an empty cart show?",
         "next_step_hint": None}
    )  # fmt: skip
    model.script(WriteFile("src/cart_guard.py", CART), WriteFile(".codexk8s/result.json", blocked), Say("Blocked."))
    number, request = _issue_run(stage)
    assert not stage.execute(request).success
    comment = _comment(stage, number)
    assert "Agent blocked" in comment and "Which currency should an empty cart show?" in comment
    assert "Run finished" not in comment and stage.branches() == ["main"]
    labels = stage.state.labels(REPO, number)
    assert "state:blocked" in labels and "state:in-review" not in labels
    assert "run.blocked" in [e["event_type"] for e in stage.store.events(request.run_key or "")]
