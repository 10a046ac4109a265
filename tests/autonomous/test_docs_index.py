"""docs_index: one partition per watched repository, re-indexed when the default branch moves, hourly for those
not at their head, incremental (an unchanged chunk is never embedded twice) — with the real model on the embedded
PostgreSQL."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

import sensors.docs
from codexk8s_pipelines.autonomous.docs_index import docs_index
from codexk8s_pipelines.autonomous.registry import JOBS, PERIODIC_CHECKS
from codexk8s_pipelines.config.models import PlatformConfig
from codexk8s_pipelines.github.resource import GitHubResource
from codexk8s_pipelines.resources import PlatformConfigResource, PlatformDatabase
from codexk8s_pipelines.store import PlatformStore
from schedules.periodic import schedule_for
from sensors.docs import docs_index_sensor
from tests.helpers import git, silent_http_server

DOCS = {
    "README.md": "# Shop\n\nThe shop sells things.\n\n## Checkout\n\nPayment goes through the cart service.\n",
    "docs/deploy.md": "# Deploying\n\nRun `make release` and watch the rollout.\n",
}
docs_index_job = JOBS["docs_index_job"]
docs_index_hourly = schedule_for(
    next(c for c in PERIODIC_CHECKS if c.schedule == "docs_index_hourly"), PlatformConfig()
)


def _commit(repo: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git("add", ".", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", message, cwd=repo)


@pytest.fixture
def docs_env(tmp_path: Path, store: PlatformStore, monkeypatch: pytest.MonkeyPatch) -> dict:
    local = tmp_path / "local"
    local.mkdir()
    git("init", "-q", "-b", "main", str(local))
    _commit(local, DOCS, "docs")
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", "-b", "main", str(remote))
    seed = tmp_path / "seed"
    git("clone", "-q", str(remote), str(seed))
    git("checkout", "-q", "-b", "main", cwd=seed)
    _commit(seed, {"guide.md": "# Guide\n\nAsk the on-call engineer before a release.\n"}, "guide")
    git("push", "-q", "origin", "main", cwd=seed)
    config = tmp_path / "codexk8s.yaml"
    config.write_text(f"repositories:\n  - path: {local}\n  - github: acme/docs\n    git_url: {remote}\n")
    monkeypatch.setenv("CODEXK8S_CONFIG", str(config))
    monkeypatch.setenv("CODEXK8S_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CODEXK8S_GITHUB_TOKEN", raising=False)
    resources = {
        "platform_db": PlatformDatabase(url=store.url),
        "platform_config": PlatformConfigResource(),
        "github": GitHubResource(),
    }
    return {"local": local, "seed": seed, "config": config, "resources": resources, "local_key": "local"}


def _tick(instance: dg.DagsterInstance, cursor: str | None, resources: dict) -> dg.SensorExecutionData:
    defs = dg.Definitions(assets=[docs_index], jobs=[docs_index_job], sensors=[docs_index_sensor], resources=resources)
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources, definitions=defs)
    with dg.partition_loading_context(dynamic_partitions_store=instance):  # the daemon threads the instance so
        data = docs_index_sensor.evaluate_tick(context)
    for request in data.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
    return data


def test_sensor_keeps_partitions_and_reindexes_when_the_branch_moves(docs_env: dict) -> None:
    with dg.instance_for_test() as instance:
        _sensor_story(instance, docs_env)


def _sensor_story(instance: dg.DagsterInstance, docs_env: dict) -> None:
    added = _tick(instance, None, docs_env["resources"])
    assert added.run_requests == [] and "partitions updated" in (added.skip_message or "")
    assert sorted(instance.get_dynamic_partitions("repositories")) == sorted(["acme/docs", docs_env["local_key"]])
    first = _tick(instance, added.cursor, docs_env["resources"])
    assert sorted(r.partition_key for r in first.run_requests) == sorted(["acme/docs", docs_env["local_key"]])

    idle = _tick(instance, first.cursor, docs_env["resources"])
    assert idle.run_requests == [] and "no default branch moved" in (idle.skip_message or "")

    _commit(docs_env["seed"], {"guide.md": "# Guide\n\nRollbacks need two approvals.\n"}, "edit")
    git("push", "-q", "origin", "main", cwd=docs_env["seed"])
    moved = _tick(instance, idle.cursor, docs_env["resources"])
    assert [r.partition_key for r in moved.run_requests] == ["acme/docs"]

    docs_env["config"].write_text(f"repositories:\n  - path: {docs_env['local']}\n")
    from codexk8s_pipelines.config import load_config_from_environment

    load_config_from_environment.cache_clear()
    _tick(instance, moved.cursor, docs_env["resources"])
    assert instance.get_dynamic_partitions("repositories") == [docs_env["local_key"]]


def test_a_repository_added_to_the_file_gets_its_partition_at_the_next_tick_without_a_reload(docs_env: dict) -> None:
    """The sensor runs in the long-lived code server: an edited codexk8s.yaml is read at its next tick, as a run
    process reads it, so the repository added is indexed without reloading the code location."""
    with dg.instance_for_test() as instance:
        added = _tick(instance, None, docs_env["resources"])
        assert sorted(instance.get_dynamic_partitions("repositories")) == sorted(["acme/docs", docs_env["local_key"]])
        other = docs_env["local"].parent / "wiki"
        other.mkdir()
        git("init", "-q", "-b", "main", str(other))
        _commit(other, {"index.md": "# Wiki\n\nOn-call rota.\n"}, "wiki")
        with docs_env["config"].open("a") as config:  # the operator's edit; nothing clears a cache
            config.write(f"  - path: {other}\n")
        after = _tick(instance, added.cursor, docs_env["resources"])
        assert "wiki" in instance.get_dynamic_partitions("repositories")
        indexed = _tick(instance, after.cursor, docs_env["resources"])
        assert "wiki" in [r.partition_key for r in indexed.run_requests]


def test_a_hanging_git_host_costs_ticks_not_a_failed_one_and_every_repository_gets_its_turn(
    docs_env: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 repositories whose remote accepts and never answers, listed before the one that answers: each tick stays
    inside its budget (a tick has 60 s; here the budget is 2 s, a lookup's own timeout 10 s), says which
    repositories wait, and the next tick starts with them, so the answering one is indexed within a few ticks."""
    budget = 2.0
    monkeypatch.setattr(sensors.docs, "TICK_BUDGET_SECONDS", budget)
    monkeypatch.setattr(sensors.docs, "LS_REMOTE_TIMEOUT_SECONDS", 10)
    remote = docs_env["config"].read_text().split("git_url: ", 1)[1].strip()
    with silent_http_server() as silent, dg.instance_for_test() as instance:
        hanging = "".join(f"  - github: acme/hang{i}\n    git_url: {silent}/acme/hang{i}.git\n" for i in range(20))
        docs_env["config"].write_text(f"repositories:\n{hanging}  - github: acme/docs\n    git_url: {remote}\n")
        cursor, took, waiting = None, [], []
        for _ in range(6):
            started = time.monotonic()
            data = _tick(instance, cursor, docs_env["resources"])
            took.append(time.monotonic() - started)
            cursor = data.cursor
            if any(r.partition_key == "acme/docs" for r in data.run_requests):
                break
            waiting.append(data.skip_message or "")
        else:
            pytest.fail(f"acme/docs was never looked up: {waiting}")
    assert max(took) < budget + 1.5, took  # was: 20 lookups × 10 s over 8 workers, past the tick's 60 s
    assert any("repositories left for the next tick (tick budget 2 s): acme/hang" in w for w in waiting), waiting
    assert any("acme/hang0: cannot read the default branch: acme/hang0: git ls-remote timed out" in w for w in waiting)
    assert json.loads(cursor or "")["heads"]["acme/docs"]


def test_a_former_cursor_is_read_and_a_broken_one_starts_over(docs_env: dict) -> None:
    with dg.instance_for_test() as instance:
        added = _tick(instance, None, docs_env["resources"])
        first = _tick(instance, added.cursor, docs_env["resources"])
        heads = json.loads(first.cursor or "")["heads"]
        assert sorted(heads) == sorted(["acme/docs", docs_env["local_key"]])
        # The former cursor was the heads alone: nothing moved, so nothing is indexed again.
        former = _tick(instance, json.dumps(heads), docs_env["resources"])
        assert former.run_requests == [] and "no default branch moved" in (former.skip_message or "")
        # An unreadable one is not a failed tick: every repository is looked up (and indexed) once more.
        for broken in ("{not json", json.dumps({"v": 2, "heads": ["x"]}), json.dumps({"acme/docs": 7})):
            again = _tick(instance, broken, docs_env["resources"])
            assert sorted(r.partition_key for r in again.run_requests) == sorted(heads), broken
            assert json.loads(again.cursor or "")["heads"] == heads


@pytest.mark.timeout(300)
def test_materialising_is_incremental_and_reports_what_it_did(docs_env: dict, store: PlatformStore) -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("repositories", ["acme/docs", docs_env["local_key"]])

    def materialize(key: str) -> dict:
        result = dg.materialize([docs_index], partition_key=key, instance=instance, resources=docs_env["resources"])
        assert result.success
        (event,) = result.get_asset_materialization_events()
        return {k: v.value for k, v in event.materialization.metadata.items()}

    first = materialize(docs_env["local_key"])
    assert first["files"] == 2 and first["embedded_now"] == first["chunks"] > 0 and first["commit"]
    # The search's HNSW candidate list, measured on the chunks just indexed and stored for every searcher.
    from codexk8s_pipelines.knowledge.db import connect
    from codexk8s_pipelines.knowledge.tuning import LADDER, TARGET_RECALL, current_tuning

    with connect(store.url) as conn:
        tuning = current_tuning(conn)
    assert tuning and tuning.chunks == first["chunks"] and tuning.ef_search in LADDER
    assert first["search_ef_search"] == tuning.ef_search and first["search_recall_at_10"] >= TARGET_RECALL
    assert first["search_code_candidates"] == (tuning.code_candidates or 0)  # the binary codes large filters use
    again = materialize(docs_env["local_key"])
    assert again["embedded_now"] == 0 and again["reused"] == first["chunks"]

    mirrored = materialize("acme/docs")  # cloned from the remote into the platform's mirror
    assert mirrored["files"] == 1 and mirrored["embedded_now"] > 0

    # Per-repository globs: only the deploy guide of the local checkout.
    docs_env["config"].write_text(
        f"repositories:\n  - path: {docs_env['local']}\n    docs_globs: ['docs/**/*.md']\n"
        f"  - github: acme/docs\n    git_url: {docs_env['seed']}\n"
    )
    from codexk8s_pipelines.config import load_config_from_environment

    load_config_from_environment.cache_clear()
    narrowed = materialize(docs_env["local_key"])
    assert narrowed["files"] == 1 and narrowed["deleted"] > 0 and narrowed["globs"] == ["docs/**/*.md"]

    from codexk8s_pipelines.knowledge.search import search

    (hit, *_) = search(store.url, "who do I ask before releasing?", repository="acme/docs", k=3)
    assert hit.path == "guide.md"


@pytest.mark.timeout(300)
def test_hourly_schedule_indexes_only_what_is_not_at_its_head(docs_env: dict) -> None:
    """The hourly run of every repository queued hundreds of runs an hour on a large installation, each re-reading
    an unchanged repository. It now runs a repository whose index is not of its default branch now: never indexed,
    the head moved (a run the sensor asked for failed), other globs; the others wait with the reason."""
    with dg.instance_for_test() as instance:
        _schedule_story(instance, docs_env)


def _schedule_story(instance: dg.DagsterInstance, docs_env: dict) -> None:
    resources = docs_env["resources"]
    defs = dg.Definitions(
        assets=[docs_index], jobs=[docs_index_job], schedules=[docs_index_hourly], resources=resources
    )
    repository = defs.get_repository_def()
    local = docs_env["local_key"]

    def tick(minute: int) -> dg.ScheduleExecutionData:
        when = datetime(2026, 11, 23, 10, minute, tzinfo=UTC)
        with dg.build_schedule_context(
            instance=instance, resources=resources, scheduled_execution_time=when, repository_def=repository
        ) as context:
            return docs_index_hourly.evaluate_tick(context)

    def materialize(key: str) -> None:
        assert dg.materialize([docs_index], partition_key=key, instance=instance, resources=resources).success

    assert "no repository partition yet" in (tick(17).skip_message or "")
    instance.add_dynamic_partitions("repositories", ["acme/docs", local])
    data = tick(17)  # nothing indexed yet: both
    assert sorted(r.partition_key for r in data.run_requests or []) == sorted(["acme/docs", local])
    assert {r.run_key for r in data.run_requests or []} == {
        "docs:acme/docs:20261123T1017",
        f"docs:{local}:20261123T1017",
    }

    materialize("acme/docs")
    materialize(local)
    idle = tick(18)  # both at their head: no run, and why
    assert idle.run_requests is None or idle.run_requests == []
    assert f"{local}: indexed at " in (idle.skip_message or "") and "acme/docs: indexed at " in (
        idle.skip_message or ""
    )

    _commit(docs_env["seed"], {"guide.md": "# Guide\n\nRollbacks need two approvals.\n"}, "edit")
    git("push", "-q", "origin", "main", cwd=docs_env["seed"])  # a new head the sensor's run did not index
    assert [r.partition_key for r in tick(19).run_requests or []] == ["acme/docs"]
    materialize("acme/docs")

    docs_env["config"].write_text(  # other globs for the local checkout: its index no longer matches the file
        docs_env["config"]
        .read_text()
        .replace(f"path: {docs_env['local']}\n", f"path: {docs_env['local']}\n    docs_globs: ['docs/**/*.md']\n")
    )
    assert [r.partition_key for r in tick(20).run_requests or []] == [local]


def test_a_plain_directory_is_indexed_every_hour(docs_env: dict, tmp_path: Path) -> None:
    """No commit to compare a plain directory's index with: the hourly schedule indexes it as before."""
    plain = tmp_path / "handbook"
    plain.mkdir()
    (plain / "README.md").write_text("# Handbook\n")
    docs_env["config"].write_text(f"repositories:\n  - path: {plain}\n")
    resources = docs_env["resources"]
    defs = dg.Definitions(
        assets=[docs_index], jobs=[docs_index_job], schedules=[docs_index_hourly], resources=resources
    )
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("repositories", ["handbook"])
        assert dg.materialize([docs_index], partition_key="handbook", instance=instance, resources=resources).success
        when = datetime(2026, 11, 23, 11, 17, tzinfo=UTC)
        with dg.build_schedule_context(
            instance=instance,
            resources=resources,
            scheduled_execution_time=when,
            repository_def=defs.get_repository_def(),
        ) as context:
            data = docs_index_hourly.evaluate_tick(context)
    assert [r.partition_key for r in data.run_requests or []] == ["handbook"]


def test_an_old_local_partition_is_replaced_by_the_readable_name_and_its_rows_follow(
    docs_env: dict, store: PlatformStore
) -> None:
    from codexk8s_pipelines.store.findings import FindingInput, open_findings, sync_findings

    old = f"local:{docs_env['local']}".lower()  # what an installation before readable names registered
    sync_findings(store, old, "security", [FindingInput("ghsa-1", "lodash", "HIGH", {})], datetime.now(UTC))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("repositories", [old, "acme/docs"])
        _tick(instance, None, docs_env["resources"])
        keys = instance.get_dynamic_partitions("repositories")
    assert sorted(keys) == ["acme/docs", "local"] and not any(":" in k for k in keys)
    assert [r["fingerprint"] for r in open_findings(store, "local", "security")] == ["ghsa-1"]
    assert open_findings(store, old, "security") == []


@pytest.mark.timeout(300)
def test_a_ru_installation_indexes_its_docs_with_russian_stemming(docs_env: dict, store: PlatformStore) -> None:
    """`locale: ru` means Russian docs: the asset indexes them with the `russian` text search configuration."""
    import psycopg

    from codexk8s_pipelines.config import load_config_from_environment

    docs_env["config"].write_text(f"locale: ru\nrepositories:\n  - path: {docs_env['local']}\n")
    load_config_from_environment.cache_clear()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("repositories", [docs_env["local_key"]])
    key = docs_env["local_key"]
    result = dg.materialize([docs_index], partition_key=key, instance=instance, resources=docs_env["resources"])
    assert result.success
    with psycopg.connect(store.url) as conn:
        configs = conn.execute(
            "SELECT DISTINCT text_config::text FROM doc_chunks WHERE repository = %s", (key,)
        ).fetchall()
        corpus = conn.execute("SELECT text_config::text FROM doc_corpus WHERE repository = %s", (key,)).fetchone()
    assert configs == [("russian",)] and corpus == ("russian",)
