-- creditkit 0014: the bucket update leaves the hot path.
--
-- After 0012 a consume served from one bucket was an UPDATE of the account, a HOT UPDATE of the
-- bucket and a ledger INSERT. The bucket update was the largest cost left over the R+L baseline
-- (an UPDATE plus a ledger INSERT): measured with prototypes in the same run, skipping it raised
-- uniform throughput by a quarter to a third (docs/benchmarks.md).
--
-- Now the fast path only counts what it spent in `accounts.undrawn`; the buckets are drawn for
-- that sum the next time anything takes the account's lock (creditkit.lock_account, which every
-- mutation and the expiry sweep go through, before anything else reads or changes a bucket).
-- Drawing a sum at once takes from exactly the buckets the consumes one by one would have taken
-- from: the fast path runs only while nothing is due (no bucket expired, no renewal, no hold
-- expiry), and every event that changes the spend order (a grant, an expiry, a refund, a plan
-- change) takes the lock and draws first. So spend order is fixed between two draws, and greedy
-- draws of a1, a2, ... from a fixed ordered list leave the same remainders as one greedy draw of
-- a1 + a2 + .... Buckets that expired since (still unbooked) were spendable when those consumes
-- ran, and since spend order is soonest expiry first they are drawn first.
--
-- The invariant becomes: accounts.balance = sum(ledger.amount) = sum(grants.remaining) - undrawn.
-- Reads that do not take the lock (live_buckets, hence balance, my_balance and has_credits, and
-- the credits-outstanding report) attribute `undrawn` to the buckets in spend order as they read.
-- A direct SELECT of creditkit.grants.remaining can be ahead of the truth by `undrawn` until the
-- account is next locked; the kit's functions never read it that way.

alter table creditkit.accounts add column undrawn bigint not null default 0;
alter table creditkit.accounts add constraint accounts_undrawn_range check (undrawn between 0 and 9007199254740991);
comment on column creditkit.accounts.undrawn is
  'Credits consumed on the fast path and not yet taken from buckets; drawn in spend order under the next lock.';

-- ---------------------------------------------------------------------------------------------
-- The lock point draws what the fast path left undrawn, before anything else reads the buckets.
-- ---------------------------------------------------------------------------------------------

-- Draws the account's undrawn credit from its buckets in spend order. The caller holds the lock.
-- '-infinity': every bucket with credit left, expired or not. The consumes counted in undrawn ran
-- while nothing was due, so each of these buckets was spendable when they ran.
create or replace function creditkit.draw_undrawn(p_account_id uuid)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_undrawn bigint;
begin
  select a.undrawn into v_undrawn from creditkit.accounts a where a.id = p_account_id;
  if v_undrawn > 0 then
    perform creditkit.draw_down(p_account_id, v_undrawn, '-infinity');
    update creditkit.accounts a set undrawn = 0 where a.id = p_account_id;
  end if;
end;
$$;
comment on function creditkit.draw_undrawn(uuid) is
  'Takes the credit the fast path consumed (accounts.undrawn) from the buckets in spend order, for a locked account.';
revoke all on function creditkit.draw_undrawn(uuid) from public, anon, authenticated, service_role;

create or replace function creditkit.lock_account(p_account_id uuid, p_now timestamptz)
returns bigint
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_balance bigint;
  v_held bigint;
  v_due_at timestamptz;
  v_undrawn bigint;
begin
  if p_account_id is null then
    raise exception using errcode = 'CK006', message = 'invalid argument: account id must not be NULL';
  end if;
  select a.balance, a.held, a.due_at, a.undrawn into v_balance, v_held, v_due_at, v_undrawn
    from creditkit.accounts a
   where a.id = p_account_id
     for update;
  if not found then
    raise exception using
      errcode = 'CK003',
      message = format('unknown account: %s', p_account_id),
      detail = jsonb_build_object('account_id', p_account_id)::text;
  end if;
  if v_due_at <= p_now then
    v_balance := creditkit.book_due(p_account_id, p_now);  -- draws first
    select a.held into v_held from creditkit.accounts a where a.id = p_account_id;
  elsif v_undrawn > 0 then
    perform creditkit.draw_undrawn(p_account_id);
  end if;
  return greatest(v_balance - v_held, 0);
end;
$$;
comment on function creditkit.lock_account(uuid, timestamptz) is
  'Locks an account row, draws from buckets what the fast path left undrawn, books what is due by p_now, returns the spendable balance (balance - held). CK003 if unknown.';
revoke all on function creditkit.lock_account(uuid, timestamptz) from public, anon, authenticated, service_role;

-- book_due runs under lock_account and under the optional sweep (creditkit_book_expired), so the
-- draw comes first here: renewals, refunds and expiry must see the buckets as they truly stand.
create or replace function creditkit.book_due(p_account_id uuid, p_now timestamptz)
returns bigint
language plpgsql
volatile
set search_path = ''
as $$
begin
  perform creditkit.draw_undrawn(p_account_id);
  perform creditkit.renew_period(p_account_id, p_now);
  perform creditkit.expire_holds(p_account_id, p_now);
  return creditkit.book_expired(p_account_id, p_now);  -- also refreshes due_at
end;
$$;
comment on function creditkit.book_due(uuid, timestamptz) is
  'The slow path of a touch: draws undrawn credit, then books renewals, expired holds and expired credit due by p_now on a locked account.';
revoke all on function creditkit.book_due(uuid, timestamptz) from public, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Reads without the lock attribute `undrawn` to the buckets in spend order.
-- ---------------------------------------------------------------------------------------------
-- A bucket's share of `undrawn` is what is left of it after the buckets before it in spend order
-- took theirs: least(remaining, greatest(undrawn - remaining of the buckets before it, 0)).
create or replace function creditkit.live_buckets(
  p_account_id uuid, p_now timestamptz,
  out balance bigint, out next_expiry timestamptz, out buckets jsonb)
returns record
language sql
stable
security invoker
set search_path = ''
as $$
  with b as (
    select g.id, g.category, g.amount, g.priority, g.expires_at, g.created_at,
           (g.remaining - least(g.remaining, greatest(coalesce(a.undrawn, 0) - (sum(g.remaining) over w - g.remaining), 0)))::bigint
             as remaining
      from creditkit.grants g
      left join creditkit.accounts a on a.id = g.account_id
     where g.account_id = p_account_id and g.live
    window w as (order by g.expires_at, g.priority desc, g.created_at, g.id rows between unbounded preceding and current row)
  )
  select greatest(coalesce(sum(b.remaining), 0) - creditkit.held_at(p_account_id, p_now), 0)::bigint,
         min(b.expires_at),
         coalesce(jsonb_agg(jsonb_build_object(
                    'grant_id', b.id, 'category', b.category, 'remaining', b.remaining, 'amount', b.amount,
                    'priority', b.priority, 'expires_at', b.expires_at, 'created_at', b.created_at)
                  order by b.expires_at, b.priority desc, b.created_at, b.id), '[]'::jsonb)
    from b
   where b.remaining > 0 and (b.expires_at is null or b.expires_at > p_now);
$$;
comment on function creditkit.live_buckets(uuid, timestamptz) is
  'Spendable balance at p_now (live buckets minus open holds), the soonest bucket expiry and the live buckets in spend order, with what the fast path left undrawn taken from them.';
revoke all on function creditkit.live_buckets(uuid, timestamptz) from public, anon, authenticated, service_role;
grant execute on function creditkit.live_buckets(uuid, timestamptz) to authenticated, service_role;

create or replace function public.creditkit_credits_outstanding(p_now timestamptz default now())
returns table (category text, credits bigint, accounts bigint)
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
  perform creditkit.check_request(null, null, null, p_now);
  return query
    with b as (
      select g.account_id, g.category, g.expires_at,
             (g.remaining - least(g.remaining, greatest(a.undrawn - (sum(g.remaining) over w - g.remaining), 0)))::bigint as remaining
        from creditkit.grants g
        join creditkit.accounts a on a.id = g.account_id
       where g.live
      window w as (partition by g.account_id order by g.expires_at, g.priority desc, g.created_at, g.id
                   rows between unbounded preceding and current row)
    )
    select b.category, sum(b.remaining)::bigint, count(distinct b.account_id)::bigint
      from b
     where b.remaining > 0 and (b.expires_at is null or b.expires_at > p_now)
     group by b.category
     order by 1;
end;
$$;
comment on function public.creditkit_credits_outstanding(timestamptz) is
  'Server only. The liability: credits still spendable at p_now by category (purchased credits are the ones you owe service for), and how many accounts hold them. Expired credit is excluded even if not yet booked.';
revoke all on function public.creditkit_credits_outstanding(timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_credits_outstanding(timestamptz) to service_role;

-- ---------------------------------------------------------------------------------------------
-- creditkit_consume: same signature, answers and errors. The fast path is now one UPDATE of the
-- account and one ledger INSERT.
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
  -- fails the test (too little credit, or something due) is skipped without a lock. The buckets
  -- are not touched: `undrawn` counts the credit, and the next lock_account draws it.
  update creditkit.accounts a
     set balance = a.balance - p_amount,
         undrawn = a.undrawn + p_amount,
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
        update creditkit.accounts a
           set balance = a.balance + p_amount, undrawn = a.undrawn - p_amount, version = a.version - 1
         where a.id = p_account_id;
        allowed := true;
        balance := v_prior.balance_after;
        transaction_id := v_prior.id;
        return;
      end if;
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
