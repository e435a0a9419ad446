-- analytics: the operator's server-only reads, checked against a small fixture built at fixed
-- times and expected rows computed by hand (the arithmetic is in the comments).
--
-- Money: ledger.revenue_micros / cost_micros in micros (1 USD = 1000000); MRR in the plans'
-- minor unit (cents). Periods are half-open [p_from, p_to); days are UTC days.
--
-- Accounts have fixed ids (ann ...a1 to hal ...a8) so tied rows have a visible order.
begin;
select plan(34);

select tests.create_supabase_user('mallory');   -- a signed-in user, for the privilege checks

-- =============================================================================================
-- Fixture (as the server).
-- =============================================================================================
select tests.authenticate_as_service_role();

select creditkit_set_price('image_gen', 4, '{}', '2029-01-01 00:00:00+00');
select creditkit_set_price('chat', 1, '{}', '2029-01-01 00:00:00+00');
-- Prices in cents per period.
select creditkit_upsert_plan('pro', 'Pro', 100, p_price_amount => 2000);
select creditkit_upsert_plan('pro_year', 'Pro yearly', 1200, 'year', p_price_amount => 19900);
select creditkit_upsert_plan('team_eur', 'Team EUR', 0, p_price_amount => 5000, p_currency => 'eur');
select creditkit_upsert_plan('weekly_eur', 'Weekly EUR', 0, 'week', p_price_amount => 1000, p_currency => 'eur');

-- ann (a1): pro, active. Plan bucket 100 (expires 02-01), purchase 500 paid $5.
select creditkit_set_plan('00000000-0000-4000-8000-0000000000a1', 'pro', p_now => '2030-01-01 00:00:00+00');
select creditkit_grant('00000000-0000-4000-8000-0000000000a1', 500, 'purchase', p_revenue_micros => 5000000,
  p_now => '2030-01-02 00:00:00+00');
select creditkit_meter('00000000-0000-4000-8000-0000000000a1', 'image_gen', 3, p_cost_micros => 30000,
  p_now => '2030-01-05 10:00:00+00');                                     -- 12 credits
select creditkit_meter('00000000-0000-4000-8000-0000000000a1', 'chat', 10, p_cost_micros => 2000,
  p_now => '2030-01-05 12:00:00+00');                                     -- 10 credits
select creditkit_meter('00000000-0000-4000-8000-0000000000a1', 'image_gen', 1, p_cost_micros => 10000,
  p_now => '2030-01-06 08:00:00+00');                                     -- 4 credits
select creditkit_settle(hold_id, 40, 25000, p_now => '2030-01-07 00:05:00+00')   -- 40 credits
  from creditkit_reserve('00000000-0000-4000-8000-0000000000a1', 50, p_event => 'video_gen',
                         p_now => '2030-01-07 00:00:00+00');
select creditkit_release(hold_id, '2030-01-08 00:01:00+00')              -- released: no ledger row
  from creditkit_reserve('00000000-0000-4000-8000-0000000000a1', 10, p_event => 'video_gen',
                         p_now => '2030-01-08 00:00:00+00');
-- All of ann's spending came from the plan bucket (it expires first): 100 - 12 - 10 - 4 - 40 = 34.

-- ben (a2): pro_year, active. Plan bucket 1200 (expires 2031-01-03), purchase 100 paid $1.50.
select creditkit_set_plan('00000000-0000-4000-8000-0000000000a2', 'pro_year', p_now => '2030-01-03 00:00:00+00');
select creditkit_grant('00000000-0000-4000-8000-0000000000a2', 100, 'purchase', p_revenue_micros => 1500000,
  p_now => '2030-01-10 00:00:00+00');
select creditkit_meter('00000000-0000-4000-8000-0000000000a2', 'chat', 20, p_cost_micros => 4000,
  p_now => '2030-01-10 09:00:00+00');                                     -- 20 credits
select creditkit_consume('00000000-0000-4000-8000-0000000000a2', 5, p_cost_micros => 500,
  p_now => '2030-01-11 00:00:00+00');                                     -- 5 credits, no event
-- Plan bucket: 1200 - 20 - 5 = 1175.

-- cat (a3): pro, trialing (a trial gets its allowance but pays nothing). Bucket 100 (expires 02-04).
select creditkit_set_plan('00000000-0000-4000-8000-0000000000a3', 'pro', 'trialing', p_now => '2030-01-04 00:00:00+00');
-- 23:30 in New York on Jan 5 is 04:30 UTC on Jan 6: it counts on Jan 6.
select creditkit_meter('00000000-0000-4000-8000-0000000000a3', 'image_gen', 2, p_cost_micros => 20000,
  p_now => '2030-01-05 23:30:00-05');                                     -- 8 credits
-- Bucket: 100 - 8 = 92.

-- dan (a4): bought 50 for 0.70 in December, team_eur (no allowance) from Jan 1, canceled Jan 15,
-- spends on Feb 1 at 00:00 exactly (the first instant after January).
select creditkit_grant('00000000-0000-4000-8000-0000000000a4', 50, 'purchase', p_revenue_micros => 700000,
  p_now => '2029-12-31 00:00:00+00');
select creditkit_set_plan('00000000-0000-4000-8000-0000000000a4', 'team_eur', p_now => '2030-01-01 00:00:00+00');
select creditkit_set_plan('00000000-0000-4000-8000-0000000000a4', 'team_eur', 'canceled', p_now => '2030-01-15 00:00:00+00');
select creditkit_meter('00000000-0000-4000-8000-0000000000a4', 'image_gen', 1, p_cost_micros => 9000,
  p_now => '2030-02-01 00:00:00+00');                                     -- 4 credits
-- Purchase: 50 - 4 = 46.

-- eva (a5): pro from Jan 1, past_due from Jan 20 (still a paying subscription for MRR). Bucket 100.
select creditkit_set_plan('00000000-0000-4000-8000-0000000000a5', 'pro', p_now => '2030-01-01 00:00:00+00');
select creditkit_set_plan('00000000-0000-4000-8000-0000000000a5', 'pro', 'past_due', p_now => '2030-01-20 00:00:00+00');

-- fay (a6): 30 promotional credits expiring Mar 1, no subscription.
select creditkit_grant('00000000-0000-4000-8000-0000000000a6', 30, 'promotional', '2030-03-01 00:00:00+00',
  p_now => '2030-01-15 00:00:00+00');

-- gus (a7) and hal (a8): euro subscriptions without allowance (no ledger rows).
select creditkit_set_plan('00000000-0000-4000-8000-0000000000a7', 'team_eur', p_now => '2030-01-01 00:00:00+00');
select creditkit_set_plan('00000000-0000-4000-8000-0000000000a8', 'weekly_eur', p_now => '2030-01-01 00:00:00+00');

-- =============================================================================================
-- creditkit_account_margin
-- =============================================================================================
-- January, per account with ledger rows in it (dan has none: December and February only):
--   ann: granted 100 + 500 = 600; spent 12 + 10 + 4 + 40 = 66; revenue 5000000;
--        cost 30000 + 2000 + 10000 + 25000 = 67000; margin 5000000 - 67000 = 4933000
--   ben: granted 1200 + 100 = 1300; spent 20 + 5 = 25; revenue 1500000; cost 4000 + 500 = 4500;
--        margin 1495500
--   eva: granted 100; margin 0        fay: granted 30; margin 0
--   cat: granted 100; spent 8; cost 20000; margin -20000
-- Highest margin first, ties by account id (eva a5 before fay a6).
select results_eq(
  $$ select * from creditkit_account_margin('2030-01-01 00:00:00+00', '2030-02-01 00:00:00+00') $$,
  $$ values ('00000000-0000-4000-8000-0000000000a1'::uuid, 600::bigint, 66::bigint, 5000000::bigint, 67000::bigint, 4933000::bigint),
            ('00000000-0000-4000-8000-0000000000a2', 1300, 25, 1500000, 4500, 1495500),
            ('00000000-0000-4000-8000-0000000000a5', 100, 0, 0, 0, 0),
            ('00000000-0000-4000-8000-0000000000a6', 30, 0, 0, 0, 0),
            ('00000000-0000-4000-8000-0000000000a3', 100, 8, 0, 20000, -20000) $$,
  'account_margin for January: granted, spent, revenue, cost, margin per account, best margin first');
select results_eq(
  $$ select * from creditkit_account_margin('2030-01-01 00:00:00+00', '2030-02-01 00:00:00+00',
                                            '00000000-0000-4000-8000-0000000000a2') $$,
  $$ values ('00000000-0000-4000-8000-0000000000a2'::uuid, 1300::bigint, 25::bigint, 1500000::bigint, 4500::bigint, 1495500::bigint) $$,
  'account_margin for one account');
-- February: only dan's meter at 02-01 00:00 (half-open: it is February's, not January's).
select results_eq(
  $$ select * from creditkit_account_margin('2030-02-01 00:00:00+00', '2030-03-01 00:00:00+00') $$,
  $$ values ('00000000-0000-4000-8000-0000000000a4'::uuid, 0::bigint, 4::bigint, 0::bigint, 9000::bigint, -9000::bigint) $$,
  'account_margin: a row at p_to belongs to the next period');
-- December: dan's purchase (50 credits, 700000 revenue).
select results_eq(
  $$ select * from creditkit_account_margin('2029-12-01 00:00:00+00', '2030-01-01 00:00:00+00') $$,
  $$ values ('00000000-0000-4000-8000-0000000000a4'::uuid, 50::bigint, 0::bigint, 700000::bigint, 0::bigint, 700000::bigint) $$,
  'account_margin for December: revenue without cost');
select is_empty(
  $$ select * from creditkit_account_margin('2030-01-01 00:00:00+00', '2030-02-01 00:00:00+00',
                                            '00000000-0000-4000-8000-0000000000a7') $$,
  'account_margin: an account without ledger rows in the period has no row');

-- =============================================================================================
-- creditkit_usage_series: consume rows per UTC day and event.
-- =============================================================================================
--   01-05  chat       ann 10                          1 call, 10 credits,  2000
--   01-05  image_gen  ann 12                          1 call, 12 credits, 30000
--   01-06  image_gen  ann 4 (08:00), cat 8 (04:30)    2 calls, 12 credits, 10000 + 20000 = 30000
--   01-07  video_gen  ann's settled hold              1 call, 40 credits, 25000
--   01-10  chat       ben 20                          1 call, 20 credits,  4000
--   01-11  (no event) ben 5                           1 call,  5 credits,   500
-- The session time zone must not move the days: run it from New York.
set local timezone = 'America/New_York';
select results_eq(
  $$ select * from creditkit_usage_series('2030-01-01 00:00:00+00', '2030-02-01 00:00:00+00') $$,
  $$ values ('2030-01-05'::date, 'chat'::text, 1::bigint, 10::bigint, 2000::bigint),
            ('2030-01-05', 'image_gen', 1, 12, 30000),
            ('2030-01-06', 'image_gen', 2, 12, 30000),
            ('2030-01-07', 'video_gen', 1, 40, 25000),
            ('2030-01-10', 'chat', 1, 20, 4000),
            ('2030-01-11', null, 1, 5, 500) $$,
  'usage_series for January: per UTC day and event, whatever the session time zone');
set local timezone = 'UTC';
select results_eq(
  $$ select * from creditkit_usage_series('2030-01-01 00:00:00+00', '2030-02-01 00:00:00+00',
                                          '00000000-0000-4000-8000-0000000000a1', 'image_gen') $$,
  $$ values ('2030-01-05'::date, 'image_gen'::text, 1::bigint, 12::bigint, 30000::bigint),
            ('2030-01-06', 'image_gen', 1, 4, 10000) $$,
  'usage_series for one account and one event');
select results_eq(
  $$ select * from creditkit_usage_series('2030-01-06 00:00:00+00', '2030-01-06 08:00:00+00') $$,
  $$ values ('2030-01-06'::date, 'image_gen'::text, 1::bigint, 8::bigint, 20000::bigint) $$,
  'usage_series: the window is half-open (ann''s call at 08:00 is excluded)');

-- =============================================================================================
-- creditkit_top_events: by credits spent.
-- =============================================================================================
--   video_gen  1 call, 40 credits, 25000, 1 account (ann)
--   chat       2 calls, 10 + 20 = 30 credits, 2000 + 4000 = 6000, 2 accounts (ann, ben)
--   image_gen  3 calls, 12 + 4 + 8 = 24 credits, 30000 + 10000 + 20000 = 60000, 2 accounts (ann, cat)
--   (none)     1 call, 5 credits, 500, 1 account (ben)
select results_eq(
  $$ select * from creditkit_top_events('2030-01-01 00:00:00+00', '2030-02-01 00:00:00+00') $$,
  $$ values ('video_gen'::text, 1::bigint, 40::bigint, 25000::bigint, 1::bigint),
            ('chat', 2, 30, 6000, 2),
            ('image_gen', 3, 24, 60000, 2),
            (null, 1, 5, 500, 1) $$,
  'top_events for January: most credits first');
select results_eq(
  $$ select event from creditkit_top_events('2030-01-01 00:00:00+00', '2030-02-01 00:00:00+00', 2) $$,
  $$ values ('video_gen'::text), ('chat') $$,
  'top_events with a limit');
select results_eq(
  $$ select * from creditkit_top_events('2030-01-01 00:00:00+00', '2030-03-01 00:00:00+00', 1) $$,
  $$ values ('video_gen'::text, 1::bigint, 40::bigint, 25000::bigint, 1::bigint) $$,
  'top_events over two months: image_gen gains dan''s 4 (28), still below video_gen''s 40');

-- =============================================================================================
-- creditkit_credits_outstanding: what is still spendable at p_now, by category.
-- =============================================================================================
-- It reads today's remaining credit and drops what expired by p_now (booked or not); it is
-- not a snapshot of the past (dan's purchase shows 46 even before his Feb 1 spend).
--   at 2030-01-31 12:00:
--     plan         ann 34 + ben 1175 + cat 92 + eva 100 = 1401, 4 accounts
--     promotional  fay 30, 1 account
--     purchase     ann 500 + ben 100 + dan 46 = 646, 3 accounts
--   at 2030-02-01 00:00 ann's and eva's plan buckets have expired (eva's is not even booked):
--     plan         ben 1175 + cat 92 (expires 02-04) = 1267, 2 accounts
select results_eq(
  $$ select * from creditkit_credits_outstanding('2030-01-31 12:00:00+00') $$,
  $$ values ('plan'::text, 1401::bigint, 4::bigint), ('promotional', 30, 1), ('purchase', 646, 3) $$,
  'credits_outstanding on Jan 31: by category, with the accounts holding them');
select results_eq(
  $$ select * from creditkit_credits_outstanding('2030-02-01 00:00:00+00') $$,
  $$ values ('plan'::text, 1267::bigint, 2::bigint), ('promotional', 30, 1), ('purchase', 646, 3) $$,
  'credits_outstanding at Feb 1: expired plan credit is excluded even where nothing booked it');

-- =============================================================================================
-- creditkit_accounts_per_plan: the plan in force (canceled and no subscription: the default).
-- =============================================================================================
--   pro: ann (active), cat (trialing), eva (past_due) = 3
--   free: dan (canceled), fay (none) = 2
--   pro_year: ben; team_eur: gus; weekly_eur: hal = 1 each
select results_eq(
  $$ select * from creditkit_accounts_per_plan() $$,
  $$ values ('pro'::text, 'Pro'::text, 3::bigint), ('free', 'Free', 2), ('pro_year', 'Pro yearly', 1),
            ('team_eur', 'Team EUR', 1), ('weekly_eur', 'Weekly EUR', 1) $$,
  'accounts_per_plan: most accounts first, ties by plan id');

-- =============================================================================================
-- creditkit_mrr: active and past_due subscriptions, normalised to a month, per currency.
-- =============================================================================================
--   usd: ann 2000 + ben 19900 / 12 (1658.33) + eva 2000 = 5658.33 -> 5658, 3 subscriptions
--        (cat is trialing, dan canceled: excluded)
--   eur: gus 5000 + hal 1000 * 52 / 12 (4333.33) = 9333.33 -> 9333, 2 subscriptions
select results_eq(
  $$ select * from creditkit_mrr() $$,
  $$ values ('eur'::text, 9333::bigint, 2::bigint), ('usd', 5658, 3) $$,
  'mrr: per currency, in cents per month');

-- =============================================================================================
-- Bad periods and limits: CK006.
-- =============================================================================================
select throws_ok($$ select * from creditkit_account_margin(null, '2030-02-01 00:00:00+00') $$, 'CK006', null, 'account_margin: NULL p_from');
select throws_ok($$ select * from creditkit_account_margin('2030-01-01 00:00:00+00', null) $$, 'CK006', null, 'account_margin: NULL p_to');
select throws_ok($$ select * from creditkit_account_margin('2030-01-01 00:00:00+00', '2030-01-01 00:00:00+00') $$, 'CK006', null, 'account_margin: empty period');
select throws_ok($$ select * from creditkit_account_margin('2030-02-01 00:00:00+00', '2030-01-01 00:00:00+00') $$, 'CK006', null, 'account_margin: reversed period');
select throws_ok($$ select * from creditkit_usage_series(null, '2030-02-01 00:00:00+00') $$, 'CK006', null, 'usage_series: NULL p_from');
select throws_ok($$ select * from creditkit_usage_series('2030-02-01 00:00:00+00', '2030-01-01 00:00:00+00') $$, 'CK006', null, 'usage_series: reversed period');
select throws_ok($$ select * from creditkit_top_events('2030-01-01 00:00:00+00', '2030-01-01 00:00:00+00') $$, 'CK006', null, 'top_events: empty period');
select throws_ok($$ select * from creditkit_top_events('2030-01-01 00:00:00+00', '2030-02-01 00:00:00+00', 0) $$, 'CK006', null, 'top_events: limit 0');
select throws_ok($$ select * from creditkit_top_events('2030-01-01 00:00:00+00', '2030-02-01 00:00:00+00', 1001) $$, 'CK006', null, 'top_events: limit 1001');
select throws_ok($$ select * from creditkit_top_events('2030-01-01 00:00:00+00', '2030-02-01 00:00:00+00', null) $$, 'CK006', null, 'top_events: NULL limit');
select throws_ok($$ select * from creditkit_credits_outstanding(null) $$, 'CK006', null, 'credits_outstanding: NULL p_now');

-- =============================================================================================
-- Server only: signed-in users and anon may not call any of them.
-- =============================================================================================
select tests.authenticate_as('mallory');
select throws_ok($$ select * from creditkit_account_margin('2030-01-01 00:00:00+00', '2030-02-01 00:00:00+00') $$,
  '42501', null, 'authenticated cannot call account_margin');
select throws_ok($$ select * from creditkit_usage_series('2030-01-01 00:00:00+00', '2030-02-01 00:00:00+00') $$,
  '42501', null, 'authenticated cannot call usage_series');
select throws_ok($$ select * from creditkit_top_events('2030-01-01 00:00:00+00', '2030-02-01 00:00:00+00') $$,
  '42501', null, 'authenticated cannot call top_events');
select throws_ok($$ select * from creditkit_credits_outstanding('2030-01-31 00:00:00+00') $$,
  '42501', null, 'authenticated cannot call credits_outstanding');
select throws_ok($$ select * from creditkit_accounts_per_plan() $$, '42501', null, 'authenticated cannot call accounts_per_plan');
select throws_ok($$ select * from creditkit_mrr() $$, '42501', null, 'authenticated cannot call mrr');
select tests.authenticate_as_anon();
select throws_ok($$ select * from creditkit_account_margin('2030-01-01 00:00:00+00', '2030-02-01 00:00:00+00') $$,
  '42501', null, 'anon cannot call account_margin');
select throws_ok($$ select * from creditkit_mrr() $$, '42501', null, 'anon cannot call mrr');

select tests.clear_authentication();
select * from finish();
rollback;
