-- auto top-up: the essentials at the SQL. A debit that takes a watched (account, unit) to or below
-- its threshold queues the watch, which runs at commit (a deferred constraint trigger, AFTER
-- UPDATE OF due_at, held) on the row as the transaction leaves it: one crossing, one pending
-- top-up; a replayed key or a rolled-back debit, nothing. The worker's claim takes due top-ups
-- with SKIP LOCKED, so a top-up another transaction holds is left for the next claim.
--
-- The file runs in one transaction, so commit never comes: `set constraints ... immediate` runs
-- the queued watch where a commit would. The SKIP LOCKED check needs a second session (dblink)
-- and rows it can see, so it commits a few rows of its own unit and removes them at the end.
begin;
select plan(17);

select tests.create_supabase_user('alice');   -- a crossing, then staying below
select tests.create_supabase_user('bob');     -- a replayed key
select tests.create_supabase_user('carol');   -- a rolled-back debit
select tests.create_supabase_user('dave');    -- held credit (a reserve) crosses too

-- A Stripe event about p_object, created at p_created (unix seconds).
create function pg_temp.evt(p_type text, p_object jsonb, p_created bigint)
returns jsonb language sql immutable as $$
  select jsonb_build_object('id', 'evt_' || md5(p_type || p_object::text), 'object', 'event', 'type', p_type,
                            'created', p_created, 'livemode', false, 'data', jsonb_build_object('object', p_object))
$$;
-- A card saved for off-session use (payment_method.attached, then setup_intent.succeeded) for a user.
create function pg_temp.save_card(p_user text, p_n integer)
returns void language plpgsql as $$
begin
  perform creditkit_stripe_link_customer(tests.get_supabase_uid(p_user), 'cus_Topup' || p_n);
  perform creditkit_stripe_apply(pg_temp.evt('payment_method.attached', jsonb_build_object(
    'id', 'pm_Topup' || p_n, 'object', 'payment_method', 'type', 'card', 'customer', 'cus_Topup' || p_n,
    'card', jsonb_build_object('brand', 'visa', 'last4', '4242', 'exp_month', 12, 'exp_year', 2034)), 1893456000 + 2 * p_n),
    '2030-01-01 00:00:00+00');
  perform creditkit_stripe_apply(pg_temp.evt('setup_intent.succeeded', jsonb_build_object(
    'id', 'seti_Topup' || p_n, 'object', 'setup_intent', 'status', 'succeeded', 'usage', 'off_session',
    'customer', 'cus_Topup' || p_n, 'payment_method', 'pm_Topup' || p_n), 1893456001 + 2 * p_n),
    '2030-01-01 00:00:00+00');
end;
$$;
create function pg_temp.topups(p_user text)
returns table (status text, amount bigint) language sql stable as $$
  select t.status, t.amount from creditkit.topups t where t.account_id = tests.get_supabase_uid(p_user) order by t.id
$$;

-- ---------------------------------------------------------------------------------------------
-- The trigger, from the catalog.
-- ---------------------------------------------------------------------------------------------
select results_eq(
  $$ select t.tgconstraint <> 0, t.tgdeferrable, t.tginitdeferred,
            (t.tgtype & 1) <> 0,   -- for each row
            (t.tgtype & 2) = 0,    -- after (not before)
            (t.tgtype & 64) = 0,   -- not instead of
            (t.tgtype & (4 | 8 | 16 | 32)) = 16,  -- update only
            array(select a.attname::text collate "default" from unnest(t.tgattr::int2[]) k
                    join pg_catalog.pg_attribute a on a.attrelid = t.tgrelid and a.attnum = k order by 1),
            t.tgqual is not null, t.tgfoid = 'creditkit.watch_balance()'::regprocedure, t.tgenabled = 'O'
       from pg_catalog.pg_trigger t
      where t.tgrelid = 'creditkit.accounts'::regclass and t.tgname = 'watch_balance' $$,
  $$ values (true, true, true, true, true, true, true, array['due_at', 'held'], true, true, true) $$,
  'watch_balance is a constraint trigger, deferrable initially deferred, after update of due_at, held (the slow paths'' writes), for each row, with a WHEN');

-- ---------------------------------------------------------------------------------------------
-- The operator's terms and the customers' cards (as postgres: a server connection).
-- ---------------------------------------------------------------------------------------------
select creditkit_set_auto_topup_terms('credits', 'usd', 1, 100, 10000, p_cooldown => '0 seconds');
select pg_temp.save_card('alice', 1), pg_temp.save_card('bob', 2), pg_temp.save_card('carol', 3), pg_temp.save_card('dave', 4);
select creditkit_grant(tests.get_supabase_uid(u), 300, p_now => '2030-01-01 00:00:00+00') from unnest(array['alice', 'bob', 'carol', 'dave']) u;
select creditkit_set_auto_topup(tests.get_supabase_uid(u), 'credits', true, 100, 500, p_now => '2030-01-01 00:00:00+00')
  from unnest(array['alice', 'bob', 'carol', 'dave']) u;
set constraints creditkit.watch_balance immediate;
set constraints creditkit.watch_balance deferred;

-- ---------------------------------------------------------------------------------------------
-- A crossing writes one top-up, at commit.
-- ---------------------------------------------------------------------------------------------
select creditkit_consume(tests.get_supabase_uid('alice'), 150, p_now => '2030-01-01 01:00:00+00');   -- 150: above
select creditkit_consume(tests.get_supabase_uid('alice'), 60, p_now => '2030-01-01 01:00:00+00');    -- 90: crossed
select is_empty($$ select * from pg_temp.topups('alice') $$, 'the crossing is queued, not acted on: nothing before commit');
set constraints creditkit.watch_balance immediate;
set constraints creditkit.watch_balance deferred;
select results_eq($$ select * from pg_temp.topups('alice') $$, $$ values ('pending'::text, 500::bigint) $$,
  'at commit, the crossing writes one pending top-up of the amount set');
select creditkit_consume(tests.get_supabase_uid('alice'), 40, p_now => '2030-01-01 01:00:00+00');    -- 50: still below
select creditkit_consume(tests.get_supabase_uid('alice'), 50, p_now => '2030-01-01 01:00:00+00');    -- 0
set constraints creditkit.watch_balance immediate;
set constraints creditkit.watch_balance deferred;
select results_eq($$ select * from pg_temp.topups('alice') $$, $$ values ('pending'::text, 500::bigint) $$,
  'staying below (down to 0) writes no second top-up');
select is((select t.armed from creditkit.auto_topups t where t.account_id = tests.get_supabase_uid('alice') and t.unit = 'credits'),
  false, 'the crossing disarmed it until the balance is back above the threshold');
select is((select a.alert_at from creditkit.accounts a where a.id = tests.get_supabase_uid('alice') and a.unit = 'credits'),
  -4611686018427387904::bigint, 'with nothing left to fire, the row is watched for a rise only');

-- ---------------------------------------------------------------------------------------------
-- A replayed key: the fast path debits, finds the key and undoes it; at commit nothing crossed.
-- ---------------------------------------------------------------------------------------------
select creditkit_consume(tests.get_supabase_uid('bob'), 10, 'chat', 'bob-1', p_now => '2030-01-01 01:00:00+00');   -- 290
select creditkit_consume(tests.get_supabase_uid('bob'), 185, p_now => '2030-01-01 01:00:00+00');                   -- 105
set constraints creditkit.watch_balance immediate;
set constraints creditkit.watch_balance deferred;
select results_eq(
  $$ select allowed, balance from creditkit_consume(tests.get_supabase_uid('bob'), 10, 'chat', 'bob-1', p_now => '2030-01-01 01:00:00+00') $$,
  $$ values (true, 290::bigint) $$, 'the replay answers the first result');
set constraints creditkit.watch_balance immediate;
set constraints creditkit.watch_balance deferred;
select is_empty($$ select * from pg_temp.topups('bob') $$, 'a replayed key that undid its debit writes no top-up');
select is((select a.balance::bigint from creditkit.accounts a where a.id = tests.get_supabase_uid('bob') and a.unit = 'credits'),
  105::bigint, 'and the balance is as it was');
select is_empty($$ select * from creditkit.notifications n where n.account_id = tests.get_supabase_uid('bob') $$,
  'nor any event');

-- ---------------------------------------------------------------------------------------------
-- A refused debit and a rolled-back one: nothing.
-- ---------------------------------------------------------------------------------------------
select results_eq(
  $$ select allowed from creditkit_consume(tests.get_supabase_uid('carol'), 1000, p_now => '2030-01-01 01:00:00+00') $$,
  $$ values (false) $$, 'a debit beyond the balance is refused');
savepoint before_debit;
select creditkit_consume(tests.get_supabase_uid('carol'), 250, p_now => '2030-01-01 01:00:00+00');
rollback to savepoint before_debit;
set constraints creditkit.watch_balance immediate;
set constraints creditkit.watch_balance deferred;
select is_empty($$ select * from pg_temp.topups('carol') $$, 'a refused debit and a rolled-back one write no top-up');

-- ---------------------------------------------------------------------------------------------
-- Held credit counts: a reserve that takes the spendable balance to the threshold crosses it.
-- ---------------------------------------------------------------------------------------------
select allowed from creditkit_reserve(tests.get_supabase_uid('dave'), 200, '1 hour', p_now => '2030-01-01 01:00:00+00');
set constraints creditkit.watch_balance immediate;
set constraints creditkit.watch_balance deferred;
select results_eq($$ select * from pg_temp.topups('dave') $$, $$ values ('pending'::text, 500::bigint) $$,
  'a reserve (update of held) down to the threshold writes the top-up');

-- ---------------------------------------------------------------------------------------------
-- The worker's claim skips a top-up another transaction holds. The worker is a second session
-- (dblink); it sees only committed rows, so this part commits two top-ups of a unit of its own,
-- with the rows the claim checks (their accounts' rows, terms, auto top-up on, a card on file), and
-- deletes them after.
-- ---------------------------------------------------------------------------------------------
create extension if not exists dblink with schema extensions;
select dblink_connect('ck_worker', format('host=%s port=%s dbname=%s user=%s',
  coalesce(host(inet_server_addr()), 'localhost'), coalesce(inet_server_port(), 5432), current_database(), current_user));
create function pg_temp.cleanup() returns text language sql as $$
  select extensions.dblink_exec('ck_worker', $sql$
    delete from creditkit.topups where unit = 'skip-locked';
    delete from creditkit.auto_topups where unit = 'skip-locked';
    delete from creditkit.auto_topup_terms where unit = 'skip-locked';
    delete from creditkit.stripe_default_methods where customer_id in ('cus_SkipA', 'cus_SkipB');
    delete from creditkit.stripe_payment_methods where id in ('pm_SkipA', 'pm_SkipB');
    delete from creditkit.stripe_customers where customer_id in ('cus_SkipA', 'cus_SkipB');
    delete from creditkit.accounts where unit = 'skip-locked';
    delete from creditkit.units where id = 'skip-locked' $sql$)
$$;
select pg_temp.cleanup();
select dblink_exec('ck_worker', $sql$
  insert into creditkit.units (id, name) values ('skip-locked', 'Skip locked');
  insert into creditkit.accounts (id, unit)
  values ('00000000-0000-4000-8000-00000000000a', 'skip-locked'), ('00000000-0000-4000-8000-00000000000b', 'skip-locked');
  insert into creditkit.auto_topup_terms (unit, currency, unit_price, min_amount, max_amount, cooldown)
  values ('skip-locked', 'usd', 1, 1, 1000, '0 seconds');
  insert into creditkit.stripe_customers (account_id, customer_id)
  values ('00000000-0000-4000-8000-00000000000a', 'cus_SkipA'), ('00000000-0000-4000-8000-00000000000b', 'cus_SkipB');
  insert into creditkit.stripe_payment_methods (id, customer_id, type) values ('pm_SkipA', 'cus_SkipA', 'card'), ('pm_SkipB', 'cus_SkipB', 'card');
  insert into creditkit.stripe_default_methods (customer_id, payment_method, event_at, event_id)
  values ('cus_SkipA', 'pm_SkipA', now(), 'evt_SkipA'), ('cus_SkipB', 'pm_SkipB', now(), 'evt_SkipB');
  insert into creditkit.auto_topups (account_id, unit, enabled, status, threshold, amount)
  values ('00000000-0000-4000-8000-00000000000a', 'skip-locked', true, 'active', 10, 100),
         ('00000000-0000-4000-8000-00000000000b', 'skip-locked', true, 'active', 10, 100);
  insert into creditkit.topups (account_id, unit, amount, charge_amount, currency)
  values ('00000000-0000-4000-8000-00000000000a', 'skip-locked', 100, 100, 'usd'),
         ('00000000-0000-4000-8000-00000000000b', 'skip-locked', 100, 100, 'usd') $sql$);

savepoint holding;
select count(*) from (select from creditkit.topups t where t.account_id = '00000000-0000-4000-8000-00000000000a' and t.unit = 'skip-locked'
  for update) held;
select results_eq(
  $$ select account_id, attempt from extensions.dblink('ck_worker',
       $q$ select account_id, attempt from creditkit_worker_claim_topups(10, '1 minute', now()) $q$) as c(account_id uuid, attempt integer) $$,
  $$ values ('00000000-0000-4000-8000-00000000000b'::uuid, 1) $$,
  'a claim skips the top-up another transaction holds (SKIP LOCKED) and claims the other, without waiting');
rollback to savepoint holding;   -- the row lock goes with the savepoint
select results_eq(
  $$ select account_id, attempt from extensions.dblink('ck_worker',
       $q$ select account_id, attempt from creditkit_worker_claim_topups(10, '1 minute', now()) $q$) as c(account_id uuid, attempt integer) $$,
  $$ values ('00000000-0000-4000-8000-00000000000a'::uuid, 1) $$,
  'once it is free, the next claim takes it (the claimed one is leased, not handed out twice)');
select results_eq(
  $$ select t.account_id, t.status from creditkit.topups t where t.unit = 'skip-locked' order by t.account_id $$,
  $$ values ('00000000-0000-4000-8000-00000000000a'::uuid, 'charging'::text), ('00000000-0000-4000-8000-00000000000b'::uuid, 'charging') $$,
  'both are charging, each claimed once');
select pg_temp.cleanup();
select is_empty($$ select from extensions.dblink('ck_worker', 'select 1 from creditkit.units where id = ''skip-locked''') as u(one integer) $$,
  'the committed rows are gone again');
select dblink_disconnect('ck_worker');

select * from finish();
rollback;
