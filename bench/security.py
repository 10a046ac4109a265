"""Security scan figures, measured side by side in one run on this machine.

1. Loading the shared OSV databases (PyPI: YAML records, Go: JSON records): wall time of `OsvDatabase.load`, and
   its peak Python memory (tracemalloc, measured on a second load since tracing slows allocation), and the
   records it keeps.
2. A scan of 5,000 dependencies (real package names of the database at vulnerable and safe versions, plus names
   no advisory mentions) with `scan_dependencies` (index lookup, cached parsed ranges) against a naive baseline:
   for every dependency, a plain loop over every record, evaluating OSV's pseudo-code on the version strings.
   Both must produce identical findings; the naive run is bounded (timed on a sample and extrapolated when the
   whole would exceed --naive-budget seconds, and then said so).

Run: .venv/bin/python bench/security.py [--osv-root ../shared/data/osv] [--deps 5000]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codexk8s_pipelines.security.dependencies import GO, PYPI, Dependency, normalise_name
from codexk8s_pipelines.security.matching import MatchingError, ordering
from codexk8s_pipelines.security.osv import Affected, OsvDatabase
from codexk8s_pipelines.security.scan import ScanResult, _Hit, _scan, _Scanner, scan_dependencies
from codexk8s_pipelines.security.versions import InvalidVersion, compare

REPO = Path(__file__).resolve().parent.parent


def bench_load(root: Path) -> None:
    for name in ("PyPI", "Go"):
        t = time.perf_counter()
        db = OsvDatabase.load(root / name)
        seconds = time.perf_counter() - t
        tracemalloc.start()  # a second, traced load: tracing slows Python allocation several times over
        OsvDatabase.load(root / name)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"load {name:<5} {db.files:5d} files  {seconds:6.2f} s  peak {peak / 1e6:6.1f} MB   "
            f"records {len(db)}, withdrawn {db.withdrawn}, errors {len(db.errors)}, packages {len(db.packages())}"
        )


def _versions_of(entry: Affected) -> tuple[list[str], list[str]]:
    """(likely vulnerable, likely safe) versions from an entry's own events and lists."""
    vulnerable = sorted(entry.versions)[:3]
    safe: list[str] = []
    for rng in entry.ranges:
        for kind, version in rng.events:
            if kind == "introduced" and version != "0":
                vulnerable.append(version)
            elif kind == "fixed":
                safe.append(version)
    return vulnerable, safe


def make_dependencies(db: OsvDatabase, n: int, seed: int = 5) -> list[Dependency]:
    rng = random.Random(seed)
    packages = sorted(db.packages())
    deps: list[Dependency] = []
    for i in range(n):
        file = f"svc{i % 40}/{'go.mod' if i % 2 else 'requirements.txt'}"
        roll = rng.random()
        if roll < 0.2:  # a name no advisory mentions
            eco = GO if i % 2 else PYPI
            name = f"example.com/unknown/mod{i}" if eco == GO else f"unknown-package-{i}"
            deps.append(Dependency(eco, name, "1.0.0", file, i + 1))
            continue
        eco, name = rng.choice(packages)
        vulnerable, safe = _versions_of(rng.choice(db.lookup(eco, name)))
        pool = vulnerable if (roll < 0.6 and vulnerable) or not safe else safe
        version = rng.choice(pool) if pool else "0.0.1"
        if eco == GO:
            version = "v" + version
        deps.append(Dependency(eco, name, version, file, i + 1))
    return deps


def _naive_is_affected(entry: Affected, version: str) -> bool:
    """OSV's pseudo-code on strings: no cached parse, every comparison through `versions.compare`."""
    for rng in entry.ranges:  # a record whose ranges do not parse is not used (as in matching.py)
        for kind, v in rng.events:
            if not (kind == "introduced" and v == "0") and not (kind == "limit" and "*" in v):
                try:
                    compare(ordering(entry.ecosystem, rng.type), v, v)
                except InvalidVersion as exc:
                    raise MatchingError(str(exc)) from None
    if version in entry.versions:
        return True
    for listed in entry.versions:
        try:
            if compare(entry.ecosystem, listed, version) == 0:
                return True
        except InvalidVersion:
            continue
    for rng in entry.ranges:
        order = ordering(entry.ecosystem, rng.type)
        try:
            compare(order, version, version)
        except InvalidVersion as exc:
            raise MatchingError(str(exc)) from None
        rank = {"introduced": 0, "last_affected": 1, "fixed": 2, "limit": 3}
        events = sorted(
            (e for e in rng.events if e[0] != "limit"),
            key=lambda e: (e[1] != "0", _Cmp(order, e[1]), rank[e[0]]),
        )
        limits = [v for kind, v in rng.events if kind == "limit"]
        if limits and not any("*" in v or compare(order, version, v) < 0 for v in limits):
            continue
        vulnerable = False
        for kind, v in events:
            if kind == "introduced":
                vulnerable = vulnerable or v == "0" or compare(order, version, v) >= 0
            elif compare(order, version, v) >= (0 if kind == "fixed" else 1):  # fixed / last_affected
                vulnerable = False
        if vulnerable:
            return True
    return False


class _Cmp:
    """Sort wrapper over `versions.compare`, for the naive path's event sorting."""

    def __init__(self, order: str, version: str) -> None:
        self.order, self.version = order, version

    def __lt__(self, other: _Cmp) -> bool:
        if self.version == "0" or other.version == "0":
            return self.version == "0" and other.version != "0"
        return compare(self.order, self.version, other.version) < 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Cmp) and compare(self.order, self.version, other.version) == 0


class NaiveScanner(_Scanner):
    """Every dependency walks every record; nothing cached between dependencies."""

    def hits(self, ecosystem: str, name: str, version: str) -> list[_Hit]:
        candidates = [
            entry
            for advisory in self.db.advisories.values()
            for entry in advisory.affected
            if entry.ecosystem == ecosystem and entry.name == normalise_name(ecosystem, name)
        ]
        return self._match(ecosystem, name, version, candidates)

    def is_affected(self, entry: Affected, version: str) -> bool:
        return _naive_is_affected(entry, version)


def _identity(result: ScanResult) -> list[tuple[object, ...]]:
    return [
        (f.fingerprint, f.file, f.line, f.version, f.advisory_id, f.records, f.fixed_version, f.severity)
        for f in result.findings
    ]


def bench_scan(db: OsvDatabase, n: int, budget: float) -> None:
    deps = make_dependencies(db, n)
    t = time.perf_counter()
    fast = scan_dependencies(deps, db)
    fast_s = time.perf_counter() - t
    t = time.perf_counter()
    scan_dependencies(deps, db)
    warm_s = time.perf_counter() - t
    print(
        f"scan {n} dependencies: scan_dependencies {fast_s * 1000:8.1f} ms (again, ranges already compiled: "
        f"{warm_s * 1000:.1f} ms)   {len(fast.findings)} findings, {len(fast.matching_errors)} matching errors"
    )
    sample = deps[: max(50, n // 50)]
    t = time.perf_counter()
    _scan(sample, db, NaiveScanner(db))
    per_dep = (time.perf_counter() - t) / len(sample)
    if per_dep * n <= budget:
        t = time.perf_counter()
        naive = _scan(deps, db, NaiveScanner(db))
        naive_s = time.perf_counter() - t
        same = _identity(naive) == _identity(fast)
        how = "measured on all"
    else:
        naive_s = per_dep * n
        subset = deps[:: max(1, n // 500)]
        same = _identity(_scan(subset, db, NaiveScanner(db))) == _identity(scan_dependencies(subset, db))
        how = f"extrapolated from {len(sample)}; findings compared on {len(subset)}"
    print(
        f"naive loop over all {len(db)} records: {naive_s:8.2f} s ({how})   "
        f"ratio naive/indexed {naive_s / fast_s:7.0f}x   identical findings: {same}"
    )
    if not same:
        raise SystemExit("the indexed scan and the naive loop disagree")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--osv-root", type=Path, default=REPO.parent / "shared/data/osv")
    parser.add_argument("--deps", type=int, default=5000)
    parser.add_argument("--naive-budget", type=float, default=60.0, help="seconds the naive run may take")
    args = parser.parse_args()
    bench_load(args.osv_root)
    t = time.perf_counter()
    both = OsvDatabase.load(args.osv_root)
    print(f"load both ({args.osv_root}): {time.perf_counter() - t:6.2f} s, {len(both)} records")
    bench_scan(both, args.deps, args.naive_budget)


if __name__ == "__main__":
    main()
