-- pricing: the price list (event -> credits per unit, by dimensions, in versions) and
-- creditkit_meter / creditkit_quote.
--
-- Lookup rule under test: among the event's prices in force at t (the newest version of each
-- dimension set with effective_from <= t) whose dimensions are all present in the call, the one
-- with the most dimension keys wins; '{}' is the catch-all default. Every price is set with an
-- explicit effective_from and every call passes p_now, so versions switch at exact instants.
begin;
select plan(79);

select tests.create_supabase_user('alice');   -- meters, reads her ledger as a member
select tests.create_supabase_user('bob');     -- too little credit: blocked meters
select tests.create_supabase_user('carol');   -- idempotency

-- =============================================================================================
-- Service role: the price list.
-- =============================================================================================
select tests.authenticate_as_service_role();

-- image_gen: a default and two more specific dimension sets, all from 2030-01-01; the default
-- gets a second version from 2030-06-01.
create temporary table ck_price (name text primary key, id bigint);
grant select, insert on ck_price to service_role, authenticated;
insert into ck_price values
  ('default_v1', creditkit_set_price('image_gen', 4, '{}', '2030-01-01 00:00:00+00')),
  ('hd',         creditkit_set_price('image_gen', 10, '{"quality": "hd"}', '2030-01-01 00:00:00+00')),
  ('hd_xl',      creditkit_set_price('image_gen', 25, '{"quality": "hd", "size": "xl"}', '2030-01-01 00:00:00+00')),
  ('default_v2', creditkit_set_price('image_gen', 5, '{}', '2030-06-01 00:00:00+00')),
  -- a dimension set that only exists from 2030-09-01
  ('draft',      creditkit_set_price('image_gen', 1, '{"quality": "draft"}', '2030-09-01 00:00:00+00')),
  -- chat has no default: only the small model is priced
  ('chat_small', creditkit_set_price('chat', 1, '{"model": "small"}', '2030-01-01 00:00:00+00')),
  -- 2^52 per unit: two units pass 2^53-1
  ('expensive',  creditkit_set_price('expensive', 4503599627370496, '{}', '2030-01-01 00:00:00+00'));

select results_eq(
  $$ select p.event, p.dimensions, p.credits_per_unit, p.effective_from
       from creditkit.prices p join ck_price c on c.id = p.id where c.name in ('default_v1', 'hd_xl') order by p.id $$,
  $$ values ('image_gen'::text, '{}'::jsonb, 4::bigint, '2030-01-01 00:00:00+00'::timestamptz),
            ('image_gen', '{"quality": "hd", "size": "xl"}', 25, '2030-01-01 00:00:00+00') $$,
  'set_price stores a version and returns its id');

-- ---------------------------------------------------------------------------------------------
-- Most specific wins; dimensions the price does not mention do not stop it from matching.
-- ---------------------------------------------------------------------------------------------
select results_eq(
  $$ select q.price_id, q.unit_credits, q.amount from creditkit_quote('image_gen', 3, '{}', '2030-02-01 00:00:00+00') q $$,
  $$ select id, 4::bigint, 12::bigint from ck_price where name = 'default_v1' $$,
  'quote without dimensions: the default price, times the quantity (3 x 4)');
select results_eq(
  $$ select q.price_id, q.unit_credits from creditkit_quote('image_gen', 1, '{"quality": "hd"}', '2030-02-01 00:00:00+00') q $$,
  $$ select id, 10::bigint from ck_price where name = 'hd' $$,
  'a matching dimension set beats the default');
select results_eq(
  $$ select q.price_id, q.unit_credits from creditkit_quote('image_gen', 1, '{"quality": "hd", "size": "xl"}', '2030-02-01 00:00:00+00') q $$,
  $$ select id, 25::bigint from ck_price where name = 'hd_xl' $$,
  'two matching keys beat one');
select results_eq(
  $$ select q.price_id, q.unit_credits from creditkit_quote('image_gen', 1, '{"quality": "hd", "size": "s"}', '2030-02-01 00:00:00+00') q $$,
  $$ select id, 10::bigint from ck_price where name = 'hd' $$,
  'a set with a different value does not match (size s is not xl): the hd price');
select results_eq(
  $$ select q.price_id, q.unit_credits from creditkit_quote('image_gen', 1, '{"size": "xl"}', '2030-02-01 00:00:00+00') q $$,
  $$ select id, 4::bigint from ck_price where name = 'default_v1' $$,
  'a price matches only when all its dimensions are present: size alone falls back to the default');
select results_eq(
  $$ select q.price_id, q.unit_credits
       from creditkit_quote('image_gen', 1, '{"quality": "hd", "size": "xl", "seed": 42, "nsfw": false}', '2030-02-01 00:00:00+00') q $$,
  $$ select id, 25::bigint from ck_price where name = 'hd_xl' $$,
  'extra dimensions in the call still match the most specific price');

-- ---------------------------------------------------------------------------------------------
-- Versions: a new effective_from applies from that instant on, per dimension set.
-- ---------------------------------------------------------------------------------------------
select results_eq(
  $$ select (select unit_credits from creditkit_quote('image_gen', 1, '{}', '2030-05-31 23:59:59.999999+00')),
            (select unit_credits from creditkit_quote('image_gen', 1, '{}', '2030-06-01 00:00:00+00')),
            (select unit_credits from creditkit_quote('image_gen', 1, '{"quality": "hd"}', '2030-06-01 00:00:00+00')) $$,
  $$ values (4::bigint, 5::bigint, 10::bigint) $$,
  'the default''s second version applies from 2030-06-01 exactly; the hd price has no new version and stays');
select results_eq(
  $$ select (select unit_credits from creditkit_quote('image_gen', 1, '{"quality": "draft"}', '2030-08-31 23:59:59.999999+00')),
            (select unit_credits from creditkit_quote('image_gen', 1, '{"quality": "draft"}', '2030-09-01 00:00:00+00')) $$,
  $$ values (5::bigint, 1::bigint) $$,
  'a dimension set priced from a later date is not in force before it: the default applies until then');
-- The same (event, dimensions, effective_from) again replaces that version in place.
select is(creditkit_set_price('image_gen', 26, '{"quality": "hd", "size": "xl"}', '2030-01-01 00:00:00+00'),
  (select id from ck_price where name = 'hd_xl'), 'setting the same version again keeps its id');
select is((select credits_per_unit from creditkit.prices where id = (select id from ck_price where name = 'hd_xl')),
  26::bigint, 'and replaces its price');

-- ---------------------------------------------------------------------------------------------
-- Meter: prices and spends in one call; the ledger row keeps the unit price and price id it paid.
-- ---------------------------------------------------------------------------------------------
select creditkit_grant(tests.get_supabase_uid('alice'), 1000, p_now => '2030-01-01 00:00:00+00');

select results_eq(
  $$ select allowed, balance, amount from creditkit_meter(tests.get_supabase_uid('alice'), 'image_gen', 3,
       '{"quality": "hd"}', p_cost_micros => 12000, p_now => '2030-02-01 00:00:00+00') $$,
  $$ values (true, 970::bigint, 30::bigint) $$,
  'meter: 3 x hd (10) = 30 spent');
select results_eq(
  $$ select m.allowed, m.balance, m.amount from creditkit_meter(tests.get_supabase_uid('alice'), 'image_gen',
       p_now => '2030-03-01 00:00:00+00') m $$,
  $$ values (true, 966::bigint, 4::bigint) $$,
  'meter with the defaults (1 unit, no dimensions) before the new version: 4');
select results_eq(
  $$ select m.allowed, m.balance, m.amount from creditkit_meter(tests.get_supabase_uid('alice'), 'image_gen',
       p_now => '2030-06-01 00:00:00+00') m $$,
  $$ values (true, 961::bigint, 5::bigint) $$,
  'the same call from 2030-06-01 pays the new version: 5');
select results_eq(
  $$ select l.kind::text, l.amount::bigint, l.event, l.metadata ->> 'quantity', l.metadata -> 'dimensions',
            (l.metadata ->> 'unit_credits')::bigint, (l.metadata ->> 'price_id')::bigint, l.cost_micros::bigint, l.created_at
       from creditkit.ledger l where l.account_id = tests.get_supabase_uid('alice') and l.kind = 'consume' order by l.id $$,
  $$ values ('consume'::text, -30::bigint, 'image_gen'::text, '3'::text, '{"quality": "hd"}'::jsonb, 10::bigint,
             (select id from ck_price where name = 'hd'), 12000::bigint, '2030-02-01 00:00:00+00'::timestamptz),
            ('consume', -4, 'image_gen', '1', '{}', 4, (select id from ck_price where name = 'default_v1'), null,
             '2030-03-01 00:00:00+00'),
            ('consume', -5, 'image_gen', '1', '{}', 5, (select id from ck_price where name = 'default_v2'), null,
             '2030-06-01 00:00:00+00') $$,
  'each consume row keeps what was asked, the unit price and price id it paid, and the cost; old rows are not re-priced');

-- Unknown events: no price at all, no default for these dimensions, or not yet in force.
select throws_ok($$ select creditkit_meter(tests.get_supabase_uid('alice'), 'video_gen', p_now => '2030-07-01 00:00:00+00') $$,
  'CK010', null, 'meter: an event with no price is CK010');
select throws_ok($$ select creditkit_meter(tests.get_supabase_uid('alice'), 'chat', p_now => '2030-07-01 00:00:00+00') $$,
  'CK010', null, 'meter: an event priced only for other dimensions (no default) is CK010');
select throws_ok(
  $$ select creditkit_meter(tests.get_supabase_uid('alice'), 'chat', 1, '{"model": "large"}', p_now => '2030-07-01 00:00:00+00') $$,
  'CK010', null, 'meter: a dimension value nobody priced is CK010');
select throws_ok(
  $$ select creditkit_meter(tests.get_supabase_uid('alice'), 'image_gen', p_now => '2029-12-31 23:59:59.999999+00') $$,
  'CK010', null, 'meter: 1us before the first version is in force there is no price');
select throws_ok($$ select creditkit_quote('video_gen', p_now => '2030-07-01 00:00:00+00') $$,
  'CK010', null, 'quote: an event with no price is CK010');
select is(
  (select amount from creditkit_meter(tests.get_supabase_uid('alice'), 'chat', 7, '{"model": "small"}', p_now => '2030-07-01 00:00:00+00')),
  7::bigint, 'the priced dimension set of chat meters fine');

-- quantity x price above 2^53-1 is CK001 (2 x 2^52 = 2^53), before any balance check.
select throws_ok($$ select creditkit_meter(tests.get_supabase_uid('alice'), 'expensive', 2, p_now => '2030-07-01 00:00:00+00') $$,
  'CK001', null, 'meter: quantity x price above 2^53-1 is CK001');
select throws_ok($$ select creditkit_quote('expensive', 2, p_now => '2030-07-01 00:00:00+00') $$,
  'CK001', null, 'quote: quantity x price above 2^53-1 is CK001');
select throws_ok($$ select creditkit_meter(tests.get_supabase_uid('alice'), 'image_gen', 9007199254740991, p_now => '2030-07-01 00:00:00+00') $$,
  'CK001', null, 'meter: a large quantity times a small price overflowing is CK001');
select results_eq(
  $$ select allowed, balance, amount from creditkit_meter(tests.get_supabase_uid('alice'), 'expensive', 1, p_now => '2030-07-01 00:00:00+00') $$,
  $$ values (false, 954::bigint, 4503599627370496::bigint) $$,
  'one unit (2^52) is a valid amount, just more than she has: blocked, with the price it would cost');

-- Blocked: a result, not an error; nothing spent, no row.
select creditkit_grant(tests.get_supabase_uid('bob'), 3, p_now => '2030-01-01 00:00:00+00');
select results_eq(
  $$ select allowed, balance, transaction_id, amount from creditkit_meter(tests.get_supabase_uid('bob'), 'image_gen',
       p_now => '2030-02-01 00:00:00+00') $$,
  $$ values (false, 3::bigint, null::bigint, 4::bigint) $$,
  'meter above the balance is blocked: allowed=false, no transaction, the amount it would have cost');
select is((select count(*) from creditkit.ledger where account_id = tests.get_supabase_uid('bob')), 1::bigint,
  'a blocked meter writes no ledger row');

-- ---------------------------------------------------------------------------------------------
-- Idempotency: a retry is matched on what was asked (event, quantity, dimensions, metadata,
-- cost), not on the price, which may have changed in between.
-- ---------------------------------------------------------------------------------------------
select creditkit_grant(tests.get_supabase_uid('carol'), 100, p_now => '2030-07-01 00:00:00+00');
create temporary table ck_first as
  select * from creditkit_meter(tests.get_supabase_uid('carol'), 'image_gen', 2, '{}', 'job-1', 1500,
                                '{"request": "r-1"}', '2030-07-01 00:00:00+00');
grant select on ck_first to service_role;
select results_eq('select allowed, balance, amount from ck_first', $$ values (true, 90::bigint, 10::bigint) $$,
  'first call: 2 x 5 = 10');
select creditkit_set_price('image_gen', 7, '{}', '2030-07-02 00:00:00+00');
select results_eq(
  $$ select allowed, balance, transaction_id, amount from creditkit_meter(tests.get_supabase_uid('carol'), 'image_gen', 2,
       '{}', 'job-1', 1500, '{"request": "r-1"}', '2030-07-03 00:00:00+00') $$,
  'select allowed, balance, transaction_id, amount from ck_first',
  'a retry after a price change returns the first result (10, not 14)');
select results_eq(
  $$ select balance::bigint, version from creditkit.accounts where id = tests.get_supabase_uid('carol') $$,
  $$ values (90::bigint, 2::bigint) $$,
  'and spends nothing more');
select throws_ok(
  $$ select creditkit_meter(tests.get_supabase_uid('carol'), 'image_gen', 3, '{}', 'job-1', 1500, '{"request": "r-1"}', '2030-07-03 00:00:00+00') $$,
  'CK004', null, 'same key, different quantity: CK004');
select throws_ok(
  $$ select creditkit_meter(tests.get_supabase_uid('carol'), 'image_gen', 2, '{"quality": "hd"}', 'job-1', 1500, '{"request": "r-1"}', '2030-07-03 00:00:00+00') $$,
  'CK004', null, 'same key, different dimensions: CK004');
select throws_ok(
  $$ select creditkit_meter(tests.get_supabase_uid('carol'), 'image_gen', 2, '{}', 'job-1', 1600, '{"request": "r-1"}', '2030-07-03 00:00:00+00') $$,
  'CK004', null, 'same key, different cost: CK004');
select throws_ok(
  $$ select creditkit_meter(tests.get_supabase_uid('carol'), 'image_gen', 2, '{}', 'job-1', null, '{"request": "r-1"}', '2030-07-03 00:00:00+00') $$,
  'CK004', null, 'same key, cost left out: CK004');
select throws_ok(
  $$ select creditkit_meter(tests.get_supabase_uid('carol'), 'chat', 2, '{"model": "small"}', 'job-1', 1500, '{"request": "r-1"}', '2030-07-03 00:00:00+00') $$,
  'CK004', null, 'same key, different event: CK004');
select throws_ok(
  $$ select creditkit_meter(tests.get_supabase_uid('carol'), 'image_gen', 2, '{}', 'job-1', 1500, '{"request": "r-2"}', '2030-07-03 00:00:00+00') $$,
  'CK004', null, 'same key, different metadata: CK004');
select creditkit_consume(tests.get_supabase_uid('carol'), 1, 'image_gen', 'plain-1', p_now => '2030-07-03 00:00:00+00');
select throws_ok(
  $$ select creditkit_meter(tests.get_supabase_uid('carol'), 'image_gen', 1, '{}', 'plain-1', p_now => '2030-07-03 00:00:00+00') $$,
  'CK004', null, 'a key used by a plain consume cannot be replayed as a meter');
select results_eq(
  $$ select balance::bigint, version from creditkit.accounts where id = tests.get_supabase_uid('carol') $$,
  $$ values (89::bigint, 3::bigint) $$,
  'conflicts spent nothing (only the plain consume of 1 went through)');

-- =============================================================================================
-- Member (alice): quotes, reads her ledger without the money columns, cannot meter or price.
-- =============================================================================================
select tests.authenticate_as('alice');

select results_eq(
  $$ select q.price_id, q.unit_credits, q.amount from creditkit_quote('image_gen', 3, '{"quality": "hd"}', '2030-02-01 00:00:00+00') q $$,
  $$ select id, 10::bigint, 30::bigint from ck_price where name = 'hd' $$,
  'quote works for a signed-in user');
select is((select unit_credits from creditkit_quote('image_gen', p_now => '2030-07-02 00:00:00+00')), 7::bigint,
  'quote as a member sees the current version');
select ok((select count(*) >= 8 from creditkit.prices), 'signed-in users can read the price list');
select results_eq(
  $$ select (metadata ->> 'unit_credits')::bigint from creditkit.ledger where kind = 'consume' order by id limit 1 $$,
  $$ values (10::bigint) $$,
  'she can see the unit price she paid');
select throws_ok($$ select cost_micros from creditkit.ledger $$, '42501', null,
  'she cannot read what her usage cost the operator (ledger.cost_micros)');
select throws_ok($$ select * from creditkit.ledger $$, '42501', null,
  'nor through select * (column privilege, not RLS)');
select throws_ok($$ select creditkit_meter(tests.get_supabase_uid('alice'), 'image_gen', p_now => '2030-07-01 00:00:00+00') $$,
  '42501', null, 'a member cannot meter');
select throws_ok($$ select creditkit_set_price('image_gen', 1, '{}', '2030-07-01 00:00:00+00') $$,
  '42501', null, 'a member cannot set a price');

-- =============================================================================================
-- Anon: no prices, no quotes.
-- =============================================================================================
select tests.authenticate_as_anon();

select throws_ok($$ select creditkit_quote('image_gen', p_now => '2030-07-01 00:00:00+00') $$, '42501', null,
  'anon cannot quote');
select throws_ok($$ select count(*) from creditkit.prices $$, '42501', null, 'anon cannot read the price list');
select throws_ok($$ select creditkit_meter(tests.get_supabase_uid('alice'), 'image_gen', p_now => '2030-07-01 00:00:00+00') $$,
  '42501', null, 'anon cannot meter');

-- =============================================================================================
-- Bad input (service role): a code, and no price, ledger row or balance changed.
-- =============================================================================================
select tests.clear_authentication();
create temporary view ck_state as
  select (select count(*) from creditkit.prices) as prices,
         (select coalesce(sum(credits_per_unit), 0) from creditkit.prices) as price_sum,
         (select count(*) from creditkit.ledger) as ledger_rows,
         (select count(*) from creditkit.accounts) as accounts,
         (select coalesce(sum(balance), 0) from creditkit.accounts) as total_balance;
create temporary table ck_before as select * from ck_state;
grant select on ck_state, ck_before to service_role;
select tests.authenticate_as_service_role();

-- set_price
select throws_ok($$ select creditkit_set_price(null, 1, '{}', '2030-01-01 00:00:00+00') $$, 'CK006', null, 'set_price: NULL event');
select throws_ok($$ select creditkit_set_price('  ', 1, '{}', '2030-01-01 00:00:00+00') $$, 'CK006', null, 'set_price: blank event');
select throws_ok($$ select creditkit_set_price(repeat('e', 201), 1, '{}', '2030-01-01 00:00:00+00') $$, 'CK006', null, 'set_price: 201-character event');
select throws_ok($$ select creditkit_set_price('image_gen', 0, '{}', '2030-01-01 00:00:00+00') $$, 'CK001', null, 'set_price: zero credits');
select throws_ok($$ select creditkit_set_price('image_gen', -1, '{}', '2030-01-01 00:00:00+00') $$, 'CK001', null, 'set_price: negative credits');
select throws_ok($$ select creditkit_set_price('image_gen', null, '{}', '2030-01-01 00:00:00+00') $$, 'CK001', null, 'set_price: NULL credits');
select throws_ok($$ select creditkit_set_price('image_gen', 9007199254740992, '{}', '2030-01-01 00:00:00+00') $$, 'CK001', null, 'set_price: credits 2^53');
select throws_ok($$ select creditkit_set_price('image_gen', 1, null, '2030-01-01 00:00:00+00') $$, 'CK006', null, 'set_price: NULL dimensions');
select throws_ok($$ select creditkit_set_price('image_gen', 1, '["hd"]', '2030-01-01 00:00:00+00') $$, 'CK006', null, 'set_price: dimensions is an array');
select throws_ok($$ select creditkit_set_price('image_gen', 1, '{"quality": {"v": "hd"}}', '2030-01-01 00:00:00+00') $$, 'CK006', null, 'set_price: a nested dimension value');
select throws_ok($$ select creditkit_set_price('image_gen', 1, '{"quality": null}', '2030-01-01 00:00:00+00') $$, 'CK006', null, 'set_price: a null dimension value');
select throws_ok($$ select creditkit_set_price('image_gen', 1, '{}', null) $$, 'CK006', null, 'set_price: NULL effective_from');

-- meter
select throws_ok($$ select creditkit_meter(null, 'image_gen', p_now => '2030-07-01 00:00:00+00') $$, 'CK006', null, 'meter: NULL account');
select throws_ok($$ select creditkit_meter('00000000-0000-4000-8000-00000000dead', 'image_gen', p_now => '2030-07-01 00:00:00+00') $$, 'CK003', null, 'meter: unknown account');
select throws_ok($$ select creditkit_meter(tests.get_supabase_uid('alice'), 'image_gen', 0, p_now => '2030-07-01 00:00:00+00') $$, 'CK001', null, 'meter: zero quantity');
select throws_ok($$ select creditkit_meter(tests.get_supabase_uid('alice'), 'image_gen', -1, p_now => '2030-07-01 00:00:00+00') $$, 'CK001', null, 'meter: negative quantity (it would mint)');
select throws_ok($$ select creditkit_meter(tests.get_supabase_uid('alice'), 'image_gen', null, p_now => '2030-07-01 00:00:00+00') $$, 'CK001', null, 'meter: NULL quantity');
select throws_ok($$ select creditkit_meter(tests.get_supabase_uid('alice'), null, p_now => '2030-07-01 00:00:00+00') $$, 'CK006', null, 'meter: NULL event');
select throws_ok($$ select creditkit_meter(tests.get_supabase_uid('alice'), 'image_gen', 1, null, p_now => '2030-07-01 00:00:00+00') $$, 'CK006', null, 'meter: NULL dimensions');
select throws_ok($$ select creditkit_meter(tests.get_supabase_uid('alice'), 'image_gen', 1, '[1]', p_now => '2030-07-01 00:00:00+00') $$, 'CK006', null, 'meter: dimensions is an array');
select throws_ok($$ select creditkit_meter(tests.get_supabase_uid('alice'), 'image_gen', 1, '{"q": ["hd"]}', p_now => '2030-07-01 00:00:00+00') $$, 'CK006', null, 'meter: a dimension value that is an array');
select throws_ok($$ select creditkit_meter(tests.get_supabase_uid('alice'), 'image_gen', p_cost_micros => -1, p_now => '2030-07-01 00:00:00+00') $$, 'CK001', null, 'meter: negative cost');
select throws_ok($$ select creditkit_meter(tests.get_supabase_uid('alice'), 'image_gen', p_idempotency_key => ' ', p_now => '2030-07-01 00:00:00+00') $$, 'CK006', null, 'meter: blank key');
select throws_ok($$ select creditkit_meter(tests.get_supabase_uid('alice'), 'image_gen', p_metadata => '[1]', p_now => '2030-07-01 00:00:00+00') $$, 'CK006', null, 'meter: metadata is an array');
select throws_ok($$ select creditkit_meter(tests.get_supabase_uid('alice'), 'image_gen', p_now => null) $$, 'CK006', null, 'meter: NULL p_now');

-- quote
select throws_ok($$ select creditkit_quote('image_gen', 0, p_now => '2030-07-01 00:00:00+00') $$, 'CK001', null, 'quote: zero quantity');
select throws_ok($$ select creditkit_quote(null, p_now => '2030-07-01 00:00:00+00') $$, 'CK006', null, 'quote: NULL event');
select throws_ok($$ select creditkit_quote('image_gen', 1, '{"q": {"x": 1}}', '2030-07-01 00:00:00+00') $$, 'CK006', null, 'quote: a nested dimension value');
select throws_ok($$ select creditkit_quote('image_gen', 1, '{}', null) $$, 'CK006', null, 'quote: NULL p_now');

select results_eq('select * from ck_state', 'select * from ck_before', 'bad pricing input changed nothing');

select tests.clear_authentication();
select * from finish();
rollback;
