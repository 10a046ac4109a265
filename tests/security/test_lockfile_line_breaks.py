"""Line breaks other than "\\n" in the line-based lockfiles (requirements, yarn, Go, Bundler, Hex, Gradle).

A user opens the line a finding names on GitHub, which ends a line at "\\n" alone. Python's `splitlines` also ends
one at U+2028, U+0085, a form feed and the like: one in a comment moved every finding after it one line down, and a
comment split there became an entry the tool never reads. Each format is read as its own tool splits it (pip at
every break `splitlines` knows; Java and yarn also at a lone "\\r"; Go, Bundler and Elixir at "\\n" only), numbered
as GitHub numbers it."""

from __future__ import annotations

from pathlib import Path

import pytest

from codexk8s_pipelines.file_lines import numbered_lines, text_lines
from codexk8s_pipelines.security.dependencies import GO, HEX, MAVEN, NPM, PYPI, RUBYGEMS
from codexk8s_pipelines.security.lockfiles import parse_file

BREAKS = ["\u2028", "\u0085", "\x0c", "\x1e", "\v"]  # all end a line for `splitlines`, none for GitHub


def found(tmp_path: Path, relative: str, text: str) -> list[tuple[str, str, str | None, int | None]]:
    path = tmp_path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    dependencies, errors = parse_file(path, relative)
    assert errors == [], errors
    return [(d.ecosystem, d.name, d.version, d.line) for d in dependencies]


def test_numbered_lines_number_as_github_and_split_as_the_tool() -> None:
    text = "a\n\u2028b\r\nc\rd\n"
    assert text_lines(text) == ["a", "\u2028b", "c\rd"]
    assert numbered_lines(text) == [(1, "a"), (2, "\u2028b"), (3, "c\rd")]
    assert numbered_lines(text, "cr") == [(1, "a"), (2, "\u2028b"), (3, "c"), (3, "d")]
    assert numbered_lines(text, "unicode") == [(1, "a"), (2, ""), (2, "b"), (3, "c"), (3, "d")]
    # "unicode" reads exactly what `splitlines` reads (pip's reading), blank pieces included; only the numbers differ
    for sample in [text, "a\u2028\nb", "a\r\r\nb\x0cc\n", "", "\n\n", "x", "a\r\n\r\nb\u2029"]:
        assert [line for _, line in numbered_lines(sample, "unicode")] == sample.splitlines()
        assert [n for n, _ in numbered_lines(sample, "unicode")] == [
            sample[:offset].count("\n") + 1 for offset in _offsets(sample)
        ]


def _offsets(text: str) -> list[int]:
    """Where each `splitlines` line of `text` starts."""
    offsets, at = [], 0
    for piece in text.splitlines(keepends=True):
        offsets.append(at)
        at += len(piece)
    return offsets


@pytest.mark.parametrize("brk", BREAKS)
def test_requirements_lines_are_githubs_and_pip_reads_both_sides_of_a_break(tmp_path: Path, brk: str) -> None:
    text = f"# pinned{brk}# by hand\nflask==0.12.2\nrequests==2.19.0{brk}urllib3==1.24.1\n"
    assert found(tmp_path, "requirements.txt", text) == [
        (PYPI, "flask", "0.12.2", 2),
        (PYPI, "requests", "2.19.0", 3),
        (PYPI, "urllib3", "1.24.1", 3),  # pip splits the line there (`splitlines`) and installs it: so it is found
    ]
    # pip reads what follows the break in a comment as a requirement and fails on it: so does the scan, at GitHub's
    # line
    bad = tmp_path / "b" / "requirements.txt"
    bad.parent.mkdir()
    bad.write_text(f"flask==0.12.2\n# pinned{brk}by hand\nrequests==2.19.0\n", encoding="utf-8")
    dependencies, errors = parse_file(bad, "b/requirements.txt")
    assert [(d.name, d.line) for d in dependencies] == [("flask", 1), ("requests", 3)]
    assert [(e.line, e.message.split(":")[0]) for e in errors] == [(2, "cannot parse requirement 'by hand'")]


@pytest.mark.parametrize("brk", BREAKS)
def test_go_mod_comment_with_a_break_neither_moves_lines_nor_adds_a_module(tmp_path: Path, brk: str) -> None:
    text = (
        "module example.com/app\n\ngo 1.21\n\n"
        f"// pinned until{brk}require golang.org/x/net v0.0.1\n"
        "require (\n\tgolang.org/x/text v0.3.7\n)\n"
    )
    # Go reads the whole comment as one: the module after the break is not required, and x/text is on line 7
    assert found(tmp_path, "go.mod", text) == [(GO, "golang.org/x/text", "v0.3.7", 7)]


def test_go_sum_lines(tmp_path: Path) -> None:
    text = (
        "golang.org/x/text v0.3.7 h1:olpwvP2KacW1ZWvsR7uQhoyTYvKAupfQrRGBFM352Gk=\n"
        "golang.org/x/text v0.3.7/go.mod h1:u+2+/6zg+i71rQMx5EYifcz6MCKuco9NR6JIITiCfzQ=\n"
        "golang.org/x/net v0.7.0 h1:rJrUqqhjsgNp7KqAIc25s9pZnjU7TUcSY7HcVZjdn1g=\u2028\n"
        "golang.org/x/crypto v0.1.0 h1:MDRAIl0xIo9Io2xV565hzXHw3zVseKrJKodhohM5CjU=\n"
    )
    lines = {name: line for _, name, _, line in found(tmp_path, "go.sum", text)}
    assert lines == {"golang.org/x/text": 1, "golang.org/x/net": 3, "golang.org/x/crypto": 4}


@pytest.mark.parametrize("brk", BREAKS)
def test_gemfile_lock_lines(tmp_path: Path, brk: str) -> None:
    text = (
        "GEM\n  remote: https://rubygems.org/\n  specs:\n"
        "    nokogiri (1.13.3)\n      racc (~> 1.4)\n"
        f"    racc (1.6.0){brk}\n"
        "    rack (2.2.3)\n\n"
        "PLATFORMS\n  ruby\n\nDEPENDENCIES\n  nokogiri\n  rack\n"
    )
    entries = found(tmp_path, "Gemfile.lock", text)
    assert {name: line for _, name, _, line in entries} == {"nokogiri": 4, "racc": 6, "rack": 7}
    assert {e for e, *_ in entries} == {RUBYGEMS}


@pytest.mark.parametrize("brk", BREAKS)
def test_mix_lock_lines(tmp_path: Path, brk: str) -> None:
    text = (
        "%{\n"
        f'  "jason": {{:hex, :jason, "1.2.2", "ba43e3f2709fd1aa1dce90aaabfd039d000469c05c56f0b8e31978e03fa39052",'
        f' [:mix], [], "hexpm", "18a228eb0e2b3e0a9ea8a5b0a7c0e4a1b1c0c0d4e8a8b4c9f5e2b5a9e7c1d3f"}},{brk}\n'
        '  "plug": {:hex, :plug, "1.13.6", "187beb6b67c6cec50503e940f0434ea4692b19384d47e5fdfd701e93cadb4cc2",'
        ' [:mix], [], "hexpm", "02b9c6b9955bce92c829f31d6284bf53c591ca63c4fb9ff81dfd0418667a34ff"},\n'
        "}\n"
    )
    assert found(tmp_path, "mix.lock", text) == [(HEX, "jason", "1.2.2", 2), (HEX, "plug", "1.13.6", 3)]


@pytest.mark.parametrize("brk", BREAKS)
def test_gradle_lockfile_lines(tmp_path: Path, brk: str) -> None:
    text = (
        f"# This is a Gradle generated file for dependency locking.{brk}Manual edits can break the build\n"
        "# This file is expected to be part of source control.\n"
        "com.fasterxml.jackson.core:jackson-databind:2.13.2=compileClasspath,runtimeClasspath\n"
        "org.apache.logging.log4j:log4j-core:2.14.1=runtimeClasspath\n"
        "empty=annotationProcessor\n"
    )
    assert found(tmp_path, "gradle.lockfile", text) == [
        (MAVEN, "com.fasterxml.jackson.core:jackson-databind", "2.13.2", 3),
        (MAVEN, "org.apache.logging.log4j:log4j-core", "2.14.1", 4),
    ]


def test_gradle_lockfile_with_lone_carriage_returns(tmp_path: Path) -> None:
    """Java ends a line at a lone "\\r" (old Mac files): the entries are read, all on GitHub's one line."""
    text = "# Gradle lock\rorg.apache.logging.log4j:log4j-core:2.14.1=runtimeClasspath\rempty=\r"
    assert found(tmp_path, "gradle.lockfile", text) == [(MAVEN, "org.apache.logging.log4j:log4j-core", "2.14.1", 1)]


@pytest.mark.parametrize("brk", BREAKS)
def test_yarn_lock_lines(tmp_path: Path, brk: str) -> None:
    text = (
        f"# THIS IS AN AUTOGENERATED FILE.{brk} DO NOT EDIT THIS FILE DIRECTLY.\n"
        "# yarn lockfile v1\n\n\n"
        'lodash@^4.17.15:\n  version "4.17.15"\n  resolved "https://registry.yarnpkg.com/lodash/-/lodash-4.17.15.tgz"\n\n'
        'minimist@^1.2.0:\n  version "1.2.0"\n'
    )
    assert found(tmp_path, "yarn.lock", text) == [(NPM, "lodash", "4.17.15", 5), (NPM, "minimist", "1.2.0", 9)]
