-- 005_policies: who may touch the tables of 003_tables: grants and row level security
-- policies for the request roles.
--
--   labs                   authenticated: select, insert, update, delete of its own rows.
--   user_sessions          authenticated: select of its own rows, without the token hashes
--                          (column grant); changes go through service_role.
--   password_reset_tokens  no request role at all; only service_role.
--   anon                   nothing on any of them.
--   service_role           everything; it bypasses RLS.
--
-- Everything is revoked first, from PUBLIC and from the request roles by name: on Supabase,
-- default privileges grant ALL on every new table in public to anon and authenticated, and a
-- table-wide revoke also drops column grants, so running this file again leaves exactly the
-- grants below. Policies are dropped and created again for the same reason (there is no
-- "create policy if not exists"). They call (select auth.uid()), never bare auth.uid(): the
-- sub-select is evaluated once per statement instead of once per row.

revoke all on public.labs, public.user_sessions, public.password_reset_tokens
  from public, anon, authenticated, service_role;

grant select, insert, update, delete on public.labs to authenticated;
grant select (user_id, id, created_at, last_activity, expires_at, revoked_at, user_agent, ip_address)
  on public.user_sessions to authenticated;
grant all on public.labs, public.user_sessions, public.password_reset_tokens to service_role;

drop policy if exists labs_select_own on public.labs;
create policy labs_select_own on public.labs
  for select
  to authenticated
  using (user_id = (select auth.uid()));

drop policy if exists labs_insert_own on public.labs;
create policy labs_insert_own on public.labs
  for insert
  to authenticated
  with check (user_id = (select auth.uid()));

drop policy if exists labs_update_own on public.labs;
create policy labs_update_own on public.labs
  for update
  to authenticated
  using (user_id = (select auth.uid()))
  with check (user_id = (select auth.uid()));

drop policy if exists labs_delete_own on public.labs;
create policy labs_delete_own on public.labs
  for delete
  to authenticated
  using (user_id = (select auth.uid()));

drop policy if exists user_sessions_select_own on public.user_sessions;
create policy user_sessions_select_own on public.user_sessions
  for select
  to authenticated
  using (user_id = (select auth.uid()));

-- password_reset_tokens: RLS enabled and no policy, so even a grant made by mistake would
-- show a request role no row.

comment on policy labs_select_own on public.labs is 'A user reads only its own labs.';
comment on policy labs_insert_own on public.labs is 'A user adds labs only for itself.';
comment on policy labs_update_own on public.labs is
  'A user changes only its own labs, and cannot hand one to someone else.';
comment on policy labs_delete_own on public.labs is 'A user deletes only its own labs.';
comment on policy user_sessions_select_own on public.user_sessions is
  'A user lists only its own sessions (the token hash columns are not granted).';
