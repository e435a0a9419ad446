-- creditkit pricing: a price table (event -> an amount of a unit per event unit, optionally by
-- dimensions of the event, in versions with an effective-from time) and creditkit_meter, which
-- prices an event and spends for it in one call, recording the vendor cost beside the charge.
-- A price in a unit other than credits may carry an overage rule: when that unit's balance cannot
-- cover the event, the credits balance pays for all of it at the overage price instead.
--
-- Lookup for (event, dimensions, time t): among the prices of the event that are in force at t
-- (the newest version of each dimension set with effective_from <= t) and whose dimensions are all
-- present in the call's dimensions, the most specific one (most dimension keys) wins; the price
-- with dimensions '{}' is the event's catch-all default. Past usage is never re-priced: a new
-- version only applies from its effective_from on, and each ledger row keeps the unit price it paid.

create table creditkit.prices (
  id bigint generated always as identity primary key,
  event text not null
    constraint prices_event_length check (length(event) between 1 and 200),
  -- e.g. {"quality": "hd"}; '{}' is the catch-all default for the event.
  dimensions jsonb not null default '{}'::jsonb
    constraint prices_dimensions_object check (jsonb_typeof(dimensions) = 'object'),
  credits_per_unit bigint not null
    constraint prices_credits_range check (credits_per_unit between 1 and 9007199254740991),
  effective_from timestamptz not null,
  created_at timestamptz not null default now(),
  -- The unit the event spends: credits_per_unit is an amount of it (a metered unit).
  unit text not null default 'credits' references creditkit.units (id),
  -- Overage: credits per event unit charged to the credits balance when the unit's own balance
  -- cannot cover the event; NULL: no overage, the event is refused.
  overage_credits_per_unit bigint
    constraint prices_overage_range check (overage_credits_per_unit between 1 and 9007199254740991),
  constraint prices_version unique (event, dimensions, effective_from),
  constraint prices_overage_unit check (overage_credits_per_unit is null or unit <> 'credits')
);
comment on table creditkit.prices is
  'The amount of a unit (credits by default) per unit of an event, optionally per dimension set, in versions by effective_from, with an optional overage price in credits. Append-only by convention: add a version, do not edit one.';
create index prices_lookup on creditkit.prices (event, effective_from desc);

alter table creditkit.prices enable row level security;
revoke all on table creditkit.prices from public, anon, authenticated, service_role;
grant select on table creditkit.prices to authenticated, service_role;
create policy "signed-in users can read the price list"
  on creditkit.prices for select to authenticated using (true);

-- The price in force for an event with these dimensions at p_at, or NULL.
create or replace function creditkit.price_for(p_event text, p_dimensions jsonb, p_at timestamptz)
returns creditkit.prices
language sql
stable
security invoker
set search_path = ''
as $$
  select p.*
    from creditkit.prices p
   where p.event = p_event
     and p.effective_from <= p_at
     and p_dimensions @> p.dimensions
     -- the newest version of this dimension set in force at p_at
     and not exists (select 1 from creditkit.prices n
                      where n.event = p.event and n.dimensions = p.dimensions
                        and n.effective_from > p.effective_from and n.effective_from <= p_at)
   order by (select count(*) from jsonb_object_keys(p.dimensions)) desc, p.dimensions::text
   limit 1;
$$;
comment on function creditkit.price_for(text, jsonb, timestamptz) is
  'The price in force at p_at for an event: the most specific matching dimension set, its newest version.';
revoke all on function creditkit.price_for(text, jsonb, timestamptz) from public, anon, authenticated, service_role;
grant execute on function creditkit.price_for(text, jsonb, timestamptz) to authenticated, service_role;

-- Prices p_quantity units of an event: CK010 when no price is in force, CK001 past 2^53-1. The
-- amount is in the price's unit; overage_amount (NULL without an overage rule) in credits.
create or replace function creditkit.price_or_raise(
  p_event text, p_dimensions jsonb, p_quantity bigint, p_now timestamptz,
  out price_id bigint, out unit_credits bigint, out amount bigint, out unit text, out overage_amount bigint)
returns record
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
  v_price creditkit.prices;
begin
  if p_dimensions = '{}'::jsonb then
    -- without dimensions only the catch-all set '{}' can match: one probe of prices_lookup
    select p.* into v_price
      from creditkit.prices p
     where p.event = p_event and p.dimensions = '{}'::jsonb and p.effective_from <= p_now
     order by p.effective_from desc
     limit 1;
  else
    v_price := creditkit.price_for(p_event, p_dimensions, p_now);
  end if;
  if v_price.id is null then
    raise exception using errcode = 'CK010', message = format('unknown event: no price for %L', p_event),
      detail = jsonb_build_object('event', p_event, 'dimensions', p_dimensions)::text;
  end if;
  if p_quantity::numeric * greatest(v_price.credits_per_unit, coalesce(v_price.overage_credits_per_unit, 0)) > 9007199254740991 then
    raise exception using errcode = 'CK001', message = 'invalid amount: quantity times price is above 9007199254740991';
  end if;
  price_id := v_price.id;
  unit_credits := v_price.credits_per_unit;
  amount := p_quantity * v_price.credits_per_unit;
  unit := v_price.unit;
  overage_amount := p_quantity * v_price.overage_credits_per_unit;
end;
$$;
comment on function creditkit.price_or_raise(text, jsonb, bigint, timestamptz) is
  'The price in force and the total for p_quantity units (in the price''s unit; the overage in credits, if the price has a rule); CK010 if the event has no price, CK001 on overflow.';
revoke all on function creditkit.price_or_raise(text, jsonb, bigint, timestamptz) from public, anon, authenticated, service_role;
grant execute on function creditkit.price_or_raise(text, jsonb, bigint, timestamptz) to authenticated, service_role;

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
-- (or gone) since; so a key used before is answered before anything is priced, from the unit that
-- paid. A price with an overage rule whose unit cannot cover the event is paid from credits, all of
-- it at the overage price (one ledger row, in one balance); when credits cannot pay either, the
-- refusal is the price's unit's.
create or replace function creditkit.meter(
  p_account_id uuid, p_event text, p_quantity bigint, p_dimensions jsonb, p_idempotency_key text,
  p_cost_micros bigint, p_metadata jsonb, p_now timestamptz,
  out allowed boolean, out balance bigint, out transaction_id bigint, out amount bigint, out unit text)
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
  v_overage record;
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
    -- (the unit of the row the key wrote: a key names one row of the account, in any unit)
    select l.unit into unit
      from creditkit.ledger l
     where l.account_id = p_account_id
       and l.id = (select k.ledger_id from creditkit.ledger_keys k
                    where k.account_id = p_account_id and k.idempotency_key = p_idempotency_key);
    if found then
      perform creditkit.lock_account(p_account_id, unit, p_now);
      v_prior := creditkit.find_replay(p_account_id, unit, p_idempotency_key, 'consume', null, p_event, v_request,
                                       p_cost_micros, null, array['unit_credits', 'price_id', 'overage']);
      allowed := true;
      balance := v_prior.balance_after;
      transaction_id := v_prior.id;
      amount := -v_prior.amount;
      return;
    end if;
  end if;

  v_price := creditkit.price_or_raise(p_event, p_dimensions, p_quantity, p_now);
  v_debit := creditkit.debit(p_account_id, v_price.unit, v_price.amount, p_event, p_idempotency_key, v_request,
                            jsonb_build_object('unit_credits', v_price.unit_credits, 'price_id', v_price.price_id),
                            p_cost_micros, p_now);
  unit := v_price.unit;
  if not v_debit.allowed and v_price.overage_amount is not null then
    -- (the unit's row, when locked, stays locked: credits comes last in the lock order)
    v_overage := creditkit.debit(p_account_id, 'credits', v_price.overage_amount, p_event, p_idempotency_key, v_request,
                                 jsonb_build_object('unit_credits', v_price.overage_amount / p_quantity,
                                                    'price_id', v_price.price_id, 'overage', v_price.unit),
                                 p_cost_micros, p_now);
    if v_overage.allowed then
      v_debit := v_overage;
      unit := 'credits';
    end if;
  end if;
  allowed := v_debit.allowed;
  balance := v_debit.balance;
  transaction_id := v_debit.transaction_id;
  amount := v_debit.amount;
end;
$$;
comment on function creditkit.meter(uuid, text, bigint, jsonb, text, bigint, jsonb, timestamptz) is
  'Prices an event and spends for it (in the price''s unit, or in credits by its overage rule); the body of creditkit_meter and creditkit.charge_on_insert.';
revoke all on function creditkit.meter(uuid, text, bigint, jsonb, text, bigint, jsonb, timestamptz) from public, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Server API
-- ---------------------------------------------------------------------------------------------

-- Security definer: writes the price list, which no client role may write; service_role only.
create or replace function public.creditkit_set_price(
  p_event text,
  p_credits_per_unit bigint,
  p_dimensions jsonb default '{}',
  p_effective_from timestamptz default now(),
  p_unit text default 'credits',
  p_overage_credits_per_unit bigint default null)
returns bigint
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_id bigint;
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_amount(p_credits_per_unit);
  perform creditkit.check_event(p_event, p_dimensions, p_effective_from);
  perform creditkit.check_unit(p_unit);
  if p_overage_credits_per_unit is not null then
    perform creditkit.check_amount(p_overage_credits_per_unit);
    if p_unit = 'credits' then
      raise exception using errcode = 'CK006',
        message = 'invalid argument: an overage price is for a unit other than credits (it charges credits instead)';
    end if;
  end if;
  insert into creditkit.prices (event, dimensions, credits_per_unit, effective_from, unit, overage_credits_per_unit)
  values (p_event, p_dimensions, p_credits_per_unit, p_effective_from, p_unit, p_overage_credits_per_unit)
  on conflict on constraint prices_version do update
     set credits_per_unit = excluded.credits_per_unit, unit = excluded.unit,
         overage_credits_per_unit = excluded.overage_credits_per_unit
  returning id into v_id;
  return v_id;
end;
$$;
comment on function public.creditkit_set_price(text, bigint, jsonb, timestamptz, text, bigint) is
  'Server only. Adds a price version: p_credits_per_unit of p_unit (default credits) per unit of p_event (with these dimensions; ''{}'' is the default) from p_effective_from on, optionally with an overage price in credits for when the unit''s balance cannot cover the event. Returns the price id. The same (event, dimensions, effective_from) again replaces that version.';
revoke all on function public.creditkit_set_price(text, bigint, jsonb, timestamptz, text, bigint) from public, anon, authenticated;
grant execute on function public.creditkit_set_price(text, bigint, jsonb, timestamptz, text, bigint) to service_role;

-- Security definer: writes the ledger; service_role only.
create or replace function public.creditkit_meter(
  p_account_id uuid,
  p_event text,
  p_quantity bigint default 1,
  p_dimensions jsonb default '{}',
  p_idempotency_key text default null,
  p_cost_micros bigint default null,
  p_metadata jsonb default null,
  p_now timestamptz default now(),
  out allowed boolean,
  out balance bigint,
  out transaction_id bigint,
  out amount bigint,
  out unit text)
returns record
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_meter record;
begin
  -- (assert_server_caller's test, inlined: this is a hot path)
  if current_setting('role', true) in ('anon', 'authenticated') or auth.role() in ('anon', 'authenticated') then
    perform creditkit.assert_server_caller();
  end if;
  v_meter := creditkit.meter(p_account_id, p_event, p_quantity, p_dimensions, p_idempotency_key, p_cost_micros,
                             p_metadata, p_now);
  allowed := v_meter.allowed;
  balance := v_meter.balance;
  transaction_id := v_meter.transaction_id;
  amount := v_meter.amount;
  unit := v_meter.unit;
end;
$$;
comment on function public.creditkit_meter(uuid, text, bigint, jsonb, text, bigint, jsonb, timestamptz) is
  'Server only. Prices an event (quantity x the price in force for its dimensions) and spends for it like creditkit_consume: allowed, balance, transaction id, the amount charged and the unit that paid (the price''s, or credits when its overage rule applied). CK010 for an event with no price. Optionally records what it cost you (p_cost_micros). Idempotent by key: a retry returns the first result even if the price changed since.';
revoke all on function public.creditkit_meter(uuid, text, bigint, jsonb, text, bigint, jsonb, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_meter(uuid, text, bigint, jsonb, text, bigint, jsonb, timestamptz) to service_role;

-- Security invoker: a read of the price list.
create or replace function public.creditkit_quote(
  p_event text,
  p_quantity bigint default 1,
  p_dimensions jsonb default '{}',
  p_now timestamptz default now(),
  out price_id bigint,
  out unit_credits bigint,
  out amount bigint,
  out unit text,
  out overage_amount bigint)
returns record
language plpgsql
stable
security invoker
set search_path = ''
set enable_seqscan = off
as $$
begin
  perform creditkit.check_amount(p_quantity);
  perform creditkit.check_event(p_event, p_dimensions, p_now);
  select q.price_id, q.unit_credits, q.amount, q.unit, q.overage_amount
    into price_id, unit_credits, amount, unit, overage_amount
    from creditkit.price_or_raise(p_event, p_dimensions, p_quantity, p_now) q;
end;
$$;
comment on function public.creditkit_quote(text, bigint, jsonb, timestamptz) is
  'Server and signed-in users. What an event would cost now (price id, amount per event unit, total, in the unit it spends; and the overage in credits if its price has a rule), without spending. CK010 for an event with no price.';
revoke all on function public.creditkit_quote(text, bigint, jsonb, timestamptz) from public, anon, authenticated, service_role;
grant execute on function public.creditkit_quote(text, bigint, jsonb, timestamptz) to authenticated, service_role;
