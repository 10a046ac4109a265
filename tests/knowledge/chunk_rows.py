"""Chunks written straight into `doc_chunks` (COPY), for tests that need many rows or chosen vectors without the
model: the columns the indexer fills, one row per chunk."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

ChunkRow = tuple[str, str, str, str, str]  # repository, path, heading text, content, embedding ('[x,y,…]')


def copy_chunks(url: str, rows: Iterable[ChunkRow]) -> None:
    """Each row as chunk 0 of its file, lines 1-1, hashed by its position, of model "m"."""
    with (
        psycopg.connect(url) as conn,
        conn.cursor().copy(
            "COPY doc_chunks (repository, path, chunk_index, heading_text, start_line, end_line, content, content_hash,"
            " model, embedding) FROM STDIN"
        ) as copy,
    ):
        for repository, path, heading, content, embedding in rows:
            copy.write_row((repository, path, 0, heading, 1, 1, content, f"h:{path}", "m", embedding))
