-- Filtered searches rank half-precision copies of the vectors, read from covering indexes (knowledge/search.py,
-- issue 19).
--
-- A filter that keeps at most EXACT_SCAN_ROWS chunks is ranked exactly. A path prefix across repositories had no
-- covering index: each of a folder's chunks was read from the table (bench/knowledge.py `real`, a folder of
-- 11,111 chunks of 100,000: 4,186 pages, p50 7.8 ms). A covering index with the full vectors reads 2,781 pages
-- (5.8 ms); with half-precision copies, 1,238 pages (3.4 ms). The ranking stays exact to full precision where it
-- counts: the pool nearest by half precision are re-ranked by their full-precision distance, as the HNSW graph's
-- candidates are (it holds half-precision vectors too).
--
-- The copy is a stored generated column (an index can include columns, not expressions): 768 bytes a chunk in
-- the table, kept equal to `embedding` by PostgreSQL on every write. The repository index holds it instead of the
-- full vector (110 MB less at 100,000 chunks), so the two covering indexes together take less than the former
-- one and the copy in the table (~54 MB more in all at 100,000 chunks).
ALTER TABLE doc_chunks ADD COLUMN IF NOT EXISTS embedding_half halfvec(384)
    GENERATED ALWAYS AS (embedding::halfvec(384)) STORED;

DROP INDEX IF EXISTS doc_chunks_repository_vectors_idx;
CREATE INDEX doc_chunks_repository_vectors_idx ON doc_chunks (repository, path) INCLUDE (id, embedding_half);
CREATE INDEX IF NOT EXISTS doc_chunks_path_vectors_idx ON doc_chunks (path COLLATE "C") INCLUDE (id, embedding_half);
