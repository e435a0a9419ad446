-- gating: credit checks inside Postgres, next to an app's own tables.
--
-- The example is the one the docs give: a public.tasks table whose insert policy asks
-- creditkit_has_credits(4), and a trigger creditkit.charge_on_insert('image_gen', '4') that
-- charges the inserting user in the same transaction. A second table, public.team_tasks, uses the
-- third trigger argument (the account column) with a team rule for creditkit.can_access_account.
-- Both tables and the rule are created here and roll back with the file.
--
-- The policy and the trigger use now() (an app cannot pass p_now through an INSERT), so every
-- fixture is dated 2020 and never expires. image_gen costs 2 credits per unit, so a task costs
-- 2 x 4 = 8: more than the policy's 4, which keeps "passes the policy" and "can pay" apart.
begin;
select plan(36);

select tests.create_supabase_user('alice');   -- member: personal account with 20 credits, team member
select tests.create_supabase_user('dora');    -- signed in, 5 credits: passes the policy, cannot pay 8
select tests.create_supabase_user('eve');     -- signed in, 3 credits: fails the policy
select tests.create_supabase_user('bob');     -- outsider: no account, not in the team

select creditkit_set_price('image_gen', 2, '{}', '2020-01-01 00:00:00+00');
select creditkit_grant(tests.get_supabase_uid('alice'), 20, p_now => '2020-01-01 00:00:00+00');
select creditkit_grant(tests.get_supabase_uid('dora'), 5, p_now => '2020-01-01 00:00:00+00');
select creditkit_grant(tests.get_supabase_uid('eve'), 3, p_now => '2020-01-01 00:00:00+00');

-- The app's table. Privileges are spelled out (revoke, then grant) so the file means the same
-- under Supabase's grant-everything defaults and under revoked defaults.
create table public.tasks (
  id uuid primary key default gen_random_uuid(),
  owner_id uuid not null default auth.uid(),
  prompt text not null
);
alter table public.tasks enable row level security;
revoke all on table public.tasks from anon, authenticated, service_role;
grant select, insert on table public.tasks to authenticated;
grant select, insert on table public.tasks to service_role;
create policy "members can create their own tasks"
  on public.tasks for insert to authenticated
  with check (owner_id = (select auth.uid()));
-- The credit check as the docs show it: restrictive, so that it must pass beside the app's own
-- (permissive) policies instead of being ORed with them.
create policy "creating a task needs 4 credits"
  on public.tasks as restrictive for insert to authenticated
  with check ((select creditkit_has_credits(4)));
-- INSERT ... RETURNING needs a SELECT policy that lets the inserter see the new row.
create policy "members can read their own tasks"
  on public.tasks for select to authenticated
  using (owner_id = (select auth.uid()));

-- =============================================================================================
-- creditkit_has_credits, directly and as an RLS policy (before the trigger exists).
-- =============================================================================================

-- Member
select tests.authenticate_as('alice');
select results_eq(
  $$ select creditkit_has_credits(), creditkit_has_credits(20), creditkit_has_credits(21),
            creditkit_has_credits(20, tests.get_supabase_uid('alice')) $$,
  $$ values (true, true, false, true) $$,
  'has_credits: her own spendable balance decides (default 1 credit)');
-- Not an oracle: someone else's account reads as false, not an error and not the truth.
select is(creditkit_has_credits(1, tests.get_supabase_uid('dora')), false,
  'has_credits on someone else''s account is false (dora has 5)');
select throws_ok($$ select creditkit_has_credits(0) $$, 'CK001', null, 'has_credits: zero amount is CK001');
select lives_ok($$ insert into public.tasks (prompt) values ('policy only') returning id $$,
  'the policy lets a member with at least 4 credits insert (and see the row it returned)');

-- Signed in, but too little credit, or no account at all.
select tests.authenticate_as('eve');
select is(creditkit_has_credits(4), false, 'has_credits: eve has 3');
select throws_ok($$ insert into public.tasks (prompt) values ('policy only') $$, '42501', null,
  'the policy refuses an insert by a member with 3 credits');
select tests.authenticate_as('bob');
select is(creditkit_has_credits(1), false, 'has_credits: a user with no account has nothing');
select throws_ok($$ insert into public.tasks (prompt) values ('policy only') $$, '42501', null,
  'the policy refuses a user with no account');
select is((select count(*) from public.tasks), 0::bigint, 'RLS: bob sees none of alice''s tasks');

-- Anon: not callable, and the table is closed.
select tests.authenticate_as_anon();
select throws_ok($$ select creditkit_has_credits(1) $$, '42501', null, 'anon cannot call has_credits');
select throws_ok($$ insert into public.tasks (owner_id, prompt) values (tests.get_supabase_uid('alice'), 'x') $$,
  '42501', null, 'anon cannot insert a task');

-- =============================================================================================
-- The trigger: the insert pays for itself in the same transaction.
-- =============================================================================================
select tests.clear_authentication();
create trigger charge_image_gen before insert on public.tasks
  for each row execute function creditkit.charge_on_insert('image_gen', '4');
delete from public.tasks;

-- Member
select tests.authenticate_as('alice');
select lives_ok($$ insert into public.tasks (prompt) values ('a cat in a hat') returning id, prompt $$,
  'a member with enough credit inserts a task');
select is((select balance from creditkit_my_balance()), 12::bigint, 'the insert charged 4 x 2 = 8 (20 -> 12)');
select results_eq(
  $$ select kind::text, amount::bigint, balance_after::bigint, event, metadata ->> 'table', (metadata ->> 'quantity')::bigint,
            (metadata ->> 'unit_credits')::bigint
       from creditkit.ledger where kind = 'consume' $$,
  $$ values ('consume'::text, -8::bigint, 12::bigint, 'image_gen'::text, 'public.tasks'::text, 4::bigint, 2::bigint) $$,
  'one consume row, naming the table the insert went to');

-- A rolled-back insert leaves no charge: the charge is part of the insert's transaction.
savepoint before_task;
insert into public.tasks (prompt) values ('rolled back');
rollback to savepoint before_task;
select results_eq(
  $$ select (select count(*) from public.tasks), (select count(*) from creditkit.ledger where kind = 'consume'),
            (select balance from creditkit_my_balance()) $$,
  $$ values (1::bigint, 1::bigint, 12::bigint) $$,
  'an insert rolled back (to a savepoint) left no task and no charge');

select lives_ok($$ insert into public.tasks (prompt) values ('a dog') $$, 'a second task (12 -> 4)');
-- 4 left: the policy (4 credits) passes, the charge (8) does not.
select throws_ok($$ insert into public.tasks (prompt) values ('one too many') $$, 'CK002', null,
  'an insert the account cannot pay for fails with CK002');
select results_eq(
  $$ select (select count(*) from public.tasks), (select count(*) from creditkit.ledger where kind = 'consume'),
            (select balance from creditkit_my_balance()) $$,
  $$ values (2::bigint, 2::bigint, 4::bigint) $$,
  'the refused insert left no task and no ledger row');

-- dora has 5: the policy passes, the trigger refuses.
select tests.authenticate_as('dora');
select throws_ok($$ insert into public.tasks (prompt) values ('cannot pay') $$, 'CK002', null,
  'dora (5 credits) cannot pay 8: CK002');
select results_eq(
  $$ select (select count(*) from public.tasks), (select count(*) from creditkit.ledger),
            (select balance from creditkit_my_balance()) $$,
  $$ values (0::bigint, 1::bigint, 5::bigint) $$,
  'no task, no ledger row beyond her grant, balance untouched');

-- Server inserts: there is no signed-in user to charge, so a table without an account column
-- cannot be charged from the server.
select tests.authenticate_as_service_role();
select throws_ok(
  $$ insert into public.tasks (owner_id, prompt) values (tests.get_supabase_uid('alice'), 'from the server') $$,
  'CK005', null, 'a server insert without a signed-in user must name the account: CK005');

-- Trigger arguments are validated when the trigger fires.
select tests.clear_authentication();
create table public.bad_tasks (id uuid primary key default gen_random_uuid(), prompt text);
revoke all on table public.bad_tasks from anon, authenticated, service_role;
grant insert on table public.bad_tasks to authenticated;
create trigger charge_bad_quantity before insert on public.bad_tasks
  for each row execute function creditkit.charge_on_insert('image_gen', 'lots');
select tests.authenticate_as('alice');
select throws_ok($$ insert into public.bad_tasks (prompt) values ('x') $$, 'CK006', null,
  'trigger: a quantity that is not an integer is CK006');
select tests.clear_authentication();
drop trigger charge_bad_quantity on public.bad_tasks;
create trigger charge_zero before insert on public.bad_tasks
  for each row execute function creditkit.charge_on_insert('image_gen', '0');
select tests.authenticate_as('alice');
select throws_ok($$ insert into public.bad_tasks (prompt) values ('x') $$, 'CK001', null,
  'trigger: quantity 0 is CK001');
select tests.clear_authentication();
drop trigger charge_zero on public.bad_tasks;
create trigger charge_unpriced before insert on public.bad_tasks
  for each row execute function creditkit.charge_on_insert('video_gen');
select tests.authenticate_as('alice');
select throws_ok($$ insert into public.bad_tasks (prompt) values ('x') $$, 'CK010', null,
  'trigger: an event with no price is CK010');
select tests.clear_authentication();
drop table public.bad_tasks;
select results_eq(
  $$ select balance::bigint, version from creditkit.accounts where id = tests.get_supabase_uid('alice') $$,
  $$ values (4::bigint, 3::bigint) $$,
  'misconfigured triggers charged nothing');

-- =============================================================================================
-- Team accounts: the third argument names the account column; the access rule decides who may
-- charge it. The table's own policy is deliberately permissive, so the trigger's check is what
-- refuses an outsider.
-- =============================================================================================
create table public.test_team_members (
  team_id uuid not null,
  user_id uuid not null,
  primary key (team_id, user_id)
);
revoke all on table public.test_team_members from anon, authenticated, service_role;
-- The rule runs as the caller (security invoker), so the caller must read the memberships.
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
select creditkit_grant('00000000-0000-4000-8000-0000000000ea', 20, p_now => '2020-01-01 00:00:00+00');

create table public.team_tasks (
  id uuid primary key default gen_random_uuid(),
  account_id uuid not null,
  prompt text not null
);
alter table public.team_tasks enable row level security;
revoke all on table public.team_tasks from anon, authenticated, service_role;
grant select, insert on table public.team_tasks to authenticated, service_role;
create policy "signed-in users may try to create team tasks"
  on public.team_tasks for insert to authenticated with check (true);
create policy "team members can read their team's tasks"
  on public.team_tasks for select to authenticated using (creditkit.can_access_account(account_id));
create trigger charge_image_gen before insert on public.team_tasks
  for each row execute function creditkit.charge_on_insert('image_gen', '2', 'account_id');

-- Member of the team: the team pays, not her.
select tests.authenticate_as('alice');
select lives_ok(
  $$ insert into public.team_tasks (account_id, prompt) values ('00000000-0000-4000-8000-0000000000ea', 'team job') returning id $$,
  'a team member inserts a task for the team');
select results_eq(
  $$ select (select balance from creditkit_my_balance('00000000-0000-4000-8000-0000000000ea')),
            (select balance from creditkit_my_balance()) $$,
  $$ values (16::bigint, 4::bigint) $$,
  'the team account paid 2 x 2 = 4; her own account did not');
select results_eq(
  $$ select account_id, amount::bigint, metadata ->> 'table' from creditkit.ledger
      where account_id = '00000000-0000-4000-8000-0000000000ea' and kind = 'consume' $$,
  $$ values ('00000000-0000-4000-8000-0000000000ea'::uuid, -4::bigint, 'public.team_tasks'::text) $$,
  'the consume row is on the team account');

-- Outsider: the trigger refuses to charge an account he may not access.
select tests.authenticate_as('bob');
select throws_ok(
  $$ insert into public.team_tasks (account_id, prompt) values ('00000000-0000-4000-8000-0000000000ea', 'free ride') $$,
  'CK005', null, 'an outsider cannot charge the team account: CK005');
-- Nor alice's personal account, even naming it in the row.
select throws_ok(
  $$ insert into public.team_tasks (account_id, prompt) values (tests.get_supabase_uid('alice'), 'free ride') $$,
  'CK005', null, 'an outsider cannot charge another user''s account through the column: CK005');

-- Server: with the account column, a server insert names the account and charges it.
select tests.authenticate_as_service_role();
select lives_ok(
  $$ insert into public.team_tasks (account_id, prompt) values ('00000000-0000-4000-8000-0000000000ea', 'nightly batch') $$,
  'a server insert naming the account charges it');
select tests.clear_authentication();
select results_eq(
  $$ select (select balance::bigint from creditkit.accounts where id = '00000000-0000-4000-8000-0000000000ea'),
            (select count(*) from public.team_tasks) $$,
  $$ values (12::bigint, 2::bigint) $$,
  'the team paid for the member''s and the server''s task, not for the outsider''s attempts');

-- Anon on a table anon may insert into (say, a public form): no user, but not the server either.
-- Treating "no user" as "server" would let anyone charge any account by naming it in the row.
grant insert on table public.team_tasks to anon;
create policy "anyone may submit a team task"
  on public.team_tasks for insert to anon with check (true);
select tests.authenticate_as_anon();
select throws_ok(
  $$ insert into public.team_tasks (account_id, prompt) values ('00000000-0000-4000-8000-0000000000ea', 'anon') $$,
  'CK005', null, 'anon cannot charge an account by naming it: CK005');
-- Nor a session with the authenticated role but no user id.
select set_config('role', 'authenticated', true);
select set_config('request.jwt.claims', '{"role":"authenticated"}', true);
select throws_ok(
  $$ insert into public.team_tasks (account_id, prompt) values ('00000000-0000-4000-8000-0000000000ea', 'no sub') $$,
  'CK005', null, 'a signed-in role without a user id cannot charge an account by naming it: CK005');
select tests.clear_authentication();

-- =============================================================================================
-- Invariants.
-- =============================================================================================
select is_empty(
  $$ select a.id from creditkit.accounts a
      where a.balance <> (select coalesce(sum(l.amount), 0) from creditkit.ledger l where l.account_id = a.id)
         or a.balance <> (select coalesce(sum(g.remaining), 0) from creditkit.grants g where g.account_id = a.id) - a.undrawn $$,
  'for every account: balance = sum(ledger) = sum(buckets)');
select is(
  (select count(*) from creditkit.ledger where kind = 'consume'),
  (select count(*) from public.tasks) + (select count(*) from public.team_tasks),
  'one charge per task that exists, none for any insert that failed');

select * from finish();
rollback;
