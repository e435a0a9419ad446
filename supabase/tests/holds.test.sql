-- holds: reserve an estimate, settle the actual amount, release on failure, lazy expiry.
--
-- What a hold promises (invariant 6): it is settled, released or expired exactly once; while
-- open it lowers the spendable balance (balance - held) at once without a ledger row; an expired
-- hold frees its credit at exactly expires_at even if nothing booked it. The ledger invariants
-- stay as they were: balance = sum(ledger) = sum(buckets), never below zero.
--
-- Every call passes p_now. Each scenario has its own account.
begin;
select plan(98);

select tests.create_supabase_user('alice');   -- reserve, settle below, retries
select tests.create_supabase_user('amy');     -- settle at and above the reserve, settle 0
select tests.create_supabase_user('bob');     -- settle above the reserve, not covered
select tests.create_supabase_user('carol');   -- release
select tests.create_supabase_user('dave');    -- lazy expiry
select tests.create_supabase_user('erin');    -- reserve idempotency
select tests.create_supabase_user('frank');   -- a bucket expires under an open hold, settled
select tests.create_supabase_user('fiona');   -- ... released
select tests.create_supabase_user('george');  -- ... settled below the reserve
select tests.create_supabase_user('hank');    -- outsider
select tests.create_supabase_user('whale');   -- the 2^53-1 ceiling with a hold open

-- Holds by name, so later assertions can refer to them. Written by every actor of this file.
create temporary table ck_hold (name text primary key, id bigint);
grant select, insert on ck_hold to service_role, authenticated;

-- =============================================================================================
-- Service role.
-- =============================================================================================
select tests.authenticate_as_service_role();

-- ---------------------------------------------------------------------------------------------
-- Reserve: the spendable balance drops at once; the ledger does not move (no credit moved yet).
-- ---------------------------------------------------------------------------------------------
select creditkit_grant(tests.get_supabase_uid('alice'), 100, p_now => '2030-01-01 00:00:00+00');
insert into ck_hold select 'a1', hold_id from creditkit_reserve(tests.get_supabase_uid('alice'), 30, interval '10 minutes',
  'video_gen', p_metadata => '{"job": "j-1"}', p_now => '2030-01-01 00:01:00+00');
select results_eq(
  $$ select h.account_id, h.amount, h.status, h.expires_at, h.event, h.metadata
       from creditkit.holds h where h.id = (select id from ck_hold where name = 'a1') $$,
  $$ values (tests.get_supabase_uid('alice'), 30::bigint, 'open'::text, '2030-01-01 00:11:00+00'::timestamptz,
             'video_gen'::text, '{"job": "j-1"}'::jsonb) $$,
  'reserve opens a hold that expires after its ttl');
select results_eq(
  $$ select a.balance::bigint, a.held::bigint, (select count(*) from creditkit.ledger l where l.account_id = a.id)
       from creditkit.accounts a where a.id = tests.get_supabase_uid('alice') $$,
  $$ values (100::bigint, 30::bigint, 1::bigint) $$,
  'the balance and the ledger are unchanged; held counts the reserve');
select is(
  (select balance from creditkit_balance(tests.get_supabase_uid('alice'), p_now => '2030-01-01 00:02:00+00')),
  70::bigint, 'creditkit_balance reports the spendable 70');
select is(
  (select row(allowed, balance)::text from creditkit_consume(tests.get_supabase_uid('alice'), 71, p_now => '2030-01-01 00:02:00+00')),
  '(f,70)', 'consume cannot spend reserved credit: 71 is blocked');
select results_eq(
  $$ select allowed, hold_id, balance, expires_at
       from creditkit_reserve(tests.get_supabase_uid('alice'), 71, p_now => '2030-01-01 00:02:00+00') $$,
  $$ values (false, null::bigint, 70::bigint, null::timestamptz) $$,
  'a reserve above the spendable balance is blocked: no hold');
select results_eq(
  $$ select (select count(*) from creditkit.holds h where h.account_id = a.id), a.held::bigint, a.version
       from creditkit.accounts a where a.id = tests.get_supabase_uid('alice') $$,
  $$ values (1::bigint, 30::bigint, 1::bigint) $$,
  'the blocked reserve wrote nothing');

-- Settle below the reserve: the actual amount is charged (one consume row), the rest is freed.
select results_eq(
  $$ select charged, shortfall, balance, transaction_id is not null
       from creditkit_settle((select id from ck_hold where name = 'a1'), 20, 4000, '{"tokens": 812}',
                             '2030-01-01 00:05:00+00') $$,
  $$ values (20::bigint, 0::bigint, 80::bigint, true) $$,
  'settle below the reserve charges the actual 20 and frees the other 10');
select results_eq(
  $$ select l.kind::text, l.amount::bigint, l.balance_after::bigint, l.event, l.cost_micros::bigint, l.metadata
       from creditkit.ledger l where l.account_id = tests.get_supabase_uid('alice') and l.kind = 'consume' $$,
  $$ values ('consume'::text, -20::bigint, 80::bigint, 'video_gen'::text, 4000::bigint,
             jsonb_build_object('job', 'j-1', 'tokens', 812, 'hold_id', (select id from ck_hold where name = 'a1'),
                                'reserved', 30, 'actual', 20)) $$,
  'the consume row carries the hold''s event, both metadatas, the hold id, reserve, actual and cost');
select results_eq(
  $$ select h.status, h.resolved_at, h.settled_amount, h.charged, h.transaction_id = l.id, a.held::bigint
       from creditkit.holds h join creditkit.accounts a on a.id = h.account_id
       join creditkit.ledger l on l.account_id = h.account_id and l.kind = 'consume'
      where h.id = (select id from ck_hold where name = 'a1') $$,
  $$ values ('settled'::text, '2030-01-01 00:05:00+00'::timestamptz, 20::bigint, 20::bigint, true, 0::bigint) $$,
  'the hold is settled with what was asked, what was charged and its ledger row; nothing is held any more');
select results_eq(
  $$ select charged, shortfall, transaction_id
       from creditkit_settle((select id from ck_hold where name = 'a1'), 20, 4000, '{"tokens": 812}', '2030-01-01 00:06:00+00') $$,
  $$ select charged, settled_amount - charged, transaction_id from creditkit.holds where id = (select id from ck_hold where name = 'a1') $$,
  'a settle retried with the same amount returns the first result');
select throws_ok(
  $$ select creditkit_settle((select id from ck_hold where name = 'a1'), 25, p_now => '2030-01-01 00:06:00+00') $$,
  'CK012', null, 'settling a settled hold with another amount: CK012');
select throws_ok(
  $$ select creditkit_release((select id from ck_hold where name = 'a1'), '2030-01-01 00:06:00+00') $$,
  'CK012', null, 'releasing a settled hold: CK012 (the charge stands)');
select results_eq(
  $$ select balance::bigint, held::bigint, version from creditkit.accounts where id = tests.get_supabase_uid('alice') $$,
  $$ values (80::bigint, 0::bigint, 2::bigint) $$,
  'retries and refused calls charged nothing more');
-- Open one more hold on alice for the member section below (expires far in the future).
insert into ck_hold select 'a2', hold_id from creditkit_reserve(tests.get_supabase_uid('alice'), 15, interval '7 days',
  p_now => '2099-12-25 00:00:00+00');

-- ---------------------------------------------------------------------------------------------
-- Settle at and above the reserve, and settle 0.
-- ---------------------------------------------------------------------------------------------
select creditkit_grant(tests.get_supabase_uid('amy'), 100, p_now => '2030-01-01 00:00:00+00');
insert into ck_hold select 'm1', hold_id from creditkit_reserve(tests.get_supabase_uid('amy'), 30, p_now => '2030-01-01 00:00:00+00');
select results_eq(
  $$ select charged, shortfall, balance from creditkit_settle((select id from ck_hold where name = 'm1'), 30,
       p_now => '2030-01-01 00:01:00+00') $$,
  $$ values (30::bigint, 0::bigint, 70::bigint) $$,
  'settle at the reserve charges exactly the reserve');
-- 70 left, nothing else held: the unreserved balance covers 15 > 10.
insert into ck_hold select 'm2', hold_id from creditkit_reserve(tests.get_supabase_uid('amy'), 10, p_now => '2030-01-01 00:02:00+00');
select results_eq(
  $$ select charged, shortfall, balance from creditkit_settle((select id from ck_hold where name = 'm2'), 15,
       p_now => '2030-01-01 00:03:00+00') $$,
  $$ values (15::bigint, 0::bigint, 55::bigint) $$,
  'settle above the reserve charges the whole actual amount when the unreserved balance covers it');
insert into ck_hold select 'm3', hold_id from creditkit_reserve(tests.get_supabase_uid('amy'), 10, p_now => '2030-01-01 00:04:00+00');
select results_eq(
  $$ select charged, shortfall, balance, transaction_id from creditkit_settle((select id from ck_hold where name = 'm3'), 0,
       p_now => '2030-01-01 00:05:00+00') $$,
  $$ values (0::bigint, 0::bigint, 55::bigint, null::bigint) $$,
  'settle with 0 (the call produced nothing billable) charges nothing and writes no row');
select results_eq(
  $$ select kind::text, amount::bigint, balance_after::bigint from creditkit.ledger where account_id = tests.get_supabase_uid('amy') order by id $$,
  $$ values ('grant'::text, 100::bigint, 100::bigint), ('consume', -30, 70), ('consume', -15, 55) $$,
  'amy''s ledger: one consume row per charged settle');
select results_eq(
  $$ select status, charged from creditkit.holds where account_id = tests.get_supabase_uid('amy') order by id $$,
  $$ values ('settled'::text, 30::bigint), ('settled', 15), ('settled', 0) $$,
  'all three holds are settled');

-- Above the reserve when the rest of the balance is held by another hold: bob holds 50, with
-- holds of 40 (b1) and 10 (b2). Settling b1 at 45: 50 - 10 (held by b2) = 40 < 45, so only
-- the reserve (40) is charged and 5 is reported as shortfall; b2 stays fully covered.
select creditkit_grant(tests.get_supabase_uid('bob'), 50, p_now => '2030-01-01 00:00:00+00');
insert into ck_hold select 'b1', hold_id from creditkit_reserve(tests.get_supabase_uid('bob'), 40, p_now => '2030-01-01 00:00:00+00');
insert into ck_hold select 'b2', hold_id from creditkit_reserve(tests.get_supabase_uid('bob'), 10, p_now => '2030-01-01 00:00:00+00');
select results_eq(
  $$ select charged, shortfall, balance from creditkit_settle((select id from ck_hold where name = 'b1'), 45,
       p_now => '2030-01-01 00:01:00+00') $$,
  $$ values (40::bigint, 5::bigint, 0::bigint) $$,
  'settle above the reserve without unreserved credit: the reserve is charged, the rest is shortfall');
select results_eq(
  $$ select balance::bigint, held::bigint from creditkit.accounts where id = tests.get_supabase_uid('bob') $$,
  $$ values (10::bigint, 10::bigint) $$,
  'the other hold is still covered');
select results_eq(
  $$ select charged, shortfall, balance from creditkit_settle((select id from ck_hold where name = 'b2'), 10,
       p_now => '2030-01-01 00:02:00+00') $$,
  $$ values (10::bigint, 0::bigint, 0::bigint) $$,
  'and settles in full');

-- ---------------------------------------------------------------------------------------------
-- Release frees the credit; releasing again is a no-op; a released hold cannot be settled.
-- ---------------------------------------------------------------------------------------------
select creditkit_grant(tests.get_supabase_uid('carol'), 50, p_now => '2030-01-01 00:00:00+00');
insert into ck_hold select 'c1', hold_id from creditkit_reserve(tests.get_supabase_uid('carol'), 20, p_now => '2030-01-01 00:00:00+00');
select results_eq(
  $$ select status, balance from creditkit_release((select id from ck_hold where name = 'c1'), '2030-01-01 00:01:00+00') $$,
  $$ values ('released'::text, 50::bigint) $$,
  'release frees the whole reserve without charging');
select results_eq(
  $$ select status, balance from creditkit_release((select id from ck_hold where name = 'c1'), '2030-01-01 00:02:00+00') $$,
  $$ values ('released'::text, 50::bigint) $$,
  'releasing again is a no-op with the same answer');
select results_eq(
  $$ select a.balance::bigint, a.held::bigint, a.version, h.resolved_at
       from creditkit.accounts a join creditkit.holds h on h.account_id = a.id
      where a.id = tests.get_supabase_uid('carol') $$,
  $$ values (50::bigint, 0::bigint, 1::bigint, '2030-01-01 00:01:00+00'::timestamptz) $$,
  'the second release changed nothing (held not freed twice, resolved at the first release)');
select throws_ok(
  $$ select creditkit_settle((select id from ck_hold where name = 'c1'), 5, p_now => '2030-01-01 00:03:00+00') $$,
  'CK012', null, 'settling a released hold: CK012');

-- ---------------------------------------------------------------------------------------------
-- Lazy expiry: at expires_at the credit is free, with no sweep; 1us before it is still held.
-- ---------------------------------------------------------------------------------------------
select creditkit_grant(tests.get_supabase_uid('dave'), 50, p_now => '2030-01-01 00:00:00+00');
insert into ck_hold select 'd1', hold_id from creditkit_reserve(tests.get_supabase_uid('dave'), 20, interval '15 minutes',
  p_now => '2030-01-01 00:00:00+00');
insert into ck_hold select 'd2', hold_id from creditkit_reserve(tests.get_supabase_uid('dave'), 5, interval '15 minutes',
  p_now => '2030-01-01 00:00:00+00');
select is(
  (select balance from creditkit.live_buckets(tests.get_supabase_uid('dave'), 'credits', '2030-01-01 00:14:59.999999+00')),
  25::bigint, '1us before expiry both holds still count');
select is(
  (select balance from creditkit.live_buckets(tests.get_supabase_uid('dave'), 'credits', '2030-01-01 00:15:00+00')),
  50::bigint, 'at expires_at the held credit is spendable again before anything booked it');
select results_eq(
  $$ select status, (select held::bigint from creditkit.accounts where id = tests.get_supabase_uid('dave'))
       from creditkit.holds where id = (select id from ck_hold where name = 'd1') $$,
  $$ values ('open'::text, 25::bigint) $$,
  'nothing has been booked yet (no sweep ran)');
select results_eq(
  $$ select charged, balance from creditkit_settle((select id from ck_hold where name = 'd2'), 5,
       p_now => '2030-01-01 00:14:59.999999+00') $$,
  $$ values (5::bigint, 25::bigint) $$,
  '1us before expiry a hold can still be settled');
select is(
  (select row(allowed, balance)::text from creditkit_consume(tests.get_supabase_uid('dave'), 45, p_now => '2030-01-01 00:15:00+00')),
  '(t,0)', 'a consume at expires_at spends the freed credit (all 45 left)');
select results_eq(
  $$ select h.status, h.resolved_at, a.held::bigint from creditkit.holds h join creditkit.accounts a on a.id = h.account_id
      where h.id = (select id from ck_hold where name = 'd1') $$,
  $$ values ('expired'::text, '2030-01-01 00:15:00+00'::timestamptz, 0::bigint) $$,
  'that touch booked the expiry: the hold is expired and its credit no longer held');
select throws_ok(
  $$ select creditkit_settle((select id from ck_hold where name = 'd1'), 20, p_now => '2030-01-01 00:16:00+00') $$,
  'CK012', null, 'settling an expired hold: CK012');
select results_eq(
  $$ select status, balance from creditkit_release((select id from ck_hold where name = 'd1'), '2030-01-01 00:16:00+00') $$,
  $$ values ('expired'::text, 0::bigint) $$,
  'releasing an expired hold is a no-op that reports it expired');
-- An expired hold that nothing booked yet is refused too: settle books the expiry first.
insert into ck_hold select 'd3', hold_id from creditkit_reserve(tests.get_supabase_uid('amy'), 5, interval '1 minute',
  p_now => '2030-01-01 01:00:00+00');
select throws_ok(
  $$ select creditkit_settle((select id from ck_hold where name = 'd3'), 5, p_now => '2030-01-01 01:01:00+00') $$,
  'CK012', null, 'settle exactly at expires_at of a hold nobody booked: CK012');

-- Unknown holds.
select throws_ok($$ select creditkit_settle(9007199254740991, 1, p_now => '2030-01-01 00:00:00+00') $$,
  'CK011', null, 'settle of an unknown hold: CK011');
select throws_ok($$ select creditkit_release(9007199254740991, '2030-01-01 00:00:00+00') $$,
  'CK011', null, 'release of an unknown hold: CK011');
select throws_ok($$ select creditkit_settle(null, 1, p_now => '2030-01-01 00:00:00+00') $$,
  'CK011', null, 'settle of a NULL hold: CK011');
select throws_ok($$ select creditkit_release(null, '2030-01-01 00:00:00+00') $$,
  'CK011', null, 'release of a NULL hold: CK011');

-- ---------------------------------------------------------------------------------------------
-- Reserve idempotency: one hold per key; a retry returns it; different parameters are CK004.
-- ---------------------------------------------------------------------------------------------
select creditkit_grant(tests.get_supabase_uid('erin'), 100, p_now => '2030-01-01 00:00:00+00');
insert into ck_hold select 'e1', hold_id from creditkit_reserve(tests.get_supabase_uid('erin'), 30, interval '1 hour',
  'video_gen', 'r-1', '{"job": 1}', '2030-01-01 00:00:00+00');
select results_eq(
  $$ select allowed, hold_id, balance, expires_at from creditkit_reserve(tests.get_supabase_uid('erin'), 30, interval '1 hour',
       'video_gen', 'r-1', '{"job": 1}', '2030-01-01 00:05:00+00') $$,
  $$ select true, id, 70::bigint, '2030-01-01 01:00:00+00'::timestamptz from ck_hold where name = 'e1' $$,
  'a retried reserve returns the first hold (and its expiry), reserving nothing more');
select results_eq(
  $$ select (select count(*) from creditkit.holds h where h.account_id = a.id), a.held::bigint
       from creditkit.accounts a where a.id = tests.get_supabase_uid('erin') $$,
  $$ values (1::bigint, 30::bigint) $$,
  'still one hold of 30');
select throws_ok(
  $$ select creditkit_reserve(tests.get_supabase_uid('erin'), 31, interval '1 hour', 'video_gen', 'r-1', '{"job": 1}', '2030-01-01 00:05:00+00') $$,
  'CK004', null, 'same key, different amount: CK004');
select throws_ok(
  $$ select creditkit_reserve(tests.get_supabase_uid('erin'), 30, interval '1 hour', 'chat', 'r-1', '{"job": 1}', '2030-01-01 00:05:00+00') $$,
  'CK004', null, 'same key, different event: CK004');
select throws_ok(
  $$ select creditkit_reserve(tests.get_supabase_uid('erin'), 30, interval '1 hour', 'video_gen', 'r-1', '{"job": 2}', '2030-01-01 00:05:00+00') $$,
  'CK004', null, 'same key, different metadata: CK004');
select is(
  (select allowed from creditkit_reserve(tests.get_supabase_uid('erin'), 500, p_idempotency_key => 'r-big',
     p_now => '2030-01-01 00:06:00+00')),
  false, 'a blocked reserve with a key ...');
select creditkit_grant(tests.get_supabase_uid('erin'), 500, p_now => '2030-01-01 00:07:00+00');
select is(
  (select allowed from creditkit_reserve(tests.get_supabase_uid('erin'), 500, p_idempotency_key => 'r-big',
     p_now => '2030-01-01 00:08:00+00')),
  true, '... does not use up its key: once credit arrives the retry reserves');
select creditkit_release((select hold_id from creditkit_reserve(tests.get_supabase_uid('erin'), 500,
  p_idempotency_key => 'r-big', p_now => '2030-01-01 00:08:30+00')), p_now => '2030-01-01 00:09:00+00');
select throws_ok(
  $$ select creditkit_reserve(tests.get_supabase_uid('erin'), 500, p_idempotency_key => 'r-big', p_now => '2030-01-01 00:09:30+00') $$,
  'CK012', null, 'a retry after the hold was released is refused (CK012), not answered "reserved" again');
select is((select held::bigint from creditkit.accounts where id = tests.get_supabase_uid('erin')),
  (select coalesce(sum(amount), 0) from creditkit.holds where account_id = tests.get_supabase_uid('erin') and status = 'open')::bigint,
  '... and holds nothing new');

-- ---------------------------------------------------------------------------------------------
-- A bucket expires while a hold is open: the credit the hold covers stays payable to it (invariant
-- 6), and balance - held never goes below zero. Holds cover credit in spend order (soonest expiry
-- first, as a settle draws it), so the 40 expiring credits stay for the hold of 45 and the other 5
-- it holds come from the 10 that never expire. What the hold does not charge expires when it
-- settles or is released.
-- ---------------------------------------------------------------------------------------------
select creditkit_grant(tests.get_supabase_uid(u), 40, 'promotional', '2030-01-01 00:10:00+00', p_now => '2030-01-01 00:00:00+00'),
       creditkit_grant(tests.get_supabase_uid(u), 10, 'purchase', p_now => '2030-01-01 00:00:00+00')
  from unnest(array['frank', 'fiona', 'george']) u;
insert into ck_hold select u, (select hold_id from creditkit_reserve(tests.get_supabase_uid(u), 45, interval '1 hour',
  p_now => '2030-01-01 00:00:00+00')) from unnest(array['frank', 'fiona', 'george']) u;
select is(
  (select balance from creditkit_balance(tests.get_supabase_uid('frank'), p_now => '2030-01-01 00:09:59.999999+00')),
  5::bigint, 'before the promotional credit expires: 50 - 45 held = 5 spendable');
select is(
  (select balance from creditkit_balance(tests.get_supabase_uid('frank'), p_now => '2030-01-01 00:10:00+00')),
  5::bigint, 'after it expires: still 5 spendable, the hold covers the expired credit');
select results_eq(
  $$ select balance::bigint, held::bigint from creditkit.accounts where id = tests.get_supabase_uid('frank') $$,
  $$ values (50::bigint, 45::bigint) $$,
  'nothing was booked as expired: the hold covers all 40 expired credits');
select is(
  (select row(allowed, balance)::text from creditkit_consume(tests.get_supabase_uid('frank'), 1, p_now => '2030-01-01 00:11:00+00')),
  '(t,4)', 'the unreserved credit can be spent, from the credit that never expires');
select is(
  (select row(allowed, balance)::text from creditkit_consume(tests.get_supabase_uid('frank'), 5, p_now => '2030-01-01 00:11:00+00')),
  '(f,4)', 'but not the expired credit the hold covers');
select results_eq(
  $$ select charged, shortfall, balance from creditkit_settle((select id from ck_hold where name = 'frank'), 45,
       p_now => '2030-01-01 00:20:00+00') $$,
  $$ values (45::bigint, 0::bigint, 4::bigint) $$,
  'the settle charges the whole reserve: the job did not run free');
select results_eq(
  $$ select kind::text, amount::bigint, balance_after::bigint from creditkit.ledger where account_id = tests.get_supabase_uid('frank') order by id $$,
  $$ values ('grant'::text, 40::bigint, 40::bigint), ('grant', 10, 50), ('consume', -1, 49), ('consume', -45, 4) $$,
  'frank''s ledger: the charge came out of the credit the hold covered, never below zero');

select results_eq(
  $$ select status, balance from creditkit_release((select id from ck_hold where name = 'fiona'), p_now => '2030-01-01 00:20:00+00') $$,
  $$ values ('released'::text, 10::bigint) $$,
  'a released hold frees its reserve: the 40 it covered expire, the 10 that never expire are spendable');
select results_eq(
  $$ select kind::text, amount::bigint, balance_after::bigint from creditkit.ledger where account_id = tests.get_supabase_uid('fiona') order by id $$,
  $$ values ('grant'::text, 40::bigint, 40::bigint), ('grant', 10, 50), ('expire', -40, 10) $$,
  'fiona''s ledger: the rest of the promotional credit is booked as expired at the release');

select results_eq(
  $$ select charged, shortfall, balance from creditkit_settle((select id from ck_hold where name = 'george'), 20,
       p_now => '2030-01-01 00:20:00+00') $$,
  $$ values (20::bigint, 0::bigint, 10::bigint) $$,
  'a settle below the reserve charges the actual amount from the credit the hold kept');
select results_eq(
  $$ select kind::text, amount::bigint, balance_after::bigint from creditkit.ledger where account_id = tests.get_supabase_uid('george') order by id $$,
  $$ values ('grant'::text, 40::bigint, 40::bigint), ('grant', 10, 50), ('consume', -20, 30), ('expire', -20, 10) $$,
  'george''s ledger: the charge comes out of the expired bucket, and what the hold covered beyond that expires');
select results_eq(
  $$ select category, remaining::bigint from creditkit.grants where account_id = tests.get_supabase_uid('george') order by id $$,
  $$ values ('promotional'::text, 0::bigint), ('purchase', 10) $$,
  'and the never-expiring purchase was not touched');

-- ---------------------------------------------------------------------------------------------
-- The 2^53-1 ceiling applies to the balance, held or not: a grant that would pass it is CK007
-- even while a hold makes the spendable balance look smaller.
-- ---------------------------------------------------------------------------------------------
select creditkit_grant(tests.get_supabase_uid('whale'), 9007199254740991 - 10, p_now => '2030-01-01 00:00:00+00');
select creditkit_reserve(tests.get_supabase_uid('whale'), 100, p_now => '2030-01-01 00:00:00+00');
select throws_ok(
  $$ select creditkit_grant(tests.get_supabase_uid('whale'), 50, p_now => '2030-01-01 00:01:00+00') $$,
  'CK007', null, 'grant: (2^53-1 - 10) + 50 passes the ceiling even with 100 held');
select throws_ok(
  $$ select creditkit_adjust(tests.get_supabase_uid('whale'), 50, 'r', p_now => '2030-01-01 00:01:00+00') $$,
  'CK007', null, 'adjust: the same for a positive adjustment');

-- ---------------------------------------------------------------------------------------------
-- Bad input: a code, and no hold, ledger row or held amount changed.
-- ---------------------------------------------------------------------------------------------
select tests.clear_authentication();
create temporary view ck_state as
  select (select count(*) from creditkit.holds) as holds,
         (select string_agg(format('%s/%s', id, status), ',' order by id) from creditkit.holds) as hold_states,
         (select count(*) from creditkit.ledger) as ledger_rows,
         (select coalesce(sum(balance), 0) from creditkit.accounts) as total_balance,
         (select coalesce(sum(held), 0) from creditkit.accounts) as total_held;
create temporary table ck_before as select * from ck_state;
grant select on ck_state, ck_before to service_role;
select tests.authenticate_as_service_role();

select throws_ok($$ select creditkit_reserve(tests.get_supabase_uid('alice'), 0, p_now => '2030-02-01 00:00:00+00') $$, 'CK001', null, 'reserve: zero amount');
select throws_ok($$ select creditkit_reserve(tests.get_supabase_uid('alice'), -1, p_now => '2030-02-01 00:00:00+00') $$, 'CK001', null, 'reserve: negative amount');
select throws_ok($$ select creditkit_reserve(tests.get_supabase_uid('alice'), null, p_now => '2030-02-01 00:00:00+00') $$, 'CK001', null, 'reserve: NULL amount');
select throws_ok($$ select creditkit_reserve(tests.get_supabase_uid('alice'), 9007199254740992, p_now => '2030-02-01 00:00:00+00') $$, 'CK001', null, 'reserve: amount 2^53');
select throws_ok($$ select creditkit_reserve(tests.get_supabase_uid('alice'), 1, interval '0', p_now => '2030-02-01 00:00:00+00') $$, 'CK006', null, 'reserve: zero ttl');
select throws_ok($$ select creditkit_reserve(tests.get_supabase_uid('alice'), 1, interval '-1 minute', p_now => '2030-02-01 00:00:00+00') $$, 'CK006', null, 'reserve: negative ttl');
select throws_ok($$ select creditkit_reserve(tests.get_supabase_uid('alice'), 1, null, p_now => '2030-02-01 00:00:00+00') $$, 'CK006', null, 'reserve: NULL ttl');
select throws_ok($$ select creditkit_reserve(tests.get_supabase_uid('alice'), 1, interval '7 days 1 microsecond', p_now => '2030-02-01 00:00:00+00') $$, 'CK006', null, 'reserve: ttl above 7 days');
select throws_ok($$ select creditkit_reserve(null, 1, p_now => '2030-02-01 00:00:00+00') $$, 'CK006', null, 'reserve: NULL account');
select throws_ok($$ select creditkit_reserve('00000000-0000-4000-8000-00000000dead', 1, p_now => '2030-02-01 00:00:00+00') $$, 'CK003', null, 'reserve: unknown account');
select throws_ok($$ select creditkit_reserve(tests.get_supabase_uid('alice'), 1, p_event => ' ', p_now => '2030-02-01 00:00:00+00') $$, 'CK006', null, 'reserve: blank event');
select throws_ok($$ select creditkit_reserve(tests.get_supabase_uid('alice'), 1, p_idempotency_key => repeat('k', 256), p_now => '2030-02-01 00:00:00+00') $$, 'CK006', null, 'reserve: 256-character key');
select throws_ok($$ select creditkit_reserve(tests.get_supabase_uid('alice'), 1, p_metadata => '[1]', p_now => '2030-02-01 00:00:00+00') $$, 'CK006', null, 'reserve: metadata is an array');
select throws_ok($$ select creditkit_reserve(tests.get_supabase_uid('alice'), 1, p_now => null) $$, 'CK006', null, 'reserve: NULL p_now');

select throws_ok($$ select creditkit_settle((select id from ck_hold where name = 'e1'), -1, p_now => '2030-01-01 00:30:00+00') $$, 'CK001', null, 'settle: negative actual');
select throws_ok($$ select creditkit_settle((select id from ck_hold where name = 'e1'), null, p_now => '2030-01-01 00:30:00+00') $$, 'CK001', null, 'settle: NULL actual');
select throws_ok($$ select creditkit_settle((select id from ck_hold where name = 'e1'), 9007199254740992, p_now => '2030-01-01 00:30:00+00') $$, 'CK001', null, 'settle: actual 2^53');
select throws_ok($$ select creditkit_settle((select id from ck_hold where name = 'e1'), 1, -1, p_now => '2030-01-01 00:30:00+00') $$, 'CK001', null, 'settle: negative cost');
select throws_ok($$ select creditkit_settle((select id from ck_hold where name = 'e1'), 1, p_metadata => '"x"', p_now => '2030-01-01 00:30:00+00') $$, 'CK006', null, 'settle: metadata is a string');
select throws_ok($$ select creditkit_settle((select id from ck_hold where name = 'e1'), 1, p_now => null) $$, 'CK006', null, 'settle: NULL p_now');
select throws_ok($$ select creditkit_release((select id from ck_hold where name = 'e1'), null) $$, 'CK006', null, 'release: NULL p_now');

select results_eq('select * from ck_state', 'select * from ck_before', 'bad hold input changed nothing');

-- =============================================================================================
-- Member (alice): reads her holds through RLS and her spendable balance; cannot touch holds.
-- =============================================================================================
select tests.authenticate_as('alice');

select is((select count(*) from creditkit.holds), 2::bigint, 'RLS: she sees her two holds');
-- a2 (15) is open until 2100, later than any wall clock this runs on.
select is((select balance from creditkit_my_balance()), 65::bigint, 'my_balance: 80 minus the 15 still held');
select is(creditkit_has_credits(65), true, 'has_credits counts held credit as not spendable (65 is fine) ...');
select is(creditkit_has_credits(66), false, '... 66 is not');
select throws_ok($$ select creditkit_reserve(tests.get_supabase_uid('alice'), 1, p_now => '2030-02-01 00:00:00+00') $$,
  '42501', null, 'a member cannot reserve');
select throws_ok($$ select creditkit_settle((select id from ck_hold where name = 'a2'), 0, p_now => '2030-02-01 00:00:00+00') $$,
  '42501', null, 'a member cannot settle her hold');
select throws_ok($$ select creditkit_release((select id from ck_hold where name = 'a2'), '2030-02-01 00:00:00+00') $$,
  '42501', null, 'a member cannot release her hold');

-- Outsider and anon.
select tests.authenticate_as('hank');
select is((select count(*) from creditkit.holds where account_id = tests.get_supabase_uid('alice')), 0::bigint,
  'RLS: an outsider sees none of alice''s holds');
select tests.authenticate_as_anon();
select throws_ok($$ select count(*) from creditkit.holds $$, '42501', null, 'anon cannot read holds');
select throws_ok($$ select creditkit_release(1, '2030-02-01 00:00:00+00') $$, '42501', null, 'anon cannot release a hold');

-- =============================================================================================
-- Invariants over every account this file touched.
-- =============================================================================================
select tests.clear_authentication();

select is_empty(
  $$ select a.id from creditkit.accounts a
      where a.balance <> (select coalesce(sum(l.amount), 0) from creditkit.ledger l where l.account_id = a.id)
         or a.balance <> (select coalesce(sum(g.remaining), 0) from creditkit.grants g where g.account_id = a.id) - a.undrawn
         or a.held <> (select coalesce(sum(h.amount), 0) from creditkit.holds h where h.account_id = a.id and h.status = 'open') $$,
  'for every account: balance = sum(ledger) = sum(buckets), held = sum of its open holds');
select is_empty(
  $$ select h.id from creditkit.holds h
      where (h.status = 'settled') <> (h.settled_amount is not null)
         or (h.status = 'settled' and h.charged > 0) <> (h.transaction_id is not null)
         or h.charged > h.settled_amount $$,
  'a settled hold records what was asked and charged, and its ledger row exactly when it charged');
-- The sweep books every hold that expired; afterwards held is exactly the open, unexpired holds.
select ok(creditkit_book_expired('2101-01-01 00:00:00+00') > 0, 'the sweep books the holds that expired');
select is_empty(
  $$ select a.id from creditkit.accounts a
      where a.held <> (select coalesce(sum(h.amount), 0) from creditkit.holds h
                        where h.account_id = a.id and h.status = 'open' and h.expires_at > '2101-01-01 00:00:00+00')
         or a.held <> 0 $$,
  'after booking, no account holds anything: every hold of this file has resolved');
select is_empty(
  $$ select id from creditkit.holds where status = 'open' $$,
  'every hold resolved exactly one way (none left open)');

select * from finish();
rollback;
