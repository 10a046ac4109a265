"""Write scope enforcement on a run's diff."""

from __future__ import annotations

import pytest

from codexk8s_pipelines.domain.stages import WriteScope
from codexk8s_pipelines.domain.write_scope import (
    DEFAULT_SELF_IMPROVE_ALLOW,
    MODE_EXECUTABLE,
    MODE_FILE,
    MODE_GITLINK,
    MODE_SYMLINK,
    TreeChange,
    escaping_symlinks,
    scope_violations,
    tree_violations,
)

CODE = ["src/app.py", "Dockerfile", "deploy/values.yaml", ".github/workflows/ci.yml", "README.txt"]
DOCS = ["README.md", "docs/design/ARCH.MD", "notes/changelog.markdown", "a/b/c/d.Md"]


@pytest.mark.parametrize("path", DOCS)
def test_markdown_only_allows_markdown(path: str) -> None:
    assert scope_violations(WriteScope.MARKDOWN_ONLY, [path]) == []


@pytest.mark.parametrize("path", [*CODE, "docs/readme.md.bak", "docs/md", "notes.mdx"])
def test_markdown_only_refuses_everything_else(path: str) -> None:
    assert scope_violations(WriteScope.MARKDOWN_ONLY, [path]) == [path]


def test_markdown_only_lists_violations_sorted_and_unique() -> None:
    changed = ["src/b.py", "docs/a.md", "src/a.py", "src/b.py", "", "   "]
    assert scope_violations(WriteScope.MARKDOWN_ONLY, changed) == ["src/a.py", "src/b.py"]


def test_any_file_allows_all() -> None:
    assert scope_violations(WriteScope.ANY_FILE, CODE + DOCS) == []


def test_none_refuses_all() -> None:
    assert scope_violations(WriteScope.NONE, CODE + DOCS) == sorted(CODE + DOCS)


def test_empty_diff_is_always_allowed() -> None:
    for scope in WriteScope:
        assert scope_violations(scope, []) == []


def test_default_self_improve_allow_list() -> None:
    assert DEFAULT_SELF_IMPROVE_ALLOW == (
        "codexk8s_pipelines/agents/prompts/*",
        "codexk8s_pipelines/agents/catalog.yaml",
        "prompts/*",
        "AGENTS.md",
    )


@pytest.mark.parametrize(
    "path",
    [
        "codexk8s_pipelines/agents/prompts/dev-work.md.j2",
        "codexk8s_pipelines/agents/prompts/ru/role-dev.txt",
        "codexk8s_pipelines/agents/catalog.yaml",
        "prompts/review.txt",
        "AGENTS.md",
        "docs/anything.md",
    ],
)
def test_prompts_and_docs_allows_prompts_and_markdown(path: str) -> None:
    assert scope_violations(WriteScope.PROMPTS_AND_DOCS, [path]) == []


@pytest.mark.parametrize(
    "path",
    [
        "codexk8s_pipelines/agents/runner.py",
        "codexk8s_pipelines/agents/catalog.yml",
        "codexk8s_pipelines/domain/stages.py",
        "other/prompts/x.txt",
        "Dockerfile",
    ],
)
def test_prompts_and_docs_refuses_code(path: str) -> None:
    assert scope_violations(WriteScope.PROMPTS_AND_DOCS, [path]) == [path]


def test_prompts_and_docs_with_custom_allow_list() -> None:
    allow = ("templates/*.tmpl",)
    assert scope_violations(WriteScope.PROMPTS_AND_DOCS, ["templates/a.tmpl", "x.md"], allow=allow) == []
    assert scope_violations(WriteScope.PROMPTS_AND_DOCS, ["prompts/a.txt"], allow=allow) == ["prompts/a.txt"]


@pytest.mark.parametrize(
    ("scope", "changed", "expected"),
    [
        pytest.param(WriteScope.MARKDOWN_ONLY, ["./docs/a.md"], [], id="md-allowed"),
        pytest.param(WriteScope.MARKDOWN_ONLY, ["./src/a.py"], ["src/a.py"], id="code-refused"),
        pytest.param(WriteScope.PROMPTS_AND_DOCS, ["./prompts/a.txt", "./AGENTS.md"], [], id="prompts-allowed"),
        pytest.param(WriteScope.NONE, ["./docs/a.md", "docs/a.md"], ["docs/a.md"], id="same-path-once"),
        pytest.param(WriteScope.NONE, ["  ./src/a.py  "], ["src/a.py"], id="whitespace-then-prefix"),
        # the "./" prefix is removed once; a dotted path keeps its own name
        pytest.param(
            WriteScope.MARKDOWN_ONLY, ["./.github/workflows/ci.yml"], [".github/workflows/ci.yml"], id="dot-dir"
        ),
        pytest.param(WriteScope.NONE, ["./.env"], [".env"], id="dotfile"),
        pytest.param(WriteScope.MARKDOWN_ONLY, [".gitignore"], [".gitignore"], id="dotfile-no-prefix"),
    ],
)
def test_dot_slash_prefix(scope: WriteScope, changed: list[str], expected: list[str]) -> None:
    assert scope_violations(scope, changed) == expected


# ------------------------------------------------------------------------------------------------ by content


def _file(path: str, content: bytes = b"# ok\n", mode: str = MODE_FILE) -> TreeChange:
    return TreeChange(path, mode=mode, size=len(content), content=content)


def _new(path: str) -> TreeChange:
    return TreeChange(path, mode=MODE_FILE, size=5, content=b"# ok\n", added=True)


def _rules(scope: WriteScope, *changes: TreeChange, **kwargs: int) -> dict[str, str]:
    return {v.path: v.rule for v in tree_violations(scope, changes, **kwargs)}  # type: ignore[arg-type]


def test_markdown_only_allows_regular_utf8_markdown_and_rest_files_and_their_deletion() -> None:
    changes = [_file("docs/a.md"), _file("b.rst", "é ü\n".encode()), TreeChange("old.md", deleted=True)]
    assert tree_violations(WriteScope.MARKDOWN_ONLY, changes) == []


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        pytest.param(_file("docs/p.md", b"/etc/passwd", MODE_SYMLINK), "a symlink (only regular files", id="symlink"),
        pytest.param(TreeChange("docs/s.md", mode=MODE_GITLINK), "a gitlink (submodule pointer)", id="gitlink"),
        pytest.param(_file("docs/x.md", b"#!/bin/sh\n", MODE_EXECUTABLE), "an executable file", id="executable"),
        pytest.param(_file("docs/b.md", b"a\0b"), "binary content (NUL bytes)", id="binary"),
        pytest.param(_file("docs/l.md", b"caf\xe9"), "not valid UTF-8 text", id="latin1"),
        pytest.param(TreeChange("docs/big.md", mode=MODE_FILE, size=2_000_000), "2000000 bytes, over", id="big"),
        # A name the change adds (an existing file keeps its name: see the names tests below).
        pytest.param(_new("docs/a\nb.md"), "control character", id="newline"),
        pytest.param(_new("docs/a\x1b[31m.md"), "control character", id="escape"),
        pytest.param(_file("docs/x.md "), "starts or ends with whitespace", id="trailing-space"),
        pytest.param(_file(" docs/x.md"), "starts or ends with whitespace", id="leading-space"),
        pytest.param(_file("docs/x.py"), "not a Markdown or reST file name (markdown-only)", id="code"),
        pytest.param(TreeChange("src/app.py", deleted=True), "not a Markdown or reST file name", id="code-deleted"),
    ],
)
def test_markdown_only_refuses_by_content_and_names_path_and_rule(change: TreeChange, rule: str) -> None:
    (violation,) = tree_violations(WriteScope.MARKDOWN_ONLY, [change])
    assert violation.path == change.path and rule in violation.rule
    assert str(violation).startswith(repr(change.path) + ": ")


def test_the_size_cap_is_a_parameter() -> None:
    change = _file("docs/a.md", b"x" * 2000)
    assert _rules(WriteScope.MARKDOWN_ONLY, change, max_text_bytes=1000) == {
        "docs/a.md": "2000 bytes, over the 1000-byte cap for text files"
    }
    assert _rules(WriteScope.MARKDOWN_ONLY, change, max_text_bytes=2000) == {}


def test_any_file_refuses_gitlinks_and_symlinks_out_of_the_repository_only() -> None:
    changes = [
        _file("bin/tool", b"\x7fELF\0", MODE_EXECUTABLE),
        _file("link-in", b"src/app.py", MODE_SYMLINK),
        _file("src/up", b"../README.md", MODE_SYMLINK),
        _file("src/out", b"../../etc/passwd", MODE_SYMLINK),
        _file("abs", b"/etc/passwd", MODE_SYMLINK),
        TreeChange("vendor/lib", mode=MODE_GITLINK),
        TreeChange("gone", deleted=True),
    ]
    assert _rules(WriteScope.ANY_FILE, *changes) == {
        "abs": "a symlink pointing outside the repository",
        "src/out": "a symlink pointing outside the repository",
        "vendor/lib": "a gitlink (submodule pointer) is never pushed",
    }


def test_prompts_and_docs_applies_the_content_rules_to_allow_listed_files() -> None:
    ok = _file("prompts/review.txt", b"Review it.\n")
    link = _file("prompts/evil.txt", b"/etc/shadow", MODE_SYMLINK)
    assert _rules(WriteScope.PROMPTS_AND_DOCS, ok, link) == {
        "prompts/evil.txt": "a symlink (only regular files are allowed)"
    }


def test_none_refuses_every_change() -> None:
    assert _rules(WriteScope.NONE, _file("a.md"), TreeChange("b", deleted=True)) == {
        "a.md": "this run may change nothing",
        "b": "this run may change nothing",
    }


# ------------------------------------------------------------------------------------------------ symlinks, followed


def _link(path: str, target: str) -> TreeChange:
    return _file(path, target.encode(), MODE_SYMLINK)


def test_any_file_follows_a_symlink_through_the_trees_other_symlinks() -> None:
    """Each alone stays inside: `docs/loop -> ..` is the root, `up -> docs/loop/..` reads as `docs`. Followed as a
    file system does, `up` is the root's parent."""
    changes = [_link("docs/loop", ".."), _link("up", "docs/loop/.."), _link("fine", "docs/loop/src/app.py")]
    assert _rules(WriteScope.ANY_FILE, *changes) == {"up": "a symlink pointing outside the repository"}


def test_an_unchanged_symlink_that_now_leaves_through_a_changed_one_is_named() -> None:
    before = {"up": b"docs/loop/..", "docs/loop": b"docs"}
    after = {"up": b"docs/loop/..", "docs/loop": b".."}
    violations = tree_violations(WriteScope.ANY_FILE, [_link("docs/loop", "..")], tree_symlinks=after,
                                 start_symlinks=before)  # fmt: skip
    assert [str(v) for v in violations] == ["'up': a symlink pointing outside the repository (not before this change)"]


def test_a_link_made_a_folder_redirects_the_links_through_it() -> None:
    """Two runs: the first pushes `L -> a/b` and `x -> L/../..` (inside: `a/b/../..` is the root); the second makes
    `L` a real folder, changing no link, and `x` is now `L/../..`, the checkout's parent."""
    before = {"L": b"a/b", "x": b"L/../.."}
    after = {"x": b"L/../.."}
    violations = tree_violations(WriteScope.ANY_FILE, [_file("L/readme.md"), TreeChange("L", deleted=True)],
                                 tree_symlinks=after, start_symlinks=before)  # fmt: skip
    assert [str(v) for v in violations] == ["'x': a symlink pointing outside the repository (not before this change)"]


def test_a_symlink_that_left_the_same_way_before_is_not_this_changes_doing() -> None:
    """A repository may hold an absolute link already; a commit that adds an unrelated link is not refused for it."""
    before = {"etc-config": b"/etc/app.conf"}
    after = {"etc-config": b"/etc/app.conf", "docs/guide": b"../README.md"}
    assert tree_violations(WriteScope.ANY_FILE, [_link("docs/guide", "../README.md")], tree_symlinks=after,
                           start_symlinks=before) == []  # fmt: skip
    # Retargeted, the same link is this change's: it is judged again.
    after["etc-config"] = b"/etc/shadow"
    violations = tree_violations(WriteScope.ANY_FILE, [_link("etc-config", "/etc/shadow")], tree_symlinks=after,
                                 start_symlinks=before)  # fmt: skip
    assert [str(v) for v in violations] == ["'etc-config': a symlink pointing outside the repository"]


def test_a_new_symlink_through_an_old_one_that_leaves_is_refused() -> None:
    before = {"config": b"/etc"}
    after = {"config": b"/etc", "app.conf": b"config/app.conf"}
    assert _rules(WriteScope.ANY_FILE, _link("app.conf", "config/app.conf")) == {}  # the changed links alone
    violations = tree_violations(WriteScope.ANY_FILE, [_link("app.conf", "config/app.conf")], tree_symlinks=after,
                                 start_symlinks=before)  # fmt: skip
    assert [str(v) for v in violations] == ["'app.conf': a symlink pointing outside the repository"]


def test_a_symlink_loop_and_an_unreadable_target_are_refused() -> None:
    loop = [_link("a", "b"), _link("b", "a/x"), _link("self", "self")]
    assert _rules(WriteScope.ANY_FILE, *loop) == {
        "a": "a symlink loop",
        "b": "a symlink loop",
        "self": "a symlink loop",
    }
    huge = TreeChange("big-link", mode=MODE_SYMLINK, size=5_000_000)
    assert _rules(WriteScope.ANY_FILE, huge) == {"big-link": "a symlink whose target could not be read"}


def test_escaping_symlinks_counts_a_step_above_the_root_even_if_it_comes_back() -> None:
    links = {"x": b"../repo/README.md", "y": b"a/../b", "z": b"./docs//./a.md"}
    assert escaping_symlinks(links) == {"x": "a symlink pointing outside the repository"}


# ------------------------------------------------------------------------------------------------ names, every scope


@pytest.mark.parametrize("scope", [WriteScope.ANY_FILE, WriteScope.MARKDOWN_ONLY, WriteScope.PROMPTS_AND_DOCS])
@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("docs/invoice\u202egpj.md", "an invisible formatting character (U+202E)"),
        ("docs/\u200bREADME.md", "an invisible formatting character (U+200B)"),
        ("docs/ma\u00adin.md", "an invisible formatting character (U+00AD)"),
        ("docs/a\x85b.md", "a control character (U+0085)"),
        ("docs/a\u2028b.md", "a line separator character (U+2028)"),
        ("docs/notes-\udcff.md", "the name is not valid UTF-8"),
    ],
)
def test_new_names_that_hide_or_are_not_utf8_are_refused_in_every_scope(
    scope: WriteScope, name: str, rule: str
) -> None:
    (violation,) = tree_violations(scope, [_new(name)])
    assert violation.path == name and rule in violation.rule


def test_names_of_real_languages_and_existing_files_are_kept() -> None:
    """ZWNJ and ZWJ are part of Persian and Indic words and of emoji; an existing file keeps whatever name it has."""
    names = ["docs/می\u200cخواهم.md", "docs/क्\u200dष.md", "docs/👩\u200d💻.md", "docs/café ü 文档.md"]
    for scope in (WriteScope.ANY_FILE, WriteScope.MARKDOWN_ONLY):
        assert tree_violations(scope, [_new(n) for n in names]) == []
    existing = [_file("docs/legacy-\udce9.md"), TreeChange("old\u202e.txt", deleted=True), _file("src/naïve.py")]
    assert tree_violations(WriteScope.ANY_FILE, existing) == []
    assert tree_violations(WriteScope.MARKDOWN_ONLY, existing[:1]) == []
