-- ledger_grant_reference: a ledger row that names a grant needs that grant, and a grant the
-- ledger names cannot be deleted (23503 both ways, as the foreign key this replaced raised). The
-- check fires only for rows with a grant_id, so consume rows queue no trigger at all.
--
-- Rows are written directly as the table owner: the kit's functions never write a bad reference,
-- so only a direct write can test the rule.
begin;
select plan(7);

select tests.create_supabase_user('alice');
select tests.authenticate_as_service_role();
select creditkit_grant(tests.get_supabase_uid('alice'), 10, p_now => '2030-01-01 00:00:00+00');
select tests.clear_authentication();

create temporary table ck_ids as
select (select id from creditkit.grants where account_id = tests.get_supabase_uid('alice')) as grant_id,
       (select coalesce(max(id), 0) + 1000000 from creditkit.grants) as missing_id;

select throws_ok(
  $$ insert into creditkit.ledger (account_id, kind, amount, balance_after, grant_id)
     values (tests.get_supabase_uid('alice'), 'adjust', 1, 11, (select missing_id from ck_ids)) $$,
  '23503', null, 'a ledger row naming a grant that does not exist: 23503');
select lives_ok(
  $$ insert into creditkit.ledger (account_id, kind, amount, balance_after, grant_id)
     values (tests.get_supabase_uid('alice'), 'adjust', 1, 11, (select grant_id from ck_ids)) $$,
  'a ledger row naming an existing grant is written');
select lives_ok(
  $$ insert into creditkit.ledger (account_id, kind, amount, balance_after)
     values (tests.get_supabase_uid('alice'), 'consume', -1, 10) $$,
  'a row without a grant is written');
select throws_ok(
  $$ delete from creditkit.grants where id = (select grant_id from ck_ids) $$,
  '23503', null, 'a grant the ledger names cannot be deleted: 23503');
select is((select count(*) from creditkit.grants where id = (select grant_id from ck_ids)), 1::bigint,
  'and it is still there');

-- A grant no ledger row names can go (written directly: every kit grant has its ledger row).
insert into creditkit.grants (account_id, category, amount, remaining, priority)
values (tests.get_supabase_uid('alice'), 'adjustment', 1, 1, 10);
select lives_ok(
  $$ delete from creditkit.grants where account_id = tests.get_supabase_uid('alice')
       and id <> (select grant_id from ck_ids) $$,
  'a grant the ledger does not name can be deleted');

-- The check is queued only for rows with a grant: its WHEN condition is tested before queuing.
select is(
  (select pg_get_triggerdef(t.oid) like '%WHEN ((new.grant_id IS NOT NULL))%'
     from pg_trigger t where t.tgrelid = 'creditkit.ledger'::regclass and t.tgname = 'ledger_grant_exists'),
  true, 'the ledger''s grant check fires only WHEN grant_id IS NOT NULL');

select * from finish();
rollback;
