-- Impact-ordered postings for the words ranking of docs search (knowledge/search.py, issue 19).
--
-- Why: BM25 over every chunk that has one of a query's rarer words (migration 0007) read the full-text index's
-- posting lists of the whole table and scored each match from its tsvector: ~1,700 candidates and ~27 ms for
-- one repository at 100,000 chunks. Here each (lexeme, chunk) pair carries its BM25 term weight without the
-- idf (term frequency saturated by k1 = 1.2 and normalised by the chunk's length against its repository's
-- average, b = 0.75: the values of search.py), and the postings of a lexeme are kept in order of that weight.
-- A query's idf is the same for every chunk in its scope, so the chunks where a word weighs most are the first
-- entries of one index range: search takes a few per query word (an index-only scan) and scores only those.
--
-- The indexer rewrites a repository's postings in the transaction that changes its chunks (a repository's
-- average length moves every weight of it), as it rewrites doc_terms and doc_corpus.

CREATE TABLE doc_postings (
    lexeme      TEXT NOT NULL,
    repository  TEXT NOT NULL,
    impact      REAL NOT NULL,
    id          BIGINT NOT NULL,
    path        TEXT COLLATE "C" NOT NULL
);

-- Unfiltered and path-filtered searches: one lexeme's postings, heaviest first.
CREATE INDEX doc_postings_lexeme_idx ON doc_postings (lexeme, impact DESC) INCLUDE (id, repository, path);
-- Repository-filtered searches, and the indexer's rewrite of one repository.
CREATE INDEX doc_postings_repository_idx ON doc_postings (repository, lexeme, impact DESC) INCLUDE (id, path);

INSERT INTO doc_postings (lexeme, repository, impact, id, path)
SELECT u.lexeme, d.repository,
       (cardinality(u.positions) * 2.2 / (cardinality(u.positions)
        + 1.2 * (0.25 + 0.75 * length(d.tsv) / greatest(c.lexemes::float8 / greatest(c.chunks, 1), 1))))::real,
       d.id, d.path
FROM doc_chunks AS d JOIN doc_corpus AS c USING (repository), unnest(d.tsv) AS u;

ANALYZE doc_postings;
