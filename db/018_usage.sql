-- 018_usage: what `scriptlabs report` reads, and the autovacuum settings of public.labs.
--
--   scriptlabs_private.search_usage      per day: searches, and those that found nothing;
--                                        counts only (no query text, no user)
--   scriptlabs_private.add_search_usage  adds a batch of per-day counts (the API's workers
--                                        count searches in the process and flush every few
--                                        seconds: no write on the search path)
--   scriptlabs_private.active_days       per day, the users that signed in or refreshed a
--                                        session: one row per user and day, upserted by a
--                                        trigger on the session writes sign-in and refresh
--                                        make anyway (user_sessions.last_activity keeps only
--                                        the last one)
--
-- Autovacuum on public.labs: by default a table is vacuumed once 20% of its rows are dead, so
-- a user who deletes 200,000 recent labs of a million-row table leaves their dead index
-- entries at the head of labs_user_created_at_idx for hours, and every first page that walks
-- them reads hundreds of buffers instead of a few (bench/RESULTS.md). Here a vacuum starts at
-- 1,000 dead rows plus 1% of the table, and statistics are renewed at 1,000 changed rows
-- plus 2%.

create table if not exists scriptlabs_private.search_usage (
  day date primary key,
  searches bigint not null default 0 check (searches >= 0),
  empty_searches bigint not null default 0 check (empty_searches between 0 and searches)
);

comment on table scriptlabs_private.search_usage is
  'Per UTC day: searchLabs calls counted (first pages of a non-blank query) and those that '
  'found nothing. Counts only; flushed in batches by the API.';

create or replace function scriptlabs_private.add_search_usage(
  p_days date[], p_searches bigint[], p_empty bigint[]
) returns void
language sql
security definer
set search_path = ''
as $$
  insert into scriptlabs_private.search_usage as u (day, searches, empty_searches)
  select d.day, d.searches, d.empty
  from unnest(p_days, p_searches, p_empty) as d (day, searches, empty)
  where d.day is not null and d.searches > 0 and d.empty between 0 and d.searches
  on conflict (day) do update
    set searches = u.searches + excluded.searches,
        empty_searches = u.empty_searches + excluded.empty_searches;
$$;

revoke all on function scriptlabs_private.add_search_usage(date[], bigint[], bigint[])
  from public, anon, authenticated, service_role;
grant execute on function scriptlabs_private.add_search_usage(date[], bigint[], bigint[])
  to authenticator;

create table if not exists scriptlabs_private.active_days (
  day date not null,
  user_id uuid not null references auth.users (id) on delete cascade,
  -- per-user keys lead with user_id, as every per-user table's (docs/scale-out.md); the
  -- report reads by day, through the index below
  constraint active_days_pkey primary key (user_id, day)
);

create index if not exists active_days_day_idx on scriptlabs_private.active_days (day);

comment on table scriptlabs_private.active_days is
  'The days (UTC) each user signed in or refreshed a session; deleted with the user.';

create or replace function scriptlabs_private.note_active_day()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into scriptlabs_private.active_days (day, user_id)
  values ((new.last_activity at time zone 'UTC')::date, new.user_id)
  on conflict do nothing;
  return null;
end
$$;

revoke all on function scriptlabs_private.note_active_day() from public;

drop trigger if exists user_sessions_note_active_day on public.user_sessions;
create trigger user_sessions_note_active_day
  after insert or update of last_activity on public.user_sessions
  for each row execute function scriptlabs_private.note_active_day();

alter table public.labs set (
  autovacuum_vacuum_threshold = 1000,
  autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_analyze_threshold = 1000,
  autovacuum_analyze_scale_factor = 0.02
);
