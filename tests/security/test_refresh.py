"""Refreshing the OSV database from a local HTTP server: good zips, an HTTP 500, a truncated zip, a cut connection."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from codexk8s_pipelines.cli import main
from codexk8s_pipelines.security.dependencies import Dependency
from codexk8s_pipelines.security.osv import MARKER_NAME, OsvDatabase
from codexk8s_pipelines.security.refresh import refresh_osv_database
from codexk8s_pipelines.security.scan import scan_dependencies
from tests.helpers import free_port, shared_data_dir

SHARED_OSV = shared_data_dir() / "osv"
NOW = datetime(2024, 11, 23, 12, 0, tzinfo=UTC)


def _zip(records: dict[str, dict]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in records.items():
            archive.writestr(name, json.dumps(data, default=str))
    return buffer.getvalue()


def _real_zips() -> dict[str, bytes]:
    if not SHARED_OSV.is_dir():
        pytest.skip(f"shared OSV data not found at {SHARED_OSV}")
    pypi = {
        f"{p.stem}.json": yaml.safe_load(p.read_text())
        for p in [
            SHARED_OSV / "PyPI/vulns/werkzeug/PYSEC-2023-221.yaml",
            SHARED_OSV / "PyPI/vulns/py/PYSEC-2022-42969.yaml",
        ]
    }
    go = {f"{name}.json": json.loads((SHARED_OSV / "Go/osv" / f"{name}.json").read_text()) for name in ["GO-2023-1631"]}
    return {"PyPI": _zip(pypi), "Go": _zip(go)}


class _Server:
    """Serves `routes[path] = (status, body, declared length or None)`; records the paths asked for."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes, int | None]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                status, body, declared = server.routes.get(self.path, (404, b"not found", None))
                self.send_response(status)
                self.send_header("Content-Length", str(declared if declared is not None else len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[_Server]:
    with _Server() as running:
        yield running


def test_refresh_downloads_zips_and_keeps_old_ones_when_a_download_fails(server: _Server, tmp_path: Path) -> None:
    zips = _real_zips()
    good_npm = _zip({"GHSA-old.json": {"id": "GHSA-old", "affected": []}})
    server.routes = {
        "/PyPI/all.zip": (200, zips["PyPI"], None),
        "/Go/all.zip": (200, zips["Go"], None),
        "/npm/all.zip": (500, b"backend error", None),
        "/crates.io/all.zip": (200, zips["PyPI"][: len(zips["PyPI"]) // 2], None),  # truncated, length honest
        "/Maven/all.zip": (200, zips["Go"][:100], len(zips["Go"])),  # connection ends before Content-Length
    }
    dest = tmp_path / "osv"
    for ecosystem in ("npm", "crates.io", "Maven"):
        (dest / ecosystem).mkdir(parents=True)
        (dest / ecosystem / "all.zip").write_bytes(good_npm)
    old_marker = {
        "fetched_at": "2024-11-01T00:00:00+00:00",
        "ecosystems": {"npm": {"fetched_at": "2024-11-01T00:00:00+00:00"}},
    }
    (dest / MARKER_NAME).write_text(json.dumps(old_marker))

    result = refresh_osv_database(dest, ["PyPI", "Go", "npm", "crates.io", "Maven"], base_url=server.url, now=NOW)

    status = {e.ecosystem: (e.ok, e.records) for e in result.ecosystems}
    assert status == {
        "PyPI": (True, 2),
        "Go": (True, 1),
        "npm": (False, 0),
        "crates.io": (False, 0),
        "Maven": (False, 0),
    }
    assert not result.ok and [e.ecosystem for e in result.failed] == ["npm", "crates.io", "Maven"]
    errors = {e.ecosystem: e.error or "" for e in result.failed}
    assert errors["npm"] == f"{server.url}/npm/all.zip: HTTP 500 Internal Server Error"
    assert "not a valid zip" in errors["crates.io"]
    missing = len(_real_zips()["Go"]) - 100
    assert errors["Maven"] == f"{server.url}/Maven/all.zip: download cut short ({missing} bytes missing)"
    # failed downloads left the previous zips untouched, and no temporary file behind
    for ecosystem in ("npm", "crates.io", "Maven"):
        assert (dest / ecosystem / "all.zip").read_bytes() == good_npm
    assert (dest / "PyPI/all.zip").read_bytes() == zips["PyPI"]
    assert sorted(p.name for p in dest.rglob("*") if p.is_file()) == [MARKER_NAME] + ["all.zip"] * 5
    assert sorted(server.requests) == sorted(f"/{e}/all.zip" for e in ["PyPI", "Go", "npm", "crates.io", "Maven"])

    marker = json.loads((dest / MARKER_NAME).read_text())
    assert marker["fetched_at"] == NOW.isoformat()
    assert marker["ecosystems"]["PyPI"]["fetched_at"] == NOW.isoformat()
    assert marker["ecosystems"]["PyPI"]["records"] == 2
    assert marker["ecosystems"]["npm"] == {"fetched_at": "2024-11-01T00:00:00+00:00"}  # its refresh failed

    # the refreshed database loads from the zips; its age is its oldest ecosystem's
    db = OsvDatabase.load(dest, now=NOW)
    assert sorted(db.advisories) == ["GO-2023-1631", "PYSEC-2022-42969", "PYSEC-2023-221"]
    assert db.snapshot_source == "marker" and db.snapshot == datetime(2024, 11, 1, tzinfo=UTC)
    assert db.staleness_message() == "OSV database is 22 days old (snapshot 2024-11-01), older than 7 days: refresh it"
    found = scan_dependencies([Dependency("PyPI", "werkzeug", "3.0.0", "requirements.txt", 1)], db).findings
    assert [(f.advisory_id, f.fixed_version) for f in found] == [("CVE-2023-46136", "3.0.1")]


def test_an_unreachable_server_is_reported_not_raised(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    result = refresh_osv_database(tmp_path / "osv", ["PyPI"], base_url=url, timeout=5)

    (entry,) = result.ecosystems
    assert not entry.ok and entry.path is None
    assert entry.error is not None and entry.error.startswith(f"{url}/PyPI/all.zip: cannot connect")
    assert not (tmp_path / "osv" / MARKER_NAME).exists()  # nothing new: no claim of freshness
    assert list((tmp_path / "osv").rglob("*.part")) == []


def test_an_ecosystem_name_cannot_leave_the_destination(server: _Server, tmp_path: Path) -> None:
    result = refresh_osv_database(tmp_path / "osv", ["../etc"], base_url=server.url)

    assert result.ecosystems[0].error == "not a valid ecosystem name"
    assert server.requests == []


def test_osv_refresh_command(server: _Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server.routes = {"/Go/all.zip": (200, _real_zips()["Go"], None)}
    dest = tmp_path / "osv"

    assert main(["osv", "refresh", "--osv-db", str(dest), "--ecosystems", "Go", "--base-url", server.url]) == 0
    assert capsys.readouterr().out.startswith(f"Go: 1 records, 0.0 MB -> {dest / 'Go' / 'all.zip'}")

    code = main(["osv", "refresh", "--osv-db", str(dest), "--ecosystems", "Go,npm", "--base-url", server.url])
    assert code == 1
    assert "npm: FAILED " in capsys.readouterr().err
