-- BM25 ranking of docs by words (knowledge/search.py), and the repository's text search language.
--
-- Why: ranking a capped, unordered sample of full-text matches by cover density lost to both halves of the
-- hybrid search on a real corpus (issue 19). BM25 ranks every match by its terms' rarity, which needs each
-- term's document frequency and each corpus's average length: doc_terms and doc_corpus hold them per
-- repository, rewritten by the indexer in the transaction that changes the repository's chunks.
--
-- Stemming and stop words follow the repository's language: the full-text vector is built with the chunk's
-- own text search configuration (the indexer's `language`, default english) and the title/heading path
-- (weight A) above the body (weight B).

ALTER TABLE doc_chunks ADD COLUMN text_config regconfig NOT NULL DEFAULT 'english';
DROP INDEX IF EXISTS doc_chunks_tsv_idx;
ALTER TABLE doc_chunks DROP COLUMN tsv;
ALTER TABLE doc_chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector(text_config, heading_text), 'A') || setweight(to_tsvector(text_config, content), 'B')
) STORED;
CREATE INDEX doc_chunks_tsv_idx ON doc_chunks USING gin (tsv);

-- In how many chunks of a repository each lexeme occurs (BM25's document frequency).
CREATE TABLE doc_terms (
    repository  TEXT NOT NULL,
    lexeme      TEXT NOT NULL,
    chunks      INTEGER NOT NULL CHECK (chunks > 0),
    PRIMARY KEY (lexeme, repository)
);

-- A repository's chunk count, total length in distinct lexemes per chunk (BM25's average document length),
-- and the language its chunks were indexed in (queries are parsed in it).
CREATE TABLE doc_corpus (
    repository  TEXT PRIMARY KEY,
    text_config regconfig NOT NULL,
    chunks      INTEGER NOT NULL,
    lexemes     BIGINT NOT NULL
);

INSERT INTO doc_terms (repository, lexeme, chunks)
SELECT d.repository, u.lexeme, count(*) FROM doc_chunks AS d, unnest(d.tsv) AS u GROUP BY d.repository, u.lexeme;
INSERT INTO doc_corpus (repository, text_config, chunks, lexemes)
SELECT repository, min(text_config::text)::regconfig, count(*), sum(length(tsv)) FROM doc_chunks GROUP BY repository;
