-- creditkit setup: the private schema, the error catalogue and the two guards every function uses
-- (who may read an account, who may call a server-only function).
--
-- Everything of ours lives in the schema `creditkit`, which the Data API does not expose; the only
-- objects we put in `public` are the `public.creditkit_*` functions of the callable API. We never
-- touch default privileges or objects we did not create.

create schema if not exists creditkit;
comment on schema creditkit is
  'creditkit internals: tables and helpers. Not exposed through the Data API; call the public.creditkit_* functions instead.';

-- Signed-in users need the schema for RLS-checked reads (caller-bound functions are security
-- invoker); anon needs nothing of ours at all.
revoke all on schema creditkit from public;
grant usage on schema creditkit to authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Error catalogue. SQLSTATE class CK is ours; codes are stable and mirrored by the TypeScript SDK.
-- Tests assert codes, never message text.
-- ---------------------------------------------------------------------------------------------
create table creditkit.error_codes (
  code text primary key,
  name text not null unique,
  description text not null
);
comment on table creditkit.error_codes is 'The stable error catalogue (SQLSTATE class CK). Documented in docs/sql-api.md.';

insert into creditkit.error_codes (code, name, description) values
  ('CK001', 'invalid_amount',       'Amount is NULL, zero, negative where a positive amount is required, or above 9007199254740991 (2^53-1).'),
  ('CK002', 'insufficient_credits', 'The account cannot cover the amount (raising consume, negative adjustment). DETAIL is JSON {"balance":n,"required":n}.'),
  ('CK003', 'unknown_account',      'No credit account with that id.'),
  ('CK004', 'idempotency_conflict', 'The idempotency key was already used for a different operation or different parameters.'),
  ('CK005', 'not_allowed',          'The caller is not signed in, may not access that account, or may not call a server-only function.'),
  ('CK006', 'invalid_argument',     'An argument other than the amount is missing or malformed (key, event, category, metadata, expiry, limit, reason, time).'),
  ('CK007', 'balance_limit',        'The operation would take the balance above 9007199254740991 (2^53-1).'),
  ('CK008', 'append_only',          'The ledger is append-only: rows cannot be updated or deleted and the table cannot be truncated.');

alter table creditkit.error_codes enable row level security;
revoke all on table creditkit.error_codes from public, anon, authenticated, service_role;
grant select on table creditkit.error_codes to authenticated, service_role;
create policy "anyone signed in can read the error catalogue"
  on creditkit.error_codes for select to authenticated using (true);

-- ---------------------------------------------------------------------------------------------
-- Account access: the one function that decides whether the caller may read an account.
-- Default: a personal account whose id is the user's id. Team accounts replace this function in
-- their own migration (see docs/sql-api.md#account-access); creditkit migrations create it here
-- once and never replace it later, so an override survives upgrades.
-- ---------------------------------------------------------------------------------------------
create or replace function creditkit.can_access_account(p_account_id uuid)
returns boolean
language sql
stable
security invoker
set search_path = ''
as $$
  select p_account_id is not null and p_account_id = (select auth.uid());
$$;
comment on function creditkit.can_access_account(uuid) is
  'True when the current caller may read the account. Default: the account id is auth.uid(). Override with create or replace for team accounts.';
revoke all on function creditkit.can_access_account(uuid) from public, anon, authenticated, service_role;
grant execute on function creditkit.can_access_account(uuid) to authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Server-only guard. EXECUTE on server functions is granted to service_role alone, so this never
-- fires in a correctly installed database. It is here for the day someone runs a blanket
-- `grant execute on all functions in schema public to authenticated`: a security definer function
-- must not trust its grants alone. Inside security definer, current_user is the owner, but the
-- `role` setting still names the role PostgREST (or the app) switched to.
-- ---------------------------------------------------------------------------------------------
create or replace function creditkit.assert_server_caller()
returns void
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
  if coalesce(current_setting('role', true), 'none') in ('anon', 'authenticated')
     or coalesce((select auth.role()), '') in ('anon', 'authenticated') then
    raise exception using
      errcode = 'CK005',
      message = 'not allowed: this creditkit function is server-only (service_role)';
  end if;
end;
$$;
comment on function creditkit.assert_server_caller() is
  'Raises CK005 unless the caller is the service role or a direct server connection.';
revoke all on function creditkit.assert_server_caller() from public, anon, authenticated, service_role;
