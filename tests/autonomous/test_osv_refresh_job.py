"""osv_database: refreshed from OSV over the network, or imported from a local export on an offline install; the
scan then reads it, and a fresh install without either says exactly what to do."""

from __future__ import annotations

import io
import shutil
import zipfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from codexk8s_pipelines.autonomous.security import osv_database, security_findings
from codexk8s_pipelines.config import load_config_from_environment
from codexk8s_pipelines.resources import PlatformConfigResource
from codexk8s_pipelines.security.osv import OsvDatabase
from tests.helpers import shared_data_dir
from tests.security.test_refresh import _real_zips, _Server, server  # noqa: F401  (fixture)

from .conftest import Watched

SHARED_PYPI = shared_data_dir() / "osv" / "PyPI" / "vulns"


def _configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, security: str) -> Path:
    db = tmp_path / "osv"
    config = tmp_path / "codexk8s.yaml"
    config.write_text(f"periodic:\n  security: {{osv_db: {db}, {security}}}\n")
    monkeypatch.setenv("CODEXK8S_CONFIG", str(config))
    load_config_from_environment.cache_clear()
    return db


def _materialize(raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [osv_database], resources={"platform_config": PlatformConfigResource()}, raise_on_error=raise_on_error
    )


def _metadata(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _failure(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_failure_data.error.cls_name == "Failure"  # what the run page names it
    return failure.step_failure_data.user_failure_data.description


def test_refresh_fetches_the_exports_and_says_what_the_database_holds(
    server: _Server,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    zips = _real_zips()
    server.routes = {"/PyPI/all.zip": (200, zips["PyPI"], None), "/Go/all.zip": (200, zips["Go"], None),
                     "/npm/all.zip": (503, b"unavailable", None)}  # fmt: skip
    db_dir = _configure(tmp_path, monkeypatch, f"osv_url: '{server.url}', ecosystems: [PyPI, Go, npm]")
    result = _materialize()
    assert result.success  # one ecosystem failed: reported, the others are in place
    meta = _metadata(result)
    per_ecosystem = {r.data["ecosystem"]: r.data["records"] for r in meta["records_per_ecosystem"].records}
    assert per_ecosystem == {"PyPI": 2, "Go": 1} and meta["records"] == 3
    assert meta["failed_ecosystems"]["npm"].endswith("HTTP 503 Service Unavailable")
    assert meta["age_days"] < 0.01 and isinstance(meta["age_days"], float) and meta["stale"] is False
    db = OsvDatabase.load(db_dir, max_age=timedelta(days=7))
    assert len(db) == 3 and not db.stale  # the marker the refresh wrote dates the snapshot


def test_offline_first_refresh_fails_with_what_to_do_and_leaves_no_empty_database(
    server: _Server,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.routes = {"/PyPI/all.zip": (500, b"error", None)}
    db_dir = _configure(tmp_path, monkeypatch, f"osv_url: '{server.url}', ecosystems: [PyPI]")
    message = _failure(_materialize(raise_on_error=False))
    assert message.startswith(f"no OSV export could be fetched from {server.url} (")
    assert "there is no OSV database yet" in message and "periodic.security.osv_source" in message
    assert "previous export is kept" not in message and not db_dir.exists()  # no empty folders pretending


def test_an_offline_install_imports_a_local_export_and_the_scan_uses_it(
    watched: Callable[..., Watched], tmp_path: Path
) -> None:
    if not SHARED_PYPI.is_dir():
        pytest.skip(f"the shared OSV data is not at {SHARED_PYPI}")
    export = tmp_path / "export" / "PyPI"
    export.mkdir(parents=True)
    shutil.copy(SHARED_PYPI / "jinja2" / "PYSEC-2019-217.yaml", export / "PYSEC-2019-217.yaml")
    db_dir = tmp_path / "osv-db"
    env = watched({"requirements.txt": "jinja2==2.10\n"}, "")
    # A fresh install: no database; the scan fails and names the fix.
    env.configure(f"periodic:\n  security: {{osv_db: {db_dir}, osv_url: 'http://127.0.0.1:9'}}\n")
    message = env.fail(security_findings)
    assert message.startswith(f"no OSV database at {db_dir}: materialize osv_database first")
    assert "periodic.security.osv_source" in message
    # The user points osv_source at the export and materializes osv_database: no network needed.
    env.configure(f"periodic:\n  security: {{osv_db: {db_dir}, osv_source: {export.parent}}}\n")
    result = dg.materialize([osv_database], instance=env.instance, resources=env.resources)
    meta = _metadata(result)
    assert meta["records"] == 1 and meta["source"] == str(export.parent) and meta["snapshot"].startswith("20")
    assert meta["stale"] is True  # an old export stays as old as its newest record
    scan = env.materialize(security_findings)
    assert scan["findings"] == 1 and scan["osv_records"] == 1
    checks = env.checks(security_findings)
    assert checks["osv_database_fresh"].passed is False
    assert "materialize osv_database" in checks["osv_database_fresh"].description


def test_a_zip_source_is_imported_and_a_bad_one_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zips = _real_zips()
    (tmp_path / "PyPI-all.zip").write_bytes(zips["PyPI"])
    db_dir = _configure(tmp_path, monkeypatch, f"osv_source: {tmp_path / 'PyPI-all.zip'}")
    meta = _metadata(_materialize())
    assert meta["records"] == 2 and len(OsvDatabase.load(db_dir)) == 2

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.json", "{}")
    (tmp_path / "cut.zip").write_bytes(buffer.getvalue()[:20])
    _configure(tmp_path, monkeypatch, f"osv_source: {tmp_path / 'cut.zip'}")
    message = _failure(_materialize(raise_on_error=False))
    assert message.startswith(f"periodic.security.osv_source: {tmp_path / 'cut.zip'} is not a valid zip")
    assert len(OsvDatabase.load(db_dir)) == 2  # the database in place is untouched
    _configure(tmp_path, monkeypatch, f"osv_source: {tmp_path / 'missing'}")
    assert _failure(_materialize(raise_on_error=False)) == (
        f"periodic.security.osv_source: {tmp_path / 'missing'} does not exist"
    )
