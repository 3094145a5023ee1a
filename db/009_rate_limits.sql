-- 009_rate_limits: the attempts that the auth rate limits count (failed sign-ins per email and
-- per client address, sign-ups and password reset requests per address), kept in the
-- database so the limits hold across workers and restarts.
--
-- An attempt is recorded before the work it guards, in its own short transaction, and only
-- if it is let through: a sign-in that succeeds takes its rows back (clear_attempts,
-- drop_attempts) in the transaction that signs it in, so what stays counted is failures,
-- including sign-ins still in flight. Counting and recording happen under one advisory lock
-- per (kind, key), so parallel requests cannot all slip under a limit at once.
--
-- Keys are SHA-256 digests made by the API (of a lower-cased email, or of a client address or
-- IPv6 /64 network): no email of a non-user is stored in clear. Only the API's login role
-- (authenticator) can call these functions; no request role can reach the table.

create table if not exists scriptlabs_private.auth_attempts (
  id bigint generated always as identity,
  kind text not null,
  key bytea not null,
  at timestamptz not null default now(),
  constraint auth_attempts_pkey primary key (id),
  constraint auth_attempts_key_check check (octet_length(key) = 32)
);
alter table scriptlabs_private.auth_attempts enable row level security;
revoke all on scriptlabs_private.auth_attempts from public, anon, authenticated, service_role;

create index if not exists auth_attempts_kind_key_at_idx
  on scriptlabs_private.auth_attempts (kind, key, at);
create index if not exists auth_attempts_at_idx
  on scriptlabs_private.auth_attempts (at);

comment on table scriptlabs_private.auth_attempts is
  'Attempts counted by the auth rate limits, one row per attempt and key. Read and written '
  'only through the scriptlabs_private functions; rows older than a day are pruned.';
comment on column scriptlabs_private.auth_attempts.kind is
  'What is counted: signin_email, signin_ip (failed sign-ins), signup_ip, reset_ip.';
comment on column scriptlabs_private.auth_attempts.key is
  'SHA-256 of the lower-cased email or of the client address (IPv6: its /64 network).';

create or replace function scriptlabs_private.prune_attempts()
returns bigint
language sql
volatile
security definer
set search_path = ''
as $$
  with gone as (
    delete from scriptlabs_private.auth_attempts a
    where a.id in (
      select o.id
      from scriptlabs_private.auth_attempts o
      where o.at < pg_catalog.now() - interval '1 day'
      for update skip locked
    )
    returning 1
  )
  select pg_catalog.count(*) from gone
$$;
revoke all on function scriptlabs_private.prune_attempts() from public;
grant execute on function scriptlabs_private.prune_attempts() to authenticator;
comment on function scriptlabs_private.prune_attempts() is
  'Deletes attempts older than a day (longer than any window) and returns how many. '
  'take_attempt calls it now and then; a clean-up job may call it too.';

create or replace function scriptlabs_private.take_attempt(
  p_kinds text[],
  p_keys bytea[],
  p_refuse_at int[],
  p_window_seconds int
)
returns table (attempt_kind text, attempt_number int, retry_after int, attempt_id bigint)
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '5s'
as $$
declare
  v_since timestamptz := pg_catalog.now() - pg_catalog.make_interval(secs => p_window_seconds);
  v_count int;
  v_free_at timestamptz;
  v_numbers int[] := '{}';
  v_waits int[] := '{}';
  v_refused boolean := false;
  v_lock record;
begin
  if pg_catalog.cardinality(p_kinds) is distinct from pg_catalog.cardinality(p_keys)
     or pg_catalog.cardinality(p_kinds) is distinct from pg_catalog.cardinality(p_refuse_at) then
    raise exception 'take_attempt: kinds, keys and limits must have the same length';
  end if;

  -- one lock per (kind, key), taken in one global order, so two callers never deadlock
  for v_lock in
    select distinct pg_catalog.hashtext(k.kind || ':' || pg_catalog.encode(k.key, 'hex')) as id
    from rows from (pg_catalog.unnest(p_kinds), pg_catalog.unnest(p_keys)) as k (kind, key)
    order by 1
  loop
    perform pg_catalog.pg_advisory_xact_lock(9009, v_lock.id);
  end loop;

  for i in 1 .. pg_catalog.cardinality(p_kinds) loop
    -- rows a sign-in's transaction is clearing are left to it (never wait for a request)
    delete from scriptlabs_private.auth_attempts a
    where a.id in (
      select o.id
      from scriptlabs_private.auth_attempts o
      where o.kind = p_kinds[i] and o.key = p_keys[i] and o.at <= v_since
      for update skip locked
    );

    select pg_catalog.count(*)::int into v_count
    from scriptlabs_private.auth_attempts a
    where a.kind = p_kinds[i] and a.key = p_keys[i] and a.at > v_since;

    v_numbers := v_numbers || (v_count + 1);
    if v_count + 1 >= p_refuse_at[i] then
      -- refused: free again once enough attempts have left the window that this one would
      -- be number p_refuse_at - 1
      v_refused := true;
      select a.at into v_free_at
      from scriptlabs_private.auth_attempts a
      where a.kind = p_kinds[i] and a.key = p_keys[i] and a.at > v_since
      order by a.at
      offset v_count + 1 - p_refuse_at[i]
      limit 1;
      v_waits := v_waits || greatest(
        1,
        pg_catalog.ceil(extract(epoch from v_free_at - v_since))::int
      );
    else
      v_waits := v_waits || 0;
    end if;
  end loop;

  if pg_catalog.random() < 0.01 then
    perform scriptlabs_private.prune_attempts();
  end if;

  for i in 1 .. pg_catalog.cardinality(p_kinds) loop
    attempt_kind := p_kinds[i];
    attempt_number := v_numbers[i];
    retry_after := v_waits[i];
    attempt_id := null;
    if not v_refused then
      insert into scriptlabs_private.auth_attempts (kind, key)
      values (p_kinds[i], p_keys[i])
      returning id into attempt_id;
    end if;
    return next;
  end loop;
end
$$;
revoke all on function scriptlabs_private.take_attempt(text[], bytea[], int[], int) from public;
grant execute on function scriptlabs_private.take_attempt(text[], bytea[], int[], int)
  to authenticator;
comment on function scriptlabs_private.take_attempt(text[], bytea[], int[], int) is
  'Counts the attempts of each (kind, key) within the last p_window_seconds; if this one would '
  'be number p_refuse_at[i] or more for any key, records nothing and returns retry_after > 0 '
  '(seconds until it would be let through) for that key; otherwise records it for every key. '
  'One row per key: its kind, this attempt''s number in the window, retry_after (0 when let '
  'through) and the id of the row recorded (null when refused).';

create or replace function scriptlabs_private.clear_attempts(p_kind text, p_key bytea)
returns void
language sql
volatile
security definer
set search_path = ''
as $$
  delete from scriptlabs_private.auth_attempts a
  where a.kind = p_kind and a.key = p_key
$$;
revoke all on function scriptlabs_private.clear_attempts(text, bytea) from public;
grant execute on function scriptlabs_private.clear_attempts(text, bytea) to authenticator;
comment on function scriptlabs_private.clear_attempts(text, bytea) is
  'Forgets every attempt of one (kind, key): a successful sign-in clears its email''s failures.';

create or replace function scriptlabs_private.drop_attempts(p_ids bigint[])
returns void
language sql
volatile
security definer
set search_path = ''
as $$
  delete from scriptlabs_private.auth_attempts a
  where a.id = any (p_ids)
$$;
revoke all on function scriptlabs_private.drop_attempts(bigint[]) from public;
grant execute on function scriptlabs_private.drop_attempts(bigint[]) to authenticator;
comment on function scriptlabs_private.drop_attempts(bigint[]) is
  'Takes back the rows take_attempt recorded for an attempt that turned out not to be a '
  'failure (a successful sign-in no longer counts against its address).';
