-- ledger: the core ledger API as the server uses it (service role): grant, consume,
-- consume_or_raise, adjust, balance, history, the expiry sweep and idempotency keys.
--
-- Every call passes p_now, so expiry is tested at exact instants without clock tricks. Each
-- scenario uses its own account (a user made in this file), so the sections do not disturb each
-- other; the last section checks the ledger invariants over everything the file did.
begin;
select plan(75);

-- Fixtures: one user per scenario; a personal account's id is its user's id.
select tests.create_supabase_user('alice');   -- basics, blocked spends, history
select tests.create_supabase_user('bob');     -- spending to exactly zero
select tests.create_supabase_user('carol');   -- consumption order
select tests.create_supabase_user('dave');    -- expiry at the exact instant
select tests.create_supabase_user('erin');    -- expiry booked by a balance read
select tests.create_supabase_user('frank');   -- several buckets expiring in one booking
select tests.create_supabase_user('gina');    -- sweep
select tests.create_supabase_user('hank');    -- sweep
select tests.create_supabase_user('ivan');    -- sweep (not yet due)
select tests.create_supabase_user('jack');    -- idempotency
select tests.create_supabase_user('kate');    -- idempotency keys are per account

-- =============================================================================================
-- Service role: the server is the only caller of the mutations.
-- =============================================================================================
select tests.authenticate_as_service_role();

-- ---------------------------------------------------------------------------------------------
-- Grant, consume, adjust: each returns the new balance and appends one ledger row.
-- ---------------------------------------------------------------------------------------------
select is(
  (select balance from creditkit_grant(tests.get_supabase_uid('alice'), 100,
     p_now => '2030-01-01 00:00:00+00')),
  100::bigint, 'a first grant opens the account with that balance');
select is(
  (select row(allowed, balance)::text from creditkit_consume(tests.get_supabase_uid('alice'), 30,
     p_event => 'chat', p_now => '2030-01-01 00:01:00+00')),
  '(t,70)', 'consume spends and returns allowed=true with the new balance');
select is(
  (select balance from creditkit_adjust(tests.get_supabase_uid('alice'), -20, 'chargeback correction',
     p_now => '2030-01-01 00:02:00+00')),
  50::bigint, 'a negative adjustment takes credit away');
select is(
  (select balance from creditkit_adjust(tests.get_supabase_uid('alice'), 5, 'support goodwill',
     p_now => '2030-01-01 00:03:00+00')),
  55::bigint, 'a positive adjustment adds credit');
select is(
  (select balance from creditkit_consume_or_raise(tests.get_supabase_uid('alice'), 10,
     p_now => '2030-01-01 00:04:00+00')),
  45::bigint, 'consume_or_raise spends like consume when the balance covers it');

-- One row per change, signed amounts, and balance_after is the running balance.
select results_eq(
  $$ select kind::text, amount::bigint, balance_after::bigint, event
       from creditkit.ledger where account_id = tests.get_supabase_uid('alice') order by id $$,
  $$ values ('grant'::text, 100::bigint, 100::bigint, null::text),
            ('consume', -30, 70, 'chat'),
            ('adjust', -20, 50, null),
            ('adjust', 5, 55, null),
            ('consume', -10, 45, null) $$,
  'the ledger holds one signed row per change with the running balance_after');
select results_eq(
  $$ select balance::bigint, version from creditkit.accounts where id = tests.get_supabase_uid('alice') $$,
  $$ values (45::bigint, 5::bigint) $$,
  'the account row carries the balance and counts its ledger rows in version');

-- A positive adjustment is a bucket of its own (category adjustment, default priority 10, no
-- expiry), linked from its ledger row; the reason is kept in the metadata. The adjustment
-- bucket outranks the purchase, so the last consume of 10 emptied it first (5 + 5).
select results_eq(
  $$ select g.category, g.amount, g.remaining, g.priority, g.expires_at, l.metadata ->> 'reason'
       from tests.grants g join creditkit.ledger l on l.grant_id = g.id and l.kind = 'adjust'
      where g.account_id = tests.get_supabase_uid('alice') $$,
  $$ values ('adjustment'::text, 5::bigint, 0::bigint, 10, null::timestamptz, 'support goodwill'::text) $$,
  'a positive adjustment creates an adjustment bucket and records its reason');
select results_eq(
  $$ select balance, next_expiry, jsonb_array_length(buckets)
       from creditkit_balance(tests.get_supabase_uid('alice'), p_now => '2030-01-01 00:05:00+00') $$,
  $$ values (45::bigint, null::timestamptz, 1) $$,
  'creditkit_balance reports the spendable balance and the live buckets');

-- ---------------------------------------------------------------------------------------------
-- Blocked spends: a result (or CK002), never a negative balance, never a ledger row.
-- ---------------------------------------------------------------------------------------------
select is(
  (select row(allowed, balance, transaction_id)::text from creditkit_consume(tests.get_supabase_uid('alice'), 46,
     p_now => '2030-01-01 00:06:00+00')),
  '(f,45,)', 'a consume above the balance is blocked: allowed=false, balance unchanged, no transaction');
select throws_ok(
  $$ select creditkit_consume_or_raise(tests.get_supabase_uid('alice'), 46, p_now => '2030-01-01 00:06:00+00') $$,
  'CK002', null, 'consume_or_raise raises insufficient_credits instead');
select throws_ok(
  $$ select creditkit_adjust(tests.get_supabase_uid('alice'), -46, 'too much', p_now => '2030-01-01 00:06:00+00') $$,
  'CK002', null, 'a negative adjustment cannot take the balance below zero');
select results_eq(
  $$ select a.balance::bigint, a.version, (select count(*) from creditkit.ledger l where l.account_id = a.id)
       from creditkit.accounts a where a.id = tests.get_supabase_uid('alice') $$,
  $$ values (45::bigint, 5::bigint, 5::bigint) $$,
  'blocked spends wrote no ledger row and left the balance alone');

-- Spending to exactly zero is allowed; one more unit is not.
select is(
  (select balance from creditkit_grant(tests.get_supabase_uid('bob'), 10, p_now => '2030-01-01 00:00:00+00')),
  10::bigint, 'bob gets 10');
select is(
  (select row(allowed, balance)::text from creditkit_consume(tests.get_supabase_uid('bob'), 10,
     p_now => '2030-01-01 00:01:00+00')),
  '(t,0)', 'consuming the whole balance is allowed and leaves exactly 0');
select is(
  (select row(allowed, balance)::text from creditkit_consume(tests.get_supabase_uid('bob'), 1,
     p_now => '2030-01-01 00:02:00+00')),
  '(f,0)', 'at 0 even one unit is blocked');

-- ---------------------------------------------------------------------------------------------
-- Consumption order: soonest expiry first; equal expiry -> higher priority (explicit, else
-- promotional 30 > plan 20 > adjustment 10 > purchase 0); equal priority -> oldest; never
-- expiring credit last. Each bucket is tagged in its metadata so the order reads by name.
-- ---------------------------------------------------------------------------------------------
select creditkit_grant(tests.get_supabase_uid('carol'), 10, 'purchase', '2030-02-01 00:00:00+00',
  p_metadata => '{"tag":"purchase-old"}', p_now => '2030-01-01 00:00:00+00');
select creditkit_grant(tests.get_supabase_uid('carol'), 10, 'purchase', '2030-02-01 00:00:00+00',
  p_metadata => '{"tag":"purchase-new"}', p_now => '2030-01-01 01:00:00+00');
select creditkit_grant(tests.get_supabase_uid('carol'), 10, 'adjustment', '2030-02-01 00:00:00+00',
  p_metadata => '{"tag":"adjustment"}', p_now => '2030-01-01 00:00:00+00');
select creditkit_grant(tests.get_supabase_uid('carol'), 10, 'plan', '2030-02-01 00:00:00+00',
  p_metadata => '{"tag":"plan"}', p_now => '2030-01-01 00:00:00+00');
select creditkit_grant(tests.get_supabase_uid('carol'), 10, 'promotional', '2030-02-01 00:00:00+00',
  p_metadata => '{"tag":"promotional"}', p_now => '2030-01-01 00:00:00+00');
select creditkit_grant(tests.get_supabase_uid('carol'), 10, 'purchase', '2030-02-01 00:00:00+00', 100,
  p_metadata => '{"tag":"purchase-priority-100"}', p_now => '2030-01-01 00:00:00+00');
select creditkit_grant(tests.get_supabase_uid('carol'), 10, 'purchase', '2030-01-15 00:00:00+00',
  p_metadata => '{"tag":"purchase-expires-sooner"}', p_now => '2030-01-01 02:00:00+00');
select creditkit_grant(tests.get_supabase_uid('carol'), 10, 'promotional', null,
  p_metadata => '{"tag":"promotional-never-expires"}', p_now => '2030-01-01 00:00:00+00');

select is(
  (select array_agg(g.metadata ->> 'tag' order by b.ord)
     from creditkit_balance(tests.get_supabase_uid('carol'), p_now => '2030-01-02 00:00:00+00') cb
     cross join lateral jsonb_array_elements(cb.buckets) with ordinality as b(bucket, ord)
     join creditkit.grants g on g.id = (b.bucket ->> 'grant_id')::bigint),
  array['purchase-expires-sooner', 'purchase-priority-100', 'promotional', 'plan', 'adjustment',
        'purchase-old', 'purchase-new', 'promotional-never-expires'],
  'creditkit_balance lists the buckets in spend order');

select is(
  (select balance from creditkit_consume(tests.get_supabase_uid('carol'), 15, p_now => '2030-01-02 00:00:00+00')),
  65::bigint, 'carol spends 15');
select results_eq(
  $$ select metadata ->> 'tag', remaining from tests.grants
      where account_id = tests.get_supabase_uid('carol') and remaining < amount order by id $$,
  $$ values ('purchase-priority-100'::text, 5::bigint), ('purchase-expires-sooner', 0) $$,
  'the soonest-expiring bucket went first even though it is a purchase, then the highest priority');
select is(
  (select balance from creditkit_consume(tests.get_supabase_uid('carol'), 40, p_now => '2030-01-02 00:01:00+00')),
  25::bigint, 'carol spends 40 more');
select results_eq(
  $$ select metadata ->> 'tag', remaining from tests.grants
      where account_id = tests.get_supabase_uid('carol') order by id $$,
  $$ values ('purchase-old'::text, 5::bigint), ('purchase-new', 10), ('adjustment', 0), ('plan', 0),
            ('promotional', 0), ('purchase-priority-100', 0), ('purchase-expires-sooner', 0),
            ('promotional-never-expires', 10) $$,
  'then promotional > plan > adjustment > purchase, the older purchase first, never-expiring credit last');

-- ---------------------------------------------------------------------------------------------
-- Expiry at the exact instant: credit expiring at T is spendable at T - 1us and gone at T, even
-- though no sweep ran; the first touch at or after T books it as an 'expire' row.
-- ---------------------------------------------------------------------------------------------
select creditkit_grant(tests.get_supabase_uid('dave'), 50, 'purchase', p_now => '2030-01-01 00:00:00+00');
select creditkit_grant(tests.get_supabase_uid('dave'), 100, 'promotional', '2030-02-01 00:00:00+00',
  p_metadata => '{"tag":"promo"}', p_now => '2030-01-01 00:00:00+00');

select is(
  (select row(allowed, balance)::text from creditkit_consume(tests.get_supabase_uid('dave'), 30,
     p_now => '2030-01-31 23:59:59.999999+00')),
  '(t,120)', 'one microsecond before expiry the expiring credit is spent first');
select results_eq(
  $$ select balance, next_expiry from creditkit_balance(tests.get_supabase_uid('dave'),
       p_now => '2030-01-31 23:59:59.999999+00') $$,
  $$ values (120::bigint, '2030-02-01 00:00:00+00'::timestamptz) $$,
  'one microsecond before expiry the balance still counts it and names the expiry');
select is(
  (select count(*) from creditkit.ledger where account_id = tests.get_supabase_uid('dave') and kind = 'expire'),
  0::bigint, 'nothing is booked as expired before the expiry');
-- The live view (creditkit.live_buckets, behind every balance read) drops the bucket at T itself,
-- before anything has booked it.
select results_eq(
  $$ select balance, next_expiry from creditkit.live_buckets(tests.get_supabase_uid('dave'), 'credits', '2030-02-01 00:00:00+00') $$,
  $$ values (50::bigint, null::timestamptz) $$,
  'at the expiry instant the bucket is no longer live, even before it is booked');
select is(
  (select row(allowed, balance)::text from creditkit_consume(tests.get_supabase_uid('dave'), 55,
     p_now => '2030-02-01 00:00:00+00')),
  '(f,50)', 'at the expiry instant the remaining 70 are gone: 55 is blocked against the 50 left');
select is(
  (select row(allowed, balance)::text from creditkit_consume(tests.get_supabase_uid('dave'), 10,
     p_now => '2030-02-01 00:00:01+00')),
  '(t,40)', 'the unexpired credit is still spendable');
select results_eq(
  $$ select l.kind::text, l.amount::bigint, l.balance_after::bigint, g.metadata ->> 'tag', l.created_at
       from creditkit.ledger l left join creditkit.grants g on g.id = l.grant_id
      where l.account_id = tests.get_supabase_uid('dave') order by l.id $$,
  $$ values ('grant'::text, 50::bigint, 50::bigint, null::text, '2030-01-01 00:00:00+00'::timestamptz),
            ('grant', 100, 150, 'promo', '2030-01-01 00:00:00+00'),
            ('consume', -30, 120, null, '2030-01-31 23:59:59.999999+00'),
            ('expire', -70, 50, 'promo', '2030-02-01 00:00:00+00'),
            ('consume', -10, 40, null, '2030-02-01 00:00:01+00') $$,
  'the first touch at the expiry booked the remainder as one expire row (even though that consume was blocked)');
select results_eq(
  $$ select a.balance::bigint, a.due_at, g.remaining
       from creditkit.accounts a join creditkit.grants g on g.account_id = a.id and g.metadata ->> 'tag' = 'promo'
      where a.id = tests.get_supabase_uid('dave') $$,
  $$ values (40::bigint, null::timestamptz, 0::bigint) $$,
  'the expired bucket is emptied and the account has no pending expiry');

-- A balance read is a touch too: it books what expired.
select creditkit_grant(tests.get_supabase_uid('erin'), 20, 'plan', '2030-02-01 00:00:00+00',
  p_now => '2030-01-01 00:00:00+00');
select creditkit_grant(tests.get_supabase_uid('erin'), 5, 'purchase', p_now => '2030-01-01 00:00:00+00');
select results_eq(
  $$ select balance, next_expiry, jsonb_array_length(buckets)
       from creditkit_balance(tests.get_supabase_uid('erin'), p_now => '2030-02-01 00:00:00+00') $$,
  $$ values (5::bigint, null::timestamptz, 1) $$,
  'creditkit_balance at the expiry no longer counts the expired bucket');
select results_eq(
  $$ select kind::text, amount::bigint, balance_after::bigint from creditkit.ledger
      where account_id = tests.get_supabase_uid('erin') order by id $$,
  $$ values ('grant'::text, 20::bigint, 20::bigint), ('grant', 5, 25), ('expire', -20, 5) $$,
  'and books it as an expire row');

-- Several buckets expiring before one touch: one expire row each, in expiry order, each with the
-- balance after it.
select creditkit_grant(tests.get_supabase_uid('frank'), 100, 'promotional', '2030-02-01 00:00:00+00',
  p_now => '2030-01-01 00:00:00+00');
select creditkit_grant(tests.get_supabase_uid('frank'), 50, 'plan', '2030-01-20 00:00:00+00',
  p_now => '2030-01-01 00:00:00+00');
select creditkit_grant(tests.get_supabase_uid('frank'), 20, 'purchase', p_now => '2030-01-01 00:00:00+00');
select is(
  (select balance from creditkit_consume(tests.get_supabase_uid('frank'), 5, p_now => '2030-03-01 00:00:00+00')),
  15::bigint, 'after both expiries only the purchase is left to spend');
select results_eq(
  $$ select kind::text, amount::bigint, balance_after::bigint from creditkit.ledger
      where account_id = tests.get_supabase_uid('frank') order by id $$,
  $$ values ('grant'::text, 100::bigint, 100::bigint), ('grant', 50, 150), ('grant', 20, 170),
            ('expire', -50, 120), ('expire', -100, 20), ('consume', -5, 15) $$,
  'each expired bucket is booked as its own row, soonest expiry first, with a running balance_after');

-- ---------------------------------------------------------------------------------------------
-- The optional sweep (creditkit_book_expired) books expired credit without waiting for a touch.
-- Its accounts expire in 2029, before any other account of this file, so only they are due.
-- ---------------------------------------------------------------------------------------------
select creditkit_grant(tests.get_supabase_uid('gina'), 30, 'plan', '2029-12-01 00:00:00+00',
  p_now => '2029-11-01 00:00:00+00');
select creditkit_grant(tests.get_supabase_uid('gina'), 10, 'purchase', p_now => '2029-11-01 00:00:00+00');
select creditkit_grant(tests.get_supabase_uid('hank'), 20, 'promotional', '2029-12-01 00:00:00+00',
  p_now => '2029-11-01 00:00:00+00');
select creditkit_grant(tests.get_supabase_uid('ivan'), 20, 'promotional', '2029-12-02 00:00:00+00',
  p_now => '2029-11-01 00:00:00+00');

select is(creditkit_book_expired('2029-11-30 23:59:59.999999+00'), 0,
  'the sweep finds nothing due one microsecond before the expiry');
select is(creditkit_book_expired('2029-12-01 00:00:00+00', 1), 1, 'the sweep visits at most p_limit accounts');
select is(creditkit_book_expired('2029-12-01 00:00:00+00'), 1, 'the next run visits the other due account');
select is(creditkit_book_expired('2029-12-01 00:00:00+00'), 0, 'and then nothing is due any more');
select results_eq(
  $$ select u.who, l.kind::text, l.amount::bigint, l.balance_after::bigint
       from (values ('gina', 1), ('hank', 2), ('ivan', 3)) as u(who, n)
       join creditkit.ledger l on l.account_id = tests.get_supabase_uid(u.who)
      order by u.n, l.id $$,
  $$ values ('gina'::text, 'grant'::text, 30::bigint, 30::bigint), ('gina', 'grant', 10, 40),
            ('gina', 'expire', -30, 10),
            ('hank', 'grant', 20, 20), ('hank', 'expire', -20, 0),
            ('ivan', 'grant', 20, 20) $$,
  'the sweep booked one expire row per expired bucket and left credit that is not yet due');
select results_eq(
  $$ select u.who, a.balance::bigint, a.due_at
       from (values ('gina', 1), ('hank', 2), ('ivan', 3)) as u(who, n)
       join creditkit.accounts a on a.id = tests.get_supabase_uid(u.who)
      order by u.n $$,
  $$ values ('gina'::text, 10::bigint, null::timestamptz), ('hank', 0, null),
            ('ivan', 20, '2029-12-02 00:00:00+00') $$,
  'swept accounts have their balance and next expiry brought up to date');

-- ---------------------------------------------------------------------------------------------
-- Idempotency: a retry with the same key returns the first result and writes nothing; the same
-- key for a different request is CK004; keys are scoped to one account.
-- ---------------------------------------------------------------------------------------------
select creditkit_grant(tests.get_supabase_uid('jack'), 100, 'purchase', '2031-01-01 00:00:00+00',
  p_idempotency_key => 'pack-1', p_metadata => '{"order":"o-1"}', p_now => '2030-01-01 00:00:00+00');
select creditkit_consume(tests.get_supabase_uid('jack'), 10, 'chat',
  p_idempotency_key => 'req-1', p_metadata => '{"model":"small"}', p_now => '2030-01-01 00:01:00+00');
select creditkit_adjust(tests.get_supabase_uid('jack'), 7, 'refund of req-0',
  p_idempotency_key => 'adj-1', p_now => '2030-01-01 00:02:00+00');
select creditkit_consume(tests.get_supabase_uid('jack'), 5, 'chat',
  p_idempotency_key => 'req-2', p_now => '2030-01-01 00:03:00+00');

-- Replays come later (p_now differs, as a real retry's would) and after other changes; they
-- return the first call's transaction and balance_after, not the current balance.
select results_eq(
  $$ select transaction_id, grant_id, balance
       from creditkit_grant(tests.get_supabase_uid('jack'), 100, 'purchase', '2031-01-01 00:00:00+00',
              p_idempotency_key => 'pack-1', p_metadata => '{"order":"o-1"}', p_now => '2030-01-02 00:00:00+00') $$,
  $$ select id, grant_id, balance_after::bigint from creditkit.ledger
      where account_id = tests.get_supabase_uid('jack') and idempotency_key = 'pack-1' $$,
  'a replayed grant returns the first transaction, bucket and balance');
select results_eq(
  $$ select allowed, balance, transaction_id
       from creditkit_consume(tests.get_supabase_uid('jack'), 10, 'chat',
              p_idempotency_key => 'req-1', p_metadata => '{"model":"small"}', p_now => '2030-01-02 00:00:00+00') $$,
  $$ select true, balance_after::bigint, id from creditkit.ledger
      where account_id = tests.get_supabase_uid('jack') and idempotency_key = 'req-1' $$,
  'a replayed consume returns the first transaction and balance');
select results_eq(
  $$ select balance, transaction_id
       from creditkit_consume_or_raise(tests.get_supabase_uid('jack'), 10, 'chat',
              p_idempotency_key => 'req-1', p_metadata => '{"model":"small"}', p_now => '2030-01-02 00:00:00+00') $$,
  $$ select balance_after::bigint, id from creditkit.ledger
      where account_id = tests.get_supabase_uid('jack') and idempotency_key = 'req-1' $$,
  'consume_or_raise shares the key space of consume and replays it');
select results_eq(
  $$ select transaction_id, balance
       from creditkit_adjust(tests.get_supabase_uid('jack'), 7, 'refund of req-0',
              p_idempotency_key => 'adj-1', p_now => '2030-01-02 00:00:00+00') $$,
  $$ select id, balance_after::bigint from creditkit.ledger
      where account_id = tests.get_supabase_uid('jack') and idempotency_key = 'adj-1' $$,
  'a replayed adjustment returns the first transaction and balance');

select throws_ok(
  $$ select creditkit_consume(tests.get_supabase_uid('jack'), 11, 'chat',
       p_idempotency_key => 'req-1', p_metadata => '{"model":"small"}', p_now => '2030-01-02 00:00:00+00') $$,
  'CK004', null, 'same key, different amount: CK004');
select throws_ok(
  $$ select creditkit_consume(tests.get_supabase_uid('jack'), 10, 'image',
       p_idempotency_key => 'req-1', p_metadata => '{"model":"small"}', p_now => '2030-01-02 00:00:00+00') $$,
  'CK004', null, 'same key, different event: CK004');
select throws_ok(
  $$ select creditkit_consume(tests.get_supabase_uid('jack'), 10, 'chat',
       p_idempotency_key => 'req-1', p_metadata => '{"model":"large"}', p_now => '2030-01-02 00:00:00+00') $$,
  'CK004', null, 'same key, different metadata: CK004');
select throws_ok(
  $$ select creditkit_grant(tests.get_supabase_uid('jack'), 10,
       p_idempotency_key => 'req-1', p_now => '2030-01-02 00:00:00+00') $$,
  'CK004', null, 'same key, different kind (a consume key reused for a grant): CK004');
select throws_ok(
  $$ select creditkit_adjust(tests.get_supabase_uid('jack'), -10, 'x',
       p_idempotency_key => 'req-1', p_now => '2030-01-02 00:00:00+00') $$,
  'CK004', null, 'same key, different kind (a consume key reused for an adjustment): CK004');
select throws_ok(
  $$ select creditkit_grant(tests.get_supabase_uid('jack'), 101, 'purchase', '2031-01-01 00:00:00+00',
       p_idempotency_key => 'pack-1', p_metadata => '{"order":"o-1"}', p_now => '2030-01-02 00:00:00+00') $$,
  'CK004', null, 'a grant key replayed with a different amount: CK004');
select throws_ok(
  $$ select creditkit_grant(tests.get_supabase_uid('jack'), 100, 'promotional', '2031-01-01 00:00:00+00',
       p_idempotency_key => 'pack-1', p_metadata => '{"order":"o-1"}', p_now => '2030-01-02 00:00:00+00') $$,
  'CK004', null, 'a grant key replayed with a different category: CK004');
select throws_ok(
  $$ select creditkit_grant(tests.get_supabase_uid('jack'), 100, 'purchase', '2031-06-01 00:00:00+00',
       p_idempotency_key => 'pack-1', p_metadata => '{"order":"o-1"}', p_now => '2030-01-02 00:00:00+00') $$,
  'CK004', null, 'a grant key replayed with a different expiry: CK004');
select throws_ok(
  $$ select creditkit_adjust(tests.get_supabase_uid('jack'), 7, 'a different reason',
       p_idempotency_key => 'adj-1', p_now => '2030-01-02 00:00:00+00') $$,
  'CK004', null, 'an adjustment key replayed with a different reason: CK004');
select results_eq(
  $$ select a.balance::bigint, a.version, (select count(*) from creditkit.ledger l where l.account_id = a.id)
       from creditkit.accounts a where a.id = tests.get_supabase_uid('jack') $$,
  $$ values (92::bigint, 4::bigint, 4::bigint) $$,
  'replays and conflicts wrote nothing: still four rows and the same balance');

-- Keys are per account: kate may use jack's key for her own grant.
select isnt(
  (select transaction_id from creditkit_grant(tests.get_supabase_uid('kate'), 100,
     p_idempotency_key => 'pack-1', p_now => '2030-01-01 00:00:00+00')),
  (select id from creditkit.ledger where account_id = tests.get_supabase_uid('jack') and idempotency_key = 'pack-1'),
  'the same key on another account is a new transaction');
select is(
  (select balance::bigint from creditkit.accounts where id = tests.get_supabase_uid('kate')),
  100::bigint, 'and credits that account');

-- A blocked consume does not use up its key: once credit arrives the retry goes through.
select is(
  (select allowed from creditkit_consume(tests.get_supabase_uid('kate'), 150,
     p_idempotency_key => 'big-job', p_now => '2030-01-01 00:01:00+00')),
  false, 'a consume with a key can be blocked');
select creditkit_grant(tests.get_supabase_uid('kate'), 100, p_now => '2030-01-01 00:02:00+00');
select is(
  (select row(allowed, balance)::text from creditkit_consume(tests.get_supabase_uid('kate'), 150,
     p_idempotency_key => 'big-job', p_now => '2030-01-01 00:03:00+00')),
  '(t,50)', 'the same key goes through once the balance covers it');

-- ---------------------------------------------------------------------------------------------
-- History: newest first, keyset pagination on the ledger id (pass the last id of a page).
-- alice has five rows.
-- ---------------------------------------------------------------------------------------------
select results_eq(
  $$ select id, kind, amount, balance_after, grant_id, event, idempotency_key, metadata, created_at
       from creditkit_history(tests.get_supabase_uid('alice')) $$,
  $$ select id, kind::text, amount::bigint, balance_after::bigint, grant_id, event, idempotency_key, metadata, created_at
       from creditkit.ledger where account_id = tests.get_supabase_uid('alice') order by id desc $$,
  'history returns the ledger rows newest first');
select results_eq(
  $$ select id from creditkit_history(tests.get_supabase_uid('alice'), 2) $$,
  $$ select id from creditkit.ledger where account_id = tests.get_supabase_uid('alice')
      order by id desc limit 2 $$,
  'page 1: the two newest rows');
select results_eq(
  $$ select id from creditkit_history(tests.get_supabase_uid('alice'), 2,
       (select min(id) from creditkit_history(tests.get_supabase_uid('alice'), 2))) $$,
  $$ select id from creditkit.ledger where account_id = tests.get_supabase_uid('alice')
      order by id desc offset 2 limit 2 $$,
  'page 2 starts below the last id of page 1');
select results_eq(
  $$ select kind, amount from creditkit_history(tests.get_supabase_uid('alice'), 2,
       (select min(id) from creditkit_history(tests.get_supabase_uid('alice'), 4))) $$,
  $$ values ('grant'::text, 100::bigint) $$,
  'the last page holds the remaining (oldest) row');
select is_empty(
  $$ select id from creditkit_history(tests.get_supabase_uid('alice'), 2,
       (select min(id) from creditkit.ledger where account_id = tests.get_supabase_uid('alice'))) $$,
  'a page below the oldest row is empty');

-- ---------------------------------------------------------------------------------------------
-- A grant retried after its bucket expired (a late webhook retry) replays; it does not fail.
-- ---------------------------------------------------------------------------------------------
select is(
  (select row(r1.transaction_id, r1.balance)::text
     from creditkit_grant(tests.get_supabase_uid('kate'), 30, 'plan', '2030-02-01 00:00:00+00',
                          p_idempotency_key => 'in_late', p_now => '2030-01-01 00:00:00+00') r1),
  (select row(r2.transaction_id, r2.balance)::text
     from creditkit_grant(tests.get_supabase_uid('kate'), 30, 'plan', '2030-02-01 00:00:00+00',
                          p_idempotency_key => 'in_late', p_now => '2030-03-01 00:00:00+00') r2),
  'a grant retried after its expiry returns the first result');
select throws_ok(
  $$ select creditkit_grant(tests.get_supabase_uid('kate'), 30, 'plan', '2030-02-01 00:00:00+00',
                            p_idempotency_key => 'in_late_new', p_now => '2030-03-01 00:00:00+00') $$,
  'CK006', null, 'a new grant that is already expired is refused');

-- ---------------------------------------------------------------------------------------------
-- The range rules hold for every writer, the owner included (as domains, so that no
-- write re-reads CHECK constraints). Each attempt fails and changes nothing.
-- ---------------------------------------------------------------------------------------------
select tests.clear_authentication(); -- the owner: client roles cannot write these tables at all
select throws_ok(
  $$ update creditkit.accounts set balance = -1 where id = tests.get_supabase_uid('alice') $$,
  '23514', null, 'the owner cannot write a negative balance');
select throws_ok(
  $$ update creditkit.accounts set held = 9007199254740992 where id = tests.get_supabase_uid('alice') $$,
  '23514', null, 'the owner cannot hold more than 2^53-1');
select throws_ok(
  $$ update creditkit.accounts set undrawn = -1 where id = tests.get_supabase_uid('alice') $$,
  '23514', null, 'the owner cannot write a negative undrawn');
select throws_ok(
  $$ insert into creditkit.ledger (account_id, kind, amount, balance_after)
     values (tests.get_supabase_uid('alice'), 'consume', 0, 45) $$,
  '23514', null, 'a ledger row cannot record a change of zero');
select throws_ok(
  $$ insert into creditkit.ledger (account_id, kind, amount, balance_after)
     values (tests.get_supabase_uid('alice'), 'refund', 1, 46) $$,
  '23514', null, 'a ledger row cannot have an unknown kind');
select throws_ok(
  $$ insert into creditkit.ledger (account_id, kind, amount, balance_after)
     values (tests.get_supabase_uid('alice'), 'consume', -46, -1) $$,
  '23514', null, 'a ledger row cannot record a negative balance_after');
select throws_ok(
  $$ insert into creditkit.ledger (account_id, kind, amount, balance_after, cost_micros)
     values (tests.get_supabase_uid('alice'), 'consume', -1, 44, -1) $$,
  '23514', null, 'a ledger row cannot record a negative cost');
select throws_ok(
  $$ insert into creditkit.ledger (account_id, kind, amount, balance_after, revenue_micros)
     values (tests.get_supabase_uid('alice'), 'grant', 1, 46, 9007199254740992) $$,
  '23514', null, 'a ledger row cannot record revenue above 2^53-1');
select is_empty(
  $$ select conname from pg_constraint
      where conrelid in ('creditkit.accounts'::regclass, 'creditkit.ledger'::regclass) and contype = 'c' $$,
  'the tables every consume writes carry no CHECK constraint (domains hold their rules)');
select tests.authenticate_as_service_role();

-- ---------------------------------------------------------------------------------------------
-- Invariants over every account this file touched.
-- ---------------------------------------------------------------------------------------------
select is_empty(
  $$ select a.id from creditkit.accounts a
      where a.balance <> (select coalesce(sum(l.amount), 0) from creditkit.ledger l where l.account_id = a.id)
         or a.balance <> (select coalesce(sum(g.remaining), 0) from creditkit.grants g where g.account_id = a.id) - a.undrawn
         or a.version <> (select count(*) from creditkit.ledger l where l.account_id = a.id) $$,
  'for every account: balance = sum(ledger.amount) = sum(grants.remaining), version = number of rows');
select is_empty(
  $$ select l.id from (
       select id, balance_after, sum(amount) over (partition by account_id order by id) as running
         from creditkit.ledger) l
      where l.balance_after <> l.running $$,
  'every ledger row''s balance_after is the running sum of its account''s amounts');

select tests.clear_authentication();

select * from finish();
rollback;
