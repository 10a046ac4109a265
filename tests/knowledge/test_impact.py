"""Change impact over the indexed fixture docs with the real model: docs that name a changed file come first
with "mentions …", docs that describe the changed behaviour follow with "similar to the change in …"."""

from __future__ import annotations

import time

import pytest

from codexk8s_pipelines.knowledge import impact
from codexk8s_pipelines.knowledge.diffs import MAX_CHANGED_FILES
from codexk8s_pipelines.knowledge.embedding import Embedder, HashingEmbedder
from codexk8s_pipelines.knowledge.impact import ImpactHit, MentionsTookTooLong, change_impact

REFUNDS_DIFF = """\
diff --git a/src/payments/refunds.py b/src/payments/refunds.py
index 1111111..2222222 100644
--- a/src/payments/refunds.py
+++ b/src/payments/refunds.py
@@ -1,2 +1,4 @@ def refund(order):
 def refund(order):
-    return order.total
+    # Partial refunds: the customer gets the money back minus the provider's fees.
+    fees = order.provider_fees
+    return order.total - fees
"""

CACHE_DIFF = """\
diff --git a/src/catalog/product_cache.py b/src/catalog/product_cache.py
--- a/src/catalog/product_cache.py
+++ b/src/catalog/product_cache.py
@@ -3,3 +3,3 @@ class ProductCache:
-    TTL_SECONDS = 600  # product pages expire from the Redis cache after ten minutes
+    TTL_SECONDS = 300  # product pages expire from the Redis cache after five minutes
"""


def test_the_doc_naming_the_changed_file_ranks_first(indexed_url: str, embedder: Embedder) -> None:
    hits = change_impact(indexed_url, "acme/shop", diff=REFUNDS_DIFF, k=5, embedder=embedder)
    assert hits and isinstance(hits[0], ImpactHit)
    top = hits[0]
    assert (top.repository, top.path, top.heading_path) == ("acme/shop", "docs/payments.md", ("Payments", "Refunds"))
    assert top.reasons[0] == "mentions src/payments/refunds.py"
    assert any(r.startswith("similar to the change in src/payments/refunds.py (0.") for r in top.reasons)
    assert (top.start_line, top.end_line) == (5, 9)
    rest = hits[1:]
    assert all(not any(r.startswith("mentions") for r in h.reasons) for h in rest)
    assert all(h.score < top.score for h in rest)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len({(h.path, h.start_line) for h in hits}) == len(hits), "deduplicated"


def test_a_list_of_files_finds_the_mention_too(indexed_url: str, embedder: Embedder) -> None:
    hits = change_impact(
        indexed_url, "acme/shop", files=["./src/payments/refunds.py", "src/unknown.py"], k=3, embedder=embedder
    )
    assert hits[0].path == "docs/payments.md" and hits[0].reasons[0] == "mentions src/payments/refunds.py"


def test_a_change_no_doc_names_finds_the_docs_describing_it(indexed_url: str, embedder: Embedder) -> None:
    hits = change_impact(indexed_url, "acme/shop", diff=CACHE_DIFF, k=3, embedder=embedder)
    assert hits[0].path == "docs/architecture.rst" and hits[0].heading_path[-1] == "Cache layer"
    reason = hits[0].reasons[0]
    assert reason.startswith("similar to the change in src/catalog/product_cache.py (0.")
    assert 0.25 <= float(reason.rsplit("(", 1)[1].rstrip(")")) <= 1.0
    assert hits[0].score == pytest.approx(float(reason.rsplit("(", 1)[1].rstrip(")")), abs=0.01)


def test_the_changed_docs_themselves_are_left_out_and_other_repositories_never_show(
    indexed_url: str, embedder: Embedder
) -> None:
    doc_diff = REFUNDS_DIFF.replace("src/payments/refunds.py", "docs/payments.md")
    hits = change_impact(indexed_url, "acme/shop", diff=doc_diff, k=10, embedder=embedder)
    assert hits and all(h.path != "docs/payments.md" for h in hits)
    assert {h.repository for h in hits} == {"acme/shop"}
    assert change_impact(indexed_url, "nobody/nothing", files=["src/payments/refunds.py"], embedder=embedder) == []


def test_bad_arguments_are_clear_errors(indexed_url: str) -> None:
    hashing = HashingEmbedder()
    with pytest.raises(ValueError, match=r"exactly one of diff= .* or files="):
        change_impact(indexed_url, "acme/shop", embedder=hashing)
    with pytest.raises(ValueError, match=r"exactly one of diff= .* or files="):
        change_impact(indexed_url, "acme/shop", diff=REFUNDS_DIFF, files=["a.py"], embedder=hashing)
    with pytest.raises(ValueError, match=r"^files: expected a sequence"):
        change_impact(indexed_url, "acme/shop", files="src/app.py", embedder=hashing)
    with pytest.raises(ValueError, match=r"^files: no path"):
        change_impact(indexed_url, "acme/shop", files=[" ", ""], embedder=hashing)
    with pytest.raises(ValueError, match=r"^diff: no changed file"):
        change_impact(indexed_url, "acme/shop", diff="this is not a diff", embedder=hashing)
    with pytest.raises(ValueError, match=r"^diff: expected the unified diff as text"):
        change_impact(indexed_url, "acme/shop", diff=b"--- a\n+++ b\n", embedder=hashing)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^repository:"):
        change_impact(indexed_url, "", files=["a.py"], embedder=hashing)
    with pytest.raises(ValueError, match=r"^k:"):
        change_impact(indexed_url, "acme/shop", files=["a.py"], k=-1, embedder=hashing)


def test_a_change_of_deep_paths_is_answered_quickly(indexed_url: str) -> None:
    """An agent may send 500 paths (the MCP tool's limit) of any depth. 100 paths of 2,000 folders each (0.4 MB)
    took 101 s and 1.6 GB before the names looked for were bounded: the server's pod would have been killed."""
    files = ["docs/" + "a/" * 2000 + f"x{i}.py" for i in range(100)] + ["src/payments/refunds.py"]
    started = time.monotonic()
    hits = change_impact(indexed_url, "acme/shop", files=files, k=5, embedder=HashingEmbedder())
    assert time.monotonic() - started < impact.MENTION_SECONDS
    assert hits[0].path == "docs/payments.md" and hits[0].reasons[0] == "mentions src/payments/refunds.py"


def test_a_change_of_too_many_files_or_too_slow_a_lookup_is_a_clear_error(
    indexed_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashing = HashingEmbedder()
    many = "".join(f"--- a/f{i}.py\n+++ b/f{i}.py\n@@ -1 +1 @@\n-a\n+b\n" for i in range(MAX_CHANGED_FILES + 1))
    with pytest.raises(ValueError, match=rf"^diff: changes {MAX_CHANGED_FILES + 1} files, at most {MAX_CHANGED_FILES}"):
        change_impact(indexed_url, "acme/shop", diff=many, embedder=hashing)
    with pytest.raises(ValueError, match=rf"^files: {MAX_CHANGED_FILES + 1} paths, at most {MAX_CHANGED_FILES}"):
        change_impact(indexed_url, "acme/shop", files=[f"f{i}.py" for i in range(501)], embedder=hashing)
    monkeypatch.setattr(impact, "MENTION_SECONDS", 1e-9)
    with pytest.raises(MentionsTookTooLong, match=r"mentions of 1 changed files took longer than 1e-09 s"):
        change_impact(indexed_url, "acme/shop", files=["src/payments/refunds.py"], embedder=hashing)
