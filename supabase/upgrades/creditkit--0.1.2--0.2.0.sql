-- creditkit 0.1.2 -> 0.2.0: metered units, a balance per (account, unit), plan limits per unit, check and report
--
-- Every balance, bucket, hold and ledger row of an install becomes the `credits` unit's. Adds the
-- unit catalogue, plan limits and their per-account period state, then replaces the functions that
-- changed and applies the installer's settings (lock_timeout) again to what it replaced.

insert into creditkit.error_codes (code, name, description) values
  ('CK015', 'unknown_unit',         'No unit with that id, or a boolean unit where a metered one (a balance) is needed.');
-- CK002's detail names the unit that could not cover the amount.
update creditkit.error_codes
   set description = 'The account cannot cover the amount (raising consume, negative adjustment). DETAIL is JSON {"balance":n,"required":n,"unit":"…"}.'
 where code = 'CK002';

-- The units (features) of the kit: a metered unit has a balance per account (credits, messages,
-- images, ...); a boolean unit is an on/off feature, which plans switch on in their `features`.
create table creditkit.units (
  id text primary key
    constraint units_id_format check (id ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
  name text not null
    constraint units_name_length check (length(name) between 1 and 200),
  kind text not null default 'metered'
    constraint units_kind check (kind in ('metered', 'boolean')),
  created_at timestamptz not null default now()
);
comment on table creditkit.units is
  'The unit catalogue: metered units hold a balance per account, boolean units are plan feature flags. credits always exists.';
insert into creditkit.units (id, name, kind) values ('credits', 'Credits', 'metered');

alter table creditkit.units enable row level security;
revoke all on table creditkit.units from public, anon, authenticated, service_role;
grant select on table creditkit.units to authenticated, service_role;
create policy "signed-in users can read the unit catalogue"
  on creditkit.units for select to authenticated using (true);

-- The app's policies that call a kit function (a restrictive policy calling creditkit_has_credits,
-- as the README shows) would stop the functions whose signature changes from being dropped: they
-- are set aside here and created again as they were once the new functions exist. Their text
-- calls the new functions, which take the same arguments first.
create temporary table creditkit_upgrade_policies as
  select format('drop policy %I on %I.%I', pol.polname, n.nspname, c.relname) as set_aside,
         format('create policy %I on %I.%I as %s for %s to %s%s%s', pol.polname, n.nspname, c.relname,
                case when pol.polpermissive then 'permissive' else 'restrictive' end,
                case pol.polcmd when 'r' then 'select' when 'a' then 'insert' when 'w' then 'update'
                                when 'd' then 'delete' else 'all' end,
                (select string_agg(case when r.oid = 0 then 'public' else r.oid::regrole::text end, ', ')
                   from unnest(pol.polroles) r(oid)),
                ' using (' || pg_get_expr(pol.polqual, pol.polrelid) || ')',
                ' with check (' || pg_get_expr(pol.polwithcheck, pol.polrelid) || ')') as restore
    from pg_catalog.pg_policy pol
    join pg_catalog.pg_class c on c.oid = pol.polrelid
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
   where n.nspname <> 'creditkit'
     and exists (select from pg_catalog.pg_depend d join pg_catalog.pg_proc p on p.oid = d.refobjid
                  where d.classid = 'pg_catalog.pg_policy'::regclass and d.objid = pol.oid
                    and d.refclassid = 'pg_catalog.pg_proc'::regclass
                    and (p.pronamespace = 'creditkit'::regnamespace
                         or (p.pronamespace = 'public'::regnamespace and p.proname like 'creditkit\_%')));
do $$
declare
  v_policy record;
begin
  for v_policy in select * from creditkit_upgrade_policies loop
    execute v_policy.set_aside;
  end loop;
end;
$$;

-- Accounts: one row per (account, unit); what there is becomes credits. The tables that pointed
-- at an account point at its (account, unit) row; subscriptions keep one row per account and no
-- foreign key (every path that creates one opens the credits row first).
alter table creditkit.grants drop constraint grants_account_id_fkey;
alter table creditkit.holds drop constraint holds_account_id_fkey;
alter table creditkit.subscriptions drop constraint subscriptions_account_id_fkey;
alter table creditkit.accounts drop constraint accounts_pkey;
alter table creditkit.accounts add column unit text not null default 'credits' references creditkit.units (id);
alter table creditkit.accounts add constraint accounts_pkey primary key (id, unit);
comment on table creditkit.accounts is 'One row per account and metered unit: the balance (O(1)) and the row every mutation of that balance locks.';

alter table creditkit.grants add column unit text not null default 'credits';
alter table creditkit.grants add constraint grants_account_unit_fkey
  foreign key (account_id, unit) references creditkit.accounts (id, unit);
drop index creditkit.grants_spendable;
create index grants_spendable on creditkit.grants (account_id, unit, expires_at, priority desc, created_at, id) where live;

alter table creditkit.ledger add column unit text not null default 'credits';
grant select (unit) on table creditkit.ledger to authenticated;

alter table creditkit.holds add column unit text not null default 'credits';
alter table creditkit.holds add constraint holds_account_unit_fkey
  foreign key (account_id, unit) references creditkit.accounts (id, unit);
drop index creditkit.holds_open;
create index holds_open on creditkit.holds (account_id, unit, expires_at) where status = 'open';

-- Prices name the unit an event spends and may carry an overage price in credits; packs name the
-- unit they top up, and so do the payments that bought them. Everything there is stays credits.
alter table creditkit.prices add column unit text not null default 'credits' references creditkit.units (id);
alter table creditkit.prices add column overage_credits_per_unit bigint
  constraint prices_overage_range check (overage_credits_per_unit between 1 and 9007199254740991);
alter table creditkit.prices add constraint prices_overage_unit check (overage_credits_per_unit is null or unit <> 'credits');
comment on table creditkit.prices is
  'The amount of a unit (credits by default) per unit of an event, optionally per dimension set, in versions by effective_from, with an optional overage price in credits. Append-only by convention: add a version, do not edit one.';
alter table creditkit.packs add column unit text not null default 'credits' references creditkit.units (id);
comment on table creditkit.packs is 'One-off packs of a metered unit (credits by default) sold through Stripe Checkout (mode payment).';
alter table creditkit.stripe_payments add column unit text not null default 'credits';

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

-- Starter grant on sign-up (opt-in): what every new user gets, per unit. Nothing happens until
-- the installer runs `select creditkit.enable_starter_grant()` in a migration of theirs.
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

alter table creditkit.plan_limits enable row level security;
alter table creditkit.allowances enable row level security;
revoke all on table creditkit.plan_limits, creditkit.allowances from public, anon, authenticated, service_role;
grant select on table creditkit.plan_limits, creditkit.allowances to authenticated, service_role;
create policy "signed-in users can read the plan limits"
  on creditkit.plan_limits for select to authenticated using (true);
create policy "members can read their accounts' allowances"
  on creditkit.allowances for select to authenticated
  using (creditkit.can_access_account(account_id));

-- The functions whose signature changed (a unit among the arguments, limits in the plan reads) go,
-- and every function that changed is defined again as a fresh install defines it.
drop function creditkit.add_grant(uuid, text, bigint, integer, timestamp with time zone, jsonb, timestamp with time zone);
drop function creditkit.append_entry(uuid, text, bigint, bigint, text, text, jsonb, timestamp with time zone, timestamp with time zone, bigint, bigint);
drop function creditkit.book_due(uuid, timestamp with time zone);
drop function creditkit.book_expired(uuid, timestamp with time zone);
drop function creditkit.debit(uuid, bigint, text, text, jsonb, jsonb, bigint, timestamp with time zone);
drop function creditkit.draw_down(uuid, bigint, timestamp with time zone);
drop function creditkit.draw_undrawn(uuid);
drop function creditkit.expire_holds(uuid, timestamp with time zone);
drop function creditkit.find_replay(uuid, text, text, bigint, text, jsonb, bigint, bigint, text[]);
drop function creditkit.grant_period(uuid, creditkit.plans, timestamp with time zone, integer, bigint, text, timestamp with time zone);
drop function creditkit.history_page(uuid, integer, bigint);
drop function creditkit.live_buckets(uuid, timestamp with time zone);
drop function creditkit.lock_account(uuid, timestamp with time zone);
drop function creditkit.refresh_due_at(uuid);
drop function creditkit.renew_period(uuid, timestamp with time zone);
drop function creditkit.spendable(uuid);
drop function public.creditkit_adjust(uuid, bigint, text, text, jsonb, timestamp with time zone);
drop function public.creditkit_balance(uuid, timestamp with time zone);
drop function public.creditkit_book_expired(timestamp with time zone, integer);
drop function public.creditkit_consume(uuid, bigint, text, text, jsonb, bigint, timestamp with time zone);
drop function public.creditkit_consume_or_raise(uuid, bigint, text, text, jsonb, bigint, timestamp with time zone);
drop function public.creditkit_grant(uuid, bigint, text, timestamp with time zone, integer, text, jsonb, bigint, timestamp with time zone);
drop function public.creditkit_has_credits(bigint, uuid);
drop function public.creditkit_history(uuid, integer, bigint);
drop function public.creditkit_my_balance(uuid);
drop function public.creditkit_my_history(uuid, integer, bigint);
drop function public.creditkit_reserve(uuid, bigint, interval, text, text, jsonb, timestamp with time zone);
drop function public.creditkit_plans();
drop function public.creditkit_my_plan(uuid);
drop function creditkit.price_or_raise(text, jsonb, bigint, timestamp with time zone);
drop function creditkit.meter(uuid, text, bigint, jsonb, text, bigint, jsonb, timestamp with time zone);
drop function public.creditkit_meter(uuid, text, bigint, jsonb, text, bigint, jsonb, timestamp with time zone);
drop function public.creditkit_quote(text, bigint, jsonb, timestamp with time zone);
drop function public.creditkit_set_price(text, bigint, jsonb, timestamp with time zone);
drop function public.creditkit_upsert_pack(text, text, bigint, bigint, text, text, interval, boolean);
drop function public.creditkit_packs();
drop function public.creditkit_consume_batch(jsonb, timestamp with time zone);

-- ---------------------------------------------------------------------------------------------
-- The installed version: creditkit status and doctor read it, and every upgrade script replaces it.
-- ---------------------------------------------------------------------------------------------
create or replace function creditkit.version()
returns text
language sql
immutable
set search_path = ''
as $$ select '0.2.0' $$;
comment on function creditkit.version() is 'The creditkit version installed in this database.';
revoke all on function creditkit.version() from public, anon, authenticated, service_role;
grant execute on function creditkit.version() to service_role;

-- Raises CK015 unless p_unit names a metered unit (one that holds a balance). Not on the hot path:
-- a call whose (account, unit) row exists needs no lookup; only a missing row leads here.
create or replace function creditkit.check_unit(p_unit text)
returns void
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
  if p_unit is null or not exists (select from creditkit.units u where u.id = p_unit and u.kind = 'metered') then
    raise exception using errcode = 'CK015',
      message = format('unknown unit: %s is not a metered unit', coalesce(quote_literal(p_unit), 'NULL')),
      detail = jsonb_build_object('unit', p_unit)::text;
  end if;
end;
$$;
comment on function creditkit.check_unit(text) is 'Raises CK015 unless the unit exists and is metered.';
revoke all on function creditkit.check_unit(text) from public, anon, authenticated, service_role;
grant execute on function creditkit.check_unit(text) to authenticated, service_role;

create or replace function creditkit.ledger_grant_exists()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform from creditkit.grants g where g.account_id = new.account_id and g.id = new.grant_id and g.unit = new.unit for key share;
  if not found then
    raise exception using
      errcode = 'foreign_key_violation',
      message = format('insert or update on table "ledger" violates its grant reference: grant %s does not exist in unit %s', new.grant_id, new.unit),
      table = 'ledger', schema = 'creditkit', column = 'grant_id';
  end if;
  return null;
end;
$$;
comment on function creditkit.ledger_grant_exists() is
  'Trigger: a ledger row that names a grant needs that grant (23503). Fires only for rows with a grant_id.';
revoke all on function creditkit.ledger_grant_exists() from public, anon, authenticated, service_role;

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
  -- A balance, a bucket or a plan limit in the unit is read as that kind.
  if exists (select from creditkit.units u where u.id = p_id and u.kind <> p_kind)
     and (p_id = 'credits'
          or exists (select from creditkit.accounts a where a.unit = p_id)
          or exists (select from creditkit.plan_limits l where l.unit = p_id)
          or exists (select from creditkit.prices p where p.unit = p_id)
          or exists (select from creditkit.packs k where k.unit = p_id)) then
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
  -- under running allowances would renumber them.
  if exists (select from creditkit.plan_limits l where l.plan_id = p_plan_id and l.unit = p_unit and l.period <> p_period)
     and exists (select from creditkit.allowances al
                  where al.unit = p_unit and (creditkit.effective_plan(al.account_id)).id = p_plan_id) then
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

-- Frees the credit of the (account, unit)'s open holds that expired by p_now. The caller holds the lock.
create or replace function creditkit.expire_holds(p_account_id uuid, p_unit text, p_now timestamptz)
returns void
language sql
volatile
set search_path = ''
as $$
  with expired as (
    update creditkit.holds h
       set status = 'expired', resolved_at = p_now
     where h.account_id = p_account_id and h.unit = p_unit and h.status = 'open' and h.expires_at <= p_now
    returning h.amount
  )
  update creditkit.accounts a
     set held = a.held - (select coalesce(sum(e.amount), 0) from expired e)
   where a.id = p_account_id and a.unit = p_unit;
$$;
comment on function creditkit.expire_holds(uuid, text, timestamptz) is 'Marks open holds past their expiry as expired and frees their credit.';
revoke all on function creditkit.expire_holds(uuid, text, timestamptz) from public, anon, authenticated, service_role;

-- Locks the hold's account and returns the hold as it is under that lock. CK011 if unknown.
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
  select h.* into v_hold from creditkit.holds h where h.id = p_hold_id;
  return v_hold;
end;
$$;
comment on function creditkit.lock_hold(bigint, timestamptz) is 'Locks a hold''s (account, unit) row (booking what is due) and returns the hold.';
revoke all on function creditkit.lock_hold(bigint, timestamptz) from public, anon, authenticated, service_role;

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
     and a.unit = (select h.unit from creditkit.holds h where h.id = p_hold_id)
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
   where h.id = v_hold.id;
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
    update creditkit.holds h set status = 'released', resolved_at = p_now where h.id = v_hold.id;
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

-- accounts.due_at is computed here and nowhere else, so no path can forget a kind of due work.
create or replace function creditkit.refresh_due_at(p_account_id uuid, p_unit text)
returns void
language sql
volatile
set search_path = ''
as $$
  update creditkit.accounts a
     set due_at = least(
           (select min(g.expires_at) from creditkit.grants g
             where g.account_id = p_account_id and g.unit = p_unit and g.remaining > 0),
           (select s.renews_at from creditkit.subscriptions s where s.account_id = p_account_id and p_unit = 'credits'),
           (select al.renews_at from creditkit.allowances al where al.account_id = p_account_id and al.unit = p_unit),
           (select min(h.expires_at) from creditkit.holds h
             where h.account_id = p_account_id and h.unit = p_unit and h.status = 'open'))
   where a.id = p_account_id and a.unit = p_unit;
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

-- Security invoker: a pure read; service_role has SELECT on the ledger.
create or replace function public.creditkit_history(
  p_account_id uuid,
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
begin
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
  for v_account_id in
    select a.id from creditkit.accounts a
     where a.due_at <= p_now and a.unit = p_unit
     order by a.due_at
     limit p_limit
       for update skip locked
  loop
    perform creditkit.book_due(v_account_id, p_unit, p_now);
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;
comment on function public.creditkit_book_expired(timestamptz, integer, text) is
  'Server only, optional. Books what is due in p_unit (default credits: expired credit, renewals and expired holds) for up to p_limit accounts and returns how many it visited. Nothing depends on it: every touch books what is due.';
revoke all on function public.creditkit_book_expired(timestamptz, integer, text) from public, anon, authenticated;
grant execute on function public.creditkit_book_expired(timestamptz, integer, text) to service_role;

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

-- Security invoker: reads through RLS; it can only ever see the caller's own accounts, so it is
-- no oracle on anyone else's balance (for an account the caller may not read it is simply false).
create or replace function public.creditkit_has_credits(
  p_amount bigint default 1, p_account_id uuid default null, p_unit text default 'credits')
returns boolean
language plpgsql
stable
security invoker
set search_path = ''
set enable_seqscan = off
as $$
declare
  v_uid uuid := (select auth.uid());
  v_account_id uuid;
begin
  perform creditkit.check_amount(p_amount);
  if p_unit is distinct from 'credits' then
    perform creditkit.check_unit(p_unit);
  end if;
  v_account_id := coalesce(p_account_id, v_uid);
  if v_uid is null or not creditkit.can_access_account(v_account_id) then
    return false;
  end if;
  return (select b.balance >= p_amount from creditkit.live_buckets(v_account_id, p_unit, now()) b);
end;
$$;
comment on function public.creditkit_has_credits(bigint, uuid, text) is
  'Signed-in users, for RLS policies. True when your account (or a team account you may read) has at least p_amount spendable in p_unit (default credits); false for anyone else''s account and when signed out.';
revoke all on function public.creditkit_has_credits(bigint, uuid, text) from public, anon, authenticated, service_role;
grant execute on function public.creditkit_has_credits(bigint, uuid, text) to authenticated;

-- Trigger function. Arguments: event name, quantity (default '1'), optionally the name of a column
-- of the new row that holds the account id (team accounts; '' or absent: the inserting user), and
-- optionally a unit: without one the event is priced in credits (creditkit.meter); with one,
-- quantity units of it are spent (as creditkit_report does), recorded under the event name.
-- Security definer: it spends on behalf of the signed-in user, who may not write the ledger; the
-- account it charges is the caller's own or one the access function lets them read, never a
-- free choice. Trigger functions cannot be called through the API.
create or replace function creditkit.charge_on_insert()
returns trigger
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_uid uuid := (select auth.uid());
  v_account_id uuid;
  v_quantity bigint;
  v_result record;
begin
  if tg_op <> 'INSERT' or tg_level <> 'ROW' or tg_nargs not between 1 and 4 then
    raise exception using errcode = 'CK006',
      message = 'creditkit.charge_on_insert(event [, quantity [, account_column [, unit]]]) is a row-level INSERT trigger';
  end if;
  begin
    v_quantity := coalesce(tg_argv[1], '1')::bigint;
  exception when others then
    raise exception using errcode = 'CK006', message = format('invalid argument: quantity %L is not an integer', tg_argv[1]);
  end;
  -- No signed-in user is only acceptable from the server: anon (or a JWT without a subject)
  -- must not charge whatever account it names in the row.
  if v_uid is null then
    perform creditkit.assert_server_caller();
  end if;
  if tg_nargs >= 3 and tg_argv[2] <> '' then
    v_account_id := (to_jsonb(new) ->> tg_argv[2])::uuid;
  else
    v_account_id := v_uid;
  end if;
  -- A signed-in caller may only charge accounts they may read; a server insert (no user) must
  -- name the account in the row.
  if v_account_id is null or (v_uid is not null and not creditkit.can_access_account(v_account_id)) then
    raise exception using errcode = 'CK005', message = 'not allowed: no account to charge for this insert';
  end if;

  -- An account that never had credit cannot pay: the same answer as an empty one.
  if not exists (select 1 from creditkit.accounts a where a.id = v_account_id) then
    raise exception using errcode = 'CK002', message = 'insufficient credits: the account has no credit yet',
      detail = jsonb_build_object('balance', 0)::text;
  end if;
  if tg_nargs = 4 then
    if v_quantity is null or v_quantity < 1 or v_quantity > 9007199254740991 then
      perform creditkit.check_amount(v_quantity);
    end if;
    perform creditkit.check_request(null, tg_argv[0], null, now());
    select d.allowed, d.balance, d.amount, tg_argv[3] as unit into v_result
      from creditkit.debit(v_account_id, tg_argv[3], v_quantity, tg_argv[0], null,
                           jsonb_build_object('table', tg_table_schema || '.' || tg_table_name), null, null, now()) d;
  else
    select m.allowed, m.balance, m.amount, m.unit into v_result
      from creditkit.meter(v_account_id, tg_argv[0], v_quantity, '{}'::jsonb, null, null,
                           jsonb_build_object('table', tg_table_schema || '.' || tg_table_name), now()) m;
  end if;
  if not v_result.allowed then
    raise exception using
      errcode = 'CK002',
      message = format('insufficient credits: balance %s, required %s%s', v_result.balance, v_result.amount,
                       case when v_result.unit <> 'credits' then ' ' || v_result.unit else '' end),
      detail = jsonb_build_object('balance', v_result.balance, 'required', v_result.amount, 'unit', v_result.unit)::text;
  end if;
  return new;
end;
$$;
comment on function creditkit.charge_on_insert() is
  'Trigger: charge_on_insert(event [, quantity [, account_column [, unit]]]) meters the inserting user''s account (in credits at the event''s price, or quantity of the unit) in the same transaction; CK002 rejects the insert when the account cannot pay.';
revoke all on function creditkit.charge_on_insert() from public, anon, authenticated, service_role;

create or replace function public.creditkit_account_margin(
  p_from timestamptz,
  p_to timestamptz,
  p_account_id uuid default null)
returns table (account_id uuid, credits_granted bigint, credits_spent bigint, revenue_micros bigint,
               cost_micros bigint, margin_micros bigint)
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
  perform creditkit.check_period(p_from, p_to);
  return query
    select l.account_id,
           coalesce(sum(l.amount) filter (where l.kind = 'grant' and l.unit = 'credits'), 0)::bigint,
           coalesce(-sum(l.amount) filter (where l.kind = 'consume' and l.unit = 'credits'), 0)::bigint,
           coalesce(sum(l.revenue_micros), 0)::bigint,
           coalesce(sum(l.cost_micros), 0)::bigint,
           (coalesce(sum(l.revenue_micros), 0) - coalesce(sum(l.cost_micros), 0))::bigint
      from creditkit.ledger l
     where l.created_at >= p_from and l.created_at < p_to
       and (p_account_id is null or l.account_id = p_account_id)
     group by l.account_id
     order by 6 desc, 1;
end;
$$;
comment on function public.creditkit_account_margin(timestamptz, timestamptz, uuid) is
  'Server only. Per account over [p_from, p_to): credits granted and spent, revenue (what grants recorded as paid), cost (what usage recorded as costing you) and margin = revenue - cost, in micros. Highest margin first.';
revoke all on function public.creditkit_account_margin(timestamptz, timestamptz, uuid) from public, anon, authenticated;
grant execute on function public.creditkit_account_margin(timestamptz, timestamptz, uuid) to service_role;

create or replace function public.creditkit_usage_series(
  p_from timestamptz,
  p_to timestamptz,
  p_account_id uuid default null,
  p_event text default null)
returns table (day date, event text, calls bigint, credits bigint, cost_micros bigint)
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
  perform creditkit.check_period(p_from, p_to);
  perform creditkit.check_request(null, p_event, null, p_from);
  return query
    select (l.created_at at time zone 'UTC')::date, l.event, count(*)::bigint,
           (-sum(l.amount))::bigint, coalesce(sum(l.cost_micros), 0)::bigint
      from creditkit.ledger l
     where l.kind = 'consume' and l.unit = 'credits' and l.created_at >= p_from and l.created_at < p_to
       and (p_account_id is null or l.account_id = p_account_id)
       and (p_event is null or l.event = p_event)
     group by 1, 2
     order by 1, 2;
end;
$$;
comment on function public.creditkit_usage_series(timestamptz, timestamptz, uuid, text) is
  'Server only. Spending per UTC day and event over [p_from, p_to): calls, credits, cost in micros. Optionally for one account or event.';
revoke all on function public.creditkit_usage_series(timestamptz, timestamptz, uuid, text) from public, anon, authenticated;
grant execute on function public.creditkit_usage_series(timestamptz, timestamptz, uuid, text) to service_role;

create or replace function public.creditkit_top_events(
  p_from timestamptz,
  p_to timestamptz,
  p_limit integer default 10)
returns table (event text, calls bigint, credits bigint, cost_micros bigint, accounts bigint)
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
  perform creditkit.check_period(p_from, p_to);
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception using errcode = 'CK006', message = 'invalid argument: limit must be from 1 to 1000';
  end if;
  return query
    select l.event, count(*)::bigint, (-sum(l.amount))::bigint, coalesce(sum(l.cost_micros), 0)::bigint,
           count(distinct l.account_id)::bigint
      from creditkit.ledger l
     where l.kind = 'consume' and l.unit = 'credits' and l.created_at >= p_from and l.created_at < p_to
     group by l.event
     order by 3 desc, 1
     limit p_limit;
end;
$$;
comment on function public.creditkit_top_events(timestamptz, timestamptz, integer) is
  'Server only. The events that spent the most credits over [p_from, p_to), with calls, cost and distinct accounts.';
revoke all on function public.creditkit_top_events(timestamptz, timestamptz, integer) from public, anon, authenticated;
grant execute on function public.creditkit_top_events(timestamptz, timestamptz, integer) to service_role;

-- Like creditkit.live_buckets, it attributes each account's `undrawn` to its buckets in spend order.
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
        join creditkit.accounts a on a.id = g.account_id and a.unit = g.unit
       where g.live and g.unit = 'credits'
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

create or replace function public.creditkit_accounts_per_plan()
returns table (plan_id text, plan_name text, accounts bigint)
language sql
stable
security invoker
set search_path = ''
as $$
  with per_account as (  -- the plan in force, computed once per account
    select (creditkit.effective_plan(a.id)).id as plan_id from creditkit.accounts a where a.unit = 'credits'
  )
  select p.id, p.name, count(e.plan_id)::bigint
    from creditkit.plans p
    left join per_account e on e.plan_id = p.id
   group by p.id, p.name
   order by 3 desc, 1;
$$;
comment on function public.creditkit_accounts_per_plan() is
  'Server only. Accounts per plan in force (a live subscription''s plan, else the default plan).';
revoke all on function public.creditkit_accounts_per_plan() from public, anon, authenticated;
grant execute on function public.creditkit_accounts_per_plan() to service_role;

-- Opens the account (its credits row) if needed and locks it in the lock order (the plan lock,
-- other units, then credits), booking what is due: a subscription change re-bases every unit's
-- allowance. Returns the spendable credits balance.
create or replace function creditkit.stripe_lock_account(p_account_id uuid, p_now timestamptz)
returns bigint
language plpgsql
volatile
set search_path = ''
as $$
begin
  perform creditkit.lock_plan(p_account_id, true);
  insert into creditkit.accounts (id, created_at) values (p_account_id, p_now) on conflict do nothing;
  perform creditkit.lock_units(p_account_id, p_now);
  return creditkit.lock_account(p_account_id, 'credits', p_now);
end;
$$;
comment on function creditkit.stripe_lock_account(uuid, timestamptz) is
  'Opens an account on first use and locks its rows (other units, then credits), for a Stripe effect.';
revoke all on function creditkit.stripe_lock_account(uuid, timestamptz) from public, anon, authenticated, service_role;

-- Grants a paid pack payment's credits (once) and moves the ledger to what its refunds and disputes
-- call for (a pack's or an invoice's). The caller holds the payment's locks.
create or replace function creditkit.stripe_settle_payment(p_payment_id bigint, p_now timestamptz)
returns text
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_pay creditkit.stripe_payments;
  v_pack creditkit.packs;
  v_grant creditkit.grants;
  v_live boolean;
  v_target bigint;
  v_delta bigint;
  v_take bigint;
  v_from_grant bigint := 0;
  v_back bigint;
  v_to_grant bigint := 0;
  v_forgiven bigint;
  v_grant_id bigint;
  v_expires timestamptz;
  v_metadata jsonb;
  v_reason jsonb;
  v_effect text := '';
begin
  select p.* into v_pay from creditkit.stripe_payments p where p.id = p_payment_id for update;
  if not found or v_pay.state <> 'paid' or v_pay.account_id is null or v_pay.credits is null then
    return 'recorded; waiting for the paid checkout';
  end if;
  perform creditkit.stripe_lock_account(v_pay.account_id, p_now);
  if v_pay.unit <> 'credits' then
    -- a pack of another unit: its row (opened now if the account holds none; the plan lock is ours)
    perform creditkit.open_unit(v_pay.account_id, v_pay.unit, p_now, true);
    perform creditkit.lock_account(v_pay.account_id, v_pay.unit, p_now);
  end if;
  v_metadata := jsonb_strip_nulls(jsonb_build_object(
    'source', 'stripe', 'payment_intent', v_pay.payment_intent, 'checkout_session', v_pay.checkout_session,
    'pack_id', v_pay.pack_id, 'stripe_invoice', v_pay.invoice));

  if v_pay.grant_id is null then
    if (select a.balance from creditkit.accounts a where a.id = v_pay.account_id and a.unit = v_pay.unit) > 9007199254740991 - v_pay.credits then
      perform creditkit.stripe_dead('balance_limit', 'the pack would take the balance above 9007199254740991');
    end if;
    select k.* into v_pack from creditkit.packs k where k.id = v_pay.pack_id;
    v_expires := p_now + v_pack.expires_after;
    v_grant_id := creditkit.add_grant(v_pay.account_id, v_pay.unit, 'purchase', v_pay.credits, null, v_expires, v_metadata, p_now);
    perform creditkit.append_entry(v_pay.account_id, v_pay.unit, 'grant', v_pay.credits, v_grant_id, null,
                                   'stripe:' || coalesce(v_pay.payment_intent, v_pay.checkout_session), v_metadata,
                                   p_now, v_expires, null,
                                   -- revenue in micros, for two-decimal currencies (1 cent = 10000 micros)
                                   least(v_pay.amount_paid * 10000, 9007199254740991));
    update creditkit.stripe_payments p set grant_id = v_grant_id, updated_at = p_now
     where p.id = p_payment_id;
    v_pay.grant_id := v_grant_id;
    v_effect := format('granted %s %s', v_pay.credits, v_pay.unit);
  end if;

  -- The pack's own bucket, and whether it can still be spent (taken from or put back into).
  select g.* into v_grant from creditkit.grants g where g.account_id = v_pay.account_id and g.id = v_pay.grant_id;
  v_live := v_grant.expires_at is null or v_grant.expires_at > p_now;

  -- What refunds and disputes call for: all of it while disputed, else the refunded share.
  v_target := case
    when v_pay.disputed then v_pay.credits
    when coalesce(v_pay.amount_paid, 0) = 0 then 0
    else floor(v_pay.credits::numeric * least(v_pay.amount_refunded, v_pay.amount_paid) / v_pay.amount_paid)::bigint
  end;
  v_delta := v_target - v_pay.clawed_back;
  v_reason := jsonb_build_object('reason', case when v_pay.disputed then 'stripe_dispute' else 'stripe_refund' end);
  if v_delta > 0 then
    -- Take back what is still there, the pack's own credits first, then the rest of the balance
    -- in spend order; credits already spent are recorded as the shortfall.
    v_take := least(v_delta, creditkit.spendable(v_pay.account_id, v_pay.unit));
    if v_take > 0 then
      if v_live then
        v_from_grant := least(v_take, v_grant.remaining);
        update creditkit.grants g set remaining = g.remaining - v_from_grant where g.account_id = v_grant.account_id and g.id = v_grant.id;
      end if;
      if v_take > v_from_grant then
        perform creditkit.draw_down(v_pay.account_id, v_pay.unit, v_take - v_from_grant, p_now);
      end if;
      perform creditkit.append_entry(v_pay.account_id, v_pay.unit, 'adjust', -v_take, null, null, null,
                                     v_metadata || v_reason, p_now, null);
    end if;
    update creditkit.stripe_payments p
       set clawed_back = v_target, shortfall = p.shortfall + (v_delta - v_take),
           taken_from_grant = p.taken_from_grant + v_from_grant, updated_at = p_now
     where p.id = p_payment_id;
    v_effect := ltrim(v_effect || format('; took back %s %s', v_take, v_pay.unit) ||
                      case when v_delta > v_take then format(' (%s already spent)', v_delta - v_take) else '' end, '; ');
  elsif v_delta < 0 then
    -- A dispute reinstated: give back what was taken; the part that had been spent was never taken.
    v_forgiven := least(v_pay.shortfall, -v_delta);
    v_back := -v_delta - v_forgiven;
    if v_back > 0 then
      if (select a.balance from creditkit.accounts a where a.id = v_pay.account_id and a.unit = v_pay.unit) > 9007199254740991 - v_back then
        perform creditkit.stripe_dead('balance_limit', 'giving the credits back would take the balance above 9007199254740991');
      end if;
      v_reason := jsonb_build_object('reason', 'stripe_reinstated');
      -- Into the pack's bucket, as much as was taken from it (while it lasts) ...
      if v_live then
        v_to_grant := least(v_back, v_pay.taken_from_grant);
      end if;
      if v_to_grant > 0 then
        update creditkit.grants g set remaining = g.remaining + v_to_grant where g.account_id = v_grant.account_id and g.id = v_grant.id;
        perform creditkit.append_entry(v_pay.account_id, v_pay.unit, 'adjust', v_to_grant, v_grant.id, null, null,
                                       v_metadata || v_reason, p_now, v_grant.expires_at);
      end if;
      -- ... and the rest as a bucket of its own.
      if v_back > v_to_grant then
        v_grant_id := creditkit.add_grant(v_pay.account_id, v_pay.unit, 'adjustment', v_back - v_to_grant, null, null,
                                          v_metadata || v_reason, p_now);
        perform creditkit.append_entry(v_pay.account_id, v_pay.unit, 'adjust', v_back - v_to_grant, v_grant_id, null, null,
                                       v_metadata || v_reason, p_now, null);
      end if;
    end if;
    update creditkit.stripe_payments p
       set clawed_back = v_target, shortfall = p.shortfall - v_forgiven,
           taken_from_grant = p.taken_from_grant - least(p.taken_from_grant, v_back), updated_at = p_now
     where p.id = p_payment_id;
    v_effect := ltrim(v_effect || format('; gave back %s %s', v_back, v_pay.unit), '; ');
  end if;
  return coalesce(nullif(v_effect, ''), 'nothing to change');
end;
$$;
comment on function creditkit.stripe_settle_payment(bigint, timestamptz) is
  'Grants a paid pack payment once and moves the ledger to what its refunds and disputes call for.';
revoke all on function creditkit.stripe_settle_payment(bigint, timestamptz) from public, anon, authenticated, service_role;

-- Records plan and status from an event of subscription p_subscription_id, unless the state
-- already applied is newer. Events are ordered by (created, rank, event id): `created` is whole
-- seconds and several events of one subscription often share a second, so the type's rank and
-- then the event id break ties the same way whatever the delivery order. The checkout (rank 0)
-- is overridden by any event of its subscription. An event of another subscription than the
-- account's current one replaces it only when it is newer and live: ending an old subscription
-- never ends the current one. The caller holds the account's locks (stripe_lock_account); when the
-- plan in force or the anchor changes, every unit's allowance is re-based. Returns whether it applied.
create or replace function creditkit.stripe_upsert_subscription(
  p_account_id uuid, p_subscription_id text, p_customer_id text, p_plan_id text, p_status text,
  p_anchor timestamptz, p_created timestamptz, p_rank smallint, p_event_id text, p_now timestamptz)
returns boolean
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_sub creditkit.subscriptions;
  v_newer boolean;
  v_before text := (creditkit.effective_plan(p_account_id)).id;
begin
  perform creditkit.stripe_link_customer(p_account_id, p_customer_id, p_now);
  select s.* into v_sub from creditkit.subscriptions s where s.account_id = p_account_id;
  v_newer := coalesce(not found or v_sub.stripe_event_at is null
                      or (p_created, p_rank, p_event_id) > (v_sub.stripe_event_at, v_sub.stripe_event_rank, v_sub.stripe_event_id),
                      false);
  if found and v_sub.stripe_subscription_id = p_subscription_id then
    if not v_newer and v_sub.stripe_event_rank > 0 then
      -- a newer event already set plan and status; an older one may still know an earlier start
      update creditkit.subscriptions s set anchor = p_anchor, updated_at = p_now
       where s.account_id = p_account_id and p_anchor < s.anchor;
      return false;
    end if;
    update creditkit.subscriptions s
       set plan_id = p_plan_id, status = p_status, anchor = least(s.anchor, p_anchor),
           stripe_customer_id = coalesce(p_customer_id, s.stripe_customer_id),
           stripe_event_at = p_created, stripe_event_rank = p_rank, stripe_event_id = p_event_id, updated_at = p_now
     where s.account_id = p_account_id;
  else
    if found and v_sub.stripe_subscription_id is not null
       and (not v_newer or p_status not in ('active', 'trialing', 'past_due')) then
      return false;  -- another subscription is the account's current one
    end if;
    insert into creditkit.subscriptions as s (account_id, plan_id, status, anchor, period_index, renews_at,
                                              stripe_customer_id, stripe_subscription_id,
                                              stripe_event_at, stripe_event_rank, stripe_event_id, updated_at)
    values (p_account_id, p_plan_id, p_status, p_anchor, 0, null, p_customer_id, p_subscription_id,
            p_created, p_rank, p_event_id, p_now)
    on conflict (account_id) do update
       set plan_id = excluded.plan_id, status = excluded.status, anchor = excluded.anchor, period_index = 0,
           stripe_customer_id = excluded.stripe_customer_id, stripe_subscription_id = excluded.stripe_subscription_id,
           stripe_event_at = excluded.stripe_event_at, stripe_event_rank = excluded.stripe_event_rank,
           stripe_event_id = excluded.stripe_event_id, updated_at = excluded.updated_at;
  end if;
  perform creditkit.refresh_due_at(p_account_id, 'credits');
  if (creditkit.effective_plan(p_account_id)).id is distinct from v_before
     or (select s.anchor from creditkit.subscriptions s where s.account_id = p_account_id) is distinct from v_sub.anchor then
    perform creditkit.rebase_units(p_account_id, p_now);
  end if;
  return true;
end;
$$;
comment on function creditkit.stripe_upsert_subscription(uuid, text, text, text, text, timestamptz, timestamptz, smallint, text, timestamptz) is
  'Records a Stripe subscription''s plan and status unless a newer event already did; returns whether it applied.';
revoke all on function creditkit.stripe_upsert_subscription(uuid, text, text, text, text, timestamptz, timestamptz, smallint, text, timestamptz) from public, anon, authenticated, service_role;

-- invoice.paid: creation and each renewal start a period; its allowance is granted once, and
-- every paid invoice records its revenue once, whatever the order they arrive in. The newest
-- period's invoice ends the periods before it: their unspent allowance expires (reset) or carries
-- over up to the cap (rollover). An older period's invoice arriving after a newer one is late: its
-- allowance is granted and what a rollover would have carried into the newer period (it still
-- ends after now, up to the cap with what that period already carries) joins it, the rest expires
-- at once; under a reset plan all of it. So the same invoices in any order end in the same credit
-- per expiry, and the same revenue. The payment is recorded too, so that a refund or dispute of
-- it claws the allowance back as for a pack.
create or replace function creditkit.stripe_invoice_paid(p_event jsonb, p_object jsonb, p_now timestamptz, out account_id uuid, out effect text)
returns record
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_invoice text := p_object ->> 'id';
  v_reason text := p_object ->> 'billing_reason';
  -- Both invoice shapes: `subscription` (API versions before 2025-03) and `parent.subscription_details`.
  v_sub_id text := coalesce(creditkit.stripe_id(p_object #> '{parent,subscription_details,subscription}'),
                            creditkit.stripe_id(p_object -> 'subscription'));
  v_metadata jsonb := coalesce(p_object #> '{parent,subscription_details,metadata}',
                               p_object #> '{subscription_details,metadata}', '{}');
  v_customer text := creditkit.stripe_id(p_object -> 'customer');
  v_line jsonb := p_object #> '{lines,data,0}';
  v_price text := coalesce(creditkit.stripe_id(v_line #> '{pricing,price_details,price}'),
                           creditkit.stripe_id(v_line -> 'price'));
  -- The line's period: the invoice's own period_start/period_end is the period before it.
  v_start timestamptz := creditkit.stripe_time(v_line #> '{period,start}');
  v_end timestamptz := creditkit.stripe_time(v_line #> '{period,end}');
  -- What paid it: older API versions name the payment intent on the invoice, newer ones list it
  -- under payments (or send invoice_payment.paid, which links the two).
  v_pi text := coalesce(creditkit.stripe_id(p_object -> 'payment_intent'),
                        creditkit.stripe_id(p_object #> '{payments,data,0,payment,payment_intent}'));
  v_paid bigint := coalesce((p_object ->> 'amount_paid')::bigint, 0);
  v_plan creditkit.plans;
  v_current creditkit.stripe_invoices;  -- the newest period applied before this one
  v_cap bigint;
  v_left bigint := 0;
  v_carry bigint := 0;
  v_allowance bigint;
  v_grant_id bigint;
  v_expires timestamptz;
  v_grant_metadata jsonb;
  v_payment bigint;
begin
  if v_sub_id is null then
    effect := 'not a subscription invoice; nothing to do';
    return;
  end if;
  if v_reason is null or v_reason not in ('subscription_create', 'subscription_cycle') then
    effect := format('billing_reason %s starts no period; nothing granted', coalesce(v_reason, 'NULL'));
    return;
  end if;
  if v_invoice is null then
    perform creditkit.stripe_dead('invalid_event', 'invoice without an id');
  end if;
  account_id := creditkit.stripe_subscription_account(v_metadata, v_sub_id, v_customer);
  v_plan := creditkit.stripe_plan_for_price(v_price);
  if v_start is null or v_end is null or v_end <= v_start then
    perform creditkit.stripe_dead('invalid_event', 'invoice line without a period');
  end if;

  perform creditkit.stripe_lock_payment(array[v_invoice, v_pi]);
  perform creditkit.stripe_lock_account(account_id, p_now);
  if exists (select 1 from creditkit.stripe_invoices i where i.invoice_id = v_invoice) then
    effect := 'invoice already applied';
    return;
  end if;

  -- Plan and status as of this invoice, unless a newer subscription event already set them.
  perform creditkit.stripe_upsert_subscription(account_id, v_sub_id, v_customer, v_plan.id, 'active', v_start,
                                               creditkit.stripe_time(p_event -> 'created'), 1::smallint,
                                               p_event ->> 'id', p_now);

  select i.* into v_current from creditkit.stripe_invoices i
   where i.account_id = stripe_invoice_paid.account_id
   order by i.period_start desc, i.invoice_id desc limit 1;
  v_grant_metadata := jsonb_build_object('source', 'stripe', 'stripe_invoice', v_invoice,
                                         'subscription', v_sub_id, 'plan_id', v_plan.id,
                                         'period_start', v_start, 'period_end', v_end, 'allowance', v_plan.allowance);
  v_allowance := least(v_plan.allowance,
                       9007199254740991 - (select a.balance from creditkit.accounts a where a.id = stripe_invoice_paid.account_id and a.unit = 'credits'));

  if v_current.invoice_id is null or v_current.period_start < v_start then
    -- The newest period: the periods before it end now; their unspent allowance expires (reset)
    -- or carries over up to the cap (rollover). What they keep for open holds (book_expired) is
    -- payable to those holds, so it does not carry too.
    if v_plan.renewal = 'rollover' then
      select coalesce(sum(g.remaining), 0) into v_left
        from creditkit.grants g
       where g.account_id = stripe_invoice_paid.account_id and g.unit = 'credits' and g.category = 'plan' and g.remaining > 0
         and g.metadata ? 'stripe_invoice' and (g.expires_at is null or g.expires_at > p_now);
    end if;
    update creditkit.grants g set expires_at = p_now
     where g.account_id = stripe_invoice_paid.account_id and g.unit = 'credits' and g.category = 'plan' and g.remaining > 0
       and g.metadata ? 'stripe_invoice' and (g.expires_at is null or g.expires_at > p_now);
    perform creditkit.book_expired(account_id, 'credits', p_now);
    if v_plan.renewal = 'rollover' then
      select greatest(v_left - coalesce(sum(g.remaining), 0), 0) into v_left
        from creditkit.grants g
       where g.account_id = stripe_invoice_paid.account_id and g.unit = 'credits' and g.category = 'plan' and g.remaining > 0
         and g.metadata ? 'stripe_invoice' and g.expires_at = p_now;
      v_carry := least(v_left, coalesce(v_plan.rollover_cap, 9007199254740991));
    end if;
    v_carry := least(v_carry, 9007199254740991 - (select a.balance from creditkit.accounts a where a.id = stripe_invoice_paid.account_id and a.unit = 'credits') - v_allowance);
    v_expires := v_end + creditkit.stripe_allowance_grace();
    if v_allowance + v_carry > 0 then
      v_grant_id := creditkit.add_grant(account_id, 'credits', 'plan', v_allowance + v_carry, null, v_expires,
                                        v_grant_metadata || jsonb_build_object('rollover', v_carry), p_now);
      perform creditkit.append_entry(account_id, 'credits', 'grant', v_allowance + v_carry, v_grant_id, null,
                                     'stripe:' || v_invoice, v_grant_metadata || jsonb_build_object('rollover', v_carry),
                                     p_now, v_expires, null, least(v_paid * 10000, 9007199254740991));
    end if;
    insert into creditkit.stripe_invoices (invoice_id, account_id, subscription_id, plan_id, billing_reason,
                                           period_start, period_end, grant_id, outcome, carried, applied_at)
    values (v_invoice, account_id, v_sub_id, v_plan.id, v_reason, v_start, v_end, v_grant_id,
            case when v_allowance + v_carry > 0 then 'granted' else 'no_allowance' end, v_carry, p_now);
    effect := format('period %s to %s on %s: %s credits', v_start, v_end, v_plan.id, v_allowance + v_carry);
  else
    -- Late: a newer period is already applied. What a rollover would have carried into it joins
    -- it, as far as its plan's cap allows; the rest expires at once.
    if v_plan.renewal = 'rollover' and v_end + creditkit.stripe_allowance_grace() > p_now then
      select least(v_allowance, greatest(coalesce(p.rollover_cap, 9007199254740991) - v_current.carried
                                         - coalesce((select sum(i.carried) from creditkit.stripe_invoices i
                                                      where i.account_id = stripe_invoice_paid.account_id
                                                        and i.rolled_into = v_current.invoice_id), 0), 0))
        into v_carry
        from creditkit.plans p where p.id = v_current.plan_id and p.renewal = 'rollover';
      v_carry := coalesce(v_carry, 0);
    end if;
    if v_allowance > 0 then
      v_expires := case when v_carry > 0 then v_current.period_end + creditkit.stripe_allowance_grace() else p_now end;
      v_grant_metadata := v_grant_metadata || jsonb_build_object('rolled_into', v_current.invoice_id);
      v_grant_id := creditkit.add_grant(account_id, 'credits', 'plan', v_allowance, null, v_expires, v_grant_metadata, p_now);
      perform creditkit.append_entry(account_id, 'credits', 'grant', v_allowance, v_grant_id, null, 'stripe:' || v_invoice,
                                     v_grant_metadata, p_now, v_expires, null, least(v_paid * 10000, 9007199254740991));
      if v_allowance > v_carry then
        update creditkit.grants g set remaining = g.remaining - (v_allowance - v_carry)
         where g.account_id = stripe_invoice_paid.account_id and g.id = v_grant_id;
        perform creditkit.append_entry(account_id, 'credits', 'expire', -(v_allowance - v_carry), v_grant_id, null, null,
                                       jsonb_build_object('expires_at', v_end + creditkit.stripe_allowance_grace(),
                                                          'reason', 'late_invoice'), p_now, null);
      end if;
      perform creditkit.refresh_due_at(account_id, 'credits');
    end if;
    insert into creditkit.stripe_invoices (invoice_id, account_id, subscription_id, plan_id, billing_reason,
                                           period_start, period_end, grant_id, outcome, carried, rolled_into, applied_at)
    values (v_invoice, account_id, v_sub_id, v_plan.id, v_reason, v_start, v_end, v_grant_id,
            case when v_allowance > 0 then 'late' else 'no_allowance' end, v_carry, v_current.invoice_id, p_now);
    effect := format('late: period %s to %s on %s after a newer one: %s credits, %s of them carried into that period',
                     v_start, v_end, v_plan.id, greatest(v_allowance, 0), v_carry);
  end if;

  -- The payment, for refunds and disputes: what this invoice's allowance was, and the bucket it
  -- is in (a claw-back takes from it first).
  if v_allowance > 0 then
    v_payment := creditkit.stripe_payment(v_pi, null, v_invoice);
    update creditkit.stripe_payments p
       set account_id = coalesce(p.account_id, stripe_invoice_paid.account_id), credits = coalesce(p.credits, v_allowance),
           amount_paid = coalesce(p.amount_paid, v_paid), currency = coalesce(p.currency, p_object ->> 'currency'),
           state = 'paid', grant_id = coalesce(p.grant_id, v_grant_id), updated_at = p_now
     where p.id = v_payment;
    perform creditkit.stripe_settle_payment(v_payment, p_now);
  end if;
end;
$$;
comment on function creditkit.stripe_invoice_paid(jsonb, jsonb, timestamptz) is
  'Applies invoice.paid: a subscription_create or subscription_cycle invoice grants its period''s allowance once, in any order, and records its payment.';

-- Security definer: writes the kit's tables, which no client role may write; service_role only.
create or replace function public.creditkit_consume_batch(
  p_events jsonb,
  p_now timestamptz default now(),
  p_unit text default 'credits')
returns table (ordinal integer, allowed boolean, balance bigint, transaction_id bigint)
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
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
  if p_unit is distinct from 'credits' then
    perform creditkit.check_unit(p_unit);  -- (raises CK015)
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
     where a.id = v_one and a.unit = p_unit and a.balance - a.held >= v_total and (a.due_at is null or a.due_at > p_now)
    returning a.balance + v_total, a.held into v_stored_one, v_held;
    v_fast := found;
    if v_fast and v_keyed > 0 then
      -- Under the row lock every earlier write of this account's ledger is visible: a key used
      -- before makes this a (partial) replay, which the general path answers; undo the debit.
      perform from creditkit.ledger_keys k where k.account_id = v_one and k.idempotency_key = any(v_fast_keys);
      if found then
        update creditkit.accounts a
           set balance = a.balance + v_total, undrawn = a.undrawn - v_total, version = a.version - v_count
         where a.id = v_one and a.unit = p_unit;
        v_fast := false;
      end if;
    end if;
    if v_fast then
      return query
        with written as (
          insert into creditkit.ledger (account_id, kind, amount, balance_after, event, idempotency_key,
                                        cost_micros, metadata, created_at, unit)
          select v_one, 'consume', -r.amount,
                 v_stored_one - creditkit.running_sum(r.amount) over (order by r.ordinality rows unbounded preceding),
                 r.event, r.idempotency_key, r.cost_micros, coalesce(r.metadata, '{}'::jsonb), p_now, p_unit
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

  -- 2. Lock every account's row of the unit in one fixed order, by id (CK003 for an unknown account;
  -- a known one with nothing in the unit spends nothing, as creditkit_consume answers), and take
  -- its spendable and stored balance under the lock. Like creditkit_consume's fast path, the
  -- batch never reads a bucket: while nothing is due it leaves what the account has not drawn
  -- yet (undrawn) where it is and adds to it; only an account with something due goes through
  -- lock_account, which books it (drawing first).
  select array_agg(d.id order by d.id) into v_ids from (select distinct a.id from unnest(v_accounts) a(id)) d;
  for v_s in 1 .. cardinality(v_ids) loop
    select a.balance, a.held, a.due_at <= p_now into v_stored_one, v_held, v_due
      from creditkit.accounts a where a.id = v_ids[v_s] and a.unit = p_unit
       for update;
    v_draw[v_s] := false;
    v_due := coalesce(v_due, false);
    if not found then
      -- (another unit's row opens on its plan limit; a known account without one is blocked, with
      -- no row to write; an unknown account is CK003)
      v_due := p_unit = 'credits' or creditkit.unit_row_ready(v_ids[v_s], p_unit, p_now);
      if not v_due then
        v_spendable[v_s] := 0;
        v_stored[v_s] := 0;
        continue;
      end if;
    end if;
    if v_due then
      v_spendable[v_s] := creditkit.lock_account(v_ids[v_s], p_unit, p_now);  -- (raises CK003 if not found)
      -- Still due after booking: expired credit stays for open holds (book_expired). What the
      -- batch spends must not come out of it, so it is drawn now, from the credit not expired,
      -- as creditkit_consume's slow path draws, instead of being left to the next draw.
      select a.balance, a.due_at <= p_now into v_stored_one, v_due
        from creditkit.accounts a where a.id = v_ids[v_s] and a.unit = p_unit;
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
           -- (a key used in another unit names another request: its kind reads consume:<unit>)
           array_agg(l.id order by x.i), array_agg(l.kind || case when l.unit <> p_unit then ':' || l.unit else '' end order by x.i),
           array_agg(l.amount order by x.i),
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
     where a.id = t.id and a.unit = p_unit;
    perform creditkit.draw_down(t.id, p_unit, t.spent, p_now)
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
                                      cost_micros, metadata, created_at, unit)
        overriding system value
        select v_tx[x.i], x.account_id, 'consume', -x.amount, v_stored[x.slot] - x.cum, x.event, x.key, x.cost,
               coalesce(x.meta, '{}'::jsonb), p_now, p_unit
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
     where a.id = t.id and a.unit = p_unit and t.n > 0;
    perform creditkit.draw_down(t.id, p_unit, t.spent, p_now)
       from unnest(v_ids, v_spent, v_draw) t(id, spent, draw) where t.draw and t.spent > 0;
    insert into creditkit.ledger (id, account_id, kind, amount, balance_after, event, idempotency_key,
                                  cost_micros, metadata, created_at, unit)
    overriding system value
    select x.tx, x.account_id, 'consume', -x.amount, x.after, x.event, x.key, x.cost, coalesce(x.meta, '{}'::jsonb), p_now, p_unit
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
comment on function public.creditkit_consume_batch(jsonb, timestamptz, text) is
  'Server only. Spends p_unit (default credits) for 1 to 1000 usage events in one transaction: p_events is a JSON array of {account_id, amount, event?, idempotency_key?, metadata?, cost_micros?}, and each event is applied in order exactly as creditkit_consume would apply it in that unit, answering one row per event (ordinal from 1, allowed, balance, transaction_id). Any invalid event fails the whole call and changes nothing; a blocked event is allowed=false. Idempotent per event by key.';
revoke all on function public.creditkit_consume_batch(jsonb, timestamptz, text) from public, anon, authenticated;
grant execute on function public.creditkit_consume_batch(jsonb, timestamptz, text) to service_role;

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

create or replace function public.creditkit_upsert_pack(
  p_id text,
  p_name text,
  p_credits bigint,
  p_price_amount bigint default 0,
  p_currency text default 'usd',
  p_stripe_price_id text default null,
  p_expires_after interval default null,
  p_active boolean default true,
  p_unit text default 'credits')
returns jsonb
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_pack creditkit.packs;
begin
  perform creditkit.assert_server_caller();
  if p_id is null or p_id !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' then
    raise exception using errcode = 'CK006', message = 'invalid argument: pack id must match ^[a-z0-9][a-z0-9_.-]{0,62}$';
  end if;
  if p_name is null or p_name !~ '[^[:space:]]' or length(p_name) > 200 then
    raise exception using errcode = 'CK006', message = 'invalid argument: pack name must be 1 to 200 characters, not blank';
  end if;
  perform creditkit.check_amount(p_credits);
  if p_price_amount is null or p_price_amount < 0 or p_price_amount > 9007199254740991 then
    raise exception using errcode = 'CK001', message = 'invalid amount: price_amount must be an integer from 0 to 9007199254740991';
  end if;
  if p_currency is null or p_currency !~ '^[a-z]{3}$' then
    raise exception using errcode = 'CK006', message = 'invalid argument: currency must be three lowercase letters';
  end if;
  if p_stripe_price_id is not null and p_stripe_price_id !~ '^[[:alnum:]_]{1,255}$' then
    raise exception using errcode = 'CK006', message = 'invalid argument: stripe price id must be 1 to 255 letters, digits or _';
  end if;
  if p_stripe_price_id is not null
     and exists (select 1 from creditkit.packs k where k.stripe_price_id = p_stripe_price_id and k.id <> p_id) then
    raise exception using errcode = 'CK006', message = format('invalid argument: Stripe price %s belongs to another pack', p_stripe_price_id);
  end if;
  -- Bounded so that purchase time + expiry is always a valid timestamp.
  if p_expires_after is not null and (p_expires_after <= interval '0' or p_expires_after > interval '100 years') then
    raise exception using errcode = 'CK006', message = 'invalid argument: expires_after must be positive and at most 100 years';
  end if;
  if p_active is null then
    raise exception using errcode = 'CK006', message = 'invalid argument: active must not be NULL';
  end if;
  perform creditkit.check_unit(p_unit);
  insert into creditkit.packs as k (id, name, credits, price_amount, currency, stripe_price_id, expires_after, active, unit)
  values (p_id, p_name, p_credits, p_price_amount, p_currency, p_stripe_price_id, p_expires_after, p_active, p_unit)
  on conflict (id) do update
     set name = excluded.name, credits = excluded.credits, price_amount = excluded.price_amount,
         currency = excluded.currency, stripe_price_id = excluded.stripe_price_id,
         expires_after = excluded.expires_after, active = excluded.active, unit = excluded.unit
  returning * into v_pack;
  return to_jsonb(v_pack);
exception when unique_violation then
  -- a concurrent upsert took the price id between the check and the insert
  raise exception using errcode = 'CK006', message = format('invalid argument: Stripe price %s belongs to another pack', p_stripe_price_id);
end;
$$;
comment on function public.creditkit_upsert_pack(text, text, bigint, bigint, text, text, interval, boolean, text) is
  'Server only. Creates or updates a pack: the amount (p_credits) of p_unit (default credits) it tops up, price, Stripe price id and optional expiry after purchase. A payment already recorded keeps the amount and unit it was sold with.';
revoke all on function public.creditkit_upsert_pack(text, text, bigint, bigint, text, text, interval, boolean, text) from public, anon, authenticated;
grant execute on function public.creditkit_upsert_pack(text, text, bigint, bigint, text, text, interval, boolean, text) to service_role;

create function public.creditkit_packs()
returns table (id text, name text, credits bigint, price_amount bigint, currency text,
               stripe_price_id text, expires_after interval, unit text)
language sql
stable
security invoker
set search_path = ''
set enable_seqscan = off
as $$
  select k.id, k.name, k.credits, k.price_amount, k.currency, k.stripe_price_id, k.expires_after, k.unit
    from creditkit.packs k
   where k.active
   order by k.price_amount, k.id;
$$;
comment on function public.creditkit_packs() is
  'Server and signed-in users. The active packs (credits is the amount of unit each tops up), cheapest first.';
revoke all on function public.creditkit_packs() from public, anon, authenticated, service_role;
grant execute on function public.creditkit_packs() to authenticated, service_role;

-- checkout.session.completed / async_payment_succeeded / async_payment_failed, mode payment.
create or replace function creditkit.stripe_pack_checkout(p_event jsonb, p_object jsonb, p_now timestamptz, out account_id uuid, out effect text)
returns record
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_pack creditkit.packs;
  v_session text := p_object ->> 'id';
  v_pi text := creditkit.stripe_id(p_object -> 'payment_intent');
  v_payment bigint;
  v_paid boolean;
  v_failed boolean := p_event ->> 'type' = 'checkout.session.async_payment_failed';
begin
  account_id := coalesce(creditkit.stripe_uuid(p_object -> 'metadata' ->> 'account_id'),
                         creditkit.stripe_uuid(p_object ->> 'client_reference_id'));
  if account_id is null then
    perform creditkit.stripe_dead('unknown_account', 'checkout session without a creditkit account id in metadata.account_id');
  end if;
  select k.* into v_pack from creditkit.packs k
   where k.id = p_object -> 'metadata' ->> 'pack_id'
      or k.stripe_price_id = p_object -> 'metadata' ->> 'price_id'
   order by k.id = p_object -> 'metadata' ->> 'pack_id' desc
   limit 1;
  if not found then
    perform creditkit.stripe_dead('unknown_pack', format('no pack %s (price %s) in creditkit.packs',
      coalesce(p_object -> 'metadata' ->> 'pack_id', 'NULL'), coalesce(p_object -> 'metadata' ->> 'price_id', 'NULL')));
  end if;
  if v_session is null then
    perform creditkit.stripe_dead('invalid_event', 'checkout session without an id');
  end if;

  -- One payment per Checkout Session, whichever of its events (completed, async succeeded or
  -- failed) arrives first and whether or not it already names its payment intent.
  perform creditkit.stripe_lock_payment(array[v_session, v_pi]);
  perform creditkit.stripe_lock_account(account_id, p_now);
  perform creditkit.stripe_link_customer(account_id, creditkit.stripe_id(p_object -> 'customer'), p_now);
  v_payment := creditkit.stripe_payment(v_pi, v_session, null);

  v_paid := p_event ->> 'type' = 'checkout.session.async_payment_succeeded'
            or p_object ->> 'payment_status' in ('paid', 'no_payment_required');
  -- What the payment bought is fixed by the first checkout event seen; a refund or dispute seen
  -- first only recorded the payment intent. Paid is final: a late "failed" or "unpaid" never undoes it.
  update creditkit.stripe_payments p
     set account_id = coalesce(p.account_id, stripe_pack_checkout.account_id), pack_id = coalesce(p.pack_id, v_pack.id),
         credits = coalesce(p.credits, v_pack.credits),
         unit = case when p.credits is null then v_pack.unit else p.unit end,
         amount_paid = coalesce(p.amount_paid, (p_object ->> 'amount_total')::bigint, v_pack.price_amount),
         currency = coalesce(p.currency, p_object ->> 'currency'),
         state = case when p.state = 'paid' or v_paid then 'paid' when v_failed then 'failed' else p.state end,
         updated_at = p_now
   where p.id = v_payment;
  if v_failed then
    effect := 'async payment failed; nothing granted';
    if (select p.state from creditkit.stripe_payments p where p.id = v_payment) = 'paid' then
      effect := 'async payment failed after it was recorded as paid; nothing changed';
    end if;
    return;
  end if;
  effect := creditkit.stripe_settle_payment(v_payment, p_now);
  if effect like 'recorded;%' then
    effect := 'awaiting the asynchronous payment; nothing granted yet';
  end if;
end;
$$;
comment on function creditkit.stripe_pack_checkout(jsonb, jsonb, timestamptz) is
  'Applies a pack checkout event: records the payment (one per Checkout Session), grants it once paid.';
revoke all on function creditkit.stripe_pack_checkout(jsonb, jsonb, timestamptz) from public, anon, authenticated, service_role;

-- The payment that any of these ids names, made one: a new row when none does; when two rows name
-- it (each id seen first by a different event), their facts merged into the older and the newer
-- deleted. The caller holds the ids' locks (stripe_lock_payment). Facts of a payment are only ever
-- learnt: an id, what it bought and who paid are kept once known; refunds grow; the newest
-- dispute decides (the reinstatement on a tie); paid is final. Returns the row's id.
create or replace function creditkit.stripe_payment(p_payment_intent text, p_checkout_session text, p_invoice text)
returns bigint
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_rows bigint[];
  v_keep bigint;
  v_other creditkit.stripe_payments;
begin
  select array_agg(p.id order by p.id) into v_rows
    from creditkit.stripe_payments p
   where p.payment_intent = p_payment_intent or p.checkout_session = p_checkout_session or p.invoice = p_invoice;
  if v_rows is null then
    insert into creditkit.stripe_payments (payment_intent, checkout_session, invoice)
    values (p_payment_intent, p_checkout_session, p_invoice)
    returning id into v_keep;
    return v_keep;
  end if;
  v_keep := v_rows[1];
  for i in 2 .. cardinality(v_rows) loop
    delete from creditkit.stripe_payments p where p.id = v_rows[i] returning * into v_other;
    update creditkit.stripe_payments p
       set payment_intent = coalesce(p.payment_intent, v_other.payment_intent),
           checkout_session = coalesce(p.checkout_session, v_other.checkout_session),
           invoice = coalesce(p.invoice, v_other.invoice),
           account_id = coalesce(p.account_id, v_other.account_id),
           pack_id = coalesce(p.pack_id, v_other.pack_id),
           credits = coalesce(p.credits, v_other.credits),
           unit = case when p.credits is null then v_other.unit else p.unit end,
           amount_paid = coalesce(p.amount_paid, v_other.amount_paid),
           currency = coalesce(p.currency, v_other.currency),
           state = case when 'paid' in (p.state, v_other.state) then 'paid'
                        when 'failed' in (p.state, v_other.state) then 'failed' else 'pending' end,
           grant_id = coalesce(p.grant_id, v_other.grant_id),
           amount_refunded = greatest(p.amount_refunded, v_other.amount_refunded),
           disputed = case when v_other.dispute_at > p.dispute_at or p.dispute_at is null then v_other.disputed
                           when v_other.dispute_at = p.dispute_at then p.disputed and v_other.disputed
                           else p.disputed end,
           dispute_at = greatest(p.dispute_at, v_other.dispute_at),
           -- only a row that was granted (it knew the account) has taken anything back
           clawed_back = p.clawed_back + v_other.clawed_back,
           shortfall = p.shortfall + v_other.shortfall,
           taken_from_grant = p.taken_from_grant + v_other.taken_from_grant
     where p.id = v_keep;
  end loop;
  -- ids this event adds (the first one seen of each kind stays)
  update creditkit.stripe_payments p
     set payment_intent = coalesce(p.payment_intent, p_payment_intent),
         checkout_session = coalesce(p.checkout_session, p_checkout_session),
         invoice = coalesce(p.invoice, p_invoice)
   where p.id = v_keep
     and (p.payment_intent is null and p_payment_intent is not null
          or p.checkout_session is null and p_checkout_session is not null
          or p.invoice is null and p_invoice is not null);
  return v_keep;
end;
$$;
comment on function creditkit.stripe_payment(text, text, text) is
  'The stripe_payments row any of these ids names (payment intent, checkout session, invoice), created or merged into one; the caller holds their locks.';
revoke all on function creditkit.stripe_payment(text, text, text) from public, anon, authenticated, service_role;

-- Usage and margin per unit (feature). A usage row counts for the feature it paid for: an overage
-- row is a credits row that stood in for another unit (metadata.overage), so its call and cost
-- count for that unit, and its credits as the unit's overage_credits, not as credits spent.
create or replace function public.creditkit_unit_usage(
  p_from timestamptz,
  p_to timestamptz,
  p_account_id uuid default null)
returns table (unit text, calls bigint, spent bigint, overage_credits bigint, granted bigint, revenue_micros bigint,
               cost_micros bigint, margin_micros bigint)
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
  perform creditkit.check_period(p_from, p_to);
  return query
    with rows as (
      select coalesce(case when l.kind = 'consume' and l.unit = 'credits' then l.metadata ->> 'overage' end, l.unit) as feature,
             (l.kind = 'consume' and l.unit = 'credits' and l.metadata ? 'overage') as overage,
             l.kind, l.amount, l.revenue_micros, l.cost_micros
        from creditkit.ledger l
       where l.created_at >= p_from and l.created_at < p_to
         and (p_account_id is null or l.account_id = p_account_id)
    )
    select r.feature,
           count(*) filter (where r.kind = 'consume')::bigint,
           coalesce(-sum(r.amount) filter (where r.kind = 'consume' and not r.overage), 0)::bigint,
           coalesce(-sum(r.amount) filter (where r.overage), 0)::bigint,
           coalesce(sum(r.amount) filter (where r.kind = 'grant'), 0)::bigint,
           coalesce(sum(r.revenue_micros), 0)::bigint,
           coalesce(sum(r.cost_micros), 0)::bigint,
           (coalesce(sum(r.revenue_micros), 0) - coalesce(sum(r.cost_micros), 0))::bigint
      from rows r
     group by r.feature
     order by r.feature <> 'credits', r.feature;
end;
$$;
comment on function public.creditkit_unit_usage(timestamptz, timestamptz, uuid) is
  'Server only. Per unit over [p_from, p_to) (optionally for one account): usage calls, amount spent of the unit, credits spent as its overage, amount granted, revenue, cost and margin in micros. An overage call counts for the unit it stood in for. Credits first, then by unit.';
revoke all on function public.creditkit_unit_usage(timestamptz, timestamptz, uuid) from public, anon, authenticated;
grant execute on function public.creditkit_unit_usage(timestamptz, timestamptz, uuid) to service_role;

-- The anchor a unit's plan-limit periods count from: the live subscription's to that plan, else
-- p_now (an account on the default plan without one counts from when its row opens).
create or replace function creditkit.allowance_anchor(p_account_id uuid, p_plan_id text, p_now timestamptz)
returns timestamptz
language sql
stable
security invoker
set search_path = ''
as $$
  select coalesce((select s.anchor from creditkit.subscriptions s
                    where s.account_id = p_account_id and s.plan_id = p_plan_id
                      and s.status in ('active', 'trialing', 'past_due')), p_now);
$$;
comment on function creditkit.allowance_anchor(uuid, text, timestamptz) is
  'Where a unit''s plan-limit periods count from: the live subscription''s anchor on that plan, else p_now.';
revoke all on function creditkit.allowance_anchor(uuid, text, timestamptz) from public, anon, authenticated, service_role;
grant execute on function creditkit.allowance_anchor(uuid, text, timestamptz) to authenticated, service_role;

-- The app's policies set aside above, as they were.
do $$
declare
  v_policy record;
begin
  for v_policy in select * from creditkit_upgrade_policies loop
    execute v_policy.restore;
  end loop;
end;
$$;
drop table creditkit_upgrade_policies;

select creditkit.apply_settings();
