-- pgTAP helpers in the supabase-test-helpers idiom: make users, then act as them exactly as
-- PostgREST would (role + request.jwt.claims, both transaction-local), so a test file reads
-- as a sequence of actors: service role, member, outsider, anon.
-- Installed by scripts/pgtap.ts into each throwaway test database (never a migration: it
-- must not reach a real project). Tests call these from inside `begin; ... rollback;`.

create schema if not exists tests;

-- Test files switch to anon/authenticated and must still reach the helpers (at least
-- clear_authentication to switch back), under both default-privilege modes.
grant usage on schema tests to anon, authenticated, service_role;

-- Security definer: auth.users is readable and writable only by postgres, and tests call this
-- while already acting as another role.
create or replace function tests.create_supabase_user(identifier text, email text default null)
returns uuid
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  user_id uuid;
begin
  if identifier is null then
    raise exception 'tests.create_supabase_user: identifier must not be null';
  end if;
  insert into auth.users (email, raw_user_meta_data)
  values (
    coalesce(create_supabase_user.email, identifier || '@test.local'),
    jsonb_build_object('test_identifier', identifier)
  )
  returning id into user_id;
  return user_id;
end;
$$;
comment on function tests.create_supabase_user(text, text) is
  'Creates an auth.users row remembered under identifier; returns its id.';

-- Security definer for the same reason as create_supabase_user.
create or replace function tests.get_supabase_user(identifier text)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  found jsonb;
begin
  select jsonb_build_object('id', u.id, 'email', u.email) into found
    from auth.users u
   where u.raw_user_meta_data ->> 'test_identifier' = identifier
   order by u.created_at desc
   limit 1;
  if found is null then
    raise exception 'tests: no user created with identifier %', identifier;
  end if;
  return found;
end;
$$;
comment on function tests.get_supabase_user(text) is
  'The id and email of the user created under identifier; raises if there is none.';

create or replace function tests.get_supabase_uid(identifier text)
returns uuid
language sql
stable
set search_path = ''
as $$
  select (tests.get_supabase_user(identifier) ->> 'id')::uuid
$$;
comment on function tests.get_supabase_uid(text) is
  'The id of the user created under identifier; raises if there is none.';

-- The authenticate_* functions are security invoker on purpose: a security definer function
-- may not change the role. Switching works from any current role because the session user
-- (postgres) is what SET ROLE checks.
create or replace function tests.authenticate_as(identifier text)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  who jsonb := tests.get_supabase_user(identifier);
begin
  perform set_config('request.jwt.claims',
    jsonb_build_object('sub', who ->> 'id', 'role', 'authenticated', 'email', who ->> 'email')::text, true);
  perform set_config('role', 'authenticated', true);
end;
$$;
comment on function tests.authenticate_as(text) is
  'Acts as that user for the rest of the transaction, as PostgREST does for a signed-in request.';

create or replace function tests.authenticate_as_service_role()
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
  perform set_config('request.jwt.claims', '{"role": "service_role"}', true);
  perform set_config('role', 'service_role', true);
end;
$$;
comment on function tests.authenticate_as_service_role() is
  'Acts as the service_role key for the rest of the transaction.';

create or replace function tests.authenticate_as_anon()
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
  perform set_config('request.jwt.claims', '{"role": "anon"}', true);
  perform set_config('role', 'anon', true);
end;
$$;
comment on function tests.authenticate_as_anon() is
  'Acts as the anon key for the rest of the transaction (auth.uid() is NULL).';

-- 'none' is SET ROLE NONE: back to the session user (postgres), which is allowed from any
-- current role, unlike naming postgres from a role that is not a member of it.
create or replace function tests.clear_authentication()
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
  perform set_config('role', 'none', true);
  perform set_config('request.jwt.claims', '', true);
end;
$$;
comment on function tests.clear_authentication() is
  'Back to the session user (postgres) with no JWT claims, for the rest of the transaction.';

-- Explicit, so the helpers work when EXECUTE is not granted to PUBLIC by default.
grant execute on function
  tests.create_supabase_user(text, text),
  tests.get_supabase_user(text),
  tests.get_supabase_uid(text),
  tests.authenticate_as(text),
  tests.authenticate_as_service_role(),
  tests.authenticate_as_anon(),
  tests.clear_authentication()
to anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- creditkit's own: the buckets as they truly stand. A consume on the fast path does not touch
-- creditkit.grants; it counts the credit in accounts.undrawn, which the next call that locks the
-- account draws from the buckets in spend order. This view attributes `undrawn` the same way
-- creditkit.live_buckets does, so a test can read each bucket's remainder at any point.
-- ---------------------------------------------------------------------------------------------
create or replace view tests.grants with (security_invoker = true) as
  select g.id, g.account_id, g.category, g.amount,
         (g.remaining - least(g.remaining, greatest(coalesce(a.undrawn, 0) - (sum(g.remaining) over w - g.remaining), 0)))::bigint
           as remaining,
         g.priority, g.expires_at, g.metadata, g.created_at
    from creditkit.grants g
    left join creditkit.accounts a on a.id = g.account_id
  window w as (partition by g.account_id order by g.expires_at, g.priority desc, g.created_at, g.id
               rows between unbounded preceding and current row);
comment on view tests.grants is
  'creditkit.grants with remaining net of the account''s undrawn credit (attributed in spend order).';
-- security_invoker: read with the caller's privileges and RLS, like creditkit.grants itself.
grant select on tests.grants to authenticated, service_role;
