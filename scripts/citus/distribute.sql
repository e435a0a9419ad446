-- creditkit on Citus: place every kit table on the cluster, scaled out by account.
--
--   psql -X -v ON_ERROR_STOP=1 -d "$COORDINATOR_URL" -f scripts/citus/distribute.sql
--
-- Run it on the coordinator of a database that has the citus extension and its workers registered,
-- after supabase/migrations are installed there (through the coordinator, as on any Postgres). It
-- is plain SQL (no psql commands), one transaction: every table is placed or none is. It is
-- idempotent: a table already placed as below is left as it is, so running it again places only
-- what is not placed yet (nothing, the second time). A table placed otherwise (say distributed by
-- another column) is an error, not something this script moves.
--
-- The layout, by the classes of supabase/tests/distribution.test.sql (which checks on plain Postgres
-- that the keys allow it):
--   per-account   hash-distributed by the account and colocated with creditkit.accounts, so an
--                 account's rows, and every statement of a call about one account, are on one node:
--                 accounts (by id); grants, ledger, ledger_keys, holds, subscriptions, allowances,
--                 account_alerts, auto_topups, and the outbox (notifications, deliveries) and topups
--                 (by account_id; 0.3.0). The triggers that write the outbox and the top-ups
--                 (watch_balance at commit, notify_plan_change) run on the account's worker and
--                 write there only, so a transaction that changes watched balances on two workers
--                 commits each worker's events with its balances (docs/citus.md, "0.3.0").
--   catalogue     reference tables (a copy on every node): error_codes, settings, units,
--                 starter_grants, plans, plan_limits, prices, packs, auto_topup_terms, balance_alerts,
--                 webhook_endpoints
--   Stripe state  reference tables too (keyed by Stripe's ids; a refund may arrive before the account
--                 is known): stripe_customers, stripe_events, stripe_payments, stripe_invoices,
--                 stripe_payment_methods, stripe_default_methods
-- A kit table this list does not name is an error: a new table must be classed here first.
--
-- Shards per distributed table: citus.shard_count of the session (Citus's default, 32); set it
-- before running this to choose another (the tests use 4).
--
-- What Citus needs around the placement (docs/citus.md, R1 and R4):
--   * the foreign keys to the tables that become reference tables (accounts.unit -> units,
--     subscriptions.plan_id -> plans, stripe_invoices.plan_id -> plans, stripe_payments.pack_id ->
--     packs) are dropped before and added back after, as they were. When a table becomes a
--     reference table, Citus turns every plain table that references it, and that table's whole
--     foreign-key graph (subscriptions -> accounts
--     -> grants, ledger, holds ...), into Citus-managed local tables: those cannot reference a
--     distributed accounts ("cannot create foreign key constraint since foreign keys from reference
--     tables and local tables to distributed tables are not supported"), nor be distributed later
--     ("cannot complete operation on a table with identity column"), nor, in the same transaction, be
--     made reference tables ("relation "stripe_payments_102013" is a shard relation"). The other way
--     round, a table that references a plain table cannot be placed ("referenced table "plans" must be
--     a distributed table or a reference table"). Once both sides are placed the keys are accepted.
--   * citus.enable_unsafe_triggers: Citus refuses to distribute a table that has triggers (the
--     ledger's append-only guards and grant check, the grants' delete guard, the subscriptions'
--     renewal guard) without it. Needed for the DDL only; the triggers then fire on every shard.
--   * citus.multi_shard_modify_mode = sequential: several placements in one transaction; Citus
--     refuses to create a reference table after a parallel operation on a distributed table.
--   * creditkit.open_unit runs with citus.allow_nested_distributed_execution: it is called inside a
--     statement on the account's shard (unit_row_ready's `exists (select from accounts …) or
--     open_unit(…)`) and reads the units reference table, which Citus refuses as a distributed query
--     from a query on a shard (docs/citus.md F7); every table it reads or writes has a copy or the
--     account's shard on that node, so the nested statements run locally, in the same transaction.
--   * creditkit.card_on_file runs with it too, for the same reason (0.3.0): it reads only reference
--     tables (the Stripe customer and card), and is called inside a statement on the account's shard
--     (auto_topup_of's select list, once that function is plpgsql: docs/citus.md, "0.3.0").
--   * the kit's functions that name a table's row type were created on the coordinator only (their
--     table was not distributed yet); they are propagated to the workers at the end, as is every
--     other kit function Citus does not know yet (no delegation: calls still run on the coordinator).
--
-- Delegation (opt-in: set creditkit.citus_delegate = on in the session first; `creditkit distribute
-- --delegate`): the server API functions about one account (creditkit_delegated below, each taking
-- p_account_id first) become distributed functions keyed by it and colocated with accounts. A call
-- outside a transaction block (a pool in autocommit, pgbench, psql) is then sent whole to the worker
-- that holds the account's shard: one round trip, every statement local there. Inside a transaction
-- block (PostgREST wraps each RPC in one) Citus does not delegate: the call runs on the coordinator,
-- a round trip per statement, as before. The ledger and grant ids a worker hands out come from that
-- node's range of the sequence (docs/citus.md, D1).
--
-- Why it is off unless asked for (docs/citus.md, "Delegated calls"): Citus sends a delegated call to
-- the worker over a connection as the calling role. The Data API roles (anon, authenticated,
-- service_role) cannot log in, so a delegated call made as one of them fails ("role "service_role"
-- is not permitted to log in"): the SDK over node-postgres, which calls as service_role in an
-- implicit transaction, is delegated, and every call failed. And a signed-in user's call to a server
-- function is refused with that connection error instead of 42501. Without delegation every call
-- runs on the coordinator, where the kit's SECURITY DEFINER functions reach the workers as their
-- owner. Turn it on when the server calls as a role that may log in to the workers.
-- Careful (docs/citus.md, F10): on Citus 13.2.2 a delegated call with a NULL account made outside a
-- transaction block (`select * from creditkit_consume(null, 1)`, or a NULL bound to $1) crashes
-- the coordinator's planner (signal 11: every backend of the coordinator restarts). Nothing in a
-- function can catch it. Without delegation (the default) the functions are distributed without a
-- distribution argument (a run without it takes back a delegation made before), every call runs on
-- the coordinator, and a NULL account raises CK006 as on Postgres.
begin;

set local citus.enable_unsafe_triggers = on;
set local citus.multi_shard_modify_mode = 'sequential';

create temporary table creditkit_layout (
  ord int primary key,
  tbl regclass not null unique,
  kind text not null check (kind in ('distributed', 'reference')),
  account_column name
) on commit drop;

-- In placing order: the reference tables first (catalogues before the Stripe state that references
-- them), then accounts (the colocation group), then the per-account tables, each after the tables it
-- references.
insert into creditkit_layout values
  (1, 'creditkit.error_codes', 'reference', null),
  (2, 'creditkit.settings', 'reference', null),
  (3, 'creditkit.units', 'reference', null),
  (4, 'creditkit.starter_grants', 'reference', null),
  (5, 'creditkit.plans', 'reference', null),
  (6, 'creditkit.plan_limits', 'reference', null),
  (7, 'creditkit.prices', 'reference', null),
  (8, 'creditkit.packs', 'reference', null),
  (9, 'creditkit.stripe_customers', 'reference', null),
  (10, 'creditkit.stripe_events', 'reference', null),
  (11, 'creditkit.stripe_payments', 'reference', null),
  (12, 'creditkit.stripe_invoices', 'reference', null),
  (13, 'creditkit.stripe_payment_methods', 'reference', null),
  (14, 'creditkit.stripe_default_methods', 'reference', null),
  (15, 'creditkit.auto_topup_terms', 'reference', null),
  (16, 'creditkit.balance_alerts', 'reference', null),
  (17, 'creditkit.webhook_endpoints', 'reference', null),
  (30, 'creditkit.accounts', 'distributed', 'id'),
  (31, 'creditkit.grants', 'distributed', 'account_id'),
  (32, 'creditkit.ledger', 'distributed', 'account_id'),
  (33, 'creditkit.ledger_keys', 'distributed', 'account_id'),
  (34, 'creditkit.holds', 'distributed', 'account_id'),
  (35, 'creditkit.subscriptions', 'distributed', 'account_id'),
  (36, 'creditkit.allowances', 'distributed', 'account_id'),
  (37, 'creditkit.account_alerts', 'distributed', 'account_id'),
  (38, 'creditkit.auto_topups', 'distributed', 'account_id'),
  (39, 'creditkit.notifications', 'distributed', 'account_id'),
  (40, 'creditkit.deliveries', 'distributed', 'account_id'),
  (41, 'creditkit.topups', 'distributed', 'account_id');

-- Delegated to the account's worker (public.<name>, one function of that name, p_account_id uuid
-- first): the server-only calls that read and write one account's rows and read only reference
-- tables otherwise. Not here: the my_* readers (their account comes from the JWT claims, which a
-- worker does not see, docs/citus.md F9) and history, set_plan (its delegation not tried), anything
-- that finds its account through a hold or a Stripe id, and batches (several accounts).
create temporary table creditkit_delegated (name name primary key) on commit drop;
insert into creditkit_delegated values
  ('creditkit_consume'), ('creditkit_consume_or_raise'), ('creditkit_report'), ('creditkit_meter'),
  ('creditkit_check'), ('creditkit_balance'), ('creditkit_grant'), ('creditkit_adjust'), ('creditkit_reserve');

do $distribute$
declare
  colocation constant regclass := 'creditkit.accounts';
  delegate constant text := coalesce(nullif(current_setting('creditkit.citus_delegate', true), ''), 'off');
  t record;
  k record;
  unclassed text;
  keys text[][] := '{}';  -- {table, constraint, definition} of each foreign key dropped for the placement
begin
  if delegate not in ('on', 'off') then
    raise exception 'creditkit distribute: creditkit.citus_delegate is on or off, not %', delegate;
  end if;
  if to_regclass('pg_catalog.pg_dist_partition') is null then
    raise exception 'creditkit distribute: the citus extension is not installed in database %', current_database();
  end if;

  -- Every kit table is classed.
  select string_agg(c.oid::regclass::text, ', ' order by c.relname) into unclassed
    from pg_catalog.pg_class c
   where c.relnamespace = 'creditkit'::regnamespace and c.relkind in ('r', 'p')
     and c.oid not in (select l.tbl from creditkit_layout l)
     and not relation_is_a_known_shard(c.oid);  -- a shard of a reference table on the coordinator
  if unclassed is not null then
    raise exception 'creditkit distribute: % not in the layout (scripts/citus/distribute.sql)', unclassed
      using hint = 'class each new table as per-account (distributed by its account) or catalogue/Stripe state (reference)';
  end if;

  -- A table already placed as the layout says stays as it is; placed otherwise is an error. So is a
  -- Citus-managed local table (partmethod n, repmodel s): what Citus makes of a plain table that
  -- references a reference table (create_reference_table run by hand, before this script). Citus
  -- refuses to distribute or alter those once they have identity columns ("cannot complete operation
  -- on a table with identity column"), and undistribute_table drops the functions that name their
  -- row types; this script does not try.
  for t in select l.*, p.partmethod, p.repmodel, p.colocationid,
                  case when p.partmethod = 'h' then column_to_column_name(p.logicalrelid, p.partkey) end as partcol
             from creditkit_layout l join pg_dist_partition p on p.logicalrelid = l.tbl
            order by l.ord
  loop
    if t.partmethod = 'n' and t.repmodel = 's' then
      raise exception 'creditkit distribute: % is a Citus-managed local table, not placed by this script', t.tbl
        using hint = 'run this script on the kit as the migrations install it, before any create_reference_table or create_distributed_table of a kit table';
    elsif t.kind = 'reference' and not (t.partmethod = 'n' and t.repmodel = 't') then
      raise exception 'creditkit distribute: % is already distributed, it should be a reference table', t.tbl;
    elsif t.kind = 'distributed' and (t.partmethod is distinct from 'h' or t.partcol is distinct from t.account_column::text) then
      raise exception 'creditkit distribute: % is already placed, not as distributed by %', t.tbl, t.account_column;
    elsif t.kind = 'distributed' and t.tbl <> colocation
          and t.colocationid is distinct from (select p.colocationid from pg_dist_partition p where p.logicalrelid = colocation) then
      raise exception 'creditkit distribute: % is distributed by % but not colocated with %', t.tbl, t.account_column, colocation;
    end if;
  end loop;

  -- Foreign keys from a table not placed yet to a table that becomes a reference table: dropped
  -- now, added back at the end (see the header).
  for k in select c.conrelid::regclass as tbl, c.conname, pg_catalog.pg_get_constraintdef(c.oid) as def
             from pg_catalog.pg_constraint c
             join creditkit_layout src on src.tbl = c.conrelid
             join creditkit_layout dst on dst.tbl = c.confrelid and dst.kind = 'reference'
            where c.contype = 'f'
              and not exists (select from pg_dist_partition p where p.logicalrelid = c.conrelid)
            order by 1, 2
  loop
    keys := keys || array[[k.tbl::text, k.conname::text, k.def]];
    execute format('alter table %s drop constraint %I', k.tbl, k.conname);
  end loop;

  for t in select l.* from creditkit_layout l order by l.ord loop
    if exists (select from pg_dist_partition p where p.logicalrelid = t.tbl) then
      continue;  -- already placed as the layout says (checked above)
    elsif t.kind = 'reference' then
      perform create_reference_table(t.tbl);
    elsif t.tbl = colocation then
      -- 'default' (Citus's own): colocated with the app's tables distributed by a uuid, if any
      perform create_distributed_table(t.tbl, t.account_column, colocate_with => 'default');
    else
      perform create_distributed_table(t.tbl, t.account_column, colocate_with => colocation::text);
    end if;
  end loop;

  for i in 1 .. coalesce(array_length(keys, 1), 0) loop
    execute format('alter table %s add constraint %I %s', keys[i][1], keys[i][2], keys[i][3]);
  end loop;

  -- Kit functions Citus has not propagated (created while a table they name was local): to every
  -- node, without a distribution argument (a call is not delegated to a worker).
  perform create_distributed_function(p.oid::regprocedure)
     from pg_catalog.pg_proc p
    where (p.pronamespace = 'creditkit'::regnamespace
           or (p.pronamespace = 'public'::regnamespace and p.proname like 'creditkit\_%'))
      and p.prokind in ('f', 'p', 'a')
      and not exists (select from pg_catalog.pg_dist_object o
                       where o.classid = 'pg_catalog.pg_proc'::regclass and o.objid = p.oid);

  alter function creditkit.open_unit(uuid, text, timestamptz, boolean) set citus.allow_nested_distributed_execution = on;
  alter function creditkit.card_on_file(uuid) set citus.allow_nested_distributed_execution = on;
  -- The functions that read per-account tables of every shard (parallel, by default) and then
  -- write a reference table (creditkit_upsert_plan reads subscriptions, then writes plans;
  -- upsert_unit reads accounts, then writes units; the delivery result reads deliveries, then
  -- disables an endpoint on a 410; ...): Citus refuses that write after a parallel read in one
  -- transaction ("cannot modify table … because there was a parallel operation on a distributed
  -- table", docs/citus.md, F6). In sequential mode the read goes over one connection per worker, and
  -- the write is accepted. They are the operator's and the worker's calls, not the debit path.
  for t in select p.oid::regprocedure as fn
             from pg_catalog.pg_proc p
            where p.pronamespace = 'public'::regnamespace
              and p.proname in ('creditkit_upsert_plan', 'creditkit_upsert_unit', 'creditkit_set_plan_limit',
                                'creditkit_set_price', 'creditkit_upsert_pack', 'creditkit_set_auto_topup_terms',
                                'creditkit_set_balance_alert', 'creditkit_upsert_webhook_endpoint',
                                'creditkit_delete_webhook_endpoint', 'creditkit_worker_delivery_result')
  loop
    execute format('alter function %s set citus.multi_shard_modify_mode = %L', t.fn, 'sequential');
  end loop;

  -- The single-account API, delegated by its account (see the header); a function already
  -- delegated so is left as it is. Unless creditkit.citus_delegate = on, none is (see the header).
  for t in select d.name, p.oid::regprocedure as fn, p.proargnames[1] as first_name, p.proargtypes[0] as first_type,
                  o.distribution_argument_index as arg, o.colocationid
             from creditkit_delegated d
             left join pg_catalog.pg_proc p on p.proname = d.name and p.pronamespace = 'public'::regnamespace
             left join pg_catalog.pg_dist_object o on o.classid = 'pg_catalog.pg_proc'::regclass and o.objid = p.oid
            order by d.name
  loop
    if t.fn is null or (select count(*) from pg_catalog.pg_proc p
                         where p.proname = t.name and p.pronamespace = 'public'::regnamespace) <> 1 then
      raise exception 'creditkit distribute: public.% is not one function', t.name;
    elsif t.first_name is distinct from 'p_account_id' or t.first_type <> 'uuid'::regtype then
      raise exception 'creditkit distribute: % does not take p_account_id uuid first', t.fn;
    elsif delegate = 'off' then
      if t.arg is not null then
        perform create_distributed_function(t.fn);  -- no distribution argument: not delegated
      end if;
    elsif t.arg is distinct from 0
          or t.colocationid is distinct from (select p.colocationid from pg_dist_partition p where p.logicalrelid = colocation) then
      perform create_distributed_function(t.fn, 'p_account_id', colocate_with => colocation::text);
    end if;
  end loop;

  -- The caller-bound reads as the owner (docs/citus.md F9). A SECURITY INVOKER function reaches
  -- the workers as the current user, which for a Data API call is the NOLOGIN authenticated role
  -- (08006); and RLS on a worker would not see the caller's JWT claims, which Citus does not pass
  -- on. Each of these decides access on the coordinator before it reads
  -- (creditkit.caller_account, or auth.uid() and creditkit.can_access_account for has_credits),
  -- then reads only that account's rows, so as the owner it answers exactly what it answers as
  -- the caller on Postgres, where the migrations leave it invoker with RLS behind its own check.
  -- The server reads of per-account tables are security definer in the schema already (with
  -- assert_server_caller). A function here that no longer binds the caller is an error, not a
  -- function this script opens. Propagated to the workers (the functions are distributed above).
  for t in select r.fn, p.oid, p.prosecdef, p.prosrc, p.proconfig
             from (values ('public.creditkit_my_balance(uuid,text)'),
                          ('public.creditkit_my_history(uuid,integer,bigint,text)'),
                          ('public.creditkit_my_check(text,bigint,uuid)'),
                          ('public.creditkit_my_plan(uuid)'),
                          ('public.creditkit_my_feature(text,uuid)'),
                          ('public.creditkit_has_credits(bigint,uuid,text)')) as r(fn)
             left join pg_catalog.pg_proc p on p.oid = to_regprocedure(r.fn)
            order by 1
  loop
    if t.oid is null then
      raise exception 'creditkit distribute: % does not exist', t.fn;
    elsif t.prosrc !~ 'creditkit\.(caller_account|can_access_account)\(' then
      raise exception 'creditkit distribute: % does not bind the caller (creditkit.caller_account), not made security definer', t.fn;
    elsif not coalesce('search_path=""' = any (t.proconfig), false) then
      raise exception 'creditkit distribute: % does not pin search_path to '''', not made security definer', t.fn;
    elsif not t.prosecdef then
      execute format('alter function %s security definer', t.oid::regprocedure);
    end if;
  end loop;
end
$distribute$;

commit;
