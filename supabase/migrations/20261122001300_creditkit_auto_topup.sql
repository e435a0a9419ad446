-- creditkit balance alerts and auto top-up. A debit that takes an (account, unit)'s spendable
-- balance to or below a threshold writes, in its own transaction, a balance event (low, depleted;
-- recovered once it is back above the threshold plus a hysteresis) and, when the customer turned
-- auto top-up on, one pending top-up. A worker charges the saved card off-session (a PaymentIntent
-- whose Stripe idempotency key is the top-up's), and the credits land only when
-- payment_intent.succeeded arrives through creditkit_stripe_apply, once, as a pack's would.
--
-- Cost on the hot path: one more condition in the debit's guarded UPDATE. accounts.alert_at holds
-- the level at which the row has anything to do (NULL: nothing is watched); a debit that would
-- reach it leaves the fast path, and a deferred constraint trigger on the slow paths' writes
-- queues work only for an update that reaches the level or raises the balance. The work runs at
-- commit on the row as it ends the transaction (so a debit undone in the same transaction, such as
-- a replayed key, triggers nothing).

-- ---------------------------------------------------------------------------------------------
-- The customer's card on file, as the Stripe webhook reports it
-- ---------------------------------------------------------------------------------------------

-- Payment methods the webhook has seen (payment_method.attached / detached), for the card on file
-- shown to the customer and to refuse methods that settle days later.
create table creditkit.stripe_payment_methods (
  id text primary key
    constraint stripe_payment_methods_id_format check (id ~ '^(pm|card|src|ba)_[A-Za-z0-9_]+$' and length(id) <= 255),
  customer_id text,
  type text,
  brand text,
  last4 text,
  exp_month integer,
  exp_year integer,
  detached boolean not null default false,
  updated_at timestamptz not null default now()
);
comment on table creditkit.stripe_payment_methods is 'Stripe payment methods seen on the webhook: type and card details, and whether it was detached.';

-- Each Stripe customer's default payment method for off-session charges: set by a completed
-- setup (setup_intent.succeeded), a payment saved for later (setup_future_usage) or the
-- customer's invoice_settings; the newest event by (created, id) wins, in any delivery order.
create table creditkit.stripe_default_methods (
  customer_id text primary key,
  payment_method text,
  event_at timestamptz not null,
  event_id text not null
);
comment on table creditkit.stripe_default_methods is 'The payment method auto top-up charges for each Stripe customer, from the newest webhook event that named one.';

-- Methods that confirm days after the charge (bank debits, vouchers): a top-up must land at once,
-- so auto top-up refuses them.
create or replace function creditkit.settles_later(p_type text)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select p_type in ('sepa_debit', 'us_bank_account', 'bacs_debit', 'au_becs_debit', 'acss_debit', 'nz_bank_account',
                    'sofort', 'boleto', 'oxxo', 'konbini', 'customer_balance', 'multibanco', 'pay_by_bank');
$$;
comment on function creditkit.settles_later(text) is 'Whether a Stripe payment method type settles days after the charge (refused for auto top-up).';
revoke all on function creditkit.settles_later(text) from public, anon, authenticated, service_role;

-- The card an account's auto top-up would charge: its customer's default method, unless detached.
create or replace function creditkit.card_on_file(p_account_id uuid,
  out customer_id text, out payment_method text, out type text, out details jsonb)
returns record
language sql
stable
set search_path = ''
as $$
  select c.customer_id, d.payment_method, m.type,
         case when d.payment_method is not null then jsonb_build_object(
           'id', d.payment_method, 'type', m.type, 'brand', m.brand, 'last4', m.last4,
           'exp_month', m.exp_month, 'exp_year', m.exp_year) end
    from creditkit.stripe_customers c
    left join creditkit.stripe_default_methods d on d.customer_id = c.customer_id
    left join creditkit.stripe_payment_methods m on m.id = d.payment_method
   where c.account_id = p_account_id
     and (m.detached is null or not m.detached);
$$;
comment on function creditkit.card_on_file(uuid) is
  'The Stripe customer and default payment method (id, type, card details) of an account; payment_method NULL when none or detached.';
revoke all on function creditkit.card_on_file(uuid) from public, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Configuration: the operator's terms, and the thresholds
-- ---------------------------------------------------------------------------------------------

-- What the operator allows per unit: the price of an amount in the unit, the bounds of a top-up
-- and of a threshold, default monthly caps, the cooldown between two charges, and the link a
-- customer follows to confirm a payment their bank wants to authenticate.
create table creditkit.auto_topup_terms (
  unit text primary key references creditkit.units (id),
  currency text not null
    constraint auto_topup_terms_currency_format check (currency ~ '^[a-z]{3}$'),
  -- Smallest currency units (cents) per 1 of the unit; a charge is rounded up to a whole cent.
  unit_price numeric not null
    constraint auto_topup_terms_unit_price_range check (unit_price > 0 and unit_price <= 1000000),
  min_amount bigint not null
    constraint auto_topup_terms_min_amount_range check (min_amount between 1 and 9007199254740991),
  max_amount bigint not null,
  min_threshold bigint not null default 0
    constraint auto_topup_terms_min_threshold_range check (min_threshold between 0 and 9007199254740991),
  -- Per account and calendar month (UTC): money charged (cents) and number of charges; NULL: none.
  monthly_amount_cap bigint
    constraint auto_topup_terms_monthly_amount_cap_range check (monthly_amount_cap between 1 and 9007199254740991),
  monthly_count_cap integer
    constraint auto_topup_terms_monthly_count_cap_range check (monthly_count_cap >= 1),
  cooldown interval not null default '1 hour'
    constraint auto_topup_terms_cooldown_range check (cooldown >= interval '0'),
  -- {topup_id} and {payment_intent} are replaced; NULL: the event carries no link.
  action_url text
    constraint auto_topup_terms_action_url_format check (action_url ~ '^https?://[^\s]+$' and length(action_url) <= 2000),
  enabled boolean not null default true,
  updated_at timestamptz not null default now(),
  constraint auto_topup_terms_amounts check (max_amount between min_amount and 9007199254740991)
);
comment on table creditkit.auto_topup_terms is 'Per unit: whether customers may turn auto top-up on, its price, bounds, default caps, cooldown and action link.';

-- The operator's default low-balance threshold of a unit: absolute, or a percentage of the plan's
-- allowance of the unit. Hysteresis: how far above the threshold the balance must come back
-- before balance.recovered (default 10% of the threshold, at least 1).
create table creditkit.balance_alerts (
  unit text primary key references creditkit.units (id),
  threshold bigint
    constraint balance_alerts_threshold_range check (threshold between 0 and 9007199254740991),
  percent numeric
    constraint balance_alerts_percent_range check (percent > 0 and percent <= 100),
  hysteresis bigint
    constraint balance_alerts_hysteresis_range check (hysteresis between 1 and 9007199254740991),
  updated_at timestamptz not null default now(),
  constraint balance_alerts_one_threshold check (num_nonnulls(threshold, percent) = 1)
);
comment on table creditkit.balance_alerts is 'Default low-balance threshold per unit (absolute or % of the plan allowance) and its hysteresis.';

-- Per (account, unit): the account's own threshold (overrides the unit's), and which alerts have
-- fired since the balance was last above the threshold. Written under the account row's lock.
create table creditkit.account_alerts (
  account_id uuid not null,
  unit text not null references creditkit.units (id),
  threshold bigint
    constraint account_alerts_threshold_range check (threshold between 0 and 9007199254740991),
  percent numeric
    constraint account_alerts_percent_range check (percent > 0 and percent <= 100),
  low_fired boolean not null default false,
  depleted_fired boolean not null default false,
  updated_at timestamptz not null default now(),
  constraint account_alerts_pkey primary key (account_id, unit),
  constraint account_alerts_one_threshold check (num_nonnulls(threshold, percent) <= 1)
);
comment on table creditkit.account_alerts is 'Per account and unit: its own low-balance threshold, and the alerts fired since it was last above it.';

-- The customer's auto top-up of one unit. enabled is their choice; status is where it stands:
-- off, active, action_required (a charge needs them to authenticate; paused until it is paid or
-- the card changes) or disabled (three declines in a row, or no usable card, until the card
-- changes or they turn it on again). armed: a crossing may start a top-up (false from the
-- crossing until the balance is back above the threshold, so one crossing is one top-up).
create table creditkit.auto_topups (
  account_id uuid not null,
  unit text not null references creditkit.units (id),
  enabled boolean not null default false,
  status text not null default 'off'
    constraint auto_topups_status check (status in ('off', 'active', 'action_required', 'disabled')),
  status_reason text,
  threshold bigint not null
    constraint auto_topups_threshold_range check (threshold between 0 and 9007199254740991),
  -- How much: a fixed amount of the unit, up to a target balance, or a pack (exactly one).
  amount bigint
    constraint auto_topups_amount_range check (amount between 1 and 9007199254740991),
  target bigint
    constraint auto_topups_target_range check (target between 1 and 9007199254740991),
  pack_id text references creditkit.packs (id),
  -- The customer's own caps (at most the operator's); NULL: the operator's.
  monthly_amount_cap bigint
    constraint auto_topups_monthly_amount_cap_range check (monthly_amount_cap between 1 and 9007199254740991),
  monthly_count_cap integer
    constraint auto_topups_monthly_count_cap_range check (monthly_count_cap >= 1),
  failures integer not null default 0,
  armed boolean not null default true,
  updated_at timestamptz not null default now(),
  constraint auto_topups_pkey primary key (account_id, unit),
  constraint auto_topups_one_mode check (num_nonnulls(amount, target, pack_id) = 1),
  constraint auto_topups_target_above check (target > threshold)
);
comment on table creditkit.auto_topups is 'Auto top-up per account and unit: threshold, how much, caps, and its status (off, active, action_required, disabled).';

-- One row per top-up: pending (due at next_attempt_at; NULL: now) -> charging (a worker holds it
-- until claimed_until) -> processing (charged; the webhook grants) -> succeeded; or failed,
-- action_required (the customer must authenticate) or canceled. Its Stripe idempotency key is
-- 'creditkit-topup-<id>', so a worker that dies between charging and recording never charges twice.
create table creditkit.topups (
  id bigint generated always as identity,
  account_id uuid not null,
  unit text not null,
  status text not null default 'pending'
    constraint topups_status check (status in ('pending', 'charging', 'processing', 'succeeded', 'failed',
                                               'action_required', 'canceled')),
  amount bigint not null
    constraint topups_amount_range check (amount between 1 and 9007199254740991),
  charge_amount bigint not null
    constraint topups_charge_amount_range check (charge_amount between 1 and 9007199254740991),
  currency text not null,
  pack_id text,
  -- Claims of the current charge: the worker's answer names it, and a stale one is ignored.
  attempt integer not null default 0,
  next_attempt_at timestamptz,
  claimed_until timestamptz,
  -- When a worker first claimed it (the worker's clock): cooldown and monthly caps count it.
  charged_at timestamptz,
  customer_id text,
  payment_method text,
  payment_intent text,
  failure_code text,
  failure_message text,
  action_url text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  completed_at timestamptz,
  -- The id alone is unique; the key carries the account (the per-account rule: on Citus the top-ups
  -- live with the account's rows, and the watch writes them on the account's node).
  constraint topups_pkey primary key (id, account_id)
);
comment on table creditkit.topups is 'Each auto top-up: amount, charge, status (pending, charging, processing, succeeded, failed, action_required, canceled) and its PaymentIntent.';
-- Never a second while one is open.
create unique index topups_open on creditkit.topups (account_id, unit)
  where status in ('pending', 'charging', 'processing', 'action_required');
create index topups_due on creditkit.topups (coalesce(next_attempt_at, '-infinity'::timestamptz), id) where status = 'pending';
create index topups_claimed on creditkit.topups (claimed_until) where status = 'charging';
create index topups_account on creditkit.topups (account_id, unit, created_at desc, id desc);
create index topups_payment_intent on creditkit.topups (payment_intent) where payment_intent is not null;

alter table creditkit.stripe_payment_methods enable row level security;
alter table creditkit.stripe_default_methods enable row level security;
alter table creditkit.auto_topup_terms enable row level security;
alter table creditkit.balance_alerts enable row level security;
alter table creditkit.account_alerts enable row level security;
alter table creditkit.auto_topups enable row level security;
alter table creditkit.topups enable row level security;
revoke all on table creditkit.stripe_payment_methods, creditkit.stripe_default_methods, creditkit.auto_topup_terms,
  creditkit.balance_alerts, creditkit.account_alerts, creditkit.auto_topups, creditkit.topups
  from public, anon, authenticated, service_role;
grant select on table creditkit.stripe_payment_methods, creditkit.stripe_default_methods, creditkit.auto_topup_terms,
  creditkit.balance_alerts, creditkit.account_alerts, creditkit.auto_topups, creditkit.topups to service_role;

-- ---------------------------------------------------------------------------------------------
-- The watch: what a balance change fires
-- ---------------------------------------------------------------------------------------------

-- The low-balance threshold in force for an (account, unit): the account's own, else the unit's;
-- a percentage is of the allowance of the plan in force for the unit (NULL without one). watched:
-- whether anything is watched at all (a threshold, or auto top-up turned on).
create or replace function creditkit.low_level(p_account_id uuid, p_unit text,
  out threshold bigint, out hysteresis bigint, out source text, out watched boolean)
returns record
language plpgsql
stable
set search_path = ''
as $$
declare
  v_percent numeric;
  v_allowance bigint;
  v_unit creditkit.balance_alerts;
begin
  select a.threshold, a.percent, 'account' into threshold, v_percent, source
    from creditkit.account_alerts a
   where a.account_id = p_account_id and a.unit = p_unit and num_nonnulls(a.threshold, a.percent) = 1;
  select b.* into v_unit from creditkit.balance_alerts b where b.unit = p_unit;
  if found then
    hysteresis := v_unit.hysteresis;
    if source is null then
      threshold := v_unit.threshold;
      v_percent := v_unit.percent;
      source := 'unit';
    end if;
  end if;
  if v_percent is not null and threshold is null then
    v_allowance := case when p_unit = 'credits' then (creditkit.effective_plan(p_account_id)).allowance
                        else (creditkit.unit_terms(p_account_id, p_unit)).allowance end;
    threshold := nullif(floor(v_allowance * v_percent / 100), 0)::bigint;
  end if;
  hysteresis := coalesce(hysteresis, greatest(threshold / 10, 1), 1);
  watched := source is not null
             or exists (select from creditkit.auto_topups t where t.account_id = p_account_id and t.unit = p_unit and t.enabled);
end;
$$;
comment on function creditkit.low_level(uuid, text) is
  'The low-balance threshold in force for an (account, unit) (its own, else the unit''s; a percentage of the plan allowance), its hysteresis, where it comes from, and whether the row is watched at all.';
revoke all on function creditkit.low_level(uuid, text) from public, anon, authenticated, service_role;

-- What an (account, unit)'s top-ups charged in the calendar month (UTC) of p_at: the money and the
-- number of charges made or under way. The monthly caps count it; the customer sees it.
create or replace function creditkit.month_charges(p_account_id uuid, p_unit text, p_at timestamptz,
  out amount bigint, out n integer)
returns record
language plpgsql
stable
set search_path = ''
as $$
begin
  select coalesce(sum(p.charge_amount), 0)::bigint, count(*)::integer into amount, n
    from creditkit.topups p
   where p.account_id = p_account_id and p.unit = p_unit
     and p.status in ('charging', 'processing', 'succeeded')
     and p.charged_at >= date_trunc('month', p_at at time zone 'UTC') at time zone 'UTC';
end;
$$;
comment on function creditkit.month_charges(uuid, text, timestamptz) is
  'The money (cents) and number of charges an (account, unit)''s top-ups made or are making in the calendar month (UTC) of p_at.';
revoke all on function creditkit.month_charges(uuid, text, timestamptz) from public, anon, authenticated, service_role;

-- The terms of a top-up that starts now: how much of the unit, what it costs, in which currency.
-- NULL amount when there is nothing to buy (a target already reached, terms withdrawn).
create or replace function creditkit.topup_quote(p_auto creditkit.auto_topups, p_spendable bigint,
  out amount bigint, out charge_amount bigint, out currency text)
returns record
language plpgsql
stable
set search_path = ''
as $$
declare
  v_terms creditkit.auto_topup_terms;
  v_pack creditkit.packs;
begin
  select t.* into v_terms from creditkit.auto_topup_terms t where t.unit = p_auto.unit and t.enabled;
  if not found then
    return;
  end if;
  if p_auto.pack_id is not null then
    select k.* into v_pack from creditkit.packs k where k.id = p_auto.pack_id and k.active and k.unit = p_auto.unit;
    if found and v_pack.price_amount > 0 then
      amount := v_pack.credits;
      charge_amount := v_pack.price_amount;
      currency := v_pack.currency;
    end if;
    return;
  end if;
  amount := coalesce(p_auto.amount, p_auto.target - p_spendable);
  if amount < 1 then
    amount := null;
    return;
  end if;
  amount := least(greatest(amount, v_terms.min_amount), v_terms.max_amount);
  charge_amount := ceil(amount * v_terms.unit_price)::bigint;
  currency := v_terms.currency;
end;
$$;
comment on function creditkit.topup_quote(creditkit.auto_topups, bigint) is
  'What a top-up starting at this spendable balance buys and costs (a pack''s price, or the amount at the unit price, within the operator''s bounds).';
revoke all on function creditkit.topup_quote(creditkit.auto_topups, bigint) from public, anon, authenticated, service_role;

-- Compares an (account, unit)'s spendable balance with its thresholds and acts on each crossing:
-- balance.low at or below the threshold, balance.depleted at zero (each once until recovery),
-- balance.recovered back at threshold + hysteresis (or at the hysteresis, with no threshold), and
-- a pending top-up at or below the auto top-up threshold while armed. Then sets accounts.alert_at
-- to the highest level still armed (a sentinel below any balance when none is), or NULL when
-- nothing is watched. p_quiet: a new threshold of the operator's takes effect without events;
-- levels the balance is already below count as fired. The caller holds the row's lock (the
-- trigger: the transaction that changed it).
create or replace function creditkit.watch(p_account_id uuid, p_unit text, p_quiet boolean)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  c_none constant bigint := -4611686018427387904;  -- armed at no level: only a rise is looked at
  v_acc creditkit.accounts;
  v_spendable bigint;
  v_level record;
  v_state creditkit.account_alerts;
  v_auto creditkit.auto_topups;
  v_quote record;
  v_data jsonb;
  v_alert_at bigint;
begin
  select a.* into v_acc from creditkit.accounts a where a.id = p_account_id and a.unit = p_unit;
  if not found then
    return;
  end if;
  v_spendable := greatest(v_acc.balance - v_acc.held, 0);
  select * into v_level from creditkit.low_level(p_account_id, p_unit);
  if not v_level.watched then
    update creditkit.accounts a set alert_at = null
     where a.id = p_account_id and a.unit = p_unit and a.alert_at is not null;
    return;
  end if;

  select s.* into v_state from creditkit.account_alerts s where s.account_id = p_account_id and s.unit = p_unit;
  if not found then
    insert into creditkit.account_alerts (account_id, unit) values (p_account_id, p_unit)
    returning * into v_state;
  end if;
  v_data := jsonb_build_object('account_id', p_account_id, 'unit', p_unit, 'balance', v_acc.balance,
                               'held', v_acc.held, 'spendable', v_spendable, 'threshold', v_level.threshold);

  -- back up: recovered once clear of the threshold by the hysteresis
  if (v_state.low_fired or v_state.depleted_fired)
     and v_spendable >= coalesce(v_level.threshold, 0) + v_level.hysteresis then
    v_state.low_fired := false;
    v_state.depleted_fired := false;
    if not p_quiet then
      perform creditkit.notify('balance.recovered', p_account_id, p_unit, v_data);
    end if;
  end if;
  -- down: low, then depleted
  if v_level.threshold is not null and not v_state.low_fired and v_spendable <= v_level.threshold then
    v_state.low_fired := true;
    if not p_quiet then
      perform creditkit.notify('balance.low', p_account_id, p_unit, v_data);
    end if;
  end if;
  if not v_state.depleted_fired and v_spendable = 0 then
    v_state.depleted_fired := true;
    if not p_quiet then
      perform creditkit.notify('balance.depleted', p_account_id, p_unit, v_data);
    end if;
  end if;
  update creditkit.account_alerts s
     set low_fired = v_state.low_fired, depleted_fired = v_state.depleted_fired, updated_at = now()
   where s.account_id = p_account_id and s.unit = p_unit
     and (s.low_fired, s.depleted_fired) is distinct from (v_state.low_fired, v_state.depleted_fired);

  -- auto top-up: re-armed above its threshold with none open; one top-up per crossing
  select t.* into v_auto from creditkit.auto_topups t
   where t.account_id = p_account_id and t.unit = p_unit and t.enabled
     for update;
  if found and v_auto.status = 'active' then
    if not v_auto.armed and v_spendable > v_auto.threshold
       and not exists (select from creditkit.topups p
                        where p.account_id = p_account_id and p.unit = p_unit
                          and p.status in ('pending', 'charging', 'processing', 'action_required')) then
      v_auto.armed := true;
    end if;
    if v_auto.armed and v_spendable <= v_auto.threshold and not p_quiet then
      v_auto.armed := false;
      select * into v_quote from creditkit.topup_quote(v_auto, v_spendable);
      if v_quote.amount is not null then
        insert into creditkit.topups (account_id, unit, amount, charge_amount, currency, pack_id)
        values (p_account_id, p_unit, v_quote.amount, v_quote.charge_amount, v_quote.currency, v_auto.pack_id)
        on conflict (account_id, unit) where status in ('pending', 'charging', 'processing', 'action_required') do nothing;
      end if;
    elsif v_auto.armed and v_spendable <= v_auto.threshold then
      v_auto.armed := false;
    end if;
    update creditkit.auto_topups t set armed = v_auto.armed, updated_at = now()
     where t.account_id = p_account_id and t.unit = p_unit and t.armed <> v_auto.armed;
  end if;

  v_alert_at := greatest(case when v_level.threshold is not null and not v_state.low_fired then v_level.threshold end,
                         case when not v_state.depleted_fired then 0 end,
                         case when v_auto.status = 'active' and v_auto.armed then v_auto.threshold end);
  update creditkit.accounts a set alert_at = coalesce(v_alert_at, c_none)
   where a.id = p_account_id and a.unit = p_unit and a.alert_at is distinct from coalesce(v_alert_at, c_none);
end;
$$;
comment on function creditkit.watch(uuid, text, boolean) is
  'Acts on an (account, unit)''s thresholds: balance.low / depleted / recovered (with hysteresis), a pending top-up per crossing; sets accounts.alert_at to the next level to watch. p_quiet: no events (a new operator threshold).';
revoke all on function creditkit.watch(uuid, text, boolean) from public, anon, authenticated, service_role;

-- Security definer: it runs at commit, after the API function that changed the balance has
-- returned, as the caller (service_role has no rights on the kit's tables); and so it carries the
-- API's lock_timeout of its own.
create or replace function creditkit.watch_balance()
returns trigger
language plpgsql
security definer
set search_path = ''
set lock_timeout = '3s'
as $$
begin
  perform creditkit.watch(new.id, new.unit, false);
  return null;
end;
$$;
comment on function creditkit.watch_balance() is
  'Constraint trigger (deferred to commit): runs creditkit.watch for an (account, unit) whose balance reached its alert level or rose.';
revoke all on function creditkit.watch_balance() from public, anon, authenticated, service_role;

-- Queued only when a watched row's spendable balance reaches its alert level or rises; runs at
-- commit, once per queued change, on the row as the transaction leaves it. It looks at updates
-- that set due_at or held: every write under the lock point does (creditkit.append_entry, the
-- expiry through refresh_due_at, the holds, the batch), and the debit's fast path does neither: it
-- never reaches an alert level (its WHERE sends such a debit to the slow path), and leaving it out
-- keeps the trigger's WHEN, which PostgreSQL prepares anew for each statement, off the hot path.
create constraint trigger watch_balance
  after update of due_at, held on creditkit.accounts
  deferrable initially deferred
  for each row
  when (new.alert_at is not null
        and (new.balance - new.held <= new.alert_at or new.balance - new.held > old.balance - old.held))
  execute function creditkit.watch_balance();

-- A row that opens in a unit with a default threshold is watched from its first rise.
create or replace function creditkit.watch_new_row()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if exists (select from creditkit.balance_alerts b where b.unit = new.unit) then
    new.alert_at := 0;
  end if;
  return new;
end;
$$;
comment on function creditkit.watch_new_row() is
  'Trigger: an (account, unit) row opening in a unit with a default low-balance threshold is watched (alert_at set).';
revoke all on function creditkit.watch_new_row() from public, anon, authenticated, service_role;

create trigger watch_new_row
  before insert on creditkit.accounts
  for each row execute function creditkit.watch_new_row();

-- ---------------------------------------------------------------------------------------------
-- Top-up outcomes, from the worker or the webhook
-- ---------------------------------------------------------------------------------------------

-- A top-up's charge failed. authentication_required (or a charge that needs action): the top-up
-- waits for the customer (action_required, with a link) and auto top-up pauses; any other
-- failure: the top-up fails, the decline counts, the third in a row turns auto top-up off, and
-- otherwise it re-arms (the next charge waits for the cooldown). The caller holds the top-up's
-- row lock; this takes the account row's.
create or replace function creditkit.topup_failed(p_topup_id bigint, p_needs_action boolean, p_code text,
  p_message text, p_payment_intent text, p_reason text default null)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_topup creditkit.topups;
  v_auto creditkit.auto_topups;
  v_link text;
begin
  select p.* into v_topup from creditkit.topups p where p.id = p_topup_id;
  perform from creditkit.accounts a where a.id = v_topup.account_id and a.unit = v_topup.unit for update;
  if p_needs_action then
    select replace(replace(t.action_url, '{topup_id}', v_topup.id::text), '{payment_intent}', coalesce(p_payment_intent, ''))
      into v_link from creditkit.auto_topup_terms t where t.unit = v_topup.unit;
    update creditkit.topups p
       set status = 'action_required', payment_intent = coalesce(p_payment_intent, p.payment_intent),
           failure_code = left(p_code, 100), failure_message = left(p_message, 1000), action_url = v_link,
           claimed_until = null, updated_at = now()
     where p.id = p_topup_id and p.account_id = v_topup.account_id;
    update creditkit.auto_topups t
       set status = 'action_required', status_reason = 'authentication_required', updated_at = now()
     where t.account_id = v_topup.account_id and t.unit = v_topup.unit and t.status = 'active';
    perform creditkit.notify('topup.action_required', v_topup.account_id, v_topup.unit, jsonb_build_object(
      'account_id', v_topup.account_id, 'unit', v_topup.unit, 'topup_id', v_topup.id, 'amount', v_topup.amount,
      'charge_amount', v_topup.charge_amount, 'currency', v_topup.currency,
      'payment_intent', coalesce(p_payment_intent, v_topup.payment_intent), 'action_url', v_link,
      'failure_code', p_code));
    return;
  end if;
  update creditkit.topups p
     set status = 'failed', payment_intent = coalesce(p_payment_intent, p.payment_intent),
         failure_code = left(p_code, 100), failure_message = left(p_message, 1000),
         claimed_until = null, completed_at = now(), updated_at = now()
   where p.id = p_topup_id and p.account_id = v_topup.account_id;
  -- p_reason: NULL for a decline (counted); 'stripe_unavailable' (Stripe kept failing: not the
  -- card's fault, nothing changes); any other stops auto top-up until the card changes
  update creditkit.auto_topups t
     set failures = t.failures + case when p_reason is null then 1 else 0 end,
         status = case when p_reason <> 'stripe_unavailable' or p_reason is null and t.failures + 1 >= 3 then 'disabled'
                       else t.status end,
         status_reason = case when p_reason <> 'stripe_unavailable' then p_reason
                              when p_reason is null and t.failures + 1 >= 3 then 'failures' else t.status_reason end,
         armed = true, updated_at = now()
   where t.account_id = v_topup.account_id and t.unit = v_topup.unit
  returning t.* into v_auto;
  perform creditkit.notify('topup.failed', v_topup.account_id, v_topup.unit, jsonb_build_object(
    'account_id', v_topup.account_id, 'unit', v_topup.unit, 'topup_id', v_topup.id, 'amount', v_topup.amount,
    'charge_amount', v_topup.charge_amount, 'currency', v_topup.currency,
    'payment_intent', coalesce(p_payment_intent, v_topup.payment_intent),
    'failure_code', p_code, 'failure_message', p_message, 'failures', v_auto.failures,
    'auto_topup_status', v_auto.status));
  -- still below the threshold: the next top-up is pending now, charged after the cooldown
  perform creditkit.watch(v_topup.account_id, v_topup.unit, false);
end;
$$;
comment on function creditkit.topup_failed(bigint, boolean, text, text, text, text) is
  'Records a failed top-up charge: action_required (pauses auto top-up, link for the customer) or failed (counts the decline, the third disables auto top-up; otherwise re-armed).';
revoke all on function creditkit.topup_failed(bigint, boolean, text, text, text, text) from public, anon, authenticated, service_role;

-- The card on file changed: auto top-ups stopped for the card (declines, none usable, a payment
-- to authenticate) start again, and one already below its threshold tops up.
create or replace function creditkit.card_changed(p_customer_id text)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  r record;
begin
  for r in
    select t.account_id, t.unit
      from creditkit.stripe_customers c
      join creditkit.auto_topups t on t.account_id = c.account_id
     where c.customer_id = p_customer_id and t.enabled and t.status in ('disabled', 'action_required')
     order by t.unit = 'credits', t.unit
  loop
    perform from creditkit.accounts a where a.id = r.account_id and a.unit = r.unit for update;
    update creditkit.topups p set status = 'canceled', failure_code = 'card_changed', completed_at = now(), updated_at = now()
     where p.account_id = r.account_id and p.unit = r.unit and p.status = 'action_required';
    update creditkit.auto_topups t
       set status = 'active', status_reason = null, failures = 0, armed = true, updated_at = now()
     where t.account_id = r.account_id and t.unit = r.unit;
    perform creditkit.watch(r.account_id, r.unit, false);
  end loop;
end;
$$;
comment on function creditkit.card_changed(text) is
  'A customer''s card on file changed: their auto top-ups paused or disabled for the card start again.';
revoke all on function creditkit.card_changed(text) from public, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Stripe events: the card on file, and a top-up's PaymentIntent
-- ---------------------------------------------------------------------------------------------

-- Records a customer's default payment method from an event, if the event is the newest to name
-- one (so any delivery order ends with the same card).
create or replace function creditkit.stripe_set_default_method(p_customer_id text, p_payment_method text,
  p_event jsonb)
returns text
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_at timestamptz := creditkit.stripe_time(p_event -> 'created');
  v_id text := p_event ->> 'id';
  v_before text;
begin
  if p_customer_id !~ '^cus_[A-Za-z0-9]+$' or p_payment_method !~ '^(pm|card|src|ba)_[A-Za-z0-9_]+$' then
    return 'no customer or payment method to record';
  end if;
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('creditkit.stripe_customer:' || p_customer_id, 0));
  select d.payment_method into v_before from creditkit.stripe_default_methods d where d.customer_id = p_customer_id;
  insert into creditkit.stripe_default_methods as d (customer_id, payment_method, event_at, event_id)
  values (p_customer_id, p_payment_method, v_at, v_id)
  on conflict (customer_id) do update
     set payment_method = excluded.payment_method, event_at = excluded.event_at, event_id = excluded.event_id
   where (d.event_at, d.event_id) < (excluded.event_at, excluded.event_id);
  insert into creditkit.stripe_payment_methods (id, customer_id) values (p_payment_method, p_customer_id)
  on conflict (id) do nothing;
  if v_before is distinct from (select d.payment_method from creditkit.stripe_default_methods d where d.customer_id = p_customer_id) then
    perform creditkit.card_changed(p_customer_id);
    return format('card on file of %s is %s', p_customer_id, p_payment_method);
  end if;
  return 'card on file unchanged';
end;
$$;
comment on function creditkit.stripe_set_default_method(text, text, jsonb) is
  'Records a Stripe customer''s default payment method from a webhook event, newest event wins; restarts auto top-ups stopped for the card.';
revoke all on function creditkit.stripe_set_default_method(text, text, jsonb) from public, anon, authenticated, service_role;

-- payment_method.attached / detached: the method's type and card details, and whether it can
-- still be charged.
create or replace function creditkit.stripe_payment_method_event(p_event jsonb, p_object jsonb, p_now timestamptz,
  out account_id uuid, out effect text)
returns record
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_id text := p_object ->> 'id';
  v_detached boolean := p_event ->> 'type' = 'payment_method.detached';
  v_customer text := coalesce(creditkit.stripe_id(p_object -> 'customer'),
                              creditkit.stripe_id(p_event #> '{data,previous_attributes,customer}'));
begin
  if v_id !~ '^(pm|card|src|ba)_[A-Za-z0-9_]+$' then
    perform creditkit.stripe_dead('invalid_event', 'payment method without an id');
  end if;
  insert into creditkit.stripe_payment_methods as m (id, customer_id, type, brand, last4, exp_month, exp_year, detached, updated_at)
  values (v_id, v_customer, p_object ->> 'type', p_object #>> '{card,brand}', p_object #>> '{card,last4}',
          (p_object #>> '{card,exp_month}')::integer, (p_object #>> '{card,exp_year}')::integer, v_detached, p_now)
  on conflict (id) do update
     set customer_id = coalesce(excluded.customer_id, m.customer_id), type = coalesce(excluded.type, m.type),
         brand = coalesce(excluded.brand, m.brand), last4 = coalesce(excluded.last4, m.last4),
         exp_month = coalesce(excluded.exp_month, m.exp_month), exp_year = coalesce(excluded.exp_year, m.exp_year),
         -- detached is final: Stripe never attaches a detached method again
         detached = m.detached or excluded.detached, updated_at = p_now;
  select c.account_id into account_id from creditkit.stripe_customers c where c.customer_id = v_customer;
  effect := format('payment method %s %s', v_id, case when v_detached then 'detached' else 'recorded' end);
end;
$$;
comment on function creditkit.stripe_payment_method_event(jsonb, jsonb, timestamptz) is
  'Applies payment_method.attached / detached: records the method''s type and card details; a detached method is never charged.';
revoke all on function creditkit.stripe_payment_method_event(jsonb, jsonb, timestamptz) from public, anon, authenticated, service_role;

-- setup_intent.succeeded, customer.updated, checkout.session.completed in setup mode, and a
-- payment_intent.succeeded that is not a top-up's: the card a customer saved for later.
create or replace function creditkit.stripe_card_event(p_event jsonb, p_object jsonb, p_now timestamptz,
  out account_id uuid, out effect text)
returns record
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_type text := p_event ->> 'type';
  v_customer text := creditkit.stripe_id(p_object -> 'customer');
  v_method text;
begin
  if v_type = 'checkout.session.completed' then
    -- setup mode: link the customer; setup_intent.succeeded names the card
    account_id := coalesce(creditkit.stripe_uuid(p_object -> 'metadata' ->> 'account_id'),
                           creditkit.stripe_uuid(p_object ->> 'client_reference_id'));
    if account_id is not null and v_customer is not null then
      perform creditkit.stripe_lock_account(account_id, p_now);
      perform creditkit.stripe_link_customer(account_id, v_customer, p_now);
    end if;
    effect := 'card setup completed; setup_intent.succeeded records the card';
    return;
  end if;
  if v_type = 'customer.updated' then
    v_customer := p_object ->> 'id';
    v_method := creditkit.stripe_id(p_object #> '{invoice_settings,default_payment_method}');
  else  -- payment_intent.succeeded saved for off-session use, or setup_intent.succeeded
    v_method := creditkit.stripe_id(p_object -> 'payment_method');
  end if;
  if v_method is null then
    effect := 'no payment method named; nothing to record';
    return;
  end if;
  if jsonb_typeof(p_object -> 'payment_method') = 'object' then
    perform creditkit.stripe_payment_method_event(p_event, p_object -> 'payment_method', p_now);
  end if;
  select c.account_id into account_id from creditkit.stripe_customers c where c.customer_id = v_customer;
  effect := creditkit.stripe_set_default_method(v_customer, v_method, p_event);
end;
$$;
comment on function creditkit.stripe_card_event(jsonb, jsonb, timestamptz) is
  'Applies the events that save a card for off-session charges: setup_intent.succeeded, customer.updated, a payment with setup_future_usage, a setup-mode checkout.';
revoke all on function creditkit.stripe_card_event(jsonb, jsonb, timestamptz) from public, anon, authenticated, service_role;

-- payment_intent.succeeded / payment_failed of a top-up (metadata.creditkit_topup_id): success
-- grants the top-up once, as a pack payment (refunds and disputes then claw it back the same way);
-- failure is recorded unless the worker already recorded this charge's outcome.
create or replace function creditkit.stripe_topup_payment(p_event jsonb, p_object jsonb, p_now timestamptz,
  out account_id uuid, out effect text)
returns record
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_pi text := p_object ->> 'id';
  v_topup creditkit.topups;
  v_payment bigint;
  v_error jsonb := p_object -> 'last_payment_error';
  v_auto creditkit.auto_topups;
begin
  if coalesce(p_object #>> '{metadata,creditkit_topup_id}', '') !~ '^[0-9]{1,18}$' or v_pi !~ '^pi_[A-Za-z0-9_]+$' then
    perform creditkit.stripe_dead('invalid_event', 'top-up payment without a payment intent id or a numeric metadata.creditkit_topup_id');
  end if;
  perform creditkit.stripe_lock_payment(array[v_pi]);
  select p.* into v_topup from creditkit.topups p where p.id = (p_object #>> '{metadata,creditkit_topup_id}')::bigint;
  if not found or v_topup.account_id::text is distinct from p_object #>> '{metadata,creditkit_account_id}' then
    perform creditkit.stripe_dead('unknown_topup', format('no top-up %s of account %s',
      p_object #>> '{metadata,creditkit_topup_id}', coalesce(p_object #>> '{metadata,creditkit_account_id}', 'NULL')));
  end if;
  account_id := v_topup.account_id;
  -- the account's rows first (every unit, in the kit's order), then the top-up's
  perform creditkit.stripe_lock_account(v_topup.account_id, p_now);
  select p.* into v_topup from creditkit.topups p where p.id = v_topup.id and p.account_id = v_topup.account_id for update;

  if p_event ->> 'type' = 'payment_intent.payment_failed' then
    if v_topup.status in ('charging', 'processing') and (v_topup.payment_intent is null or v_topup.payment_intent = v_pi) then
      perform creditkit.topup_failed(v_topup.id, v_error ->> 'code' = 'authentication_required',
                                     coalesce(v_error ->> 'decline_code', v_error ->> 'code', 'payment_failed'),
                                     v_error ->> 'message', v_pi);
      effect := format('top-up %s: %s', v_topup.id, coalesce(v_error ->> 'code', 'payment failed'));
    else
      effect := format('top-up %s is %s; nothing to change', v_topup.id, v_topup.status);
    end if;
    return;
  end if;

  -- succeeded: the payment, keyed by its payment intent, is granted once (as a pack's)
  v_payment := creditkit.stripe_payment(v_pi, null, null);
  update creditkit.stripe_payments p
     set account_id = coalesce(p.account_id, v_topup.account_id), pack_id = coalesce(p.pack_id, v_topup.pack_id),
         credits = coalesce(p.credits, v_topup.amount),
         unit = case when p.credits is null then v_topup.unit else p.unit end,
         amount_paid = coalesce(p.amount_paid, (p_object ->> 'amount_received')::bigint, v_topup.charge_amount),
         currency = coalesce(p.currency, p_object ->> 'currency', v_topup.currency),
         state = 'paid', updated_at = p_now
   where p.id = v_payment;
  effect := creditkit.stripe_settle_payment(v_payment, p_now);
  if v_topup.status <> 'succeeded' then
    update creditkit.topups p
       set status = 'succeeded', payment_intent = v_pi, claimed_until = null, completed_at = now(), updated_at = now(),
           failure_code = null, failure_message = null
     where p.id = v_topup.id and p.account_id = v_topup.account_id;
    update creditkit.auto_topups t
       set failures = 0,
           status = case when t.status = 'action_required' then 'active' else t.status end,
           status_reason = case when t.status = 'action_required' then null else t.status_reason end,
           updated_at = now()
     where t.account_id = v_topup.account_id and t.unit = v_topup.unit
    returning t.* into v_auto;
    perform creditkit.notify('topup.succeeded', v_topup.account_id, v_topup.unit, jsonb_build_object(
      'account_id', v_topup.account_id, 'unit', v_topup.unit, 'topup_id', v_topup.id, 'amount', v_topup.amount,
      'charge_amount', v_topup.charge_amount, 'currency', v_topup.currency, 'payment_intent', v_pi,
      'balance', creditkit.spendable(v_topup.account_id, v_topup.unit)));
    effect := format('top-up %s succeeded; %s', v_topup.id, effect);
  end if;
end;
$$;
comment on function creditkit.stripe_topup_payment(jsonb, jsonb, timestamptz) is
  'Applies payment_intent.succeeded / payment_failed of a top-up: grants it once (as a pack payment), or records the failure.';
revoke all on function creditkit.stripe_topup_payment(jsonb, jsonb, timestamptz) from public, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Server API: terms and thresholds (service_role), and the customer's reads and settings
-- ---------------------------------------------------------------------------------------------

-- Security definer: writes the kit's tables; service_role only.
create or replace function public.creditkit_set_auto_topup_terms(
  p_unit text,
  p_currency text,
  p_unit_price numeric,
  p_min_amount bigint,
  p_max_amount bigint,
  p_min_threshold bigint default 0,
  p_monthly_amount_cap bigint default null,
  p_monthly_count_cap integer default null,
  p_cooldown interval default '1 hour',
  p_action_url text default null,
  p_enabled boolean default true)
returns setof creditkit.auto_topup_terms
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_unit(p_unit);
  perform creditkit.check_amount(p_min_amount);
  perform creditkit.check_amount(p_max_amount);
  if p_max_amount < p_min_amount then
    raise exception using errcode = 'CK001', message = 'invalid amount: max_amount is below min_amount';
  end if;
  if p_monthly_amount_cap is not null then
    perform creditkit.check_amount(p_monthly_amount_cap);
  end if;
  if p_currency is null or p_currency !~ '^[a-z]{3}$' then
    raise exception using errcode = 'CK006', message = 'invalid argument: currency is a lowercase ISO code (usd)';
  end if;
  if p_unit_price is null or p_unit_price <= 0 or p_unit_price > 1000000 then
    raise exception using errcode = 'CK006', message = 'invalid argument: unit_price is the price of 1 of the unit in cents, above 0 and at most 1000000';
  end if;
  if ceil(p_max_amount * p_unit_price) > 9007199254740991 then
    raise exception using errcode = 'CK001', message = 'invalid amount: max_amount at unit_price would cost more than 9007199254740991';
  end if;
  if p_min_threshold is null or p_min_threshold < 0 or p_min_threshold > 9007199254740991
     or p_monthly_count_cap < 1 or p_cooldown is null or p_cooldown < interval '0' or p_enabled is null then
    raise exception using errcode = 'CK006', message = 'invalid argument: min_threshold >= 0, monthly_count_cap >= 1, cooldown >= 0 and enabled are required';
  end if;
  if p_action_url is not null and (p_action_url !~ '^https?://[^\s]+$' or length(p_action_url) > 2000) then
    raise exception using errcode = 'CK006', message = 'invalid argument: action_url must be an http(s) URL';
  end if;
  return query
  insert into creditkit.auto_topup_terms as t (unit, currency, unit_price, min_amount, max_amount, min_threshold,
                                               monthly_amount_cap, monthly_count_cap, cooldown, action_url, enabled)
  values (p_unit, p_currency, p_unit_price, p_min_amount, p_max_amount, p_min_threshold, p_monthly_amount_cap,
          p_monthly_count_cap, p_cooldown, p_action_url, p_enabled)
  on conflict (unit) do update
     set currency = excluded.currency, unit_price = excluded.unit_price, min_amount = excluded.min_amount,
         max_amount = excluded.max_amount, min_threshold = excluded.min_threshold,
         monthly_amount_cap = excluded.monthly_amount_cap, monthly_count_cap = excluded.monthly_count_cap,
         cooldown = excluded.cooldown, action_url = excluded.action_url, enabled = excluded.enabled, updated_at = excluded.updated_at
  returning t.*;
end;
$$;
comment on function public.creditkit_set_auto_topup_terms(text, text, numeric, bigint, bigint, bigint, bigint, integer, interval, text, boolean) is
  'Server only. What auto top-up of a unit allows: currency and price of 1 of the unit (cents), amount bounds, the lowest threshold, default monthly caps (cents, charges), cooldown between charges, the link for a payment to authenticate ({topup_id}, {payment_intent}), enabled.';
revoke all on function public.creditkit_set_auto_topup_terms(text, text, numeric, bigint, bigint, bigint, bigint, integer, interval, text, boolean) from public, anon, authenticated;
grant execute on function public.creditkit_set_auto_topup_terms(text, text, numeric, bigint, bigint, bigint, bigint, integer, interval, text, boolean) to service_role;

-- Security definer: customers read the terms without a grant on the table.
create or replace function public.creditkit_auto_topup_terms()
returns setof creditkit.auto_topup_terms
language sql
stable
security definer
set search_path = ''
set enable_seqscan = off
as $$
  select t.* from creditkit.auto_topup_terms t order by t.unit;
$$;
comment on function public.creditkit_auto_topup_terms() is
  'Signed-in users and the server. The auto top-up terms of each unit (price, bounds, caps, cooldown).';
revoke all on function public.creditkit_auto_topup_terms() from public, anon, authenticated, service_role;
grant execute on function public.creditkit_auto_topup_terms() to authenticated, service_role;

-- A low-balance threshold's arguments: absolute (0 to 2^53-1) or a percentage (0 < p <= 100), not both.
create or replace function creditkit.check_threshold(p_threshold bigint, p_percent numeric)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_threshold < 0 or p_threshold > 9007199254740991 then
    raise exception using errcode = 'CK001', message = 'invalid amount: a threshold is between 0 and 9007199254740991';
  end if;
  if p_threshold is not null and p_percent is not null or p_percent <= 0 or p_percent > 100 then
    raise exception using errcode = 'CK006', message = 'invalid argument: a threshold is absolute or a percentage (0 < p <= 100), not both';
  end if;
end;
$$;
comment on function creditkit.check_threshold(bigint, numeric) is
  'Validates a low-balance threshold: absolute (0 to 2^53-1, CK001) or a percentage (0 < p <= 100), not both (CK006).';
revoke all on function creditkit.check_threshold(bigint, numeric) from public, anon, authenticated, service_role;

-- Security definer: writes the kit's tables; service_role only. A new default takes effect on
-- every row of the unit quietly: rows already below it count as low, without an event.
create or replace function public.creditkit_set_balance_alert(
  p_unit text,
  p_threshold bigint,
  p_percent numeric default null,
  p_hysteresis bigint default null)
returns setof creditkit.balance_alerts
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
as $$
declare
  r record;
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_unit(p_unit);
  perform creditkit.check_threshold(p_threshold, p_percent);
  if p_hysteresis is not null then
    perform creditkit.check_amount(p_hysteresis);
  end if;
  if p_threshold is null and p_percent is null then
    delete from creditkit.balance_alerts b where b.unit = p_unit;
  else
    insert into creditkit.balance_alerts as b (unit, threshold, percent, hysteresis)
    values (p_unit, p_threshold, p_percent, p_hysteresis)
    on conflict (unit) do update
       set threshold = excluded.threshold, percent = excluded.percent, hysteresis = excluded.hysteresis, updated_at = excluded.updated_at;
  end if;
  for r in select a.id from creditkit.accounts a where a.unit = p_unit order by a.id loop
    perform from creditkit.accounts a where a.id = r.id and a.unit = p_unit for update;
    perform creditkit.watch(r.id, p_unit, true);
  end loop;
  return query select b.* from creditkit.balance_alerts b where b.unit = p_unit;
end;
$$;
comment on function public.creditkit_set_balance_alert(text, bigint, numeric, bigint) is
  'Server only. The default low-balance threshold of a unit (absolute, or p_percent of the plan allowance) and its hysteresis; both NULL removes it. Applies to every account at once, without events for those already below it.';
revoke all on function public.creditkit_set_balance_alert(text, bigint, numeric, bigint) from public, anon, authenticated;
grant execute on function public.creditkit_set_balance_alert(text, bigint, numeric, bigint) to service_role;

-- The row the balance-alert reads answer.
create or replace function creditkit.balance_alert_of(p_account_id uuid, p_unit text,
  out account_id uuid, out unit text, out threshold bigint, out source text, out state text, out spendable bigint)
returns record
language plpgsql
stable
set search_path = ''
as $$
declare
  v_level record;
  v_state creditkit.account_alerts;
begin
  account_id := p_account_id;
  unit := p_unit;
  select * into v_level from creditkit.low_level(p_account_id, p_unit);
  threshold := v_level.threshold;
  source := case when v_level.source is not null then v_level.source end;
  select s.* into v_state from creditkit.account_alerts s where s.account_id = p_account_id and s.unit = p_unit;
  state := case when v_state.depleted_fired then 'depleted' when v_state.low_fired then 'low' else 'ok' end;
  select b.balance into spendable from creditkit.live_buckets(p_account_id, p_unit, now()) b;
end;
$$;
comment on function creditkit.balance_alert_of(uuid, text) is
  'An (account, unit)''s low-balance threshold in force, where it comes from, its state (ok, low, depleted) and spendable balance.';
revoke all on function creditkit.balance_alert_of(uuid, text) from public, anon, authenticated, service_role;

-- The account a signed-in caller asked to change the billing of (default: their own): one they may
-- read (creditkit.caller_account) and manage (creditkit.can_manage_billing); CK005 otherwise.
create or replace function creditkit.billing_account(p_account_id uuid)
returns uuid
language plpgsql
stable
set search_path = ''
as $$
declare
  v_account_id uuid := creditkit.caller_account(p_account_id);
begin
  if not creditkit.can_manage_billing(v_account_id) then
    raise exception using errcode = 'CK005', message = 'not allowed: you may not change the billing of that account';
  end if;
  return v_account_id;
end;
$$;
comment on function creditkit.billing_account(uuid) is
  'The account a signed-in caller may change the billing of (default: their own); CK005 unless can_manage_billing allows it.';
revoke all on function creditkit.billing_account(uuid) from public, anon, authenticated, service_role;

-- Locks an (account, unit) row for a setting, opening it for a known account that has none in the
-- unit yet (a setting needs the row to watch). CK003 for an unknown account, CK015 for a unit that
-- is not metered.
create or replace function creditkit.lock_for_setting(p_account_id uuid, p_unit text, p_now timestamptz)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
  perform creditkit.check_unit(p_unit);
  if not creditkit.unit_row_ready(p_account_id, p_unit, p_now) then
    -- a known account that holds nothing in the unit yet: open its row so the setting has one
    perform creditkit.lock_plan(p_account_id, false);
    insert into creditkit.accounts (id, unit, created_at) values (p_account_id, p_unit, p_now) on conflict do nothing;
  end if;
  perform creditkit.lock_account(p_account_id, p_unit, p_now);
end;
$$;
comment on function creditkit.lock_for_setting(uuid, text, timestamptz) is
  'Locks an (account, unit) row for a change of its alert or auto top-up settings, opening it for a known account; CK003 / CK015 otherwise.';
revoke all on function creditkit.lock_for_setting(uuid, text, timestamptz) from public, anon, authenticated, service_role;

create or replace function creditkit.set_account_alert(p_account_id uuid, p_unit text, p_threshold bigint,
  p_percent numeric, p_now timestamptz)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
  perform creditkit.check_request(null, null, null, p_now);
  perform creditkit.check_threshold(p_threshold, p_percent);
  perform creditkit.lock_for_setting(p_account_id, p_unit, p_now);
  insert into creditkit.account_alerts as s (account_id, unit, threshold, percent)
  values (p_account_id, p_unit, p_threshold, p_percent)
  on conflict on constraint account_alerts_pkey do update
     set threshold = excluded.threshold, percent = excluded.percent, updated_at = excluded.updated_at;
  -- quietly: a balance already below the new threshold reads as low, without an event (events come
  -- from crossings; a setting flipped back and forth must not flood the endpoints)
  perform creditkit.watch(p_account_id, p_unit, true);
end;
$$;
comment on function creditkit.set_account_alert(uuid, text, bigint, numeric, timestamptz) is
  'Sets an (account, unit)''s own low-balance threshold (both NULL: the unit''s default) and applies it at once, quietly (no event for a balance already below it).';
revoke all on function creditkit.set_account_alert(uuid, text, bigint, numeric, timestamptz) from public, anon, authenticated, service_role;

-- Security definer: writes the kit's tables; service_role only.
create or replace function public.creditkit_set_account_balance_alert(
  p_account_id uuid,
  p_unit text,
  p_threshold bigint,
  p_percent numeric default null,
  p_now timestamptz default now())
returns table (account_id uuid, unit text, threshold bigint, source text, state text, spendable bigint)
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
begin
  perform creditkit.assert_server_caller();
  perform creditkit.set_account_alert(p_account_id, p_unit, p_threshold, p_percent, p_now);
  return query select * from creditkit.balance_alert_of(p_account_id, p_unit);
end;
$$;
comment on function public.creditkit_set_account_balance_alert(uuid, text, bigint, numeric, timestamptz) is
  'Server only. An account''s own low-balance threshold in a unit (absolute or a percentage of the plan allowance; both NULL: the unit''s default). A balance already below it reads as low at once, without an event; the next crossing writes one.';
revoke all on function public.creditkit_set_account_balance_alert(uuid, text, bigint, numeric, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_set_account_balance_alert(uuid, text, bigint, numeric, timestamptz) to service_role;

-- Security definer: the caller is checked (creditkit.caller_account) before anything is written.
create or replace function public.creditkit_my_set_balance_alert(
  p_unit text,
  p_threshold bigint,
  p_account_id uuid default null)
returns table (account_id uuid, unit text, threshold bigint, source text, state text, spendable bigint)
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_account_id uuid := creditkit.billing_account(p_account_id);
begin
  perform creditkit.set_account_alert(v_account_id, p_unit, p_threshold, null, now());
  return query select * from creditkit.balance_alert_of(v_account_id, p_unit);
end;
$$;
comment on function public.creditkit_my_set_balance_alert(text, bigint, uuid) is
  'Signed-in users. Your low-balance threshold in a unit (NULL: the default the app set), for your account or one creditkit.can_manage_billing lets you manage (CK005 otherwise).';
revoke all on function public.creditkit_my_set_balance_alert(text, bigint, uuid) from public, anon, authenticated, service_role;
grant execute on function public.creditkit_my_set_balance_alert(text, bigint, uuid) to authenticated;

-- Security definer: reads the kit's tables for the account named (the server's call).
create or replace function public.creditkit_balance_alert(
  p_account_id uuid,
  p_unit text default 'credits')
returns table (account_id uuid, unit text, threshold bigint, source text, state text, spendable bigint)
language plpgsql
stable
security definer
set search_path = ''
set enable_seqscan = off
as $$
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_unit(p_unit);
  if p_account_id is null then
    raise exception using errcode = 'CK006', message = 'invalid argument: account id must not be NULL';
  end if;
  return query select * from creditkit.balance_alert_of(p_account_id, p_unit);
end;
$$;
comment on function public.creditkit_balance_alert(uuid, text) is
  'Server only. An account''s low-balance threshold in a unit, where it comes from (account, unit or none), its state (ok, low, depleted) and spendable balance.';
revoke all on function public.creditkit_balance_alert(uuid, text) from public, anon, authenticated;
grant execute on function public.creditkit_balance_alert(uuid, text) to service_role;

-- Security definer: reads tables signed-in users have no grant on, for the caller's account only.
create or replace function public.creditkit_my_balance_alert(
  p_unit text default 'credits',
  p_account_id uuid default null)
returns table (account_id uuid, unit text, threshold bigint, source text, state text, spendable bigint)
language plpgsql
stable
security definer
set search_path = ''
set enable_seqscan = off
as $$
declare
  v_account_id uuid := creditkit.caller_account(p_account_id);
begin
  perform creditkit.check_unit(p_unit);
  return query select * from creditkit.balance_alert_of(v_account_id, p_unit);
end;
$$;
comment on function public.creditkit_my_balance_alert(text, uuid) is
  'Signed-in users. Your low-balance threshold in a unit and its state (ok, low, depleted): what a low-balance banner shows.';
revoke all on function public.creditkit_my_balance_alert(text, uuid) from public, anon, authenticated, service_role;
grant execute on function public.creditkit_my_balance_alert(text, uuid) to authenticated;

-- The row the auto top-up reads and settings answer.
create or replace function creditkit.auto_topup_of(p_account_id uuid, p_unit text, p_now timestamptz)
returns table (account_id uuid, unit text, enabled boolean, status text, status_reason text, threshold bigint,
               amount bigint, target bigint, pack_id text, failures integer, monthly_amount_cap bigint,
               monthly_count_cap integer, month_amount bigint, month_count integer, currency text,
               payment_method jsonb, last_topup jsonb)
language plpgsql
stable
set search_path = ''
as $$
declare
  -- (a statement of its own: on Citus a function called from a query on a shard cannot query again)
  v_month record := creditkit.month_charges(p_account_id, p_unit, p_now);
begin
  return query
  select p_account_id, p_unit, coalesce(t.enabled, false), coalesce(t.status, 'off'), t.status_reason, t.threshold,
         t.amount, t.target, t.pack_id, coalesce(t.failures, 0),
         least(t.monthly_amount_cap, terms.monthly_amount_cap), least(t.monthly_count_cap, terms.monthly_count_cap),
         v_month.amount, v_month.n, coalesce(k.currency, terms.currency),
         (select c.details from creditkit.card_on_file(p_account_id) c),
         (select jsonb_build_object('id', p.id, 'status', p.status, 'amount', p.amount, 'charge_amount', p.charge_amount,
                                    'currency', p.currency, 'failure_code', p.failure_code, 'action_url', p.action_url,
                                    'created_at', p.created_at, 'completed_at', p.completed_at)
            from creditkit.topups p where p.account_id = p_account_id and p.unit = p_unit
           order by p.created_at desc, p.id desc limit 1)
    from (select 1) one
    left join creditkit.auto_topups t on t.account_id = p_account_id and t.unit = p_unit
    left join creditkit.auto_topup_terms terms on terms.unit = p_unit
    left join creditkit.packs k on k.id = t.pack_id;
end;
$$;
comment on function creditkit.auto_topup_of(uuid, text, timestamptz) is
  'An (account, unit)''s auto top-up: settings, status, caps and what this month used, the card on file and the last top-up.';
revoke all on function creditkit.auto_topup_of(uuid, text, timestamptz) from public, anon, authenticated, service_role;

create or replace function creditkit.set_auto_topup(p_account_id uuid, p_unit text, p_enabled boolean, p_threshold bigint,
  p_amount bigint, p_target bigint, p_pack_id text, p_monthly_amount_cap bigint, p_monthly_count_cap integer,
  p_now timestamptz)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_terms creditkit.auto_topup_terms;
  v_pack creditkit.packs;
  v_card record;
begin
  perform creditkit.check_request(null, null, null, p_now);
  perform creditkit.check_unit(p_unit);
  if p_enabled is null then
    raise exception using errcode = 'CK006', message = 'invalid argument: enabled must not be NULL';
  end if;
  if not p_enabled then
    perform creditkit.lock_for_setting(p_account_id, p_unit, p_now);
    update creditkit.auto_topups t set enabled = false, status = 'off', status_reason = null, updated_at = now()
     where t.account_id = p_account_id and t.unit = p_unit;
    -- a top-up not charged yet is dropped; one being charged completes
    update creditkit.topups p set status = 'canceled', failure_code = 'auto_topup_off', completed_at = now(), updated_at = now()
     where p.account_id = p_account_id and p.unit = p_unit and p.status in ('pending', 'action_required');
    perform creditkit.watch(p_account_id, p_unit, false);
    return;
  end if;
  select t.* into v_terms from creditkit.auto_topup_terms t where t.unit = p_unit and t.enabled;
  if not found then
    raise exception using errcode = 'CK016', message = format('auto top-up is not offered for %s', p_unit);
  end if;
  if p_threshold is null or p_threshold < v_terms.min_threshold or p_threshold > 9007199254740991 then
    raise exception using errcode = 'CK006',
      message = format('invalid argument: the threshold must be at least %s', v_terms.min_threshold);
  end if;
  if num_nonnulls(p_amount, p_target, p_pack_id) <> 1 then
    raise exception using errcode = 'CK006', message = 'invalid argument: give exactly one of amount, target or pack';
  end if;
  if p_amount is not null and (p_amount < v_terms.min_amount or p_amount > v_terms.max_amount) then
    raise exception using errcode = 'CK001',
      message = format('invalid amount: a top-up of %s is between %s and %s', p_unit, v_terms.min_amount, v_terms.max_amount);
  end if;
  if p_target is not null and (p_target <= p_threshold or p_target > 9007199254740991) then
    raise exception using errcode = 'CK001', message = 'invalid amount: the target balance must be above the threshold';
  end if;
  if p_pack_id is not null then
    select k.* into v_pack from creditkit.packs k where k.id = p_pack_id and k.active and k.unit = p_unit and k.price_amount > 0;
    if not found then
      raise exception using errcode = 'CK013', message = format('unknown pack: %s (an active, priced pack of %s)', p_pack_id, p_unit);
    end if;
  end if;
  if p_monthly_amount_cap is not null then
    perform creditkit.check_amount(p_monthly_amount_cap);
  end if;
  if p_monthly_count_cap < 1 then
    raise exception using errcode = 'CK006', message = 'invalid argument: a monthly count cap is at least 1';
  end if;
  perform creditkit.lock_for_setting(p_account_id, p_unit, p_now);
  select * into v_card from creditkit.card_on_file(p_account_id);
  if v_card.payment_method is null then
    raise exception using errcode = 'CK016', message = 'auto top-up needs a card on file: save one through Stripe first';
  end if;
  if creditkit.settles_later(v_card.type) then
    raise exception using errcode = 'CK016',
      message = format('auto top-up needs a card: %s payments settle days later', v_card.type);
  end if;
  insert into creditkit.auto_topups as t (account_id, unit, enabled, status, threshold, amount, target, pack_id,
                                          monthly_amount_cap, monthly_count_cap)
  values (p_account_id, p_unit, true, 'active', p_threshold, p_amount, p_target, p_pack_id,
          p_monthly_amount_cap, p_monthly_count_cap)
  on conflict on constraint auto_topups_pkey do update
     set enabled = true, status = 'active', status_reason = null, failures = 0, armed = true,
         threshold = excluded.threshold, amount = excluded.amount, target = excluded.target, pack_id = excluded.pack_id,
         monthly_amount_cap = excluded.monthly_amount_cap, monthly_count_cap = excluded.monthly_count_cap,
         updated_at = excluded.updated_at;
  -- turned on again: a payment left waiting for the customer is dropped
  update creditkit.topups p set status = 'canceled', failure_code = 'auto_topup_reset', completed_at = now(), updated_at = now()
   where p.account_id = p_account_id and p.unit = p_unit and p.status = 'action_required';
  -- already at or below the threshold: the top-up starts now
  perform creditkit.watch(p_account_id, p_unit, false);
end;
$$;
comment on function creditkit.set_auto_topup(uuid, text, boolean, bigint, bigint, bigint, text, bigint, integer, timestamptz) is
  'Turns an (account, unit)''s auto top-up on (checked against the terms and the card on file; tops up at once when already at or below the threshold) or off.';
revoke all on function creditkit.set_auto_topup(uuid, text, boolean, bigint, bigint, bigint, text, bigint, integer, timestamptz) from public, anon, authenticated, service_role;

-- Security definer: writes the kit's tables; service_role only.
create or replace function public.creditkit_set_auto_topup(
  p_account_id uuid,
  p_unit text,
  p_enabled boolean,
  p_threshold bigint default null,
  p_amount bigint default null,
  p_target bigint default null,
  p_pack_id text default null,
  p_monthly_amount_cap bigint default null,
  p_monthly_count_cap integer default null,
  p_now timestamptz default now())
returns table (account_id uuid, unit text, enabled boolean, status text, status_reason text, threshold bigint,
               amount bigint, target bigint, pack_id text, failures integer, monthly_amount_cap bigint,
               monthly_count_cap integer, month_amount bigint, month_count integer, currency text,
               payment_method jsonb, last_topup jsonb)
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
begin
  perform creditkit.assert_server_caller();
  perform creditkit.set_auto_topup(p_account_id, p_unit, p_enabled, p_threshold, p_amount, p_target, p_pack_id,
                                   p_monthly_amount_cap, p_monthly_count_cap, p_now);
  return query select * from creditkit.auto_topup_of(p_account_id, p_unit, p_now);
end;
$$;
comment on function public.creditkit_set_auto_topup(uuid, text, boolean, bigint, bigint, bigint, text, bigint, integer, timestamptz) is
  'Server only. Turns an account''s auto top-up of a unit on (threshold; exactly one of amount, target balance or pack; optional monthly caps below the operator''s) or off. CK016 when the unit has no terms or the account no usable card.';
revoke all on function public.creditkit_set_auto_topup(uuid, text, boolean, bigint, bigint, bigint, text, bigint, integer, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_set_auto_topup(uuid, text, boolean, bigint, bigint, bigint, text, bigint, integer, timestamptz) to service_role;

-- Security definer: the caller is checked (creditkit.caller_account) before anything is written.
create or replace function public.creditkit_my_set_auto_topup(
  p_unit text,
  p_enabled boolean,
  p_threshold bigint default null,
  p_amount bigint default null,
  p_target bigint default null,
  p_pack_id text default null,
  p_account_id uuid default null)
returns table (account_id uuid, unit text, enabled boolean, status text, status_reason text, threshold bigint,
               amount bigint, target bigint, pack_id text, failures integer, monthly_amount_cap bigint,
               monthly_count_cap integer, month_amount bigint, month_count integer, currency text,
               payment_method jsonb, last_topup jsonb)
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_account_id uuid := creditkit.billing_account(p_account_id);
  v_caps record;
begin
  -- the customer's own caps are the ones they set before (the server sets them)
  select t.monthly_amount_cap, t.monthly_count_cap into v_caps
    from creditkit.auto_topups t where t.account_id = v_account_id and t.unit = p_unit;
  perform creditkit.set_auto_topup(v_account_id, p_unit, p_enabled, p_threshold, p_amount, p_target, p_pack_id,
                                   v_caps.monthly_amount_cap, v_caps.monthly_count_cap, now());
  return query select * from creditkit.auto_topup_of(v_account_id, p_unit, now());
end;
$$;
comment on function public.creditkit_my_set_auto_topup(text, boolean, bigint, bigint, bigint, text, uuid) is
  'Signed-in users. Turns auto top-up of a unit on for your account, or one creditkit.can_manage_billing lets you manage (threshold; exactly one of amount, target balance or pack), or off. Needs a card saved through Stripe (CK016).';
revoke all on function public.creditkit_my_set_auto_topup(text, boolean, bigint, bigint, bigint, text, uuid) from public, anon, authenticated, service_role;
grant execute on function public.creditkit_my_set_auto_topup(text, boolean, bigint, bigint, bigint, text, uuid) to authenticated;

-- Security definer: reads the kit's tables for the account named (the server's call).
create or replace function public.creditkit_auto_topup(
  p_account_id uuid,
  p_unit text default 'credits')
returns table (account_id uuid, unit text, enabled boolean, status text, status_reason text, threshold bigint,
               amount bigint, target bigint, pack_id text, failures integer, monthly_amount_cap bigint,
               monthly_count_cap integer, month_amount bigint, month_count integer, currency text,
               payment_method jsonb, last_topup jsonb)
language plpgsql
stable
security definer
set search_path = ''
set enable_seqscan = off
as $$
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_unit(p_unit);
  if p_account_id is null then
    raise exception using errcode = 'CK006', message = 'invalid argument: account id must not be NULL';
  end if;
  return query select * from creditkit.auto_topup_of(p_account_id, p_unit, now());
end;
$$;
comment on function public.creditkit_auto_topup(uuid, text) is
  'Server only. An account''s auto top-up of a unit: settings, status (off, active, action_required, disabled) and why, caps and this month''s use, the card on file, the last top-up.';
revoke all on function public.creditkit_auto_topup(uuid, text) from public, anon, authenticated;
grant execute on function public.creditkit_auto_topup(uuid, text) to service_role;

-- Security definer: reads tables signed-in users have no grant on, for the caller's account only.
create or replace function public.creditkit_my_auto_topup(
  p_unit text default 'credits',
  p_account_id uuid default null)
returns table (account_id uuid, unit text, enabled boolean, status text, status_reason text, threshold bigint,
               amount bigint, target bigint, pack_id text, failures integer, monthly_amount_cap bigint,
               monthly_count_cap integer, month_amount bigint, month_count integer, currency text,
               payment_method jsonb, last_topup jsonb)
language plpgsql
stable
security definer
set search_path = ''
set enable_seqscan = off
as $$
declare
  v_account_id uuid := creditkit.caller_account(p_account_id);
begin
  perform creditkit.check_unit(p_unit);
  return query select * from creditkit.auto_topup_of(v_account_id, p_unit, now());
end;
$$;
comment on function public.creditkit_my_auto_topup(text, uuid) is
  'Signed-in users. Your auto top-up of a unit: settings, status and why, caps and this month''s use, the card on file, the last top-up.';
revoke all on function public.creditkit_my_auto_topup(text, uuid) from public, anon, authenticated, service_role;
grant execute on function public.creditkit_my_auto_topup(text, uuid) to authenticated;

create or replace function creditkit.topups_page(p_account_id uuid, p_unit text, p_status text, p_limit integer)
returns table (id bigint, account_id uuid, unit text, status text, amount bigint, charge_amount bigint, currency text,
               attempt integer, payment_intent text, failure_code text, failure_message text, action_url text,
               created_at timestamptz, updated_at timestamptz, completed_at timestamptz)
language plpgsql
stable
set search_path = ''
as $$
begin
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception using errcode = 'CK006', message = 'invalid argument: limit must be between 1 and 1000';
  end if;
  if p_status not in ('pending', 'charging', 'processing', 'succeeded', 'failed', 'action_required', 'canceled') then
    raise exception using errcode = 'CK006', message = 'invalid argument: unknown top-up status';
  end if;
  return query
  select p.id, p.account_id, p.unit, p.status, p.amount, p.charge_amount, p.currency, p.attempt, p.payment_intent,
         p.failure_code, p.failure_message, p.action_url, p.created_at, p.updated_at, p.completed_at
    from creditkit.topups p
   where (p_account_id is null or p.account_id = p_account_id)
     and (p_unit is null or p.unit = p_unit)
     and (p_status is null or p.status = p_status)
   -- newest first by when they were written: ids come from each node's range on Citus (docs/citus.md, D1)
   order by p.created_at desc, p.id desc
   limit p_limit;
end;
$$;
comment on function creditkit.topups_page(uuid, text, text, integer) is 'Top-ups newest first, optionally of one account, unit or status.';
revoke all on function creditkit.topups_page(uuid, text, text, integer) from public, anon, authenticated, service_role;

-- Security definer: reads the kit's tables (the server's call).
create or replace function public.creditkit_topups(
  p_account_id uuid default null,
  p_status text default null,
  p_limit integer default 50)
returns table (id bigint, account_id uuid, unit text, status text, amount bigint, charge_amount bigint, currency text,
               attempt integer, payment_intent text, failure_code text, failure_message text, action_url text,
               created_at timestamptz, updated_at timestamptz, completed_at timestamptz)
language plpgsql
stable
security definer
set search_path = ''
set enable_seqscan = off
as $$
begin
  perform creditkit.assert_server_caller();
  return query select * from creditkit.topups_page(p_account_id, null, p_status, p_limit);
end;
$$;
comment on function public.creditkit_topups(uuid, text, integer) is
  'Server only. Top-ups newest first (optionally of one account or status): amount, charge, status, PaymentIntent, failure and action link.';
revoke all on function public.creditkit_topups(uuid, text, integer) from public, anon, authenticated;
grant execute on function public.creditkit_topups(uuid, text, integer) to service_role;

-- Security definer: reads tables signed-in users have no grant on, for the caller's account only.
create or replace function public.creditkit_my_topups(
  p_unit text default null,
  p_limit integer default 20,
  p_account_id uuid default null)
returns table (id bigint, account_id uuid, unit text, status text, amount bigint, charge_amount bigint, currency text,
               attempt integer, payment_intent text, failure_code text, failure_message text, action_url text,
               created_at timestamptz, updated_at timestamptz, completed_at timestamptz)
language plpgsql
stable
security definer
set search_path = ''
set enable_seqscan = off
as $$
declare
  v_account_id uuid := creditkit.caller_account(p_account_id);
begin
  if p_unit is not null then
    perform creditkit.check_unit(p_unit);
  end if;
  return query select * from creditkit.topups_page(v_account_id, p_unit, null, p_limit);
end;
$$;
comment on function public.creditkit_my_topups(text, integer, uuid) is
  'Signed-in users. Your top-ups newest first (optionally of one unit): amount, charge, status, failure and the link to pay one that needs you.';
revoke all on function public.creditkit_my_topups(text, integer, uuid) from public, anon, authenticated, service_role;
grant execute on function public.creditkit_my_topups(text, integer, uuid) to authenticated;

-- ---------------------------------------------------------------------------------------------
-- The worker's side of top-ups (service_role only)
-- ---------------------------------------------------------------------------------------------

-- Security definer: writes the kit's tables; service_role only. Claims due top-ups with SKIP
-- LOCKED. A top-up whose worker's lease ran out is handed out again as it was (same attempt, key,
-- card and amount), so Stripe answers the first charge instead of making a second. A new charge is
-- checked first: auto top-up still on, a usable card, the cooldown since the last charge, the
-- monthly caps (a top-up over a cap waits for the next month).
create or replace function public.creditkit_worker_claim_topups(
  p_limit integer default 10,
  p_lease interval default '2 minutes',
  p_now timestamptz default now())
returns table (topup_id bigint, attempt integer, idempotency_key text, account_id uuid, unit text, amount bigint,
               charge_amount bigint, currency text, customer_id text, payment_method text, metadata jsonb)
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_pick record;
  v_claimed integer := 0;
  v_topup creditkit.topups;
  v_auto creditkit.auto_topups;
  v_terms creditkit.auto_topup_terms;
  v_card record;
  v_last timestamptz;
  v_month timestamptz := date_trunc('month', p_now at time zone 'UTC') at time zone 'UTC';
  v_used record;
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_request(null, null, null, p_now);
  if p_limit is null or p_limit < 1 or p_limit > 1000 or p_lease is null or p_lease < interval '1 second' then
    raise exception using errcode = 'CK006', message = 'invalid argument: limit between 1 and 1000, lease at least 1 second';
  end if;
  -- picked without a lock, then each locked by its id and account (one shard on Citus) and
  -- checked again: one another worker holds, or that changed since, is left for the next claim
  for v_pick in
    select p.id, p.account_id from creditkit.topups p
     where (p.status = 'pending' and coalesce(p.next_attempt_at, '-infinity') <= p_now)
        or (p.status = 'charging' and p.claimed_until <= p_now)
     order by coalesce(p.next_attempt_at, '-infinity'), p.id
     limit p_limit * 4  -- room for the ones other workers hold
  loop
    exit when v_claimed >= p_limit;
    select p.* into v_topup from creditkit.topups p
     where p.id = v_pick.id and p.account_id = v_pick.account_id
       and ((p.status = 'pending' and coalesce(p.next_attempt_at, '-infinity') <= p_now)
            or (p.status = 'charging' and p.claimed_until <= p_now))
       for update skip locked;
    continue when not found;
    if v_topup.status = 'pending' then
      -- the account's lock (the order every writer of its auto top-up keeps: the account, then its
      -- top-ups); a busy account's top-up waits for the next claim instead of holding up the rest
      perform from creditkit.accounts a where a.id = v_topup.account_id and a.unit = v_topup.unit for update skip locked;
      if not found then
        continue;
      end if;
      select t.* into v_auto from creditkit.auto_topups t where t.account_id = v_topup.account_id and t.unit = v_topup.unit;
      select t.* into v_terms from creditkit.auto_topup_terms t where t.unit = v_topup.unit;
      if v_auto.status is distinct from 'active' or not coalesce(v_terms.enabled, false) then
        update creditkit.topups p
           set status = 'canceled', failure_code = 'auto_topup_' || coalesce(v_auto.status, 'off'),
               completed_at = now(), updated_at = now()
         where p.id = v_topup.id and p.account_id = v_topup.account_id;
        continue;
      end if;
      select * into v_card from creditkit.card_on_file(v_topup.account_id);
      if v_card.payment_method is null or creditkit.settles_later(v_card.type) then
        perform creditkit.topup_failed(v_topup.id, false,
          case when v_card.payment_method is null then 'no_payment_method' else 'payment_method_delayed' end,
          'auto top-up needs a card that settles at once', null,
          case when v_card.payment_method is null then 'no_payment_method' else 'payment_method_delayed' end);
        continue;
      end if;
      select max(p.charged_at) into v_last from creditkit.topups p
       where p.account_id = v_topup.account_id and p.unit = v_topup.unit and p.id <> v_topup.id;
      if v_last + v_terms.cooldown > p_now then
        update creditkit.topups p set next_attempt_at = v_last + v_terms.cooldown, updated_at = now() where p.id = v_topup.id and p.account_id = v_topup.account_id;
        continue;
      end if;
      select * into v_used from creditkit.month_charges(v_topup.account_id, v_topup.unit, p_now);
      if v_used.n >= least(v_auto.monthly_count_cap, v_terms.monthly_count_cap)
         or v_used.amount + v_topup.charge_amount > least(v_auto.monthly_amount_cap, v_terms.monthly_amount_cap) then
        update creditkit.topups p
           set next_attempt_at = v_month + interval '1 month', failure_code = 'monthly_cap_reached', updated_at = now()
         where p.id = v_topup.id and p.account_id = v_topup.account_id;
        continue;
      end if;
      update creditkit.topups p
         set status = 'charging', attempt = p.attempt + 1, claimed_until = p_now + p_lease, charged_at = p_now,
             -- a charge Stripe may have made already (no answer came) is asked again as it was
             customer_id = coalesce(p.customer_id, v_card.customer_id),
             payment_method = coalesce(p.payment_method, v_card.payment_method), failure_code = null,
             updated_at = now()
       where p.id = v_topup.id and p.account_id = v_topup.account_id
      returning p.* into v_topup;
    else
      -- the lease ran out: the same charge again (Stripe answers it from its idempotency key)
      update creditkit.topups p set claimed_until = p_now + p_lease, updated_at = now()
       where p.id = v_topup.id and p.account_id = v_topup.account_id
      returning p.* into v_topup;
    end if;
    topup_id := v_topup.id;
    attempt := v_topup.attempt;
    idempotency_key := 'creditkit-topup-' || v_topup.id;
    account_id := v_topup.account_id;
    unit := v_topup.unit;
    amount := v_topup.amount;
    charge_amount := v_topup.charge_amount;
    currency := v_topup.currency;
    customer_id := v_topup.customer_id;
    payment_method := v_topup.payment_method;
    metadata := jsonb_build_object('creditkit_topup_id', v_topup.id::text, 'creditkit_account_id', v_topup.account_id::text,
                                   'creditkit_unit', v_topup.unit, 'creditkit_amount', v_topup.amount::text);
    v_claimed := v_claimed + 1;
    return next;
  end loop;
end;
$$;
comment on function public.creditkit_worker_claim_topups(integer, interval, timestamptz) is
  'Server only (the worker). Claims up to p_limit due top-ups for p_lease: amount, charge, customer, card, the Stripe idempotency key and PaymentIntent metadata. Checks auto top-up, the card, cooldown and monthly caps first; a lease that ran out hands the same charge out again.';
revoke all on function public.creditkit_worker_claim_topups(integer, interval, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_worker_claim_topups(integer, interval, timestamptz) to service_role;

-- Security definer: writes the kit's tables; service_role only.
create or replace function public.creditkit_worker_topup_result(
  p_topup_id bigint,
  p_attempt integer,
  p_outcome text,
  p_payment_intent text default null,
  p_code text default null,
  p_message text default null,
  p_now timestamptz default now(),
  out status text,
  out auto_topup_status text)
returns record
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_topup creditkit.topups;
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_request(null, null, null, p_now);
  if p_outcome is null or p_outcome not in ('succeeded', 'processing', 'requires_action', 'declined', 'retry') then
    raise exception using errcode = 'CK006',
      message = 'invalid argument: outcome is succeeded, processing, requires_action, declined or retry';
  end if;
  if p_payment_intent is not null and p_payment_intent !~ '^pi_[A-Za-z0-9_]+$' then
    raise exception using errcode = 'CK006', message = 'invalid argument: a payment intent id is pi_...';
  end if;
  select p.* into v_topup from creditkit.topups p where p.id = p_topup_id;
  if not found then
    raise exception using errcode = 'CK018', message = format('unknown top-up: %s', p_topup_id);
  end if;
  -- the account's lock first, then the top-up's (the order of every writer of both)
  perform from creditkit.accounts a where a.id = v_topup.account_id and a.unit = v_topup.unit for update;
  select p.* into v_topup from creditkit.topups p where p.id = p_topup_id and p.account_id = v_topup.account_id for update;
  if v_topup.status = 'charging' and v_topup.attempt = p_attempt then
    if p_outcome in ('succeeded', 'processing') then
      -- charged: the credits land from payment_intent.succeeded
      update creditkit.topups p
         set status = 'processing', payment_intent = coalesce(p_payment_intent, p.payment_intent), claimed_until = null,
             updated_at = now()
       where p.id = p_topup_id and p.account_id = v_topup.account_id;
    elsif p_outcome = 'retry' and v_topup.attempt >= 5 then
      -- five tries without an answer (Stripe keeps a 500 under its key and answers it again):
      -- this charge is given up, not counted against the card; the next top-up, with its own
      -- key, follows after the cooldown
      perform creditkit.topup_failed(p_topup_id, false, coalesce(p_code, 'stripe_unavailable'), p_message, p_payment_intent,
                                     'stripe_unavailable');
    elsif p_outcome = 'retry' then
      -- no answer from Stripe: the same charge (same key) after a short wait
      update creditkit.topups p
         set status = 'pending', claimed_until = null, next_attempt_at = p_now + interval '30 seconds',
             failure_code = left(p_code, 100), failure_message = left(p_message, 1000), updated_at = now()
       where p.id = p_topup_id and p.account_id = v_topup.account_id;
    else
      perform creditkit.topup_failed(p_topup_id, p_outcome = 'requires_action',
                                     coalesce(p_code, case when p_outcome = 'requires_action' then 'authentication_required'
                                                           else 'card_declined' end),
                                     p_message, p_payment_intent);
    end if;
  end if;
  select p.status into status from creditkit.topups p where p.id = p_topup_id and p.account_id = v_topup.account_id;
  select coalesce(t.status, 'off') into auto_topup_status
    from (select 1) one left join creditkit.auto_topups t on t.account_id = v_topup.account_id and t.unit = v_topup.unit;
end;
$$;
comment on function public.creditkit_worker_topup_result(bigint, integer, text, text, text, text, timestamptz) is
  'Server only (the worker). Records how a top-up''s charge went: succeeded or processing (the webhook grants), requires_action (auto top-up pauses; the customer gets a link), declined (counted; the third disables auto top-up), retry (no answer: the same charge, same key, 30 seconds later; after the fifth try it fails as stripe_unavailable, not counted, and a new top-up follows). An answer to a stale attempt changes nothing.';
revoke all on function public.creditkit_worker_topup_result(bigint, integer, text, text, text, text, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_worker_topup_result(bigint, integer, text, text, text, text, timestamptz) to service_role;
