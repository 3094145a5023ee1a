-- 001_roles: the database roles of the API, as PostgREST and Supabase have them.
--
--   anon           requests without a token (NOLOGIN)
--   authenticated  requests with a valid access token (NOLOGIN)
--   service_role   the API's own bookkeeping: sessions, reset tokens, rate limits
--                  (NOLOGIN, BYPASSRLS)
--   authenticator  the role the API logs in as (LOGIN, NOINHERIT): it holds no
--                  privilege of its own and switches to one of the three above with
--                  set_config('role', ..., true) at the start of each transaction.
--
-- Roles are created only when missing, so the file also applies to a Supabase project,
-- where all four exist already (and where creating a BYPASSRLS role would need a
-- superuser). Its password, if any, is set by `scriptlabs db migrate`, never here.
-- Usage on schema auth is granted in 002_auth, which owns that schema.

-- Comments are written only on roles created here: on Supabase they belong to others.
do $$
begin
  if not exists (select from pg_catalog.pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
    comment on role anon is 'Requests without an access token.';
  end if;
  if not exists (select from pg_catalog.pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
    comment on role authenticated is
      'Requests carrying a valid access token; RLS limits them to their own rows.';
  end if;
  if not exists (select from pg_catalog.pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
    comment on role service_role is
      'The API''s own bookkeeping (sessions, reset tokens); bypasses RLS.';
  end if;
  if not exists (select from pg_catalog.pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
    comment on role authenticator is
      'Login role of the API: holds nothing itself, switches to anon, authenticated '
      'or service_role for each transaction.';
  end if;
end
$$;

-- Memberships are granted only when missing: granting again would need the admin option
-- on roles that, on Supabase, someone else owns.
do $$
declare
  r text;
begin
  foreach r in array array['anon', 'authenticated', 'service_role'] loop
    if not pg_catalog.pg_has_role('authenticator', r, 'member') then
      execute format('grant %I to authenticator', r);
    end if;
  end loop;
end
$$;

grant usage on schema public to anon, authenticated, service_role;

