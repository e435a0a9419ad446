-- creditkit 0.1.0 -> 0.1.1: finite times, and caller metadata may not use the kit's own keys
--
-- Times must be finite: an infinite p_now, plan anchor or grant expiry is CK006. Caller metadata
-- may not use the keys the kit writes itself (creditkit.reserved_metadata_keys()). Replaces the
-- functions that changed, then applies the installer's settings (lock_timeout) again to what it
-- replaced.

create or replace function creditkit.version()
returns text
language sql
immutable
set search_path = ''
as $$ select '0.1.1' $$;
comment on function creditkit.version() is 'The creditkit version installed in this database.';
revoke all on function creditkit.version() from public, anon, authenticated, service_role;
grant execute on function creditkit.version() to service_role;

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

-- Security definer: writes subscriptions and the ledger; service_role only.
create or replace function public.creditkit_set_plan(
  p_account_id uuid,
  p_plan_id text,
  p_status text default 'active',
  p_anchor timestamptz default null,
  p_now timestamptz default now(),
  out plan_id text,
  out status text,
  out period_start timestamptz,
  out period_end timestamptz,
  out balance bigint)
returns record
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
as $$
declare
  v_plan creditkit.plans;
  v_sub creditkit.subscriptions;
  v_anchor timestamptz;
  v_index integer;
  v_live boolean := p_status in ('active', 'trialing');
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_request(null, null, null, p_now);
  if p_account_id is null then
    raise exception using errcode = 'CK006', message = 'invalid argument: account id must not be NULL';
  end if;
  if p_status is null or p_status not in ('active', 'trialing', 'past_due', 'canceled') then
    raise exception using errcode = 'CK006', message = 'invalid argument: status must be active, trialing, past_due or canceled';
  end if;
  if p_anchor > p_now or not isfinite(p_anchor) then
    raise exception using errcode = 'CK006', message = 'invalid argument: the anchor must be a finite time, not in the future';
  end if;
  select p.* into v_plan from creditkit.plans p where p.id = p_plan_id;
  if not found or not v_plan.active then
    raise exception using errcode = 'CK009', message = format('unknown plan: %s', coalesce(p_plan_id, 'NULL')),
      detail = jsonb_build_object('plan_id', p_plan_id)::text;
  end if;

  insert into creditkit.accounts (id, created_at) values (p_account_id, p_now) on conflict (id) do nothing;
  perform creditkit.lock_account(p_account_id, p_now);
  select s.* into v_sub from creditkit.subscriptions s where s.account_id = p_account_id;

  if found and v_sub.plan_id = p_plan_id and (p_anchor is null or p_anchor = v_sub.anchor)
     and not (v_sub.status = 'canceled' and p_status <> 'canceled') then
    -- Same plan, same anchor: only the status changes (active -> past_due -> active, or canceled).
    -- Allowance already granted stays until its period ends; renewals pause while not live and
    -- resume with the period that contains the next touch.
    update creditkit.subscriptions s set status = p_status, updated_at = p_now where s.account_id = p_account_id;
    v_anchor := v_sub.anchor;
    v_index := v_sub.period_index;
    -- Resuming (past_due -> active): the period that contains p_now starts afresh if it is newer.
    -- Paused periods carry nothing over: nobody paid for them.
    if v_live and v_sub.status not in ('active', 'trialing') then
      v_index := creditkit.period_index(v_anchor, v_plan.period, p_now);
      if v_index > v_sub.period_index then
        perform creditkit.book_expired(p_account_id, p_now);
        perform creditkit.grant_period(p_account_id, v_plan, v_anchor, v_index, 0, 'resume', p_now);
        update creditkit.subscriptions s set period_index = v_index where s.account_id = p_account_id;
      else
        v_index := v_sub.period_index;
      end if;
    end if;
  else
    -- A new plan (or a restart after a cancellation) takes effect at once: the old plan's allowance is forfeited
    -- (booked as expired now), the new plan's first period starts at the anchor.
    update creditkit.grants g set expires_at = p_now
     where g.account_id = p_account_id and g.category = 'plan' and g.remaining > 0
       and g.metadata ? 'period_index'  -- only allowance the kit granted for a period
       and (g.expires_at is null or g.expires_at > p_now);
    perform creditkit.book_expired(p_account_id, p_now);
    v_anchor := coalesce(p_anchor, p_now);
    v_index := creditkit.period_index(v_anchor, v_plan.period, p_now);
    insert into creditkit.subscriptions as s (account_id, plan_id, status, anchor, period_index, renews_at, updated_at)
    values (p_account_id, p_plan_id, p_status, v_anchor, v_index, null, p_now)
    on conflict (account_id) do update
       set plan_id = excluded.plan_id, status = excluded.status, anchor = excluded.anchor,
           period_index = excluded.period_index, updated_at = excluded.updated_at;
    if v_live then
      perform creditkit.grant_period(p_account_id, v_plan, v_anchor, v_index, 0, 'plan_start', p_now);
    end if;
  end if;

  update creditkit.subscriptions s
     set renews_at = case when v_live then creditkit.period_start(v_anchor, v_plan.period, v_index + 1) end
   where s.account_id = p_account_id;
  perform creditkit.refresh_due_at(p_account_id);

  plan_id := p_plan_id;
  status := p_status;
  -- The period that contains p_now, whether or not it renews.
  v_index := creditkit.period_index(v_anchor, v_plan.period, p_now);
  period_start := creditkit.period_start(v_anchor, v_plan.period, v_index);
  period_end := creditkit.period_start(v_anchor, v_plan.period, v_index + 1);
  balance := creditkit.spendable(p_account_id);
end;
$$;
comment on function public.creditkit_set_plan(uuid, text, text, timestamptz, timestamptz) is
  'Server only. Puts an account on a plan (opening the account if needed). A new plan applies at once: the old plan''s remaining allowance is booked as expired and the new allowance granted for the period that contains p_now. The same plan again only updates the status. Naturally idempotent.';
revoke all on function public.creditkit_set_plan(uuid, text, text, timestamptz, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_set_plan(uuid, text, text, timestamptz, timestamptz) to service_role;

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
  else
    -- Refused without a lock: read the account once (as creditkit_consume does). Nothing is
    -- written, not even a row lock; the hold fields stay NULL.
    select false, greatest(a.balance - a.held, 0), a.due_at into allowed, balance, v_due_at
      from creditkit.accounts a where a.id = p_account_id;
    if found and (v_due_at is null or v_due_at > p_now) and balance < p_amount then
      if p_idempotency_key is not null then
        perform from creditkit.holds h where h.account_id = p_account_id and h.idempotency_key = p_idempotency_key;
      end if;
      if p_idempotency_key is null or not found then
        return;
      end if;
    end if;
  end if;

  -- Slow path (unknown account, something due, a retry, or credit that arrived meanwhile).
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
     or p_metadata is not null or p_now is null or not isfinite(p_now) then
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
    -- Slow path (unknown hold, something due, a hold not open or past its expiry).
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
      -- '-infinity': credit that expired while this hold covered it is still payable to it, and
      -- in spend order (soonest expiry first) it is drawn first.
      perform creditkit.draw_down(v_hold.account_id, charged, '-infinity');
      v_entry := creditkit.append_entry(v_hold.account_id, 'consume', -charged, null, v_hold.event, null,
                                        v_metadata, p_now, null, p_cost_micros, null);
      transaction_id := v_entry.id;
    end if;
  end if;
  update creditkit.holds h
     set status = 'settled', resolved_at = p_now, settled_amount = p_actual, charged = creditkit_settle.charged,
         transaction_id = creditkit_settle.transaction_id
   where h.id = v_hold.id;
  if not v_fast then
    -- expired credit this hold covered and did not charge expires now
    perform creditkit.book_expired(v_hold.account_id, p_now);
    balance := creditkit.spendable(v_hold.account_id);
  end if;
end;
$$;
comment on function public.creditkit_settle(bigint, bigint, bigint, jsonb, timestamptz) is
  'Server only. Settles a hold with the actual amount: charges it (one consume row) and frees the rest of the reserve. Above the reserve, the actual amount is charged only if the unreserved balance covers it; otherwise the reserve is charged and the rest reported as shortfall. Settling again with the same amount returns the first result; a hold already released or expired raises CK012.';
revoke all on function public.creditkit_settle(bigint, bigint, bigint, jsonb, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_settle(bigint, bigint, bigint, jsonb, timestamptz) to service_role;

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
  out transaction_id bigint,
  out grant_id bigint,
  out balance bigint)
returns record
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
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

  -- A grant opens the account on first use.
  insert into creditkit.accounts (id, created_at) values (p_account_id, p_now) on conflict (id) do nothing;
  v_balance := creditkit.lock_account(p_account_id, p_now);

  v_prior := creditkit.find_replay(p_account_id, p_idempotency_key, 'grant', p_amount, null, v_metadata,
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
  if (select a.balance from creditkit.accounts a where a.id = p_account_id) > 9007199254740991 - p_amount then
    raise exception using errcode = 'CK007',
      message = 'balance limit: the grant would take the balance above 9007199254740991';
  end if;
  grant_id := creditkit.add_grant(p_account_id, p_category, p_amount, p_priority, p_expires_at, v_metadata, p_now);
  v_entry := creditkit.append_entry(p_account_id, 'grant', p_amount, grant_id, null, p_idempotency_key,
                                    v_metadata, p_now, p_expires_at, null, p_revenue_micros);
  transaction_id := v_entry.id;
  balance := creditkit.spendable(p_account_id);  -- like every result (balance_after when no hold is open)
end;
$$;
comment on function public.creditkit_grant(uuid, bigint, text, timestamptz, integer, text, jsonb, bigint, timestamptz) is
  'Server only. Adds a bucket of credit (category plan|purchase|promotional|adjustment, optional expiry and priority) and opens the account on first use. Idempotent by key.';
revoke all on function public.creditkit_grant(uuid, bigint, text, timestamptz, integer, text, jsonb, bigint, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_grant(uuid, bigint, text, timestamptz, integer, text, jsonb, bigint, timestamptz) to service_role;

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
  out allowed boolean,
  out balance bigint,
  out transaction_id bigint)
returns record
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
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
   where a.id = p_account_id
     and a.balance - a.held >= p_amount
     and (a.due_at is null or a.due_at > p_now)
  returning a.balance, a.balance - a.held into v_balance, v_spendable;
  if found then
    if p_idempotency_key is null then
      insert into creditkit.ledger (account_id, kind, amount, balance_after, event, cost_micros, metadata, created_at)
      values (p_account_id, 'consume', -p_amount, v_balance, p_event, p_cost_micros, coalesce(v_metadata, '{}'::jsonb), p_now)
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
                                    cost_micros, metadata, created_at)
      overriding system value
      values (transaction_id, p_account_id, 'consume', -p_amount, v_balance, p_event, p_idempotency_key,
              p_cost_micros, coalesce(v_metadata, '{}'::jsonb), p_now)
      returning true, v_spendable into allowed, balance;
      return;
    end if;
    -- A retry: undo the debit (the rare case pays) and answer it from the first row, still under
    -- the row lock (creditkit.debit does; creditkit_consume hands it over).
    update creditkit.accounts a
       set balance = a.balance + p_amount, undrawn = a.undrawn - p_amount, version = a.version - 1
     where a.id = p_account_id;
    v_retry := true;
  else
    -- Refused without a lock: read the account once. When nothing is due, the key (if any) was
    -- never used and the spendable balance cannot cover the amount, that snapshot is the answer.
    select false, greatest(a.balance - a.held, 0), a.due_at into allowed, balance, v_due_at
      from creditkit.accounts a where a.id = p_account_id;
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
    from creditkit.debit(p_account_id, p_amount, p_event, p_idempotency_key, v_metadata, null, p_cost_micros, p_now) d;
end;
$$;
comment on function public.creditkit_consume(uuid, bigint, text, text, jsonb, bigint, timestamptz) is
  'Server only. Spends credit if the account can cover it: allowed=true with the new balance and ledger id, or allowed=false (blocked, nothing spent). Never below zero. Idempotent by key.';
revoke all on function public.creditkit_consume(uuid, bigint, text, text, jsonb, bigint, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_consume(uuid, bigint, text, text, jsonb, bigint, timestamptz) to service_role;

-- Validates an event name and its dimensions (a flat JSON object of scalars).
create or replace function creditkit.check_event(p_event text, p_dimensions jsonb, p_now timestamptz)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_event is null or p_dimensions is null then
    raise exception using errcode = 'CK006', message = 'invalid argument: event and dimensions are required';
  end if;
  perform creditkit.check_request(null, p_event, null, p_now);
  if jsonb_typeof(p_dimensions) <> 'object' or octet_length(p_dimensions::text) > 8192 then
    raise exception using errcode = 'CK006', message = 'invalid argument: dimensions must be a JSON object of at most 8192 bytes';
  end if;
  if exists (select 1 from jsonb_each(p_dimensions) d where jsonb_typeof(d.value) not in ('string', 'number', 'boolean')) then
    raise exception using errcode = 'CK006', message = 'invalid argument: dimension values must be strings, numbers or booleans';
  end if;
end;
$$;
comment on function creditkit.check_event(text, jsonb, timestamptz) is 'Raises CK006 unless the event name and dimensions are well formed.';
revoke all on function creditkit.check_event(text, jsonb, timestamptz) from public, anon, authenticated, service_role;
grant execute on function creditkit.check_event(text, jsonb, timestamptz) to authenticated, service_role;

-- Prices and spends for an event through the one debit. Internal: creditkit_meter and the insert
-- trigger call it. A retry is matched on what was asked, not on the price, which may have changed
-- (or gone) since; so a key used before is answered before anything is priced.
create or replace function creditkit.meter(
  p_account_id uuid, p_event text, p_quantity bigint, p_dimensions jsonb, p_idempotency_key text,
  p_cost_micros bigint, p_metadata jsonb, p_now timestamptz,
  out allowed boolean, out balance bigint, out transaction_id bigint, out amount bigint)
returns record
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_request jsonb;
  v_price record;
  v_prior creditkit.ledger;
  v_debit record;
begin
  if p_quantity is null or p_quantity < 1 or p_quantity > 9007199254740991
     or p_cost_micros < 0 or p_cost_micros > 9007199254740991 then
    perform creditkit.check_amount(p_quantity);
    perform creditkit.check_money(p_cost_micros);
  end if;
  -- (the usual call, an event without dimensions, key or metadata, skips the validators' calls)
  if p_event is null or length(p_event) > 200 or p_event !~ '[^[:space:]]' or p_dimensions is distinct from '{}'::jsonb
     or p_now is null or not isfinite(p_now) or p_idempotency_key is not null or p_metadata is not null then
    perform creditkit.check_event(p_event, p_dimensions, p_now);
    -- What the caller asked for; the ledger row adds the price it paid.
    v_request := creditkit.check_request(p_idempotency_key, p_event, p_metadata, p_now);
  else
    v_request := '{}'::jsonb;
  end if;
  v_request := v_request || jsonb_build_object('quantity', p_quantity, 'dimensions', p_dimensions);
  if p_account_id is null then
    raise exception using errcode = 'CK006', message = 'invalid argument: account id must not be NULL';
  end if;

  if p_idempotency_key is not null then
    perform from creditkit.ledger_keys k where k.account_id = p_account_id and k.idempotency_key = p_idempotency_key;
    if found then
      perform creditkit.lock_account(p_account_id, p_now);
      v_prior := creditkit.find_replay(p_account_id, p_idempotency_key, 'consume', null, p_event, v_request,
                                       p_cost_micros, null, array['unit_credits', 'price_id']);
      allowed := true;
      balance := v_prior.balance_after;
      transaction_id := v_prior.id;
      amount := -v_prior.amount;
      return;
    end if;
  end if;

  v_price := creditkit.price_or_raise(p_event, p_dimensions, p_quantity, p_now);
  v_debit := creditkit.debit(p_account_id, v_price.amount, p_event, p_idempotency_key, v_request,
                            jsonb_build_object('unit_credits', v_price.unit_credits, 'price_id', v_price.price_id),
                            p_cost_micros, p_now);
  allowed := v_debit.allowed;
  balance := v_debit.balance;
  transaction_id := v_debit.transaction_id;
  amount := v_debit.amount;
end;
$$;
comment on function creditkit.meter(uuid, text, bigint, jsonb, text, bigint, jsonb, timestamptz) is
  'Prices an event and spends for it; the body of creditkit_meter and creditkit.charge_on_insert.';
revoke all on function creditkit.meter(uuid, text, bigint, jsonb, text, bigint, jsonb, timestamptz) from public, anon, authenticated, service_role;

-- Security definer: writes the kit's tables, which no client role may write; service_role only.
create or replace function public.creditkit_consume_batch(
  p_events jsonb,
  p_now timestamptz default now())
returns table (ordinal integer, allowed boolean, balance bigint, transaction_id bigint)
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
as $$
declare
  c_keys constant text[] := array['account_id', 'amount', 'event', 'idempotency_key', 'metadata', 'cost_micros'];
  c_max constant bigint := 9007199254740991;
  v_count integer;
  v_bad integer;
  v_keyed integer;         -- items with an idempotency key
  v_common boolean;        -- the common case: every item spends
  v_item jsonb;
  v_i integer;
  v_value jsonb;
  v_number numeric;
  v_unknown text;
  v_account_text text;
  v_account uuid;
  v_amount bigint;
  v_cost bigint;
  v_event text;
  v_key text;
  v_meta jsonb;
  -- per item, in input order
  v_accounts uuid[];
  v_amounts bigint[];
  v_events text[];
  v_keys text[];
  v_metadata jsonb[];
  v_costs bigint[];
  v_slot integer[];        -- the item's account as an index into the per-account arrays
  v_group integer[];       -- the first item with the same (account, key); NULL without a key
  v_prior_id bigint[];     -- the ledger row an earlier call made with this key, if any
  v_prior_kind text[];
  v_prior_amount bigint[];
  v_prior_event text[];
  v_prior_meta jsonb[];
  v_prior_cost bigint[];
  v_prior_after bigint[];
  v_owner integer[];       -- per group: the item of this batch that used the key, 0 if none yet
  v_allowed boolean[];
  v_answer bigint[];       -- balance answered
  v_after bigint[];        -- ledger balance_after of an item that spends
  v_tx bigint[];           -- transaction id answered
  -- per distinct account, in uuid order
  v_ids uuid[];
  v_spendable bigint[];
  v_stored bigint[];
  v_stored_one bigint;     -- the account being locked: its balance, held, and whether something is due
  v_held bigint;
  v_due boolean;
  v_draw boolean[];        -- per account: draw its buckets now instead of counting undrawn (see step 2)
  v_spent bigint[];
  v_rows integer[];
  v_s integer;
  v_o integer;
  v_n integer := 0;
  v_new boolean[];         -- the item writes a new ledger row (with id v_tx)
  v_seq regclass;          -- the ledger's id sequence, looked up only where ids are drawn ahead
  v_total bigint;          -- what all the items spend
  v_one uuid;              -- the first item's account
  v_one_text text;         -- ... as the item spells it
  v_fast boolean;
  v_same boolean;         -- every item names the first item's account
  v_fast_keys text[];      -- the keys, for the one-account path's test under the lock
begin
  -- (the caller test of assert_server_caller, which raises, inlined: a call costs about 10 us)
  if current_setting('role', true) in ('anon', 'authenticated') or auth.role() in ('anon', 'authenticated') then
    perform creditkit.assert_server_caller();
  end if;

  -- 1. Validate everything before locking anything.
  if p_events is null or jsonb_typeof(p_events) <> 'array' then
    raise exception using errcode = 'CK006', message = 'invalid argument: events must be a JSON array';
  end if;
  v_count := jsonb_array_length(p_events);
  if v_count < 1 or v_count > 1000 then
    raise exception using errcode = 'CK006',
      message = format('invalid argument: events must hold 1 to 1000 items, not %s', v_count);
  end if;
  if p_now is null or not isfinite(p_now) then
    perform creditkit.check_request(null, null, null, p_now);  -- (raises CK006)
  end if;

  -- Typing, in two passes over the array and without building anything per item. First one
  -- jsonpath test for the JSON types a cast would take silently (an amount written as a string,
  -- an event, key or account id written as a number): any such item sends the batch to the
  -- item-by-item checks. Then jsonb_to_recordset casts every item's fields in one pass, and one
  -- query checks them and adds up what the fast path needs: whether every item is valid (v_bad
  -- counts those that are not), the total, whether every item names the first item's account,
  -- and the keys (whether they all differ is tested only when there are any). The account ids
  -- are compared as the items spell them (strings, by the jsonpath test): only the first is cast
  -- to uuid here, and a batch that spells one account two ways takes the general path, which
  -- casts them all. A field that no cast takes (a string that is not a uuid, a number with a
  -- fraction or beyond bigint, an item that is not an object) raises inside the block, and the
  -- item-by-item checks below then find that item and raise its own error, with
  -- creditkit_consume's code and message; so does an item with a key the kit does not know,
  -- which the cast ignores and a test of its own finds.
  if jsonb_path_exists(p_events,
       'lax $[*] ? (!(@.account_id.type() == "string") || !(@.amount.type() == "number")
                   || (exists(@.cost_micros) && !(@.cost_micros.type() == "number" || @.cost_micros.type() == "null"))
                   || (exists(@.event) && !(@.event.type() == "string" || @.event.type() == "null"))
                   || (exists(@.idempotency_key) && !(@.idempotency_key.type() == "string" || @.idempotency_key.type() == "null")))') then
    v_bad := 1;
  else
    begin
      v_one_text := p_events -> 0 ->> 'account_id';
      v_one := v_one_text::uuid;
      select count(*) filter (where not coalesce(r.account_id is not null and r.amount between 1 and c_max
                 and (r.cost_micros is null or r.cost_micros between 0 and c_max)
                 and (r.event is null or (length(r.event) <= 200 and r.event ~ '[^[:space:]]'))
                 and (r.idempotency_key is null or (length(r.idempotency_key) <= 255 and r.idempotency_key ~ '[^[:space:]]'))
                 and (r.metadata is null or (jsonb_typeof(r.metadata) = 'object' and octet_length(r.metadata::text) <= 8192
                                             and not r.metadata ?| creditkit.reserved_metadata_keys())), false)),
             sum(r.amount), coalesce(bool_and(r.account_id = v_one_text), false),
             count(r.idempotency_key),
             array_agg(r.idempotency_key) filter (where r.idempotency_key is not null)
        into v_bad, v_total, v_same, v_keyed, v_fast_keys
        from jsonb_to_recordset(p_events)
             r(account_id text, amount bigint, event text, idempotency_key text, metadata jsonb, cost_micros bigint);
      if v_bad = 0 and exists (select from jsonb_array_elements(p_events) e(item) where e.item - c_keys <> '{}'::jsonb) then
        v_bad := 1;
      end if;
    exception when others then
      v_bad := 1;
    end;
  end if;

  -- The usual batch: every item valid, all for one account (an app flushing one user's events),
  -- no key twice, and credit for all of it. Then one guarded UPDATE spends the total (it locks the
  -- row only if it passes, as creditkit_consume's fast path does), and one INSERT reads the items
  -- again, writes their rows in input order and answers each from its running balance. Anything
  -- else (an unknown account, too little credit, something due, a key used before) goes on to the
  -- general path below, which decides item by item.
  v_fast := v_bad = 0 and v_same;
  if v_fast and v_keyed > 0 then
    v_fast := (select count(distinct k.key) from unnest(v_fast_keys) k(key)) = v_keyed;
  end if;
  if v_fast then
    update creditkit.accounts a
       set balance = a.balance - v_total, undrawn = a.undrawn + v_total, version = a.version + v_count
     where a.id = v_one and a.balance - a.held >= v_total and (a.due_at is null or a.due_at > p_now)
    returning a.balance + v_total, a.held into v_stored_one, v_held;
    v_fast := found;
    if v_fast and v_keyed > 0 then
      -- Under the row lock every earlier write of this account's ledger is visible: a key used
      -- before makes this a (partial) replay, which the general path answers; undo the debit.
      perform from creditkit.ledger_keys k where k.account_id = v_one and k.idempotency_key = any(v_fast_keys);
      if found then
        update creditkit.accounts a
           set balance = a.balance + v_total, undrawn = a.undrawn - v_total, version = a.version - v_count
         where a.id = v_one;
        v_fast := false;
      end if;
    end if;
    if v_fast then
      return query
        with written as (
          insert into creditkit.ledger (account_id, kind, amount, balance_after, event, idempotency_key,
                                        cost_micros, metadata, created_at)
          select v_one, 'consume', -r.amount,
                 v_stored_one - creditkit.running_sum(r.amount) over (order by r.ordinality rows unbounded preceding),
                 r.event, r.idempotency_key, r.cost_micros, coalesce(r.metadata, '{}'::jsonb), p_now
            -- (every item names v_one: the account id is not read again)
            from rows from (jsonb_to_recordset(p_events)
                              as (amount bigint, event text, idempotency_key text, metadata jsonb, cost_micros bigint))
                 with ordinality r(amount, event, idempotency_key, metadata, cost_micros, ordinality)
           order by r.ordinality  -- ids are drawn in this order, so they follow the input
          returning id, balance_after, idempotency_key
        ), keyed as (
          insert into creditkit.ledger_keys (account_id, idempotency_key, ledger_id)
          select v_one, w.idempotency_key, w.id from written w where w.idempotency_key is not null
        )
        select (row_number() over (order by w.id))::integer, true, w.balance_after - v_held, w.id
          from written w order by w.id;
      return;
    end if;
  end if;

  -- The general path works on per-item arrays: read them from the items, which are valid (the
  -- same casts passed above, but for the account ids, which are cast here), or, when one is not,
  -- from the item-by-item checks below.
  if v_bad = 0 then
    begin
      select array_agg(r.account_id), array_agg(r.amount), array_agg(r.event), array_agg(r.idempotency_key),
             array_agg(r.metadata), array_agg(r.cost_micros)
        into v_accounts, v_amounts, v_events, v_keys, v_metadata, v_costs
        from (select * from jsonb_populate_recordset(null::creditkit.batch_item, p_events) with ordinality x
               order by x.ordinality) r;  -- the aggregates take the rows in this order: one sort instead of one per array
    exception when others then
      v_bad := 1;  -- an account id that is not a uuid
    end;
  end if;

  if v_bad > 0 then
    -- Item by item, in order, with the checks and messages of creditkit_consume: raises for the
    -- first bad item. (It also fills the arrays, for the spellings the query above left out, such
    -- as an amount written 5.0.)
    for v_item, v_i in select e.value, e.ordinality::integer from jsonb_array_elements(p_events) with ordinality e loop
      if jsonb_typeof(v_item) <> 'object' then
        raise exception using errcode = 'CK006',
          message = format('invalid argument: item %s must be a JSON object', v_i);
      end if;
      if v_item - c_keys <> '{}'::jsonb then
        select string_agg(k.key, ', ' order by k.key) into v_unknown
          from jsonb_object_keys(v_item - c_keys) k(key);
        raise exception using errcode = 'CK006',
          message = format('invalid argument: item %s has unknown keys: %s (allowed: account_id, amount, event, idempotency_key, metadata, cost_micros)', v_i, v_unknown);
      end if;

      -- The checks of creditkit_consume, in its order: amount, cost, key/event/metadata, account.
      -- A key that is absent or JSON null is SQL NULL, as when the argument is left out.
      v_value := nullif(v_item -> 'amount', 'null'::jsonb);
      v_amount := null;
      if v_value is not null then
        if jsonb_typeof(v_value) <> 'number' then
          raise exception using errcode = 'CK001',
            message = format('invalid amount: item %s: %s (must be an integer from 1 to 9007199254740991)', v_i, left(v_value::text, 40));
        end if;
        v_number := v_value::text::numeric;
        if v_number <> trunc(v_number) or v_number < 1 or v_number > 9007199254740991 then
          raise exception using errcode = 'CK001',
            message = format('invalid amount: item %s: %s (must be an integer from 1 to 9007199254740991)', v_i, left(v_value::text, 40));
        end if;
        v_amount := v_number::bigint;
      end if;
      perform creditkit.check_amount(v_amount);

      v_value := nullif(v_item -> 'cost_micros', 'null'::jsonb);
      v_cost := null;
      if v_value is not null then
        if jsonb_typeof(v_value) <> 'number' then
          raise exception using errcode = 'CK001',
            message = format('invalid amount: item %s: cost_micros %s (money is NULL or an integer from 0 to 9007199254740991)', v_i, left(v_value::text, 40));
        end if;
        v_number := v_value::text::numeric;
        if v_number <> trunc(v_number) or v_number < 0 or v_number > 9007199254740991 then
          raise exception using errcode = 'CK001',
            message = format('invalid amount: item %s: cost_micros %s (money is NULL or an integer from 0 to 9007199254740991)', v_i, left(v_value::text, 40));
        end if;
        v_cost := v_number::bigint;
      end if;
      perform creditkit.check_money(v_cost);

      v_value := nullif(v_item -> 'event', 'null'::jsonb);
      if v_value is not null and jsonb_typeof(v_value) <> 'string' then
        raise exception using errcode = 'CK006',
          message = format('invalid argument: item %s: event name must be a string', v_i);
      end if;
      v_event := v_value #>> '{}';
      v_value := nullif(v_item -> 'idempotency_key', 'null'::jsonb);
      if v_value is not null and jsonb_typeof(v_value) <> 'string' then
        raise exception using errcode = 'CK006',
          message = format('invalid argument: item %s: idempotency key must be a string', v_i);
      end if;
      v_key := v_value #>> '{}';
      v_meta := nullif(v_item -> 'metadata', 'null'::jsonb);
      perform creditkit.check_request(v_key, v_event, v_meta, p_now);

      v_value := nullif(v_item -> 'account_id', 'null'::jsonb);
      if v_value is null then
        raise exception using errcode = 'CK006',
          message = format('invalid argument: item %s: account id must not be NULL', v_i);
      end if;
      v_account_text := v_value #>> '{}';
      if jsonb_typeof(v_value) <> 'string' then
        v_account := null;
      elsif v_account_text ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
        v_account := v_account_text::uuid;  -- the usual form: no exception block needed
      else
        begin  -- the other spellings Postgres accepts for a uuid (braces, no hyphens, ...)
          v_account := v_account_text::uuid;
        exception when invalid_text_representation then
          v_account := null;
        end;
      end if;
      if v_account is null then
        raise exception using errcode = 'CK006',
          message = format('invalid argument: item %s: account id %s is not a uuid', v_i, left(v_value::text, 40));
      end if;

      v_accounts[v_i] := v_account;
      v_amounts[v_i] := v_amount;
      v_events[v_i] := v_event;
      v_keys[v_i] := v_key;
      v_metadata[v_i] := v_meta;
      v_costs[v_i] := v_cost;
    end loop;
    v_keyed := cardinality(array_remove(v_keys, null));
  end if;

  -- 2. Lock every account of the batch in one fixed order (CK003 for an unknown one) and take
  -- its spendable and stored balance under the lock. Like creditkit_consume's fast path, the
  -- batch never reads a bucket: while nothing is due it leaves what the account has not drawn
  -- yet (undrawn) where it is and adds to it; only an account with something due goes through
  -- lock_account, which books it (drawing first).
  select array_agg(d.id order by d.id) into v_ids from (select distinct a.id from unnest(v_accounts) a(id)) d;
  for v_s in 1 .. cardinality(v_ids) loop
    select a.balance, a.held, a.due_at <= p_now into v_stored_one, v_held, v_due
      from creditkit.accounts a where a.id = v_ids[v_s]
       for update;
    v_draw[v_s] := false;
    if not found or v_due then
      v_spendable[v_s] := creditkit.lock_account(v_ids[v_s], p_now);  -- (raises CK003 if not found)
      -- Still due after booking: expired credit stays for open holds (book_expired). What the
      -- batch spends must not come out of it, so it is drawn now, from the credit not expired,
      -- as creditkit_consume's slow path draws, instead of being left to the next draw.
      select a.balance, a.due_at <= p_now into v_stored_one, v_due
        from creditkit.accounts a where a.id = v_ids[v_s];
      v_stored[v_s] := v_stored_one;
      v_draw[v_s] := coalesce(v_due, false);
    else
      v_spendable[v_s] := greatest(v_stored_one - v_held, 0);
      v_stored[v_s] := v_stored_one;
    end if;
  end loop;

  -- 3. Per item: its account's slot, its key group, and the row an earlier call made with its key.
  -- Without any key in the batch (the usual case) only the slot is needed.
  if v_keyed = 0 then
    select array_agg(array_position(v_ids, u.account_id) order by u.i) into v_slot
      from unnest(v_accounts) with ordinality u(account_id, i);
  else
    select array_agg(array_position(v_ids, x.account_id) order by x.i), array_agg(x.grp order by x.i),
           array_agg(l.id order by x.i), array_agg(l.kind order by x.i), array_agg(l.amount order by x.i),
           array_agg(l.event order by x.i), array_agg(l.metadata order by x.i), array_agg(l.cost_micros order by x.i),
           array_agg(l.balance_after order by x.i)
      into v_slot, v_group, v_prior_id, v_prior_kind, v_prior_amount, v_prior_event, v_prior_meta, v_prior_cost, v_prior_after
      from (select u.account_id, u.key, u.i,
                   case when u.key is not null
                        then first_value(u.i) over (partition by u.account_id, u.key order by u.i) end as grp
              from unnest(v_accounts, v_keys) with ordinality u(account_id, key, i)) x
      -- (lateral: one probe of each primary key per item, whatever the statistics say)
      left join lateral (select l.* from creditkit.ledger l
                          where x.key is not null and l.account_id = x.account_id
                            and l.id = (select k.ledger_id from creditkit.ledger_keys k
                                         where k.account_id = x.account_id and k.idempotency_key = x.key)) l on true;
  end if;
  -- The common case, all in SQL: no key seen before or twice, and every account can pay for all
  -- its items. Then every item spends, in order, and the rest is running sums. (Tested in steps:
  -- one condition that folds to a constant for some parameter values makes the plan cache plan
  -- it again on every call.)
  v_common := v_keyed = 0;
  if not v_common then
    v_common := v_prior_id = array_fill(null::bigint, array[v_count])
                and not exists (select from unnest(v_group) with ordinality g(grp, i) where g.grp <> g.i);
  end if;
  if v_common then
    select array_agg(t.spent order by t.slot), array_agg(t.n order by t.slot) into v_spent, v_rows
      from (select u.slot, sum(u.amount)::bigint as spent, count(*)::integer as n
              from unnest(v_slot, v_amounts) u(slot, amount) group by u.slot) t;
    v_common := not exists (select from unnest(v_spent, v_spendable) t(spent, spendable) where t.spent > t.spendable);
  end if;
  if v_common then
    update creditkit.accounts a
       set balance = a.balance - t.spent, undrawn = a.undrawn + case when t.draw then 0 else t.spent end,
           version = a.version + t.n
      from unnest(v_ids, v_spent, v_rows, v_draw) t(id, spent, n, draw)
     where a.id = t.id;
    perform creditkit.draw_down(t.id, t.spent, p_now)
       from unnest(v_ids, v_spent, v_draw) t(id, spent, draw) where t.draw and t.spent > 0;
    -- ids in input order: nextval is called once per row of generate_series, in order
    v_seq := pg_get_serial_sequence('creditkit.ledger', 'id')::regclass;
    select array_agg(nextval(v_seq)) into v_tx from generate_series(1, v_count);
    return query
      with x as materialized (
        select u.i::integer as i, u.account_id, u.amount, u.event, u.key, u.meta, u.cost, u.slot,
               creditkit.running_sum(u.amount) over (partition by u.slot order by u.i rows unbounded preceding) as cum
          from unnest(v_accounts, v_amounts, v_events, v_keys, v_metadata, v_costs, v_slot)
               with ordinality u(account_id, amount, event, key, meta, cost, slot, i)
      ), written as (
        insert into creditkit.ledger (id, account_id, kind, amount, balance_after, event, idempotency_key,
                                      cost_micros, metadata, created_at)
        overriding system value
        select v_tx[x.i], x.account_id, 'consume', -x.amount, v_stored[x.slot] - x.cum, x.event, x.key, x.cost,
               coalesce(x.meta, '{}'::jsonb), p_now
          from x order by x.i
      ), keyed as (
        insert into creditkit.ledger_keys (account_id, idempotency_key, ledger_id)
        select x.account_id, x.key, v_tx[x.i] from x where x.key is not null
      )
      select x.i, true, (v_spendable[x.slot] - x.cum)::bigint, v_tx[x.i] from x order by x.i;
    return;
  end if;

  -- (filled to full length: assigning element i of an empty array would start it at i)
  v_spent := array_fill(0::bigint, array[cardinality(v_ids)]);  -- the loop starts from nothing spent
  v_rows := array_fill(0, array[cardinality(v_ids)]);
  v_owner := array_fill(0, array[v_count]);
  v_new := array_fill(false, array[v_count]);
  v_allowed := array_fill(null::boolean, array[v_count]);
  v_answer := array_fill(null::bigint, array[v_count]);
  v_after := array_fill(null::bigint, array[v_count]);
  v_tx := array_fill(null::bigint, array[v_count]);

  -- 4. Decide every item in order, as consecutive creditkit_consume calls would.
  v_seq := pg_get_serial_sequence('creditkit.ledger', 'id')::regclass;
  for v_i in 1 .. v_count loop
    v_s := v_slot[v_i];
    v_meta := coalesce(v_metadata[v_i], '{}'::jsonb);
    if v_prior_id[v_i] is not null then
      -- the key was used before this batch (find_replay's rule and message)
      if v_prior_kind[v_i] <> 'consume' or v_prior_amount[v_i] <> -v_amounts[v_i]
         or v_prior_event[v_i] is distinct from v_events[v_i] or v_prior_meta[v_i] <> v_meta
         or v_prior_cost[v_i] is distinct from v_costs[v_i] then
        raise exception using
          errcode = 'CK004',
          message = format('idempotency conflict: key %L was already used for a different %s request', v_keys[v_i], v_prior_kind[v_i]),
          detail = jsonb_build_object('transaction_id', v_prior_id[v_i])::text;
      end if;
      v_allowed[v_i] := true;
      v_answer[v_i] := v_prior_after[v_i];
      v_tx[v_i] := v_prior_id[v_i];
      continue;
    end if;
    if v_group[v_i] is not null and v_owner[v_group[v_i]] > 0 then
      -- the key was used by an earlier item of this batch
      v_o := v_owner[v_group[v_i]];
      if v_amounts[v_o] <> v_amounts[v_i] or v_events[v_o] is distinct from v_events[v_i]
         or coalesce(v_metadata[v_o], '{}'::jsonb) <> v_meta or v_costs[v_o] is distinct from v_costs[v_i] then
        raise exception using
          errcode = 'CK004',
          message = format('idempotency conflict: key %L was already used for a different consume request', v_keys[v_i]),
          detail = jsonb_build_object('transaction_id', v_tx[v_o])::text;
      end if;
      v_allowed[v_i] := true;
      v_answer[v_i] := v_after[v_o];
      v_tx[v_i] := v_tx[v_o];
      continue;
    end if;
    if v_spendable[v_s] < v_amounts[v_i] then
      v_allowed[v_i] := false;
      v_answer[v_i] := v_spendable[v_s];
      continue;
    end if;
    v_spendable[v_s] := v_spendable[v_s] - v_amounts[v_i];
    v_spent[v_s] := v_spent[v_s] + v_amounts[v_i];
    v_rows[v_s] := v_rows[v_s] + 1;
    v_after[v_i] := v_stored[v_s] - v_spent[v_s];
    v_allowed[v_i] := true;
    v_answer[v_i] := v_spendable[v_s];
    v_tx[v_i] := nextval(v_seq);  -- a new ledger row; ids in input order
    v_new[v_i] := true;
    v_n := v_n + 1;
    if v_group[v_i] is not null then
      v_owner[v_group[v_i]] := v_i;
    end if;
  end loop;

  -- 5. Write: the accounts (what they spent counted as undrawn), then the ledger rows in input order.
  if v_n > 0 then
    update creditkit.accounts a
       set balance = a.balance - t.spent, undrawn = a.undrawn + case when t.draw then 0 else t.spent end,
           version = a.version + t.n
      from unnest(v_ids, v_spent, v_rows, v_draw) t(id, spent, n, draw)
     where a.id = t.id and t.n > 0;
    perform creditkit.draw_down(t.id, t.spent, p_now)
       from unnest(v_ids, v_spent, v_draw) t(id, spent, draw) where t.draw and t.spent > 0;
    insert into creditkit.ledger (id, account_id, kind, amount, balance_after, event, idempotency_key,
                                  cost_micros, metadata, created_at)
    overriding system value
    select x.tx, x.account_id, 'consume', -x.amount, x.after, x.event, x.key, x.cost, coalesce(x.meta, '{}'::jsonb), p_now
      from unnest(v_tx, v_accounts, v_amounts, v_after, v_events, v_keys, v_costs, v_metadata, v_new)
           with ordinality x(tx, account_id, amount, after, event, key, cost, meta, new, i)
     where x.new
     order by x.i;
    insert into creditkit.ledger_keys (account_id, idempotency_key, ledger_id)
    select x.account_id, x.key, x.tx
      from unnest(v_tx, v_accounts, v_keys, v_new) x(tx, account_id, key, new)
     where x.new and x.key is not null;
  end if;

  for v_i in 1 .. v_count loop
    ordinal := v_i;
    allowed := v_allowed[v_i];
    balance := v_answer[v_i];
    transaction_id := v_tx[v_i];
    return next;
  end loop;
end;
$$;
comment on function public.creditkit_consume_batch(jsonb, timestamptz) is
  'Server only. Spends for 1 to 1000 usage events in one transaction: p_events is a JSON array of {account_id, amount, event?, idempotency_key?, metadata?, cost_micros?}, and each event is applied in order exactly as creditkit_consume would apply it, answering one row per event (ordinal from 1, allowed, balance, transaction_id). Any invalid event fails the whole call and changes nothing; a blocked event is allowed=false. Idempotent per event by key.';
revoke all on function public.creditkit_consume_batch(jsonb, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_consume_batch(jsonb, timestamptz) to service_role;

select creditkit.apply_settings();
