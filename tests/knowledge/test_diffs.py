"""Reading unified diffs and recognising how a doc names a file: pure functions behind change impact."""

from __future__ import annotations

from codexk8s_pipelines.knowledge.diffs import parse_unified_diff
from codexk8s_pipelines.knowledge.impact import (
    MAX_TAIL_PARTS,
    MAX_TERM_CHARS,
    anchors,
    mention_strength,
    mention_terms,
)

GIT_DIFF = """\
diff --git a/src/app.py b/src/app.py
index 1111111..2222222 100644
--- a/src/app.py
+++ b/src/app.py
@@ -10,4 +10,4 @@ def handler(request):
     keep = 1
--- this removed line starts with two dashes
+++ this added line starts with two pluses
     keep = 2
@@ -40 +40 @@ class Cart:
-    total = 0
+    total = sum(items)
diff --git a/docs/new.md b/docs/new.md
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/docs/new.md
@@ -0,0 +1,2 @@
+# New
+Text.
diff --git a/old/gone.py b/old/gone.py
deleted file mode 100644
index 4444444..0000000
--- a/old/gone.py
+++ /dev/null
@@ -1 +0,0 @@
-print("bye")
diff --git a/lib/before.py b/lib/after.py
similarity index 90%
rename from lib/before.py
rename to lib/after.py
diff --git a/img/logo.png b/img/logo.png
Binary files a/img/logo.png and b/img/logo.png differ
"""


def test_git_diff_files_statuses_and_changed_lines() -> None:
    changes = {c.path: c for c in parse_unified_diff(GIT_DIFF)}
    assert list(changes) == ["src/app.py", "docs/new.md", "old/gone.py", "lib/after.py", "img/logo.png"]
    app = changes["src/app.py"]
    assert app.status == "modified"
    assert app.contexts == ["def handler(request):", "class Cart:"]
    assert app.removed == ["-- this removed line starts with two dashes", "    total = 0"]
    assert app.added == ["++ this added line starts with two pluses", "    total = sum(items)"]
    assert changes["docs/new.md"].status == "added" and changes["docs/new.md"].added == ["# New", "Text."]
    assert changes["old/gone.py"].status == "deleted" and changes["old/gone.py"].removed == ['print("bye")']
    assert changes["lib/after.py"].status == "renamed" and changes["lib/after.py"].old_path == "lib/before.py"


def test_plain_diff_u_and_no_prefix_diffs() -> None:
    plain = (
        "--- config.yaml\t2026-01-01 10:00:00\n"
        "+++ config.yaml\t2026-01-02 10:00:00\n"
        "@@ -1 +1 @@\n"
        "-a: 1\n"
        "+a: 2\n"
        "--- other.txt\n"
        "+++ other.txt\n"
        "@@ -1 +1 @@\n"
        "-x\n"
        "+y\n"
    )
    changes = parse_unified_diff(plain)
    assert [(c.path, c.added, c.removed) for c in changes] == [
        ("config.yaml", ["a: 2"], ["a: 1"]),
        ("other.txt", ["y"], ["x"]),
    ]
    quoted = 'diff --git "a/docs/my file.md" "b/docs/my file.md"\n--- "a/docs/my file.md"\n+++ "b/docs/my file.md"\n'
    assert [c.path for c in parse_unified_diff(quoted)] == ["docs/my file.md"]


def test_text_that_is_not_a_diff_has_no_changes() -> None:
    assert parse_unified_diff("just some words\nnothing here\n") == []
    assert parse_unified_diff("") == []


def test_mention_terms_are_path_suffixes_and_module_names() -> None:
    terms = dict(mention_terms("codexk8s_pipelines/store/migrations.py"))
    assert terms["codexk8s_pipelines/store/migrations.py"] == 1.0
    assert terms["codexk8s_pipelines.store.migrations"] == 1.0
    assert terms["store.migrations"] == 0.75
    assert terms["migrations.py"] == 0.5
    assert "migrations" not in terms  # a bare English word is no evidence
    assert dict(mention_terms("src/app.py")) == {"src/app.py": 1.0, "app.py": 0.5}
    assert dict(mention_terms("pkg/local_stack.py"))["local_stack"] == 0.6


def test_a_deep_path_gives_a_bounded_set_of_names_yet_its_usual_names_are_kept() -> None:
    """An agent's call named paths of 2,000 folders: every `/`-suffix was a name to look for (4 M characters a
    path), and 100 such paths grew the MCP server by 1.6 GB. A doc names a file by its full path or a short tail."""
    deep = "docs/" + "a/" * 2000 + "x.py"
    terms = dict(mention_terms(deep))
    assert len(terms) <= 2 * (MAX_TAIL_PARTS + 1)
    assert all(len(t) <= MAX_TERM_CHARS for t in terms)
    assert terms["a/a/x.py"] < terms["a/a/a/a/a/a/a/x.py"] < 1.0 and terms["x.py"] == 0.5
    # a path of 40 parts: the full path and its tails of up to MAX_TAIL_PARTS parts
    path = "/".join(f"p{i}" for i in range(39)) + "/mod.py"
    terms = dict(mention_terms(path))
    assert terms[path] == 1.0 and terms[path.removesuffix(".py").replace("/", ".")] == 1.0
    longest = "/".join(path.split("/")[-MAX_TAIL_PARTS:])
    assert longest in terms and "p6/" + longest not in terms
    assert mention_strength("docs/a.md", f"see {path}", path) == 1.0
    assert mention_strength("docs/a.md", "see p37/p38/mod.py", path) == terms["p37/p38/mod.py"]
    # a deep tree's README links a file by a long tail, relative to itself (review 39: 9 parts were not looked for)
    java = "services/api/src/main/java/com/acme/billing/invoice/Invoice.java"
    link = "[Invoice](api/src/main/java/com/acme/billing/invoice/Invoice.java)"
    assert mention_strength("services/README.md", link, java) == 1.0
    assert 0.9 < mention_strength("docs/x.md", link, java) < 1.0
    # what decides which chunks can name the file: names holding no shorter one
    assert anchors([t for t, _ in mention_terms("codexk8s_pipelines/store/migrations.py")]) == {
        "migrations.py",
        "store.migrations",
    }


def test_mention_strength_respects_path_boundaries_and_relative_links() -> None:
    assert mention_strength("README.md", "See `src/app.py`.", "src/app.py") == 1.0
    assert mention_strength("docs/a.md", "[code](../src/app.py)", "src/app.py") == 1.0
    assert mention_strength("src/README.md", "see app.py", "src/app.py") == 1.0  # relative to the doc
    assert mention_strength("docs/a.md", "see app.py", "src/app.py") == 0.5
    assert mention_strength("docs/a.md", "see other/app.py", "src/app.py") == 0.0
    assert mention_strength("docs/a.md", "see src/app.pyc", "src/app.py") == 0.0
    assert mention_strength("docs/a.md", "see mysrc/app.py", "src/app.py") == 0.0
    assert mention_strength("docs/a.md", "call acme.store.migrations.apply()", "acme/store/migrations.py") == 1.0


def test_a_line_break_other_than_newline_inside_an_added_line_is_part_of_it() -> None:
    """git ends a diff line at "\\n" alone. An added line holding U+2028 was split in two: the rest ended the hunk
    early (the lines after it were lost) and could pass for a file header (a file the change never touched)."""
    diff = (
        "diff --git a/docs/a.md b/docs/a.md\n--- a/docs/a.md\n+++ b/docs/a.md\n@@ -1,1 +1,4 @@\n"
        " keep\n+first\u2028diff --git a/src/secret.py b/src/secret.py\n+second\n+third\x0cend\n"
    )
    changes = parse_unified_diff(diff)
    assert [(c.path, c.added) for c in changes] == [
        ("docs/a.md", ["first\u2028diff --git a/src/secret.py b/src/secret.py", "second", "third\x0cend"])
    ]
