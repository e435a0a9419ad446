-- plans: the plan catalogue, subscriptions and lazy period renewals.
--
-- Renewals have no cron: the first touch after a boundary (consume, grant, server balance read,
-- the optional sweep) books it under the account lock. So every call passes p_now and the tests
-- walk each subscription through its boundaries at exact instants: at the boundary the new period
-- has started, one microsecond before it has not. Each scenario has its own account; the dates
-- of one scenario never make another's due, except where the sweep is the point (2019, earlier
-- than everything else in this file).
--
-- The caller-bound reads (my_plan, my_feature) use now(), so their subscription is anchored in
-- 2021 and the assertions only rely on now() being after that.
begin;
select plan(143);

-- Fixtures: one user per scenario; a personal account's id is its user's id.
select tests.create_supabase_user('alice');   -- set_plan lifecycle: start, status, change, cancel, restart
select tests.create_supabase_user('olga');    -- a start with an anchor in the past
select tests.create_supabase_user('bob');     -- month-end anchor, 24 periods, leap year
select tests.create_supabase_user('carol');   -- daily plan
select tests.create_supabase_user('dave');    -- weekly plan
select tests.create_supabase_user('yara');    -- yearly plan anchored on Feb 29
select tests.create_supabase_user('rolf');    -- rollover with a cap
select tests.create_supabase_user('rita');    -- rollover without a cap
select tests.create_supabase_user('ursula');  -- a catalogue change of the allowance
select tests.create_supabase_user('erin');    -- renewals booked by the sweep
select tests.create_supabase_user('frank');   -- past_due pauses renewals
select tests.create_supabase_user('fiona');   -- canceled pauses renewals, features fall back
select tests.create_supabase_user('tina');    -- trialing
select tests.create_supabase_user('ned');     -- an account with no subscription
select tests.create_supabase_user('gina');    -- member reads (my_plan, my_feature)
select tests.create_supabase_user('hank');    -- outsider, no account
select tests.create_supabase_user('paula');   -- resume after past_due
select tests.create_supabase_user('carl');    -- balance ceiling at renewal
select tests.create_supabase_user('carl2');   -- hand-granted plan credit survives a plan change

-- =============================================================================================
-- Service role: the catalogue.
-- =============================================================================================
select tests.authenticate_as_service_role();

select results_eq(
  $$ select id, allowance, is_default, active from creditkit.plans $$,
  $$ values ('free'::text, 0::bigint, true, true) $$,
  'the migrations seed one plan, free, with no allowance, as the default');

select ok(
  creditkit_upsert_plan('pro', 'Pro', 100, p_features => '{"hd_upscale": true, "beta": false}',
                        p_price_amount => 2000, p_stripe_price_id => 'price_pro_monthly')
    @> '{"id": "pro", "allowance": 100, "period": "month", "renewal": "reset", "is_default": false, "active": true}',
  'upsert_plan creates a plan and returns it (defaults: monthly, reset, active, not the default)');
select results_eq(
  $$ select name, allowance, period, renewal, rollover_cap, features, price_amount, currency, stripe_price_id,
            is_default, active
       from creditkit.plans where id = 'pro' $$,
  $$ values ('Pro'::text, 100::bigint, 'month'::text, 'reset'::text, null::bigint,
             '{"hd_upscale": true, "beta": false}'::jsonb, 2000::bigint, 'usd'::text, 'price_pro_monthly'::text,
             false, true) $$,
  'the plan row holds what was upserted');

-- Exactly one default at any time: naming a new default takes the flag from the old one.
select creditkit_upsert_plan('starter', 'Starter', 20, p_is_default => true);
select results_eq(
  $$ select id from creditkit.plans where is_default $$,
  $$ values ('starter'::text) $$,
  'a new default plan replaces the old default');
select throws_ok(
  $$ select creditkit_upsert_plan('starter', 'Starter', 20, p_is_default => false) $$,
  'CK006', null, 'the default plan cannot stop being the default without a successor');
select throws_ok(
  $$ select creditkit_upsert_plan('free', 'Free', 0, p_is_default => true, p_active => false) $$,
  'CK006', null, 'an inactive plan cannot be the default (accounts fall back to it)');
select creditkit_upsert_plan('free', 'Free', 0, p_features => '{"watermark": true}', p_is_default => true);
select results_eq(
  $$ select id from creditkit.plans where is_default $$,
  $$ values ('free'::text) $$,
  'the default can be switched back');
select creditkit_upsert_plan('pro', 'Pro (monthly)', 100, p_features => '{"hd_upscale": true, "beta": false}',
                             p_price_amount => 2000, p_stripe_price_id => 'price_pro_monthly');
select results_eq(
  $$ select count(*), min(name) from creditkit.plans where id = 'pro' $$,
  $$ values (1::bigint, 'Pro (monthly)'::text) $$,
  'upserting an existing id updates that plan (naturally idempotent)');

-- The rest of the catalogue the scenarios use.
select creditkit_upsert_plan('max', 'Max', 500, p_features => '{"hd_upscale": true, "priority_queue": true}');
select creditkit_upsert_plan('daily', 'Daily', 10, 'day');
select creditkit_upsert_plan('weekly', 'Weekly', 70, 'week');
select creditkit_upsert_plan('yearly', 'Yearly', 1200, 'year');
select creditkit_upsert_plan('roll', 'Rollover 400', 100, p_renewal => 'rollover', p_rollover_cap => 400);
select creditkit_upsert_plan('roll_all', 'Rollover, no cap', 50, p_renewal => 'rollover');
select creditkit_upsert_plan('growth', 'Growth', 10);
select creditkit_upsert_plan('retired', 'Retired', 1000, p_active => false);

-- ---------------------------------------------------------------------------------------------
-- Bad catalogue input: CK001 for amounts, CK006 for everything else; the catalogue is unchanged.
-- ---------------------------------------------------------------------------------------------
create temporary table ck_plans_before as select * from creditkit.plans;
grant select on ck_plans_before to service_role;

select throws_ok($$ select creditkit_upsert_plan(null, 'X') $$, 'CK006', null, 'upsert_plan: NULL id');
select throws_ok($$ select creditkit_upsert_plan('Pro', 'X') $$, 'CK006', null, 'upsert_plan: id with a capital');
select throws_ok($$ select creditkit_upsert_plan('-pro', 'X') $$, 'CK006', null, 'upsert_plan: id starting with a dash');
select throws_ok($$ select creditkit_upsert_plan(repeat('p', 64), 'X') $$, 'CK006', null, 'upsert_plan: 64-character id');
select throws_ok($$ select creditkit_upsert_plan('x', null) $$, 'CK006', null, 'upsert_plan: NULL name');
select throws_ok($$ select creditkit_upsert_plan('x', '   ') $$, 'CK006', null, 'upsert_plan: blank name');
select throws_ok($$ select creditkit_upsert_plan('x', repeat('n', 201)) $$, 'CK006', null, 'upsert_plan: 201-character name');
select throws_ok($$ select creditkit_upsert_plan('x', 'X', -1) $$, 'CK001', null, 'upsert_plan: negative allowance');
select throws_ok($$ select creditkit_upsert_plan('x', 'X', null) $$, 'CK001', null, 'upsert_plan: NULL allowance');
select throws_ok($$ select creditkit_upsert_plan('x', 'X', 9007199254740992) $$, 'CK001', null, 'upsert_plan: allowance 2^53');
select throws_ok($$ select creditkit_upsert_plan('x', 'X', p_price_amount => -1) $$, 'CK001', null, 'upsert_plan: negative price');
select throws_ok($$ select creditkit_upsert_plan('x', 'X', p_price_amount => null) $$, 'CK001', null, 'upsert_plan: NULL price');
select throws_ok($$ select creditkit_upsert_plan('x', 'X', p_rollover_cap => -1) $$, 'CK001', null, 'upsert_plan: negative rollover cap');
select throws_ok($$ select creditkit_upsert_plan('x', 'X', p_period => 'fortnight') $$, 'CK006', null, 'upsert_plan: unknown period');
select throws_ok($$ select creditkit_upsert_plan('x', 'X', p_period => null) $$, 'CK006', null, 'upsert_plan: NULL period');
select throws_ok($$ select creditkit_upsert_plan('x', 'X', p_renewal => 'carry') $$, 'CK006', null, 'upsert_plan: unknown renewal');
select throws_ok($$ select creditkit_upsert_plan('x', 'X', p_currency => 'USD') $$, 'CK006', null, 'upsert_plan: currency not lowercase');
select throws_ok($$ select creditkit_upsert_plan('x', 'X', p_currency => 'dollar') $$, 'CK006', null, 'upsert_plan: currency not a 3-letter code');
select throws_ok($$ select creditkit_upsert_plan('x', 'X', p_is_default => null) $$, 'CK006', null, 'upsert_plan: NULL is_default');
select throws_ok($$ select creditkit_upsert_plan('x', 'X', p_active => null) $$, 'CK006', null, 'upsert_plan: NULL active');
select throws_ok($$ select creditkit_upsert_plan('x', 'X', p_features => '["hd"]') $$, 'CK006', null, 'upsert_plan: features is an array');
select throws_ok($$ select creditkit_upsert_plan('x', 'X', p_features => '{"hd": 1}') $$, 'CK006', null, 'upsert_plan: a feature flag that is not a boolean');
select throws_ok($$ select creditkit_upsert_plan('x', 'X', p_features => null) $$, 'CK006', null, 'upsert_plan: NULL features');
select throws_ok($$ select creditkit_upsert_plan('x', 'X', p_stripe_price_id => 'price-1') $$, 'CK006', null, 'upsert_plan: stripe price id with a dash');
-- A Stripe price belongs to one plan (the webhook maps it back). Reusing it must be refused with a
-- documented code like every other bad argument, not leak the unique constraint's 23505.
select throws_ok($$ select creditkit_upsert_plan('x', 'X', p_stripe_price_id => 'price_pro_monthly') $$, 'CK006', null,
  'upsert_plan: a stripe price id already used by another plan');

select results_eq('select * from creditkit.plans order by id', 'select * from ck_plans_before order by id',
  'bad catalogue input changed nothing');

-- =============================================================================================
-- Service role: subscriptions (set_plan).
-- =============================================================================================

-- ---------------------------------------------------------------------------------------------
-- Start: set_plan opens the account, anchors the first period at p_now and grants the allowance
-- as a 'plan' bucket that expires when the period ends.
-- ---------------------------------------------------------------------------------------------
select results_eq(
  $$ select plan_id, status, period_start, period_end, balance
       from creditkit_set_plan(tests.get_supabase_uid('alice'), 'pro', p_now => '2030-01-15 10:00:00+00') $$,
  $$ values ('pro'::text, 'active'::text, '2030-01-15 10:00:00+00'::timestamptz, '2030-02-15 10:00:00+00'::timestamptz,
             100::bigint) $$,
  'set_plan starts the plan: first period from p_now, the allowance granted');
select results_eq(
  $$ select balance::bigint, due_at from creditkit.accounts where id = tests.get_supabase_uid('alice') $$,
  $$ values (100::bigint, '2030-02-15 10:00:00+00'::timestamptz) $$,
  'it opened the account; the next renewal is due at the period end');
select results_eq(
  $$ select g.category, g.amount, g.remaining, g.priority, g.expires_at, g.metadata ->> 'plan_id',
            g.metadata ->> 'period_index', g.metadata ->> 'reason', l.kind::text, l.amount::bigint, l.created_at
       from creditkit.grants g join creditkit.ledger l on l.grant_id = g.id
      where g.account_id = tests.get_supabase_uid('alice') $$,
  $$ values ('plan'::text, 100::bigint, 100::bigint, 20, '2030-02-15 10:00:00+00'::timestamptz, 'pro'::text, '0'::text,
             'plan_start'::text, 'grant'::text, 100::bigint, '2030-01-15 10:00:00+00'::timestamptz) $$,
  'the allowance is a plan bucket (priority 20) expiring at the period end, with one grant row');
select results_eq(
  $$ select plan_id, status, anchor, period_index, renews_at
       from creditkit.subscriptions where account_id = tests.get_supabase_uid('alice') $$,
  $$ values ('pro'::text, 'active'::text, '2030-01-15 10:00:00+00'::timestamptz, 0,
             '2030-02-15 10:00:00+00'::timestamptz) $$,
  'the subscription records plan, status, anchor, period and next renewal');

-- Same plan again: only the status changes; nothing is granted or taken.
select results_eq(
  $$ select plan_id, status, period_start, balance
       from creditkit_set_plan(tests.get_supabase_uid('alice'), 'pro', 'past_due', p_now => '2030-01-20 00:00:00+00') $$,
  $$ values ('pro'::text, 'past_due'::text, '2030-01-15 10:00:00+00'::timestamptz, 100::bigint) $$,
  'the same plan with another status keeps the period and the balance');
select results_eq(
  $$ select s.status, s.renews_at, (select count(*) from creditkit.ledger l where l.account_id = s.account_id)
       from creditkit.subscriptions s where s.account_id = tests.get_supabase_uid('alice') $$,
  $$ values ('past_due'::text, null::timestamptz, 1::bigint) $$,
  'past_due: no ledger row, and no renewal is scheduled');
select creditkit_set_plan(tests.get_supabase_uid('alice'), 'pro', 'active', p_now => '2030-01-21 00:00:00+00');
select creditkit_set_plan(tests.get_supabase_uid('alice'), 'pro', 'active', p_now => '2030-01-21 00:01:00+00');
select results_eq(
  $$ select s.status, s.period_index, s.renews_at, (select count(*) from creditkit.ledger l where l.account_id = s.account_id)
       from creditkit.subscriptions s where s.account_id = tests.get_supabase_uid('alice') $$,
  $$ values ('active'::text, 0, '2030-02-15 10:00:00+00'::timestamptz, 1::bigint) $$,
  'back to active (twice) in the same period: the renewal is scheduled again and nothing is granted twice');

-- A plan change takes effect at once: what is left of the old allowance is forfeited (an expire
-- row now), the new plan's first period starts now. Other credit is not touched.
select creditkit_grant(tests.get_supabase_uid('alice'), 10, 'purchase', p_now => '2030-01-22 00:00:00+00');
select is(
  (select balance from creditkit_consume(tests.get_supabase_uid('alice'), 30, p_now => '2030-01-23 00:00:00+00')),
  80::bigint, 'alice spends 30 (from the plan bucket, which expires first)');
select results_eq(
  $$ select plan_id, status, period_start, period_end, balance
       from creditkit_set_plan(tests.get_supabase_uid('alice'), 'max', p_now => '2030-01-25 00:00:00+00') $$,
  $$ values ('max'::text, 'active'::text, '2030-01-25 00:00:00+00'::timestamptz, '2030-02-25 00:00:00+00'::timestamptz,
             510::bigint) $$,
  'a plan change starts the new plan now: 500 of max + the 10 purchased');
select results_eq(
  $$ select l.kind::text, l.amount::bigint, l.balance_after::bigint, g.category, g.metadata ->> 'plan_id', l.created_at
       from creditkit.ledger l join creditkit.grants g on g.id = l.grant_id
      where l.account_id = tests.get_supabase_uid('alice') and l.created_at = '2030-01-25 00:00:00+00' order by l.id $$,
  $$ values ('expire'::text, -70::bigint, 10::bigint, 'plan'::text, 'pro'::text, '2030-01-25 00:00:00+00'::timestamptz),
            ('grant', 500, 510, 'plan', 'max', '2030-01-25 00:00:00+00') $$,
  'the old allowance left (70 unspent) as an expire row of its bucket, then the new allowance was granted');
select results_eq(
  $$ select metadata ->> 'plan_id', category, remaining, expires_at
       from creditkit.grants where account_id = tests.get_supabase_uid('alice') order by id $$,
  $$ values ('pro'::text, 'plan'::text, 0::bigint, '2030-01-25 00:00:00+00'::timestamptz),
            (null, 'purchase', 10, null),
            ('max', 'plan', 500, '2030-02-25 00:00:00+00') $$,
  'the old bucket is empty and cut short to the change; the purchased credit is untouched');

-- Cancel: the allowance already granted stays until its period ends; nothing renews after it.
select results_eq(
  $$ select status, balance
       from creditkit_set_plan(tests.get_supabase_uid('alice'), 'max', 'canceled', p_now => '2030-02-01 00:00:00+00') $$,
  $$ values ('canceled'::text, 510::bigint) $$,
  'canceling keeps the current allowance');
select results_eq(
  $$ select balance, next_expiry
       from creditkit_balance(tests.get_supabase_uid('alice'), p_now => '2030-03-01 00:00:00+00') $$,
  $$ values (10::bigint, null::timestamptz) $$,
  'after the period end of a canceled plan only the purchased credit is left');
select results_eq(
  $$ select kind::text, amount::bigint, created_at from creditkit.ledger
      where account_id = tests.get_supabase_uid('alice') and created_at > '2030-01-25 00:00:00+00' order by id $$,
  $$ values ('expire'::text, -500::bigint, '2030-03-01 00:00:00+00'::timestamptz) $$,
  'the canceled plan''s allowance expired and nothing was granted for the next period');

-- Restart after a cancellation: a new start (new anchor, new allowance), even on the same plan.
select results_eq(
  $$ select plan_id, status, period_start, period_end, balance
       from creditkit_set_plan(tests.get_supabase_uid('alice'), 'max', p_now => '2030-03-10 00:00:00+00') $$,
  $$ values ('max'::text, 'active'::text, '2030-03-10 00:00:00+00'::timestamptz, '2030-04-10 00:00:00+00'::timestamptz,
             510::bigint) $$,
  'restarting a canceled plan starts a new first period now');
select results_eq(
  $$ select status, anchor, period_index, renews_at from creditkit.subscriptions
      where account_id = tests.get_supabase_uid('alice') $$,
  $$ values ('active'::text, '2030-03-10 00:00:00+00'::timestamptz, 0, '2030-04-10 00:00:00+00'::timestamptz) $$,
  'the restarted subscription is re-anchored and renews again');

-- An anchor in the past (e.g. a Stripe billing cycle that began earlier): the period that
-- contains p_now is granted, not the first one.
select results_eq(
  $$ select period_start, period_end, balance
       from creditkit_set_plan(tests.get_supabase_uid('olga'), 'pro', p_anchor => '2030-01-05 00:00:00+00',
                               p_now => '2030-03-10 00:00:00+00') $$,
  $$ values ('2030-03-05 00:00:00+00'::timestamptz, '2030-04-05 00:00:00+00'::timestamptz, 100::bigint) $$,
  'with a past anchor the current period (index 2) is granted');
select results_eq(
  $$ select g.metadata ->> 'period_index', g.expires_at, s.period_index, s.renews_at
       from creditkit.grants g join creditkit.subscriptions s on s.account_id = g.account_id
      where g.account_id = tests.get_supabase_uid('olga') $$,
  $$ values ('2'::text, '2030-04-05 00:00:00+00'::timestamptz, 2, '2030-04-05 00:00:00+00'::timestamptz) $$,
  'and no allowance for the periods before p_now');

-- ---------------------------------------------------------------------------------------------
-- Month-end anchors: period k starts at anchor + k months in UTC, the day clamped to the month's
-- end and computed from the anchor every time (Jan 31 -> Feb 28 -> Mar 31, not Mar 28).
-- 24 periods from 2027-01-31, through the leap day 2028-02-29. Written out by hand.
-- ---------------------------------------------------------------------------------------------
select results_eq(
  $$ select creditkit.period_start('2027-01-31 00:00:00+00', 'month', k) from generate_series(0, 24) k order by k $$,
  $$ values ('2027-01-31 00:00:00+00'::timestamptz), ('2027-02-28 00:00:00+00'), ('2027-03-31 00:00:00+00'),
            ('2027-04-30 00:00:00+00'), ('2027-05-31 00:00:00+00'), ('2027-06-30 00:00:00+00'),
            ('2027-07-31 00:00:00+00'), ('2027-08-31 00:00:00+00'), ('2027-09-30 00:00:00+00'),
            ('2027-10-31 00:00:00+00'), ('2027-11-30 00:00:00+00'), ('2027-12-31 00:00:00+00'),
            ('2028-01-31 00:00:00+00'), ('2028-02-29 00:00:00+00'), ('2028-03-31 00:00:00+00'),
            ('2028-04-30 00:00:00+00'), ('2028-05-31 00:00:00+00'), ('2028-06-30 00:00:00+00'),
            ('2028-07-31 00:00:00+00'), ('2028-08-31 00:00:00+00'), ('2028-09-30 00:00:00+00'),
            ('2028-10-31 00:00:00+00'), ('2028-11-30 00:00:00+00'), ('2028-12-31 00:00:00+00'),
            ('2029-01-31 00:00:00+00') $$,
  'period_start: 24 monthly boundaries from Jan 31, clamped to each month''s end, Feb 29 in 2028');
-- UTC, whatever the session's time zone: 00:30 on Feb 1 in +01 is still Jan 31 in UTC.
set local timezone = 'Pacific/Kiritimati';
select is(creditkit.period_start('2027-02-01 00:30:00+01', 'month', 1), '2027-02-28 23:30:00+00'::timestamptz,
  'period_start works in UTC regardless of the session time zone (+14 here)');
set local timezone = 'UTC';
select results_eq(
  $$ select creditkit.period_index('2027-01-31 00:00:00+00', 'month', '2028-02-28 23:59:59.999999+00'),
            creditkit.period_index('2027-01-31 00:00:00+00', 'month', '2028-02-29 00:00:00+00'),
            creditkit.period_index('2027-01-31 00:00:00+00', 'month', '2027-03-30 23:59:59.999999+00'),
            creditkit.period_index('2027-01-31 00:00:00+00', 'month', '2027-01-30 00:00:00+00') $$,
  $$ values (12, 13, 1, 0) $$,
  'period_index: period 13 starts exactly at 2028-02-29, not 1us before; before the anchor is period 0');

-- Real renewals at those boundaries (reset plan: whatever is left expires, the allowance is
-- granted again), booked by the first consume or balance read at or after the boundary.
select creditkit_set_plan(tests.get_supabase_uid('bob'), 'pro', p_anchor => '2027-01-31 00:00:00+00',
                          p_now => '2027-01-31 00:00:00+00');
select is(
  (select balance from creditkit_consume(tests.get_supabase_uid('bob'), 1, p_now => '2027-02-27 23:59:59.999999+00')),
  99::bigint, '1us before the Feb 28 boundary the first period is still running');
select is(
  (select count(*) from creditkit.ledger where account_id = tests.get_supabase_uid('bob') and kind = 'grant'),
  1::bigint, 'and no renewal was booked');
select is(
  (select balance from creditkit_consume(tests.get_supabase_uid('bob'), 1, p_now => '2027-02-28 00:00:00+00')),
  99::bigint, 'exactly at the boundary the new period has started: 99 expired, 100 granted, 1 spent');
select results_eq(
  $$ select kind::text, amount::bigint, balance_after::bigint, created_at from creditkit.ledger
      where account_id = tests.get_supabase_uid('bob') order by id $$,
  $$ values ('grant'::text, 100::bigint, 100::bigint, '2027-01-31 00:00:00+00'::timestamptz),
            ('consume', -1, 99, '2027-02-27 23:59:59.999999+00'),
            ('expire', -99, 0, '2027-02-28 00:00:00+00'),
            ('grant', 100, 100, '2027-02-28 00:00:00+00'),
            ('consume', -1, 99, '2027-02-28 00:00:00+00') $$,
  'the touch at the boundary booked expire, then grant, then its own consume');
select results_eq(
  $$ select balance, next_expiry from creditkit_balance(tests.get_supabase_uid('bob'), p_now => '2028-02-28 23:59:59.999999+00') $$,
  $$ values (100::bigint, '2028-02-29 00:00:00+00'::timestamptz) $$,
  'a balance read a year later books one renewal: period 12, ending on the leap day');
select results_eq(
  $$ select balance, next_expiry from creditkit_balance(tests.get_supabase_uid('bob'), p_now => '2028-02-29 00:00:00+00') $$,
  $$ values (100::bigint, '2028-03-31 00:00:00+00'::timestamptz) $$,
  'at 2028-02-29 00:00 period 13 has started and runs to Mar 31');
select results_eq(
  $$ select allowed, balance from creditkit_consume(tests.get_supabase_uid('bob'), 5, p_now => '2029-01-31 00:00:00+00') $$,
  $$ values (true, 95::bigint) $$,
  'a consume at the 24th boundary books period 24 first');
-- A reset plan does not grant the periods nobody touched: one grant per touched period.
select results_eq(
  $$ select (metadata ->> 'period_index')::int, (metadata ->> 'period_start')::timestamptz,
            (metadata ->> 'period_end')::timestamptz, amount, expires_at
       from creditkit.grants where account_id = tests.get_supabase_uid('bob') order by id $$,
  $$ values (0, '2027-01-31 00:00:00+00'::timestamptz, '2027-02-28 00:00:00+00'::timestamptz, 100::bigint, '2027-02-28 00:00:00+00'::timestamptz),
            (1, '2027-02-28 00:00:00+00', '2027-03-31 00:00:00+00', 100, '2027-03-31 00:00:00+00'),
            (12, '2028-01-31 00:00:00+00', '2028-02-29 00:00:00+00', 100, '2028-02-29 00:00:00+00'),
            (13, '2028-02-29 00:00:00+00', '2028-03-31 00:00:00+00', 100, '2028-03-31 00:00:00+00'),
            (24, '2029-01-31 00:00:00+00', '2029-02-28 00:00:00+00', 100, '2029-02-28 00:00:00+00') $$,
  'the allowance buckets: one per touched period, each expiring at its clamped month end');
select results_eq(
  $$ select period_index, renews_at from creditkit.subscriptions where account_id = tests.get_supabase_uid('bob') $$,
  $$ values (24, '2029-02-28 00:00:00+00'::timestamptz) $$,
  'the subscription is in period 24 and renews on Feb 28, 2029');

-- ---------------------------------------------------------------------------------------------
-- Day, week and year periods.
-- ---------------------------------------------------------------------------------------------
select results_eq(
  $$ select creditkit.period_start('2030-03-01 06:00:00+00', 'day', 0), creditkit.period_start('2030-03-01 06:00:00+00', 'day', 1),
            creditkit.period_start('2030-03-01 06:00:00+00', 'day', 31),
            creditkit.period_start('2030-03-04 00:00:00+00', 'week', 1), creditkit.period_start('2030-03-04 00:00:00+00', 'week', 52) $$,
  $$ values ('2030-03-01 06:00:00+00'::timestamptz, '2030-03-02 06:00:00+00'::timestamptz, '2030-04-01 06:00:00+00'::timestamptz,
             '2030-03-11 00:00:00+00'::timestamptz, '2031-03-03 00:00:00+00'::timestamptz) $$,
  'period_start: days and weeks are fixed lengths from the anchor');
select results_eq(
  $$ select creditkit.period_start('2028-02-29 00:00:00+00', 'year', k) from generate_series(0, 4) k order by k $$,
  $$ values ('2028-02-29 00:00:00+00'::timestamptz), ('2029-02-28 00:00:00+00'), ('2030-02-28 00:00:00+00'),
            ('2031-02-28 00:00:00+00'), ('2032-02-29 00:00:00+00') $$,
  'period_start: a year anchored on Feb 29 renews on Feb 28, and on Feb 29 again in a leap year');

select creditkit_set_plan(tests.get_supabase_uid('carol'), 'daily', p_now => '2030-03-01 06:00:00+00');
select results_eq(
  $$ select balance, next_expiry from creditkit_balance(tests.get_supabase_uid('carol'), p_now => '2030-03-02 05:59:59.999999+00') $$,
  $$ values (10::bigint, '2030-03-02 06:00:00+00'::timestamptz) $$,
  'daily plan: 1us before the day ends, the first day is still running');
select results_eq(
  $$ select balance, next_expiry from creditkit_balance(tests.get_supabase_uid('carol'), p_now => '2030-03-02 06:00:00+00') $$,
  $$ values (10::bigint, '2030-03-03 06:00:00+00'::timestamptz) $$,
  'daily plan: at 06:00 the next day begins with a fresh allowance');

select creditkit_set_plan(tests.get_supabase_uid('dave'), 'weekly', p_now => '2030-03-04 00:00:00+00');
select results_eq(
  $$ select balance, next_expiry from creditkit_balance(tests.get_supabase_uid('dave'), p_now => '2030-03-11 00:00:00+00') $$,
  $$ values (70::bigint, '2030-03-18 00:00:00+00'::timestamptz) $$,
  'weekly plan: renews every 7 days');

select creditkit_set_plan(tests.get_supabase_uid('yara'), 'yearly', p_now => '2028-02-29 00:00:00+00');
select results_eq(
  $$ select balance, next_expiry from creditkit_balance(tests.get_supabase_uid('yara'), p_now => '2029-02-27 23:59:59.999999+00') $$,
  $$ values (1200::bigint, '2029-02-28 00:00:00+00'::timestamptz) $$,
  'yearly plan from a leap day: the first year ends on Feb 28 of the next year');
select results_eq(
  $$ select balance, next_expiry from creditkit_balance(tests.get_supabase_uid('yara'), p_now => '2029-02-28 00:00:00+00') $$,
  $$ values (1200::bigint, '2030-02-28 00:00:00+00'::timestamptz) $$,
  'yearly plan: the second year starts on Feb 28');
select is(
  (select count(*) from creditkit.ledger where account_id = tests.get_supabase_uid('yara')),
  3::bigint, 'yearly plan: grant, expire, grant');

-- ---------------------------------------------------------------------------------------------
-- Rollover: up to the cap of what is left is carried into the next period's bucket. A period
-- nobody touched carried its whole bucket, so after n untouched periods the carry is
-- min(min(left, cap) + n * allowance, cap), and the new bucket is allowance + carry.
-- ---------------------------------------------------------------------------------------------
-- rolf: allowance 100, cap 400.
select creditkit_set_plan(tests.get_supabase_uid('rolf'), 'roll', p_now => '2030-01-01 00:00:00+00');
select creditkit_consume(tests.get_supabase_uid('rolf'), 40, p_now => '2030-01-10 00:00:00+00');
-- Period 1: left 60, carry min(60, 400) = 60, bucket 100 + 60 = 160.
select is(
  (select balance from creditkit_balance(tests.get_supabase_uid('rolf'), p_now => '2030-02-01 00:00:00+00')),
  160::bigint, 'rollover: 60 left over is carried (under the cap): 100 + 60');
select creditkit_consume(tests.get_supabase_uid('rolf'), 10, p_now => '2030-02-10 00:00:00+00');
-- Periods 2 and 3 untouched; touched in period 4: left 150, n = 4 - 1 - 1 = 2,
-- carry min(min(150, 400) + 2 * 100, 400) = 350, bucket 100 + 350 = 450.
select is(
  (select balance from creditkit_balance(tests.get_supabase_uid('rolf'), p_now => '2030-05-10 00:00:00+00')),
  450::bigint, 'rollover after two untouched periods: min(min(150, 400) + 2 * 100, 400) = 350 carried');
-- Periods 5, 6, 7 untouched; touched in period 8: left 450, n = 3,
-- carry min(min(450, 400) + 3 * 100, 400) = 400 (the cap), bucket 500.
select is(
  (select balance from creditkit_balance(tests.get_supabase_uid('rolf'), p_now => '2030-09-10 00:00:00+00')),
  500::bigint, 'rollover after three untouched periods hits the cap: 400 carried');
select results_eq(
  $$ select l.kind::text, l.amount::bigint, l.balance_after::bigint, g.metadata ->> 'rollover', g.metadata ->> 'period_index'
       from creditkit.ledger l left join creditkit.grants g on g.id = l.grant_id and l.kind = 'grant'
      where l.account_id = tests.get_supabase_uid('rolf') order by l.id $$,
  $$ values ('grant'::text, 100::bigint, 100::bigint, '0'::text, '0'::text),
            ('consume', -40, 60, null, null),
            ('expire', -60, 0, null, null), ('grant', 160, 160, '60', '1'),
            ('consume', -10, 150, null, null),
            ('expire', -150, 0, null, null), ('grant', 450, 450, '350', '4'),
            ('expire', -450, 0, null, null), ('grant', 500, 500, '400', '8') $$,
  'rollover: the old bucket expires in full and the carry is part of the new bucket (recorded in its metadata)');

-- rita: allowance 50, no cap. Untouched periods 1 and 2, touched in period 3:
-- carry 50 + 2 * 50 = 150, bucket 200.
select creditkit_set_plan(tests.get_supabase_uid('rita'), 'roll_all', p_now => '2030-01-01 00:00:00+00');
select is(
  (select balance from creditkit_balance(tests.get_supabase_uid('rita'), p_now => '2030-04-01 00:00:00+00')),
  200::bigint, 'rollover without a cap carries everything: 50 + 2 * 50 + 50');

-- A catalogue change of the allowance applies from the next period, not to the current one.
select creditkit_set_plan(tests.get_supabase_uid('ursula'), 'growth', p_now => '2030-01-01 00:00:00+00');
select creditkit_upsert_plan('growth', 'Growth', 25);
select is(
  (select balance from creditkit_balance(tests.get_supabase_uid('ursula'), p_now => '2030-01-31 23:59:59.999999+00')),
  10::bigint, 'a new allowance does not change the current period');
select is(
  (select balance from creditkit_balance(tests.get_supabase_uid('ursula'), p_now => '2030-02-01 00:00:00+00')),
  25::bigint, 'the next period grants the new allowance');

-- ---------------------------------------------------------------------------------------------
-- The sweep books renewals too (erin's subscription, in 2019, is the only thing due that early).
-- ---------------------------------------------------------------------------------------------
select creditkit_set_plan(tests.get_supabase_uid('erin'), 'pro', p_now => '2019-01-01 00:00:00+00');
select is(creditkit_book_expired('2019-01-31 23:59:59.999999+00'), 0, 'the sweep finds no renewal due 1us before it');
select is(creditkit_book_expired('2019-02-01 00:00:00+00'), 1, 'at the boundary the sweep visits the account');
select is(creditkit_book_expired('2019-02-01 00:00:00+00'), 0, 'and once booked it is not due any more');
select results_eq(
  $$ select kind::text, amount::bigint, balance_after::bigint, created_at from creditkit.ledger
      where account_id = tests.get_supabase_uid('erin') order by id $$,
  $$ values ('grant'::text, 100::bigint, 100::bigint, '2019-01-01 00:00:00+00'::timestamptz),
            ('expire', -100, 0, '2019-02-01 00:00:00+00'),
            ('grant', 100, 100, '2019-02-01 00:00:00+00') $$,
  'the sweep booked the renewal: expire, then the new allowance');
select results_eq(
  $$ select s.period_index, s.renews_at, a.due_at
       from creditkit.subscriptions s join creditkit.accounts a on a.id = s.account_id
      where s.account_id = tests.get_supabase_uid('erin') $$,
  $$ values (1, '2019-03-01 00:00:00+00'::timestamptz, '2019-03-01 00:00:00+00'::timestamptz) $$,
  'the next renewal is scheduled and due');

-- ---------------------------------------------------------------------------------------------
-- past_due and canceled pause renewals: the allowance granted runs out, nothing new is granted.
-- The plan's features stay on while past_due (a live status).
-- ---------------------------------------------------------------------------------------------
select creditkit_set_plan(tests.get_supabase_uid('frank'), 'pro', p_now => '2030-01-01 00:00:00+00');
select creditkit_set_plan(tests.get_supabase_uid('frank'), 'pro', 'past_due', p_now => '2030-01-10 00:00:00+00');
select results_eq(
  $$ select balance, next_expiry from creditkit_balance(tests.get_supabase_uid('frank'), p_now => '2030-03-15 00:00:00+00') $$,
  $$ values (0::bigint, null::timestamptz) $$,
  'past_due: two boundaries later nothing was renewed');
select results_eq(
  $$ select kind::text, amount::bigint from creditkit.ledger where account_id = tests.get_supabase_uid('frank') order by id $$,
  $$ values ('grant'::text, 100::bigint), ('expire', -100) $$,
  'past_due: the first allowance expired at its period end and no allowance followed');
select results_eq(
  $$ select s.period_index, s.renews_at, a.due_at
       from creditkit.subscriptions s join creditkit.accounts a on a.id = s.account_id
      where s.account_id = tests.get_supabase_uid('frank') $$,
  $$ values (0, null::timestamptz, null::timestamptz) $$,
  'past_due: nothing is due on the account, so neither a touch nor the sweep renews it');
select is(creditkit_has_feature(tests.get_supabase_uid('frank'), 'hd_upscale'), true,
  'past_due keeps the plan''s features');
-- Back to active (reset plan): the next touch grants the allowance of the period it falls in.
select creditkit_set_plan(tests.get_supabase_uid('frank'), 'pro', 'active', p_now => '2030-03-15 00:00:00+00');
select is(
  (select balance from creditkit_balance(tests.get_supabase_uid('frank'), p_now => '2030-03-16 00:00:00+00')),
  100::bigint, 'resumed: the touch after resuming grants the current period''s allowance');
select results_eq(
  $$ select (metadata ->> 'period_index')::int, expires_at from creditkit.grants
      where account_id = tests.get_supabase_uid('frank') order by id $$,
  $$ values (0, '2030-02-01 00:00:00+00'::timestamptz), (2, '2030-04-01 00:00:00+00') $$,
  'resumed: one bucket for the current period (2), none for the paused one');

select creditkit_set_plan(tests.get_supabase_uid('fiona'), 'pro', p_now => '2030-01-01 00:00:00+00');
select creditkit_set_plan(tests.get_supabase_uid('fiona'), 'pro', 'canceled', p_now => '2030-01-10 00:00:00+00');
select is(
  (select balance from creditkit_balance(tests.get_supabase_uid('fiona'), p_now => '2030-01-31 23:59:59.999999+00')),
  100::bigint, 'canceled: the allowance lasts to the end of its period');
select is(
  (select balance from creditkit_balance(tests.get_supabase_uid('fiona'), p_now => '2030-06-01 00:00:00+00')),
  0::bigint, 'canceled: nothing renews afterwards');
select results_eq(
  $$ select s.status, s.renews_at, a.due_at from creditkit.subscriptions s join creditkit.accounts a on a.id = s.account_id
      where s.account_id = tests.get_supabase_uid('fiona') $$,
  $$ values ('canceled'::text, null::timestamptz, null::timestamptz) $$,
  'canceled: no renewal scheduled, nothing due on the account');

-- ---------------------------------------------------------------------------------------------
-- Features (server): the flag of the plan in force; a canceled subscription or none at all
-- means the default plan (free: watermark on, hd_upscale absent).
-- ---------------------------------------------------------------------------------------------
select creditkit_set_plan(tests.get_supabase_uid('tina'), 'pro', 'trialing', p_now => '2030-01-01 00:00:00+00');
select creditkit_grant(tests.get_supabase_uid('ned'), 5, p_now => '2030-01-01 00:00:00+00');
select creditkit_set_plan(tests.get_supabase_uid('gina'), 'pro', p_now => '2021-01-15 00:00:00+00');

select results_eq(
  $$ select creditkit_has_feature(tests.get_supabase_uid('gina'), 'hd_upscale'),
            creditkit_has_feature(tests.get_supabase_uid('gina'), 'beta'),
            creditkit_has_feature(tests.get_supabase_uid('gina'), 'no_such_flag'),
            creditkit_has_feature(tests.get_supabase_uid('gina'), 'watermark') $$,
  $$ values (true, false, false, false) $$,
  'has_feature: on, explicitly off, absent (off), and the default plan''s flag does not leak in');
select results_eq(
  $$ select creditkit_has_feature(tests.get_supabase_uid('tina'), 'hd_upscale'),
            creditkit_has_feature(tests.get_supabase_uid('fiona'), 'hd_upscale'),
            creditkit_has_feature(tests.get_supabase_uid('fiona'), 'watermark'),
            creditkit_has_feature(tests.get_supabase_uid('ned'), 'watermark') $$,
  $$ values (true, false, true, true) $$,
  'has_feature: a trial has the plan''s flags; canceled and no subscription fall back to the default plan');
select throws_ok($$ select creditkit_has_feature(null, 'hd_upscale') $$, 'CK006', null, 'has_feature: NULL account');
select throws_ok($$ select creditkit_has_feature(tests.get_supabase_uid('gina'), null) $$, 'CK006', null, 'has_feature: NULL feature');
select throws_ok($$ select creditkit_has_feature(tests.get_supabase_uid('gina'), '  ') $$, 'CK006', null, 'has_feature: blank feature');
select throws_ok($$ select creditkit_has_feature(tests.get_supabase_uid('gina'), repeat('f', 201)) $$, 'CK006', null,
  'has_feature: 201-character feature');
select throws_ok($$ select creditkit_has_feature('00000000-0000-4000-8000-00000000dead', 'hd_upscale') $$, 'CK003', null,
  'has_feature: unknown account');

-- ---------------------------------------------------------------------------------------------
-- Bad set_plan input: a code, and no account, subscription, bucket or ledger row changed.
-- ---------------------------------------------------------------------------------------------
create temporary view ck_state as
  select (select count(*) from creditkit.accounts) as accounts,
         (select count(*) from creditkit.subscriptions) as subscriptions,
         (select string_agg(format('%s/%s/%s/%s', account_id, plan_id, status, period_index), ',' order by account_id)
            from creditkit.subscriptions) as subscription_states,
         (select count(*) from creditkit.grants) as grants,
         (select count(*) from creditkit.ledger) as ledger_rows,
         (select coalesce(sum(balance), 0) from creditkit.accounts) as total_balance;
create temporary table ck_before as select * from ck_state;
grant select on ck_state, ck_before to service_role;

select throws_ok($$ select creditkit_set_plan(null, 'pro', p_now => '2030-06-01 00:00:00+00') $$,
  'CK006', null, 'set_plan: NULL account');
select throws_ok($$ select creditkit_set_plan(tests.get_supabase_uid('hank'), 'pro', 'paused', p_now => '2030-06-01 00:00:00+00') $$,
  'CK006', null, 'set_plan: unknown status');
select throws_ok($$ select creditkit_set_plan(tests.get_supabase_uid('hank'), 'pro', null, p_now => '2030-06-01 00:00:00+00') $$,
  'CK006', null, 'set_plan: NULL status');
select throws_ok(
  $$ select creditkit_set_plan(tests.get_supabase_uid('hank'), 'pro', p_anchor => '2030-06-01 00:00:00.000001+00',
                               p_now => '2030-06-01 00:00:00+00') $$,
  'CK006', null, 'set_plan: an anchor in the future (1us)');
select throws_ok($$ select creditkit_set_plan(tests.get_supabase_uid('hank'), 'pro', p_now => null) $$,
  'CK006', null, 'set_plan: NULL p_now');
select throws_ok($$ select creditkit_set_plan(tests.get_supabase_uid('hank'), 'platinum', p_now => '2030-06-01 00:00:00+00') $$,
  'CK009', null, 'set_plan: unknown plan');
select throws_ok($$ select creditkit_set_plan(tests.get_supabase_uid('hank'), null, p_now => '2030-06-01 00:00:00+00') $$,
  'CK009', null, 'set_plan: NULL plan');
select throws_ok($$ select creditkit_set_plan(tests.get_supabase_uid('hank'), 'retired', p_now => '2030-06-01 00:00:00+00') $$,
  'CK009', null, 'set_plan: an inactive plan');
select throws_ok($$ select creditkit_set_plan(tests.get_supabase_uid('gina'), 'retired', p_now => '2030-06-01 00:00:00+00') $$,
  'CK009', null, 'set_plan: an inactive plan, for an account that has a subscription');
select results_eq('select * from ck_state', 'select * from ck_before',
  'bad set_plan input changed nothing (hank still has no account)');

-- =============================================================================================
-- Member (gina, on pro since 2021-01-15): the caller-bound reads.
-- =============================================================================================
select tests.authenticate_as('gina');

select results_eq(
  $$ select account_id, plan_id, plan_name, status, allowance, features from creditkit_my_plan() $$,
  $$ values (tests.get_supabase_uid('gina'), 'pro'::text, 'Pro (monthly)'::text, 'active'::text, 100::bigint,
             '{"hd_upscale": true, "beta": false}'::jsonb) $$,
  'my_plan: her plan, status, allowance and features');
-- The period is the one containing now(); anchored on the 15th at 00:00 UTC, one month long.
select ok(
  (select period_start <= now() and now() < period_end
          and extract(day from period_start at time zone 'UTC') = 15
          and (period_start at time zone 'UTC')::time = '00:00'
          and period_end = creditkit.period_start('2021-01-15 00:00:00+00', 'month',
                             creditkit.period_index('2021-01-15 00:00:00+00', 'month', period_start) + 1)
     from creditkit_my_plan()),
  'my_plan: the current period (from the 15th to the 15th) contains now()');
select is((select plan_id from creditkit_my_plan(tests.get_supabase_uid('gina'))), 'pro',
  'my_plan: she may name her own account');
select results_eq(
  $$ select creditkit_my_feature('hd_upscale'), creditkit_my_feature('beta'), creditkit_my_feature('watermark'),
            creditkit_my_feature('hd_upscale', tests.get_supabase_uid('gina')) $$,
  $$ values (true, false, false, true) $$,
  'my_feature: her plan''s flags (absent is off)');
select results_eq(
  $$ select account_id, plan_id from creditkit.subscriptions $$,
  $$ values (tests.get_supabase_uid('gina'), 'pro'::text) $$,
  'RLS: she sees exactly her own subscription');
select ok((select count(*) > 5 from creditkit.plans), 'signed-in users can read the plan catalogue');
select results_eq(
  $$ select id, price_amount from creditkit_plans() $$,
  $$ select id, price_amount from creditkit.plans where active order by price_amount, id $$,
  'creditkit_plans: exactly the active plans, cheapest first');
select ok(not exists (select 1 from creditkit_plans() where id = 'retired'),
  'creditkit_plans: an inactive plan is not on offer');

select throws_ok($$ select creditkit_has_feature(tests.get_supabase_uid('gina'), 'hd_upscale') $$,
  '42501', null, 'a member cannot call the server has_feature');
select throws_ok($$ select creditkit_set_plan(tests.get_supabase_uid('gina'), 'max', p_now => '2030-01-01 00:00:00+00') $$,
  '42501', null, 'a member cannot change her plan');
select throws_ok($$ select creditkit_upsert_plan('pro', 'Pro', 1000000) $$,
  '42501', null, 'a member cannot edit the catalogue');

-- A canceled member sees the default plan.
select tests.authenticate_as('fiona');
select results_eq(
  $$ select plan_id, allowance, features, period_start, period_end from creditkit_my_plan() $$,
  $$ values ('free'::text, 0::bigint, '{"watermark": true}'::jsonb, null::timestamptz, null::timestamptz) $$,
  'my_plan after a cancellation: the default plan, with no period');
select results_eq(
  $$ select creditkit_my_feature('hd_upscale'), creditkit_my_feature('watermark') $$,
  $$ values (false, true) $$,
  'my_feature after a cancellation: the default plan''s flags');

-- =============================================================================================
-- Outsider (hank, signed in, no account of his own).
-- =============================================================================================
select tests.authenticate_as('hank');

select throws_ok($$ select creditkit_my_plan(tests.get_supabase_uid('gina')) $$, 'CK005', null,
  'my_plan of someone else''s account: CK005');
select throws_ok($$ select creditkit_my_feature('hd_upscale', tests.get_supabase_uid('gina')) $$, 'CK005', null,
  'my_feature of someone else''s account: CK005');
select results_eq(
  $$ select account_id, plan_id, status, period_start, features from creditkit_my_plan() $$,
  $$ values (tests.get_supabase_uid('hank'), 'free'::text, 'active'::text, null::timestamptz, '{"watermark": true}'::jsonb) $$,
  'my_plan without an account or subscription: the default plan');
select is(creditkit_my_feature('watermark'), true, 'my_feature without an account: the default plan''s flags');
select is((select count(*) from creditkit.subscriptions), 0::bigint, 'RLS: an outsider sees no subscription');

-- A session with the authenticated role but no user id is refused, never read as "own".
select set_config('request.jwt.claims', '{"role":"authenticated"}', true);
select throws_ok($$ select creditkit_my_plan() $$, 'CK005', null, 'my_plan without a user id: CK005');
select throws_ok($$ select creditkit_my_feature('hd_upscale') $$, 'CK005', null, 'my_feature without a user id: CK005');

-- =============================================================================================
-- Anon: no plan reads at all.
-- =============================================================================================
select tests.authenticate_as_anon();

select throws_ok($$ select creditkit_my_plan() $$, '42501', null, 'anon cannot call my_plan');
select throws_ok($$ select creditkit_my_feature('hd_upscale') $$, '42501', null, 'anon cannot call my_feature');
select throws_ok($$ select creditkit_has_feature(tests.get_supabase_uid('gina'), 'hd_upscale') $$, '42501', null,
  'anon cannot call has_feature');
select throws_ok($$ select count(*) from creditkit.plans $$, '42501', null, 'anon cannot read the catalogue');

-- =============================================================================================
-- Regressions: resuming a paused subscription, period changes, the balance ceiling.
-- =============================================================================================
select tests.clear_authentication();
select tests.authenticate_as_service_role();

-- Resuming after months of past_due starts the current period afresh; paused periods carry nothing.
select creditkit_upsert_plan('roll_resume', 'Rollover resume', 100, p_renewal => 'rollover');
select creditkit_set_plan(tests.get_supabase_uid('paula'), 'roll_resume', p_anchor => '2027-01-31 00:00:00+00',
                          p_now => '2027-01-31 00:00:00+00');
select creditkit_set_plan(tests.get_supabase_uid('paula'), 'roll_resume', 'past_due', p_now => '2027-03-01 00:00:00+00');
select results_eq(
  $$ select period_start, period_end, balance
       from creditkit_set_plan(tests.get_supabase_uid('paula'), 'roll_resume', 'active', p_now => '2027-09-15 00:00:00+00') $$,
  $$ values ('2027-08-31 00:00:00+00'::timestamptz, '2027-09-30 00:00:00+00'::timestamptz, 100::bigint) $$,
  'resuming from past_due: the current period, its allowance only (no credit invented for paused months)');
select is((select balance from creditkit_balance(tests.get_supabase_uid('paula'), '2027-09-20 00:00:00+00')), 100::bigint,
  'and the next touch in that period books nothing more');

-- A plan's period cannot change under live subscriptions (it would renumber their periods).
select throws_ok($$ select creditkit_upsert_plan('roll_resume', 'Rollover resume', 100, 'day', 'rollover') $$,
  'CK006', null, 'changing the period of a plan with live subscriptions: CK006');

-- A Stripe price sells one plan.
select creditkit_upsert_plan('sp_a', 'A', 1, p_stripe_price_id => 'price_sp_1');
select throws_ok($$ select creditkit_upsert_plan('sp_b', 'B', 1, p_stripe_price_id => 'price_sp_1') $$,
  'CK006', null, 'a stripe price id already used by another plan: CK006, not a constraint error');

-- A renewal near the ceiling is capped instead of failing every touch forever.
select creditkit_upsert_plan('ceiling', 'Ceiling', 1000);
select creditkit_grant(tests.get_supabase_uid('carl'), 9007199254740000, p_now => '2027-01-01 00:00:00+00');
select creditkit_set_plan(tests.get_supabase_uid('carl'), 'ceiling', p_now => '2027-01-01 00:00:00+00');
select is((select balance from creditkit_balance(tests.get_supabase_uid('carl'), '2027-02-01 00:00:00+00')),
  9007199254740991::bigint, 'a renewal that would pass 2^53-1 is capped at it, and the touch succeeds');

-- Only allowance the kit granted for a period is forfeited by a plan change or rolled over;
-- plan-category credit granted by hand is the operator's and stays.
select creditkit_grant(tests.get_supabase_uid('carl2'), 70, 'plan', p_now => '2027-01-01 00:00:00+00');
select creditkit_set_plan(tests.get_supabase_uid('carl2'), 'growth', p_now => '2027-01-02 00:00:00+00');
select creditkit_set_plan(tests.get_supabase_uid('carl2'), 'max', p_now => '2027-01-03 00:00:00+00');
select results_eq(
  $$ select kind::text, amount::bigint from creditkit.ledger where account_id = tests.get_supabase_uid('carl2') order by id $$,
  $$ values ('grant'::text, 70::bigint), ('grant', 25), ('expire', -25), ('grant', 500) $$,
  'a plan change forfeits the old period allowance (25) but not hand-granted plan credit (70)');

-- Feature names are validated like has_feature's.
select tests.authenticate_as('gina');
select throws_ok($$ select creditkit_my_feature(null) $$, 'CK006', null, 'my_feature(NULL): CK006');

-- =============================================================================================
-- Invariants over every account this file touched.
-- =============================================================================================
select tests.clear_authentication();

select is_empty(
  $$ select a.id from creditkit.accounts a
      where a.balance <> (select coalesce(sum(l.amount), 0) from creditkit.ledger l where l.account_id = a.id)
         or a.balance <> (select coalesce(sum(g.remaining), 0) from creditkit.grants g where g.account_id = a.id) - a.undrawn
         or a.version <> (select count(*) from creditkit.ledger l where l.account_id = a.id) $$,
  'for every account: balance = sum(ledger.amount) = sum(grants.remaining), version = number of rows');
select is_empty(
  $$ select a.id from creditkit.accounts a
      where a.due_at > (select min(t) from (
              select g.expires_at from creditkit.grants g where g.account_id = a.id and g.remaining > 0
              union all select s.renews_at from creditkit.subscriptions s where s.account_id = a.id) as due(t)) $$,
  'no account''s due_at is later than its next expiry or renewal (so no renewal can be missed)');

select * from finish();
rollback;
