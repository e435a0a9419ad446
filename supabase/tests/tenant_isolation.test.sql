-- tenant_isolation: what each client actor can see and do (invariant 4: no client role can
-- mint, spend for another account, or learn another account's balance).
--
-- Actors: alice (member: her personal account, id = her user id, holds credit), bob (signed in,
-- outsider to alice's account, has no account of his own), anon (not signed in). The last
-- section replaces the account-access function with a team rule, as a project with team
-- accounts would, and checks that the rule is what decides (the replacement rolls back).
--
-- The caller-bound reads use now(), not p_now: the fixtures are placed far enough in the past
-- and future (2020 / 2100) that the wall clock is always between them.
begin;
select plan(49);

select tests.create_supabase_user('alice');
select tests.create_supabase_user('bob');

-- Fixtures (as postgres): alice holds 100 purchased (never expires), 50 promotional (expires
-- 2100) and 30 plan credit that expired in 2021 and was never booked (no server call since),
-- of which she spent 10. Spendable now: 100 + 50.
select creditkit_grant(tests.get_supabase_uid('alice'), 100, 'purchase', p_now => '2020-01-01 00:00:00+00');
select creditkit_grant(tests.get_supabase_uid('alice'), 50, 'promotional', '2100-01-01 00:00:00+00',
  p_now => '2020-01-01 00:00:00+00');
select creditkit_grant(tests.get_supabase_uid('alice'), 30, 'plan', '2021-01-01 00:00:00+00',
  p_now => '2020-01-01 00:00:00+00');
select creditkit_consume(tests.get_supabase_uid('alice'), 10, 'chat', p_now => '2020-06-01 00:00:00+00');

-- =============================================================================================
-- Member (alice): reads her own account through the caller-bound API and RLS.
-- =============================================================================================
select tests.authenticate_as('alice');

select results_eq(
  $$ select account_id, balance, next_expiry, jsonb_array_length(buckets) from creditkit_my_balance() $$,
  $$ select tests.get_supabase_uid('alice'), 150::bigint, '2100-01-01 00:00:00+00'::timestamptz, 2 $$,
  'my_balance: her own spendable balance, without the expired (unbooked) plan credit');
select is(
  (select balance from creditkit_my_balance(tests.get_supabase_uid('alice'))),
  150::bigint, 'my_balance: she may name her own account explicitly');
select results_eq(
  $$ select kind, amount, balance_after, event from creditkit_my_history() $$,
  $$ values ('consume'::text, -10::bigint, 170::bigint, 'chat'::text), ('grant', 30, 180, null),
            ('grant', 50, 150, null), ('grant', 100, 100, null) $$,
  'my_history: her ledger, newest first');
select results_eq(
  $$ select kind, amount from creditkit_my_history(tests.get_supabase_uid('alice'), 1,
       (select min(id) from creditkit_my_history(null, 2))) $$,
  $$ values ('grant'::text, 50::bigint) $$,
  'my_history: explicit account and keyset pagination');
select is((select count(*) from creditkit.accounts), 1::bigint, 'RLS: she sees exactly her account row');
select is((select count(*) from creditkit.grants), 3::bigint, 'RLS: she sees exactly her three buckets');
select is((select count(*) from creditkit.ledger), 4::bigint, 'RLS: she sees exactly her four ledger rows');
-- CK001-CK008 from the ledger core, CK009 (plans), CK010 (pricing), CK011-CK012 (holds), CK013-CK014 (Stripe), CK015 (units),
-- CK016-CK018 (auto top-up and notifications).
select is((select count(*) from creditkit.error_codes), 18::bigint, 'signed-in users can read the error catalogue');

-- Reading is all: even on her own account she cannot mint, spend or adjust.
select throws_ok(
  $$ select creditkit_grant(tests.get_supabase_uid('alice'), 1000, p_now => '2030-01-01 00:00:00+00') $$,
  '42501', null, 'a member cannot grant herself credit');
select throws_ok(
  $$ select creditkit_consume(tests.get_supabase_uid('alice'), 1, p_now => '2030-01-01 00:00:00+00') $$,
  '42501', null, 'a member cannot spend directly (only the server meters)');
select throws_ok(
  $$ select creditkit_adjust(tests.get_supabase_uid('alice'), 1000, 'mine', p_now => '2030-01-01 00:00:00+00') $$,
  '42501', null, 'a member cannot adjust her balance');

-- =============================================================================================
-- Outsider (bob): signed in, but alice's account is not his.
-- =============================================================================================
select tests.authenticate_as('bob');

select throws_ok($$ select creditkit_my_balance(tests.get_supabase_uid('alice')) $$,
  'CK005', null, 'my_balance of someone else''s account: CK005');
select throws_ok($$ select * from creditkit_my_history(tests.get_supabase_uid('alice')) $$,
  'CK005', null, 'my_history of someone else''s account: CK005');
select is((select count(*) from creditkit.accounts where id = tests.get_supabase_uid('alice')), 0::bigint,
  'RLS: none of alice''s account rows are visible to bob');
select is((select count(*) from creditkit.grants where account_id = tests.get_supabase_uid('alice')), 0::bigint,
  'RLS: none of alice''s buckets are visible to bob');
select is((select count(*) from creditkit.ledger where account_id = tests.get_supabase_uid('alice')), 0::bigint,
  'RLS: none of alice''s ledger rows are visible to bob');
select results_eq(
  $$ select account_id, balance, next_expiry, buckets from creditkit_my_balance() $$,
  $$ select tests.get_supabase_uid('bob'), 0::bigint, null::timestamptz, '[]'::jsonb $$,
  'my_balance for a user with no account yet reads as 0, not an error');
select is_empty($$ select * from creditkit_my_history() $$, 'my_history for a user with no account is empty');

-- The helpers behind the reads are executable by authenticated, but run under RLS: called
-- directly on alice's account they learn nothing.
select is((select balance from creditkit.live_buckets(tests.get_supabase_uid('alice'), 'credits', now())), 0::bigint,
  'creditkit.live_buckets on alice''s account sums to 0 for bob');
select is_empty($$ select * from creditkit.history_page(tests.get_supabase_uid('alice'), 'credits', 50, null) $$,
  'creditkit.history_page on alice''s account is empty for bob');
select is(creditkit.can_access_account(tests.get_supabase_uid('alice')), false,
  'the access function says no');

-- The server API is not his to call: no minting, no spending, no reading alice's balance.
select throws_ok(
  $$ select creditkit_grant(tests.get_supabase_uid('bob'), 1000, p_now => '2030-01-01 00:00:00+00') $$,
  '42501', null, 'an outsider cannot grant (mint)');
select throws_ok(
  $$ select creditkit_consume(tests.get_supabase_uid('alice'), 1, p_now => '2030-01-01 00:00:00+00') $$,
  '42501', null, 'an outsider cannot spend alice''s credit');
select throws_ok(
  $$ select creditkit_consume_or_raise(tests.get_supabase_uid('alice'), 1, p_now => '2030-01-01 00:00:00+00') $$,
  '42501', null, 'an outsider cannot spend alice''s credit with consume_or_raise');
select throws_ok(
  $$ select creditkit_adjust(tests.get_supabase_uid('alice'), -100, 'grief', p_now => '2030-01-01 00:00:00+00') $$,
  '42501', null, 'an outsider cannot adjust alice''s balance');
select throws_ok(
  $$ select creditkit_balance(tests.get_supabase_uid('alice'), p_now => '2030-01-01 00:00:00+00') $$,
  '42501', null, 'an outsider cannot read alice''s balance through the server API');
select throws_ok($$ select creditkit_history(tests.get_supabase_uid('alice')) $$,
  '42501', null, 'an outsider cannot read alice''s history through the server API');
select throws_ok($$ select creditkit_book_expired('2030-01-01 00:00:00+00') $$,
  '42501', null, 'an outsider cannot run the sweep');

-- A session with the authenticated role but no user id (sub) is refused, never read as "own".
select set_config('request.jwt.claims', '{"role":"authenticated"}', true);
select throws_ok($$ select creditkit_my_balance() $$, 'CK005', null,
  'my_balance without a user id: CK005');

-- =============================================================================================
-- Anon: nothing of ours is reachable, not even the schema.
-- =============================================================================================
select tests.authenticate_as_anon();

select throws_ok($$ select creditkit_my_balance() $$, '42501', null, 'anon cannot call my_balance');
select throws_ok($$ select * from creditkit_my_history() $$, '42501', null, 'anon cannot call my_history');
select throws_ok(
  $$ select creditkit_grant('00000000-0000-4000-8000-00000000beef', 1000, p_now => '2030-01-01 00:00:00+00') $$,
  '42501', null, 'anon cannot grant');
select throws_ok(
  $$ select creditkit_consume(tests.get_supabase_uid('alice'), 1, p_now => '2030-01-01 00:00:00+00') $$,
  '42501', null, 'anon cannot consume');
select throws_ok(
  $$ select creditkit_consume_or_raise(tests.get_supabase_uid('alice'), 1, p_now => '2030-01-01 00:00:00+00') $$,
  '42501', null, 'anon cannot consume_or_raise');
select throws_ok(
  $$ select creditkit_adjust(tests.get_supabase_uid('alice'), -100, 'grief', p_now => '2030-01-01 00:00:00+00') $$,
  '42501', null, 'anon cannot adjust');
select throws_ok(
  $$ select creditkit_balance(tests.get_supabase_uid('alice'), p_now => '2030-01-01 00:00:00+00') $$,
  '42501', null, 'anon cannot read a balance');
select throws_ok($$ select creditkit_history(tests.get_supabase_uid('alice')) $$, '42501', null,
  'anon cannot read a history');
select throws_ok($$ select creditkit_book_expired('2030-01-01 00:00:00+00') $$, '42501', null,
  'anon cannot run the sweep');
select throws_ok($$ select count(*) from creditkit.accounts $$, '42501', null, 'anon cannot select creditkit.accounts');
select throws_ok($$ select count(*) from creditkit.grants $$, '42501', null, 'anon cannot select creditkit.grants');
select throws_ok($$ select count(*) from creditkit.ledger $$, '42501', null, 'anon cannot select creditkit.ledger');
select throws_ok($$ select count(*) from creditkit.error_codes $$, '42501', null,
  'anon cannot select creditkit.error_codes');

-- =============================================================================================
-- Team override: a project with team accounts replaces creditkit.can_access_account (see
-- docs/sql-api.md#account-access). RLS and the my_* reads all go through it, so replacing it
-- is enough. Here: a team account readable by its members (alice), not by others (bob).
-- =============================================================================================
select tests.clear_authentication();

create table public.test_team_members (
  team_id uuid not null,
  user_id uuid not null,
  primary key (team_id, user_id)
);
-- The rule runs as the caller (security invoker), so the caller must be able to read the
-- membership table. Supabase's defaults would grant this; revoked defaults do not.
grant select on table public.test_team_members to authenticated;

create or replace function creditkit.can_access_account(p_account_id uuid)
returns boolean
language sql
stable
security invoker
set search_path = ''
as $$
  select p_account_id is not null and (
    p_account_id = (select auth.uid())
    or exists (select 1 from public.test_team_members m
                where m.team_id = p_account_id and m.user_id = (select auth.uid())));
$$;

insert into public.test_team_members (team_id, user_id)
values ('00000000-0000-4000-8000-0000000000ea', tests.get_supabase_uid('alice'));
select creditkit_grant('00000000-0000-4000-8000-0000000000ea', 500, 'plan', p_now => '2020-01-01 00:00:00+00');

select results_eq(
  $$ select has_function_privilege('anon', 'creditkit.can_access_account(uuid)', 'execute'),
            has_function_privilege('authenticated', 'creditkit.can_access_account(uuid)', 'execute') $$,
  $$ values (false, true) $$,
  'create or replace keeps the access function''s grants');

-- Member of the team
select tests.authenticate_as('alice');
select is((select balance from creditkit_my_balance('00000000-0000-4000-8000-0000000000ea')), 500::bigint,
  'a team member reads the team account''s balance');
select results_eq(
  $$ select kind, amount from creditkit_my_history('00000000-0000-4000-8000-0000000000ea') $$,
  $$ values ('grant'::text, 500::bigint) $$,
  'a team member reads the team account''s history');
select is((select count(*) from creditkit.accounts), 2::bigint,
  'RLS follows the override: she now sees her account and the team''s');

-- Outsider to the team
select tests.authenticate_as('bob');
select throws_ok($$ select creditkit_my_balance('00000000-0000-4000-8000-0000000000ea') $$,
  'CK005', null, 'someone outside the team cannot read its balance');
select throws_ok($$ select * from creditkit_my_history('00000000-0000-4000-8000-0000000000ea') $$,
  'CK005', null, 'someone outside the team cannot read its history');
select is((select count(*) from creditkit.ledger where account_id = '00000000-0000-4000-8000-0000000000ea'), 0::bigint,
  'RLS hides the team ledger from someone outside the team');

select tests.clear_authentication();

select * from finish();
rollback;
