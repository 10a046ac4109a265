"""Write scope enforcement on a run's diff."""

from __future__ import annotations

import pytest

from codexk8s_pipelines.domain.stages import WriteScope
from codexk8s_pipelines.domain.write_scope import DEFAULT_SELF_IMPROVE_ALLOW, scope_violations

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
