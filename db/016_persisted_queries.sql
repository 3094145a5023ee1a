-- 016_persisted_queries: the documents registered for PERSISTED_QUERIES=only, with
-- `scriptlabs persisted add FILE.graphql`. Keyed by the SHA-256 of the document's exact text,
-- as Apollo's persisted queries name a document. No request role can reach the table; the
-- API's login role (authenticator) reads it only through persisted_documents(), and the owner
-- (the CLI, with the admin DSN) writes it.

create table if not exists scriptlabs_private.persisted_queries (
  hash text not null,
  document text not null,
  source text,
  created_at timestamptz not null default now(),
  constraint persisted_queries_pkey primary key (hash),
  constraint persisted_queries_hash_check check (hash ~ '^[0-9a-f]{64}$'),
  constraint persisted_queries_document_check
    check (hash = pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(document, 'UTF8')), 'hex'))
);
alter table scriptlabs_private.persisted_queries enable row level security;
revoke all on scriptlabs_private.persisted_queries from public, anon, authenticated, service_role;

comment on table scriptlabs_private.persisted_queries is
  'Documents that PERSISTED_QUERIES=only lets run: the exact text a client sends, keyed by its '
  'SHA-256 (hex). Written by `scriptlabs persisted add`; read by the API through '
  'scriptlabs_private.persisted_documents().';
comment on column scriptlabs_private.persisted_queries.source is
  'Where the document came from: the file name and which form of it (as written, or as Apollo '
  'Client sends it).';

create or replace function scriptlabs_private.persisted_documents()
returns table (hash text, document text)
language sql
stable
security definer
set search_path = ''
as $$
  select q.hash, q.document
  from scriptlabs_private.persisted_queries q
  order by q.created_at, q.hash
$$;
revoke all on function scriptlabs_private.persisted_documents() from public;
grant execute on function scriptlabs_private.persisted_documents() to authenticator;
comment on function scriptlabs_private.persisted_documents() is
  'Every registered document with its hash: what an API worker loads into its cache, again '
  'when a request names a hash it does not know (at most once a second).';
