-- creditkit 0009: what the TypeScript SDK needed from the SQL API.
--   * creditkit_plans(): the plan catalogue as a function, so a pricing page or the SDK can list
--     the plans on offer through the Data API without exposing the private schema. Invoker
--     rights: it reads creditkit.plans through the "signed-in users can read the plan catalogue"
--     policy.
--   * creditkit_reserve: a retry with the key of a hold that is no longer open raises CK012
--     instead of answering "reserved" again (the route-handler wrapper would otherwise run the
--     work with nothing held).

create function public.creditkit_plans()
returns table (
  id text,
  name text,
  allowance bigint,
  period text,
  renewal text,
  rollover_cap bigint,
  features jsonb,
  price_amount bigint,
  currency text,
  stripe_price_id text,
  is_default boolean)
language sql
stable
security invoker
set search_path = ''
as $$
  select p.id, p.name, p.allowance, p.period, p.renewal, p.rollover_cap, p.features,
         p.price_amount, p.currency, p.stripe_price_id, p.is_default
    from creditkit.plans p
   where p.active
   order by p.price_amount, p.id;
$$;
comment on function public.creditkit_plans() is
  'Server and signed-in users. The active plans, cheapest first: allowance, period, renewal rule, features, price (in the smallest currency unit) and Stripe price id.';
revoke all on function public.creditkit_plans() from public, anon, authenticated, service_role;
grant execute on function public.creditkit_plans() to authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Reserve retries after the hold closed
-- ---------------------------------------------------------------------------------------------
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
