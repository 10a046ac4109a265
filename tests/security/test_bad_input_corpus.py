"""The bad-input corpus: hostile or broken lockfiles, manifests, trees and OSV records, one case each.

For every case the exact outcome is asserted: one error naming the file (and line, where there is one) and the
reason, the good file beside it still read, no exception out of the scan, and no hang (each case runs in a
worker thread that must finish within `LIMIT` seconds, under pytest-timeout as a second guard). Registry
answers have their own cases in `tests/freshness/test_more_registries.py`; docs in `tests/knowledge/`.
"""

from __future__ import annotations

import json
import os
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from codexk8s_pipelines.security.dependencies import PYPI, Dependency, ExtractionError
from codexk8s_pipelines.security.lockfiles import MAX_DEPTH, MAX_FILE_BYTES, extract_dependencies
from codexk8s_pipelines.security.osv import OsvDatabase, RecordError
from codexk8s_pipelines.security.scan import scan_dependencies

LIMIT = 20.0
NOW = datetime(2026, 12, 1, tzinfo=UTC)
GOOD = ("good/requirements.txt", "requests==2.31.0\n")


def bounded(call: Callable[[], Any]) -> Any:
    """`call()` in a daemon thread; fails the test (instead of hanging it) when it does not return in time."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # reported below as the test's failure
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(LIMIT)
    assert not thread.is_alive(), f"did not finish within {LIMIT} s"
    if "error" in box:
        raise AssertionError(f"raised {type(box['error']).__name__}: {box['error']}") from box["error"]
    return box["value"]


def put(root: Path, relative: str, content: str | bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def deep_json(depth: int) -> str:
    return '{"packages": ' + "[" * depth + "]" * depth + "}"


def deep_yaml(depth: int) -> str:
    return "packages:\n  x: " + "[" * depth + "]" * depth + "\n"


# --- lockfiles, manifests and trees ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeCase:
    id: str
    build: Callable[[Path], None]
    errors: list[tuple[str, int | None, str]]  # exactly the errors expected, besides none for the good file


def _files(**files: str | bytes) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        for relative, content in files.items():
            put(root, relative.replace("__", "/"), content)

    return build


def _fifo(relative: str) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)

    return build


def _symlink(relative: str, target: str) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)

    return build


def _loop(a: str, b: str) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        (root / a).parent.mkdir(parents=True, exist_ok=True)
        (root / a).symlink_to(root / b)
        (root / b).symlink_to(root / a)

    return build


def _sparse(relative: str, size: int) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            handle.truncate(size)

    return build


def _deep_dirs(levels: int) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        path = root.joinpath(*["d"] * levels)
        path.mkdir(parents=True)
        (path / "requirements.txt").write_text("hidden==1.0\n")

    return build


def _both(*builds: Callable[[Path], None]) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        for one in builds:
            one(root)

    return build


MB = 1024 * 1024
DEEP = "/".join(["d"] * MAX_DEPTH)
TREE_CASES = [
    # the tree itself
    TreeCase(
        "fifo-yarn-lock", _fifo("web/yarn.lock"), [("web/yarn.lock", None, "not a regular file (FIFO): not read")]
    ),
    TreeCase("fifo-go-sum", _fifo("go.sum"), [("go.sum", None, "not a regular file (FIFO): not read")]),
    TreeCase(
        "symlink-loop-lockfile",
        _loop("web/package-lock.json", "web/npm-shrinkwrap.json"),
        [
            ("web/npm-shrinkwrap.json", None, "symlink loop: not followed"),
            ("web/package-lock.json", None, "symlink loop: not followed"),
        ],
    ),
    TreeCase(
        "symlink-self-loop",
        _symlink("Cargo.lock", "Cargo.lock"),
        [("Cargo.lock", None, "symlink loop: not followed")],
    ),
    TreeCase(
        "symlink-outside",
        _symlink("requirements.txt", "/etc/passwd"),
        [("requirements.txt", None, "symlink to outside the scanned tree: not followed")],
    ),
    TreeCase(
        "symlink-dangling",
        _symlink("poetry.lock", "missing.lock"),
        [("poetry.lock", None, "broken symlink: not read")],
    ),
    TreeCase(
        "symlink-to-fifo-inside",
        _both(_fifo("pipe"), _symlink("uv.lock", "pipe")),
        [("uv.lock", None, "not a regular file (FIFO): not read")],
    ),
    TreeCase(
        "directory-symlink-loop-not-entered",
        _symlink("loop/again", ".."),
        [],
    ),
    TreeCase(
        "oversized-sparse",
        _sparse("package-lock.json", MAX_FILE_BYTES + MB),
        [("package-lock.json", None, "file is 65.0 MB, over the 64 MB limit: not read")],
    ),
    TreeCase(
        "too-deep",
        _deep_dirs(MAX_DEPTH + 3),
        [(f"{DEEP}/d", None, f"directory nested deeper than {MAX_DEPTH} levels: not entered")],
    ),
    TreeCase(
        "not-utf8",
        _files(**{"poetry.lock": b"\xff\xfe[[package]]\n"}),
        [("poetry.lock", 1, "not UTF-8 (byte 0xff)")],
    ),
    TreeCase(
        "binary-garbage-cargo",
        _files(**{"Cargo.lock": bytes(range(1, 128)) * 4}),
        [("Cargo.lock", 1, "invalid TOML: Invalid statement (at line 1, column 1)")],
    ),
    # JSON lockfiles
    TreeCase(
        "package-lock-truncated",
        _files(**{"package-lock.json": '{"lockfileVersion": 3, "packages": {'}),
        [("package-lock.json", 1, "invalid JSON: Expecting property name enclosed in double quotes (column 37)")],
    ),
    TreeCase(
        "package-lock-nested-100000",
        _files(**{"package-lock.json": deep_json(100_000)}),
        [("package-lock.json", None, "invalid JSON: nested too deeply")],
    ),
    TreeCase(
        "package-lock-array",
        _files(**{"package-lock.json": "[1, 2]"}),
        [("package-lock.json", 1, "package-lock is not a JSON object")],
    ),
    TreeCase(
        "package-lock-packages-string",
        _files(**{"package-lock.json": '{"lockfileVersion": 3,\n "packages": "all"}'}),
        [("package-lock.json", None, "`packages` is not an object")],
    ),
    TreeCase(
        "pipfile-lock-nested",
        _files(**{"Pipfile.lock": deep_json(50_000)}),
        [("Pipfile.lock", None, "invalid JSON: nested too deeply")],
    ),
    TreeCase(
        "composer-lock-not-object",
        _files(**{"composer.lock": '"packages"'}),
        [("composer.lock", 1, "composer.lock is not a JSON object")],
    ),
    TreeCase(
        "composer-lock-entry-without-name",
        _files(**{"composer.lock": '{"packages": [{"version": "1.0.0"}]}'}),
        [("composer.lock", None, "packages[0] has no `name`")],
    ),
    TreeCase(
        "nuget-lock-without-dependencies",
        _files(**{"packages.lock.json": '{"version": 1}'}),
        [("packages.lock.json", 1, "packages.lock.json has no `dependencies` object")],
    ),
    TreeCase(
        "nuget-lock-without-resolved",
        _files(**{"packages.lock.json": '{"version": 1, "dependencies": {"net6.0": {\n"A": {"type": "Direct"}}}}'}),
        [("packages.lock.json", 2, "A: no `resolved` version")],
    ),
    TreeCase(
        "renv-lock-without-packages",
        _files(**{"renv.lock": '{"R": {"Version": "4.2.1"}}'}),
        [("renv.lock", 1, "renv.lock has no `Packages` object")],
    ),
    TreeCase(
        "renv-lock-entry-not-object",
        _files(**{"renv.lock": '{"Packages": {\n"x": 3}}'}),
        [("renv.lock", None, "x: entry is not an object")],
    ),
    # YAML lockfiles
    TreeCase(
        "pnpm-nested-10000",
        _files(**{"pnpm-lock.yaml": deep_yaml(10_000)}),
        [("pnpm-lock.yaml", 2, "invalid YAML: nested deeper than 64 levels")],
    ),
    TreeCase(
        "pnpm-invalid-yaml",
        _files(**{"pnpm-lock.yaml": "lockfileVersion: '9.0'\npackages:\n  a@1.0.0: [\n"}),
        [("pnpm-lock.yaml", 4, "invalid YAML: did not find expected node content")],
    ),
    TreeCase(
        "pnpm-scalar-document",
        _files(**{"pnpm-lock.yaml": "just a string\n"}),
        [("pnpm-lock.yaml", 1, "pnpm-lock.yaml document is not a mapping")],
    ),
    TreeCase(
        "pubspec-packages-list",
        _files(**{"pubspec.lock": "packages:\n  - a\n"}),
        [("pubspec.lock", 1, "pubspec.lock has no `packages` mapping")],
    ),
    TreeCase(
        "pubspec-entry-without-version",
        _files(**{"pubspec.lock": "packages:\n  http:\n    source: hosted\n"}),
        [("pubspec.lock", 2, "http: no `version`")],
    ),
    TreeCase(
        "pubspec-two-documents",
        _files(**{"pubspec.lock": "packages:\n  a:\n    source: hosted\n    version: '1.0.0'\n---\npackages: {}\n"}),
        [("pubspec.lock", None, "2 YAML documents where one was expected: only the first was read")],
    ),
    # TOML lockfiles and manifests
    TreeCase(
        "cargo-entry-without-name",
        _files(**{"Cargo.lock": 'version = 3\n\n[[package]]\nversion = "1.0.0"\nsource = "registry+x"\n'}),
        [("Cargo.lock", 3, "[[package]] entry without a name")],
    ),
    TreeCase(
        "poetry-invalid-toml",
        _files(**{"poetry.lock": "[[package]]\nname = \n"}),
        [("poetry.lock", 2, "invalid TOML: Invalid value (at line 2, column 8)")],
    ),
    # tomllib recurses per inline array or table: 200,000 of them raised RecursionError out of the parser, reported
    # as "could not be parsed (RecursionError: maximum recursion depth exceeded)"
    TreeCase(
        "cargo-lock-arrays-nested-200000",
        _files(**{"Cargo.lock": 'version = 3\n\n[[package]]\nname = "x"\nversion = ' + "[" * 200_000 + "\n"}),
        [("Cargo.lock", None, "invalid TOML: nested too deeply")],
    ),
    TreeCase(
        "poetry-lock-inline-tables-nested-200000",
        _files(**{"poetry.lock": "[[package]]\nname = " + "{a = " * 200_000 + "\n"}),
        [("poetry.lock", None, "invalid TOML: nested too deeply")],
    ),
    TreeCase(
        "pyproject-dependencies-nested-200000",
        _files(**{"pyproject.toml": '[project]\nname = "x"\ndependencies = ' + "[" * 200_000 + "]" * 200_000 + "\n"}),
        [("pyproject.toml", None, "invalid TOML: nested too deeply")],
    ),
    TreeCase(
        "pyproject-bad-requirement",
        _files(**{"pyproject.toml": '[project]\nname = "x"\ndependencies = ["requests >>> 2"]\n'}),
        [
            (
                "pyproject.toml",
                3,
                "[project].dependencies: cannot parse requirement 'requests >>> 2': Expected semicolon "
                "(after name with no version specifier) or end\n    requests >>> 2\n             ^",
            )
        ],
    ),
    # line-based formats
    TreeCase(
        "requirements-include-loop",
        _both(
            _files(**{"requirements.txt": "-r more/requirements.txt\nflask==3.0.0\n"}),
            _loop("more/requirements.txt", "more/x.txt"),
        ),
        [
            ("more/requirements.txt", None, "symlink loop: not followed"),
            ("requirements.txt", 1, "include is a symlink loop, not read: more/requirements.txt"),
        ],
    ),
    TreeCase(
        "requirements-include-fifo",
        _both(_files(**{"requirements.txt": "-r pipe.txt\n"}), _fifo("pipe.txt")),
        [("pipe.txt", None, "not a regular file (FIFO): not read")],
    ),
    TreeCase(
        "requirements-include-outside",
        _files(**{"requirements.txt": "-r ../../etc/passwd\n"}),
        [("requirements.txt", 1, "include outside the scanned tree is not read: ../../etc/passwd")],
    ),
    TreeCase(
        "requirements-nameless-url",
        _files(**{"requirements.txt": "https://example.com/download?id=7\n"}),
        [
            (
                "requirements.txt",
                1,
                "direct URL: not a registry release and without a package name, not matched: "
                "https://example.com/download?id=7",
            )
        ],
    ),
    TreeCase(
        "gradle-lockfile-garbage",
        _files(**{"gradle.lockfile": "# comment\ncom.example:lib=compileClasspath\n"}),
        [
            (
                "gradle.lockfile",
                2,
                "not a `group:artifact:version=configurations` line: 'com.example:lib=compileClasspath'",
            )
        ],
    ),
    TreeCase(
        "gemfile-lock-without-sections",
        _files(**{"Gemfile.lock": "    rack (2.2.3)\n"}),
        [("Gemfile.lock", 1, "not a Gemfile.lock: no section header (GEM, DEPENDENCIES...)")],
    ),
    TreeCase(
        "gemfile-lock-bad-version",
        _files(**{"Gemfile.lock": "GEM\n  specs:\n    rack (latest)\n"}),
        [("Gemfile.lock", 3, "gem 'rack' has no version: 'latest'")],
    ),
    TreeCase(
        "mix-lock-not-a-map",
        _files(**{"mix.lock": 'System.cmd("rm", ["-rf", "/"])\n'}),
        [("mix.lock", 1, "not a mix.lock: it does not start with `%{`")],
    ),
    TreeCase(
        "mix-lock-malformed-hex-entry",
        _files(**{"mix.lock": '%{\n  "plug": {:hex, 42},\n}\n'}),
        [("mix.lock", 2, "plug: a :hex entry without a package name and version")],
    ),
    # XML manifests
    TreeCase(
        "pom-billion-laughs",
        _files(
            **{
                "pom.xml": '<?xml version="1.0"?>\n<!DOCTYPE p [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
                "\n<project>&b;</project>\n"
            }
        ),
        [("pom.xml", None, "refused XML: DTDForbidden (DTDs and entities are not read)")],
    ),
    TreeCase(
        "pom-external-entity",
        _files(
            **{
                "pom.xml": '<?xml version="1.0"?>\n<!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<project>&x;</project>\n'
            }
        ),
        [("pom.xml", None, "refused XML: DTDForbidden (DTDs and entities are not read)")],
    ),
    TreeCase(
        "pom-invalid-xml",
        _files(**{"pom.xml": "<project>\n  <dependencies>\n</project>\n"}),
        [("pom.xml", 3, "invalid XML: mismatched tag: line 3, column 2")],
    ),
    TreeCase(
        "pom-wrong-root",
        _files(**{"pom.xml": "<settings/>\n"}),
        [("pom.xml", 1, "pom.xml root element is <settings>, not <project>")],
    ),
    TreeCase(
        "pom-dependency-without-artifact",
        _files(
            **{
                "pom.xml": "<project>\n<dependencies>\n<dependency><groupId>g</groupId></dependency>\n"
                "</dependencies>\n</project>\n"
            }
        ),
        [("pom.xml", 3, "<dependency> without groupId and artifactId")],
    ),
    TreeCase(
        "pom-property-cycle",
        _files(
            **{
                "pom.xml": "<project><properties><a>${b}</a><b>${a}</b></properties><dependencies><dependency>"
                "<groupId>g</groupId><artifactId>x</artifactId><version>${a}</version></dependency></dependencies>"
                "</project>\n"
            }
        ),
        [],  # not an error: counted unpinned with the reason (asserted below)
    ),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", TREE_CASES, ids=[c.id for c in TREE_CASES])
def test_tree_case(tmp_path: Path, case: TreeCase) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    put(root, *GOOD)
    case.build(root)

    extraction = bounded(lambda: extract_dependencies(root))

    assert extraction.errors == [ExtractionError(file, line, message) for file, line, message in case.errors]
    assert Dependency(PYPI, "requests", "2.31.0", GOOD[0], 1, "requests==2.31.0", True) in extraction.dependencies
    if case.id == "pom-property-cycle":
        (entry,) = [d for d in extraction.dependencies if d.file == "pom.xml"]
        assert (
            entry.unpinned_reason == "version property ${(substitutions nested too deeply)} is not defined in this file"
        )


def test_a_scan_root_that_is_a_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    extraction = bounded(lambda: extract_dependencies(tmp_path / "a"))
    assert extraction.errors == [ExtractionError(".", None, "cannot read the scan root: symlink loop")]
    assert extraction.dependencies == []


def test_two_document_pnpm_lock_reads_both_documents(tmp_path: Path) -> None:
    """pnpm 10 writes `packageManagerDependencies` as a first document: both are read, without an error."""
    put(
        tmp_path,
        "pnpm-lock.yaml",
        "---\nlockfileVersion: '9.0'\n\nimporters:\n  .:\n    packageManagerDependencies:\n      pnpm:\n"
        "        specifier: 10.0.0\n        version: 10.0.0\n\npackages:\n  pnpm@10.0.0:\n    resolution: {}\n"
        "---\nlockfileVersion: '9.0'\n\nimporters:\n  .:\n    dependencies:\n      lodash:\n"
        "        specifier: ^4.17.0\n        version: 4.17.20\n\npackages:\n  lodash@4.17.20:\n    resolution: {}\n"
        "  ms@2.1.3:\n    resolution: {}\n",
    )
    extraction = extract_dependencies(tmp_path)
    assert extraction.errors == []
    assert [(d.name, d.version, d.direct) for d in extraction.dependencies] == [
        ("pnpm", "10.0.0", True),
        ("lodash", "4.17.20", True),
        ("ms", "2.1.3", False),
    ]


# --- OSV records ----------------------------------------------------------------------------------------------


def record(record_id: str, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": record_id,
        "modified": "2026-11-30T00:00:00Z",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "demo"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0"}]}],
            }
        ],
    }
    data.update(extra)
    return data


@dataclass(frozen=True)
class RecordCase:
    id: str
    build: Callable[[Path], None]
    errors: list[tuple[str, str]] = ()  # type: ignore[assignment]  # (path relative to the db, message)
    warnings: list[tuple[str, str]] = ()  # type: ignore[assignment]
    loaded: int = 1  # records usable besides the good one


def _record_file(relative: str, content: str | bytes | dict[str, Any]) -> Callable[[Path], None]:
    def build(db: Path) -> None:
        put(db, relative, json.dumps(content) if isinstance(content, dict) else content)

    return build


def _zip(relative: str, members: dict[str, bytes]) -> Callable[[Path], None]:
    def build(db: Path) -> None:
        path = db / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in members.items():
                archive.writestr(name, data)

    return build


def _range(kind: str, events: list[dict[str, str]]) -> dict[str, Any]:
    return {"package": {"ecosystem": "PyPI", "name": "demo"}, "ranges": [{"type": kind, "events": events}]}


RECORD_CASES = [
    RecordCase(
        "invalid-json",
        _record_file("BAD-1.json", "{"),
        [("BAD-1.json", "invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)")],
        loaded=0,
    ),
    RecordCase(
        "nested-100000-json",
        _record_file("BAD-2.json", "[" * 100_000 + "]" * 100_000),
        [("BAD-2.json", "nested too deeply to be an OSV record")],
        loaded=0,
    ),
    RecordCase(
        "nested-100000-yaml",  # libyaml's composer would die of a segmentation fault on this one
        _record_file("BAD-3.yaml", "a: " + "[" * 100_000 + "]" * 100_000 + "\n"),
        [("BAD-3.yaml", "nested too deeply to be an OSV record")],
        loaded=0,
    ),
    RecordCase(
        "nested-block-yaml",
        _record_file("BAD-3b.yaml", "".join(" " * n + f"k{n}:\n" for n in range(0, 400, 2)) + " " * 400 + "x: 1\n"),
        [("BAD-3b.yaml", "nested too deeply to be an OSV record")],
        loaded=0,
    ),
    # The gate in front of libyaml's composer (which recurses in C: the process died of a segmentation fault) looked
    # for 32 brackets in a row or 128 blanks: brackets spaced apart, or compact `- - -`, went through it.
    RecordCase(
        "nested-spaced-brackets-yaml",
        _record_file("BAD-3c.yaml", "a: " + "[ " * 100_000 + "]" * 100_000 + "\n"),
        [("BAD-3c.yaml", "nested too deeply to be an OSV record")],
        loaded=0,
    ),
    RecordCase(
        "nested-compact-sequences-yaml",
        _record_file("BAD-3d.yaml", "affected:\n" + "- " * 100_000 + "x\n"),
        [("BAD-3d.yaml", "nested too deeply to be an OSV record")],
        loaded=0,
    ),
    # libyaml skips a byte order mark at the start of any line: a line's run of indicators may start after one.
    RecordCase(
        "nested-after-a-bom-yaml",
        _record_file("BAD-3e.yaml", b"\xef\xbb\xbf" + b"- " * 100_000 + b"x\n"),
        [("BAD-3e.yaml", "nested too deeply to be an OSV record")],
        loaded=0,
    ),
    RecordCase(
        "nested-after-a-bom-on-a-later-line-yaml",
        _record_file("BAD-3f.yaml", b"id: X\nv:\n\xef\xbb\xbf" + b"- " * 100_000 + b"x\n"),
        [("BAD-3f.yaml", "nested too deeply to be an OSV record")],
        loaded=0,
    ),
    RecordCase(
        "not-a-mapping",
        _record_file("BAD-4.json", "[1, 2, 3]"),
        [("BAD-4.json", "record is not a mapping (got list)")],
        loaded=0,
    ),
    RecordCase(
        "missing-id",
        _record_file("BAD-5.json", {"modified": "2024-01-01T00:00:00Z"}),
        [("BAD-5.json", "missing `id`")],
        loaded=0,
    ),
    RecordCase(
        "binary-record",
        _record_file("BAD-6.json", b"\x89PNG\r\n\x1a\n\x00\x00"),
        [("BAD-6.json", "line 1: not UTF-8 (byte 0x89)")],
        loaded=0,
    ),
    RecordCase(
        "affected-not-list",
        _record_file("BAD-7.json", record("BAD-7", affected={"a": 1})),
        [("BAD-7.json", "`affected` is not a list")],
        loaded=0,
    ),
    RecordCase(
        "ranges-not-list",
        _record_file(
            "BAD-8.json", record("BAD-8", affected=[{"package": {"ecosystem": "PyPI", "name": "x"}, "ranges": "0-2"}])
        ),
        [("BAD-8.json", "affected[0].ranges is not a list")],
        loaded=0,
    ),
    RecordCase(
        "unknown-event",
        _record_file(
            "BAD-9.json", record("BAD-9", affected=[_range("ECOSYSTEM", [{"introduced": "0"}, {"patched": "2"}])])
        ),
        [("BAD-9.json", "affected[0].ranges[0].events[1]: unknown event 'patched'")],
        loaded=0,
    ),
    RecordCase(
        "aliases-not-strings",
        _record_file("BAD-10.json", record("BAD-10", aliases=[1, 2])),
        [("BAD-10.json", "`aliases` is not a list of strings")],
        loaded=0,
    ),
    RecordCase(
        "fifo-record",
        lambda db: os.mkfifo(db / "BAD-11.json"),
        [("BAD-11.json", "not a regular file (FIFO): not read")],
        loaded=0,
    ),
    RecordCase(
        "symlink-loop-record",
        _loop("BAD-12.json", "BAD-12b.json"),
        [("BAD-12.json", "symlink loop: not followed"), ("BAD-12b.json", "symlink loop: not followed")],
        loaded=0,
    ),
    RecordCase(
        "symlink-outside-db",
        _symlink("BAD-13.json", "/etc/hostname"),
        [("BAD-13.json", "symlink to outside the scanned tree: not followed")],
        loaded=0,
    ),
    RecordCase(
        "not-a-zip",
        _record_file("PyPI/all.zip", b"PK\x03\x04 not really"),
        [("PyPI/all.zip", "not a readable zip archive: File is not a zip file")],
        loaded=0,
    ),
    RecordCase(
        "zip-bomb-member",
        _zip("npm/all.zip", {"BOMB.json": b" " * (17 * 1024 * 1024), "OK-1.json": json.dumps(record("OK-1")).encode()}),
        [("npm/all.zip!BOMB.json", "inflates to 17.0 MB, over the 16 MB limit per record: not read")],
    ),
    RecordCase(
        "future-modified",
        _record_file("FUTURE-1.json", record("FUTURE-1", modified="2030-01-01T00:00:00Z")),
        warnings=[
            (
                "FUTURE-1.json",
                "1 record(s) dated in the future (latest `modified` 2030-01-01): ignored for the database's age",
            )
        ],
    ),
    RecordCase(
        "withdrawn-not-a-date",
        _record_file("WD-1.json", record("WD-1", withdrawn="yesterday-ish")),
        warnings=[("WD-1.json", "`withdrawn` is not a timestamp ('yesterday-ish'): the record is kept")],
    ),
    RecordCase(
        "withdrawn-a-number",
        _record_file("WD-2.json", record("WD-2", withdrawn=12)),
        warnings=[("WD-2.json", "`withdrawn` is not a timestamp ('12'): the record is kept")],
    ),
    RecordCase(
        "unknown-range-type",
        _record_file(
            "RT-1.json",
            record(
                "RT-1",
                affected=[
                    _range("ECOSYSTEM", [{"introduced": "0"}, {"fixed": "2.0"}]) | {},
                    {
                        "package": {"ecosystem": "PyPI", "name": "demo"},
                        "ranges": [{"type": "CALVER", "events": [{"introduced": "0"}]}],
                    },
                ],
            ),
        ),
        warnings=[("RT-1.json", "affected[1].ranges[0]: unknown range type 'CALVER', not evaluated")],
    ),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", RECORD_CASES, ids=[c.id for c in RECORD_CASES])
def test_record_case(tmp_path: Path, case: RecordCase) -> None:
    db_dir = tmp_path / "osv"
    put(db_dir, "GOOD-1.json", json.dumps(record("GOOD-1")))
    case.build(db_dir)

    db = bounded(lambda: OsvDatabase.load(db_dir, now=NOW))

    assert db.errors == [RecordError(str(db_dir / path), message) for path, message in case.errors]
    assert db.warnings == [RecordError(str(db_dir / path), message) for path, message in case.warnings]
    assert "GOOD-1" in db
    assert len(db) == 1 + case.loaded
    # the good record still finds its vulnerable dependency
    result = scan_dependencies([Dependency(PYPI, "demo", "1.0", "requirements.txt", 1)], db)
    assert any("GOOD-1" in finding.records for finding in result.findings)


def test_a_future_record_does_not_hide_a_stale_database(tmp_path: Path) -> None:
    put(tmp_path, "OLD-1.json", json.dumps(record("OLD-1", modified="2024-10-08T00:00:00Z")))
    put(tmp_path, "FUTURE-1.json", json.dumps(record("FUTURE-1", modified="2030-01-01T00:00:00Z")))
    db = OsvDatabase.load(tmp_path, now=NOW)
    assert db.snapshot == datetime(2024, 10, 8, tzinfo=UTC)
    assert db.stale and db.staleness_message() == (
        "OSV database is 784 days old (snapshot 2024-10-08), older than 7 days: refresh it"
    )
    assert db.future_dated == 1


def test_a_future_refresh_marker_is_not_believed(tmp_path: Path) -> None:
    put(tmp_path, "OLD-1.json", json.dumps(record("OLD-1", modified="2024-10-08T00:00:00Z")))
    put(tmp_path, ".codexk8s-osv.json", json.dumps({"fetched_at": "2031-05-05T00:00:00+00:00"}))
    db = OsvDatabase.load(tmp_path, now=NOW)
    assert (db.snapshot, db.snapshot_source, db.stale) == (datetime(2024, 10, 8, tzinfo=UTC), "records", True)
    assert [str(w) for w in db.warnings] == [
        f"{tmp_path / '.codexk8s-osv.json'}: refresh marker dated in the future (2031-05-05): "
        "ignored for the database's age"
    ]


def test_a_zip_that_inflates_past_the_total_bound_stops_there(tmp_path: Path) -> None:
    members = {f"R-{n}.json": json.dumps(record(f"R-{n}")).encode() + b" " * 200_000 for n in range(10)}
    _zip("PyPI/all.zip", members)(tmp_path)
    db = OsvDatabase.load(tmp_path, now=NOW, max_inflated=1_000_000)
    assert len(db) == 4  # 4 x ~200 kB fit under 1 MB, the fifth does not
    assert [str(e) for e in db.errors] == [
        f"{tmp_path / 'PyPI/all.zip'}!R-4.json: the archive inflates to over 0.000931323 GB: "
        "this and the remaining members were not read"
    ]


@pytest.mark.parametrize(
    ("events", "version", "message"),
    [
        (
            [{"introduced": "2.0"}, {"fixed": "1.0"}],
            "1.5",
            "unusable range: reversed range: fixed '1.0' precedes introduced '2.0'",
        ),
        (
            [{"introduced": "0"}, {"fixed": "0.2.0-n653"}],
            "0.1",
            "unusable range: range bound '0.2.0-n653' is not a PEP 440 version",
        ),
        (
            [{"introduced": "2019-09-12"}],
            "1.0",
            "unusable range: range bound '2019-09-12' is not a PEP 440 version",
        ),
        (
            [{"introduced": "1.0"}, {"last_affected": "0.9"}],
            "1.0",
            "unusable range: reversed range: last_affected '0.9' precedes introduced '1.0'",
        ),
        (
            [{"introduced": "0"}, {"fixed": ">=2.0"}],
            "1.0",
            "unusable range: invalid PyPI version: '>=2.0'",
        ),
    ],
)
def test_ranges_that_cannot_be_evaluated_are_matching_errors(
    tmp_path: Path, events: list[dict[str, str]], version: str, message: str
) -> None:
    put(tmp_path, "R-1.json", json.dumps(record("R-1", affected=[_range("ECOSYSTEM", events)])))
    db = OsvDatabase.load(tmp_path, now=NOW)
    result = scan_dependencies([Dependency(PYPI, "demo", version, "requirements.txt", 1)], db)
    assert result.findings == []
    assert [(e.advisory_id, e.message) for e in result.matching_errors] == [("R-1", message)]


def test_legacy_versions_order_before_every_pep440_version() -> None:
    from codexk8s_pipelines.security.versions import compare

    assert compare(PYPI, "0.1-bulbasaur", "0.0.1") == -1
    assert compare(PYPI, "2019-09-12", "0.0.0.dev0") == -1
    assert compare(PYPI, "0.1-bulbasaur", "0.1-charmander") == -1


def test_a_legacy_installed_version_is_still_matched(tmp_path: Path) -> None:
    """Only range *bounds* must be PEP 440: an installed legacy version orders before every release and so
    lies in a range that starts at 0."""
    put(tmp_path, "R-1.json", json.dumps(record("R-1")))
    db = OsvDatabase.load(tmp_path, now=NOW)
    result = scan_dependencies([Dependency(PYPI, "demo", "0.1-legacy", "requirements.txt", 1)], db)
    assert [f.advisory_id for f in result.findings] == ["R-1"] and result.matching_errors == []
