-- 019_replica_writes: who wrote lately, so that a caller reads their own writes while reads
-- go to a streaming replica (DATABASE_REPLICA_URL, scriptlabs.db.replica).
--
-- A mutation that wrote, by a signed-in caller, stamps the caller's row in its own
-- transaction, just before its commit (note_write). Before a read is sent to the replica,
-- the worker asks the primary (wrote_within, one index probe) whether the caller wrote within
-- REPLICA_READ_AFTER_WRITE seconds: if so the read runs on the primary. The marker lives in
-- the primary, so every worker sees it the moment the write commits.
--
-- One row per user who ever wrote (an upsert per writing operation). Only the API's login
-- role (authenticator) can read or stamp it; no request role can reach it.

create table if not exists scriptlabs_private.recent_writes (
  user_id uuid not null,
  written_at timestamptz not null,
  constraint recent_writes_pkey primary key (user_id)
);
alter table scriptlabs_private.recent_writes enable row level security;
revoke all on scriptlabs_private.recent_writes from public, anon, authenticated, service_role;
comment on table scriptlabs_private.recent_writes is
  'When each user last committed a write through the API: reads within '
  'REPLICA_READ_AFTER_WRITE seconds of it go to the primary, not the replica.';

create or replace function scriptlabs_private.note_write(p_user_id uuid)
returns void
language sql
volatile
security definer
set search_path = ''
as $$
  insert into scriptlabs_private.recent_writes (user_id, written_at)
  values (p_user_id, pg_catalog.clock_timestamp())
  on conflict (user_id) do update set written_at = excluded.written_at
$$;
revoke all on function scriptlabs_private.note_write(uuid) from public;
grant execute on function scriptlabs_private.note_write(uuid) to authenticator;
comment on function scriptlabs_private.note_write(uuid) is
  'Stamps a user as having written now: called by the API, as authenticator, in a writing '
  'mutation''s transaction just before its commit (clock time, not the transaction''s start).';

create or replace function scriptlabs_private.wrote_within(p_user_id uuid, p_seconds float8)
returns float8
language sql
stable
security definer
set search_path = ''
as $$
  select extract(epoch from w.written_at + pg_catalog.make_interval(secs => p_seconds)
                 - pg_catalog.clock_timestamp())::float8
  from scriptlabs_private.recent_writes w
  where w.user_id = p_user_id
    and w.written_at > pg_catalog.clock_timestamp() - pg_catalog.make_interval(secs => p_seconds)
$$;
revoke all on function scriptlabs_private.wrote_within(uuid, float8) from public;
grant execute on function scriptlabs_private.wrote_within(uuid, float8) to authenticator;
comment on function scriptlabs_private.wrote_within(uuid, float8) is
  'Seconds left of the read-your-writes window of a user who wrote within p_seconds; null '
  'when they did not. Called by the API, as authenticator, before a read goes to the replica.';
