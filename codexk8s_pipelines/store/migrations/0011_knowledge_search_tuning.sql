-- The HNSW candidate list measured on the corpus it searches (knowledge/tuning.py, issue 19).
--
-- Why: the list recall@10 ≥ 0.98 needs depends on the vectors, from ~100 on real documentation to 400 on an
-- adversarial set (bench/knowledge.py), and latency grows with it. After indexing, the corpus's own chunks are
-- ranked exactly and by the graph walk at growing lengths; the shortest that reaches the target is kept here,
-- one row for the database, and every search reads it.

CREATE TABLE doc_search_tuning (
    singleton   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    ef_search   INTEGER NOT NULL CHECK (ef_search BETWEEN 1 AND 1000),
    recall      DOUBLE PRECISION NOT NULL,
    chunks      INTEGER NOT NULL,
    sample      INTEGER NOT NULL,
    seconds     DOUBLE PRECISION NOT NULL,
    measured_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
