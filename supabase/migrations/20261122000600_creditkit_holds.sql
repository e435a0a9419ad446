-- creditkit holds: reserve an estimate before a long model call, settle the actual amount after
-- (the rest is freed), release on failure. A hold lowers the spendable balance at once without
-- touching the ledger (no credit has moved yet); settling writes one consume row.
--
-- Every hold resolves exactly once, as settled, released or expired. All three take the account
-- lock and re-read the hold's status under it, so racing calls serialise and the losers see the
-- winner's result. Holds expire lazily: their expires_at joins accounts.due_at, so the first touch
-- after it frees the credit; no sweep is needed.
--
-- spendable = balance - accounts.held (lock_account returns it). The ledger invariants are
-- unchanged (balance = sum(ledger)).

create table creditkit.holds (
  id bigint generated always as identity primary key,
  account_id uuid not null references creditkit.accounts (id),
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
  transaction_id bigint references creditkit.ledger (id),
  constraint holds_resolution check ((status = 'open') = (resolved_at is null))
);
comment on table creditkit.holds is 'Reservations: open until settled, released or expired (exactly one of them).';
create unique index holds_idempotency on creditkit.holds (account_id, idempotency_key) where idempotency_key is not null;
create index holds_open on creditkit.holds (account_id, expires_at) where status = 'open';

alter table creditkit.holds enable row level security;
revoke all on table creditkit.holds from public, anon, authenticated, service_role;
grant select on table creditkit.holds to authenticated, service_role;
create policy "members can read their accounts' holds"
  on creditkit.holds for select to authenticated
  using (creditkit.can_access_account(account_id));

insert into creditkit.error_codes (code, name, description) values
  ('CK011', 'unknown_hold', 'No hold with that id.'),
  ('CK012', 'hold_closed', 'The hold was already resolved differently (settled, released or expired). DETAIL is JSON {"status": ...}.');

-- ---------------------------------------------------------------------------------------------
-- Lazy expiry joins the slow path
-- ---------------------------------------------------------------------------------------------

create or replace function creditkit.refresh_due_at(p_account_id uuid)
returns void
language sql
volatile
set search_path = ''
as $$
  update creditkit.accounts a
     set due_at = least(
           (select min(g.expires_at) from creditkit.grants g where g.account_id = p_account_id and g.remaining > 0),
           (select s.renews_at from creditkit.subscriptions s where s.account_id = p_account_id),
           (select min(h.expires_at) from creditkit.holds h where h.account_id = p_account_id and h.status = 'open'))
   where a.id = p_account_id;
$$;
comment on function creditkit.refresh_due_at(uuid) is
  'Sets accounts.due_at to the earliest time anything is due on the account: bucket expiry, renewal or hold expiry.';
revoke all on function creditkit.refresh_due_at(uuid) from public, anon, authenticated, service_role;

-- Frees the credit of the account's open holds that expired by p_now. The caller holds the lock.
create or replace function creditkit.expire_holds(p_account_id uuid, p_now timestamptz)
returns void
language sql
volatile
set search_path = ''
as $$
  with expired as (
    update creditkit.holds h
       set status = 'expired', resolved_at = p_now
     where h.account_id = p_account_id and h.status = 'open' and h.expires_at <= p_now
    returning h.amount
  )
  update creditkit.accounts a
     set held = a.held - (select coalesce(sum(e.amount), 0) from expired e)
   where a.id = p_account_id;
$$;
comment on function creditkit.expire_holds(uuid, timestamptz) is 'Marks open holds past their expiry as expired and frees their credit.';
revoke all on function creditkit.expire_holds(uuid, timestamptz) from public, anon, authenticated, service_role;

create or replace function creditkit.book_due(p_account_id uuid, p_now timestamptz)
returns bigint
language plpgsql
volatile
set search_path = ''
as $$
begin
  perform creditkit.renew_period(p_account_id, p_now);
  perform creditkit.expire_holds(p_account_id, p_now);
  return creditkit.book_expired(p_account_id, p_now);  -- also refreshes due_at
end;
$$;
comment on function creditkit.book_due(uuid, timestamptz) is
  'The slow path of a touch: books renewals, expired holds and expired credit due by p_now on a locked account.';
revoke all on function creditkit.book_due(uuid, timestamptz) from public, anon, authenticated, service_role;

-- Locks the hold's account and returns the hold as it is under that lock. CK011 if unknown.
create or replace function creditkit.lock_hold(p_hold_id bigint, p_now timestamptz)
returns creditkit.holds
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_account_id uuid;
  v_hold creditkit.holds;
begin
  perform creditkit.check_request(null, null, null, p_now);
  select h.account_id into v_account_id from creditkit.holds h where h.id = p_hold_id;
  if not found then
    raise exception using errcode = 'CK011', message = format('unknown hold: %s', coalesce(p_hold_id::text, 'NULL')),
      detail = jsonb_build_object('hold_id', p_hold_id)::text;
  end if;
  perform creditkit.lock_account(v_account_id, p_now);  -- books expiry of this hold if it is due
  select h.* into v_hold from creditkit.holds h where h.id = p_hold_id;
  return v_hold;
end;
$$;
comment on function creditkit.lock_hold(bigint, timestamptz) is 'Locks a hold''s account (booking what is due) and returns the hold.';
revoke all on function creditkit.lock_hold(bigint, timestamptz) from public, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Server API
-- ---------------------------------------------------------------------------------------------

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
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_amount(p_amount);
  v_metadata := creditkit.check_request(p_idempotency_key, p_event, p_metadata, p_now);
  if p_ttl is null or p_ttl <= interval '0' or p_ttl > interval '7 days' then
    raise exception using errcode = 'CK006', message = 'invalid argument: ttl must be more than 0 and at most 7 days';
  end if;
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
  'Server only. Reserves credit before a long call: allowed=true with a hold id and the spendable balance left, or allowed=false (blocked, nothing reserved). The hold expires after p_ttl (default 15 minutes, at most 7 days) unless settled or released. Idempotent by key.';
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
  v_other_held bigint;
  v_entry creditkit.ledger;
begin
  perform creditkit.assert_server_caller();
  if p_actual is null or p_actual < 0 or p_actual > 9007199254740991 then
    raise exception using errcode = 'CK001',
      message = format('invalid amount: %s (the actual amount is an integer from 0 to 9007199254740991)', coalesce(p_actual::text, 'NULL'));
  end if;
  perform creditkit.check_money(p_cost_micros);
  v_metadata := creditkit.check_request(null, null, p_metadata, p_now);
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

  select a.balance, a.held - v_hold.amount into v_balance, v_other_held
    from creditkit.accounts a where a.id = v_hold.account_id;
  -- Up to the reserve is always charged (as far as the balance allows); above it, the whole
  -- actual amount only if the credit not held by other holds covers it, else just the reserve.
  charged := least(p_actual, v_hold.amount);
  if p_actual > v_hold.amount and v_balance - v_other_held >= p_actual then
    charged := p_actual;
  end if;
  charged := least(charged, v_balance);
  shortfall := p_actual - charged;

  update creditkit.accounts a set held = a.held - v_hold.amount where a.id = v_hold.account_id;
  if charged > 0 then
    perform creditkit.draw_down(v_hold.account_id, charged, p_now);
    v_entry := creditkit.append_entry(
      v_hold.account_id, 'consume', -charged, null, v_hold.event, null,
      v_hold.metadata || v_metadata || jsonb_build_object('hold_id', v_hold.id, 'reserved', v_hold.amount, 'actual', p_actual),
      p_now, null, p_cost_micros, null);
    transaction_id := v_entry.id;
  end if;
  update creditkit.holds h
     set status = 'settled', resolved_at = p_now, settled_amount = p_actual, charged = creditkit_settle.charged,
         transaction_id = v_entry.id
   where h.id = v_hold.id;
  balance := creditkit.spendable(v_hold.account_id);
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
as $$
declare
  v_hold creditkit.holds;
begin
  perform creditkit.assert_server_caller();
  v_hold := creditkit.lock_hold(p_hold_id, p_now);
  if v_hold.status = 'open' then
    update creditkit.holds h set status = 'released', resolved_at = p_now where h.id = v_hold.id;
    update creditkit.accounts a set held = a.held - v_hold.amount where a.id = v_hold.account_id;
    status := 'released';
  elsif v_hold.status in ('released', 'expired') then
    status := v_hold.status;  -- already free: releasing again changes nothing
  else
    raise exception using errcode = 'CK012', message = format('hold %s is already %s', v_hold.id, v_hold.status),
      detail = jsonb_build_object('hold_id', v_hold.id, 'status', v_hold.status)::text;
  end if;
  balance := creditkit.spendable(v_hold.account_id);
end;
$$;
comment on function public.creditkit_release(bigint, timestamptz) is
  'Server only. Frees a hold''s credit without charging (e.g. the model call failed). Releasing a released or expired hold changes nothing; a settled one raises CK012.';
revoke all on function public.creditkit_release(bigint, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_release(bigint, timestamptz) to service_role;

-- The server balance and the caller's balance now report what is spendable (minus open holds).
-- live_buckets keeps reporting the buckets; `held` says how much of them is reserved.
create or replace function creditkit.held_at(p_account_id uuid, p_now timestamptz)
returns bigint
language sql
stable
security invoker
set search_path = ''
as $$
  select coalesce(sum(h.amount), 0)::bigint from creditkit.holds h
   where h.account_id = p_account_id and h.status = 'open' and h.expires_at > p_now;
$$;
comment on function creditkit.held_at(uuid, timestamptz) is 'Credits reserved by holds still open and unexpired at p_now.';
revoke all on function creditkit.held_at(uuid, timestamptz) from public, anon, authenticated, service_role;
grant execute on function creditkit.held_at(uuid, timestamptz) to authenticated, service_role;

-- Balances report what can be spent: the live buckets minus open, unexpired holds (never below 0).
-- creditkit_balance and creditkit_my_balance read through this, so they need no change.
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
   where g.account_id = p_account_id and g.remaining > 0 and (g.expires_at is null or g.expires_at > p_now);
$$;
comment on function creditkit.live_buckets(uuid, timestamptz) is
  'Spendable balance at p_now (live buckets minus open holds), the soonest bucket expiry and the live buckets in spend order.';
revoke all on function creditkit.live_buckets(uuid, timestamptz) from public, anon, authenticated, service_role;
grant execute on function creditkit.live_buckets(uuid, timestamptz) to authenticated, service_role;
