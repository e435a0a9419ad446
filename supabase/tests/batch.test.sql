-- batch: many usage events in one call. Each item behaves as creditkit_consume with
-- its arguments, applied in input order in one transaction: one answer per item in order,
-- blocked items answer allowed = false and write nothing, keys replay within and across batches
-- (and across single consumes), and a bad batch or a bad item anywhere fails the whole call with
-- the code creditkit_consume would raise, changing nothing. Validation comes before any lock.
--
-- Every call passes p_now. Each scenario has its own accounts.
begin;
select plan(74);

select tests.create_supabase_user('alice');   -- mixed batch over two accounts
select tests.create_supabase_user('bob');     -- mixed batch over two accounts
select tests.create_supabase_user('carol');   -- replays
select tests.create_supabase_user('dave');    -- a blocked item does not use up its key
select tests.create_supabase_user('erin');    -- what is due is booked before the first item
select tests.create_supabase_user('frank');   -- 1000 items
select tests.create_supabase_user('gina');    -- whole-call errors
select tests.create_supabase_user('hank');    -- privileges
select tests.create_supabase_user('ivan');    -- values the fast typing leaves to the item-by-item checks
select tests.create_supabase_user('jill');    -- one account per batch: the two-statement path and its way out
select tests.create_supabase_user('kate');    -- one account per batch: JSON nulls, uuid spellings, a key twice
select tests.create_supabase_user('lena');    -- one account per batch: keys on later items, every field, ids as numbers

-- Answers by scenario, so later assertions can compare them with the ledger.
create temporary table ck_batch (name text, ordinal integer, allowed boolean, balance bigint, transaction_id bigint);
grant select, insert on ck_batch to service_role;

-- A JSON item for the batch: {"account_id": <user's id>, "amount": n, ...extra}.
create function pg_temp.item(p_user text, p_amount bigint, p_extra jsonb default '{}')
returns jsonb language sql stable as $$
  select jsonb_build_object('account_id', tests.get_supabase_uid(p_user), 'amount', p_amount) || p_extra
$$;
grant execute on function pg_temp.item(text, bigint, jsonb) to service_role, authenticated, anon;

-- =============================================================================================
-- Service role.
-- =============================================================================================
select tests.authenticate_as_service_role();

-- ---------------------------------------------------------------------------------------------
-- One answer per item, in input order, over two accounts; blocked items write nothing.
-- ---------------------------------------------------------------------------------------------
select creditkit_grant(tests.get_supabase_uid('alice'), 10, p_now => '2030-01-01 00:00:00+00');
select creditkit_grant(tests.get_supabase_uid('bob'), 5, p_now => '2030-01-01 00:00:00+00');

insert into ck_batch
select 'mixed', b.* from creditkit_consume_batch(jsonb_build_array(
    pg_temp.item('alice', 4, '{"event": "chat", "idempotency_key": "a-1", "metadata": {"n": 1}, "cost_micros": 250}'),
    pg_temp.item('bob', 3),
    pg_temp.item('alice', 7),                              -- 6 left: blocked
    pg_temp.item('bob', 3, '{"event": "image"}'),          -- 2 left: blocked
    pg_temp.item('alice', 6, '{"idempotency_key": "a-2"}'),
    pg_temp.item('bob', 2, '{"event": null, "metadata": null, "cost_micros": null}')),
  '2030-01-01 01:00:00+00') b;

select results_eq(
  $$ select ordinal, allowed, balance, transaction_id is null from ck_batch where name = 'mixed' order by ordinal $$,
  $$ values (1, true, 6::bigint, false), (2, true, 2::bigint, false), (3, false, 6::bigint, true),
            (4, false, 2::bigint, true), (5, true, 0::bigint, false), (6, true, 0::bigint, false) $$,
  'one answer per item in input order: allowed with the balance after it, or blocked at the balance it saw');
select results_eq(
  $$ select kind::text, amount::bigint, balance_after::bigint, event, idempotency_key, metadata, cost_micros::bigint, created_at
       from creditkit.ledger where account_id = tests.get_supabase_uid('alice') order by id $$,
  $$ values ('grant'::text, 10::bigint, 10::bigint, null::text, null::text, '{}'::jsonb, null::bigint, '2030-01-01 00:00:00+00'::timestamptz),
            ('consume', -4, 6, 'chat', 'a-1', '{"n": 1}', 250, '2030-01-01 01:00:00+00'),
            ('consume', -6, 0, null, 'a-2', '{}', null, '2030-01-01 01:00:00+00') $$,
  'alice''s ledger: her two allowed items with their event, key, metadata, cost and p_now; the blocked one left no row');
select results_eq(
  $$ select kind::text, amount::bigint, balance_after::bigint, event from creditkit.ledger
      where account_id = tests.get_supabase_uid('bob') order by id $$,
  $$ values ('grant'::text, 5::bigint, 5::bigint, null::text), ('consume', -3, 2, null), ('consume', -2, 0, null) $$,
  'bob''s ledger: his two allowed items; JSON null for event, metadata and cost is the same as leaving them out');
select results_eq(
  $$ select b.transaction_id, l.account_id, -l.amount::bigint, l.balance_after::bigint
       from ck_batch b join creditkit.ledger l on l.id = b.transaction_id
      where b.name = 'mixed' order by b.ordinal $$,
  $$ values ((select transaction_id from ck_batch where name = 'mixed' and ordinal = 1), tests.get_supabase_uid('alice'), 4::bigint, 6::bigint),
            ((select transaction_id from ck_batch where name = 'mixed' and ordinal = 2), tests.get_supabase_uid('bob'), 3, 2),
            ((select transaction_id from ck_batch where name = 'mixed' and ordinal = 5), tests.get_supabase_uid('alice'), 6, 0),
            ((select transaction_id from ck_batch where name = 'mixed' and ordinal = 6), tests.get_supabase_uid('bob'), 2, 0) $$,
  'each transaction_id is the ledger row of that item (its account, amount and balance)');
select ok(
  (select array_agg(transaction_id order by ordinal) = array_agg(transaction_id order by transaction_id)
     from ck_batch where name = 'mixed' and allowed),
  'the items were applied in input order: ledger ids rise with the ordinal');
select results_eq(
  $$ select a.id, a.balance::bigint from creditkit.accounts a
      where a.id in (tests.get_supabase_uid('alice'), tests.get_supabase_uid('bob')) order by a.id $$,
  $$ select a.id, 0::bigint from creditkit.accounts a
      where a.id in (tests.get_supabase_uid('alice'), tests.get_supabase_uid('bob')) order by a.id $$,
  'both balances are 0, never below');

-- ---------------------------------------------------------------------------------------------
-- Replays: within a batch, across batches, and with keys a single consume wrote.
-- ---------------------------------------------------------------------------------------------
select creditkit_grant(tests.get_supabase_uid('carol'), 20, p_now => '2030-01-01 00:00:00+00');
select creditkit_consume(tests.get_supabase_uid('carol'), 2, 'chat', 'single-1', p_now => '2030-01-01 00:30:00+00');

insert into ck_batch
select 'replay', b.* from creditkit_consume_batch(jsonb_build_array(
    pg_temp.item('carol', 5, '{"event": "chat", "idempotency_key": "c-1"}'),
    pg_temp.item('carol', 5, '{"event": "chat", "idempotency_key": "c-1"}'),
    pg_temp.item('carol', 5),
    pg_temp.item('carol', 2, '{"event": "chat", "idempotency_key": "single-1"}')),
  '2030-01-01 01:00:00+00') b;
select results_eq(
  $$ select ordinal, allowed, balance from ck_batch where name = 'replay' order by ordinal $$,
  $$ values (1, true, 13::bigint), (2, true, 13::bigint), (3, true, 8::bigint), (4, true, 18::bigint) $$,
  'a key repeated in the batch answers the first result (balance 13, not 8); a single consume''s key its own first result (18)');
select is(
  (select transaction_id from ck_batch where name = 'replay' and ordinal = 2),
  (select transaction_id from ck_batch where name = 'replay' and ordinal = 1),
  'the repeated key names the first item''s ledger row');
select is(
  (select transaction_id from ck_batch where name = 'replay' and ordinal = 4),
  (select id from creditkit.ledger where account_id = tests.get_supabase_uid('carol') and idempotency_key = 'single-1'),
  'the single consume''s key names the single consume''s ledger row');
select results_eq(
  $$ select amount::bigint, balance_after::bigint, idempotency_key from creditkit.ledger
      where account_id = tests.get_supabase_uid('carol') and kind = 'consume' order by id $$,
  $$ values (-2::bigint, 18::bigint, 'single-1'::text), (-5, 13, 'c-1'), (-5, 8, null) $$,
  'carol''s ledger: one row per effect, replays wrote nothing');

-- Across batches: the whole batch again, an hour later.
insert into ck_batch
select 'replay-again', b.* from creditkit_consume_batch(jsonb_build_array(
    pg_temp.item('carol', 5, '{"event": "chat", "idempotency_key": "c-1"}')),
  '2030-01-01 02:00:00+00') b;
select results_eq(
  $$ select ordinal, allowed, balance, transaction_id from ck_batch where name = 'replay-again' $$,
  $$ select 1, true, 13::bigint, transaction_id from ck_batch where name = 'replay' and ordinal = 1 $$,
  'a later batch with the same key answers the first result');
select is(
  (select c.transaction_id from creditkit_consume(tests.get_supabase_uid('carol'), 5, 'chat', 'c-1',
     p_now => '2030-01-01 02:00:00+00') c),
  (select transaction_id from ck_batch where name = 'replay' and ordinal = 1),
  'a single consume with a key a batch wrote replays it too');
select is(
  (select count(*) from creditkit.ledger where account_id = tests.get_supabase_uid('carol')),
  4::bigint, 'and still no new ledger row');

-- A blocked item leaves its key unused: the retry is evaluated afresh, as for creditkit_consume.
select creditkit_grant(tests.get_supabase_uid('dave'), 3, p_now => '2030-01-01 00:00:00+00');
select results_eq(
  $$ select ordinal, allowed, balance, transaction_id from creditkit_consume_batch(
       jsonb_build_array(pg_temp.item('dave', 5, '{"idempotency_key": "d-1"}')), '2030-01-01 01:00:00+00') $$,
  $$ values (1, false, 3::bigint, null::bigint) $$,
  'blocked: allowed = false, the balance, no transaction');
select creditkit_grant(tests.get_supabase_uid('dave'), 2, p_now => '2030-01-01 01:30:00+00');
select results_eq(
  $$ select ordinal, allowed, balance from creditkit_consume_batch(
       jsonb_build_array(pg_temp.item('dave', 5, '{"idempotency_key": "d-1"}'),
                         pg_temp.item('dave', 5, '{"idempotency_key": "d-1"}')), '2030-01-01 02:00:00+00') $$,
  $$ values (1, true, 0::bigint), (2, true, 0::bigint) $$,
  'the retry after a grant is allowed, and its repeat in the same batch is a replay, not blocked');

-- ---------------------------------------------------------------------------------------------
-- What is due by p_now is booked when the accounts are locked, before the first item.
-- ---------------------------------------------------------------------------------------------
select creditkit_grant(tests.get_supabase_uid('erin'), 10, 'promotional', '2030-01-02 00:00:00+00',
  p_now => '2030-01-01 00:00:00+00');
select creditkit_grant(tests.get_supabase_uid('erin'), 5, p_now => '2030-01-01 00:00:00+00');
select results_eq(
  $$ select ordinal, allowed, balance from creditkit_consume_batch(
       jsonb_build_array(pg_temp.item('erin', 6), pg_temp.item('erin', 5)), '2030-01-02 00:00:00+00') $$,
  $$ values (1, false, 5::bigint), (2, true, 0::bigint) $$,
  'credit expired at exactly p_now is not spendable by any item');
select results_eq(
  $$ select kind::text, amount::bigint, balance_after::bigint from creditkit.ledger where account_id = tests.get_supabase_uid('erin') order by id $$,
  $$ values ('grant'::text, 10::bigint, 10::bigint), ('grant', 5, 15), ('expire', -10, 5), ('consume', -5, 0) $$,
  'the expiry is booked once, before the consume');

-- ---------------------------------------------------------------------------------------------
-- 1000 items is the most a batch may hold.
-- ---------------------------------------------------------------------------------------------
select creditkit_grant(tests.get_supabase_uid('frank'), 999, p_now => '2030-01-01 00:00:00+00');
select results_eq(
  $$ select count(*), count(*) filter (where allowed), min(balance), max(ordinal), bool_and(ordinal = 1000 or allowed)
       from creditkit_consume_batch(
         (select jsonb_agg(pg_temp.item('frank', 1)) from generate_series(1, 1000)), '2030-01-01 01:00:00+00') $$,
  $$ values (1000::bigint, 999::bigint, 0::bigint, 1000, true) $$,
  '1000 items: 1000 answers; 999 credits cover the first 999, the last is blocked');
select throws_ok(
  $$ select * from creditkit_consume_batch(
       (select jsonb_agg(pg_temp.item('frank', 1)) from generate_series(1, 1001)), '2030-01-01 01:00:00+00') $$,
  'CK006', null, '1001 items: CK006');

-- ---------------------------------------------------------------------------------------------
-- Whole-call errors: the code creditkit_consume would raise, and nothing changes, not even the
-- items before the bad one. gina holds 100 credits; every bad batch starts with a valid item.
-- ---------------------------------------------------------------------------------------------
select creditkit_grant(tests.get_supabase_uid('gina'), 100, p_now => '2030-01-01 00:00:00+00');
select creditkit_consume(tests.get_supabase_uid('gina'), 1, 'chat', 'g-1', p_now => '2030-01-01 00:10:00+00');
select tests.clear_authentication();
create temporary table ck_before as
  select (select count(*) from creditkit.ledger) as ledger_rows,
         (select jsonb_agg(to_jsonb(a) order by a.id) from creditkit.accounts a) as accounts,
         (select jsonb_agg(to_jsonb(g) order by g.id) from creditkit.grants g) as grants;
grant select on ck_before to service_role;
select tests.authenticate_as_service_role();

select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('gina', 1), pg_temp.item('gina', 2, '{"event": "chat", "idempotency_key": "g-1"}')), '2030-01-01 01:00:00+00') $$,
  'CK004', null, 'a key reused with another amount (after a valid item): CK004 for the whole call');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('gina', 1, '{"idempotency_key": "g-2"}'), pg_temp.item('gina', 2, '{"idempotency_key": "g-2"}')), '2030-01-01 01:00:00+00') $$,
  'CK004', null, 'a key reused with another amount within the batch: CK004');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('gina', 1), jsonb_build_object('account_id', '00000000-0000-4000-8000-00000000dead', 'amount', 1)), '2030-01-01 01:00:00+00') $$,
  'CK003', null, 'an unknown account: CK003');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('gina', 1), pg_temp.item('gina', 0)), '2030-01-01 01:00:00+00') $$,
  'CK001', null, 'amount 0: CK001');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('gina', 1), pg_temp.item('gina', 9007199254740992)), '2030-01-01 01:00:00+00') $$,
  'CK001', null, 'amount 2^53: CK001');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('gina', 1), pg_temp.item('gina', 1) - 'amount'), '2030-01-01 01:00:00+00') $$,
  'CK001', null, 'no amount: CK001');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('gina', 1), pg_temp.item('gina', 1, '{"amount": 1.5}')), '2030-01-01 01:00:00+00') $$,
  'CK001', null, 'a fractional amount: CK001');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('gina', 1), pg_temp.item('gina', 1, '{"cost_micros": -1}')), '2030-01-01 01:00:00+00') $$,
  'CK001', null, 'cost_micros -1: CK001');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('gina', 1), pg_temp.item('gina', 1) - 'account_id'), '2030-01-01 01:00:00+00') $$,
  'CK006', null, 'no account: CK006');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('gina', 1), pg_temp.item('gina', 1, '{"account_id": "not-a-uuid"}')), '2030-01-01 01:00:00+00') $$,
  'CK006', null, 'an account id that is not a uuid: CK006');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('gina', 1), pg_temp.item('gina', 1, '{"idempotency_key": " "}')), '2030-01-01 01:00:00+00') $$,
  'CK006', null, 'a blank key: CK006');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('gina', 1), pg_temp.item('gina', 1, '{"metadata": [1]}')), '2030-01-01 01:00:00+00') $$,
  'CK006', null, 'metadata that is not an object: CK006');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('gina', 1), pg_temp.item('gina', 1, '{"quantity": 2}')), '2030-01-01 01:00:00+00') $$,
  'CK006', null, 'an unknown key: CK006');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('gina', 1), '"gina"'::jsonb), '2030-01-01 01:00:00+00') $$,
  'CK006', null, 'an item that is not an object: CK006');
-- JSON types a cast would take silently: each is refused as creditkit_consume refuses the value.
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('gina', 1), pg_temp.item('gina', 1, '{"amount": "1"}')), '2030-01-01 01:00:00+00') $$,
  'CK001', null, 'an amount written as a string: CK001');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('gina', 1), pg_temp.item('gina', 1, '{"cost_micros": "10"}')), '2030-01-01 01:00:00+00') $$,
  'CK001', null, 'a cost written as a string: CK001');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('gina', 1), pg_temp.item('gina', 1, '{"event": 5}')), '2030-01-01 01:00:00+00') $$,
  'CK006', null, 'an event that is a number: CK006');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('gina', 1), pg_temp.item('gina', 1, '{"idempotency_key": 7}')), '2030-01-01 01:00:00+00') $$,
  'CK006', null, 'a key that is a number: CK006');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('gina', 1), pg_temp.item('gina', 1, '{"account_id": 5}')), '2030-01-01 01:00:00+00') $$,
  'CK006', null, 'an account id that is a number: CK006');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('gina', 1), jsonb_build_array(pg_temp.item('gina', 1))), '2030-01-01 01:00:00+00') $$,
  'CK006', null, 'a valid item nested in an array: CK006');
select throws_ok(
  $$ select * from creditkit_consume_batch('[]', '2030-01-01 01:00:00+00') $$,
  'CK006', null, 'no items: CK006');
select throws_ok(
  $$ select * from creditkit_consume_batch(pg_temp.item('gina', 1), '2030-01-01 01:00:00+00') $$,
  'CK006', null, 'an object instead of an array: CK006');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('gina', 1)), null) $$,
  'CK006', null, 'p_now NULL: CK006');
-- Validation comes before locking: with an unknown account first and a bad amount after it, the
-- bad amount is what fails (the unknown account would be found by the lock).
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(jsonb_build_object('account_id', '00000000-0000-4000-8000-00000000dead', 'amount', 1), pg_temp.item('gina', -1)), '2030-01-01 01:00:00+00') $$,
  'CK001', null, 'every item is validated before any account is locked (CK001, not CK003)');

select results_eq(
  $$ select (select count(*) from creditkit.ledger),
            (select jsonb_agg(to_jsonb(a) order by a.id) from creditkit.accounts a),
            (select jsonb_agg(to_jsonb(g) order by g.id) from creditkit.grants g) $$,
  $$ select ledger_rows, accounts, grants from ck_before $$,
  'the failed batches changed nothing: no ledger row, every account and bucket as before');

-- ---------------------------------------------------------------------------------------------
-- Values that no direct cast takes but creditkit_consume's rules accept (an amount written 5.0,
-- a cost written 10.0) go through the item-by-item checks and are applied as usual, keys and
-- replays included. A string that is not a uuid fails with that item's own error.
-- ---------------------------------------------------------------------------------------------
select creditkit_grant(tests.get_supabase_uid('ivan'), 10, p_now => '2030-01-01 00:00:00+00');
select results_eq(
  $$ select ordinal, allowed, balance from creditkit_consume_batch(
       jsonb_build_array(pg_temp.item('ivan', 1) || '{"amount": 5.0, "idempotency_key": "i-1"}',
                         pg_temp.item('ivan', 2, '{"cost_micros": 10.0}')),
       '2030-01-01 01:00:00+00') $$,
  $$ values (1, true, 5::bigint), (2, true, 3::bigint) $$,
  'an amount of 5.0 spends 5 and a cost of 10.0 is taken as 10');
select results_eq(
  $$ select ordinal, allowed, balance, transaction_id from creditkit_consume_batch(
       jsonb_build_array(pg_temp.item('ivan', 1) || '{"amount": 5.0, "idempotency_key": "i-1"}'),
       '2030-01-01 01:00:00+00') $$,
  $$ select 1, true, balance_after::bigint, id from creditkit.ledger
      where account_id = tests.get_supabase_uid('ivan') and idempotency_key = 'i-1' $$,
  'its key replays the first answer');
select results_eq(
  $$ select amount::bigint, cost_micros::bigint from creditkit.ledger
      where account_id = tests.get_supabase_uid('ivan') and kind::text = 'consume' order by id $$,
  $$ values (-5::bigint, null::bigint), (-2, 10) $$,
  'two consume rows, the replay wrote none');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('ivan', 1),
       jsonb_build_object('account_id', 'not-a-uuid', 'amount', 1)), '2030-01-01 01:00:00+00') $$,
  'CK006', 'invalid argument: item 2: account id "not-a-uuid" is not a uuid',
  'a string that is not a uuid fails the call with its item''s error');
select is((select balance::bigint from creditkit.accounts where id = tests.get_supabase_uid('ivan')), 3::bigint,
  'and changes nothing');

-- =============================================================================================
-- Privileges: service_role only; clients are refused even with EXECUTE granted by mistake.
-- =============================================================================================
select creditkit_grant(tests.get_supabase_uid('hank'), 10, p_now => '2030-01-01 00:00:00+00');

select tests.authenticate_as('hank');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('hank', 1)), '2030-01-01 01:00:00+00') $$,
  '42501', null, 'a signed-in user cannot spend, not even from their own account');
select tests.authenticate_as_anon();
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('hank', 1)), '2030-01-01 01:00:00+00') $$,
  '42501', null, 'anon cannot spend');

select tests.clear_authentication();
grant execute on function public.creditkit_consume_batch(jsonb, timestamptz, text) to anon, authenticated;
select tests.authenticate_as('hank');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('hank', 1)), '2030-01-01 01:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted by mistake, a signed-in user is still refused (CK005)');
select tests.authenticate_as_anon();
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('hank', 1)), '2030-01-01 01:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted by mistake, anon is still refused (CK005)');

select tests.clear_authentication();
select is(
  (select count(*) from creditkit.ledger where account_id = tests.get_supabase_uid('hank')),
  1::bigint, 'hank''s ledger holds only his grant');

-- ---------------------------------------------------------------------------------------------
-- One account per batch: spent in one UPDATE and one INSERT when it can be; a key used before or
-- too little credit takes the general path, which answers item by item.
-- ---------------------------------------------------------------------------------------------
select tests.authenticate_as_service_role();
select creditkit_grant(tests.get_supabase_uid('jill'), 20, p_now => '2030-01-01 00:00:00+00');
insert into ck_batch
select 'jill-1', b.* from creditkit_consume_batch(
  jsonb_build_array(pg_temp.item('jill', 2, '{"idempotency_key": "j-1"}'),
                    pg_temp.item('jill', 3, '{"idempotency_key": "j-2", "event": "chat"}'),
                    pg_temp.item('jill', 4, '{"idempotency_key": "j-3", "metadata": {"m": 1}}')),
  '2030-01-01 00:10:00+00') b;
select results_eq(
  $$ select ordinal, allowed, balance from ck_batch where name = 'jill-1' order by ordinal $$,
  $$ values (1, true, 18::bigint), (2, true, 15::bigint), (3, true, 11::bigint) $$,
  'one account, three keyed items: each answered with the balance after it, in order');
select results_eq(
  $$ select b.transaction_id, l.amount, l.balance_after, l.idempotency_key, l.event, l.metadata
       from ck_batch b join creditkit.ledger l on l.id = b.transaction_id where b.name = 'jill-1' order by b.ordinal $$,
  $$ select l.id, l.amount, l.balance_after, l.idempotency_key, l.event, l.metadata from creditkit.ledger l
      where l.account_id = tests.get_supabase_uid('jill') and l.kind::text = 'consume' order by l.id $$,
  'each transaction id is its own ledger row, ids rising in input order');
insert into ck_batch
select 'jill-2', b.* from creditkit_consume_batch(
  jsonb_build_array(pg_temp.item('jill', 4, '{"idempotency_key": "j-3", "metadata": {"m": 1}}'),
                    pg_temp.item('jill', 1, '{"idempotency_key": "j-4"}')),
  '2030-01-01 00:20:00+00') b;
select results_eq(
  $$ select b.ordinal, b.allowed, b.balance, b.transaction_id = (select transaction_id from ck_batch where name = 'jill-1' and ordinal = 3)
       from ck_batch b where b.name = 'jill-2' order by b.ordinal $$,
  $$ values (1, true, 11::bigint, true), (2, true, 10::bigint, false) $$,
  'a key used by an earlier batch replays its answer; the new key beside it spends');
insert into ck_batch
select 'jill-3', b.* from creditkit_consume_batch(
  jsonb_build_array(pg_temp.item('jill', 6), pg_temp.item('jill', 6)), '2030-01-01 00:30:00+00') b;
select results_eq(
  $$ select ordinal, allowed, balance, transaction_id is not null from ck_batch where name = 'jill-3' order by ordinal $$,
  $$ values (1, true, 4::bigint, true), (2, false, 4::bigint, false) $$,
  'a batch that the balance cannot cover in full: the first item spends, the second is blocked');
select is(
  (select array[a.balance, (select count(*) from creditkit.ledger l where l.account_id = a.id and l.kind::text = 'consume')]
     from creditkit.accounts a where a.id = tests.get_supabase_uid('jill')),
  array[4, 5]::bigint[], 'jill: balance 4 after five consume rows (the replay wrote none, the blocked item none)');

-- The one-account path reads the items with jsonb_to_recordset: a field written as JSON null is
-- left out (metadata '{}', no event, no key), and the account may be spelled as any uuid text.
select creditkit_grant(tests.get_supabase_uid('kate'), 50, p_now => '2030-01-01 00:00:00+00');
insert into ck_batch
select 'kate-1', b.* from creditkit_consume_batch(
  jsonb_build_array(pg_temp.item('kate', 5, '{"metadata": null, "event": null, "idempotency_key": null, "cost_micros": null}'),
                    jsonb_build_object('account_id', upper(replace(tests.get_supabase_uid('kate')::text, '-', '')), 'amount', 7,
                                       'event', 'chat', 'cost_micros', 12)),
  '2030-01-01 00:10:00+00') b;
select results_eq(
  $$ select b.ordinal, b.allowed, b.balance, l.amount::bigint, l.balance_after::bigint, l.event, l.idempotency_key, l.cost_micros::bigint, l.metadata
       from ck_batch b join creditkit.ledger l on l.id = b.transaction_id where b.name = 'kate-1' order by b.ordinal $$,
  $$ values (1, true, 45::bigint, -5::bigint, 45::bigint, null::text, null::text, null::bigint, '{}'::jsonb),
            (2, true, 38::bigint, -7::bigint, 38::bigint, 'chat', null, 12::bigint, '{}'::jsonb) $$,
  'one account spelled two ways, JSON nulls: both spend, with NULL event, key and cost and metadata {}');
-- A key twice in one batch (same request) is one spend answered twice, on the general path.
insert into ck_batch
select 'kate-2', b.* from creditkit_consume_batch(
  jsonb_build_array(pg_temp.item('kate', 3, '{"idempotency_key": "k-1"}'),
                    pg_temp.item('kate', 3, '{"idempotency_key": "k-1"}'),
                    pg_temp.item('kate', 2)),
  '2030-01-01 00:20:00+00') b;
select results_eq(
  $$ select ordinal, allowed, balance, transaction_id = (select transaction_id from ck_batch where name = 'kate-2' and ordinal = 1)
       from ck_batch where name = 'kate-2' order by ordinal $$,
  $$ values (1, true, 35::bigint, true), (2, true, 35::bigint, true), (3, true, 33::bigint, false) $$,
  'a key twice in a one-account batch: spent once, the second item answered as its replay');
select throws_ok(
  $$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('kate', 1), pg_temp.item('kate', 1, '{"idempotencyKey": "k-2"}')), '2030-01-01 00:30:00+00') $$,
  'CK006', 'invalid argument: item 2 has unknown keys: idempotencyKey (allowed: account_id, amount, event, idempotency_key, metadata, cost_micros)',
  'a misspelt key in a one-account batch: CK006 naming it, nothing spent');
select is(
  (select array[a.balance, (select count(*) from creditkit.ledger l where l.account_id = a.id and l.kind::text = 'consume')]
     from creditkit.accounts a where a.id = tests.get_supabase_uid('kate')),
  array[33, 4]::bigint[], 'kate: balance 33 after four consume rows (the replay and the refused batch wrote none)');

-- One account per batch: a key only on a later item, a replay beside a new item, and every
-- field of an item written to its row.
select creditkit_grant(tests.get_supabase_uid('lena'), 20, p_now => '2030-01-01 00:00:00+00');
insert into ck_batch
select 'lena-1', b.* from creditkit_consume_batch(
  jsonb_build_array(pg_temp.item('lena', 2), pg_temp.item('lena', 3, '{"idempotency_key": "l-1"}')),
  '2030-01-01 00:10:00+00') b;
select results_eq(
  $$ select b.ordinal, b.allowed, b.balance, l.idempotency_key
       from ck_batch b join creditkit.ledger l on l.id = b.transaction_id where b.name = 'lena-1' order by b.ordinal $$,
  $$ values (1, true, 18::bigint, null::text), (2, true, 15::bigint, 'l-1') $$,
  'first item without a key, second with one: both spend, and the key is in the second row');
insert into ck_batch
select 'lena-2', b.* from creditkit_consume_batch(
  jsonb_build_array(pg_temp.item('lena', 1), pg_temp.item('lena', 3, '{"idempotency_key": "l-1"}')),
  '2030-01-01 00:20:00+00') b;
select results_eq(
  $$ select b.ordinal, b.allowed, b.balance, b.transaction_id = (select transaction_id from ck_batch where name = 'lena-1' and ordinal = 2)
       from ck_batch b where b.name = 'lena-2' order by b.ordinal $$,
  $$ values (1, true, 14::bigint, false), (2, true, 15::bigint, true) $$,
  'the same key again after an item without one: a replay of the first answer; the item before it spends');
insert into ck_batch
select 'lena-3', b.* from creditkit_consume_batch(
  jsonb_build_array(pg_temp.item('lena', 4, '{"event": "chat", "cost_micros": 7, "metadata": {"m": 2}}'),
                    pg_temp.item('lena', 5)),
  '2030-01-01 00:30:00+00') b;
select results_eq(
  $$ select b.ordinal, b.allowed, b.balance, l.amount::bigint, l.balance_after::bigint, l.event, l.cost_micros::bigint, l.metadata, l.created_at
       from ck_batch b join creditkit.ledger l on l.id = b.transaction_id where b.name = 'lena-3' order by b.ordinal $$,
  $$ values (1, true, 10::bigint, -4::bigint, 10::bigint, 'chat', 7::bigint, '{"m": 2}'::jsonb, '2030-01-01 00:30:00+00'::timestamptz),
            (2, true, 5::bigint, -5::bigint, 5::bigint, null, null, '{}'::jsonb, '2030-01-01 00:30:00+00') $$,
  'one account, no keys: each row with its event, cost and metadata, at p_now');
-- The one-account path compares account ids as the items spell them; a JSON number with the
-- digits of the first item's id is not that id (creditkit_consume takes only strings).
select throws_ok(
  $$ select * from creditkit_consume_batch('[{"account_id": "12345678123456781234567812345678", "amount": 1},
                                             {"account_id": 12345678123456781234567812345678, "amount": 1}]', '2030-01-01 00:40:00+00') $$,
  'CK006', 'invalid argument: item 2: account id 12345678123456781234567812345678 is not a uuid',
  'an account id written as a number with the digits of the first item''s id: CK006 for that item');
select is(
  (select array[a.balance, (select count(*) from creditkit.ledger l where l.account_id = a.id and l.kind::text = 'consume')]
     from creditkit.accounts a where a.id = tests.get_supabase_uid('lena')),
  array[5, 5]::bigint[],
  'lena: balance 5 after five consume rows (the replay wrote none)');
select tests.clear_authentication();

-- =============================================================================================
-- A batch in another unit (p_unit): that unit's balance only; CK015 for one that holds no balance.
-- =============================================================================================
select tests.authenticate_as_service_role();
select creditkit_upsert_unit('tokens', 'Tokens');
select creditkit_upsert_unit('beta', 'Beta access', 'boolean');
select creditkit_grant(tests.get_supabase_uid('lena'), 5, p_unit => 'tokens', p_now => '2030-01-01 00:00:00+00');
select results_eq(
  $$ select allowed, balance from creditkit_consume_batch(jsonb_build_array(pg_temp.item('lena', 2), pg_temp.item('lena', 4)),
                                                            '2030-01-01 01:00:00+00', 'tokens') order by ordinal $$,
  $$ values (true, 3::bigint), (false, 3::bigint) $$,
  'a batch of tokens: 2 spent, then 4 more than the 3 left: blocked');
select is((select balance::bigint from creditkit.accounts where id = tests.get_supabase_uid('lena') and unit = 'credits'), 5::bigint,
  'lena''s credits untouched by the tokens batch');
select throws_ok($$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('lena', 1)), '2030-01-01 01:00:00+00', 'nope') $$,
  'CK015', null, 'batch: an unknown unit');
select throws_ok($$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('lena', 1)), '2030-01-01 01:00:00+00', 'beta') $$,
  'CK015', null, 'batch: a boolean unit');
select throws_ok($$ select * from creditkit_consume_batch(jsonb_build_array(pg_temp.item('lena', 1)), '2030-01-01 01:00:00+00', null) $$,
  'CK015', null, 'batch: a NULL unit');
select tests.clear_authentication();

-- =============================================================================================
-- The books balance over everything this file did.
-- =============================================================================================
select is_empty(
  $$ select a.id from creditkit.accounts a
      where a.balance <> (select coalesce(sum(l.amount), 0) from creditkit.ledger l where l.account_id = a.id and l.unit = a.unit)
         or a.balance <> (select coalesce(sum(g.remaining), 0) from creditkit.grants g where g.account_id = a.id and g.unit = a.unit) - a.undrawn
         or a.balance < 0 $$,
  'every account and unit: balance = ledger sum = sum of bucket remainders, never negative');

select * from finish();
rollback;
