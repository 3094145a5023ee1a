-- 012_read_statement: a read-only GraphQL operation in one statement.
--
-- A planned read (`labs`, `lab`) used to cost four round trips: BEGIN READ ONLY, the set-up
-- statement (role, claims, the live-session check), the query, COMMIT. This function does the
-- same work inside the statement's own implicit transaction, in the same order: the
-- transaction is made read-only, the token's session is checked, role and claims are set with
-- set_config(..., true) (transaction-local: PgBouncer transaction pooling stays safe), and only
-- then is the query planned and run, so Row Level Security applies under the request's role
-- exactly as in the long form. The transaction ends with the statement.
--
-- security invoker: it runs as the login role and can do nothing that role cannot; only the
-- login role may call it (the request roles have no usage on scriptlabs_private).
-- The query text is the API's own (parameterised; its values come in p_args, a JSON array,
-- never in the text).

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
  execute p_query into result using p_args;
  return result;
end
$$;

revoke all on function scriptlabs_private.read_statement(text, text, uuid, uuid, text, jsonb)
  from public;
grant execute on function scriptlabs_private.read_statement(text, text, uuid, uuid, text, jsonb)
  to authenticator;
comment on function scriptlabs_private.read_statement(text, text, uuid, uuid, text, jsonb) is
  'One read-only operation in one statement: read-only, session check, role and claims '
  '(transaction-local), then the query with its JSON array of arguments.';
