"""SARIF output, validated against the SARIF 2.1.0 JSON schema (vendored from @microsoft/jest-sarif)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jsonschema import Draft4Validator

from codexk8s_pipelines.security.osv import OsvDatabase
from codexk8s_pipelines.security.sarif import FINGERPRINT_KEY, to_sarif
from codexk8s_pipelines.security.scan import scan_path
from tests.helpers import shared_data_dir

SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())
SHARED_OSV = shared_data_dir() / "osv"
NOW = datetime(2024, 11, 23, 12, 0, tzinfo=UTC)
REAL_RECORDS = [
    "PyPI/vulns/werkzeug/PYSEC-2023-221.yaml",  # CVSS 3.1, 7.5 HIGH
    "PyPI/vulns/cdo-local-uuid/PYSEC-2024-6.yaml",  # CVSS 3.1, 2.8 LOW
    "PyPI/vulns/py/PYSEC-2022-42969.yaml",  # no severity: UNKNOWN
]
MODERATE = {  # GHSA-style rating without a vector
    "id": "GHSA-mmmm-mmmm-mmmm",
    "modified": "2024-10-01T00:00:00Z",
    "summary": "Moderate issue in demo",
    "database_specific": {"severity": "MODERATE"},
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "demo"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.1"}]}],
        }
    ],
}


def validate(log: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in Draft4Validator(SCHEMA).iter_errors(log)]


@pytest.fixture
def db_dir(tmp_path: Path) -> Path:
    if not SHARED_OSV.is_dir():
        pytest.skip(f"shared OSV data not found at {SHARED_OSV}")
    target = tmp_path / "osv"
    for relative in REAL_RECORDS:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SHARED_OSV / relative, target / relative)
    (target / "GHSA-mmmm-mmmm-mmmm.json").write_text(json.dumps(MODERATE))
    return target


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "svc").mkdir(parents=True)
    (root / "svc/requirements.txt").write_text("werkzeug==3.0.0\ncdo-local-uuid==0.4.0\npy==1.11.0\ndemo==1.0\n")
    (root / "web").mkdir()
    (root / "web/package-lock.json").write_text('{"lockfileVersion": 3, "packages": {')  # broken
    return root


def test_sarif_log_is_schema_valid_with_rules_levels_locations_and_fingerprints(db_dir: Path, repo: Path) -> None:
    result = scan_path(repo, OsvDatabase.load(db_dir, now=NOW))
    log = to_sarif(result, repo)

    assert validate(log) == []
    assert log["version"] == "2.1.0"
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "codexk8s scan"
    rules = {r["id"]: r for r in driver["rules"]}
    assert set(rules) == {"CVE-2023-46136", "CVE-2024-22194", "CVE-2022-42969", "GHSA-mmmm-mmmm-mmmm"}
    assert rules["CVE-2023-46136"]["properties"]["security-severity"] == "7.5"
    assert rules["CVE-2023-46136"]["helpUri"] == (
        "https://github.com/pallets/werkzeug/security/advisories/GHSA-hrfv-mqp8-q5rw"
    )
    assert rules["CVE-2024-22194"]["properties"]["security-severity"] == "2.8"
    assert rules["GHSA-mmmm-mmmm-mmmm"]["properties"]["security-severity"] == "4.0"  # MODERATE: band floor
    assert "security-severity" not in rules["CVE-2022-42969"]["properties"]  # unknown: no number invented
    assert rules["GHSA-mmmm-mmmm-mmmm"]["shortDescription"]["text"] == "Moderate issue in demo"

    results = {r["ruleId"]: r for r in run["results"]}
    assert {k: r["level"] for k, r in results.items()} == {
        "CVE-2023-46136": "error",
        "GHSA-mmmm-mmmm-mmmm": "warning",
        "CVE-2024-22194": "note",
        "CVE-2022-42969": "note",
    }
    werkzeug = results["CVE-2023-46136"]
    assert driver["rules"][werkzeug["ruleIndex"]]["id"] == "CVE-2023-46136"
    assert werkzeug["locations"] == [
        {"physicalLocation": {"artifactLocation": {"uri": "svc/requirements.txt", "uriBaseId": "%SRCROOT%"},
                              "region": {"startLine": 1}}}
    ]  # fmt: skip
    message = werkzeug["message"]["text"]
    assert "werkzeug 3.0.0" in message and "Upgrade to 3.0.1" in message
    assert "No fixed version is known" in results["CVE-2022-42969"]["message"]["text"]
    finding = next(f for f in result.findings if f.advisory_id == "CVE-2023-46136")
    assert werkzeug["partialFingerprints"] == {FINGERPRINT_KEY: finding.fingerprint}
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == repo.resolve().as_uri() + "/"

    (invocation,) = run["invocations"]
    notes = {n["descriptor"]["id"]: n for n in invocation["toolExecutionNotifications"]}
    assert notes["osv-database-stale"]["level"] == "warning"
    assert notes["osv-database-stale"]["message"]["text"].startswith("OSV database is 53 days old")
    extraction = notes["extraction-error"]
    assert extraction["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "web/package-lock.json"
    assert extraction["message"]["text"].startswith("invalid JSON")


def test_a_fresh_database_has_no_stale_notification_and_an_empty_scan_is_valid(db_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "clean").mkdir()
    (tmp_path / "clean/requirements.txt").write_text("werkzeug==3.0.1\n")
    db = OsvDatabase.load(db_dir, max_age=None)

    log = to_sarif(scan_path(tmp_path / "clean", db), tmp_path / "clean")

    assert validate(log) == []
    (run,) = log["runs"]
    assert run["results"] == [] and run["tool"]["driver"]["rules"] == []
    assert run["invocations"][0]["toolExecutionNotifications"] == []


def test_the_validator_does_reject_a_broken_log() -> None:
    assert validate({"version": "2.1.0", "runs": [{"tool": {"driver": {}}, "results": [{"level": "fatal"}]}]})
