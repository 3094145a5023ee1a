-- 004_indexes: secondary indexes of the tables of 003_tables (primary keys are there).
--
-- Under RLS every query of a request role carries user_id = (select auth.uid()), so an index
-- helps only if it starts with user_id. The list queries of the API order by one of
-- LabOrderField and always end with id, and page by keyset ((key, id) < ($1, $2)): hence one
-- btree (user_id, key, id) per order field, scanned forward for ASC and backward for DESC.
--
-- The design document's indexes, one by one:
--   labs
--   idx_labs_user_id                  dropped: labs_pkey (user_id, id) starts with user_id; it
--                                     serves "the caller's rows" and the on-delete cascade.
--   idx_labs_search_vector (GIN)      not yet: it comes with full-text search (searchLabs),
--                                     which is not built; GIN or RUM is decided then.
--   idx_labs_title_gin, _author_gin   dropped: search_vector already holds title and author,
--                                     weighted; two more tsvector indexes would only cost writes.
--   idx_labs_category                 dropped: without user_id it is useless under RLS.
--   idx_labs_reading_status           dropped: the same, and three values only.
--   idx_labs_rating                   changed: labs_user_rating_idx (user_id, rating, id).
--   idx_labs_publication_year         changed: labs_user_publication_year_idx.
--   idx_labs_created_at_desc          changed: labs_user_created_at_idx (user_id, created_at,
--                                     id); ascending, read backward for DESC.
--   idx_labs_updated_at_desc          changed: labs_user_updated_at_idx.
--   idx_labs_user_category            dropped for now: counts by category read all the
--                                     caller's rows anyway; add (user_id, category, ...) when
--                                     a measured filter needs it.
--   idx_labs_user_status              dropped: the same; three values.
--   idx_labs_user_rating (partial)    changed: labs_user_rating_idx, not partial: ordering by
--                                     rating lists the unrated last, and reads them from it.
--   idx_labs_user_created_desc        changed: labs_user_created_at_idx, with id for keyset.
--   (new)                             labs_user_title_idx, labs_user_author_idx: the orders
--                                     TITLE and AUTHOR.
--   password_reset_tokens
--   idx_..._token                     dropped: no token column; a token names its row
--                                     (user_id, id) and only its hash is stored: primary key.
--   idx_..._user_id                   dropped: the primary key starts with user_id.
--   idx_..._expires_at                kept: password_reset_tokens_expires_at_idx, for clean-up.
--   idx_..._used (used, expires_at)   dropped: used is now used_at; used tokens are deleted
--                                     at once by the clean-up, so the table stays small.
--   user_sessions
--   idx_user_sessions_user_id         dropped: the primary key (user_id, id) starts with it,
--                                     and lists one user's sessions (a few rows, sorted in
--                                     memory).
--   idx_user_sessions_token           dropped: no session_token column; a session is found by
--                                     (user_id, id), named by the refresh token and the
--                                     session_id claim.
--   idx_user_sessions_expires_at      not yet: no session clean-up exists.
--   idx_user_sessions_last_activity   dropped: last_activity moves on every refresh; an index
--                                     on it would turn those HOT updates into index writes.
--
-- Measured (PostgreSQL 15, 200,000 labs of user A and 200,000 of user B, analysed; plans
-- of A as authenticated through RLS; $0 is the InitPlan (select auth.uid())):
--   order by created_at desc, id desc limit 21
--     Limit -> Index Scan Backward using labs_user_created_at_idx, Index Cond: (user_id = $0);
--     no Sort, 0.14 ms.
--   where (created_at, id) < ($1, $2) order by created_at desc, id desc limit 21 (100,000 deep)
--     Index Scan Backward using labs_user_created_at_idx,
--     Index Cond: ((user_id = $0) AND (ROW(created_at, id) < ROW($1, $2))); no Sort, 0.09 ms;
--     the same with a generic plan (prepared statements).
--   order by title, id: Index Only Scan using labs_user_title_idx, no Sort.
--   order by created_at desc, id asc: Incremental Sort of the ties only (0.1 ms); letting id
--     follow the direction of the last key avoids even that.
--   Nullable keys (rating, publication_year): ASC NULLS LAST is the index's order. DESC NULLS
--     LAST is not (backward gives NULLS FIRST): the planner then reads all the caller's rows
--     and sorts (Seq Scan + top-N heapsort, 115 ms). Query it in two parts instead: the rated
--     rows (rating is not null, Index Only Scan Backward, keyset (rating, id) < ($1, $2) in the
--     Index Cond, 0.2 ms), then the unrated ones (rating is null, ordered by id).
--   count(*) of A's labs (totalCount): Seq Scan, 100 ms for 200,000 rows.

create index if not exists labs_user_created_at_idx on public.labs (user_id, created_at, id);
create index if not exists labs_user_updated_at_idx on public.labs (user_id, updated_at, id);
create index if not exists labs_user_title_idx on public.labs (user_id, title, id);
create index if not exists labs_user_author_idx on public.labs (user_id, author, id);
create index if not exists labs_user_rating_idx on public.labs (user_id, rating, id);
create index if not exists labs_user_publication_year_idx
  on public.labs (user_id, publication_year, id);

create index if not exists password_reset_tokens_expires_at_idx
  on public.password_reset_tokens (expires_at);

comment on index public.labs_user_created_at_idx is
  'Lists by createdAt (the default order, read backward) with keyset paging.';
comment on index public.labs_user_updated_at_idx is 'Lists by updatedAt with keyset paging.';
comment on index public.labs_user_title_idx is 'Lists by title with keyset paging.';
comment on index public.labs_user_author_idx is 'Lists by author with keyset paging.';
comment on index public.labs_user_rating_idx is
  'Lists by rating with keyset paging; holds the unrated (null) labs too.';
comment on index public.labs_user_publication_year_idx is
  'Lists by publication year with keyset paging; holds the nulls too.';
comment on index public.password_reset_tokens_expires_at_idx is
  'Finds expired tokens for clean-up.';
