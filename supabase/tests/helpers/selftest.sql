-- Self-test of supabase_test_helpers.sql, run by scripts/pgtap.ts before the product's test
-- files in each privilege mode: if switching actors is broken, every other result is noise.
begin;
select plan(14);

select tests.create_supabase_user('alice', 'alice@example.test');
select tests.create_supabase_user('bob');

select isnt(tests.get_supabase_uid('alice'), null, 'get_supabase_uid finds a created user');
select isnt(tests.get_supabase_uid('alice'), tests.get_supabase_uid('bob'), 'each identifier is its own user');
select throws_ok($$select tests.get_supabase_uid('nobody')$$, 'P0001', null, 'an unknown identifier raises');

select tests.authenticate_as('alice');
select is(current_user::text, 'authenticated', 'authenticate_as switches to authenticated');
select is(auth.uid(), tests.get_supabase_uid('alice'), 'auth.uid() is the user');
select is(auth.jwt() ->> 'email', 'alice@example.test', 'the claims carry the email');

select tests.authenticate_as('bob');
select is(auth.uid(), tests.get_supabase_uid('bob'), 'switching user from authenticated works');

select tests.authenticate_as_anon();
select is(current_user::text, 'anon', 'authenticate_as_anon switches to anon');
select is(auth.uid(), null, 'auth.uid() is NULL for anon');

select tests.authenticate_as_service_role();
select is(current_user::text, 'service_role', 'authenticate_as_service_role switches to service_role');
select is(auth.role(), 'service_role', 'auth.role() is service_role');

select tests.authenticate_as_anon();
select tests.clear_authentication();
select is(current_user::text, 'postgres', 'clear_authentication returns to postgres, even from anon');
select is(auth.jwt(), null, 'clear_authentication drops the claims');

select ok(current_setting('creditkit.privilege_mode', true) in ('supabase', 'revoked'), 'the privilege mode is visible to tests');

select * from finish();
rollback;
