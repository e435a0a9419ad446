-- units: the unit catalogue, plan limits, check/report and the unit argument of the balance
-- functions refuse bad input with their documented SQLSTATE and change nothing (invariant 8), per
-- argument: NULL, zero, negative, above 2^53-1, an unknown unit and a boolean unit (CK015).
-- Then one balance per (account, unit): a spend of one unit leaves the other alone.
begin;
select plan(104);

-- Fixtures: alice holds 100 credits and, on plan pro, messages (20 a day); hd is a boolean unit.
select tests.create_supabase_user('alice');
select creditkit_grant(tests.get_supabase_uid('alice'), 100, p_now => '2030-01-01 00:00:00+00');
select creditkit_upsert_unit('messages', 'Messages', 'metered');
select creditkit_upsert_unit('hd', 'HD images', 'boolean');
select creditkit_upsert_plan('pro', 'Pro', 50);
select creditkit_set_plan_limit('pro', 'messages', 20, 'day');
select creditkit_set_plan(tests.get_supabase_uid('alice'), 'pro', p_now => '2030-01-01 00:00:00+00');
select is((select count(*) from creditkit.accounts a where a.id = tests.get_supabase_uid('alice') and a.unit = 'messages'),
  0::bigint, 'a plan limit opens no balance until the unit is first touched');
-- the first touch (a check) opens alice's messages with the day's allowance
select * from creditkit_check(tests.get_supabase_uid('alice'), 'messages', 1, '2030-01-01 00:00:00+00');

create temporary view ck_state as
  select (select count(*) from creditkit.accounts) as accounts,
         (select count(*) from creditkit.grants) as grants,
         (select count(*) from creditkit.ledger) as ledger_rows,
         (select count(*) from creditkit.holds) as holds,
         (select count(*) from creditkit.allowances) as allowances,
         (select jsonb_agg(to_jsonb(l) - 'created_at' order by l.plan_id, l.unit) from creditkit.plan_limits l) as limits,
         (select jsonb_agg(to_jsonb(u) - 'created_at' order by u.id) from creditkit.units u) as units,
         (select jsonb_object_agg(a.unit, a.balance) from creditkit.accounts a) as balances,
         (select coalesce(sum(version), 0) from creditkit.accounts) as total_version;
create temporary table ck_before as select * from ck_state;
grant select on ck_state, ck_before to service_role, authenticated;

select is((select jsonb_object_agg(a.unit, a.balance) from creditkit.accounts a
            where a.id = tests.get_supabase_uid('alice')),
  '{"credits": 150, "messages": 20}'::jsonb, 'fixtures: 150 credits (100 + the plan''s 50) and 20 messages');

select tests.authenticate_as_service_role();

-- ---------------------------------------------------------------------------------------------
-- creditkit_upsert_unit
-- ---------------------------------------------------------------------------------------------
select throws_ok($$ select creditkit_upsert_unit(null, 'X', 'metered') $$, 'CK006', null, 'upsert_unit: NULL id');
select throws_ok($$ select creditkit_upsert_unit('Not An Id', 'X', 'metered') $$, 'CK006', null, 'upsert_unit: malformed id');
select throws_ok($$ select creditkit_upsert_unit('seats', null, 'metered') $$, 'CK006', null, 'upsert_unit: NULL name');
select throws_ok($$ select creditkit_upsert_unit('seats', '  ', 'metered') $$, 'CK006', null, 'upsert_unit: blank name');
select throws_ok($$ select creditkit_upsert_unit('seats', repeat('x', 201), 'metered') $$, 'CK006', null, 'upsert_unit: name too long');
select throws_ok($$ select creditkit_upsert_unit('seats', 'Seats', null) $$, 'CK006', null, 'upsert_unit: NULL kind');
select throws_ok($$ select creditkit_upsert_unit('seats', 'Seats', 'counted') $$, 'CK006', null, 'upsert_unit: unknown kind');
select throws_ok($$ select creditkit_upsert_unit('credits', 'Credits', 'boolean') $$, 'CK006', null,
  'upsert_unit: credits cannot become boolean');
select throws_ok($$ select creditkit_upsert_unit('messages', 'Messages', 'boolean') $$, 'CK006', null,
  'upsert_unit: a unit an account holds cannot change its kind');

-- ---------------------------------------------------------------------------------------------
-- creditkit_set_plan_limit
-- ---------------------------------------------------------------------------------------------
select throws_ok($$ select creditkit_set_plan_limit(null, 'messages', 5) $$, 'CK009', null, 'set_plan_limit: NULL plan');
select throws_ok($$ select creditkit_set_plan_limit('platinum', 'messages', 5) $$, 'CK009', null, 'set_plan_limit: unknown plan');
select throws_ok($$ select creditkit_set_plan_limit('pro', null, 5) $$, 'CK015', null, 'set_plan_limit: NULL unit');
select throws_ok($$ select creditkit_set_plan_limit('pro', 'tokens', 5) $$, 'CK015', null, 'set_plan_limit: unknown unit');
select throws_ok($$ select creditkit_set_plan_limit('pro', 'hd', 5) $$, 'CK015', null, 'set_plan_limit: boolean unit');
select throws_ok($$ select creditkit_set_plan_limit('pro', 'credits', 5) $$, 'CK006', null,
  'set_plan_limit: credits (its allowance is the plan''s own)');
select throws_ok($$ select creditkit_set_plan_limit('pro', 'messages', -1) $$, 'CK001', null, 'set_plan_limit: negative allowance');
select throws_ok($$ select creditkit_set_plan_limit('pro', 'messages', 9007199254740992) $$, 'CK001', null, 'set_plan_limit: allowance 2^53');
select throws_ok($$ select creditkit_set_plan_limit('pro', 'messages', 5, 'day', 'rollover', -1) $$, 'CK001', null, 'set_plan_limit: negative cap');
select throws_ok($$ select creditkit_set_plan_limit('pro', 'messages', 5, 'day', 'rollover', 9007199254740992) $$, 'CK001', null, 'set_plan_limit: cap 2^53');
select throws_ok($$ select creditkit_set_plan_limit('pro', 'messages', 5, null) $$, 'CK006', null, 'set_plan_limit: NULL period');
select throws_ok($$ select creditkit_set_plan_limit('pro', 'messages', 5, 'hour') $$, 'CK006', null, 'set_plan_limit: unknown period');
select throws_ok($$ select creditkit_set_plan_limit('pro', 'messages', 5, 'day', null) $$, 'CK006', null, 'set_plan_limit: NULL renewal');
select throws_ok($$ select creditkit_set_plan_limit('pro', 'messages', 5, 'day', 'carry') $$, 'CK006', null, 'set_plan_limit: unknown renewal');
select throws_ok($$ select creditkit_set_plan_limit('pro', 'messages', 5, 'month') $$, 'CK006', null,
  'set_plan_limit: the period of a limit accounts are renewing cannot change');

-- ---------------------------------------------------------------------------------------------
-- creditkit_check
-- ---------------------------------------------------------------------------------------------
select throws_ok($$ select creditkit_check(null, 'messages', 1, '2030-01-01 01:00:00+00') $$, 'CK006', null, 'check: NULL account');
select throws_ok($$ select creditkit_check('00000000-0000-4000-8000-00000000dead', 'messages', 1, '2030-01-01 01:00:00+00') $$,
  'CK003', null, 'check: unknown account');
select throws_ok($$ select creditkit_check(tests.get_supabase_uid('alice'), null, 1, '2030-01-01 01:00:00+00') $$, 'CK015', null, 'check: NULL unit');
select throws_ok($$ select creditkit_check(tests.get_supabase_uid('alice'), 'tokens', 1, '2030-01-01 01:00:00+00') $$, 'CK015', null, 'check: unknown unit');
select throws_ok($$ select creditkit_check(tests.get_supabase_uid('alice'), 'hd', 1, '2030-01-01 01:00:00+00') $$, 'CK015', null, 'check: boolean unit');
select throws_ok($$ select creditkit_check(tests.get_supabase_uid('alice'), 'messages', 0, '2030-01-01 01:00:00+00') $$, 'CK001', null, 'check: zero amount');
select throws_ok($$ select creditkit_check(tests.get_supabase_uid('alice'), 'messages', -1, '2030-01-01 01:00:00+00') $$, 'CK001', null, 'check: negative amount');
select throws_ok($$ select creditkit_check(tests.get_supabase_uid('alice'), 'messages', null, '2030-01-01 01:00:00+00') $$, 'CK001', null, 'check: NULL amount');
select throws_ok($$ select creditkit_check(tests.get_supabase_uid('alice'), 'messages', 9007199254740992, '2030-01-01 01:00:00+00') $$, 'CK001', null, 'check: amount 2^53');
select throws_ok($$ select creditkit_check(tests.get_supabase_uid('alice'), 'messages', 1, null) $$, 'CK006', null, 'check: NULL time');
select throws_ok($$ select creditkit_check(tests.get_supabase_uid('alice'), 'messages', 1, 'infinity') $$, 'CK006', null, 'check: infinite time');

-- ---------------------------------------------------------------------------------------------
-- creditkit_report
-- ---------------------------------------------------------------------------------------------
select throws_ok($$ select creditkit_report(null, 'messages', 1, p_now => '2030-01-01 01:00:00+00') $$, 'CK006', null, 'report: NULL account');
select throws_ok($$ select creditkit_report('00000000-0000-4000-8000-00000000dead', 'messages', 1, p_now => '2030-01-01 01:00:00+00') $$,
  'CK003', null, 'report: unknown account');
select throws_ok($$ select creditkit_report(tests.get_supabase_uid('alice'), null, 1, p_now => '2030-01-01 01:00:00+00') $$, 'CK015', null, 'report: NULL unit');
select throws_ok($$ select creditkit_report(tests.get_supabase_uid('alice'), 'tokens', 1, p_now => '2030-01-01 01:00:00+00') $$, 'CK015', null, 'report: unknown unit');
select throws_ok($$ select creditkit_report(tests.get_supabase_uid('alice'), 'hd', 1, p_now => '2030-01-01 01:00:00+00') $$, 'CK015', null, 'report: boolean unit');
select throws_ok($$ select creditkit_report(tests.get_supabase_uid('alice'), 'messages', 0, p_now => '2030-01-01 01:00:00+00') $$, 'CK001', null, 'report: zero amount');
select throws_ok($$ select creditkit_report(tests.get_supabase_uid('alice'), 'messages', -1, p_now => '2030-01-01 01:00:00+00') $$, 'CK001', null, 'report: negative amount');
select throws_ok($$ select creditkit_report(tests.get_supabase_uid('alice'), 'messages', null, p_now => '2030-01-01 01:00:00+00') $$, 'CK001', null, 'report: NULL amount');
select throws_ok($$ select creditkit_report(tests.get_supabase_uid('alice'), 'messages', 9007199254740992, p_now => '2030-01-01 01:00:00+00') $$, 'CK001', null, 'report: amount 2^53');
select throws_ok($$ select creditkit_report(tests.get_supabase_uid('alice'), 'messages', 1, ' ', p_now => '2030-01-01 01:00:00+00') $$, 'CK006', null, 'report: blank key');
select throws_ok($$ select creditkit_report(tests.get_supabase_uid('alice'), 'messages', 1, p_metadata => '{"hold_id": 1}', p_now => '2030-01-01 01:00:00+00') $$,
  'CK006', null, 'report: the kit''s own metadata key');
select throws_ok($$ select creditkit_report(tests.get_supabase_uid('alice'), 'messages', 1, p_now => null) $$, 'CK006', null, 'report: NULL time');

-- ---------------------------------------------------------------------------------------------
-- The unit argument of the balance functions: an unknown or boolean unit is CK015
-- ---------------------------------------------------------------------------------------------
select throws_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), 1, p_now => '2030-01-01 01:00:00+00', p_unit => 'tokens') $$,
  'CK015', null, 'consume: unknown unit');
select throws_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), 1, p_now => '2030-01-01 01:00:00+00', p_unit => 'hd') $$,
  'CK015', null, 'consume: boolean unit');
select throws_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), 1, p_now => '2030-01-01 01:00:00+00', p_unit => null) $$,
  'CK015', null, 'consume: NULL unit');
select throws_ok($$ select creditkit_consume_or_raise(tests.get_supabase_uid('alice'), 1, p_now => '2030-01-01 01:00:00+00', p_unit => 'tokens') $$,
  'CK015', null, 'consume_or_raise: unknown unit');
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), 1, p_now => '2030-01-01 01:00:00+00', p_unit => 'tokens') $$,
  'CK015', null, 'grant: unknown unit');
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), 1, p_now => '2030-01-01 01:00:00+00', p_unit => 'hd') $$,
  'CK015', null, 'grant: boolean unit');
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), 1, p_now => '2030-01-01 01:00:00+00', p_unit => null) $$,
  'CK015', null, 'grant: NULL unit');
select throws_ok($$ select creditkit_adjust(tests.get_supabase_uid('alice'), 1, 'r', p_now => '2030-01-01 01:00:00+00', p_unit => 'tokens') $$,
  'CK015', null, 'adjust: unknown unit');
select throws_ok($$ select creditkit_reserve(tests.get_supabase_uid('alice'), 1, p_now => '2030-01-01 01:00:00+00', p_unit => 'hd') $$,
  'CK015', null, 'reserve: boolean unit');
select throws_ok($$ select creditkit_balance(tests.get_supabase_uid('alice'), '2030-01-01 01:00:00+00', 'tokens') $$,
  'CK015', null, 'balance: unknown unit');
select throws_ok($$ select creditkit_history(tests.get_supabase_uid('alice'), p_unit => 'hd') $$,
  'CK015', null, 'history: boolean unit');
select throws_ok($$ select creditkit_book_expired('2030-01-01 01:00:00+00', 10, 'tokens') $$,
  'CK015', null, 'book_expired: unknown unit');
-- the installer's starter grant
select tests.clear_authentication();
select throws_ok($$ select creditkit.set_starter_grant(null, 5) $$, 'CK015', null, 'set_starter_grant: NULL unit');
select throws_ok($$ select creditkit.set_starter_grant('hd', 5) $$, 'CK015', null, 'set_starter_grant: boolean unit');
select throws_ok($$ select creditkit.set_starter_grant('messages', 0) $$, 'CK001', null, 'set_starter_grant: zero amount');
select throws_ok($$ select creditkit.set_starter_grant('messages', 5, 'gift') $$, 'CK006', null, 'set_starter_grant: unknown category');
select throws_ok($$ select creditkit.set_starter_grant('messages', 5, 'promotional', '0 seconds') $$, 'CK006', null,
  'set_starter_grant: expiry after zero');
select is((select count(*) from creditkit.starter_grants), 0::bigint, 'no starter grant was configured by bad input');
select tests.authenticate_as_service_role();
select results_eq('select * from ck_state', 'select * from ck_before', 'bad input changed nothing, in any unit');

-- ---------------------------------------------------------------------------------------------
-- Signed-in: my_check, my_balance, my_history and has_credits take a unit too
-- ---------------------------------------------------------------------------------------------
select tests.authenticate_as('alice');
select throws_ok($$ select creditkit_my_check('tokens') $$, 'CK015', null, 'my_check: unknown unit');
select throws_ok($$ select creditkit_my_check('hd') $$, 'CK015', null, 'my_check: boolean unit');
select throws_ok($$ select creditkit_my_check(null) $$, 'CK015', null, 'my_check: NULL unit');
select throws_ok($$ select creditkit_my_check('messages', 0) $$, 'CK001', null, 'my_check: zero amount');
select throws_ok($$ select creditkit_my_check('messages', null) $$, 'CK001', null, 'my_check: NULL amount');
select throws_ok($$ select creditkit_my_check('messages', 9007199254740992) $$, 'CK001', null, 'my_check: amount 2^53');
select throws_ok($$ select creditkit_my_check('messages', 1, '00000000-0000-4000-8000-00000000dead') $$, 'CK005', null,
  'my_check: an account that is not yours');
select throws_ok($$ select creditkit_my_balance(p_unit => 'tokens') $$, 'CK015', null, 'my_balance: unknown unit');
select throws_ok($$ select creditkit_my_history(p_unit => 'hd') $$, 'CK015', null, 'my_history: boolean unit');
select throws_ok($$ select creditkit_has_credits(1, null, 'tokens') $$, 'CK015', null, 'has_credits: unknown unit');
select results_eq($$ select allowed, balance from creditkit_my_check('messages', 20) $$, $$ values (true, 20::bigint) $$,
  'my_check: 20 messages may be spent');
select results_eq($$ select allowed, balance from creditkit_my_check('messages', 21) $$, $$ values (false, 20::bigint) $$,
  'my_check: 21 may not');
select is(creditkit_has_credits(150, null, 'credits'), true, 'has_credits in credits: 150');
select is(creditkit_has_credits(21, null, 'messages'), false, 'has_credits in messages: not 21');
select tests.authenticate_as_anon();
select throws_ok($$ select creditkit_my_check('messages') $$, '42501', null, 'my_check: anon may not call it');
select tests.authenticate_as_service_role();

-- ---------------------------------------------------------------------------------------------
-- One balance per (account, unit)
-- ---------------------------------------------------------------------------------------------
select results_eq(
  $$ select allowed, balance from creditkit_report(tests.get_supabase_uid('alice'), 'messages', 5, 'msg-1', p_now => '2030-01-01 01:00:00+00') $$,
  $$ values (true, 15::bigint) $$, 'report: 5 messages spent, 15 left');
select results_eq(
  $$ select allowed, balance from creditkit_check(tests.get_supabase_uid('alice'), 'credits', 150, '2030-01-01 01:00:00+00') $$,
  $$ values (true, 150::bigint) $$, 'check in credits: untouched by the messages');
select throws_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), 5, p_idempotency_key => 'msg-1', p_now => '2030-01-01 01:00:00+00') $$,
  'CK004', null, 'the key of a messages report used again in credits: CK004');
select results_eq(
  $$ select allowed, balance from creditkit_report(tests.get_supabase_uid('alice'), 'messages', 16, p_now => '2030-01-01 01:00:00+00') $$,
  $$ values (false, 15::bigint) $$, 'report: 16 messages are more than are left: blocked');
select results_eq(
  $$ select unit, kind::text, amount::bigint, balance_after::bigint from creditkit.ledger
      where account_id = tests.get_supabase_uid('alice') order by id $$,
  $$ values ('credits', 'grant', 100::bigint, 100::bigint), ('credits', 'grant', 50, 150),
            ('messages', 'grant', 20, 20), ('messages', 'consume', -5, 15) $$,
  'the ledger: each row in its unit, each balance_after the running sum of its unit');

-- ---------------------------------------------------------------------------------------------
-- Prices in a unit, with overage into credits; packs of a unit
-- ---------------------------------------------------------------------------------------------
select throws_ok($$ select creditkit_set_price('chat', 1, p_unit => 'tokens') $$, 'CK015', null, 'set_price: unknown unit');
select throws_ok($$ select creditkit_set_price('chat', 1, p_unit => 'hd') $$, 'CK015', null, 'set_price: boolean unit');
select throws_ok($$ select creditkit_set_price('chat', 1, p_unit => null) $$, 'CK015', null, 'set_price: NULL unit');
select throws_ok($$ select creditkit_set_price('chat', 1, p_overage_credits_per_unit => 2) $$, 'CK006', null,
  'set_price: an overage price on credits');
select throws_ok($$ select creditkit_set_price('chat', 1, p_unit => 'messages', p_overage_credits_per_unit => 0) $$, 'CK001', null,
  'set_price: overage 0');
select throws_ok($$ select creditkit_set_price('chat', 1, p_unit => 'messages', p_overage_credits_per_unit => 9007199254740992) $$,
  'CK001', null, 'set_price: overage 2^53');
select throws_ok($$ select creditkit_upsert_pack('msgs-50', '50 messages', 50, p_unit => 'hd') $$, 'CK015', null,
  'upsert_pack: boolean unit');
select throws_ok($$ select creditkit_upsert_pack('msgs-50', '50 messages', 50, p_unit => null) $$, 'CK015', null,
  'upsert_pack: NULL unit');
select is((select count(*) from creditkit.prices where event = 'chat') + (select count(*) from creditkit.packs where id = 'msgs-50'),
  0::bigint, 'the refused set_price and upsert_pack calls wrote nothing');
select lives_ok($$ select creditkit_upsert_pack('msgs-50', '50 messages', 50, p_unit => 'messages') $$, 'upsert_pack: a pack of messages');
select lives_ok($$ select creditkit_set_price('chat', 1, '{}', '2030-01-01 00:00:00+00', 'messages', 4) $$,
  'set_price: chat costs 1 message, or 4 credits as overage');
select results_eq(
  $$ select amount, unit, overage_amount from creditkit_quote('chat', 2, p_now => '2030-01-01 01:00:00+00') $$,
  $$ values (2::bigint, 'messages', 8::bigint) $$, 'quote: 2 messages, or 8 credits as overage');
select results_eq(
  $$ select allowed, balance, amount, unit from creditkit_meter(tests.get_supabase_uid('alice'), 'chat', 15, p_now => '2030-01-01 01:00:00+00') $$,
  $$ values (true, 0::bigint, 15::bigint, 'messages') $$, 'meter: 15 chats paid from messages');
select results_eq(
  $$ select allowed, balance, amount, unit from creditkit_meter(tests.get_supabase_uid('alice'), 'chat', 2, p_idempotency_key => 'ovg-1', p_now => '2030-01-01 01:00:00+00') $$,
  $$ values (true, 142::bigint, 8::bigint, 'credits') $$, 'meter: with no messages left, 2 chats paid from credits at the overage price');
select results_eq(
  $$ select allowed, balance, amount, unit from creditkit_meter(tests.get_supabase_uid('alice'), 'chat', 2, p_idempotency_key => 'ovg-1', p_now => '2030-01-01 01:00:00+00') $$,
  $$ values (true, 142::bigint, 8::bigint, 'credits') $$, 'meter: the retry answers from credits, once');
select is((select count(*) from creditkit.ledger where account_id = tests.get_supabase_uid('alice') and metadata ->> 'overage' = 'messages'),
  1::bigint, 'one overage row, in credits, naming the unit it stood in for');

select * from finish();
rollback;
