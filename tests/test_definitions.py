"""The code location: one Definitions per environment, resources from the environment, a job that really runs."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from codexk8s_pipelines import settings
from codexk8s_pipelines.definitions import build_definitions
from codexk8s_pipelines.store import DatabaseUrls
from codexk8s_pipelines.store.migrations import available_migrations


@pytest.mark.parametrize(
    ("env", "executor"),
    [(settings.Environment.LOCAL, "multiprocess"), (settings.Environment.KUBERNETES, "in_process")],
)
def test_one_switch_chooses_the_environment(env: settings.Environment, executor: str) -> None:
    defs = build_definitions(env)
    job = defs.resolve_job_def("platform_migrate")
    assert job.executor_def.name == executor
    assert set(defs.resources) >= {"platform_db", "platform_config"}


def test_the_environment_variable_is_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEXK8S_ENV", "Kubernetes ")
    assert settings.environment() is settings.Environment.KUBERNETES
    monkeypatch.setenv("CODEXK8S_ENV", "prod")
    with pytest.raises(settings.SettingsError, match="CODEXK8S_ENV='prod' is not an environment; expected one of"):
        settings.environment()


def test_database_url_comes_from_the_environment_not_from_run_config(monkeypatch: pytest.MonkeyPatch) -> None:
    resource = build_definitions(settings.Environment.LOCAL).resources["platform_db"]
    assert isinstance(resource.url, dg.EnvVar)  # type: ignore[attr-defined]
    assert resource.url.env_var_name == "CODEXK8S_DATABASE_URL"  # type: ignore[attr-defined]


def test_platform_migrate_runs_against_the_platform_database(
    bare_database: DatabaseUrls, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A database with no schema yet, reached as the migrator (the app role may only check an up-to-date schema).
    database_url = bare_database.migrator
    monkeypatch.setenv("CODEXK8S_DATABASE_URL", database_url)
    job = build_definitions(settings.Environment.LOCAL).resolve_job_def("platform_migrate")
    latest = max(m.version for m in available_migrations())

    first = job.execute_in_process()
    assert first.success
    assert first.output_for_node("apply_platform_migrations") == latest
    metadata = _output_metadata(first)
    assert metadata["applied_now"] == [m.version for m in available_migrations()]
    assert metadata["schema_version"] == latest

    second = job.execute_in_process()
    assert second.success and _output_metadata(second)["applied_now"] == []
    # Nothing the run recorded carries the database URL.
    assert database_url not in json.dumps(second.dagster_run.run_config)


def test_an_unset_database_url_fails_the_run_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CODEXK8S_DATABASE_URL", raising=False)
    job = build_definitions(settings.Environment.LOCAL).resolve_job_def("platform_migrate")
    with pytest.raises(Exception, match="CODEXK8S_DATABASE_URL"):
        job.execute_in_process()


def _output_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    for event in result.all_node_events:
        if event.event_type_value == "STEP_OUTPUT":
            return {k: v.value for k, v in event.step_output_data.metadata.items()}  # type: ignore[union-attr]
    raise AssertionError("no step output")


def test_the_switch_picks_the_agent_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    from codexk8s_pipelines.agents.k8s_runtime import KubernetesAgentRuntime
    from codexk8s_pipelines.agents.runtime import SubprocessAgentRuntime

    assert isinstance(build_definitions(settings.Environment.LOCAL).resources["agent_runtime"], SubprocessAgentRuntime)
    monkeypatch.setenv("CODEXK8S_K8S_NAMESPACE", "agents-prod")
    runtime = build_definitions(settings.Environment.KUBERNETES).resources["agent_runtime"]
    assert isinstance(runtime, KubernetesAgentRuntime) and runtime.namespace == "agents-prod"


def test_jobs_schedules_and_lineage_come_from_the_periodic_registry() -> None:
    from codexk8s_pipelines.autonomous.registry import PERIODIC_CHECKS

    defs = build_definitions(settings.Environment.LOCAL)
    graph = defs.resolve_asset_graph()
    schedules = {s.name: s for s in defs.schedules or []}
    for check in PERIODIC_CHECKS:
        assert schedules[check.schedule].job_name == check.job  # one entry: its job and its schedule
        assert defs.resolve_job_def(check.job).asset_layer.executable_asset_keys == {check.asset.key}
        node = graph.get(check.asset.key)
        assert node.owners == ["team:codex-k8s"] and "dagster/code_references" in node.metadata
    # Data flows: the OSV database feeds the findings, the checkout feeds the scans and the docs index.
    upstream = {
        key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys}
        for key in graph.get_all_asset_keys()
    }
    assert upstream["security_findings"] == {"osv_database", "repository_checkout"}
    assert upstream["dependency_freshness"] == upstream["docs_index"] == {"repository_checkout"}
    # Every periodic asset but the database itself carries its checks.
    periodic = {c.asset.key for c in PERIODIC_CHECKS}
    checked = {key.asset_key for key in graph.asset_check_keys if key.asset_key in periodic}
    assert checked == periodic - {dg.AssetKey("osv_database")}


def test_stage_jobs_say_they_need_github_and_name_what_the_launchpad_must_fill_in() -> None:
    job = build_definitions(settings.Environment.LOCAL).resolve_job_def("stage_dev")
    assert "Needs GitHub credentials" in (job.description or "")
    defaults = job.run_config_schema.config_type.fields["ops"].config_type.fields["prepare_context"]
    config = defaults.default_value["config"]
    assert config["repository"] == "OWNER/NAME" and config["role"] == "dev" and config["trigger_label"] == "run:dev"
    assert "issue_number" not in config  # an optional default would leak into a sensor's PR run


def test_the_github_sensors_say_why_they_skip_in_their_description(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sensors.status import with_status

    for name in ("CODEXK8S_GITHUB_TOKEN", "CODEXK8S_GITHUB_APP_ID", "CODEXK8S_GITHUB_APP_PRIVATE_KEY"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "codexk8s.yaml"
    config.write_text("repositories:\n  - path: .\n")
    monkeypatch.setenv("CODEXK8S_CONFIG", str(config))
    assert with_status("Labels.") == (
        "Labels. SKIPPING EVERY TICK: no GitHub credentials: set CODEXK8S_GITHUB_TOKEN, or CODEXK8S_GITHUB_APP_ID "
        "and CODEXK8S_GITHUB_APP_PRIVATE_KEY."
    )
    monkeypatch.setenv("CODEXK8S_GITHUB_TOKEN", "t0ken")
    assert with_status("Labels.").endswith("SKIPPING EVERY TICK: no GitHub repository is watched: add `github: "
                                           "owner/name` under repositories in codexk8s.yaml.")  # fmt: skip
    config.write_text("repositories:\n  - github: acme/shop\n")
    from codexk8s_pipelines.config import load_config_from_environment

    load_config_from_environment.cache_clear()
    assert with_status("Labels.") == "Labels."
