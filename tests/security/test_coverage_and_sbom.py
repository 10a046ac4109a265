"""What the reports say besides findings: coverage per ecosystem (a clean npm scan without npm advisories is a
warning, in every format), where a severity came from, the dependency inventory, and the CycloneDX 1.6 SBOM
validated against the schema that `cyclonedx-python-lib` ships."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from codexk8s_pipelines.cli import main
from codexk8s_pipelines.security.cyclonedx import purl_of, to_cyclonedx
from codexk8s_pipelines.security.osv import OsvDatabase
from codexk8s_pipelines.security.report import coverage_notes, render_table, result_to_dict
from codexk8s_pipelines.security.sarif import to_sarif
from codexk8s_pipelines.security.scan import scan_path
from tests.helpers import shared_data_dir

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def put(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def advisory(osv_id: str, ecosystem: str, name: str, fixed: str, **extra: object) -> dict:
    data = {
        "id": osv_id,
        "modified": "2026-11-30T00:00:00Z",
        "summary": f"{name} is vulnerable",
        "affected": [
            {
                "package": {"ecosystem": ecosystem, "name": name},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
            }
        ],
    }
    data.update(extra)
    return data


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "repo"
    put(root, "requirements.txt", "jinja2==2.10\nflask @ https://example.com/flask-3.0.0-py3-none-any.whl\n")
    put(
        root,
        "web/package-lock.json",
        json.dumps(
            {
                "lockfileVersion": 3,
                "packages": {
                    "": {"dependencies": {"lodash": "^4"}},
                    "node_modules/lodash": {"version": "4.17.15"},
                    "node_modules/minimist": {"version": "1.2.0"},
                },
            },
            indent=2,
        ),
    )
    db = tmp_path / "osv"
    # only PyPI advisories are loaded: the npm dependencies are checked against nothing
    put(
        db,
        "GHSA-1.json",
        json.dumps(advisory("GHSA-1", "PyPI", "jinja2", "2.10.1", database_specific={"severity": "HIGH"})),
    )
    put(
        db,
        "PYSEC-2.json",
        json.dumps(
            advisory(
                "PYSEC-2",
                "PyPI",
                "jinja2",
                "2.11.3",
                affected=[
                    {
                        "package": {"ecosystem": "PyPI", "name": "jinja2"},
                        "ecosystem_specific": {"severity": "Moderate"},
                        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.11.3"}]}],
                    }
                ],
            )
        ),
    )
    put(db, "PYSEC-3.json", json.dumps(advisory("PYSEC-3", "PyPI", "jinja2", "3.0.0")))
    return root, db


NPM_WARNING = (
    "npm: 2 dependencies checked against 0 npm advisories: the database has none for this ecosystem, "
    "so no finding means nothing"
)


def test_coverage_severity_sources_and_inventory(tree: tuple[Path, Path]) -> None:
    root, db_dir = tree
    result = scan_path(root, OsvDatabase.load(db_dir, now=NOW))

    sources = {f.advisory_id: (f.severity.rating, f.severity.source) for f in result.findings}
    assert sources == {
        "GHSA-1": ("HIGH", "database_specific.severity"),
        "PYSEC-2": ("MEDIUM", "affected[].ecosystem_specific.severity"),
        "PYSEC-3": ("UNKNOWN", None),
    }
    assert [(c.ecosystem, c.dependencies, c.checked, c.advisories, c.warning) for c in result.coverage] == [
        ("PyPI", 2, 1, 3, None),
        ("npm", 2, 2, 0, NPM_WARNING),
    ]
    assert result.warnings()[0] == NPM_WARNING

    data = result_to_dict(result)
    assert data["warnings"] == result.warnings()
    assert data["coverage"][1]["warning"] == NPM_WARNING
    assert data["counts"]["unpinned_reasons"] == {"direct URL: not a registry release": 1}
    assert [(d["ecosystem"], d["name"], d["version"], d["file"], d["direct"]) for d in data["dependencies"]] == [
        ("PyPI", "jinja2", "2.10", "requirements.txt", True),
        ("PyPI", "flask", None, "requirements.txt", True),
        ("npm", "lodash", "4.17.15", "web/package-lock.json", True),
        ("npm", "minimist", "1.2.0", "web/package-lock.json", False),
    ]
    assert data["findings"][0]["severity"]["source"] == "database_specific.severity"

    table = render_table(result)
    assert "  npm: 2 of 2 dependencies checked against 0 advisories" in table
    assert f"WARNING: {NPM_WARNING}" in table
    assert "unpinned, not matched: 1 direct URL: not a registry release" in table

    assert coverage_notes(result) == [
        "PyPI: 1 of 2 dependencies checked against 3 advisories",
        "npm: 2 of 2 dependencies checked against 0 advisories",
        f"**warning**: {NPM_WARNING}",
    ]

    sarif = to_sarif(result, root)
    notes = sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert {
        "descriptor": {"id": "ecosystem-not-covered"},
        "level": "warning",
        "message": {"text": NPM_WARNING},
    } in notes
    assert sarif["runs"][0]["properties"]["coverage"][1] == {
        "ecosystem": "npm",
        "dependencies": 2,
        "checked": 2,
        "advisories": 0,
    }


def test_cyclonedx_sbom_is_valid_and_complete(tree: tuple[Path, Path]) -> None:
    root, db_dir = tree
    result = scan_path(root, OsvDatabase.load(db_dir, now=NOW))
    text = to_cyclonedx(result)

    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    assert bom["specVersion"] == "1.6" and bom["bomFormat"] == "CycloneDX"
    purls = sorted(c["purl"] for c in bom["components"])
    assert purls == ["pkg:npm/lodash@4.17.15", "pkg:npm/minimist@1.2.0", "pkg:pypi/flask", "pkg:pypi/jinja2@2.10"]
    jinja = next(c for c in bom["components"] if c["name"] == "jinja2")
    assert {"name": "codexk8s:file", "value": "requirements.txt:1"} in jinja["properties"]
    flask = next(c for c in bom["components"] if c["name"] == "flask")
    assert {"name": "codexk8s:unpinned", "value": "direct URL: not a registry release"} in flask["properties"]
    vulns = {v["id"]: v for v in bom["vulnerabilities"]}
    assert sorted(vulns) == ["GHSA-1", "PYSEC-2", "PYSEC-3"]
    assert vulns["GHSA-1"]["affects"] == [{"ref": "pkg:pypi/jinja2@2.10"}]
    assert vulns["GHSA-1"]["ratings"][0]["severity"] == "high"
    assert vulns["GHSA-1"]["recommendation"] == "Upgrade to 2.10.1 or later."


@pytest.mark.parametrize(
    ("ecosystem", "name", "version", "purl"),
    [
        (
            "Maven",
            "org.apache.logging.log4j:log4j-core",
            "2.14.1",
            "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
        ),
        ("npm", "@babel/core", "7.0.0", "pkg:npm/%40babel/core@7.0.0"),
        ("Go", "github.com/gin-gonic/gin", "v1.9.0", "pkg:golang/github.com/gin-gonic/gin@v1.9.0"),
        ("Packagist", "guzzlehttp/guzzle", "7.4.4", "pkg:composer/guzzlehttp/guzzle@7.4.4"),
        ("RubyGems", "rack", "2.2.3", "pkg:gem/rack@2.2.3"),
        ("NuGet", "newtonsoft.json", "13.0.1", "pkg:nuget/newtonsoft.json@13.0.1"),
        ("crates.io", "serde", "1.0.0", "pkg:cargo/serde@1.0.0"),
        ("Hex", "plug", "1.14.0", "pkg:hex/plug@1.14.0"),
        ("Pub", "http", "0.13.4", "pkg:pub/http@0.13.4"),
        ("CRAN", "jsonlite", "1.8.7", "pkg:cran/jsonlite@1.8.7"),
    ],
)
def test_purls(ecosystem: str, name: str, version: str, purl: str) -> None:
    assert purl_of(ecosystem, name, version).to_string() == purl


def test_cli_cyclonedx_and_a_hostile_tree(
    tree: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, db_dir = tree
    os.mkfifo(root / "yarn.lock")
    (root / "a").symlink_to(root / "b")
    (root / "b").symlink_to(root / "a")
    (root / "pnpm-lock.yaml").symlink_to(root / "pnpm-lock.yaml")
    out = tmp_path / "sbom.json"

    code = main(["scan", str(root), "--osv-db", str(db_dir), "--format", "cyclonedx", "--output", str(out)])

    captured = capsys.readouterr()
    assert code == 1  # findings, as --help says; the broken files are reported, not fatal
    assert "Traceback" not in captured.err
    assert f"codexk8s scan: warning: {NPM_WARNING}" in captured.err.splitlines()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(out.read_text()) is None

    code = main(["scan", str(root), "--osv-db", str(db_dir), "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert {(e["file"], e["message"]) for e in data["extraction_errors"]} == {
        ("yarn.lock", "not a regular file (FIFO): not read"),
        ("pnpm-lock.yaml", "symlink loop: not followed"),
    }


def test_a_cvss_score_is_a_number_in_the_sbom(tmp_path: Path) -> None:
    """A real CVSS 9.8 advisory: the rating's score is a JSON number, as the CycloneDX 1.6 schema requires."""
    shared = shared_data_dir() / "osv" / "PyPI" / "vulns" / "llama-index" / "PYSEC-2023-148.yaml"
    if not shared.is_file():
        pytest.skip(f"the shared OSV data is not at {shared}")
    db_dir = tmp_path / "osv"
    db_dir.mkdir()
    shutil.copy(shared, db_dir / shared.name)
    root = tmp_path / "repo"
    root.mkdir()
    (root / "requirements.txt").write_text("llama-index==0.7.0\n")
    text = to_cyclonedx(scan_path(root, OsvDatabase.load(db_dir, now=NOW)))
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    (vuln,) = json.loads(text)["vulnerabilities"]
    rating = next(r for r in vuln["ratings"] if "score" in r)
    assert rating["score"] == 9.8 and rating["severity"] == "critical"
