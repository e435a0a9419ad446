-- creditkit 0.1.1 -> 0.1.2: every lookup stays an index probe on a connection whose plans were cached while the tables were empty
--
-- A plpgsql function keeps the generic plan it chose after its first calls for as long as the
-- connection lives. Chosen while a table was empty and analyzed, that plan was a sequential scan,
-- and it stayed one as the table grew. Every function of the API except the operator's analytics
-- now plans with enable_seqscan = off.

create or replace function creditkit.version()
returns text
language sql
immutable
set search_path = ''
as $$ select '0.1.2' $$;
comment on function creditkit.version() is 'The creditkit version installed in this database.';
revoke all on function creditkit.version() from public, anon, authenticated, service_role;
grant execute on function creditkit.version() to service_role;

alter function creditkit.charge_on_insert() set enable_seqscan = off;
alter function public.creditkit_adjust(uuid,bigint,text,text,jsonb,timestamp with time zone) set enable_seqscan = off;
alter function public.creditkit_balance(uuid,timestamp with time zone) set enable_seqscan = off;
alter function public.creditkit_book_expired(timestamp with time zone,integer) set enable_seqscan = off;
alter function public.creditkit_consume(uuid,bigint,text,text,jsonb,bigint,timestamp with time zone) set enable_seqscan = off;
alter function public.creditkit_consume_batch(jsonb,timestamp with time zone) set enable_seqscan = off;
alter function public.creditkit_consume_or_raise(uuid,bigint,text,text,jsonb,bigint,timestamp with time zone) set enable_seqscan = off;
alter function public.creditkit_grant(uuid,bigint,text,timestamp with time zone,integer,text,jsonb,bigint,timestamp with time zone) set enable_seqscan = off;
alter function public.creditkit_has_credits(bigint,uuid) set enable_seqscan = off;
alter function public.creditkit_has_feature(uuid,text) set enable_seqscan = off;
alter function public.creditkit_history(uuid,integer,bigint) set enable_seqscan = off;
alter function public.creditkit_meter(uuid,text,bigint,jsonb,text,bigint,jsonb,timestamp with time zone) set enable_seqscan = off;
alter function public.creditkit_my_balance(uuid) set enable_seqscan = off;
alter function public.creditkit_my_feature(text,uuid) set enable_seqscan = off;
alter function public.creditkit_my_history(uuid,integer,bigint) set enable_seqscan = off;
alter function public.creditkit_my_plan(uuid) set enable_seqscan = off;
alter function public.creditkit_packs() set enable_seqscan = off;
alter function public.creditkit_plans() set enable_seqscan = off;
alter function public.creditkit_quote(text,bigint,jsonb,timestamp with time zone) set enable_seqscan = off;
alter function public.creditkit_release(bigint,timestamp with time zone) set enable_seqscan = off;
alter function public.creditkit_reserve(uuid,bigint,interval,text,text,jsonb,timestamp with time zone) set enable_seqscan = off;
alter function public.creditkit_set_plan(uuid,text,text,timestamp with time zone,timestamp with time zone) set enable_seqscan = off;
alter function public.creditkit_set_price(text,bigint,jsonb,timestamp with time zone) set enable_seqscan = off;
alter function public.creditkit_settle(bigint,bigint,bigint,jsonb,timestamp with time zone) set enable_seqscan = off;
alter function public.creditkit_stripe_apply(jsonb,timestamp with time zone) set enable_seqscan = off;
alter function public.creditkit_stripe_customer(uuid) set enable_seqscan = off;
alter function public.creditkit_stripe_events(text,integer) set enable_seqscan = off;
alter function public.creditkit_stripe_link_customer(uuid,text) set enable_seqscan = off;
alter function public.creditkit_stripe_replay(text,timestamp with time zone) set enable_seqscan = off;
alter function public.creditkit_upsert_pack(text,text,bigint,bigint,text,text,interval,boolean) set enable_seqscan = off;
alter function public.creditkit_upsert_plan(text,text,bigint,text,text,bigint,jsonb,bigint,text,text,boolean,boolean) set enable_seqscan = off;
