-- creditkit plans: a plan catalogue (allowance per period, reset or capped rollover, feature
-- flags, limits per metered unit, Stripe price ids), one subscription per account, and lazy period
-- renewals. A period's next boundary is folded into its (account, unit) row's due_at, so the first
-- touch after it books the period change exactly once, under that row's lock; no cron. Boundaries
-- are computed from the stored anchor in UTC: an anchor on Jan 31 renews on Feb 28/29, Mar 31, ...

create table creditkit.plans (
  id text primary key
    constraint plans_id_format check (id ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
  name text not null
    constraint plans_name_length check (length(name) between 1 and 200),
  -- Credits granted at the start of every period (0: a plan of features only).
  allowance bigint not null default 0
    constraint plans_allowance_range check (allowance between 0 and 9007199254740991),
  period text not null default 'month'
    constraint plans_period check (period in ('day', 'week', 'month', 'year')),
  -- reset: leftover allowance expires at the boundary. rollover: up to rollover_cap of it is
  -- carried into the next period's allowance bucket (NULL cap: all of it).
  renewal text not null default 'reset'
    constraint plans_renewal check (renewal in ('reset', 'rollover')),
  rollover_cap bigint
    constraint plans_rollover_cap_range check (rollover_cap between 0 and 9007199254740991),
  -- Boolean feature flags, e.g. {"hd_upscale": true}. A flag that is absent is off.
  features jsonb not null default '{}'::jsonb
    constraint plans_features_object check (jsonb_typeof(features) = 'object'),
  -- What the plan costs per period, in the currency's minor unit (cents), for MRR.
  price_amount bigint not null default 0
    constraint plans_price_amount_range check (price_amount between 0 and 9007199254740991),
  currency text not null default 'usd'
    constraint plans_currency_format check (currency ~ '^[a-z]{3}$'),
  stripe_price_id text unique,
  is_default boolean not null default false,
  active boolean not null default true,
  created_at timestamptz not null default now()
);
comment on table creditkit.plans is 'The plan catalogue. Exactly one plan is the default (the free plan accounts fall back to).';
create unique index plans_one_default on creditkit.plans (is_default) where is_default;

-- The default free plan: no allowance until you give it one with creditkit_upsert_plan.
insert into creditkit.plans (id, name, allowance, period, renewal, is_default)
values ('free', 'Free', 0, 'month', 'reset', true);

-- One row per account, with no foreign key to accounts (whose key is (id, unit)): every path that
-- creates a subscription (creditkit_set_plan, the Stripe appliers through stripe_lock_account)
-- opens the account's credits row first, in the same transaction.
create table creditkit.subscriptions (
  account_id uuid primary key,
  plan_id text not null references creditkit.plans (id),
  status text not null default 'active'
    constraint subscriptions_status check (status in ('active', 'trialing', 'past_due', 'canceled')),
  -- Period k starts at anchor + k periods (UTC, day clamped to the month's end).
  anchor timestamptz not null,
  -- The period whose allowance was granted last.
  period_index integer not null default 0
    constraint subscriptions_period_index_range check (period_index >= 0),
  -- When the next period starts and is due to be booked; NULL when nothing renews lazily.
  renews_at timestamptz,
  stripe_customer_id text,
  stripe_subscription_id text,
  updated_at timestamptz not null default now(),
  -- A subscription Stripe manages: the newest Stripe event applied to it, by (created, rank, id).
  stripe_event_at timestamptz,
  stripe_event_rank smallint,
  stripe_event_id text
);
comment on table creditkit.subscriptions is 'One subscription per account: plan, status and the period anchor.';
comment on column creditkit.subscriptions.stripe_event_at is
  '`created` of the newest Stripe event applied to this subscription; older events change nothing.';
comment on column creditkit.subscriptions.stripe_event_rank is
  'Precedence of that event''s type among events of the same second (creditkit.stripe_event_rank); 0: only the checkout is known.';
comment on column creditkit.subscriptions.stripe_event_id is
  'The id of that event: the last tie-break, so that any delivery order ends in the same state.';
create index subscriptions_plan on creditkit.subscriptions (plan_id);
-- The webhook finds a subscription by its Stripe id. Not unique: a per-account table's unique keys
-- include the account (so that it can be distributed by it); one Stripe subscription is only ever
-- recorded for the account its events name.
create index subscriptions_stripe_subscription on creditkit.subscriptions (stripe_subscription_id)
  where stripe_subscription_id is not null;

alter table creditkit.plans enable row level security;
alter table creditkit.subscriptions enable row level security;
revoke all on table creditkit.plans, creditkit.subscriptions from public, anon, authenticated, service_role;
grant select on table creditkit.plans, creditkit.subscriptions to authenticated, service_role;
create policy "signed-in users can read the plan catalogue"
  on creditkit.plans for select to authenticated using (true);
create policy "members can read their accounts' subscription"
  on creditkit.subscriptions for select to authenticated
  using (creditkit.can_access_account(account_id));

-- A plan's limit for a metered unit other than credits (the credits allowance is the plan's own
-- columns): an allowance per period of the limit's own length, reset or rolled over with a cap,
-- counted from the subscription's anchor.
create table creditkit.plan_limits (
  plan_id text not null references creditkit.plans (id),
  unit text not null references creditkit.units (id)
    constraint plan_limits_unit_not_credits check (unit <> 'credits'),
  allowance bigint not null
    constraint plan_limits_allowance_range check (allowance between 0 and 9007199254740991),
  period text not null default 'month'
    constraint plan_limits_period check (period in ('day', 'week', 'month', 'year')),
  renewal text not null default 'reset'
    constraint plan_limits_renewal check (renewal in ('reset', 'rollover')),
  rollover_cap bigint
    constraint plan_limits_rollover_cap_range check (rollover_cap between 0 and 9007199254740991),
  created_at timestamptz not null default now(),
  constraint plan_limits_pkey primary key (plan_id, unit)
);
comment on table creditkit.plan_limits is
  'Per plan and metered unit (not credits): the allowance granted each period of the limit, reset or rolled over with a cap.';

-- The period state of a unit's allowance on an account, as creditkit.subscriptions holds it for
-- credits: its renews_at joins that (account, unit) row's due_at.
create table creditkit.allowances (
  account_id uuid not null,
  unit text not null
    constraint allowances_unit_not_credits check (unit <> 'credits'),
  -- Period k starts at anchor + k periods of the limit: the subscription's anchor, or the time the
  -- allowance started for an account without a live subscription.
  anchor timestamptz not null,
  period_index integer not null default 0
    constraint allowances_period_index_range check (period_index >= 0),
  renews_at timestamptz,
  constraint allowances_pkey primary key (account_id, unit),
  constraint allowances_account_unit_fkey foreign key (account_id, unit) references creditkit.accounts (id, unit)
);
comment on table creditkit.allowances is
  'Per account and metered unit other than credits: the period of the plan limit granted last and when the next one is due.';

alter table creditkit.plan_limits enable row level security;
alter table creditkit.allowances enable row level security;
revoke all on table creditkit.plan_limits, creditkit.allowances from public, anon, authenticated, service_role;
grant select on table creditkit.plan_limits, creditkit.allowances to authenticated, service_role;
create policy "signed-in users can read the plan limits"
  on creditkit.plan_limits for select to authenticated using (true);
create policy "members can read their accounts' allowances"
  on creditkit.allowances for select to authenticated
  using (creditkit.can_access_account(account_id));

-- ---------------------------------------------------------------------------------------------
-- Period arithmetic (pure)
-- ---------------------------------------------------------------------------------------------

create or replace function creditkit.period_start(p_anchor timestamptz, p_period text, p_index integer)
returns timestamptz
language sql
immutable
set search_path = ''
as $$
  -- Always from the anchor: anchor + k months, so Jan 31 gives Feb 28/29 and then Mar 31 again.
  select (case p_period
            when 'day' then (p_anchor at time zone 'UTC') + make_interval(days => p_index)
            when 'week' then (p_anchor at time zone 'UTC') + make_interval(days => 7 * p_index)
            when 'month' then (p_anchor at time zone 'UTC') + make_interval(months => p_index)
            when 'year' then (p_anchor at time zone 'UTC') + make_interval(years => p_index)
          end) at time zone 'UTC';
$$;
comment on function creditkit.period_start(timestamptz, text, integer) is
  'Start of period k of a subscription anchored at p_anchor: anchor + k periods in UTC, month ends clamped.';
revoke all on function creditkit.period_start(timestamptz, text, integer) from public, anon, authenticated, service_role;
grant execute on function creditkit.period_start(timestamptz, text, integer) to authenticated, service_role;

create or replace function creditkit.period_index(p_anchor timestamptz, p_period text, p_at timestamptz)
returns integer
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_anchor timestamp := p_anchor at time zone 'UTC';
  v_at timestamp := p_at at time zone 'UTC';
  v_index integer;
begin
  if p_at < p_anchor then
    return 0;
  end if;
  -- An estimate that is exact or one too high; period_start decides.
  v_index := case p_period
    when 'day' then floor(extract(epoch from v_at - v_anchor) / 86400)
    when 'week' then floor(extract(epoch from v_at - v_anchor) / 604800)
    when 'month' then (extract(year from v_at) - extract(year from v_anchor)) * 12
                      + extract(month from v_at) - extract(month from v_anchor)
    when 'year' then extract(year from v_at) - extract(year from v_anchor)
  end;
  if creditkit.period_start(p_anchor, p_period, v_index) > p_at then
    v_index := v_index - 1;
  end if;
  return greatest(v_index, 0);
end;
$$;
comment on function creditkit.period_index(timestamptz, text, timestamptz) is
  'The period (0, 1, ...) that contains p_at for a subscription anchored at p_anchor.';
revoke all on function creditkit.period_index(timestamptz, text, timestamptz) from public, anon, authenticated, service_role;
grant execute on function creditkit.period_index(timestamptz, text, timestamptz) to authenticated, service_role;

-- The plan an account is on for features and analytics: its subscription's plan while the
-- subscription is live (active, trialing, past_due), otherwise the default plan. plpgsql, not SQL:
-- Citus cannot plan a SQL function's parameters in a query that reads a distributed table beside
-- a reference table (docs/citus.md, F3); plpgsql hands it the value.
create or replace function creditkit.effective_plan(p_account_id uuid)
returns creditkit.plans
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
  v_plan creditkit.plans;
begin
  select p.* into v_plan
    from creditkit.plans p
   where p.id = coalesce(
           (select s.plan_id from creditkit.subscriptions s
             where s.account_id = p_account_id and s.status in ('active', 'trialing', 'past_due')),
           (select d.id from creditkit.plans d where d.is_default));
  return v_plan;
end;
$$;
comment on function creditkit.effective_plan(uuid) is
  'The plan in force for an account: its live subscription''s plan, else the default plan.';
revoke all on function creditkit.effective_plan(uuid) from public, anon, authenticated, service_role;
grant execute on function creditkit.effective_plan(uuid) to authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Renewals: booked by the slow path of the lock point (creditkit.book_due)
-- ---------------------------------------------------------------------------------------------

-- Grants a period's allowance bucket (allowance + carried credit), expiring at the period's end.
-- For a unit other than credits, p_plan carries that unit's limit (creditkit.unit_terms).
create or replace function creditkit.grant_period(
  p_account_id uuid, p_unit text, p_plan creditkit.plans, p_anchor timestamptz, p_index integer, p_carry bigint,
  p_reason text, p_now timestamptz)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_start timestamptz := creditkit.period_start(p_anchor, p_plan.period, p_index);
  v_end timestamptz := creditkit.period_start(p_anchor, p_plan.period, p_index + 1);
  -- Capped so the balance stays within 2^53-1: a renewal must never make every touch fail.
  v_amount bigint := least(p_plan.allowance + p_carry,
                           9007199254740991 - (select a.balance from creditkit.accounts a
                                                where a.id = p_account_id and a.unit = p_unit));
  v_metadata jsonb;
  v_grant_id bigint;
begin
  if v_amount <= 0 then
    return;
  end if;
  v_metadata := jsonb_build_object('plan_id', p_plan.id, 'period_index', p_index, 'period_start', v_start,
                                   'period_end', v_end, 'allowance', p_plan.allowance, 'rollover', p_carry,
                                   'reason', p_reason);
  v_grant_id := creditkit.add_grant(p_account_id, p_unit, 'plan', v_amount, null, v_end, v_metadata, p_now);
  perform creditkit.append_entry(p_account_id, p_unit, 'grant', v_amount, v_grant_id, null, null, v_metadata, p_now, v_end);
end;
$$;
comment on function creditkit.grant_period(uuid, text, creditkit.plans, timestamptz, integer, bigint, text, timestamptz) is
  'Grants one period''s plan allowance (plus any rollover) as a plan bucket that expires at the period end.';
revoke all on function creditkit.grant_period(uuid, text, creditkit.plans, timestamptz, integer, bigint, text, timestamptz) from public, anon, authenticated, service_role;

-- The terms a unit other than credits renews on for an account: the plan in force, with the
-- allowance, period, renewal and cap of its limit for the unit. NULL when that plan has none.
create or replace function creditkit.unit_terms(p_account_id uuid, p_unit text)
returns creditkit.plans
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
  v_plan creditkit.plans := creditkit.effective_plan(p_account_id);
  v_limit creditkit.plan_limits;
begin
  select l.* into v_limit from creditkit.plan_limits l where l.plan_id = v_plan.id and l.unit = p_unit;
  if not found then
    return null;
  end if;
  v_plan.allowance := v_limit.allowance;
  v_plan.period := v_limit.period;
  v_plan.renewal := v_limit.renewal;
  v_plan.rollover_cap := v_limit.rollover_cap;
  return v_plan;
end;
$$;
comment on function creditkit.unit_terms(uuid, text) is
  'The plan in force for an account with its limit for a unit (allowance, period, renewal, cap) in place of the credits terms; NULL without a limit.';
revoke all on function creditkit.unit_terms(uuid, text) from public, anon, authenticated, service_role;
grant execute on function creditkit.unit_terms(uuid, text) to authenticated, service_role;

-- The anchor a unit's plan-limit periods count from: the live subscription's to that plan, else
-- p_now (an account on the default plan without one counts from when its row opens). plpgsql, not
-- SQL: Citus cannot plan a SQL function's parameters in a read of a distributed table (docs/citus.md,
-- F3).
create or replace function creditkit.allowance_anchor(p_account_id uuid, p_plan_id text, p_now timestamptz)
returns timestamptz
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
  return coalesce((select s.anchor from creditkit.subscriptions s
                    where s.account_id = p_account_id and s.plan_id = p_plan_id
                      and s.status in ('active', 'trialing', 'past_due')), p_now);
end;
$$;
comment on function creditkit.allowance_anchor(uuid, text, timestamptz) is
  'Where a unit''s plan-limit periods count from: the live subscription''s anchor on that plan, else p_now.';
revoke all on function creditkit.allowance_anchor(uuid, text, timestamptz) from public, anon, authenticated, service_role;
grant execute on function creditkit.allowance_anchor(uuid, text, timestamptz) to authenticated, service_role;

-- What a known account's row of a unit would hold if it were opened at p_now (a read: balances
-- of a unit the account has not touched yet read as its plan allowance, not 0). NULL when the
-- account is unknown or its plan has no limit for the unit.
create or replace function creditkit.unopened_allowance(
  p_account_id uuid, p_unit text, p_now timestamptz, out balance bigint, out next_expiry timestamptz)
returns record
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
  v_terms creditkit.plans;
  v_anchor timestamptz;
begin
  if not exists (select from creditkit.accounts a where a.id = p_account_id and a.unit = 'credits') then
    return;
  end if;
  v_terms := creditkit.unit_terms(p_account_id, p_unit);
  if v_terms.id is null then
    return;
  end if;
  v_anchor := creditkit.allowance_anchor(p_account_id, v_terms.id, p_now);
  balance := v_terms.allowance;
  next_expiry := creditkit.period_start(v_anchor, v_terms.period, creditkit.period_index(v_anchor, v_terms.period, p_now) + 1);
end;
$$;
comment on function creditkit.unopened_allowance(uuid, text, timestamptz) is
  'The balance and expiry a unit''s row would open with now under the account''s plan limit; NULL without one.';
revoke all on function creditkit.unopened_allowance(uuid, text, timestamptz) from public, anon, authenticated, service_role;
grant execute on function creditkit.unopened_allowance(uuid, text, timestamptz) to authenticated, service_role;

-- Books a period change of an (account, unit) allowance if one is due at p_now: for credits the
-- subscription's, for another unit its plan limit's (creditkit.allowances). The caller holds that
-- row's lock, which is what makes it exactly once per (account, unit, period) under any concurrency.
create or replace function creditkit.renew_period(p_account_id uuid, p_unit text, p_now timestamptz)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_plan creditkit.plans;
  v_plan_id text;
  v_anchor timestamptz;
  v_last integer;
  v_renews_at timestamptz;
  v_index integer;
  v_left bigint;
  v_cap bigint;
  v_carry bigint := 0;
begin
  if p_unit = 'credits' then
    select s.plan_id, s.anchor, s.period_index, s.renews_at into v_plan_id, v_anchor, v_last, v_renews_at
      from creditkit.subscriptions s where s.account_id = p_account_id;
    if not found or v_renews_at is null or v_renews_at > p_now then
      return;
    end if;
    select p.* into v_plan from creditkit.plans p where p.id = v_plan_id;
  else
    select al.anchor, al.period_index, al.renews_at into v_anchor, v_last, v_renews_at
      from creditkit.allowances al where al.account_id = p_account_id and al.unit = p_unit;
    if not found then
      -- A row opened without a limit (by a grant), whose plan has one now: it starts here.
      v_plan := creditkit.unit_terms(p_account_id, p_unit);
      if v_plan.id is not null then
        perform creditkit.start_allowance(p_account_id, p_unit, v_plan, p_now);
      end if;
      return;
    elsif v_renews_at is null or v_renews_at > p_now then
      return;
    end if;
    v_plan := creditkit.unit_terms(p_account_id, p_unit);
    if v_plan.id is null then
      -- The plan in force has no limit for the unit any more: its allowance stops renewing (the
      -- ended period's bucket is booked by the caller's book_expired).
      delete from creditkit.allowances al where al.account_id = p_account_id and al.unit = p_unit;
      return;
    end if;
  end if;
  v_index := creditkit.period_index(v_anchor, v_plan.period, p_now);

  if v_plan.renewal = 'rollover' then
    -- Plan credit left from the period(s) that ended. Every period nobody touched carried its
    -- whole allowance forward, so after n such periods: min(min(left, cap) + n * allowance, cap).
    select coalesce(sum(g.remaining), 0) into v_left
      from creditkit.grants g
     where g.account_id = p_account_id and g.unit = p_unit and g.category = 'plan' and g.remaining > 0
       and g.metadata ? 'period_index'  -- allowance the kit granted, not hand-granted plan credit
       and g.expires_at <= creditkit.period_start(v_anchor, v_plan.period, v_index);
    v_cap := coalesce(v_plan.rollover_cap, 9007199254740991);
  end if;

  -- The ended period's buckets leave as expire rows first, then the new period begins. What they
  -- keep for open holds (book_expired) is payable to those holds, so it does not roll over too.
  perform creditkit.book_expired(p_account_id, p_unit, p_now);
  if v_plan.renewal = 'rollover' then
    select greatest(v_left - coalesce(sum(g.remaining), 0), 0) into v_left
      from creditkit.grants g
     where g.account_id = p_account_id and g.unit = p_unit and g.category = 'plan' and g.remaining > 0
       and g.metadata ? 'period_index'
       and g.expires_at <= creditkit.period_start(v_anchor, v_plan.period, v_index);
    v_carry := least(least(v_left, v_cap)::numeric + (v_index - v_last - 1)::numeric * v_plan.allowance,
                     v_cap)::bigint;
  end if;
  perform creditkit.grant_period(p_account_id, p_unit, v_plan, v_anchor, v_index, v_carry, 'renewal', p_now);
  if p_unit = 'credits' then
    update creditkit.subscriptions s
       set period_index = v_index,
           renews_at = creditkit.period_start(v_anchor, v_plan.period, v_index + 1),
           updated_at = p_now
     where s.account_id = p_account_id;
  else
    update creditkit.allowances al
       set period_index = v_index,
           renews_at = creditkit.period_start(v_anchor, v_plan.period, v_index + 1)
     where al.account_id = p_account_id and al.unit = p_unit;
  end if;
end;
$$;
comment on function creditkit.renew_period(uuid, text, timestamptz) is
  'Books a due period change for a locked (account, unit) row: expiry or rollover of the old allowance, the new allowance.';
revoke all on function creditkit.renew_period(uuid, text, timestamptz) from public, anon, authenticated, service_role;

-- Starts the allowance of a unit's plan limit for a locked (account, unit) row: the period that
-- contains p_now, counted from the live subscription's anchor (or from p_now without one).
create or replace function creditkit.start_allowance(
  p_account_id uuid, p_unit text, p_terms creditkit.plans, p_now timestamptz)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_anchor timestamptz;
  v_index integer;
begin
  v_anchor := creditkit.allowance_anchor(p_account_id, p_terms.id, p_now);
  v_index := creditkit.period_index(v_anchor, p_terms.period, p_now);
  insert into creditkit.allowances as al (account_id, unit, anchor, period_index, renews_at)
  values (p_account_id, p_unit, v_anchor, v_index, creditkit.period_start(v_anchor, p_terms.period, v_index + 1))
  on conflict (account_id, unit) do update
     set anchor = excluded.anchor, period_index = excluded.period_index, renews_at = excluded.renews_at;
  perform creditkit.grant_period(p_account_id, p_unit, p_terms, v_anchor, v_index, 0, 'plan_start', p_now);
  perform creditkit.refresh_due_at(p_account_id, p_unit);
end;
$$;
comment on function creditkit.start_allowance(uuid, text, creditkit.plans, timestamptz) is
  'Starts a unit''s plan-limit allowance on a locked (account, unit) row: grants the current period and records when the next is due.';
revoke all on function creditkit.start_allowance(uuid, text, creditkit.plans, timestamptz) from public, anon, authenticated, service_role;

-- The plan lock of an account: a plan change (creditkit_set_plan, a Stripe subscription event)
-- holds it exclusively from its start, before any row lock, and opening a unit's row holds it
-- shared. So no unit row opens while a plan change runs: the change locks and re-bases every row
-- there is, and a row opened later reads the plan it made. An advisory transaction lock, taken
-- before any row of the account is locked (nothing waits for it while holding one of them).
create or replace function creditkit.lock_plan(p_account_id uuid, p_exclusive boolean)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_key bigint := pg_catalog.hashtextextended('creditkit.plan:' || p_account_id::text, 0);
begin
  if p_exclusive then
    perform pg_catalog.pg_advisory_xact_lock(v_key);
  else
    perform pg_catalog.pg_advisory_xact_lock_shared(v_key);
  end if;
end;
$$;
comment on function creditkit.lock_plan(uuid, boolean) is
  'The plan lock of an account (a transaction advisory lock): exclusive for a plan change, shared to open a unit row.';
revoke all on function creditkit.lock_plan(uuid, boolean) from public, anon, authenticated, service_role;

-- Opens an account's row for a metered unit other than credits (the lock point lock_account calls
-- when the row is missing): CK015 for a unit that is not metered; nothing for credits (grants,
-- plans and Stripe open that row) or an unknown account (no credits row; the caller raises CK003).
-- Without p_always, only when the plan in force has a limit for the unit, whose current period is
-- granted at once. It holds the account's plan lock shared (creditkit.lock_plan), so it reads the
-- plan a concurrent change committed. The new row is this transaction's until it commits; a
-- concurrent opener waits on its key and then finds it. Returns whether it exists now.
create or replace function creditkit.open_unit(p_account_id uuid, p_unit text, p_now timestamptz, p_always boolean)
returns boolean
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_terms creditkit.plans;
begin
  perform creditkit.check_unit(p_unit);
  if p_unit = 'credits' or p_account_id is null then
    return false;
  end if;
  if not exists (select from creditkit.accounts a where a.id = p_account_id and a.unit = 'credits') then
    return false;
  end if;
  perform creditkit.lock_plan(p_account_id, false);
  v_terms := creditkit.unit_terms(p_account_id, p_unit);
  if v_terms.id is null and not p_always then
    return false;
  end if;
  insert into creditkit.accounts (id, unit, created_at) values (p_account_id, p_unit, p_now) on conflict do nothing;
  if found and v_terms.id is not null then
    perform creditkit.start_allowance(p_account_id, p_unit, v_terms, p_now);
  end if;
  return true;
end;
$$;
comment on function creditkit.open_unit(uuid, text, timestamptz, boolean) is
  'Opens an (account, unit) row for a metered unit other than credits with its plan allowance; CK015 for a unit that is not metered.';
revoke all on function creditkit.open_unit(uuid, text, timestamptz, boolean) from public, anon, authenticated, service_role;

-- Lock order, for a call that locks several rows of one account: its units other than credits
-- first, by unit id, then credits (creditkit.lock_account). This locks the first part.
create or replace function creditkit.lock_units(p_account_id uuid, p_now timestamptz)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_unit text;
begin
  for v_unit in
    select a.unit from creditkit.accounts a where a.id = p_account_id and a.unit <> 'credits' order by a.unit
  loop
    perform creditkit.lock_account(p_account_id, v_unit, p_now);
  end loop;
end;
$$;
comment on function creditkit.lock_units(uuid, timestamptz) is
  'Locks an account''s rows of units other than credits in unit order (booking what is due), before its credits row.';
revoke all on function creditkit.lock_units(uuid, timestamptz) from public, anon, authenticated, service_role;

-- After a plan change (creditkit_set_plan, a Stripe subscription change) on an account whose rows
-- are locked (the plan lock, lock_units, then credits): each unit's allowance is re-based like the
-- credits one. The old plan's allowance left is booked as expired now, and the new plan's limit
-- (if any) starts with the period that contains p_now. Units the account holds no row of open on
-- first touch, with the new plan.
create or replace function creditkit.rebase_units(p_account_id uuid, p_now timestamptz)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_unit text;
  v_terms creditkit.plans;
begin
  for v_unit in
    select a.unit from creditkit.accounts a where a.id = p_account_id and a.unit <> 'credits' order by a.unit
  loop
    update creditkit.grants g set expires_at = p_now
     where g.account_id = p_account_id and g.unit = v_unit and g.category = 'plan' and g.remaining > 0
       and g.metadata ? 'period_index'
       and (g.expires_at is null or g.expires_at > p_now);
    perform creditkit.book_expired(p_account_id, v_unit, p_now);
    delete from creditkit.allowances al where al.account_id = p_account_id and al.unit = v_unit;
    v_terms := creditkit.unit_terms(p_account_id, v_unit);
    if v_terms.id is not null then
      perform creditkit.start_allowance(p_account_id, v_unit, v_terms, p_now);
    end if;
    perform creditkit.refresh_due_at(p_account_id, v_unit);
  end loop;
end;
$$;
comment on function creditkit.rebase_units(uuid, timestamptz) is
  'Re-bases the allowance of every unit other than credits after a plan change: the old allowance expires now, the new limit''s period starts.';
revoke all on function creditkit.rebase_units(uuid, timestamptz) from public, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Server API: catalogue and subscriptions
-- ---------------------------------------------------------------------------------------------

-- Security definer: writes the catalogue, which no client role may write; service_role only.
create or replace function public.creditkit_upsert_plan(
  p_id text,
  p_name text,
  p_allowance bigint default 0,
  p_period text default 'month',
  p_renewal text default 'reset',
  p_rollover_cap bigint default null,
  p_features jsonb default '{}',
  p_price_amount bigint default 0,
  p_currency text default 'usd',
  p_stripe_price_id text default null,
  p_is_default boolean default false,
  p_active boolean default true)
returns jsonb
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_plan creditkit.plans;
begin
  perform creditkit.assert_server_caller();
  if p_id is null or p_id !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' then
    raise exception using errcode = 'CK006', message = 'invalid argument: plan id must match ^[a-z0-9][a-z0-9_.-]{0,62}$';
  end if;
  if p_name is null or p_name !~ '[^[:space:]]' or length(p_name) > 200 then
    raise exception using errcode = 'CK006', message = 'invalid argument: plan name must be 1 to 200 characters, not blank';
  end if;
  if p_allowance is null or p_allowance < 0 or p_allowance > 9007199254740991
     or p_price_amount is null or p_price_amount < 0 or p_price_amount > 9007199254740991
     or p_rollover_cap < 0 or p_rollover_cap > 9007199254740991 then
    raise exception using errcode = 'CK001', message = 'invalid amount: allowance, price and rollover cap are integers from 0 to 9007199254740991';
  end if;
  if p_period is null or p_period not in ('day', 'week', 'month', 'year')
     or p_renewal is null or p_renewal not in ('reset', 'rollover')
     or p_currency is null or p_currency !~ '^[a-z]{3}$'
     or p_is_default is null or p_active is null
     or (p_is_default and not p_active) then
    raise exception using errcode = 'CK006',
      message = 'invalid argument: period is day|week|month|year, renewal is reset|rollover, currency is a lowercase ISO code, the default plan must be active';
  end if;
  if p_features is null or jsonb_typeof(p_features) <> 'object'
     or exists (select 1 from jsonb_each(p_features) f where jsonb_typeof(f.value) <> 'boolean') then
    raise exception using errcode = 'CK006', message = 'invalid argument: features must be a JSON object of booleans';
  end if;
  if p_stripe_price_id is not null and p_stripe_price_id !~ '^[[:alnum:]_]{1,255}$' then
    raise exception using errcode = 'CK006', message = 'invalid argument: stripe price id must be 1 to 255 letters, digits or _';
  end if;

  if p_stripe_price_id is not null
     and exists (select 1 from creditkit.plans p where p.stripe_price_id = p_stripe_price_id and p.id <> p_id) then
    raise exception using errcode = 'CK006', message = 'invalid argument: that stripe price id already sells another plan';
  end if;
  -- Periods are counted from each subscription's anchor in the plan's period; changing the period
  -- under live subscriptions would renumber them.
  if exists (select 1 from creditkit.plans p
              join creditkit.subscriptions s on s.plan_id = p.id and s.status <> 'canceled'
             where p.id = p_id and p.period <> p_period) then
    raise exception using errcode = 'CK006',
      message = 'invalid argument: the period of a plan with live subscriptions cannot change; create a new plan';
  end if;

  if p_is_default then
    update creditkit.plans p set is_default = false where p.is_default and p.id <> p_id;
  elsif exists (select 1 from creditkit.plans p where p.id = p_id and p.is_default) then
    raise exception using errcode = 'CK006', message = 'invalid argument: make another plan the default first';
  end if;

  insert into creditkit.plans as p (id, name, allowance, period, renewal, rollover_cap, features,
                                    price_amount, currency, stripe_price_id, is_default, active)
  values (p_id, p_name, p_allowance, p_period, p_renewal, p_rollover_cap, p_features,
          p_price_amount, p_currency, p_stripe_price_id, p_is_default, p_active)
  on conflict (id) do update
     set name = excluded.name, allowance = excluded.allowance, period = excluded.period,
         renewal = excluded.renewal, rollover_cap = excluded.rollover_cap, features = excluded.features,
         price_amount = excluded.price_amount, currency = excluded.currency,
         stripe_price_id = excluded.stripe_price_id, is_default = excluded.is_default, active = excluded.active
  returning p.* into v_plan;
  return to_jsonb(v_plan);
end;
$$;
comment on function public.creditkit_upsert_plan(text, text, bigint, text, text, bigint, jsonb, bigint, text, text, boolean, boolean) is
  'Server only. Creates or updates a plan. A new allowance applies from each account''s next period; the period cannot change while live subscriptions use the plan. Naturally idempotent.';
revoke all on function public.creditkit_upsert_plan(text, text, bigint, text, text, bigint, jsonb, bigint, text, text, boolean, boolean) from public, anon, authenticated;
grant execute on function public.creditkit_upsert_plan(text, text, bigint, text, text, bigint, jsonb, bigint, text, text, boolean, boolean) to service_role;

-- Security definer: writes the unit catalogue, which no client role may write; service_role only.
create or replace function public.creditkit_upsert_unit(p_id text, p_name text, p_kind text default 'metered')
returns jsonb
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_unit creditkit.units;
begin
  perform creditkit.assert_server_caller();
  if p_id is null or p_id !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' then
    raise exception using errcode = 'CK006', message = 'invalid argument: unit id must match ^[a-z0-9][a-z0-9_.-]{0,62}$';
  end if;
  if p_name is null or p_name !~ '[^[:space:]]' or length(p_name) > 200 then
    raise exception using errcode = 'CK006', message = 'invalid argument: unit name must be 1 to 200 characters, not blank';
  end if;
  if p_kind is null or p_kind not in ('metered', 'boolean') then
    raise exception using errcode = 'CK006', message = 'invalid argument: kind is metered or boolean';
  end if;
  -- A balance, a bucket or a plan limit in the unit is read as that kind. (select 1: on Citus an
  -- expression with a subquery over every shard of accounts is planned in steps, and a subquery
  -- without a column in it fails, "a column definition list is required for functions returning
  -- record".)
  if exists (select 1 from creditkit.units u where u.id = p_id and u.kind <> p_kind)
     and (p_id = 'credits'
          or exists (select 1 from creditkit.accounts a where a.unit = p_id)
          or exists (select 1 from creditkit.plan_limits l where l.unit = p_id)
          or exists (select 1 from creditkit.prices p where p.unit = p_id)
          or exists (select 1 from creditkit.packs k where k.unit = p_id)) then
    raise exception using errcode = 'CK006',
      message = format('invalid argument: the kind of unit %s cannot change once accounts, plan limits, prices or packs use it', p_id);
  end if;
  insert into creditkit.units as u (id, name, kind) values (p_id, p_name, p_kind)
  on conflict (id) do update set name = excluded.name, kind = excluded.kind
  returning u.* into v_unit;
  return to_jsonb(v_unit);
end;
$$;
comment on function public.creditkit_upsert_unit(text, text, text) is
  'Server only. Creates or renames a unit: metered (a balance per account) or boolean (a plan feature flag). The kind cannot change once an account holds the unit or a plan limit, price or pack names it; credits is always metered. Naturally idempotent.';
revoke all on function public.creditkit_upsert_unit(text, text, text) from public, anon, authenticated;
grant execute on function public.creditkit_upsert_unit(text, text, text) to service_role;

-- Security definer: writes the plan limits, which no client role may write; service_role only.
create or replace function public.creditkit_set_plan_limit(
  p_plan_id text,
  p_unit text,
  p_allowance bigint,
  p_period text default 'month',
  p_renewal text default 'reset',
  p_rollover_cap bigint default null)
returns jsonb
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_limit creditkit.plan_limits;
begin
  perform creditkit.assert_server_caller();
  if not exists (select from creditkit.plans p where p.id = p_plan_id) then
    raise exception using errcode = 'CK009', message = format('unknown plan: %s', coalesce(p_plan_id, 'NULL')),
      detail = jsonb_build_object('plan_id', p_plan_id)::text;
  end if;
  perform creditkit.check_unit(p_unit);
  if p_unit = 'credits' then
    raise exception using errcode = 'CK006',
      message = 'invalid argument: the credits allowance is the plan''s own (creditkit_upsert_plan)';
  end if;
  if p_allowance is null then
    -- No limit: accounts stop renewing it at their next period; what was granted runs to its end.
    delete from creditkit.plan_limits l where l.plan_id = p_plan_id and l.unit = p_unit;
    return null;
  end if;
  if p_allowance < 0 or p_allowance > 9007199254740991 or p_rollover_cap < 0 or p_rollover_cap > 9007199254740991 then
    raise exception using errcode = 'CK001', message = 'invalid amount: allowance and rollover cap are integers from 0 to 9007199254740991';
  end if;
  if p_period is null or p_period not in ('day', 'week', 'month', 'year')
     or p_renewal is null or p_renewal not in ('reset', 'rollover') then
    raise exception using errcode = 'CK006', message = 'invalid argument: period is day|week|month|year, renewal is reset|rollover';
  end if;
  -- Periods are counted from each allowance's anchor in the limit's period; changing the period
  -- under running allowances would renumber them. (The plan in force by effective_plan's rule, as a
  -- join, and select 1: on Citus a call per row that reads a distributed table is refused inside a
  -- statement on a shard (F7), and a subquery without a column fails when Citus plans it in steps.)
  if exists (select 1 from creditkit.plan_limits l where l.plan_id = p_plan_id and l.unit = p_unit and l.period <> p_period)
     and exists (select 1 from creditkit.allowances al
                   left join creditkit.subscriptions s
                     on s.account_id = al.account_id and s.status in ('active', 'trialing', 'past_due')
                  where al.unit = p_unit
                    and coalesce(s.plan_id, (select d.id from creditkit.plans d where d.is_default)) = p_plan_id) then
    raise exception using errcode = 'CK006',
      message = 'invalid argument: the period of a limit that accounts are renewing cannot change; remove it (NULL allowance) first';
  end if;
  insert into creditkit.plan_limits as l (plan_id, unit, allowance, period, renewal, rollover_cap)
  values (p_plan_id, p_unit, p_allowance, p_period, p_renewal, p_rollover_cap)
  on conflict (plan_id, unit) do update
     set allowance = excluded.allowance, period = excluded.period, renewal = excluded.renewal,
         rollover_cap = excluded.rollover_cap
  returning l.* into v_limit;
  -- Rows of the unit that run no allowance yet look for it at their next touch (renew_period).
  update creditkit.accounts a set due_at = '-infinity'
   where a.unit = p_unit
     and not exists (select from creditkit.allowances al where al.account_id = a.id and al.unit = a.unit);
  return to_jsonb(v_limit);
end;
$$;
comment on function public.creditkit_set_plan_limit(text, text, bigint, text, text, bigint) is
  'Server only. Sets a plan''s limit for a metered unit other than credits: p_allowance per period (0: the unit is available but none is included), reset or rolled over with a cap. A NULL allowance removes the limit (returns NULL). A change applies from each account''s next period, as a plan''s credits allowance does; a new limit starts on the unit''s next touch of accounts that hold none. Naturally idempotent.';
revoke all on function public.creditkit_set_plan_limit(text, text, bigint, text, text, bigint) from public, anon, authenticated;
grant execute on function public.creditkit_set_plan_limit(text, text, bigint, text, text, bigint) to service_role;

-- Security invoker: the unit catalogue as a function, readable like creditkit_plans.
create function public.creditkit_units()
returns table (id text, name text, kind text)
language sql
stable
security invoker
set search_path = ''
set enable_seqscan = off
as $$
  select u.id, u.name, u.kind from creditkit.units u order by u.id;
$$;
comment on function public.creditkit_units() is
  'Server and signed-in users. The units: metered (a balance per account, credits among them) and boolean (plan feature flags).';
revoke all on function public.creditkit_units() from public, anon, authenticated, service_role;
grant execute on function public.creditkit_units() to authenticated, service_role;

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
set enable_seqscan = off
as $$
declare
  v_plan creditkit.plans;
  v_sub creditkit.subscriptions;
  v_anchor timestamptz;
  v_index integer;
  v_live boolean := p_status in ('active', 'trialing');
  v_before text;
  v_rebase boolean := false;
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

  -- the plan lock, then the account's credits row: the subscription needs it
  perform creditkit.lock_plan(p_account_id, true);
  insert into creditkit.accounts (id, created_at) values (p_account_id, p_now) on conflict do nothing;
  perform creditkit.lock_units(p_account_id, p_now);  -- the lock order: other units, then credits
  perform creditkit.lock_account(p_account_id, 'credits', p_now);
  v_before := (creditkit.effective_plan(p_account_id)).id;
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
        perform creditkit.book_expired(p_account_id, 'credits', p_now);
        perform creditkit.grant_period(p_account_id, 'credits', v_plan, v_anchor, v_index, 0, 'resume', p_now);
        update creditkit.subscriptions s set period_index = v_index where s.account_id = p_account_id;
      else
        v_index := v_sub.period_index;
      end if;
    end if;
  else
    -- A new plan (or a restart after a cancellation) takes effect at once: the old plan's allowance is forfeited
    -- (booked as expired now), the new plan's first period starts at the anchor.
    update creditkit.grants g set expires_at = p_now
     where g.account_id = p_account_id and g.unit = 'credits' and g.category = 'plan' and g.remaining > 0
       and g.metadata ? 'period_index'  -- only allowance the kit granted for a period
       and (g.expires_at is null or g.expires_at > p_now);
    perform creditkit.book_expired(p_account_id, 'credits', p_now);
    v_anchor := coalesce(p_anchor, p_now);
    v_index := creditkit.period_index(v_anchor, v_plan.period, p_now);
    insert into creditkit.subscriptions as s (account_id, plan_id, status, anchor, period_index, renews_at, updated_at)
    values (p_account_id, p_plan_id, p_status, v_anchor, v_index, null, p_now)
    on conflict (account_id) do update
       set plan_id = excluded.plan_id, status = excluded.status, anchor = excluded.anchor,
           period_index = excluded.period_index, updated_at = excluded.updated_at;
    if v_live then
      perform creditkit.grant_period(p_account_id, 'credits', v_plan, v_anchor, v_index, 0, 'plan_start', p_now);
    end if;
    v_rebase := true;
  end if;

  update creditkit.subscriptions s
     set renews_at = case when v_live then creditkit.period_start(v_anchor, v_plan.period, v_index + 1) end
   where s.account_id = p_account_id;
  perform creditkit.refresh_due_at(p_account_id, 'credits');
  -- The other units follow the plan in force: re-based when it (or the anchor) changed.
  if v_rebase or (creditkit.effective_plan(p_account_id)).id is distinct from v_before then
    perform creditkit.rebase_units(p_account_id, p_now);
  end if;

  plan_id := p_plan_id;
  status := p_status;
  -- The period that contains p_now, whether or not it renews.
  v_index := creditkit.period_index(v_anchor, v_plan.period, p_now);
  period_start := creditkit.period_start(v_anchor, v_plan.period, v_index);
  period_end := creditkit.period_start(v_anchor, v_plan.period, v_index + 1);
  balance := creditkit.spendable(p_account_id, 'credits');
end;
$$;
comment on function public.creditkit_set_plan(uuid, text, text, timestamptz, timestamptz) is
  'Server only. Puts an account on a plan (opening the account if needed). A new plan applies at once: the old plan''s remaining allowance (credits and every unit limit) is booked as expired and the new allowances granted for the period that contains p_now. The same plan again only updates the status. Naturally idempotent.';
revoke all on function public.creditkit_set_plan(uuid, text, text, timestamptz, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_set_plan(uuid, text, text, timestamptz, timestamptz) to service_role;

-- Security definer: a read of the account named (the server's call), refusing client roles itself
-- (creditkit.assert_server_caller); definer so that on Citus the shards are read as the owner
-- (docs/citus.md F9).
create or replace function public.creditkit_has_feature(p_account_id uuid, p_feature text)
returns boolean
language plpgsql
stable
security definer
set search_path = ''
set enable_seqscan = off
as $$
begin
  perform creditkit.assert_server_caller();
  if p_account_id is null or p_feature is null or p_feature !~ '[^[:space:]]' or length(p_feature) > 200 then
    raise exception using errcode = 'CK006', message = 'invalid argument: account id and feature name (1 to 200 characters) are required';
  end if;
  if not exists (select 1 from creditkit.accounts a where a.id = p_account_id) then
    raise exception using errcode = 'CK003', message = format('unknown account: %s', p_account_id),
      detail = jsonb_build_object('account_id', p_account_id)::text;
  end if;
  return coalesce(((creditkit.effective_plan(p_account_id)).features ->> p_feature)::boolean, false);
end;
$$;
comment on function public.creditkit_has_feature(uuid, text) is
  'Server only. Whether a feature flag is on in the plan in force for the account (false when absent).';
revoke all on function public.creditkit_has_feature(uuid, text) from public, anon, authenticated;
grant execute on function public.creditkit_has_feature(uuid, text) to service_role;

-- A plan's limits as one JSON object by unit: {"messages": {"allowance": 100, "period": "month",
-- "renewal": "reset", "rollover_cap": null}, ...}; {} without any.
create or replace function creditkit.limits_of(p_plan_id text)
returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$
  select coalesce(jsonb_object_agg(l.unit, jsonb_build_object('allowance', l.allowance, 'period', l.period,
                                                              'renewal', l.renewal, 'rollover_cap', l.rollover_cap)
                                   order by l.unit), '{}'::jsonb)
    from creditkit.plan_limits l
   where l.plan_id = p_plan_id;
$$;
comment on function creditkit.limits_of(text) is 'A plan''s limits per unit as a JSON object keyed by unit.';
revoke all on function creditkit.limits_of(text) from public, anon, authenticated, service_role;
grant execute on function creditkit.limits_of(text) to authenticated, service_role;

-- Security invoker: the plan catalogue as a function, so a pricing page can list the plans on offer
-- through the Data API without exposing the private schema. It reads creditkit.plans through the
-- "signed-in users can read the plan catalogue" policy.

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
  is_default boolean,
  limits jsonb)
language sql
stable
security invoker
set search_path = ''
set enable_seqscan = off
as $$
  select p.id, p.name, p.allowance, p.period, p.renewal, p.rollover_cap, p.features,
         p.price_amount, p.currency, p.stripe_price_id, p.is_default, creditkit.limits_of(p.id)
    from creditkit.plans p
   where p.active
   order by p.price_amount, p.id;
$$;
comment on function public.creditkit_plans() is
  'Server and signed-in users. The active plans, cheapest first: allowance, period, renewal rule, features, price (in the smallest currency unit), Stripe price id and the limits per unit ({"messages": {"allowance", "period", "renewal", "rollover_cap"}, ...}).';
revoke all on function public.creditkit_plans() from public, anon, authenticated, service_role;
grant execute on function public.creditkit_plans() to authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Caller-bound API
-- ---------------------------------------------------------------------------------------------

create or replace function public.creditkit_my_plan(
  p_account_id uuid default null,
  out account_id uuid,
  out plan_id text,
  out plan_name text,
  out status text,
  out period_start timestamptz,
  out period_end timestamptz,
  out allowance bigint,
  out features jsonb,
  out limits jsonb)
returns record
language plpgsql
stable
security invoker
set search_path = ''
set enable_seqscan = off
as $$
declare
  v_plan creditkit.plans;
  v_sub creditkit.subscriptions;
  v_index integer;
begin
  account_id := creditkit.caller_account(p_account_id);
  v_plan := creditkit.effective_plan(account_id);
  select s.* into v_sub from creditkit.subscriptions s where s.account_id = creditkit_my_plan.account_id;
  plan_id := v_plan.id;
  plan_name := v_plan.name;
  allowance := v_plan.allowance;
  features := v_plan.features;
  limits := creditkit.limits_of(v_plan.id);
  status := coalesce(v_sub.status, 'active');
  if v_sub.plan_id = v_plan.id then
    v_index := creditkit.period_index(v_sub.anchor, v_plan.period, now());
    period_start := creditkit.period_start(v_sub.anchor, v_plan.period, v_index);
    period_end := creditkit.period_start(v_sub.anchor, v_plan.period, v_index + 1);
  end if;
end;
$$;
comment on function public.creditkit_my_plan(uuid) is
  'Signed-in users. The plan in force for your account (default plan without a live subscription), its current period, features and limits per unit.';
revoke all on function public.creditkit_my_plan(uuid) from public, anon, authenticated, service_role;
grant execute on function public.creditkit_my_plan(uuid) to authenticated;

create or replace function public.creditkit_my_feature(p_feature text, p_account_id uuid default null)
returns boolean
language plpgsql
stable
security invoker
set search_path = ''
set enable_seqscan = off
as $$
begin
  if p_feature is null or p_feature !~ '[^[:space:]]' or length(p_feature) > 200 then
    raise exception using errcode = 'CK006', message = 'invalid argument: feature name must be 1 to 200 characters';
  end if;
  return coalesce(((creditkit.effective_plan(creditkit.caller_account(p_account_id))).features ->> p_feature)::boolean, false);
end;
$$;
comment on function public.creditkit_my_feature(text, uuid) is
  'Signed-in users. Whether a feature flag is on for your account (or a team account you may read).';
revoke all on function public.creditkit_my_feature(text, uuid) from public, anon, authenticated, service_role;
grant execute on function public.creditkit_my_feature(text, uuid) to authenticated;
