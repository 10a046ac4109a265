"""The tree walk: which files are read, excluded directories, symlinks, oversized and unreadable files, a mixed
tree of every format, and that nothing raises out of `extract_dependencies`."""

from __future__ import annotations

import json
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from codexk8s_pipelines.security import lockfiles
from codexk8s_pipelines.security.dependencies import CRATES, ECOSYSTEMS, GO, NPM, PYPI
from codexk8s_pipelines.security.lockfiles import (
    DEFAULT_EXCLUDES,
    KNOWN_FILES,
    MAX_FILE_BYTES,
    KnownFile,
    extract_dependencies,
    known_file,
    parse_file,
)
from codexk8s_pipelines.security.lockfiles._common import (
    _deeper_than,
    _key_lines_by_pairing,
    _key_lines_by_scanning,
    json_key_lines,
)
from tests.security.test_lockfiles_go_cargo import CARGO_LOCK, GO_MOD, GO_SUM
from tests.security.test_lockfiles_npm import PACKAGE_LOCK_V3, PNPM_V9, YARN_BERRY, YARN_CLASSIC
from tests.security.test_lockfiles_python import PEP621, PIP_COMPILE, PIPFILE_LOCK, POETRY_LOCK, UV_LOCK


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("relative", "pattern"),
    [
        ("requirements.txt", "requirements*.txt"),
        ("a/b/requirements-dev.txt", "requirements*.txt"),
        ("test-requirements.txt", "*-requirements.txt"),
        ("requirements/base.txt", "requirements/*.txt"),
        ("svc/pyproject.toml", "pyproject.toml"),
        ("web/npm-shrinkwrap.json", "npm-shrinkwrap.json"),
        ("Cargo.lock", "Cargo.lock"),
        ("notes.txt", None),
        ("requirements.in", None),
        ("package.json", None),
        ("cargo.lock", None),
    ],
)
def test_known_file_names(relative: str, pattern: str | None) -> None:
    known = known_file(relative)
    assert (known.pattern if known else None) == pattern


def test_every_known_file_names_an_ecosystem() -> None:
    assert {known.ecosystem for known in KNOWN_FILES} == set(ECOSYSTEMS)


def test_mixed_tree_counts_per_ecosystem(tmp_path: Path) -> None:
    write(tmp_path, "requirements/prod.txt", PIP_COMPILE)
    write(tmp_path, "pyproject.toml", PEP621)
    write(tmp_path, "services/legacy/poetry.lock", POETRY_LOCK)
    write(tmp_path, "services/uv/uv.lock", UV_LOCK)
    write(tmp_path, "services/pipenv/Pipfile.lock", PIPFILE_LOCK)
    write(tmp_path, "web/package-lock.json", PACKAGE_LOCK_V3)
    write(tmp_path, "web/legacy/yarn.lock", YARN_CLASSIC)
    write(tmp_path, "web/berry/yarn.lock", YARN_BERRY)
    write(tmp_path, "web/pnpm/pnpm-lock.yaml", PNPM_V9)
    write(tmp_path, "go/go.mod", GO_MOD)
    write(tmp_path, "go/go.sum", GO_SUM)
    write(tmp_path, "rust/Cargo.lock", CARGO_LOCK)
    write(tmp_path, "README.md", "# not a manifest\n")

    extraction = extract_dependencies(tmp_path)

    assert extraction.files == [
        "go/go.mod",
        "go/go.sum",
        "pyproject.toml",
        "requirements/prod.txt",
        "rust/Cargo.lock",
        "services/legacy/poetry.lock",
        "services/pipenv/Pipfile.lock",
        "services/uv/uv.lock",
        "web/berry/yarn.lock",
        "web/legacy/yarn.lock",
        "web/package-lock.json",
        "web/pnpm/pnpm-lock.yaml",
    ]
    # requirements 4 + pyproject 9 + poetry.lock 3 + uv.lock 5 + Pipfile.lock 3 = 24 (each with one git source,
    # kept unpinned); package-lock 9 (one git) + yarn classic 4 (one git) + yarn berry 4 + pnpm 8 (one URL) = 25;
    # go.mod 7 + go.sum 1 (pflag) = 8; Cargo 6 (one git)
    assert Counter(d.ecosystem for d in extraction.dependencies) == {PYPI: 24, NPM: 25, GO: 8, CRATES: 6}
    # the format fixtures' own deliberate errors, nothing else
    assert sorted({e.file for e in extraction.errors}) == [
        "services/pipenv/Pipfile.lock",
        "web/berry/yarn.lock",
        "web/legacy/yarn.lock",
    ]
    keys = [(d.file, d.line or 0, d.name) for d in extraction.dependencies]
    assert keys == sorted(keys)


def test_excluded_directories_are_not_entered(tmp_path: Path) -> None:
    write(tmp_path, "requirements.txt", "flask==3.0.0\n")
    for excluded in ("node_modules/left-pad", ".venv/lib", "venv", ".git", "__pycache__", "target", "vendor", ".tox"):
        write(tmp_path, f"{excluded}/requirements.txt", "hidden==1.0\n")
    write(tmp_path, "dist/pkg/requirements.txt", "hidden==1.0\n")
    write(tmp_path, "build/requirements.txt", "hidden==1.0\n")
    write(tmp_path, "app/node_modules/x/package-lock.json", '{"packages": {"node_modules/y": {"version": "1.0.0"}}}')
    write(tmp_path, "app/requirements-dev.txt", "pytest==8.0.0\n")

    extraction = extract_dependencies(tmp_path)
    assert extraction.files == ["app/requirements-dev.txt", "requirements.txt"]
    assert [(d.name, d.file) for d in extraction.dependencies] == [
        ("pytest", "app/requirements-dev.txt"),
        ("flask", "requirements.txt"),
    ]

    narrower = extract_dependencies(tmp_path, exclude_dirs=frozenset({".git"}))
    assert "node_modules/left-pad/requirements.txt" in narrower.files
    assert ".git/requirements.txt" not in narrower.files
    assert {".git", "node_modules", ".venv", "venv", "__pycache__", "target", "vendor", ".tox"} <= DEFAULT_EXCLUDES


def test_included_file_is_reported_once(tmp_path: Path) -> None:
    write(tmp_path, "requirements.txt", "-r requirements-base.txt\nflask==3.0.0\n")
    write(tmp_path, "requirements-base.txt", "click==8.1.7\n")
    extraction = extract_dependencies(tmp_path)
    assert extraction.files == ["requirements-base.txt", "requirements.txt"]
    assert [(d.name, d.file, d.line) for d in extraction.dependencies] == [
        ("click", "requirements-base.txt", 1),
        ("flask", "requirements.txt", 2),
    ]


def test_symlinks_out_of_the_tree_are_not_followed(tmp_path: Path) -> None:
    outside = write(tmp_path, "outside/requirements.txt", "secret==1.0\n")
    root = tmp_path / "repo"
    write(root, "real/requirements.txt", "flask==3.0.0\n")
    (root / "requirements.txt").symlink_to(outside)
    (root / "linked-dir").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "requirements-same.txt").symlink_to(root / "real" / "requirements.txt")
    (root / "requirements-dangling.txt").symlink_to(root / "missing.txt")

    extraction = extract_dependencies(root)
    assert extraction.files == ["real/requirements.txt", "requirements-same.txt"]
    assert [(d.name, d.file) for d in extraction.dependencies] == [
        ("flask", "real/requirements.txt"),
        ("flask", "requirements-same.txt"),
    ]
    assert [str(e) for e in extraction.errors] == [
        "requirements-dangling.txt: broken symlink: not read",
        "requirements.txt: symlink to outside the scanned tree: not followed",
    ]


def test_oversized_and_undecodable_files_are_reported_not_read(tmp_path: Path) -> None:
    with (tmp_path / "package-lock.json").open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1024 * 1024)  # sparse: the size is what is checked, nothing is written
    (tmp_path / "requirements.txt").write_bytes(b"a==1.0\nb==1.0\ncaf\xe9==1.0\n")
    write(tmp_path, "go.mod", "module m\n\nrequire github.com/a/b v1.0.0\n")

    extraction = extract_dependencies(tmp_path)
    assert extraction.files == ["go.mod"]
    assert len(extraction.dependencies) == 1
    assert [(e.file, e.line, e.message) for e in extraction.errors] == [
        ("package-lock.json", None, "file is 65.0 MB, over the 64 MB limit: not read"),
        ("requirements.txt", 3, "not UTF-8 (byte 0xe9)"),  # the line a user opens, not a byte offset
    ]


def test_a_parser_crash_is_an_error_not_an_exception(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(text: str, sink: object) -> None:
        raise KeyError("boom")

    crashing = tuple(
        KnownFile(k.pattern, k.ecosystem, k.lockfile, explode) if k.pattern == "go.sum" else k for k in KNOWN_FILES
    )
    monkeypatch.setattr(lockfiles, "KNOWN_FILES", crashing)
    write(tmp_path, "go.sum", GO_SUM)
    write(tmp_path, "go.mod", "module m\n\nrequire github.com/a/b v1.0.0\n")
    extraction = extract_dependencies(tmp_path)
    assert [d.name for d in extraction.dependencies] == ["github.com/a/b"]
    assert [str(e) for e in extraction.errors] == ["go.sum: could not be parsed (KeyError: 'boom')"]


def test_missing_root_and_unknown_file(tmp_path: Path) -> None:
    extraction = extract_dependencies(tmp_path / "nope")
    assert extraction.dependencies == [] and extraction.files == []
    assert extraction.errors[0].message.startswith("cannot read the scan root")
    path = write(tmp_path, "notes.txt", "flask==3.0.0\n")
    assert parse_file(path, "notes.txt")[1][0].message == "not a recognised manifest or lockfile name"


def by_path(lines: dict[int, int], data: Any) -> dict[tuple[str, ...], int]:
    """The lines of a key-lines map (by container id) spelt out by key path ("" for an array's element)."""
    out: dict[tuple[str, ...], int] = {}
    stack: list[tuple[tuple[str, ...], Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            children: Any = value.items()
        else:
            children = (("", v) for v in value) if isinstance(value, list) else ()
        for key, child in children:
            if isinstance(child, dict | list):
                if id(child) in lines:
                    out[(*path, key)] = lines[id(child)]
                stack.append(((*path, key), child))
    return out


def test_json_key_lines_tracks_nesting_arrays_and_escapes() -> None:
    text = '{\n  "a": {\n    "b\\"q": [\n      {"c": {}},\n      {"d": []}\n    ],\n    "e": 1\n  },\n  "f": {}\n}\n'
    expected = {
        ("a",): 2,
        ("a", 'b"q'): 3,
        ("a", 'b"q', "", "c"): 4,
        ("a", 'b"q', "", "d"): 5,
        ("f",): 9,
    }
    data = json.loads(text)
    assert by_path(_key_lines_by_scanning(text, data, None), data) == expected  # the token scan
    assert by_path(_key_lines_by_pairing(text, data, None) or {}, data) == expected  # the fast pairing
    assert by_path(_key_lines_by_scanning(text, data, 1), data) == {("a",): 2, ("f",): 9}
    assert by_path(_key_lines_by_pairing(text, data, 1) or {}, data) == {("a",): 2, ("f",): 9}
    lines = json_key_lines(text, data)
    assert (lines.of(data["a"]['b"q'][1]["d"]), lines.of(data["f"]), lines.of(data["a"]["e"])) == (5, 9, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # escaped look-alikes
            '{"a\\\\": {"x": 1},\n "b": "\\": {",\n "c": ["x\\": [", {"d\\"e": {}}]}',
            {("a\\",): 1, ("c",): 3, ("c", "", 'd"e'): 3},
        ),
        ('{"k": ": {",\n "m": {}}', {("m",): 2}),  # a value that looks like a key ending
        ('{"dup": {"y": {}},\n "dup": {"x": {}}}', {("dup",): 2, ("dup", "x"): 2}),  # json.loads keeps the last
        (  # a duplicate whose kept (last) value has blanks before its colon: its own line, not the first one's
            '{"p": {"dup": {"v": 1},\n "o": {"v": 2},\n "dup" : {"v": 3}}}',
            {("p",): 1, ("p", "dup"): 3, ("p", "o"): 2},
        ),
        ('{"k":{"k":{}},"k2":[{"z":[]}]}', {("k",): 1, ("k", "k"): 1, ("k2",): 1, ("k2", "", "z"): 1}),  # compact
        (  # array elements found by their index, scalars counted
            '{"a": [1, "x", {"b": {}}, [], {"c": []}],\n "d": {"e": [{},\n {"f": {}}]}}',
            {("a",): 1, ("a", "", "b"): 1, ("a", "", "c"): 1, ("d",): 2, ("d", "e"): 2, ("d", "e", "", "f"): 3},
        ),
    ],
)
def test_json_key_lines_fast_path_agrees_with_the_scan(text: str, expected: dict[tuple[str, ...], int]) -> None:
    data = json.loads(text)
    assert by_path(_key_lines_by_scanning(text, data, None), data) == expected
    assert by_path(json_key_lines(text, data)._lines, data) == expected


def test_json_key_lines_memory_does_not_grow_with_depth() -> None:
    """20,000 keys cost the same at 60 levels as at 1: a key's line is kept by its value, not by its key path
    (which cost depth × keys: a 3 MB lock nested 900 deep took 2.2 GB)."""

    def peak(depth: int) -> int:
        text = '{"a":' * depth + "{" + ",".join(f'"{i:x}":[]' for i in range(20_000)) + "}" + "}" * depth
        data = json.loads(text)
        tracemalloc.start()
        try:
            lines = json_key_lines(text, data)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            del lines

    shallow, deep = peak(1), peak(60)
    assert deep < 1.3 * shallow, (shallow, deep)


def test_the_depth_check_holds_one_iterator_a_level_however_wide() -> None:
    """A wide document of 500,000 empty arrays: the depth check holds one iterator per open level, not one entry per
    pending container (that doubled the peak memory of a wide lock next to json.loads)."""
    data = json.loads("[" + ",".join(["[]"] * 500_000) + "]")
    tracemalloc.start()
    try:
        assert _deeper_than(data, 64) is False
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000, peak
    nested = json.loads("[" * 64 + "]" * 64)
    assert (_deeper_than(nested, 64), _deeper_than(nested, 63)) == (False, True)
    assert (_deeper_than([[], {"a": 1}], 2), _deeper_than([[], {"a": {}}], 2)) == (False, True)
