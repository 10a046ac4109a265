"""The runbook has a section for every failure reason a run can end with and for every failed check."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {
    "codexk8s_pipelines/agents/runner.py": r'_finish\(\s*"(?!succeeded)[a-z_]+",\s*"([a-z_]+)"',
    "codexk8s_pipelines/agents/outcome.py": r'Outcome\(\s*"(?:failed|blocked)",\s*"([a-z_]+)"',
    "codexk8s_pipelines/agents/k8s_runtime.py": r'reason="([a-z_]+)"',
    "codexk8s_pipelines/agents/runtime.py": r'reason="([a-z_]+)"',
    "codexk8s_pipelines/agents/git_workspace.py": r'reason(?::\s*str)?\s*=\s*"([a-z_]+)"',
    "codexk8s_pipelines/agents/verified_push.py": r'reason(?::\s*str)?\s*=\s*"([a-z_]+)"',
}


def test_every_failure_reason_in_the_code_has_a_runbook_section() -> None:
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', (ROOT / "docs/runbook.md").read_text(encoding="utf-8")))
    reasons = set()
    for path, pattern in SOURCES.items():
        reasons |= set(re.findall(pattern, (ROOT / path).read_text(encoding="utf-8")))
    reasons -= {"done", "pushed", "committed", "no_changes", "ok"}  # successes
    assert len(reasons) > 15
    missing = sorted(r for r in reasons if f"reason-{r}" not in anchors)
    assert not missing, f"docs/runbook.md has no section for {missing}"
    for platform_reason in ("outside_ops", "cancelled", "unknown"):  # written by the platform, not the runner
        assert f"reason-{platform_reason}" in anchors
