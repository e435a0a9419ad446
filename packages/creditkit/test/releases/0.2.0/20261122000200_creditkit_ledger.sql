-- creditkit ledger: the units balances are kept in, accounts (one O(1) balance and lock point per
-- account and metered unit), grants (buckets with category, expiry and priority) and the
-- append-only ledger, with the invariants the database itself enforces. No client role can write
-- these tables; writes go through the functions.
--
-- Invariants, per (account, unit): accounts.balance = sum(ledger.amount) = sum(grants.remaining) -
-- accounts.undrawn, and >= 0; every value is an integer in [0, 2^53-1], exact in JavaScript; every
-- write to the grants or ledger of an (account, unit) first locks its accounts row.

-- The units (features) of the kit: a metered unit has a balance per account (credits, messages,
-- images, ...); a boolean unit is an on/off feature, which plans switch on in their `features`.
create table creditkit.units (
  id text primary key
    constraint units_id_format check (id ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
  name text not null
    constraint units_name_length check (length(name) between 1 and 200),
  kind text not null default 'metered'
    constraint units_kind check (kind in ('metered', 'boolean')),
  created_at timestamptz not null default now()
);
comment on table creditkit.units is
  'The unit catalogue: metered units hold a balance per account, boolean units are plan feature flags. credits always exists.';
insert into creditkit.units (id, name, kind) values ('credits', 'Credits', 'metered');

alter table creditkit.units enable row level security;
revoke all on table creditkit.units from public, anon, authenticated, service_role;
grant select on table creditkit.units to authenticated, service_role;
create policy "signed-in users can read the unit catalogue"
  on creditkit.units for select to authenticated using (true);

-- Raises CK015 unless p_unit names a metered unit (one that holds a balance). Not on the hot path:
-- a call whose (account, unit) row exists needs no lookup; only a missing row leads here.
create or replace function creditkit.check_unit(p_unit text)
returns void
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
  if p_unit is null or not exists (select from creditkit.units u where u.id = p_unit and u.kind = 'metered') then
    raise exception using errcode = 'CK015',
      message = format('unknown unit: %s is not a metered unit', coalesce(quote_literal(p_unit), 'NULL')),
      detail = jsonb_build_object('unit', p_unit)::text;
  end if;
end;
$$;
comment on function creditkit.check_unit(text) is 'Raises CK015 unless the unit exists and is metered.';
revoke all on function creditkit.check_unit(text) from public, anon, authenticated, service_role;
grant execute on function creditkit.check_unit(text) to authenticated, service_role;

-- An account is known once it has its credits row (grants, plans and Stripe open it); a row per
-- other metered unit opens on that unit's first grant, or on its first touch when the plan in force
-- has a limit for it.
create table creditkit.accounts (
  id uuid not null,
  balance creditkit.credits not null default 0,
  -- The earliest time anything is due on this account (a bucket with credit left expires, a
  -- renewal, a hold expires), or NULL. Never later than the truth (it may be earlier after a
  -- bucket is used up), so `due_at > now` proves the hot path has nothing to book.
  due_at timestamptz,
  -- Credits reserved by open holds; spendable = balance - held.
  held creditkit.credits not null default 0,
  -- Number of ledger rows; cheap change detection for caches.
  version bigint not null default 0,
  created_at timestamptz not null default now(),
  -- Credits spent on the fast path and not yet taken from buckets (see creditkit.draw_undrawn).
  undrawn creditkit.credits not null default 0,
  -- The metered unit this balance counts; the domain `credits` bounds the amounts of every unit.
  unit text not null default 'credits' references creditkit.units (id),
  constraint accounts_pkey primary key (id, unit)
)
-- Room on every page for the next versions of its rows, so that updates stay HOT.
with (fillfactor = 80);
comment on table creditkit.accounts is 'One row per account and metered unit: the balance (O(1)) and the row every mutation of that balance locks.';
comment on column creditkit.accounts.undrawn is
  'Credits consumed on the fast path and not yet taken from buckets; drawn in spend order under the next lock.';
create index accounts_due_at on creditkit.accounts (due_at) where due_at is not null;

create table creditkit.grants (
  id bigint generated always as identity,
  account_id uuid not null,
  category text not null
    constraint grants_category check (category in ('plan', 'purchase', 'promotional', 'adjustment')),
  amount bigint not null
    constraint grants_amount_range check (amount between 1 and 9007199254740991),
  remaining bigint not null,
  -- Higher is spent first among grants with the same expiry. Defaults by category put promotional
  -- credit before paid credit (promotional 30, plan 20, adjustment 10, purchase 0).
  priority integer not null,
  -- Spendable while now < expires_at; NULL never expires.
  expires_at timestamptz,
  metadata jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  constraint grants_remaining_range check (remaining between 0 and amount),
  -- Keys of per-account tables lead with the account (see the ledger's), so that they can be
  -- distributed by it (Citus) and every lookup of a bucket names its account.
  constraint grants_pkey primary key (account_id, id),
  -- Changes only when a bucket empties, so the indexes that must know whether a bucket has credit
  -- left depend on it instead of on `remaining`, and drawing from a bucket is a HOT update.
  live boolean generated always as (remaining > 0) stored,
  unit text not null default 'credits',
  constraint grants_account_unit_fkey foreign key (account_id, unit) references creditkit.accounts (id, unit)
)
with (fillfactor = 80);
comment on table creditkit.grants is
  'Buckets of credit. Spent soonest-expiry first, then by priority (promotional before paid), then oldest.';
comment on column creditkit.grants.live is
  'remaining > 0, stored. Indexes use it instead of remaining so that drawing from a bucket is a HOT update.';
-- Serves the spend order for the buckets that still hold credit.
create index grants_spendable on creditkit.grants (account_id, unit, expires_at, priority desc, created_at, id) where live;

-- The ledger has one index besides the idempotency one: its primary key (account_id, id), which
-- is also the history order. It has no foreign key to accounts: every row is written by a kit
-- function that holds the account's row lock, and the key's check would add a row lock and its
-- WAL record to every write. Its reference to a grant is checked by a trigger, only for the rows
-- that have one (below).
create table creditkit.ledger (
  id bigint generated always as identity,
  account_id uuid not null,
  kind creditkit.ledger_kind not null,
  amount creditkit.credit_change not null,
  balance_after creditkit.credits not null,
  grant_id bigint,
  event text,
  idempotency_key text,
  -- Money beside credits, in micros of your reporting currency (1 USD = 1000000), NULL when not
  -- recorded: what a usage cost you (vendor cost) and what a grant earned (what was paid for it).
  cost_micros creditkit.micros,
  revenue_micros creditkit.micros,
  metadata jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  -- The unit of the balance this row changes.
  unit text not null default 'credits',
  constraint ledger_pkey primary key (account_id, id)
);
comment on table creditkit.ledger is
  'Append-only: one row per balance change. amount is signed; balance_after is the balance once this row applied.';

-- The idempotency store: one row per (account, key) a ledger row was written with, whatever its
-- unit (a key names one operation). It is its own
-- table, with its primary key as its only index, so that a keyed lookup is a probe of that key
-- whatever the statistics say: an index on the ledger would compete with the ledger's primary key
-- (account_id, id), and with statistics taken while the ledger was small the planner picks that
-- one and filters the account's whole history. Writers insert the key first (ON CONFLICT DO
-- NOTHING: the unique index itself answers whether the key was used), then the ledger row.
create table creditkit.ledger_keys (
  account_id uuid not null,
  idempotency_key text not null,
  -- The ledger row written with this key.
  ledger_id bigint not null,
  constraint ledger_keys_pkey primary key (account_id, idempotency_key)
);
comment on table creditkit.ledger_keys is
  'Idempotency keys of the ledger: one row per (account, key), naming the ledger row written with it.';

-- The ledger is append-only for everyone. Client roles have no UPDATE/DELETE/TRUNCATE privilege;
-- these triggers also stop the owner and superusers short of disabling triggers.

create or replace function creditkit.ledger_is_append_only()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception using
    errcode = 'CK008',
    message = format('creditkit.%s is append-only (%s refused)', tg_table_name, tg_op);
end;
$$;
comment on function creditkit.ledger_is_append_only() is 'Trigger: refuses UPDATE, DELETE and TRUNCATE on creditkit.ledger and creditkit.ledger_keys.';
revoke all on function creditkit.ledger_is_append_only() from public, anon, authenticated, service_role;

create trigger ledger_no_update_or_delete
  before update or delete on creditkit.ledger
  for each row execute function creditkit.ledger_is_append_only();
create trigger ledger_no_truncate
  before truncate on creditkit.ledger
  for each statement execute function creditkit.ledger_is_append_only();
-- So is its idempotency store: a key removed would let a retry apply twice.
create trigger ledger_keys_no_update_or_delete
  before update or delete on creditkit.ledger_keys
  for each row execute function creditkit.ledger_is_append_only();
create trigger ledger_keys_no_truncate
  before truncate on creditkit.ledger_keys
  for each statement execute function creditkit.ledger_is_append_only();

-- ledger.grant_id names a grant. A foreign key would queue its check for every inserted row, and
-- most rows (every consume) have none; these two triggers keep the same rule for the rows that do.
-- Both raise foreign_key_violation (23503), as the key would. The ledger itself refuses TRUNCATE
-- (CK008), and only the tables' owner can truncate either.

create or replace function creditkit.ledger_grant_exists()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform from creditkit.grants g where g.account_id = new.account_id and g.id = new.grant_id and g.unit = new.unit for key share;
  if not found then
    raise exception using
      errcode = 'foreign_key_violation',
      message = format('insert or update on table "ledger" violates its grant reference: grant %s does not exist in unit %s', new.grant_id, new.unit),
      table = 'ledger', schema = 'creditkit', column = 'grant_id';
  end if;
  return null;
end;
$$;
comment on function creditkit.ledger_grant_exists() is
  'Trigger: a ledger row that names a grant needs that grant (23503). Fires only for rows with a grant_id.';
revoke all on function creditkit.ledger_grant_exists() from public, anon, authenticated, service_role;

create constraint trigger ledger_grant_exists
  after insert or update of grant_id on creditkit.ledger
  for each row
  when (new.grant_id is not null)
  execute function creditkit.ledger_grant_exists();

create or replace function creditkit.grant_not_in_ledger()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if exists (select from creditkit.ledger l where l.account_id = old.account_id and l.grant_id = old.id) then
    raise exception using
      errcode = 'foreign_key_violation',
      message = format('grant %s is still named by the ledger and cannot be deleted', old.id),
      table = 'grants', schema = 'creditkit';
  end if;
  return old;
end;
$$;
comment on function creditkit.grant_not_in_ledger() is
  'Trigger: a grant the ledger names cannot be deleted (23503).';
revoke all on function creditkit.grant_not_in_ledger() from public, anon, authenticated, service_role;

create trigger grants_not_in_ledger
  before delete on creditkit.grants
  for each row execute function creditkit.grant_not_in_ledger();

-- Privileges: revoke everything, then grant reads only. service_role reads everything (it bypasses
-- RLS); authenticated reads what the account-access function allows.
alter table creditkit.accounts enable row level security;
alter table creditkit.grants enable row level security;
alter table creditkit.ledger enable row level security;
alter table creditkit.ledger_keys enable row level security;

revoke all on table creditkit.accounts, creditkit.grants, creditkit.ledger, creditkit.ledger_keys
  from public, anon, authenticated, service_role;
grant select on table creditkit.accounts, creditkit.grants, creditkit.ledger, creditkit.ledger_keys to service_role;
grant select on table creditkit.accounts, creditkit.grants to authenticated;
-- Not the money columns: what a request cost you is your business, not your customer's.
grant select (id, account_id, kind, amount, balance_after, grant_id, event, idempotency_key, metadata, created_at, unit)
  on table creditkit.ledger to authenticated;

create policy "members can read their accounts"
  on creditkit.accounts for select to authenticated
  using (creditkit.can_access_account(id));
create policy "members can read their accounts' grants"
  on creditkit.grants for select to authenticated
  using (creditkit.can_access_account(account_id));
create policy "members can read their accounts' ledger"
  on creditkit.ledger for select to authenticated
  using (creditkit.can_access_account(account_id));
