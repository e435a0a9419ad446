// An app outside this repository adopting creditkit the way the README tells it to, end to end,
// from the packed tarballs (what `npm publish` would upload): its own package.json with the four
// tarballs and the current releases of everything else from the npm registry; an app migration
// dated today that is already pushed; `npx creditkit init --with-stripe`; `supabase db push`
// without --include-all; a plain-node ESM script (no TypeScript loader) that imports every entry
// point of every package and runs grant -> consume -> blocked (402 from the route helper) over
// node-postgres; `next build` of a Next.js app with create-next-app's tsconfig, <CreditsDisplay/> on
// a page and a route handler on @creditkit/core/http; the Edge Function init wrote, under Deno,
// applying a signed Stripe event; `creditkit doctor` passing, then failing after a bad grant;
// `creditkit upgrade` in an app installed at the previous release, which then meters a unit through
// the SDK (its credits carried over). CI runs it (scripts/test.mjs
// requires it to pass under CREDITKIT_REQUIRE_PG=1): a step that cannot run fails the suite.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, startPostgrestServer, type PostgrestServer, type TestDatabase } from '@creditkit/testing';
import { describeIfPostgres } from '@creditkit/testing/vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
const SUPABASE = join(root, 'node_modules/.bin/supabase');
const VERSION: string = JSON.parse(readFileSync(join(root, 'packages/creditkit/package.json'), 'utf8')).version;
const RELEASES = join(root, 'packages/creditkit/test/releases');
const PREVIOUS = readdirSync(RELEASES).sort().at(-1)!;
const TODAY = new Date().toISOString().slice(0, 10).replace(/-/g, '');

interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs a command without blocking the worker; never rejects. */
function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}, timeout = 600_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      { cwd, encoding: 'utf8', timeout, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, NO_COLOR: '1', ...env } },
      (error, stdout, stderr) => resolve({ status: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** `supabase db push` against a database URL, as a user without a linked project runs it. */
const push = (cwd: string, url: string) =>
  // --yes: the CLI asks before applying, and cannot ask when its output is not a terminal
  run(SUPABASE, ['db', 'push', '--db-url', url, '--yes'], cwd, { SUPABASE_TELEMETRY_DISABLED: '1' });

const write = (path: string, text: string) => {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, text);
};

// create-next-app's tsconfig.json, as it generates it
const NEXT_TSCONFIG = {
  compilerOptions: {
    target: 'ES2017',
    lib: ['dom', 'dom.iterable', 'esnext'],
    allowJs: true,
    skipLibCheck: true,
    strict: true,
    noEmit: true,
    esModuleInterop: true,
    module: 'esnext',
    moduleResolution: 'bundler',
    resolveJsonModule: true,
    isolatedModules: true,
    jsx: 'preserve',
    incremental: true,
    plugins: [{ name: 'next' }],
    paths: { '@/*': ['./*'] },
  },
  include: ['next-env.d.ts', '**/*.ts', '**/*.tsx', '.next/types/**/*.ts'],
  exclude: ['node_modules'],
};

// The plain-node program: every entry point of every kit package, then the story over node-postgres.
const MAIN_MJS = `
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { createCreditkit } from '@creditkit/core/server';
import { withCredits } from '@creditkit/core/http';

const entries = [];
for (const name of ['@creditkit/core', '@creditkit/react', '@creditkit/stripe', 'creditkit']) {
  const manifest = JSON.parse(readFileSync(new URL(\`./node_modules/\${name}/package.json\`, import.meta.url), 'utf8'));
  for (const subpath of Object.keys(manifest.exports)) {
    if (subpath === './package.json') continue;
    const specifier = subpath === '.' ? name : \`\${name}/\${subpath.slice(2)}\`;
    const module = await import(specifier);
    entries.push([specifier, Object.keys(module).length]);
  }
}

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
const creditkit = createCreditkit({ pg: pool });
const ada = process.env.ACCOUNT;
await creditkit.setPrice({ event: 'chat', creditsPerUnit: 2 });
const granted = await creditkit.grant({ accountId: ada, amount: 5, idempotencyKey: 'welcome' });
const consumed = await creditkit.consume({ accountId: ada, amount: 2, event: 'chat' });
const route = withCredits(creditkit, { account: () => ada, event: 'chat' }, (_request, credits) =>
  Response.json({ balance: credits.metered.balance }),
);
const call = async () => {
  const response = await route(new Request('http://app.local/api/chat', { method: 'POST' }));
  return [response.status, await response.json()];
};
const first = await call();
const second = await call();
const balance = await creditkit.balance({ accountId: ada });
await pool.end();
console.log(JSON.stringify({ entries, granted, consumed, first, second, balance: balance.balance }));
`;

// The app installed at the previous release, after `creditkit upgrade`: units through the SDK from
// the tarball. ADA had credits before the upgrade; GRACE goes on a plan with a limit in a unit.
const UNITS_MJS = `
import pg from 'pg';
import { createCreditkit, UnknownUnitError } from '@creditkit/core/server';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
const creditkit = createCreditkit({ pg: pool });
const ada = process.env.ADA;
const grace = process.env.GRACE;
const failure = (promise) =>
  promise.then(
    (value) => ({ resolved: value }),
    (error) => ({ name: error.name, code: error.code, sqlstate: error.sqlstate, unknownUnit: error instanceof UnknownUnitError }),
  );

const carried = { balance: (await creditkit.balance({ accountId: ada })).balance, check: await creditkit.check({ accountId: ada }) };
const unit = await creditkit.upsertUnit({ id: 'messages', name: 'Messages', kind: 'metered' });
await creditkit.upsertPlan({ id: 'chat', name: 'Chat', allowance: 10 });
const limit = await creditkit.setPlanLimit({ planId: 'chat', unit: 'messages', allowance: 20, period: 'month' });
await creditkit.setPlan({ accountId: grace, planId: 'chat' });
const grace20 = await creditkit.check({ accountId: grace, unit: 'messages', amount: 20 });
const graceReport = await creditkit.report({ accountId: grace, unit: 'messages', amount: 3, idempotencyKey: 'msg-1' });
const graceReplay = await creditkit.report({ accountId: grace, unit: 'messages', amount: 3, idempotencyKey: 'msg-1' });
const grace18 = await creditkit.check({ accountId: grace, unit: 'messages', amount: 18 });
const graceCredits = await creditkit.check({ accountId: grace });
await creditkit.grant({ accountId: ada, amount: 5, unit: 'messages' });
const adaReport = await creditkit.report({ accountId: ada, unit: 'messages', amount: 2 });
const adaBlocked = await creditkit.report({ accountId: ada, unit: 'messages', amount: 4 });
const unknownReport = await failure(creditkit.report({ accountId: ada, unit: 'nope', amount: 1 }));
const unknownCheck = await failure(creditkit.check({ accountId: ada, unit: 'nope' }));
const adaConsume = await creditkit.consume({ accountId: ada, amount: 2, event: 'chat' });
const after = {
  credits: (await creditkit.balance({ accountId: ada })).balance,
  messages: (await creditkit.balance({ accountId: ada, unit: 'messages' })).balance,
};
await pool.end();
console.log(JSON.stringify({
  carried, unit, limit, grace20, graceReport, graceReplay, grace18, graceCredits, adaReport, adaBlocked, unknownReport, unknownCheck,
  adaConsume, after,
}));
`;

// The same app, on to 0.3.0's auto top-up and notifications through the SDK from the tarball: an
// endpoint at a receiver of its own that verifies every delivery with verifyWebhook, a card saved
// through the webhook's events, a threshold crossed, auto top-up turned on while below it, and
// runWorker charging through a Stripe stand-in of the app's own; the payment_intent.succeeded event
// lands the credits.
const AUTOTOPUP_MJS = `
import { createServer } from 'node:http';
import pg from 'pg';
import { createCreditkit, runWorker, verifyWebhook } from '@creditkit/core/server';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
const creditkit = createCreditkit({ pg: pool });
const ada = process.env.ADA;
const received = [];
let secret;
const receiver = createServer(async (request, response) => {
  let body = '';
  for await (const chunk of request) body += chunk;
  try {
    const event = await verifyWebhook(body, request.headers, secret);
    received.push({ type: event.type, id: request.headers['webhook-id'], verified: true });
    response.writeHead(204).end();
  } catch (error) {
    received.push({ verified: false, code: error.code });
    response.writeHead(401).end();
  }
});
await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
const endpoint = await creditkit.upsertWebhookEndpoint({ id: 'app-events', url: \`http://127.0.0.1:\${receiver.address().port}/hooks\` });
secret = endpoint.secret;

let n = 0;
const event = (type, object) => ({ id: \`evt_app\${++n}\`, object: 'event', type, created: 1900000000 + n, livemode: false, data: { object } });
await creditkit.setAutoTopupTerms({ unit: 'credits', currency: 'usd', unitPrice: 1, minAmount: 50, maxAmount: 1000, cooldown: '0 seconds' });
await creditkit.stripeLinkCustomer({ accountId: ada, customerId: 'cus_AppAda' });
await creditkit.stripeApply({ event: event('payment_method.attached', { id: 'pm_AppVisa', object: 'payment_method', type: 'card', customer: 'cus_AppAda', card: { brand: 'visa', last4: '4242', exp_month: 1, exp_year: 2035 } }) });
await creditkit.stripeApply({ event: event('setup_intent.succeeded', { id: 'seti_App', object: 'setup_intent', status: 'succeeded', usage: 'off_session', customer: 'cus_AppAda', payment_method: 'pm_AppVisa' }) });

const before = (await creditkit.balance({ accountId: ada })).balance;
await creditkit.setAccountBalanceAlert({ accountId: ada, unit: 'credits', threshold: before - 1 });
const crossed = await creditkit.consume({ accountId: ada, amount: 2 });
const auto = await creditkit.setAutoTopup({ accountId: ada, unit: 'credits', enabled: true, threshold: before + 5, amount: 100 });

const charges = [];
const stripe = { paymentIntents: { async create(params, options) { charges.push({ params, key: options?.idempotencyKey }); return { id: 'pi_App' + charges.length, status: 'succeeded' }; } } };
const charged = await runWorker({ creditkit, stripe });
const paid = await creditkit.stripeApply({ event: event('payment_intent.succeeded', {
  id: 'pi_App1', object: 'payment_intent', amount: charges[0].params.amount, amount_received: charges[0].params.amount,
  currency: 'usd', customer: 'cus_AppAda', payment_method: 'pm_AppVisa', status: 'succeeded', metadata: charges[0].params.metadata }) });
const delivered = await runWorker({ creditkit, stripe });
const after = (await creditkit.balance({ accountId: ada })).balance;
const topups = await creditkit.topups({ accountId: ada });
receiver.close();
await pool.end();
console.log(JSON.stringify({ before, crossed, auto, charges, charged, paid, delivered, after, topups, received }));
`;

const LAYOUT_TSX = `import type { ReactNode } from 'react';
import { Providers } from './providers';

export const metadata = { title: 'An app with creditkit' };

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body>
        <Providers>{children}</Providers>
      </body>
    </html>
  );
}
`;

const PROVIDERS_TSX = `'use client';
import { useMemo, type ReactNode } from 'react';
import { createClient } from '@supabase/supabase-js';
import { createCreditkitClient } from '@creditkit/core';
import { CreditkitProvider } from '@creditkit/react';

export function Providers({ children }: { children: ReactNode }) {
  const client = useMemo(
    () => createCreditkitClient({ supabase: createClient(process.env.NEXT_PUBLIC_SUPABASE_URL!, process.env.NEXT_PUBLIC_SUPABASE_ANON_KEY!) }),
    [],
  );
  return (
    // a signed-in user's id in a real app; the build prerenders the balance in its loading state
    <CreditkitProvider client={client} accountId="00000000-0000-4000-8000-00000000a11c">
      {children}
    </CreditkitProvider>
  );
}
`;

const PAGE_TSX = `import { CreditsDisplay } from '@creditkit/react';

export default function Home() {
  return (
    <main>
      <h1>Images</h1>
      <CreditsDisplay price={{ amount: 2, unit: 'image' }} />
    </main>
  );
}
`;

const ROUTE_TS = `import pg from 'pg';
import { createCreditkit } from '@creditkit/core/server';
import { withCredits } from '@creditkit/core/http';

const creditkit = createCreditkit({ pg: new pg.Pool({ connectionString: process.env.DATABASE_URL }) });

export const POST = withCredits(
  creditkit,
  { account: (request) => request.headers.get('x-user-id'), event: 'image_gen' },
  async (_request, credits) => Response.json({ image: 'https://example.com/cat.png', balance: credits.metered!.balance }),
);
`;

/** A Stripe-Signature header for `payload` (what the stripe SDK's generateTestHeaderString makes). */
function sign(payload: string, secret: string): string {
  const t = Math.floor(Date.now() / 1000);
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${payload}`).digest('hex')}`;
}

describeIfPostgres('an app outside the monorepo, installed from the tarballs', () => {
  const work = mkdtempSync(join(tmpdir(), 'creditkit-outside-app-'));
  const app = join(work, 'app');
  const oldApp = join(work, 'old-app');
  let db: TestDatabase;
  let oldDb: TestDatabase;
  let tarballs: Record<string, string>;
  const npx = (cwd: string, ...args: string[]) => run('npx', ['--no-install', ...args], cwd);

  beforeAll(async () => {
    const packs = join(work, 'packs');
    const packed = await run(process.execPath, [join(root, 'scripts/pack.mjs'), '--out', packs], root);
    if (packed.status !== 0) throw new Error(`scripts/pack.mjs failed:\n${packed.stdout}\n${packed.stderr}`);
    tarballs = Object.fromEntries(
      readdirSync(packs).map((file) => {
        const manifest = JSON.parse(execFileSync('tar', ['-xzOf', join(packs, file), 'package/package.json'], { encoding: 'utf8' }));
        return [manifest.name as string, join(packs, file)];
      }),
    );
    [db, oldDb] = await Promise.all([
      // a database with what a Supabase project has (roles, auth schema, default privileges) and no kit
      createTestDatabase({ backend: 'postgres', migrate: false }),
      createTestDatabase({ backend: 'postgres', migrate: false }),
    ]);

    // the app: its package.json, the kit from the tarballs, everything else at its current release
    write(join(app, 'package.json'), JSON.stringify({ name: 'outside-app', private: true, type: 'module', scripts: { build: 'next build' } }, null, 2));
    const install = await run(
      'npm',
      [
        'install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error',
        ...Object.values(tarballs),
        'pg', '@supabase/supabase-js', '@electric-sql/pglite', 'stripe', 'next', 'react', 'react-dom', '@tanstack/react-query',
        'typescript', '@types/react', '@types/react-dom', '@types/node', '@types/pg',
      ],
      app,
    );
    if (install.status !== 0) throw new Error(`npm install failed:\n${install.stdout}\n${install.stderr}`);
    // its Supabase folder, with a migration of its own from today, already pushed
    write(join(app, 'supabase/config.toml'), 'project_id = "outside-app"\n\n[api]\nenabled = true\nschemas = ["public", "graphql_public"]\n');
    write(join(app, `supabase/migrations/${TODAY}090000_notes.sql`), 'create table public.notes (id bigint generated always as identity primary key, body text);\n');
    const first = await push(app, db.url!);
    if (first.status !== 0) throw new Error(`the app's own push failed:\n${first.stdout}\n${first.stderr}`);
  }, 900_000);

  afterAll(async () => {
    await Promise.allSettled([db?.drop(), oldDb?.drop()]);
    rmSync(work, { recursive: true, force: true });
  });

  it('npx creditkit init --with-stripe writes the kit after the app\'s newest migration, and the function', async () => {
    const r = await npx(app, 'creditkit', 'init', '--with-stripe');
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const names = readdirSync(join(app, 'supabase/migrations')).sort();
    expect(names[0]).toBe(`${TODAY}090000_notes.sql`);
    expect(names.slice(1).length).toBeGreaterThan(5);
    expect(names.slice(1).every((n) => /^\d{14}_creditkit_\w+\.sql$/.test(n) && n > names[0]!)).toBe(true);
    expect(existsSync(join(app, 'supabase/functions/stripe-webhook/index.ts'))).toBe(true);
    expect(readFileSync(join(app, 'supabase/config.toml'), 'utf8')).toContain('[functions.stripe-webhook]\nverify_jwt = false');
  });

  it('supabase db push applies it with no extra flag', async () => {
    const r = await push(app, db.url!);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toMatch(/Applying migration \d+_creditkit_setup\.sql/);
    expect(r.stdout + r.stderr).not.toContain('--include-all');
    const [row] = await db.query<{ version: string }>('select creditkit.version() as version');
    expect(row!.version).toBe(VERSION);
    // a second push finds nothing to do
    const again = await push(app, db.url!);
    expect(again.status).toBe(0);
    expect(again.stdout + again.stderr).toMatch(/up to date/i);
  });

  it('plain node imports every entry point of every package and runs grant -> consume -> blocked (402) over node-postgres', async () => {
    write(join(app, 'main.mjs'), MAIN_MJS);
    const account = await db.createUser('ada@example.com');
    const r = await run(process.execPath, ['main.mjs'], app, { DATABASE_URL: db.url!, ACCOUNT: account });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.entries.map(([specifier]: [string]) => specifier)).toEqual([
      '@creditkit/core', '@creditkit/core/server', '@creditkit/core/http', '@creditkit/core/embedded',
      '@creditkit/react', '@creditkit/react/keys', '@creditkit/stripe', '@creditkit/stripe/handler', 'creditkit',
    ]);
    expect(out.entries.every(([, exports]: [string, number]) => exports > 0)).toBe(true);
    expect(out.granted).toMatchObject({ balance: 5 });
    expect(out.consumed).toMatchObject({ allowed: true, balance: 3 });
    expect(out.first).toEqual([200, { balance: 1 }]);
    expect(out.second[0]).toBe(402);
    expect(out.second[1]).toMatchObject({ error: 'insufficient_credits', balance: 1, required: 2 });
    expect(out.balance).toBe(1);
  });

  it('next build passes with create-next-app\'s tsconfig, <CreditsDisplay/> on a page and a route handler on @creditkit/core/http', async () => {
    write(join(app, 'tsconfig.json'), `${JSON.stringify(NEXT_TSCONFIG, null, 2)}\n`);
    write(join(app, 'next.config.mjs'), 'export default {};\n');
    write(join(app, 'app/layout.tsx'), LAYOUT_TSX);
    write(join(app, 'app/providers.tsx'), PROVIDERS_TSX);
    write(join(app, 'app/page.tsx'), PAGE_TSX);
    write(join(app, 'app/api/images/route.ts'), ROUTE_TS);
    const r = await run(join(app, 'node_modules/.bin/next'), ['build'], app, {
      NEXT_TELEMETRY_DISABLED: '1',
      NEXT_PUBLIC_SUPABASE_URL: 'http://127.0.0.1:54321',
      NEXT_PUBLIC_SUPABASE_ANON_KEY: 'anon-key-for-the-build',
    });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('/api/images');
    // the prerendered page has the component's markup in it
    const html = readFileSync(join(app, '.next/server/app/index.html'), 'utf8');
    expect(html).toContain('<h1>Images</h1>');
    expect(html).toMatch(/<div[^>]*role="group"[^>]*data-state="loading"/);
  });

  it('the Edge Function init wrote runs under Deno and applies a signed Stripe event exactly once', async () => {
    await db.asService(`select creditkit_upsert_pack('starter', 'Starter', 100, 500, 'usd', 'price_starter')`);
    const account = await db.createUser('grace@example.com');
    let postgrest: PostgrestServer | undefined;
    let deno: ChildProcess | undefined;
    try {
      postgrest = await startPostgrestServer({ connectionString: db.url! });
      // the app's function as written; only @creditkit/stripe comes from the tarball instead of the registry
      const fn = join(work, 'function');
      cpSync(join(app, 'supabase/functions/stripe-webhook'), fn, { recursive: true });
      const config = JSON.parse(readFileSync(join(fn, 'deno.json'), 'utf8'));
      expect(config.imports['@creditkit/stripe/handler']).toBe(`npm:@creditkit/stripe@${VERSION}/handler`);
      config.imports['@creditkit/stripe/handler'] = join(app, 'node_modules/@creditkit/stripe/dist/handler.js');
      writeFileSync(join(fn, 'deno.json'), JSON.stringify(config));
      const secret = 'whsec_outside_app';
      const denoBin = (createRequire(join(root, 'package.json'))('deno/install_api.cjs') as { runInstall(): string }).runInstall();
      deno = spawn(denoBin, ['run', '--config', 'deno.json', '--allow-net', '--allow-env', '--allow-read', 'index.ts'], {
        cwd: fn,
        env: {
          ...process.env, NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1', DENO_SERVE_ADDRESS: 'tcp:127.0.0.1:0',
          STRIPE_SECRET_KEY: 'sk_test_outside', STRIPE_WEBHOOK_SECRET: secret,
          SUPABASE_URL: postgrest.url, SUPABASE_SERVICE_ROLE_KEY: postgrest.serviceRoleKey,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const url = await new Promise<string>((resolve, reject) => {
        let log = '';
        const onData = (chunk: Buffer) => {
          log += chunk.toString();
          const m = /Listening on (http:\/\/127\.0\.0\.1:\d+)\//.exec(log);
          if (m) resolve(m[1]!);
        };
        deno!.stdout!.on('data', onData);
        deno!.stderr!.on('data', onData);
        deno!.once('exit', (code) => reject(new Error(`deno exited (${code}):\n${log}`)));
      });
      const event = {
        id: 'evt_1OutsideAppCheckout00001', object: 'event', api_version: '2026-01-28.clover', created: Math.floor(Date.now() / 1000),
        livemode: false, pending_webhooks: 1, request: { id: null, idempotency_key: null }, type: 'checkout.session.completed',
        data: {
          object: {
            id: 'cs_test_outsideapp1', object: 'checkout.session', mode: 'payment', payment_status: 'paid', status: 'complete',
            amount_total: 500, currency: 'usd', customer: 'cus_outsideapp1', payment_intent: 'pi_outsideapp1',
            client_reference_id: account, metadata: { account_id: account, pack_id: 'starter' },
          },
        },
      };
      const payload = JSON.stringify(event);
      const deliver = (signature: string) =>
        fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': signature }, body: payload });
      expect((await deliver(sign(payload, 'whsec_someone_else'))).status).toBe(400);
      const first = await deliver(sign(payload, secret));
      expect(first.status).toBe(200);
      expect(await first.json()).toMatchObject({ status: 'applied', duplicate: false });
      const again = await deliver(sign(payload, secret));
      expect(await again.json()).toMatchObject({ status: 'applied', duplicate: true });
      const [row] = await db.query<{ balance: number }>('select balance from creditkit.accounts where id = $1', [account]);
      expect(row!.balance).toBe(100);
    } finally {
      deno?.kill('SIGTERM');
      await postgrest?.close();
    }
  });

  it('creditkit doctor passes on the database, and fails after a bad grant', async () => {
    const ok = await npx(app, 'creditkit', 'doctor', '--db-url', db.url!);
    expect(ok.status, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toContain('No problems found.');
    await db.exec(
      'grant execute on function public.creditkit_grant(uuid, bigint, text, timestamptz, integer, text, jsonb, bigint, timestamptz, text) to anon',
    );
    const bad = await npx(app, 'creditkit', 'doctor', '--db-url', db.url!);
    expect(bad.status).toBe(1);
    expect(bad.stdout).toMatch(/^FAIL {2}anon can execute public\.creditkit_grant\(/m);
    expect(bad.stdout).toContain('1 problem found.');
  });

  let ada: string;
  let grace: string;

  it(`creditkit upgrade in an app installed at ${PREVIOUS}: one new migration, pushed with no extra flag`, async () => {
    // the app as it stood at the previous release: its own migration, then the kit's files of then
    write(join(oldApp, 'package.json'), JSON.stringify({ name: 'old-app', private: true, type: 'module' }));
    write(join(oldApp, 'supabase/migrations/20261101000000_notes.sql'), 'create table public.notes (id int);\n');
    cpSync(join(RELEASES, PREVIOUS), join(oldApp, 'supabase/migrations'), { recursive: true });
    const pushed = await push(oldApp, oldDb.url!);
    expect(pushed.status, pushed.stdout + pushed.stderr).toBe(0);
    // its users spent credits at the old version: 50 granted, 8 consumed
    [ada, grace] = await Promise.all([oldDb.createUser('ada@example.com'), oldDb.createUser('grace@example.com')]);
    await oldDb.asService(`select * from creditkit_grant($1, 50, p_idempotency_key => 'welcome')`, [ada]);
    const [spent] = await oldDb.asService<{ allowed: boolean; balance: number }>(`select * from creditkit_consume($1, 8, 'chat')`, [ada]);
    expect(spent).toMatchObject({ allowed: true, balance: 42 });
    // it upgrades its creditkit packages (here: the tarballs) and has node-postgres for the SDK
    const install = await run(
      'npm',
      ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', tarballs.creditkit!, tarballs['@creditkit/core']!, 'pg'],
      oldApp,
    );
    expect(install.status, install.stderr).toBe(0);

    const before = await npx(oldApp, 'creditkit', 'status', '--db-url', oldDb.url!);
    expect(before.stdout).toMatch(new RegExp(`^database +creditkit ${PREVIOUS.replace(/\./g, '\\.')} `, 'm'));
    const beforeFiles = readdirSync(join(oldApp, 'supabase/migrations'));
    const r = await npx(oldApp, 'creditkit', 'upgrade');
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const added = readdirSync(join(oldApp, 'supabase/migrations')).filter((f) => !beforeFiles.includes(f));
    expect(added).toHaveLength(1);
    expect(added[0]).toMatch(/^\d{14}_creditkit_upgrade_[\d_]+_to_[\d_]+\.sql$/);

    const upgraded = await push(oldApp, oldDb.url!);
    expect(upgraded.status, upgraded.stdout + upgraded.stderr).toBe(0);
    const after = await npx(oldApp, 'creditkit', 'status', '--db-url', oldDb.url!);
    expect(after.stdout).toMatch(new RegExp(`^database +creditkit ${VERSION.replace(/\./g, '\\.')} `, 'm'));
    expect(after.stdout).toMatch(/^upgrade +none: the database is current$/m);
    const doctor = await npx(oldApp, 'creditkit', 'doctor', '--db-url', oldDb.url!);
    expect(doctor.status, doctor.stdout).toBe(0);
    expect((await npx(oldApp, 'creditkit', 'upgrade')).stdout).toContain('nothing to write');
  });

  it(`after the upgrade to ${VERSION} the app meters a unit through the SDK from the tarball, and the credits of ${PREVIOUS} carried over`, async () => {
    write(join(oldApp, 'units.mjs'), UNITS_MJS);
    const r = await run(process.execPath, ['units.mjs'], oldApp, { DATABASE_URL: oldDb.url!, ADA: ada, GRACE: grace });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    // the balance spent at the old version, in credits, the default unit
    expect(out.carried).toEqual({ balance: 42, check: { allowed: true, balance: 42 } });
    expect(out.unit).toEqual({ id: 'messages', name: 'Messages', kind: 'metered', createdAt: expect.any(String) });
    expect(out.limit).toMatchObject({ planId: 'chat', unit: 'messages', allowance: 20, period: 'month' });
    // grace's plan: 20 messages a month beside 10 credits
    expect(out.grace20).toEqual({ allowed: true, balance: 20 });
    expect(out.graceReport).toMatchObject({ allowed: true, balance: 17 });
    expect(out.graceReplay).toEqual(out.graceReport);
    expect(out.grace18).toEqual({ allowed: false, balance: 17 });
    expect(out.graceCredits).toEqual({ allowed: true, balance: 10 });
    // ada's 5 messages granted: 2 reported, then 4 more is blocked and spends nothing
    expect(out.adaReport).toMatchObject({ allowed: true, balance: 3 });
    expect(out.adaBlocked).toMatchObject({ allowed: false, balance: 3 });
    const unknown = { name: 'UnknownUnitError', code: 'unknown_unit', sqlstate: 'CK015', unknownUnit: true };
    expect(out.unknownReport).toEqual(unknown);
    expect(out.unknownCheck).toEqual(unknown);
    // the old credits are still spendable, and the unit's spending left them alone
    expect(out.adaConsume).toMatchObject({ allowed: true, balance: 40 });
    expect(out.after).toEqual({ credits: 40, messages: 3 });
    const doctor = await npx(oldApp, 'creditkit', 'doctor', '--db-url', oldDb.url!);
    expect(doctor.status, doctor.stdout).toBe(0);
  });
  it(`and then uses ${VERSION}'s auto top-up and signed notifications through the SDK from the tarball`, async () => {
    write(join(oldApp, 'autotopup.mjs'), AUTOTOPUP_MJS);
    const r = await run(process.execPath, ['autotopup.mjs'], oldApp, { DATABASE_URL: oldDb.url!, ADA: ada });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    // crossing its threshold, then auto top-up turned on while below: one charge of the saved card
    expect(out.crossed).toMatchObject({ allowed: true, balance: out.before - 2 });
    expect(out.auto).toMatchObject({ enabled: true, status: 'active', paymentMethod: { id: 'pm_AppVisa', brand: 'visa', last4: '4242' } });
    expect(out.charges).toEqual([{
      params: expect.objectContaining({ amount: 100, currency: 'usd', customer: 'cus_AppAda', payment_method: 'pm_AppVisa', off_session: true, confirm: true }),
      key: expect.stringMatching(/^creditkit-topup-\d+$/),
    }]);
    expect(out.charged.topups).toMatchObject({ claimed: 1, charged: 1 });
    expect(out.paid).toMatchObject({ status: 'applied', duplicate: false });
    expect(out.after).toBe(out.before - 2 + 100);
    expect(out.topups.map((t: { status: string }) => t.status)).toEqual(['succeeded']);
    // every event reached the app's receiver, each verified with the endpoint's secret: the crossing,
    // the top-up, and the balance back clear of the threshold
    expect(out.received.map((e: { type: string; verified: boolean }) => [e.type, e.verified]).sort()).toEqual([
      ['balance.low', true], ['balance.recovered', true], ['topup.succeeded', true],
    ]);
  });
});
