"""osv_refresh: the job fetches the exports into the configured directory; the scan then reads them as fresh."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from codexk8s_pipelines.autonomous.jobs import osv_refresh_job
from codexk8s_pipelines.resources import PlatformConfigResource
from codexk8s_pipelines.security.osv import OsvDatabase
from tests.security.test_refresh import _real_zips, _Server, server  # noqa: F401  (fixture)


def _configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, ecosystems: str) -> Path:
    db = tmp_path / "osv"
    config = tmp_path / "codexk8s.yaml"
    config.write_text(f"periodic:\n  security: {{osv_db: {db}, osv_url: '{url}', ecosystems: [{ecosystems}]}}\n")
    monkeypatch.setenv("CODEXK8S_CONFIG", str(config))
    return db


def test_the_job_fetches_the_exports_and_the_scan_sees_a_fresh_database(
    server: _Server,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    zips = _real_zips()
    server.routes = {"/PyPI/all.zip": (200, zips["PyPI"], None), "/Go/all.zip": (200, zips["Go"], None),
                     "/npm/all.zip": (503, b"unavailable", None)}  # fmt: skip
    db_dir = _configure(tmp_path, monkeypatch, server.url, "PyPI, Go, npm")
    result = osv_refresh_job.execute_in_process(resources={"platform_config": PlatformConfigResource()})
    assert result.success  # one ecosystem failed: reported, the others are in place
    summary = result.output_for_node("fetch_osv_exports")
    assert summary["PyPI"] == "2 records" and summary["Go"] == "1 records" and summary["npm"].startswith("failed")
    db = OsvDatabase.load(db_dir, max_age=timedelta(days=7))
    assert len(db) == 3 and not db.stale  # the marker the job wrote dates the snapshot


def test_nothing_fetched_fails_the_run_and_keeps_what_was_there(
    server: _Server,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.routes = {"/PyPI/all.zip": (500, b"error", None)}
    _configure(tmp_path, monkeypatch, server.url, "PyPI")
    result = osv_refresh_job.execute_in_process(
        resources={"platform_config": PlatformConfigResource()}, raise_on_error=False
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "no OSV export could be fetched" in str(failure.event_specific_data.error)
