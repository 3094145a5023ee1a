-- 012_read_statement: a read-only GraphQL operation in one statement.
--
-- A planned read (`labs`, `lab`) used to cost four round trips: BEGIN READ ONLY, the set-up
-- statement (role, claims, the live-session check), the query, COMMIT. This function does the
-- same work inside the statement's own implicit transaction, in the same order: the
-- transaction is made read-only, the token's session is checked, role and claims are set with
-- set_config(..., true) (transaction-local: PgBouncer transaction pooling stays safe), and only
-- then is the query run, so Row Level Security applies under the request's role exactly as in
-- the long form. The transaction ends with the statement.
--
-- security invoker: it runs as the login role and can do nothing that role cannot; only the
-- login role may call it (the request roles have no usage on scriptlabs_private).
-- The query text is the API's own (parameterised: its one parameter, a JSON array of the
-- values, never enters the text unquoted).
--
-- Plans are kept per connection: planning the query again at every call (plpgsql's EXECUTE of
-- text) took as long as running it (about 180 us for a page of labs at 100,000, EXPLAIN
-- ANALYZE). Each distinct query text is PREPAREd once per connection, named by its md5, and
-- EXECUTEd with its arguments as a quoted jsonb literal (format's %L). PostgreSQL plans it
-- again by itself when the role, the row security or the schema change. Behind a
-- transaction-mode PgBouncer a statement may be missing on the next server connection: a
-- missing one is prepared then (looking it up in pg_prepared_statements at every call cost
-- more than the block that catches its absence). At most 200 are kept per connection (a client can vary
-- its filters' shapes): past that, ours are deallocated (never the driver's own, which are
-- not `from_sql`).

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
  begin
    execute pg_catalog.format('execute %I(%L)', statement_name, p_args) into result;
  exception when invalid_sql_statement_name then  -- not prepared on this connection yet
    if (select count(*) from pg_catalog.pg_prepared_statements
        where from_sql and name like 'sl\_%') >= 200 then
      for kept in
        select name from pg_catalog.pg_prepared_statements where from_sql and name like 'sl\_%'
      loop
        execute pg_catalog.format('deallocate %I', kept);
      end loop;
    end if;
    execute pg_catalog.format('prepare %I(jsonb) as %s', statement_name, p_query);
    execute pg_catalog.format('execute %I(%L)', statement_name, p_args) into result;
  end;
  return result;
end
$$;

revoke all on function scriptlabs_private.read_statement(text, text, uuid, uuid, text, jsonb)
  from public;
grant execute on function scriptlabs_private.read_statement(text, text, uuid, uuid, text, jsonb)
  to authenticator;
comment on function scriptlabs_private.read_statement(text, text, uuid, uuid, text, jsonb) is
  'One read-only operation in one statement: read-only, session check, role and claims '
  '(transaction-local), then the query (prepared once per connection) with its JSON array '
  'of arguments.';
