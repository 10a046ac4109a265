-- Each chunk's BM25 weights as one sparse vector, so the words ranking of docs search scores a candidate with one
-- row and one inner product (knowledge/search.py, knowledge/index.py, issue 19).
--
-- Why: a candidate's score was read from its postings (migration 0012): all of them, ~18 a chunk, then joined with
-- the query's words by hash and summed. A usual question makes ~300 candidates (~5,000 postings), a long one up to
-- ~750 (~13,000): the largest part of the words ranking, and at 100,000 chunks its time grew with the question.
-- Here a chunk's postings are one row: a pgvector sparsevec whose dimensions are its lexemes (numbered once in
-- doc_lexemes) and whose values are the postings' weights, without the idf. The query's words make a sparsevec of
-- their idf, and `inner_product` of the two is BM25, computed in C. Measured side by side on bench/knowledge.py
-- `real` at 100,000 chunks, the whole search statement, the same 100 questions alternately, same top 10:
-- p50 4.32 -> 3.65 ms and p95 5.57 -> 4.90 ms across all repositories; one repository p95 4.47 -> 3.48 ms; a
-- folder p95 6.87 -> 5.79 ms.
--
-- A lexeme's number is assigned once and never reused (an identity), so a chunk's vector stays valid while other
-- repositories add words; the indexer adds a repository's new lexemes before writing its vectors. A chunk's row
-- goes with the chunk (ON DELETE CASCADE) and is rewritten with the repository's postings, in the same transaction.
-- The values are the postings' REAL weights; the query's idf is rounded to REAL too, which moves a score by about
-- one part in ten million.
CREATE TABLE doc_lexemes (
    dim     INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lexeme  TEXT NOT NULL UNIQUE
);

CREATE TABLE doc_chunk_weights (
    id       BIGINT PRIMARY KEY REFERENCES doc_chunks (id) ON DELETE CASCADE,
    weights  sparsevec NOT NULL
);

INSERT INTO doc_lexemes (lexeme) SELECT DISTINCT lexeme FROM doc_postings ORDER BY lexeme;

-- pgvector's largest sparse dimension (1,000,000,000), for every vector alike: inner_product needs equal dimensions.
INSERT INTO doc_chunk_weights (id, weights)
SELECT p.id, ('{' || string_agg(l.dim::text || ':' || p.impact::text, ',' ORDER BY l.dim) || '}/1000000000')::sparsevec
FROM doc_postings AS p JOIN doc_lexemes AS l USING (lexeme)
WHERE EXISTS (SELECT 1 FROM doc_chunks AS d WHERE d.id = p.id)
GROUP BY p.id;

-- Only the former scoring read postings by chunk.
DROP INDEX IF EXISTS doc_postings_chunk_idx;

ANALYZE doc_lexemes;
ANALYZE doc_chunk_weights;
