-- 006_functions: functions and the triggers that call them (public.is_valid_isbn is in
-- 003_tables, because the constraint labs_isbn_check needs it before the table exists).
--
-- Rules for what comes here later (search, statistics, token clean-up): a function callable
-- by anon or authenticated runs as the caller (security invoker), so RLS applies to it; one
-- that must be security definer sets search_path = '', qualifies every name, and takes no
-- user id argument (it uses (select auth.uid())), so no argument can reach another user's
-- rows.

create or replace function public.set_updated_at() returns trigger
language plpgsql
as $$
begin
  new.updated_at := now();
  return new;
end
$$;

comment on function public.set_updated_at() is
  'Trigger function: sets updated_at to the transaction''s time on every update.';

create or replace trigger labs_set_updated_at
  before update on public.labs
  for each row
  execute function public.set_updated_at();

comment on trigger labs_set_updated_at on public.labs is
  'Keeps updated_at current whatever the update statement sets.';
