-- creditkit Stripe, the events: an inbox keyed by Stripe event id, and creditkit_stripe_apply, which
-- applies one verified event atomically (the inbox row and its effects commit together or not at
-- all). Stripe delivers at least once, in no guaranteed order, for up to three days, so every
-- effect is a function of state, not of arrival order:
--   * a pack is granted once per payment (keyed by payment intent), whichever of
--     checkout.session.completed / async_payment_succeeded arrives first, or twice;
--   * an allowance is granted once per invoice, and an older period's invoice arriving after a
--     newer one is recorded as superseded;
--   * subscription plan and status follow the newest event by `created` (ties broken by event
--     type, then event id, so equal timestamps resolve the same way in any order); an event of
--     another subscription replaces the account's current one only when it is newer and live;
--   * refunds and disputes set a target (credits to take back) on the payment, and the ledger is
--     moved by the difference between the target and what was already taken back. Credit is taken
--     from the pack's own bucket first and a reinstatement puts it back there, so a dispute
--     withdrawn and reinstated leaves the buckets as they were, in either order.
--
-- Lock order, so that concurrent events never deadlock: the inbox row; for a payment, an advisory
-- lock on its payment intent; the account row; the account's customer link.

-- The inbox: every verified event, once. `dead` events could not be applied (unknown account,
-- price or pack, or a balance limit) and wait for the operator (creditkit_stripe_replay).
create table creditkit.stripe_events (
  id text primary key
    constraint stripe_events_id_format check (id ~ '^evt_[A-Za-z0-9_]+$' and length(id) <= 255),
  type text not null,
  created timestamptz not null,
  livemode boolean not null default false,
  status text not null
    constraint stripe_events_status check (status in ('applied', 'ignored', 'dead')),
  -- What applying it did, in words (for the operator).
  effect text,
  account_id uuid,
  error_code text,
  error_message text,
  payload jsonb not null,
  -- How many times Stripe (or a replay) delivered it.
  deliveries integer not null default 1,
  received_at timestamptz not null default now(),
  applied_at timestamptz
);
comment on table creditkit.stripe_events is 'Inbox of Stripe events by event id: applied, ignored (a type the kit does not act on) or dead (waiting for the operator).';
create index stripe_events_dead on creditkit.stripe_events (received_at) where status = 'dead';

alter table creditkit.stripe_events enable row level security;
revoke all on table creditkit.stripe_events from public, anon, authenticated, service_role;
grant select on table creditkit.stripe_events to service_role;

-- How long a Stripe period's allowance outlives the period: a renewal invoice is paid about an
-- hour after the period starts (longer while a card is retried), and the allowance should not
-- lapse in between. The next period's invoice ends it at once.
create or replace function creditkit.stripe_allowance_grace()
returns interval
language sql
immutable
set search_path = ''
as $$ select interval '3 days' $$;
comment on function creditkit.stripe_allowance_grace() is
  'How long a Stripe period''s allowance outlives the period (until the next period''s invoice is paid).';
revoke all on function creditkit.stripe_allowance_grace() from public, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Reading events
-- ---------------------------------------------------------------------------------------------

-- A uuid from a metadata value, or NULL when it is missing or not a uuid.
create or replace function creditkit.stripe_uuid(p_value text)
returns uuid
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_value ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    return p_value::uuid;
  end if;
  return null;
end;
$$;
comment on function creditkit.stripe_uuid(text) is 'A uuid from a Stripe metadata value, or NULL when it is missing or not a uuid.';
revoke all on function creditkit.stripe_uuid(text) from public, anon, authenticated, service_role;

-- An id field that may be a string or an expanded object ({"id": ...}).
create or replace function creditkit.stripe_id(p_value jsonb)
returns text
language sql
immutable
set search_path = ''
as $$
  select case jsonb_typeof(p_value) when 'string' then p_value #>> '{}' when 'object' then p_value ->> 'id' end;
$$;
comment on function creditkit.stripe_id(jsonb) is 'The id of a Stripe field that is either an id string or an expanded object.';
revoke all on function creditkit.stripe_id(jsonb) from public, anon, authenticated, service_role;

create or replace function creditkit.stripe_time(p_unix jsonb)
returns timestamptz
language sql
immutable
set search_path = ''
as $$
  select case when jsonb_typeof(p_unix) = 'number' then to_timestamp((p_unix #>> '{}')::numeric) end;
$$;
comment on function creditkit.stripe_time(jsonb) is 'A Stripe timestamp (unix seconds) as timestamptz; NULL unless a number.';
revoke all on function creditkit.stripe_time(jsonb) from public, anon, authenticated, service_role;

-- Precedence of the events that set a subscription's plan and status when two have the same
-- `created` second: the subscription's own events over invoice.paid, and a later step of the
-- lifecycle over an earlier one. 0 is the checkout, which any event of the subscription overrides.
create or replace function creditkit.stripe_event_rank(p_type text)
returns smallint
language sql
immutable
set search_path = ''
as $$
  select (case p_type
            when 'checkout.session.completed' then 0
            when 'invoice.paid' then 1
            when 'customer.subscription.created' then 2
            when 'customer.subscription.updated' then 3
            when 'customer.subscription.deleted' then 4
          end)::smallint;
$$;
comment on function creditkit.stripe_event_rank(text) is
  'Tie-break between subscription events of the same created second, by type.';
revoke all on function creditkit.stripe_event_rank(text) from public, anon, authenticated, service_role;

-- Raised inside the appliers for an event that cannot be applied as it stands; the caller
-- records the event as dead with this code.
create or replace function creditkit.stripe_dead(p_code text, p_message text)
returns void
language plpgsql
set search_path = ''
as $$
begin
  raise exception using errcode = 'CKD01', message = p_message, detail = p_code;
end;
$$;
comment on function creditkit.stripe_dead(text, text) is
  'Ends the application of a Stripe event that cannot apply as it stands; the event is kept as dead with this code.';
revoke all on function creditkit.stripe_dead(text, text) from public, anon, authenticated, service_role;

-- Serialises every event about one payment (checkout, invoice, refunds, disputes) until the
-- transaction ends: a lock on each Stripe id the event knows for it, taken in a fixed order (so
-- two events naming the same ids never deadlock), before the account lock; nothing takes one after.
create or replace function creditkit.stripe_lock_payment(p_ids text[])
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_id text;
begin
  for v_id in select distinct i.id from unnest(p_ids) i(id) where i.id is not null order by 1 loop
    perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('creditkit.stripe_payment:' || v_id, 0));
  end loop;
end;
$$;
comment on function creditkit.stripe_lock_payment(text[]) is
  'Transaction locks on the Stripe ids of one payment, in a fixed order: events about the same payment apply one at a time.';
revoke all on function creditkit.stripe_lock_payment(text[]) from public, anon, authenticated, service_role;

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

-- ---------------------------------------------------------------------------------------------
-- Packs: grant once per payment; refunds and disputes move the ledger towards a target
-- ---------------------------------------------------------------------------------------------

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

-- charge.refunded and charge.dispute.funds_withdrawn / funds_reinstated, of a pack or of a
-- subscription invoice: both are clawed back the same way.
create or replace function creditkit.stripe_reversal(p_event jsonb, p_object jsonb, p_now timestamptz, out account_id uuid, out effect text)
returns record
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_type text := p_event ->> 'type';
  v_pi text := creditkit.stripe_id(p_object -> 'payment_intent');
  v_created timestamptz := creditkit.stripe_time(p_event -> 'created');
  v_payment bigint;
begin
  if v_pi is null then
    perform creditkit.stripe_dead('unknown_payment', format('%s without a payment_intent', v_type));
  end if;
  perform creditkit.stripe_lock_payment(array[v_pi]);
  v_payment := creditkit.stripe_payment(v_pi, null, null);
  if v_type = 'charge.refunded' then
    -- amount_refunded is cumulative: the largest seen is the truth, whatever the order.
    update creditkit.stripe_payments p
       set amount_refunded = greatest(p.amount_refunded, coalesce((p_object ->> 'amount_refunded')::bigint, 0)),
           updated_at = p_now
     where p.id = v_payment;
  else
    -- The newest dispute event decides; of two in the same second, the reinstatement.
    update creditkit.stripe_payments p
       set disputed = (v_type = 'charge.dispute.funds_withdrawn'), dispute_at = v_created, updated_at = p_now
     where p.id = v_payment
       and (p.dispute_at is null or p.dispute_at < v_created
            or (p.dispute_at = v_created and v_type = 'charge.dispute.funds_reinstated'));
  end if;
  select p.account_id into account_id from creditkit.stripe_payments p where p.id = v_payment;
  effect := creditkit.stripe_settle_payment(v_payment, p_now);
  if effect like 'recorded;%' then
    effect := 'recorded; the payment''s checkout or invoice has not been seen yet (applied when it arrives)';
  end if;
end;
$$;
comment on function creditkit.stripe_reversal(jsonb, jsonb, timestamptz) is
  'Applies a refund or dispute event: records the cumulative refund or the dispute state, then settles the payment.';
revoke all on function creditkit.stripe_reversal(jsonb, jsonb, timestamptz) from public, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Subscriptions
-- ---------------------------------------------------------------------------------------------

-- The plan a Stripe price sells, or NULL.
create or replace function creditkit.stripe_plan_of_price(p_price_id text)
returns creditkit.plans
language sql
stable
set search_path = ''
as $$
  select p.* from creditkit.plans p where p.stripe_price_id = p_price_id;
$$;
comment on function creditkit.stripe_plan_of_price(text) is 'The plan whose stripe_price_id is this price, or NULL.';
revoke all on function creditkit.stripe_plan_of_price(text) from public, anon, authenticated, service_role;

create or replace function creditkit.stripe_plan_for_price(p_price_id text)
returns creditkit.plans
language plpgsql
stable
set search_path = ''
as $$
declare
  v_plan creditkit.plans := creditkit.stripe_plan_of_price(p_price_id);
begin
  if v_plan.id is null then
    perform creditkit.stripe_dead('unknown_price', format('no plan has Stripe price %s', coalesce(p_price_id, 'NULL')));
  end if;
  return v_plan;
end;
$$;
comment on function creditkit.stripe_plan_for_price(text) is 'The plan a Stripe price sells; the event is dead (unknown_price) if none.';
revoke all on function creditkit.stripe_plan_for_price(text) from public, anon, authenticated, service_role;

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

-- Stripe's subscription statuses, as the kit's. Only active, trialing and past_due (Stripe is
-- still retrying the card) keep the plan: incomplete (never paid), incomplete_expired, unpaid
-- (retries exhausted), paused (trial over without a payment method) and canceled do not.
create or replace function creditkit.stripe_status(p_status text)
returns text
language sql
immutable
set search_path = ''
as $$
  select case p_status
    when 'active' then 'active'
    when 'trialing' then 'trialing'
    when 'past_due' then 'past_due'
    else 'canceled'
  end;
$$;
comment on function creditkit.stripe_status(text) is 'A Stripe subscription status as the kit''s: active, trialing, past_due, else canceled.';
revoke all on function creditkit.stripe_status(text) from public, anon, authenticated, service_role;

-- The account a subscription event is for: its metadata, else the subscription already recorded,
-- else the account the customer is linked to.
create or replace function creditkit.stripe_subscription_account(p_metadata jsonb, p_subscription_id text, p_customer_id text)
returns uuid
language plpgsql
stable
set search_path = ''
as $$
declare
  v_account uuid := creditkit.stripe_uuid(p_metadata ->> 'account_id');
begin
  if v_account is null then
    select s.account_id into v_account from creditkit.subscriptions s where s.stripe_subscription_id = p_subscription_id;
  end if;
  if v_account is null then
    select c.account_id into v_account from creditkit.stripe_customers c where c.customer_id = p_customer_id;
  end if;
  if v_account is null then
    perform creditkit.stripe_dead('unknown_account',
      format('subscription %s has no metadata.account_id, is not recorded and its customer is not linked', coalesce(p_subscription_id, 'NULL')));
  end if;
  return v_account;
end;
$$;
comment on function creditkit.stripe_subscription_account(jsonb, text, text) is
  'The account of a subscription event: metadata.account_id, the recorded subscription, or the linked customer.';
revoke all on function creditkit.stripe_subscription_account(jsonb, text, text) from public, anon, authenticated, service_role;

-- checkout.session.completed in mode subscription: who subscribed. The allowance comes from the
-- subscription's first invoice (invoice.paid), so it is never granted twice.
create or replace function creditkit.stripe_subscription_checkout(p_event jsonb, p_object jsonb, p_now timestamptz, out account_id uuid, out effect text)
returns record
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_sub_id text := creditkit.stripe_id(p_object -> 'subscription');
  v_plan creditkit.plans;
  v_created timestamptz := creditkit.stripe_time(p_event -> 'created');
begin
  account_id := coalesce(creditkit.stripe_uuid(p_object -> 'metadata' ->> 'account_id'),
                         creditkit.stripe_uuid(p_object ->> 'client_reference_id'));
  if account_id is null then
    perform creditkit.stripe_dead('unknown_account', 'checkout session without a creditkit account id in metadata.account_id');
  end if;
  if v_sub_id is null then
    perform creditkit.stripe_dead('invalid_event', 'subscription checkout session without a subscription');
  end if;
  select p.* into v_plan from creditkit.plans p
   where p.id = p_object -> 'metadata' ->> 'plan_id' or p.stripe_price_id = p_object -> 'metadata' ->> 'price_id'
   order by p.id = p_object -> 'metadata' ->> 'plan_id' desc limit 1;
  if not found then
    perform creditkit.stripe_dead('unknown_plan', format('no plan %s in creditkit.plans', coalesce(p_object -> 'metadata' ->> 'plan_id', 'NULL')));
  end if;
  perform creditkit.stripe_lock_account(account_id, p_now);
  if exists (select 1 from creditkit.subscriptions s where s.stripe_subscription_id = v_sub_id) then
    perform creditkit.stripe_link_customer(account_id, creditkit.stripe_id(p_object -> 'customer'), p_now);
    effect := 'subscription already recorded';
    return;
  end if;
  if not creditkit.stripe_upsert_subscription(account_id, v_sub_id, creditkit.stripe_id(p_object -> 'customer'),
                                              v_plan.id, 'active', v_created, v_created, 0::smallint,
                                              p_event ->> 'id', p_now) then
    effect := 'the account''s current subscription is newer; nothing changed';
    return;
  end if;
  effect := format('subscription %s to %s recorded; its allowance comes with the paid invoice', v_sub_id, v_plan.id);
end;
$$;
comment on function creditkit.stripe_subscription_checkout(jsonb, jsonb, timestamptz) is
  'Applies a subscription checkout: records who subscribed to which plan; grants nothing (the invoice does).';
revoke all on function creditkit.stripe_subscription_checkout(jsonb, jsonb, timestamptz) from public, anon, authenticated, service_role;

-- customer.subscription.created / updated / deleted.
create or replace function creditkit.stripe_subscription_event(p_event jsonb, p_object jsonb, p_now timestamptz, out account_id uuid, out effect text)
returns record
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_sub_id text := p_object ->> 'id';
  v_customer text := creditkit.stripe_id(p_object -> 'customer');
  v_price text := creditkit.stripe_id(p_object #> '{items,data,0,price}');
  v_plan creditkit.plans;
  v_deleted boolean := p_event ->> 'type' = 'customer.subscription.deleted';
  v_status text := case when v_deleted then 'canceled' else creditkit.stripe_status(p_object ->> 'status') end;
  v_created timestamptz := creditkit.stripe_time(p_event -> 'created');
begin
  if v_sub_id is null then
    perform creditkit.stripe_dead('invalid_event', 'subscription event without a subscription id');
  end if;
  account_id := creditkit.stripe_subscription_account(p_object -> 'metadata', v_sub_id, v_customer);
  if v_deleted then
    -- An ending needs no plan: one whose price left the catalogue still ends.
    v_plan := creditkit.stripe_plan_of_price(v_price);
    if v_plan.id is null then
      select p.* into v_plan from creditkit.plans p
       where p.id = coalesce((select s.plan_id from creditkit.subscriptions s where s.stripe_subscription_id = v_sub_id),
                             (select d.id from creditkit.plans d where d.is_default));
    end if;
  else
    v_plan := creditkit.stripe_plan_for_price(v_price);
  end if;
  perform creditkit.stripe_lock_account(account_id, p_now);
  if not creditkit.stripe_upsert_subscription(account_id, v_sub_id, v_customer, v_plan.id, v_status,
                                              coalesce(creditkit.stripe_time(p_object -> 'start_date'), v_created),
                                              v_created, creditkit.stripe_event_rank(p_event ->> 'type'),
                                              p_event ->> 'id', p_now) then
    effect := 'older than the subscription state already applied, or not the account''s current subscription; nothing changed';
    return;
  end if;
  effect := case when v_status = 'canceled' then 'subscription ended; the account is back on the default plan'
                 else format('subscription on %s, %s', v_plan.id, v_status) end;
end;
$$;
comment on function creditkit.stripe_subscription_event(jsonb, jsonb, timestamptz) is
  'Applies customer.subscription.created/updated/deleted: plan and status, unless a newer event already set them.';
revoke all on function creditkit.stripe_subscription_event(jsonb, jsonb, timestamptz) from public, anon, authenticated, service_role;

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

-- invoice_payment.paid (newer API versions): which payment intent paid which invoice, so that a
-- refund or dispute of that payment intent finds the invoice's allowance.
create or replace function creditkit.stripe_invoice_payment(p_event jsonb, p_object jsonb, p_now timestamptz, out account_id uuid, out effect text)
returns record
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_invoice text := creditkit.stripe_id(p_object -> 'invoice');
  v_pi text := coalesce(creditkit.stripe_id(p_object #> '{payment,payment_intent}'), creditkit.stripe_id(p_object -> 'payment_intent'));
  v_payment bigint;
begin
  if v_invoice is null or v_pi is null then
    effect := 'not a payment intent paying an invoice; nothing to do';
    return;
  end if;
  perform creditkit.stripe_lock_payment(array[v_invoice, v_pi]);
  v_payment := creditkit.stripe_payment(v_pi, null, v_invoice);
  select p.account_id into account_id from creditkit.stripe_payments p where p.id = v_payment;
  effect := creditkit.stripe_settle_payment(v_payment, p_now);
  if effect like 'recorded;%' then
    effect := 'recorded; the invoice has not been seen yet (its refunds apply when it arrives)';
  end if;
end;
$$;
comment on function creditkit.stripe_invoice_payment(jsonb, jsonb, timestamptz) is
  'Applies invoice_payment.paid: links an invoice to the payment intent that paid it, for refunds and disputes.';
revoke all on function creditkit.stripe_invoice_paid(jsonb, jsonb, timestamptz) from public, anon, authenticated, service_role;
revoke all on function creditkit.stripe_invoice_payment(jsonb, jsonb, timestamptz) from public, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- The one entry point
-- ---------------------------------------------------------------------------------------------

-- Dispatches a stored event to its applier; returns (status, effect, account). Every error an
-- event's own content causes is caught here and recorded as dead, each applier's writes undone:
-- an unknown account, pack or price, a balance limit, a payload the appliers cannot read, any
-- other error (its SQLSTATE): the same event would fail the same way on every retry, so it waits
-- for the operator (creditkit_stripe_replay) instead of being retried for three days and lost.
-- Only transient errors propagate (serialization failures, deadlocks, lock and statement
-- timeouts, the server going away): the transaction rolls back and the webhook answers 5xx.
create or replace function creditkit.stripe_dispatch(p_event jsonb, p_now timestamptz,
  out status text, out effect text, out account_id uuid, out error_code text, out error_message text)
returns record
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_type text := p_event ->> 'type';
  v_object jsonb := p_event #> '{data,object}';
  v_state text;
  v_detail text;
  r record;
begin
  status := 'applied';
  begin
    if v_type in ('checkout.session.completed', 'checkout.session.async_payment_succeeded',
                  'checkout.session.async_payment_failed') then
      if v_object ->> 'mode' = 'subscription' then
        if v_type = 'checkout.session.completed' then
          select * into r from creditkit.stripe_subscription_checkout(p_event, v_object, p_now);
        else
          status := 'ignored';
          effect := 'subscription checkouts are applied from their invoices';
          return;
        end if;
      elsif v_object ->> 'mode' = 'payment' then
        select * into r from creditkit.stripe_pack_checkout(p_event, v_object, p_now);
      elsif v_object ->> 'mode' = 'setup' and v_type = 'checkout.session.completed' then
        select * into r from creditkit.stripe_card_event(p_event, v_object, p_now);
      else
        status := 'ignored';
        effect := format('checkout mode %s is not used by creditkit', coalesce(v_object ->> 'mode', 'NULL'));
        return;
      end if;
    elsif v_type = 'invoice.paid' then
      select * into r from creditkit.stripe_invoice_paid(p_event, v_object, p_now);
    elsif v_type in ('customer.subscription.created', 'customer.subscription.updated', 'customer.subscription.deleted') then
      select * into r from creditkit.stripe_subscription_event(p_event, v_object, p_now);
    elsif v_type in ('charge.refunded', 'charge.dispute.funds_withdrawn', 'charge.dispute.funds_reinstated') then
      select * into r from creditkit.stripe_reversal(p_event, v_object, p_now);
    elsif v_type = 'invoice_payment.paid' then
      select * into r from creditkit.stripe_invoice_payment(p_event, v_object, p_now);
    elsif v_type in ('payment_intent.succeeded', 'payment_intent.payment_failed')
          and v_object #>> '{metadata,creditkit_topup_id}' is not null then
      select * into r from creditkit.stripe_topup_payment(p_event, v_object, p_now);
    elsif v_type = 'payment_intent.succeeded' and v_object ->> 'setup_future_usage' = 'off_session'
          or v_type = 'setup_intent.succeeded' and coalesce(v_object ->> 'usage', 'off_session') = 'off_session'
          or v_type = 'customer.updated' and v_object #> '{invoice_settings,default_payment_method}' is not null
             and jsonb_typeof(v_object #> '{invoice_settings,default_payment_method}') <> 'null' then
      -- a card saved for off-session charges (anything else of these types is ignored below)
      select * into r from creditkit.stripe_card_event(p_event, v_object, p_now);
    elsif v_type in ('payment_method.attached', 'payment_method.detached') then
      select * into r from creditkit.stripe_payment_method_event(p_event, v_object, p_now);
    else
      status := 'ignored';
      effect := 'event type not used by creditkit';
      return;
    end if;
    account_id := r.account_id;
    effect := r.effect;
  exception when others then
    get stacked diagnostics v_state = returned_sqlstate, v_detail = pg_exception_detail;
    if v_state = 'CKD01' then
      status := 'dead';
      error_code := v_detail;
    elsif v_state like 'CK%' then
      status := 'dead';
      error_code := (select c.name from creditkit.error_codes c where c.code = v_state);
    elsif v_state like '22%' or v_state = '23514' then
      status := 'dead';
      error_code := 'invalid_event';
    elsif v_state like '40%' or v_state like '08%' or v_state like '53%' or v_state like '57%' or v_state like '58%'
          or v_state = '55P03' then
      -- transient (a serialization failure or deadlock, a lock or statement timeout, the server
      -- going away, out of resources): the transaction rolls back and Stripe's retry applies it
      raise;
    else
      -- Anything else would fail the same way on every retry, for three days, and then be lost:
      -- it waits for the operator instead, with its SQLSTATE (creditkit_stripe_replay).
      status := 'dead';
      error_code := v_state;
    end if;
    get stacked diagnostics error_message = message_text;
    effect := null;
    account_id := null;
  end;
end;
$$;
comment on function creditkit.stripe_dispatch(jsonb, timestamptz) is
  'Applies one Stripe event by type; catches the dead ends (recorded for the operator) and lets other errors through.';
revoke all on function creditkit.stripe_dispatch(jsonb, timestamptz) from public, anon, authenticated, service_role;

-- Whether a value is a Stripe event the kit can read: an object with a string id evt_..., a
-- string type, created as whole unix seconds, data.object an object, livemode (if any) a boolean.
create or replace function creditkit.stripe_is_event(p_event jsonb)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select coalesce(
           jsonb_typeof(p_event) = 'object'
           and jsonb_typeof(p_event -> 'id') = 'string'
           and (p_event ->> 'id') ~ '^evt_[A-Za-z0-9_]{1,251}$'
           and jsonb_typeof(p_event -> 'type') = 'string'
           and length(p_event ->> 'type') between 1 and 255
           and jsonb_typeof(p_event -> 'created') = 'number'
           and (p_event ->> 'created') ~ '^[0-9]{1,11}$'
           and jsonb_typeof(p_event #> '{data,object}') = 'object'
           and coalesce(jsonb_typeof(p_event -> 'livemode'), 'boolean') = 'boolean',
         false);
$$;
comment on function creditkit.stripe_is_event(jsonb) is
  'True for a readable Stripe event: id evt_..., type, created (unix seconds), data.object, boolean livemode if present.';
revoke all on function creditkit.stripe_is_event(jsonb) from public, anon, authenticated, service_role;

create or replace function public.creditkit_stripe_apply(
  p_event jsonb,
  p_now timestamptz default now(),
  out event_id text,
  out status text,
  out effect text,
  out account_id uuid,
  out duplicate boolean)
returns record
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_row creditkit.stripe_events;
  v_result record;
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_request(null, null, null, p_now);
  if not creditkit.stripe_is_event(p_event) then
    raise exception using errcode = 'CK014',
      message = 'invalid event: a Stripe event needs a string id (evt_...), a type, a numeric created and data.object';
  end if;
  event_id := p_event ->> 'id';

  -- The inbox row first: a concurrent delivery of the same event waits here for this
  -- transaction, then finds the row and does nothing.
  insert into creditkit.stripe_events (id, type, created, livemode, status, payload, received_at)
  values (event_id, p_event ->> 'type', creditkit.stripe_time(p_event -> 'created'),
          coalesce((p_event ->> 'livemode')::boolean, false), 'applied', p_event, p_now)
  on conflict (id) do nothing;
  if not found then
    update creditkit.stripe_events e set deliveries = e.deliveries + 1 where e.id = event_id
    returning * into v_row;
    status := v_row.status;
    effect := coalesce(v_row.effect, v_row.error_message);
    account_id := v_row.account_id;
    duplicate := true;
    return;
  end if;

  select * into v_result from creditkit.stripe_dispatch(p_event, p_now);
  update creditkit.stripe_events e
     set status = v_result.status, effect = v_result.effect, account_id = v_result.account_id,
         error_code = v_result.error_code, error_message = v_result.error_message, applied_at = p_now
   where e.id = event_id;
  status := v_result.status;
  effect := coalesce(v_result.effect, v_result.error_message);
  account_id := v_result.account_id;
  duplicate := false;
end;
$$;
comment on function public.creditkit_stripe_apply(jsonb, timestamptz) is
  'Server only (the webhook, after verifying the signature). Applies one Stripe event exactly once: the inbox row and its effects commit together. status: applied, ignored (a type creditkit does not act on) or dead (unknown account, pack, plan price, or a balance limit: kept for creditkit_stripe_replay). duplicate: the event was seen before and nothing changed. CK014 for something that is not a Stripe event.';
revoke all on function public.creditkit_stripe_apply(jsonb, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_stripe_apply(jsonb, timestamptz) to service_role;

create or replace function public.creditkit_stripe_replay(
  p_event_id text,
  p_now timestamptz default now(),
  out event_id text,
  out status text,
  out effect text,
  out account_id uuid)
returns record
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_row creditkit.stripe_events;
  v_result record;
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_request(null, null, null, p_now);
  select e.* into v_row from creditkit.stripe_events e where e.id = p_event_id for update;
  if not found then
    raise exception using errcode = 'CK006', message = format('invalid argument: no Stripe event %s in the inbox', coalesce(p_event_id, 'NULL'));
  end if;
  event_id := v_row.id;
  if v_row.status <> 'dead' then
    status := v_row.status;
    effect := v_row.effect;
    account_id := v_row.account_id;
    return;
  end if;
  select * into v_result from creditkit.stripe_dispatch(v_row.payload, p_now);
  update creditkit.stripe_events e
     set status = v_result.status, effect = v_result.effect, account_id = v_result.account_id,
         error_code = v_result.error_code, error_message = v_result.error_message, applied_at = p_now,
         deliveries = e.deliveries + 1
   where e.id = p_event_id;
  status := v_result.status;
  effect := coalesce(v_result.effect, v_result.error_message);
  account_id := v_result.account_id;
end;
$$;
comment on function public.creditkit_stripe_replay(text, timestamptz) is
  'Server only (operator). Applies a dead event again from its stored payload, e.g. after adding the missing pack or plan price. Any other event is returned as it stands, unchanged.';
revoke all on function public.creditkit_stripe_replay(text, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_stripe_replay(text, timestamptz) to service_role;

create or replace function public.creditkit_stripe_events(p_status text default null, p_limit integer default 50)
returns table (id text, type text, created timestamptz, status text, effect text, account_id uuid,
               error_code text, error_message text, deliveries integer, received_at timestamptz)
language plpgsql
stable
security invoker
set search_path = ''
set enable_seqscan = off
as $$
begin
  if p_status is not null and p_status not in ('applied', 'ignored', 'dead') then
    raise exception using errcode = 'CK006', message = 'invalid argument: status must be applied, ignored or dead';
  end if;
  if p_limit is null or p_limit not between 1 and 1000 then
    raise exception using errcode = 'CK006', message = 'invalid argument: limit must be from 1 to 1000';
  end if;
  return query
    select e.id, e.type, e.created, e.status, e.effect, e.account_id, e.error_code, e.error_message,
           e.deliveries, e.received_at
      from creditkit.stripe_events e
     where p_status is null or e.status = p_status
     order by e.received_at desc, e.id
     limit p_limit;
end;
$$;
comment on function public.creditkit_stripe_events(text, integer) is
  'Server only (operator). The Stripe inbox, newest first; status dead lists the events waiting for the operator.';
revoke all on function public.creditkit_stripe_events(text, integer) from public, anon, authenticated, service_role;
grant execute on function public.creditkit_stripe_events(text, integer) to service_role;
