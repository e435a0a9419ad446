-- creditkit Stripe, the state: the credit-pack catalogue, one Stripe customer per account, what each
-- pack payment bought and how much refunds and disputes took back, and the allowance of each paid
-- subscription invoice. The webhook's event handling is in the next file (creditkit_stripe_apply).
-- This state is keyed by Stripe's ids, not by account (a refund can arrive before the checkout
-- that names the account), so it holds no foreign key to the per-account tables: a grant_id here
-- names the account's bucket, which the kit wrote in the same transaction.

create table creditkit.packs (
  id text primary key
    constraint packs_id_format check (id ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
  name text not null
    constraint packs_name_length check (length(name) between 1 and 200),
  credits bigint not null
    constraint packs_credits_range check (credits between 1 and 9007199254740991),
  -- What the pack sells for, in the smallest currency unit (cents).
  price_amount bigint not null default 0
    constraint packs_price_amount_range check (price_amount between 0 and 9007199254740991),
  currency text not null default 'usd'
    constraint packs_currency_format check (currency ~ '^[a-z]{3}$'),
  stripe_price_id text unique,
  -- Credits from this pack expire this long after the purchase; NULL: never.
  expires_after interval
    constraint packs_expires_after_positive check (expires_after > interval '0'),
  active boolean not null default true,
  created_at timestamptz not null default now(),
  -- The metered unit the pack tops up (`credits` is the amount of it).
  unit text not null default 'credits' references creditkit.units (id)
);
comment on table creditkit.packs is 'One-off packs of a metered unit (credits by default) sold through Stripe Checkout (mode payment).';

create table creditkit.stripe_customers (
  account_id uuid primary key,
  customer_id text not null unique
    constraint stripe_customers_id_format check (customer_id ~ '^cus_[A-Za-z0-9]+$'),
  created_at timestamptz not null default now()
);
comment on table creditkit.stripe_customers is 'The one Stripe customer of each account.';

-- What each payment bought, and how much of it refunds and disputes took back: a pack bought
-- through Checkout, or a subscription invoice's allowance. A payment is known by up to three of
-- Stripe's ids, learnt in any order: the Checkout Session that sold it, its PaymentIntent (the
-- id refunds and disputes carry) and the invoice it paid. Two rows found for one payment (say a
-- refund seen before the checkout that names its PaymentIntent) are merged into one.
create table creditkit.stripe_payments (
  id bigint generated always as identity primary key,
  payment_intent text unique,
  checkout_session text unique,
  invoice text unique,
  account_id uuid,
  pack_id text references creditkit.packs (id),
  credits bigint
    constraint stripe_payments_credits_range check (credits between 1 and 9007199254740991),
  amount_paid bigint
    constraint stripe_payments_amount_paid_range check (amount_paid >= 0),
  currency text,
  state text not null default 'pending'
    constraint stripe_payments_state check (state in ('pending', 'paid', 'failed')),
  grant_id bigint,
  -- Cumulative, as Stripe reports it on the charge (the largest seen).
  amount_refunded bigint not null default 0
    constraint stripe_payments_amount_refunded_range check (amount_refunded >= 0),
  disputed boolean not null default false,
  -- `created` of the dispute event that set `disputed`: older ones change nothing.
  dispute_at timestamptz,
  -- Credits the refunds and disputes call for taking back (applied so far) ...
  clawed_back bigint not null default 0
    constraint stripe_payments_clawed_back_range check (clawed_back >= 0),
  -- ... of which this many could not be taken: they had already been spent.
  shortfall bigint not null default 0
    constraint stripe_payments_shortfall_range check (shortfall between 0 and clawed_back),
  -- Of the credits taken back, how many came out of the pack's own bucket (grant_id): a
  -- reinstated dispute puts that many back into it.
  taken_from_grant bigint not null default 0
    constraint stripe_payments_taken_from_grant_range check (taken_from_grant between 0 and clawed_back),
  updated_at timestamptz not null default now(),
  -- The unit `credits` is an amount of: the pack's (an invoice's allowance is credits).
  unit text not null default 'credits',
  constraint stripe_payments_identified check (num_nonnulls(payment_intent, checkout_session, invoice) > 0)
);
comment on table creditkit.stripe_payments is 'Payments for packs and subscription invoices, by any of their Stripe ids: credits bought, refunded and disputed amounts, credits taken back and the shortfall (credits already spent).';

-- One allowance per paid subscription invoice.
create table creditkit.stripe_invoices (
  invoice_id text primary key,
  account_id uuid not null,
  subscription_id text not null,
  plan_id text not null references creditkit.plans (id),
  billing_reason text,
  period_start timestamptz not null,
  period_end timestamptz not null,
  grant_id bigint,
  -- granted: the newest period when it arrived, its allowance (and any rollover) is that period's
  -- bucket; late: a later period was applied first, so its allowance rolled into that one (as far
  -- as the plan's rollover allows) and the rest expired at once; no_allowance: nothing to grant.
  outcome text not null
    constraint stripe_invoices_outcome check (outcome in ('granted', 'late', 'no_allowance')),
  -- Credit it carried into the period it landed in: for granted, the rollover from before; for
  -- late, what of its allowance rolled into the newer period, the invoice `rolled_into`.
  carried bigint not null default 0
    constraint stripe_invoices_carried_range check (carried between 0 and 9007199254740991),
  rolled_into text,
  applied_at timestamptz not null default now()
);
comment on table creditkit.stripe_invoices is 'Subscription invoices whose period was applied: the allowance granted for each, once, whatever the order they arrive in.';
create index stripe_invoices_account on creditkit.stripe_invoices (account_id, period_start desc);

-- A subscription that Stripe manages renews through its invoices, never lazily.

create or replace function creditkit.stripe_managed_no_lazy_renewal()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.stripe_subscription_id is not null then
    new.renews_at := null;
  end if;
  return new;
end;
$$;
comment on function creditkit.stripe_managed_no_lazy_renewal() is
  'Trigger: a subscription Stripe manages never renews lazily (renews_at stays NULL); its invoices start its periods.';
revoke all on function creditkit.stripe_managed_no_lazy_renewal() from public, anon, authenticated, service_role;

create trigger stripe_managed_no_lazy_renewal
  before insert or update on creditkit.subscriptions
  for each row execute function creditkit.stripe_managed_no_lazy_renewal();

alter table creditkit.packs enable row level security;
alter table creditkit.stripe_customers enable row level security;
alter table creditkit.stripe_payments enable row level security;
alter table creditkit.stripe_invoices enable row level security;
revoke all on table creditkit.packs, creditkit.stripe_customers, creditkit.stripe_payments, creditkit.stripe_invoices
  from public, anon, authenticated, service_role;
grant select on table creditkit.packs to authenticated, service_role;
grant select on table creditkit.stripe_customers, creditkit.stripe_payments, creditkit.stripe_invoices to service_role;
create policy "signed-in users can read the pack catalogue"
  on creditkit.packs for select to authenticated using (true);

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

-- Links an account to its Stripe customer; the first link wins. For the webhook: a missing or
-- malformed id, or a customer already linked to another account, is left alone (the event still
-- applies). The caller holds the account lock. Returns the account's customer id, or NULL.
create or replace function creditkit.stripe_link_customer(p_account_id uuid, p_customer_id text, p_now timestamptz)
returns text
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_customer text;
begin
  if p_account_id is not null and p_customer_id ~ '^cus_[A-Za-z0-9]+$' then
    insert into creditkit.stripe_customers (account_id, customer_id, created_at)
    values (p_account_id, p_customer_id, p_now)
    on conflict do nothing;
  end if;
  select c.customer_id into v_customer from creditkit.stripe_customers c where c.account_id = p_account_id;
  return v_customer;
end;
$$;
comment on function creditkit.stripe_link_customer(uuid, text, timestamptz) is
  'Stores an account''s Stripe customer unless either is linked already; returns the account''s customer id.';
revoke all on function creditkit.stripe_link_customer(uuid, text, timestamptz) from public, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Server API: the pack catalogue and customers, for Checkout
-- ---------------------------------------------------------------------------------------------

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

-- Security invoker: a read; service_role has SELECT on creditkit.stripe_customers.
create or replace function public.creditkit_stripe_customer(p_account_id uuid)
returns text
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
  return (select c.customer_id from creditkit.stripe_customers c where c.account_id = p_account_id);
end;
$$;
comment on function public.creditkit_stripe_customer(uuid) is
  'Server only. The Stripe customer id stored for an account, or NULL.';
revoke all on function public.creditkit_stripe_customer(uuid) from public, anon, authenticated;
grant execute on function public.creditkit_stripe_customer(uuid) to service_role;

create or replace function public.creditkit_stripe_link_customer(p_account_id uuid, p_customer_id text)
returns text
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_linked uuid;
  v_customer text;
begin
  perform creditkit.assert_server_caller();
  if p_account_id is null then
    raise exception using errcode = 'CK006', message = 'invalid argument: account id must not be NULL';
  end if;
  if p_customer_id is null or p_customer_id !~ '^cus_[A-Za-z0-9]+$' then
    raise exception using errcode = 'CK006', message = 'invalid argument: customer id must look like cus_...';
  end if;
  perform creditkit.stripe_lock_account(p_account_id, now());
  select c.account_id into v_linked from creditkit.stripe_customers c where c.customer_id = p_customer_id;
  if v_linked is not null and v_linked <> p_account_id then
    raise exception using errcode = 'CK006', message = format('invalid argument: customer %s belongs to another account', p_customer_id);
  end if;
  v_customer := creditkit.stripe_link_customer(p_account_id, p_customer_id, now());
  if v_customer is null then  -- a concurrent call linked the customer to another account first
    raise exception using errcode = 'CK006', message = format('invalid argument: customer %s belongs to another account', p_customer_id);
  end if;
  return v_customer;
end;
$$;
comment on function public.creditkit_stripe_link_customer(uuid, text) is
  'Server only. Stores the Stripe customer of an account unless it has one; returns the stored id (the first one wins). CK006 for a customer linked to another account.';
revoke all on function public.creditkit_stripe_link_customer(uuid, text) from public, anon, authenticated;
grant execute on function public.creditkit_stripe_link_customer(uuid, text) to service_role;
