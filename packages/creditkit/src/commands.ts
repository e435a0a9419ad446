// The creditkit CLI's commands (the executable is cli.ts): init, upgrade, status, doctor. main()
// returns the exit code and throws CliError for the documented failures, so tests drive it
// in-process. See `creditkit --help` and the README's "Install into your Supabase project".
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { withoutJwtVerification } from './config-toml.ts';
import { installedVersion, runDoctor, type Queryable } from './doctor.ts';
import {
  CliError,
  EXIT,
  SupabaseProject,
  compareVersions,
  installFiles,
  kitVersion,
  stripeFunctionFiles,
  upgradeFiles,
  workerFunctionFiles,
} from './project.ts';
import { upgradePath } from './upgrades.ts';
import { citusDir, readFileIn } from './files.ts';

const HELP = `creditkit ${kitVersion}: the credit ledger for Supabase apps

Usage: npx creditkit <command> [options]     (run in your app's root, the folder holding supabase/)

  init [--with-stripe]    write the kit's SQL into supabase/migrations/, timestamped after your newest
                          migration, so \`supabase db push\` applies it; --with-stripe also writes the
                          Edge Functions stripe-webhook (Stripe's events) and creditkit-worker (charges
                          auto top-ups, delivers notifications; Supabase Cron calls it) and turns off
                          their JWT check in supabase/config.toml
  upgrade                 write the upgrade migrations from the version in supabase/migrations/ to ${kitVersion}
  status --db-url URL     the version a database has, this CLI's, and what an upgrade would apply
  doctor --db-url URL     check a database's privileges, RLS and policies; one line per problem
  distribute --db-url URL [--shard-count N] [--delegate]
                          on a Citus coordinator with the kit installed: distribute the per-account
                          tables by account (colocated) and make the catalogues and Stripe state
                          reference tables; --delegate also sends single-account calls to the node that
                          owns the account (the calling role must be able to log in to the workers);
                          idempotent (docs/citus.md)

Options:
  --dir PATH              the app's root (default: the current folder)
  --db-url URL            a Postgres URL with catalog access (default: $DATABASE_URL)
  -v, --version           print the version
  -h, --help              print this

Exit codes: 0 ok, 1 problems found (doctor) or nothing could be done, 2 usage or no supabase/ folder,
3 database unreachable, 4 creditkit not installed (in the database, or in supabase/migrations for upgrade).
`;

type Out = (line?: string) => void;

export async function main(argv: string[], out: Out = (l = '') => process.stdout.write(`${l}\n`)): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        'with-stripe': { type: 'boolean' },
        dir: { type: 'string' },
        'db-url': { type: 'string' },
        'shard-count': { type: 'string' },
        delegate: { type: 'boolean' },
        version: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new CliError(`${(err as Error).message}\nRun \`npx creditkit --help\` for the commands.`, EXIT.usage);
  }
  const { values, positionals } = parsed;
  if (values.version) {
    out(kitVersion);
    return EXIT.ok;
  }
  const [command, ...extra] = positionals;
  if (values.help || command === undefined || command === 'help') {
    out(HELP.trimEnd());
    return command === undefined && !values.help ? EXIT.usage : EXIT.ok;
  }
  if (extra.length > 0) throw new CliError(`unexpected argument: ${extra[0]}`, EXIT.usage);
  const dir = resolve(values.dir ?? '.');
  const onlyFor = (option: string, commands: string[]) => {
    if (values[option as keyof typeof values] !== undefined && !commands.includes(command)) {
      throw new CliError(`--${option} is not an option of \`creditkit ${command}\``, EXIT.usage);
    }
  };
  onlyFor('with-stripe', ['init']);
  onlyFor('db-url', ['status', 'doctor', 'distribute']);
  onlyFor('shard-count', ['distribute']);
  onlyFor('delegate', ['distribute']);
  switch (command) {
    case 'init':
      return init(new SupabaseProject(dir), Boolean(values['with-stripe']), out);
    case 'upgrade':
      return upgrade(new SupabaseProject(dir), out);
    case 'status':
      return status(dbUrl(values['db-url']), dir, out);
    case 'doctor':
      return doctor(dbUrl(values['db-url']), dir, out);
    case 'distribute':
      return distribute(dbUrl(values['db-url']), shardCount(values['shard-count']), Boolean(values.delegate), out);
    default:
      throw new CliError(`unknown command: ${command}\nRun \`npx creditkit --help\` for the commands.`, EXIT.usage);
  }
}

function dbUrl(option: string | undefined): string {
  const url = option ?? process.env.DATABASE_URL;
  if (!url) throw new CliError('--db-url is required (or set DATABASE_URL): the Postgres URL `supabase db push --db-url` takes', EXIT.usage);
  return url;
}

// ── init ──────────────────────────────────────────────────────────────────────────────────────

function init(project: SupabaseProject, withStripe: boolean, out: Out): number {
  const lines: string[] = [];
  const installed = project.installedVersion();
  if (installed) {
    lines.push(`creditkit ${installed.version} is already in supabase/migrations/ (${installed.file}); no migrations written.`);
    if (compareVersions(installed.version, kitVersion) < 0) lines.push(`To bring it to ${kitVersion}: npx creditkit upgrade`);
  } else {
    refuseUnversionedCopy(project);
    const written = project.writeMigrations(installFiles());
    lines.push(`Wrote creditkit ${kitVersion} into supabase/migrations/ (${written.length} migrations):`);
    for (const name of written) lines.push(`  ${name}`);
  }
  if (withStripe) lines.push(...writeStripeFunctions(project));
  const changed = !installed || lines.some((l) => l.startsWith('  wrote') || l.startsWith('  updated'));
  for (const line of lines) out(line);
  if (!changed) {
    out('Nothing changed.');
    return EXIT.ok;
  }
  out();
  out('Next:');
  out('  supabase db push                       (or: supabase db push --db-url <postgres url>)');
  if (withStripe) {
    out('  supabase secrets set STRIPE_SECRET_KEY=… STRIPE_WEBHOOK_SECRET=… CREDITKIT_WORKER_SECRET=…');
    out('  supabase functions deploy stripe-webhook  &&  supabase functions deploy creditkit-worker');
    out('  schedule the worker with Supabase Cron (docs/stripe.md, "Scheduling the worker")');
  }
  out('  npx creditkit doctor --db-url <postgres url>');
  return EXIT.ok;
}

/** Kit files that define no version predate 0.1.0: neither init nor upgrade can know what they hold. */
function refuseUnversionedCopy(project: SupabaseProject): void {
  const files = project.kitFiles();
  if (files.length > 0) {
    throw new CliError(
      `supabase/migrations/ has creditkit files (${files[0]}…) but none defines creditkit.version(): a copy from before 0.1.0, ` +
        'which no upgrade script starts from. Install into a new database with `npx creditkit init` instead.',
      EXIT.problems,
    );
  }
}

/** The Edge Functions --with-stripe writes, and why each needs verify_jwt off. */
const STRIPE_FUNCTIONS = [
  { name: 'stripe-webhook', files: stripeFunctionFiles, why: 'Stripe signs its webhook requests; they carry no Supabase JWT' },
  {
    name: 'creditkit-worker',
    files: workerFunctionFiles,
    why: 'Supabase Cron calls the worker with its own secret (CREDITKIT_WORKER_SECRET), not a Supabase JWT',
  },
] as const;

function writeStripeFunctions(project: SupabaseProject): string[] {
  const lines: string[] = [];
  const configPath = join(project.supabaseDir, 'config.toml');
  for (const fn of STRIPE_FUNCTIONS) {
    const fnDir = join(project.supabaseDir, 'functions', fn.name);
    mkdirSync(fnDir, { recursive: true });
    for (const file of fn.files()) {
      const path = join(fnDir, file.name);
      const rel = project.relative(path);
      if (!existsSync(path)) {
        writeFileSync(path, file.text);
        lines.push(`  wrote ${rel}`);
      } else if (readFileSync(path, 'utf8') === file.text) {
        lines.push(`${rel} is already the kit's.`);
      } else {
        lines.push(`${rel} exists and differs from the kit's ${kitVersion} version: left as it is.`);
      }
    }
    const current = existsSync(configPath) ? readFileSync(configPath, 'utf8') : '';
    const { toml, change } = withoutJwtVerification(current, fn.name, fn.why);
    if (change === 'none') {
      lines.push(`supabase/config.toml already has verify_jwt = false for ${fn.name}.`);
    } else {
      writeFileSync(configPath, toml);
      lines.push(`  ${change === 'added' ? 'wrote' : 'updated'} supabase/config.toml: [functions.${fn.name}] verify_jwt = false`);
    }
  }
  return lines;
}

// ── upgrade ───────────────────────────────────────────────────────────────────────────────────

function upgrade(project: SupabaseProject, out: Out): number {
  const installed = project.installedVersion();
  if (!installed) {
    refuseUnversionedCopy(project);
    throw new CliError('creditkit is not in supabase/migrations/: install it with `npx creditkit init`', EXIT.notInstalled);
  }
  const cmp = compareVersions(installed.version, kitVersion);
  const pins = repinFunctions(project);
  if (cmp === 0) {
    out(`creditkit ${kitVersion} is current in supabase/migrations/; ${pins.length > 0 ? 'no migrations to write.' : 'nothing to write.'}`);
    for (const pin of pins) out(pin);
    return EXIT.ok;
  }
  if (cmp > 0) {
    throw new CliError(
      `supabase/migrations/ has creditkit ${installed.version}, newer than this CLI (${kitVersion}): run \`npx creditkit@${installed.version} …\``,
      EXIT.problems,
    );
  }
  const files = upgradeFiles(installed.version);
  const written = project.writeMigrations(files);
  out(`Wrote the upgrade from creditkit ${installed.version} to ${kitVersion} into supabase/migrations/:`);
  files.forEach((f, i) => out(`  ${written[i]}  (${summary(f.upgrade.sql)})`));
  for (const pin of pins) out(pin);
  out();
  out('Next: supabase db push; the CHANGELOG says what changed (node_modules/creditkit/CHANGELOG.md).');
  return EXIT.ok;
}

/**
 * The kit's Edge Functions pin a kit package in their deno.json to the version init wrote them for
 * (stripe-webhook: @creditkit/stripe, creditkit-worker: @creditkit/core): moves an older pin to
 * this version, and says so. Anything else in the functions is the app's.
 */
function repinFunctions(project: SupabaseProject): string[] {
  const pinned = [
    { fn: 'stripe-webhook', pkg: '@creditkit/stripe', entry: 'handler' },
    { fn: 'creditkit-worker', pkg: '@creditkit/core', entry: 'server' },
  ];
  const lines: string[] = [];
  for (const { fn, pkg, entry } of pinned) {
    const path = join(project.supabaseDir, 'functions', fn, 'deno.json');
    if (!existsSync(path)) continue;
    const text = readFileSync(path, 'utf8');
    const pin = new RegExp(`"npm:${pkg.replace('/', '\\/')}@(\\d+\\.\\d+\\.\\d+)/${entry}"`).exec(text);
    if (!pin?.[1] || compareVersions(pin[1], kitVersion) >= 0) continue;
    writeFileSync(path, text.replace(pin[0], `"npm:${pkg}@${kitVersion}/${entry}"`));
    lines.push(`  updated ${project.relative(path)}: ${pkg} ${pin[1]} -> ${kitVersion} (then: supabase functions deploy ${fn})`);
  }
  return lines;
}

/** An upgrade script's first line, `-- creditkit <from> -> <to>: <what it changes>`, without the versions. */
function summary(sql: string): string {
  return (sql.split('\n')[0] ?? '').replace(/^--\s*(creditkit [\d.]+ -> [\d.]+:\s*)?/, '').trim();
}

// ── status and doctor ─────────────────────────────────────────────────────────────────────────

/** The URL with its password hidden, for printing. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(the given URL)';
  }
}

async function connect<T>(url: string, use: (db: Queryable) => Promise<T>): Promise<T> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
  } catch (err) {
    throw new CliError(`cannot reach the database at ${redact(url)}: ${(err as Error).message}`, EXIT.unreachable);
  }
  client.on('error', () => {}); // a dropped connection surfaces as the failing query's error
  try {
    return await use({
      async query<R>(sql: string, params?: unknown[]) {
        return (await client.query(sql, params)).rows as R[];
      },
    });
  } finally {
    await client.end().catch(() => {});
  }
}

function shardCount(option: string | undefined): number | undefined {
  if (option === undefined) return undefined;
  const n = Number(option);
  if (!Number.isInteger(n) || n < 1 || n > 7000) throw new CliError(`--shard-count is a whole number from 1 to 7000, not ${option}`, EXIT.usage);
  return n;
}

/**
 * Runs the package's citus/distribute.sql (scripts/citus/distribute.sql) on a Citus coordinator
 * where the kit is installed, in one transaction, then says what is placed where. Running it again
 * places nothing new. --delegate sets creditkit.citus_delegate = on for the run: the single-account
 * functions are delegated to the account's worker; without it none is, and a delegation made before
 * is taken back (docs/citus.md, "Delegated calls").
 */
async function distribute(url: string, shards: number | undefined, delegate: boolean, out: Out): Promise<number> {
  const script = readFileIn(citusDir, 'distribute.sql');
  return connect(url, async (db) => {
    const [citus] = await db.query<{ version: string }>(`select extversion as version from pg_catalog.pg_extension where extname = 'citus'`);
    if (!citus) {
      throw new CliError(`the database at ${redact(url)} is not a Citus coordinator (no citus extension): docs/citus.md`, EXIT.problems);
    }
    const installed = await installedVersion(db);
    if (installed === null) throw notInstalled(url);
    if (shards !== undefined) await db.query(`select set_config('citus.shard_count', $1, false)`, [String(shards)]);
    await db.query(`select set_config('creditkit.citus_delegate', $1, false)`, [delegate ? 'on' : 'off']);
    try {
      await db.query(script);
    } catch (err) {
      const e = err as { code?: string; message: string; detail?: string };
      throw new CliError(`distribute.sql failed, nothing was placed: ${e.code ?? ''} ${e.message}${e.detail ? `\nDETAIL: ${e.detail}` : ''}`, EXIT.problems);
    }
    const [placed] = await db.query<{ distributed: number; reference: number; delegated: number }>(`
      select (select count(*)::int from citus_tables t
               where t.table_name::text like 'creditkit.%' and t.citus_table_type = 'distributed') as distributed,
             (select count(*)::int from citus_tables t
               where t.table_name::text like 'creditkit.%' and t.citus_table_type = 'reference') as reference,
             (select count(*)::int from pg_catalog.pg_dist_object o join pg_catalog.pg_proc p on p.oid = o.objid
               where o.classid = 'pg_catalog.pg_proc'::regclass and o.distribution_argument_index is not null
                 and p.proname like 'creditkit\\_%') as delegated`);
    out(`creditkit ${installed} on Citus ${citus.version}   ${redact(url)}`);
    out(`  ${placed!.distributed} tables distributed by account (colocated with creditkit.accounts), ${placed!.reference} reference tables`);
    out(`  ${placed!.delegated} functions delegated to the node that holds the account${delegate ? '' : ' (without --delegate: none)'}`);
    return EXIT.ok;
  });
}

function notInstalled(url: string): CliError {
  return new CliError(
    `creditkit is not installed in the database at ${redact(url)}: \`npx creditkit init\`, then \`supabase db push\``,
    EXIT.notInstalled,
  );
}

async function status(url: string, dir: string, out: Out): Promise<number> {
  const installed = await connect(url, installedVersion);
  if (installed === null) throw notInstalled(url);
  out(`database     creditkit ${installed}   ${redact(url)}`);
  let written = installed; // the version supabase/migrations/ holds, when it is newer than the database's
  if (existsSync(join(dir, 'supabase'))) {
    const inFolder = new SupabaseProject(dir).installedVersion();
    const pending = inFolder && compareVersions(inFolder.version, installed) > 0;
    if (pending) written = inFolder.version;
    out(`migrations   ${inFolder ? `creditkit ${inFolder.version}` : 'no creditkit'}   supabase/migrations/${pending ? '   (not pushed yet)' : ''}`);
  }
  out(`cli          creditkit ${kitVersion}`);
  const cmp = compareVersions(installed, kitVersion);
  if (cmp === 0) {
    out('upgrade      none: the database is current');
  } else if (cmp > 0) {
    out(`upgrade      none: the database is newer than this CLI (npx creditkit@${installed})`);
  } else {
    const path = upgradePath(installed, kitVersion);
    const how = compareVersions(written, kitVersion) === 0 ? 'in supabase/migrations/ already: supabase db push' : 'npx creditkit upgrade, then supabase db push';
    out(`upgrade      ${path.length} script${path.length === 1 ? '' : 's'} (${how}):`);
    for (const u of path) out(`  ${u.name}: ${summary(u.sql)}`);
  }
  return EXIT.ok;
}

async function doctor(url: string, dir: string, out: Out): Promise<number> {
  const configPath = join(dir, 'supabase', 'config.toml');
  const configToml = existsSync(configPath) ? readFileSync(configPath, 'utf8') : null;
  const report = await connect(url, (db) => runDoctor(db, { configToml, cliVersion: kitVersion }));
  if (report.installed === null) throw notInstalled(url);
  out(`creditkit ${report.installed} at ${redact(url)} (doctor ${kitVersion})`);
  let problems = 0;
  for (const check of report.checks) {
    if (check.problems.length === 0) out(`ok    ${check.name}`);
    for (const p of check.problems) out(`FAIL  ${p}`);
    problems += check.problems.length;
  }
  for (const note of report.notes) out(`note  ${note}`);
  out(problems === 0 ? 'No problems found.' : `${problems} problem${problems === 1 ? '' : 's'} found.`);
  return problems === 0 ? EXIT.ok : EXIT.problems;
}
