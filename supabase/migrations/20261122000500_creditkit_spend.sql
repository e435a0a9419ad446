-- creditkit spend: the lock point and the lazy work it books, the debit, and the ledger API
-- (grant, consume, adjust, balance, history, the expiry sweep, and the caller-bound reads).
--
-- Shape of every mutation: validate -> lock the (account, unit) row -> book what is due by p_now
-- (expired credit, renewals, expired holds) -> replay if the idempotency key was seen -> act ->
-- append one ledger row. A consume that finds nothing due skips the lock until it debits: one
-- guarded UPDATE of the row and one ledger INSERT (docs/benchmarks.md has the figures).
--
-- Security: mutations are security definer because no client role (service_role included) has
-- write privileges on the kit's tables; EXECUTE is granted to service_role only, and each one
-- also refuses anon/authenticated callers. Reads are security invoker, so RLS applies to them.

-- ---------------------------------------------------------------------------------------------
-- The lock point and the lazy work it books
-- ---------------------------------------------------------------------------------------------

-- accounts.due_at is computed here and nowhere else, so no path can forget a kind of due work.
-- plpgsql, not SQL, for Citus (docs/citus.md, F3).
create or replace function creditkit.refresh_due_at(p_account_id uuid, p_unit text)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
  update creditkit.accounts a
     set due_at = least(
           (select min(g.expires_at) from creditkit.grants g
             where g.account_id = p_account_id and g.unit = p_unit and g.remaining > 0),
           (select s.renews_at from creditkit.subscriptions s where s.account_id = p_account_id and p_unit = 'credits'),
           (select al.renews_at from creditkit.allowances al where al.account_id = p_account_id and al.unit = p_unit),
           (select min(h.expires_at) from creditkit.holds h
             where h.account_id = p_account_id and h.unit = p_unit and h.status = 'open'))
   where a.id = p_account_id and a.unit = p_unit;
end;
$$;
comment on function creditkit.refresh_due_at(uuid, text) is
  'Sets due_at of an (account, unit) row to the earliest time anything is due on it: bucket expiry, renewal or hold expiry.';
revoke all on function creditkit.refresh_due_at(uuid, text) from public, anon, authenticated, service_role;

-- Books what expired by p_now on a locked account: each expired bucket's remainder leaves the
-- balance as an 'expire' ledger row, except what open holds cover. A hold covers credit in spend
-- order, soonest expiry first, as its settle would draw it; so up to what the open holds reserved
-- before the credit expired stays (the last to expire keep it), payable to them alone (a settle
-- draws it first), and leaves the next time this runs after they close. A hold reserved after the
-- expiry never reaches it. balance - held never goes below zero. The caller holds the lock and has
-- drawn what was undrawn, and holds it closes are no longer open. Returns the new balance.
create or replace function creditkit.book_expired(p_account_id uuid, p_unit text, p_now timestamptz)
returns bigint
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_balance bigint;
  v_last timestamptz;
  v_held bigint;
  v_total bigint;
  v_rows integer;
begin
  select a.balance into v_balance from creditkit.accounts a where a.id = p_account_id and a.unit = p_unit;
  select max(g.expires_at) into v_last
    from creditkit.grants g
   where g.account_id = p_account_id and g.unit = p_unit and g.remaining > 0 and g.expires_at <= p_now;
  if v_last is null then
    perform creditkit.refresh_due_at(p_account_id, p_unit);
    return v_balance;
  end if;
  -- what the open holds reserved while the expired credit could still be spent
  select coalesce(sum(h.amount), 0) into v_held
    from creditkit.holds h
   where h.account_id = p_account_id and h.unit = p_unit and h.status = 'open' and h.created_at < v_last;

  with due as (
    select g.id, g.remaining, g.expires_at,
           sum(g.remaining) over (order by g.expires_at, g.id) as running,
           sum(g.remaining) over () as total
      from creditkit.grants g
     where g.account_id = p_account_id and g.unit = p_unit and g.remaining > 0 and g.expires_at <= p_now
  ), cut as (
    -- expired so far (through this bucket), and what this bucket gives up
    select due.id, due.expires_at,
           least(due.running, greatest(due.total - v_held, 0)) as expired,
           least(due.running, greatest(due.total - v_held, 0))
             - least(due.running - due.remaining, greatest(due.total - v_held, 0)) as amount
      from due
  ), taken as (
    update creditkit.grants g set remaining = g.remaining - cut.amount
      from cut where g.account_id = p_account_id and g.id = cut.id and cut.amount > 0
  ), booked as (
    insert into creditkit.ledger (account_id, kind, amount, balance_after, grant_id, metadata, created_at, unit)
    select p_account_id, 'expire', -cut.amount, v_balance - cut.expired, cut.id,
           jsonb_build_object('expires_at', cut.expires_at), p_now, p_unit
      from cut
     where cut.amount > 0
     order by cut.expires_at, cut.id
    returning amount
  )
  select coalesce(-sum(booked.amount), 0), count(*) into v_total, v_rows from booked;

  if v_rows > 0 then
    update creditkit.accounts a
       set balance = a.balance - v_total,
           version = a.version + v_rows
     where a.id = p_account_id and a.unit = p_unit
    returning a.balance into v_balance;
  end if;
  perform creditkit.refresh_due_at(p_account_id, p_unit);
  return v_balance;
end;
$$;
comment on function creditkit.book_expired(uuid, text, timestamptz) is
  'Books expired buckets of a locked (account, unit) row as expire ledger rows, keeping what open holds still need; returns the new balance.';
revoke all on function creditkit.book_expired(uuid, text, timestamptz) from public, anon, authenticated, service_role;

-- Takes p_amount out of the account's live buckets in spend order (soonest expiry, then priority,
-- then oldest). The caller holds the lock and has checked the balance, which equals the live
-- buckets' sum once expired credit is booked and undrawn credit drawn.
create or replace function creditkit.draw_down(p_account_id uuid, p_unit text, p_amount bigint, p_now timestamptz)
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
     where g.account_id = p_account_id and g.unit = p_unit and g.live and (g.expires_at is null or g.expires_at > p_now)
     order by g.expires_at, g.priority desc, g.created_at, g.id
  loop
    v_take := least(v_bucket.remaining, v_left);
    update creditkit.grants g set remaining = g.remaining - v_take where g.account_id = p_account_id and g.id = v_bucket.id;
    v_left := v_left - v_take;
    exit when v_left = 0;
  end loop;
  if v_left <> 0 then
    raise exception 'creditkit invariant broken: buckets of account % in % do not cover its balance', p_account_id, p_unit;
  end if;
end;
$$;
comment on function creditkit.draw_down(uuid, text, bigint, timestamptz) is
  'Spends from live buckets of an (account, unit): soonest expiry, then higher priority, then oldest.';
revoke all on function creditkit.draw_down(uuid, text, bigint, timestamptz) from public, anon, authenticated, service_role;

-- Draws the account's undrawn credit from its buckets in spend order. The caller holds the lock.
--
-- Why one draw of the sum is exact: the fast path runs only while nothing is due, and every event
-- that changes the spend order (a grant, an expiry, a refund, a plan change) takes the lock and
-- draws first. So the spend order is fixed between two draws, and greedy draws of a1, a2, ... from
-- a fixed ordered list leave the same remainders as one greedy draw of a1 + a2 + .... Buckets that
-- expired since (still unbooked) were spendable when those consumes ran and, soonest expiry first,
-- are drawn first: hence '-infinity', every bucket with credit left, expired or not.
create or replace function creditkit.draw_undrawn(p_account_id uuid, p_unit text)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_undrawn bigint;
begin
  select a.undrawn into v_undrawn from creditkit.accounts a where a.id = p_account_id and a.unit = p_unit;
  if v_undrawn > 0 then
    perform creditkit.draw_down(p_account_id, p_unit, v_undrawn, '-infinity');
    update creditkit.accounts a set undrawn = 0 where a.id = p_account_id and a.unit = p_unit;
  end if;
end;
$$;
comment on function creditkit.draw_undrawn(uuid, text) is
  'Takes what the fast path consumed (accounts.undrawn) from the buckets in spend order, for a locked (account, unit) row.';
revoke all on function creditkit.draw_undrawn(uuid, text) from public, anon, authenticated, service_role;

-- The slow path of a touch, under the account lock (creditkit.lock_account, or the optional sweep
-- creditkit_book_expired): the draw comes first, so renewals, refunds and expiry see the buckets
-- as they truly stand.
create or replace function creditkit.book_due(p_account_id uuid, p_unit text, p_now timestamptz)
returns bigint
language plpgsql
volatile
set search_path = ''
as $$
begin
  perform creditkit.draw_undrawn(p_account_id, p_unit);
  perform creditkit.renew_period(p_account_id, p_unit, p_now);
  perform creditkit.expire_holds(p_account_id, p_unit, p_now);
  return creditkit.book_expired(p_account_id, p_unit, p_now);  -- also refreshes due_at
end;
$$;
comment on function creditkit.book_due(uuid, text, timestamptz) is
  'The slow path of a touch: draws undrawn credit, then books renewals, expired holds and expired credit due by p_now on a locked (account, unit) row.';
revoke all on function creditkit.book_due(uuid, text, timestamptz) from public, anon, authenticated, service_role;

-- What an account can spend now: its balance less what open holds reserve, never below zero
-- (bucket expiry can leave less than is held). The answer every mutation reports.
create or replace function creditkit.spendable(p_account_id uuid, p_unit text)
returns bigint
language sql
stable
set search_path = ''
as $$
  select greatest(a.balance - a.held, 0) from creditkit.accounts a where a.id = p_account_id and a.unit = p_unit;
$$;
comment on function creditkit.spendable(uuid, text) is 'The spendable balance of an (account, unit): balance - held, at least 0.';
revoke all on function creditkit.spendable(uuid, text) from public, anon, authenticated, service_role;

-- The one lock point of every mutation: locks the (account, unit) row, draws what the fast path
-- left undrawn, books what is due when due_at says anything is, and returns the spendable balance
-- (balance - held, never below zero: bucket expiry can leave less than is held). A missing row of
-- a unit other than credits is opened first when the plan in force has a limit for it
-- (creditkit.open_unit; CK015 for a unit that is not metered). A call that locks several rows of
-- one account locks its other units first, in unit order, and credits last (creditkit.lock_units).
create or replace function creditkit.lock_account(p_account_id uuid, p_unit text, p_now timestamptz)
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
   where a.id = p_account_id and a.unit = p_unit
     for update;
  if not found then
    if creditkit.open_unit(p_account_id, p_unit, p_now, false) then
      select a.balance, a.held, a.due_at, a.undrawn into v_balance, v_held, v_due_at, v_undrawn
        from creditkit.accounts a
       where a.id = p_account_id and a.unit = p_unit
         for update;
    end if;
    if not found then
      raise exception using
        errcode = 'CK003',
        message = format('unknown account: %s (in %s)', p_account_id, p_unit),
        detail = jsonb_build_object('account_id', p_account_id)::text;
    end if;
  end if;
  if v_due_at <= p_now then
    v_balance := creditkit.book_due(p_account_id, p_unit, p_now);  -- draws first
    select a.held into v_held from creditkit.accounts a where a.id = p_account_id and a.unit = p_unit;
  elsif v_undrawn > 0 then
    perform creditkit.draw_undrawn(p_account_id, p_unit);
  end if;
  return greatest(v_balance - v_held, 0);
end;
$$;
comment on function creditkit.lock_account(uuid, text, timestamptz) is
  'Locks an (account, unit) row (opening it if the plan has a limit for the unit), draws from buckets what the fast path left undrawn, books what is due by p_now, returns the spendable balance (balance - held). CK003 if unknown, CK015 for a unit that is not metered.';
revoke all on function creditkit.lock_account(uuid, text, timestamptz) from public, anon, authenticated, service_role;

-- For a spend on the slow path: whether the (account, unit) row exists, opening it when the plan in
-- force has a limit for the unit. False for a known account that holds nothing in the unit (a spend
-- is blocked, with balance 0); CK003 for an unknown account, CK015 for a unit that is not metered.
create or replace function creditkit.unit_row_ready(p_account_id uuid, p_unit text, p_now timestamptz)
returns boolean
language plpgsql
volatile
set search_path = ''
as $$
begin
  if p_account_id is null then
    raise exception using errcode = 'CK006', message = 'invalid argument: account id must not be NULL';
  end if;
  if exists (select from creditkit.accounts a where a.id = p_account_id and a.unit = p_unit)
     or creditkit.open_unit(p_account_id, p_unit, p_now, false) then
    return true;
  end if;
  if p_unit <> 'credits' and exists (select from creditkit.accounts a where a.id = p_account_id and a.unit = 'credits') then
    return false;
  end if;
  raise exception using
    errcode = 'CK003',
    message = format('unknown account: %s', p_account_id),
    detail = jsonb_build_object('account_id', p_account_id)::text;
end;
$$;
comment on function creditkit.unit_row_ready(uuid, text, timestamptz) is
  'Whether an (account, unit) row exists or was opened now for its plan limit; false for a known account with nothing in the unit; CK003/CK015 otherwise.';
revoke all on function creditkit.unit_row_ready(uuid, text, timestamptz) from public, anon, authenticated, service_role;

-- The earlier ledger row made with this key, or NULL. Raises CK004 when the key was used for
-- something else. Called under the account lock, so a concurrent first call has committed. The
-- lookup is a probe of creditkit.ledger_keys' primary key, then of the ledger's.
-- p_amount NULL matches any amount, and p_ignore names metadata keys left out of the comparison:
-- a metered event is matched on what was asked, not on the price it paid (which may have changed).
create or replace function creditkit.find_replay(
  p_account_id uuid, p_unit text, p_idempotency_key text, p_kind text, p_amount bigint, p_event text, p_metadata jsonb,
  p_cost_micros bigint default null, p_revenue_micros bigint default null, p_ignore text[] default '{}')
returns creditkit.ledger
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_prior creditkit.ledger;
begin
  if p_idempotency_key is null then
    return null;
  end if;
  -- (the key's row first, then the ledger row by its whole primary key: a join would let the
  -- planner, misled by stale statistics, scan the account's history)
  select l.* into v_prior
    from creditkit.ledger l
   where l.account_id = p_account_id
     and l.id = (select k.ledger_id from creditkit.ledger_keys k
                  where k.account_id = p_account_id and k.idempotency_key = p_idempotency_key);
  -- (a key names one operation of the account, whatever its unit: the same key in another unit is
  -- a different request)
  if found and (v_prior.kind <> p_kind or v_prior.unit <> p_unit or v_prior.amount <> p_amount
                or v_prior.event is distinct from p_event or v_prior.metadata - p_ignore <> p_metadata
                or v_prior.cost_micros is distinct from p_cost_micros
                or v_prior.revenue_micros is distinct from p_revenue_micros) then
    raise exception using
      errcode = 'CK004',
      message = format('idempotency conflict: key %L was already used for a different %s request', p_idempotency_key, v_prior.kind),
      detail = jsonb_build_object('transaction_id', v_prior.id)::text;
  end if;
  return v_prior;
end;
$$;
comment on function creditkit.find_replay(uuid, text, text, text, bigint, text, jsonb, bigint, bigint, text[]) is
  'Idempotency: the ledger row an earlier call with this key wrote, NULL if none; CK004 if parameters (or the unit) differ.';
revoke all on function creditkit.find_replay(uuid, text, text, text, bigint, text, jsonb, bigint, bigint, text[]) from public, anon, authenticated, service_role;

create or replace function creditkit.add_grant(
  p_account_id uuid, p_unit text, p_category text, p_amount bigint, p_priority integer,
  p_expires_at timestamptz, p_metadata jsonb, p_now timestamptz)
returns bigint
language sql
volatile
set search_path = ''
as $$
  insert into creditkit.grants (account_id, unit, category, amount, remaining, priority, expires_at, metadata, created_at)
  values (p_account_id, p_unit, p_category, p_amount, p_amount,
          coalesce(p_priority, case when p_category = 'promotional' then 30 when p_category = 'plan' then 20
                                    when p_category = 'adjustment' then 10 else 0 end),
          p_expires_at, p_metadata, p_now)
  returning id;
$$;
comment on function creditkit.add_grant(uuid, text, text, bigint, integer, timestamptz, jsonb, timestamptz) is
  'Creates a bucket of an (account, unit); default priority by category (promotional 30, plan 20, adjustment 10, purchase 0).';
revoke all on function creditkit.add_grant(uuid, text, text, bigint, integer, timestamptz, jsonb, timestamptz) from public, anon, authenticated, service_role;

-- Applies a signed change to the locked (account, unit) row and appends its ledger row (and its key).
create or replace function creditkit.append_entry(
  p_account_id uuid, p_unit text, p_kind text, p_amount bigint, p_grant_id bigint, p_event text,
  p_idempotency_key text, p_metadata jsonb, p_now timestamptz, p_expires_at timestamptz,
  p_cost_micros bigint default null, p_revenue_micros bigint default null)
returns creditkit.ledger
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_balance bigint;
  v_entry creditkit.ledger;
begin
  update creditkit.accounts a
     set balance = a.balance + p_amount,
         version = a.version + 1,
         due_at = least(a.due_at, p_expires_at)
   where a.id = p_account_id and a.unit = p_unit
  returning a.balance into v_balance;

  insert into creditkit.ledger (account_id, kind, amount, balance_after, grant_id, event, idempotency_key,
                                cost_micros, revenue_micros, metadata, created_at, unit)
  values (p_account_id, p_kind, p_amount, v_balance, p_grant_id, p_event, p_idempotency_key,
          p_cost_micros, p_revenue_micros, p_metadata, p_now, p_unit)
  returning * into v_entry;
  if p_idempotency_key is not null then
    -- the caller holds the lock and found no replay, so the key is new
    insert into creditkit.ledger_keys (account_id, idempotency_key, ledger_id)
    values (p_account_id, p_idempotency_key, v_entry.id);
  end if;
  return v_entry;
end;
$$;
comment on function creditkit.append_entry(uuid, text, text, bigint, bigint, text, text, jsonb, timestamptz, timestamptz, bigint, bigint) is
  'Moves the balance of a locked (account, unit) row by a signed amount and appends the ledger row.';
revoke all on function creditkit.append_entry(uuid, text, text, bigint, bigint, text, text, jsonb, timestamptz, timestamptz, bigint, bigint) from public, anon, authenticated, service_role;

-- Reads that take no lock (balance, my_balance, has_credits) attribute `undrawn` to the buckets in
-- spend order: a bucket's share is what is left of undrawn after the buckets before it took
-- theirs, least(remaining, greatest(undrawn - remaining of the buckets before it, 0)). Credit that
-- expired by p_now counts only toward the open holds reserved before it expired (as book_expired
-- keeps it): the spendable balance is the credit that has not expired less what the holds reserve
-- beyond that. Security invoker: for a signed-in caller RLS limits it to accounts they may read.
create or replace function creditkit.live_buckets(
  p_account_id uuid, p_unit text, p_now timestamptz,
  out balance bigint, out next_expiry timestamptz, out buckets jsonb)
returns record
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
  v_live bigint;
  v_expired bigint;
  v_last timestamptz;
  v_held bigint;
  v_covered bigint;
begin
  with b as (
    select g.id, g.category, g.amount, g.priority, g.expires_at, g.created_at,
           (g.remaining - least(g.remaining, greatest(coalesce(a.undrawn, 0) - (sum(g.remaining) over w - g.remaining), 0)))::bigint
             as remaining
      from creditkit.grants g
      left join creditkit.accounts a on a.id = g.account_id and a.unit = g.unit
     where g.account_id = p_account_id and g.unit = p_unit and g.live
    window w as (order by g.expires_at, g.priority desc, g.created_at, g.id rows between unbounded preceding and current row)
  )
  select coalesce(sum(b.remaining) filter (where b.expires_at is null or b.expires_at > p_now), 0),
         coalesce(sum(b.remaining) filter (where b.expires_at <= p_now), 0),
         max(b.expires_at) filter (where b.expires_at <= p_now),
         min(b.expires_at) filter (where b.expires_at > p_now),
         coalesce(jsonb_agg(jsonb_build_object(
                    'grant_id', b.id, 'category', b.category, 'remaining', b.remaining, 'amount', b.amount,
                    'priority', b.priority, 'expires_at', b.expires_at, 'created_at', b.created_at)
                  order by b.expires_at, b.priority desc, b.created_at, b.id)
                    filter (where b.expires_at is null or b.expires_at > p_now), '[]'::jsonb)
    into v_live, v_expired, v_last, next_expiry, buckets
    from b
   where b.remaining > 0;
  select coalesce(sum(h.amount), 0), coalesce(sum(h.amount) filter (where h.created_at < v_last), 0)
    into v_held, v_covered
    from creditkit.holds h
   where h.account_id = p_account_id and h.unit = p_unit and h.status = 'open' and h.expires_at > p_now;
  balance := greatest(v_live - (v_held - least(v_expired, v_covered)), 0);
  if p_unit <> 'credits' and balance = 0
     and not exists (select from creditkit.accounts a where a.id = p_account_id and a.unit = p_unit) then
    -- a unit the account has not touched yet: what its plan limit would open it with
    select u.balance, u.next_expiry into balance, next_expiry
      from creditkit.unopened_allowance(p_account_id, p_unit, p_now) u;
    balance := coalesce(balance, 0);
  end if;
end;
$$;
comment on function creditkit.live_buckets(uuid, text, timestamptz) is
  'Spendable balance of an (account, unit) at p_now (live buckets minus open holds), the soonest bucket expiry and the live buckets in spend order, with what the fast path left undrawn taken from them. A unit not opened yet reads as its plan allowance (no buckets).';
revoke all on function creditkit.live_buckets(uuid, text, timestamptz) from public, anon, authenticated, service_role;
grant execute on function creditkit.live_buckets(uuid, text, timestamptz) to authenticated, service_role;

-- One page of an account's ledger, newest first; keyset pagination on the ledger id. A plpgsql
-- RETURN QUERY must match the declared column types exactly, and a domain is not its base type:
-- the columns come back as the text and bigint it declares.
create or replace function creditkit.history_page(p_account_id uuid, p_unit text, p_limit integer, p_before_id bigint)
returns table (id bigint, kind text, amount bigint, balance_after bigint, grant_id bigint, event text,
               idempotency_key text, metadata jsonb, created_at timestamptz)
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception using errcode = 'CK006', message = 'invalid argument: limit must be from 1 to 1000';
  end if;
  return query
    select l.id, l.kind::text, l.amount::bigint, l.balance_after::bigint, l.grant_id, l.event, l.idempotency_key,
           l.metadata, l.created_at
      from creditkit.ledger l
     where l.account_id = p_account_id and l.unit = p_unit and (p_before_id is null or l.id < p_before_id)
     order by l.id desc
     limit p_limit;
end;
$$;
comment on function creditkit.history_page(uuid, text, integer, bigint) is
  'Ledger rows of an (account, unit), newest first, with id < p_before_id when given.';
revoke all on function creditkit.history_page(uuid, text, integer, bigint) from public, anon, authenticated, service_role;
grant execute on function creditkit.history_page(uuid, text, integer, bigint) to authenticated, service_role;

-- The account a signed-in caller means: the given one if they may access it, else their own.
create or replace function creditkit.caller_account(p_account_id uuid)
returns uuid
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
  v_uid uuid := (select auth.uid());
begin
  if v_uid is null then
    raise exception using errcode = 'CK005', message = 'not allowed: sign in first';
  end if;
  if not creditkit.can_access_account(coalesce(p_account_id, v_uid)) then
    raise exception using errcode = 'CK005', message = 'not allowed: you may not access that account';
  end if;
  return coalesce(p_account_id, v_uid);
end;
$$;
comment on function creditkit.caller_account(uuid) is
  'The account a signed-in caller asked for (default: their own); CK005 if anonymous or not allowed.';
revoke all on function creditkit.caller_account(uuid) from public, anon, authenticated, service_role;
grant execute on function creditkit.caller_account(uuid) to authenticated;

-- ---------------------------------------------------------------------------------------------
-- Server API (service_role only)
-- ---------------------------------------------------------------------------------------------

-- Security definer: the only write path to the kit's tables; EXECUTE is service_role's alone.
create or replace function public.creditkit_grant(
  p_account_id uuid,
  p_amount bigint,
  p_category text default 'purchase',
  p_expires_at timestamptz default null,
  p_priority integer default null,
  p_idempotency_key text default null,
  p_metadata jsonb default null,
  p_revenue_micros bigint default null,
  p_now timestamptz default now(),
  p_unit text default 'credits',
  out transaction_id bigint,
  out grant_id bigint,
  out balance bigint)
returns record
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_metadata jsonb;
  v_balance bigint;
  v_prior creditkit.ledger;
  v_entry creditkit.ledger;
  v_bucket creditkit.grants;
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_amount(p_amount);
  perform creditkit.check_money(p_revenue_micros);
  v_metadata := creditkit.check_request(p_idempotency_key, null, p_metadata, p_now);
  if p_category is null or p_category not in ('plan', 'purchase', 'promotional', 'adjustment') then
    raise exception using errcode = 'CK006',
      message = 'invalid argument: category must be plan, purchase, promotional or adjustment';
  end if;
  if p_account_id is null then
    raise exception using errcode = 'CK006', message = 'invalid argument: account id must not be NULL';
  end if;
  perform creditkit.check_unit(p_unit);

  -- A grant opens the account (its credits row) on first use, and the unit's row: for another
  -- unit than credits under the plan lock (shared), taken first as a plan change takes it.
  if p_unit <> 'credits' then
    perform creditkit.lock_plan(p_account_id, false);
  end if;
  insert into creditkit.accounts (id, created_at) values (p_account_id, p_now) on conflict do nothing;
  perform creditkit.open_unit(p_account_id, p_unit, p_now, true);
  v_balance := creditkit.lock_account(p_account_id, p_unit, p_now);

  v_prior := creditkit.find_replay(p_account_id, p_unit, p_idempotency_key, 'grant', p_amount, null, v_metadata,
                                   null, p_revenue_micros);
  if v_prior.id is not null then
    select g.* into v_bucket from creditkit.grants g where g.account_id = p_account_id and g.id = v_prior.grant_id;
    if v_bucket.category <> p_category or v_bucket.expires_at is distinct from p_expires_at
       or v_bucket.priority <> coalesce(p_priority, v_bucket.priority) then
      raise exception using errcode = 'CK004',
        message = format('idempotency conflict: key %L was already used for a different grant', p_idempotency_key),
        detail = jsonb_build_object('transaction_id', v_prior.id)::text;
    end if;
    transaction_id := v_prior.id;
    grant_id := v_prior.grant_id;
    balance := v_prior.balance_after;
    return;
  end if;

  -- Checked after the replay: a webhook retried after the bucket's expiry must get its first result.
  if p_expires_at <= p_now or not isfinite(p_expires_at) then
    raise exception using errcode = 'CK006', message = 'invalid argument: expires_at must be a finite time later than p_now';
  end if;
  -- The ceiling is on the stored balance, not the spendable one (open holds count too).
  if (select a.balance from creditkit.accounts a where a.id = p_account_id and a.unit = p_unit) > 9007199254740991 - p_amount then
    raise exception using errcode = 'CK007',
      message = 'balance limit: the grant would take the balance above 9007199254740991';
  end if;
  grant_id := creditkit.add_grant(p_account_id, p_unit, p_category, p_amount, p_priority, p_expires_at, v_metadata, p_now);
  v_entry := creditkit.append_entry(p_account_id, p_unit, 'grant', p_amount, grant_id, null, p_idempotency_key,
                                    v_metadata, p_now, p_expires_at, null, p_revenue_micros);
  transaction_id := v_entry.id;
  balance := creditkit.spendable(p_account_id, p_unit);  -- like every result (balance_after when no hold is open)
end;
$$;
comment on function public.creditkit_grant(uuid, bigint, text, timestamptz, integer, text, jsonb, bigint, timestamptz, text) is
  'Server only. Adds a bucket (category plan|purchase|promotional|adjustment, optional expiry and priority) to the balance of p_unit (default credits) and opens the account on first use. Idempotent by key.';
revoke all on function public.creditkit_grant(uuid, bigint, text, timestamptz, integer, text, jsonb, bigint, timestamptz, text) from public, anon, authenticated;
grant execute on function public.creditkit_grant(uuid, bigint, text, timestamptz, integer, text, jsonb, bigint, timestamptz, text) to service_role;

-- The debit: every spend of a usage event goes through here (creditkit_consume, and
-- creditkit_meter and the charge-on-insert trigger through creditkit.meter). Callers validate.
--
-- A debit that would take a watched row to its alert level (accounts.alert_at: a low-balance
-- threshold or an auto top-up) takes the slow path too, whose writes fire the watch at commit
-- (creditkit.watch_balance): the fast path never reaches one.
--
-- While nothing is due, one guarded UPDATE checks and debits: it locks the row only if it debits,
-- and counts the credit in `undrawn` instead of drawing the buckets (the next lock_account draws
-- it, in spend order). One INSERT appends the ledger row; with a key, the key's row goes first and
-- its unique index answers whether the key was used before (a retry undoes the debit and is
-- answered from the first row). A refusal reads the account once and writes nothing, not even a
-- lock. Anything else (something due, a retry, an unknown account, credit that arrived
-- meanwhile) takes the slow path: lock_account books what is due, then the buckets are drawn.
--
-- creditkit_consume carries a copy of the fast path (a function call costs the hot path about a
-- tenth), between the same markers; a test keeps the two texts identical. p_metadata is what the
-- caller asked for (validated, matched on a retry); p_detail the kit's own fields stored beside it
-- (a metered event's price). With a detail, a retry is matched on what was asked, not on the
-- amount, which the detail decided and which may have changed since.
create or replace function creditkit.debit(
  p_account_id uuid, p_unit text, p_amount bigint, p_event text, p_idempotency_key text, p_metadata jsonb,
  p_detail jsonb, p_cost_micros bigint, p_now timestamptz,
  out allowed boolean, out balance bigint, out transaction_id bigint, out amount bigint)
returns record
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_metadata jsonb := coalesce(p_metadata, '{}'::jsonb) || coalesce(p_detail, '{}'::jsonb);
  v_balance bigint;
  v_spendable bigint;
  v_due_at timestamptz;
  v_retry boolean := false;
  v_prior creditkit.ledger;
  v_entry creditkit.ledger;
begin
  amount := p_amount;
  -- <the debit's fast path: the same text in creditkit.debit and creditkit_consume>
  update creditkit.accounts a
     set balance = a.balance - p_amount,
         undrawn = a.undrawn + p_amount,
         version = a.version + 1
   where a.id = p_account_id and a.unit = p_unit
     and a.balance - a.held >= p_amount
     and (a.due_at is null or a.due_at > p_now)
     and (a.alert_at is null or a.balance - a.held - p_amount > a.alert_at)
  returning a.balance, a.balance - a.held into v_balance, v_spendable;
  if found then
    if p_idempotency_key is null then
      insert into creditkit.ledger (account_id, kind, amount, balance_after, event, cost_micros, metadata, created_at, unit)
      values (p_account_id, 'consume', -p_amount, v_balance, p_event, p_cost_micros, coalesce(v_metadata, '{}'::jsonb), p_now, p_unit)
      returning true, v_spendable, id into allowed, balance, transaction_id;
      return;
    end if;
    -- Every write of this account's ledger holds its row lock, which we now hold, so the key's
    -- unique index sees any earlier call with the key.
    insert into creditkit.ledger_keys (account_id, idempotency_key, ledger_id)
    values (p_account_id, p_idempotency_key, nextval('creditkit.ledger_id_seq'))
    on conflict do nothing
    returning ledger_id into transaction_id;
    if found then
      insert into creditkit.ledger (id, account_id, kind, amount, balance_after, event, idempotency_key,
                                    cost_micros, metadata, created_at, unit)
      overriding system value
      values (transaction_id, p_account_id, 'consume', -p_amount, v_balance, p_event, p_idempotency_key,
              p_cost_micros, coalesce(v_metadata, '{}'::jsonb), p_now, p_unit)
      returning true, v_spendable into allowed, balance;
      return;
    end if;
    -- A retry: undo the debit (the rare case pays) and answer it from the first row, still under
    -- the row lock (creditkit.debit does; creditkit_consume hands it over).
    update creditkit.accounts a
       set balance = a.balance + p_amount, undrawn = a.undrawn - p_amount, version = a.version - 1
     where a.id = p_account_id and a.unit = p_unit;
    v_retry := true;
  else
    -- Refused without a lock: read the account once. When nothing is due, the key (if any) was
    -- never used and the spendable balance cannot cover the amount, that snapshot is the answer.
    select false, greatest(a.balance - a.held, 0), a.due_at into allowed, balance, v_due_at
      from creditkit.accounts a where a.id = p_account_id and a.unit = p_unit;
    if found and (v_due_at is null or v_due_at > p_now) and balance < p_amount then
      if p_idempotency_key is not null then
        perform from creditkit.ledger_keys k where k.account_id = p_account_id and k.idempotency_key = p_idempotency_key;
      end if;
      if p_idempotency_key is null or not found then
        return;
      end if;
    end if;
  end if;
  -- </the debit's fast path>

  -- A retry found under the row lock of the fast path, or the slow path (which locks first).
  if not v_retry then
    if not creditkit.unit_row_ready(p_account_id, p_unit, p_now) then
      -- A known account with nothing in this unit: blocked, no ledger row. A key it used already
      -- (necessarily in another unit) is CK004.
      perform creditkit.find_replay(p_account_id, p_unit, p_idempotency_key, 'consume', -p_amount, p_event,
                                    coalesce(p_metadata, '{}'::jsonb));
      allowed := false;
      balance := 0;
      return;
    end if;
    v_spendable := creditkit.lock_account(p_account_id, p_unit, p_now);
  end if;
  v_prior := creditkit.find_replay(p_account_id, p_unit, p_idempotency_key, 'consume',
                                   case when p_detail is null then -p_amount end, p_event,
                                   coalesce(p_metadata, '{}'::jsonb), p_cost_micros, null,
                                   coalesce(array(select jsonb_object_keys(p_detail)), '{}'));
  if v_prior.id is not null then
    allowed := true;
    balance := v_prior.balance_after;
    transaction_id := v_prior.id;
    amount := -v_prior.amount;
    return;
  elsif v_retry then
    raise exception 'creditkit invariant broken: key % of account % names no ledger row', p_idempotency_key, p_account_id;
  end if;
  if v_spendable < p_amount then
    -- Blocked: a result, not an error, and no ledger row.
    allowed := false;
    balance := v_spendable;
    return;
  end if;
  perform creditkit.draw_down(p_account_id, p_unit, p_amount, p_now);
  v_entry := creditkit.append_entry(p_account_id, p_unit, 'consume', -p_amount, null, p_event, p_idempotency_key,
                                    v_metadata, p_now, null, p_cost_micros, null);
  allowed := true;
  balance := v_spendable - p_amount;
  transaction_id := v_entry.id;
end;
$$;
comment on function creditkit.debit(uuid, text, bigint, text, text, jsonb, jsonb, bigint, timestamptz) is
  'The one debit of a usage event: spends p_amount of p_unit if the account can cover it (allowed, spendable balance left, ledger id, amount), idempotent by key. Callers validate the arguments (an unknown unit is CK015 on the slow path).';
revoke all on function creditkit.debit(uuid, text, bigint, text, text, jsonb, jsonb, bigint, timestamptz) from public, anon, authenticated, service_role;

-- Security definer: writes the kit's tables, which no client role may write; service_role only.
-- The hot path: one test of the arguments, then the debit's fast path (a copy of creditkit.debit's,
-- see there); the rare rest is creditkit.debit.
create or replace function public.creditkit_consume(
  p_account_id uuid,
  p_amount bigint,
  p_event text default null,
  p_idempotency_key text default null,
  p_metadata jsonb default null,
  p_cost_micros bigint default null,
  p_now timestamptz default now(),
  p_unit text default 'credits',
  out allowed boolean,
  out balance bigint,
  out transaction_id bigint)
returns record
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_metadata jsonb;
  v_balance bigint;
  v_spendable bigint;
  v_due_at timestamptz;
  v_retry boolean;
begin
  -- One test for everything a plain call does not have: a client role (assert_server_caller's
  -- test, inlined), an argument NULL or out of range, or an event, key or metadata to validate.
  -- Only then do the checks run, in their usual order. (Every IF is an expression that plpgsql
  -- prepares again in each transaction, so the hot path keeps them few.)
  if current_setting('role', true) in ('anon', 'authenticated') or auth.role() in ('anon', 'authenticated')
     or p_account_id is null or p_amount is null or p_amount < 1 or p_amount > 9007199254740991 or p_now is null
     or not isfinite(p_now) or p_cost_micros < 0 or p_cost_micros > 9007199254740991
     or p_event is not null or p_idempotency_key is not null or p_metadata is not null then
    -- (each check runs only if its part of the test above holds, so a call with a key, the usual
    -- case in apps, pays for check_request alone)
    if current_setting('role', true) in ('anon', 'authenticated') or auth.role() in ('anon', 'authenticated') then
      perform creditkit.assert_server_caller();
    end if;
    if p_amount is null or p_amount < 1 or p_amount > 9007199254740991
       or p_cost_micros < 0 or p_cost_micros > 9007199254740991 then
      perform creditkit.check_amount(p_amount);
      perform creditkit.check_money(p_cost_micros);
    end if;
    v_metadata := creditkit.check_request(p_idempotency_key, p_event, p_metadata, p_now);
    if p_account_id is null then
      raise exception using errcode = 'CK006', message = 'invalid argument: account id must not be NULL';
    end if;
  end if;
  -- <the debit's fast path: the same text in creditkit.debit and creditkit_consume>
  update creditkit.accounts a
     set balance = a.balance - p_amount,
         undrawn = a.undrawn + p_amount,
         version = a.version + 1
   where a.id = p_account_id and a.unit = p_unit
     and a.balance - a.held >= p_amount
     and (a.due_at is null or a.due_at > p_now)
     and (a.alert_at is null or a.balance - a.held - p_amount > a.alert_at)
  returning a.balance, a.balance - a.held into v_balance, v_spendable;
  if found then
    if p_idempotency_key is null then
      insert into creditkit.ledger (account_id, kind, amount, balance_after, event, cost_micros, metadata, created_at, unit)
      values (p_account_id, 'consume', -p_amount, v_balance, p_event, p_cost_micros, coalesce(v_metadata, '{}'::jsonb), p_now, p_unit)
      returning true, v_spendable, id into allowed, balance, transaction_id;
      return;
    end if;
    -- Every write of this account's ledger holds its row lock, which we now hold, so the key's
    -- unique index sees any earlier call with the key.
    insert into creditkit.ledger_keys (account_id, idempotency_key, ledger_id)
    values (p_account_id, p_idempotency_key, nextval('creditkit.ledger_id_seq'))
    on conflict do nothing
    returning ledger_id into transaction_id;
    if found then
      insert into creditkit.ledger (id, account_id, kind, amount, balance_after, event, idempotency_key,
                                    cost_micros, metadata, created_at, unit)
      overriding system value
      values (transaction_id, p_account_id, 'consume', -p_amount, v_balance, p_event, p_idempotency_key,
              p_cost_micros, coalesce(v_metadata, '{}'::jsonb), p_now, p_unit)
      returning true, v_spendable into allowed, balance;
      return;
    end if;
    -- A retry: undo the debit (the rare case pays) and answer it from the first row, still under
    -- the row lock (creditkit.debit does; creditkit_consume hands it over).
    update creditkit.accounts a
       set balance = a.balance + p_amount, undrawn = a.undrawn - p_amount, version = a.version - 1
     where a.id = p_account_id and a.unit = p_unit;
    v_retry := true;
  else
    -- Refused without a lock: read the account once. When nothing is due, the key (if any) was
    -- never used and the spendable balance cannot cover the amount, that snapshot is the answer.
    select false, greatest(a.balance - a.held, 0), a.due_at into allowed, balance, v_due_at
      from creditkit.accounts a where a.id = p_account_id and a.unit = p_unit;
    if found and (v_due_at is null or v_due_at > p_now) and balance < p_amount then
      if p_idempotency_key is not null then
        perform from creditkit.ledger_keys k where k.account_id = p_account_id and k.idempotency_key = p_idempotency_key;
      end if;
      if p_idempotency_key is null or not found then
        return;
      end if;
    end if;
  end if;
  -- </the debit's fast path>

  select d.allowed, d.balance, d.transaction_id into allowed, balance, transaction_id
    from creditkit.debit(p_account_id, p_unit, p_amount, p_event, p_idempotency_key, v_metadata, null, p_cost_micros, p_now) d;
end;
$$;
comment on function public.creditkit_consume(uuid, bigint, text, text, jsonb, bigint, timestamptz, text) is
  'Server only. Spends p_amount of p_unit (default credits) if the account can cover it: allowed=true with the new balance and ledger id, or allowed=false (blocked, nothing spent). Never below zero. Idempotent by key.';
revoke all on function public.creditkit_consume(uuid, bigint, text, text, jsonb, bigint, timestamptz, text) from public, anon, authenticated;
grant execute on function public.creditkit_consume(uuid, bigint, text, text, jsonb, bigint, timestamptz, text) to service_role;

-- Security definer for the same reason as creditkit_consume, which it calls.
create or replace function public.creditkit_consume_or_raise(
  p_account_id uuid,
  p_amount bigint,
  p_event text default null,
  p_idempotency_key text default null,
  p_metadata jsonb default null,
  p_cost_micros bigint default null,
  p_now timestamptz default now(),
  p_unit text default 'credits',
  out balance bigint,
  out transaction_id bigint)
returns record
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_allowed boolean;
begin
  select c.allowed, c.balance, c.transaction_id into v_allowed, balance, transaction_id
    from public.creditkit_consume(p_account_id, p_amount, p_event, p_idempotency_key, p_metadata, p_cost_micros, p_now, p_unit) c;
  if not v_allowed then
    raise exception using
      errcode = 'CK002',
      message = format('insufficient credits: balance %s, required %s', balance, p_amount),
      detail = jsonb_build_object('balance', balance, 'required', p_amount, 'unit', p_unit)::text;
  end if;
end;
$$;
comment on function public.creditkit_consume_or_raise(uuid, bigint, text, text, jsonb, bigint, timestamptz, text) is
  'Server only. Like creditkit_consume, but raises CK002 insufficient_credits instead of returning a blocked result, so it aborts the surrounding transaction.';
revoke all on function public.creditkit_consume_or_raise(uuid, bigint, text, text, jsonb, bigint, timestamptz, text) from public, anon, authenticated;
grant execute on function public.creditkit_consume_or_raise(uuid, bigint, text, text, jsonb, bigint, timestamptz, text) to service_role;

-- Security definer: books what is due (a write) when something is; service_role only. The usual
-- answer is one read of the (account, unit) row: nothing due, so nothing written and no lock taken.
create or replace function public.creditkit_check(
  p_account_id uuid,
  p_unit text default 'credits',
  p_amount bigint default 1,
  p_now timestamptz default now(),
  out allowed boolean,
  out balance bigint)
returns record
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_due_at timestamptz;
begin
  if current_setting('role', true) in ('anon', 'authenticated') or auth.role() in ('anon', 'authenticated') then
    perform creditkit.assert_server_caller();
  end if;
  if p_amount is null or p_amount < 1 or p_amount > 9007199254740991 then
    perform creditkit.check_amount(p_amount);
  end if;
  if p_now is null or not isfinite(p_now) then
    perform creditkit.check_request(null, null, null, p_now);
  end if;
  if p_account_id is null then
    raise exception using errcode = 'CK006', message = 'invalid argument: account id must not be NULL';
  end if;
  select greatest(a.balance - a.held, 0), a.due_at into balance, v_due_at
    from creditkit.accounts a where a.id = p_account_id and a.unit = p_unit;
  if not found then
    -- a unit row not open yet: opened (a write) if the plan has a limit for the unit, otherwise
    -- nothing to spend; CK015 for a unit that is not metered, CK003 for an unknown account
    perform creditkit.check_unit(p_unit);
    if not exists (select from creditkit.accounts a where a.id = p_account_id and a.unit = 'credits') then
      raise exception using errcode = 'CK003', message = format('unknown account: %s', p_account_id),
        detail = jsonb_build_object('account_id', p_account_id)::text;
    end if;
    if (creditkit.unit_terms(p_account_id, p_unit)).id is null then
      allowed := false;
      balance := 0;
      return;
    end if;
    balance := creditkit.lock_account(p_account_id, p_unit, p_now);
  elsif v_due_at <= p_now then
    balance := creditkit.lock_account(p_account_id, p_unit, p_now);  -- renewal, expiry: booked under the lock
  end if;
  allowed := balance >= p_amount;
end;
$$;
comment on function public.creditkit_check(uuid, text, bigint, timestamptz) is
  'Server only. Whether p_amount of p_unit (default credits, 1) can be spent now, and the spendable balance, spending nothing. Books a due renewal or expiry first; when nothing is due it writes nothing and takes no lock.';
revoke all on function public.creditkit_check(uuid, text, bigint, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_check(uuid, text, bigint, timestamptz) to service_role;

-- Security definer for the same reason as creditkit_consume, whose spend it is.
create or replace function public.creditkit_report(
  p_account_id uuid,
  p_unit text,
  p_amount bigint,
  p_idempotency_key text default null,
  p_event text default null,
  p_metadata jsonb default null,
  p_now timestamptz default now(),
  out allowed boolean,
  out balance bigint,
  out transaction_id bigint)
returns record
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
begin
  select c.allowed, c.balance, c.transaction_id into allowed, balance, transaction_id
    from public.creditkit_consume(p_account_id, p_amount, p_event, p_idempotency_key, p_metadata, null, p_now, p_unit) c;
end;
$$;
comment on function public.creditkit_report(uuid, text, bigint, text, text, jsonb, timestamptz) is
  'Server only. Reports usage of a unit (a feature): spends p_amount of p_unit as creditkit_consume does, with the same answers (allowed, balance, transaction id; blocked is allowed=false). Idempotent by key.';
revoke all on function public.creditkit_report(uuid, text, bigint, text, text, jsonb, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_report(uuid, text, bigint, text, text, jsonb, timestamptz) to service_role;

-- Security definer: writes the kit's tables; service_role only.
create or replace function public.creditkit_adjust(
  p_account_id uuid,
  p_amount bigint,
  p_reason text,
  p_idempotency_key text default null,
  p_metadata jsonb default null,
  p_now timestamptz default now(),
  p_unit text default 'credits',
  out transaction_id bigint,
  out balance bigint)
returns record
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_metadata jsonb;
  v_balance bigint;
  v_prior creditkit.ledger;
  v_entry creditkit.ledger;
  v_grant_id bigint;
begin
  perform creditkit.assert_server_caller();
  if p_amount is null or p_amount = 0 or p_amount not between -9007199254740991 and 9007199254740991 then
    raise exception using errcode = 'CK001',
      message = format('invalid amount: %s (an adjustment is a non-zero integer within +/-9007199254740991)', coalesce(p_amount::text, 'NULL'));
  end if;
  if p_reason is null or p_reason !~ '[^[:space:]]' or length(p_reason) > 500 then
    raise exception using errcode = 'CK006', message = 'invalid argument: reason must be 1 to 500 characters, not blank';
  end if;
  v_metadata := creditkit.check_request(p_idempotency_key, null, p_metadata, p_now)
                || jsonb_build_object('reason', p_reason);
  v_balance := creditkit.lock_account(p_account_id, p_unit, p_now);

  v_prior := creditkit.find_replay(p_account_id, p_unit, p_idempotency_key, 'adjust', p_amount, null, v_metadata);
  if v_prior.id is not null then
    transaction_id := v_prior.id;
    balance := v_prior.balance_after;
    return;
  end if;

  if p_amount > 0 then
    if (select a.balance from creditkit.accounts a where a.id = p_account_id and a.unit = p_unit) > 9007199254740991 - p_amount then
      raise exception using errcode = 'CK007',
        message = 'balance limit: the adjustment would take the balance above 9007199254740991';
    end if;
    v_grant_id := creditkit.add_grant(p_account_id, p_unit, 'adjustment', p_amount, null, null, v_metadata, p_now);
  else
    if v_balance < -p_amount then
      raise exception using
        errcode = 'CK002',
        message = format('insufficient credits: balance %s, adjustment %s', v_balance, p_amount),
        detail = jsonb_build_object('balance', v_balance, 'required', -p_amount, 'unit', p_unit)::text;
    end if;
    perform creditkit.draw_down(p_account_id, p_unit, -p_amount, p_now);
  end if;
  v_entry := creditkit.append_entry(p_account_id, p_unit, 'adjust', p_amount, v_grant_id, null, p_idempotency_key,
                                    v_metadata, p_now, null);
  transaction_id := v_entry.id;
  balance := creditkit.spendable(p_account_id, p_unit);  -- like every result (balance_after when no hold is open)
end;
$$;
comment on function public.creditkit_adjust(uuid, bigint, text, text, jsonb, timestamptz, text) is
  'Server only. A signed correction of the balance of p_unit (default credits) with a reason: positive adds an adjustment bucket, negative spends in the usual order and may not take the balance below zero (CK002). Idempotent by key.';
revoke all on function public.creditkit_adjust(uuid, bigint, text, text, jsonb, timestamptz, text) from public, anon, authenticated;
grant execute on function public.creditkit_adjust(uuid, bigint, text, text, jsonb, timestamptz, text) to service_role;

-- Security definer: a read that books credit expired by p_now (a write), as every first touch
-- after an expiry does; service_role only.
create or replace function public.creditkit_balance(
  p_account_id uuid,
  p_now timestamptz default now(),
  p_unit text default 'credits',
  out balance bigint,
  out next_expiry timestamptz,
  out buckets jsonb)
returns record
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_due_at timestamptz;
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_request(null, null, null, p_now);
  if p_account_id is null then
    raise exception using errcode = 'CK006', message = 'invalid argument: account id must not be NULL';
  end if;
  select a.due_at into v_due_at from creditkit.accounts a where a.id = p_account_id and a.unit = p_unit;
  if not found then
    -- a unit row not open yet: opened if the plan has a limit for it; a zero balance otherwise
    -- (CK015 for a unit that is not metered, CK003 for an unknown account)
    perform creditkit.check_unit(p_unit);
    if not exists (select from creditkit.accounts a where a.id = p_account_id and a.unit = 'credits') then
      raise exception using errcode = 'CK003', message = format('unknown account: %s', p_account_id),
        detail = jsonb_build_object('account_id', p_account_id)::text;
    end if;
    if (creditkit.unit_terms(p_account_id, p_unit)).id is not null then
      perform creditkit.lock_account(p_account_id, p_unit, p_now);
    end if;
  elsif v_due_at <= p_now then
    perform creditkit.lock_account(p_account_id, p_unit, p_now);  -- lock only when something is due
  end if;
  select b.balance, b.next_expiry, b.buckets into balance, next_expiry, buckets
    from creditkit.live_buckets(p_account_id, p_unit, p_now) b;
end;
$$;
comment on function public.creditkit_balance(uuid, timestamptz, text) is
  'Server only. The spendable balance of p_unit (default credits), the soonest expiry and the live buckets in spend order; books credit that expired by p_now.';
revoke all on function public.creditkit_balance(uuid, timestamptz, text) from public, anon, authenticated;
grant execute on function public.creditkit_balance(uuid, timestamptz, text) to service_role;

-- Security definer: a read of the account named (the server's call), refusing client roles itself
-- (creditkit.assert_server_caller), so a stray grant to authenticated does not open other accounts'
-- ledgers; definer so that on Citus the shards are read as the owner (docs/citus.md F9).
create or replace function public.creditkit_history(
  p_account_id uuid,
  p_limit integer default 50,
  p_before_id bigint default null,
  p_unit text default 'credits')
returns table (id bigint, kind text, amount bigint, balance_after bigint, grant_id bigint, event text,
               idempotency_key text, metadata jsonb, created_at timestamptz)
language plpgsql
stable
security definer
set search_path = ''
set enable_seqscan = off
as $$
begin
  perform creditkit.assert_server_caller();
  if p_account_id is null then
    raise exception using errcode = 'CK006', message = 'invalid argument: account id must not be NULL';
  end if;
  if not exists (select 1 from creditkit.accounts a where a.id = p_account_id and a.unit = 'credits') then
    raise exception using errcode = 'CK003', message = format('unknown account: %s', p_account_id),
      detail = jsonb_build_object('account_id', p_account_id)::text;
  end if;
  if p_unit is distinct from 'credits' then
    perform creditkit.check_unit(p_unit);
  end if;
  return query select * from creditkit.history_page(p_account_id, p_unit, p_limit, p_before_id);
end;
$$;
comment on function public.creditkit_history(uuid, integer, bigint, text) is
  'Server only. An account''s ledger in p_unit (default credits), newest first, p_limit rows (1..1000) with id < p_before_id: pass the last id of a page to get the next.';
revoke all on function public.creditkit_history(uuid, integer, bigint, text) from public, anon, authenticated;
grant execute on function public.creditkit_history(uuid, integer, bigint, text) to service_role;

-- Security definer: books expired credit (writes); service_role only.
create or replace function public.creditkit_book_expired(
  p_now timestamptz default now(),
  p_limit integer default 1000,
  p_unit text default 'credits')
returns integer
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_account_id uuid;
  v_count integer := 0;
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_request(null, null, null, p_now);
  if p_limit is null or p_limit < 1 or p_limit > 100000 then
    raise exception using errcode = 'CK006', message = 'invalid argument: limit must be from 1 to 100000';
  end if;
  perform creditkit.check_unit(p_unit);
  -- The candidates are picked without a lock, then each row is locked by its id, skipping one
  -- another call holds (it books what is due itself), and only if it is still due: on Citus a
  -- FOR UPDATE over rows of every shard is refused, one account's row is on one shard
  -- (docs/citus.md, F5).
  for v_account_id in
    select a.id from creditkit.accounts a
     where a.due_at <= p_now and a.unit = p_unit
     order by a.due_at
     limit p_limit
  loop
    perform from creditkit.accounts a
     where a.id = v_account_id and a.unit = p_unit and a.due_at <= p_now
       for update skip locked;
    if found then
      perform creditkit.book_due(v_account_id, p_unit, p_now);
      v_count := v_count + 1;
    end if;
  end loop;
  return v_count;
end;
$$;
comment on function public.creditkit_book_expired(timestamptz, integer, text) is
  'Server only, optional. Books what is due in p_unit (default credits: expired credit, renewals and expired holds) for up to p_limit accounts and returns how many it visited. Nothing depends on it: every touch books what is due.';
revoke all on function public.creditkit_book_expired(timestamptz, integer, text) from public, anon, authenticated;
grant execute on function public.creditkit_book_expired(timestamptz, integer, text) to service_role;

-- ---------------------------------------------------------------------------------------------
-- Caller-bound API (signed-in users). Security invoker: they read through RLS and never write.
-- ---------------------------------------------------------------------------------------------

create or replace function public.creditkit_my_balance(
  p_account_id uuid default null,
  p_unit text default 'credits',
  out account_id uuid,
  out balance bigint,
  out next_expiry timestamptz,
  out buckets jsonb)
returns record
language plpgsql
stable
security invoker
set search_path = ''
set enable_seqscan = off
as $$
begin
  account_id := creditkit.caller_account(p_account_id);
  if p_unit is distinct from 'credits' then
    perform creditkit.check_unit(p_unit);
  end if;
  select b.balance, b.next_expiry, b.buckets into balance, next_expiry, buckets
    from creditkit.live_buckets(account_id, p_unit, now()) b;
end;
$$;
comment on function public.creditkit_my_balance(uuid, text) is
  'Signed-in users. Your spendable balance in p_unit (default credits; default account: your own, or one the access function lets you read), the soonest expiry and the live buckets. An account with nothing in the unit yet reads as 0.';
revoke all on function public.creditkit_my_balance(uuid, text) from public, anon, authenticated, service_role;
grant execute on function public.creditkit_my_balance(uuid, text) to authenticated;

create or replace function public.creditkit_my_history(
  p_account_id uuid default null,
  p_limit integer default 50,
  p_before_id bigint default null,
  p_unit text default 'credits')
returns table (id bigint, kind text, amount bigint, balance_after bigint, grant_id bigint, event text,
               idempotency_key text, metadata jsonb, created_at timestamptz)
language plpgsql
stable
security invoker
set search_path = ''
set enable_seqscan = off
as $$
declare
  v_account_id uuid := creditkit.caller_account(p_account_id);
begin
  if p_unit is distinct from 'credits' then
    perform creditkit.check_unit(p_unit);
  end if;
  return query select * from creditkit.history_page(v_account_id, p_unit, p_limit, p_before_id);
end;
$$;
comment on function public.creditkit_my_history(uuid, integer, bigint, text) is
  'Signed-in users. Your ledger in p_unit (default credits), newest first (default: your own account); keyset-paginated like creditkit_history.';
revoke all on function public.creditkit_my_history(uuid, integer, bigint, text) from public, anon, authenticated, service_role;
grant execute on function public.creditkit_my_history(uuid, integer, bigint, text) to authenticated;

create or replace function public.creditkit_my_check(
  p_unit text default 'credits',
  p_amount bigint default 1,
  p_account_id uuid default null,
  out allowed boolean,
  out balance bigint)
returns record
language plpgsql
stable
security invoker
set search_path = ''
set enable_seqscan = off
as $$
declare
  v_account_id uuid;
begin
  perform creditkit.check_amount(p_amount);
  v_account_id := creditkit.caller_account(p_account_id);
  if p_unit is distinct from 'credits' then
    perform creditkit.check_unit(p_unit);
  end if;
  select b.balance into balance from creditkit.live_buckets(v_account_id, p_unit, now()) b;
  allowed := balance >= p_amount;
end;
$$;
comment on function public.creditkit_my_check(text, bigint, uuid) is
  'Signed-in users. Whether p_amount of p_unit can be spent now from your account (or a team account you may read), and its spendable balance. A pure read: a renewal not booked yet counts once the server touches the account.';
revoke all on function public.creditkit_my_check(text, bigint, uuid) from public, anon, authenticated, service_role;
grant execute on function public.creditkit_my_check(text, bigint, uuid) to authenticated;

-- ---------------------------------------------------------------------------------------------
-- Starter grant on sign-up (opt-in): what every new user gets, per unit. Nothing happens until
-- the installer runs `select creditkit.enable_starter_grant()` in a migration of theirs.
-- ---------------------------------------------------------------------------------------------

create table creditkit.starter_grants (
  unit text primary key references creditkit.units (id),
  amount bigint not null
    constraint starter_grants_amount_range check (amount between 1 and 9007199254740991),
  category text not null default 'promotional'
    constraint starter_grants_category check (category in ('plan', 'purchase', 'promotional', 'adjustment')),
  -- The starter credit expires this long after the sign-up; NULL: never.
  expires_after interval
    constraint starter_grants_expires_after_range check (expires_after > interval '0' and expires_after <= interval '100 years')
);
comment on table creditkit.starter_grants is
  'What a new user is granted on sign-up, per unit, once the installer enabled it (creditkit.enable_starter_grant).';
alter table creditkit.starter_grants enable row level security;
revoke all on table creditkit.starter_grants from public, anon, authenticated, service_role;
grant select on table creditkit.starter_grants to service_role;

-- For the installer (the owner of the kit's functions), in a migration: the starter amount of a
-- unit (a NULL amount removes it).
create or replace function creditkit.set_starter_grant(
  p_unit text, p_amount bigint, p_category text default 'promotional', p_expires_after interval default null)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
  perform creditkit.check_unit(p_unit);
  if p_amount is null then
    delete from creditkit.starter_grants s where s.unit = p_unit;
    return;
  end if;
  perform creditkit.check_amount(p_amount);
  if p_category is null or p_category not in ('plan', 'purchase', 'promotional', 'adjustment') then
    raise exception using errcode = 'CK006',
      message = 'invalid argument: category must be plan, purchase, promotional or adjustment';
  end if;
  if p_expires_after <= interval '0' or p_expires_after > interval '100 years' then
    raise exception using errcode = 'CK006', message = 'invalid argument: expires_after must be positive and at most 100 years';
  end if;
  insert into creditkit.starter_grants as s (unit, amount, category, expires_after)
  values (p_unit, p_amount, p_category, p_expires_after)
  on conflict (unit) do update
     set amount = excluded.amount, category = excluded.category, expires_after = excluded.expires_after;
end;
$$;
comment on function creditkit.set_starter_grant(text, bigint, text, interval) is
  'Installer only. What a new user is granted of a unit on sign-up (NULL amount: nothing); applies once creditkit.enable_starter_grant() ran.';
revoke all on function creditkit.set_starter_grant(text, bigint, text, interval) from public, anon, authenticated, service_role;

-- Opens a new user's account on the default plan (unless it has a subscription) and grants its
-- starter amounts, each once: a unit whose key starter:<unit> the account used already is left
-- out (granted before, at whatever time and amount).
create or replace function creditkit.grant_starter(p_user_id uuid, p_now timestamptz)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_starter creditkit.starter_grants;
begin
  -- the account opens on the default plan (its credits allowance, and its unit limits' rows)
  if not exists (select from creditkit.subscriptions s where s.account_id = p_user_id) then
    perform public.creditkit_set_plan(p_user_id, (select p.id from creditkit.plans p where p.is_default), 'active',
                                      null, p_now);
  end if;
  for v_starter in
    select s.* from creditkit.starter_grants s
     where not exists (select from creditkit.ledger_keys k
                        where k.account_id = p_user_id and k.idempotency_key = 'starter:' || s.unit)
     order by s.unit <> 'credits', s.unit
  loop
    perform public.creditkit_grant(p_user_id, v_starter.amount, v_starter.category, p_now + v_starter.expires_after,
                                   null, 'starter:' || v_starter.unit, null, null, p_now, v_starter.unit);
  end loop;
end;
$$;
comment on function creditkit.grant_starter(uuid, timestamptz) is
  'Opens a user''s account on the default plan and grants the starter amounts of creditkit.starter_grants, each exactly once (key starter:<unit>).';
revoke all on function creditkit.grant_starter(uuid, timestamptz) from public, anon, authenticated, service_role;

-- Trigger on auth.users. Security definer: the sign-up runs as the auth server's role, which may
-- not write the kit's tables. A starter grant that fails is reported as a warning and left out:
-- it never fails the sign-up.
create or replace function creditkit.starter_grant_on_signup()
returns trigger
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
as $$
begin
  begin
    perform creditkit.grant_starter(new.id, now());
  exception when others then
    raise warning 'creditkit: no starter grant for user %: % (%)', new.id, sqlerrm, sqlstate;
  end;
  return new;
end;
$$;
comment on function creditkit.starter_grant_on_signup() is
  'Trigger on auth.users (creditkit.enable_starter_grant): the starter grants of a new user; a failure never fails the sign-up.';
revoke all on function creditkit.starter_grant_on_signup() from public, anon, authenticated, service_role;

-- For the installer, in a migration of theirs: sign-ups get the starter grants from now on.
-- Idempotent; creditkit.disable_starter_grant() removes the trigger.
create or replace function creditkit.enable_starter_grant()
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
  if not exists (select from pg_catalog.pg_trigger t
                  where t.tgrelid = 'auth.users'::regclass and t.tgname = 'creditkit_starter_grant') then
    create trigger creditkit_starter_grant after insert on auth.users
      for each row execute function creditkit.starter_grant_on_signup();
  end if;
end;
$$;
comment on function creditkit.enable_starter_grant() is
  'Installer only. Creates the trigger on auth.users that grants every new user the starter amounts (creditkit.set_starter_grant).';
revoke all on function creditkit.enable_starter_grant() from public, anon, authenticated, service_role;

create or replace function creditkit.disable_starter_grant()
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
  drop trigger if exists creditkit_starter_grant on auth.users;
end;
$$;
comment on function creditkit.disable_starter_grant() is
  'Installer only. Removes the starter-grant trigger from auth.users; the amounts stay configured.';
revoke all on function creditkit.disable_starter_grant() from public, anon, authenticated, service_role;
