"""security_findings: real OSV advisories against a watched repository's lockfile, kept on one dashboard issue."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from codexk8s_pipelines.autonomous.security import security_findings
from codexk8s_pipelines.store.findings import open_findings
from tests.helpers import shared_data_dir

from .conftest import REPO, Watched

SHARED_PYPI = shared_data_dir() / "osv" / "PyPI" / "vulns"
ADVISORIES = ("llama-index/PYSEC-2023-148.yaml", "jinja2/PYSEC-2019-217.yaml")  # CVSS 9.8 / no severity


@pytest.fixture
def osv_dir(tmp_path: Path) -> Path:
    if not SHARED_PYPI.is_dir():
        pytest.skip(f"the shared OSV data is not at {SHARED_PYPI}")
    target = tmp_path / "osv"
    for name in ADVISORIES:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SHARED_PYPI / name, target / name)
    return target


def _dashboard(env: Watched) -> str:
    (number,) = [n for n, i in env.state.repo(REPO).issues.items() if i.title == "codex-k8s: security findings"]
    return env.state.issue(REPO, number).body


def test_findings_reach_one_dashboard_and_a_fix_is_checked_off(watched: Callable[..., Watched], osv_dir: Path) -> None:
    env = watched(
        {"requirements.txt": "llama-index==0.7.0\njinja2==2.10\nrequests>=2\n"},
        f"    policy: {{fix_critical: true}}\nperiodic:\n  security: {{osv_db: {osv_dir}}}\n",
    )
    first = env.materialize(security_findings)
    assert (first["findings"], first["new"], first["dependencies"], first["unpinned"]) == (2, 2, 3, 1)
    assert first["by_severity"] == {"CRITICAL": 1, "UNKNOWN": 1}
    assert first["dashboard"] == "created" and first["osv_stale"] is True
    body = _dashboard(env)
    critical = (
        "- [ ] **CRITICAL 9.8** `llama-index` 0.7.0 · [CVE-2023-39662](https://osv.dev/vulnerability/PYSEC-2023-148)"
    )
    assert critical in body
    assert "fix: 0.7.14" in body and "`requirements.txt:1`" in body
    assert "- [ ] **UNKNOWN** `jinja2` 2.10 · [CVE-2019-10906](" in body and "fix: 2.10.1" in body
    assert "older than 7 days" in body  # the 2023 snapshot is stale, and said so
    assert "- PyPI: 2 of 3 dependencies checked against 2 advisories" in body  # coverage, per ecosystem
    # policy.fix_critical: one issue for the critical finding, labelled for the dev stage.
    issues = env.state.repo(REPO).issues.values()
    (fix,) = [i for i in issues if i.title.startswith("Fix CVE-2023-39662 in llama-index 0.7.0")]
    assert fix.labels == ["run:dev"] and "upgrade to 0.7.14" in fix.body
    assert first["fix_issues_opened"] == 1

    env.state.clear_requests()
    second = env.materialize(security_findings)
    assert second["dashboard"] == "unchanged" and second["still_open"] == 2 and second["fix_issues_opened"] == 0
    assert env.writes() == []  # same findings, same body: no edit, no new issue

    env.push({"requirements.txt": "llama-index==0.7.0\njinja2==2.11.3\nrequests>=2\n"}, "bump jinja2")
    third = env.materialize(security_findings)
    assert third["resolved"] == 1 and third["dashboard"] == "edited"
    body = _dashboard(env)
    assert "- [x] ~~**UNKNOWN** `jinja2` 2.10" in body and "— resolved 20" in body
    assert [r["details"]["package"] for r in open_findings(env.store, REPO, "security")] == ["llama-index"]
    assert len([i for i in env.state.repo(REPO).issues.values() if "security findings" in i.title]) == 1


def test_the_checks_fail_on_a_severe_finding_and_pass_once_it_is_fixed(
    watched: Callable[..., Watched], osv_dir: Path
) -> None:
    import dagster as dg

    env = watched({"requirements.txt": "llama-index==0.7.0\n"}, f"periodic:\n  security: {{osv_db: {osv_dir}}}\n")
    env.materialize(security_findings)
    checks = env.checks(security_findings)
    severe = checks["no_severe_findings"]
    assert severe.passed is False and severe.severity == dg.AssetCheckSeverity.ERROR
    assert severe.description == "1 open finding(s) at or above HIGH: 1 CRITICAL"
    fresh = checks["osv_database_fresh"]  # the shared 2023 records are older than 7 days
    assert fresh.passed is False and fresh.severity == dg.AssetCheckSeverity.WARN

    # The user decides how red: a warning only, and a database allowed to be old.
    env.configure(
        f"periodic:\n  check_severity: {{no_severe_findings: warn}}\n"
        f"  security: {{osv_db: {osv_dir}, max_age_days: 100000}}\n"
    )
    env.materialize(security_findings)
    checks = env.checks(security_findings)
    assert checks["no_severe_findings"].passed is False
    assert checks["no_severe_findings"].severity == dg.AssetCheckSeverity.WARN
    assert checks["osv_database_fresh"].passed is True

    env.push({"requirements.txt": "llama-index==0.7.14\n"}, "fix")
    env.materialize(security_findings)
    severe = env.checks(security_findings)["no_severe_findings"]
    assert severe.passed is True and severe.description == "no open finding at or above HIGH (0 open below it)"


def test_a_broken_lockfile_is_a_note_not_a_fix(watched: Callable[..., Watched], osv_dir: Path) -> None:
    env = watched({"poetry.lock": _poetry_lock("2.10")}, f"periodic:\n  security: {{osv_db: {osv_dir}}}\n")
    assert env.materialize(security_findings)["findings"] == 1
    env.push({"poetry.lock": "[[package]\nname = 'jinja2'\n"}, "merge conflict left in the lockfile")
    after = env.materialize(security_findings)
    assert after["resolved"] == 0 and after["preserved"] == 1 and after["open"] == 1
    assert "poetry.lock" in _dashboard(env) and "not scanned" in _dashboard(env)


def test_a_missing_database_fails_the_run_with_the_fix(watched: Callable[..., Watched], tmp_path: Path) -> None:
    import dagster as dg

    env = watched({"requirements.txt": "jinja2==2.10\n"}, f"periodic:\n  security: {{osv_db: {tmp_path / 'nope'}}}\n")
    result = dg.materialize(
        [security_findings], partition_key=REPO, instance=env.instance, resources=env.resources, raise_on_error=False
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.user_failure_data.description
    assert message.startswith(f"no OSV database at {tmp_path / 'nope'}: materialize osv_database first")
    assert "osv_source" in message


def _poetry_lock(version: str) -> str:
    return (
        '[[package]]\nname = "jinja2"\nversion = "' + version + '"\ndescription = ""\noptional = false\n'
        'python-versions = "*"\nfiles = []\n\n[metadata]\nlock-version = "2.0"\npython-versions = "^3.11"\n'
        'content-hash = "0"\n'
    )
