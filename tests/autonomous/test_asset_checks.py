"""The asset checks of the periodic assets, read back from the Dagster instance as the Checks tab shows them:
each fails on purpose, then passes, with the severity the user configured."""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg
import pytest

from codexk8s_pipelines.autonomous.docs_index import docs_index
from codexk8s_pipelines.autonomous.docs_index.asset import head_check
from codexk8s_pipelines.autonomous.drift import ops_drift
from codexk8s_pipelines.autonomous.freshness import dependency_freshness
from codexk8s_pipelines.autonomous.self_improve import self_improve_evidence
from codexk8s_pipelines.config import load_config_from_environment
from codexk8s_pipelines.github.client import GitHubCredentials
from tests.drift.conftest import Cluster, cluster  # noqa: F401  (fixture)
from tests.freshness.conftest import registry  # noqa: F401  (fixture)
from tests.freshness.registry_server import FakeRegistry
from tests.github_server import DEFAULT_TOKEN
from tests.helpers import free_port

from .conftest import REPO, Watched
from .test_freshness_and_drift import DEPLOYMENT, _live_deployment, _registry_config

ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN


def test_unreachable_registries_fail_the_freshness_check_and_name_the_registries(
    watched: Callable[..., Watched],
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: every registry is unreachable
    env = watched(
        {"requirements.txt": "requests==2.20.0\n", "package-lock.json": _LOCK},
        f"periodic:\n  freshness: {{pypi_url: {closed}, npm_url: {closed}, go_proxy_url: {closed}, "
        f"crates_url: {closed}}}\n",
    )
    meta = env.materialize(dependency_freshness)
    assert (meta["dependencies"], meta["checked"], meta["registry_errors"]) == (2, 0, 2)
    assert isinstance(meta["libyear_total"], float)  # a float even when nothing was counted
    assert {r.data["registry"] for r in meta["unchecked"].records} == {"PyPI", "npm"}
    checked = env.checks(dependency_freshness)["all_dependencies_checked"]
    assert checked.passed is False and checked.severity == ERROR
    assert checked.description.startswith("nothing could be checked: PyPI: 1 unanswered (cannot reach PyPI: ")
    assert "; npm: 1 unanswered (cannot reach npm: " in checked.description
    budget = env.checks(dependency_freshness)["libyears_within_budget"]
    assert budget.passed is False and budget.description == "unknown: no dependency could be checked (budget 50)"


_LOCK = (
    '{"name": "shop", "lockfileVersion": 3, "packages": {"": {"dependencies": {"left-pad": "1.3.0"}},'
    ' "node_modules/left-pad": {"version": "1.3.0"}}}'
)


def test_the_libyear_budget_check_follows_the_configured_budget_and_severity(
    watched: Callable[..., Watched],
    registry: FakeRegistry,  # noqa: F811
) -> None:
    registry.publish_pypi("requests", {"2.20.0": "2018-10-18T00:00:00", "2.32.3": "2024-05-29T00:00:00"})
    env = watched({"requirements.txt": "requests==2.20.0\n"}, _registry_config(registry, "    libyear_budget: 2\n"))
    env.materialize(dependency_freshness)
    checks = env.checks(dependency_freshness)
    assert checks["all_dependencies_checked"].passed is True
    assert checks["all_dependencies_checked"].description == "all 1 dependencies checked"
    budget = checks["libyears_within_budget"]
    assert budget.passed is False and budget.severity == WARN
    assert budget.description.startswith("5.61") and budget.description.endswith(" libyears of a budget of 2")

    env.configure(
        _registry_config(registry, "    libyear_budget: 10\n  check_severity: {libyears_within_budget: error}\n")
    )
    env.materialize(dependency_freshness)
    budget = env.checks(dependency_freshness)["libyears_within_budget"]
    assert budget.passed is True and budget.severity == ERROR


def test_the_drift_check_fails_on_drift_and_passes_when_the_cluster_matches(
    watched: Callable[..., Watched],
    cluster: Cluster,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    cluster.create(_live_deployment("shop/web:1.3.9", 2))
    env = watched({"deploy/k8s.yaml": DEPLOYMENT}, "    drift:\n      manifests: deploy\n")
    env.materialize(ops_drift)
    check = env.checks(ops_drift)["no_drift"]
    assert check.passed is False and check.severity == WARN
    assert check.description == "2 drifted object(s): 1 changed, 1 missing"

    env.push({"deploy/k8s.yaml": DEPLOYMENT.split("---")[0].replace("1.4.0", "1.3.9")}, "match the cluster")
    env.materialize(ops_drift)
    check = env.checks(ops_drift)["no_drift"]
    assert check.passed is True and check.description == "no drift (1 object(s) compared)"


def test_drift_without_a_section_fails_instead_of_turning_green(watched: Callable[..., Watched]) -> None:
    env = watched({"README.md": "# shop\n"})
    message = env.fail(ops_drift)
    assert message.startswith(f"{REPO} has no drift section in codexk8s.yaml: nothing to compare.")


def test_the_evidence_issue_check_needs_the_issue_open_on_github(
    watched: Callable[..., Watched], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = watched({"README.md": "# shop\n"})
    monkeypatch.delenv("CODEXK8S_GITHUB_TOKEN")
    env.materialize(self_improve_evidence)
    check = env.checks(self_improve_evidence)["evidence_issue_open"]
    assert check.passed is False and check.description.startswith("no evidence issue: no GitHub credentials")

    monkeypatch.setenv("CODEXK8S_GITHUB_TOKEN", DEFAULT_TOKEN)
    meta = env.materialize(self_improve_evidence)
    check = env.checks(self_improve_evidence)["evidence_issue_open"]
    assert check.passed is True and check.description == f"#{meta['issue']} is open"


def test_the_docs_index_check_compares_the_index_with_the_head(watched: Callable[..., Watched]) -> None:
    env = watched({"README.md": "# Shop\n\nThe shop sells things.\n"})
    meta = env.materialize(docs_index)
    check = env.checks(docs_index)["index_at_head"]
    assert check.passed is True and check.description == f"all {meta['chunks']} chunks at {meta['commit'][:12]}"

    env.push({"README.md": "# Shop\n\nThe shop sells more things.\n"}, "moved on")  # the branch moved, not indexed
    platform = load_config_from_environment()
    repo = platform.repository(REPO)
    assert repo is not None
    moved = head_check(platform, env.store, repo, REPO, GitHubCredentials.from_environment())
    assert moved.passed is False and moved.severity == ERROR
    assert moved.description.startswith("the default branch is at ")
    assert f"chunk(s) at {meta['commit'][:12]}" in moved.description
    env.materialize(docs_index)
    assert env.checks(docs_index)["index_at_head"].passed is True
