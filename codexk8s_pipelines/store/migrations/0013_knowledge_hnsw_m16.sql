-- The HNSW graph with 16 links a node instead of 32 (knowledge/search.py, issue 19).
--
-- Why: on real documentation (bench/knowledge.py, `real`: 100,000 docstring chunks, held-out questions) the
-- sparser graph is both faster and more exact at the same candidate list: ef_search 140 answers in p95 2.2 ms
-- with recall@10 0.987, where m = 32 took 5.7 ms for 0.978 (its index is twice the size; the walk reads twice
-- the pages). On the adversarial `clustered` set the two are even (recall 0.985 at p95 14.5 ms against 0.988
-- at 15.7 ms). Measured side by side on the same rows, same machine.
DROP INDEX IF EXISTS doc_chunks_embedding_idx;
CREATE INDEX doc_chunks_embedding_idx ON doc_chunks USING hnsw ((embedding::halfvec(384)) halfvec_cosine_ops)
    WITH (m = 16, ef_construction = 200);

-- The candidate list was measured on the old graph: searches use the safe default until the next indexing run
-- measures it again (knowledge/tuning.py).
DELETE FROM doc_search_tuning;
