"""Version ordering checked against the shared OSV-style vector files, plus the cases the vectors do not cover."""

from __future__ import annotations

import random
import re

import pytest

from codexk8s_pipelines.security import versions
from codexk8s_pipelines.security.dependencies import CRATES, ECOSYSTEMS, GO, NPM, PYPI
from codexk8s_pipelines.security.versions import (
    SEMVER,
    SUPPORTED,
    InvalidVersion,
    UnsupportedEcosystem,
    compare,
    is_prerelease,
    release_triple,
    sort_key,
)
from tests.helpers import shared_data_dir

VECTORS_DIR = shared_data_dir() / "version-ordering"
_OPS = {"<": -1, "=": 0, ">": 1}
_LINE = re.compile(r"(\S+)\s+([<>=])\s+(\S+)")
# Go shares the SemVer rules (see the module docstring), so every SemVer vector line applies to it as well.
SEMVER_FAMILY = (SEMVER, NPM, CRATES, GO)


def parse_vectors(text: str) -> list[tuple[int, str, int, str]]:
    """(line number, a, expected compare(a, b), b) per `a < b` / `a > b` / `a = b` line; `//` comments and blank
    lines skipped. Any other line is an error, so a format change cannot silently drop cases."""
    cases = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise ValueError(f"line {number}: not a version comparison: {raw!r}")
        cases.append((number, match[1], _OPS[match[2]], match[3]))
    return cases


def vector_params(filename: str) -> list[object]:
    path = VECTORS_DIR / filename
    if not path.is_file():
        reason = f"shared version vectors not found at {path}"
        return [pytest.param(0, "", 0, "", marks=pytest.mark.skip(reason=reason), id=f"{filename}:absent")]
    return [pytest.param(*case, id=f"{filename}:{case[0]}") for case in parse_vectors(path.read_text())]


def check(ecosystem: str, a: str, expected: int, b: str) -> None:
    assert compare(ecosystem, a, b) == expected, f"{ecosystem}: expected {a} {'<=>'[expected + 1]} {b}"
    assert compare(ecosystem, b, a) == -expected, f"{ecosystem}: not antisymmetric for {a} / {b}"
    assert compare(ecosystem, a, a) == 0


@pytest.mark.parametrize(("number", "a", "expected", "b"), vector_params("pypi-versions.txt"))
def test_pypi_vectors(number: int, a: str, expected: int, b: str) -> None:
    check(PYPI, a, expected, b)


@pytest.mark.parametrize("ecosystem", SEMVER_FAMILY)
@pytest.mark.parametrize(("number", "a", "expected", "b"), vector_params("semver-versions.txt"))
def test_semver_vectors(number: int, a: str, expected: int, b: str, ecosystem: str) -> None:
    check(ecosystem, a, expected, b)


def test_vector_parser() -> None:
    text = "// comment\n\n1.0 < 2.0\n  v2 > 1  \n1.0.0+a = 1.0.0+b\n// 1 <= 2 True\n"
    assert parse_vectors(text) == [(3, "1.0", -1, "2.0"), (4, "v2", 1, "1"), (5, "1.0.0+a", 0, "1.0.0+b")]
    with pytest.raises(ValueError, match="line 2"):
        parse_vectors("1 < 2\n1 <= 2\n")


def test_supported_covers_dependency_ecosystems() -> None:
    assert {*ECOSYSTEMS, SEMVER} == SUPPORTED


@pytest.mark.parametrize(
    ("ecosystem", "a", "expected", "b"),
    [
        # PEP 440 normalisation and local versions.
        (PYPI, "1.0", 0, "1.0.0"),
        (PYPI, "1.0.0+local", 1, "1.0.0"),
        (PYPI, "1.0.0.post1", 1, "1.0.0+local"),
        (PYPI, "1.10", 1, "1.9"),
        # Legacy (non-PEP 440) versions sort before every PEP 440 version, whatever their digits.
        (PYPI, "9.9-ivysaur", -1, "0.1"),
        # SemVer leniency: missing parts are 0, extra numeric parts are ignored like build metadata.
        (NPM, "1.2", 0, "1.2.0"),
        (CRATES, "1", 0, "1.0.0"),
        (SEMVER, "1.1.3.4", 0, "1.1.3"),
        (NPM, "1.2.3-beta.1", -1, "1.2.3-beta.1.0"),
        (NPM, "1.2.3-alpha+build.5", 0, "1.2.3-alpha+build.6"),
        (NPM, " 1.2.3\n", 0, "1.2.3"),
        # Go: pseudo-versions are prereleases ordered by timestamp, between the tags around them.
        (GO, "v0.0.0-20191109021931-daa7c04131f5", -1, "v0.0.0-20200101000000-0123456789ab"),
        (GO, "v0.0.0-20200101000000-0123456789ab", -1, "v0.1.0"),
        (GO, "v1.2.3", -1, "v1.2.4-0.20191109021931-daa7c04131f5"),
        (GO, "v1.2.4-0.20191109021931-daa7c04131f5", -1, "v1.2.4"),
        (GO, "v1.2.4-pre", -1, "v1.2.4-pre.0.20191109021931-daa7c04131f5"),
        (GO, "v1.2.4-pre.0.20191109021931-daa7c04131f5", -1, "v1.2.4"),
        # Go: +incompatible is build metadata, and the "v" may be left out.
        (GO, "v2.0.0+incompatible", 0, "v2.0.0"),
        (GO, "v2.0.0+incompatible", 1, "v1.9.9"),
        (GO, "v2.0.0+incompatible", -1, "v2.0.1+incompatible"),
        (GO, "1.2.3", 0, "v1.2.3"),
    ],
)
def test_hand_written_orderings(ecosystem: str, a: str, expected: int, b: str) -> None:
    check(ecosystem, a, expected, b)


@pytest.mark.parametrize(
    ("ecosystem", "version", "expected"),
    [
        (PYPI, "1.0a1", True),
        (PYPI, "1.0rc2", True),
        (PYPI, "1.0.dev3", True),
        (PYPI, "1.0.post1.dev1", True),
        (PYPI, "1.0", False),
        (PYPI, "1.0.post1", False),
        (PYPI, "1.0+local", False),
        (PYPI, "0.1-bulbasaur", False),
        (NPM, "1.2.3-beta.1", True),
        (NPM, "1.2.3", False),
        (NPM, "1.2.3+build.7", False),
        (CRATES, "0.1.0-alpha", True),
        (SEMVER, "1.0.0-0", True),
        (GO, "v0.0.0-20191109021931-daa7c04131f5", True),
        (GO, "v1.2.4-0.20191109021931-daa7c04131f5", True),
        (GO, "v2.0.0+incompatible", False),
        (GO, "v1.4.0", False),
    ],
)
def test_is_prerelease(ecosystem: str, version: str, expected: bool) -> None:
    assert is_prerelease(ecosystem, version) is expected


@pytest.mark.parametrize(
    ("ecosystem", "version", "expected"),
    [
        (PYPI, "2", (2, 0, 0)),
        (PYPI, "2.5", (2, 5, 0)),
        (PYPI, "1!2.5.1.4rc1", (2, 5, 1)),
        (PYPI, "3.11.0.post2+local", (3, 11, 0)),
        (PYPI, "0.9-ivysaur", (0, 9, 0)),
        (PYPI, "-class.-jw.util.version.version-pre", (0, 0, 0)),
        (NPM, "v4.17.21", (4, 17, 21)),
        (NPM, "1.2", (1, 2, 0)),
        (CRATES, "0.3.1-alpha.2+build", (0, 3, 1)),
        (GO, "v0.0.0-20191109021931-daa7c04131f5", (0, 0, 0)),
        (GO, "v2.1.0+incompatible", (2, 1, 0)),
    ],
)
def test_release_triple(ecosystem: str, version: str, expected: tuple[int, int, int]) -> None:
    assert release_triple(ecosystem, version) == expected


@pytest.mark.parametrize(
    ("ecosystem", "ordered"),
    [
        (PYPI, ["0.1-bulbasaur", "0.9", "1.0.dev1", "1.0a1", "1.0b2", "1.0rc1", "1.0", "1.0.post1", "1.10", "2!0.1"]),
        (NPM, ["0.9.9", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0", "1.2.0", "1.10.0"]),
        (
            GO,
            [
                "v0.0.0-20191109021931-daa7c04131f5",
                "v0.1.0",
                "v1.2.3",
                "v1.2.4-0.20191109021931-daa7c04131f5",
                "v1.2.4",
                "v2.0.0+incompatible",
                "v10.0.0",
            ],
        ),
    ],
)
def test_sort_key_sorts_shuffled(ecosystem: str, ordered: list[str]) -> None:
    shuffled = ordered[:]
    random.Random(1234).shuffle(shuffled)
    assert shuffled != ordered
    assert sorted(shuffled, key=lambda v: sort_key(ecosystem, v)) == ordered
    assert max(shuffled, key=lambda v: sort_key(ecosystem, v)) == ordered[-1]


def test_parsing_is_cached() -> None:
    versions._parse.cache_clear()
    sort_key(NPM, "7.7.7")
    sort_key(NPM, "7.7.7")
    assert versions._parse.cache_info().hits == 1


@pytest.mark.parametrize(
    ("ecosystem", "bad"),
    [
        (PYPI, ""),
        (PYPI, "   "),
        (PYPI, ">=1.0"),
        (PYPI, "1.0 beta"),
        (PYPI, "*"),
        (NPM, "not-a-version"),
        (NPM, "1.2.3-"),
        (NPM, "^1.2.3"),
        (CRATES, "1..2"),
        (CRATES, "1.2.3+"),
        (SEMVER, "1.2.3-beta..1"),
        (GO, "v1.2.3 beta"),
        (GO, "latest"),
        (GO, "v1.٢.3"),
    ],
)
def test_invalid_version(ecosystem: str, bad: str) -> None:
    with pytest.raises(InvalidVersion) as caught:
        sort_key(ecosystem, bad)
    assert isinstance(caught.value, ValueError)
    assert ecosystem in str(caught.value)
    assert repr(bad) in str(caught.value)
    with pytest.raises(InvalidVersion):
        compare(ecosystem, "1.0.0", bad)
    with pytest.raises(InvalidVersion):
        is_prerelease(ecosystem, bad)
    with pytest.raises(InvalidVersion):
        release_triple(ecosystem, bad)


@pytest.mark.parametrize("ecosystem", ["Debian", "pypi", "NPM", ""])
def test_unsupported_ecosystem(ecosystem: str) -> None:
    for call in (
        lambda: compare(ecosystem, "1.0.0", "1.0.1"),
        lambda: sort_key(ecosystem, "1.0.0"),
        lambda: is_prerelease(ecosystem, "1.0.0"),
        lambda: release_triple(ecosystem, "1.0.0"),
    ):
        with pytest.raises(UnsupportedEcosystem, match=re.escape(repr(ecosystem))):
            call()
    assert issubclass(UnsupportedEcosystem, ValueError)
