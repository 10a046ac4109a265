-- The HNSW graph built with a construction list of 400 instead of 200 (knowledge/search.py, knowledge/tuning.py,
-- issue 19).
--
-- Why: a graph built with the longer list links each chunk to better neighbours, so a search finds the exact top 10
-- with a shorter candidate list, and the recall at a given list varies less from one build to the next. Measured on
-- bench/knowledge.py `real` (100,000 docstring chunks, the bench's 100 held-out questions, the graph walk alone, same
-- rows, same machine), recall@10 against exact search:
--   construction 200, eight builds: 0.964-0.989 at a list of 140 (three of them under the 0.98 goal), 0.967-0.974
--   at 100;
--   construction 400, eight builds: 0.985-0.992 at 100, 0.993-0.996 at 140.
-- At a list of 100 the walk on the new graph takes as long as at 140 on the former one: three pairs of builds
-- searched alternately, p50 1.66-2.03 against 1.71-2.21 ms. (Those questions came from a few files; held out across
-- the whole corpus they need a list of 200 on this graph, the shortest tuning chooses: knowledge/tuning.py.)
-- Its price: building takes about twice as long (45-49 s against 23-26 s at 100,000 real chunks here; 167 s on the
-- adversarial `clustered` set, whose tuned list went from 800-1000 to 560), and so does adding a chunk to a large graph
-- (2.9 against 1.9 ms a chunk at 100,000; embedding a chunk takes ~15 ms). A construction list of 800 reached 0.981 at
-- a list of 60 but doubled both again (90 s; 5.5 ms a chunk).
DROP INDEX IF EXISTS doc_chunks_embedding_idx;
CREATE INDEX doc_chunks_embedding_idx ON doc_chunks USING hnsw ((embedding::halfvec(384)) halfvec_cosine_ops)
    WITH (m = 16, ef_construction = 400);

-- The candidate list and the codes were measured with the old graph: searches use the safe default and rank filters
-- exactly until the next indexing run measures them again (knowledge/tuning.py).
DELETE FROM doc_search_tuning;
