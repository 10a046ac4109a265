"""`codexk8s scan`: exit codes, the three formats, --output, --max-age-days, and one-line errors."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from jsonschema import Draft4Validator

from codexk8s_pipelines.cli import main
from codexk8s_pipelines.security.osv import MARKER_NAME
from tests.helpers import shared_data_dir

SHARED_OSV = shared_data_dir() / "osv"
SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())
REAL_RECORDS = [
    "PyPI/vulns/oslo-middleware/PYSEC-2018-104.yaml",
    "PyPI/vulns/werkzeug/PYSEC-2023-221.yaml",
    "PyPI/vulns/py/PYSEC-2022-42969.yaml",
    "Go/osv/GO-2023-1631.json",
    "Go/osv/GO-2024-2611.json",
]

needs_shared = pytest.mark.skipif(not SHARED_OSV.is_dir(), reason=f"shared OSV data not found at {SHARED_OSV}")


@pytest.fixture
def db_dir(tmp_path: Path) -> Path:
    """A few real advisories copied out of the shared data, so each CLI run loads in milliseconds."""
    if not SHARED_OSV.is_dir():
        pytest.skip(f"shared OSV data not found at {SHARED_OSV}")
    target = tmp_path / "osv"
    for relative in REAL_RECORDS:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SHARED_OSV / relative, target / relative)
    return target


@pytest.fixture
def vulnerable(tmp_path: Path) -> Path:
    root = tmp_path / "vulnerable"
    root.mkdir()
    (root / "requirements.txt").write_text("Werkzeug==3.0.0\noslo.middleware==3.10.0\nrequests>=2\n")
    (root / "go.mod").write_text("module example.com/svc\n\ngo 1.21\n\nrequire google.golang.org/protobuf v1.29.0\n")
    (root / "web").mkdir()
    (root / "web/package-lock.json").write_text('{"lockfileVersion": 3, "packages": {')
    return root


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    root = tmp_path / "clean"
    root.mkdir()
    (root / "requirements.txt").write_text("werkzeug==3.0.1\noslo.middleware==3.23.1\n")
    (root / "go.mod").write_text("module example.com/svc\n\ngo 1.21\n\nrequire google.golang.org/protobuf v1.33.0\n")
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["scan", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_table_with_findings_exits_1(capsys: pytest.CaptureFixture[str], db_dir: Path, vulnerable: Path) -> None:
    code, out, err = run(capsys, str(vulnerable), "--osv-db", str(db_dir))

    assert code == 1, err
    lines = out.splitlines()
    assert lines[0].split() == ["SEVERITY", "PACKAGE", "VERSION", "FIX", "ADVISORY", "LOCATION"]
    assert lines[1].split() == ["HIGH", "7.5", "werkzeug", "3.0.0", "3.0.1", "CVE-2023-46136", "requirements.txt:1"]
    rows = [line.split() for line in lines[2:5]]
    assert ["UNKNOWN", "google.golang.org/protobuf", "v1.29.0", "v1.29.1", "CVE-2023-24535", "go.mod:5"] in rows
    assert ["UNKNOWN", "google.golang.org/protobuf", "v1.29.0", "v1.33.0", "CVE-2024-24786", "go.mod:5"] in rows
    assert ["UNKNOWN", "oslo-middleware", "3.10.0", "3.19.1", "CVE-2017-2592", "requirements.txt:2"] in rows
    assert "4 findings (1 high, 3 unknown) in 4 dependencies scanned (1 unpinned, not matched) from 3 files" in out
    assert any(line.startswith("WARNING: OSV database is ") and "older than 7 days" in line for line in lines)
    assert "1 extraction errors:" in out
    assert "  web/package-lock.json:1: invalid JSON" in out
    assert err == ""


def test_clean_checkout_exits_0(capsys: pytest.CaptureFixture[str], db_dir: Path, clean: Path) -> None:
    code, out, _ = run(capsys, str(clean), "--osv-db", str(db_dir))

    assert code == 0
    assert out.startswith("0 findings in 3 dependencies scanned (0 unpinned, not matched) from 2 files")
    assert "WARNING: OSV database is" in out


def test_json_format_is_the_whole_result(capsys: pytest.CaptureFixture[str], db_dir: Path, vulnerable: Path) -> None:
    code, out, err = run(capsys, str(vulnerable), "--osv-db", str(db_dir), "--format", "json")

    assert code == 1
    data = json.loads(out)
    assert data["format_version"] == 1
    assert data["counts"] == {
        "dependencies": 4,
        "unpinned": 1,
        "unsupported": 0,
        "findings": 4,
        "by_severity": {"HIGH": 1, "UNKNOWN": 3},
        "unpinned_reasons": {},
    }
    # the inventory: every dependency, with where it is declared
    assert len(data["dependencies"]) == 4
    assert {d["ecosystem"] for d in data["dependencies"]} == {c["ecosystem"] for c in data["coverage"]}
    assert sum(c["dependencies"] for c in data["coverage"]) == 4
    first = data["findings"][0]
    assert first["advisory_id"] == "CVE-2023-46136" and first["fixed_version"] == "3.0.1"
    assert first["severity"] == {
        "rating": "HIGH",
        "score": 7.5,
        "vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H",
        "type": "CVSS_V3",
        "error": None,
        "source": "CVSS_V3 vector",
    }
    assert (first["file"], first["line"]) == ("requirements.txt", 1)
    assert len(first["fingerprint"]) == 64
    assert data["database"]["records"] == 5 and data["database"]["stale"] is True
    assert data["database"]["stale_message"].startswith("OSV database is ")
    assert data["extraction_errors"][0]["file"] == "web/package-lock.json"
    assert err.startswith("codexk8s scan: warning: OSV database is ")


def test_sarif_to_an_output_file(
    capsys: pytest.CaptureFixture[str], db_dir: Path, vulnerable: Path, tmp_path: Path
) -> None:
    target = tmp_path / "out" / "scan.sarif"
    target.parent.mkdir()
    code, out, err = run(capsys, str(vulnerable), "--osv-db", str(db_dir), "--format", "sarif", "--output", str(target))

    assert code == 1
    assert out == ""
    log = json.loads(target.read_text())
    assert list(Draft4Validator(SCHEMA).iter_errors(log)) == []
    assert len(log["runs"][0]["results"]) == 4
    notes = log["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert any(n["descriptor"]["id"] == "osv-database-stale" for n in notes)
    assert f"4 findings written to {target}" in err
    assert "warning: OSV database is" in err


def test_max_age_days_decides_the_warning(capsys: pytest.CaptureFixture[str], db_dir: Path, clean: Path) -> None:
    fetched = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    (db_dir / MARKER_NAME).write_text(
        json.dumps({"fetched_at": fetched, "ecosystems": {"PyPI": {"fetched_at": fetched}}})
    )

    code, out, _ = run(capsys, str(clean), "--osv-db", str(db_dir))
    assert code == 0 and "WARNING" not in out

    code, out, _ = run(capsys, str(clean), "--osv-db", str(db_dir), "--max-age-days", "2")
    assert code == 0
    assert "WARNING: OSV database is 3 days old" in out and "older than 2 days" in out


@needs_shared
def test_against_the_whole_shared_database(capsys: pytest.CaptureFixture[str], vulnerable: Path) -> None:
    code, out, _ = run(capsys, str(vulnerable), "--osv-db", str(SHARED_OSV), "--format", "json")

    assert code == 1
    data = json.loads(out)
    assert data["database"]["records"] == 6925 and data["database"]["withdrawn"] == 27
    assert {f["advisory_id"] for f in data["findings"]} == {
        "CVE-2023-46136",
        "CVE-2017-2592",
        "CVE-2023-24535",
        "CVE-2024-24786",
    }


# -- exit 2 -------------------------------------------------------------------------------------------------


def test_missing_path_exits_2(capsys: pytest.CaptureFixture[str], db_dir: Path, tmp_path: Path) -> None:
    code, out, err = run(capsys, str(tmp_path / "nope"), "--osv-db", str(db_dir))

    assert (code, out) == (2, "")
    assert err == f"codexk8s scan: {tmp_path / 'nope'}: no such directory\n"


def test_missing_database_exits_2(capsys: pytest.CaptureFixture[str], clean: Path, tmp_path: Path) -> None:
    code, _, err = run(capsys, str(clean), "--osv-db", str(tmp_path / "no-db"))

    assert code == 2
    assert err == f"codexk8s scan: --osv-db {tmp_path / 'no-db'}: no such directory\n"


def test_database_without_usable_records_exits_2(
    capsys: pytest.CaptureFixture[str], clean: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-db"
    empty.mkdir()
    (empty / "broken.json").write_text("{")
    (empty / "withdrawn.json").write_text(json.dumps({"id": "GHSA-x", "withdrawn": "2024-01-01T00:00:00Z"}))

    code, _, err = run(capsys, str(clean), "--osv-db", str(empty))

    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith(
        f"codexk8s scan: --osv-db {empty}: no usable OSV records (2 files read, 1 unreadable, 1 withdrawn"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--format", "xml"], "argument --format: invalid choice: 'xml'"),
        (["--max-age-days", "0"], "argument --max-age-days: 0 is not ≥ 1"),
        (["--max-age-days", "week"], "argument --max-age-days: 'week' is not a whole number"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], db_dir: Path, clean: Path, extra: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["scan", str(clean), "--osv-db", str(db_dir), *extra])
    out, err = capsys.readouterr()

    assert exited.value.code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("codexk8s scan: ")
    assert message in err


def test_osv_db_is_required(capsys: pytest.CaptureFixture[str], clean: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["scan", str(clean)])
    assert exited.value.code == 2
    assert "the following arguments are required: --osv-db" in capsys.readouterr().err
