-- 013_lab_stats: each user's catalogue figures, kept current by triggers on public.labs, so
-- that labStats without a filter reads a handful of rows whatever the catalogue's size.
--
--   lab_totals           one row per user: labs by reading status, by rating 1 to 5, and the
--                        number of distinct authors and of distinct categories
--   lab_author_counts    labs per (user, author)
--   lab_category_counts  labs per (user, category); labs without a category are not counted
--
-- Only the trigger functions in scriptlabs_private write them, in the
-- transaction that changes public.labs, at the end of each statement: statement-level triggers
-- with transition tables, so an import of 1,000 labs sums its rows once and writes each figure
-- once. An update that changes nothing counted (title, notes, ...) changes no figure.
--
-- Concurrency. Before a request's statement writes to labs, it locks the caller's lab_totals
-- row (trigger labs_lock_totals), so the write transactions of one user take their turns
-- there, holding none of that user's labs or count rows while they wait: they queue instead of
-- deadlocking, whether over labs rows (updateLab X then Y against updateLab Y) or count rows.
-- Statements outside a request (the owner's: demo data, a user's deletion) lock each user's
-- totals row before its count rows, in user order, in the counting trigger itself.
-- Count rows that fall to zero are kept (n = 0) and read with n > 0: deleting them would race
-- with a transaction of the same user adding a lab by that author again.
--
-- Deleted users. Deleting a user from auth.users cascades to labs and to the three tables. The
-- labs triggers fire after the cascades, and write nothing for a user that no longer exists:
-- a decrement never brings back a row of a deleted user (nor violates its foreign key).
--
-- Access. authenticated reads its own rows only (RLS, (select auth.uid())); no request role
-- writes them. public.lab_stats() returns the caller's figures as JSON, for Supabase RPC.

create table if not exists public.lab_totals (
  user_id uuid not null references auth.users (id) on delete cascade,
  labs bigint not null default 0,
  labs_read bigint not null default 0,
  labs_reading bigint not null default 0,
  labs_to_read bigint not null default 0,
  rating_1 bigint not null default 0,
  rating_2 bigint not null default 0,
  rating_3 bigint not null default 0,
  rating_4 bigint not null default 0,
  rating_5 bigint not null default 0,
  authors bigint not null default 0,
  categories bigint not null default 0,
  constraint lab_totals_pkey primary key (user_id)
) with (fillfactor = 70);  -- rewritten at every change of its user: room for HOT updates

create table if not exists public.lab_author_counts (
  user_id uuid not null references auth.users (id) on delete cascade,
  author varchar(300) not null,
  n bigint not null,
  constraint lab_author_counts_pkey primary key (user_id, author)
);

create table if not exists public.lab_category_counts (
  user_id uuid not null references auth.users (id) on delete cascade,
  category varchar(100) not null,
  n bigint not null,
  constraint lab_category_counts_pkey primary key (user_id, category)
);

alter table public.lab_totals enable row level security;
alter table public.lab_author_counts enable row level security;
alter table public.lab_category_counts enable row level security;

comment on table public.lab_totals is
  'Each user''s catalogue figures (public.labs), kept by the triggers labs_count_*. No row: '
  'no labs. Read by labStats and public.lab_stats(); no request role writes it.';
comment on column public.lab_totals.labs is 'Labs of the user.';
comment on column public.lab_totals.labs_read is 'Labs with reading_status read.';
comment on column public.lab_totals.labs_reading is 'Labs with reading_status reading.';
comment on column public.lab_totals.labs_to_read is 'Labs with reading_status to_read.';
comment on column public.lab_totals.rating_1 is
  'Labs rated 1 (rating_2 to rating_5 alike); unrated labs are in none of them.';
comment on column public.lab_totals.authors is
  'Distinct authors: rows of lab_author_counts of the user with n > 0.';
comment on column public.lab_totals.categories is
  'Distinct categories: rows of lab_category_counts of the user with n > 0.';
comment on table public.lab_author_counts is
  'Labs per author of each user, kept by the triggers labs_count_*. A row at n = 0 is an '
  'author with no labs left: kept, read with n > 0.';
comment on table public.lab_category_counts is
  'Labs per category of each user (labs without a category are not counted), kept by the '
  'triggers labs_count_*. A row at n = 0 is kept, read with n > 0.';

-- Read-only for the request roles, and only their own rows (see 005_policies on why
-- everything is revoked first).
revoke all on public.lab_totals, public.lab_author_counts, public.lab_category_counts
  from public, anon, authenticated, service_role;
grant select on public.lab_totals, public.lab_author_counts, public.lab_category_counts
  to authenticated, service_role;

drop policy if exists lab_totals_select_own on public.lab_totals;
create policy lab_totals_select_own on public.lab_totals
  for select
  to authenticated
  using (user_id = (select auth.uid()));

drop policy if exists lab_author_counts_select_own on public.lab_author_counts;
create policy lab_author_counts_select_own on public.lab_author_counts
  for select
  to authenticated
  using (user_id = (select auth.uid()));

drop policy if exists lab_category_counts_select_own on public.lab_category_counts;
create policy lab_category_counts_select_own on public.lab_category_counts
  for select
  to authenticated
  using (user_id = (select auth.uid()));

comment on policy lab_totals_select_own on public.lab_totals is
  'A user reads only its own figures.';
comment on policy lab_author_counts_select_own on public.lab_author_counts is
  'A user reads only its own author counts.';
comment on policy lab_category_counts_select_own on public.lab_category_counts is
  'A user reads only its own category counts.';

-- One changed group of labs: +n labs or -n labs with these counted values.
do $$
begin
  if pg_catalog.to_regtype('scriptlabs_private.lab_count_change') is null then
    create type scriptlabs_private.lab_count_change as (
      user_id uuid,
      reading_status text,
      rating integer,
      author text,
      category text,
      n integer
    );
  end if;
end
$$;

comment on type scriptlabs_private.lab_count_change is
  'A change to the figures: n labs (negative: removed) of one user with these values.';

create or replace function scriptlabs_private.count_lab_changes() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  changes scriptlabs_private.lab_count_change[];
begin
  -- the statement's rows, grouped by what is counted; an update's old rows count -1 and its
  -- new rows +1, so an update that changes nothing counted cancels out
  if tg_op = 'INSERT' then
    select array_agg(row(g.user_id, g.reading_status, g.rating, g.author, g.category, g.n)
                     ::scriptlabs_private.lab_count_change)
    into changes
    from (
      select l.user_id, l.reading_status, l.rating, l.author, l.category, count(*)::integer as n
      from new_labs l
      group by 1, 2, 3, 4, 5
    ) g;
  elsif tg_op = 'DELETE' then
    select array_agg(row(g.user_id, g.reading_status, g.rating, g.author, g.category, g.n)
                     ::scriptlabs_private.lab_count_change)
    into changes
    from (
      select l.user_id, l.reading_status, l.rating, l.author, l.category, -count(*)::integer as n
      from old_labs l
      group by 1, 2, 3, 4, 5
    ) g;
  else
    select array_agg(row(g.user_id, g.reading_status, g.rating, g.author, g.category, g.n)
                     ::scriptlabs_private.lab_count_change)
    into changes
    from (
      select u.user_id, u.reading_status, u.rating, u.author, u.category, sum(u.n)::integer as n
      from (
        select l.user_id, l.reading_status, l.rating, l.author, l.category, 1 as n
        from new_labs l
        union all
        select l.user_id, l.reading_status, l.rating, l.author, l.category, -1 as n
        from old_labs l
      ) u
      group by 1, 2, 3, 4, 5
      having sum(u.n) <> 0
    ) g;
  end if;
  if changes is null then
    return null;
  end if;

  -- Each user's totals row first, even when only an author or a category changed, in user
  -- order: the lock that orders concurrent writers (a request's holds it already, taken by
  -- lock_lab_totals()). Users deleted meanwhile (the cascade from auth.users runs before this
  -- trigger) are skipped: their rows are gone for good.
  insert into public.lab_totals as t (
    user_id, labs, labs_read, labs_reading, labs_to_read,
    rating_1, rating_2, rating_3, rating_4, rating_5
  )
  select c.user_id,
         sum(c.n),
         coalesce(sum(c.n) filter (where c.reading_status = 'read'), 0),
         coalesce(sum(c.n) filter (where c.reading_status = 'reading'), 0),
         coalesce(sum(c.n) filter (where c.reading_status = 'to_read'), 0),
         coalesce(sum(c.n) filter (where c.rating = 1), 0),
         coalesce(sum(c.n) filter (where c.rating = 2), 0),
         coalesce(sum(c.n) filter (where c.rating = 3), 0),
         coalesce(sum(c.n) filter (where c.rating = 4), 0),
         coalesce(sum(c.n) filter (where c.rating = 5), 0)
  from unnest(changes) c
  where exists (select from auth.users u where u.id = c.user_id)
  group by c.user_id
  order by c.user_id
  on conflict (user_id) do update
  set labs = t.labs + excluded.labs,
      labs_read = t.labs_read + excluded.labs_read,
      labs_reading = t.labs_reading + excluded.labs_reading,
      labs_to_read = t.labs_to_read + excluded.labs_to_read,
      rating_1 = t.rating_1 + excluded.rating_1,
      rating_2 = t.rating_2 + excluded.rating_2,
      rating_3 = t.rating_3 + excluded.rating_3,
      rating_4 = t.rating_4 + excluded.rating_4,
      rating_5 = t.rating_5 + excluded.rating_5;

  -- Then the author and category counts, each in key order, and the distinct numbers: an
  -- author (category) appears when its count leaves 0 and disappears when it comes back to 0.
  with author_changes as (
    select c.user_id, c.author, sum(c.n) as n
    from unnest(changes) c
    where exists (select from auth.users u where u.id = c.user_id)
    group by c.user_id, c.author
    having sum(c.n) <> 0
  ),
  authors as (
    insert into public.lab_author_counts as a (user_id, author, n)
    select ac.user_id, ac.author, ac.n
    from author_changes ac
    order by ac.user_id, ac.author
    on conflict (user_id, author) do update
    set n = a.n + excluded.n
    returning a.user_id, a.author, a.n
  ),
  category_changes as (
    select c.user_id, c.category, sum(c.n) as n
    from unnest(changes) c
    where c.category is not null
      and exists (select from auth.users u where u.id = c.user_id)
    group by c.user_id, c.category
    having sum(c.n) <> 0
  ),
  categories as (
    insert into public.lab_category_counts as k (user_id, category, n)
    select cc.user_id, cc.category, cc.n
    from category_changes cc
    order by cc.user_id, cc.category
    on conflict (user_id, category) do update
    set n = k.n + excluded.n
    returning k.user_id, k.category, k.n
  ),
  -- the count after the change is a.n, before it a.n - change
  distinct_changes as (
    select a.user_id, (a.n > 0)::integer - (a.n - ac.n > 0)::integer as authors, 0 as categories
    from authors a
    join author_changes ac on ac.user_id = a.user_id and ac.author = a.author
    union all
    select k.user_id, 0, (k.n > 0)::integer - (k.n - cc.n > 0)::integer
    from categories k
    join category_changes cc on cc.user_id = k.user_id and cc.category = k.category
  )
  update public.lab_totals t
  set authors = t.authors + d.authors,
      categories = t.categories + d.categories
  from (
    select dc.user_id, sum(dc.authors) as authors, sum(dc.categories) as categories
    from distinct_changes dc
    group by dc.user_id
  ) d
  where t.user_id = d.user_id
    and (d.authors <> 0 or d.categories <> 0);

  return null;
end
$$;

revoke all on function scriptlabs_private.count_lab_changes() from public;
comment on function scriptlabs_private.count_lab_changes() is
  'Trigger function of labs_count_inserts, _updates and _deletes: adds the statement''s '
  'changes to lab_totals, lab_author_counts and lab_category_counts.';

create or replace function scriptlabs_private.clear_lab_counts() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from public.lab_category_counts;
  delete from public.lab_author_counts;
  delete from public.lab_totals;
  return null;
end
$$;

revoke all on function scriptlabs_private.clear_lab_counts() from public;
comment on function scriptlabs_private.clear_lab_counts() is
  'Trigger function of labs_count_truncates: no labs, no figures.';

create or replace function scriptlabs_private.lock_lab_totals() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  caller uuid := auth.uid();
begin
  if caller is null then
    return null;  -- not a request: count_lab_changes() locks what it changes
  end if;
  perform from public.lab_totals t where t.user_id = caller for no key update;
  if not found then  -- the caller's first lab (or a user deleted meanwhile: nothing to lock)
    insert into public.lab_totals (user_id)
    select caller
    where exists (select from auth.users u where u.id = caller)
    on conflict (user_id) do nothing;
    perform from public.lab_totals t where t.user_id = caller for no key update;
  end if;
  return null;
end
$$;

revoke all on function scriptlabs_private.lock_lab_totals() from public;
comment on function scriptlabs_private.lock_lab_totals() is
  'Trigger function of labs_lock_totals: locks the caller''s lab_totals row (made if missing) '
  'before the statement touches any lab, so that one user''s writers queue there.';

-- No write to labs from here to the end of the migration: the triggers count from the moment
-- they exist, the recount below covers everything before.
lock table public.labs in share row exclusive mode;

create or replace trigger labs_lock_totals
  before insert or update or delete on public.labs
  for each statement
  execute function scriptlabs_private.lock_lab_totals();

create or replace trigger labs_count_inserts
  after insert on public.labs
  referencing new table as new_labs
  for each statement
  execute function scriptlabs_private.count_lab_changes();

create or replace trigger labs_count_updates
  after update on public.labs
  referencing old table as old_labs new table as new_labs
  for each statement
  execute function scriptlabs_private.count_lab_changes();

create or replace trigger labs_count_deletes
  after delete on public.labs
  referencing old table as old_labs
  for each statement
  execute function scriptlabs_private.count_lab_changes();

create or replace trigger labs_count_truncates
  after truncate on public.labs
  for each statement
  execute function scriptlabs_private.clear_lab_counts();

comment on trigger labs_lock_totals on public.labs is
  'Makes one user''s writing transactions take turns (see scriptlabs_private.lock_lab_totals).';
comment on trigger labs_count_inserts on public.labs is
  'Counts inserted labs into lab_totals, lab_author_counts and lab_category_counts.';
comment on trigger labs_count_updates on public.labs is
  'Moves updated labs between the figures they count in (status, rating, author, category).';
comment on trigger labs_count_deletes on public.labs is
  'Takes deleted labs out of the figures.';
comment on trigger labs_count_truncates on public.labs is 'Clears the figures.';

-- The figures of the labs that exist now, counted afresh (running this again gives the same).
delete from public.lab_category_counts;
delete from public.lab_author_counts;
delete from public.lab_totals;

insert into public.lab_totals (
  user_id, labs, labs_read, labs_reading, labs_to_read,
  rating_1, rating_2, rating_3, rating_4, rating_5, authors, categories
)
select l.user_id,
       count(*),
       count(*) filter (where l.reading_status = 'read'),
       count(*) filter (where l.reading_status = 'reading'),
       count(*) filter (where l.reading_status = 'to_read'),
       count(*) filter (where l.rating = 1),
       count(*) filter (where l.rating = 2),
       count(*) filter (where l.rating = 3),
       count(*) filter (where l.rating = 4),
       count(*) filter (where l.rating = 5),
       count(distinct l.author),
       count(distinct l.category)
from public.labs l
group by l.user_id;

insert into public.lab_author_counts (user_id, author, n)
select l.user_id, l.author, count(*)
from public.labs l
group by l.user_id, l.author;

insert into public.lab_category_counts (user_id, category, n)
select l.user_id, l.category, count(*)
from public.labs l
where l.category is not null
group by l.user_id, l.category;

-- For Supabase RPC (and psql): the caller's figures as labStats answers them without a filter
-- (averageRating as the numeric round(avg(rating), 2)). security invoker: it reads through
-- RLS as the caller, and takes no argument that could name anyone else.
create or replace function public.lab_stats() returns json
language sql
stable
security invoker
set search_path = ''
as $$
  select pg_catalog.json_build_object(
    'totalLabs', coalesce(t.labs, 0),
    'labsRead', coalesce(t.labs_read, 0),
    'labsReading', coalesce(t.labs_reading, 0),
    'labsToRead', coalesce(t.labs_to_read, 0),
    'averageRating', case
      when t.rating_1 + t.rating_2 + t.rating_3 + t.rating_4 + t.rating_5 > 0 then round(
        (t.rating_1 + 2 * t.rating_2 + 3 * t.rating_3 + 4 * t.rating_4 + 5 * t.rating_5)::numeric
          / (t.rating_1 + t.rating_2 + t.rating_3 + t.rating_4 + t.rating_5),
        2
      )
    end,
    'totalAuthors', coalesce(t.authors, 0),
    'totalCategories', coalesce(t.categories, 0),
    'byCategory', coalesce(
      (
        select json_agg(json_build_object('category', c.category, 'count', c.n)
                        order by c.n desc, c.category)
        from public.lab_category_counts c
        where c.user_id = me.id
          and c.n > 0
      ),
      '[]'::json
    ),
    'ratingDistribution', json_build_array(
      json_build_object('rating', 1, 'count', coalesce(t.rating_1, 0)),
      json_build_object('rating', 2, 'count', coalesce(t.rating_2, 0)),
      json_build_object('rating', 3, 'count', coalesce(t.rating_3, 0)),
      json_build_object('rating', 4, 'count', coalesce(t.rating_4, 0)),
      json_build_object('rating', 5, 'count', coalesce(t.rating_5, 0))
    )
  )
  from (select auth.uid() as id) me
  left join public.lab_totals t on t.user_id = me.id
$$;

revoke all on function public.lab_stats() from public, anon;
grant execute on function public.lab_stats() to authenticated, service_role;
comment on function public.lab_stats() is
  'The caller''s catalogue figures as JSON, keyed as GraphQL''s LabStats (labStats without a '
  'filter). Runs as the caller (security invoker): RLS shows it only its own figures.';
