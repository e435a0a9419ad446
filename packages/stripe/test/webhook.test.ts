// The Stripe webhook in Node: createStripeWebhook runs the Edge Function's own handler
// (src/handler.ts, copied into supabase/functions/_shared/) with the SubtleCrypto verifier, applying events
// through the real creditkit SDK on embedded PGlite. Signed fixtures are applied; a bad signature
// (wrong secret, one byte changed, stale, missing) or a signed body that is not an event is a 400
// that writes nothing; duplicates, sequential or concurrent, have one effect; a failure to apply
// is a 500 (Stripe retries), and the retry applies it once.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEmbeddedCreditkit, type EmbeddedCreditkit } from '@creditkit/core/embedded';
import type { CreditkitServer } from '@creditkit/core/server';
import Stripe from 'stripe';
import { createCheckoutSession, createStripeWebhook, createWebhookHandler } from '../src/index.ts';
import {
  chargeRefunded,
  completed,
  event,
  invoicePaid,
  packCheckout,
  sign,
  subscriptionCheckout,
  type StripeEventFixture,
} from './support/events.ts';
import { pgliteTemplate, startFakeStripe } from '@creditkit/testing';

const SECRET = 'whsec_test_creditkit_node';
const stripe = new Stripe('sk_test_creditkit');

let kit: EmbeddedCreditkit;
let creditkit: CreditkitServer;
let webhook: (request: Request) => Promise<Response>;
const applyErrors: { error: unknown; eventId: string }[] = [];

beforeAll(async () => {
  kit = await createEmbeddedCreditkit({ loadDataDir: await pgliteTemplate() });
  creditkit = kit.creditkit;
  await creditkit.upsertPack({ id: 'starter', name: 'Starter', credits: 100, priceAmount: 500, stripePriceId: 'price_starter' });
  await creditkit.upsertPlan({ id: 'pro', name: 'Pro', allowance: 1000, period: 'month', priceAmount: 2000, stripePriceId: 'price_pro' });
  webhook = createStripeWebhook({ stripe, creditkit, secret: SECRET, onError: (error, eventId) => applyErrors.push({ error, eventId }) });
});

afterAll(async () => {
  await kit?.close();
});

function post(body: string, signature?: string | null, handler = webhook): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (signature) headers['stripe-signature'] = signature;
  return handler(new Request('http://localhost/functions/v1/stripe-webhook', { method: 'POST', headers, body }));
}

/** POSTs the event signed with the endpoint's secret; returns the status and JSON body. */
async function deliver(e: StripeEventFixture | string, handler = webhook): Promise<{ status: number; body: Record<string, unknown> }> {
  const payload = typeof e === 'string' ? e : JSON.stringify(e, null, 2);
  const res = await post(payload, sign(payload, SECRET), handler);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Everything the webhook can write. */
async function footprint() {
  const { rows: [row] } = await kit.db.query<Record<string, number>>(`
    select (select count(*)::int from creditkit.stripe_events) as events,
           (select count(*)::int from creditkit.ledger) as ledger,
           (select count(*)::int from creditkit.grants) as grants,
           (select count(*)::int from creditkit.stripe_payments) as payments,
           (select count(*)::int from creditkit.stripe_customers) as customers,
           (select count(*)::int from creditkit.accounts) as accounts`);
  return row!;
}

/** The account's balance; 0 for an account the webhook never created. */
const balanceOf = async (accountId: string) => {
  const [row] = (await kit.db.query<{ n: number }>('select count(*)::int as n from creditkit.accounts where id = $1', [accountId])).rows;
  return row!.n === 0 ? 0 : (await creditkit.balance({ accountId })).balance;
};
const ledgerOf = async (accountId: string) => (await creditkit.history({ accountId })).entries;
const inbox = async (id: string) =>
  (await kit.db.query<{ status: string; deliveries: number; account_id: string | null }>('select status, deliveries, account_id from creditkit.stripe_events where id = $1', [id])).rows[0];

const starter = (accountId: string, extra: Partial<Parameters<typeof packCheckout>[0]> = {}) =>
  packCheckout({ accountId, packId: 'starter', priceId: 'price_starter', amountTotal: 500, ...extra });

describe('signed events are applied', () => {
  it('a paid pack checkout: 200 after the grant is committed', async () => {
    const accountId = randomUUID();
    const e = starter(accountId, { customer: 'cus_nodewebhook1' });
    const { status, body } = await deliver(e);
    expect(status).toBe(200);
    expect(body).toEqual({ received: true, event: e.id, status: 'applied', duplicate: false, effect: 'granted 100 credits' });
    expect(await balanceOf(accountId)).toBe(100);
    const [entry] = await ledgerOf(accountId);
    expect(entry).toMatchObject({ kind: 'grant', amount: 100, idempotencyKey: `stripe:${e.data.object.payment_intent}` });
    expect(await creditkit.stripeCustomer({ accountId })).toBe('cus_nodewebhook1');
    expect(await inbox(e.id)).toEqual({ status: 'applied', deliveries: 1, account_id: accountId });
  });

  it('an event type creditkit does not use: 200, recorded as ignored, nothing granted', async () => {
    const before = await footprint();
    const e = event('customer.created', { id: 'cus_ignored1', object: 'customer', metadata: {} });
    const { status, body } = await deliver(e);
    expect(status).toBe(200);
    expect(body).toMatchObject({ status: 'ignored', duplicate: false });
    expect(await footprint()).toEqual({ ...before, events: before.events! + 1 });
    expect((await inbox(e.id))?.status).toBe('ignored');
  });

  it('a subscription: the checkout records the plan, the paid invoice grants the allowance', async () => {
    const accountId = randomUUID();
    const ids = { accountId, planId: 'pro', priceId: 'price_pro', customer: 'cus_nodewebhooksub', subscription: 'sub_nodewebhook1' };
    const checkout = await deliver(subscriptionCheckout(ids));
    expect(checkout).toMatchObject({ status: 200, body: { status: 'applied' } });
    expect(await balanceOf(accountId)).toBe(0);

    const start = Math.floor(Date.now() / 1000) - 60;
    const invoice = await deliver(invoicePaid({ ...ids, periodStart: start, periodEnd: start + 30 * 86400 }));
    expect(invoice).toMatchObject({ status: 200, body: { status: 'applied', duplicate: false } });
    expect(await balanceOf(accountId)).toBe(1000);
    const { rows: [plan] } = await kit.db.query<{ plan_id: string; status: string; stripe_subscription_id: string }>(
      'select plan_id, status, stripe_subscription_id from creditkit.subscriptions where account_id = $1', [accountId]);
    expect(plan).toEqual({ plan_id: 'pro', status: 'active', stripe_subscription_id: 'sub_nodewebhook1' });
  });

  it('a refund takes back the refunded share of the credits', async () => {
    const accountId = randomUUID();
    const paymentIntent = 'pi_noderefund1';
    await deliver(starter(accountId, { paymentIntent }));
    expect(await balanceOf(accountId)).toBe(100);
    const refund = await deliver(chargeRefunded({ paymentIntent, amount: 500, amountRefunded: 250 }));
    expect(refund).toMatchObject({ status: 200, body: { status: 'applied' } });
    expect(await balanceOf(accountId)).toBe(50);
  });

  it('an event for an unknown pack is parked as dead (200), and applies once replayed after the pack exists', async () => {
    const accountId = randomUUID();
    const e = packCheckout({ accountId, packId: 'later', priceId: 'price_later', amountTotal: 900 });
    const first = await deliver(e);
    expect(first).toMatchObject({ status: 200, body: { status: 'dead', duplicate: false } });
    expect(await balanceOf(accountId)).toBe(0);
    expect((await creditkit.stripeEvents({ status: 'dead' })).map((d) => d.id)).toContain(e.id);

    await creditkit.upsertPack({ id: 'later', name: 'Later', credits: 300, priceAmount: 900, stripePriceId: 'price_later' });
    expect(await creditkit.stripeReplay({ eventId: e.id })).toMatchObject({ status: 'applied', accountId });
    expect(await balanceOf(accountId)).toBe(300);
  });

  it('the metadata createCheckoutSession sends is what the webhook reads: checkout, pay, credits', async () => {
    const api = await startFakeStripe({ prices: { price_starter: { unitAmount: 500 } } });
    try {
      const accountId = randomUUID();
      const session = await createCheckoutSession({
        stripe: api.stripe, creditkit, accountId, packId: 'starter', successUrl: 'https://app.example/ok', cancelUrl: 'https://app.example/no',
      });
      const { status, body } = await deliver(completed(api.sessions.get(session.id)!));
      expect(status).toBe(200);
      expect(body).toMatchObject({ status: 'applied', effect: 'granted 100 credits' });
      expect(await balanceOf(accountId)).toBe(100);
    } finally {
      await api.close();
    }
  });
});

describe('bad signatures: 400 and nothing written', () => {
  const stale = Math.floor(Date.now() / 1000) - 301;
  const cases: [string, (payload: string) => { body: string; signature: string | null }, string][] = [
    ['signed with another secret', (p) => ({ body: p, signature: sign(p, 'whsec_not_the_endpoint_secret') }), 'invalid_signature'],
    ['body changed by one byte after signing', (p) => ({ body: p.replace('"amount_total": 500', '"amount_total": 900'), signature: sign(p, SECRET) }), 'invalid_signature'],
    ['timestamp older than 300 seconds', (p) => ({ body: p, signature: sign(p, SECRET, stale) }), 'invalid_signature'],
    ['no stripe-signature header', (p) => ({ body: p, signature: null }), 'missing_signature'],
    ['a header that is not a Stripe signature', (p) => ({ body: p, signature: 't=abc,v1=00' }), 'invalid_signature'],
    ['the signature of another body', (p) => ({ body: p, signature: sign(p.replace('500', '501'), SECRET) }), 'invalid_signature'],
  ];

  it.each(cases)('%s', async (_, tamper, error) => {
    const accountId = randomUUID();
    const payload = JSON.stringify(starter(accountId), null, 2);
    const { body, signature } = tamper(payload);
    expect(body.length).toBe(payload.length);
    const before = await footprint();

    const res = await post(body, signature);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error });
    expect(await footprint()).toEqual(before);
    expect(await balanceOf(accountId)).toBe(0);

    // the same payload, properly signed, is applied: the 400 came from the tampering alone
    const good = await post(payload, sign(payload, SECRET));
    expect(good.status).toBe(200);
    expect(await balanceOf(accountId)).toBe(100);
  });

  it('GET is 405', async () => {
    const res = await webhook(new Request('http://localhost/functions/v1/stripe-webhook'));
    expect(res.status).toBe(405);
  });
});

describe('signed bodies that are not events: 400 invalid_payload, nothing written', () => {
  // Only a holder of the signing secret can send these; retrying cannot fix them.
  it.each([
    ['malformed JSON', '{"id": "evt_test_malformed", "type": "checkout.session.completed", '],
    ['a JSON array', '[]'],
    ['JSON null', 'null'],
    ['an object without id and type', '{"object": "event"}'],
    ['a numeric id', '{"id": 1, "type": "checkout.session.completed", "created": 1767225600, "data": {"object": {}}}'],
    ['no created', '{"id": "evt_test_no_created", "type": "checkout.session.completed", "data": {"object": {}}}'],
    ['no data.object', '{"id": "evt_test_no_object", "type": "checkout.session.completed", "created": 1767225600}'],
    ['data.object not an object', '{"id": "evt_test_bad_object", "type": "checkout.session.completed", "created": 1767225600, "data": {"object": "cs_1"}}'],
    // what creditkit_stripe_apply would refuse (CK014) on every retry, so never a 500
    ['an id that is not evt_…', '{"id": "event-1", "type": "checkout.session.completed", "created": 1767225600, "data": {"object": {}}}'],
    ['an id with a space', '{"id": "evt_a b", "type": "checkout.session.completed", "created": 1767225600, "data": {"object": {}}}'],
    ['an empty type', '{"id": "evt_test_no_type", "type": "", "created": 1767225600, "data": {"object": {}}}'],
    ['created with a fraction', '{"id": "evt_test_fraction", "type": "checkout.session.completed", "created": 1767225600.5, "data": {"object": {}}}'],
    ['livemode a string', '{"id": "evt_test_livemode", "type": "checkout.session.completed", "created": 1767225600, "livemode": "no", "data": {"object": {}}}'],
  ])('%s', async (_, payload) => {
    const before = await footprint();
    const res = await post(payload, sign(payload, SECRET));
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: 'invalid_payload' });
    expect(await footprint()).toEqual(before);
  });

});

describe('duplicates have one effect', () => {
  it('the same event 10 times in a row: applied once, then duplicate', async () => {
    const accountId = randomUUID();
    const e = starter(accountId);
    const results = [];
    for (let i = 0; i < 10; i++) results.push(await deliver(e));
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(results.map((r) => r.body.duplicate)).toEqual([false, ...Array(9).fill(true)]);
    expect(results.map((r) => r.body.status)).toEqual(Array(10).fill('applied'));
    expect(await balanceOf(accountId)).toBe(100);
    expect(await ledgerOf(accountId)).toHaveLength(1);
    expect((await inbox(e.id))?.deliveries).toBe(10);
  });

  it('the same event 10 times at once: one effect', async () => {
    const accountId = randomUUID();
    const e = starter(accountId);
    const results = await Promise.all(Array.from({ length: 10 }, () => deliver(e)));
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(results.filter((r) => r.body.duplicate === false)).toHaveLength(1);
    expect(await balanceOf(accountId)).toBe(100);
    expect(await ledgerOf(accountId)).toHaveLength(1);
    expect((await inbox(e.id))?.deliveries).toBe(10);
  });

  it('completed and async_payment_succeeded for one payment grant once', async () => {
    const accountId = randomUUID();
    const paymentIntent = 'pi_nodetwoevents1';
    const sessionId = 'cs_test_nodetwoevents1';
    await deliver(starter(accountId, { paymentIntent, sessionId }));
    await deliver(starter(accountId, { paymentIntent, sessionId, type: 'checkout.session.async_payment_succeeded' }));
    expect(await balanceOf(accountId)).toBe(100);
    expect(await ledgerOf(accountId)).toHaveLength(1);
  });
});

describe('a failure to apply is a 500, and Stripe\'s retry applies it once', () => {
  it('the database is closed: 500, and the retry against a working database is applied', async () => {
    const broken = await createEmbeddedCreditkit({ loadDataDir: await pgliteTemplate() });
    await broken.close();
    const errors: string[] = [];
    const brokenWebhook = createStripeWebhook({ stripe, creditkit: broken.creditkit, secret: SECRET, onError: (_, id) => errors.push(id) });
    const accountId = randomUUID();
    const e = starter(accountId);

    const failed = await deliver(e, brokenWebhook);
    expect(failed).toEqual({ status: 500, body: { error: 'not_applied', event: e.id } });
    expect(errors).toEqual([e.id]);
    expect(await inbox(e.id)).toBeUndefined();

    const retried = await deliver(e);
    expect(retried).toMatchObject({ status: 200, body: { status: 'applied', duplicate: false } });
    expect(await balanceOf(accountId)).toBe(100);
  });

  it('createWebhookHandler with an apply that throws: 500 and onError is told the event id', async () => {
    const seen: string[] = [];
    const handler = createWebhookHandler({
      webhooks: stripe.webhooks,
      cryptoProvider: Stripe.createSubtleCryptoProvider(),
      secret: SECRET,
      apply: async () => {
        throw new Error('connection refused');
      },
      onError: (_, id) => seen.push(id),
    });
    const e = starter(randomUUID());
    const res = await deliver(e, handler);
    expect(res).toEqual({ status: 500, body: { error: 'not_applied', event: e.id } });
    expect(seen).toEqual([e.id]);
  });

  it('createWebhookHandler refuses to start without a secret', () => {
    expect(() => createStripeWebhook({ stripe, creditkit, secret: '' })).toThrow(/STRIPE_WEBHOOK_SECRET/);
  });
});

it('no delivery above failed to apply unexpectedly', () => {
  expect(applyErrors).toEqual([]);
});
