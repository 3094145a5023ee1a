-- 017_stats: the figures GET /metrics reports from the database (CONTRACT.md section 1, HTTP).
--
--   pg_stat_statements              created when the server has it loaded; skipped otherwise
--   scriptlabs_private.api_figures  one row: the design document's KPIs and the mail outbox
--
-- pg_stat_statements needs `shared_preload_libraries = 'pg_stat_statements'` (the embedded
-- cluster sets it; Supabase has it). Where the extension cannot be created (not installed, or
-- the migrating role may not), this file still applies and the statements' mean time is null.
--
-- api_figures is security definer so that the login role, which holds nothing itself, can read
-- the outbox's counts and the statistics views; it returns counts and ratios only, never a
-- statement's text, an address or an id. Only the login role may call it.

do $$
begin
  create extension if not exists pg_stat_statements;
exception when others then
  raise notice 'pg_stat_statements is not available (%): its figure stays empty', sqlerrm;
end
$$;

create or replace function scriptlabs_private.api_figures(
  out statements_mean_ms double precision,
  out index_hit_ratio double precision,
  out table_hit_ratio double precision,
  out connections_used integer,
  out connections_max integer,
  out labs_dead_share double precision,
  out mail_queued bigint,
  out mail_failed bigint
)
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_schema text;
begin
  -- the request roles and the login role: the statements the API runs
  select e.extnamespace::regnamespace::text into v_schema
  from pg_catalog.pg_extension e
  where e.extname = 'pg_stat_statements';
  if v_schema is not null then
    begin
      execute format(
        'select sum(s.total_exec_time) / nullif(sum(s.calls), 0)
         from %I.pg_stat_statements s
         join pg_catalog.pg_roles r on r.oid = s.userid
         where s.dbid = (select oid from pg_catalog.pg_database
                         where datname = pg_catalog.current_database())
           and r.rolname in (''authenticator'', ''anon'', ''authenticated'', ''service_role'')',
        v_schema)
      into statements_mean_ms;
    exception when others then
      statements_mean_ms := null;  -- created but not loaded (shared_preload_libraries)
    end;
  end if;

  select sum(i.idx_blks_hit)::double precision
         / nullif(sum(i.idx_blks_hit + i.idx_blks_read), 0)
  into index_hit_ratio
  from pg_catalog.pg_statio_user_indexes i;

  select sum(t.heap_blks_hit)::double precision
         / nullif(sum(t.heap_blks_hit + t.heap_blks_read), 0)
  into table_hit_ratio
  from pg_catalog.pg_statio_user_tables t;

  select count(*)::integer into connections_used
  from pg_catalog.pg_stat_activity a
  where a.backend_type = 'client backend';
  connections_max := pg_catalog.current_setting('max_connections')::integer;

  select t.n_dead_tup::double precision / greatest(t.n_live_tup + t.n_dead_tup, 1)
  into labs_dead_share
  from pg_catalog.pg_stat_user_tables t
  where t.relid = 'public.labs'::regclass;

  select count(*) filter (where m.sent_at is null and m.failed_at is null),
         count(*) filter (where m.failed_at is not null)
  into mail_queued, mail_failed
  from scriptlabs_private.mail_outbox m;
end
$$;

revoke all on function scriptlabs_private.api_figures() from public, anon, authenticated,
  service_role;
grant execute on function scriptlabs_private.api_figures() to authenticator;

comment on function scriptlabs_private.api_figures() is
  'The database figures of GET /metrics: mean execution time (ms) of the API roles'' '
  'statements (pg_stat_statements, null without it), index and table cache hit ratios, client '
  'connections and max_connections, the dead-tuple share of public.labs, and the mail outbox '
  '(queued now, given up). Counts and ratios only; for the login role.';
