// The demo app over HTTP, without a browser: with Stripe keys it opens real Stripe Checkout and
// the customer portal through @creditkit/stripe (the Stripe SDK pointed at a local stand-in for
// Stripe's API), and the webhook route applies what Stripe then sends, signed with the endpoint's
// secret; the simulated checkout is off. And `pnpm demo` itself starts the app and prints its URL.
import { spawn } from 'node:child_process';
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeStripe, type FakeStripe } from '@creditkit/testing';
import { DEMO_USERS } from '../lib/demo-users.ts';
import { freePort, REPO_DIR, startApp, stopProcess, waitForHealth, type RunningApp } from './support/app.ts';

const ada = DEMO_USERS.find((u) => u.key === 'ada')!;
const SECRET = 'whsec_test_creditkit_web_app';
const signer = new Stripe('sk_test_signer');

describe('with STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET: real Stripe Checkout, portal and webhook', () => {
  let api: FakeStripe;
  let app: RunningApp;
  const asAda = { cookie: `creditkit_demo_user=${ada.key}`, 'content-type': 'application/json' };
  const post = (path: string, body: unknown, headers: Record<string, string> = asAda) =>
    fetch(`${app.url}${path}`, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body), redirect: 'manual' });
  const balance = async () => {
    const response = await post('/api/creditkit/rpc', { fn: 'creditkit_my_balance', args: {} });
    return ((await response.json()) as { data: Array<{ balance: number }> }).data[0]!.balance;
  };

  beforeAll(async () => {
    api = await startFakeStripe({ prices: { price_demo_starter_50: { unitAmount: 500 } } });
    app = await startApp({ STRIPE_SECRET_KEY: 'sk_test_creditkit_web', STRIPE_WEBHOOK_SECRET: SECRET, STRIPE_API_URL: api.url });
  });

  afterAll(async () => {
    await app?.stop();
    await api?.close();
  });

  it('POST /api/checkout opens a Stripe Checkout session for the signed-in user, with the account and pack in its metadata', async () => {
    const response = await post('/api/checkout', { packId: 'starter' });
    expect(response.status).toBe(200);
    const { url } = (await response.json()) as { url: string };
    expect(url).toMatch(/^https:\/\/checkout\.stripe\.com\/c\/pay\/cs_test_/);
    expect(api.requests.map((r) => `${r.method} ${r.path}`)).toEqual(['POST /v1/customers', 'POST /v1/checkout/sessions']);
    const [customer, session] = api.requests;
    expect(customer!.body).toEqual({ email: ada.email, metadata: { account_id: ada.id } });
    expect(session!.body).toMatchObject({
      mode: 'payment',
      client_reference_id: ada.id,
      line_items: [{ price: 'price_demo_starter_50', quantity: '1' }],
      metadata: { account_id: ada.id, pack_id: 'starter', price_id: 'price_demo_starter_50' },
      payment_intent_data: { metadata: { account_id: ada.id, pack_id: 'starter' } },
    });
    expect(String(session!.body.success_url)).toBe(`${app.url}/billing?checkout=success&session={CHECKOUT_SESSION_ID}`);
  });

  it('the webhook route applies the signed checkout.session.completed Stripe sends, once; a bad signature writes nothing', async () => {
    const [created] = [...api.sessions.values()];
    const event = {
      id: `evt_test_${Date.now()}`,
      object: 'event',
      api_version: '2026-01-28.clover',
      created: Math.floor(Date.now() / 1000),
      livemode: false,
      pending_webhooks: 1,
      request: { id: null, idempotency_key: null },
      type: 'checkout.session.completed',
      data: { object: { ...created, status: 'complete', payment_status: 'paid', payment_intent: `pi_test_${Date.now()}` } },
    };
    const payload = JSON.stringify(event);
    const before = await balance();
    const forged = await post('/api/stripe/webhook', payload, {
      'content-type': 'application/json',
      'stripe-signature': signer.webhooks.generateTestHeaderString({ payload, secret: 'whsec_someone_else' }),
    });
    expect(forged.status).toBe(400);
    expect(await forged.json()).toMatchObject({ error: 'invalid_signature' });
    expect(await balance()).toBe(before);

    for (const duplicate of [false, true]) {
      const signed = await post('/api/stripe/webhook', payload, {
        'content-type': 'application/json',
        'stripe-signature': signer.webhooks.generateTestHeaderString({ payload, secret: SECRET }),
      });
      expect(signed.status).toBe(200);
      expect(await signed.json()).toMatchObject({ status: 'applied', duplicate, effect: duplicate ? expect.anything() : 'granted 50 credits' });
    }
    expect(await balance()).toBe(before + 50);
  });

  it('POST /api/portal opens the Stripe customer portal for the stored customer; the simulated checkout is off', async () => {
    const response = await post('/api/portal', {});
    expect(response.status).toBe(200);
    expect(((await response.json()) as { url: string }).url).toMatch(/^https:\/\/billing\.stripe\.com\/p\/session\//);
    expect(api.posts('/v1/billing_portal/sessions').at(-1)!.body).toMatchObject({ return_url: `${app.url}/billing` });
    expect((await post('/api/checkout/simulated', 'pack=starter', { ...asAda, 'content-type': 'application/x-www-form-urlencoded' })).status).toBe(404);
    expect((await fetch(`${app.url}/checkout/simulated?pack=starter`, { headers: asAda })).status).toBe(404);
  });
});

describe('pnpm demo', () => {
  it('starts the app (next dev) with zero configuration and prints its URL; the sign-in page answers', async () => {
    const port = await freePort();
    const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port), CREDITKIT_WEB_DIST_DIR: '.next-test-dev' };
    for (const name of ['DATABASE_URL', 'STRIPE_SECRET_KEY', 'STRIPE_WEBHOOK_SECRET']) delete env[name];
    const child = spawn(process.execPath, ['apps/web/scripts/demo.mjs'], { cwd: REPO_DIR, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (c) => (out += String(c)));
    child.stderr!.on('data', (c) => (out += String(c)));
    try {
      await waitForHealth(`http://localhost:${port}/api/health`, child, () => out, 180_000);
      await expect.poll(() => out, { timeout: 10_000 }).toContain(`creditkit demo is running at http://localhost:${port}`);
      expect(out).toContain('database: embedded PGlite');
      expect(out).toContain('checkout: simulated Stripe Checkout');
      const page = await fetch(`http://localhost:${port}/sign-in`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('Ada Lovelace');
    } finally {
      await stopProcess(child);
    }
  }, 240_000);
});
