-- 007_sessions: refresh tokens as one family per session, and the check that makes sign-out
-- take effect at once.
--
-- A session (public.user_sessions) holds any number of refresh tokens (public.refresh_tokens),
-- each stored only as the SHA-256 hash of its secret. Using a token rotates it: it is marked
-- rotated_at and a child is issued. Presenting a rotated token again within the reuse interval
-- (REFRESH_REUSE_INTERVAL, for clients that race their refreshes) issues a sibling; later, it
-- is taken as a stolen token and the whole session is revoked. Rows replace the single
-- refresh_token_hash / previous_refresh_token_hash pair of 003, which could keep only one
-- token of a race alive.
--
-- scriptlabs_private holds functions for the API's login role (authenticator) itself, never
-- callable under a request role (anon, authenticated, service_role): the live-session check,
-- and later the mail outbox and rate limits.

create schema if not exists scriptlabs_private;
revoke all on schema scriptlabs_private from public;
grant usage on schema scriptlabs_private to authenticator;
comment on schema scriptlabs_private is
  'Functions for the API''s login role only; no request role can use this schema.';

alter table public.user_sessions
  drop column if exists refresh_token_hash,
  drop column if exists previous_refresh_token_hash,
  drop column if exists rotated_at;

create table if not exists public.refresh_tokens (
  user_id uuid not null,
  session_id uuid not null,
  token_hash bytea not null,
  parent_hash bytea,
  created_at timestamptz not null default now(),
  rotated_at timestamptz,
  constraint refresh_tokens_pkey primary key (user_id, session_id, token_hash),
  constraint refresh_tokens_session_fkey foreign key (user_id, session_id)
    references public.user_sessions (user_id, id) on delete cascade
);
alter table public.refresh_tokens enable row level security;
revoke all on public.refresh_tokens from public, anon, authenticated;
grant all on public.refresh_tokens to service_role;

comment on table public.refresh_tokens is
  'Refresh tokens of a session, by the SHA-256 hash of their secret (the token itself is never '
  'stored). Readable by no request role but service_role, which the sign-in flows switch to.';
comment on column public.refresh_tokens.rotated_at is
  'When the token was used (and a child issued); replayed later than the reuse interval, it '
  'revokes the session.';
comment on column public.refresh_tokens.parent_hash is 'The token this one replaced.';

-- The caller may end its own sessions (signOut, revokeSession) under RLS: only revoked_at.
grant update (revoked_at) on public.user_sessions to authenticated;
drop policy if exists user_sessions_update_own on public.user_sessions;
create policy user_sessions_update_own on public.user_sessions
  for update to authenticated
  using (user_id = (select auth.uid()))
  with check (user_id = (select auth.uid()));
comment on policy user_sessions_update_own on public.user_sessions is
  'A user may end (set revoked_at on) its own sessions only.';

create or replace function scriptlabs_private.session_is_live(p_user_id uuid, p_session_id uuid)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select 1
    from public.user_sessions s
    where s.user_id = p_user_id
      and s.id = p_session_id
      and s.revoked_at is null
      and s.expires_at > now()
  )
$$;
revoke all on function scriptlabs_private.session_is_live(uuid, uuid) from public;
grant execute on function scriptlabs_private.session_is_live(uuid, uuid) to authenticator;
comment on function scriptlabs_private.session_is_live(uuid, uuid) is
  'Whether an access token''s session is still live. Called in the set-up statement of each '
  'request, as authenticator, before the role switch: no request role may call it, so it '
  'takes the ids as arguments (they come from a verified token).';
