-- creditkit setup: the private schema, the error catalogue, the value domains of the ledger, and
-- the guards and validators every function uses. Everything of ours lives in the schema `creditkit`,
-- which the Data API does not expose; the only objects we put in `public` are the
-- `public.creditkit_*` functions of the callable API. We never touch default privileges or objects
-- we did not create.

create schema if not exists creditkit;
comment on schema creditkit is
  'creditkit internals: tables and helpers. Not exposed through the Data API; call the public.creditkit_* functions instead.';

-- Signed-in users need the schema for RLS-checked reads (caller-bound functions are security
-- invoker); anon needs nothing of ours at all.
revoke all on schema creditkit from public;
grant usage on schema creditkit to authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- The installed version: creditkit status and doctor read it, and every upgrade script replaces it.
-- ---------------------------------------------------------------------------------------------
create or replace function creditkit.version()
returns text
language sql
immutable
set search_path = ''
as $$ select '0.3.0' $$;
comment on function creditkit.version() is 'The creditkit version installed in this database.';
revoke all on function creditkit.version() from public, anon, authenticated, service_role;
grant execute on function creditkit.version() to service_role;

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
  ('CK002', 'insufficient_credits', 'The account cannot cover the amount (raising consume, negative adjustment). DETAIL is JSON {"balance":n,"required":n,"unit":"…"}.'),
  ('CK003', 'unknown_account',      'No credit account with that id.'),
  ('CK004', 'idempotency_conflict', 'The idempotency key was already used for a different operation or different parameters.'),
  ('CK005', 'not_allowed',          'The caller is not signed in, may not access that account, or may not call a server-only function.'),
  ('CK006', 'invalid_argument',     'An argument other than the amount is missing or malformed (key, event, category, metadata, expiry, limit, reason, time).'),
  ('CK007', 'balance_limit',        'The operation would take the balance above 9007199254740991 (2^53-1).'),
  ('CK008', 'append_only',          'The ledger is append-only: rows cannot be updated or deleted and the table cannot be truncated.'),
  ('CK009', 'unknown_plan',         'No active plan with that id.'),
  ('CK010', 'unknown_event',        'No price for that event (and dimensions) at that time.'),
  ('CK011', 'unknown_hold',         'No hold with that id.'),
  ('CK012', 'hold_closed',          'The hold was already resolved differently (settled, released or expired). DETAIL is JSON {"status": ...}.'),
  ('CK013', 'unknown_pack',         'No active credit pack with that id.'),
  ('CK014', 'invalid_event',        'Not a Stripe event the kit can read (id, type, created and data.object are required).'),
  ('CK015', 'unknown_unit',         'No unit with that id, or a boolean unit where a metered one (a balance) is needed.'),
  ('CK016', 'auto_topup_unavailable', 'Auto top-up is not offered for the unit, or the account has no card on file that settles at once.'),
  ('CK017', 'unknown_endpoint',     'No notification endpoint with that id.'),
  ('CK018', 'unknown_topup_or_delivery', 'No top-up or notification delivery with that id.');

alter table creditkit.error_codes enable row level security;
revoke all on table creditkit.error_codes from public, anon, authenticated, service_role;
grant select on table creditkit.error_codes to authenticated, service_role;
create policy "anyone signed in can read the error catalogue"
  on creditkit.error_codes for select to authenticated using (true);

-- ---------------------------------------------------------------------------------------------
-- Value domains. The columns every debit writes have domain types rather than CHECK constraints:
-- PostgreSQL 15 re-parses a table's CHECKs each time a statement writing it starts, while a
-- domain's rules are prepared once per connection. The rules hold for every writer, the owner
-- included; a violation is SQLSTATE 23514 naming the domain's constraint.
-- ---------------------------------------------------------------------------------------------

create domain creditkit.credits as bigint
  constraint credits_range check (value between 0 and 9007199254740991);
comment on domain creditkit.credits is 'A count of credits: an integer in [0, 2^53-1], exact in JavaScript.';
create domain creditkit.credit_change as bigint
  constraint credit_change_range check (value <> 0 and value between -9007199254740991 and 9007199254740991);
comment on domain creditkit.credit_change is 'A signed change of a balance: non-zero, within +/-(2^53-1).';
create domain creditkit.micros as bigint
  constraint micros_range check (value between 0 and 9007199254740991);
comment on domain creditkit.micros is 'Money in micros of the reporting currency (1 USD = 1000000): an integer in [0, 2^53-1].';
create domain creditkit.ledger_kind as text
  constraint ledger_kind_known check (value in ('grant', 'consume', 'expire', 'adjust'));
comment on domain creditkit.ledger_kind is 'What a ledger row records: grant, consume, expire or adjust.';

-- ---------------------------------------------------------------------------------------------
-- Account access: the one function that decides whether the caller may read an account.
-- Default: a personal account whose id is the user's id. Team accounts replace this function in
-- their own migration (see docs/sql-api.md#account-access); the kit creates it here once and
-- never replaces it, so an override survives upgrades.
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

-- Whether the caller may change the account's billing: turn auto top-up on (charges to its card)
-- or set its low-balance threshold. Default: the account is the caller's own. A team override of
-- can_access_account lets members read; override this one too to say who may spend (the owners,
-- say): create or replace it in a migration of yours. Created once, like can_access_account.
create or replace function creditkit.can_manage_billing(p_account_id uuid)
returns boolean
language sql
stable
security invoker
set search_path = ''
as $$
  select p_account_id is not null and p_account_id = (select auth.uid());
$$;
comment on function creditkit.can_manage_billing(uuid) is
  'True when the current caller may change the account''s billing (auto top-up, thresholds). Default: the account id is auth.uid(). Override for team accounts.';
revoke all on function creditkit.can_manage_billing(uuid) from public, anon, authenticated, service_role;
grant execute on function creditkit.can_manage_billing(uuid) to authenticated, service_role;

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

-- ---------------------------------------------------------------------------------------------
-- Settings the installer may change. Every function that writes (each security definer function
-- of the API, and the charge-on-insert trigger) waits at most lock_timeout for an account's row
-- lock (a stuck transaction must not hang every request of that account) and then raises 55P03
-- lock_not_available; `select creditkit.set_lock_timeout('5 seconds')` changes it for all of
-- them, and creditkit's upgrades apply the setting again to what they replace.
-- ---------------------------------------------------------------------------------------------
create table creditkit.settings (
  name text primary key
    constraint settings_name check (name in ('lock_timeout')),
  value text not null
);
comment on table creditkit.settings is 'Settings the installer may change (creditkit.set_lock_timeout); applied to the functions by creditkit.apply_settings().';
insert into creditkit.settings (name, value) values ('lock_timeout', '3s');
alter table creditkit.settings enable row level security;
revoke all on table creditkit.settings from public, anon, authenticated, service_role;
grant select on table creditkit.settings to service_role;

-- Sets every writing function's lock_timeout to the stored setting: the ones that have one
-- (set when they are created), so a function added later gets it from its own definition.
create or replace function creditkit.apply_settings()
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_timeout text := (select s.value from creditkit.settings s where s.name = 'lock_timeout');
  v_function regprocedure;
begin
  for v_function in
    select p.oid::regprocedure
      from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
     where (n.nspname = 'creditkit' or (n.nspname = 'public' and p.proname like 'creditkit\_%'))
       and exists (select from unnest(p.proconfig) c where c like 'lock\_timeout=%')
  loop
    execute format('alter function %s set lock_timeout = %L', v_function, v_timeout);
  end loop;
end;
$$;
comment on function creditkit.apply_settings() is
  'Applies creditkit.settings to the functions (lock_timeout of every function that writes). Run by set_lock_timeout and by upgrades.';
revoke all on function creditkit.apply_settings() from public, anon, authenticated, service_role;

-- For the installer (the owner of the kit's functions): how long a writing call waits for an
-- account's row lock before it gives up with 55P03.
create or replace function creditkit.set_lock_timeout(p_timeout interval)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
  if p_timeout is null or p_timeout <= interval '0' or p_timeout > interval '1 minute' then
    raise exception using errcode = 'CK006', message = 'invalid argument: lock timeout must be more than 0 and at most 1 minute';
  end if;
  update creditkit.settings s
     set value = (extract(epoch from p_timeout) * 1000)::bigint || 'ms'
   where s.name = 'lock_timeout';
  perform creditkit.apply_settings();
end;
$$;
comment on function creditkit.set_lock_timeout(interval) is
  'Installer only. How long every writing function waits for an account''s row lock (default 3 seconds) before it raises 55P03.';
revoke all on function creditkit.set_lock_timeout(interval) from public, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Validators: pure checks of the arguments every function shares.
-- ---------------------------------------------------------------------------------------------

create or replace function creditkit.check_amount(p_amount bigint)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_amount is null or p_amount < 1 or p_amount > 9007199254740991 then
    raise exception using
      errcode = 'CK001',
      message = format('invalid amount: %s (must be an integer from 1 to 9007199254740991)', coalesce(p_amount::text, 'NULL'));
  end if;
end;
$$;
comment on function creditkit.check_amount(bigint) is 'Raises CK001 unless 1 <= amount <= 2^53-1.';
revoke all on function creditkit.check_amount(bigint) from public, anon, authenticated, service_role;
grant execute on function creditkit.check_amount(bigint) to authenticated, service_role;

create or replace function creditkit.check_money(p_micros bigint)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_micros < 0 or p_micros > 9007199254740991 then
    raise exception using
      errcode = 'CK001',
      message = format('invalid amount: %s micros (money is NULL or an integer from 0 to 9007199254740991)', p_micros);
  end if;
end;
$$;
comment on function creditkit.check_money(bigint) is 'Raises CK001 unless a money amount (micros) is NULL or within 0..2^53-1.';
revoke all on function creditkit.check_money(bigint) from public, anon, authenticated, service_role;
grant execute on function creditkit.check_money(bigint) to authenticated, service_role;

-- The metadata keys the kit writes itself: usage details (a metered event's quantity, dimensions
-- and price; a settled hold's id, reserve and actual amount) and the markers it finds its own
-- allowance buckets by. Caller metadata may not use them.
create or replace function creditkit.reserved_metadata_keys()
returns text[]
language sql
immutable
set search_path = ''
as $$
  select array['quantity', 'dimensions', 'unit_credits', 'price_id', 'hold_id', 'reserved', 'actual',
               'period_index', 'stripe_invoice'];
$$;
comment on function creditkit.reserved_metadata_keys() is 'Metadata keys the kit writes itself; caller metadata may not use them (CK006).';
revoke all on function creditkit.reserved_metadata_keys() from public, anon, authenticated, service_role;
grant execute on function creditkit.reserved_metadata_keys() to authenticated, service_role;

-- Validates the arguments every mutation shares; returns the metadata to store ('{}' for NULL).
create or replace function creditkit.check_request(p_idempotency_key text, p_event text, p_metadata jsonb, p_now timestamptz)
returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_now is null or not isfinite(p_now) then
    raise exception using errcode = 'CK006', message = 'invalid argument: p_now must be a finite time';
  end if;
  if p_idempotency_key is not null and (length(p_idempotency_key) > 255 or p_idempotency_key !~ '[^[:space:]]') then
    raise exception using errcode = 'CK006', message = 'invalid argument: idempotency key must be 1 to 255 characters, not blank';
  end if;
  if p_event is not null and (length(p_event) > 200 or p_event !~ '[^[:space:]]') then
    raise exception using errcode = 'CK006', message = 'invalid argument: event name must be 1 to 200 characters, not blank';
  end if;
  if p_metadata is null then
    return '{}'::jsonb;
  end if;
  if jsonb_typeof(p_metadata) <> 'object' then
    raise exception using errcode = 'CK006', message = 'invalid argument: metadata must be a JSON object';
  end if;
  if octet_length(p_metadata::text) > 8192 then
    raise exception using errcode = 'CK006', message = 'invalid argument: metadata is larger than 8192 bytes';
  end if;
  -- The kit's own fields on the rows it writes (a metered event's price, a settled hold, a plan's
  -- allowance): a caller's would pass for them in reports, or be misread by the kit.
  if p_metadata ?| creditkit.reserved_metadata_keys() then
    raise exception using errcode = 'CK006',
      message = format('invalid argument: metadata keys %s are the kit''s own', array_to_string(creditkit.reserved_metadata_keys(), ', '));
  end if;
  return p_metadata;
end;
$$;
comment on function creditkit.check_request(text, text, jsonb, timestamptz) is
  'Validates idempotency key, event name, metadata (no reserved key) and time (finite); returns the metadata to store.';
revoke all on function creditkit.check_request(text, text, jsonb, timestamptz) from public, anon, authenticated, service_role;
grant execute on function creditkit.check_request(text, text, jsonb, timestamptz) to authenticated, service_role;
