"""The offline OSV database: loading the shared advisories, broken records, zips, staleness and alias groups."""

from __future__ import annotations

import copy
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from codexk8s_pipelines.security import osv
from codexk8s_pipelines.security.osv import MARKER_NAME, OsvDatabase
from tests.helpers import shared_data_dir

SHARED_OSV = shared_data_dir() / "osv"
NOW = datetime(2024, 11, 23, 12, 0, tzinfo=UTC)

needs_shared = pytest.mark.skipif(not SHARED_OSV.is_dir(), reason=f"shared OSV data not found at {SHARED_OSV}")


def record(record_id: str, package: str = "demo", ecosystem: str = "PyPI", **extra: object) -> dict:
    data: dict = {
        "id": record_id,
        "modified": "2024-05-01T00:00:00Z",
        "affected": [
            {
                "package": {"ecosystem": ecosystem, "name": package},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0"}]}],
            }
        ],
    }
    data.update(extra)
    return data


def write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if path.suffix == ".json" else yaml.safe_dump(data))
    return path


# -- the shared databases ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pypi_db() -> OsvDatabase:
    if not SHARED_OSV.is_dir():
        pytest.skip(f"shared OSV data not found at {SHARED_OSV}")
    return OsvDatabase.load(SHARED_OSV / "PyPI", now=NOW)


@needs_shared
def test_shared_pypi_database_loads_every_record_but_the_withdrawn(pypi_db: OsvDatabase) -> None:
    files = list((SHARED_OSV / "PyPI").rglob("*.yaml"))
    db = pypi_db

    assert len(files) == db.files == 2661
    assert db.errors == []
    assert db.withdrawn == 10
    assert len(db) == db.files - db.withdrawn - len(db.errors) == 2651
    assert db.skipped == 0 and db.duplicates == 0
    assert len(db.packages()) == 660
    # the index is by normalised name: PEP 503 spelling differences do not matter
    assert [e.advisory.id for e in db.lookup("PyPI", "Oslo_Middleware")] == ["PYSEC-2018-104"]
    # withdrawn records are not indexed (redis' PYSEC-2023-73 was withdrawn)
    assert "PYSEC-2023-73" not in db


@needs_shared
def test_shared_pypi_snapshot_is_the_newest_modified_record(pypi_db: OsvDatabase) -> None:
    db = pypi_db

    assert db.snapshot_source == "records"
    assert db.snapshot is not None and db.snapshot.date().isoformat() == "2024-10-10"
    assert db.age is not None and db.age.days == 43
    assert db.stale
    assert db.staleness_message() == (
        "OSV database is 43 days old (snapshot 2024-10-10), older than 7 days: refresh it"
    )
    fresh = copy.copy(db)
    fresh.max_age = timedelta(days=60)
    assert not fresh.stale and fresh.staleness_message() is None


@needs_shared
def test_shared_go_database_has_no_dates_so_its_age_is_unknown() -> None:
    db = OsvDatabase.load(SHARED_OSV / "Go", now=NOW)

    assert db.files == 4291 and db.errors == []
    assert db.withdrawn == 17
    assert len(db) == 4274
    assert len(db.packages()) == 1367
    # vulndb's repository copy writes the zero time as `modified`: that says nothing about the data's age
    assert db.snapshot is None and db.age is None
    assert db.stale
    assert "age is unknown" in (db.staleness_message() or "")
    assert not OsvDatabase.load(SHARED_OSV / "Go", max_age=None).stale


@needs_shared
def test_both_shared_databases_load_together_with_their_alias_groups() -> None:
    db = OsvDatabase.load(SHARED_OSV, now=NOW)

    assert len(db) == 2651 + 4274 and db.withdrawn == 27 and db.errors == []
    assert osv._YamlLoader is yaml.CSafeLoader  # the fast loader is the one in use
    # PYSEC-2024-5 (case-utils) and PYSEC-2024-6 (cdo-local-uuid) are one vulnerability under one CVE
    group = db.group("PYSEC-2024-6")
    assert group.canonical == "CVE-2024-22194"
    assert group.ids == ("CVE-2024-22194", "GHSA-rgrf-6mf5-m882", "PYSEC-2024-5", "PYSEC-2024-6")
    assert group.records == ("PYSEC-2024-5", "PYSEC-2024-6")
    assert db.group("GO-2022-0882").canonical == "CVE-2020-11576"
    # the Go module index is exact: module paths are case-sensitive
    assert {e.advisory.id for e in db.lookup("Go", "github.com/argoproj/argo-cd")} >= {"GO-2022-0882"}
    assert db.lookup("Go", "GitHub.com/argoproj/argo-cd") == ()


# -- what a directory may hold -------------------------------------------------------------------------------


def test_records_at_any_depth_in_json_and_yaml(tmp_path: Path) -> None:
    write(tmp_path / "a.json", record("GHSA-aaaa-aaaa-aaaa"))
    write(tmp_path / "deep/er/b.yaml", record("PYSEC-2024-100", "other"))
    write(tmp_path / "c.yml", record("PYSEC-2024-101", "third"))
    write(tmp_path / ".hidden/d.json", record("PYSEC-2024-102"))  # dot-directories are not walked
    (tmp_path / "README.md").write_text("not a record")

    db = OsvDatabase.load(tmp_path, now=NOW)

    assert sorted(db.advisories) == ["GHSA-aaaa-aaaa-aaaa", "PYSEC-2024-100", "PYSEC-2024-101"]
    assert db.files == 3 and db.errors == []


def test_malformed_records_are_reported_with_their_path_and_the_rest_loads(tmp_path: Path) -> None:
    good = write(tmp_path / "good.json", record("PYSEC-2024-1"))
    (tmp_path / "bad.json").write_text('{"id": "X", ')
    (tmp_path / "bad.yaml").write_text("id: [unclosed\n")
    write(tmp_path / "list.json", [record("PYSEC-2024-2")])
    write(tmp_path / "noid.json", {"affected": []})
    shape = record("PYSEC-2024-3")
    shape["affected"][0]["ranges"] = [{"type": "ECOSYSTEM", "events": {"introduced": "0"}}]
    write(tmp_path / "shape.json", shape)
    two_keys = record("PYSEC-2024-4")
    two_keys["affected"][0]["ranges"][0]["events"] = [{"introduced": "1.0", "fixed": "1.2"}]
    write(tmp_path / "twokeys.json", two_keys)
    number = record("PYSEC-2024-5")
    number["affected"][0]["ranges"][0]["events"] = [{"introduced": "0"}, {"fixed": 1.10}]
    write(tmp_path / "number.json", number)

    db = OsvDatabase.load(tmp_path, now=NOW)

    assert list(db.advisories) == ["PYSEC-2024-1"]
    assert db.lookup("PyPI", "demo")[0].advisory.source == str(good)
    errors = {Path(e.path).name: e.message for e in db.errors}
    assert set(errors) == {
        "bad.json",
        "bad.yaml",
        "list.json",
        "noid.json",
        "shape.json",
        "twokeys.json",
        "number.json",
    }
    assert errors["bad.json"].startswith("invalid JSON")
    assert errors["bad.yaml"].startswith("invalid YAML")
    assert errors["list.json"] == "record is not a mapping (got list)"
    assert errors["noid.json"] == "missing `id`"
    assert errors["shape.json"] == "affected[0].ranges[0].events is not a non-empty list"
    assert errors["twokeys.json"] == "affected[0].ranges[0].events[0] is not a mapping with exactly one event"
    assert errors["number.json"] == "affected[0].ranges[0].events[1].fixed is not a version string"
    assert str(db.errors[0]).startswith(str(tmp_path))


def test_withdrawn_records_are_counted_not_indexed(tmp_path: Path) -> None:
    write(tmp_path / "w.json", record("GHSA-wwww-wwww-wwww", withdrawn="2024-06-01T00:00:00Z"))
    write(tmp_path / "k.json", record("GHSA-kkkk-kkkk-kkkk"))

    db = OsvDatabase.load(tmp_path, now=NOW)

    assert db.withdrawn == 1
    assert list(db.advisories) == ["GHSA-kkkk-kkkk-kkkk"]
    assert [e.advisory.id for e in db.lookup("PyPI", "demo")] == ["GHSA-kkkk-kkkk-kkkk"]


def test_only_supported_ecosystems_are_indexed_and_suffixes_are_dropped(tmp_path: Path) -> None:
    both = record("DSA-1-1", "demo", "Debian:11")
    both["affected"].append({"package": {"ecosystem": "PyPI", "name": "Demo_Pkg"}, "versions": ["1.0"]})
    write(tmp_path / "both.json", both)
    write(tmp_path / "alpine.json", record("ALPINE-1", "openssl", "Alpine:v3.16"))
    write(tmp_path / "hackage.json", record("HSEC-2023-0001", "aeson", "Hackage"))
    write(tmp_path / "go.json", record("GO-2024-1", "example.com/mod", "Go"))

    db = OsvDatabase.load(tmp_path, now=NOW)

    assert sorted(db.advisories) == ["DSA-1-1", "GO-2024-1"]
    assert [e.ecosystem for e in db.advisories["DSA-1-1"].affected] == ["PyPI"]
    assert db.lookup("PyPI", "demo-pkg")[0].advisory.id == "DSA-1-1"
    assert db.lookup("Debian", "demo") == ()
    assert db.skipped == 2
    assert db.skipped_ecosystems == {"Alpine": 1, "Hackage": 1}


def test_all_zip_exports_are_read_and_a_newer_duplicate_wins(tmp_path: Path) -> None:
    older = record("GHSA-zzzz-zzzz-zzzz", summary="from the tree", modified="2024-01-01T00:00:00Z")
    write(tmp_path / "tree/GHSA-zzzz-zzzz-zzzz.json", older)
    (tmp_path / "PyPI").mkdir()
    with zipfile.ZipFile(tmp_path / "PyPI/all.zip", "w") as archive:
        newer = record("GHSA-zzzz-zzzz-zzzz", summary="from the zip", modified="2024-03-01T00:00:00Z")
        archive.writestr("GHSA-zzzz-zzzz-zzzz.json", json.dumps(newer))
        archive.writestr("PYSEC-2024-9.json", json.dumps(record("PYSEC-2024-9", "zipped")))
        archive.writestr("broken.json", "{")

    db = OsvDatabase.load(tmp_path, now=NOW)

    assert sorted(db.advisories) == ["GHSA-zzzz-zzzz-zzzz", "PYSEC-2024-9"]
    assert db.advisories["GHSA-zzzz-zzzz-zzzz"].summary == "from the zip"
    assert db.duplicates == 1
    assert db.files == 4
    assert [e.path for e in db.errors] == [f"{tmp_path / 'PyPI/all.zip'}!broken.json"]
    assert db.lookup("PyPI", "zipped")[0].advisory.source.endswith("all.zip!PYSEC-2024-9.json")


def test_a_corrupt_zip_is_an_error_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "Go").mkdir()
    (tmp_path / "Go/all.zip").write_bytes(b"PK\x03\x04 this is not a zip")
    write(tmp_path / "ok.json", record("GO-2024-2", "example.com/m", "Go"))

    db = OsvDatabase.load(tmp_path, now=NOW)

    assert list(db.advisories) == ["GO-2024-2"]
    assert len(db.errors) == 1 and db.errors[0].path.endswith("all.zip")
    assert db.errors[0].message.startswith("not a readable zip archive")


def test_missing_database_path_raises() -> None:
    with pytest.raises(FileNotFoundError):
        OsvDatabase.load(Path("/nonexistent/osv"))


# -- staleness ----------------------------------------------------------------------------------------------


def test_the_refresh_marker_decides_the_age_and_its_oldest_ecosystem_counts(tmp_path: Path) -> None:
    write(tmp_path / "r.json", record("PYSEC-2024-1", modified="2024-11-20T00:00:00Z"))
    marker = {
        "fetched_at": "2024-11-22T00:00:00+00:00",
        "ecosystems": {
            "PyPI": {"fetched_at": "2024-11-22T00:00:00+00:00"},
            "Go": {"fetched_at": "2024-11-01T00:00:00+00:00"},  # its last refresh failed since
        },
    }
    (tmp_path / MARKER_NAME).write_text(json.dumps(marker))

    db = OsvDatabase.load(tmp_path, now=NOW)

    assert db.files == 1  # the marker is not a record
    assert db.snapshot_source == "marker"
    assert db.snapshot == datetime(2024, 11, 1, tzinfo=UTC)
    assert db.stale
    assert db.staleness_message() == "OSV database is 22 days old (snapshot 2024-11-01), older than 7 days: refresh it"
    assert not OsvDatabase.load(tmp_path, now=NOW, max_age=timedelta(days=30)).stale


def test_a_fresh_database_is_not_stale_and_max_age_is_configurable(tmp_path: Path) -> None:
    write(tmp_path / "r.json", record("PYSEC-2024-1", modified="2024-11-21T12:00:00Z"))

    assert not OsvDatabase.load(tmp_path, now=NOW).stale
    short = OsvDatabase.load(tmp_path, now=NOW, max_age=timedelta(days=1))
    assert short.stale
    assert short.staleness_message() == "OSV database is 2 days old (snapshot 2024-11-21), older than 1 day: refresh it"
    summary = short.summary()
    assert summary.stale and summary.age_days == 2.0 and summary.max_age_days == 1.0
    assert summary.stale_message == short.staleness_message()


# -- alias groups -------------------------------------------------------------------------------------------


def test_aliases_group_transitively_and_the_smallest_cve_names_the_group(tmp_path: Path) -> None:
    write(tmp_path / "a.json", record("GHSA-aaaa-aaaa-aaaa", aliases=["CVE-2024-0200"]))
    write(tmp_path / "b.json", record("PYSEC-2024-7", aliases=["GHSA-aaaa-aaaa-aaaa", "CVE-2024-0100"]))
    write(tmp_path / "c.json", record("OSV-2024-3", aliases=["PYSEC-2024-7"]))
    write(tmp_path / "d.json", record("GHSA-dddd-dddd-dddd", aliases=["GHSA-cccc-cccc-cccc"]))

    db = OsvDatabase.load(tmp_path, now=NOW)

    group = db.group("OSV-2024-3")
    assert group is db.group("GHSA-aaaa-aaaa-aaaa") is db.group("CVE-2024-0200")
    assert group.canonical == "CVE-2024-0100"
    assert group.records == ("GHSA-aaaa-aaaa-aaaa", "OSV-2024-3", "PYSEC-2024-7")
    # no CVE in the group: the smallest id of all
    assert db.group("GHSA-dddd-dddd-dddd").canonical == "GHSA-cccc-cccc-cccc"
    # an id nobody mentions is a group of its own
    assert db.group("CVE-1999-0001").ids == ("CVE-1999-0001",)
