"""Is this version affected? OSV's evaluation (https://ossf.github.io/osv-schema/#evaluation), offline.

A version is affected by an `affected[]` entry when it is listed in `versions` or lies in one of its ECOSYSTEM or
SEMVER ranges. A range is walked over its events sorted by version (records do not always list them in order):
`introduced` (where "0" sorts before everything) opens, `fixed` closes at that version, `last_affected` closes
after it, and `limit` events, when present, bound the whole range from above (`*` meaning no bound). GIT ranges
need the repository's history and are left out, as OSV's own offline scanners do.

Orderings: ECOSYSTEM ranges use the package's ecosystem (PEP 440 for PyPI), SEMVER ranges SemVer 2.0 precedence.
Go's SEMVER ranges are written without the `v` that go.mod versions carry; the SemVer parser accepts both.

A record whose range versions do not parse cannot say anything reliable: it does not match and the reason is
raised as `MatchingError` for the caller to note. Parsed ranges are cached on the entry itself (`compiled`), so a
package that appears in a thousand lockfiles is compiled once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from codexk8s_pipelines.security.dependencies import PYPI
from codexk8s_pipelines.security.osv import Affected
from codexk8s_pipelines.security.versions import SEMVER, InvalidVersion, UnsupportedEcosystem, is_legacy, sort_key

__all__ = ["MatchError", "MatchingError", "fixed_versions", "is_affected", "ordering", "suggest_fix"]

_INTRODUCED, _LAST_AFFECTED, _FIXED = 0, 1, 2  # tie order: a version both introduced and fixed is not affected
_ZERO: tuple[Any, ...] = (0,)  # sorts before every parsed key, which are wrapped as (1, key)


class MatchingError(ValueError):
    """A version (the record's or the dependency's) that the range's ordering cannot parse."""


@dataclass(frozen=True, slots=True)
class MatchError:
    """A record that could not be evaluated for one dependency, kept in the scan result instead of raised."""

    advisory_id: str
    ecosystem: str
    package: str
    version: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.advisory_id} ({self.ecosystem} {self.package} {self.version}): {self.message}"


def ordering(ecosystem: str, range_type: str) -> str:
    """The version ordering a range is evaluated in."""
    return SEMVER if range_type == "SEMVER" else ecosystem


@dataclass(frozen=True, slots=True)
class _CompiledRange:
    ordering: str
    events: tuple[tuple[tuple[Any, ...], int], ...]  # ((0,) or (1, key), kind) sorted
    limits: tuple[tuple[Any, ...], ...]  # parsed limit versions; empty when unbounded


@dataclass(slots=True)
class _Compiled:
    ranges: tuple[_CompiledRange, ...]
    error: str | None
    # Parsed `versions`, so that "1.0" matches a listed "1.0.0" under PEP 440. Filled only when a version is
    # neither listed verbatim nor in a range: PyPI lists run to hundreds of versions per record.
    listed_keys: frozenset[Any] | None = None


def _key(order: str, version: str) -> tuple[Any, ...]:
    try:
        return (1, sort_key(order, version))
    except (InvalidVersion, UnsupportedEcosystem) as exc:
        raise MatchingError(str(exc)) from None


def _bound(order: str, version: str) -> tuple[Any, ...]:
    """A range event's version. Stricter than a dependency's version: a PyPI bound that is not PEP 440
    (`0.2.0-n653`, `2019-09-12`) would sort as a legacy version before every release and make the range cover
    nothing (or everything) without a word, so it is an error; an installed legacy version still orders."""
    key = _key(order, version)
    if order == PYPI and is_legacy(PYPI, version):
        raise MatchingError(f"range bound {version!r} is not a PEP 440 version")
    return key


def _check_pairs(events: Sequence[tuple[str, str]], keys: Sequence[tuple[Any, ...] | None]) -> None:
    """An `introduced` directly followed by a `fixed`/`last_affected` below it is a reversed pair (a typo in
    the record): sorted, it would open a range that never closes."""
    for n in range(len(events) - 1):
        (kind, version), (next_kind, next_version) = events[n], events[n + 1]
        here, there = keys[n], keys[n + 1]
        if kind == "introduced" and next_kind in ("fixed", "last_affected") and here and there and there < here:
            raise MatchingError(f"reversed range: {next_kind} {next_version!r} precedes introduced {version!r}")


def _compile(affected: Affected) -> _Compiled:
    ranges: list[_CompiledRange] = []
    try:
        for rng in affected.ranges:
            order = ordering(affected.ecosystem, rng.type)
            events: list[tuple[tuple[Any, ...], int]] = []
            limits: list[tuple[Any, ...]] = []
            keys: list[tuple[Any, ...] | None] = []
            unbounded = False
            for kind, version in rng.events:
                key: tuple[Any, ...] | None = None
                if kind == "introduced":
                    key = _ZERO if version == "0" else _bound(order, version)
                    events.append((key, _INTRODUCED))
                elif kind == "fixed":
                    key = _bound(order, version)
                    events.append((key, _FIXED))
                elif kind == "last_affected":
                    key = _bound(order, version)
                    events.append((key, _LAST_AFFECTED))
                elif "*" in version:
                    unbounded = True
                else:
                    limits.append(_bound(order, version))
                keys.append(key)
            _check_pairs(rng.events, keys)
            events.sort()
            ranges.append(_CompiledRange(order, tuple(events), () if unbounded else tuple(limits)))
    except MatchingError as exc:
        return _Compiled((), f"unusable range: {exc}")
    return _Compiled(tuple(ranges), None)


def _listed_keys(affected: Affected, plan: _Compiled) -> frozenset[Any]:
    if plan.listed_keys is None:
        keys: set[Any] = set()
        for listed in affected.versions:
            try:
                keys.add(sort_key(affected.ecosystem, listed))
            except (InvalidVersion, UnsupportedEcosystem):
                continue  # an unparseable listed version can still match by its exact string
        plan.listed_keys = frozenset(keys)
    return plan.listed_keys


def compiled(affected: Affected) -> _Compiled:
    if affected.compiled is None:
        affected.compiled = _compile(affected)
    return affected.compiled


def _in_range(key: tuple[Any, ...], rng: _CompiledRange) -> bool:
    if rng.limits and not any(key < limit for limit in rng.limits):
        return False
    vulnerable = False
    for event_key, kind in rng.events:
        if kind == _INTRODUCED:
            if key >= event_key:
                vulnerable = True
        elif kind == _FIXED:
            if key >= event_key:
                vulnerable = False
        elif key > event_key:  # last_affected
            vulnerable = False
    return vulnerable


def is_affected(affected: Affected, version: str) -> bool:
    """Whether `version` of the entry's package is affected; MatchingError when the record's ranges or the
    version itself cannot be parsed in the range's ordering (an exact `versions` hit still counts)."""
    plan = compiled(affected)
    if plan.error:
        raise MatchingError(plan.error)
    if version in affected.versions:
        return True
    problem: MatchingError | None = None
    for rng in plan.ranges:
        try:
            key = _key(rng.ordering, version)
        except MatchingError as exc:
            problem = MatchingError(f"dependency version: {exc}")
            continue
        if _in_range(key, rng):
            return True
    if affected.versions:
        try:
            if sort_key(affected.ecosystem, version) in _listed_keys(affected, plan):
                return True
        except (InvalidVersion, UnsupportedEcosystem) as exc:
            problem = MatchingError(f"dependency version: {exc}")
    if problem is not None:
        raise problem
    return False


def fixed_versions(affected: Affected) -> list[str]:
    """Every `fixed` version of the entry's ECOSYSTEM/SEMVER ranges (GIT commits are not versions)."""
    return [version for rng in affected.ranges for kind, version in rng.events if kind == "fixed"]


def suggest_fix(ecosystem: str, version: str, entries: Sequence[Affected]) -> str | None:
    """The smallest `fixed` version above `version` among `entries` (the alias group's entries for this package)
    that these same entries do not mark as affected again, or None when no such version is known.

    The second condition matters when a fix was incomplete: Go's GO-2023-2185 fixed stdlib in 1.21.4 and listed
    1.21.4 as affected again until 1.21.5; suggesting 1.21.4 would send users to a still-vulnerable version.
    Go module versions carry a `v` in go.mod and none in OSV: the suggestion takes the dependency's spelling."""
    try:
        current = sort_key(ecosystem, version)
    except (InvalidVersion, UnsupportedEcosystem):
        return None
    candidates: dict[str, tuple[Any, ...]] = {}
    for entry in entries:
        for fixed in fixed_versions(entry):
            try:
                key = sort_key(ecosystem, fixed)
            except (InvalidVersion, UnsupportedEcosystem):
                continue
            if key > current:
                candidates.setdefault(fixed, key)
    for fixed in sorted(candidates, key=candidates.__getitem__):
        if not _any_affected(entries, fixed):
            if ecosystem == "Go" and version.startswith("v") and not fixed.startswith("v"):
                return "v" + fixed
            return fixed
    return None


def _any_affected(entries: Iterable[Affected], version: str) -> bool:
    for entry in entries:
        try:
            if is_affected(entry, version):
                return True
        except MatchingError:
            continue
    return False
