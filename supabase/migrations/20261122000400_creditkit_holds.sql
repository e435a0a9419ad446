-- creditkit holds: reserve an estimate before a long model call, settle the actual amount after
-- (the rest is freed), release on failure. A hold lowers the spendable balance at once
-- (spendable = balance - accounts.held) without touching the ledger; settling writes one consume
-- row. Every hold resolves exactly once, as settled, released or expired; expiry is lazy (the
-- hold's expires_at joins accounts.due_at).

create table creditkit.holds (
  -- A hold is found by its id alone (settle and release take only the id), so its key leads with
  -- the id; it still includes the account, so that holds can be distributed by it.
  id bigint generated always as identity,
  account_id uuid not null,
  amount bigint not null
    constraint holds_amount_range check (amount between 1 and 9007199254740991),
  status text not null default 'open'
    constraint holds_status check (status in ('open', 'settled', 'released', 'expired')),
  expires_at timestamptz not null,
  event text,
  idempotency_key text,
  metadata jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  resolved_at timestamptz,
  -- For a settled hold: what was asked, what was charged, and the ledger row that charged it.
  settled_amount bigint
    constraint holds_settled_amount_range check (settled_amount between 0 and 9007199254740991),
  charged bigint
    constraint holds_charged_range check (charged between 0 and 9007199254740991),
  transaction_id bigint,
  constraint holds_resolution check ((status = 'open') = (resolved_at is null)),
  -- The unit it reserves; settle and release take it from here.
  unit text not null default 'credits',
  constraint holds_pkey primary key (id, account_id),
  constraint holds_transaction_id_fkey foreign key (account_id, transaction_id)
    references creditkit.ledger (account_id, id),
  constraint holds_account_unit_fkey foreign key (account_id, unit) references creditkit.accounts (id, unit)
);
comment on table creditkit.holds is 'Reservations: open until settled, released or expired (exactly one of them).';
create unique index holds_idempotency on creditkit.holds (account_id, idempotency_key) where idempotency_key is not null;
create index holds_open on creditkit.holds (account_id, unit, expires_at) where status = 'open';

alter table creditkit.holds enable row level security;
revoke all on table creditkit.holds from public, anon, authenticated, service_role;
grant select on table creditkit.holds to authenticated, service_role;
create policy "members can read their accounts' holds"
  on creditkit.holds for select to authenticated
  using (creditkit.can_access_account(account_id));

-- Frees the credit of the (account, unit)'s open holds that expired by p_now. The caller holds the lock.
-- plpgsql, not SQL, for Citus (docs/citus.md, F3).
create or replace function creditkit.expire_holds(p_account_id uuid, p_unit text, p_now timestamptz)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
  with expired as (
    update creditkit.holds h
       set status = 'expired', resolved_at = p_now
     where h.account_id = p_account_id and h.unit = p_unit and h.status = 'open' and h.expires_at <= p_now
    returning h.amount
  )
  update creditkit.accounts a
     set held = a.held - (select coalesce(sum(e.amount), 0) from expired e)
   where a.id = p_account_id and a.unit = p_unit;
end;
$$;
comment on function creditkit.expire_holds(uuid, text, timestamptz) is 'Marks open holds past their expiry as expired and frees their credit.';
revoke all on function creditkit.expire_holds(uuid, text, timestamptz) from public, anon, authenticated, service_role;

-- Locks the hold's account and returns the hold as it is under that lock. CK011 if unknown. The
-- hold is found by its id without a lock, then the account is locked by its id (a hold never
-- changes account): on Citus, one shard is locked (docs/citus.md, F5).
create or replace function creditkit.lock_hold(p_hold_id bigint, p_now timestamptz)
returns creditkit.holds
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_account_id uuid;
  v_unit text;
  v_hold creditkit.holds;
begin
  perform creditkit.check_request(null, null, null, p_now);
  select h.account_id, h.unit into v_account_id, v_unit from creditkit.holds h where h.id = p_hold_id;
  if not found then
    raise exception using errcode = 'CK011', message = format('unknown hold: %s', coalesce(p_hold_id::text, 'NULL')),
      detail = jsonb_build_object('hold_id', p_hold_id)::text;
  end if;
  perform creditkit.lock_account(v_account_id, v_unit, p_now);  -- books expiry of this hold if it is due
  select h.* into v_hold from creditkit.holds h where h.id = p_hold_id and h.account_id = v_account_id;
  return v_hold;
end;
$$;
comment on function creditkit.lock_hold(bigint, timestamptz) is 'Locks a hold''s (account, unit) row (booking what is due) and returns the hold.';
revoke all on function creditkit.lock_hold(bigint, timestamptz) from public, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Server API
-- ---------------------------------------------------------------------------------------------

-- Security definer: writes holds and accounts; service_role only. A reserve has consume's shape:
-- one guarded UPDATE that reserves (it locks the row only if the unreserved credit covers the
-- amount and nothing is due) and one INSERT of the hold; a refusal reads the account once and
-- writes nothing. A key is looked up under the lock; a retry, anything due, or an unknown account
-- goes the slow way through creditkit.lock_account.
create or replace function public.creditkit_reserve(
  p_account_id uuid,
  p_amount bigint,
  p_ttl interval default interval '15 minutes',
  p_event text default null,
  p_idempotency_key text default null,
  p_metadata jsonb default null,
  p_now timestamptz default now(),
  p_unit text default 'credits',
  out allowed boolean,
  out hold_id bigint,
  out balance bigint,
  out expires_at timestamptz)
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
  v_spendable bigint;
  v_prior creditkit.holds;
  v_retry boolean := false;
  v_due_at timestamptz;
begin
  -- One test for everything a plain call does not have: a client role, an argument NULL or out
  -- of range, or an event, key or metadata to validate. Only then do the checks run, in their
  -- usual order.
  if current_setting('role', true) in ('anon', 'authenticated') or auth.role() in ('anon', 'authenticated')
     or p_account_id is null or p_amount is null or p_amount < 1 or p_amount > 9007199254740991 or p_now is null
     or not isfinite(p_now)
     or p_ttl is null or p_ttl <= interval '0' or p_ttl > interval '7 days'
     or p_event is not null or p_idempotency_key is not null or p_metadata is not null then
    perform creditkit.assert_server_caller();
    perform creditkit.check_amount(p_amount);
    v_metadata := creditkit.check_request(p_idempotency_key, p_event, p_metadata, p_now);
    if p_ttl is null or p_ttl <= interval '0' or p_ttl > interval '7 days' then
      raise exception using errcode = 'CK006', message = 'invalid argument: ttl must be more than 0 and at most 7 days';
    end if;
  end if;

  -- Fast path: check and reserve in one statement, which locks the row only if it reserves.
  update creditkit.accounts a
     set held = a.held + p_amount, due_at = least(a.due_at, p_now + p_ttl)
   where a.id = p_account_id and a.unit = p_unit
     and a.balance - a.held >= p_amount
     and (a.due_at is null or a.due_at > p_now)
  returning a.balance - a.held into v_spendable;
  if found then
    if p_idempotency_key is not null then
      -- Under the row lock every earlier hold of this account with the key is visible. A retry
      -- undoes the reservation (due_at computed again) and is answered below.
      v_retry := exists (select from creditkit.holds h
                          where h.account_id = p_account_id and h.idempotency_key = p_idempotency_key);
      if v_retry then
        update creditkit.accounts a set held = a.held - p_amount where a.id = p_account_id and a.unit = p_unit;
        perform creditkit.refresh_due_at(p_account_id, p_unit);
      end if;
    end if;
    if not v_retry then
      insert into creditkit.holds as h (account_id, amount, expires_at, event, idempotency_key, metadata, created_at, unit)
      values (p_account_id, p_amount, p_now + p_ttl, p_event, p_idempotency_key, coalesce(v_metadata, '{}'::jsonb), p_now, p_unit)
      returning true, h.id, v_spendable, h.expires_at into allowed, hold_id, balance, expires_at;
      return;
    end if;
  else
    -- Refused without a lock: read the account once (as creditkit_consume does). Nothing is
    -- written, not even a row lock; the hold fields stay NULL.
    select false, greatest(a.balance - a.held, 0), a.due_at into allowed, balance, v_due_at
      from creditkit.accounts a where a.id = p_account_id and a.unit = p_unit;
    if found and (v_due_at is null or v_due_at > p_now) and balance < p_amount then
      if p_idempotency_key is not null then
        perform from creditkit.holds h where h.account_id = p_account_id and h.idempotency_key = p_idempotency_key;
      end if;
      if p_idempotency_key is null or not found then
        return;
      end if;
    end if;
  end if;

  -- Slow path (unknown account or unit row, something due, a retry, or credit that arrived meanwhile).
  v_metadata := coalesce(v_metadata, '{}'::jsonb);
  if not creditkit.unit_row_ready(p_account_id, p_unit, p_now) then
    -- a known account with nothing in this unit: blocked; a key one of its holds used (in another
    -- unit) is CK004
    select h.* into v_prior from creditkit.holds h
     where h.account_id = p_account_id and h.idempotency_key = p_idempotency_key;
    if found then
      raise exception using errcode = 'CK004',
        message = format('idempotency conflict: key %L was already used for a different hold', p_idempotency_key),
        detail = jsonb_build_object('hold_id', v_prior.id)::text;
    end if;
    allowed := false;
    balance := 0;
    return;
  end if;
  v_spendable := creditkit.lock_account(p_account_id, p_unit, p_now);

  if p_idempotency_key is not null then
    select h.* into v_prior from creditkit.holds h
     where h.account_id = p_account_id and h.idempotency_key = p_idempotency_key;
    if found then
      if v_prior.amount <> p_amount or v_prior.event is distinct from p_event or v_prior.metadata <> v_metadata
         or v_prior.unit <> p_unit then
        raise exception using errcode = 'CK004',
          message = format('idempotency conflict: key %L was already used for a different hold', p_idempotency_key),
          detail = jsonb_build_object('hold_id', v_prior.id)::text;
      end if;
      -- The first answer was "reserved"; once that hold is settled, released or expired a retry
      -- must not look like a fresh reservation (work would run with nothing held).
      if v_prior.status <> 'open' then
        raise exception using errcode = 'CK012',
          message = format('hold %s for key %L is already %s', v_prior.id, p_idempotency_key, v_prior.status),
          detail = jsonb_build_object('status', v_prior.status, 'hold_id', v_prior.id)::text;
      end if;
      allowed := true;
      hold_id := v_prior.id;
      expires_at := v_prior.expires_at;
      balance := v_spendable;
      return;
    end if;
  end if;

  if v_spendable < p_amount then
    allowed := false;
    balance := v_spendable;
    return;
  end if;
  expires_at := p_now + p_ttl;
  insert into creditkit.holds (account_id, amount, expires_at, event, idempotency_key, metadata, created_at, unit)
  values (p_account_id, p_amount, expires_at, p_event, p_idempotency_key, v_metadata, p_now, p_unit)
  returning id into hold_id;
  update creditkit.accounts a
     set held = a.held + p_amount, due_at = least(a.due_at, expires_at)
   where a.id = p_account_id and a.unit = p_unit;
  allowed := true;
  balance := v_spendable - p_amount;
end;
$$;
comment on function public.creditkit_reserve(uuid, bigint, interval, text, text, jsonb, timestamptz, text) is
  'Server only. Reserves credit (of p_unit, default credits) before a long call: allowed=true with a hold id and the spendable balance left, or allowed=false (blocked, nothing reserved). The hold expires after p_ttl (default 15 minutes, at most 7 days) unless settled or released. Idempotent by key while the hold is open; a retry after it was settled, released or expired raises CK012.';
revoke all on function public.creditkit_reserve(uuid, bigint, interval, text, text, jsonb, timestamptz, text) from public, anon, authenticated;
grant execute on function public.creditkit_reserve(uuid, bigint, interval, text, text, jsonb, timestamptz, text) to service_role;

-- Security definer: writes holds, accounts and the ledger; service_role only. When nothing is due
-- and the hold is open, one UPDATE frees the reserve and spends the charge (counted in `undrawn`,
-- like a consume); otherwise the slow path books what is due first. Both share the charge rule.
create or replace function public.creditkit_settle(
  p_hold_id bigint,
  p_actual bigint,
  p_cost_micros bigint default null,
  p_metadata jsonb default null,
  p_now timestamptz default now(),
  out charged bigint,
  out shortfall bigint,
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
  v_hold creditkit.holds;
  v_account_id uuid;
  v_unit text;
  v_metadata jsonb;
  v_balance bigint;
  v_held bigint;
  v_due_at timestamptz;
  v_other_held bigint;
  v_entry creditkit.ledger;
  v_fast boolean := false;
begin
  -- One test for everything a plain call does not have, then the checks in their usual order.
  if current_setting('role', true) in ('anon', 'authenticated') or auth.role() in ('anon', 'authenticated')
     or p_actual is null or p_actual < 0 or p_actual > 9007199254740991
     or p_cost_micros < 0 or p_cost_micros > 9007199254740991
     or p_metadata is not null or p_now is null or not isfinite(p_now) then
    perform creditkit.assert_server_caller();
    if p_actual is null or p_actual < 0 or p_actual > 9007199254740991 then
      raise exception using errcode = 'CK001',
        message = format('invalid amount: %s (the actual amount is an integer from 0 to 9007199254740991)', coalesce(p_actual::text, 'NULL'));
    end if;
    perform creditkit.check_money(p_cost_micros);
    v_metadata := creditkit.check_request(null, null, p_metadata, p_now);
  end if;

  -- Fast path: find the hold's account (without a lock: a hold never changes account), lock that
  -- account by its id, then read the hold under the lock (a resolution that committed while this
  -- call waited is seen). It serves an open, unexpired hold when nothing is due on the account.
  -- (Locking by id, not by a subquery over holds, keeps the lock on one shard on Citus: F5.)
  select h.account_id, h.unit into v_account_id, v_unit from creditkit.holds h where h.id = p_hold_id;
  if found then
    select a.balance, a.held, a.due_at into v_balance, v_held, v_due_at
      from creditkit.accounts a
     where a.id = v_account_id and a.unit = v_unit
       for update;
    if found and (v_due_at is null or v_due_at > p_now) then
      select h.* into v_hold from creditkit.holds h where h.id = p_hold_id and h.account_id = v_account_id;
      v_fast := coalesce(v_hold.status = 'open' and v_hold.expires_at > p_now, false);
    end if;
  end if;

  if not v_fast then
    -- Slow path (unknown hold, something due, a hold not open or past its expiry).
    v_hold := creditkit.lock_hold(p_hold_id, p_now);
    if v_hold.status = 'settled' and v_hold.settled_amount = p_actual then
      -- A retry of the same settle: the first result.
      charged := v_hold.charged;
      shortfall := p_actual - v_hold.charged;
      transaction_id := v_hold.transaction_id;
      balance := creditkit.spendable(v_hold.account_id, v_hold.unit);
      return;
    elsif v_hold.status <> 'open' then
      raise exception using errcode = 'CK012', message = format('hold %s is already %s', v_hold.id, v_hold.status),
        detail = jsonb_build_object('hold_id', v_hold.id, 'status', v_hold.status)::text;
    end if;
    select a.balance, a.held into v_balance, v_held from creditkit.accounts a
     where a.id = v_hold.account_id and a.unit = v_hold.unit;
  end if;

  -- The charge rule: up to the reserve as far as the balance allows; above it, the whole
  -- actual amount only if the credit not held by other holds covers it.
  v_other_held := v_held - v_hold.amount;
  charged := least(p_actual, v_hold.amount);
  if p_actual > v_hold.amount and v_balance - v_other_held >= p_actual then
    charged := p_actual;
  end if;
  charged := least(charged, v_balance);
  shortfall := p_actual - charged;
  if charged > 0 then
    -- the consume row's metadata
    v_metadata := v_hold.metadata || coalesce(v_metadata, '{}'::jsonb)
                  || jsonb_build_object('hold_id', v_hold.id, 'reserved', v_hold.amount, 'actual', p_actual);
  end if;

  if v_fast then
    -- One UPDATE frees the reserve and spends the charge, counted in undrawn as the consume fast
    -- path counts it (the buckets are drawn at the next lock_account); one ledger row records it.
    update creditkit.accounts a
       set balance = a.balance - creditkit_settle.charged,
           undrawn = a.undrawn + creditkit_settle.charged,
           held = a.held - v_hold.amount,
           version = a.version + case when creditkit_settle.charged > 0 then 1 else 0 end
     where a.id = v_hold.account_id and a.unit = v_hold.unit
    returning a.balance, greatest(a.balance - a.held, 0) into v_balance, balance;
    if charged > 0 then
      insert into creditkit.ledger (account_id, kind, amount, balance_after, event, cost_micros, metadata, created_at, unit)
      values (v_hold.account_id, 'consume', -charged, v_balance, v_hold.event, p_cost_micros, v_metadata, p_now, v_hold.unit)
      returning id into transaction_id;
    end if;
  else
    update creditkit.accounts a set held = a.held - v_hold.amount where a.id = v_hold.account_id and a.unit = v_hold.unit;
    if charged > 0 then
      -- '-infinity': credit that expired while this hold covered it is still payable to it, and
      -- in spend order (soonest expiry first) it is drawn first.
      perform creditkit.draw_down(v_hold.account_id, v_hold.unit, charged, '-infinity');
      v_entry := creditkit.append_entry(v_hold.account_id, v_hold.unit, 'consume', -charged, null, v_hold.event, null,
                                        v_metadata, p_now, null, p_cost_micros, null);
      transaction_id := v_entry.id;
    end if;
  end if;
  update creditkit.holds h
     set status = 'settled', resolved_at = p_now, settled_amount = p_actual, charged = creditkit_settle.charged,
         transaction_id = creditkit_settle.transaction_id
   where h.id = v_hold.id and h.account_id = v_hold.account_id;
  if not v_fast then
    -- expired credit this hold covered and did not charge expires now
    perform creditkit.book_expired(v_hold.account_id, v_hold.unit, p_now);
    balance := creditkit.spendable(v_hold.account_id, v_hold.unit);
  end if;
end;
$$;
comment on function public.creditkit_settle(bigint, bigint, bigint, jsonb, timestamptz) is
  'Server only. Settles a hold with the actual amount: charges it (one consume row) and frees the rest of the reserve. Above the reserve, the actual amount is charged only if the unreserved balance covers it; otherwise the reserve is charged and the rest reported as shortfall. Settling again with the same amount returns the first result; a hold already released or expired raises CK012.';
revoke all on function public.creditkit_settle(bigint, bigint, bigint, jsonb, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_settle(bigint, bigint, bigint, jsonb, timestamptz) to service_role;

-- Security definer: writes holds and accounts; service_role only.
create or replace function public.creditkit_release(
  p_hold_id bigint,
  p_now timestamptz default now(),
  out status text,
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
  v_hold creditkit.holds;
begin
  perform creditkit.assert_server_caller();
  v_hold := creditkit.lock_hold(p_hold_id, p_now);
  if v_hold.status = 'open' then
    update creditkit.holds h set status = 'released', resolved_at = p_now
     where h.id = v_hold.id and h.account_id = v_hold.account_id;
    update creditkit.accounts a set held = a.held - v_hold.amount where a.id = v_hold.account_id and a.unit = v_hold.unit;
    -- expired credit this hold covered expires now
    perform creditkit.book_expired(v_hold.account_id, v_hold.unit, p_now);
    status := 'released';
  elsif v_hold.status in ('released', 'expired') then
    status := v_hold.status;  -- already free: releasing again changes nothing
  else
    raise exception using errcode = 'CK012', message = format('hold %s is already %s', v_hold.id, v_hold.status),
      detail = jsonb_build_object('hold_id', v_hold.id, 'status', v_hold.status)::text;
  end if;
  balance := creditkit.spendable(v_hold.account_id, v_hold.unit);
end;
$$;
comment on function public.creditkit_release(bigint, timestamptz) is
  'Server only. Frees a hold''s credit without charging (e.g. the model call failed). Releasing a released or expired hold changes nothing; a settled one raises CK012.';
revoke all on function public.creditkit_release(bigint, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_release(bigint, timestamptz) to service_role;
