// Invariant 5: the same multiset of webhook events, in any order and with duplicates, ends in the
// same state. A realistic Stripe history of two accounts (pack purchases, one of them async and
// one failed, a partial then full refund, a dispute withdrawn then reinstated, a subscription
// bought through Checkout with its first invoice, two renewals, an upgrade and a cancellation,
// and event types creditkit ignores) is applied in many random orders, with redeliveries mixed
// in, every event at the same fixed p_now. Each run uses a fresh copy of the history (new account
// and Stripe ids) on one database, and its end state, with ids replaced by their roles in the
// history, must equal that of the history applied in order.
//
// A third account (C) has a rollover plan with daily periods, all of whose allowances are still
// live at the one p_now (within the grace), so that an older invoice arriving last must roll into
// the newest period exactly as in order.
//
// What must converge, and is compared: each account's spendable balance, its credit per category
// and expiry (how it is split into buckets of the same category, priority and expiry depends on
// the order, and spends the same), its revenue and cost totals, its subscription (plan, status,
// anchor, the event that last set it) and the plan in force with its features, its Stripe
// customer; each payment's record (state, credits, refunded, disputed, credits taken back,
// shortfall, taken from the pack's bucket); the set of invoices recorded, and the newest period's;
// every event's inbox status and delivery count.
//
// What legitimately depends on the order, and is not compared: the ledger rows (a dispute
// withdrawn then reinstated writes two rows, reinstated first writes none; an older invoice
// applied before a newer one grants an allowance that the newer one ends, after it grants it and
// expires what does not roll over), the outcome of the older invoices ('granted' in order, 'late'
// when a later period was seen first), effect texts and row ids. The books must still balance
// after every run. No usage is interleaved: a refund's shortfall depends on what was spent before
// it arrived.
//
// Replay a failure: CREDITKIT_STRIPE_SEED=<seed> CREDITKIT_STRIPE_PATH=<path>; more runs:
// CREDITKIT_STRIPE_RUNS=500.
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@creditkit/testing';
import { describeEachBackend } from '@creditkit/testing/vitest';
import { GRANTS, at, creditkit, ledgerProblems, microsSql, newAccountId, runAs, SECOND, type Creditkit } from './support.ts';
import {
  asyncPaymentFailed, asyncPaymentSucceeded, chargeRefunded, checkoutCompleted, disputeFundsReinstated,
  disputeFundsWithdrawn, invoicePaid, otherEvent, packPurchase, stripeId, subscriptionCheckoutCompleted,
  subscriptionEvent, subscriptionFixture, unix, createCatalogue, PACK, PLANS, type StripeEvent,
} from './stripe-fixtures.ts';

const T = unix(0);
const DAY_S = 86400;
const MONTH_S = 30 * DAY_S;
/** Every event of every run is applied at this instant: after the whole history. */
const NOW_S = T + 2 * MONTH_S + 6 * DAY_S;
const NOW = at((NOW_S - T) * SECOND);

interface History {
  events: Array<{ label: string; event: StripeEvent }>;
  /** Stripe and creditkit ids → their role in the history ('A', 'pA1', 'S', 'inv2', …). */
  labels: Map<string, string>;
  accounts: { A: string; B: string; C: string };
}

/** A fresh copy of the history: the same events, new ids. In the order Stripe created them. */
function buildHistory(): History {
  const A = newAccountId();
  const B = newAccountId();
  const C = newAccountId();
  const customerC = stripeId('cus', 14);
  const customerA = stripeId('cus', 14);
  const customerB = stripeId('cus', 14);
  const pA1 = { ...packPurchase({ account: A, packId: PACK.id, priceId: PACK.price, amount: PACK.amount }), customer: customerA };
  const pB1 = { ...packPurchase({ account: B, packId: PACK.id, priceId: PACK.price, amount: PACK.amount }), customer: customerB };
  const pB2 = { ...packPurchase({ account: B, packId: PACK.id, priceId: PACK.price, amount: PACK.amount }), customer: customerB };
  const pB3 = { ...packPurchase({ account: B, packId: PACK.id, priceId: PACK.price, amount: PACK.amount }), customer: customerB };
  const S = { ...subscriptionFixture({ account: A, planId: PLANS.basic.id, priceId: PLANS.basic.price, start: T }), customer: customerA };
  const period = (k: number) => ({ periodStart: T + k * MONTH_S, periodEnd: T + (k + 1) * MONTH_S });
  const inv = [stripeId('in'), stripeId('in'), stripeId('in')] as const;
  // C: the team plan (200 a period, up to 150 carried), three daily periods ending after NOW
  const C_START = NOW_S - 2 * DAY_S - DAY_S / 2;
  const SC = { ...subscriptionFixture({ account: C, planId: PLANS.team.id, priceId: PLANS.team.price, start: C_START }), customer: customerC };
  const day = (k: number) => ({ periodStart: C_START + k * DAY_S, periodEnd: C_START + (k + 1) * DAY_S });
  const invC = [stripeId('in'), stripeId('in'), stripeId('in')] as const;

  const events: History['events'] = [
    // A: the subscription, bought through Checkout; its events all land within seconds
    { label: 'S.created', event: subscriptionEvent('created', S, { created: T + 1, status: 'active', ...period(0) }) },
    { label: 'inv1.paid', event: invoicePaid(S, { created: T + 2, invoice: inv[0], billingReason: 'subscription_create', ...period(0) }) },
    { label: 'other.invoice.payment_succeeded', event: otherEvent('invoice.payment_succeeded', { created: T + 2 }) },
    { label: 'S.checkout', event: subscriptionCheckoutCompleted(S, { created: T + 5 }) },
    // A: a pack, paid by card, later refunded in two steps
    { label: 'pA1.completed', event: checkoutCompleted(pA1, { created: T + 3600 }) },
    { label: 'other.charge.succeeded', event: otherEvent('charge.succeeded', { created: T + 3600 }) },
    // B: a pack paid by SEPA debit (async), and one whose debit failed
    { label: 'pB1.completed', event: checkoutCompleted(pB1, { created: T + DAY_S, paymentStatus: 'unpaid' }) },
    { label: 'pB2.completed', event: checkoutCompleted(pB2, { created: T + 2 * DAY_S, paymentStatus: 'unpaid' }) },
    { label: 'pA1.refund300', event: chargeRefunded(pA1, { created: T + 2 * DAY_S + 60, amountRefunded: 300 }) },
    { label: 'pA1.refund900', event: chargeRefunded(pA1, { created: T + 3 * DAY_S, amountRefunded: 900 }) },
    { label: 'pB1.succeeded', event: asyncPaymentSucceeded(pB1, { created: T + 4 * DAY_S }) },
    { label: 'pB2.failed', event: asyncPaymentFailed(pB2, { created: T + 5 * DAY_S }) },
    { label: 'other.customer.created', event: otherEvent('customer.created', { created: T + 5 * DAY_S, object: { id: stripeId('cus', 14), object: 'customer', metadata: {} } }) },
    // B: another pack by card; then a dispute on the first one, lost and later won
    { label: 'pB3.completed', event: checkoutCompleted(pB3, { created: T + 6 * DAY_S }) },
    { label: 'pB1.dispute.withdrawn', event: disputeFundsWithdrawn(pB1, { created: T + 10 * DAY_S }) },
    { label: 'pB1.dispute.reinstated', event: disputeFundsReinstated(pB1, { created: T + 40 * DAY_S }) },
    // A: the first renewal (an old-shape invoice: the endpoint was on an older API version then)
    { label: 'inv2.paid', event: invoicePaid(S, { created: T + MONTH_S + 3600, invoice: inv[1], billingReason: 'subscription_cycle', shape: 'old', ...period(1) }) },
    { label: 'other.invoice.finalized', event: otherEvent('invoice.finalized', { created: T + MONTH_S + 60 }) },
    // A: the upgrade to pro (its proration invoice starts no period), the next renewal on pro, the cancellation
    { label: 'S.updated.pro', event: subscriptionEvent('updated', S, { created: T + MONTH_S + 10 * DAY_S, status: 'active', priceId: PLANS.pro.price, ...period(1) }) },
    { label: 'inv.proration.paid', event: invoicePaid(S, { created: T + MONTH_S + 10 * DAY_S, billingReason: 'subscription_update', priceId: PLANS.pro.price, periodStart: T + MONTH_S + 10 * DAY_S, periodEnd: T + 2 * MONTH_S }) },
    { label: 'inv3.paid', event: invoicePaid(S, { created: T + 2 * MONTH_S + 3600, invoice: inv[2], billingReason: 'subscription_cycle', priceId: PLANS.pro.price, ...period(2) }) },
    { label: 'other.payment_intent.succeeded', event: otherEvent('payment_intent.succeeded', { created: T + 2 * MONTH_S + 3600 }) },
    { label: 'S.deleted', event: subscriptionEvent('deleted', S, { created: T + 2 * MONTH_S + 5 * DAY_S, status: 'canceled', priceId: PLANS.pro.price, ...period(2) }) },
    // C: a rollover subscription renewed daily (one invoice on the older API shape)
    { label: 'SC.created', event: subscriptionEvent('created', SC, { created: C_START + 1, status: 'active', ...day(0) }) },
    { label: 'invC1.paid', event: invoicePaid(SC, { created: C_START + 2, invoice: invC[0], billingReason: 'subscription_create', amountPaid: 4900, ...day(0) }) },
    { label: 'invC2.paid', event: invoicePaid(SC, { created: C_START + DAY_S + 60, invoice: invC[1], billingReason: 'subscription_cycle', amountPaid: 4900, shape: 'old', ...day(1) }) },
    { label: 'invC3.paid', event: invoicePaid(SC, { created: C_START + 2 * DAY_S + 60, invoice: invC[2], billingReason: 'subscription_cycle', amountPaid: 4900, ...day(2) }) },
  ];
  const labels = new Map<string, string>([
    [A, 'A'], [B, 'B'], [C, 'C'], [customerA, 'customerA'], [customerB, 'customerB'], [customerC, 'customerC'],
    [S.subscription, 'S'], [SC.subscription, 'SC'], [invC[0], 'invC1'], [invC[1], 'invC2'], [invC[2], 'invC3'],
    [pA1.paymentIntent, 'pA1'], [pB1.paymentIntent, 'pB1'], [pB2.paymentIntent, 'pB2'], [pB3.paymentIntent, 'pB3'],
    [inv[0], 'inv1'], [inv[1], 'inv2'], [inv[2], 'inv3'],
  ]);
  for (const { label, event } of events) labels.set(event.id, label);
  return { events, labels, accounts: { A, B, C } };
}

const HISTORY_LENGTH = buildHistory().events.length;

/** The end state that must not depend on the order, with every id replaced by its label. */
async function endState(db: TestDatabase, ck: Creditkit, h: History): Promise<Record<string, unknown>> {
  const name = (id: unknown) => (typeof id === 'string' && h.labels.get(id)) || (id === null ? null : `?${String(id)}`);
  const accounts: Record<string, unknown> = {};
  for (const [label, id] of Object.entries(h.accounts)) {
    const balance = (await ck.balance({ p_account_id: id, p_now: NOW })).balance; // books what expired by NOW
    // credit per category and expiry: buckets of the same category, priority and expiry spend as one
    const buckets = await db.query(
      `select category, sum(remaining)::bigint as remaining, ${microsSql('expires_at')} as expires_us
         from ${GRANTS} g where account_id = $1 and remaining > 0
        group by category, expires_at order by category, expires_at nulls last`, [id]);
    const [money] = await db.query<{ revenue: number; cost: number }>(
      `select coalesce(sum(revenue_micros), 0)::bigint as revenue, coalesce(sum(cost_micros), 0)::bigint as cost
         from creditkit.ledger where account_id = $1`, [id]);
    const [sub] = await db.query<Record<string, unknown>>(
      `select plan_id, status, ${microsSql('anchor')} as anchor_us, renews_at, stripe_subscription_id, stripe_customer_id,
              ${microsSql('stripe_event_at')} as event_at_us, stripe_event_rank, stripe_event_id
         from creditkit.subscriptions where account_id = $1`, [id]);
    const [plan] = await db.query('select (creditkit.effective_plan($1)).id as plan_id', [id]);
    const features = {
      api: await ck.hasFeature({ p_account_id: id, p_feature: 'api' }),
      hd: await ck.hasFeature({ p_account_id: id, p_feature: 'hd' }),
    };
    const [customer] = await db.query<{ customer_id: string }>('select customer_id from creditkit.stripe_customers where account_id = $1', [id]);
    accounts[label] = {
      balance, buckets, money, plan, features, customer: name(customer?.customer_id ?? null),
      subscription: sub && {
        ...sub, stripe_subscription_id: name(sub.stripe_subscription_id), stripe_customer_id: name(sub.stripe_customer_id),
        stripe_event_id: name(sub.stripe_event_id),
      },
    };
  }
  const ids = [...h.labels.keys()];
  const payments = Object.fromEntries((await db.query<Record<string, unknown>>(
    `select payment_intent, state, account_id, pack_id, credits, amount_paid, amount_refunded, disputed, clawed_back,
            shortfall, taken_from_grant, grant_id is not null as granted
       from creditkit.stripe_payments where payment_intent = any($1)`, [ids],
  )).map(({ payment_intent, account_id, ...p }) => [name(payment_intent), { ...p, account: name(account_id) }]).sort());
  const invoiceRows = await db.query<{ invoice_id: string; outcome: string; plan_id: string; account_id: string; newest: boolean }>(
    `select i.invoice_id, i.outcome, i.plan_id, i.account_id,
            i.period_start = max(i.period_start) over (partition by i.account_id) as newest
       from creditkit.stripe_invoices i where i.invoice_id = any($1)`, [ids]);
  const invoices = {
    recorded: invoiceRows.map((r) => `${name(r.invoice_id)}:${r.plan_id}:${name(r.account_id)}`).sort(),
    // the newest period's invoice was granted as such; the others are 'granted' or 'late' by order
    newest: invoiceRows.filter((r) => r.newest).map((r) => `${name(r.invoice_id)}:${r.outcome}`).sort(),
    older: invoiceRows.every((r) => r.newest || r.outcome === 'granted' || r.outcome === 'late'),
  };
  const inbox = Object.fromEntries((await db.query<{ id: string; status: string; deliveries: number; error_code: string | null }>(
    'select id, status, deliveries, error_code from creditkit.stripe_events where id = any($1)', [ids],
  )).map((e) => [name(e.id), `${e.status}${e.error_code ? `(${e.error_code})` : ''} x${e.deliveries}`]).sort());
  return { accounts, payments, invoices, inbox };
}

/** A run: which events (by index in the history, repeats are redeliveries) in which order. */
const deliveries = fc
  .array(fc.nat(HISTORY_LENGTH - 1), { maxLength: 6 })
  .chain((dups) => {
    const all = [...Array.from({ length: HISTORY_LENGTH }, (_, i) => i), ...dups];
    return fc.shuffledSubarray(all, { minLength: all.length, maxLength: all.length });
  });

const RUNS = Number(process.env.CREDITKIT_STRIPE_RUNS) || undefined;
const SEED = process.env.CREDITKIT_STRIPE_SEED ? Number(process.env.CREDITKIT_STRIPE_SEED) : undefined;
const PATH = process.env.CREDITKIT_STRIPE_PATH || undefined;

describeEachBackend('stripe: shuffled histories', (backend) => {
  let db: TestDatabase;
  let ck: Creditkit;
  let reference: Record<string, unknown>;
  beforeAll(async () => {
    db = await createTestDatabase({ backend });
    ck = creditkit(runAs.service(db));
    await createCatalogue(ck);
  });
  afterAll(() => db?.drop());

  async function run(order: number[]): Promise<{ state: Record<string, unknown>; h: History }> {
    const h = buildHistory();
    for (const i of order) {
      const { event } = h.events[i]!;
      await ck.call('creditkit_stripe_apply', { p_event: event, p_now: NOW });
    }
    return { state: await endState(db, ck, h), h };
  }

  it('the history applied in order ends where it should', async () => {
    const { state, h } = await run(Array.from({ length: HISTORY_LENGTH }, (_, i) => i));
    reference = state;
    expect(state.accounts).toEqual({
      // the pack refunded in full; the pro allowance of the last period, until it ends; canceled
      A: {
        balance: 500,
        buckets: [{ category: 'plan', remaining: 500, expires_us: (T + 3 * MONTH_S + 3 * DAY_S - T) * SECOND }],
        // the pack's $9 and three invoices' $19 each, in micros; refunds are not subtracted
        money: { revenue: 9_000_000 + 3 * 19_000_000, cost: 0 },
        plan: { plan_id: 'free' }, features: { api: false, hd: false }, customer: 'customerA',
        subscription: {
          plan_id: 'pro', status: 'canceled', anchor_us: 0, renews_at: null, stripe_subscription_id: 'S',
          stripe_customer_id: 'customerA', event_at_us: (2 * MONTH_S + 5 * DAY_S) * SECOND, stripe_event_rank: 4,
          stripe_event_id: 'S.deleted',
        },
      },
      // two packs: the async one (disputed, then reinstated) and the card one; the failed one never granted
      B: {
        balance: 200,
        buckets: [{ category: 'purchase', remaining: 200, expires_us: null }],
        money: { revenue: 2 * 9_000_000, cost: 0 },
        plan: { plan_id: 'free' }, features: { api: false, hd: false }, customer: 'customerB', subscription: undefined,
      },
      // three daily periods of the rollover plan: 200, then 200 + 150 carried, then 200 + 150 carried
      C: {
        balance: 350,
        buckets: [{ category: 'plan', remaining: 350, expires_us: (NOW_S + DAY_S / 2 + 3 * DAY_S - T) * SECOND }],
        money: { revenue: 3 * 49_000_000, cost: 0 },
        plan: { plan_id: 'team' }, features: { api: true, hd: false }, customer: 'customerC',
        subscription: {
          plan_id: 'team', status: 'active', anchor_us: (NOW_S - 2 * DAY_S - DAY_S / 2 - T) * SECOND, renews_at: null,
          stripe_subscription_id: 'SC', stripe_customer_id: 'customerC',
          event_at_us: (NOW_S - DAY_S / 2 + 60 - T) * SECOND, stripe_event_rank: 1, stripe_event_id: 'invC3.paid',
        },
      },
    });
    const pay = (state: string, extra: Record<string, unknown> = {}) => ({
      state, pack_id: PACK.id, credits: 100, amount_paid: 900, amount_refunded: 0, disputed: false, clawed_back: 0,
      shortfall: 0, taken_from_grant: 0, granted: state === 'paid', ...extra,
    });
    expect(state.payments).toEqual({
      pA1: pay('paid', { account: 'A', amount_refunded: 900, clawed_back: 100, taken_from_grant: 100 }),
      pB1: pay('paid', { account: 'B' }),
      pB2: pay('failed', { account: 'B' }),
      pB3: pay('paid', { account: 'B' }),
    });
    expect(state.invoices).toEqual({
      recorded: ['inv1:basic:A', 'inv2:basic:A', 'inv3:pro:A', 'invC1:team:C', 'invC2:team:C', 'invC3:team:C'],
      newest: ['inv3:granted', 'invC3:granted'], older: true,
    });
    expect(Object.keys(state.inbox as object)).toHaveLength(HISTORY_LENGTH);
    expect(Object.values(state.inbox as object).filter((s) => s === 'applied x1')).toHaveLength(HISTORY_LENGTH - 5);
    expect(Object.entries(state.inbox as object).filter(([, s]) => s === 'ignored x1').map(([l]) => l).sort()).toEqual([
      'other.charge.succeeded', 'other.customer.created', 'other.invoice.finalized', 'other.invoice.payment_succeeded', 'other.payment_intent.succeeded',
    ]);
    expect(await ledgerProblems(db, Object.values(h.accounts))).toEqual([]);
  });

  it('any order, with redeliveries, ends in the same state', async () => {
    expect(reference, 'the in-order run must have set the reference').toBeDefined();
    await fc.assert(
      fc.asyncProperty(deliveries, async (order) => {
        const { state, h } = await run(order);
        // redeliveries count in the inbox; everything else must equal the in-order end state
        const counts = new Map<number, number>();
        for (const i of order) counts.set(i, (counts.get(i) ?? 0) + 1);
        const expectedInbox = Object.fromEntries(Object.entries(reference.inbox as Record<string, string>).map(([label, s]) => {
          const i = h.events.findIndex((e) => e.label === label);
          return [label, s.replace(/x1$/, `x${counts.get(i)}`)];
        }));
        const trace = order.map((i) => h.events[i]!.label).join(' → ');
        expect({ ...state, inbox: state.inbox }, `order: ${trace}`).toEqual({ ...reference, inbox: expectedInbox });
        expect(await ledgerProblems(db, Object.values(h.accounts)), `order: ${trace}`).toEqual([]);
      }),
      { numRuns: RUNS ?? (backend === 'pglite' ? 50 : 15), seed: SEED, path: PATH, endOnFailure: PATH !== undefined },
    );
  }, 600_000);
});
