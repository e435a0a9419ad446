-- debit: every spend of a usage event goes through creditkit.debit. creditkit_consume carries a
-- copy of its fast path for speed; this file checks that the copy is the same text, and that a
-- consume and a meter at one credit per unit (which goes through creditkit.debit) give the same
-- answers and leave the same books, on the fast path, the refusal path, replays and the slow path.
begin;
select plan(10);

-- The fast path between its markers, as stored.
create temporary table ck_fast as
select p.proname,
       substring(p.prosrc from '-- <the debit''s fast path[^\n]*\n(.*)\n  -- </the debit''s fast path>') as body
  from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
 where (n.nspname, p.proname) in (('creditkit', 'debit'), ('public', 'creditkit_consume'));

select is((select count(*) from ck_fast where length(body) > 500), 2::bigint,
  'both creditkit.debit and creditkit_consume have the marked fast path');
select is((select body from ck_fast where proname = 'creditkit_consume'), (select body from ck_fast where proname = 'debit'),
  'creditkit_consume''s fast path is the same text as creditkit.debit''s');

-- Twin accounts: one spends through creditkit_consume, the other through creditkit_meter of an
-- event priced at one credit, so the two reach the debit by its two routes.
select tests.create_supabase_user('consumer');
select tests.create_supabase_user('meterer');
select tests.authenticate_as_service_role();
select creditkit_set_price('unit', 1, '{}', '2030-01-01T00:00:00Z');
select creditkit_grant(tests.get_supabase_uid(u), 10, 'promotional', p_expires_at => '2030-01-01T00:10:00Z', p_now => '2030-01-01T00:00:00Z')
  from unnest(array['consumer', 'meterer']) u;
select creditkit_grant(tests.get_supabase_uid(u), 5, p_now => '2030-01-01T00:00:00Z')
  from unnest(array['consumer', 'meterer']) u;

-- One script of calls: (amount, key, when). The consumer's key is the meterer's key too.
create temporary table ck_script (step integer, amount bigint, key text, at timestamptz) on commit drop;
insert into ck_script values
  (1, 3, null,  '2030-01-01T00:01:00Z'),   -- fast path
  (2, 4, 'k1',  '2030-01-01T00:02:00Z'),   -- fast path with a key
  (3, 4, 'k1',  '2030-01-01T00:02:30Z'),   -- a retry: replayed
  (4, 50, null, '2030-01-01T00:03:00Z'),   -- refused without a lock
  (5, 50, 'k2', '2030-01-01T00:03:30Z'),   -- refused, with a key never used
  (6, 2, 'k3',  '2030-01-01T00:11:00Z'),   -- after the promotional credit expired: the slow path
  (7, 2, 'k3',  '2030-01-01T00:12:00Z'),   -- its retry
  (8, 9, null,  '2030-01-01T00:13:00Z');   -- refused after the expiry

create temporary table ck_answers as
select s.step,
       c.allowed as c_allowed, c.balance as c_balance,
       m.allowed as m_allowed, m.balance as m_balance, m.amount as m_amount
  from ck_script s
  cross join lateral creditkit_consume(tests.get_supabase_uid('consumer'), s.amount, 'unit', s.key, null, null, s.at) c
  cross join lateral creditkit_meter(tests.get_supabase_uid('meterer'), 'unit', s.amount, '{}', s.key, null, null, s.at) m
 order by s.step;

select is((select count(*) from ck_answers), 8::bigint, 'every step answered on both routes');
select is((select count(*) from ck_answers where c_allowed is distinct from m_allowed or c_balance is distinct from m_balance),
  0::bigint, 'consume and meter give the same allowed and balance at every step');
select is((select array_agg(m_amount order by step) from ck_answers where m_allowed), array[3, 4, 4, 2, 2]::bigint[],
  'the meter charged what was asked, and its replays answer the first charge');
select is((select array_agg(c_allowed order by step) from ck_answers), array[true, true, true, false, false, true, true, false],
  'the script covered spends, replays and refusals');

-- The books: the same rows in the same order (kind, amount, balance_after, key), the same balance.
select results_eq(
  $$ select kind::text, amount::bigint, balance_after::bigint, idempotency_key from creditkit.ledger
      where account_id = tests.get_supabase_uid('consumer') order by id $$,
  $$ select kind::text, amount::bigint, balance_after::bigint, idempotency_key from creditkit.ledger
      where account_id = tests.get_supabase_uid('meterer') order by id $$,
  'the two ledgers hold the same rows');
select is((select balance::bigint from creditkit.accounts where id = tests.get_supabase_uid('consumer')),
          (select balance::bigint from creditkit.accounts where id = tests.get_supabase_uid('meterer')),
  'and the same balance');
select is((select count(*) from creditkit.ledger_keys where account_id = tests.get_supabase_uid('meterer')), 2::bigint,
  'each key used once is stored once (k1, k3; the refused k2 left nothing)');
select is((select metadata - 'quantity' - 'dimensions' - 'unit_credits' - 'price_id' from creditkit.ledger
            where account_id = tests.get_supabase_uid('meterer') and kind = 'consume' order by id limit 1),
  '{}'::jsonb, 'a metered row adds only the meter''s own fields to what was asked');

select * from finish();
rollback;
