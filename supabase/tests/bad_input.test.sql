-- bad_input: every public function refuses bad input with its documented SQLSTATE and
-- changes nothing (invariant 8).
--
-- Codes: CK001 invalid_amount, CK003 unknown_account, CK006 invalid_argument, CK007 balance_limit.
-- throws_ok runs each call in a savepoint, so a function that wrote before raising would be
-- undone by the savepoint; what the state checks catch is a call that wrongly *succeeds*
-- (returns instead of raising) and books something. Each group ends with one such check.
begin;
select plan(108);

-- Fixtures: alice has an account holding 100; nobody has an account with the 'unknown' id.
select tests.create_supabase_user('alice');
select tests.create_supabase_user('whale');   -- for the 2^53-1 ceiling
select creditkit_grant(tests.get_supabase_uid('alice'), 100, p_now => '2030-01-01 00:00:00+00');

-- What "nothing changed" compares: every row count and the total balance. A temporary view runs
-- with its owner's rights, so any actor of this file can read it.
create temporary view ck_state as
  select (select count(*) from creditkit.accounts) as accounts,
         (select count(*) from creditkit.grants) as grants,
         (select count(*) from creditkit.ledger) as ledger_rows,
         (select coalesce(sum(balance), 0) from creditkit.accounts) as total_balance,
         (select coalesce(sum(version), 0) from creditkit.accounts) as total_version;
create temporary table ck_before as select * from ck_state;
grant select on ck_state, ck_before to service_role, authenticated;

-- =============================================================================================
-- Service role: the caller of the server API, so the one whose input matters.
-- =============================================================================================
select tests.authenticate_as_service_role();

-- ---------------------------------------------------------------------------------------------
-- Amounts (CK001): zero, negative, NULL and 2^53 (one above the documented maximum 2^53-1).
-- ---------------------------------------------------------------------------------------------
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), 0, p_now => '2030-01-02 00:00:00+00') $$,
  'CK001', null, 'grant: zero amount');
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), -1, p_now => '2030-01-02 00:00:00+00') $$,
  'CK001', null, 'grant: negative amount');
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), null, p_now => '2030-01-02 00:00:00+00') $$,
  'CK001', null, 'grant: NULL amount');
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), 9007199254740992, p_now => '2030-01-02 00:00:00+00') $$,
  'CK001', null, 'grant: amount 2^53');

select throws_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), 0, p_now => '2030-01-02 00:00:00+00') $$,
  'CK001', null, 'consume: zero amount');
select throws_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), -1, p_now => '2030-01-02 00:00:00+00') $$,
  'CK001', null, 'consume: negative amount (it would mint credit)');
select throws_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), null, p_now => '2030-01-02 00:00:00+00') $$,
  'CK001', null, 'consume: NULL amount');
select throws_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), 9007199254740992, p_now => '2030-01-02 00:00:00+00') $$,
  'CK001', null, 'consume: amount 2^53');

select throws_ok($$ select creditkit_consume_or_raise(tests.get_supabase_uid('alice'), 0, p_now => '2030-01-02 00:00:00+00') $$,
  'CK001', null, 'consume_or_raise: zero amount');
select throws_ok($$ select creditkit_consume_or_raise(tests.get_supabase_uid('alice'), -1, p_now => '2030-01-02 00:00:00+00') $$,
  'CK001', null, 'consume_or_raise: negative amount');
select throws_ok($$ select creditkit_consume_or_raise(tests.get_supabase_uid('alice'), null, p_now => '2030-01-02 00:00:00+00') $$,
  'CK001', null, 'consume_or_raise: NULL amount');
select throws_ok($$ select creditkit_consume_or_raise(tests.get_supabase_uid('alice'), 9007199254740992, p_now => '2030-01-02 00:00:00+00') $$,
  'CK001', null, 'consume_or_raise: amount 2^53');

-- An adjustment is signed, so a negative amount is a valid debit; its bounds are +/-(2^53-1).
select throws_ok($$ select creditkit_adjust(tests.get_supabase_uid('alice'), 0, 'r', p_now => '2030-01-02 00:00:00+00') $$,
  'CK001', null, 'adjust: zero amount');
select throws_ok($$ select creditkit_adjust(tests.get_supabase_uid('alice'), null, 'r', p_now => '2030-01-02 00:00:00+00') $$,
  'CK001', null, 'adjust: NULL amount');
select throws_ok($$ select creditkit_adjust(tests.get_supabase_uid('alice'), 9007199254740992, 'r', p_now => '2030-01-02 00:00:00+00') $$,
  'CK001', null, 'adjust: amount 2^53');
select throws_ok($$ select creditkit_adjust(tests.get_supabase_uid('alice'), -9007199254740992, 'r', p_now => '2030-01-02 00:00:00+00') $$,
  'CK001', null, 'adjust: amount -2^53');

select results_eq('select * from ck_state', 'select * from ck_before', 'bad amounts changed nothing');

-- ---------------------------------------------------------------------------------------------
-- Accounts: unknown (CK003) and NULL (CK006). A grant to an unknown id is not an error: it opens
-- the account, so it only appears under NULL.
-- ---------------------------------------------------------------------------------------------
select throws_ok($$ select creditkit_consume('00000000-0000-4000-8000-00000000dead', 1, p_now => '2030-01-02 00:00:00+00') $$,
  'CK003', null, 'consume: unknown account');
select throws_ok($$ select creditkit_consume_or_raise('00000000-0000-4000-8000-00000000dead', 1, p_now => '2030-01-02 00:00:00+00') $$,
  'CK003', null, 'consume_or_raise: unknown account');
select throws_ok($$ select creditkit_adjust('00000000-0000-4000-8000-00000000dead', 1, 'r', p_now => '2030-01-02 00:00:00+00') $$,
  'CK003', null, 'adjust: unknown account (an adjustment does not open an account)');
select throws_ok($$ select creditkit_balance('00000000-0000-4000-8000-00000000dead', p_now => '2030-01-02 00:00:00+00') $$,
  'CK003', null, 'balance: unknown account');
select throws_ok($$ select creditkit_history('00000000-0000-4000-8000-00000000dead') $$,
  'CK003', null, 'history: unknown account');

select throws_ok($$ select creditkit_grant(null, 1, p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'grant: NULL account');
select throws_ok($$ select creditkit_consume(null, 1, p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'consume: NULL account');
select throws_ok($$ select creditkit_consume_or_raise(null, 1, p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'consume_or_raise: NULL account');
select throws_ok($$ select creditkit_adjust(null, 1, 'r', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'adjust: NULL account');
select throws_ok($$ select creditkit_balance(null, p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'balance: NULL account');
select throws_ok($$ select creditkit_history(null) $$,
  'CK006', null, 'history: NULL account');

select results_eq('select * from ck_state', 'select * from ck_before', 'unknown and NULL accounts changed nothing');

-- ---------------------------------------------------------------------------------------------
-- Idempotency keys (CK006): 1 to 255 characters, not blank.
-- ---------------------------------------------------------------------------------------------
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), 1, p_idempotency_key => repeat('k', 256), p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'grant: 256-character key');
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), 1, p_idempotency_key => '   ', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'grant: blank key');
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), 1, p_idempotency_key => '', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'grant: empty key');
select throws_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), 1, p_idempotency_key => repeat('k', 256), p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'consume: 256-character key');
select throws_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), 1, p_idempotency_key => ' ', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'consume: blank key');
select throws_ok($$ select creditkit_consume_or_raise(tests.get_supabase_uid('alice'), 1, p_idempotency_key => repeat('k', 256), p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'consume_or_raise: 256-character key');
select throws_ok($$ select creditkit_consume_or_raise(tests.get_supabase_uid('alice'), 1, p_idempotency_key => ' ', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'consume_or_raise: blank key');
select throws_ok($$ select creditkit_adjust(tests.get_supabase_uid('alice'), 1, 'r', p_idempotency_key => repeat('k', 256), p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'adjust: 256-character key');
select throws_ok($$ select creditkit_adjust(tests.get_supabase_uid('alice'), 1, 'r', p_idempotency_key => '  ', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'adjust: blank key');

-- Event names (consume only): 1 to 200 characters, not blank.
select throws_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), 1, ' ', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'consume: blank event');
select throws_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), 1, repeat('e', 201), p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'consume: 201-character event');
select throws_ok($$ select creditkit_consume_or_raise(tests.get_supabase_uid('alice'), 1, ' ', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'consume_or_raise: blank event');
select throws_ok($$ select creditkit_consume_or_raise(tests.get_supabase_uid('alice'), 1, repeat('e', 201), p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'consume_or_raise: 201-character event');

select results_eq('select * from ck_state', 'select * from ck_before', 'bad keys and events changed nothing');

-- ---------------------------------------------------------------------------------------------
-- Metadata (CK006): a JSON object of at most 8192 bytes. An array, a bare string and an object
-- just over the limit are refused.
-- ---------------------------------------------------------------------------------------------
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), 1, p_metadata => '[1, 2]', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'grant: metadata is an array');
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), 1, p_metadata => '"order-1"', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'grant: metadata is a string');
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), 1, p_metadata => jsonb_build_object('blob', repeat('x', 8200)), p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'grant: metadata over 8192 bytes');
select throws_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), 1, p_metadata => '[1, 2]', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'consume: metadata is an array');
select throws_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), 1, p_metadata => '"order-1"', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'consume: metadata is a string');
select throws_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), 1, p_metadata => jsonb_build_object('blob', repeat('x', 8200)), p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'consume: metadata over 8192 bytes');
select throws_ok($$ select creditkit_consume_or_raise(tests.get_supabase_uid('alice'), 1, p_metadata => '[1, 2]', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'consume_or_raise: metadata is an array');
select throws_ok($$ select creditkit_consume_or_raise(tests.get_supabase_uid('alice'), 1, p_metadata => '"order-1"', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'consume_or_raise: metadata is a string');
select throws_ok($$ select creditkit_consume_or_raise(tests.get_supabase_uid('alice'), 1, p_metadata => jsonb_build_object('blob', repeat('x', 8200)), p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'consume_or_raise: metadata over 8192 bytes');
select throws_ok($$ select creditkit_adjust(tests.get_supabase_uid('alice'), 1, 'r', p_metadata => '[1, 2]', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'adjust: metadata is an array');
select throws_ok($$ select creditkit_adjust(tests.get_supabase_uid('alice'), 1, 'r', p_metadata => '"order-1"', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'adjust: metadata is a string');
select throws_ok($$ select creditkit_adjust(tests.get_supabase_uid('alice'), 1, 'r', p_metadata => jsonb_build_object('blob', repeat('x', 8200)), p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'adjust: metadata over 8192 bytes');

select results_eq('select * from ck_state', 'select * from ck_before', 'bad metadata changed nothing');

-- ---------------------------------------------------------------------------------------------
-- Grant-specific arguments (CK006): category, expiry not after p_now.
-- ---------------------------------------------------------------------------------------------
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), 1, 'gift', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'grant: unknown category');
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), 1, null, p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'grant: NULL category');
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), 1, 'plan', '2030-01-02 00:00:00+00', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'grant: expires_at equal to p_now (already expired)');
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), 1, 'plan', '2030-01-01 00:00:00+00', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'grant: expires_at before p_now');

-- Adjustment reasons (CK006): 1 to 500 characters, not blank.
select throws_ok($$ select creditkit_adjust(tests.get_supabase_uid('alice'), 1, null, p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'adjust: NULL reason');
select throws_ok($$ select creditkit_adjust(tests.get_supabase_uid('alice'), 1, '', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'adjust: empty reason');
select throws_ok($$ select creditkit_adjust(tests.get_supabase_uid('alice'), -1, '   ', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'adjust: blank reason');
select throws_ok($$ select creditkit_adjust(tests.get_supabase_uid('alice'), 1, repeat('r', 501), p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'adjust: 501-character reason');
-- Blank means any whitespace, not only spaces.
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), 1, p_idempotency_key => E'\t\n', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'grant: a key of tabs and newlines is blank');
select throws_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), 1, E'\r\n', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'consume: an event of CR/LF is blank');
select throws_ok($$ select creditkit_adjust(tests.get_supabase_uid('alice'), 1, E'\t \n', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'adjust: a reason of tabs and newlines is blank');

select results_eq('select * from ck_state', 'select * from ck_before', 'bad categories, expiries and reasons changed nothing');

-- ---------------------------------------------------------------------------------------------
-- Time (CK006): an explicit NULL p_now is refused, never read as "no expiry check".
-- ---------------------------------------------------------------------------------------------
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), 1, p_now => null) $$,
  'CK006', null, 'grant: NULL p_now');
select throws_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), 1, p_now => null) $$,
  'CK006', null, 'consume: NULL p_now');
select throws_ok($$ select creditkit_consume_or_raise(tests.get_supabase_uid('alice'), 1, p_now => null) $$,
  'CK006', null, 'consume_or_raise: NULL p_now');
select throws_ok($$ select creditkit_adjust(tests.get_supabase_uid('alice'), 1, 'r', p_now => null) $$,
  'CK006', null, 'adjust: NULL p_now');
select throws_ok($$ select creditkit_balance(tests.get_supabase_uid('alice'), p_now => null) $$,
  'CK006', null, 'balance: NULL p_now');
select throws_ok($$ select creditkit_book_expired(p_now => null) $$,
  'CK006', null, 'book_expired: NULL p_now');

-- Limits (CK006): history pages hold 1 to 1000 rows; the sweep visits 1 to 100000 accounts.
select throws_ok($$ select creditkit_history(tests.get_supabase_uid('alice'), 0) $$,
  'CK006', null, 'history: limit 0');
select throws_ok($$ select creditkit_history(tests.get_supabase_uid('alice'), 1001) $$,
  'CK006', null, 'history: limit 1001');
select throws_ok($$ select creditkit_history(tests.get_supabase_uid('alice'), null) $$,
  'CK006', null, 'history: NULL limit');
select throws_ok($$ select creditkit_book_expired('2030-01-02 00:00:00+00', 0) $$,
  'CK006', null, 'book_expired: limit 0');
select throws_ok($$ select creditkit_book_expired('2030-01-02 00:00:00+00', 100001) $$,
  'CK006', null, 'book_expired: limit 100001');
select throws_ok($$ select creditkit_book_expired('2030-01-02 00:00:00+00', null) $$,
  'CK006', null, 'book_expired: NULL limit');

select results_eq('select * from ck_state', 'select * from ck_before', 'bad times and limits changed nothing');

-- ---------------------------------------------------------------------------------------------
-- The documented maxima themselves are accepted (so the checks above are not off by one), and
-- the balance may not pass 2^53-1 (CK007).
-- ---------------------------------------------------------------------------------------------
select is(
  (select balance from creditkit_grant(tests.get_supabase_uid('whale'), 9007199254740991,
     p_idempotency_key => repeat('k', 255), p_metadata => jsonb_build_object('blob', repeat('x', 8000)),
     p_now => '2030-01-02 00:00:00+00')),
  9007199254740991::bigint, 'a grant of exactly 2^53-1 with a 255-character key and 8 kB of metadata is accepted');
select results_eq($$ select id from creditkit_history(tests.get_supabase_uid('whale'), 1000) $$,
  $$ select id from creditkit.ledger where account_id = tests.get_supabase_uid('whale') $$,
  'a history page of 1000 rows is accepted');
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('whale'), 1, p_now => '2030-01-02 00:00:00+00') $$,
  'CK007', null, 'grant: one more unit would pass 2^53-1');
select throws_ok($$ select creditkit_adjust(tests.get_supabase_uid('whale'), 1, 'r', p_now => '2030-01-02 00:00:00+00') $$,
  'CK007', null, 'adjust: one more unit would pass 2^53-1');
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), 9007199254740991 - 99, p_now => '2030-01-02 00:00:00+00') $$,
  'CK007', null, 'grant: 100 + (2^53-100) would pass 2^53-1');
select results_eq($$ select balance::bigint, version from creditkit.accounts where id = tests.get_supabase_uid('whale') $$,
  $$ values (9007199254740991::bigint, 1::bigint) $$, 'the refused grants and adjustment changed nothing');
select is(
  (select balance from creditkit_consume(tests.get_supabase_uid('whale'), 9007199254740991, p_now => '2030-01-02 00:00:01+00')),
  0::bigint, 'a consume of exactly 2^53-1 is accepted');

-- ---------------------------------------------------------------------------------------------
-- Times are finite (CK006): an infinite p_now would date rows at infinity, an infinite anchor
-- start periods there, an infinite expiry never expire but sort as if it did.
-- ---------------------------------------------------------------------------------------------
select creditkit_set_price('bad-input-gen', 1, '{}', '2000-01-01 00:00:00+00');
select throws_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), 1, p_now => 'infinity') $$,
  'CK006', null, 'consume: p_now infinity');
select throws_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), 1, p_now => '-infinity') $$,
  'CK006', null, 'consume: p_now -infinity');
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), 1, p_now => 'infinity') $$,
  'CK006', null, 'grant: p_now infinity');
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), 1, 'promotional', 'infinity', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'grant: expires_at infinity');
select throws_ok($$ select creditkit_reserve(tests.get_supabase_uid('alice'), 1, p_now => 'infinity') $$,
  'CK006', null, 'reserve: p_now infinity');
select throws_ok($$ select creditkit_meter(tests.get_supabase_uid('alice'), 'bad-input-gen', p_now => '-infinity') $$,
  'CK006', null, 'meter: p_now -infinity');
select throws_ok($$ select creditkit_consume_batch('[{"account_id": "00000000-0000-4000-8000-000000000001", "amount": 1}]', 'infinity') $$,
  'CK006', null, 'consume_batch: p_now infinity');
select throws_ok($$ select creditkit_set_plan(tests.get_supabase_uid('alice'), 'free', p_anchor => '-infinity', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'set_plan: anchor -infinity');
select throws_ok($$ select creditkit_set_plan(tests.get_supabase_uid('alice'), 'free', p_now => 'infinity') $$,
  'CK006', null, 'set_plan: p_now infinity');

-- ---------------------------------------------------------------------------------------------
-- The kit's own metadata keys (CK006): a caller's would pass for a settled hold, a metered price
-- or a plan's allowance in reports and in the kit's own reading of its rows.
-- ---------------------------------------------------------------------------------------------
select throws_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), 1, p_metadata => '{"hold_id": 1, "reserved": 5, "actual": 1}', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'consume: metadata with hold_id, reserved, actual');
select throws_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), 1, p_metadata => '{"price_id": 7}', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'consume: metadata with price_id');
select throws_ok($$ select creditkit_grant(tests.get_supabase_uid('alice'), 1, 'plan', p_metadata => '{"period_index": 3}', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'grant: metadata with period_index (the kit''s allowance marker)');
select throws_ok($$ select creditkit_meter(tests.get_supabase_uid('alice'), 'bad-input-gen', p_metadata => '{"quantity": 9}', p_now => '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'meter: metadata with quantity');
select throws_ok($$ select creditkit_consume_batch(jsonb_build_array(jsonb_build_object('account_id', tests.get_supabase_uid('alice'), 'amount', 1, 'metadata', '{"actual": 1}'::jsonb)), '2030-01-02 00:00:00+00') $$,
  'CK006', null, 'consume_batch: an item''s metadata with actual');
select lives_ok($$ select creditkit_consume(tests.get_supabase_uid('alice'), 1, p_metadata => '{"model": "m", "holds": 1}', p_now => '2030-01-02 00:00:00+00') $$,
  'consume: other metadata keys are the caller''s own');

-- =============================================================================================
-- Member: the caller-bound reads validate their page size too.
-- =============================================================================================
select tests.authenticate_as('alice');

select throws_ok($$ select creditkit_my_history(null, 0) $$, 'CK006', null, 'my_history: limit 0');
select throws_ok($$ select creditkit_my_history(null, 1001) $$, 'CK006', null, 'my_history: limit 1001');
select throws_ok($$ select creditkit_my_history(null, null) $$, 'CK006', null, 'my_history: NULL limit');
select is((select count(*) from creditkit_my_history(null, 1)), 1::bigint, 'my_history: limit 1 is accepted');

select tests.clear_authentication();

-- Nothing but whale's accepted grant and consume changed since the fixtures.
select results_eq(
  $$ select accounts, grants, ledger_rows, total_balance, total_version from ck_state $$,
  $$ select accounts + 1, grants + 1, ledger_rows + 3, total_balance - 1, total_version + 3 from ck_before $$,
  'in the end only the accepted calls left a trace');

select * from finish();
rollback;
