"""Security scan figures, measured side by side in one run on this machine.

1. Loading the shared OSV databases (PyPI: YAML records, Go: JSON records): wall time of `OsvDatabase.load`, and
   its peak Python memory (tracemalloc, measured on a second load since tracing slows allocation), and the
   records it keeps.
2. A scan of 5,000 dependencies (real package names of the database at vulnerable and safe versions, plus names
   no advisory mentions) with `scan_dependencies` (index lookup, cached parsed ranges) against a naive baseline:
   for every dependency, a plain loop over every record, evaluating OSV's pseudo-code on the version strings.
   Both must produce identical findings; the naive run is bounded (timed on a sample and extrapolated when the
   whole would exceed --naive-budget seconds, and then said so).
3. The same across all eleven ecosystems: synthetic advisories for the seven ecosystems the shared data has none
   of (Maven, RubyGems, Packagist, NuGet, Pub, Hex, CRAN, plus npm and crates.io), in each one's own version
   syntax, added to the real PyPI and Go records; 5,000 dependencies spread over every ecosystem, indexed
   against naive, findings compared.
4. A 100,000-entry lockfile (package-lock.json, and a Gemfile.lock): `extract_dependencies` wall time and
   peak Python memory (tracemalloc, on a second run), beside the file's own size.
5. Crafted manifests, as a hostile repository would write them (review 27): a pyproject.toml of N dependencies
   written with a TOML escape, at N and 16 N (time per entry side by side: linear reads ~1.0, the former line search
   per entry read ~16), and the key lines of a JSON lock with the same keys 2 and 60 levels deep (peak memory side
   by side: ~1.0 when a key costs the same at any depth; key paths made it grow with the depth).
6. What an agent or a repository can make the platform walk (stop 35): the write scope's link check, which follows
   every link of a tree through its folders, on trees of N and 10 N files (time per file side by side: linear ~1),
   and on links whose targets are 200 and 2,000 steps long (time per step side by side: linear ~1; joining the way
   so far at each step made it ~10),
   and a drift manifest of YAML aliases ten levels deep (a "billion laughs" of 600 bytes) beside a plain manifest of
   60 objects (time side by side: the refusal costs no more than reading a small plain file; it took minutes).
7. What the next run of a branch wipes (stop 36): `safe_files.remove_tree` beside `shutil.rmtree` on the same
   workspace-like tree of N files in nested packages (time side by side: ~1 when the wipe costs what it did), then
   a chain of 3,000 folders (past PATH_MAX), which `shutil.rmtree` cannot remove (RecursionError), and a
   `helm template` that prints 7 MB, stopped at a 1 MB limit, beside the same output read whole (time side by side).
8. What one MCP call may ask (stop 37): `docs_change_impact` with 100 paths of 2,000 folders (0.4 MB of arguments,
   which took 101 s and 1.6 GB in the MCP server): the names the former way looked for (every `/`-suffix, each a
   LIKE pattern) beside what it looks for now (`mention_terms`, bounded) and sends to PostgreSQL (`anchors`):
   patterns, characters and peak memory of making them, side by side.

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
        f"ratio naive/indexed {naive_s / fast_s:7.0f}x (ranges compiled: {naive_s / warm_s:.0f}x)   "
        f"identical findings: {same}"
    )
    if not same:
        raise SystemExit("the indexed scan and the naive loop disagree")


_SYNTHETIC_VERSIONS = {
    "npm": ("1.2.{n}", "1.3.0"),
    "crates.io": ("0.{n}.1", "1.0.0"),
    "Maven": ("2.{n}.1-jre", "3.0.0"),
    "RubyGems": ("1.{n}.10", "2.0.0.rc1"),
    "Packagist": ("v5.4.{n}", "v6.0.0"),
    "NuGet": ("13.0.{n}", "14.0.0-preview.1"),
    "Pub": ("0.13.{n}+1", "1.0.0"),
    "Hex": ("1.{n}.0", "2.0.0"),
    "CRAN": ("1.{n}-3", "2.0-0"),
}


def synthetic_records(directory: Path, per_ecosystem: int = 300, seed: int = 11) -> None:
    """Advisories in the ecosystems the shared data lacks, written as OSV JSON files, so that the load and the
    matching go through the same code as real ones."""
    import json

    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for ecosystem, (pattern, top) in _SYNTHETIC_VERSIONS.items():
        for i in range(per_ecosystem):
            name = {"Maven": f"org.example{i}:lib{i}", "Packagist": f"vendor{i}/pkg{i}"}.get(ecosystem, f"pkg{i}")
            low, high = sorted(rng.sample(range(1, 40), 2))
            record = {
                "id": f"SYN-{ecosystem}-{i}",
                "modified": "2026-11-01T00:00:00Z",
                "summary": "synthetic",
                "affected": [
                    {
                        "package": {"ecosystem": ecosystem, "name": name},
                        "ranges": [
                            {
                                "type": "ECOSYSTEM",
                                "events": [
                                    {"introduced": pattern.format(n=low)},
                                    {"fixed": pattern.format(n=high)},
                                    {"introduced": top},
                                ],
                            }
                        ],
                    }
                ],
            }
            (directory / f"SYN-{ecosystem.replace('.', '_')}-{i}.json").write_text(json.dumps(record))


def merged(*databases: OsvDatabase) -> OsvDatabase:
    first = databases[0]
    for other in databases[1:]:
        for advisory in other.advisories.values():
            first._add(advisory)
    first._build_index()
    return first


def bench_all_ecosystems(root: Path, n: int, budget: float) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        synthetic_records(Path(tmp))
        db = merged(OsvDatabase.load(root / "PyPI"), OsvDatabase.load(root / "Go"), OsvDatabase.load(Path(tmp)))
    counts = db.advisories_per_ecosystem()
    print(f"all ecosystems: {len(db)} records ({', '.join(f'{e} {c}' for e, c in sorted(counts.items()))})")
    bench_scan(db, n, budget)


def bench_large_lockfile(entries: int) -> None:
    import json
    import tempfile

    from codexk8s_pipelines.security.lockfiles import extract_dependencies

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        packages = {"": {"name": "big", "dependencies": {f"pkg{i}": "^1.0.0" for i in range(0, entries, 100)}}}
        for i in range(entries):
            packages[f"node_modules/pkg{i}"] = {
                "version": f"1.{i % 50}.{i % 7}",
                "resolved": f"https://registry.npmjs.org/pkg{i}/-/pkg{i}-1.0.0.tgz",
                "integrity": "sha512-" + "A" * 86 + "==",
            }
        (root / "npm").mkdir()
        (root / "npm/package-lock.json").write_text(json.dumps({"lockfileVersion": 3, "packages": packages}, indent=2))
        gem_lines = ["GEM", "  remote: https://rubygems.org/", "  specs:"]
        gem_lines += [f"    gem{i} (1.{i % 50}.{i % 7})\n      dep{i} (~> 1.0)" for i in range(entries)]
        gem_lines += ["", "DEPENDENCIES", "  gem0", ""]
        (root / "ruby").mkdir()
        (root / "ruby/Gemfile.lock").write_text("\n".join(gem_lines))
        for sub, filename in (("npm", "package-lock.json"), ("ruby", "Gemfile.lock")):
            size = (root / sub / filename).stat().st_size
            t = time.perf_counter()
            extraction = extract_dependencies(root / sub)
            seconds = time.perf_counter() - t
            tracemalloc.start()
            extract_dependencies(root / sub)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            print(
                f"{entries}-entry {filename} ({size / 1e6:.1f} MB): {seconds:6.2f} s, peak {peak / 1e6:6.1f} MB "
                f"({peak / size:.1f}x the file), {len(extraction.dependencies)} dependencies, "
                f"{len(extraction.errors)} errors"
            )


def bench_crafted(entries: int) -> None:
    import json

    from codexk8s_pipelines.security.lockfiles._common import Sink, json_key_lines
    from codexk8s_pipelines.security.lockfiles.pyproject import parse

    per_entry: list[float] = []
    for n in (entries, 16 * entries):
        text = (
            "[project]\nname = 'x'\ndependencies = [\n"
            + "".join(f'  "p\\u0061ck{i}==1.0",\n' for i in range(n))
            + "]\n"
        )
        sink = Sink(Path("pyproject.toml"), "pyproject.toml", Path("."))
        t = time.perf_counter()
        parse(text, sink)
        seconds = time.perf_counter() - t
        assert len(sink.dependencies) == n and sink.dependencies[-1].line == n + 3, "lines"
        per_entry.append(seconds / n)
        print(f"pyproject.toml, {n} escaped dependencies ({len(text) / 1e3:.0f} kB): {seconds:6.2f} s")
    print(f"  time per entry at {16 * entries} / at {entries}: {per_entry[1] / per_entry[0]:.2f} (linear: ~1)")
    peaks: list[int] = []
    keys = 10 * entries
    for depth in (2, 60):
        text = '{"a":' * depth + "{" + ",".join(f'"{i:x}":[]' for i in range(keys)) + "}" + "}" * depth
        data = json.loads(text)
        tracemalloc.start()
        lines = json_key_lines(text, data)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        del lines
        print(
            f"JSON key lines, {keys} keys {depth} levels deep ({len(text) / 1e6:.1f} MB): peak {peaks[-1] / 1e6:.1f} MB"
        )
    print(f"  peak memory at 60 levels / at 2: {peaks[1] / peaks[0]:.2f} (independent of depth: ~1)")


def bench_walks(files: int) -> None:
    from codexk8s_pipelines.domain.write_scope import escaping_symlinks
    from codexk8s_pipelines.drift.manifests import DesiredState

    per_file: list[float] = []
    for n in (files, 10 * files):
        paths = [f"pkg{i % 97}/mod{i % 1009}/file{i}.py" for i in range(n)]
        links = {f"pkg{i}/link{i}": f"../pkg{(i + 1) % 97}/mod{i}/../mod{i + 1}".encode() for i in range(97)}
        t = time.perf_counter()
        found = escaping_symlinks(links, links, paths=paths, before_paths=paths)
        seconds = time.perf_counter() - t
        assert found == {}, found
        per_file.append(seconds / n)
        print(f"write scope link check, {n} files and {len(links)} links: {seconds:6.2f} s")
    print(f"  time per file at {10 * files} / at {files}: {per_file[1] / per_file[0]:.2f} (linear: ~1)")
    tracemalloc.start()  # a traced run, the trees of both commits: what the runner's container (512 MiB) must hold
    escaping_symlinks(links, links, paths=paths, before_paths=paths)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"  peak memory of the check at {10 * files} files: {peak / 2**20:.0f} MiB, {peak / 2**29:.2f} of 512 MiB")
    per_step: list[float] = []
    for steps in (200, 2000):  # a link's target of `x/` repeated: a 4 kB one is within PATH_MAX
        long_links = {f"l{i}": ("x/" * steps + "y").encode() for i in range(20)}
        t = time.perf_counter()
        escaping_symlinks(long_links, {}, paths=["a.md"])
        seconds = time.perf_counter() - t
        per_step.append(seconds / (20 * steps))
        print(
            f"write scope link check, 20 links of {2 * steps + 1}-character targets:"
            f" {seconds * 1000 / 20:7.2f} ms a link"
        )
    print(f"  time per step of a target at 2000 / at 200 steps: {per_step[1] / per_step[0]:.2f} (linear: ~1)")
    laughs = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
    laughs += "".join(f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10))
    value = "x" * 400
    plain = "".join(
        f"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\ndata: {{k: '{value}'}}\n" for i in range(60)
    )
    timings: list[float] = []
    for text, name in ((laughs, "lol.yaml"), (plain, "plain.yaml")):
        state = DesiredState(namespace="default")
        t = time.perf_counter()
        state.add_text(text, name)
        timings.append(time.perf_counter() - t)
        print(
            f"drift manifest {name} ({len(text) / 1e3:.1f} kB): {timings[-1] * 1e3:7.1f} ms, "
            f"{len(state.objects)} objects, problems: {[p.message for p in state.problems] or 'none'}"
        )
    print(f"  aliases ten levels deep / plain manifest: {timings[0] / timings[1]:.2f} (refused at load: <= ~1)")


def _workspace_tree(root: Path, files: int) -> None:
    """A checkout-like tree: `files` small files in nested packages, a few links."""
    for i in range(files):
        folder = root / f"pkg{i % 37}" / f"mod{i % 211}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.py").write_text("x = 1\n")
    for i in range(37):
        (root / f"pkg{i}" / "up").symlink_to("..")


def bench_wipes(files: int) -> None:
    import os
    import shutil
    import subprocess
    import tempfile

    from codexk8s_pipelines.drift import manifests
    from codexk8s_pipelines.drift.model import DriftError
    from codexk8s_pipelines.security.safe_files import remove_tree
    from tests.helpers import folder_chain

    with tempfile.TemporaryDirectory(prefix="bench-wipe-") as scratch:
        timings: dict[str, float] = {}
        for name, wipe in (("shutil.rmtree", shutil.rmtree), ("remove_tree", remove_tree)):
            tree = Path(scratch, name)
            _workspace_tree(tree, files)
            t = time.perf_counter()
            wipe(tree)
            timings[name] = time.perf_counter() - t
            assert not tree.exists()
            print(f"wipe of {files} files with {name}: {timings[name]:6.2f} s")
        print(f"  remove_tree / shutil.rmtree: {timings['remove_tree'] / timings['shutil.rmtree']:.2f} (same cost: ~1)")
        chain = Path(scratch, "chain")
        chain.mkdir()
        folder_chain(chain, 3000)
        try:
            shutil.rmtree(chain)
            said = "removed"
        except RecursionError:
            said = "RecursionError"
        t = time.perf_counter()
        remove_tree(chain)
        print(f"chain of 3,000 folders: shutil.rmtree {said}; remove_tree {time.perf_counter() - t:.2f} s")
        helm = os.environ.get("CODEXK8S_HELM") or str(REPO / ".tools/helm")  # as the drift tests find it
        chart = Path(scratch, "chart")
        (chart / "templates").mkdir(parents=True)
        (chart / "Chart.yaml").write_text("apiVersion: v2\nname: loud\nversion: 0.1.0\n")
        (chart / "templates" / "all.yaml").write_text(
            "{{ range until 250000 }}# line {{ . }} of a long chart\n{{ end }}"
        )
        t = time.perf_counter()
        whole = subprocess.run([helm, "template", "r", str(chart)], capture_output=True, check=True).stdout
        manifests.DesiredState(namespace="default").add_text(whole.decode(), "helm template")
        read_whole = time.perf_counter() - t
        kept = manifests.HELM_OUTPUT_MAX_BYTES
        manifests.HELM_OUTPUT_MAX_BYTES = 1024 * 1024
        try:
            t = time.perf_counter()
            try:
                manifests.render_helm(chart, release="r", namespace="default", helm_bin=helm)
                outcome = "rendered"
            except DriftError as exc:
                outcome = str(exc).split(": ", 1)[-1]
            stopped = time.perf_counter() - t
        finally:
            manifests.HELM_OUTPUT_MAX_BYTES = kept
        print(
            f"helm template of {len(whole) / 1e6:.0f} MB: read whole and parsed {read_whole:.2f} s;"
            f" capped at 1 MB: {stopped:.2f} s ({outcome})"
        )
        print(f"  capped / read whole: {stopped / read_whole:.2f} (stopped at the limit: < 1)")


def bench_impact_names(paths: int = 100, depth: int = 2000) -> None:
    import tracemalloc

    from codexk8s_pipelines.knowledge.impact import anchors, mention_terms

    files = ["docs/" + "a/" * depth + f"x{i}.py" for i in range(paths)]

    def former(path: str) -> list[str]:  # the names looked for before stop 37: every `/`-suffix
        parts = [p for p in path.split("/") if p]
        return ["/".join(parts[i:]) for i in range(len(parts))]

    def now(path: str) -> list[str]:
        return sorted(anchors([t for t, _ in mention_terms(path)]))

    figures: dict[str, tuple[int, int, int]] = {}
    for name, names_of in (("former", former), ("now", now)):
        tracemalloc.start()
        patterns = [name for path in files for name in names_of(path)]
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        figures[name] = (len(patterns), sum(map(len, patterns)), peak)
        print(
            f"impact names of {paths} paths of {depth} folders, {name:6}: {len(patterns):7,} patterns,"
            f" {figures[name][1]:12,} characters, peak {peak / 2**20:7.1f} MiB"
        )
    (_, chars_then, peak_then), (_, chars_now, peak_now) = figures["former"], figures["now"]
    print(f"  characters now / former: {chars_now / chars_then:.6f} (bounded: << 1)")
    print(f"  peak memory now / former: {peak_now / peak_then:.4f} (bounded: << 1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--osv-root", type=Path, default=REPO.parent / "shared/data/osv")
    parser.add_argument("--deps", type=int, default=5000)
    parser.add_argument("--naive-budget", type=float, default=60.0, help="seconds the naive run may take")
    parser.add_argument("--lockfile-entries", type=int, default=100_000)
    parser.add_argument("--crafted-entries", type=int, default=2000)
    parser.add_argument("--crafted-only", action="store_true", help="only sections 5 to 8, the crafted inputs")
    parser.add_argument("--wipe-files", type=int, default=60_000, help="files of the workspace of section 7")
    parser.add_argument("--walk-files", type=int, default=30_000, help="files of the smaller tree of section 6")
    args = parser.parse_args()
    if args.crafted_only:
        bench_crafted(args.crafted_entries)
        bench_walks(args.walk_files)
        bench_wipes(args.wipe_files)
        bench_impact_names()
        return
    bench_load(args.osv_root)
    t = time.perf_counter()
    both = OsvDatabase.load(args.osv_root)
    print(f"load both ({args.osv_root}): {time.perf_counter() - t:6.2f} s, {len(both)} records")
    bench_scan(both, args.deps, args.naive_budget)
    bench_all_ecosystems(args.osv_root, args.deps, args.naive_budget)
    bench_large_lockfile(args.lockfile_entries)
    bench_crafted(args.crafted_entries)
    bench_walks(args.walk_files)
    bench_wipes(args.wipe_files)
    bench_impact_names()


if __name__ == "__main__":
    main()
