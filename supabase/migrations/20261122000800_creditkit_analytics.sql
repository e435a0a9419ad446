-- creditkit analytics: server-only reads (security invoker, service_role) for an operator view, of
-- the credits unit except margin's revenue and cost, which count every unit, and unit_usage, which
-- reports each unit. Money is in micros of
-- your reporting currency except MRR (the plans' currency minor unit, cents). Periods are
-- half-open [p_from, p_to); days are UTC days.

create or replace function creditkit.check_period(p_from timestamptz, p_to timestamptz)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_from is null or p_to is null or p_from >= p_to then
    raise exception using errcode = 'CK006', message = 'invalid argument: a period needs p_from < p_to';
  end if;
end;
$$;
comment on function creditkit.check_period(timestamptz, timestamptz) is 'Raises CK006 unless p_from < p_to.';
revoke all on function creditkit.check_period(timestamptz, timestamptz) from public, anon, authenticated, service_role;
grant execute on function creditkit.check_period(timestamptz, timestamptz) to service_role;

create or replace function public.creditkit_account_margin(
  p_from timestamptz,
  p_to timestamptz,
  p_account_id uuid default null)
returns table (account_id uuid, credits_granted bigint, credits_spent bigint, revenue_micros bigint,
               cost_micros bigint, margin_micros bigint)
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
  perform creditkit.check_period(p_from, p_to);
  return query
    select l.account_id,
           coalesce(sum(l.amount) filter (where l.kind = 'grant' and l.unit = 'credits'), 0)::bigint,
           coalesce(-sum(l.amount) filter (where l.kind = 'consume' and l.unit = 'credits'), 0)::bigint,
           coalesce(sum(l.revenue_micros), 0)::bigint,
           coalesce(sum(l.cost_micros), 0)::bigint,
           (coalesce(sum(l.revenue_micros), 0) - coalesce(sum(l.cost_micros), 0))::bigint
      from creditkit.ledger l
     where l.created_at >= p_from and l.created_at < p_to
       and (p_account_id is null or l.account_id = p_account_id)
     group by l.account_id
     order by 6 desc, 1;
end;
$$;
comment on function public.creditkit_account_margin(timestamptz, timestamptz, uuid) is
  'Server only. Per account over [p_from, p_to): credits granted and spent, revenue (what grants recorded as paid), cost (what usage recorded as costing you) and margin = revenue - cost, in micros. Highest margin first.';
revoke all on function public.creditkit_account_margin(timestamptz, timestamptz, uuid) from public, anon, authenticated;
grant execute on function public.creditkit_account_margin(timestamptz, timestamptz, uuid) to service_role;

create or replace function public.creditkit_usage_series(
  p_from timestamptz,
  p_to timestamptz,
  p_account_id uuid default null,
  p_event text default null)
returns table (day date, event text, calls bigint, credits bigint, cost_micros bigint)
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
  perform creditkit.check_period(p_from, p_to);
  perform creditkit.check_request(null, p_event, null, p_from);
  return query
    select (l.created_at at time zone 'UTC')::date, l.event, count(*)::bigint,
           (-sum(l.amount))::bigint, coalesce(sum(l.cost_micros), 0)::bigint
      from creditkit.ledger l
     where l.kind = 'consume' and l.unit = 'credits' and l.created_at >= p_from and l.created_at < p_to
       and (p_account_id is null or l.account_id = p_account_id)
       and (p_event is null or l.event = p_event)
     group by 1, 2
     order by 1, 2;
end;
$$;
comment on function public.creditkit_usage_series(timestamptz, timestamptz, uuid, text) is
  'Server only. Spending per UTC day and event over [p_from, p_to): calls, credits, cost in micros. Optionally for one account or event.';
revoke all on function public.creditkit_usage_series(timestamptz, timestamptz, uuid, text) from public, anon, authenticated;
grant execute on function public.creditkit_usage_series(timestamptz, timestamptz, uuid, text) to service_role;

create or replace function public.creditkit_top_events(
  p_from timestamptz,
  p_to timestamptz,
  p_limit integer default 10)
returns table (event text, calls bigint, credits bigint, cost_micros bigint, accounts bigint)
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
  perform creditkit.check_period(p_from, p_to);
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception using errcode = 'CK006', message = 'invalid argument: limit must be from 1 to 1000';
  end if;
  return query
    select l.event, count(*)::bigint, (-sum(l.amount))::bigint, coalesce(sum(l.cost_micros), 0)::bigint,
           count(distinct l.account_id)::bigint
      from creditkit.ledger l
     where l.kind = 'consume' and l.unit = 'credits' and l.created_at >= p_from and l.created_at < p_to
     group by l.event
     order by 3 desc, 1
     limit p_limit;
end;
$$;
comment on function public.creditkit_top_events(timestamptz, timestamptz, integer) is
  'Server only. The events that spent the most credits over [p_from, p_to), with calls, cost and distinct accounts.';
revoke all on function public.creditkit_top_events(timestamptz, timestamptz, integer) from public, anon, authenticated;
grant execute on function public.creditkit_top_events(timestamptz, timestamptz, integer) to service_role;

-- Usage and margin per unit (feature). A usage row counts for the feature it paid for: an overage
-- row is a credits row that stood in for another unit (metadata.overage), so its call and cost
-- count for that unit, and its credits as the unit's overage_credits, not as credits spent.
create or replace function public.creditkit_unit_usage(
  p_from timestamptz,
  p_to timestamptz,
  p_account_id uuid default null)
returns table (unit text, calls bigint, spent bigint, overage_credits bigint, granted bigint, revenue_micros bigint,
               cost_micros bigint, margin_micros bigint)
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
  perform creditkit.check_period(p_from, p_to);
  return query
    with rows as (
      select coalesce(case when l.kind = 'consume' and l.unit = 'credits' then l.metadata ->> 'overage' end, l.unit) as feature,
             (l.kind = 'consume' and l.unit = 'credits' and l.metadata ? 'overage') as overage,
             l.kind, l.amount, l.revenue_micros, l.cost_micros
        from creditkit.ledger l
       where l.created_at >= p_from and l.created_at < p_to
         and (p_account_id is null or l.account_id = p_account_id)
    )
    select r.feature,
           count(*) filter (where r.kind = 'consume')::bigint,
           coalesce(-sum(r.amount) filter (where r.kind = 'consume' and not r.overage), 0)::bigint,
           coalesce(-sum(r.amount) filter (where r.overage), 0)::bigint,
           coalesce(sum(r.amount) filter (where r.kind = 'grant'), 0)::bigint,
           coalesce(sum(r.revenue_micros), 0)::bigint,
           coalesce(sum(r.cost_micros), 0)::bigint,
           (coalesce(sum(r.revenue_micros), 0) - coalesce(sum(r.cost_micros), 0))::bigint
      from rows r
     group by r.feature
     order by r.feature <> 'credits', r.feature;
end;
$$;
comment on function public.creditkit_unit_usage(timestamptz, timestamptz, uuid) is
  'Server only. Per unit over [p_from, p_to) (optionally for one account): usage calls, amount spent of the unit, credits spent as its overage, amount granted, revenue, cost and margin in micros. An overage call counts for the unit it stood in for. Credits first, then by unit.';
revoke all on function public.creditkit_unit_usage(timestamptz, timestamptz, uuid) from public, anon, authenticated;
grant execute on function public.creditkit_unit_usage(timestamptz, timestamptz, uuid) to service_role;

-- Like creditkit.live_buckets, it attributes each account's `undrawn` to its buckets in spend order.
create or replace function public.creditkit_credits_outstanding(p_now timestamptz default now())
returns table (category text, credits bigint, accounts bigint)
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
  perform creditkit.check_request(null, null, null, p_now);
  return query
    with b as (
      select g.account_id, g.category, g.expires_at,
             (g.remaining - least(g.remaining, greatest(a.undrawn - (sum(g.remaining) over w - g.remaining), 0)))::bigint as remaining
        from creditkit.grants g
        join creditkit.accounts a on a.id = g.account_id and a.unit = g.unit
       where g.live and g.unit = 'credits'
      window w as (partition by g.account_id order by g.expires_at, g.priority desc, g.created_at, g.id
                   rows between unbounded preceding and current row)
    )
    select b.category, sum(b.remaining)::bigint, count(distinct b.account_id)::bigint
      from b
     where b.remaining > 0 and (b.expires_at is null or b.expires_at > p_now)
     group by b.category
     order by 1;
end;
$$;
comment on function public.creditkit_credits_outstanding(timestamptz) is
  'Server only. The liability: credits still spendable at p_now by category (purchased credits are the ones you owe service for), and how many accounts hold them. Expired credit is excluded even if not yet booked.';
revoke all on function public.creditkit_credits_outstanding(timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_credits_outstanding(timestamptz) to service_role;

create or replace function public.creditkit_accounts_per_plan()
returns table (plan_id text, plan_name text, accounts bigint)
language sql
stable
security invoker
set search_path = ''
as $$
  -- The plan in force (creditkit.effective_plan's rule: the live subscription's plan, else the
  -- default plan) as a join, counted per plan, not a call per account: on Citus a function that
  -- reads a distributed table cannot run inside a statement on a shard (docs/citus.md, F7).
  with per_plan as (
    select coalesce(s.plan_id, d.id) as plan_id, count(*) as accounts
      from creditkit.accounts a
      left join creditkit.subscriptions s
        on s.account_id = a.id and s.status in ('active', 'trialing', 'past_due')
      left join creditkit.plans d on d.is_default
     where a.unit = 'credits'
     group by 1
  )
  select p.id, p.name, coalesce(e.accounts, 0)::bigint
    from creditkit.plans p
    left join per_plan e on e.plan_id = p.id
   order by 3 desc, 1;
$$;
comment on function public.creditkit_accounts_per_plan() is
  'Server only. Accounts per plan in force (a live subscription''s plan, else the default plan).';
revoke all on function public.creditkit_accounts_per_plan() from public, anon, authenticated;
grant execute on function public.creditkit_accounts_per_plan() to service_role;

create or replace function public.creditkit_mrr()
returns table (currency text, mrr bigint, subscriptions bigint)
language sql
stable
security invoker
set search_path = ''
as $$
  -- Active and past_due subscriptions pay; trials and cancellations do not. Normalised to a
  -- month: a year is 12 months, a week 52/12 of a month, a day 365/12.
  select p.currency,
         round(sum(p.price_amount * case p.period when 'month' then 1.0 when 'year' then 1.0 / 12
                                                  when 'week' then 52.0 / 12 when 'day' then 365.0 / 12 end))::bigint,
         count(*)::bigint
    from creditkit.subscriptions s
    join creditkit.plans p on p.id = s.plan_id
   where s.status in ('active', 'past_due') and p.price_amount > 0
   group by p.currency
   order by 1;
$$;
comment on function public.creditkit_mrr() is
  'Server only. Monthly recurring revenue by currency, in the currency''s minor unit (cents): paying subscriptions (active, past_due) times their plan price, normalised to a month.';
revoke all on function public.creditkit_mrr() from public, anon, authenticated;
grant execute on function public.creditkit_mrr() to service_role;
