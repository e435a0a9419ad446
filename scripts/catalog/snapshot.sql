-- The installed kit as data: one row per catalog object of creditkit (the schema `creditkit` and the
-- `public.creditkit_*` functions), each described by what it is and does, not by its OID or by
-- the order it was created in. Two installs with the same rows are the same kit: tables, columns,
-- constraints, indexes, triggers, policies, privileges (table, column, function, schema),
-- comments, domains, types, aggregates, sequences, and the rows of the catalogue tables the kit
-- seeds. Function bodies are compared as written; `scripts/catalog/diff.ts --ignore-comments`
-- strips SQL comments from them first, for a comparison of behaviour.
--
-- Output: (kind text, name text, detail jsonb), ordered. Runs on PostgreSQL 15+ and PGlite.
with kit_ns as (
  select n.oid, n.nspname from pg_namespace n where n.nspname in ('creditkit', 'public')
),
kit_rel as (
  select c.oid, c.relname, c.relkind, c.relacl, c.reloptions, c.relrowsecurity, c.relforcerowsecurity
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
   where n.nspname = 'creditkit'
),
kit_proc as (
  select p.oid, n.nspname, p.proname, pg_get_function_identity_arguments(p.oid) as args, p.prokind, p.prolang,
         p.provolatile, p.proisstrict, p.prosecdef, p.proleakproof, p.proparallel, p.proconfig, p.prosrc, p.proacl
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
   where n.nspname = 'creditkit' or (n.nspname = 'public' and p.proname like 'creditkit\_%')
),
rows as (
  -- schema
  select 'schema' as kind, n.nspname::text as name,
         jsonb_build_object('acl', (select array_agg(a::text order by a::text) from unnest(n.nspacl) a),
                            'comment', obj_description(n.oid, 'pg_namespace')) as detail
    from pg_namespace n where n.nspname = 'creditkit'
  union all
  -- relations: tables, indexes, sequences, composite types' relations, views
  select 'relation', r.relname::text,
         jsonb_build_object(
           'relkind', r.relkind,
           'options', r.reloptions,
           'rls', r.relrowsecurity, 'force_rls', r.relforcerowsecurity,
           'acl', (select array_agg(a::text order by a::text) from unnest(r.relacl) a),
           'comment', obj_description(r.oid, 'pg_class'),
           'index', case when r.relkind = 'i' then pg_get_indexdef(r.oid) end,
           'sequence', (select jsonb_build_object('type', format_type(s.seqtypid, null), 'start', s.seqstart,
                                                  'increment', s.seqincrement, 'max', s.seqmax, 'min', s.seqmin,
                                                  'cache', s.seqcache, 'cycle', s.seqcycle)
                          from pg_sequence s where s.seqrelid = r.oid))
    from kit_rel r
  union all
  -- columns (of tables and composite types)
  select 'column', r.relname || '.' || a.attname,
         jsonb_build_object(
           'position', (select count(*) from pg_attribute b
                         where b.attrelid = a.attrelid and b.attnum > 0 and not b.attisdropped and b.attnum <= a.attnum),
           'type', format_type(a.atttypid, a.atttypmod),
           'not_null', a.attnotnull,
           'default', pg_get_expr(d.adbin, d.adrelid),
           'identity', nullif(a.attidentity, ''),
           'generated', nullif(a.attgenerated, ''),
           'acl', (select array_agg(x::text order by x::text) from unnest(a.attacl) x),
           'comment', col_description(r.oid, a.attnum))
    from kit_rel r
    join pg_attribute a on a.attrelid = r.oid and a.attnum > 0 and not a.attisdropped
    left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
   where r.relkind in ('r', 'p', 'c', 'v')
  union all
  -- constraints of tables and domains
  select 'constraint', coalesce(r.relname, t.typname) || '.' || c.conname,
         jsonb_build_object('type', c.contype, 'definition', pg_get_constraintdef(c.oid),
                            'deferrable', c.condeferrable, 'deferred', c.condeferred,
                            'comment', obj_description(c.oid, 'pg_constraint'))
    from pg_constraint c
    left join kit_rel r on r.oid = c.conrelid
    left join pg_type t on t.oid = c.contypid
    left join pg_namespace tn on tn.oid = t.typnamespace
   where r.oid is not null or tn.nspname = 'creditkit'
  union all
  -- triggers
  select 'trigger', r.relname || '.' || tg.tgname,
         jsonb_build_object('definition', pg_get_triggerdef(tg.oid), 'enabled', tg.tgenabled)
    from pg_trigger tg join kit_rel r on r.oid = tg.tgrelid
   where not tg.tgisinternal
  union all
  -- policies
  select 'policy', p.tablename || '.' || p.policyname,
         jsonb_build_object('permissive', p.permissive, 'roles', p.roles, 'cmd', p.cmd,
                            'using', p.qual, 'check', p.with_check)
    from pg_policies p where p.schemaname = 'creditkit'
  union all
  -- types: domains, composite types, enums
  select 'type', t.typname::text,
         jsonb_build_object('typtype', t.typtype,
                            'base', case when t.typtype = 'd' then format_type(t.typbasetype, t.typtypmod) end,
                            'not_null', t.typnotnull, 'default', t.typdefault,
                            'comment', obj_description(t.oid, 'pg_type'),
                            'acl', (select array_agg(a::text order by a::text) from unnest(t.typacl) a))
    from pg_type t join pg_namespace n on n.oid = t.typnamespace
   where n.nspname = 'creditkit' and t.typtype in ('d', 'c', 'e')
     and not exists (select 1 from pg_class c where c.oid = t.typrelid and c.relkind <> 'c')
  union all
  -- functions, procedures and aggregates
  select 'function', p.nspname || '.' || p.proname || '(' || p.args || ')',
         jsonb_build_object(
           'kind', p.prokind,
           'result', pg_get_function_result(p.oid),
           'arguments', pg_get_function_arguments(p.oid),
           'language', (select l.lanname from pg_language l where l.oid = p.prolang),
           'volatility', p.provolatile, 'strict', p.proisstrict, 'security_definer', p.prosecdef,
           'leakproof', p.proleakproof, 'parallel', p.proparallel,
           'config', p.proconfig,
           'body', case when p.prokind = 'a' then null else p.prosrc end,
           'aggregate', (select jsonb_build_object('sfunc', ag.aggtransfn::regproc::text, 'stype', format_type(ag.aggtranstype, null))
                           from pg_aggregate ag where ag.aggfnoid = p.oid),
           'acl', (select array_agg(a::text order by a::text) from unnest(p.proacl) a),
           'comment', obj_description(p.oid, 'pg_proc'))
    from kit_proc p
  union all
  -- seeded catalogue rows
  select 'row', 'error_codes.' || e.code, to_jsonb(e) from creditkit.error_codes e
  union all
  select 'row', 'plans.' || pl.id, to_jsonb(pl) - 'created_at' from creditkit.plans pl
)
select kind, name, detail from rows order by kind, name;
