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
    Violation,
    escaping_symlinks,
    is_lfs_pointer,
    lfs_violations,
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
    assert escaping_symlinks(links, paths=["a/notes.md"]) == {"x": "a symlink pointing outside the repository"}


# ------------------------------------------------------------------------------------------------ symlinks, on the tree

NOT_A_FOLDER = "is not a folder of the repository (missing, a file or a submodule)"


@pytest.mark.parametrize(
    ("links", "paths", "through"),
    [
        # `missing/..` fails on a file system; read as text it is `docs`, and `x` as the repository's `etc/passwd`.
        pytest.param({"docs/x": b"missing/../../etc/passwd"}, ["docs/readme.md"], "docs/missing/..", id="missing"),
        pytest.param({"a": b"nonexistent/.."}, [], "nonexistent/..", id="missing-at-root"),
        pytest.param({"x": b"README.md/../docs"}, ["README.md", "docs/a.md"], "README.md/..", id="a-file"),
        pytest.param({"x": b"vendor/lib/../README.md"}, ["vendor/lib", "README.md"], "vendor/lib/..", id="gitlink"),
        pytest.param({"x": b"gen/out/../../README.md"}, ["README.md"], "gen/out/..", id="missing-twice"),
        # Through a dangling link: `d` leads to `gone`, which the tree does not have.
        pytest.param({"d": b"gone", "x": b"d/../README.md"}, ["README.md"], "gone/..", id="dangling-link"),
    ],
)
def test_a_link_does_not_go_up_out_of_a_part_the_tree_does_not_hold_as_a_folder(
    links: dict[str, bytes], paths: list[str], through: str
) -> None:
    """A file system does not resolve `missing/..`; on a checkout, `missing` is whatever is there (a build's own
    symlink, a submodule's content), and `..` climbs from where that leads, not back to where the text says."""
    (path,) = [p for p in links if b"/.." in links[p]]
    assert escaping_symlinks(links, paths=paths) == {
        path: f"a symlink through {through!r}, where {through[:-3]!r} {NOT_A_FOLDER}: where it leads depends on what"
        " a checkout has there"
    }


def test_links_through_folders_the_tree_has_and_dangling_links_into_missing_ones_are_let_through() -> None:
    links = {
        "docs/x": b"sub/../../README.md",  # docs/sub is a folder: `..` takes it back
        "docs/api": b"../build/html/index.html",  # a build's output, not in the tree: dangling, and stays inside
        "docs/README": b"../readme.MD",  # a name in another case: dangling here, the file itself on a Mac
        "up": b"docs/x",
    }
    assert escaping_symlinks(links, paths=["README.md", "readme.md", "docs/sub/notes.md"]) == {}


def test_a_link_through_a_name_that_a_case_insensitive_file_system_takes_for_a_link_is_followed_through_it() -> None:
    """On a Mac (git sets core.ignorecase) `a/b/L` is the link `a/b/l`: `a/b/x` reads ../.. of the checkout, the
    owner's home for a checkout in ~/src/repo. Read as case-sensitive, `L` is missing and `x` stays inside."""
    links = {"a/b/l": b"../..", "a/b/x": b"L/../../.ssh/id_rsa"}
    assert escaping_symlinks(links) == {
        "a/b/x": "a symlink pointing outside the repository (on a case-insensitive file system, where 'a/b/L' is the"
        " symlink 'a/b/l')"
    }


@pytest.mark.parametrize(
    ("old", "name"),
    [("config", "CONFIG"), ("config", "Config"), ("caf\u00e9", "cafe\u0301"), ("caf\u00e9", "CAF\u00c9")],
)
def test_a_new_link_through_an_old_one_that_leaves_is_refused_in_any_case_or_unicode_form(old: str, name: str) -> None:
    """`config -> /etc` was there before; `app.conf -> CONFIG/passwd` is /etc/passwd on a Mac (`é` composed or not
    is one name there too)."""
    before = {old: b"/etc"}
    after = {old: b"/etc", "app.conf": f"{name}/passwd".encode()}
    violations = tree_violations(WriteScope.ANY_FILE, [_link("app.conf", f"{name}/passwd")], tree_symlinks=after,
                                 start_symlinks=before)  # fmt: skip
    assert [str(v) for v in violations] == [
        f"'app.conf': a symlink pointing outside the repository (on a case-insensitive file system, where {name!r} is"
        f" the symlink {old!r})"
    ]


def test_a_link_through_names_that_only_case_tells_apart_is_refused() -> None:
    """`l` a link and `L/` a folder: a case-insensitive checkout holds one of them, whichever git writes last."""
    links = {"l": b"..", "x": b"L/f.md"}
    assert escaping_symlinks(links, paths=["L/f.md"]) == {
        "l": "a symlink pointing outside the repository",
        "x": "a symlink through 'L', which a case-insensitive file system takes for any of 'L', 'l': which one a"
        " checkout holds depends on the order git writes them",
    }


@pytest.mark.parametrize("target", [".git/config", ".GIT/hooks/pre-commit", "docs/../.git", "git~1/config", ".git."])
def test_a_link_into_the_checkouts_git_folder_is_refused(target: str) -> None:
    """No tree holds `.git`, every checkout does: its config (a remote's credentials), its hooks (run by git)."""
    (rule,) = escaping_symlinks({"x": target.encode()}, paths=["docs/a.md"]).values()
    assert rule.startswith("a symlink into ") and "git's own folder in a checkout" in rule


def test_a_link_through_a_link_whose_target_could_not_be_read_names_that_link() -> None:
    links = {"big": None, "x": b"big/file"}
    assert escaping_symlinks(links) == {
        "big": "a symlink whose target could not be read",
        "x": "a symlink through 'big', a symlink whose target could not be read",
    }


def test_a_link_refused_for_another_reason_before_is_judged_again() -> None:
    """`x` went round a loop before; `b -> .` breaks it, and `x` now leaves: not the way it was refused before."""
    before = {"a": b"b", "b": b"a", "x": b"a/../.."}
    after = {**before, "b": b"."}
    violations = tree_violations(WriteScope.ANY_FILE, [_link("b", ".")], tree_symlinks=after, start_symlinks=before)
    assert [str(v) for v in violations] == ["'x': a symlink pointing outside the repository (not before this change)"]


def test_an_old_link_refused_the_same_way_before_does_not_hold_up_an_unrelated_change() -> None:
    before = {"old": b"gen/../README.md"}
    files = ["README.md"]
    after = {**before, "docs/guide": b"../README.md"}
    assert tree_violations(WriteScope.ANY_FILE, [_link("docs/guide", "../README.md")], tree_symlinks=after,
                           start_symlinks=before, tree_paths=files, start_paths=files) == []  # fmt: skip
    # A link `gen -> .` makes `old` the checkout's parent's README.md.
    after = {**before, "gen": b"."}
    violations = tree_violations(WriteScope.ANY_FILE, [_link("gen", ".")], tree_symlinks=after,
                                 start_symlinks=before, tree_paths=files, start_paths=files)  # fmt: skip
    assert [str(v) for v in violations] == ["'old': a symlink pointing outside the repository (not before this change)"]


@pytest.mark.parametrize(
    ("scope", "link", "new_file"),
    [(WriteScope.MARKDOWN_ONLY, "L.md", "L.md/f.md"), (WriteScope.PROMPTS_AND_DOCS, "prompts/L", "prompts/L/f.txt")],
)
def test_a_link_with_an_allowed_name_made_a_folder_cannot_send_an_older_link_out(
    scope: WriteScope, link: str, new_file: str
) -> None:
    """A first run (any-file) pushes `L.md -> a/b/c` and `x -> L.md/../..` (inside: `a`); a markdown-only run may
    delete `L.md` and write `L.md/f.md`, names it allows, and `x` becomes `L.md/../..`: the checkout's parent."""
    up = "../.." + ("/.." if "/" in link else "")
    before = {link: b"../a/b/c" if "/" in link else b"a/b/c", "x": f"{link}/{up}".encode()}
    after = {"x": before["x"]}
    changes = [TreeChange(link, deleted=True, old_mode=MODE_SYMLINK), _new(new_file)]
    violations = tree_violations(scope, changes, tree_symlinks=after, start_symlinks=before,
                                 tree_paths=[new_file, "a/b/c/keep"], start_paths=["a/b/c/keep"])  # fmt: skip
    assert [str(v) for v in violations] == ["'x': a symlink pointing outside the repository (not before this change)"]
    # Deleted only, `L.md` leaves `x` dangling, going up out of a part the tree does not have: a later run that writes
    # `L.md/f.md`, files only, would send it out unseen (no link is listed for a change that touches none).
    violations = tree_violations(scope, changes[:1], tree_symlinks=after, start_symlinks=before,
                                 tree_paths=["a/b/c/keep"], start_paths=["a/b/c/keep"])  # fmt: skip
    assert [(v.path, v.rule.endswith("(not before this change)"), f"{link!r} {NOT_A_FOLDER}" in v.rule)
            for v in violations] == [("x", True, True)]  # fmt: skip


def test_a_change_refused_for_its_own_rule_and_for_where_it_leads_is_named_once() -> None:
    link = TreeChange("evil\u202e.lnk", mode=MODE_SYMLINK, size=11, content=b"/etc/passwd", added=True)
    assert [str(v) for v in tree_violations(WriteScope.ANY_FILE, [link])] == [
        f"{link.path!r}: the name holds an invisible formatting character (U+202E)"
    ]


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


POINTER = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 2048\n"


@pytest.mark.parametrize(
    ("content", "pointer"),
    [
        (POINTER, True),
        (b"", True),  # git-lfs leaves an empty file as it is
        (POINTER.replace(b"size 2048", b"size 2048\next-0-foo sha256:" + b"b" * 64), True),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 300, False),
        (POINTER.replace(b"sha256:", b"sha1:"), False),
        (POINTER.replace(b"size 2048\n", b""), False),
        (POINTER[:-1], False),  # no final newline
        (POINTER + b"x" * 1024, False),  # over the pointer's size
        (b"oid sha256:" + b"a" * 64 + b"\nversion https://git-lfs.github.com/spec/v1\nsize 1\n", False),
    ],
)
def test_an_lfs_pointer_is_told_from_other_content(content: bytes, pointer: bool) -> None:
    change = TreeChange("logo.png", mode=MODE_FILE, size=len(content), content=content)
    assert is_lfs_pointer(change) is pointer


def test_a_git_lfs_file_must_stay_a_pointer_and_may_be_deleted() -> None:
    """A file the attributes store through LFS: a new pointer passes, raw content does not; other files are free."""
    binary = b"\x89PNG" + b"\0" * 100
    changes = [
        TreeChange("logo.png", mode=MODE_FILE, size=len(binary), content=binary),
        TreeChange("icon.png", mode=MODE_FILE, size=len(POINTER), content=POINTER),
        TreeChange("old.png", deleted=True),
        TreeChange("huge.png", mode=MODE_FILE, size=50_000_000, content=None),
        TreeChange("src/app.py", mode=MODE_FILE, size=len(binary), content=binary),
    ]
    found = lfs_violations(changes, ["logo.png", "icon.png", "old.png", "huge.png"])
    assert [v.path for v in found] == ["huge.png", "logo.png"]
    assert all(isinstance(v, Violation) and "not an LFS pointer" in v.rule for v in found)
