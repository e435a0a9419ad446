// Stripe deliveries racing on real Postgres: each creditkit_stripe_apply in its own transaction
// on its own pooled connection, as the webhook (through PostgREST) runs it. Stripe retries an
// event it thinks failed while the first delivery may still be running, and sends the events
// of one payment or one customer within the same second, so these races happen in production.
// Evidence comes from the tables: one inbox row, one grant, the books balanced.
import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@creditkit/testing';
import { describeIfPostgres } from '@creditkit/testing/vitest';
import {
  SECOND, at, creditkit, expectConsistent, newAccountId, newGauge, pooledRunner, rpc, settle, warmPool,
  type Creditkit, type Gauge, type Runner,
} from './support.ts';
import {
  PACK, PLANS, chargeRefunded, checkoutCompleted, createCatalogue, disputeFundsWithdrawn, invoicePaid, packPurchase,
  redeliver, subscriptionCheckoutCompleted, subscriptionEvent, subscriptionFixture, unix, type StripeEvent,
} from './stripe-fixtures.ts';

const CONNECTIONS = 20;
const T = unix(0);
const DAY_S = 86400;
const MONTH_S = 30 * DAY_S;
const NOW = at(10 * DAY_S * SECOND); // within the first period: its allowance is live
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

interface ApplyResult { event_id: string; status: string; effect: string | null; account_id: string | null; duplicate: boolean }

describeIfPostgres('stripe concurrency', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let ck: Creditkit;
  beforeAll(async () => {
    db = await createTestDatabase({ backend: 'postgres' });
    pool = db.pool({ max: CONNECTIONS });
    await warmPool(pool, CONNECTIONS);
    ck = creditkit(pooledRunner(pool));
    await createCatalogue(ck);
  });
  afterAll(() => db?.drop());

  /** Delivers each event on its own connection, all at once; returns the answers or SQLSTATEs. */
  async function race(events: StripeEvent[], gauge: Gauge = newGauge()) {
    const run: Runner = pooledRunner(pool, 'service_role', { role: 'service_role' }, gauge);
    return Promise.all(events.map(async (e) => {
      const { sql, params } = rpc('creditkit_stripe_apply', { p_event: e, p_now: NOW });
      const s = await settle(run<ApplyResult>(sql, params));
      return s.ok ? s.value[0]! : s.code;
    }));
  }

  async function ledger(account: string): Promise<Array<[string, number]>> {
    const rows = await db.query<{ kind: string; amount: number }>(
      'select kind, amount from creditkit.ledger where account_id = $1 order by id', [account]);
    return rows.map((r) => [r.kind, r.amount]);
  }

  it('the same pack checkout delivered 10 times at once: one grant, one answer that applied it, 9 duplicates', async () => {
    const p = packPurchase({ account: newAccountId(), packId: PACK.id, priceId: PACK.price, amount: PACK.amount });
    const e = checkoutCompleted(p, { created: T });
    const gauge = newGauge();
    const answers = await race(range(10).map(() => redeliver(e)), gauge);
    expect(gauge.max).toBeGreaterThan(1);
    expect(answers.filter((a) => typeof a === 'string')).toEqual([]);
    const results = answers as ApplyResult[];
    expect(results.filter((a) => !a.duplicate)).toHaveLength(1);
    expect(results.map((a) => [a.event_id, a.status, a.account_id])).toEqual(range(10).map(() => [e.id, 'applied', p.account]));
    expect(await ledger(p.account)).toEqual([['grant', 100]]);
    expect(await db.query('select deliveries from creditkit.stripe_events where id = $1', [e.id])).toEqual([{ deliveries: 10 }]);
    expect(await db.query('select count(*)::int as n from creditkit.stripe_payments where payment_intent = $1', [p.paymentIntent])).toEqual([{ n: 1 }]);
    await expectConsistent(db, [p.account]);
  });

  it('the same invoice.paid delivered 10 times at once: one allowance', async () => {
    const account = newAccountId();
    const s = subscriptionFixture({ account, planId: PLANS.basic.id, priceId: PLANS.basic.price, start: T });
    const e = invoicePaid(s, { created: T + 2, billingReason: 'subscription_create', periodStart: T, periodEnd: T + MONTH_S });
    const answers = await race(range(10).map(() => redeliver(e)));
    expect(answers.filter((a) => typeof a === 'string')).toEqual([]);
    expect((answers as ApplyResult[]).filter((a) => !a.duplicate)).toHaveLength(1);
    expect(await ledger(account)).toEqual([['grant', 100]]);
    expect(await db.query('select count(*)::int as n from creditkit.stripe_invoices where subscription_id = $1', [s.subscription])).toEqual([{ n: 1 }]);
    await expectConsistent(db, [account]);
  });

  it('a refund and a dispute of one payment at once, 20 payments: each ends disputed with everything taken back, once', async () => {
    const payments = range(20).map(() => packPurchase({ account: newAccountId(), packId: PACK.id, priceId: PACK.price, amount: PACK.amount }));
    for (const p of payments) await race([checkoutCompleted(p, { created: T })]);
    const answers = await race(payments.flatMap((p) => [
      chargeRefunded(p, { created: T + DAY_S, amountRefunded: 300 }),
      disputeFundsWithdrawn(p, { created: T + 2 * DAY_S }),
    ]));
    expect(answers.filter((a) => typeof a === 'string')).toEqual([]);
    const rows = await db.query<Record<string, unknown>>(
      `select p.account_id, p.amount_refunded, p.disputed, p.clawed_back, p.shortfall, p.taken_from_grant, a.balance
         from creditkit.stripe_payments p join creditkit.accounts a on a.id = p.account_id
        where p.payment_intent = any($1)`, [payments.map((p) => p.paymentIntent)]);
    expect(rows).toHaveLength(20);
    for (const r of rows) {
      expect(r).toEqual({
        account_id: expect.any(String), amount_refunded: 300, disputed: true, clawed_back: 100, shortfall: 0, taken_from_grant: 100, balance: 0,
      });
    }
    // whichever came first, the ledger took back exactly 100, in one or two rows
    for (const p of payments) {
      const rows = await ledger(p.account);
      expect(rows[0]).toEqual(['grant', 100]);
      expect(rows.slice(1).every(([kind]) => kind === 'adjust')).toBe(true);
      expect(rows.slice(1).reduce((sum, [, amount]) => sum + amount, 0)).toBe(-100);
    }
    await expectConsistent(db, payments.map((p) => p.account));
  });

  it('checkout, refund and dispute of one payment all at once: the same end state as in order', async () => {
    const payments = range(15).map(() => packPurchase({ account: newAccountId(), packId: PACK.id, priceId: PACK.price, amount: PACK.amount }));
    const answers = await race(payments.flatMap((p) => [
      checkoutCompleted(p, { created: T }),
      chargeRefunded(p, { created: T + DAY_S, amountRefunded: 450 }),
      disputeFundsWithdrawn(p, { created: T + 2 * DAY_S }),
    ]));
    expect(answers.filter((a) => typeof a === 'string')).toEqual([]);
    const balances = await db.query<{ balance: number; clawed_back: number; granted: boolean }>(
      `select a.balance, p.clawed_back, p.grant_id is not null as granted
         from creditkit.stripe_payments p join creditkit.accounts a on a.id = p.account_id
        where p.payment_intent = any($1)`, [payments.map((p) => p.paymentIntent)]);
    expect(balances).toEqual(range(15).map(() => ({ balance: 0, clawed_back: 100, granted: true })));
    await expectConsistent(db, payments.map((p) => p.account));
  });

  it('a new customer buying a pack while their subscription starts: no deadlock, every event applied', async () => {
    // The pack path and the subscription path both lock the account and link the same customer.
    const rounds = range(15).map(() => {
      const account = newAccountId();
      const p = packPurchase({ account, packId: PACK.id, priceId: PACK.price, amount: PACK.amount });
      const s = { ...subscriptionFixture({ account, planId: PLANS.basic.id, priceId: PLANS.basic.price, start: T }), customer: p.customer };
      return {
        account, customer: p.customer,
        events: [
          checkoutCompleted(p, { created: T }),
          subscriptionCheckoutCompleted(s, { created: T + 5 }),
          invoicePaid(s, { created: T + 2, billingReason: 'subscription_create', periodStart: T, periodEnd: T + MONTH_S }),
          subscriptionEvent('created', s, { created: T + 1, status: 'active', periodStart: T, periodEnd: T + MONTH_S }),
        ],
      };
    });
    const answers = await race(rounds.flatMap((r) => r.events));
    expect(answers.filter((a) => typeof a === 'string')).toEqual([]);
    expect((answers as ApplyResult[]).every((a) => a.status === 'applied')).toBe(true);
    for (const r of rounds) {
      expect((await ledger(r.account)).map(([, amount]) => amount).sort()).toEqual([100, 100]);
      expect(await db.query('select customer_id from creditkit.stripe_customers where account_id = $1', [r.account])).toEqual([{ customer_id: r.customer }]);
    }
    await expectConsistent(db, rounds.map((r) => r.account));
  });
});
