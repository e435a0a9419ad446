-- creditkit 0023: a fast path for holds.
--
-- Same signatures, answers, errors and their order as 0009 (creditkit_reserve) and 0006
-- (creditkit_settle). A reserve plus its settle ran at about a quarter of a single consume's
-- rate in the bench (docs/benchmarks.md). Both went through the general lock point: the
-- argument checks as helper calls (each with its own SET search_path), lock_account, which
-- draws from the buckets whatever the consume fast path left undrawn, and for the settle
-- lock_hold, draw_down over the buckets and append_entry. Now, when nothing is due on the
-- account, each takes creditkit_consume's shape:
--  - creditkit_reserve: one test for everything a plain call does not have, then one guarded
--    UPDATE that reserves (it locks the row only if the unreserved credit covers the amount and
--    nothing is due) and one INSERT of the hold. A key is looked up under the lock that UPDATE
--    took; if it was used before, the reservation is undone and the call goes the old way, which
--    answers the retry. A refused or otherwise unusual reserve also goes the old way.
--  - creditkit_settle: one statement locks the hold's account, a second reads the hold under
--    that lock; if it is open and nothing is due, one UPDATE frees the reserve and spends what
--    is charged (counted in `undrawn`, as the consume fast path does: the buckets are drawn at
--    the next lock_account), one ledger INSERT records it and one UPDATE closes the hold. An
--    unknown hold, one not open (a retry, or released or expired) or something due goes the
--    old way, which books what is due and answers or raises as before.
-- The old code follows the reserve's fast path unchanged. The settle's two paths share the charge
-- rule, the ledger row's metadata and the closing of the hold; only how they lock and write the
-- account differs.

-- Security definer: writes holds and accounts; service_role only.
create or replace function public.creditkit_reserve(
  p_account_id uuid,
  p_amount bigint,
  p_ttl interval default interval '15 minutes',
  p_event text default null,
  p_idempotency_key text default null,
  p_metadata jsonb default null,
  p_now timestamptz default now(),
  out allowed boolean,
  out hold_id bigint,
  out balance bigint,
  out expires_at timestamptz)
returns record
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  v_metadata jsonb;
  v_spendable bigint;
  v_prior creditkit.holds;
  v_retry boolean := false;
begin
  -- One test for everything a plain call does not have: a client role, an argument NULL or out
  -- of range, or an event, key or metadata to validate. Only then do the checks run, in their
  -- usual order.
  if current_setting('role', true) in ('anon', 'authenticated') or auth.role() in ('anon', 'authenticated')
     or p_account_id is null or p_amount is null or p_amount < 1 or p_amount > 9007199254740991 or p_now is null
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
   where a.id = p_account_id
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
        update creditkit.accounts a set held = a.held - p_amount where a.id = p_account_id;
        perform creditkit.refresh_due_at(p_account_id);
      end if;
    end if;
    if not v_retry then
      insert into creditkit.holds as h (account_id, amount, expires_at, event, idempotency_key, metadata, created_at)
      values (p_account_id, p_amount, p_now + p_ttl, p_event, p_idempotency_key, coalesce(v_metadata, '{}'::jsonb), p_now)
      returning true, h.id, v_spendable, h.expires_at into allowed, hold_id, balance, expires_at;
      return;
    end if;
  end if;

  -- Slow path (unknown account, too little credit, something due, a retry): as in 0009.
  v_metadata := coalesce(v_metadata, '{}'::jsonb);
  v_spendable := creditkit.lock_account(p_account_id, p_now);

  if p_idempotency_key is not null then
    select h.* into v_prior from creditkit.holds h
     where h.account_id = p_account_id and h.idempotency_key = p_idempotency_key;
    if found then
      if v_prior.amount <> p_amount or v_prior.event is distinct from p_event or v_prior.metadata <> v_metadata then
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
  insert into creditkit.holds (account_id, amount, expires_at, event, idempotency_key, metadata, created_at)
  values (p_account_id, p_amount, expires_at, p_event, p_idempotency_key, v_metadata, p_now)
  returning id into hold_id;
  update creditkit.accounts a
     set held = a.held + p_amount, due_at = least(a.due_at, expires_at)
   where a.id = p_account_id;
  allowed := true;
  balance := v_spendable - p_amount;
end;
$$;
comment on function public.creditkit_reserve(uuid, bigint, interval, text, text, jsonb, timestamptz) is
  'Server only. Reserves credit before a long call: allowed=true with a hold id and the spendable balance left, or allowed=false (blocked, nothing reserved). The hold expires after p_ttl (default 15 minutes, at most 7 days) unless settled or released. Idempotent by key while the hold is open; a retry after it was settled, released or expired raises CK012.';
revoke all on function public.creditkit_reserve(uuid, bigint, interval, text, text, jsonb, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_reserve(uuid, bigint, interval, text, text, jsonb, timestamptz) to service_role;

-- Security definer: writes holds, accounts and the ledger; service_role only.
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
as $$
declare
  v_hold creditkit.holds;
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
     or p_metadata is not null or p_now is null then
    perform creditkit.assert_server_caller();
    if p_actual is null or p_actual < 0 or p_actual > 9007199254740991 then
      raise exception using errcode = 'CK001',
        message = format('invalid amount: %s (the actual amount is an integer from 0 to 9007199254740991)', coalesce(p_actual::text, 'NULL'));
    end if;
    perform creditkit.check_money(p_cost_micros);
    v_metadata := creditkit.check_request(null, null, p_metadata, p_now);
  end if;

  -- Fast path: lock the hold's account, then read the hold under that lock (a resolution that
  -- committed while this call waited is seen). It serves an open, unexpired hold when nothing is
  -- due on the account.
  select a.balance, a.held, a.due_at into v_balance, v_held, v_due_at
    from creditkit.accounts a
   where a.id = (select h.account_id from creditkit.holds h where h.id = p_hold_id)
     for update;
  if found and (v_due_at is null or v_due_at > p_now) then
    select h.* into v_hold from creditkit.holds h where h.id = p_hold_id;
    v_fast := coalesce(v_hold.status = 'open' and v_hold.expires_at > p_now, false);
  end if;

  if not v_fast then
    -- Slow path (unknown hold, something due, a hold not open or past its expiry): as in 0006.
    v_hold := creditkit.lock_hold(p_hold_id, p_now);
    if v_hold.status = 'settled' and v_hold.settled_amount = p_actual then
      -- A retry of the same settle: the first result.
      charged := v_hold.charged;
      shortfall := p_actual - v_hold.charged;
      transaction_id := v_hold.transaction_id;
      balance := creditkit.spendable(v_hold.account_id);
      return;
    elsif v_hold.status <> 'open' then
      raise exception using errcode = 'CK012', message = format('hold %s is already %s', v_hold.id, v_hold.status),
        detail = jsonb_build_object('hold_id', v_hold.id, 'status', v_hold.status)::text;
    end if;
    select a.balance, a.held into v_balance, v_held from creditkit.accounts a where a.id = v_hold.account_id;
  end if;

  -- The charge rule of 0006: up to the reserve as far as the balance allows; above it, the whole
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
     where a.id = v_hold.account_id
    returning a.balance, greatest(a.balance - a.held, 0) into v_balance, balance;
    if charged > 0 then
      insert into creditkit.ledger (account_id, kind, amount, balance_after, event, cost_micros, metadata, created_at)
      values (v_hold.account_id, 'consume', -charged, v_balance, v_hold.event, p_cost_micros, v_metadata, p_now)
      returning id into transaction_id;
    end if;
  else
    update creditkit.accounts a set held = a.held - v_hold.amount where a.id = v_hold.account_id;
    if charged > 0 then
      perform creditkit.draw_down(v_hold.account_id, charged, p_now);
      v_entry := creditkit.append_entry(v_hold.account_id, 'consume', -charged, null, v_hold.event, null,
                                        v_metadata, p_now, null, p_cost_micros, null);
      transaction_id := v_entry.id;
    end if;
    balance := creditkit.spendable(v_hold.account_id);
  end if;
  update creditkit.holds h
     set status = 'settled', resolved_at = p_now, settled_amount = p_actual, charged = creditkit_settle.charged,
         transaction_id = creditkit_settle.transaction_id
   where h.id = v_hold.id;
end;
$$;
comment on function public.creditkit_settle(bigint, bigint, bigint, jsonb, timestamptz) is
  'Server only. Settles a hold with the actual amount: charges it (one consume row) and frees the rest of the reserve. Above the reserve, the actual amount is charged only if the unreserved balance covers it; otherwise the reserve is charged and the rest reported as shortfall. Settling again with the same amount returns the first result; a hold already released or expired raises CK012.';
revoke all on function public.creditkit_settle(bigint, bigint, bigint, jsonb, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_settle(bigint, bigint, bigint, jsonb, timestamptz) to service_role;
