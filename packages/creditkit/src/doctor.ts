// `creditkit doctor`: reads a live database's catalog and says what would let a client mint,
// spend or read credit it should not. Each check is one query; a problem is one line naming the
// object and the statement that fixes it. It reads only, and needs a role that can see the
// catalog (the URL `supabase db push` uses).
import { apiSchemas } from './config-toml.ts';
import { compareVersions } from './upgrades.ts';

export interface Queryable {
  query<T>(sql: string, params?: unknown[]): Promise<T[]>;
}

export interface Check {
  name: string;
  problems: string[];
}

export interface DoctorReport {
  /** creditkit.version() in the database; null when the kit is not installed there. */
  installed: string | null;
  checks: Check[];
  /** Lines that are worth saying but are not problems (an upgrade is available, ...). */
  notes: string[];
}

/**
 * The functions a signed-in user (role authenticated) may execute: each answers only for the
 * caller's own account (auth.uid(), or a team account creditkit.can_access_account allows) or
 * reads the public catalogue. Everything else is for the server (service_role) only.
 */
export const CALLER_BOUND_FUNCTIONS = [
  'public.creditkit_my_balance(uuid,text)',
  'public.creditkit_my_check(text,bigint,uuid)',
  'public.creditkit_my_history(uuid,integer,bigint,text)',
  'public.creditkit_my_plan(uuid)',
  'public.creditkit_my_feature(text,uuid)',
  'public.creditkit_has_credits(bigint,uuid,text)',
  'public.creditkit_quote(text,bigint,jsonb,timestamp with time zone)',
  'public.creditkit_plans()',
  'public.creditkit_packs()',
  'public.creditkit_units()',
  // balance alerts and auto top-up (0.3.0): security definer, bound to the caller by
  // creditkit.caller_account before they read or write; the terms are the operator's public offer
  'public.creditkit_my_balance_alert(text,uuid)',
  'public.creditkit_my_set_balance_alert(text,bigint,uuid)',
  'public.creditkit_my_auto_topup(text,uuid)',
  'public.creditkit_my_set_auto_topup(text,boolean,bigint,bigint,bigint,text,uuid)',
  'public.creditkit_my_topups(text,integer,uuid)',
  'public.creditkit_auto_topup_terms()',
];

/**
 * Helpers in the (unexposed) creditkit schema that the caller-bound functions run as the caller:
 * security invoker, reading or validating only. Never a security definer function.
 */
export const CALLER_HELPERS = [
  'creditkit.caller_account(uuid)',
  'creditkit.can_access_account(uuid)',
  'creditkit.can_manage_billing(uuid)',
  'creditkit.check_amount(bigint)',
  'creditkit.check_money(bigint)',
  'creditkit.check_request(text,text,jsonb,timestamp with time zone)',
  'creditkit.check_unit(text)',
  'creditkit.check_event(text,jsonb,timestamp with time zone)',
  'creditkit.reserved_metadata_keys()',
  'creditkit.period_start(timestamp with time zone,text,integer)',
  'creditkit.period_index(timestamp with time zone,text,timestamp with time zone)',
  'creditkit.effective_plan(uuid)',
  'creditkit.live_buckets(uuid,text,timestamp with time zone)',
  'creditkit.history_page(uuid,text,integer,bigint)',
  'creditkit.limits_of(text)',
  'creditkit.price_for(text,jsonb,timestamp with time zone)',
  'creditkit.price_or_raise(text,jsonb,bigint,timestamp with time zone)',
  'creditkit.unit_terms(uuid,text)',
  'creditkit.allowance_anchor(uuid,text,timestamp with time zone)',
  'creditkit.unopened_allowance(uuid,text,timestamp with time zone)',
];

// The kit's functions: everything in the creditkit schema and public.creditkit_*, each as
// schema.name(argument types) without spaces after commas, the form of the lists above (and one
// that `revoke … on function` accepts).
const KIT_FUNCTIONS = `
  select p.oid,
         format('%s.%s(%s)', n.nspname, p.proname,
                array_to_string(array(select format_type(t, null)
                                        from unnest(p.proargtypes::oid[]) with ordinality as a(t, i) order by i), ',')) as signature,
         p.prokind, p.prosecdef, p.proconfig
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
   where n.nspname = 'creditkit' or (n.nspname = 'public' and p.proname like 'creditkit\\_%')`;

interface KitFunction {
  signature: string;
  prokind: string;
  prosecdef: boolean;
  proconfig: string[] | null;
}

const CLIENT_ROLES = ['anon', 'authenticated'];

/** creditkit.version() in the database, or null when the kit is not installed there. */
export async function installedVersion(db: Queryable): Promise<string | null> {
  // two statements: a call of a function that does not exist fails at parse time, whatever guards it
  const [known] = await db.query<{ known: boolean }>(`select to_regprocedure('creditkit.version()') is not null as known`);
  if (!known?.known) return null;
  const [row] = await db.query<{ version: string }>('select creditkit.version() as version');
  return row?.version ?? null;
}

/** Runs every check. `configToml` is supabase/config.toml's text when the app has one. */
export async function runDoctor(db: Queryable, opts: { configToml?: string | null; cliVersion: string }): Promise<DoctorReport> {
  const installed = await installedVersion(db);
  const notes: string[] = [];
  if (installed === null) return { installed, checks: [], notes };
  if (compareVersions(installed, opts.cliVersion) < 0) {
    notes.push(`creditkit ${opts.cliVersion} is available: \`npx creditkit upgrade\`, then \`supabase db push\``);
  } else if (compareVersions(installed, opts.cliVersion) > 0) {
    notes.push(`this CLI (${opts.cliVersion}) is older than the database's creditkit (${installed}); its checks may miss newer functions`);
  }

  const roles = await db.query<{ rolname: string }>(`select rolname from pg_roles where rolname = any($1)`, [
    [...CLIENT_ROLES, 'service_role'],
  ]);
  const missing = [...CLIENT_ROLES, 'service_role'].filter((r) => !roles.some((x) => x.rolname === r));
  const checks: Check[] = [];
  if (missing.length > 0) {
    checks.push({ name: "Supabase's API roles exist", problems: [`role ${missing.join(', ')} does not exist: this is not a Supabase database (or its bootstrap)`] });
    return { installed, checks, notes };
  }

  const fns = await db.query<KitFunction>(`${KIT_FUNCTIONS} order by 2`);
  const executable = async (role: string) =>
    new Set(
      (
        await db.query<{ signature: string }>(
          `select signature from (${KIT_FUNCTIONS}) f where has_function_privilege($1, f.oid, 'execute')`,
          [role],
        )
      ).map((r) => r.signature),
    );
  const byAnon = await executable('anon');
  const byAuthenticated = await executable('authenticated');
  const revoke = (f: KitFunction, role: string) => `revoke execute on function ${f.signature} from ${role}, public;`;

  checks.push({
    name: 'anon can execute no kit function',
    problems: fns.filter((f) => byAnon.has(f.signature)).map((f) => `anon can execute ${f.signature}: ${revoke(f, 'anon')}`),
  });

  // By name: the kit has one signature per function, and an install of an earlier release has
  // these functions with the arguments of then (0.2.0 added a unit to several).
  const nameOf = (signature: string) => signature.slice(0, signature.indexOf('('));
  const allowed = new Set([...CALLER_BOUND_FUNCTIONS, ...CALLER_HELPERS].map(nameOf));
  checks.push({
    name: 'authenticated can execute only the caller-bound functions',
    problems: fns
      .filter((f) => byAuthenticated.has(f.signature) && (!allowed.has(nameOf(f.signature)) || (f.prosecdef && f.signature.startsWith('creditkit.'))))
      .map((f) => `authenticated can execute ${f.signature}, which is for the server only: ${revoke(f, 'authenticated')}`),
  });

  const writes = await db.query<{ relation: string; role: string; privilege: string }>(
    `select format('%I.%I', n.nspname, c.relname) as relation, r.role, p.privilege
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
       cross join unnest($1::text[]) as r(role)
       cross join unnest(array['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) as p(privilege)
      where n.nspname = 'creditkit' and c.relkind in ('r', 'p', 'v', 'm', 'f')
        and has_table_privilege(r.role, c.oid, p.privilege)
      order by 1, 2, 3`,
    [[...CLIENT_ROLES, 'service_role']],
  );
  checks.push({
    name: 'no API role can write a kit table (writes go through the functions)',
    problems: writes.map((w) => `${w.role} has ${w.privilege} on ${w.relation}: revoke ${w.privilege.toLowerCase()} on ${w.relation} from ${w.role}, public;`),
  });

  const anonReads = await db.query<{ relation: string }>(
    `select format('%I.%I', n.nspname, c.relname) as relation
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'creditkit' and c.relkind in ('r', 'p', 'v', 'm', 'f')
        and has_table_privilege('anon', c.oid, 'SELECT')
      order by 1`,
  );
  checks.push({
    name: 'anon can read no kit table',
    problems: anonReads.map((r) => `anon can read ${r.relation}: revoke select on ${r.relation} from anon, public;`),
  });

  const noRls = await db.query<{ relation: string }>(
    `select format('%I.%I', n.nspname, c.relname) as relation
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'creditkit' and c.relkind in ('r', 'p') and not c.relrowsecurity
      order by 1`,
  );
  checks.push({
    name: 'row-level security is on for every kit table',
    problems: noRls.map((r) => `row-level security is off on ${r.relation}: alter table ${r.relation} enable row level security;`),
  });

  checks.push({
    name: 'every kit function pins its search_path',
    problems: fns
      .filter((f) => f.prokind !== 'a' && !(f.proconfig ?? []).some((c) => c.startsWith('search_path=')))
      .map((f) => `${f.signature} does not pin search_path (a caller could shadow what it calls): alter function ${f.signature} set search_path = '';`),
  });

  const triggers = await db.query<{ trigger: string; relation: string }>(
    `select t.tgname as trigger, format('%I.%I', n.nspname, c.relname) as relation
       from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'creditkit' and not t.tgisinternal and t.tgenabled = 'D'
      order by 2, 1`,
  );
  checks.push({
    name: "the kit's triggers are enabled (append-only ledger, grant checks)",
    problems: triggers.map((t) => `trigger ${t.trigger} on ${t.relation} is disabled: alter table ${t.relation} enable trigger ${t.trigger};`),
  });

  const permissive = await db.query<{ policy: string; relation: string }>(
    `select pol.polname as policy, format('%I.%I', n.nspname, c.relname) as relation
       from pg_policy pol join pg_class c on c.oid = pol.polrelid join pg_namespace n on n.oid = c.relnamespace
      where pol.polpermissive
        and (coalesce(pg_get_expr(pol.polqual, pol.polrelid), '') ~ 'creditkit_has_credits'
          or coalesce(pg_get_expr(pol.polwithcheck, pol.polrelid), '') ~ 'creditkit_has_credits')
      order by 2, 1`,
  );
  checks.push({
    name: 'creditkit_has_credits is used only in restrictive policies',
    problems: permissive.map(
      (p) =>
        `policy ${p.policy} on ${p.relation} is permissive and calls creditkit_has_credits: another permissive policy lets the row through without credit; recreate it \`as restrictive\``,
    ),
  });

  if (opts.configToml != null) {
    const schemas = apiSchemas(opts.configToml) ?? [];
    checks.push({
      name: 'the creditkit schema is not exposed through the Data API',
      problems: schemas.includes('creditkit')
        ? ['supabase/config.toml lists "creditkit" in [api] schemas: remove it (clients reach the kit through public.creditkit_* only)']
        : [],
    });
  } else {
    notes.push('no supabase/config.toml here: the [api] schemas check was skipped (run doctor in the app root, or pass --dir)');
  }

  return { installed, checks, notes };
}
