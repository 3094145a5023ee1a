-- 014_search: full-text search of labs (searchLabs), type-ahead and spelling suggestions.
--
-- The index. labs.search_vector (003_tables) is weighted: title A, author B, category C,
-- notes D. GIN answers `search_vector @@ query` but returns matches unordered: ranking a term
-- with 100,000 matches means reading and ranking every one of them (380-650 ms at 1,000,000
-- labs of one user, measured). A RUM index (the rum extension; Debian package
-- postgresql-15-rum, available on Supabase) keeps the lexemes' positions and returns matches
-- in rank order (`search_vector <=> query`, a distance that is 1 / rum_ts_score): the best ten
-- of a 6,000-match term in about 4 ms. Where rum is not installed, or cannot be created by the
-- migrating role, a GIN index is made instead and the same SQL ranks with ts_rank: slower on
-- big catalogues, the same answers in shape and order of weight.
--
-- The API's SQL never names the extension: it calls public.lab_search_distance and
-- public.lab_search_rank, plain SQL functions that PostgreSQL inlines, so that with rum the
-- ORDER BY is the index's own operator and the index returns rows in that order.
--
-- Row Level Security. Policies are applied before any condition of the query that is not
-- LEAKPROOF, and a condition that must wait cannot be an index condition: under the request's
-- role, `search_vector @@ q` became a filter over a sequential scan of every row of the
-- caller (450 ms at 1,000,000 labs instead of 4 ms). `@@` (ts_match_vq) and rum's distance
-- compute a value from their arguments and raise no error that depends on a row's content,
-- so they are declared LEAKPROOF here. Only a superuser may do that; elsewhere (a Supabase
-- project) this step is skipped with a notice, and search stays correct but scans.
--
-- Measured (PostgreSQL 15, 2 cores; `scriptlabs demo-data`: one user with 1,000,000 labs among
-- 1,000 users with 200, rows interleaved; EXPLAIN ANALYZE of searchLabs' page statement as
-- authenticated, first 10, planned with its values):
--   a rare word (6 labs)                  rum Index Scan, Order By <=>: 2 ms in all.
--   a medium word (5,752 labs)            rum Index Scan for the best 111 rows: 2.1 ms; the
--                                         page ends in a group of 977 equal ranks, read
--                                         further in rank order (1,000 rows, 3.7 ms): 9 ms.
--   a very common word (96,948 labs)      rum Index Scan: 42 ms, nearly all of it rum sorting
--                                         every match by distance (80 ms when the sort spills
--                                         with the default work_mem of 4 MB).
--   the same, GIN and ts_rank             ranks every match: 380-650 ms (shared/design).
--   a user with 1,000 labs, common word   the user's labs read and tested: 0.7 ms; letting the
--                                         planner intersect the user's rows with the word's
--                                         116,000 matches in the index: 26 ms.
--   under RLS without LEAKPROOF           Seq Scan of the caller's labs: 450 ms.
-- rum's index is about the size of GIN's plus positions (92 MB at 1,200,000 labs) and is
-- built in under a minute; added to row by row it is slow, so `scriptlabs demo-data` builds it
-- again after a big load.
--
-- Suggestions: public.lab_words counts, per user, the single words of titles, authors and
-- categories, kept current by triggers in the same transaction as the change; searchLabs
-- proposes the closest of them by trigram similarity (pg_trgm) when a query matches nothing.

create extension if not exists pg_trgm;

do $$
begin
  if exists (select from pg_catalog.pg_available_extensions where name = 'rum')
     and not exists (select from pg_catalog.pg_extension where extname = 'rum') then
    begin
      create extension rum;
    exception when insufficient_privilege or feature_not_supported or undefined_file then
      raise notice 'rum could not be created (%); search uses a GIN index', sqlerrm;
    end;
  end if;
end
$$;

do $$
declare
  rum_schema text := (
    select n.nspname from pg_catalog.pg_extension e
    join pg_catalog.pg_namespace n on n.oid = e.extnamespace
    where e.extname = 'rum');
begin
  if rum_schema is not null then
    execute 'create index if not exists labs_search_idx on public.labs '
      || format('using rum (search_vector %I.rum_tsvector_ops)', rum_schema);
    execute format($f$
      create or replace function public.lab_search_distance(v tsvector, q tsquery)
      returns real language sql immutable parallel safe
      as 'select $1 operator(%1$I.<=>) $2'$f$, rum_schema);
    execute format($f$
      create or replace function public.lab_search_rank(v tsvector, q tsquery)
      returns real language sql immutable parallel safe
      as 'select %1$I.rum_ts_score($1, $2)'$f$, rum_schema);
  else
    create index if not exists labs_search_idx on public.labs using gin (search_vector);
    create or replace function public.lab_search_distance(v tsvector, q tsquery)
    returns real language sql immutable parallel safe
    as $f$select coalesce(1 / nullif(pg_catalog.ts_rank($1, $2), 0), 'Infinity'::real)$f$;
    create or replace function public.lab_search_rank(v tsvector, q tsquery)
    returns real language sql immutable parallel safe
    as 'select pg_catalog.ts_rank($1, $2)';
  end if;

  if (select rolsuper from pg_catalog.pg_roles where rolname = current_user) then
    alter function pg_catalog.ts_match_vq(tsvector, tsquery) leakproof;
    if rum_schema is not null then
      execute format('alter function %I.rum_ts_distance(tsvector, tsquery) leakproof',
                     rum_schema);
    end if;
  else
    raise notice 'not a superuser: text-search operators stay non-leakproof, so under row '
      'level security searches filter rows instead of using the search index';
  end if;
end
$$;

comment on index public.labs_search_idx is
  'searchLabs: the labs matching a text query, in rank order when it is a rum index.';
comment on function public.lab_search_distance(tsvector, tsquery) is
  'The order of searchLabs: smaller is better (1 / rank); the search index orders by it.';
comment on function public.lab_search_rank(tsvector, tsquery) is
  'The rank of a lab for a text query: larger is better, 0 when nothing is matched.';

-- the single words (lower case, letters and digits) of a title, an author and a category
create or replace function public.lab_words_of(title text, author text, category text)
returns setof text
language sql
immutable
parallel safe
as $$
  select distinct w
  from pg_catalog.regexp_split_to_table(
    pg_catalog.lower(pg_catalog.concat_ws(' ', title, author, category)), '[^[:alnum:]]+') w
  where pg_catalog.length(w) between 2 and 64
$$;
comment on function public.lab_words_of(text, text, text) is
  'The distinct single words, in lower case, of a lab''s title, author and category.';

create table if not exists public.lab_words (
  user_id uuid not null references auth.users (id) on delete cascade,
  word text not null,
  labs integer not null,
  constraint lab_words_pkey primary key (user_id, word)
);
comment on table public.lab_words is
  'For each user, the single words of the titles, authors and categories of its labs and '
  'how many labs use each (0 once none does: the row is kept, so concurrent changes never '
  'race over deleting and inserting it). Read by searchLabs for spelling suggestions.';

alter table public.lab_words enable row level security;
revoke all on public.lab_words from public, anon, authenticated, service_role;
grant select on public.lab_words to authenticated;
grant all on public.lab_words to service_role;
drop policy if exists lab_words_select_own on public.lab_words;
create policy lab_words_select_own on public.lab_words
  for select
  to authenticated
  using (user_id = (select auth.uid()));

-- Counts move by the words of the rows after a statement minus those before it, summed per
-- (user, word): one upsert per statement however many labs it touched, its rows taken in key
-- order so that two transactions of one user lock them in the same order (no deadlock).
-- Rows of a user being deleted (on delete cascade from auth.users) are skipped: nothing is
-- written for a user who is going away.
create or replace function scriptlabs_private.lab_words_changed()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, public
as $$
begin
  if tg_op = 'INSERT' then
    insert into public.lab_words as w (user_id, word, labs)
    select n.user_id, x, count(*)
    from new_rows n cross join lateral public.lab_words_of(n.title, n.author, n.category) x
    group by n.user_id, x
    order by n.user_id, x
    on conflict (user_id, word) do update set labs = w.labs + excluded.labs;
  elsif tg_op = 'DELETE' then
    insert into public.lab_words as w (user_id, word, labs)
    select o.user_id, x, -count(*)
    from old_rows o cross join lateral public.lab_words_of(o.title, o.author, o.category) x
    where exists (select from auth.users u where u.id = o.user_id)
    group by o.user_id, x
    order by o.user_id, x
    on conflict (user_id, word) do update set labs = w.labs + excluded.labs;
  else
    insert into public.lab_words as w (user_id, word, labs)
    select user_id, x, sum(n)
    from (
      select n.user_id, x, 1 n
      from new_rows n cross join lateral public.lab_words_of(n.title, n.author, n.category) x
      union all
      select o.user_id, x, -1
      from old_rows o cross join lateral public.lab_words_of(o.title, o.author, o.category) x
    ) c
    group by user_id, x
    having sum(n) <> 0
    order by user_id, x
    on conflict (user_id, word) do update set labs = w.labs + excluded.labs;
  end if;
  return null;
end
$$;
revoke all on function scriptlabs_private.lab_words_changed() from public;
comment on function scriptlabs_private.lab_words_changed() is
  'Trigger function: keeps public.lab_words in step with the labs a statement changed.';

drop trigger if exists labs_words_insert on public.labs;
create trigger labs_words_insert after insert on public.labs
  referencing new table as new_rows
  for each statement execute function scriptlabs_private.lab_words_changed();
drop trigger if exists labs_words_delete on public.labs;
create trigger labs_words_delete after delete on public.labs
  referencing old table as old_rows
  for each statement execute function scriptlabs_private.lab_words_changed();
drop trigger if exists labs_words_update on public.labs;
create trigger labs_words_update after update on public.labs
  referencing old table as old_rows new table as new_rows
  for each statement execute function scriptlabs_private.lab_words_changed();

create or replace function scriptlabs_private.lab_words_cleared()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, public
as $$
begin
  truncate public.lab_words;
  return null;
end
$$;
revoke all on function scriptlabs_private.lab_words_cleared() from public;
comment on function scriptlabs_private.lab_words_cleared() is
  'Trigger function: empties public.lab_words when public.labs is truncated.';

drop trigger if exists labs_words_truncate on public.labs;
create trigger labs_words_truncate after truncate on public.labs
  for each statement execute function scriptlabs_private.lab_words_cleared();

-- the words of the labs already there: a recount (running this file again changes nothing
-- when the table is current, and corrects it when it is not)
update public.lab_words set labs = 0 where labs <> 0;
insert into public.lab_words as w (user_id, word, labs)
select l.user_id, x, count(*)
from public.labs l cross join lateral public.lab_words_of(l.title, l.author, l.category) x
group by l.user_id, x
on conflict (user_id, word) do update set labs = excluded.labs;

-- read_statement (012), again: its query may name the caller's id as $2 (a uuid, bound at each
-- call, so one statement serves every caller while the planner still sees the id), and a
-- query that starts with /*custom plan*/ is planned with its values at every call. Search
-- needs both: whether a caller's labs are best read through the search index or through the
-- caller's own rows depends on how many labs that caller has and how common the words are.
-- Such a query also gets 16 MB for its sorts: rum orders all the matches of a word before it
-- returns the best, and a word in 97,000 labs took 80 ms with the default 4 MB (spilled to
-- disk), 42 ms with 16 MB. And no JIT compilation: the plans of the branches that do not run
-- (a small catalogue's, a big one's) can cost enough on paper to trigger it, which added
-- 40 ms to a 9 ms search.
-- Prepared statements are named sq_<md5> now (sl_ ones took one parameter).
create or replace function scriptlabs_private.read_statement(
  p_role text,
  p_claims text,
  p_user_id uuid,
  p_session_id uuid,
  p_query text,
  p_args jsonb
)
returns text
language plpgsql
volatile
security invoker
as $$
declare
  result text;
  statement_name text := 'sq_' || pg_catalog.md5(p_query);
  kept text;
begin
  perform pg_catalog.set_config('transaction_read_only', 'on', true);
  if p_role not in ('anon', 'authenticated', 'service_role') then
    raise exception 'read_statement: role % is not a request role', p_role
      using errcode = '42501';
  end if;
  if p_session_id is not null
     and not scriptlabs_private.session_is_live(p_user_id, p_session_id) then
    raise exception 'the session has ended' using errcode = 'P0401';
  end if;
  perform pg_catalog.set_config('role', p_role, true),
          pg_catalog.set_config('request.jwt.claims', p_claims, true);
  if starts_with(p_query, '/*custom plan*/') then
    perform pg_catalog.set_config('plan_cache_mode', 'force_custom_plan', true),
            pg_catalog.set_config('work_mem', '16MB', true),
            pg_catalog.set_config('jit', 'off', true);
  end if;
  begin
    execute pg_catalog.format('execute %I(%L, %L)', statement_name, p_args, p_user_id)
      into result;
  exception when invalid_sql_statement_name then  -- not prepared on this connection yet
    -- sl_ ones were made by 012's version of this function: deallocated with the rest
    if (select count(*) from pg_catalog.pg_prepared_statements
        where from_sql and (name like 'sq\_%' or name like 'sl\_%')) >= 200 then
      for kept in
        select name from pg_catalog.pg_prepared_statements
        where from_sql and (name like 'sq\_%' or name like 'sl\_%')
      loop
        execute pg_catalog.format('deallocate %I', kept);
      end loop;
    end if;
    execute pg_catalog.format('prepare %I(jsonb, uuid) as %s', statement_name, p_query);
    execute pg_catalog.format('execute %I(%L, %L)', statement_name, p_args, p_user_id)
      into result;
  end;
  return result;
end
$$;

-- For Supabase clients (supabase.rpc('search_labs', {...})): the caller's own labs matching a
-- text query, best first, as searchLabs orders them (without its cursors and facets). Security
-- invoker: it reads public.labs under the caller's role, so Row Level Security keeps other
-- users' labs out whatever it is given; it takes no user id to be misused. The design
-- document's search_books(p_user_id, ...) was security definer and trusted that argument.
create or replace function public.search_labs(
  search_query text,
  max_results integer default 20,
  prefix boolean default false
)
returns table (
  id uuid,
  title text,
  author text,
  category text,
  publication_year integer,
  isbn text,
  rating integer,
  reading_status text,
  notes text,
  cover_url text,
  created_at timestamptz,
  updated_at timestamptz,
  rank real
)
language sql
stable
security invoker
as $$
  with q as (
    select case
      when pg_catalog.btrim(coalesce(search_query, '')) = '' then null
      when prefix and pg_catalog.websearch_to_tsquery('english', search_query)::text like '%'''
        then pg_catalog.regexp_replace(
          pg_catalog.websearch_to_tsquery('english', search_query)::text, '''$', ''':*'
        )::tsquery
      else pg_catalog.websearch_to_tsquery('english', search_query)
    end as query
  )
  select l.id, l.title::text, l.author::text, l.category::text, l.publication_year,
         l.isbn::text, l.rating, l.reading_status, l.notes, l.cover_url, l.created_at,
         l.updated_at,
         case when q.query is null then 0
              else (1 / public.lab_search_distance(l.search_vector, q.query))::real end
  from public.labs l, q
  where l.user_id = (select auth.uid())
    and (q.query is null or l.search_vector @@ q.query)
  order by case when q.query is null then 0
                else public.lab_search_distance(l.search_vector, q.query) end,
           l.created_at desc, l.id desc
  limit least(greatest(coalesce(max_results, 20), 0), 100)
$$;
revoke all on function public.search_labs(text, integer, boolean) from public;
grant execute on function public.search_labs(text, integer, boolean) to authenticated;
comment on function public.search_labs(text, integer, boolean) is
  'The caller''s labs matching a web-search query, best first (rank, then newest); an empty '
  'query lists the newest. Security invoker: Row Level Security applies.';
