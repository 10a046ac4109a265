-- A chunk's postings side by side, so the words ranking of docs search scores its candidates from them
-- (knowledge/search.py, issue 19).
--
-- Why: the words ranking scored each candidate by unnesting its full-text vector (read from TOAST) and joining
-- every lexeme with the query's. On real documentation at 100,000 chunks a question of nine words made ~450
-- candidates and ~7,000 joined rows: ~10 ms of a 12 ms budget (bench/knowledge.py, `real`). The postings
-- already hold each (lexeme, chunk) BM25 weight without the idf (migration 0010); with this index a candidate's
-- score is one index range of its own postings, those of the query's words only.
CREATE INDEX doc_postings_chunk_idx ON doc_postings (id, lexeme) INCLUDE (impact);
