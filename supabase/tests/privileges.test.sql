-- privileges: who may execute, read and write what, read from the catalog and compared with
-- an expectation checked in here. The expectation is the security table of the README: server
-- functions are service_role's alone, the caller-bound reads (my_*, has_credits) are for
-- signed-in users, quote is for both, the kit's tables are read-only for authenticated (through
-- RLS) and service_role, and anon gets nothing.
--
-- The matrices are built from the catalog, not from a list of names, so a function or table
-- added later without its revoke/grant fails here until the expectation is updated on purpose.
-- The file must pass under Supabase's grant-everything defaults and under revoked defaults
-- (CREDITKIT_PRIVILEGE_MODE), so it asserts the result, never which default produced it.
begin;
select plan(73);

select tests.create_supabase_user('alice');

-- Every function of ours: everything in schema creditkit and the public.creditkit_* API.
-- The signature is spelled with its schema whatever the search_path is.
create temporary view ck_functions as
  select p.oid,
         format('%s.%s(%s)', n.nspname, p.proname, replace(pg_catalog.oidvectortypes(p.proargtypes), ', ', ','))
           collate "default" as signature,  -- name columns carry collation "C"; compare as text
         p.prosecdef,
         p.proconfig,
         p.prokind,
         p.provolatile
    from pg_catalog.pg_proc p
    join pg_catalog.pg_namespace n on n.oid = p.pronamespace
   where n.nspname = 'creditkit'
      or (n.nspname = 'public' and p.proname like 'creditkit%');

-- =============================================================================================
-- Catalog checks (as postgres, the migration owner).
-- =============================================================================================

-- ---------------------------------------------------------------------------------------------
-- EXECUTE: function x role. PUBLIC's grants count (has_function_privilege includes them), so
-- a forgotten `revoke ... from public` shows up as true for all three roles.
-- ---------------------------------------------------------------------------------------------
select results_eq(
  $$ select signature,
            has_function_privilege('anon', oid, 'execute'),
            has_function_privilege('authenticated', oid, 'execute'),
            has_function_privilege('service_role', oid, 'execute')
       from ck_functions order by 1 $$,
  $$ select * from (values
       -- internals: nobody but the owner. Writers and lock takers run inside the security definer
       -- server functions (as the owner), so no API role needs them; a client that could call
       -- lock_account, book_due or grant_period directly would write around every check.
       ('creditkit.add_grant(uuid,text,text,bigint,integer,timestamp with time zone,jsonb,timestamp with time zone)', false, false, false),
       ('creditkit.append_entry(uuid,text,text,bigint,bigint,text,text,jsonb,timestamp with time zone,timestamp with time zone,bigint,bigint)', false, false, false),
       ('creditkit.apply_settings()', false, false, false),
       ('creditkit.assert_server_caller()', false, false, false),
       ('creditkit.billing_account(uuid)', false, false, false),
       ('creditkit.book_due(uuid,text,timestamp with time zone)', false, false, false),
       ('creditkit.month_charges(uuid,text,timestamp with time zone)', false, false, false),
       ('creditkit.check_threshold(bigint,numeric)', false, false, false),
       ('creditkit.book_expired(uuid,text,timestamp with time zone)', false, false, false),
       ('creditkit.debit(uuid,text,bigint,text,text,jsonb,jsonb,bigint,timestamp with time zone)', false, false, false),
       ('creditkit.draw_down(uuid,text,bigint,timestamp with time zone)', false, false, false),
       ('creditkit.draw_undrawn(uuid,text)', false, false, false),
       ('creditkit.expire_holds(uuid,text,timestamp with time zone)', false, false, false),
       ('creditkit.find_replay(uuid,text,text,text,bigint,text,jsonb,bigint,bigint,text[])', false, false, false),
       ('creditkit.grant_not_in_ledger()', false, false, false),
       ('creditkit.grant_period(uuid,text,creditkit.plans,timestamp with time zone,integer,bigint,text,timestamp with time zone)', false, false, false),
       ('creditkit.ledger_grant_exists()', false, false, false),
       ('creditkit.ledger_is_append_only()', false, false, false),
       ('creditkit.lock_account(uuid,text,timestamp with time zone)', false, false, false),
       ('creditkit.lock_hold(bigint,timestamp with time zone)', false, false, false),
       ('creditkit.meter(uuid,text,bigint,jsonb,text,bigint,jsonb,timestamp with time zone)', false, false, false),
       ('creditkit.refresh_due_at(uuid,text)', false, false, false),
       ('creditkit.reserved_metadata_keys()', false, true, true),
       ('creditkit.running_sum(bigint)', false, false, false),
       ('creditkit.set_lock_timeout(interval)', false, false, false),
       ('creditkit.spendable(uuid,text)', false, false, false),
       ('creditkit.renew_period(uuid,text,timestamp with time zone)', false, false, false),
       -- Stripe: every step of applying an event runs inside creditkit_stripe_apply/_replay (as
       -- the owner); a client that could call an applier directly would grant without an event
       ('creditkit.stripe_allowance_grace()', false, false, false),
       ('creditkit.stripe_dead(text,text)', false, false, false),
       ('creditkit.stripe_dispatch(jsonb,timestamp with time zone)', false, false, false),
       ('creditkit.stripe_event_rank(text)', false, false, false),
       ('creditkit.stripe_id(jsonb)', false, false, false),
       ('creditkit.stripe_invoice_paid(jsonb,jsonb,timestamp with time zone)', false, false, false),
       ('creditkit.stripe_invoice_payment(jsonb,jsonb,timestamp with time zone)', false, false, false),
       ('creditkit.stripe_is_event(jsonb)', false, false, false),
       ('creditkit.stripe_link_customer(uuid,text,timestamp with time zone)', false, false, false),
       ('creditkit.stripe_lock_account(uuid,timestamp with time zone)', false, false, false),
       ('creditkit.stripe_lock_payment(text[])', false, false, false),
       ('creditkit.stripe_pack_checkout(jsonb,jsonb,timestamp with time zone)', false, false, false),
       ('creditkit.stripe_payment(text,text,text)', false, false, false),
       ('creditkit.stripe_plan_for_price(text)', false, false, false),
       ('creditkit.stripe_plan_of_price(text)', false, false, false),
       ('creditkit.stripe_reversal(jsonb,jsonb,timestamp with time zone)', false, false, false),
       ('creditkit.stripe_settle_payment(bigint,timestamp with time zone)', false, false, false),
       ('creditkit.stripe_status(text)', false, false, false),
       ('creditkit.stripe_subscription_account(jsonb,text,text)', false, false, false),
       ('creditkit.stripe_subscription_checkout(jsonb,jsonb,timestamp with time zone)', false, false, false),
       ('creditkit.stripe_subscription_event(jsonb,jsonb,timestamp with time zone)', false, false, false),
       ('creditkit.stripe_time(jsonb)', false, false, false),
       ('creditkit.stripe_upsert_subscription(uuid,text,text,text,text,timestamp with time zone,timestamp with time zone,smallint,text,timestamp with time zone)', false, false, false),
       ('creditkit.stripe_uuid(text)', false, false, false),
       ('creditkit.version()', false, false, true),
       -- units and plan limits: opened, renewed and re-based under the row locks of the server
       -- mutations, so, like the lock point, nobody but the owner
       ('creditkit.lock_plan(uuid,boolean)', false, false, false),
       ('creditkit.lock_units(uuid,timestamp with time zone)', false, false, false),
       ('creditkit.open_unit(uuid,text,timestamp with time zone,boolean)', false, false, false),
       ('creditkit.rebase_units(uuid,timestamp with time zone)', false, false, false),
       ('creditkit.start_allowance(uuid,text,creditkit.plans,timestamp with time zone)', false, false, false),
       ('creditkit.unit_row_ready(uuid,text,timestamp with time zone)', false, false, false),
       -- the starter grant: set up by the installer (owner), granted by the trigger on auth.users
       ('creditkit.disable_starter_grant()', false, false, false),
       ('creditkit.enable_starter_grant()', false, false, false),
       ('creditkit.grant_starter(uuid,timestamp with time zone)', false, false, false),
       ('creditkit.set_starter_grant(text,bigint,text,interval)', false, false, false),
       ('creditkit.starter_grant_on_signup()', false, false, false),
       -- Trigger function: security definer, but nobody holds EXECUTE. Postgres checks EXECUTE
       -- when the trigger is created (by the table owner), not when it fires, and a trigger
       -- function cannot be called through the API at all.
       ('creditkit.charge_on_insert()', false, false, false),
       ('creditkit.stripe_managed_no_lazy_renewal()', false, false, false),
       -- balance alerts and auto top-up (0.3.0): the watch and its triggers, the settings and
       -- reads behind the API, the card on file from Stripe's events, a top-up's outcomes. All
       -- run inside the security definer API (or the deferred trigger, as the owner); a client
       -- that could call notify or topup_failed directly would forge events or disable others'
       -- auto top-ups, and card_on_file hands out customers' cards.
       ('creditkit.auto_topup_of(uuid,text,timestamp with time zone)', false, false, false),
       ('creditkit.balance_alert_of(uuid,text)', false, false, false),
       ('creditkit.card_changed(text)', false, false, false),
       ('creditkit.card_on_file(uuid)', false, false, false),
       ('creditkit.lock_for_setting(uuid,text,timestamp with time zone)', false, false, false),
       ('creditkit.low_level(uuid,text)', false, false, false),
       ('creditkit.set_account_alert(uuid,text,bigint,numeric,timestamp with time zone)', false, false, false),
       ('creditkit.set_auto_topup(uuid,text,boolean,bigint,bigint,bigint,text,bigint,integer,timestamp with time zone)', false, false, false),
       ('creditkit.settles_later(text)', false, false, false),
       ('creditkit.stripe_card_event(jsonb,jsonb,timestamp with time zone)', false, false, false),
       ('creditkit.stripe_payment_method_event(jsonb,jsonb,timestamp with time zone)', false, false, false),
       ('creditkit.stripe_set_default_method(text,text,jsonb)', false, false, false),
       ('creditkit.stripe_topup_payment(jsonb,jsonb,timestamp with time zone)', false, false, false),
       ('creditkit.topup_failed(bigint,boolean,text,text,text,text)', false, false, false),
       ('creditkit.topup_quote(creditkit.auto_topups,bigint)', false, false, false),
       ('creditkit.topups_page(uuid,text,text,integer)', false, false, false),
       ('creditkit.watch(uuid,text,boolean)', false, false, false),
       ('creditkit.watch_balance()', false, false, false),
       ('creditkit.watch_new_row()', false, false, false),
       -- notifications: the outbox writer, the body every delivery sends, the retry schedule
       ('creditkit.delivery_delays()', false, false, false),
       ('creditkit.notification_body(text,text,timestamp with time zone,jsonb)', false, false, false),
       ('creditkit.notify(text,uuid,text,jsonb)', false, false, false),
       ('creditkit.notify_plan_change()', false, false, false),
       -- pure validators (read nothing), called by the security-invoker reads
       ('creditkit.check_amount(bigint)', false, true, true),
       ('creditkit.check_event(text,jsonb,timestamp with time zone)', false, true, true),
       ('creditkit.check_money(bigint)', false, true, true),
       ('creditkit.check_request(text,text,jsonb,timestamp with time zone)', false, true, true),
       ('creditkit.check_unit(text)', false, true, true),
       -- the analytics' period validator: the analytics are service_role's alone, so is it
       ('creditkit.check_period(timestamp with time zone,timestamp with time zone)', false, false, true),
       -- helpers of the security-invoker reads (and of the RLS policies); they read through RLS,
       -- so a signed-in caller learns nothing about accounts it may not read
       ('creditkit.caller_account(uuid)', false, true, false),
       ('creditkit.can_access_account(uuid)', false, true, true),
       ('creditkit.can_manage_billing(uuid)', false, true, true),
       ('creditkit.effective_plan(uuid)', false, true, true),
       ('creditkit.history_page(uuid,text,integer,bigint)', false, true, true),
       ('creditkit.limits_of(text)', false, true, true),
       ('creditkit.live_buckets(uuid,text,timestamp with time zone)', false, true, true),
       ('creditkit.period_index(timestamp with time zone,text,timestamp with time zone)', false, true, true),
       ('creditkit.period_start(timestamp with time zone,text,integer)', false, true, true),
       ('creditkit.price_for(text,jsonb,timestamp with time zone)', false, true, true),
       ('creditkit.price_or_raise(text,jsonb,bigint,timestamp with time zone)', false, true, true),
       ('creditkit.unit_terms(uuid,text)', false, true, true),
       ('creditkit.allowance_anchor(uuid,text,timestamp with time zone)', false, true, true),
       ('creditkit.unopened_allowance(uuid,text,timestamp with time zone)', false, true, true),
       -- server API: service_role only (mutations, server reads, analytics)
       ('public.creditkit_account_margin(timestamp with time zone,timestamp with time zone,uuid)', false, false, true),
       ('public.creditkit_unit_usage(timestamp with time zone,timestamp with time zone,uuid)', false, false, true),
       ('public.creditkit_accounts_per_plan()', false, false, true),
       ('public.creditkit_adjust(uuid,bigint,text,text,jsonb,timestamp with time zone,text)', false, false, true),
       ('public.creditkit_balance(uuid,timestamp with time zone,text)', false, false, true),
       ('public.creditkit_book_expired(timestamp with time zone,integer,text)', false, false, true),
       ('public.creditkit_check(uuid,text,bigint,timestamp with time zone)', false, false, true),
       ('public.creditkit_consume(uuid,bigint,text,text,jsonb,bigint,timestamp with time zone,text)', false, false, true),
       ('public.creditkit_consume_batch(jsonb,timestamp with time zone,text)', false, false, true),
       ('public.creditkit_consume_or_raise(uuid,bigint,text,text,jsonb,bigint,timestamp with time zone,text)', false, false, true),
       ('public.creditkit_credits_outstanding(timestamp with time zone)', false, false, true),
       ('public.creditkit_grant(uuid,bigint,text,timestamp with time zone,integer,text,jsonb,bigint,timestamp with time zone,text)', false, false, true),
       ('public.creditkit_has_feature(uuid,text)', false, false, true),
       ('public.creditkit_history(uuid,integer,bigint,text)', false, false, true),
       ('public.creditkit_meter(uuid,text,bigint,jsonb,text,bigint,jsonb,timestamp with time zone)', false, false, true),
       ('public.creditkit_mrr()', false, false, true),
       ('public.creditkit_release(bigint,timestamp with time zone)', false, false, true),
       ('public.creditkit_report(uuid,text,bigint,text,text,jsonb,timestamp with time zone)', false, false, true),
       ('public.creditkit_reserve(uuid,bigint,interval,text,text,jsonb,timestamp with time zone,text)', false, false, true),
       ('public.creditkit_set_plan(uuid,text,text,timestamp with time zone,timestamp with time zone)', false, false, true),
       ('public.creditkit_set_plan_limit(text,text,bigint,text,text,bigint)', false, false, true),
       ('public.creditkit_set_price(text,bigint,jsonb,timestamp with time zone,text,bigint)', false, false, true),
       ('public.creditkit_settle(bigint,bigint,bigint,jsonb,timestamp with time zone)', false, false, true),
       ('public.creditkit_top_events(timestamp with time zone,timestamp with time zone,integer)', false, false, true),
       ('public.creditkit_upsert_plan(text,text,bigint,text,text,bigint,jsonb,bigint,text,text,boolean,boolean)', false, false, true),
       ('public.creditkit_upsert_unit(text,text,text)', false, false, true),
       ('public.creditkit_usage_series(timestamp with time zone,timestamp with time zone,uuid,text)', false, false, true),
       -- Stripe and packs: the webhook and the operator
       ('public.creditkit_stripe_apply(jsonb,timestamp with time zone)', false, false, true),
       ('public.creditkit_stripe_customer(uuid)', false, false, true),
       ('public.creditkit_stripe_events(text,integer)', false, false, true),
       ('public.creditkit_stripe_link_customer(uuid,text)', false, false, true),
       ('public.creditkit_stripe_replay(text,timestamp with time zone)', false, false, true),
       ('public.creditkit_upsert_pack(text,text,bigint,bigint,text,text,interval,boolean,text)', false, false, true),
       -- balance alerts and auto top-up: the operator's terms and thresholds, an account's settings and reads
       ('public.creditkit_auto_topup(uuid,text)', false, false, true),
       ('public.creditkit_balance_alert(uuid,text)', false, false, true),
       ('public.creditkit_set_account_balance_alert(uuid,text,bigint,numeric,timestamp with time zone)', false, false, true),
       ('public.creditkit_set_auto_topup(uuid,text,boolean,bigint,bigint,bigint,text,bigint,integer,timestamp with time zone)', false, false, true),
       ('public.creditkit_set_auto_topup_terms(text,text,numeric,bigint,bigint,bigint,bigint,integer,interval,text,boolean)', false, false, true),
       ('public.creditkit_set_balance_alert(text,bigint,numeric,bigint)', false, false, true),
       ('public.creditkit_topups(uuid,text,integer)', false, false, true),
       -- the worker: charges (cards on file) and deliveries (signing secrets)
       ('public.creditkit_worker_claim_deliveries(integer,interval,timestamp with time zone)', false, false, true),
       ('public.creditkit_worker_claim_topups(integer,interval,timestamp with time zone)', false, false, true),
       ('public.creditkit_worker_delivery_result(bigint,integer,integer,text,timestamp with time zone)', false, false, true),
       ('public.creditkit_worker_topup_result(bigint,integer,text,text,text,text,timestamp with time zone)', false, false, true),
       -- notifications: endpoints, the outbox, replay and pruning
       ('public.creditkit_delete_webhook_endpoint(text)', false, false, true),
       ('public.creditkit_notifications(uuid,text,integer)', false, false, true),
       ('public.creditkit_prune_notifications(interval,timestamp with time zone)', false, false, true),
       ('public.creditkit_replay_delivery(bigint,timestamp with time zone)', false, false, true),
       ('public.creditkit_upsert_webhook_endpoint(text,text,text[],text,boolean,text)', false, false, true),
       ('public.creditkit_webhook_endpoints()', false, false, true),
       -- caller-bound API: signed-in users only (bound to auth.uid() and the access function)
       ('public.creditkit_has_credits(bigint,uuid,text)', false, true, false),
       ('public.creditkit_my_balance(uuid,text)', false, true, false),
       ('public.creditkit_my_check(text,bigint,uuid)', false, true, false),
       ('public.creditkit_my_feature(text,uuid)', false, true, false),
       ('public.creditkit_my_history(uuid,integer,bigint,text)', false, true, false),
       ('public.creditkit_my_plan(uuid)', false, true, false),
       ('public.creditkit_my_auto_topup(text,uuid)', false, true, false),
       ('public.creditkit_my_balance_alert(text,uuid)', false, true, false),
       ('public.creditkit_my_set_auto_topup(text,boolean,bigint,bigint,bigint,text,uuid)', false, true, false),
       ('public.creditkit_my_set_balance_alert(text,bigint,uuid)', false, true, false),
       ('public.creditkit_my_topups(text,integer,uuid)', false, true, false),
       -- reads of the public price list and the plan and pack catalogues: the server and signed-in users
       ('public.creditkit_auto_topup_terms()', false, true, true),
       ('public.creditkit_packs()', false, true, true),
       ('public.creditkit_plans()', false, true, true),
       ('public.creditkit_quote(text,bigint,jsonb,timestamp with time zone)', false, true, true),
       ('public.creditkit_units()', false, true, true)
     ) as expected(signature, anon, authenticated, service_role) order by 1 $$,
  'EXECUTE matrix: every creditkit function x anon/authenticated/service_role');

-- ---------------------------------------------------------------------------------------------
-- Tables: table x role x privilege. TRUNCATE and REFERENCES bypass RLS, so only privileges
-- stop them; writes go through the functions, so no role holds any write privilege.
-- ---------------------------------------------------------------------------------------------
select results_eq(
  $$ select c.relname::text collate "default", r.rolname::text,
            has_table_privilege(r.rolname, c.oid, 'select'),
            has_table_privilege(r.rolname, c.oid, 'insert'),
            has_table_privilege(r.rolname, c.oid, 'update'),
            has_table_privilege(r.rolname, c.oid, 'delete'),
            has_table_privilege(r.rolname, c.oid, 'truncate'),
            has_table_privilege(r.rolname, c.oid, 'references'),
            has_table_privilege(r.rolname, c.oid, 'trigger')
       from pg_catalog.pg_class c
       cross join (values ('anon'), ('authenticated'), ('service_role')) as r(rolname)
      where c.relnamespace = 'creditkit'::regnamespace and c.relkind in ('r', 'p', 'v', 'm', 'f')
      order by 1, 2 $$,
  $$ select * from (values
       --                          select insert update delete truncate references trigger
       -- balance alerts and auto top-up (0.3.0): the server reads them; only the functions write
       ('account_alerts'::text, 'anon'::text, false, false, false, false, false, false, false),
       ('account_alerts', 'authenticated', false, false, false, false, false, false, false),
       ('account_alerts', 'service_role',  true,  false, false, false, false, false, false),
       ('accounts', 'anon',              false, false, false, false, false, false, false),
       ('accounts', 'authenticated',     true,  false, false, false, false, false, false),
       ('accounts', 'service_role',      true,  false, false, false, false, false, false),
       -- a unit's allowance periods: members read their accounts' through RLS
       ('allowances', 'anon',            false, false, false, false, false, false, false),
       ('allowances', 'authenticated',   true,  false, false, false, false, false, false),
       ('allowances', 'service_role',    true,  false, false, false, false, false, false),
       ('auto_topup_terms', 'anon',          false, false, false, false, false, false, false),
       ('auto_topup_terms', 'authenticated', false, false, false, false, false, false, false),  -- creditkit_auto_topup_terms()
       ('auto_topup_terms', 'service_role',  true,  false, false, false, false, false, false),
       ('auto_topups', 'anon',           false, false, false, false, false, false, false),
       ('auto_topups', 'authenticated',  false, false, false, false, false, false, false),      -- creditkit_my_auto_topup()
       ('auto_topups', 'service_role',   true,  false, false, false, false, false, false),
       ('balance_alerts', 'anon',        false, false, false, false, false, false, false),
       ('balance_alerts', 'authenticated', false, false, false, false, false, false, false),
       ('balance_alerts', 'service_role', true, false, false, false, false, false, false),
       -- the outbox and its deliveries: the server reads them (creditkit_notifications)
       ('deliveries', 'anon',            false, false, false, false, false, false, false),
       ('deliveries', 'authenticated',   false, false, false, false, false, false, false),
       ('deliveries', 'service_role',    true,  false, false, false, false, false, false),
       ('error_codes', 'anon',           false, false, false, false, false, false, false),
       ('error_codes', 'authenticated',  true,  false, false, false, false, false, false),
       ('error_codes', 'service_role',   true,  false, false, false, false, false, false),
       ('grants', 'anon',                false, false, false, false, false, false, false),
       ('grants', 'authenticated',       true,  false, false, false, false, false, false),
       ('grants', 'service_role',        true,  false, false, false, false, false, false),
       -- holds: members read their accounts' holds through RLS; reserve/settle/release write them
       ('holds', 'anon',                 false, false, false, false, false, false, false),
       ('holds', 'authenticated',        true,  false, false, false, false, false, false),
       ('holds', 'service_role',         true,  false, false, false, false, false, false),
       ('ledger', 'anon',                false, false, false, false, false, false, false),
       ('ledger', 'authenticated',       false, false, false, false, false, false, false),  -- columns only, below
       ('ledger', 'service_role',        true,  false, false, false, false, false, false),
       -- the settings the installer changes (set_lock_timeout); the server may read them
       ('settings', 'anon',              false, false, false, false, false, false, false),
       ('settings', 'authenticated',     false, false, false, false, false, false, false),
       ('settings', 'service_role',      true,  false, false, false, false, false, false),
       -- the starter grants the installer set: the server may read them
       ('starter_grants', 'anon',        false, false, false, false, false, false, false),
       ('starter_grants', 'authenticated', false, false, false, false, false, false, false),
       ('starter_grants', 'service_role', true, false, false, false, false, false, false),
       -- the ledger's idempotency store: the server reads it, the functions write it
       ('ledger_keys', 'anon',           false, false, false, false, false, false, false),
       ('ledger_keys', 'authenticated',  false, false, false, false, false, false, false),
       ('ledger_keys', 'service_role',   true,  false, false, false, false, false, false),
       ('notifications', 'anon',         false, false, false, false, false, false, false),
       ('notifications', 'authenticated', false, false, false, false, false, false, false),
       ('notifications', 'service_role', true,  false, false, false, false, false, false),
       -- the pack catalogue is readable like the plans (upsert_pack writes it)
       ('packs', 'anon',                 false, false, false, false, false, false, false),
       ('packs', 'authenticated',        true,  false, false, false, false, false, false),
       ('packs', 'service_role',         true,  false, false, false, false, false, false),
       -- the plan catalogue and the price list are readable by any signed-in user (upsert_plan
       -- and set_price write them); subscriptions by the account's members (set_plan writes them)
       ('plans', 'anon',                 false, false, false, false, false, false, false),
       ('plans', 'authenticated',        true,  false, false, false, false, false, false),
       ('plans', 'service_role',         true,  false, false, false, false, false, false),
       -- the plan limits and the unit catalogue are readable like the plans (set_plan_limit and
       -- upsert_unit write them)
       ('plan_limits', 'anon',           false, false, false, false, false, false, false),
       ('plan_limits', 'authenticated',  true,  false, false, false, false, false, false),
       ('plan_limits', 'service_role',   true,  false, false, false, false, false, false),
       ('prices', 'anon',                false, false, false, false, false, false, false),
       ('prices', 'authenticated',       true,  false, false, false, false, false, false),
       ('prices', 'service_role',        true,  false, false, false, false, false, false),
       ('subscriptions', 'anon',         false, false, false, false, false, false, false),
       ('subscriptions', 'authenticated', true, false, false, false, false, false, false),
       ('subscriptions', 'service_role', true,  false, false, false, false, false, false),
       -- Stripe state: the server reads it (the operator view); only creditkit_stripe_* write it
       ('stripe_customers', 'anon',          false, false, false, false, false, false, false),
       ('stripe_customers', 'authenticated', false, false, false, false, false, false, false),
       ('stripe_customers', 'service_role',  true,  false, false, false, false, false, false),
       -- the card on file, from Stripe's events (creditkit_auto_topup shows it to its customer)
       ('stripe_default_methods', 'anon',          false, false, false, false, false, false, false),
       ('stripe_default_methods', 'authenticated', false, false, false, false, false, false, false),
       ('stripe_default_methods', 'service_role',  true,  false, false, false, false, false, false),
       ('stripe_events', 'anon',             false, false, false, false, false, false, false),
       ('stripe_events', 'authenticated',    false, false, false, false, false, false, false),
       ('stripe_events', 'service_role',     true,  false, false, false, false, false, false),
       ('stripe_invoices', 'anon',           false, false, false, false, false, false, false),
       ('stripe_invoices', 'authenticated',  false, false, false, false, false, false, false),
       ('stripe_invoices', 'service_role',   true,  false, false, false, false, false, false),
       ('stripe_payments', 'anon',           false, false, false, false, false, false, false),
       ('stripe_payments', 'authenticated',  false, false, false, false, false, false, false),
       ('stripe_payments', 'service_role',   true,  false, false, false, false, false, false),
       ('stripe_payment_methods', 'anon',          false, false, false, false, false, false, false),
       ('stripe_payment_methods', 'authenticated', false, false, false, false, false, false, false),
       ('stripe_payment_methods', 'service_role',  true,  false, false, false, false, false, false),
       ('topups', 'anon',                false, false, false, false, false, false, false),
       ('topups', 'authenticated',       false, false, false, false, false, false, false),      -- creditkit_my_topups()
       ('topups', 'service_role',        true,  false, false, false, false, false, false),
       ('units', 'anon',                 false, false, false, false, false, false, false),
       ('units', 'authenticated',        true,  false, false, false, false, false, false),
       ('units', 'service_role',         true,  false, false, false, false, false, false),
       -- the endpoints hold the signing secrets: nobody reads them but the functions
       -- (creditkit_webhook_endpoints leaves the secret out; the worker's claim hands it out)
       ('webhook_endpoints', 'anon',          false, false, false, false, false, false, false),
       ('webhook_endpoints', 'authenticated', false, false, false, false, false, false, false),
       ('webhook_endpoints', 'service_role',  false, false, false, false, false, false, false)
     ) as expected order by 1, 2 $$,
  'table privilege matrix: every creditkit table x role x privilege');
-- The one column-level grant: signed-in users read the ledger without its money columns
-- (what a request cost the operator is not the customer's business).
select results_eq(
  $$ select a.attrelid::regclass::text, a.attname::text collate "default",
            has_column_privilege('anon', a.attrelid, a.attnum, 'select'),
            has_column_privilege('authenticated', a.attrelid, a.attnum, 'select')
       from pg_catalog.pg_attribute a
       join pg_catalog.pg_class c on c.oid = a.attrelid
      where c.relnamespace = 'creditkit'::regnamespace and a.attacl is not null
      order by 1, a.attnum $$,
  $$ values ('creditkit.ledger', 'id', false, true), ('creditkit.ledger', 'account_id', false, true),
            ('creditkit.ledger', 'kind', false, true), ('creditkit.ledger', 'amount', false, true),
            ('creditkit.ledger', 'balance_after', false, true), ('creditkit.ledger', 'grant_id', false, true),
            ('creditkit.ledger', 'event', false, true), ('creditkit.ledger', 'idempotency_key', false, true),
            ('creditkit.ledger', 'metadata', false, true), ('creditkit.ledger', 'created_at', false, true),
            ('creditkit.ledger', 'unit', false, true) $$,
  'column grants: only the ledger''s non-money columns, only to authenticated');
select results_eq(
  $$ select has_column_privilege('authenticated', 'creditkit.ledger', 'cost_micros', 'select'),
            has_column_privilege('authenticated', 'creditkit.ledger', 'revenue_micros', 'select'),
            has_column_privilege('service_role', 'creditkit.ledger', 'cost_micros', 'select') $$,
  $$ values (false, false, true) $$,
  'a browser cannot read cost or revenue; the server can');
select is_empty(
  $$ select c.relname, r.rolname from pg_catalog.pg_class c
       cross join (values ('anon'), ('authenticated'), ('service_role')) as r(rolname)
      where c.relnamespace = 'creditkit'::regnamespace and c.relkind = 'S'
        and has_sequence_privilege(r.rolname, c.oid, 'usage, select, update') $$,
  'no API role may use any creditkit id sequence (ledger, grants, holds, prices)');

-- ---------------------------------------------------------------------------------------------
-- Row-level security, search_path, security definer.
-- ---------------------------------------------------------------------------------------------
select is_empty(
  $$ select c.relname from pg_catalog.pg_class c
      where c.relnamespace = 'creditkit'::regnamespace and c.relkind in ('r', 'p') and not c.relrowsecurity $$,
  'RLS is enabled on every creditkit table');
select ok(
  (select count(*) = 29 from pg_catalog.pg_class c
    where c.relnamespace = 'creditkit'::regnamespace and c.relkind in ('r', 'p') and c.relrowsecurity),
  'the twenty-nine creditkit tables were found (the RLS check is not vacuous)');
select is_empty(
  $$ select signature from ck_functions
      where prokind <> 'a' and not coalesce('search_path=""' = any(proconfig), false) $$,
  'every creditkit function pins search_path to '''' (splinter 0011)');
-- Invariant 9: every function that writes (the volatile security definer ones, which write the
-- tables no client role may write) waits a bounded time for a row lock; reads never take one, so
-- they have none (since 0.3.0 some reads are security definer too: stable, without lock_timeout).
select is_empty(
  $$ select signature from ck_functions
      where prosecdef and provolatile = 'v'
        and not exists (select from unnest(proconfig) c where c like 'lock\_timeout=%') $$,
  'every security definer creditkit function that writes bounds its lock waits (lock_timeout)');
-- The balance watch runs at commit (a deferred constraint trigger), outside the API function's
-- SET lock_timeout, takes row locks and writes top-ups and events: it bounds its own waits.
select ok(
  (select exists (select from unnest(proconfig) c where c like 'lock\_timeout=%') from ck_functions
    where signature = 'creditkit.watch_balance()'),
  'the balance watch (deferred trigger, writes at commit) bounds its lock waits (lock_timeout)');
select ok(
  (select count(*) >= 30 from ck_functions where prosecdef and provolatile = 'v'
      and exists (select from unnest(proconfig) c where c like 'lock\_timeout=%')),
  'the lock_timeout check found the writing functions (it is not vacuous)');
select is(
  (select array_agg(distinct c) from ck_functions, unnest(proconfig) c where c like 'lock\_timeout=%'),
  array['lock_timeout=3s'], 'the default lock timeout is 3 seconds');
-- Keyed lookups stay probes: every function of the API plans with enable_seqscan = off, so that a
-- generic plan cached while a table was empty cannot stay a scan of it (the operator's analytics
-- aggregate whole tables and keep the planner's choice, and so do the two bulk operations of
-- 0.3.0: a unit's new default threshold applies to every account of the unit, and pruning
-- deletes the old part of the outbox).
select is_empty(
  $$ select signature from ck_functions
      where (signature like 'public.creditkit\_%' or signature = 'creditkit.charge_on_insert()')
        and signature !~ '^public\.creditkit_(account_margin|unit_usage|usage_series|top_events|credits_outstanding|accounts_per_plan|mrr|set_balance_alert|prune_notifications)\('
        and not coalesce('enable_seqscan=off' = any(proconfig), false) $$,
  'every API function plans with enable_seqscan = off');
select ok(
  (select coalesce('enable_seqscan=off' = any(proconfig), false) from ck_functions where signature = 'public.creditkit_auto_topup_terms()'),
  'creditkit_auto_topup_terms plans with enable_seqscan = off like the other catalogue reads');
select ok(
  (select count(*) >= 30 from ck_functions where 'enable_seqscan=off' = any(proconfig)),
  'the enable_seqscan check found the API functions (it is not vacuous)');
select throws_ok($$ select creditkit.set_lock_timeout('0') $$, 'CK006', null, 'set_lock_timeout refuses 0');
select throws_ok($$ select creditkit.set_lock_timeout(null) $$, 'CK006', null, 'set_lock_timeout refuses NULL');
select throws_ok($$ select creditkit.set_lock_timeout('2 minutes') $$, 'CK006', null, 'set_lock_timeout refuses more than a minute');
select creditkit.set_lock_timeout('1.5 seconds');
select is(
  (select array_agg(distinct c) from ck_functions, unnest(proconfig) c where c like 'lock\_timeout=%'),
  array['lock_timeout=1500ms'], 'set_lock_timeout applies to every writing function at once');
select creditkit.set_lock_timeout('3 seconds');
-- An aggregate cannot pin search_path; it has no body of its own, so it must only call built-in
-- functions (nothing on a search path could shadow them).
select is_empty(
  $$ select a.aggfnoid::regprocedure::text from pg_catalog.pg_aggregate a
       join pg_catalog.pg_proc p on p.oid = a.aggfnoid
      where p.pronamespace = 'creditkit'::regnamespace
        and exists (select from pg_catalog.pg_proc f
                     where f.oid in (a.aggtransfn, a.aggfinalfn, a.aggcombinefn, a.aggmtransfn, a.aggminvtransfn, a.aggmfinalfn)
                       and f.pronamespace <> 'pg_catalog'::regnamespace) $$,
  'every creditkit aggregate runs only pg_catalog functions');
-- Definer rights are needed exactly where something writes the kit's tables, which no API role
-- may write: the server mutations (service_role only, and each also calls assert_server_caller)
-- and the insert trigger, which spends for the signed-in user inside their own transaction.
-- Until 0.3.0 every read, caller-bound or server-side, was security invoker. 0.3.0's functions are
-- all security definer, reads included (the server's call assert_server_caller, the caller-bound
-- ones creditkit.caller_account before anything else), and so is the balance watch, which runs at
-- commit as whoever committed. Since 0.3.0 the older server reads of per-account tables (history,
-- has_feature, the analytics) are security definer too and call assert_server_caller first (on
-- Citus an invoker read would reach the workers as the NOLOGIN service_role: docs/citus.md F9).
-- The caller-bound reads (my_*, has_credits) stay security invoker here, RLS behind their own
-- check; scripts/citus/distribute.sql makes them definer on a cluster only.
select results_eq(
  $$ select signature from ck_functions where prosecdef order by 1 $$,
  $$ select s from (values ('creditkit.charge_on_insert()'),
            ('creditkit.starter_grant_on_signup()'),
            ('creditkit.watch_balance()'),
            ('public.creditkit_auto_topup(uuid,text)'),
            ('public.creditkit_auto_topup_terms()'),
            ('public.creditkit_balance_alert(uuid,text)'),
            ('public.creditkit_delete_webhook_endpoint(text)'),
            ('public.creditkit_my_auto_topup(text,uuid)'),
            ('public.creditkit_my_balance_alert(text,uuid)'),
            ('public.creditkit_my_set_auto_topup(text,boolean,bigint,bigint,bigint,text,uuid)'),
            ('public.creditkit_my_set_balance_alert(text,bigint,uuid)'),
            ('public.creditkit_my_topups(text,integer,uuid)'),
            ('public.creditkit_notifications(uuid,text,integer)'),
            ('public.creditkit_prune_notifications(interval,timestamp with time zone)'),
            ('public.creditkit_replay_delivery(bigint,timestamp with time zone)'),
            ('public.creditkit_set_account_balance_alert(uuid,text,bigint,numeric,timestamp with time zone)'),
            ('public.creditkit_set_auto_topup(uuid,text,boolean,bigint,bigint,bigint,text,bigint,integer,timestamp with time zone)'),
            ('public.creditkit_set_auto_topup_terms(text,text,numeric,bigint,bigint,bigint,bigint,integer,interval,text,boolean)'),
            ('public.creditkit_set_balance_alert(text,bigint,numeric,bigint)'),
            ('public.creditkit_topups(uuid,text,integer)'),
            ('public.creditkit_upsert_webhook_endpoint(text,text,text[],text,boolean,text)'),
            ('public.creditkit_webhook_endpoints()'),
            ('public.creditkit_worker_claim_deliveries(integer,interval,timestamp with time zone)'),
            ('public.creditkit_worker_claim_topups(integer,interval,timestamp with time zone)'),
            ('public.creditkit_worker_delivery_result(bigint,integer,integer,text,timestamp with time zone)'),
            ('public.creditkit_worker_topup_result(bigint,integer,text,text,text,text,timestamp with time zone)'),
            ('public.creditkit_adjust(uuid,bigint,text,text,jsonb,timestamp with time zone,text)'),
            ('public.creditkit_balance(uuid,timestamp with time zone,text)'),
            ('public.creditkit_book_expired(timestamp with time zone,integer,text)'),
            ('public.creditkit_check(uuid,text,bigint,timestamp with time zone)'),
            ('public.creditkit_consume(uuid,bigint,text,text,jsonb,bigint,timestamp with time zone,text)'),
            ('public.creditkit_consume_batch(jsonb,timestamp with time zone,text)'),
            ('public.creditkit_consume_or_raise(uuid,bigint,text,text,jsonb,bigint,timestamp with time zone,text)'),
            ('public.creditkit_grant(uuid,bigint,text,timestamp with time zone,integer,text,jsonb,bigint,timestamp with time zone,text)'),
            ('public.creditkit_meter(uuid,text,bigint,jsonb,text,bigint,jsonb,timestamp with time zone)'),
            ('public.creditkit_release(bigint,timestamp with time zone)'),
            ('public.creditkit_report(uuid,text,bigint,text,text,jsonb,timestamp with time zone)'),
            ('public.creditkit_reserve(uuid,bigint,interval,text,text,jsonb,timestamp with time zone,text)'),
            ('public.creditkit_set_plan(uuid,text,text,timestamp with time zone,timestamp with time zone)'),
            ('public.creditkit_set_plan_limit(text,text,bigint,text,text,bigint)'),
            ('public.creditkit_set_price(text,bigint,jsonb,timestamp with time zone,text,bigint)'),
            ('public.creditkit_settle(bigint,bigint,bigint,jsonb,timestamp with time zone)'),
            ('public.creditkit_stripe_apply(jsonb,timestamp with time zone)'),
            ('public.creditkit_stripe_link_customer(uuid,text)'),
            ('public.creditkit_stripe_replay(text,timestamp with time zone)'),
            ('public.creditkit_upsert_pack(text,text,bigint,bigint,text,text,interval,boolean,text)'),
            ('public.creditkit_upsert_plan(text,text,bigint,text,text,bigint,jsonb,bigint,text,text,boolean,boolean)'),
            ('public.creditkit_upsert_unit(text,text,text)'),
            ('public.creditkit_account_margin(timestamp with time zone,timestamp with time zone,uuid)'),
            ('public.creditkit_accounts_per_plan()'),
            ('public.creditkit_credits_outstanding(timestamp with time zone)'),
            ('public.creditkit_has_feature(uuid,text)'),
            ('public.creditkit_history(uuid,integer,bigint,text)'),
            ('public.creditkit_mrr()'),
            ('public.creditkit_top_events(timestamp with time zone,timestamp with time zone,integer)'),
            ('public.creditkit_unit_usage(timestamp with time zone,timestamp with time zone,uuid)'),
            ('public.creditkit_usage_series(timestamp with time zone,timestamp with time zone,uuid,text)')) as v(s) order by 1 $$,
  'security definer is used exactly by the twenty-two server mutations, the nine server reads of per-account tables, 0.3.0''s twenty-three functions and the three triggers (insert charge, starter grant, balance watch)');
-- The six caller-bound or catalogue functions of 0.3.0 are security definer and executable by
-- authenticated: Supabase's advisor flags each (splinter 0029, authenticated_security_definer_
-- function_executable). They bind the caller first (creditkit.caller_account) or read only the
-- public terms; named here so that no other definer function slips out. Reported as a doubt.
select is_empty(
  $$ select signature from ck_functions
      where prosecdef
        and (has_function_privilege('anon', oid, 'execute') or has_function_privilege('authenticated', oid, 'execute'))
        and signature not in ('public.creditkit_my_auto_topup(text,uuid)', 'public.creditkit_my_balance_alert(text,uuid)',
                              'public.creditkit_my_set_auto_topup(text,boolean,bigint,bigint,bigint,text,uuid)',
                              'public.creditkit_my_set_balance_alert(text,bigint,uuid)', 'public.creditkit_my_topups(text,integer,uuid)',
                              'public.creditkit_auto_topup_terms()') $$,
  'no other security definer function is executable by anon or authenticated (splinter 0028/0029)');
select is_empty(
  $$ select signature from ck_functions where prosecdef and has_function_privilege('anon', oid, 'execute') $$,
  'no security definer function is executable by anon (splinter 0028)');
select is_empty(
  $$ select signature from ck_functions where obj_description(oid, 'pg_proc') is null $$,
  'every creditkit function has a comment (the SQL API docs are generated from them)');

-- ---------------------------------------------------------------------------------------------
-- Schema creditkit: usable by the roles that read through it, not by anon; nobody creates in it.
-- ---------------------------------------------------------------------------------------------
select results_eq(
  $$ select r.rolname::text, has_schema_privilege(r.rolname, 'creditkit', 'usage'),
            has_schema_privilege(r.rolname, 'creditkit', 'create')
       from (values ('anon'), ('authenticated'), ('service_role')) as r(rolname) order by 1 $$,
  $$ values ('anon'::text, false, false), ('authenticated', true, false), ('service_role', true, false) $$,
  'schema creditkit: USAGE for authenticated and service_role only, CREATE for nobody');

-- ---------------------------------------------------------------------------------------------
-- Nothing else of ours in public: only the creditkit_* API functions, no tables, views, types.
-- ---------------------------------------------------------------------------------------------
select results_eq(
  $$ select p.proname::text collate "default" from pg_catalog.pg_proc p
      where p.proname like 'creditkit%' and p.pronamespace <> 'creditkit'::regnamespace order by 1 $$,
  $$ values ('creditkit_account_margin'), ('creditkit_accounts_per_plan'), ('creditkit_adjust'),
            ('creditkit_auto_topup'), ('creditkit_auto_topup_terms'),
            ('creditkit_balance'), ('creditkit_balance_alert'), ('creditkit_book_expired'), ('creditkit_check'), ('creditkit_consume'),
            ('creditkit_consume_batch'), ('creditkit_consume_or_raise'), ('creditkit_credits_outstanding'),
            ('creditkit_delete_webhook_endpoint'), ('creditkit_grant'),
            ('creditkit_has_credits'), ('creditkit_has_feature'), ('creditkit_history'), ('creditkit_meter'),
            ('creditkit_mrr'), ('creditkit_my_auto_topup'), ('creditkit_my_balance'), ('creditkit_my_balance_alert'), ('creditkit_my_check'),
            ('creditkit_my_feature'), ('creditkit_my_history'),
            ('creditkit_my_plan'), ('creditkit_my_set_auto_topup'), ('creditkit_my_set_balance_alert'), ('creditkit_my_topups'),
            ('creditkit_notifications'), ('creditkit_packs'), ('creditkit_plans'), ('creditkit_prune_notifications'),
            ('creditkit_quote'), ('creditkit_release'), ('creditkit_replay_delivery'),
            ('creditkit_report'), ('creditkit_reserve'), ('creditkit_set_account_balance_alert'), ('creditkit_set_auto_topup'),
            ('creditkit_set_auto_topup_terms'), ('creditkit_set_balance_alert'), ('creditkit_set_plan'), ('creditkit_set_plan_limit'),
            ('creditkit_set_price'), ('creditkit_settle'),
            ('creditkit_stripe_apply'), ('creditkit_stripe_customer'), ('creditkit_stripe_events'),
            ('creditkit_stripe_link_customer'), ('creditkit_stripe_replay'), ('creditkit_top_events'), ('creditkit_topups'),
            ('creditkit_unit_usage'), ('creditkit_units'), ('creditkit_upsert_pack'), ('creditkit_upsert_plan'), ('creditkit_upsert_unit'),
            ('creditkit_upsert_webhook_endpoint'), ('creditkit_usage_series'), ('creditkit_webhook_endpoints'),
            ('creditkit_worker_claim_deliveries'), ('creditkit_worker_claim_topups'), ('creditkit_worker_delivery_result'),
            ('creditkit_worker_topup_result') $$,
  'the creditkit functions outside schema creditkit are exactly the public API');
select is_empty(
  $$ select c.relname from pg_catalog.pg_class c
      where c.relnamespace = 'public'::regnamespace and c.relname like 'creditkit%'
     union all
     select t.typname from pg_catalog.pg_type t
      where t.typnamespace = 'public'::regnamespace and t.typname like '%creditkit%' $$,
  'no creditkit table, view, sequence or type in public');
select is_empty(
  $$ select p.oid::regprocedure from pg_catalog.pg_proc p
      where p.pronamespace = 'public'::regnamespace and p.proname not like 'creditkit\_%'
        and not exists (select 1 from pg_catalog.pg_depend d
                         where d.classid = 'pg_catalog.pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e') $$,
  'every function in public that belongs to no extension is a creditkit_ function');

-- =============================================================================================
-- Append-only ledger: no role can UPDATE, DELETE or TRUNCATE it (invariant 3), and no role can
-- write the kit's tables directly (that would mint credit around the functions).
-- =============================================================================================
select creditkit_grant(tests.get_supabase_uid('alice'), 100, p_now => '2030-01-01 00:00:00+00');

-- Service role: no write privileges at all.
select tests.authenticate_as_service_role();
select throws_ok($$ update creditkit.ledger set amount = 1000 $$, '42501', null,
  'service_role cannot UPDATE the ledger');
select throws_ok($$ delete from creditkit.ledger $$, '42501', null, 'service_role cannot DELETE from the ledger');
select throws_ok($$ truncate creditkit.ledger $$, '42501', null, 'service_role cannot TRUNCATE the ledger');
select throws_ok($$ update creditkit.accounts set balance = balance + 1000 $$, '42501', null,
  'service_role cannot raise a balance by hand');
select throws_ok(
  $$ insert into creditkit.grants (account_id, category, amount, remaining, priority)
     values (tests.get_supabase_uid('alice'), 'purchase', 1000, 1000, 0) $$,
  '42501', null, 'service_role cannot insert a bucket by hand');
-- Nor the catalogue, the price list, subscriptions or holds: a plan, price or hold written by
-- hand would skip validation, and a hand-made subscription would renew into free credit.
select throws_ok(
  $$ insert into creditkit.plans (id, name, allowance) values ('byhand', 'By hand', 1000000) $$,
  '42501', null, 'service_role cannot insert a plan by hand');
select throws_ok(
  $$ insert into creditkit.prices (event, credits_per_unit, effective_from) values ('byhand', 1, '2030-01-01') $$,
  '42501', null, 'service_role cannot insert a price by hand');
select throws_ok(
  $$ insert into creditkit.subscriptions (account_id, plan_id, anchor)
     values (tests.get_supabase_uid('alice'), 'free', '2030-01-01') $$,
  '42501', null, 'service_role cannot insert a subscription by hand');
select throws_ok(
  $$ update creditkit.accounts set held = 0 $$,
  '42501', null, 'service_role cannot free held credit by hand');

-- Member: the same, and RLS would not help here (it does not cover TRUNCATE), privileges do.
select tests.authenticate_as('alice');
select throws_ok($$ update creditkit.ledger set amount = 1000 $$, '42501', null,
  'authenticated cannot UPDATE the ledger, not even its own rows');
select throws_ok($$ delete from creditkit.ledger $$, '42501', null, 'authenticated cannot DELETE from the ledger');
select throws_ok($$ truncate creditkit.ledger $$, '42501', null, 'authenticated cannot TRUNCATE the ledger');

-- Owner/superuser (postgres): has every privilege, so the triggers are what refuse.
select tests.clear_authentication();
select throws_ok($$ update creditkit.ledger set amount = 1000 $$, 'CK008', null,
  'even postgres cannot UPDATE the ledger (trigger)');
select throws_ok($$ delete from creditkit.ledger $$, 'CK008', null, 'even postgres cannot DELETE from the ledger (trigger)');
-- holds.transaction_id references the ledger, so a plain TRUNCATE already stops at that foreign
-- key (0A000); CASCADE gets past it, and then the trigger is what refuses.
select throws_ok($$ truncate creditkit.ledger cascade $$, 'CK008', null,
  'even postgres cannot TRUNCATE the ledger, not even with CASCADE (trigger)');
insert into creditkit.ledger_keys (account_id, idempotency_key, ledger_id)
values (tests.get_supabase_uid('alice'), 'privileges-test', 0);
select throws_ok($$ delete from creditkit.ledger_keys $$, 'CK008', null,
  'even postgres cannot DELETE an idempotency key (trigger): a retry could apply twice');
select throws_ok($$ truncate creditkit.ledger_keys $$, 'CK008', null, 'even postgres cannot TRUNCATE the idempotency keys (trigger)');
select is((select count(*) from creditkit.ledger where account_id = tests.get_supabase_uid('alice')), 1::bigint,
  'alice''s ledger row is still there');

-- =============================================================================================
-- Defence in depth: a blanket `grant execute on all functions in schema public` (a classic
-- mistake, and what Supabase's old defaults amount to for new functions) must not let clients
-- mint or spend. The security definer functions check the caller themselves (CK005); the
-- grant is rolled back with this file's transaction.
-- =============================================================================================
grant execute on all functions in schema public to anon, authenticated;

-- Member
select tests.authenticate_as('alice');
select throws_ok(
  $$ select creditkit_grant(tests.get_supabase_uid('alice'), 1000, p_now => '2030-01-02 00:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot grant (mint)');
select throws_ok(
  $$ select creditkit_consume(tests.get_supabase_uid('alice'), 1, p_now => '2030-01-02 00:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot consume');
select throws_ok(
  $$ select creditkit_consume_or_raise(tests.get_supabase_uid('alice'), 1, p_now => '2030-01-02 00:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot consume_or_raise');
select throws_ok(
  $$ select * from creditkit_consume_batch(
       jsonb_build_array(jsonb_build_object('account_id', tests.get_supabase_uid('alice'), 'amount', 1)), '2030-01-02 00:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot consume a batch');
select throws_ok(
  $$ select creditkit_adjust(tests.get_supabase_uid('alice'), 1000, 'self-service', p_now => '2030-01-02 00:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot adjust');
select throws_ok(
  $$ select creditkit_balance(tests.get_supabase_uid('alice'), p_now => '2030-01-02 00:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot call the server balance (it writes)');
select throws_ok(
  $$ select creditkit_book_expired('2030-01-02 00:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot run the sweep');
select throws_ok(
  $$ select creditkit_upsert_plan('free', 'Free', 1000000, p_is_default => true) $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot rewrite the plan catalogue');
select throws_ok(
  $$ select creditkit_set_plan(tests.get_supabase_uid('alice'), 'free', p_now => '2030-01-02 00:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot put itself on a plan');
select throws_ok(
  $$ select creditkit_set_price('image_gen', 1, p_effective_from => '2030-01-02 00:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot set a price');
select throws_ok(
  $$ select creditkit_meter(tests.get_supabase_uid('alice'), 'image_gen', p_now => '2030-01-02 00:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot meter');
select throws_ok(
  $$ select creditkit_reserve(tests.get_supabase_uid('alice'), 1, p_now => '2030-01-02 00:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot reserve');
-- The guard runs before the hold is looked up, so an unknown hold id gives CK005 too, not CK011:
-- nothing about holds leaks to a client.
select throws_ok(
  $$ select creditkit_settle(1, 1, p_now => '2030-01-02 00:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot settle a hold');
select throws_ok(
  $$ select creditkit_release(1, p_now => '2030-01-02 00:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot release a hold');
select throws_ok(
  $$ select creditkit_check(tests.get_supabase_uid('alice'), 'credits', 1, '2030-01-02 00:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot call the server check (it may write)');
select throws_ok(
  $$ select creditkit_report(tests.get_supabase_uid('alice'), 'credits', 1, p_now => '2030-01-02 00:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot report usage');
select throws_ok(
  $$ select creditkit_upsert_unit('seats', 'Seats', 'metered') $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot add a unit');
select throws_ok(
  $$ select creditkit_set_plan_limit('free', 'credits', 1000000) $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot set a plan limit');
-- 0.3.0: the worker's claims hand out cards on file and signing secrets; the settings and the outbox
select throws_ok(
  $$ select * from creditkit_worker_claim_topups(p_now => '2030-01-02 00:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot claim top-ups (customers and cards)');
select throws_ok(
  $$ select * from creditkit_worker_claim_deliveries(p_now => '2030-01-02 00:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot claim deliveries (signing secrets)');
select throws_ok(
  $$ select * from creditkit_upsert_webhook_endpoint('mine', 'https://attacker.example.com/') $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot add an endpoint (every event to its URL)');
select throws_ok(
  $$ select * from creditkit_set_auto_topup_terms('credits', 'usd', 0.0001, 1, 9007199254740991) $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot set the auto top-up terms (its price)');
select throws_ok(
  $$ select * from creditkit_set_auto_topup(tests.get_supabase_uid('alice'), 'credits', false, p_now => '2030-01-02 00:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot call the server''s auto top-up setter');
select throws_ok(
  $$ select * from creditkit_notifications() $$,
  'CK005', null, 'with EXECUTE granted, authenticated still cannot read the outbox (every account''s events)');
-- A forged role claim does not help: the database role is checked as well as the JWT.
select set_config('request.jwt.claims',
  json_build_object('sub', tests.get_supabase_uid('alice'), 'role', 'service_role')::text, true);
select throws_ok(
  $$ select creditkit_grant(tests.get_supabase_uid('alice'), 1000, p_now => '2030-01-02 00:00:00+00') $$,
  'CK005', null, 'a JWT claiming service_role on an authenticated connection cannot grant');

-- Anon
select tests.authenticate_as_anon();
select throws_ok(
  $$ select creditkit_grant('00000000-0000-4000-8000-00000000beef', 1000, p_now => '2030-01-02 00:00:00+00') $$,
  'CK005', null, 'with EXECUTE granted, anon still cannot grant (mint)');

select tests.clear_authentication();
select is((select balance::bigint from creditkit.accounts where id = tests.get_supabase_uid('alice')), 100::bigint,
  'alice''s balance is untouched');

select * from finish();
rollback;
