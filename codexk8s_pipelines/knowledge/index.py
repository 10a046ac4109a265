"""Index a checkout's documentation into `doc_chunks`, incrementally.

Why incremental: embedding is the expensive part (~40 chunks/s on two cores) while a nightly run usually sees
a handful of edited sections. A chunk whose content hash and model are already stored anywhere reuses that
vector (also when the section moved within the file or to another file); rows that did not change are not
rewritten at all; chunks of deleted files and the tail of shortened files are removed. Only the final write
is one transaction, so readers never see a half-indexed repository and the model runs outside it.
"""

from __future__ import annotations

import codecs
import logging
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from psycopg import sql

from ..agents.git_workspace import local_git_env
from ..file_lines import undecodable
from ..store import PlatformStore
from .chunking import Chunk, chunk_document
from .db import EMBEDDING_DIM, WORD_WEIGHTS, as_array, check_dimension, connect
from .embedding import Embedder, default_embedder, resolve_model
from .files import MAX_FILE_BYTES, Skipped, discover
from .search import BM25_B, BM25_K1

log = logging.getLogger(__name__)

DEFAULT_GLOBS: tuple[str, ...] = ("**/*.md", "**/*.rst")
DEFAULT_LANGUAGE = "english"  # PostgreSQL text search configuration: stemming and stop words of the docs' language
# The platform's locales (codexk8s.yaml `locale`) and the text search configuration of their docs.
LOCALE_LANGUAGES = {"en": "english", "ru": "russian"}
EMBED_BATCH = 64  # texts per progress step: small enough for a lively bar, big enough for full model batches

__all__ = ["DEFAULT_GLOBS", "IndexStats", "index_repository"]


@dataclass
class IndexStats:
    """What one indexing pass did. `reused` counts current chunks whose vector was not computed in this pass;
    `index_bytes` is the size of `doc_chunks` with its indexes (all repositories) after the pass."""

    repository: str
    files: int
    chunks: int
    embedded: int
    reused: int
    deleted: int
    seconds: float
    index_bytes: int
    binary_skipped: int = 0  # files named like docs that hold binary data (NUL bytes)
    oversized: tuple[str, ...] = ()  # docs over MAX_FILE_BYTES, not indexed: worth splitting
    links_skipped: int = 0  # links out of the checkout, dangling or looping
    folders_skipped: tuple[str, ...] = ()  # "folder: why" of folders not read (nested too deep, unlistable)
    names_skipped: tuple[str, ...] = ()  # files whose name is not UTF-8 (bytes escaped), not indexed
    unreadable: tuple[str, ...] = ()  # files found, then not readable
    not_utf8: tuple[str, ...] = ()  # files not valid UTF-8, indexed with U+FFFD for the bad bytes
    files_noted: tuple[tuple[str, str], ...] = ()  # (path, why) of each of the files above, by path


@dataclass(frozen=True)
class _Stored:
    content_hash: str
    model: str
    heading_path: tuple[str, ...]
    start_line: int
    end_line: int


def _git_head(root: Path) -> str | None:
    """The checkout's HEAD commit, so that every chunk says which version of the docs it was read from."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--verify", "-q", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            env=local_git_env(os.environ),  # an inherited GIT_DIR would stamp the chunks with another's commit
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else None


def read_chunks(root: Path, globs: Sequence[str], skipped: Skipped | None = None) -> dict[str, list[Chunk]]:
    """Every matching document of the checkout, chunked, by relative path (what was left out, in `skipped`)."""
    skipped = skipped if skipped is not None else Skipped()
    documents: dict[str, list[Chunk]] = {}
    for rel, file in discover(root, globs, skipped):
        try:
            data = file.read_bytes()
        except OSError as exc:
            log.warning("skipping %s: %s", rel, exc)
            skipped.unreadable.append((rel, exc.strerror or type(exc).__name__))
            continue
        documents[rel] = chunk_document(_decode(rel, data, skipped).replace("\x00", ""), rel)  # no NUL in PG text
    return documents


def _decode(rel: str, data: bytes, skipped: Skipped) -> str:
    """The document's text, without a leading byte-order mark (it hid the first heading and the front matter).

    A file that is not UTF-8 is indexed with U+FFFD for its bad bytes, and noted: one stray Latin-1 byte in a
    UTF-8 file (the usual case) must not take the whole document out of search, nor delete its indexed chunks;
    a file in another encoding (cp1251) comes out mostly U+FFFD, which the note asks its owner to re-encode."""
    body = data.removeprefix(codecs.BOM_UTF8)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, _ = undecodable(exc)
        log.warning("%s is not UTF-8 (first at line %d): indexed with replacement characters", rel, line)
        skipped.not_utf8.append((rel, line))
        return body.decode("utf-8", errors="replace")


def _same(stored: _Stored | None, chunk: Chunk, model: str) -> bool:
    return (
        stored is not None
        and stored.content_hash == chunk.content_hash
        and stored.model == model
        and stored.heading_path == chunk.heading_path
        and stored.start_line == chunk.start_line
        and stored.end_line == chunk.end_line
    )  # the hash covers heading path and text: equal hash and heading path, equal text


def _validate(conn_url: str, repository: str, root: Path, globs: Sequence[str]) -> Path:
    if not conn_url:
        raise ValueError("conn_url: no platform database URL (set CODEXK8S_DATABASE_URL)")
    if not repository or not repository.strip():
        raise ValueError("repository: give the repository's name (owner/name, or a local checkout's directory name)")
    if isinstance(globs, str) or not globs:
        raise ValueError(f"globs: give a sequence of glob patterns such as {DEFAULT_GLOBS}, not {globs!r}")
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root: {root} is not a directory")
    return root


def index_repository(
    conn_url: str,
    repository: str,
    root: Path,
    *,
    commit: str | None = None,
    globs: Sequence[str] = DEFAULT_GLOBS,
    embedder: Embedder | None = None,
    progress: Callable[[int, int], None] | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> IndexStats:
    """Bring the repository's docs index in line with the checkout at `root`; migrates the database first.

    `commit` defaults to the checkout's git HEAD (None outside git). `progress(done, total)` is called as the
    chunks that need a new vector are embedded (once with total 0 when there are none). Without `embedder`,
    the default model is loaded only if something needs embedding. `language` is the PostgreSQL text search
    configuration of the docs (english, russian, simple, ...): it stems and drops stop words for the words
    ranking, and queries of this repository are parsed in it.
    """
    started = time.perf_counter()
    root = _validate(conn_url, repository, root, globs)
    if embedder is not None:
        check_dimension(embedder.dim)
    # The model's name is known without loading it: a pass with nothing new to embed never loads the model.
    model = embedder.model_name if embedder is not None else resolve_model()[1]
    commit = commit or _git_head(root)

    PlatformStore(conn_url).migrate()
    skipped = Skipped()
    documents = read_chunks(root, globs, skipped)
    for rel in skipped.oversized:
        log.warning("not indexed: %s is larger than %d bytes", rel, MAX_FILE_BYTES)
    for rel in skipped.bad_names:
        log.warning("not indexed: the name of %s is not UTF-8", rel)
    for folder in skipped.folders_noted():
        log.warning("not indexed: %s", folder)

    with connect(conn_url, autocommit=True) as conn:
        language = _text_config(conn, language)
        # Two passes over one repository at once would both embed and both write; the second simply waits.
        # The session lock goes with the connection, whatever happens below.
        conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (f"doc_chunks:{repository}",))
        stored = _stored_rows(conn, repository)
        to_write = [
            c
            for path, chunks in documents.items()
            for c in chunks
            if not _same(stored.get((path, c.chunk_index)), c, model)
        ]
        vectors = _stored_vectors(conn, model, {c.content_hash for c in to_write})
        fresh = _embed_missing(embedder or _LazyDefault(), to_write, vectors, progress)
        deleted = _write(conn, repository, documents, to_write, vectors, stored, model, commit, language)
        size = conn.execute("SELECT pg_total_relation_size('doc_chunks')").fetchone()

    total = sum(len(chunks) for chunks in documents.values())
    fresh_rows = sum(1 for c in to_write if c.content_hash in fresh)
    return IndexStats(
        repository=repository,
        files=len(documents),
        chunks=total,
        embedded=len(fresh),
        reused=total - fresh_rows,
        deleted=deleted,
        seconds=round(time.perf_counter() - started, 3),
        index_bytes=int(size[0]) if size else 0,
        binary_skipped=len(skipped.binary),
        oversized=tuple(skipped.oversized),
        links_skipped=len(skipped.links),
        folders_skipped=skipped.folders_noted(),
        names_skipped=tuple(sorted(skipped.bad_names)),
        unreadable=tuple(rel for rel, _ in skipped.unreadable),
        not_utf8=tuple(rel for rel, _ in skipped.not_utf8),
        files_noted=skipped.files_noted(),
    )


def _text_config(conn: Any, language: str) -> str:
    """The text search configuration named `language`, or a ValueError listing the installed ones."""
    if not isinstance(language, str) or not language.strip():
        raise ValueError("language: give a PostgreSQL text search configuration such as 'english'")
    row = conn.execute("SELECT cfgname FROM pg_ts_config WHERE cfgname = lower(%s)", (language.strip(),)).fetchone()
    if row is None:
        names = [r[0] for r in conn.execute("SELECT cfgname FROM pg_ts_config ORDER BY 1").fetchall()]
        raise ValueError(f"language: {language!r} is not a text search configuration; one of {', '.join(names)}")
    return str(row[0])


def _stored_rows(conn: Any, repository: str) -> dict[tuple[str, int], _Stored]:
    rows = conn.execute(
        "SELECT path, chunk_index, content_hash, model, heading_path, start_line, end_line"
        " FROM doc_chunks WHERE repository = %s",
        (repository,),
    ).fetchall()
    return {(r[0], r[1]): _Stored(r[2], r[3], tuple(r[4] or ()), r[5], r[6]) for r in rows}


def _stored_vectors(conn: Any, model: str, hashes: set[str]) -> dict[str, np.ndarray]:
    """Vectors already computed by this model for these contents, in any repository or position."""
    if not hashes:
        return {}
    rows = conn.execute(
        "SELECT DISTINCT ON (content_hash) content_hash, embedding FROM doc_chunks"
        " WHERE model = %s AND content_hash = ANY(%s)",
        (model, sorted(hashes)),
    ).fetchall()
    return {r[0]: as_array(r[1]) for r in rows}


class _LazyDefault:
    """The default embedder, loaded on the first `encode` (the model costs seconds and ~100 MB to load)."""

    def encode(self, texts: list[str]) -> np.ndarray:
        embedder = default_embedder()
        check_dimension(embedder.dim)
        return embedder.encode(texts)


def _embed_missing(
    embedder: Embedder | _LazyDefault,
    chunks: list[Chunk],
    vectors: dict[str, np.ndarray],
    progress: Callable[[int, int], None] | None,
) -> set[str]:
    """Embed each distinct content not in `vectors` once, adding it there; return the hashes embedded now."""
    pending: dict[str, str] = {}
    for c in chunks:
        if c.content_hash not in vectors:
            pending.setdefault(c.content_hash, c.embedding_text)
    # By length, as sentence-transformers orders one encode() call: a batch of similar lengths pads little. The
    # bare encoder sorts all the texts at once; batches of EMBED_BATCH texts in file order padded each to its
    # longest text (0.84 × the bare encoder's throughput, issue 19).
    items = sorted(pending.items(), key=lambda item: len(item[1]))
    if progress:
        progress(0, len(items))
    for start in range(0, len(items), EMBED_BATCH):
        batch = items[start : start + EMBED_BATCH]
        encoded = np.asarray(embedder.encode([text for _, text in batch]), dtype=np.float32)
        if encoded.shape != (len(batch), EMBEDDING_DIM):
            raise ValueError(f"embedder returned shape {encoded.shape} for {len(batch)} texts; expected 384 columns")
        for (content_hash, _), vector in zip(batch, encoded, strict=True):
            vectors[content_hash] = vector
        if progress:
            progress(min(start + len(batch), len(items)), len(items))
    return set(pending)


def _write(
    conn: Any,
    repository: str,
    documents: dict[str, list[Chunk]],
    to_write: list[Chunk],
    vectors: dict[str, np.ndarray],
    stored: dict[tuple[str, int], _Stored],
    model: str,
    commit: str | None,
    language: str,
) -> int:
    """Apply the pass in one transaction; return how many stored chunks were removed. The repository's term
    statistics (BM25's document frequencies and lengths) are rewritten in it when anything changed, so a
    search never ranks the new chunks with the old statistics."""
    gone = [(path, index) for path, index in stored if path not in documents or index >= len(documents[path])]
    with conn.transaction(), conn.cursor() as cur:
        if gone:
            cur.execute(
                "DELETE FROM doc_chunks d USING unnest(%s::text[], %s::int[]) AS g(path, chunk_index)"
                " WHERE d.repository = %s AND d.path = g.path AND d.chunk_index = g.chunk_index",
                ([p for p, _ in gone], [i for _, i in gone], repository),
            )
        relanguage = cur.execute(
            "UPDATE doc_chunks SET text_config = %s::regconfig WHERE repository = %s AND text_config <> %s::regconfig",
            (language, repository, language),
        ).rowcount
        if to_write:
            cur.executemany(
                "INSERT INTO doc_chunks (repository, path, chunk_index, heading_path, heading_text, start_line,"
                " end_line, content, content_hash, commit, model, embedding, text_config)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::regconfig)"
                " ON CONFLICT (repository, path, chunk_index) DO UPDATE SET heading_path = EXCLUDED.heading_path,"
                " heading_text = EXCLUDED.heading_text, start_line = EXCLUDED.start_line,"
                " end_line = EXCLUDED.end_line, content = EXCLUDED.content, content_hash = EXCLUDED.content_hash,"
                " commit = EXCLUDED.commit, model = EXCLUDED.model, embedding = EXCLUDED.embedding,"
                " text_config = EXCLUDED.text_config, updated_at = now()",
                [
                    (
                        repository,
                        c.path,
                        c.chunk_index,
                        list(c.heading_path),
                        c.heading_text,
                        c.start_line,
                        c.end_line,
                        c.text,
                        c.content_hash,
                        commit,
                        model,
                        vectors[c.content_hash],
                        language,
                    )
                    for c in to_write
                ],
            )
        if commit:
            # Unchanged chunks were read from this commit too.
            cur.execute(
                "UPDATE doc_chunks SET commit = %s WHERE repository = %s AND commit IS DISTINCT FROM %s",
                (commit, repository, commit),
            )
        counted = cur.execute("SELECT 1 FROM doc_corpus WHERE repository = %s", (repository,)).fetchone()
        if gone or to_write or relanguage or counted is None:
            refresh_term_stats(cur, repository)
    return len(gone)


def refresh_term_stats(cur: Any, repository: str) -> None:
    """Rewrite a repository's BM25 statistics from its chunks (migration 0007): per lexeme, in how many chunks
    it occurs; per repository, the chunk count, the total length and the text search language; its impact-ordered
    postings (migration 0010: each chunk's BM25 weight of each of its lexemes, without the idf); and each chunk's
    weights as one sparse vector (migration 0017)."""
    cur.execute("DELETE FROM doc_terms WHERE repository = %s", (repository,))
    cur.execute("DELETE FROM doc_corpus WHERE repository = %s", (repository,))
    cur.execute(
        "INSERT INTO doc_terms (repository, lexeme, chunks) SELECT %s, u.lexeme, count(*)"
        " FROM doc_chunks AS d, unnest(d.tsv) AS u WHERE d.repository = %s GROUP BY u.lexeme",
        (repository, repository),
    )
    cur.execute(
        "INSERT INTO doc_corpus (repository, text_config, chunks, lexemes)"
        " SELECT repository, min(text_config::text)::regconfig, count(*), sum(length(tsv)) FROM doc_chunks"
        " WHERE repository = %s GROUP BY repository",
        (repository,),
    )
    # The postings' weights depend on the repository's average length: all of them are rewritten (migration 0010).
    cur.execute("DELETE FROM doc_postings WHERE repository = %s", (repository,))
    cur.execute(
        sql.SQL(
            "INSERT INTO doc_postings (lexeme, repository, impact, id, path) SELECT u.lexeme, d.repository,"
            " (cardinality(u.positions) * {k1p1} / (cardinality(u.positions) + {k1} * (1 - {b} + {b} * length(d.tsv)"
            " / greatest(c.lexemes::float8 / greatest(c.chunks, 1), 1))))::real, d.id, d.path"
            " FROM doc_chunks AS d JOIN doc_corpus AS c USING (repository), unnest(d.tsv) AS u"
            " WHERE d.repository = %s"
        ).format(k1=sql.Literal(BM25_K1), k1p1=sql.Literal(BM25_K1 + 1), b=sql.Literal(BM25_B)),
        (repository,),
    )
    # The same weights as one sparse vector a chunk, which search scores its candidates with (migration 0017). The
    # repository's new lexemes are numbered first, only those: an identity spends a number on every row it is offered,
    # taken or not, and numbers end at pgvector's largest sparse dimension.
    cur.execute(
        "INSERT INTO doc_lexemes (lexeme) SELECT DISTINCT p.lexeme FROM doc_postings AS p WHERE p.repository = %s"
        " AND NOT EXISTS (SELECT 1 FROM doc_lexemes AS l WHERE l.lexeme = p.lexeme) ORDER BY 1"
        " ON CONFLICT (lexeme) DO NOTHING",
        (repository,),
    )
    cur.execute(
        "DELETE FROM doc_chunk_weights AS w USING doc_chunks AS d WHERE d.id = w.id AND d.repository = %s",
        (repository,),
    )
    cur.execute(
        "INSERT INTO doc_chunk_weights (id, weights) SELECT id, " + WORD_WEIGHTS + " FROM (SELECT p.id, l.dim,"
        " p.impact AS weight FROM doc_postings AS p JOIN doc_lexemes AS l USING (lexeme) WHERE p.repository = %s) AS w"
        " GROUP BY id",
        (repository,),
    )
