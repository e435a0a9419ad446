-- creditkit 0012: the hot path, redesigned after profiling (docs/benchmarks.md has the figures).
--
-- What a consume cost before this migration, per call, on top of the raw UPDATE of the balance:
--   * SELECT ... FOR UPDATE of the account, then a second UPDATE of the same row: two statements,
--     and a row lock that also wrote WAL for the requests it then refused (the rejection storm);
--   * a non-HOT UPDATE of the bucket: `remaining` sat in the predicate of grants_spendable, so
--     every draw wrote a new heap tuple and two index entries (grants_pkey, grants_spendable);
--   * two ledger indexes (the id primary key and ledger_account_history), each written per row;
--   * the foreign key check of ledger.account_id: a FOR KEY SHARE lock (a WAL record) on the
--     account row the same transaction had just updated;
--   * eight plpgsql helper calls, each with its own SET search_path.
--
-- After it, a consume that can be served from one bucket is:
--   1. one UPDATE of the account that checks and debits at once (`balance - held >= amount` and
--      nothing due). It takes the row lock only when it succeeds; a refused request writes nothing;
--   2. one HOT UPDATE of the bucket the credit comes from;
--   3. one ledger INSERT with one index (the primary key (account_id, id), which also serves
--      history), plus the idempotency index when a key is given.
-- Anything else (something due, an idempotency replay, a draw spanning buckets, an unknown
-- account) takes the slow path, which is the old code: creditkit.lock_account and friends.

-- ---------------------------------------------------------------------------------------------
-- Buckets: HOT-updatable. `live` changes only when a bucket empties, so the indexes that need to
-- know whether a bucket has credit left depend on it instead of on `remaining`.
-- ---------------------------------------------------------------------------------------------
alter table creditkit.grants add column live boolean generated always as (remaining > 0) stored;
comment on column creditkit.grants.live is
  'remaining > 0, stored. Indexes use it instead of remaining so that drawing from a bucket is a HOT update.';
drop index creditkit.grants_spendable;
create index grants_spendable on creditkit.grants (account_id, expires_at, priority desc, created_at, id) where live;
-- For the slow-path queries that filter on remaining > 0 (expiry, renewal, Stripe rollover).
create index grants_account on creditkit.grants (account_id);
-- Room on every page for the next versions of its rows, so updates stay HOT (they must land on
-- the same page). New pages only; an existing install's tables fill in as they grow.
alter table creditkit.grants set (fillfactor = 80);
alter table creditkit.accounts set (fillfactor = 80);

-- ---------------------------------------------------------------------------------------------
-- Ledger: one index, no foreign key to accounts.
-- ---------------------------------------------------------------------------------------------
-- (account_id, id) is the history order and is unique because id is. The id stays an identity
-- column, unique by construction (GENERATED ALWAYS refuses values from outside).
alter table creditkit.holds drop constraint holds_transaction_id_fkey;
alter table creditkit.ledger drop constraint ledger_pkey;
drop index creditkit.ledger_account_history;
alter table creditkit.ledger add constraint ledger_pkey primary key (account_id, id);
alter table creditkit.holds
  add constraint holds_transaction_id_fkey foreign key (account_id, transaction_id)
  references creditkit.ledger (account_id, id);
-- Every ledger row is written by a creditkit function that holds the account's row lock, so the
-- account exists; and an account with ledger rows has buckets, whose foreign key keeps it from
-- being deleted. The ledger's own foreign key added a row lock and its WAL record to every write.
alter table creditkit.ledger drop constraint ledger_account_id_fkey;

-- ---------------------------------------------------------------------------------------------
-- Spending from buckets
-- ---------------------------------------------------------------------------------------------

-- Same contract as before (spend order: soonest expiry, then priority, then oldest); reads the
-- live buckets through grants_spendable.
create or replace function creditkit.draw_down(p_account_id uuid, p_amount bigint, p_now timestamptz)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_left bigint := p_amount;
  v_take bigint;
  v_bucket record;
begin
  for v_bucket in
    select g.id, g.remaining
      from creditkit.grants g
     where g.account_id = p_account_id and g.live and (g.expires_at is null or g.expires_at > p_now)
     order by g.expires_at, g.priority desc, g.created_at, g.id
  loop
    v_take := least(v_bucket.remaining, v_left);
    update creditkit.grants g set remaining = g.remaining - v_take where g.id = v_bucket.id;
    v_left := v_left - v_take;
    exit when v_left = 0;
  end loop;
  if v_left <> 0 then
    raise exception 'creditkit invariant broken: buckets of account % do not cover its balance', p_account_id;
  end if;
end;
$$;
comment on function creditkit.draw_down(uuid, bigint, timestamptz) is
  'Spends from live buckets: soonest expiry, then higher priority, then oldest.';
revoke all on function creditkit.draw_down(uuid, bigint, timestamptz) from public, anon, authenticated, service_role;

create or replace function creditkit.live_buckets(
  p_account_id uuid, p_now timestamptz,
  out balance bigint, out next_expiry timestamptz, out buckets jsonb)
returns record
language sql
stable
security invoker
set search_path = ''
as $$
  select greatest(coalesce(sum(g.remaining), 0) - creditkit.held_at(p_account_id, p_now), 0)::bigint,
         min(g.expires_at),
         coalesce(jsonb_agg(jsonb_build_object(
                    'grant_id', g.id, 'category', g.category, 'remaining', g.remaining, 'amount', g.amount,
                    'priority', g.priority, 'expires_at', g.expires_at, 'created_at', g.created_at)
                  order by g.expires_at, g.priority desc, g.created_at, g.id), '[]'::jsonb)
    from creditkit.grants g
   where g.account_id = p_account_id and g.live and (g.expires_at is null or g.expires_at > p_now);
$$;
comment on function creditkit.live_buckets(uuid, timestamptz) is
  'Spendable balance at p_now (live buckets minus open holds), the soonest bucket expiry and the live buckets in spend order.';
revoke all on function creditkit.live_buckets(uuid, timestamptz) from public, anon, authenticated, service_role;
grant execute on function creditkit.live_buckets(uuid, timestamptz) to authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- creditkit_consume: same signature, answers and errors; a fast path in front of the old code.
-- ---------------------------------------------------------------------------------------------

-- Security definer: writes the kit's tables, which no client role may write; service_role only.
create or replace function public.creditkit_consume(
  p_account_id uuid,
  p_amount bigint,
  p_event text default null,
  p_idempotency_key text default null,
  p_metadata jsonb default null,
  p_cost_micros bigint default null,
  p_now timestamptz default now(),
  out allowed boolean,
  out balance bigint,
  out transaction_id bigint)
returns record
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  v_metadata jsonb := '{}'::jsonb;
  v_balance bigint;
  v_held bigint;
  v_due_at timestamptz;
  v_prior creditkit.ledger;
  v_entry creditkit.ledger;
begin
  -- creditkit.assert_server_caller, inlined: this function is the hot path.
  if current_setting('role', true) in ('anon', 'authenticated')
     or (select auth.role()) in ('anon', 'authenticated') then
    perform creditkit.assert_server_caller();
  end if;
  -- The common case in one test; anything out of range goes to the validators for its error.
  if p_amount is null or p_amount < 1 or p_amount > 9007199254740991 or p_now is null
     or p_cost_micros < 0 or p_cost_micros > 9007199254740991 then
    perform creditkit.check_amount(p_amount);
    perform creditkit.check_money(p_cost_micros);
    perform creditkit.check_request(null, null, null, p_now);
  end if;
  if p_event is not null or p_idempotency_key is not null or p_metadata is not null then
    v_metadata := creditkit.check_request(p_idempotency_key, p_event, p_metadata, p_now);
  end if;
  if p_account_id is null then
    raise exception using errcode = 'CK006', message = 'invalid argument: account id must not be NULL';
  end if;

  -- Fast path: check and debit in one statement. It locks the row only if it debits; a row that
  -- fails the test (too little credit, or something due) is skipped without a lock.
  update creditkit.accounts a
     set balance = a.balance - p_amount,
         version = a.version + 1
   where a.id = p_account_id
     and a.balance - a.held >= p_amount
     and (a.due_at is null or a.due_at > p_now)
  returning a.balance, a.held into v_balance, v_held;

  if found then
    -- Every write of this account's ledger holds its row lock, which we now hold, so this read
    -- sees any earlier call with the key. A replay undoes the debit (the rare case pays).
    if p_idempotency_key is not null then
      v_prior := creditkit.find_replay(p_account_id, p_idempotency_key, 'consume', -p_amount, p_event, v_metadata,
                                       p_cost_micros, null);
      if v_prior.id is not null then
        update creditkit.accounts a set balance = a.balance + p_amount, version = a.version - 1
         where a.id = p_account_id;
        allowed := true;
        balance := v_prior.balance_after;
        transaction_id := v_prior.id;
        return;
      end if;
    end if;
    -- Nothing is due, so every bucket with credit left is live. The first in spend order pays
    -- if it can; otherwise the draw spans buckets.
    update creditkit.grants g
       set remaining = g.remaining - p_amount
     where g.id = (select s.id from creditkit.grants s
                    where s.account_id = p_account_id and s.live
                    order by s.expires_at, s.priority desc, s.created_at, s.id
                    limit 1)
       and g.remaining >= p_amount;
    if not found then
      perform creditkit.draw_down(p_account_id, p_amount, p_now);
    end if;
    insert into creditkit.ledger (account_id, kind, amount, balance_after, event, idempotency_key,
                                  cost_micros, metadata, created_at)
    values (p_account_id, 'consume', -p_amount, v_balance, p_event, p_idempotency_key,
            p_cost_micros, v_metadata, p_now)
    returning id into transaction_id;
    allowed := true;
    balance := greatest(v_balance - v_held, 0);
    return;
  end if;

  -- Refused without a lock: read the account once. When nothing is due, the key (if any) was
  -- never used and the spendable balance cannot cover the amount, that snapshot is the answer:
  -- blocked, and nothing written, not even a row lock.
  select a.balance, a.held, a.due_at into v_balance, v_held, v_due_at
    from creditkit.accounts a where a.id = p_account_id;
  if found and (v_due_at is null or v_due_at > p_now) and greatest(v_balance - v_held, 0) < p_amount
     and (p_idempotency_key is null
          or not exists (select from creditkit.ledger l
                          where l.account_id = p_account_id and l.idempotency_key = p_idempotency_key)) then
    allowed := false;
    balance := greatest(v_balance - v_held, 0);
    return;
  end if;

  -- Slow path (unknown account, something due, a replay, or credit that arrived meanwhile).
  v_balance := creditkit.lock_account(p_account_id, p_now);
  v_prior := creditkit.find_replay(p_account_id, p_idempotency_key, 'consume', -p_amount, p_event, v_metadata,
                                   p_cost_micros, null);
  if v_prior.id is not null then
    allowed := true;
    balance := v_prior.balance_after;
    transaction_id := v_prior.id;
    return;
  end if;
  if v_balance < p_amount then
    -- Blocked: a result, not an error, and no ledger row.
    allowed := false;
    balance := v_balance;
    return;
  end if;
  perform creditkit.draw_down(p_account_id, p_amount, p_now);
  v_entry := creditkit.append_entry(p_account_id, 'consume', -p_amount, null, p_event, p_idempotency_key,
                                    v_metadata, p_now, null, p_cost_micros, null);
  allowed := true;
  balance := v_balance - p_amount;
  transaction_id := v_entry.id;
end;
$$;
comment on function public.creditkit_consume(uuid, bigint, text, text, jsonb, bigint, timestamptz) is
  'Server only. Spends credit if the account can cover it: allowed=true with the new balance and ledger id, or allowed=false (blocked, nothing spent). Never below zero. Idempotent by key.';
revoke all on function public.creditkit_consume(uuid, bigint, text, text, jsonb, bigint, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_consume(uuid, bigint, text, text, jsonb, bigint, timestamptz) to service_role;
