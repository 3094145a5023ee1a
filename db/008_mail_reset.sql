-- 008_mail_reset: password reset and the mail outbox that carries its link.
--
--   scriptlabs_private.mail_outbox            mail waiting for the background sender
--   scriptlabs_private.enqueue_mail()         queue one message (and wake the senders)
--   scriptlabs_private.claim_mail()           a sender's batch: leased, skip locked
--   scriptlabs_private.mail_sent() / mail_failed()
--   scriptlabs_private.reset_user_id()        the account an email names, if any
--   scriptlabs_private.request_password_reset()
--   scriptlabs_private.reset_token_status()
--   scriptlabs_private.reset_password()
--   public.cleanup_expired_tokens()           deletes expired and used reset tokens (and
--                                             old delivered mail, long-dead sessions)
--
-- Everything in scriptlabs_private is for the API's login role (authenticator) only: the
-- API switches its request transaction back to it (set_config('role', 'none', true)) for
-- these calls, so no request role (anon, authenticated, service_role) can read a token hash,
-- a queued link or another user's address, whatever SQL it sends. Every function here is
-- security definer with search_path pinned to '' and fully qualified names.
--
-- Mail is queued in the transaction of the change that causes it (an outbox): a rolled-back
-- request sends nothing, and an SMTP outage or a restart delays mail but loses none. A
-- message's bodies (which hold the reset link) are deleted once it is delivered.

-- The reset tokens are now reached only through the functions below: service_role, which
-- the sign-in flows switch to, keeps no access to them either (005 granted it everything).
revoke all on public.password_reset_tokens from public, anon, authenticated, service_role;
comment on table public.password_reset_tokens is
  'Password reset tokens, stored only as hashes; no request role may read them (only the '
  'security definer functions of scriptlabs_private do). A token names its row (user_id, id) '
  'and carries a secret whose SHA-256 hash is token_hash.';

create table if not exists scriptlabs_private.mail_outbox (
  id bigint generated always as identity primary key,
  user_id uuid references auth.users (id) on delete cascade,
  kind text not null,
  to_address text not null,
  subject text not null,
  body_text text,
  body_html text,
  created_at timestamptz not null default now(),
  available_at timestamptz not null default now(),
  expires_at timestamptz,
  attempts integer not null default 0,
  last_error text,
  locked_until timestamptz,
  locked_by text,
  sent_at timestamptz,
  failed_at timestamptz,
  constraint mail_outbox_body_check
    check (sent_at is not null or failed_at is not null or body_text is not null)
);

alter table scriptlabs_private.mail_outbox enable row level security;
revoke all on scriptlabs_private.mail_outbox from public, anon, authenticated, service_role;

-- what the senders look for: mail not yet delivered nor given up, by due time
create index if not exists mail_outbox_due_idx
  on scriptlabs_private.mail_outbox (available_at)
  where sent_at is null and failed_at is null;
-- the one-mail-per-60-seconds check of request_password_reset
create index if not exists mail_outbox_user_idx
  on scriptlabs_private.mail_outbox (user_id, kind, created_at);

comment on table scriptlabs_private.mail_outbox is
  'Mail waiting to be sent, written in the transaction that causes it and sent by the API''s '
  'background sender (at least once only if a sender dies mid-send). Readable by no request '
  'role. Bodies are deleted once a message is delivered (or given up).';
comment on column scriptlabs_private.mail_outbox.user_id is
  'The account the message is about (for per-account limits); null for other mail.';
comment on column scriptlabs_private.mail_outbox.kind is 'What the mail is: password_reset, ...';
comment on column scriptlabs_private.mail_outbox.available_at is
  'Not sent before this time: the next attempt after a failure (back-off).';
comment on column scriptlabs_private.mail_outbox.expires_at is
  'Not worth sending after this time (a reset link that no longer works); null: never.';
comment on column scriptlabs_private.mail_outbox.attempts is 'Delivery attempts so far.';
comment on column scriptlabs_private.mail_outbox.locked_until is
  'Lease of the sender that claimed the message; once past, another sender may retry it.';
comment on column scriptlabs_private.mail_outbox.locked_by is 'The sender holding the lease.';
comment on column scriptlabs_private.mail_outbox.sent_at is
  'When the SMTP server accepted the message; its bodies are null from then on.';
comment on column scriptlabs_private.mail_outbox.failed_at is
  'When the message was given up (every recipient refused permanently).';

-- Outbox -------------------------------------------------------------------------------------

create or replace function scriptlabs_private.enqueue_mail(
  p_to_address text,
  p_subject text,
  p_body_text text,
  p_body_html text,
  p_kind text default 'notice',
  p_user_id uuid default null,
  p_expires_at timestamptz default null
)
returns bigint
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  v_id bigint;
begin
  insert into scriptlabs_private.mail_outbox
    (to_address, subject, body_text, body_html, kind, user_id, expires_at)
  values (p_to_address, p_subject, p_body_text, p_body_html, p_kind, p_user_id, p_expires_at)
  returning id into v_id;
  -- delivered at commit, so a sender never wakes for mail it cannot see yet
  perform pg_catalog.pg_notify('scriptlabs_mail', '');
  return v_id;
end
$$;

create or replace function scriptlabs_private.claim_mail(
  p_worker text, p_batch integer, p_lease_seconds integer
)
returns table (
  id bigint,
  to_address text,
  subject text,
  body_text text,
  body_html text,
  attempts integer
)
language sql
volatile
security definer
set search_path = ''
as $$
  -- skip locked: concurrent senders take disjoint batches; the lease keeps a claimed message
  -- from every other sender until it is marked, or until its sender is presumed dead
  with due as (
    select m.id
    from scriptlabs_private.mail_outbox m
    where m.sent_at is null
      and m.failed_at is null
      and m.available_at <= pg_catalog.now()
      and (m.locked_until is null or m.locked_until < pg_catalog.now())
      and (m.expires_at is null or m.expires_at > pg_catalog.now())
    order by m.available_at, m.id
    limit p_batch
    for update skip locked
  )
  update scriptlabs_private.mail_outbox m
  set locked_until = pg_catalog.now() + pg_catalog.make_interval(secs => p_lease_seconds),
      locked_by = p_worker,
      attempts = m.attempts + 1
  from due
  where m.id = due.id
  returning m.id, m.to_address, m.subject, m.body_text, m.body_html, m.attempts
$$;

create or replace function scriptlabs_private.mail_sent(p_id bigint)
returns void
language sql
volatile
security definer
set search_path = ''
as $$
  -- contract: a message's body is deleted once it has been delivered
  update scriptlabs_private.mail_outbox m
  set sent_at = pg_catalog.now(),
      body_text = null,
      body_html = null,
      last_error = null,
      locked_until = null
  where m.id = p_id
$$;

create or replace function scriptlabs_private.mail_failed(
  p_id bigint, p_error text, p_retry_seconds integer
)
returns void
language sql
volatile
security definer
set search_path = ''
as $$
  -- p_retry_seconds null: give up (the recipient was refused for good); bodies go too
  update scriptlabs_private.mail_outbox m
  set last_error = pg_catalog.left(p_error, 1000),
      locked_until = null,
      locked_by = null,
      available_at = pg_catalog.now()
        + pg_catalog.make_interval(secs => coalesce(p_retry_seconds, 0)),
      failed_at = case when p_retry_seconds is null then pg_catalog.now() end,
      body_text = case when p_retry_seconds is null then null else m.body_text end,
      body_html = case when p_retry_seconds is null then null else m.body_html end
  where m.id = p_id
    and m.sent_at is null
$$;

-- Password reset -----------------------------------------------------------------------------

create or replace function scriptlabs_private.reset_user_id(p_email text)
returns uuid
language sql
stable
security definer
set search_path = ''
as $$
  select u.id from auth.users u where pg_catalog.lower(u.email) = pg_catalog.lower(p_email)
$$;

create or replace function scriptlabs_private.request_password_reset(
  p_user_id uuid,
  p_token_id uuid,
  p_token_hash bytea,
  p_subject text,
  p_body_text text,
  p_body_html text,
  p_ip_address inet,
  p_user_agent text
)
returns void
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  v_email text;
  v_expires_at timestamptz := pg_catalog.now() + interval '1 hour';
begin
  -- The row lock makes concurrent requests for one account take turns, so the 60-second
  -- check below sees the other's mail. No account: nothing to do (the API answers true).
  select u.email into v_email
  from auth.users u
  where u.id = p_user_id
  for no key update;
  if not found then
    return;
  end if;

  -- contract: at most one email per address per 60 seconds
  if exists (
    select 1
    from scriptlabs_private.mail_outbox m
    where m.user_id = p_user_id
      and m.kind = 'password_reset'
      and m.created_at > pg_catalog.now() - interval '60 seconds'
  ) then
    return;
  end if;

  -- contract: a newer request invalidates older unused tokens
  delete from public.password_reset_tokens t
  where t.user_id = p_user_id
    and t.used_at is null;

  insert into public.password_reset_tokens
    (user_id, id, token_hash, expires_at, ip_address, user_agent)
  values (p_user_id, p_token_id, p_token_hash, v_expires_at, p_ip_address, p_user_agent);

  perform scriptlabs_private.enqueue_mail(
    v_email, p_subject, p_body_text, p_body_html, 'password_reset', p_user_id, v_expires_at
  );
end
$$;

create or replace function scriptlabs_private.reset_token_status(
  p_user_id uuid, p_token_id uuid, p_token_hash bytea
)
returns table (expires_at timestamptz, email text)
language sql
stable
security definer
set search_path = ''
as $$
  -- a row only for a token that can still be used
  select t.expires_at, u.email::text
  from public.password_reset_tokens t
  join auth.users u on u.id = t.user_id
  where t.user_id = p_user_id
    and t.id = p_token_id
    and t.token_hash = p_token_hash
    and t.used_at is null
    and t.expires_at > pg_catalog.now()
$$;

create or replace function scriptlabs_private.reset_password(
  p_user_id uuid, p_token_id uuid, p_token_hash bytea, p_password_hash text
)
returns table (id uuid, email text, created_at timestamptz, last_sign_in_at timestamptz)
language plpgsql
volatile
security definer
set search_path = ''
as $$
begin
  -- The update locks the token row and re-checks it after any concurrent use, so a token
  -- works once even when two requests race. Unknown, expired or used: no row, no change.
  update public.password_reset_tokens t
  set used_at = pg_catalog.now()
  where t.user_id = p_user_id
    and t.id = p_token_id
    and t.token_hash = p_token_hash
    and t.used_at is null
    and t.expires_at > pg_catalog.now();
  if not found then
    return;
  end if;

  -- the user's other outstanding links die with this one
  delete from public.password_reset_tokens t
  where t.user_id = p_user_id
    and t.used_at is null;

  -- contract: every existing session ends (refresh and access tokens alike)
  update public.user_sessions s
  set revoked_at = pg_catalog.now()
  where s.user_id = p_user_id
    and s.revoked_at is null;

  return query
  update auth.users u
  set encrypted_password = p_password_hash,
      last_sign_in_at = pg_catalog.now(),
      updated_at = pg_catalog.now()
  where u.id = p_user_id
  returning u.id, u.email::text, u.created_at, u.last_sign_in_at;
end
$$;

-- Grants: the login role only ----------------------------------------------------------------

do $$
declare
  f text;
begin
  foreach f in array array[
    'scriptlabs_private.enqueue_mail(text, text, text, text, text, uuid, timestamptz)',
    'scriptlabs_private.claim_mail(text, integer, integer)',
    'scriptlabs_private.mail_sent(bigint)',
    'scriptlabs_private.mail_failed(bigint, text, integer)',
    'scriptlabs_private.reset_user_id(text)',
    'scriptlabs_private.request_password_reset(uuid, uuid, bytea, text, text, text, inet, text)',
    'scriptlabs_private.reset_token_status(uuid, uuid, bytea)',
    'scriptlabs_private.reset_password(uuid, uuid, bytea, text)'
  ] loop
    execute format('revoke all on function %s from public, anon, authenticated, service_role', f);
    execute format('grant execute on function %s to authenticator', f);
  end loop;
end
$$;

comment on function scriptlabs_private.enqueue_mail(text, text, text, text, text, uuid, timestamptz)
  is 'Queue one message in the outbox and notify channel scriptlabs_mail; returns its id.';
comment on function scriptlabs_private.claim_mail(text, integer, integer) is
  'A sender''s next batch of due messages (at most p_batch), leased to p_worker for '
  'p_lease_seconds and counted as an attempt. Concurrent senders never get the same message.';
comment on function scriptlabs_private.mail_sent(bigint) is
  'Mark a message delivered and delete its bodies.';
comment on function scriptlabs_private.mail_failed(bigint, text, integer) is
  'Record a failed attempt and make the message due again in p_retry_seconds; with null, give '
  'it up and delete its bodies.';
comment on function scriptlabs_private.reset_user_id(text) is
  'The id of the account with this email (case-insensitive), or null.';
comment on function scriptlabs_private.request_password_reset(
  uuid, uuid, bytea, text, text, text, inet, text
) is
  'For an existing account with no reset mail in the last 60 seconds: drop its unused reset '
  'tokens, store the new token''s hash (valid 1 hour) and queue the mail. Otherwise nothing.';
comment on function scriptlabs_private.reset_token_status(uuid, uuid, bytea) is
  'Expiry and email of a reset token that can still be used; no row otherwise.';
comment on function scriptlabs_private.reset_password(uuid, uuid, bytea, text) is
  'Use a reset token: mark it used, set the password hash, revoke every session of the user '
  'and return the user; no row (and no change) for an unknown, expired or used token.';

-- Clean-up -----------------------------------------------------------------------------------

create or replace function public.cleanup_expired_tokens()
returns integer
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  v_count integer;
  v_total integer := 0;
begin
  -- contract: expired and used reset tokens go (used ones at once, whatever their age);
  -- unused, unexpired ones stay
  delete from public.password_reset_tokens t
  where t.expires_at <= pg_catalog.now()
     or t.used_at is not null;
  get diagnostics v_count = row_count;
  v_total := v_total + v_count;

  -- delivered or given-up mail after a day (kept that long for the 60-second limit and for
  -- inspection; its bodies are gone already), and undelivered mail that expired (a dead link)
  delete from scriptlabs_private.mail_outbox m
  where coalesce(m.sent_at, m.failed_at) < pg_catalog.now() - interval '1 day'
     or (m.sent_at is null and m.expires_at <= pg_catalog.now());
  get diagnostics v_count = row_count;
  v_total := v_total + v_count;

  -- sessions that ended (revoked or expired) more than 30 days ago, the default
  -- REFRESH_TOKEN_TTL; their refresh tokens go with them (on delete cascade)
  delete from public.user_sessions s
  where least(coalesce(s.revoked_at, 'infinity'), s.expires_at)
        < pg_catalog.now() - interval '30 days';
  get diagnostics v_count = row_count;
  return v_total + v_count;
end
$$;

revoke all on function public.cleanup_expired_tokens() from public, anon, authenticated;
grant execute on function public.cleanup_expired_tokens() to service_role, authenticator;
comment on function public.cleanup_expired_tokens() is
  'Deletes expired and used password reset tokens, delivered mail older than a day, expired '
  'undelivered mail, and sessions ended more than 30 days ago; returns the number of rows '
  'deleted. Run by `scriptlabs cleanup-tokens`, hourly by pg_cron when installed, else by the '
  'API itself.';

-- Where pg_cron is installed (Supabase has it), the database runs the clean-up hourly
-- itself; elsewhere the API's background task does. Any failure here (pg_cron too old,
-- no right to schedule) leaves the API's task in charge instead of failing the migration.
do $$
begin
  if exists (select from pg_catalog.pg_extension where extname = 'pg_cron') then
    perform cron.schedule(
      'scriptlabs-cleanup-tokens', '17 * * * *', 'select public.cleanup_expired_tokens()'
    );
  end if;
exception when others then
  raise notice 'pg_cron schedule skipped: %', sqlerrm;
end
$$;
