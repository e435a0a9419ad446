-- Privilege mode 'revoked': the hardened defaults Supabase is moving to. Nothing is granted to
-- the API roles implicitly, and functions are not executable by PUBLIC unless a migration
-- grants them, so every grant creditkit needs must be written out in its migrations.
-- Run once, on a fresh database, before the migrations.
--
-- The revoke is global (no IN SCHEMA): per-schema default privileges can only add to the
-- global ones, so "in schema public revoke execute ... from public" would change nothing.
-- This makes it stricter than Supabase for non-public schemas too, which is deliberate: a
-- migration that forgets a grant fails here rather than silently relying on PUBLIC.

alter default privileges for role postgres revoke execute on functions from public;
