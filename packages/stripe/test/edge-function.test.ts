// The Edge Function itself (supabase/functions/stripe-webhook/index.ts) under real Deno, talking
// to real Postgres through the PostgREST stand-in (@creditkit/testing's postgrest.ts) with
// supabase-js and the service-role key — the path a deployed function takes. Deno comes from the
// `deno` npm package (root devDependency); its first run fetches stripe and supabase-js from the
// npm registry into Deno's cache, hence the long hook timeout (support/deno.ts starts it).
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, startPostgrestServer, type PostgrestServer, type TestDatabase } from '@creditkit/testing';
import { describeIfPostgres } from '@creditkit/testing/vitest';
import { closedPort, denoCheck, startFunction as startDeno, type EdgeFunction } from './support/deno.ts';
import { event, packCheckout, sign, type StripeEventFixture } from './support/events.ts';

const SECRET = 'whsec_test_creditkit_edge';

const startFunction = (env: Record<string, string>) => startDeno('stripe-webhook', env);

async function post(fn: EdgeFunction, body: string, signature: string | null) {
  const res = await fetch(fn.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(signature ? { 'stripe-signature': signature } : {}) },
    body,
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const deliver = (fn: EdgeFunction, e: StripeEventFixture) => {
  const payload = JSON.stringify(e);
  return post(fn, payload, sign(payload, SECRET));
};

describeIfPostgres('Stripe webhook Edge Function under Deno', () => {
  let db: TestDatabase;
  let postgrest: PostgrestServer;
  let brokenPostgrest: PostgrestServer;
  let fn: EdgeFunction;
  let noDataApi: EdgeFunction;
  let noDatabase: EdgeFunction;

  beforeAll(async () => {
    db = await createTestDatabase({ backend: 'postgres' });
    await db.asService(`select creditkit_upsert_pack('starter', 'Starter', 100, 500, 'usd', 'price_starter')`);
    postgrest = await startPostgrestServer({ connectionString: db.url! });
    // PostgREST is up but its database is not: every call is a 503 PGRST000
    const missing = new URL(db.url!);
    missing.pathname = `/${db.url!.split('/').pop()}_missing`;
    brokenPostgrest = await startPostgrestServer({ connectionString: missing.toString() });
    const secrets = { STRIPE_SECRET_KEY: 'sk_test_creditkit_edge', STRIPE_WEBHOOK_SECRET: SECRET };
    // the first start may download the npm packages; the others then find them cached
    fn = await startFunction({ ...secrets, SUPABASE_URL: postgrest.url, SUPABASE_SERVICE_ROLE_KEY: postgrest.serviceRoleKey });
    [noDataApi, noDatabase] = await Promise.all([
      startFunction({ ...secrets, SUPABASE_URL: `http://127.0.0.1:${await closedPort()}`, SUPABASE_SERVICE_ROLE_KEY: postgrest.serviceRoleKey }),
      startFunction({ ...secrets, SUPABASE_URL: brokenPostgrest.url, SUPABASE_SERVICE_ROLE_KEY: brokenPostgrest.serviceRoleKey }),
    ]);
  });

  afterAll(async () => {
    await Promise.allSettled([fn?.stop(), noDataApi?.stop(), noDatabase?.stop()]);
    await Promise.allSettled([postgrest?.close(), brokenPostgrest?.close()]);
    await db?.drop();
  });

  async function footprint() {
    const [row] = await db.query<Record<string, number>>(`
      select (select count(*)::int from creditkit.stripe_events) as events,
             (select count(*)::int from creditkit.ledger) as ledger,
             (select count(*)::int from creditkit.stripe_payments) as payments,
             (select count(*)::int from creditkit.stripe_customers) as customers,
             (select count(*)::int from creditkit.accounts) as accounts`);
    return row!;
  }
  const balanceOf = async (accountId: string) =>
    (await db.query<{ balance: number }>('select balance from creditkit.accounts where id = $1', [accountId]))[0]?.balance ?? 0;
  const grantsOf = (accountId: string) =>
    db.query<{ amount: number; idempotency_key: string }>(
      `select amount, idempotency_key from creditkit.ledger where account_id = $1 and kind = 'grant'`, [accountId]);
  const inbox = async (id: string) =>
    (await db.query<{ status: string; deliveries: number }>('select status, deliveries from creditkit.stripe_events where id = $1', [id]))[0];
  const starter = (accountId: string, extra: Partial<Parameters<typeof packCheckout>[0]> = {}) =>
    packCheckout({ accountId, packId: 'starter', priceId: 'price_starter', amountTotal: 500, ...extra });

  it('index.ts and the shared handler type-check under Deno against the real stripe and supabase-js types', () => {
    const check = denoCheck('stripe-webhook');
    expect(check.status, check.stderr).toBe(0);
  });

  it('a paid pack checkout: 200, and the grant is in Postgres', async () => {
    const accountId = randomUUID();
    const e = starter(accountId, { customer: 'cus_edgefunction1', paymentIntent: 'pi_edgefunction1' });
    const res = await deliver(fn, e);
    expect(res, fn.output()).toEqual({
      status: 200,
      body: { received: true, event: e.id, status: 'applied', duplicate: false, effect: 'granted 100 credits' },
    });
    expect(await balanceOf(accountId)).toBe(100);
    expect(await grantsOf(accountId)).toEqual([{ amount: 100, idempotency_key: 'stripe:pi_edgefunction1' }]);
    expect((await db.query('select customer_id from creditkit.stripe_customers where account_id = $1', [accountId]))[0]).toEqual({
      customer_id: 'cus_edgefunction1',
    });
    expect(await inbox(e.id)).toEqual({ status: 'applied', deliveries: 1 });
  });

  it('an event type creditkit does not use: 200 ignored, no credits', async () => {
    const before = await footprint();
    const e = event('customer.created', { id: 'cus_edgeignored1', object: 'customer', metadata: {} });
    expect(await deliver(fn, e)).toMatchObject({ status: 200, body: { status: 'ignored' } });
    expect(await footprint()).toEqual({ ...before, events: before.events! + 1 });
  });

  it.each<[string, (payload: string) => { body: string; signature: string | null }, string]>([
    ['wrong secret', (p) => ({ body: p, signature: sign(p, 'whsec_someone_else') }), 'invalid_signature'],
    ['body changed by one byte', (p) => ({ body: p.replace('"amount_total":500', '"amount_total":900'), signature: sign(p, SECRET) }), 'invalid_signature'],
    ['stale timestamp (301 s old)', (p) => ({ body: p, signature: sign(p, SECRET, Math.floor(Date.now() / 1000) - 301) }), 'invalid_signature'],
    ['missing stripe-signature', (p) => ({ body: p, signature: null }), 'missing_signature'],
    ['malformed JSON, validly signed', (p) => ({ body: p.slice(0, -1), signature: sign(p.slice(0, -1), SECRET) }), 'invalid_payload'],
  ])('%s: 400 and nothing written', async (_, tamper, error) => {
    const accountId = randomUUID();
    const payload = JSON.stringify(starter(accountId));
    const { body, signature } = tamper(payload);
    const before = await footprint();

    const res = await post(fn, body, signature);
    expect(res.status, fn.output()).toBe(400);
    expect(res.body).toMatchObject({ error });
    expect(await footprint()).toEqual(before);

    // the untouched payload, properly signed, is applied: the 400 came from the tampering
    expect((await post(fn, payload, sign(payload, SECRET))).status).toBe(200);
    expect(await balanceOf(accountId)).toBe(100);
  });

  it('the same event 10 times in a row: one grant, then duplicates', async () => {
    const accountId = randomUUID();
    const e = starter(accountId);
    const results = [];
    for (let i = 0; i < 10; i++) results.push(await deliver(fn, e));
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(results.map((r) => r.body.duplicate)).toEqual([false, ...Array(9).fill(true)]);
    expect(await grantsOf(accountId)).toHaveLength(1);
    expect(await balanceOf(accountId)).toBe(100);
    expect(await inbox(e.id)).toEqual({ status: 'applied', deliveries: 10 });
  });

  it('the same event 10 times at once (10 PostgREST transactions racing): one grant', async () => {
    const accountId = randomUUID();
    const e = starter(accountId);
    const results = await Promise.all(Array.from({ length: 10 }, () => deliver(fn, e)));
    expect(results.map((r) => r.status), fn.output()).toEqual(Array(10).fill(200));
    expect(results.filter((r) => r.body.duplicate === false)).toHaveLength(1);
    expect(await grantsOf(accountId)).toHaveLength(1);
    expect(await balanceOf(accountId)).toBe(100);
    expect(await inbox(e.id)).toEqual({ status: 'applied', deliveries: 10 });
  });

  it('the Data API unreachable: 500, nothing written; Stripe\'s retry to the working function applies it once', async () => {
    const accountId = randomUUID();
    const e = starter(accountId);
    const before = await footprint();
    expect(await deliver(noDataApi, e)).toEqual({ status: 500, body: { error: 'not_applied', event: e.id } });
    expect(await footprint()).toEqual(before);

    expect(await deliver(fn, e)).toMatchObject({ status: 200, body: { status: 'applied', duplicate: false } });
    expect(await balanceOf(accountId)).toBe(100);
  });

  it('PostgREST up but Postgres unavailable (503 PGRST000): 500, nothing written', async () => {
    const accountId = randomUUID();
    const e = starter(accountId);
    const before = await footprint();
    expect(await deliver(noDatabase, e)).toEqual({ status: 500, body: { error: 'not_applied', event: e.id } });
    expect(noDatabase.output()).toContain('PGRST000');
    expect(await footprint()).toEqual(before);
    expect(await inbox(e.id)).toBeUndefined();
  });
});
