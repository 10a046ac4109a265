"""The orderings of Maven, RubyGems, Packagist, NuGet, Pub, Hex and CRAN against the shared OSV vectors (every
line of each file), plus what the vectors leave out: prereleases, release triples, invalid versions, and keys
that meet in sets when their versions are equal."""

from __future__ import annotations

import re

import pytest

from codexk8s_pipelines.security.versions import (
    InvalidVersion,
    compare,
    is_prerelease,
    release_triple,
    sort_key,
)
from tests.security.test_versions import VECTORS_DIR, check

_OPS = {"<": -1, "=": 0, ">": 1}
_LINE = re.compile(r"(\S+)\s+([<>=])\s+(\S+)")


def vectors(filename: str) -> list[object]:
    """Every comparison line; `//` and `#` comment lines (CRAN's file uses both) and blank lines skipped, any
    other line an error."""
    path = VECTORS_DIR / filename
    if not path.is_file():
        return [pytest.param("", 0, "", marks=pytest.mark.skip(reason=f"no vectors at {path}"), id="absent")]
    cases = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("//", "#")):
            continue
        match = _LINE.fullmatch(line)
        assert match is not None, f"{filename}:{number}: not a comparison: {raw!r}"
        cases.append(pytest.param(match[1], _OPS[match[2]], match[3], id=f"{filename}:{number}"))
    return cases


@pytest.mark.parametrize(
    ("ecosystem", "filename"),
    [
        ("Maven", "maven-versions.txt"),
        ("RubyGems", "rubygems-versions.txt"),
        ("Packagist", "packagist-versions.txt"),
        ("NuGet", "nuget-versions.txt"),
        ("Pub", "pub-versions.txt"),
        ("CRAN", "cran-versions.txt"),
        ("Hex", "semver-versions.txt"),
    ],
)
def test_every_vector_of_the_ecosystem(ecosystem: str, filename: str) -> None:
    failures = []
    cases = vectors(filename)
    for case in cases:
        a, expected, b = case.values  # type: ignore[attr-defined]
        try:
            check(ecosystem, a, expected, b)
        except (AssertionError, InvalidVersion) as exc:
            failures.append(f"{a} {'<=>'[expected + 1]} {b}: {exc}")
    assert len(cases) > 10
    assert failures == []


@pytest.mark.parametrize(
    ("ecosystem", "version", "prerelease", "triple"),
    [
        ("Maven", "2.17.1", False, (2, 17, 1)),
        ("Maven", "3.0.0-M5", True, (3, 0, 0)),
        ("Maven", "1.0-SNAPSHOT", True, (1, 0, 0)),
        ("Maven", "5.3.20.RELEASE", False, (5, 3, 20)),
        ("Maven", "31.1-jre", False, (31, 1, 0)),
        ("RubyGems", "7.0.4", False, (7, 0, 4)),
        ("RubyGems", "7.1.0.rc1", True, (7, 1, 0)),
        ("Packagist", "v5.4.21", False, (5, 4, 21)),
        ("Packagist", "2.0.0-beta1", True, (2, 0, 0)),
        ("NuGet", "13.0.3", False, (13, 0, 3)),
        ("NuGet", "8.0.0-preview.1", True, (8, 0, 0)),
        ("Pub", "1.2.3+4", False, (1, 2, 3)),
        ("Pub", "2.0.0-nullsafety.0", True, (2, 0, 0)),
        ("Hex", "1.14.0-rc.1", True, (1, 14, 0)),
        ("CRAN", "1.1-3", False, (1, 1, 3)),
    ],
)
def test_prerelease_and_triple(ecosystem: str, version: str, prerelease: bool, triple: tuple[int, int, int]) -> None:
    assert is_prerelease(ecosystem, version) is prerelease
    assert release_triple(ecosystem, version) == triple


@pytest.mark.parametrize(
    ("ecosystem", "bad"),
    [
        ("Maven", "1.0 beta"),
        ("RubyGems", "beta"),
        ("Packagist", "1.0 || 2.0"),
        ("NuGet", "not.a.version"),
        ("Pub", "1.2.x"),
        ("CRAN", "1.0a"),
        ("Hex", "one"),
    ],
)
def test_invalid_versions_raise(ecosystem: str, bad: str) -> None:
    with pytest.raises(InvalidVersion, match=re.escape(repr(bad))):
        sort_key(ecosystem, bad)


@pytest.mark.parametrize(
    ("ecosystem", "a", "b"),
    [
        ("Maven", "1.0", "1"),
        ("Maven", "1.0-RELEASE", "1.0.0"),
        ("RubyGems", "1.0.a2", "1.0.a.2"),
        ("NuGet", "1.0", "1.0.0.0"),
    ],
)
def test_equal_versions_meet_in_sets(ecosystem: str, a: str, b: str) -> None:
    # advisory matching looks versions up in sets of keys: equal keys must hash alike
    assert compare(ecosystem, a, b) == 0
    assert sort_key(ecosystem, a) in {sort_key(ecosystem, b)}


def test_sorting_a_maven_history() -> None:
    history = ["1.0", "1.0-alpha-1", "1.0-beta-1", "1.0-SNAPSHOT", "1.0-rc1", "1.0-sp1", "1.1", "1.0.1"]
    ordered = sorted(history, key=lambda v: sort_key("Maven", v))
    assert ordered == ["1.0-alpha-1", "1.0-beta-1", "1.0-rc1", "1.0-SNAPSHOT", "1.0", "1.0-sp1", "1.0.1", "1.1"]
