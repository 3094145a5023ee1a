-- 003_tables: the tables of the API in schema public (labs, user_sessions,
-- password_reset_tokens), their named constraints, and public.is_valid_isbn(), which the
-- constraint labs_isbn_check calls and which therefore has to exist before the table.
--
-- Every table is owned by one user: user_id comes first in every primary and unique key, so
-- the tables can later be distributed by user (Citus) and every key lookup under RLS starts
-- with the caller's id. The same prefix serves the on-delete-cascade from auth.users.
-- Row level security is enabled here; the policies and grants are in 005_policies.
-- Constraints are named (labs_<column>_check): the API's error map turns a violation into
-- BAD_USER_INPUT on that field by the constraint's name.

create or replace function public.is_valid_isbn(p_isbn text) returns boolean
language plpgsql immutable strict parallel safe
as $$
declare
  total integer := 0;
begin
  -- ISBN-10: weights 10..1, X stands for 10 and only as the check digit; sum divisible by 11.
  if p_isbn ~ '^[0-9]{9}[0-9X]$' then
    for i in 1..10 loop
      total := total + (11 - i) * case
        when substr(p_isbn, i, 1) = 'X' then 10
        else ascii(substr(p_isbn, i, 1)) - 48
      end;
    end loop;
    return total % 11 = 0;
  end if;
  -- ISBN-13: weights 1, 3, 1, 3, ...; sum divisible by 10.
  if p_isbn ~ '^[0-9]{13}$' then
    for i in 1..13 loop
      total := total + case when i % 2 = 1 then 1 else 3 end * (ascii(substr(p_isbn, i, 1)) - 48);
    end loop;
    return total % 10 = 0;
  end if;
  return false;
end
$$;

comment on function public.is_valid_isbn(text) is
  'True when the argument is a normalised ISBN-10 (9 digits and a digit or X) or ISBN-13 '
  '(13 digits) with a correct check digit. The API normalises first: spaces and hyphens '
  'dropped, x upper-cased.';

create table if not exists public.labs (
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  title varchar(500) not null,
  author varchar(300) not null,
  category varchar(100),
  publication_year integer,
  isbn varchar(13),
  rating integer,
  reading_status text not null default 'to_read',
  notes text,
  cover_url text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  search_vector tsvector generated always as (
    setweight(to_tsvector('english', coalesce(title, '')), 'A')
    || setweight(to_tsvector('english', coalesce(author, '')), 'B')
    || setweight(to_tsvector('english', coalesce(category, '')), 'C')
    || setweight(to_tsvector('english', coalesce(notes, '')), 'D')
  ) stored,
  constraint labs_pkey primary key (user_id, id),
  constraint labs_title_check check (btrim(title, E' \t\r\n') <> ''),
  constraint labs_author_check check (btrim(author, E' \t\r\n') <> ''),
  constraint labs_category_check check (category is null or btrim(category, E' \t\r\n') <> ''),
  -- as the design document has it: now() makes the upper bound move with the calendar; it is
  -- checked when a row is written, so a row once valid stays valid.
  constraint labs_publication_year_check
    check (publication_year between 1000 and extract(year from now()) + 10),
  constraint labs_isbn_check check (isbn is null or public.is_valid_isbn(isbn)),
  constraint labs_rating_check check (rating between 1 and 5),
  constraint labs_reading_status_check check (reading_status in ('to_read', 'reading', 'read')),
  constraint labs_notes_check check (length(notes) <= 10000),
  constraint labs_cover_url_check check (cover_url ~ '^https?://')
);

alter table public.labs enable row level security;

comment on table public.labs is
  'Each user''s private catalogue of labs. RLS: a request sees and writes only its own rows.';
comment on column public.labs.user_id is
  'Owner; defaults to the caller (auth.uid()). First in every key, for RLS and distribution.';
comment on column public.labs.title is 'Trimmed by the API; never blank (labs_title_check).';
comment on column public.labs.author is 'Trimmed by the API; never blank (labs_author_check).';
comment on column public.labs.category is 'Trimmed by the API; blank is stored as null.';
comment on column public.labs.publication_year is 'From 1000 to ten years from now.';
comment on column public.labs.isbn is
  'Normalised ISBN-10 or ISBN-13 (no spaces or hyphens, X upper-case) with a valid check digit.';
comment on column public.labs.rating is 'User rating from 1 to 5 stars; null when unrated.';
comment on column public.labs.reading_status is 'Current reading status: to_read, reading, read.';
comment on column public.labs.notes is 'Free text, at most 10,000 characters.';
comment on column public.labs.cover_url is 'An http or https URL.';
comment on column public.labs.updated_at is 'Set by the trigger labs_set_updated_at on every update.';
comment on column public.labs.search_vector is
  'Full-text search vector, weighted title A, author B, category C, notes D.';

create table if not exists public.user_sessions (
  user_id uuid not null references auth.users (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  refresh_token_hash bytea not null,
  previous_refresh_token_hash bytea,
  rotated_at timestamptz,
  created_at timestamptz not null default now(),
  last_activity timestamptz not null default now(),
  expires_at timestamptz not null,
  revoked_at timestamptz,
  user_agent text,
  ip_address inet,
  constraint user_sessions_pkey primary key (user_id, id)
);

alter table public.user_sessions enable row level security;

comment on table public.user_sessions is
  'Signed-in sessions, one per refresh token family. A refresh token names its session '
  '(user_id, id) and carries a secret whose hash is stored here.';
comment on column public.user_sessions.id is 'The session_id claim of the access tokens.';
comment on column public.user_sessions.refresh_token_hash is
  'Hash of the current refresh token''s secret. Never readable by anon or authenticated.';
comment on column public.user_sessions.previous_refresh_token_hash is
  'Hash of the refresh token replaced at rotated_at: accepted within the reuse interval '
  '(REFRESH_REUSE_INTERVAL); replayed later, it revokes the session.';
comment on column public.user_sessions.rotated_at is 'When the refresh token was last rotated.';
comment on column public.user_sessions.last_activity is 'Moves on sign-in and refresh.';
comment on column public.user_sessions.revoked_at is
  'Set on sign-out, revocation or password reset; a revoked session accepts no token.';

create table if not exists public.password_reset_tokens (
  user_id uuid not null references auth.users (id) on delete cascade,
  id uuid not null default gen_random_uuid(),
  token_hash bytea not null,
  expires_at timestamptz not null,
  used_at timestamptz,
  created_at timestamptz not null default now(),
  ip_address inet,
  user_agent text,
  constraint password_reset_tokens_pkey primary key (user_id, id)
);

alter table public.password_reset_tokens enable row level security;

comment on table public.password_reset_tokens is
  'Password reset tokens, stored only as hashes; no request role may read them. A token '
  'names its row (user_id, id) and carries a secret whose hash is token_hash.';
comment on column public.password_reset_tokens.token_hash is 'Hash of the token''s secret.';
comment on column public.password_reset_tokens.expires_at is 'One hour after creation.';
comment on column public.password_reset_tokens.used_at is
  'Set when the token is used; from then on it is refused.';
