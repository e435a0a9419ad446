-- The benchmark's own schema, created only in the throwaway creditkit_bench_* databases after the
-- kit's migrations: the baselines the kit is measured against, and helpers to seed and reset.
-- Nothing here is part of creditkit.
--
-- The baselines work on tables of the same shape, constraints and indexes as the kit's
-- (LIKE ... INCLUDING ALL) and storage parameters, keyed by the same uuid:
--   R      a raw single-row UPDATE (scripts r.sql); guarded by `balance >= 1` so it can never
--          overdraw either (a guard that costs nothing when the balance suffices);
--   R+L    that UPDATE plus a ledger INSERT in one plpgsql function, no other checks;
--   R+L+K  R+L writing an idempotency key per debit into the ledger's unique (account, key)
--          index: the floor for an idempotent debit;
--   N      the naive pattern: plpgsql SELECT ... FOR UPDATE, then UPDATE, no ledger.
-- Like the kit's functions they are plpgsql, but without SECURITY DEFINER or SET clauses.
--
-- M and M+T are not on the kit's table shapes: they are Makerkit's credit-based billing guide
-- (https://makerkit.dev/docs/next-supabase-turbo/billing/credit-based-billing) as an app would copy
-- it, its tables included, because they stand for what a user would build instead of the kit:
--   M      the guide's consume_credits: SECURITY DEFINER, SET search_path = '', SELECT ... FOR
--          UPDATE of the account's credits row, refuse, UPDATE; no history;
--   M+T    the same plus the guide's usage tracking: an INSERT into credit_transactions in the
--          same transaction.

create schema bench;

create table bench.accounts (like creditkit.accounts including all);
-- The baselines keep one balance per account, keyed by its id (the kit keeps one per account and
-- unit; the previous release the bench also installs, one per account, and its key is already id).
alter table bench.accounts drop column if exists unit;
do $$
begin
  if not exists (select from pg_constraint where conrelid = 'bench.accounts'::regclass and contype = 'p') then
    alter table bench.accounts add primary key (id);
  end if;
end;
$$;
create table bench.ledger (like creditkit.ledger including all);
-- LIKE does not copy storage parameters; give the baselines the kit's (accounts' fillfactor).
do $$
declare
  v_options text[];
begin
  select c.reloptions into v_options from pg_class c where c.oid = 'creditkit.accounts'::regclass;
  if v_options is not null then
    execute format('alter table bench.accounts set (%s)', array_to_string(v_options, ', '));
  end if;
end;
$$;

-- R+L+K needs a unique (account, key) index on the ledger. LIKE copied the kit's (partial: rows
-- without a key are not in it, so R+L's rows never touch it); should the kit's ledger ever lose
-- it, the baseline still gets one.
do $$
begin
  if not exists (
    select from pg_index i
     where i.indrelid = 'bench.ledger'::regclass and i.indisunique
       and (select array_agg(a.attname::text order by k.n)
              from unnest(i.indkey::int2[]) with ordinality k(attnum, n)
              join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum)
           = array['account_id', 'idempotency_key']) then
    create unique index ledger_idempotency on bench.ledger (account_id, idempotency_key) where idempotency_key is not null;
  end if;
end;
$$;

-- M and M+T: the guide's credits table and its usage-tracking table, as the guide writes them
-- (integer tokens, serial id, no index on credit_transactions but its key). Its `accounts` is
-- Makerkit's own account table; bench.accounts plays that part, so the foreign keys (and the row
-- lock the one from credit_transactions takes on every insert) are there as in the app.
create table bench.credits (
  account_id uuid primary key references bench.accounts (id) on delete cascade,
  tokens integer not null default 0,
  updated_at timestamptz default now()
);
alter table bench.credits enable row level security;

create table bench.credit_transactions (
  id serial primary key,
  account_id uuid references bench.accounts (id),
  amount integer not null,
  type text not null,
  description text,
  created_at timestamptz default now()
);
alter table bench.credit_transactions enable row level security;

-- Account n (1-based) as a uuid: the same expression the pgbench scripts use inline.
create function bench.account_id(p_n integer)
returns uuid
language sql
immutable
as $$ select lpad(to_hex(p_n), 32, '0')::uuid $$;

-- R+L: the raw UPDATE plus a ledger INSERT. NULL when the balance does not cover the amount.
create function bench.debit_with_ledger(p_account_id uuid, p_amount bigint)
returns bigint
language plpgsql
as $$
declare
  v_balance bigint;
begin
  update bench.accounts a
     set balance = a.balance - p_amount
   where a.id = p_account_id and a.balance >= p_amount
  returning a.balance into v_balance;
  if not found then
    return null;
  end if;
  insert into bench.ledger (account_id, kind, amount, balance_after)
  values (p_account_id, 'consume', -p_amount, v_balance);
  return v_balance;
end;
$$;

-- R+L for a batch of p_n debits of p_amount: one UPDATE by the total, then the p_n ledger rows in
-- one INSERT (balance_after as if applied one by one). NULL when the balance does not cover it.
create function bench.debit_with_ledger_batch(p_account_id uuid, p_amount bigint, p_n integer)
returns bigint
language plpgsql
as $$
declare
  v_balance bigint;
begin
  update bench.accounts a
     set balance = a.balance - p_amount * p_n
   where a.id = p_account_id and a.balance >= p_amount * p_n
  returning a.balance into v_balance;
  if not found then
    return null;
  end if;
  insert into bench.ledger (account_id, kind, amount, balance_after)
  select p_account_id, 'consume', -p_amount, v_balance + p_amount * (p_n - i) from generate_series(1, p_n) i;
  return v_balance;
end;
$$;

-- R+L+K: R+L with the caller's key on the ledger row. A key used before fails the unique index
-- and rolls the UPDATE back with it, so a retry cannot debit twice; answering the retry with the
-- first result, as the kit does, is left out: this is the floor, not an equivalent.
create function bench.debit_with_ledger_keyed(p_account_id uuid, p_amount bigint, p_key text)
returns bigint
language plpgsql
as $$
declare
  v_balance bigint;
begin
  update bench.accounts a
     set balance = a.balance - p_amount
   where a.id = p_account_id and a.balance >= p_amount
  returning a.balance into v_balance;
  if not found then
    return null;
  end if;
  insert into bench.ledger (account_id, kind, amount, balance_after, idempotency_key)
  values (p_account_id, 'consume', -p_amount, v_balance, p_key);
  return v_balance;
end;
$$;

-- M: the guide's consume_credits, statement for statement (only the schema differs).
create function bench.consume_credits(p_account_id uuid, p_tokens integer)
returns boolean
set search_path = ''
as $$
declare
  v_current_tokens integer;
begin
  select tokens into v_current_tokens
    from bench.credits
   where account_id = p_account_id
     for update;

  if v_current_tokens is null or v_current_tokens < p_tokens then
    return false;
  end if;

  update bench.credits
     set tokens = tokens - p_tokens,
         updated_at = now()
   where account_id = p_account_id;

  return true;
end;
$$ language plpgsql security definer;
grant execute on function bench.consume_credits(uuid, integer) to service_role;

-- M+T: M plus the guide's usage tracking, one credit_transactions row per consume, written in the
-- same transaction (the guide gives the table, not the insert; this is the obvious one).
create function bench.consume_credits_tracked(p_account_id uuid, p_tokens integer, p_description text)
returns boolean
set search_path = ''
as $$
declare
  v_current_tokens integer;
begin
  select tokens into v_current_tokens
    from bench.credits
   where account_id = p_account_id
     for update;

  if v_current_tokens is null or v_current_tokens < p_tokens then
    return false;
  end if;

  update bench.credits
     set tokens = tokens - p_tokens,
         updated_at = now()
   where account_id = p_account_id;

  insert into bench.credit_transactions (account_id, amount, type, description)
  values (p_account_id, -p_tokens, 'consume', p_description);

  return true;
end;
$$ language plpgsql security definer;
grant execute on function bench.consume_credits_tracked(uuid, integer, text) to service_role;

-- N: lock the row, check, update. No ledger.
create function bench.naive_debit(p_account_id uuid, p_amount bigint)
returns boolean
language plpgsql
as $$
declare
  v_balance bigint;
begin
  select a.balance into v_balance from bench.accounts a where a.id = p_account_id for update;
  if not found or v_balance < p_amount then
    return false;
  end if;
  update bench.accounts a set balance = a.balance - p_amount where a.id = p_account_id;
  return true;
end;
$$;

-- The mix's "reset": the account's allowance is reset by moving it to the other of two plans with
-- the same allowance. creditkit_set_plan books the old plan's remaining allowance as expired and
-- grants the new one, which is what a period reset does; doing it through a plan change makes it
-- happen now instead of at a period boundary.
create function bench.reset_plan(p_account_id uuid)
returns text
language plpgsql
as $$
declare
  v_plan text;
begin
  select case s.plan_id when 'bench_a' then 'bench_b' else 'bench_a' end into v_plan
    from creditkit.subscriptions s where s.account_id = p_account_id;
  select p.plan_id into v_plan from public.creditkit_set_plan(p_account_id, coalesce(v_plan, 'bench_a')) p;
  return v_plan;
end;
$$;

select public.creditkit_upsert_plan(p_id => 'bench_a', p_name => 'Bench A', p_allowance => 1000);
select public.creditkit_upsert_plan(p_id => 'bench_b', p_name => 'Bench B', p_allowance => 1000);

-- The meter scenario's price: 1 credit per 'chat' event, so a metered call spends what a plain
-- consume of 1 does. In force long before any run; bench.seed leaves the price list alone.
select public.creditkit_set_price('chat', 1, '{}', timestamptz '2000-01-01');

-- Empties the kit's account tables and the baselines' tables and seeds accounts 1..p_accounts on
-- both sides with p_balance credits (M's credits row: as many as its integer holds). On the kit's side each account gets exactly what
-- creditkit_grant would have written (the account row, one purchase bucket, one grant ledger
-- row); with p_balance = 0 the account exists with nothing (as after set_plan on the free plan).
-- Written directly as the superuser, with triggers off (replica role) for speed: the rows are
-- consistent by construction, and the harness checks the kit's invariants after each run.
create function bench.seed(p_accounts integer, p_balance bigint)
returns void
language plpgsql
as $$
begin
  perform set_config('session_replication_role', 'replica', true);
  truncate creditkit.accounts, creditkit.grants, creditkit.ledger, creditkit.ledger_keys, creditkit.holds, creditkit.subscriptions,
           bench.accounts, bench.ledger, bench.credits, bench.credit_transactions
    restart identity cascade;
  -- (auto top-up and alerts exist from 0.3.0 on; the previous release's database has none)
  if to_regclass('creditkit.auto_topups') is not null then
    execute 'truncate creditkit.auto_topups, creditkit.topups, creditkit.account_alerts, creditkit.notifications restart identity cascade';
  end if;
  if p_balance > 0 then
    with a as (
      insert into creditkit.accounts (id, balance, version)
      select bench.account_id(i), p_balance, 1 from generate_series(1, p_accounts) i
      returning id
    ), g as (
      insert into creditkit.grants (account_id, category, amount, remaining, priority)
      select a.id, 'purchase', p_balance, p_balance, 0 from a
      returning id, account_id
    )
    insert into creditkit.ledger (account_id, kind, amount, balance_after, grant_id)
    select g.account_id, 'grant', p_balance, p_balance, g.id from g order by g.id;
  else
    insert into creditkit.accounts (id) select bench.account_id(i) from generate_series(1, p_accounts) i;
  end if;
  insert into bench.accounts (id, balance) select bench.account_id(i), p_balance from generate_series(1, p_accounts) i;
  insert into bench.credits (account_id, tokens)
  select bench.account_id(i), least(p_balance, 2147483647) from generate_series(1, p_accounts) i;
  perform set_config('session_replication_role', 'origin', true);
end;
$$;

-- Cost growth: filler history on separate accounts, written straight into the kit's tables as the
-- superuser (not through the API) with consistent balances. p_accounts filler accounts get p_per
-- ledger rows each: a grant of 1,000,000, then (p_per - 1) consumes of 1, so every account's
-- balance, bucket remainder and version agree with its ledger. bench.fill_rows appends rows
-- round-robin (row j of every account, then row j + 1), so an account's history is spread over the
-- table and the history index receives entries in random order, as with real traffic. The harness
-- calls fill_rows for successive ranges of j, one transaction each.
create function bench.fill_accounts(p_accounts integer, p_per integer)
returns void
language plpgsql
as $$
begin
  perform set_config('session_replication_role', 'replica', true);
  create table bench.filler (n integer primary key, account_id uuid not null, grant_id bigint not null);
  with a as (
    insert into creditkit.accounts (id, balance, version, created_at)
    select md5('creditkit-bench-filler:' || i)::uuid, 1000000 - (p_per - 1), p_per, timestamptz '2026-01-01'
      from generate_series(1, p_accounts) i
    returning id
  ), g as (
    insert into creditkit.grants (account_id, category, amount, remaining, priority, created_at)
    select a.id, 'purchase', 1000000, 1000000 - (p_per - 1), 0, timestamptz '2026-01-01' from a
    returning id, account_id
  )
  insert into bench.filler (n, account_id, grant_id)
  select row_number() over (order by g.id), g.account_id, g.id from g;
  perform set_config('session_replication_role', 'origin', true);
end;
$$;

create function bench.fill_rows(p_j_from integer, p_j_to integer)
returns bigint
language plpgsql
as $$
declare
  v_accounts integer := (select count(*) from bench.filler);
  v_rows bigint;
begin
  perform set_config('session_replication_role', 'replica', true);
  insert into creditkit.ledger (account_id, kind, amount, balance_after, grant_id, event, created_at)
  select f.account_id,
         case when j = 1 then 'grant' else 'consume' end,
         case when j = 1 then 1000000 else -1 end,
         1000000 - (j - 1),
         case when j = 1 then f.grant_id end,
         case when j = 1 then null else 'bench_filler' end,
         timestamptz '2026-01-01' + ((j - 1)::bigint * v_accounts + f.n) * interval '1 millisecond'
    from generate_series(p_j_from, p_j_to) j
   cross join bench.filler f
   order by j, f.n;
  get diagnostics v_rows = row_count;
  perform set_config('session_replication_role', 'origin', true);
  return v_rows;
end;
$$;

-- The kit's invariants over every account: balance = sum(ledger) = sum(bucket remainders) minus
-- what the fast path left undrawn, held = sum of open holds, nothing negative. Returns how many
-- accounts break one (0 expected).
create function bench.broken_accounts()
returns bigint
language sql
as $$
  select count(*)
    from creditkit.accounts a
    left join (select l.account_id, sum(l.amount) as total from creditkit.ledger l group by 1) l on l.account_id = a.id
    left join (select g.account_id, sum(g.remaining) as total from creditkit.grants g group by 1) g on g.account_id = a.id
    left join (select h.account_id, sum(h.amount) as total from creditkit.holds h where h.status = 'open' group by 1) h
           on h.account_id = a.id
   where a.balance <> coalesce(l.total, 0) or a.balance <> coalesce(g.total, 0) - a.undrawn
      or a.held <> coalesce(h.total, 0) or a.balance < 0;
$$;

-- Auto top-up configured on every account, as creditkit_set_auto_topup would leave it (terms for
-- credits, an active auto top-up at p_threshold, the row's alert level), without the Stripe card
-- the API asks for: the bench measures the debit beside it, not the setting.
create function bench.watch_all(p_threshold bigint)
returns void
language plpgsql
as $$
begin
  insert into creditkit.auto_topup_terms (unit, currency, unit_price, min_amount, max_amount)
  values ('credits', 'usd', 1, 1, 1000000)
  on conflict do nothing;
  insert into creditkit.auto_topups (account_id, unit, enabled, status, threshold, amount)
  select a.id, a.unit, true, 'active', p_threshold, 1000 from creditkit.accounts a
  on conflict do nothing;
  update creditkit.accounts set alert_at = p_threshold;
end;
$$;
