-- stripe: the Stripe entry points and the pack catalogue. Who may call them (the webhook and
-- the operator only; signed-in users read the pack catalogue), the Stripe tables private to the
-- server, one event applied exactly once, refunds, an invoice in the older API shape, ignored and
-- dead events with replay, and CK014 for anything that is not a Stripe event (nothing written).
-- The TypeScript suites (packages/db/test/stripe*.test.ts) drive the full event semantics.
--
-- Every call passes p_now. Runs under both default-privilege modes.
begin;
select plan(52);

select tests.create_supabase_user('alice');   -- buys a pack, then a subscription
select tests.create_supabase_user('bob');     -- signed-in outsider

-- A checkout.session.completed for alice's pack, as Stripe sends it (trimmed to what matters).
create temporary table ck_event (name text primary key, body jsonb);
grant select on ck_event to service_role, authenticated, anon;
insert into ck_event values
  ('pack', jsonb_build_object(
     'id', 'evt_1QTapPackCompleted', 'object', 'event', 'api_version', '2026-01-28.clover', 'created', 1893456000,
     'livemode', false, 'pending_webhooks', 1, 'type', 'checkout.session.completed',
     'data', jsonb_build_object('object', jsonb_build_object(
       'id', 'cs_test_a1TapPack', 'object', 'checkout.session', 'mode', 'payment', 'payment_status', 'paid',
       'status', 'complete', 'amount_total', 900, 'currency', 'usd', 'customer', 'cus_TapAlice',
       'payment_intent', 'pi_3QTapPack', 'client_reference_id', tests.get_supabase_uid('alice'),
       'metadata', jsonb_build_object('account_id', tests.get_supabase_uid('alice'), 'pack_id', 'tap-100'))))),
  ('refund', jsonb_build_object(
     'id', 'evt_1QTapRefund', 'object', 'event', 'created', 1893542400, 'livemode', false, 'type', 'charge.refunded',
     'data', jsonb_build_object('object', jsonb_build_object(
       'id', 'ch_3QTapPack', 'object', 'charge', 'amount', 900, 'amount_refunded', 450, 'refunded', false,
       'payment_intent', 'pi_3QTapPack', 'customer', 'cus_TapAlice')))),
  -- invoice.paid in the shape of API versions before 2025-03 (invoice.subscription, lines.data[0].price)
  ('invoice', jsonb_build_object(
     'id', 'evt_1QTapInvoice', 'object', 'event', 'api_version', '2024-06-20', 'created', 1893456100, 'livemode', false,
     'type', 'invoice.paid',
     'data', jsonb_build_object('object', jsonb_build_object(
       'id', 'in_1QTapInvoice', 'object', 'invoice', 'billing_reason', 'subscription_create', 'amount_paid', 1900,
       'customer', 'cus_TapAlice', 'subscription', 'sub_1QTapPro', 'status', 'paid',
       'period_start', 1893456100, 'period_end', 1893456100,
       'subscription_details', jsonb_build_object('metadata', jsonb_build_object('account_id', tests.get_supabase_uid('alice'))),
       'lines', jsonb_build_object('object', 'list', 'data', jsonb_build_array(jsonb_build_object(
         'id', 'il_1QTap', 'object', 'line_item', 'type', 'subscription', 'subscription', 'sub_1QTapPro',
         'price', jsonb_build_object('id', 'price_1QTapPro', 'object', 'price'),
         'period', jsonb_build_object('start', 1893456000, 'end', 1896048000)))))))),
  ('ignored', jsonb_build_object(
     'id', 'evt_1QTapIgnored', 'object', 'event', 'created', 1893456000, 'livemode', false, 'type', 'payment_intent.created',
     'data', jsonb_build_object('object', jsonb_build_object('id', 'pi_3QTapPack', 'object', 'payment_intent')))),
  ('dead', jsonb_build_object(
     'id', 'evt_1QTapDead', 'object', 'event', 'created', 1893456000, 'livemode', false, 'type', 'checkout.session.completed',
     'data', jsonb_build_object('object', jsonb_build_object(
       'id', 'cs_test_a1TapLater', 'object', 'checkout.session', 'mode', 'payment', 'payment_status', 'paid',
       'amount_total', 300, 'payment_intent', 'pi_3QTapLater',
       'metadata', jsonb_build_object('account_id', tests.get_supabase_uid('alice'), 'pack_id', 'tap-later')))));

-- =============================================================================================
-- Clients: no Stripe function, no Stripe table. Signed-in users read the pack catalogue.
-- =============================================================================================
select tests.authenticate_as_anon();
select throws_ok($$ select creditkit_stripe_apply((select body from ck_event where name = 'pack'), '2030-01-01 00:00:05+00') $$,
  '42501', null, 'anon cannot apply a Stripe event');
select throws_ok($$ select creditkit_packs() $$, '42501', null, 'anon cannot read the pack catalogue');
select throws_ok($$ select * from creditkit.packs $$, '42501', null, 'anon cannot read creditkit.packs');

select tests.authenticate_as('bob');
select throws_ok($$ select creditkit_stripe_apply((select body from ck_event where name = 'pack'), '2030-01-01 00:00:05+00') $$,
  '42501', null, 'a signed-in user cannot apply a Stripe event (it would mint credit)');
select throws_ok($$ select creditkit_stripe_replay('evt_1QTapPackCompleted', '2030-01-01 00:00:05+00') $$,
  '42501', null, 'a signed-in user cannot replay events');
select throws_ok($$ select * from creditkit_stripe_events() $$, '42501', null, 'a signed-in user cannot list the inbox');
select throws_ok($$ select creditkit_upsert_pack('free-credits', 'Free credits', 1000000) $$,
  '42501', null, 'a signed-in user cannot write the pack catalogue');
select throws_ok($$ select creditkit_stripe_customer(tests.get_supabase_uid('alice')) $$,
  '42501', null, 'a signed-in user cannot look up anyone''s Stripe customer');
select throws_ok($$ select creditkit_stripe_link_customer(tests.get_supabase_uid('bob'), 'cus_TapAlice') $$,
  '42501', null, 'a signed-in user cannot link a customer (it would take over another account''s payments)');
select throws_ok($$ select * from creditkit.stripe_events $$, '42501', null, 'a signed-in user cannot read the inbox table');
select throws_ok($$ select * from creditkit.stripe_payments $$, '42501', null, 'a signed-in user cannot read payments');
select throws_ok($$ select * from creditkit.stripe_customers $$, '42501', null, 'a signed-in user cannot read customers');
select throws_ok($$ select * from creditkit.stripe_invoices $$, '42501', null, 'a signed-in user cannot read invoices');

-- =============================================================================================
-- Service role: the catalogue, then events.
-- =============================================================================================
select tests.authenticate_as_service_role();
select is(creditkit_upsert_pack('tap-100', '100 credits', 100, 900, p_stripe_price_id => 'price_1QTap100') ->> 'id', 'tap-100',
  'the server creates a pack');
select creditkit_upsert_plan('tap-pro', 'Pro', p_allowance => 500, p_features => '{"hd": true}', p_stripe_price_id => 'price_1QTapPro');
select throws_ok($$ insert into creditkit.packs (id, name, credits) values ('byhand', 'By hand', 1000000) $$,
  '42501', null, 'service_role cannot insert a pack by hand');
select throws_ok(
  $$ insert into creditkit.stripe_events (id, type, created, status, payload) values ('evt_1QByHand', 'x', now(), 'applied', '{}') $$,
  '42501', null, 'service_role cannot write the inbox by hand (it would mark an event as seen)');
select throws_ok($$ update creditkit.stripe_payments set clawed_back = 0 $$,
  '42501', null, 'service_role cannot rewrite what a payment took back');
select throws_ok($$ delete from creditkit.stripe_invoices $$, '42501', null, 'service_role cannot forget an invoice');

-- The signed-in user reads it, through the function and the table (RLS: the catalogue is public to them).
select tests.authenticate_as('bob');
select results_eq($$ select id, credits, price_amount, stripe_price_id from creditkit_packs() $$,
  $$ values ('tap-100'::text, 100::bigint, 900::bigint, 'price_1QTap100'::text) $$,
  'a signed-in user lists the active packs');
select is((select count(*) from creditkit.packs), 1::bigint, 'and reads creditkit.packs');

select tests.authenticate_as_service_role();
-- A paid pack checkout: one grant, the customer linked.
select results_eq(
  $$ select event_id, status, account_id, duplicate
       from creditkit_stripe_apply((select body from ck_event where name = 'pack'), '2030-01-01 00:00:05+00') $$,
  $$ values ('evt_1QTapPackCompleted'::text, 'applied'::text, tests.get_supabase_uid('alice'), false) $$,
  'a paid pack checkout is applied');
select results_eq(
  $$ select kind::text, amount::bigint, balance_after::bigint, idempotency_key from creditkit.ledger where account_id = tests.get_supabase_uid('alice') $$,
  $$ values ('grant'::text, 100::bigint, 100::bigint, 'stripe:pi_3QTapPack'::text) $$,
  'it granted the pack once, keyed by the payment intent');
select is(creditkit_stripe_customer(tests.get_supabase_uid('alice')), 'cus_TapAlice', 'the customer is linked to the account');
select results_eq(
  $$ select status, duplicate from creditkit_stripe_apply((select body from ck_event where name = 'pack'), '2030-01-01 01:00:00+00') $$,
  $$ values ('applied'::text, true) $$,
  'the same event again is a duplicate');
select is((select count(*) from creditkit.ledger where account_id = tests.get_supabase_uid('alice')), 1::bigint,
  'and changed nothing');
select is((select deliveries from creditkit.stripe_events where id = 'evt_1QTapPackCompleted'), 2, 'the inbox counts two deliveries');

-- Half refunded: half the credits back.
select results_eq(
  $$ select status, account_id from creditkit_stripe_apply((select body from ck_event where name = 'refund'), '2030-01-02 00:00:05+00') $$,
  $$ values ('applied'::text, tests.get_supabase_uid('alice')) $$,
  'a refund is applied');
select results_eq(
  $$ select amount_refunded, clawed_back, shortfall from creditkit.stripe_payments where payment_intent = 'pi_3QTapPack' $$,
  $$ values (450::bigint, 50::bigint, 0::bigint) $$,
  '450 of 900 cents refunded: 50 of 100 credits taken back');
select is((select balance from creditkit_balance(tests.get_supabase_uid('alice'), '2030-01-02 00:00:10+00')), 50::bigint,
  'the balance is 50');

-- A first subscription invoice in the older shape: the allowance, the plan, no lazy renewal.
select is((select status from creditkit_stripe_apply((select body from ck_event where name = 'invoice'), '2030-01-01 00:01:45+00')),
  'applied', 'invoice.paid (old shape) is applied');
select results_eq(
  $$ select invoice_id, subscription_id, plan_id, outcome, period_start, period_end from creditkit.stripe_invoices $$,
  $$ values ('in_1QTapInvoice'::text, 'sub_1QTapPro'::text, 'tap-pro'::text, 'granted'::text,
             '2030-01-01 00:00:00+00'::timestamptz, '2030-01-31 00:00:00+00'::timestamptz) $$,
  'its period comes from the line, its plan from the line''s price');
select results_eq(
  $$ select plan_id, status, stripe_subscription_id, renews_at from creditkit.subscriptions where account_id = tests.get_supabase_uid('alice') $$,
  $$ values ('tap-pro'::text, 'active'::text, 'sub_1QTapPro'::text, null::timestamptz) $$,
  'alice is on pro through Stripe, and it never renews lazily');
select is(creditkit_has_feature(tests.get_supabase_uid('alice'), 'hd'), true, 'with pro''s features');
select is((select balance from creditkit_balance(tests.get_supabase_uid('alice'), '2030-01-02 00:00:10+00')), 550::bigint,
  'and its allowance');

-- An event type creditkit does not use.
select results_eq(
  $$ select status, account_id, duplicate from creditkit_stripe_apply((select body from ck_event where name = 'ignored'), '2030-01-01 00:00:05+00') $$,
  $$ values ('ignored'::text, null::uuid, false) $$,
  'an unused event type is recorded as ignored');

-- An unknown pack: dead, listed, applied on replay once the pack exists.
select results_eq(
  $$ select status, account_id from creditkit_stripe_apply((select body from ck_event where name = 'dead'), '2030-01-01 00:00:05+00') $$,
  $$ values ('dead'::text, null::uuid) $$,
  'a checkout for a pack not in the catalogue is dead');
select results_eq(
  $$ select id, error_code from creditkit_stripe_events('dead') $$,
  $$ values ('evt_1QTapDead'::text, 'unknown_pack'::text) $$,
  'the inbox lists it for the operator, with why');
select is((select count(*) from creditkit.stripe_payments where payment_intent = 'pi_3QTapLater'), 0::bigint,
  'a dead event writes nothing but its inbox row');
select creditkit_upsert_pack('tap-later', 'Later', 30, 300);
select results_eq(
  $$ select status, account_id from creditkit_stripe_replay('evt_1QTapDead', '2030-01-03 00:00:00+00') $$,
  $$ values ('applied'::text, tests.get_supabase_uid('alice')) $$,
  'replayed after the operator added the pack, it is applied');
select is((select balance from creditkit_balance(tests.get_supabase_uid('alice'), '2030-01-03 00:00:10+00')), 580::bigint,
  'and granted its 30 credits');

-- Not a Stripe event: CK014, nothing written.
select throws_ok($$ select creditkit_stripe_apply(null, '2030-01-01 00:00:00+00') $$, 'CK014', null, 'NULL: CK014');
select throws_ok($$ select creditkit_stripe_apply('[]', '2030-01-01 00:00:00+00') $$, 'CK014', null, 'an array: CK014');
select throws_ok(
  $$ select creditkit_stripe_apply((select body - 'id' from ck_event where name = 'ignored'), '2030-01-01 00:00:00+00') $$,
  'CK014', null, 'no id: CK014');
select throws_ok(
  $$ select creditkit_stripe_apply(jsonb_set((select body from ck_event where name = 'ignored'), '{id}', '"ev_123"'), '2030-01-01 00:00:00+00') $$,
  'CK014', null, 'an id that is not evt_...: CK014');
select throws_ok(
  $$ select creditkit_stripe_apply((select body - 'created' from ck_event where name = 'ignored'), '2030-01-01 00:00:00+00') $$,
  'CK014', null, 'no created: CK014');
select throws_ok(
  $$ select creditkit_stripe_apply((select body #- '{data,object}' from ck_event where name = 'ignored'), '2030-01-01 00:00:00+00') $$,
  'CK014', null, 'no data.object: CK014');
select is((select count(*) from creditkit.stripe_events), 5::bigint, 'the refused events wrote nothing');

-- =============================================================================================
-- Defence in depth: with EXECUTE granted to clients by mistake, the definer functions still refuse
-- them (CK005), and the invoker reads still cannot see the tables (42501).
-- =============================================================================================
select tests.clear_authentication();
grant execute on all functions in schema public to anon, authenticated;  -- rolled back with this file
select tests.authenticate_as('bob');
select throws_ok($$ select creditkit_stripe_apply((select body from ck_event where name = 'pack'), '2030-01-01 00:00:05+00') $$,
  'CK005', null, 'with EXECUTE granted, a signed-in user still cannot apply an event');
select throws_ok($$ select creditkit_stripe_replay('evt_1QTapDead', '2030-01-03 00:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted, a signed-in user still cannot replay');
select throws_ok($$ select creditkit_upsert_pack('tap-100', '100 credits', 1000000, 1) $$,
  'CK005', null, 'with EXECUTE granted, a signed-in user still cannot rewrite a pack');
select throws_ok($$ select creditkit_stripe_link_customer(tests.get_supabase_uid('bob'), 'cus_TapAlice') $$,
  'CK005', null, 'with EXECUTE granted, a signed-in user still cannot link a customer');
select throws_ok($$ select creditkit_stripe_customer(tests.get_supabase_uid('alice')) $$,
  '42501', null, 'with EXECUTE granted, the customer lookup still cannot read the table');

select tests.clear_authentication();
select * from finish();
rollback;
