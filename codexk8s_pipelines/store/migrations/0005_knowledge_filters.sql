-- Filtered searches within their latency budget at 100,000 chunks (bench/knowledge.py).

-- One repository's vectors side by side, so a repository-filtered search ranks them without reading the table.
--
-- A filter that keeps at most EXACT_SCAN_ROWS chunks (search.py) is ranked exactly. Read from the table, that
-- costs one heap page per chunk wherever the indexer wrote it (a repository re-indexed over months is spread
-- over the whole table): 5,000 page visits, ~10 ms of a 20 ms budget at 100,000 chunks (bench/knowledge.py).
-- This index keeps (repository, path) in order with each chunk's id and vector beside it, so the same ranking
-- is an index-only scan of one key range: ~1,250 contiguous pages, ~4 ms. Its price is a second copy of every
-- vector (~2 kB a chunk, about the heap's size again) written with each chunk.
CREATE INDEX doc_chunks_repository_vectors_idx ON doc_chunks (repository, path) INCLUDE (id, embedding);

-- A path prefix as an index range. search.py writes a prefix as a range of paths in "C" order (its statements
-- have generic plans, where `starts_with` of a parameter is not an index condition); without this index,
-- deciding whether a folder filter is small enough to rank exactly read the paths of every chunk (5-7 ms at
-- 100,000 chunks, before any ranking).
CREATE INDEX doc_chunks_path_idx ON doc_chunks (path COLLATE "C");

-- An index-only scan skips the table only for pages the visibility map marks all-visible, and vacuum sets the
-- marks. By default autovacuum waits until a fifth of the table has changed; a re-index that rewrote a few
-- repositories would leave their pages unmarked (each chunk read from the table again) until then.
ALTER TABLE doc_chunks SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02);
