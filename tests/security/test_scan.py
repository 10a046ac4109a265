"""Scanning checkouts: lockfiles written here, advisories from the shared OSV data (and small ones for the rest)."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from codexk8s_pipelines.security.dependencies import Dependency
from codexk8s_pipelines.security.osv import OsvDatabase
from codexk8s_pipelines.security.scan import finding_fingerprint, scan_dependencies, scan_path
from tests.helpers import shared_data_dir

SHARED_OSV = shared_data_dir() / "osv"
NOW = datetime(2024, 11, 23, 12, 0, tzinfo=UTC)

needs_shared = pytest.mark.skipif(not SHARED_OSV.is_dir(), reason=f"shared OSV data not found at {SHARED_OSV}")

VULNERABLE_REQUIREMENTS = """\
oslo.middleware==3.10.0
py==1.11.0
# a comment
gratient==0.5
Werkzeug==2.3.7
cdo-local-uuid==0.4.0
requests>=2
"""
FIXED_REQUIREMENTS = """\
oslo.middleware==3.19.1
py==1.11.1
gratient==0.6
Werkzeug==3.0.1
requests>=2
"""
VULNERABLE_GO_MOD = """\
module example.com/svc

go 1.21

require (
\tgoogle.golang.org/protobuf v1.29.0
\tgolang.org/x/sys v0.0.0-20220310020820-b874c991c1a5 // indirect
)
"""
FIXED_GO_MOD = """\
module example.com/svc

go 1.21

require (
\tgoogle.golang.org/protobuf v1.33.0
\tgolang.org/x/sys v0.44.0 // indirect
)
"""


@pytest.fixture(scope="module")
def shared_db() -> OsvDatabase:
    if not SHARED_OSV.is_dir():
        pytest.skip(f"shared OSV data not found at {SHARED_OSV}")
    return OsvDatabase.load(SHARED_OSV, now=NOW)


def checkout(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def brief(result) -> set[tuple]:  # type: ignore[no-untyped-def]
    return {(f.file, f.line, f.package, f.version, f.advisory_id, f.fixed_version) for f in result.findings}


@needs_shared
def test_vulnerable_requirements_and_go_mod_give_exactly_the_known_findings(
    tmp_path: Path, shared_db: OsvDatabase
) -> None:
    root = checkout(
        tmp_path,
        {
            "vulnerable/requirements.txt": VULNERABLE_REQUIREMENTS,
            "vulnerable/go.mod": VULNERABLE_GO_MOD,
            "fixed/requirements.txt": FIXED_REQUIREMENTS,
            "fixed/go.mod": FIXED_GO_MOD,
        },
    )

    result = scan_path(root, shared_db)

    req, gomod = "vulnerable/requirements.txt", "vulnerable/go.mod"
    assert brief(result) == {
        (req, 1, "oslo-middleware", "3.10.0", "CVE-2017-2592", "3.19.1"),  # PYSEC-2018-104, second interval
        (req, 2, "py", "1.11.0", "CVE-2022-42969", None),  # last_affected: no fix known
        (req, 4, "gratient", "0.5", "PYSEC-2024-1", None),  # explicit versions list only
        (req, 5, "werkzeug", "2.3.7", "CVE-2023-46136", "2.3.8"),  # PYSEC-2023-221, first of two intervals
        (req, 6, "cdo-local-uuid", "0.4.0", "CVE-2024-22194", None),  # PYSEC-2024-6, introduced 0 and unfixed
        (gomod, 6, "google.golang.org/protobuf", "v1.29.0", "CVE-2023-24535", "v1.29.1"),  # GO-2023-1631
        (gomod, 6, "google.golang.org/protobuf", "v1.29.0", "CVE-2024-24786", "v1.33.0"),  # GO-2024-2611
        (
            gomod,
            7,
            "golang.org/x/sys",
            "v0.0.0-20220310020820-b874c991c1a5",
            "CVE-2022-29526",
            "v0.0.0-20220412211240-33da011f77ad",
        ),  # GO-2022-0493: pseudo-versions
        (gomod, 7, "golang.org/x/sys", "v0.0.0-20220310020820-b874c991c1a5", "CVE-2026-39824", "v0.44.0"),
    }
    assert result.dependencies == 6 + 5 + 2 + 2 and result.unpinned == 2
    assert sorted(result.files) == ["fixed/go.mod", "fixed/requirements.txt", gomod, req]
    assert result.extraction_errors == [] and result.matching_errors == []

    by_id = {(f.package, f.advisory_id): f for f in result.findings}
    werkzeug = by_id["werkzeug", "CVE-2023-46136"]
    assert werkzeug.aliases == ("GHSA-hrfv-mqp8-q5rw", "PYSEC-2023-221")
    assert werkzeug.records == ("PYSEC-2023-221",)
    assert werkzeug.severity.label() == "HIGH 7.5"
    assert werkzeug.url == "https://github.com/pallets/werkzeug/security/advisories/GHSA-hrfv-mqp8-q5rw"
    assert werkzeug.summary.startswith("Werkzeug is a comprehensive WSGI web application library.")
    gratient = by_id["gratient", "PYSEC-2024-1"]
    assert gratient.summary == "gratient 0.5 contains credential harvesting code"
    assert gratient.url == "https://osv.dev/vulnerability/PYSEC-2024-1"  # no ADVISORY reference
    assert by_id["cdo-local-uuid", "CVE-2024-22194"].severity.label() == "LOW 2.8"

    # worst first, then by package
    assert [f.severity.rating for f in result.findings][:2] == ["HIGH", "LOW"]
    unknown = [f.package for f in result.findings if f.severity.rating == "UNKNOWN"]
    assert unknown == sorted(unknown, key=str.lower)


@needs_shared
def test_database_summary_travels_with_the_result(tmp_path: Path, shared_db: OsvDatabase) -> None:
    result = scan_path(checkout(tmp_path, {"requirements.txt": "py==1.11.0\n"}), shared_db)

    assert result.database.records == 6925
    assert result.database.withdrawn == 27
    assert result.database.stale
    assert result.database.stale_message == (
        "OSV database is 43 days old (snapshot 2024-10-10), older than 7 days: refresh it"
    )


@needs_shared
def test_fingerprint_survives_line_moves_and_still_vulnerable_bumps_but_not_another_file(
    tmp_path: Path, shared_db: OsvDatabase
) -> None:
    before = scan_path(checkout(tmp_path / "a", {"requirements.txt": "Werkzeug==2.3.7\n"}), shared_db)
    after = scan_path(
        checkout(tmp_path / "b", {"requirements.txt": "# pinned for the API\nflask==3.0.0\nwerkzeug==3.0.0\n"}),
        shared_db,
    )
    elsewhere = scan_path(checkout(tmp_path / "c", {"api/requirements.txt": "Werkzeug==2.3.7\n"}), shared_db)

    (old,) = [f for f in before.findings if f.advisory_id == "CVE-2023-46136"]
    (new,) = [f for f in after.findings if f.advisory_id == "CVE-2023-46136"]
    (other,) = [f for f in elsewhere.findings if f.advisory_id == "CVE-2023-46136"]
    assert (old.line, old.version, old.fixed_version) == (1, "2.3.7", "2.3.8")
    assert (new.line, new.version, new.fixed_version) == (3, "3.0.0", "3.0.1")
    assert new.fingerprint == old.fingerprint
    assert other.fingerprint != old.fingerprint
    expected = hashlib.sha256(b"security\0PyPI\0werkzeug\0requirements.txt\0CVE-2023-46136").hexdigest()
    assert old.fingerprint == expected == finding_fingerprint("PyPI", "Werkzeug", "requirements.txt", "CVE-2023-46136")


@needs_shared
def test_one_cve_on_two_packages_is_two_findings(tmp_path: Path, shared_db: OsvDatabase) -> None:
    # PYSEC-2024-5 (case-utils) and PYSEC-2024-6 (cdo-local-uuid) alias CVE-2024-22194
    deps = [
        Dependency("PyPI", "case_utils", "0.5.0", "requirements.txt", 1),
        Dependency("PyPI", "cdo-local-uuid", "0.4.0", "requirements.txt", 2),
    ]
    result = scan_dependencies(deps, shared_db)

    assert [(f.package, f.advisory_id, f.records) for f in result.findings] == [
        ("case_utils", "CVE-2024-22194", ("PYSEC-2024-5",)),
        ("cdo-local-uuid", "CVE-2024-22194", ("PYSEC-2024-6",)),
    ]
    assert len({f.fingerprint for f in result.findings}) == 2


@needs_shared
def test_go_stdlib_incomplete_fix_is_not_suggested(shared_db: OsvDatabase) -> None:
    result = scan_dependencies([Dependency("Go", "stdlib", "v1.21.0", "go.mod", 3)], shared_db)

    (finding,) = [f for f in result.findings if f.advisory_id == "CVE-2023-45283"]  # GO-2023-2185
    assert finding.fixed_version == "v1.21.5"


def test_records_aliasing_each_other_are_one_finding(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    base = {"modified": "2024-11-20T00:00:00Z", "summary": "Remote code execution in demo"}
    ghsa = {
        **base,
        "id": "GHSA-abcd-efgh-ijkl",
        "aliases": ["CVE-2024-9999"],
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
        "references": [{"type": "ADVISORY", "url": "https://example.com/GHSA-abcd-efgh-ijkl"}],
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "demo"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"fixed": "1.4"}]}],
            }
        ],
    }
    pysec = {
        **base,
        "id": "PYSEC-2024-999",
        "aliases": ["GHSA-abcd-efgh-ijkl"],
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "Demo"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.3"}]}],
            }
        ],
    }
    (db_dir / "ghsa.json").write_text(json.dumps(ghsa))
    (db_dir / "pysec.json").write_text(json.dumps(pysec))
    db = OsvDatabase.load(db_dir, now=NOW)

    result = scan_dependencies([Dependency("PyPI", "demo", "1.2", "requirements.txt", 4)], db)

    (finding,) = result.findings
    assert finding.advisory_id == "CVE-2024-9999"
    assert finding.aliases == ("GHSA-abcd-efgh-ijkl", "PYSEC-2024-999")
    assert finding.records == ("GHSA-abcd-efgh-ijkl", "PYSEC-2024-999")
    assert finding.severity.label() == "CRITICAL 9.8"  # the worst of the group's records
    assert finding.fixed_version == "1.4"  # 1.3 is still affected according to the GHSA record
    assert finding.url == "https://example.com/GHSA-abcd-efgh-ijkl"
    assert finding.summary == "Remote code execution in demo"


def _small_db(tmp_path: Path, records: list[dict]) -> OsvDatabase:
    db_dir = tmp_path / "db"
    db_dir.mkdir(exist_ok=True)
    for n, data in enumerate(records):
        (db_dir / f"{n}.json").write_text(json.dumps(data))
    return OsvDatabase.load(db_dir, now=NOW)


def _record(record_id: str, events: list[dict], name: str = "demo", **extra: object) -> dict:
    return {
        "id": record_id,
        "affected": [{"package": {"ecosystem": "npm", "name": name}, "ranges": [{"type": "SEMVER", "events": events}]}],
        **extra,
    }


def test_withdrawn_unpinned_and_unevaluable_advisories(tmp_path: Path) -> None:
    db = _small_db(
        tmp_path,
        [
            _record("GHSA-0001", [{"introduced": "0"}, {"fixed": "2.0.0"}], withdrawn="2024-01-01T00:00:00Z"),
            _record("GHSA-0002", [{"introduced": "0"}, {"fixed": "not-a-version!"}]),
            _record("GHSA-0003", [{"introduced": "1.0.0"}, {"fixed": "1.5.0"}]),
        ],
    )
    deps = [
        Dependency("npm", "demo", "1.2.0", "package-lock.json", 10),
        Dependency("npm", "demo", None, "package.json", 3, spec="^1.0.0"),
        Dependency("npm", "left-pad", "1.0.0", "package-lock.json", 20),
        Dependency("Hackage", "aeson", "1.0", "aeson.cabal", 1),
    ]

    result = scan_dependencies(deps, db)

    assert [(f.advisory_id, f.fixed_version) for f in result.findings] == [("GHSA-0003", "1.5.0")]
    assert (result.dependencies, result.unpinned, result.unsupported) == (4, 1, 1)
    (error,) = result.matching_errors
    assert (error.advisory_id, error.package, error.version) == ("GHSA-0002", "demo", "1.2.0")
    assert "not-a-version!" in error.message


def test_one_finding_per_fingerprint_when_a_lockfile_holds_several_versions(tmp_path: Path) -> None:
    db = _small_db(tmp_path, [_record("GHSA-0004", [{"introduced": "0"}, {"fixed": "1.0.0"}, {"introduced": "2.0.0"},
                                                      {"fixed": "2.1.0"}])])  # fmt: skip
    deps = [
        Dependency("npm", "demo", "2.0.5", "package-lock.json", 40),
        Dependency("npm", "demo", "0.9.0", "package-lock.json", 12),
        Dependency("npm", "demo", "0.9.0", "web/package-lock.json", 12),
    ]

    result = scan_dependencies(deps, db)

    assert [(f.file, f.line, f.version, f.other_versions, f.fixed_version) for f in result.findings] == [
        ("package-lock.json", 12, "0.9.0", ("2.0.5",), "2.1.0"),  # the fix above both versions
        ("web/package-lock.json", 12, "0.9.0", (), "1.0.0"),
    ]


def test_findings_sort_by_severity_then_package(tmp_path: Path) -> None:
    def scored(record_id: str, name: str, vector: str | None, db_severity: str | None = None) -> dict:
        data = _record(record_id, [{"introduced": "0"}], name)
        if vector:
            data["severity"] = [{"type": "CVSS_V3", "score": vector}]
        if db_severity:
            data["database_specific"] = {"severity": db_severity}
        return data

    db = _small_db(
        tmp_path,
        [
            scored("GHSA-a", "zeta", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            scored("GHSA-b", "alpha", None),
            scored("GHSA-c", "beta", None, "MODERATE"),
            scored("GHSA-d", "gamma", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"),
            scored("GHSA-e", "delta", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
        ],
    )
    deps = [Dependency("npm", n, "1.0.0", "package-lock.json", i) for i, n in enumerate(["alpha", "beta", "gamma",
                                                                                         "delta", "zeta"])]  # fmt: skip

    result = scan_dependencies(deps, db)

    assert [(f.package, f.severity.label()) for f in result.findings] == [
        ("delta", "CRITICAL 9.8"),
        ("zeta", "CRITICAL 9.8"),
        ("gamma", "HIGH 7.5"),
        ("beta", "MEDIUM"),
        ("alpha", "UNKNOWN"),
    ]


def test_hostile_versions_are_matching_errors_of_their_own_dependency_not_the_scans_end(tmp_path: Path) -> None:
    """A lockfile is anyone's to write. A version of 5,000 digits raised ValueError (Python's int limit) out of the
    whole scan; a Packagist version of 3,000 tokens recursed past the stack; PyPI's legacy pattern took seconds on
    40,000 characters. Each is now an invalid version of its own dependency, and the others are still matched."""
    db = _small_db(tmp_path, [_record("GHSA-0003", [{"introduced": "1.0.0"}, {"fixed": "1.5.0"}])])
    hostile = ["1." + "9" * 5000, "1.0.0-" + "1" * 5000, "1.2.0" + ".#" * 3000, "1." + "a" * 40000 + "$"]
    deps = [Dependency("npm", "demo", v, "package-lock.json", n) for n, v in enumerate(hostile, start=1)]
    deps.append(Dependency("npm", "demo", "1.2.0", "package-lock.json", 99))
    started = time.perf_counter()
    result = scan_dependencies(deps, db)
    assert time.perf_counter() - started < 2.0
    assert [(f.advisory_id, f.line) for f in result.findings] == [("GHSA-0003", 99)]
    assert len(result.matching_errors) == len(hostile)
