-- 010_session_check_plpgsql: the live-session check of every request, in plpgsql.
--
-- As `language sql` with `security definer` and a pinned search_path it cannot be inlined, so
-- its body was parsed and planned again at every call: the set-up statement took 156-166 us
-- instead of 71 us (pgbench, one client). plpgsql keeps the statement's plan per connection
-- (88-100 us). Same signature, same grants.

create or replace function scriptlabs_private.session_is_live(p_user_id uuid, p_session_id uuid)
returns boolean
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return exists (
    select 1
    from public.user_sessions s
    where s.user_id = p_user_id
      and s.id = p_session_id
      and s.revoked_at is null
      and s.expires_at > now()
  );
end
$$;
