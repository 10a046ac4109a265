-- Large filtered searches rank binary codes of the vectors first, read from covering indexes (knowledge/search.py,
-- knowledge/tuning.py, issue 19).
--
-- A filter keeping more than CODE_SCAN_ROWS (and at most EXACT_SCAN_ROWS) chunks was ranked by the half-precision
-- copies of migration 0014: 768 bytes read and a half-precision distance computed for every chunk. A folder of
-- 11,111 chunks of 100,000 (bench/knowledge.py `real`) took p50 5.0 / p95 5.7 ms that way. One bit a dimension (its
-- sign, pgvector's binary_quantize) is 48 bytes, compared by Hamming distance; the nearest codes are then re-ranked
-- by full precision: with 400 of them p50 3.0 / p95 3.5 ms at recall@10 0.996 against exact (measured side by side).
-- How many codes a corpus needs is measured on it, as the HNSW list is (`code_candidates`, NULL: rank exactly):
-- on an adversarial set no count short of a full scan reaches the recall, and there filters stay exact.
--
-- As in 0014, a stored generated column (an index can include columns, not expressions), kept equal to `embedding`
-- by PostgreSQL on every write: 48 bytes a chunk in the table, ~11 MB for each index at 100,000 chunks. Adding it
-- rewrites the table once (30 to 73 s at 100,000 chunks here, with its indexes).
ALTER TABLE doc_chunks ADD COLUMN IF NOT EXISTS embedding_bits bit(384)
    GENERATED ALWAYS AS (binary_quantize(embedding)::bit(384)) STORED;

CREATE INDEX IF NOT EXISTS doc_chunks_repository_bits_idx ON doc_chunks (repository, path) INCLUDE (id, embedding_bits);
CREATE INDEX IF NOT EXISTS doc_chunks_path_bits_idx ON doc_chunks (path COLLATE "C") INCLUDE (id, embedding_bits);

ALTER TABLE doc_search_tuning ADD COLUMN IF NOT EXISTS code_candidates INTEGER
    CHECK (code_candidates BETWEEN 1 AND 10000);

-- Adding the column rewrote the table, and with it rebuilt the HNSW graph that the stored list was measured on; the
-- codes were never measured. The next indexing run measures both again (knowledge/tuning.py); until then searches
-- use the untuned list, longer than real documentation needs, and rank every filter exactly.
DELETE FROM doc_search_tuning;
