"""The Kubernetes instance keeps Dagster's own runs and events in PostgreSQL through dagster-postgres: the
psycopg2 scheme it is given works against a real PostgreSQL, the one `make run` embeds."""

from __future__ import annotations

import dagster as dg
from dagster_postgres import DagsterPostgresStorage

from codexk8s_pipelines.config.loader import parse_config
from codexk8s_pipelines.instance import kubernetes_instance, run_queue


def test_kubernetes_instance_names_psycopg2_and_holds_no_secret() -> None:
    config = parse_config("", "c.yaml")
    instance = kubernetes_instance(config)
    db = instance["storage"]["postgres"]["postgres_db"]
    assert db["scheme"] == "postgresql+psycopg2"
    assert db["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert instance["run_launcher"]["class"] == "K8sRunLauncher"
    assert instance["run_coordinator"] == run_queue(config)


def test_dagster_postgres_stores_runs_with_the_psycopg2_scheme(database_url: str) -> None:
    base, _, query = database_url.partition("?")
    url = base.replace("postgresql://", "postgresql+psycopg2://", 1) + "?" + query
    storage = DagsterPostgresStorage(url)
    run = dg.DagsterRun(
        job_name="stage_dev", run_id="0f0f0f0f-0000-4000-8000-000000000001", tags={"codexk8s/issue": "a/b#1"}
    )
    storage.run_storage.add_run(run)
    (stored,) = storage.run_storage.get_runs(dg.RunsFilter(tags={"codexk8s/issue": "a/b#1"}))
    assert stored.run_id == run.run_id
    assert storage.event_log_storage.get_logs_for_run(run.run_id) == []
