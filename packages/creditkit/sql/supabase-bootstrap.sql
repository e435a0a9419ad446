-- Gives a plain PostgreSQL (15+) or PGlite database the parts of a Supabase project that
-- creditkit's migrations and tests rely on: the API roles, auth.users and the auth.*() JWT
-- helpers, with the same definitions and grants Supabase ships. It lets every test run on
-- stock Postgres or in-process PGlite instead of the Supabase Docker stack.
--
-- Safe to run twice, and safe to run from several databases of one cluster at once: roles are
-- cluster-global, so each is created only when missing and a concurrent creator is tolerated.

-- Roles -----------------------------------------------------------------------------------
-- Attributes match supabase/postgres; a role that already exists with other attributes is
-- corrected (only when it differs, so concurrent runs normally do not touch the catalog).
do $bootstrap$
declare
  spec record;
begin
  for spec in
    select * from (values
      ('anon',          false, false),
      ('authenticated', false, false),
      ('service_role',  false, true),
      ('authenticator', true,  false)
    ) as s(rolname, canlogin, bypassrls)
  loop
    if not exists (select 1 from pg_catalog.pg_roles r where r.rolname = spec.rolname) then
      begin
        execute format('create role %I %s noinherit %s', spec.rolname,
          case when spec.canlogin then 'login' else 'nologin' end,
          case when spec.bypassrls then 'bypassrls' else 'nobypassrls' end);
      exception
        -- another session created it between our check and our create
        when duplicate_object or unique_violation then null;
      end;
    end if;
    if exists (
      select 1 from pg_catalog.pg_roles r
      where r.rolname = spec.rolname
        and (r.rolcanlogin <> spec.canlogin or r.rolinherit or r.rolbypassrls <> spec.bypassrls)
    ) then
      execute format('alter role %I %s noinherit %s', spec.rolname,
        case when spec.canlogin then 'login' else 'nologin' end,
        case when spec.bypassrls then 'bypassrls' else 'nobypassrls' end);
    end if;
  end loop;

  -- PostgREST logs in as authenticator and switches to one of these per request.
  for spec in select unnest(array['anon', 'authenticated', 'service_role']) as rolname loop
    if not pg_catalog.pg_has_role('authenticator', spec.rolname, 'member') then
      begin
        execute format('grant %I to authenticator', spec.rolname);
      exception
        when duplicate_object or unique_violation then null;
      end;
    end if;
  end loop;
end
$bootstrap$;

-- auth schema -----------------------------------------------------------------------------
create schema if not exists auth;

-- The columns of Supabase's auth.users that creditkit and its tests touch. No API role gets
-- any privilege on it, as on Supabase.
create table if not exists auth.users (
  id uuid primary key default gen_random_uuid(),
  email text,
  raw_app_meta_data jsonb default '{}'::jsonb,
  raw_user_meta_data jsonb default '{}'::jsonb,
  created_at timestamptz default now()
);

-- Supabase's definitions (supabase/auth migrations): PostgREST >= 9 puts the whole JWT in
-- request.jwt.claims; older versions set one setting per claim, which is still honoured.
create or replace function auth.uid()
returns uuid
language sql stable
as $$
  select
    coalesce(
      nullif(current_setting('request.jwt.claim.sub', true), ''),
      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
    )::uuid
$$;

create or replace function auth.role()
returns text
language sql stable
as $$
  select
    coalesce(
      nullif(current_setting('request.jwt.claim.role', true), ''),
      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
    )::text
$$;

create or replace function auth.jwt()
returns jsonb
language sql stable
as $$
  select
    coalesce(
      nullif(current_setting('request.jwt.claim', true), ''),
      nullif(current_setting('request.jwt.claims', true), '')
    )::jsonb
$$;

-- Explicit, so the helpers stay callable even where EXECUTE is not granted to PUBLIC by default.
grant execute on function auth.uid(), auth.role(), auth.jwt() to anon, authenticated, service_role;

grant usage on schema auth to anon, authenticated, service_role;
grant usage on schema public to anon, authenticated, service_role;
