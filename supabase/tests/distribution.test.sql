-- distribution: the keys that let the kit be sharded by account (Citus distributes a table by one
-- column; its primary key, unique keys and foreign keys must include that column). Read from the
-- catalog, so a new table or key that breaks a rule fails here, on plain Postgres.
--   per-account tables: distributed by the account (accounts.id, everyone else's account_id);
--   catalogue tables: replicated to every node (reference tables);
--   Stripe state: keyed by Stripe's ids (the account may not be known yet), replicated too.
-- The outbox (notifications, deliveries) and the top-ups are per-account (0.3.0): the balance watch
-- writes them in the debit's transaction, so on Citus they must live on the account's node.
begin;
select plan(7);

create temporary table ck_layout (relname text primary key, class text not null, account_column text);
insert into ck_layout values
  ('accounts', 'per-account', 'id'),
  ('grants', 'per-account', 'account_id'),
  ('ledger', 'per-account', 'account_id'),
  ('ledger_keys', 'per-account', 'account_id'),
  ('holds', 'per-account', 'account_id'),
  ('subscriptions', 'per-account', 'account_id'),
  ('allowances', 'per-account', 'account_id'),
  ('error_codes', 'catalogue', null),
  ('units', 'catalogue', null),
  ('plan_limits', 'catalogue', null),
  ('settings', 'catalogue', null),
  ('starter_grants', 'catalogue', null),
  ('plans', 'catalogue', null),
  ('prices', 'catalogue', null),
  ('packs', 'catalogue', null),
  ('stripe_customers', 'stripe', null),
  ('stripe_events', 'stripe', null),
  ('stripe_payments', 'stripe', null),
  ('stripe_invoices', 'stripe', null),
  -- 0.3.0: balance alerts and auto top-up
  ('account_alerts', 'per-account', 'account_id'),
  ('auto_topups', 'per-account', 'account_id'),
  ('topups', 'per-account', 'account_id'),
  ('balance_alerts', 'catalogue', null),
  ('auto_topup_terms', 'catalogue', null),
  ('webhook_endpoints', 'catalogue', null),
  ('stripe_payment_methods', 'stripe', null),
  ('stripe_default_methods', 'stripe', null),
  ('notifications', 'per-account', 'account_id'),
  ('deliveries', 'per-account', 'account_id');

create temporary view ck_tables as
select c.oid, c.relname::text as relname, l.class, l.account_column
  from pg_catalog.pg_class c
  join pg_catalog.pg_namespace n on n.oid = c.relnamespace
  left join ck_layout l on l.relname = c.relname
 where n.nspname = 'creditkit' and c.relkind = 'r';

select is((select array_agg(relname order by relname) from ck_tables where class is null), null,
  'every kit table is classed as per-account, catalogue or Stripe state');

-- Every unique index of a per-account table (its primary key included) has the account column.
create temporary view ck_unique_keys_without_account as
select t.relname || '.' || ic.relname as key
  from ck_tables t
  join pg_catalog.pg_index i on i.indrelid = t.oid and i.indisunique
  join pg_catalog.pg_class ic on ic.oid = i.indexrelid
 where t.class = 'per-account'
   and not exists (select from pg_catalog.pg_attribute a
                    where a.attrelid = t.oid and a.attname = t.account_column and a.attnum = any(i.indkey));
select is(
  (select array_agg(key order by 1) from ck_unique_keys_without_account),
  null, 'every primary key and unique key of a per-account table includes its account column');

select is((select count(*) from ck_tables t where t.class = 'per-account'
             and not exists (select from pg_catalog.pg_index i where i.indrelid = t.oid and i.indisprimary)), 0::bigint,
  'every per-account table has a primary key');

-- A foreign key between two per-account tables pairs their account columns.
select is(
  (select array_agg(f.conname::text order by 1)
     from pg_catalog.pg_constraint f
     join ck_tables src on src.oid = f.conrelid
     join ck_tables dst on dst.oid = f.confrelid
    where f.contype = 'f' and src.class = 'per-account' and dst.class = 'per-account'
      and not exists (select from unnest(f.conkey, f.confkey) k(src_col, dst_col)
                        join pg_catalog.pg_attribute sa on sa.attrelid = f.conrelid and sa.attnum = k.src_col
                        join pg_catalog.pg_attribute da on da.attrelid = f.confrelid and da.attnum = k.dst_col
                       where sa.attname = src.account_column and da.attname = dst.account_column)),
  null, 'every foreign key between per-account tables joins on the account');

select is(
  (select array_agg(src.relname || ' -> ' || dst.relname order by 1)
     from pg_catalog.pg_constraint f
     join ck_tables src on src.oid = f.conrelid
     join ck_tables dst on dst.oid = f.confrelid
    where f.contype = 'f' and src.class <> 'per-account' and dst.class = 'per-account'),
  null, 'no catalogue table or Stripe state references a per-account table');

-- Citus keeps a sequence per node for identity columns, and only bigint ones can be split that way.
select is(
  (select array_agg(t.relname || '.' || a.attname order by 1)
     from ck_tables t
     join pg_catalog.pg_attribute a on a.attrelid = t.oid and a.attnum > 0 and not a.attisdropped
    where (a.attidentity <> '' or pg_catalog.pg_get_serial_sequence('creditkit.' || t.relname, a.attname) is not null)
      and a.atttypid <> 'bigint'::regtype),
  null, 'every identity column is bigint');

select is(
  (select array_agg(c.relname::text order by 1)
     from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'creditkit' and c.relkind = 'S'
      and not exists (select from pg_catalog.pg_depend d where d.objid = c.oid and d.deptype = 'i')),
  null, 'no free-standing sequence: ids come from identity columns');

select * from finish();
rollback;
