-- creditkit ledger: accounts (the O(1) balance and the lock point), grants (buckets of credit with
-- category, expiry and priority) and the append-only ledger.
--
-- Invariants, held by constraints where Postgres can and by the functions otherwise:
--   accounts.balance = sum(ledger.amount) = sum(grants.remaining) for the account, and >= 0;
--   every value is an integer in [0, 2^53-1], so it is exact in JavaScript;
--   every write to an account's grants or ledger first locks its accounts row.
-- No client role can write these tables; writes go through the public.creditkit_* functions.

create table creditkit.accounts (
  id uuid primary key,
  balance bigint not null default 0,
  -- The earliest time anything is due on this account (for now: a bucket with credit left expires),
  -- or NULL. Never later than the truth (it may be earlier after a bucket is used up), so
  -- `due_at > now` proves the hot path has nothing to book; only then is the slow path skipped.
  due_at timestamptz,
  -- Credits reserved by open holds (see the holds migration); spendable = balance - held.
  held bigint not null default 0,
  -- Number of ledger rows; cheap change detection for caches.
  version bigint not null default 0,
  created_at timestamptz not null default now(),
  constraint accounts_balance_range check (balance between 0 and 9007199254740991),
  constraint accounts_held_range check (held between 0 and 9007199254740991)
);
comment on table creditkit.accounts is 'One row per credit account: the balance (O(1)) and the row every mutation locks.';
create index accounts_due_at on creditkit.accounts (due_at) where due_at is not null;

create table creditkit.grants (
  id bigint generated always as identity primary key,
  account_id uuid not null references creditkit.accounts (id),
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
  constraint grants_remaining_range check (remaining between 0 and amount)
);
comment on table creditkit.grants is
  'Buckets of credit. Spent soonest-expiry first, then by priority (promotional before paid), then oldest.';
-- Serves the spend order for the buckets that still hold credit.
create index grants_spendable on creditkit.grants (account_id, expires_at, priority desc, created_at, id)
  where remaining > 0;

create table creditkit.ledger (
  id bigint generated always as identity primary key,
  account_id uuid not null references creditkit.accounts (id),
  kind text not null
    constraint ledger_kind check (kind in ('grant', 'consume', 'expire', 'adjust')),
  amount bigint not null
    constraint ledger_amount_range check (amount <> 0 and amount between -9007199254740991 and 9007199254740991),
  balance_after bigint not null
    constraint ledger_balance_after_range check (balance_after between 0 and 9007199254740991),
  grant_id bigint references creditkit.grants (id),
  event text,
  idempotency_key text,
  -- Money beside credits, in micros of your reporting currency (1 USD = 1000000), NULL when not
  -- recorded: what a usage cost you (vendor cost) and what a grant earned (what was paid for it).
  cost_micros bigint
    constraint ledger_cost_range check (cost_micros between 0 and 9007199254740991),
  revenue_micros bigint
    constraint ledger_revenue_range check (revenue_micros between 0 and 9007199254740991),
  metadata jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now()
);
comment on table creditkit.ledger is
  'Append-only: one row per balance change. amount is signed; balance_after is the balance once this row applied.';
-- One effect per key and account: the key index is also the idempotency store.
create unique index ledger_idempotency on creditkit.ledger (account_id, idempotency_key)
  where idempotency_key is not null;
create index ledger_account_history on creditkit.ledger (account_id, id desc);

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
    message = format('creditkit.ledger is append-only (%s refused)', tg_op);
end;
$$;
comment on function creditkit.ledger_is_append_only() is 'Trigger: refuses UPDATE, DELETE and TRUNCATE on creditkit.ledger.';
revoke all on function creditkit.ledger_is_append_only() from public, anon, authenticated, service_role;

create trigger ledger_no_update_or_delete
  before update or delete on creditkit.ledger
  for each row execute function creditkit.ledger_is_append_only();
create trigger ledger_no_truncate
  before truncate on creditkit.ledger
  for each statement execute function creditkit.ledger_is_append_only();

-- Privileges: revoke everything, then grant reads only. service_role reads everything (it bypasses
-- RLS); authenticated reads what the account-access function allows.
alter table creditkit.accounts enable row level security;
alter table creditkit.grants enable row level security;
alter table creditkit.ledger enable row level security;

revoke all on table creditkit.accounts, creditkit.grants, creditkit.ledger from public, anon, authenticated, service_role;
grant select on table creditkit.accounts, creditkit.grants, creditkit.ledger to service_role;
grant select on table creditkit.accounts, creditkit.grants to authenticated;
-- Not the money columns: what a request cost you is your business, not your customer's.
grant select (id, account_id, kind, amount, balance_after, grant_id, event, idempotency_key, metadata, created_at)
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
