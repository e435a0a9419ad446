// Stripe: creditkit_stripe_apply driven by realistic webhook events (stripe-fixtures.ts), on
// PGlite and on real Postgres. Each scenario has its own accounts and Stripe ids on one database
// per backend, delivers events the way Stripe does (at least once, in no guaranteed order), and
// checks the effect from the tables, not only from the answer: the ledger, the buckets, the
// payment and invoice records, the subscription, and the ledger invariants after every scenario
// (balance = sum(ledger) = sum(buckets), never below zero).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type Row, type TestDatabase } from '@creditkit/testing';
import { describeEachBackend } from '@creditkit/testing/vitest';
import {
  GRANTS, MAX_CREDITS, SECOND, at, creditkit, expectConsistent, ledgerProblems, microsSql, newAccountId, outcome, rpc, runAs, snapshotBooks,
  type Creditkit,
} from './support.ts';
import {
  asyncPaymentFailed, asyncPaymentSucceeded, chargeRefunded, checkoutCompleted, disputeFundsReinstated,
  disputeFundsWithdrawn, invoicePaid, otherEvent, packPurchase, redeliver, stripeEvent, stripeId,
  subscriptionCheckoutCompleted, subscriptionEvent, subscriptionFixture, unix, createCatalogue, PACK, PLANS,
  type InvoiceShape, type JsonObject, type PackPurchase, type StripeEvent, type SubscriptionFixture,
} from './stripe-fixtures.ts';

export interface ApplyResult { event_id: string; status: string; effect: string | null; account_id: string | null; duplicate: boolean }

/** Unix seconds at EPOCH: scenario times are offsets from it. */
const T = unix(0);
const MIN = 60;
const HOUR_S = 3600;
const DAY_S = 86400;
/** A month of Stripe periods (30 days keeps the arithmetic visible). */
const MONTH_S = 30 * DAY_S;
/** The grace an allowance outlives its Stripe period by (creditkit.stripe_allowance_grace). */
const GRACE_S = 3 * DAY_S;

/** The timestamptz literal of a unix time. */
export const atUnix = (sec: number): string => at((sec - T) * SECOND);

describeEachBackend('stripe', (backend) => {
  let db: TestDatabase;
  let ck: Creditkit;
  const touched: string[] = [];
  beforeAll(async () => {
    db = await createTestDatabase({ backend });
    ck = creditkit(runAs.service(db));
    await createCatalogue(ck);
  });
  afterAll(() => db?.drop());
  // Every scenario ends with the books balanced for every account it touched (and overall).
  afterEach(async () => {
    if (db) await expectConsistent(db);
    touched.length = 0;
  });

  /** Delivers an event (by default 5 seconds after Stripe created it) and returns the answer. */
  async function apply(e: StripeEvent | unknown, now?: string): Promise<ApplyResult> {
    const created = (e as StripeEvent).created;
    const [row, ...rest] = await ck.call('creditkit_stripe_apply', { p_event: e, p_now: now ?? atUnix(created + 5) });
    if (!row || rest.length) throw new Error('creditkit_stripe_apply returned other than one row');
    return row as unknown as ApplyResult;
  }

  const applied = (e: StripeEvent, account: string | null, duplicate = false) => ({
    event_id: e.id, status: 'applied', effect: expect.any(String), account_id: account, duplicate,
  });

  async function ledger(account: string): Promise<Array<[string, number, number]>> {
    const rows = await db.query<{ kind: string; amount: number; balance_after: number }>(
      'select kind, amount, balance_after from creditkit.ledger where account_id = $1 order by id', [account]);
    return rows.map((r) => [r.kind, r.amount, r.balance_after]);
  }

  /** Buckets with credit left: [category, remaining, expires_at as an at() string or null], oldest first. */
  async function buckets(account: string): Promise<Array<[string, number, string | null]>> {
    const rows = await db.query<{ category: string; remaining: number; expires_us: number | null }>(
      `select category, remaining, ${microsSql('expires_at')} as expires_us
         from ${GRANTS} g where account_id = $1 and remaining > 0 order by id`, [account]);
    return rows.map((r) => [r.category, r.remaining, r.expires_us === null ? null : at(Number(r.expires_us))]);
  }

  async function balanceAt(account: string, now: string): Promise<number> {
    return (await ck.balance({ p_account_id: account, p_now: now })).balance;
  }

  async function payment(pi: string): Promise<Row | undefined> {
    const [row] = await db.query(
      `select state, account_id, pack_id, credits, amount_paid, amount_refunded, disputed, clawed_back, shortfall,
              grant_id is not null as granted
         from creditkit.stripe_payments where payment_intent = $1`, [pi]);
    return row;
  }

  async function inbox(id: string): Promise<Row | undefined> {
    const [row] = await db.query(
      'select type, status, account_id, error_code, deliveries from creditkit.stripe_events where id = $1', [id]);
    return row;
  }

  async function invoices(subscription: string): Promise<Array<[string, string, string]>> {
    const rows = await db.query<{ invoice_id: string; outcome: string; plan_id: string }>(
      'select invoice_id, outcome, plan_id from creditkit.stripe_invoices where subscription_id = $1 order by period_start',
      [subscription]);
    return rows.map((r) => [r.invoice_id, r.outcome, r.plan_id]);
  }

  async function subscription(account: string): Promise<Row | undefined> {
    const [row] = await db.query(
      `select plan_id, status, stripe_subscription_id, stripe_customer_id, renews_at
         from creditkit.subscriptions where account_id = $1`, [account]);
    return row;
  }

  const pack = (account = newAccountId()): PackPurchase =>
    packPurchase({ account, packId: PACK.id, priceId: PACK.price, amount: PACK.amount });

  // ── Packs ────────────────────────────────────────────────────────────────────────────────

  describe('packs', () => {
    it('an async-paid checkout: completed unpaid without a payment intent, then async_payment_succeeded with one: one payment, granted once', async () => {
      const p = pack();
      const unpaid = stripeEvent('checkout.session.completed', { ...checkoutCompleted(p, { created: T + MIN, paymentStatus: 'unpaid' }).data.object, payment_intent: null }, { created: T + MIN });
      const paid = asyncPaymentSucceeded(p, { created: T + DAY_S });
      expect(await apply(unpaid)).toEqual(applied(unpaid, p.account));
      expect(await ledger(p.account)).toEqual([]);
      expect(await apply(paid)).toEqual(applied(paid, p.account));
      expect(await ledger(p.account)).toEqual([['grant', 100, 100]]);
      expect(await db.query('select count(*)::int as n, min(payment_intent) as pi from creditkit.stripe_payments where checkout_session = $1 or payment_intent = $2',
        [p.session, p.paymentIntent])).toEqual([{ n: 1, pi: p.paymentIntent }]);
      // redelivered, and in the other order for another purchase: the same one grant
      expect(await apply(redeliver(paid))).toMatchObject({ duplicate: true });
      const q = pack();
      await apply(asyncPaymentSucceeded(q, { created: T + DAY_S }));
      await apply(stripeEvent('checkout.session.completed', { ...checkoutCompleted(q, { created: T + MIN, paymentStatus: 'unpaid' }).data.object, payment_intent: null }, { created: T + MIN }));
      expect(await ledger(q.account)).toEqual([['grant', 100, 100]]);
    });

    it('two completed events of one session with different payment intents: one payment, one grant, the first payment intent kept', async () => {
      const p = pack();
      const first = checkoutCompleted(p, { created: T + MIN });
      const second = stripeEvent('checkout.session.completed', { ...first.data.object, payment_intent: stripeId('pi') }, { created: T + 2 * MIN });
      await apply(first);
      expect(await apply(second)).toEqual(applied(second, p.account));
      expect(await ledger(p.account)).toEqual([['grant', 100, 100]]);
      expect(await db.query('select payment_intent from creditkit.stripe_payments where checkout_session = $1', [p.session]))
        .toEqual([{ payment_intent: p.paymentIntent }]);
    });

    it('a refund seen before the async checkout that names its payment intent is merged into that payment', async () => {
      const p = pack();
      await apply(stripeEvent('checkout.session.completed', { ...checkoutCompleted(p, { created: T + MIN, paymentStatus: 'unpaid' }).data.object, payment_intent: null }, { created: T + MIN }));
      await apply(chargeRefunded(p, { created: T + 2 * DAY_S, amountRefunded: 450 }));
      expect(await ledger(p.account)).toEqual([]);
      await apply(asyncPaymentSucceeded(p, { created: T + DAY_S }));
      expect(await ledger(p.account)).toEqual([['grant', 100, 100], ['adjust', -50, 50]]);
      expect(await payment(p.paymentIntent)).toMatchObject({ state: 'paid', amount_refunded: 450, clawed_back: 50 });
      expect(await db.query('select count(*)::int as n from creditkit.stripe_payments where checkout_session = $1 or payment_intent = $2',
        [p.session, p.paymentIntent])).toEqual([{ n: 1 }]);
    });

    it('a paid checkout grants the pack once, with its revenue; a redelivery is a duplicate with no effect', async () => {
      const p = pack();
      const e = checkoutCompleted(p, { created: T + MIN });
      expect(await apply(e)).toEqual(applied(e, p.account));
      expect(await ledger(p.account)).toEqual([['grant', 100, 100]]);
      expect(await buckets(p.account)).toEqual([['purchase', 100, null]]);
      const [row] = await db.query(
        'select idempotency_key, revenue_micros, metadata from creditkit.ledger where account_id = $1', [p.account]);
      expect(row).toEqual({
        idempotency_key: `stripe:${p.paymentIntent}`, revenue_micros: 9_000_000,
        metadata: { source: 'stripe', payment_intent: p.paymentIntent, checkout_session: p.session, pack_id: PACK.id },
      });
      expect(await payment(p.paymentIntent)).toEqual({
        state: 'paid', account_id: p.account, pack_id: PACK.id, credits: 100, amount_paid: 900, amount_refunded: 0,
        disputed: false, clawed_back: 0, shortfall: 0, granted: true,
      });
      expect(await ck.call('creditkit_stripe_customer', { p_account_id: p.account })).toEqual([{ creditkit_stripe_customer: p.customer }]);

      // Stripe retries (our 2xx was lost): the same event, same id
      const again = await apply(redeliver(e), atUnix(T + HOUR_S));
      expect(again).toEqual(applied(e, p.account, true));
      // an async_payment_succeeded for the same session (paid twice over, as Stripe can tell it)
      expect(await apply(asyncPaymentSucceeded(p, { created: T + 2 * MIN }))).toMatchObject({ status: 'applied', duplicate: false });
      expect(await ledger(p.account)).toEqual([['grant', 100, 100]]);
      expect(await inbox(e.id)).toEqual({ type: 'checkout.session.completed', status: 'applied', account_id: p.account, error_code: null, deliveries: 2 });
    });

    it('a metadata-less session falls back to client_reference_id for the account', async () => {
      const p = pack();
      const e = checkoutCompleted(p, { created: T + MIN, metadata: { pack_id: PACK.id } });
      expect(await apply(e)).toEqual(applied(e, p.account));
      expect(await ledger(p.account)).toEqual([['grant', 100, 100]]);
    });

    it('an unpaid (async) checkout grants nothing until async_payment_succeeded', async () => {
      const p = pack();
      const completed = checkoutCompleted(p, { created: T + MIN, paymentStatus: 'unpaid' });
      expect(await apply(completed)).toEqual(applied(completed, p.account));
      expect(await ledger(p.account)).toEqual([]);
      expect(await payment(p.paymentIntent)).toMatchObject({ state: 'pending', granted: false, credits: 100 });

      const succeeded = asyncPaymentSucceeded(p, { created: T + 3 * DAY_S });
      expect(await apply(succeeded)).toEqual(applied(succeeded, p.account));
      expect(await ledger(p.account)).toEqual([['grant', 100, 100]]);
      expect(await payment(p.paymentIntent)).toMatchObject({ state: 'paid', granted: true });
      // both again: nothing more
      expect(await apply(redeliver(completed))).toMatchObject({ duplicate: true });
      expect(await apply(redeliver(succeeded))).toMatchObject({ duplicate: true });
      expect(await ledger(p.account)).toEqual([['grant', 100, 100]]);
    });

    it('async_payment_succeeded delivered before checkout.session.completed: one grant, whichever comes first', async () => {
      const p = pack();
      const completed = checkoutCompleted(p, { created: T + MIN, paymentStatus: 'unpaid' });
      const succeeded = asyncPaymentSucceeded(p, { created: T + 2 * DAY_S });
      expect(await apply(succeeded)).toEqual(applied(succeeded, p.account));
      expect(await ledger(p.account)).toEqual([['grant', 100, 100]]);
      // the older "unpaid" snapshot arrives late: paid stays paid, nothing more is granted
      expect(await apply(completed)).toEqual(applied(completed, p.account));
      expect(await ledger(p.account)).toEqual([['grant', 100, 100]]);
      expect(await payment(p.paymentIntent)).toMatchObject({ state: 'paid', granted: true });
    });

    it('async_payment_failed grants nothing, before or after the unpaid checkout', async () => {
      for (const order of ['completed first', 'failed first']) {
        const p = pack();
        const completed = checkoutCompleted(p, { created: T + MIN, paymentStatus: 'unpaid' });
        const failed = asyncPaymentFailed(p, { created: T + 4 * DAY_S });
        const events = order === 'completed first' ? [completed, failed] : [failed, completed];
        for (const e of events) expect(await apply(e), order).toEqual(applied(e, p.account));
        expect(await ledger(p.account), order).toEqual([]);
        expect(await payment(p.paymentIntent), order).toMatchObject({ state: 'failed', granted: false });
        expect(await db.query('select 1 from creditkit.grants where account_id = $1', [p.account])).toEqual([]);
      }
    });

    it('partial then full refund, each delivered twice: 33 of 100 back for 300 of 900 cents, then all of it', async () => {
      const p = pack();
      await apply(checkoutCompleted(p, { created: T }));
      const partial = chargeRefunded(p, { created: T + DAY_S, amountRefunded: 300 });
      expect(await apply(partial)).toEqual(applied(partial, p.account));
      expect(await apply(redeliver(partial))).toEqual(applied(partial, p.account, true));
      expect(await ledger(p.account)).toEqual([['grant', 100, 100], ['adjust', -33, 67]]);
      expect(await payment(p.paymentIntent)).toMatchObject({ amount_refunded: 300, clawed_back: 33, shortfall: 0 });

      const full = chargeRefunded(p, { created: T + 2 * DAY_S, amountRefunded: 900 });
      expect(await apply(full)).toEqual(applied(full, p.account));
      expect(await apply(redeliver(full))).toEqual(applied(full, p.account, true));
      expect(await ledger(p.account)).toEqual([['grant', 100, 100], ['adjust', -33, 67], ['adjust', -67, 0]]);
      expect(await payment(p.paymentIntent)).toMatchObject({ amount_refunded: 900, clawed_back: 100, shortfall: 0 });
      // the refund rows say why
      const reasons = await db.query<{ reason: string }>(
        `select metadata->>'reason' as reason from creditkit.ledger where account_id = $1 and kind = 'adjust'`, [p.account]);
      expect(reasons.map((r) => r.reason)).toEqual(['stripe_refund', 'stripe_refund']);
    });

    it('a refund event older than one already applied (cumulative amounts) takes nothing more', async () => {
      const p = pack();
      await apply(checkoutCompleted(p, { created: T }));
      await apply(chargeRefunded(p, { created: T + 2 * DAY_S, amountRefunded: 900 }));
      // the partial refund's event (a different event id) arrives last
      const late = chargeRefunded(p, { created: T + DAY_S, amountRefunded: 300 });
      expect(await apply(late)).toEqual(applied(late, p.account));
      expect(await ledger(p.account)).toEqual([['grant', 100, 100], ['adjust', -100, 0]]);
      expect(await payment(p.paymentIntent)).toMatchObject({ amount_refunded: 900, clawed_back: 100 });
    });

    it('a refund delivered before the checkout is applied when the checkout arrives', async () => {
      const p = pack();
      const refund = chargeRefunded(p, { created: T + DAY_S, amountRefunded: 300 });
      expect(await apply(refund)).toEqual(applied(refund, null));
      expect(await payment(p.paymentIntent)).toMatchObject({ state: 'pending', account_id: null, amount_refunded: 300, granted: false });
      expect(await apply(checkoutCompleted(p, { created: T }))).toMatchObject({ status: 'applied', account_id: p.account });
      expect(await ledger(p.account)).toEqual([['grant', 100, 100], ['adjust', -33, 67]]);
    });

    it('a refund after some credits were spent stops at zero and records the shortfall; never negative', async () => {
      const p = pack();
      await apply(checkoutCompleted(p, { created: T }));
      expect(await ck.consume({ p_account_id: p.account, p_amount: 80, p_event: 'chat', p_now: atUnix(T + HOUR_S) })).toMatchObject({ allowed: true, balance: 20 });
      const full = chargeRefunded(p, { created: T + DAY_S, amountRefunded: 900 });
      expect(await apply(full)).toEqual(applied(full, p.account));
      expect(await ledger(p.account)).toEqual([['grant', 100, 100], ['consume', -80, 20], ['adjust', -20, 0]]);
      expect(await payment(p.paymentIntent)).toMatchObject({ clawed_back: 100, shortfall: 80 });
      expect(await ck.consume({ p_account_id: p.account, p_amount: 1, p_now: atUnix(T + 2 * DAY_S) })).toMatchObject({ allowed: false, balance: 0 });
      expect(await apply(redeliver(full))).toMatchObject({ duplicate: true });
      expect(await ledger(p.account)).toHaveLength(3);
    });

    it("a refund takes the pack's own credits first, then the rest of the balance in spend order", async () => {
      const p = pack();
      // promotional credit that expires soon: the usual spend order would take it first
      await ck.grant({ p_account_id: p.account, p_amount: 50, p_category: 'promotional', p_expires_at: atUnix(T + 7 * DAY_S), p_now: atUnix(T) });
      await apply(checkoutCompleted(p, { created: T + MIN }));
      await apply(chargeRefunded(p, { created: T + DAY_S, amountRefunded: 300 }));
      expect(await buckets(p.account)).toEqual([['promotional', 50, atUnix(T + 7 * DAY_S)], ['purchase', 67, null]]);
      // 60 spent (50 promotional first, then 10 of the pack): the full refund takes the 57 left
      // of the pack, and the promotional credit is gone already
      await ck.consume({ p_account_id: p.account, p_amount: 60, p_now: atUnix(T + 2 * DAY_S) });
      await apply(chargeRefunded(p, { created: T + 3 * DAY_S, amountRefunded: 900 }));
      expect(await buckets(p.account)).toEqual([]);
      expect(await payment(p.paymentIntent)).toMatchObject({ clawed_back: 100, shortfall: 10 });
    });

    it('a dispute takes the credits back when funds are withdrawn and restores them when reinstated', async () => {
      const p = pack();
      await apply(checkoutCompleted(p, { created: T }));
      const withdrawn = disputeFundsWithdrawn(p, { created: T + 5 * DAY_S });
      expect(await apply(withdrawn)).toEqual(applied(withdrawn, p.account));
      expect(await ledger(p.account)).toEqual([['grant', 100, 100], ['adjust', -100, 0]]);
      expect(await payment(p.paymentIntent)).toMatchObject({ disputed: true, clawed_back: 100, shortfall: 0 });
      const reinstated = disputeFundsReinstated(p, { created: T + 40 * DAY_S });
      expect(await apply(reinstated)).toEqual(applied(reinstated, p.account));
      expect(await apply(redeliver(reinstated))).toMatchObject({ duplicate: true });
      expect(await apply(redeliver(withdrawn))).toMatchObject({ duplicate: true });
      expect(await ledger(p.account)).toEqual([['grant', 100, 100], ['adjust', -100, 0], ['adjust', 100, 100]]);
      expect(await payment(p.paymentIntent)).toMatchObject({ disputed: false, clawed_back: 0, shortfall: 0 });
      // the credits come back as they were: the pack's bucket, not a new one
      expect(await buckets(p.account)).toEqual([['purchase', 100, null]]);
    });

    it('a dispute reinstated (newer) delivered before the withdrawal (older): nothing moves', async () => {
      const p = pack();
      await apply(checkoutCompleted(p, { created: T }));
      const withdrawn = disputeFundsWithdrawn(p, { created: T + 5 * DAY_S });
      const reinstated = disputeFundsReinstated(p, { created: T + 40 * DAY_S });
      expect(await apply(reinstated)).toEqual(applied(reinstated, p.account));
      expect(await apply(withdrawn)).toEqual(applied(withdrawn, p.account));
      expect(await ledger(p.account)).toEqual([['grant', 100, 100]]);
      expect(await payment(p.paymentIntent)).toMatchObject({ disputed: false, clawed_back: 0, shortfall: 0 });
      expect(await buckets(p.account)).toEqual([['purchase', 100, null]]);
    });

    it('a withdrawal and a reinstatement stamped the same second: reinstated wins, in either order', async () => {
      for (const order of ['withdrawn first', 'reinstated first']) {
        const p = pack();
        await apply(checkoutCompleted(p, { created: T }));
        const withdrawn = disputeFundsWithdrawn(p, { created: T + 5 * DAY_S });
        const reinstated = disputeFundsReinstated(p, { created: T + 5 * DAY_S });
        for (const e of order === 'withdrawn first' ? [withdrawn, reinstated] : [reinstated, withdrawn]) await apply(e);
        expect(await payment(p.paymentIntent), order).toMatchObject({ disputed: false, clawed_back: 0 });
        expect(await buckets(p.account), order).toEqual([['purchase', 100, null]]);
      }
    });

    it('a dispute after some credits were spent: the shortfall is recorded, and the reinstatement gives back only what was taken', async () => {
      const p = pack();
      await apply(checkoutCompleted(p, { created: T }));
      await ck.consume({ p_account_id: p.account, p_amount: 30, p_now: atUnix(T + HOUR_S) });
      await apply(disputeFundsWithdrawn(p, { created: T + 5 * DAY_S }));
      expect(await balanceAt(p.account, atUnix(T + 6 * DAY_S))).toBe(0);
      expect(await payment(p.paymentIntent)).toMatchObject({ clawed_back: 100, shortfall: 30 });
      await apply(disputeFundsReinstated(p, { created: T + 40 * DAY_S }));
      expect(await balanceAt(p.account, atUnix(T + 41 * DAY_S))).toBe(70);
      expect(await payment(p.paymentIntent)).toMatchObject({ disputed: false, clawed_back: 0, shortfall: 0 });
      expect(await ledger(p.account)).toEqual([['grant', 100, 100], ['consume', -30, 70], ['adjust', -70, 0], ['adjust', 70, 70]]);
    });

    it('refund and dispute together: the dispute takes everything, and a reinstatement leaves the refund taken', async () => {
      const p = pack();
      await apply(checkoutCompleted(p, { created: T }));
      await apply(chargeRefunded(p, { created: T + DAY_S, amountRefunded: 450 }));
      expect(await balanceAt(p.account, atUnix(T + DAY_S + 10))).toBe(50);
      await apply(disputeFundsWithdrawn(p, { created: T + 5 * DAY_S }));
      expect(await balanceAt(p.account, atUnix(T + 5 * DAY_S + 10))).toBe(0);
      await apply(disputeFundsReinstated(p, { created: T + 40 * DAY_S }));
      expect(await balanceAt(p.account, atUnix(T + 40 * DAY_S + 10))).toBe(50);
      expect(await payment(p.paymentIntent)).toMatchObject({ disputed: false, clawed_back: 50, shortfall: 0 });
    });

    it('a refund of a payment creditkit never sold is recorded and changes no balance', async () => {
      const p = pack();
      const refund = chargeRefunded(p, { created: T, amountRefunded: 900 });
      expect(await apply(refund)).toEqual(applied(refund, null));
      expect(await db.query('select 1 from creditkit.accounts where id = $1', [p.account])).toEqual([]);
    });

    it('a pack that would take the balance above 2^53-1 is dead, and applies on replay once there is room', async () => {
      const p = pack();
      await ck.grant({ p_account_id: p.account, p_amount: MAX_CREDITS - 50, p_now: atUnix(T) });
      const e = checkoutCompleted(p, { created: T + MIN });
      expect(await apply(e)).toMatchObject({ status: 'dead', account_id: null, duplicate: false });
      expect(await inbox(e.id)).toMatchObject({ status: 'dead', error_code: 'balance_limit' });
      expect(await payment(p.paymentIntent)).toBeUndefined();
      await ck.consume({ p_account_id: p.account, p_amount: 1000, p_now: atUnix(T + HOUR_S) });
      expect(await ck.call('creditkit_stripe_replay', { p_event_id: e.id, p_now: atUnix(T + 2 * HOUR_S) })).toEqual([
        { event_id: e.id, status: 'applied', effect: expect.any(String), account_id: p.account },
      ]);
      expect(await balanceAt(p.account, atUnix(T + 3 * HOUR_S))).toBe(MAX_CREDITS - 50 - 1000 + 100);
    });

    it('a payload creditkit cannot read (amount_total not a number) is dead, not an error Stripe would retry for days', async () => {
      const p = pack();
      const e = checkoutCompleted(p, { created: T });
      e.data.object.amount_total = 'nine dollars';
      expect(await apply(e)).toEqual({ event_id: e.id, status: 'dead', effect: expect.any(String), account_id: null, duplicate: false });
      expect(await inbox(e.id)).toMatchObject({ status: 'dead', error_code: 'invalid_event' });
      expect(await payment(p.paymentIntent)).toBeUndefined();
      expect(await apply(redeliver(e))).toEqual({ event_id: e.id, status: 'dead', effect: expect.any(String), account_id: null, duplicate: true });
    });

    it('what a payment bought is fixed by its first checkout event: a later one naming another account changes nothing', async () => {
      const p = pack();
      await apply(checkoutCompleted(p, { created: T }));
      const other = newAccountId();
      await apply(asyncPaymentSucceeded(p, { created: T + MIN, metadata: { account_id: other, pack_id: PACK.id } }));
      expect(await payment(p.paymentIntent)).toMatchObject({ account_id: p.account });
      await apply(chargeRefunded(p, { created: T + DAY_S, amountRefunded: 900 }));
      expect(await ledger(p.account)).toEqual([['grant', 100, 100], ['adjust', -100, 0]]);
      expect(await ledger(other)).toEqual([]);
    });

    it('a pack with an expiry: its credits expire that long after the purchase', async () => {
      await ck.call('creditkit_upsert_pack', {
        p_id: 'credits-30d', p_name: '30-day credits', p_credits: 40, p_price_amount: 300, p_stripe_price_id: 'price_1QThirtyDay', p_expires_after: '30 days',
      });
      const p = packPurchase({ account: newAccountId(), packId: 'credits-30d', priceId: 'price_1QThirtyDay', amount: 300 });
      await apply(checkoutCompleted(p, { created: T }), atUnix(T + 10));
      expect(await buckets(p.account)).toEqual([['purchase', 40, atUnix(T + 10 + 30 * DAY_S)]]);
      expect(await balanceAt(p.account, atUnix(T + 10 + 30 * DAY_S))).toBe(0);
    });

    it('a pack of another unit (100 extra images) tops up that unit only; refunds and disputes claw back from it', async () => {
      await ck.upsertUnit({ p_id: 'images', p_name: 'Images', p_kind: 'metered' });
      const [stored] = await ck.call('creditkit_upsert_pack', {
        p_id: 'images-100', p_name: '100 extra images', p_credits: 100, p_price_amount: 900, p_stripe_price_id: 'price_1QImages', p_unit: 'images',
      });
      expect(Object.values(stored!)).toEqual([expect.objectContaining({ id: 'images-100', credits: 100, unit: 'images' })]);
      expect(await outcome(ck.call('creditkit_upsert_pack', { p_id: 'bad-unit', p_name: 'Bad', p_credits: 1, p_unit: 'nope' }))).toBe('CK015');
      const p = packPurchase({ account: newAccountId(), packId: 'images-100', priceId: 'price_1QImages', amount: 900 });
      const images = async () => (await ck.balance({ p_account_id: p.account, p_unit: 'images', p_now: atUnix(T + 3 * DAY_S) })).balance;
      const credits = async () => (await ck.balance({ p_account_id: p.account, p_now: atUnix(T + 3 * DAY_S) })).balance;
      const completed = checkoutCompleted(p, { created: T });
      expect(await apply(completed)).toMatchObject({ status: 'applied', effect: 'granted 100 images' });
      expect(await apply(redeliver(completed))).toMatchObject({ duplicate: true });
      expect([await images(), await credits()]).toEqual([100, 0]);
      expect(await db.query('select unit, credits from creditkit.stripe_payments where payment_intent = $1', [p.paymentIntent]))
        .toEqual([{ unit: 'images', credits: 100 }]);
      // spend 30 images, then refund half the price: 50 called for, 50 taken back from what is left
      await ck.consume({ p_account_id: p.account, p_amount: 30, p_unit: 'images', p_now: atUnix(T + HOUR_S) });
      await apply(chargeRefunded(p, { created: T + DAY_S, amountRefunded: 450 }));
      expect([await images(), await credits()]).toEqual([20, 0]);
      // a dispute takes the rest (20; 30 were spent), reinstated gives back what was taken
      await apply(disputeFundsWithdrawn(p, { created: T + 2 * DAY_S }));
      expect([await images(), await credits()]).toEqual([0, 0]);
      expect(await payment(p.paymentIntent)).toMatchObject({ clawed_back: 100, shortfall: 30 });
      await apply(disputeFundsReinstated(p, { created: T + 2 * DAY_S + HOUR_S }));
      expect([await images(), await credits()]).toEqual([20, 0]);
      const rows = await db.query<{ unit: string; kind: string; amount: number }>(
        'select unit, kind, amount from creditkit.ledger where account_id = $1 order by id', [p.account]);
      expect(rows.every((r) => r.unit === 'images')).toBe(true);
      expect(rows.map((r) => [r.kind, r.amount])).toEqual([['grant', 100], ['consume', -30], ['adjust', -50], ['adjust', -20], ['adjust', 20]]);
      await expectConsistent(db, [p.account]);
    });
  });

  // ── Subscriptions ────────────────────────────────────────────────────────────────────────

  describe('subscriptions', () => {
    const sub = (account: string, plan: keyof typeof PLANS = 'basic', start = T): SubscriptionFixture =>
      subscriptionFixture({ account, planId: PLANS[plan].id, priceId: PLANS[plan].price, start });
    const period = (s: SubscriptionFixture, k: number) => ({ periodStart: s.start + k * MONTH_S, periodEnd: s.start + (k + 1) * MONTH_S });
    /** The invoice that starts period k (0: subscription_create), paid an hour into it. */
    const invoiceFor = (s: SubscriptionFixture, k: number, extra: { shape?: InvoiceShape; priceId?: string } = {}) =>
      invoicePaid(s, { created: s.start + k * MONTH_S + (k === 0 ? 2 : HOUR_S), billingReason: k === 0 ? 'subscription_create' : 'subscription_cycle', ...period(s, k), ...extra });

    for (const shape of ['new', 'old'] as const) {
      for (const order of ['checkout first', 'invoice first'] as const) {
        it(`checkout + first invoice (${shape} invoice shape, ${order}): one allowance, plan and features from it`, async () => {
          const user = await db.createUser();
          const s = sub(user);
          const checkout = subscriptionCheckoutCompleted(s, { created: T + 5 });
          const created = subscriptionEvent('created', s, { created: T + 1, status: 'active', ...period(s, 0) });
          const invoice = invoiceFor(s, 0, { shape });
          const events = order === 'checkout first' ? [checkout, created, invoice] : [invoice, created, checkout];
          for (const e of events) expect(await apply(e)).toEqual(applied(e, user));
          for (const e of events) expect(await apply(redeliver(e))).toMatchObject({ duplicate: true });

          expect(await ledger(user)).toEqual([['grant', 100, 100]]);
          expect(await buckets(user)).toEqual([['plan', 100, atUnix(T + MONTH_S + GRACE_S)]]);
          expect(await invoices(s.subscription)).toEqual([[invoice.data.object.id, 'granted', 'basic']]);
          expect(await subscription(user)).toEqual({
            plan_id: 'basic', status: 'active', stripe_subscription_id: s.subscription, stripe_customer_id: s.customer, renews_at: null,
          });
          expect(await ck.hasFeature({ p_account_id: user, p_feature: 'api' })).toBe(true);
          expect(await creditkit(runAs.user(db, user)).myPlan()).toMatchObject({ plan_id: 'basic', status: 'active', allowance: 100 });
          expect(await ck.call('creditkit_stripe_customer', { p_account_id: user })).toEqual([{ creditkit_stripe_customer: s.customer }]);
        });
      }

      if (shape === 'new') it('a user the starter grant put on the default plan at sign-up subscribes through Stripe: the paid plan replaces it', async () => {
        await db.exec(`select creditkit.set_starter_grant('credits', 50, 'promotional'); select creditkit.enable_starter_grant();`);
        let user: string;
        try {
          user = await db.createUser();
        } finally {
          await db.exec(`select creditkit.disable_starter_grant(); select creditkit.set_starter_grant('credits', null);`);
        }
        expect(await subscription(user)).toMatchObject({ plan_id: 'free', status: 'active', stripe_subscription_id: null });
        const s = sub(user);
        for (const e of [subscriptionCheckoutCompleted(s, { created: T + 5 }), subscriptionEvent('created', s, { created: T + 1, status: 'active', ...period(s, 0) }),
          invoiceFor(s, 0)]) {
          expect(await apply(e)).toEqual(applied(e, user));
        }
        expect(await subscription(user)).toEqual({
          plan_id: 'basic', status: 'active', stripe_subscription_id: s.subscription, stripe_customer_id: s.customer, renews_at: null,
        });
        expect(await ledger(user)).toEqual([['grant', 50, 50], ['grant', 100, 150]]);
        expect(await ck.hasFeature({ p_account_id: user, p_feature: 'api' })).toBe(true);
      });

      it(`renewal invoices (${shape} shape) reset the allowance: the previous one expires when the next period is paid`, async () => {
        const account = newAccountId();
        const s = sub(account);
        await apply(invoiceFor(s, 0, { shape }));
        await ck.consume({ p_account_id: account, p_amount: 30, p_now: atUnix(T + 10 * DAY_S) });
        const renewal = invoiceFor(s, 1, { shape });
        expect(await apply(renewal)).toEqual(applied(renewal, account));
        expect(await ledger(account)).toEqual([['grant', 100, 100], ['consume', -30, 70], ['expire', -70, 0], ['grant', 100, 100]]);
        expect(await buckets(account)).toEqual([['plan', 100, atUnix(T + 2 * MONTH_S + GRACE_S)]]);
        expect(await apply(redeliver(renewal))).toMatchObject({ duplicate: true });
        expect(await ledger(account)).toHaveLength(4);
      });
    }

    it('a rollover plan carries what is left into the next period, up to the cap', async () => {
      const account = newAccountId();
      const s = sub(account, 'team');
      await apply(invoiceFor(s, 0));
      await ck.consume({ p_account_id: account, p_amount: 20, p_now: atUnix(T + DAY_S) });
      await apply(invoiceFor(s, 1, { shape: 'old' }));
      // 180 left, the cap is 150: 200 + 150
      expect(await buckets(account)).toEqual([['plan', 350, atUnix(T + 2 * MONTH_S + GRACE_S)]]);
      expect(await ledger(account)).toEqual([['grant', 200, 200], ['consume', -20, 180], ['expire', -180, 0], ['grant', 350, 350]]);
      await ck.consume({ p_account_id: account, p_amount: 300, p_now: atUnix(T + MONTH_S + DAY_S) });
      await apply(invoiceFor(s, 2));
      expect(await buckets(account)).toEqual([['plan', 250, atUnix(T + 3 * MONTH_S + GRACE_S)]]);
    });

    it('an older period\'s invoice delivered after a newer one is late: its allowance and revenue are recorded, and under a reset plan the allowance expires at once', async () => {
      const account = newAccountId();
      const s = sub(account);
      const first = invoiceFor(s, 0);
      const second = invoiceFor(s, 1);
      await apply(second);
      expect(await apply(first, atUnix(T + MONTH_S + 2 * HOUR_S))).toEqual(applied(first, account));
      expect(await ledger(account)).toEqual([['grant', 100, 100], ['grant', 100, 200], ['expire', -100, 100]]);
      expect(await buckets(account)).toEqual([['plan', 100, atUnix(T + 2 * MONTH_S + GRACE_S)]]);
      expect(await invoices(s.subscription)).toEqual([
        [first.data.object.id, 'late', 'basic'], [second.data.object.id, 'granted', 'basic'],
      ]);
      // both invoices' revenue, once each (1900 cents = 19,000,000 micros)
      expect(await db.query('select sum(revenue_micros)::bigint as revenue from creditkit.ledger where account_id = $1', [account]))
        .toEqual([{ revenue: 2 * 1900 * 10000 }]);
    });

    it('a rollover plan\'s three paid invoices end in the same credit and revenue in every order', async () => {
      // Daily periods, so that every period's allowance is still live (within the grace) at one
      // p_now inside the third: in order, 200, then 200 + 150 carried, then 200 + 150.
      const ends: Array<Record<string, unknown>> = [];
      for (const order of [[0, 1, 2], [2, 0, 1], [2, 1, 0], [1, 2, 0], [0, 2, 1]]) {
        const account = newAccountId();
        const s = sub(account, 'team');
        const events = [0, 1, 2].map((k) => invoicePaid(s, {
          created: T + k * DAY_S + 60, billingReason: k === 0 ? 'subscription_create' : 'subscription_cycle',
          periodStart: T + k * DAY_S, periodEnd: T + (k + 1) * DAY_S, amountPaid: 500,
        }));
        const now = atUnix(T + 2 * DAY_S + HOUR_S);
        for (const k of [...order, order[0]!]) await apply(events[k]!, now);  // and one redelivery
        const [totals] = await db.query<Record<string, number>>(
          `select sum(amount)::bigint as balance, sum(revenue_micros)::bigint as revenue
             from creditkit.ledger where account_id = $1`, [account]);
        const credit = await db.query(
          `select category, sum(remaining)::bigint as remaining, ${microsSql('expires_at')} as expires_us
             from ${GRANTS} g where account_id = $1 and remaining > 0 group by category, expires_at order by 1, 3`, [account]);
        ends.push({ order: order.join(''), balance: await balanceAt(account, now), totals, credit });
        expect(await ledgerProblems(db, [account])).toEqual([]);
      }
      const { order: _, ...first } = ends[0]!;
      expect(first).toMatchObject({ balance: 350, totals: { balance: 350, revenue: 3 * 500 * 10000 } });
      for (const e of ends) expect({ ...e, order: undefined }, `order ${e.order}`).toEqual({ ...first, order: undefined });
    });

    it('invoices that start no period grant nothing: proration, manual, and no billing_reason at all', async () => {
      const account = newAccountId();
      const s = sub(account);
      await apply(invoiceFor(s, 0));
      for (const billingReason of ['subscription_update', 'manual', 'subscription_threshold', null]) {
        const e = invoicePaid(s, { created: T + 10 * DAY_S, billingReason, periodStart: T + 10 * DAY_S, periodEnd: T + MONTH_S });
        expect(await apply(e), String(billingReason)).toMatchObject({ status: 'applied', duplicate: false });
      }
      expect(await ledger(account)).toEqual([['grant', 100, 100]]);
      expect(await invoices(s.subscription)).toHaveLength(1);
    });

    it('a refund of a subscription invoice takes back the unspent part of its allowance, in any order, as for a pack', async () => {
      for (const order of ['invoice first', 'refund first'] as const) {
        const account = newAccountId();
        const s = sub(account);
        const inv = invoiceFor(s, 0, { shape: 'old' });
        const pi = inv.data.object.payment_intent as string;
        const refund = stripeEvent('charge.refunded', { id: stripeId('ch'), object: 'charge', amount: 1900, amount_refunded: 950, refunded: false, payment_intent: pi, currency: 'usd' }, { created: T + DAY_S });
        if (order === 'invoice first') {
          await apply(inv);
          await ck.consume({ p_account_id: account, p_amount: 80, p_now: atUnix(T + HOUR_S) });
          await apply(refund, atUnix(T + DAY_S));
          // half of 100 is 50; only 20 is left to take back: 30 already spent
          expect(await ledger(account), order).toEqual([['grant', 100, 100], ['consume', -80, 20], ['adjust', -20, 0]]);
          expect(await db.query('select clawed_back, shortfall from creditkit.stripe_payments where payment_intent = $1', [pi]), order)
            .toEqual([{ clawed_back: 50, shortfall: 30 }]);
        } else {
          await apply(refund, atUnix(T + DAY_S));
          await apply(inv, atUnix(T + DAY_S));
          expect(await ledger(account), order).toEqual([['grant', 100, 100], ['adjust', -50, 50]]);
        }
      }
    });

    it('newer API versions link an invoice to its payment intent with invoice_payment.paid: a refund of it claws back', async () => {
      const account = newAccountId();
      const s = sub(account);
      const inv = invoiceFor(s, 0);  // the new shape names no payment intent
      const pi = stripeId('pi');
      const link = stripeEvent('invoice_payment.paid', {
        id: stripeId('inpay'), object: 'invoice_payment', amount_paid: 1900, amount_requested: 1900, currency: 'usd',
        invoice: inv.data.object.id as string, payment: { type: 'payment_intent', payment_intent: pi }, status: 'paid',
      }, { created: T + 3 });
      const refund = stripeEvent('charge.refunded', { id: stripeId('ch'), object: 'charge', amount: 1900, amount_refunded: 1900, refunded: true, payment_intent: pi, currency: 'usd' }, { created: T + DAY_S });
      await apply(refund, atUnix(T + DAY_S));
      await apply(inv, atUnix(T + DAY_S));
      expect(await ledger(account)).toEqual([['grant', 100, 100]]);
      expect(await apply(link, atUnix(T + DAY_S))).toEqual(applied(link, account));
      expect(await ledger(account)).toEqual([['grant', 100, 100], ['adjust', -100, 0]]);
    });

    it('a one-off invoice (no subscription) is not a period: nothing happens', async () => {
      const s = sub(newAccountId());
      const object: JsonObject = { ...invoicePaid(s, { created: T, billingReason: 'manual', periodStart: T, periodEnd: T + 1 }).data.object, parent: null };
      const e = stripeEvent('invoice.paid', object, { created: T });
      expect(await apply(e)).toMatchObject({ status: 'applied', account_id: null });
      expect(await db.query('select 1 from creditkit.stripe_invoices where invoice_id = $1', [object.id])).toEqual([]);
    });

    it('subscription.updated changes the plan (features at once, allowance from the next invoice); an older update changes nothing', async () => {
      const user = await db.createUser();
      const s = sub(user);
      await apply(invoiceFor(s, 0));
      const upgrade = subscriptionEvent('updated', s, {
        created: T + 10 * DAY_S, status: 'active', priceId: PLANS.pro.price, ...period(s, 0), previous: { items: { data: [] } },
      });
      expect(await apply(upgrade)).toEqual(applied(upgrade, user));
      expect(await subscription(user)).toMatchObject({ plan_id: 'pro', status: 'active' });
      expect(await ck.hasFeature({ p_account_id: user, p_feature: 'hd' })).toBe(true);
      // an update Stripe made earlier (past_due on basic) arrives late
      const stale = subscriptionEvent('updated', s, { created: T + 9 * DAY_S, status: 'past_due', ...period(s, 0) });
      expect(await apply(stale)).toEqual(applied(stale, user));
      expect(await subscription(user)).toMatchObject({ plan_id: 'pro', status: 'active' });
      expect(await creditkit(runAs.user(db, user)).myPlan()).toMatchObject({ plan_id: 'pro', features: PLANS.pro.features });
      // the allowance follows with the next period's invoice, on the new price
      await apply(invoiceFor(s, 1, { priceId: PLANS.pro.price }));
      expect(await buckets(user)).toEqual([['plan', 500, atUnix(T + 2 * MONTH_S + GRACE_S)]]);
      expect(await ledger(user)).toEqual([['grant', 100, 100], ['expire', -100, 0], ['grant', 500, 500]]);
    });

    it('subscription.deleted puts the account back on the free plan', async () => {
      const user = await db.createUser();
      const s = sub(user, 'pro');
      await apply(invoiceFor(s, 0));
      expect(await ck.hasFeature({ p_account_id: user, p_feature: 'hd' })).toBe(true);
      const deleted = subscriptionEvent('deleted', s, { created: T + 12 * DAY_S, status: 'canceled', ...period(s, 0) });
      expect(await apply(deleted)).toEqual(applied(deleted, user));
      expect(await subscription(user)).toMatchObject({ plan_id: 'pro', status: 'canceled' });
      expect(await ck.hasFeature({ p_account_id: user, p_feature: 'hd' })).toBe(false);
      expect(await ck.hasFeature({ p_account_id: user, p_feature: 'api' })).toBe(false);
      expect(await creditkit(runAs.user(db, user)).myPlan()).toMatchObject({ plan_id: 'free', status: 'canceled' });
      expect(await db.query('select (creditkit.effective_plan($1)).id', [user])).toEqual([{ id: 'free' }]);
      // a late update from before the cancellation does not bring it back
      await apply(subscriptionEvent('updated', s, { created: T + 11 * DAY_S, status: 'active', ...period(s, 0) }));
      expect(await subscription(user)).toMatchObject({ status: 'canceled' });
      expect(await ck.hasFeature({ p_account_id: user, p_feature: 'hd' })).toBe(false);
    });

    it('a Stripe subscription never renews lazily: a consume months later grants no allowance', async () => {
      const account = newAccountId();
      const s = sub(account);
      await apply(invoiceFor(s, 0));
      expect(await subscription(account)).toMatchObject({ renews_at: null });
      const later = atUnix(T + 5 * MONTH_S);
      expect(await ck.consume({ p_account_id: account, p_amount: 1, p_now: later })).toMatchObject({ allowed: false, balance: 0 });
      expect(await balanceAt(account, later)).toBe(0);
      expect(await ledger(account)).toEqual([['grant', 100, 100], ['expire', -100, 0]]);
      // nor does a status change through the generic API turn renewals back on
      await ck.setPlan({ p_account_id: account, p_plan_id: 'basic', p_status: 'active', p_now: later });
      expect(await subscription(account)).toMatchObject({ renews_at: null });
      expect(await ck.consume({ p_account_id: account, p_amount: 1, p_now: atUnix(T + 9 * MONTH_S) })).toMatchObject({ allowed: false });
      expect(await db.query(`select count(*)::int as n from creditkit.ledger where account_id = $1 and kind = 'grant'`, [account])).toEqual([{ n: 1 }]);
    });

    it("a late event of an account's earlier subscription does not replace the current one", async () => {
      const user = await db.createUser();
      const old = sub(user, 'basic');
      await apply(invoiceFor(old, 0));
      await apply(subscriptionEvent('deleted', old, { created: T + 10 * DAY_S, status: 'canceled', ...period(old, 0) }));
      // a new subscription on pro, eleven days in
      const current = { ...sub(user, 'pro', T + 11 * DAY_S), customer: old.customer };
      await apply(subscriptionCheckoutCompleted(current, { created: current.start + 5 }));
      await apply(invoiceFor(current, 0));
      expect(await subscription(user)).toMatchObject({ plan_id: 'pro', status: 'active', stripe_subscription_id: current.subscription });
      // the old subscription's events, delivered late: an update from before its cancellation ...
      await apply(subscriptionEvent('updated', old, { created: T + 5 * DAY_S, status: 'active', ...period(old, 0) }));
      // ... and its cancellation again under another event id
      await apply(subscriptionEvent('deleted', old, { created: T + 10 * DAY_S, status: 'canceled', ...period(old, 0) }));
      expect(await subscription(user)).toMatchObject({ plan_id: 'pro', status: 'active', stripe_subscription_id: current.subscription });
      expect(await ck.hasFeature({ p_account_id: user, p_feature: 'hd' })).toBe(true);
      // even a newer cancellation of another subscription does not cancel this one
      const other = { ...sub(user, 'basic', T + 12 * DAY_S), customer: old.customer };
      await apply(subscriptionEvent('deleted', other, { created: T + 20 * DAY_S, status: 'canceled', ...period(other, 0) }));
      expect(await subscription(user)).toMatchObject({ plan_id: 'pro', status: 'active', stripe_subscription_id: current.subscription });
    });

    it('events of the same second resolve by lifecycle, in either order: created (incomplete) < invoice.paid < updated (active) < deleted', async () => {
      const orders = [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]];
      for (const order of orders) {
        const account = newAccountId();
        const s = sub(account);
        const events = [
          subscriptionEvent('created', s, { created: T, status: 'incomplete', ...period(s, 0) }),
          invoiceFor(s, 0),
          subscriptionEvent('updated', s, { created: T, status: 'active', ...period(s, 0) }),
        ];
        events[1]!.created = T;
        for (const i of order) await apply(events[i]!);
        expect(await subscription(account), String(order)).toMatchObject({ status: 'active', plan_id: 'basic' });
      }
      for (const order of [[0, 1], [1, 0]]) {
        const account = newAccountId();
        const s = sub(account);
        const events = [
          subscriptionEvent('updated', s, { created: T + DAY_S, status: 'active', ...period(s, 0) }),
          subscriptionEvent('deleted', s, { created: T + DAY_S, status: 'canceled', ...period(s, 0) }),
        ];
        for (const i of order) await apply(events[i]!);
        expect(await subscription(account), String(order)).toMatchObject({ status: 'canceled' });
      }
    });

    it('a subscription event without metadata finds its account through the recorded subscription or the linked customer', async () => {
      const account = newAccountId();
      const s = { ...sub(account), metadata: {} };
      await ck.call('creditkit_stripe_link_customer', { p_account_id: account, p_customer_id: s.customer });
      const created = subscriptionEvent('created', s, { created: T, status: 'active', ...period(s, 0) });
      expect(await apply(created)).toEqual(applied(created, account));
      const renewal = invoiceFor(s, 1);
      expect(await apply(renewal)).toEqual(applied(renewal, account));
      expect(await ledger(account)).toEqual([['grant', 100, 100]]);
      // with neither, the event is dead until the operator links the customer
      const lost = { ...sub(newAccountId()), metadata: {} };
      const e = subscriptionEvent('created', lost, { created: T, status: 'active', ...period(lost, 0) });
      expect(await apply(e)).toMatchObject({ status: 'dead' });
      expect(await inbox(e.id)).toMatchObject({ error_code: 'unknown_account' });
      await ck.call('creditkit_stripe_link_customer', { p_account_id: lost.account, p_customer_id: lost.customer });
      expect(await ck.call('creditkit_stripe_replay', { p_event_id: e.id, p_now: atUnix(T + DAY_S) })).toMatchObject([{ status: 'applied', account_id: lost.account }]);
    });

    it('a cancellation still applies when its price has left the catalogue', async () => {
      const user = await db.createUser();
      const s = sub(user, 'pro');
      await apply(invoiceFor(s, 0));
      const deleted = subscriptionEvent('deleted', s, { created: T + DAY_S, status: 'canceled', priceId: 'price_1QRetiredLongAgo', ...period(s, 0) });
      expect(await apply(deleted)).toEqual(applied(deleted, user));
      expect(await subscription(user)).toMatchObject({ plan_id: 'pro', status: 'canceled' });
      expect(await ck.hasFeature({ p_account_id: user, p_feature: 'hd' })).toBe(false);
    });

    it('statuses: trialing and past_due keep the plan; incomplete, unpaid and paused do not (nothing was paid for them)', async () => {
      const user = await db.createUser();
      const s = sub(user, 'pro');
      let created = T;
      const step = async (status: Parameters<typeof subscriptionEvent>[2]['status']) => {
        await apply(subscriptionEvent('updated', s, { created: ++created, status, ...period(s, 0) }));
        return [status, (await subscription(user))?.status, await ck.hasFeature({ p_account_id: user, p_feature: 'hd' })];
      };
      const seen = [];
      for (const status of ['incomplete', 'trialing', 'active', 'past_due', 'unpaid', 'active', 'paused', 'active', 'canceled'] as const) {
        seen.push(await step(status));
      }
      expect(seen).toEqual([
        ['incomplete', 'canceled', false],
        ['trialing', 'trialing', true],
        ['active', 'active', true],
        ['past_due', 'past_due', true],
        ['unpaid', 'canceled', false],
        ['active', 'active', true],
        ['paused', 'canceled', false],
        ['active', 'active', true],
        ['canceled', 'canceled', false],
      ]);
    });
  });

  // ── The inbox: ignored, dead, replay ───────────────────────────────────────────────────────

  describe('inbox', () => {
    it('event types creditkit does not use are recorded as ignored and change nothing', async () => {
      const before = await snapshotBooks(db);
      const events = [
        otherEvent('payment_intent.succeeded', { created: T }),
        otherEvent('customer.created', { created: T, object: { id: stripeId('cus', 14), object: 'customer', email: 'x@example.com', metadata: {} } }),
        otherEvent('invoice.finalized', { created: T }),
        otherEvent('checkout.session.expired', { created: T }),
      ];
      // the async events of a subscription checkout (a checkout in mode setup saves a card for auto
      // top-up since 0.3.0: auto-topup.test.ts)
      const s = subscriptionFixture({ account: newAccountId(), planId: 'basic', priceId: PLANS.basic.price, start: T });
      const subCheckout = subscriptionCheckoutCompleted(s, { created: T });
      events.push(stripeEvent('checkout.session.async_payment_succeeded', subCheckout.data.object, { created: T }));
      // a payment not saved for later, a customer update that names no default card
      events.push(otherEvent('customer.updated', { created: T, object: { id: stripeId('cus', 14), object: 'customer', invoice_settings: { default_payment_method: null } } }));
      for (const e of events) {
        expect(await apply(e)).toEqual({ event_id: e.id, status: 'ignored', effect: expect.any(String), account_id: null, duplicate: false });
        expect(await apply(redeliver(e))).toMatchObject({ status: 'ignored', duplicate: true });
      }
      const after = await snapshotBooks(db);
      // only the inbox grew: one row per event, each delivered twice
      expect({ ...after, stripe_events: null }).toEqual({ ...before, stripe_events: null });
      const rows = await db.query<{ id: string; status: string; deliveries: number }>(
        'select id, status, deliveries from creditkit.stripe_events where id = any($1)', [events.map((e) => e.id)]);
      const byId = (a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
      expect(rows.sort(byId)).toEqual(events.map((e) => ({ id: e.id, status: 'ignored', deliveries: 2 })).sort(byId));
    });

    it('unknown pack, plan price or account: dead, listed for the operator, applied on replay after the fix', async () => {
      const stamp = stripeId('x', 6).slice(2).toLowerCase();
      const packId = `late-pack-${stamp}`;
      const priceId = `price_1QLate${stamp}`;
      const user = await db.createUser();

      const p = packPurchase({ account: user, packId, priceId: 'price_unused', amount: 500 });
      const packEvent = checkoutCompleted(p, { created: T });
      const s = subscriptionFixture({ account: user, planId: 'late-plan', priceId, start: T });
      const invoiceEvent = invoicePaid(s, { created: T + 2, billingReason: 'subscription_create', periodStart: T, periodEnd: T + MONTH_S });
      const stranger = pack(newAccountId());
      const noAccount = checkoutCompleted(stranger, { created: T, metadata: { pack_id: PACK.id }, clientReferenceId: null });
      const planned = subscriptionFixture({ account: user, planId: `late-plan-${stamp}`, priceId: PLANS.basic.price, start: T });
      const planCheckout = subscriptionCheckoutCompleted(planned, { created: T + 5 });
      const noId = subscriptionEvent('updated', planned, { created: T + 6, status: 'active', periodStart: T, periodEnd: T + MONTH_S });
      delete noId.data.object.id;

      const before = await snapshotBooks(db);
      for (const e of [packEvent, invoiceEvent, noAccount, planCheckout, noId]) {
        expect(await apply(e)).toEqual({ event_id: e.id, status: 'dead', effect: expect.any(String), account_id: null, duplicate: false });
        expect(await apply(redeliver(e))).toMatchObject({ status: 'dead', duplicate: true });
      }
      expect({ ...(await snapshotBooks(db)), stripe_events: null }).toEqual({ ...before, stripe_events: null });
      expect(await inbox(packEvent.id)).toMatchObject({ status: 'dead', error_code: 'unknown_pack' });
      expect(await inbox(invoiceEvent.id)).toMatchObject({ status: 'dead', error_code: 'unknown_price' });
      expect(await inbox(noAccount.id)).toMatchObject({ status: 'dead', error_code: 'unknown_account' });
      expect(await inbox(planCheckout.id)).toMatchObject({ status: 'dead', error_code: 'unknown_plan' });
      expect(await inbox(noId.id)).toMatchObject({ status: 'dead', error_code: 'invalid_event' });
      const dead = await ck.call('creditkit_stripe_events', { p_status: 'dead', p_limit: 1000 });
      expect(dead.map((r) => r.id)).toEqual(expect.arrayContaining([packEvent.id, invoiceEvent.id, noAccount.id]));
      expect(dead.every((r) => r.status === 'dead' && typeof r.error_message === 'string')).toBe(true);

      // replay before the fix: still dead, nothing changes
      expect(await ck.call('creditkit_stripe_replay', { p_event_id: packEvent.id, p_now: atUnix(T + HOUR_S) })).toMatchObject([{ status: 'dead' }]);

      // the operator adds the pack and the plan, then replays
      await ck.call('creditkit_upsert_pack', { p_id: packId, p_name: 'Late pack', p_credits: 250, p_price_amount: 500 });
      await ck.upsertPlan({ p_id: 'late-plan', p_name: 'Late', p_allowance: 70, p_stripe_price_id: priceId });
      const replay = async (id: string) => ck.call('creditkit_stripe_replay', { p_event_id: id, p_now: atUnix(T + DAY_S) });
      expect(await replay(packEvent.id)).toEqual([{ event_id: packEvent.id, status: 'applied', effect: expect.any(String), account_id: user }]);
      expect(await replay(invoiceEvent.id)).toEqual([{ event_id: invoiceEvent.id, status: 'applied', effect: expect.any(String), account_id: user }]);
      expect(await ledger(user)).toEqual([['grant', 250, 250], ['grant', 70, 320]]);
      // the subscription checkout names a plan the operator adds now: replayed, it records the
      // subscription (and grants nothing: the invoice does)
      await ck.upsertPlan({ p_id: `late-plan-${stamp}`, p_name: 'Late 2', p_allowance: 10 });
      expect(await replay(planCheckout.id)).toEqual([{ event_id: planCheckout.id, status: 'applied', effect: expect.any(String), account_id: user }]);
      expect(await subscription(user)).toMatchObject({ plan_id: `late-plan-${stamp}`, status: 'active', stripe_subscription_id: planned.subscription });
      expect(await inbox(packEvent.id)).toMatchObject({ status: 'applied', error_code: null });
      // replaying an applied event returns it as it stands; a redelivery is still a duplicate
      expect(await replay(packEvent.id)).toEqual([{ event_id: packEvent.id, status: 'applied', effect: expect.any(String), account_id: user }]);
      expect(await apply(redeliver(packEvent))).toMatchObject({ status: 'applied', duplicate: true });
      expect(await ledger(user)).toHaveLength(2);
      // the one without an account stays dead
      expect(await replay(noAccount.id)).toMatchObject([{ status: 'dead' }]);
      expect(await outcome(ck.call('creditkit_stripe_replay', { p_event_id: 'evt_neverseen', p_now: atUnix(T) }))).toBe('CK006');
    });

    const BAD_EVENTS: Array<[string, unknown]> = [
      ['SQL NULL', null],
      ['JSON null', 'null'],
      ['an array', '[]'],
      ['a string', '"evt_1"'],
      ['an empty object', {}],
    ];
    const valid = () => otherEvent('payment_intent.succeeded', { created: T });
    const without = (key: string) => { const e: Record<string, unknown> = { ...valid() }; delete e[key]; return e; };
    const withField = (key: string, value: unknown) => ({ ...valid(), [key]: value });
    BAD_EVENTS.push(
      ['no id', without('id')],
      ['a numeric id', withField('id', 12345)],
      ['an id without evt_', withField('id', 'ev_1QabcDEF')],
      ['an id of just evt_', withField('id', 'evt_')],
      ['an id with a dash', withField('id', 'evt_1Q-abc')],
      ['an id of 256 characters', withField('id', `evt_${'a'.repeat(252)}`)],
      ['no type', without('type')],
      ['a numeric type', withField('type', 7)],
      ['no created', without('created')],
      ['created as a string', withField('created', String(T))],
      ['created out of range', withField('created', 1e15)],
      ['no data', without('data')],
      ['data without object', withField('data', {})],
      ['data.object an array', withField('data', { object: [] })],
      ['data.object null', withField('data', { object: null })],
      ['livemode a string', withField('livemode', 'false')],
    );
    it.each(BAD_EVENTS)('not a Stripe event (%s): CK014, nothing written', async (_label, e) => {
      const before = await snapshotBooks(db);
      expect(await outcome(ck.call('creditkit_stripe_apply', { p_event: e, p_now: atUnix(T) }))).toBe('CK014');
      expect(await snapshotBooks(db)).toEqual(before);
    });

    it('p_now NULL: CK006, nothing written', async () => {
      const before = await snapshotBooks(db);
      expect(await outcome(ck.call('creditkit_stripe_apply', { p_event: valid(), p_now: null }))).toBe('CK006');
      expect(await snapshotBooks(db)).toEqual(before);
    });

    it('creditkit_stripe_events lists the inbox newest first and filters by status', async () => {
      const a = otherEvent('customer.updated', { created: T });
      const b = otherEvent('customer.updated', { created: T });
      await apply(a, atUnix(T + 10 * 365 * DAY_S));
      await apply(b, atUnix(T + 10 * 365 * DAY_S + 1));
      const rows = await ck.call('creditkit_stripe_events', { p_limit: 2 });
      expect(rows.map((r) => r.id)).toEqual([b.id, a.id]);
      expect((await ck.call('creditkit_stripe_events', { p_status: 'ignored', p_limit: 1000 })).every((r) => r.status === 'ignored')).toBe(true);
      for (const args of [{ p_status: 'lost' }, { p_limit: 0 }, { p_limit: 1001 }, { p_limit: null }]) {
        expect(await outcome(ck.call('creditkit_stripe_events', args))).toBe('CK006');
      }
    });
  });

  // ── Catalogue and customers ────────────────────────────────────────────────────────────────

  describe('packs catalogue and customers', () => {
    it('creditkit_packs lists the active packs, cheapest first, to signed-in users and the server; not to anon', async () => {
      await ck.call('creditkit_upsert_pack', { p_id: 'retired-pack', p_name: 'Retired', p_credits: 5, p_price_amount: 1, p_active: false });
      const user = await db.createUser();
      const read = async (run: ReturnType<typeof runAs.service>) => {
        const { sql, params } = rpc('creditkit_packs', {});
        return run(sql, params);
      };
      const asUser = await read(runAs.user(db, user));
      expect(asUser.map((r) => r.id)).not.toContain('retired-pack');
      expect(asUser.find((r) => r.id === PACK.id)).toEqual({
        id: PACK.id, name: PACK.name, credits: 100, price_amount: 900, currency: 'usd', stripe_price_id: PACK.price, expires_after: null,
        unit: 'credits',
      });
      const prices = asUser.map((r) => r.price_amount as number);
      expect(prices).toEqual([...prices].sort((x, y) => x - y));
      expect(await read(runAs.service(db))).toEqual(asUser);
      expect(await outcome(read(runAs.anon(db)))).toBe('42501');
    });

    it('creditkit_upsert_pack validates and updates in place; a Stripe price belongs to one pack', async () => {
      const made = (await ck.call('creditkit_upsert_pack', { p_id: 'starter', p_name: 'Starter', p_credits: 10, p_price_amount: 100, p_stripe_price_id: 'price_1QStarter' }))[0]!;
      expect(made.creditkit_upsert_pack).toMatchObject({ id: 'starter', credits: 10, price_amount: 100, currency: 'usd', stripe_price_id: 'price_1QStarter', active: true });
      const changed = (await ck.call('creditkit_upsert_pack', { p_id: 'starter', p_name: 'Starter+', p_credits: 12, p_price_amount: 100, p_stripe_price_id: 'price_1QStarter' }))[0]!;
      expect(changed.creditkit_upsert_pack).toMatchObject({ name: 'Starter+', credits: 12 });
      expect(await outcome(ck.call('creditkit_upsert_pack', { p_id: 'other', p_name: 'Other', p_credits: 1, p_stripe_price_id: 'price_1QStarter' }))).toBe('CK006');
    });

    it('creditkit_stripe_link_customer: the first customer wins; a customer of another account or a malformed id is refused', async () => {
      const a = newAccountId();
      const b = newAccountId();
      const first = stripeId('cus', 14);
      const link = (account: string, customer: unknown) =>
        ck.call('creditkit_stripe_link_customer', { p_account_id: account, p_customer_id: customer });
      expect(await link(a, first)).toEqual([{ creditkit_stripe_link_customer: first }]);
      expect(await link(a, stripeId('cus', 14))).toEqual([{ creditkit_stripe_link_customer: first }]);
      const before = await snapshotBooks(db);
      expect(await outcome(link(b, first))).toBe('CK006');
      expect(await outcome(link(b, 'cust_123'))).toBe('CK006');
      expect(await outcome(link(b, null))).toBe('CK006');
      expect(await outcome(ck.call('creditkit_stripe_link_customer', { p_account_id: null, p_customer_id: stripeId('cus', 14) }))).toBe('CK006');
      expect(await snapshotBooks(db)).toEqual(before);
      expect(await ck.call('creditkit_stripe_customer', { p_account_id: b })).toEqual([{ creditkit_stripe_customer: null }]);
    });

    it("a checkout with a customer already linked to another account grants to the session's account and links nothing", async () => {
      const a = newAccountId();
      const shared = stripeId('cus', 14);
      await ck.call('creditkit_stripe_link_customer', { p_account_id: a, p_customer_id: shared });
      const p = { ...pack(), customer: shared };
      expect(await apply(checkoutCompleted(p, { created: T }))).toMatchObject({ status: 'applied', account_id: p.account });
      expect(await ledger(p.account)).toEqual([['grant', 100, 100]]);
      expect(await ck.call('creditkit_stripe_customer', { p_account_id: p.account })).toEqual([{ creditkit_stripe_customer: null }]);
    });
  });
});
