-- 013_read_statement_prepared: keep the plans of read_statement's queries per connection.
--
-- 012's read_statement ran its query with plpgsql's EXECUTE, which plans the text again at
-- every call: for a page of labs, planning took as long as running (about 180 us each,
-- EXPLAIN ANALYZE at 100,000 labs). Now each distinct query text is PREPAREd once per
-- connection, named by its md5, and EXECUTEd with its arguments as a quoted jsonb literal
-- (format's %L: the arguments never enter the text unquoted). PostgreSQL keeps the plan and
-- plans it again by itself when the role, the row security or the schema change.
--
-- Prepared statements are per connection: behind a transaction-mode PgBouncer a statement
-- may be missing on the next server connection, so the existence check runs at every call.
-- At most 200 are kept per connection (a client can vary its filters' shapes): past that,
-- ours are deallocated (never the driver's own, which are not `from_sql`).

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
  statement_name text := 'sl_' || pg_catalog.md5(p_query);
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
  if not exists (select from pg_catalog.pg_prepared_statements where name = statement_name) then
    if (select count(*) from pg_catalog.pg_prepared_statements
        where from_sql and name like 'sl\_%') >= 200 then
      for kept in
        select name from pg_catalog.pg_prepared_statements where from_sql and name like 'sl\_%'
      loop
        execute pg_catalog.format('deallocate %I', kept);
      end loop;
    end if;
    execute pg_catalog.format('prepare %I(jsonb) as %s', statement_name, p_query);
  end if;
  execute pg_catalog.format('execute %I(%L)', statement_name, p_args) into result;
  return result;
end
$$;

comment on function scriptlabs_private.read_statement(text, text, uuid, uuid, text, jsonb) is
  'One read-only operation in one statement: read-only, session check, role and claims '
  '(transaction-local), then the query (prepared once per connection) with its JSON array '
  'of arguments.';
