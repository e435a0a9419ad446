-- Supabase's permissive defaults (applied in privilege mode 'supabase', the default): every
-- table, function and sequence that postgres (the role that runs migrations) creates in
-- public is fully granted to the API roles, so anything there is reachable through the Data
-- API unless a migration revokes it from anon and authenticated by name. creditkit must be
-- safe under these defaults; tests run against them on purpose.
-- Run once, on a fresh database, before the migrations.

alter default privileges for role postgres in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on functions to anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on sequences to anon, authenticated, service_role;

grant all on all tables in schema public to anon, authenticated, service_role;
grant all on all functions in schema public to anon, authenticated, service_role;
grant all on all sequences in schema public to anon, authenticated, service_role;
