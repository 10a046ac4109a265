"""OSV range evaluation on real shared advisories, plus small records for what the shared data lacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codexk8s_pipelines.security.matching import MatchingError, is_affected, suggest_fix
from codexk8s_pipelines.security.osv import Affected, OsvDatabase
from tests.helpers import shared_data_dir

SHARED_OSV = shared_data_dir() / "osv"
PYPI_VULNS = SHARED_OSV / "PyPI" / "vulns"
GO_VULNS = SHARED_OSV / "Go" / "osv"

needs_shared = pytest.mark.skipif(not SHARED_OSV.is_dir(), reason=f"shared OSV data not found at {SHARED_OSV}")


def entries(path: Path, package: str | None = None) -> list[Affected]:
    db = OsvDatabase.load(path, max_age=None)
    assert db.errors == [], db.errors
    return [e for a in db.advisories.values() for e in a.affected if package is None or e.name == package]


def one(path: Path) -> Affected:
    (entry,) = entries(path)
    return entry


def synthetic(tmp_path: Path, affected: dict, ecosystem: str = "PyPI", name: str = "demo") -> Affected:
    data = {"id": "TEST-1", "affected": [{"package": {"ecosystem": ecosystem, "name": name}, **affected}]}
    path = tmp_path / f"TEST-{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps(data))
    return one(path)


def affected_versions(entry: Affected, versions: list[str]) -> list[str]:
    return [v for v in versions if is_affected(entry, v)]


# -- real PyPI advisories ------------------------------------------------------------------------------------


@needs_shared
def test_unsorted_events_with_several_intervals_oslo_middleware() -> None:
    # PYSEC-2018-104 lists [3.9.0, 3.19.1) before [0, 3.8.1) and [3.20.0, 3.23.1): events must be sorted first
    entry = one(PYPI_VULNS / "oslo-middleware" / "PYSEC-2018-104.yaml")
    versions = ["3.0.0", "3.8.0", "3.8.1", "3.8.5", "3.9.0", "3.10.0", "3.19.0", "3.19.1", "3.20.0", "3.23.0"]
    versions += ["3.23.1", "4.0.0"]

    assert affected_versions(entry, versions) == ["3.0.0", "3.8.0", "3.9.0", "3.10.0", "3.19.0", "3.20.0", "3.23.0"]
    assert suggest_fix("PyPI", "3.8.0", [entry]) == "3.8.1"
    assert suggest_fix("PyPI", "3.10.0", [entry]) == "3.19.1"
    assert suggest_fix("PyPI", "3.22.0", [entry]) == "3.23.1"


@needs_shared
def test_last_affected_py() -> None:
    # PYSEC-2022-42969: introduced 0, last_affected 1.11.0 (the only last_affected in the shared data)
    entry = one(PYPI_VULNS / "py" / "PYSEC-2022-42969.yaml")

    assert affected_versions(entry, ["0.9.0", "1.4.7.dev3", "1.10.0", "1.11.0", "1.11.1", "2.0"]) == [
        "0.9.0",
        "1.4.7.dev3",
        "1.10.0",
        "1.11.0",
    ]
    assert suggest_fix("PyPI", "1.11.0", [entry]) is None  # last_affected names no fix


@needs_shared
def test_explicit_versions_only_gratient() -> None:
    # PYSEC-2024-1: malicious gratient 0.5, a `versions` list and no range at all
    entry = one(PYPI_VULNS / "gratient" / "PYSEC-2024-1.yaml")

    assert entry.ranges == ()
    assert affected_versions(entry, ["0.4", "0.5", "0.5.0", "0.6"]) == ["0.5", "0.5.0"]  # PEP 440: 0.5 == 0.5.0
    assert suggest_fix("PyPI", "0.5", [entry]) is None


@needs_shared
def test_ecosystem_range_next_to_git_ranges_werkzeug() -> None:
    # PYSEC-2023-221: a GIT range (ignored) and one ECOSYSTEM range with two intervals
    entry = one(PYPI_VULNS / "werkzeug" / "PYSEC-2023-221.yaml")

    assert [r.type for r in entry.ranges] == ["ECOSYSTEM"]
    assert affected_versions(entry, ["0.1", "2.3.7", "2.3.8", "3.0.0", "3.0.1", "3.1.0"]) == ["0.1", "2.3.7", "3.0.0"]
    assert suggest_fix("PyPI", "2.3.7", [entry]) == "2.3.8"
    assert suggest_fix("PyPI", "3.0.0", [entry]) == "3.0.1"


# -- real Go advisories --------------------------------------------------------------------------------------


@needs_shared
def test_go_semver_ranges_match_go_mod_versions_with_a_v() -> None:
    entry = one(GO_VULNS / "GO-2022-0882.json")  # argo-cd: introduced 1.5.0, fixed 1.5.1

    assert affected_versions(entry, ["v1.4.9", "v1.5.0", "1.5.0", "v1.5.1", "v2.0.0"]) == ["v1.5.0", "1.5.0"]
    assert suggest_fix("Go", "v1.5.0", [entry]) == "v1.5.1"  # in the dependency's own spelling
    assert suggest_fix("Go", "1.5.0", [entry]) == "1.5.1"


@needs_shared
def test_go_pseudo_versions_and_incompatible_builds() -> None:
    # golang.org/x/sys fixed in a pseudo-version
    (sys_entry,) = entries(GO_VULNS / "GO-2022-0493.json", "golang.org/x/sys")
    assert is_affected(sys_entry, "v0.0.0-20220310020820-b874c991c1a5")
    assert not is_affected(sys_entry, "v0.0.0-20220412211240-33da011f77ad")
    assert not is_affected(sys_entry, "v0.1.0")

    docker = entries(GO_VULNS / "GO-2022-0390.json", "github.com/docker/docker")[0]  # fixed 20.10.14+incompatible
    assert is_affected(docker, "v20.10.13+incompatible")
    assert not is_affected(docker, "v20.10.14+incompatible")
    assert suggest_fix("Go", "v20.10.13+incompatible", [docker]) == "v20.10.14+incompatible"


@needs_shared
def test_several_affected_entries_for_one_package_and_an_incomplete_fix() -> None:
    # GO-2023-2185 (stdlib): fixed in 1.20.11 / 1.21.4, then 1.20.11 / 1.21.4 listed as affected again
    # until 1.20.12 / 1.21.5 in a second affected entry for the same package
    stdlib = entries(GO_VULNS / "GO-2023-2185.json", "stdlib")
    assert len(stdlib) == 2

    hits = {v: any(is_affected(e, v) for e in stdlib) for v in ["1.20.10", "1.20.11", "1.20.12", "1.21.0", "1.21.4"]}
    assert hits == {"1.20.10": True, "1.20.11": True, "1.20.12": False, "1.21.0": True, "1.21.4": True}
    assert not any(is_affected(e, "1.21.5") for e in stdlib)
    # the smallest `fixed` above 1.21.0 is 1.21.4, but the record says 1.21.4 is affected: suggest 1.21.5
    assert suggest_fix("Go", "1.21.0", stdlib) == "1.21.5"
    assert suggest_fix("Go", "v1.20.10", stdlib) == "v1.20.12"


# -- what the shared data does not have ----------------------------------------------------------------------


def test_limit_bounds_the_range(tmp_path: Path) -> None:
    bounded = synthetic(
        tmp_path, {"ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"limit": "2.0.0"}]}]}, "npm"
    )
    assert affected_versions(bounded, ["0.1.0", "1.9.9", "2.0.0", "3.0.0"]) == ["0.1.0", "1.9.9"]

    star = synthetic(tmp_path, {"ranges": [{"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"limit": "*"}]}]})
    assert affected_versions(star, ["0.9.0", "1.0.0", "99.0.0"]) == ["1.0.0", "99.0.0"]

    two_limits = synthetic(
        tmp_path,
        {
            "ranges": [
                {
                    "type": "ECOSYSTEM",
                    "events": [{"introduced": "1.0"}, {"fixed": "1.5"}, {"limit": "1.2"}, {"limit": "1.4"}],
                }
            ]
        },
    )
    assert affected_versions(two_limits, ["0.9", "1.0", "1.3", "1.4", "1.5"]) == ["1.0", "1.3"]


def test_introduced_zero_and_unfixed(tmp_path: Path) -> None:
    entry = synthetic(tmp_path, {"ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]})
    assert affected_versions(entry, ["0.0.0.dev0", "1.0", "2024.1"]) == ["0.0.0.dev0", "1.0", "2024.1"]
    assert suggest_fix("PyPI", "1.0", [entry]) is None


def test_a_version_both_introduced_and_fixed_is_not_affected(tmp_path: Path) -> None:
    entry = synthetic(
        tmp_path, {"ranges": [{"type": "ECOSYSTEM", "events": [{"fixed": "1.0"}, {"introduced": "1.0"}]}]}
    )
    assert not is_affected(entry, "1.0")


def test_git_ranges_are_ignored(tmp_path: Path) -> None:
    entry = synthetic(
        tmp_path,
        {"ranges": [{"type": "GIT", "repo": "https://example.com/r", "events": [{"introduced": "0"}]}]},
    )
    assert entry.ranges == ()
    assert not is_affected(entry, "1.0")


def test_unparseable_record_versions_make_the_record_unusable_not_a_crash(tmp_path: Path) -> None:
    entry = synthetic(
        tmp_path,
        {
            "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "not a version"}]}],
            "versions": ["1.0.0"],
        },
        "npm",
    )
    with pytest.raises(MatchingError, match="unusable range"):
        is_affected(entry, "1.0.0")


def test_an_unparseable_dependency_version_is_an_error(tmp_path: Path) -> None:
    entry = synthetic(
        tmp_path, {"ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "2.0.0"}]}]}, "npm"
    )
    with pytest.raises(MatchingError, match="dependency version"):
        is_affected(entry, "latest")
    assert is_affected(entry, "1.0.0")
