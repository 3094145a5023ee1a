-- 002_auth: a local stand-in for Supabase's auth schema: auth.users and the claim
-- functions auth.uid(), auth.role(), auth.email(), auth.jwt().
--
-- The whole file is one DO block that does nothing when auth.users exists already. On a
-- Supabase project the auth schema belongs to Supabase Auth (GoTrue): we must neither
-- replace its functions nor change its grants, so the test is made once, up front, and
-- covers everything below; the same files then apply unchanged to a Supabase project and
-- to a bare PostgreSQL. Running it twice on a bare PostgreSQL is equally a no-op. Schema
-- changes to the stand-in go into a new numbered file, guarded the same way.
--
-- The columns are the subset of Supabase's auth.users that the API uses, with the same
-- names and types, so the API's queries run on both.

do $auth$
begin
  if pg_catalog.to_regclass('auth.users') is not null then
    raise notice 'auth.users exists: the auth schema is managed elsewhere, left as it is';
    return;
  end if;

  create schema if not exists auth;
  comment on schema auth is
    'Local stand-in for Supabase Auth: users and the request claim functions.';
  grant usage on schema auth to anon, authenticated, service_role;

  create table auth.users (
    id uuid primary key default gen_random_uuid(),
    email text not null,
    encrypted_password text,
    email_confirmed_at timestamptz,
    last_sign_in_at timestamptz,
    raw_app_meta_data jsonb not null default '{}',
    raw_user_meta_data jsonb not null default '{}',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
  );
  -- Named users_email_key, as Supabase's own unique key on email: the API's error map
  -- turns a unique violation on it into CONFLICT. lower(): emails compare case-insensitively.
  create unique index users_email_key on auth.users (lower(email));

  comment on table auth.users is
    'Accounts. Local stand-in for Supabase''s auth.users, with the columns the API uses.';
  comment on column auth.users.email is
    'Trimmed as entered; unique case-insensitively (index users_email_key).';
  comment on column auth.users.encrypted_password is
    'argon2id hash (PHC string). Readable by service_role and the owner only.';
  comment on column auth.users.last_sign_in_at is 'Time of the last successful sign-in.';

  -- The claim functions, as Supabase defines them: the claims come from the
  -- transaction-local setting request.jwt.claims (PostgREST >= 9), or from the older
  -- one-setting-per-claim form request.jwt.claim.<name>.
  create or replace function auth.uid() returns uuid
  language sql stable
  as $fn$
    select coalesce(
      nullif(pg_catalog.current_setting('request.jwt.claim.sub', true), ''),
      (nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
    )::uuid
  $fn$;
  comment on function auth.uid() is
    'The caller''s user id (claim sub), null without a token. '
    'In policies write (select auth.uid()) so it runs once per statement.';

  create or replace function auth.role() returns text
  language sql stable
  as $fn$
    select coalesce(
      nullif(pg_catalog.current_setting('request.jwt.claim.role', true), ''),
      (nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
    )::text
  $fn$;
  comment on function auth.role() is 'The caller''s role claim (anon, authenticated, ...).';

  create or replace function auth.email() returns text
  language sql stable
  as $fn$
    select coalesce(
      nullif(pg_catalog.current_setting('request.jwt.claim.email', true), ''),
      (nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
    )::text
  $fn$;
  comment on function auth.email() is 'The caller''s email claim.';

  create or replace function auth.jwt() returns jsonb
  language sql stable
  as $fn$
    select coalesce(
      nullif(pg_catalog.current_setting('request.jwt.claim', true), ''),
      nullif(pg_catalog.current_setting('request.jwt.claims', true), '')
    )::jsonb
  $fn$;
  comment on function auth.jwt() is 'All claims of the request''s token; null without one.';

  -- Request roles see a few harmless columns, and authenticated only its own row.
  -- Nobody but service_role and the owner reads encrypted_password.
  alter table auth.users enable row level security;
  revoke all on auth.users from public, anon, authenticated, service_role;
  grant select (id, email, created_at, last_sign_in_at) on auth.users to anon, authenticated;
  grant all on auth.users to service_role;
  create policy users_select_own on auth.users
    for select
    to authenticated
    using (id = (select auth.uid()));
end
$auth$;
