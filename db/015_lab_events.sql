-- 015_lab_events: every created, updated or deleted lab is announced on channel
-- scriptlabs_lab_events, for the labEvents subscription (scriptlabs/realtime).
--
-- Payload: `<letter>:<user id>:<lab id>` with the letter C (created), U (updated) or D
-- (deleted); ids only, never row data: a listener hears every user's events, and each
-- subscriber reads the lab again under its own role and claims, so Row Level Security
-- decides what it sees. NOTIFY is delivered at commit only: a rolled-back change announces
-- nothing.
--
-- Statement-level triggers with transition tables (as 013_lab_stats): one call per statement,
-- then one pg_notify per row, so an import of 1,000 labs costs one trigger call, not 1,000.
-- The payloads of one transaction are distinct (each names its lab), so PostgreSQL's
-- de-duplication keeps them all: an import of N is N events.
--
-- Bulk loads that no client watches (scriptlabs demo-data: a million rows would fill the
-- notification queue for nothing) turn it off for their transaction with
-- set_config('scriptlabs.lab_events', 'off', true). Request roles cannot send SQL, and the
-- setting only silences the transaction that sets it.

create or replace function scriptlabs_private.notify_lab_events()
returns trigger
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_letter text := case tg_op when 'INSERT' then 'C' when 'UPDATE' then 'U' else 'D' end;
begin
  if coalesce(current_setting('scriptlabs.lab_events', true), '') = 'off' then
    return null;
  end if;
  if tg_op = 'DELETE' then
    perform pg_catalog.pg_notify('scriptlabs_lab_events', v_letter || ':' || o.user_id || ':' || o.id)
    from old_labs o;
  else
    perform pg_catalog.pg_notify('scriptlabs_lab_events', v_letter || ':' || n.user_id || ':' || n.id)
    from new_labs n;
  end if;
  return null;
end
$$;

comment on function scriptlabs_private.notify_lab_events() is
  'Announces the labs a statement created, updated or deleted on channel scriptlabs_lab_events '
  '(payload letter:user_id:lab_id, ids only), unless scriptlabs.lab_events is off.';

drop trigger if exists labs_notify_created on public.labs;
create trigger labs_notify_created
  after insert on public.labs
  referencing new table as new_labs
  for each statement execute function scriptlabs_private.notify_lab_events();

drop trigger if exists labs_notify_updated on public.labs;
create trigger labs_notify_updated
  after update on public.labs
  referencing new table as new_labs
  for each statement execute function scriptlabs_private.notify_lab_events();

drop trigger if exists labs_notify_deleted on public.labs;
create trigger labs_notify_deleted
  after delete on public.labs
  referencing old table as old_labs
  for each statement execute function scriptlabs_private.notify_lab_events();
