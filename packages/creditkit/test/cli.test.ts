// The creditkit CLI as an app runs it: the built executable (dist/cli.js) with plain node, in
// app folders made here. init and upgrade write migrations an ordinary `supabase db push` takes
// (timestamps after the newest already there) and change nothing the second time; status and
// doctor read a real database, and doctor fails, one line per problem, for each way a client
// could reach what only the server may. The full path through the Supabase CLI and the packed
// tarballs is scripts/test/outside-app.test.ts.
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrations, pgConnection, setupDatabase, upgradePath, version } from 'creditkit';
import { createTestDatabase, type TestDatabase } from '@creditkit/testing';
import { describeIfPostgres } from '@creditkit/testing/vitest';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const RELEASES = fileURLToPath(new URL('./releases/', import.meta.url));
const PREVIOUS = readdirSync(RELEASES).sort().at(-1)!;
const work = mkdtempSync(join(tmpdir(), 'creditkit-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `creditkit <args>` in `cwd`, as `npx creditkit` runs it. */
function creditkit(cwd: string, ...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', env: { ...process.env, DATABASE_URL: '' } }, (error, stdout, stderr) =>
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

let apps = 0;
/** A new app folder with supabase/migrations/ holding `files` (name → SQL). */
function app(files: Record<string, string> = {}, extra: Record<string, string> = {}): string {
  const dir = join(work, `app-${++apps}`);
  mkdirSync(join(dir, 'supabase/migrations'), { recursive: true });
  for (const [name, sql] of Object.entries(files)) writeFileSync(join(dir, 'supabase/migrations', name), sql);
  for (const [path, text] of Object.entries(extra)) writeFileSync(join(dir, path), text);
  return dir;
}

/** Every file under `dir` with its text, to prove a command left a folder as it was. */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) {
      const path = join(entry.parentPath, entry.name);
      out[path.slice(dir.length + 1)] = readFileSync(path, 'utf8');
    }
  }
  return out;
}

const kit = migrations();
const migrationNames = (dir: string) => readdirSync(join(dir, 'supabase/migrations')).sort();

describe('creditkit init', () => {
  it('writes the kit after the newest migration, even one dated in the future, each file the shipped SQL under a header', async () => {
    const dir = app({ '20261204090000_todos.sql': 'create table public.todos (id int);', '20991231235959_later.sql': 'select 1;' });
    const r = await creditkit(dir, 'init');
    expect(r.code, r.stderr).toBe(0);
    const names = migrationNames(dir).filter((n) => n.includes('_creditkit_'));
    expect(names).toEqual(kit.map((m, i) => `21000101${String(i).padStart(6, '0')}_${m.name.replace(/^\d+_/, '')}`));
    for (const [i, m] of kit.entries()) {
      const text = readFileSync(join(dir, 'supabase/migrations', names[i]!), 'utf8');
      expect(text.startsWith(`-- creditkit ${version}: `)).toBe(true);
      expect(text.endsWith(m.sql)).toBe(true);
      expect(text.split('\n').slice(0, 2).every((l) => l.startsWith('--'))).toBe(true); // only a comment was added
    }
    expect(r.stdout).toContain(`Wrote creditkit ${version} into supabase/migrations/ (${kit.length} migrations)`);
    expect(r.stdout).toContain('supabase db push');
  });

  it('starts at the current time when the newest migration is older, and a second init changes nothing and says so', async () => {
    const dir = app({ '20200101000000_old.sql': 'select 1;' });
    const before = new Date().toISOString().replace(/\D/g, '').slice(0, 14);
    expect((await creditkit(dir, 'init')).code).toBe(0);
    const first = migrationNames(dir).find((n) => n.endsWith('_creditkit_setup.sql'))!;
    expect(first.slice(0, 14) >= before).toBe(true);
    const written = tree(dir);
    const again = await creditkit(dir, 'init');
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`creditkit ${version} is already in supabase/migrations/ (${first})`);
    expect(again.stdout).toContain('Nothing changed.');
    expect(tree(dir)).toEqual(written);
  });

  it('--with-stripe writes the Edge Functions (pinned to this version) and turns off their JWT check, keeping the rest of config.toml', async () => {
    const config = [
      'project_id = "my-app"',
      '',
      '[api]',
      'schemas = ["public", "graphql_public"]',
      '',
      '[functions.stripe-webhook]',
      'verify_jwt = true # the default',
      '',
      '[functions.other]',
      'verify_jwt = true',
      '',
    ].join('\n');
    const dir = app({}, { 'supabase/config.toml': config });
    const r = await creditkit(dir, 'init', '--with-stripe');
    expect(r.code, r.stderr).toBe(0);
    const fn = join(dir, 'supabase/functions/stripe-webhook');
    expect(readFileSync(join(fn, 'index.ts'), 'utf8')).toBe(readFileSync(join(ROOT, 'supabase/functions/stripe-webhook/index.ts'), 'utf8'));
    const deno = JSON.parse(readFileSync(join(fn, 'deno.json'), 'utf8'));
    expect(deno.imports['@creditkit/stripe/handler']).toBe(`npm:@creditkit/stripe@${version}/handler`);
    const worker = join(dir, 'supabase/functions/creditkit-worker');
    expect(readFileSync(join(worker, 'index.ts'), 'utf8')).toBe(readFileSync(join(ROOT, 'supabase/functions/creditkit-worker/index.ts'), 'utf8'));
    const workerDeno = JSON.parse(readFileSync(join(worker, 'deno.json'), 'utf8'));
    expect(workerDeno.imports).toEqual({
      '@creditkit/core/server': `npm:@creditkit/core@${version}/server`,
      stripe: 'npm:stripe@^23.1.0',
      '@supabase/supabase-js': 'npm:@supabase/supabase-js@^2',
    });
    expect(readFileSync(join(dir, 'supabase/config.toml'), 'utf8')).toBe(
      config.replace('verify_jwt = true # the default', 'verify_jwt = false # the default') +
        '\n# Supabase Cron calls the worker with its own secret (CREDITKIT_WORKER_SECRET), not a Supabase JWT (written by creditkit init).\n' +
        '[functions.creditkit-worker]\nverify_jwt = false\n',
    );
    expect(r.stdout).toContain('CREDITKIT_WORKER_SECRET');
    expect(r.stdout).toContain('supabase functions deploy creditkit-worker');
    const written = tree(dir);
    const again = await creditkit(dir, 'init', '--with-stripe');
    expect(again.stdout).toContain('Nothing changed.');
    expect(tree(dir)).toEqual(written);
  });

  it('--with-stripe adds the config.toml section when it is missing, and leaves an edited function alone', async () => {
    const dir = app({}, { 'supabase/config.toml': 'project_id = "x"\n' });
    mkdirSync(join(dir, 'supabase/functions/stripe-webhook'), { recursive: true });
    writeFileSync(join(dir, 'supabase/functions/stripe-webhook/index.ts'), '// mine\n');
    const r = await creditkit(dir, 'init', '--with-stripe');
    expect(r.code).toBe(0);
    expect(readFileSync(join(dir, 'supabase/functions/stripe-webhook/index.ts'), 'utf8')).toBe('// mine\n');
    expect(r.stdout).toContain('index.ts exists and differs');
    expect(readFileSync(join(dir, 'supabase/config.toml'), 'utf8')).toMatch(
      /^project_id = "x"\n\n#[^\n]*\n\[functions\.stripe-webhook\]\nverify_jwt = false\n\n#[^\n]*\n\[functions\.creditkit-worker\]\nverify_jwt = false\n$/,
    );
    // the worker, not edited, was written
    expect(readFileSync(join(dir, 'supabase/functions/creditkit-worker/index.ts'), 'utf8')).toContain('runWorker');
  });

  it('refuses a folder without supabase/ (exit 2), unknown commands and options (exit 2), and a copy from before versions (exit 1)', async () => {
    const bare = join(work, 'no-supabase');
    mkdirSync(bare);
    const r = await creditkit(bare, 'init');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^creditkit: no supabase\/ folder in .*supabase init/);
    expect(existsSync(join(bare, 'supabase'))).toBe(false);
    expect((await creditkit(bare, 'frobnicate')).code).toBe(2);
    expect((await creditkit(bare, 'init', '--db-url', 'postgresql://x')).code).toBe(2);
    expect((await creditkit(bare, 'init', '--nope')).code).toBe(2);
    expect((await creditkit(bare)).code).toBe(2);
    expect((await creditkit(bare, '--help')).code).toBe(0);
    expect((await creditkit(bare, '--version')).stdout.trim()).toBe(version);

    const old = app({ '20250101000000_creditkit_setup.sql': 'create schema creditkit;' });
    const before = tree(old);
    const u = await creditkit(old, 'init');
    expect(u.code).toBe(1);
    expect(u.stderr).toContain('none defines creditkit.version()');
    expect(tree(old)).toEqual(before);
  });
});

describe('creditkit upgrade', () => {
  /** An app that installed the previous release: its files as they were written then. */
  function appAtPrevious(): string {
    const dir = app({ '20261201000000_todos.sql': 'create table public.todos (id int);' });
    cpSync(join(RELEASES, PREVIOUS), join(dir, 'supabase/migrations'), { recursive: true });
    return dir;
  }

  it(`writes only the upgrade from ${PREVIOUS}, after the newest migration; then there is nothing to write`, async () => {
    const dir = appAtPrevious();
    const before = migrationNames(dir);
    const r = await creditkit(dir, 'upgrade');
    expect(r.code, r.stderr).toBe(0);
    const added = migrationNames(dir).filter((n) => !before.includes(n));
    const path = upgradePath(PREVIOUS, version);
    expect(added.map((n) => n.replace(/^\d+_/, ''))).toEqual(
      path.map((u) => `creditkit_upgrade_${u.from.replace(/\./g, '_')}_to_${u.to.replace(/\./g, '_')}.sql`),
    );
    expect(added.every((n) => n > before.at(-1)!)).toBe(true);
    for (const [i, u] of path.entries()) {
      expect(readFileSync(join(dir, 'supabase/migrations', added[i]!), 'utf8').endsWith(u.sql)).toBe(true);
    }
    expect(r.stdout).toContain(`from creditkit ${PREVIOUS} to ${version}`);
    const written = tree(dir);
    const again = await creditkit(dir, 'upgrade');
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`creditkit ${version} is current`);
    expect(tree(dir)).toEqual(written);
    // and init now finds the current version there
    expect((await creditkit(dir, 'init')).stdout).toContain(`creditkit ${version} is already in supabase/migrations/`);
  });

  it("moves the Stripe function's @creditkit/stripe pin to this version, and touches nothing else of it", async () => {
    const dir = appAtPrevious();
    const fn = join(dir, 'supabase/functions/stripe-webhook');
    mkdirSync(fn, { recursive: true });
    const deno = (v: string) => `{\n  "imports": {\n    "@creditkit/stripe/handler": "npm:@creditkit/stripe@${v}/handler",\n    "stripe": "npm:stripe@23.1.0"\n  }\n}\n`;
    writeFileSync(join(fn, 'deno.json'), deno(PREVIOUS));
    writeFileSync(join(fn, 'index.ts'), '// the app edited this\n');
    const r = await creditkit(dir, 'upgrade');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`@creditkit/stripe ${PREVIOUS} -> ${version}`);
    expect(readFileSync(join(fn, 'deno.json'), 'utf8')).toBe(deno(version));
    expect(readFileSync(join(fn, 'index.ts'), 'utf8')).toBe('// the app edited this\n');
  });

  it("moves the worker function's @creditkit/core pin to this version too, and touches nothing else of it", async () => {
    const dir = appAtPrevious();
    const fn = join(dir, 'supabase/functions/creditkit-worker');
    mkdirSync(fn, { recursive: true });
    const deno = (v: string) => `{\n  "imports": {\n    "@creditkit/core/server": "npm:@creditkit/core@${v}/server",\n    "stripe": "npm:stripe@23.1.0"\n  }\n}\n`;
    writeFileSync(join(fn, 'deno.json'), deno(PREVIOUS));
    const r = await creditkit(dir, 'upgrade');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`@creditkit/core ${PREVIOUS} -> ${version} (then: supabase functions deploy creditkit-worker)`);
    expect(readFileSync(join(fn, 'deno.json'), 'utf8')).toBe(deno(version));
  });

  it('init in an app at the previous release writes nothing and points to upgrade', async () => {
    const dir = appAtPrevious();
    const before = tree(dir);
    const r = await creditkit(dir, 'init');
    expect(r.stdout).toContain(`creditkit ${PREVIOUS} is already in supabase/migrations/`);
    expect(r.stdout).toContain('npx creditkit upgrade');
    expect(tree(dir)).toEqual(before);
  });

  it('says when the kit is not installed (exit 4)', async () => {
    const r = await creditkit(app({ '20261201000000_todos.sql': 'select 1;' }), 'upgrade');
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('npx creditkit init');
  });
});

describeIfPostgres('creditkit status and doctor on a live database', () => {
  let fresh: TestDatabase;
  let previous: TestDatabase;
  let bare: TestDatabase;
  let dir: string;
  beforeAll(async () => {
    [fresh, previous, bare] = await Promise.all([
      createTestDatabase({ backend: 'postgres' }),
      createTestDatabase({ backend: 'postgres', migrate: false }),
      createTestDatabase({ backend: 'postgres', migrate: false }),
    ]);
    const client = new pg.Client({ connectionString: previous.url });
    await client.connect();
    try {
      await setupDatabase(pgConnection(client), { migrations: migrations(join(RELEASES, PREVIOUS)), upgrade: false });
    } finally {
      await client.end();
    }
    dir = app({}, { 'supabase/config.toml': '[api]\nschemas = ["public", "graphql_public"]\n' });
  }, 120_000);
  afterAll(() => Promise.all([fresh?.drop(), previous?.drop(), bare?.drop()]));

  it('status: the database is current', async () => {
    const r = await creditkit(dir, 'status', '--db-url', fresh.url!);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^database +creditkit ${version.replace(/\./g, '\\.')} `, 'm'));
    expect(r.stdout).toMatch(/^upgrade +none: the database is current$/m);
  });

  it(`status: a database at ${PREVIOUS} and the scripts an upgrade would apply`, async () => {
    const r = await creditkit(dir, 'status', '--db-url', previous.url!);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^database +creditkit ${PREVIOUS.replace(/\./g, '\\.')} `, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^cli +creditkit ${version.replace(/\./g, '\\.')}$`, 'm'));
    for (const u of upgradePath(PREVIOUS, version)) expect(r.stdout).toContain(u.name);
  });

  it('distribute refuses a database that is not a Citus coordinator (exit 1, nothing placed), and bad options (exit 2)', async () => {
    const r = await creditkit(dir, 'distribute', '--db-url', fresh.url!);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('is not a Citus coordinator (no citus extension)');
    expect((await creditkit(dir, 'distribute', '--db-url', fresh.url!, '--shard-count', '0')).code).toBe(2);
    expect((await creditkit(dir, 'distribute', '--db-url', fresh.url!, '--shard-count', 'many')).code).toBe(2);
    expect((await creditkit(dir, 'status', '--db-url', fresh.url!, '--delegate')).code).toBe(2);
    // (placing the kit on a real cluster, and again: citus.test.ts)
  });

  it('doctor passes on a fresh install, and on the previous release (with a note that an upgrade exists)', async () => {
    const r = await creditkit(dir, 'doctor', '--db-url', fresh.url!);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).not.toContain('FAIL');
    expect(r.stdout.match(/^ok {4}/gm)?.length).toBe(9);
    expect(r.stdout).toContain('No problems found.');
    const p = await creditkit(dir, 'doctor', '--db-url', previous.url!);
    expect(p.code, p.stdout).toBe(0);
    expect(p.stdout).toContain(`note  creditkit ${version} is available`);
  });

  // each: what breaks, the FAIL line doctor must print, how to put it back
  const breakages: Array<[string, string, RegExp, string]> = [
    [
      'anon may call creditkit_grant',
      'grant execute on function public.creditkit_grant(uuid, bigint, text, timestamptz, integer, text, jsonb, bigint, timestamptz, text) to anon',
      /^FAIL {2}anon can execute public\.creditkit_grant\(uuid,bigint,text,timestamp with time zone,integer,text,jsonb,bigint,timestamp with time zone,text\): revoke execute/m,
      'revoke execute on function public.creditkit_grant(uuid, bigint, text, timestamptz, integer, text, jsonb, bigint, timestamptz, text) from anon',
    ],
    [
      'every role may call an internal function',
      'grant execute on function creditkit.add_grant(uuid, text, text, bigint, integer, timestamptz, jsonb, timestamptz) to public',
      /^FAIL {2}anon can execute creditkit\.add_grant\(/m,
      'revoke execute on function creditkit.add_grant(uuid, text, text, bigint, integer, timestamptz, jsonb, timestamptz) from public',
    ],
    [
      'a signed-in user may spend for any account',
      'grant execute on function public.creditkit_consume(uuid, bigint, text, text, jsonb, bigint, timestamptz, text) to authenticated',
      /^FAIL {2}authenticated can execute public\.creditkit_consume\(.*which is for the server only/m,
      'revoke execute on function public.creditkit_consume(uuid, bigint, text, text, jsonb, bigint, timestamptz, text) from authenticated',
    ],
    [
      'a signed-in user may claim top-ups to charge (the worker\'s call, with the cards on file)',
      'grant execute on function public.creditkit_worker_claim_topups(integer, interval, timestamptz) to authenticated',
      /^FAIL {2}authenticated can execute public\.creditkit_worker_claim_topups\(integer,interval,timestamp with time zone\), which is for the server only/m,
      'revoke execute on function public.creditkit_worker_claim_topups(integer, interval, timestamptz) from authenticated',
    ],
    [
      'a signed-in user may read the webhook endpoints\' signing secrets',
      'grant execute on function public.creditkit_worker_claim_deliveries(integer, interval, timestamptz) to authenticated',
      /^FAIL {2}authenticated can execute public\.creditkit_worker_claim_deliveries\(integer,interval,timestamp with time zone\), which is for the server only/m,
      'revoke execute on function public.creditkit_worker_claim_deliveries(integer, interval, timestamptz) from authenticated',
    ],
    [
      'anon may read the auto top-up terms',
      'grant execute on function public.creditkit_auto_topup_terms() to anon',
      /^FAIL {2}anon can execute public\.creditkit_auto_topup_terms\(\): revoke execute/m,
      'revoke execute on function public.creditkit_auto_topup_terms() from anon',
    ],
    [
      'a client may write the ledger',
      'grant insert, update on creditkit.ledger to authenticated',
      /^FAIL {2}authenticated has INSERT on creditkit\.ledger: revoke insert/m,
      'revoke insert, update on creditkit.ledger from authenticated',
    ],
    [
      'the server role may rewrite balances',
      'grant update on creditkit.accounts to service_role',
      /^FAIL {2}service_role has UPDATE on creditkit\.accounts/m,
      'revoke update on creditkit.accounts from service_role',
    ],
    [
      'anon may read the ledger',
      'grant usage on schema creditkit to anon; grant select on creditkit.ledger to anon',
      /^FAIL {2}anon can read creditkit\.ledger/m,
      'revoke select on creditkit.ledger from anon; revoke usage on schema creditkit from anon',
    ],
    [
      'row-level security off',
      'alter table creditkit.holds disable row level security',
      /^FAIL {2}row-level security is off on creditkit\.holds/m,
      'alter table creditkit.holds enable row level security',
    ],
    [
      'a function without a pinned search_path',
      'alter function creditkit.spendable(uuid, text) reset search_path',
      /^FAIL {2}creditkit\.spendable\(uuid,text\) does not pin search_path/m,
      `alter function creditkit.spendable(uuid, text) set search_path = ''`,
    ],
    [
      'the append-only trigger disabled',
      'alter table creditkit.ledger disable trigger user',
      /^FAIL {2}trigger \w+ on creditkit\.ledger is disabled/m,
      'alter table creditkit.ledger enable trigger user',
    ],
    [
      'a permissive has_credits policy',
      `create table public.drafts (id int, owner uuid); alter table public.drafts enable row level security;
       create policy drafts_paid on public.drafts for insert to authenticated with check (public.creditkit_has_credits(1))`,
      /^FAIL {2}policy drafts_paid on public\.drafts is permissive/m,
      'drop table public.drafts',
    ],
  ];

  it.each(breakages)('doctor fails when %s, naming it, and passes again once it is put back', async (_what, breakSql, line, fixSql) => {
    await fresh.exec(breakSql);
    try {
      const r = await creditkit(dir, 'doctor', '--db-url', fresh.url!);
      expect(r.code, r.stdout).toBe(1);
      expect(r.stdout).toMatch(line);
      expect(r.stdout).toMatch(/^\d+ problems? found\.$/m);
    } finally {
      await fresh.exec(fixSql);
    }
    const ok = await creditkit(dir, 'doctor', '--db-url', fresh.url!);
    expect(ok.code, ok.stdout).toBe(0);
  });

  it('doctor fails when supabase/config.toml exposes the creditkit schema', async () => {
    const exposed = app({}, { 'supabase/config.toml': '[api]\nenabled = true\nschemas = [\n  "public",\n  "creditkit",\n]\n' });
    const r = await creditkit(exposed, 'doctor', '--db-url', fresh.url!);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^FAIL {2}supabase\/config\.toml lists "creditkit" in \[api\] schemas/m);
  });

  it('a database without the kit is exit 4; an unreachable one exit 3; no URL exit 2', async () => {
    for (const command of ['status', 'doctor']) {
      const r = await creditkit(dir, command, '--db-url', bare.url!);
      expect(r.code, r.stdout).toBe(4);
      expect(r.stderr).toContain('creditkit is not installed in the database');
      const down = await creditkit(dir, command, '--db-url', 'postgresql://postgres:secret@127.0.0.1:1/nowhere');
      expect(down.code).toBe(3);
      expect(down.stderr).toContain('cannot reach the database at postgresql://postgres:***@127.0.0.1:1/nowhere');
      expect(down.stderr).not.toContain('secret');
      expect((await creditkit(dir, command)).code).toBe(2);
    }
  });
});
