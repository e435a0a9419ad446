// Auto top-up end to end, as an app runs it: the card is saved through Checkout in setup mode
// (createSetupSession, then the events the Stripe stand-in sends for the completed setup), a debit
// crosses the threshold, runWorker charges the card with the real Stripe SDK against the stand-in
// (@creditkit/testing's fake-stripe.ts, which answers like Stripe's test cards and honours
// idempotency keys), and the credits land only from the payment_intent.succeeded event applied
// through creditkit_stripe_apply. On embedded PGlite and on real Postgres (node-postgres).
//
// What each test shows: one crossing is one charge; a worker that dies after Stripe charged makes
// no second charge when the next worker claims the top-up again; two workers at once charge once;
// replayed and shuffled webhooks grant once per PaymentIntent; three declines turn auto top-up off;
// authentication_required pauses it.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createEmbeddedCreditkit } from '@creditkit/core/embedded';
import { createCreditkit, runWorker, type CreditkitServer } from '@creditkit/core/server';
import { createTestDatabase, pgliteTemplate, startFakeStripe, type FakeStripe, type TestDatabase } from '@creditkit/testing';
import { describeIfPostgres } from '@creditkit/testing/vitest';
import { createSetupSession } from '../src/index.ts';

interface Backend {
  creditkit: CreditkitServer;
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

async function pgliteBackend(): Promise<Backend> {
  const kit = await createEmbeddedCreditkit({ loadDataDir: await pgliteTemplate() });
  return { creditkit: kit.creditkit, query: async (sql, params) => (await kit.db.query(sql, params)).rows as never, close: () => kit.close() };
}

async function postgresBackend(): Promise<Backend> {
  const db: TestDatabase = await createTestDatabase({ backend: 'postgres' });
  const pool = new pg.Pool({ connectionString: db.url, max: 6 });
  pool.on('error', () => {});
  return {
    creditkit: createCreditkit({ pg: pool }),
    query: db.query,
    async close() {
      await pool.end();
      await db.drop();
    },
  };
}

const URLS = { successUrl: 'https://app.example/billing?saved=1', cancelUrl: 'https://app.example/billing' };

function suite(make: () => Promise<Backend>) {
  let b: Backend;
  let ck: CreditkitServer;
  let api: FakeStripe;
  /** The webhook: every event the stand-in sent, applied as the webhook handler would. */
  const deliver = async (...events: unknown[]) => {
    const out = [];
    for (const event of events) out.push(await ck.stripeApply({ event: event as never }));
    return out;
  };

  beforeAll(async () => {
    b = await make();
    ck = b.creditkit;
    api = await startFakeStripe();
    await ck.setAutoTopupTerms({ unit: 'credits', currency: 'usd', unitPrice: 1, minAmount: 100, maxAmount: 10_000, cooldown: '0 seconds' });
  });
  afterAll(async () => {
    await api?.close();
    await b?.close();
  });
  beforeEach(async () => {
    api.reset();
    // each test claims only its own top-ups
    await b.query(`update creditkit.topups set status = 'canceled' where status in ('pending', 'charging')`);
  });

  /** An account with `balance` credits and `card` saved through Checkout in setup mode. */
  async function customer(balance: number, card = 'pm_card_visa') {
    const accountId = randomUUID();
    await ck.grant({ accountId, amount: balance });
    const session = await createSetupSession({ stripe: api.stripe, creditkit: ck, accountId, ...URLS });
    await deliver(...api.completeSetup(session.id, card));
    await ck.setAutoTopup({ accountId, unit: 'credits', enabled: true, threshold: 100, amount: 500 });
    return { accountId, customerId: (await ck.stripeCustomer({ accountId }))! };
  }
  const balanceOf = async (accountId: string) => (await ck.balance({ accountId })).balance;
  const topupsOf = (accountId: string) => ck.topups({ accountId });
  /** The events Stripe sends for every PaymentIntent it created for this customer. */
  const paymentEvents = (customerId: string) =>
    [...api.paymentIntents.values()].filter((p) => p.customer === customerId).map((p) => api.paymentIntentEvent(String(p.id)));

  it('a crossing is one charge of the saved card; the credits land from payment_intent.succeeded, once, whatever the delivery order', async () => {
    const { accountId, customerId } = await customer(150);
    await ck.consume({ accountId, amount: 60 });   // 90: crosses 100
    await ck.consume({ accountId, amount: 10 });   // 80: still below, no second top-up
    const report = await runWorker({ creditkit: ck, stripe: api.stripe });
    expect(report.topups).toMatchObject({ claimed: 1, charged: 1 });
    expect(api.chargeCount({ customer: customerId })).toBe(1);
    const [charge] = api.createdPaymentIntents.filter((p) => p.customer === customerId);
    expect(charge).toMatchObject({ idempotencyKey: expect.stringMatching(/^creditkit-topup-\d+$/) });
    const [intent] = [...api.paymentIntents.values()].filter((p) => p.customer === customerId);
    expect(intent).toMatchObject({ amount: 500, currency: 'usd', status: 'succeeded', metadata: { creditkit_account_id: accountId } });
    expect(api.posts('/v1/payment_intents').at(-1)!.body).toMatchObject({ off_session: 'true', confirm: 'true', customer: customerId });
    expect(await balanceOf(accountId)).toBe(80);   // nothing until the webhook
    const [succeeded] = paymentEvents(customerId);
    // delivered, redelivered, and an out-of-order copy under a new event id
    const results = await deliver(succeeded, succeeded, { ...succeeded, id: `evt_${randomUUID().replace(/-/g, '')}` });
    expect(results.map((r) => r.duplicate)).toEqual([false, true, false]);
    expect(await balanceOf(accountId)).toBe(580);
    expect((await topupsOf(accountId)).map((t) => t.status)).toEqual(['succeeded']);
    expect((await ck.autoTopup({ accountId })).status).toBe('active');
  });

  it('a worker that dies after Stripe charged: the next worker claims the same top-up and Stripe answers the first charge, no second one', async () => {
    const { accountId, customerId } = await customer(100);
    await ck.consume({ accountId, amount: 1 });
    // the first worker claims and charges, then dies before it records anything
    const [claim] = await ck.claimTopups({ lease: '1 second' });
    await api.stripe.paymentIntents.create(
      { amount: claim!.chargeAmount, currency: claim!.currency, customer: claim!.customerId, payment_method: claim!.paymentMethod,
        off_session: true, confirm: true, metadata: claim!.metadata },
      { idempotencyKey: claim!.idempotencyKey });
    expect(api.chargeCount({ customer: customerId })).toBe(1);
    // the lease runs out; the next worker's run
    const report = await runWorker({ creditkit: ck, stripe: api.stripe, now: new Date(Date.now() + 5_000) });
    expect(report.topups).toMatchObject({ claimed: 1, charged: 1 });
    expect(api.chargeCount({ customer: customerId })).toBe(1);   // Stripe replayed the first answer
    expect(api.requests.filter((r) => r.path === '/v1/payment_intents').map((r) => r.replayed)).toEqual([false, true]);
    await deliver(...paymentEvents(customerId));
    expect(await balanceOf(accountId)).toBe(599);
  });

  it('two workers at once charge once', async () => {
    const { accountId, customerId } = await customer(100);
    await ck.consume({ accountId, amount: 1 });
    const reports = await Promise.all([runWorker({ creditkit: ck, stripe: api.stripe }), runWorker({ creditkit: ck, stripe: api.stripe })]);
    expect(reports.map((r) => r.topups.claimed).sort()).toEqual([0, 1]);
    expect(api.chargeCount({ customer: customerId })).toBe(1);
  });

  it('three declines in a row turn auto top-up off; the customer sees why', async () => {
    const { accountId, customerId } = await customer(100, 'pm_card_chargeDeclined');
    await ck.consume({ accountId, amount: 1 });
    for (let n = 1; n <= 3; n++) {
      const report = await runWorker({ creditkit: ck, stripe: api.stripe });
      expect(report.topups, `run ${n}`).toMatchObject({ claimed: 1, declined: 1 });
      await deliver(...paymentEvents(customerId).slice(-1));   // payment_intent.payment_failed changes nothing more
    }
    expect((await runWorker({ creditkit: ck, stripe: api.stripe })).topups.claimed).toBe(0);
    expect(await ck.autoTopup({ accountId })).toMatchObject({ status: 'disabled', statusReason: 'failures', failures: 3 });
    expect((await topupsOf(accountId)).map((t) => [t.status, t.failureCode])).toEqual([
      ['failed', 'generic_decline'], ['failed', 'generic_decline'], ['failed', 'generic_decline'],
    ]);
    expect(await balanceOf(accountId)).toBe(99);
  });

  it('authentication_required pauses auto top-up with a link; nothing more is charged until it is paid', async () => {
    const { accountId, customerId } = await customer(100, 'pm_card_authenticationRequired');
    await ck.consume({ accountId, amount: 1 });
    const report = await runWorker({ creditkit: ck, stripe: api.stripe });
    expect(report.topups).toMatchObject({ claimed: 1, actionRequired: 1 });
    expect(await ck.autoTopup({ accountId })).toMatchObject({ status: 'action_required', statusReason: 'authentication_required' });
    await ck.consume({ accountId, amount: 1 });
    expect((await runWorker({ creditkit: ck, stripe: api.stripe })).topups.claimed).toBe(0);
    expect(api.chargeCount({ customer: customerId })).toBe(1);
  });
}

describe('auto top-up end to end [pglite]', () => suite(pgliteBackend));
describeIfPostgres('auto top-up end to end', () => suite(postgresBackend));
