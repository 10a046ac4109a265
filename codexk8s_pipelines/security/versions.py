"""Version ordering per ecosystem, for the OSV advisory matcher and the dependency freshness check.

Advisory ranges are only as correct as the ordering behind them: "introduced 1.2.0, fixed 1.2.5" is meaningless
if `1.2.10` sorts before `1.2.5`, so every comparison goes through here. Ecosystem names are OSV's spelling.

- PyPI follows PEP 440 (`packaging`). Strings PEP 440 rejects but old `packaging` accepted as "legacy" versions
  (`0.1-bulbasaur`) still appear in PyPI's history and OSV's version lists; they sort before every PEP 440
  version, as `packaging` sorted them before 22.0, instead of making a whole advisory unusable.
- Maven, RubyGems, Packagist, NuGet, Pub and CRAN: see `orderings.py`. Hex is SemVer 2.0.
- npm, crates.io, Go, Hex and OSV's `SemVer` follow SemVer 2.0.0 precedence, parsed leniently the way OSV does: a
  leading `v`, missing minor/patch (`1.2` is `1.2.0`), and numeric components beyond the third, which are
  ignored like build metadata (`1.1.3.4` orders as `1.1.3`). Go shares these rules: canonical Go module versions
  are SemVer, `+incompatible` is build metadata and pseudo-versions are prereleases, so they order correctly.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from packaging.version import InvalidVersion as _PackagingInvalidVersion
from packaging.version import Version

from codexk8s_pipelines.security import orderings
from codexk8s_pipelines.security.dependencies import CRATES, GO, HEX, NPM, PYPI

SEMVER = "SemVer"
_SEMVER_LIKE = frozenset({NPM, GO, CRATES, HEX, SEMVER})
SUPPORTED: frozenset[str] = frozenset({PYPI, *_SEMVER_LIKE, *orderings.PARSERS})

__all__ = [
    "SEMVER",
    "SUPPORTED",
    "InvalidVersion",
    "UnsupportedEcosystem",
    "compare",
    "is_legacy",
    "is_prerelease",
    "release_triple",
    "sort_key",
]


class InvalidVersion(ValueError):
    """A version string the ecosystem's rules cannot order; the caller decides whether to skip or report it."""

    def __init__(self, ecosystem: str, version: str) -> None:
        super().__init__(f"invalid {ecosystem} version: {version!r}")
        self.ecosystem = ecosystem
        self.version = version


class UnsupportedEcosystem(ValueError):
    """An ecosystem without an ordering here: guessing one would silently mis-match advisories."""

    def __init__(self, ecosystem: str) -> None:
        super().__init__(f"unsupported ecosystem {ecosystem!r}; supported: {', '.join(sorted(SUPPORTED))}")
        self.ecosystem = ecosystem


_IDENT = r"[0-9A-Za-z-]+"
_SEMVER = re.compile(
    rf"v?(?P<major>\d+)(?:\.(?P<minor>\d+))?(?:\.(?P<patch>\d+))?(?:\.\d+)*"
    rf"(?:-(?P<pre>{_IDENT}(?:\.{_IDENT})*))?(?:\+{_IDENT}(?:\.{_IDENT})*)?",
    re.ASCII,
)
# Old `packaging.LegacyVersion` took any string; we keep only version-like characters so a requirement specifier
# passed by mistake (`>=1.0`, `1.0, <2`) is reported instead of silently ordered.
_LEGACY = re.compile(r"[A-Za-z0-9._+!~-]*[A-Za-z0-9][A-Za-z0-9._+!~-]*")
_LEGACY_PART = re.compile(r"(\d+|[a-z]+|\.|-)", re.ASCII)
_LEGACY_REPLACE = {"pre": "c", "preview": "c", "-": "final-", "rc": "c", "dev": "@"}
_LEADING_RELEASE = re.compile(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", re.ASCII)


def _legacy_key(version: str) -> tuple[str, ...]:
    """`packaging.LegacyVersion`'s (setuptools') key, removed from `packaging` 22 but needed to order old
    PyPI releases among themselves the way pip used to."""
    parts: list[str] = []
    for raw in _LEGACY_PART.split(version.lower()):
        part = _LEGACY_REPLACE.get(raw, raw)
        if not part or part == ".":
            continue
        if part[:1].isdigit():
            part = part.zfill(8)
        else:
            part = "*" + part
            if part < "*final":
                while parts and parts[-1] == "*final-":
                    parts.pop()
            while parts and parts[-1] == "00000000":
                parts.pop()
        parts.append(part)
    # The terminating "*final" is a string part too: trailing zeros before it are dropped as well.
    while parts and parts[-1] == "00000000":
        parts.pop()
    parts.append("*final")
    return tuple(parts)


def _check(ecosystem: str) -> None:
    if ecosystem not in SUPPORTED:
        raise UnsupportedEcosystem(ecosystem)


# A version from a repository's lockfile is anyone's to write. Real ones are short; a long one is refused before any
# ordering reads it: 5,000 digits passed Python's int limit and raised ValueError out of the whole scan, a Packagist
# version of 3,000 tokens recursed past the stack, and PyPI's legacy pattern backtracked on 40,000 characters.
MAX_VERSION_CHARS = 256
# A run of 40 digits is no release number (dates and build stamps stay under 20); refused as well, so that no
# ordering ever turns such a run into an integer.
_LONG_NUMBER = re.compile(r"\d{40}")


@lru_cache(maxsize=65536)
def _parse(ecosystem: str, version: str) -> tuple[tuple[Any, ...], bool, tuple[int, int, int]]:
    """(sort key, is prerelease, release triple), parsed once per distinct string: advisory matching compares
    the same few thousand versions over and over."""
    text = version.strip()
    if not text or len(text) > MAX_VERSION_CHARS or _LONG_NUMBER.search(text):
        raise InvalidVersion(ecosystem, version)
    if ecosystem == PYPI:
        try:
            parsed = Version(text)
        except _PackagingInvalidVersion:
            if not _LEGACY.fullmatch(text):
                raise InvalidVersion(ecosystem, version) from None
            lead = _LEADING_RELEASE.match(text)
            return (0, _legacy_key(text)), False, (orderings.triple(*lead.groups()) if lead else (0, 0, 0))
        return (1, parsed), parsed.is_prerelease, orderings.triple(*parsed.release[:3])
    if ecosystem not in _SEMVER_LIKE:
        try:
            return orderings.parse(ecosystem, text)
        except ValueError:
            raise InvalidVersion(ecosystem, version) from None
    match = _SEMVER.fullmatch(text)
    if match is None:
        raise InvalidVersion(ecosystem, version)
    triple = orderings.triple(match["major"], match["minor"], match["patch"])
    return (*triple, orderings.prerelease_key(match["pre"])), match["pre"] is not None, triple


def sort_key(ecosystem: str, version: str) -> tuple[Any, ...]:
    """A key that orders versions of one ecosystem in `sorted()`/`max()` without re-parsing on every comparison.

    Keys of different ecosystems are not comparable with each other."""
    _check(ecosystem)
    return _parse(ecosystem, version)[0]


def compare(ecosystem: str, a: str, b: str) -> int:
    """-1, 0 or 1 as `a` precedes, equals or follows `b`; SemVer build metadata never decides (returns 0)."""
    _check(ecosystem)
    ka, kb = _parse(ecosystem, a)[0], _parse(ecosystem, b)[0]
    return (ka > kb) - (ka < kb)


def is_legacy(ecosystem: str, version: str) -> bool:
    """Whether a PyPI version is ordered by the legacy (pre-PEP 440) rules; always False elsewhere."""
    _check(ecosystem)
    return ecosystem == PYPI and _parse(ecosystem, version)[0][0] == 0


def is_prerelease(ecosystem: str, version: str) -> bool:
    """Whether a freshness check should skip this version as "latest": PEP 440 pre/dev releases, SemVer versions
    with a prerelease part (Go pseudo-versions included). PyPI legacy versions are not prereleases."""
    _check(ecosystem)
    return _parse(ecosystem, version)[1]


def release_triple(ecosystem: str, version: str) -> tuple[int, int, int]:
    """(major, minor, patch), missing parts 0, to say how far behind a dependency is. PEP 440 components past the
    third are dropped; a PyPI legacy version uses its leading dotted numbers, (0, 0, 0) when it has none."""
    _check(ecosystem)
    return _parse(ecosystem, version)[2]
