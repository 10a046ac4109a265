"""Connections to the platform database for the knowledge index, with pgvector's types registered.

Index and impact open one short connection per call, as everywhere in the platform: they run from the CLI,
Dagster ops and the MCP server, in many processes, and take seconds anyway. Search keeps its connections
(`search.Searcher` and its per-URL pool), because at its latency budget a new connection is a third of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, LiteralString, cast

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from ..store import PlatformStore
from ..store.database import connect_when_admitted

EMBEDDING_DIM = 384  # doc_chunks.embedding is vector(384): the dimension of all-MiniLM-L6-v2
# The expression the HNSW index is built on (migration 0004): the graph holds half-precision vectors. Search and
# tuning order by it, so PostgreSQL walks the graph. Made of constants only: SQL text psycopg may take as such
# (an f-string is not a LiteralString to the checker).
HNSW_ORDER = cast(LiteralString, f"embedding::halfvec({EMBEDDING_DIM}) <=> %s::halfvec({EMBEDDING_DIM})")
# The same distance from the stored half-precision copy (migration 0014), which the filters' covering indexes hold:
# an exact ranking under a filter reads it from an index instead of every chunk's row. The query vector is cast
# once, in a subquery: in a generic plan a cast of the parameter would be computed again for every row.
HALF_ORDER = cast(LiteralString, f"embedding_half <=> (SELECT %s::halfvec({EMBEDDING_DIM}))")
# The Hamming distance of the stored binary codes (migration 0015: one bit a dimension, its sign) to the query's code,
# which the filters' other covering indexes hold; the query's code is computed once, in a subquery, as above.
CODE_ORDER = cast(
    LiteralString, f"embedding_bits <~> (SELECT binary_quantize(%s::vector({EMBEDDING_DIM}))::bit({EMBEDDING_DIM}))"
)
# A chunk's BM25 weights, or a query's idf, as one sparse vector (migration 0017): one dimension a lexeme, numbered
# in doc_lexemes, from rows that have `dim` and `weight`. Every such vector has pgvector's largest sparse dimension, as
# inner_product needs equal dimensions; the REAL text of a weight reads back as the same REAL.
WORD_WEIGHTS = cast(
    LiteralString,
    "('{' || string_agg(dim::text || ':' || weight::real::text, ',' ORDER BY dim) || '}/1000000000')::sparsevec",
)


def hnsw_nearest(
    vector: np.ndarray, where: sql.Composable, params: Sequence[Any], limit: int
) -> tuple[sql.Composed, list[Any]]:
    """SELECT (id, dist): the graph walk's `limit` nearest chunks under `where`, with their full-precision cosine
    distance, in the walk's order (half precision; relaxed ordering may return them slightly out of order, so
    callers sort by `dist`). One statement for search, impact and tuning: tuning measures the walk searches make.
    The limit is a literal: in a generic plan an unknown LIMIT makes PostgreSQL sort instead of walk."""
    query = sql.SQL(
        "SELECT id, embedding <=> %s AS dist FROM doc_chunks WHERE {where} ORDER BY " + HNSW_ORDER + " LIMIT {limit}"
    ).format(where=where, limit=sql.Literal(limit))
    return query, [vector, *params, vector]


class KnowledgeError(RuntimeError):
    """The knowledge index cannot answer: no database URL, no index in the database, a model mismatch."""


def normalise_url(conn_url: str) -> str:
    """A libpq URL from the platform's database URL (which may carry a SQLAlchemy driver suffix)."""
    if not conn_url:
        raise ValueError("conn_url: no platform database URL (set CODEXK8S_DATABASE_URL)")
    return PlatformStore(conn_url).url


_NO_INDEX = (
    "this database has no docs index (table doc_chunks): run `codexk8s docs index PATH` or `codexk8s db migrate`"
)
_vector_versions: dict[str, tuple[int, int]] = {}


def connect(conn_url: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    """A connection with the `vector` type adapted to numpy; fails clearly when the index was never created. Waited
    for while the server has no free slot, as every store connection is (`connect_when_admitted`).

    pgvector's type lookup is one round trip per connection: kept connections (search) pay it once."""
    url = normalise_url(conn_url)
    conn = connect_when_admitted(lambda: psycopg.connect(url, autocommit=autocommit, connect_timeout=10))
    try:
        register_vector(conn)
        if not autocommit:
            conn.commit()
    except psycopg.ProgrammingError as exc:  # the vector type is unknown: migration 0002 never ran here
        conn.close()
        raise KnowledgeError(_NO_INDEX) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def missing_index(exc: BaseException) -> KnowledgeError | None:
    """The clear error for a query that failed because `doc_chunks` does not exist, else None."""
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return KnowledgeError(_NO_INDEX)
    return None


def vector_version(conn: psycopg.Connection[Any], conn_url: str) -> tuple[int, int]:
    """The installed pgvector's (major, minor), read once per database per process."""
    if conn_url not in _vector_versions:
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        major, minor = [*str(row[0]).split("."), "0"][:2] if row else ("0", "0")
        _vector_versions[conn_url] = (int(major), int(minor))
    return _vector_versions[conn_url]


def as_array(value: Any) -> np.ndarray:
    """A stored vector as float32 numpy: pgvector's psycopg adapter returns numpy arrays or `Vector` objects
    depending on the wire format."""
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)


def check_dimension(dim: int) -> None:
    if dim != EMBEDDING_DIM:
        raise KnowledgeError(
            f"the embedder makes {dim}-dimensional vectors; the docs index stores {EMBEDDING_DIM} (all-MiniLM-L6-v2)"
        )
