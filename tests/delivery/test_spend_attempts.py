"""A failed stage run re-executed from the Dagster UI (a new Dagster run with the same run config, so the same
correlation key) keeps what its first attempt spent: the issue's total and the month's spend count both attempts."""

from __future__ import annotations

import os
import sys
import textwrap
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from codexk8s_pipelines.config import load_config_from_environment
from codexk8s_pipelines.domain.spend import Amount
from codexk8s_pipelines.store.usage import monthly_spend, run_usage

from .conftest import REPO, Stage
from .test_budget_release import _held, with_budgets

# A Codex stand-in that reports its usage as Codex does (`turn.completed`), and fails (exits 1) until the test
# lets it succeed (a file it may read, not write: the agent writes only its checkout). Its second attempt spends
# twice what the first did.
FLAKY_AGENT = """
    import json, pathlib, sys
    sys.stdin.read()
    root = pathlib.Path(sys.argv[sys.argv.index("--workdir") + 1])  # the runner adds Codex's flags of its own
    attempt = 2 if pathlib.Path(sys.argv[sys.argv.index("--fixed") + 1]).exists() else 1
    usage = {"input_tokens": 100_000 * attempt, "cached_input_tokens": 0, "output_tokens": 10_000 * attempt}
    print(json.dumps({"type": "turn.completed", "usage": usage}), flush=True)
    if attempt == 1:
        sys.exit(1)
    app = root / "src" / "app.py"
    app.write_text(app.read_text() + "\\n# handled the empty cart\\n")
    (root / ".codexk8s").mkdir(exist_ok=True)
    (root / ".codexk8s" / "result.json").write_text(json.dumps({
        "summary": "Empty carts no longer crash the checkout.", "status": "done", "diagnosis": None,
        "next_step_hint": None}))
"""


def _flaky_codex(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "flaky_codex.py"
    script.write_text(textwrap.dedent(FLAKY_AGENT))
    catalog = Path(os.environ["CODEXK8S_AGENT_CATALOG"])
    agents = yaml.safe_load(catalog.read_text())
    agents["agents"]["dev"] = {
        "kind": "codex",
        "command": [
            sys.executable,
            str(script),
            "--json",
            "--workdir",
            "{workdir}",
            "--fixed",
            str(tmp_path / "fixed"),
        ],
    }
    catalog.write_text(yaml.safe_dump(agents))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    config = Path(os.environ["CODEXK8S_CONFIG"])
    config.write_text(
        config.read_text() + "pricing:\n  currency: USD\n  models:\n    gpt-5.5: {input: 1.25, cached_input: 0.125, "
        "output: 10}\n"
    )
    load_config_from_environment.cache_clear()


def test_a_re_executed_run_keeps_the_first_attempts_usage(
    stage: Stage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _flaky_codex(tmp_path, monkeypatch)
    with_budgets()  # the launch holds $2 until its first attempt reports; the re-execution reserves nothing
    number = stage.state.add_issue(REPO, "Checkout fails on an empty cart")
    stage.trigger()
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (request,) = stage.trigger()
    assert _held(stage) == 1
    first = stage.execute(request)
    assert not first.success
    (tmp_path / "fixed").write_text("")
    again = stage.execute(request)  # the operator's re-execution: a new Dagster run, the same run config
    assert again.success and again.run_id != first.run_id
    assert _held(stage) == 0

    # What the issue's service comment and the month's spend say: both attempts, neither replacing the other.
    # 300k input and 30k output tokens at $1.25 and $10 per million: $0.375 + $0.30.
    comments = [c["body"] for c in stage.state.comments(REPO, number) if "this issue so far" in c["body"]]
    assert comments and "this issue so far: 2 runs · 330k tokens · $0.6750" in comments[-1], comments
    now = datetime.now(UTC)
    assert monthly_spend(stage.store, now, [REPO]) == {REPO: Amount(330_000, Decimal("0.675"), 2, 0)}
    usage = run_usage(stage.store, request.run_key or "")
    assert usage is not None
    assert (usage["input_tokens"], usage["output_tokens"], usage["cost"]) == (300_000, 30_000, Decimal("0.675"))
    assert usage["dagster_run_ids"] == [first.run_id, again.run_id]
