-- 011_change_password_resets: changePassword voids the account's unused reset links.
--
-- The password change runs as service_role (scriptlabs/auth/sessions.py, CHANGE_PASSWORD) and
-- deletes the user's unused rows of public.password_reset_tokens in the same statement, so a
-- link mailed before the change can no longer set the password. 008 took every right on that
-- table from service_role; this gives back exactly what that delete needs: deleting rows and
-- reading the two columns its condition names. The token hash, expiry, address and agent stay
-- unreadable to it (and to every other request role). Revoking first leaves exactly these
-- grants however often the file runs.

revoke all on public.password_reset_tokens from service_role;
grant select (user_id, used_at), delete on public.password_reset_tokens to service_role;

comment on table public.password_reset_tokens is
  'Password reset tokens, stored only as hashes; no request role may read them (only the '
  'security definer functions of scriptlabs_private do; service_role may delete rows, by '
  'user_id and used_at, when a password is changed). A token names its row (user_id, id) and '
  'carries a secret whose SHA-256 hash is token_hash.';
