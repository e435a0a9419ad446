-- creditkit 0009: the plan catalogue as a function, so a pricing page or the SDK can list the
-- plans on offer through the Data API without exposing the private schema. Invoker rights: it
-- reads creditkit.plans through the "signed-in users can read the plan catalogue" policy.

create function public.creditkit_plans()
returns table (
  id text,
  name text,
  allowance bigint,
  period text,
  renewal text,
  rollover_cap bigint,
  features jsonb,
  price_amount bigint,
  currency text,
  is_default boolean)
language sql
stable
security invoker
set search_path = ''
as $$
  select p.id, p.name, p.allowance, p.period, p.renewal, p.rollover_cap, p.features,
         p.price_amount, p.currency, p.is_default
    from creditkit.plans p
   where p.active
   order by p.price_amount, p.id;
$$;
comment on function public.creditkit_plans() is
  'Server and signed-in users. The active plans, cheapest first: allowance, period, renewal rule, features and price (in the smallest currency unit).';
revoke all on function public.creditkit_plans() from public, anon, authenticated, service_role;
grant execute on function public.creditkit_plans() to authenticated, service_role;
