"""Change impact: which documentation sections a code change concerns, each with the reasons why.

Two signals. A section that names a changed file (its path, a path suffix such as `store/migrations.py`, a
relative link that resolves to it, or its Python module `codexk8s_pipelines.store.migrations`) almost surely
describes it: such mentions always rank above sections that are only similar in meaning to the changed lines.
Similarity (the embedded hunk text of each changed file against the index) finds the sections that describe
the behaviour without naming the file. A chunk found by several changed files collects all their reasons.
Sections of files that the change itself edits are left out: the author already has them open.
"""

from __future__ import annotations

import posixpath
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import psycopg
from psycopg import sql

from .chunking import estimate_tokens
from .db import check_dimension, connect, missing_index, vector_version
from .diffs import MAX_CHANGED_FILES, FileChange, parse_unified_diff
from .embedding import Embedder, query_embedder
from .search import (
    MAX_K,
    candidate_pool,
    fetch_rows,
    filters,
    prepare_vector_scan,
    use_exact_scan,
    vector_ranking,
)

MIN_SIMILARITY = 0.25  # below this, MiniLM "similarity" between code and prose is noise
MAX_SIMILARITY_CHANGES = 50  # the most-changed files are embedded; mentions are looked up for every file
QUERY_TOKENS = 200
MAX_REASONS = 6
# What one call may ask, so that one agent's call (the MCP tool `docs_change_impact`) cannot take the server down.
# A path of 2,000 folders made 2,000 `/`-suffixes of 4 M characters in all, each sent as a LIKE pattern: 100 such
# paths (0.4 MB of arguments) ran 101 s and grew the MCP server from 129 MB to 1.7 GB (its pod's limit is 1 GiB).
# A doc names a file by its full path or by a tail of it: a short one (`store/migrations.py`), or a long one in a
# relative link from a README higher up a deep tree (a Java layout: 9 parts, review 39); tails of more than
# MAX_TAIL_PARTS parts (what safe_files walks at most) are not looked for, nor is a name longer than MAX_TERM_CHARS.
# A change of more than MAX_CHANGED_FILES files (also from a diff) is refused: it concerns the whole documentation.
# The lookup of mentions must end within MENTION_SECONDS, in PostgreSQL and in Python, or the call fails saying so
# (the MCP server ends any of its statements after as long: mcp/limits.STATEMENT_TIMEOUT_MS).
MAX_TAIL_PARTS = 32
MAX_TERM_CHARS = 512
MENTION_SECONDS = 10.0


@dataclass(frozen=True)
class ImpactHit:
    repository: str
    path: str
    heading_path: tuple[str, ...]
    start_line: int
    end_line: int
    score: float
    reasons: tuple[str, ...]


@dataclass
class _Evidence:
    mentions: dict[str, float] = field(default_factory=dict)  # changed path -> strength in (0.5, 1]
    similar: dict[str, float] = field(default_factory=dict)  # changed path -> cosine similarity

    @property
    def score(self) -> float:
        # Every mention is worth more than any similarity (≤ 1): a named file outranks a paraphrase.
        return sum(1.0 + s for s in self.mentions.values()) + max(self.similar.values(), default=0.0)

    def reasons(self) -> tuple[str, ...]:
        out = [f"mentions {p}" for p, _ in sorted(self.mentions.items(), key=lambda x: (-x[1], x[0]))]
        out += [
            f"similar to the change in {p} ({s:.2f})"
            for p, s in sorted(self.similar.items(), key=lambda x: (-x[1], x[0]))
        ]
        return tuple(out[:MAX_REASONS])


# -- how a doc may name a file ------------------------------------------------------------------------------------
def _module_names(path: str) -> list[tuple[str, float]]:
    """Dotted Python module names of a `.py` path: the full one (without a leading `src`) 1.0, its suffixes of
    two or more parts 0.75, a one-part name only when it is a distinctive identifier (`local_stack`, not
    `app`, which is also an English word)."""
    if not path.endswith(".py"):
        return []
    parts = path.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if parts and parts[0] == "src":
        parts = parts[1:]
    if not parts:
        return []
    names = [
        (".".join(parts[i:]), 1.0 if i == 0 else 0.75) for i in range(len(parts) - 1) if _looked_for(i, len(parts))
    ]
    last = parts[-1]
    if "_" in last.strip("_") and len(last) >= 6:
        names.append((last, 1.0 if len(parts) == 1 else 0.6))
    return names


def _looked_for(start: int, parts: int) -> bool:
    """Whether the name made of parts `start:` of a path of `parts` parts is looked for: the whole, or a tail of at
    most MAX_TAIL_PARTS parts (see MAX_TAIL_PARTS)."""
    return start == 0 or parts - start <= MAX_TAIL_PARTS


def mention_terms(path: str) -> list[tuple[str, float]]:
    """(text, strength) a doc may use to name `path`: its `/`-suffixes (the full path 1.0, the basename 0.5,
    proportionally between) and its module names, each at most MAX_TERM_CHARS long, tails of at most
    MAX_TAIL_PARTS parts. Longest first, so the strongest match is usually first."""
    parts = [p for p in path.split("/") if p]
    terms: dict[str, float] = {}
    for i in range(len(parts)):
        if _looked_for(i, len(parts)):
            terms["/".join(parts[i:])] = 1.0 if i == 0 else 0.5 + 0.5 * (len(parts) - i - 1) / max(len(parts) - 1, 1)
    for name, strength in _module_names(path):
        terms[name] = max(terms.get(name, 0.0), strength)
    return sorted(((t, v) for t, v in terms.items() if len(t) <= MAX_TERM_CHARS), key=lambda x: (-len(x[0]), x[0]))


def anchors(terms: Sequence[str]) -> set[str]:
    """The terms (of one path) that hold no shorter one: a text that holds any of them holds one of these, so they
    alone decide which chunks can mention the file (mostly its basename: one short pattern, not one a suffix)."""
    kept: list[str] = []
    for term in sorted(set(terms), key=len):
        if not any(shorter in term for shorter in kept):
            kept.append(term)
    return set(kept)


_RELATIVE_PREFIX = re.compile(r"(?:\.\.?/)*\Z")


def _term_regex(term: str) -> re.Pattern[str]:
    # Not inside a longer path or identifier; `./` and `../` in front (relative links) are fine.
    return re.compile(r"(?:(?<=\./)|(?<![\w./-]))" + re.escape(term) + r"(?![\w/-])")


def mention_strength(
    doc_path: str, content: str, changed: str, terms: Sequence[tuple[str, float]] | None = None
) -> float:
    """How surely `content` (of the doc at `doc_path`) names the changed file: 0 when it does not, 1 for its
    full path, its full module name, or a path relative to the doc's directory that resolves to it. `terms`: the
    file's `mention_terms`, when the caller has them already."""
    doc_dir = posixpath.dirname(doc_path)
    best = 0.0
    for term, strength in mention_terms(changed) if terms is None else terms:
        if term not in content:
            continue
        for m in _term_regex(term).finditer(content):
            prefix = _RELATIVE_PREFIX.search(content, 0, m.start())
            written = (prefix.group(0) if prefix else "") + term
            if posixpath.normpath(posixpath.join(doc_dir, written)) == changed:
                return 1.0
            best = max(best, strength)
        if best == 1.0:
            return best
    return best


# -- inputs -----------------------------------------------------------------------------------------------------
def _changes(diff: str | None, files: Sequence[str] | None) -> list[FileChange]:
    if (diff is None) == (files is None):
        raise ValueError("give exactly one of diff= (a unified diff) or files= (the changed paths)")
    if diff is not None:
        if not isinstance(diff, str):
            raise ValueError(f"diff: expected the unified diff as text, not {type(diff).__name__}")
        changes = parse_unified_diff(diff)
        if not changes:
            raise ValueError("diff: no changed file found; expected a unified diff such as `git diff` prints")
        if len(changes) > MAX_CHANGED_FILES:
            raise ValueError(
                f"diff: changes {len(changes):,} files, at most {MAX_CHANGED_FILES} can be ranked; pass the changed"
                " files that matter as files="
            )
        return changes
    if isinstance(files, str | bytes):
        raise ValueError("files: expected a sequence of paths, not one string (split it on commas first)")
    paths = [str(f).strip().removeprefix("./") for f in files or ()]
    paths = [p for p in dict.fromkeys(paths) if p]
    if not paths:
        raise ValueError("files: no path given; expected the changed files' paths relative to the repository")
    if len(paths) > MAX_CHANGED_FILES:
        raise ValueError(f"files: {len(paths):,} paths, at most {MAX_CHANGED_FILES}")
    return [FileChange(path=p) for p in paths]


def _query_text(change: FileChange) -> str:
    """What a changed file's change says, as one text the model can read: path, hunk contexts, changed lines,
    cut to about QUERY_TOKENS estimated tokens (the model would ignore the rest anyway)."""
    words = re.sub(r"[/_.\-]+", " ", change.path)
    parts = [change.path, words, *change.contexts]
    seen: set[str] = set()
    for line in change.added + change.removed:
        text = line.strip()
        if text and text not in seen:
            seen.add(text)
            parts.append(text)
    out, used = [], 0
    for part in parts:
        cost = estimate_tokens(part)
        if used + cost > QUERY_TOKENS and out:
            break
        out.append(part)
        used += cost
    return "\n".join(out)


def change_impact(
    conn_url: str,
    repository: str,
    *,
    diff: str | None = None,
    files: Sequence[str] | None = None,
    k: int = 10,
    embedder: Embedder | None = None,
) -> list[ImpactHit]:
    """The top-k doc chunks of `repository` that a change concerns, best first, each with its reasons."""
    if not conn_url:
        raise ValueError("conn_url: no platform database URL (set CODEXK8S_DATABASE_URL)")
    if not repository or not repository.strip():
        raise ValueError("repository: give the repository whose docs to rank (owner/name or the checkout's name)")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValueError(f"k: the number of hits must be an integer from 1 to {MAX_K}, not {k!r}")
    changes = _changes(diff, files)
    if embedder is not None:
        check_dimension(embedder.dim)
    changed_paths = {c.path for c in changes} | {c.old_path for c in changes if c.old_path}
    embedded = sorted(changes, key=lambda c: (-c.changed_lines, c.path))[:MAX_SIMILARITY_CHANGES]

    evidence: dict[int, _Evidence] = {}
    with connect(conn_url) as conn:  # first: a database without the index fails before the model loads
        version = vector_version(conn, conn_url)
        embedder = embedder or query_embedder()
        check_dimension(embedder.dim)
        vectors = np.asarray(embedder.encode([_query_text(c) for c in embedded]), dtype=np.float32)
        try:
            with conn.transaction():
                timeout = sql.Literal(max(1, int(MENTION_SECONDS * 1000)))  # 0 would be no timeout
                conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(timeout))
                _collect_mentions(conn, repository, changes, changed_paths, evidence)
                pool = candidate_pool(k)
                prepare_vector_scan(conn, pool, version)
                where, params = filters(repository, None)
                exact = use_exact_scan(conn, repository, None)
                for change, vector in zip(embedded, vectors, strict=True):
                    for chunk_id, similarity in vector_ranking(conn, vector, where, params, pool, exact=exact):
                        if similarity >= MIN_SIMILARITY:
                            evidence.setdefault(chunk_id, _Evidence()).similar[change.path] = round(similarity, 4)
                rows = fetch_rows(conn, list(evidence))
        except psycopg.Error as exc:
            raise (missing_index(exc) or exc) from exc
    ranked = sorted(
        (i for i in evidence if i in rows and rows[i].path not in changed_paths),
        key=lambda i: (-evidence[i].score, rows[i].path, rows[i].start_line),
    )[:k]
    return [
        ImpactHit(
            repository=rows[i].repository,
            path=rows[i].path,
            heading_path=rows[i].heading_path,
            start_line=rows[i].start_line,
            end_line=rows[i].end_line,
            score=round(evidence[i].score, 4),
            reasons=evidence[i].reasons(),
        )
        for i in ranked
    ]


class MentionsTookTooLong(TimeoutError):
    """Looking for the changed files' names in the docs passed MENTION_SECONDS."""

    def __init__(self, files: int) -> None:
        super().__init__(
            f"looking for mentions of {files} changed files took longer than {MENTION_SECONDS:g} s; pass fewer files"
        )


def _collect_mentions(
    conn: object, repository: str, changes: list[FileChange], changed_paths: set[str], evidence: dict[int, _Evidence]
) -> None:
    """One pass over the repository's chunks that hold an anchor of a changed file's names (`anchors`); exact
    matching in Python, for the files whose anchor the chunk holds. Both within MENTION_SECONDS (the statement's
    timeout is set by the caller's transaction)."""
    deadline = time.monotonic() + MENTION_SECONDS
    terms = {c.path: mention_terms(c.path) for c in changes}
    by_anchor: dict[str, list[FileChange]] = {}
    for change in changes:
        for anchor in anchors([t for t, _ in terms[change.path]]):
            by_anchor.setdefault(anchor, []).append(change)
    if not by_anchor:
        return
    patterns = ["%" + t.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for t in by_anchor]
    try:
        rows = conn.execute(  # type: ignore[attr-defined]
            "SELECT id, path, content FROM doc_chunks WHERE repository = %s AND content LIKE ANY(%s)",
            (repository, patterns),
        ).fetchall()
    except psycopg.errors.QueryCanceled:
        raise MentionsTookTooLong(len(changes)) from None
    for chunk_id, doc_path, content in rows:
        if time.monotonic() > deadline:
            raise MentionsTookTooLong(len(changes))
        if doc_path in changed_paths:
            continue
        named = {c.path: c for anchor, held in by_anchor.items() if anchor in content for c in held}
        for change in named.values():
            strength = mention_strength(doc_path, content, change.path, terms[change.path])
            if strength > 0:
                evidence.setdefault(int(chunk_id), _Evidence()).mentions[change.path] = strength
