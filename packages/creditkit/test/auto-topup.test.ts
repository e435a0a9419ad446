// Balance alerts and auto top-up, at the SQL API: a debit that crosses a threshold writes its
// events and one pending top-up in its own transaction; the worker's functions claim and record
// charges; the Stripe webhook grants a top-up once (as a pack), records failures, and keeps the
// card on file. The worker's HTTP side (runWorker against the Stripe stand-in) is in
// auto-topup-worker.test.ts; delivery of the events in notifications.test.ts.
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@creditkit/testing';
import { describeEachBackend, describeIfPostgres } from '@creditkit/testing/vitest';
import {
  DAY, HOUR, MINUTE, SECOND, at, creditkit, expectConsistent, newAccountId, newGauge, outcome, pooledRunner, runAs,
  warmPool, type Creditkit,
} from './support.ts';
import { stripeEvent, stripeId, unix, type JsonObject } from './stripe-fixtures.ts';

export const TOPUP_PACK = { id: 'topup-500', credits: 500, amount: 500 };

/** What a test needs to drive the kit as the server, the webhook and the worker would. */
export function topupKit(db: TestDatabase, ck: Creditkit) {
  let clock = 0;
  const apply = async (type: string, object: JsonObject, previous?: JsonObject) => {
    clock += 1;
    const [row] = await ck.call('creditkit_stripe_apply', {
      p_event: stripeEvent(type, object, { created: unix(clock * SECOND), previous }), p_now: at(clock * SECOND),
    });
    return row as { status: string; effect: string; duplicate: boolean };
  };
  return {
    apply,
    /** An account with credits, a Stripe customer and a card saved for off-session use. */
    async customerWithCard(opts: { balance?: number; pm?: string; type?: string } = {}) {
      const account = newAccountId();
      const customer = stripeId('cus');
      const pm = opts.pm ?? stripeId('pm');
      if (opts.balance !== 0) await ck.grant({ p_account_id: account, p_amount: opts.balance ?? 1000, p_now: at(0) });
      else await ck.grant({ p_account_id: account, p_amount: 1, p_now: at(0) }).then(() =>
        ck.consume({ p_account_id: account, p_amount: 1, p_now: at(0) }));
      await ck.call('creditkit_stripe_link_customer', { p_account_id: account, p_customer_id: customer });
      await apply('payment_method.attached', {
        id: pm, object: 'payment_method', type: opts.type ?? 'card', customer,
        card: { brand: 'visa', last4: '4242', exp_month: 12, exp_year: 2034 },
      });
      await apply('setup_intent.succeeded', {
        id: stripeId('seti'), object: 'setup_intent', status: 'succeeded', usage: 'off_session', customer, payment_method: pm,
      });
      return { account, customer, pm };
    },
    /** Cancels every top-up still to charge, so that a test's claims see only its own. */
    clearQueue: () => db.query(`update creditkit.topups set status = 'canceled' where status in ('pending', 'charging')`),
    claim: (now: number, limit = 10) =>
      ck.call('creditkit_worker_claim_topups', { p_limit: limit, p_lease: '2 minutes', p_now: at(now) }) as Promise<Array<{
        topup_id: number; attempt: number; idempotency_key: string; account_id: string; unit: string; amount: number;
        charge_amount: number; currency: string; customer_id: string; payment_method: string; metadata: Record<string, string>;
      }>>,
    result: async (topup: number, attempt: number, outcome: string, pi: string | null, now: number, code?: string) =>
      (await ck.call('creditkit_worker_topup_result', {
        p_topup_id: topup, p_attempt: attempt, p_outcome: outcome, p_payment_intent: pi, p_code: code ?? null, p_now: at(now),
      }))[0] as { status: string; auto_topup_status: string },
    /** payment_intent.succeeded / payment_failed of a claimed top-up, as Stripe would send it. */
    paymentIntent(type: 'payment_intent.succeeded' | 'payment_intent.payment_failed', c: { topup_id: number; charge_amount: number; currency: string; customer_id: string; payment_method: string; metadata: Record<string, string> }, pi: string, error?: { code: string; decline_code?: string }) {
      return apply(type, {
        id: pi, object: 'payment_intent', amount: c.charge_amount, amount_received: type === 'payment_intent.succeeded' ? c.charge_amount : 0,
        currency: c.currency, customer: c.customer_id, payment_method: c.payment_method, off_session: true,
        status: type === 'payment_intent.succeeded' ? 'succeeded' : 'requires_payment_method', metadata: c.metadata,
        last_payment_error: error ? { type: 'card_error', code: error.code, decline_code: error.decline_code ?? null, message: 'Your card was declined.' } : null,
      });
    },
    topups: (account: string) =>
      db.query<{ id: number; status: string; amount: number; failure_code: string | null }>(
        'select id::int, status, amount::int, failure_code from creditkit.topups where account_id = $1 order by id', [account]),
    events: async (account: string) =>
      (await db.query<{ type: string }>('select type from creditkit.notifications where account_id = $1 order by created_at, id', [account]))
        .map((r) => r.type),
    balance: async (account: string, unit = 'credits') =>
      Number((await db.query<{ b: string }>('select balance - held as b from creditkit.accounts where id = $1 and unit = $2', [account, unit]))[0]?.b),
    auto: async (account: string, unit = 'credits') =>
      (await ck.call('creditkit_auto_topup', { p_account_id: account, p_unit: unit }))[0] as Record<string, unknown>,
  };
}

export async function topupCatalogue(ck: Creditkit, opts: { cooldown?: string; amountCap?: number | null; countCap?: number | null } = {}) {
  await ck.call('creditkit_upsert_pack', { p_id: TOPUP_PACK.id, p_name: '500 credits', p_credits: TOPUP_PACK.credits, p_price_amount: TOPUP_PACK.amount });
  await ck.call('creditkit_set_auto_topup_terms', {
    p_unit: 'credits', p_currency: 'usd', p_unit_price: 1, p_min_amount: 100, p_max_amount: 10_000, p_min_threshold: 0,
    p_monthly_amount_cap: opts.amountCap ?? null, p_monthly_count_cap: opts.countCap ?? null, p_cooldown: opts.cooldown ?? '0 seconds',
    p_action_url: 'https://app.example.com/billing?topup={topup_id}&pi={payment_intent}',
  });
}

describeEachBackend('auto top-up and balance alerts', (backend) => {
  let db: TestDatabase;
  let ck: Creditkit;
  let kit: ReturnType<typeof topupKit>;
  beforeAll(async () => {
    db = await createTestDatabase({ backend });
    ck = creditkit(runAs.service(db));
    kit = topupKit(db, ck);
    await topupCatalogue(ck);
  });
  afterAll(() => db?.drop());

  beforeEach(() => kit.clearQueue());

  const enable = (account: string, args: Record<string, unknown> = {}) =>
    ck.call('creditkit_set_auto_topup', { p_account_id: account, p_unit: 'credits', p_enabled: true, p_threshold: 100, p_amount: 500, ...args });

  it('crossing the threshold writes one pending top-up and balance.low at commit; staying below writes no second', async () => {
    const { account } = await kit.customerWithCard({ balance: 300 });
    await ck.call('creditkit_set_account_balance_alert', { p_account_id: account, p_unit: 'credits', p_threshold: 150 });
    await enable(account);
    expect(await kit.topups(account)).toEqual([]);
    await ck.consume({ p_account_id: account, p_amount: 100, p_now: at(HOUR) });   // 200: nothing crossed
    expect(await kit.events(account)).toEqual([]);
    await ck.consume({ p_account_id: account, p_amount: 60, p_now: at(HOUR) });    // 140: low
    expect(await kit.events(account)).toEqual(['balance.low']);
    expect(await kit.topups(account)).toEqual([]);
    await ck.consume({ p_account_id: account, p_amount: 40, p_now: at(HOUR) });    // 100: top-up
    await ck.consume({ p_account_id: account, p_amount: 30, p_now: at(HOUR) });    // 70: still the one
    expect(await kit.topups(account)).toEqual([expect.objectContaining({ status: 'pending', amount: 500 })]);
    expect(await kit.events(account)).toEqual(['balance.low']);
    await ck.consume({ p_account_id: account, p_amount: 70, p_now: at(HOUR) });    // 0: depleted
    expect(await kit.events(account)).toEqual(['balance.low', 'balance.depleted']);
    const [low] = await db.query<{ payload: Record<string, unknown> }>(
      `select payload from creditkit.notifications where account_id = $1 and type = 'balance.low'`, [account]);
    expect(low!.payload).toMatchObject({ account_id: account, unit: 'credits', spendable: 140, threshold: 150 });
    await expectConsistent(db, [account]);
  });

  it('a replayed key that undoes its debit, a refused debit and a rolled-back one trigger nothing', async () => {
    const { account } = await kit.customerWithCard({ balance: 150 });
    await enable(account);
    await ck.consume({ p_account_id: account, p_amount: 10, p_idempotency_key: 'k1', p_now: at(HOUR) });   // 140
    await ck.consume({ p_account_id: account, p_amount: 35, p_now: at(HOUR) });                            // 105
    // the same key again: the fast path debits to 95 (below 100), finds the key, and undoes it
    expect(await ck.consume({ p_account_id: account, p_amount: 10, p_idempotency_key: 'k1', p_now: at(HOUR) }))
      .toMatchObject({ allowed: true, balance: 140 });
    expect(await ck.consume({ p_account_id: account, p_amount: 1000, p_now: at(HOUR) })).toMatchObject({ allowed: false });
    await db.exec(`begin; select creditkit_consume('${account}', 100, p_now => '${at(HOUR)}'); rollback;`);
    expect(await kit.topups(account)).toEqual([]);
    expect(await kit.events(account)).toEqual([]);
    expect(await kit.balance(account)).toBe(105);
  });

  it("the worker's charge, the webhook's grant: credits land once, in any order and on redelivery; a refund claws back", async () => {
    const { account, pm, customer } = await kit.customerWithCard({ balance: 120 });
    await enable(account);
    await ck.consume({ p_account_id: account, p_amount: 30, p_now: at(HOUR) });
    const [claim, ...more] = await kit.claim(HOUR + MINUTE);
    expect(more).toEqual([]);
    expect(claim).toMatchObject({
      account_id: account, unit: 'credits', amount: 500, charge_amount: 500, currency: 'usd', customer_id: customer,
      payment_method: pm, idempotency_key: `creditkit-topup-${claim!.topup_id}`, attempt: 1,
      metadata: { creditkit_topup_id: String(claim!.topup_id), creditkit_account_id: account, creditkit_unit: 'credits', creditkit_amount: '500' },
    });
    expect(await kit.claim(HOUR + MINUTE)).toEqual([]);   // claimed: nobody else gets it
    const pi = stripeId('pi');
    // the webhook first, then the worker's own answer, then the webhook again (a new event id)
    expect((await kit.paymentIntent('payment_intent.succeeded', claim!, pi)).effect).toMatch(/succeeded; granted 500 credits/);
    expect(await kit.result(claim!.topup_id, 1, 'succeeded', pi, HOUR + 2 * MINUTE)).toEqual({ status: 'succeeded', auto_topup_status: 'active' });
    expect((await kit.paymentIntent('payment_intent.succeeded', claim!, pi)).effect).toBe('nothing to change');
    expect(await kit.balance(account)).toBe(590);
    expect(await kit.events(account)).toEqual(['topup.succeeded']);
    // re-armed: the next crossing is a new top-up
    await ck.consume({ p_account_id: account, p_amount: 500, p_now: at(2 * HOUR) });
    expect((await kit.topups(account)).map((t) => t.status)).toEqual(['succeeded', 'pending']);
    // a refund of the first takes its credits back, as for a pack
    const [refund] = await ck.call('creditkit_stripe_apply', {
      p_event: stripeEvent('charge.refunded', {
        id: stripeId('ch'), object: 'charge', payment_intent: pi, amount: 500, amount_refunded: 500, refunded: true,
        currency: 'usd', customer, disputed: false,
      }, { created: unix(3 * HOUR) }), p_now: at(3 * HOUR),
    });
    expect(refund).toMatchObject({ status: 'applied', effect: expect.stringMatching(/took back 90 credits \(410 already spent\)/) });
    await expectConsistent(db, [account]);
  });

  it('a worker that dies after charging: the lease runs out and the same charge (same key) is handed out again', async () => {
    const { account } = await kit.customerWithCard({ balance: 100 });
    await enable(account);
    await ck.consume({ p_account_id: account, p_amount: 1, p_now: at(HOUR) });
    const [first] = await kit.claim(HOUR);
    expect(await kit.claim(HOUR + MINUTE)).toEqual([]);          // within the lease
    const [again] = await kit.claim(HOUR + 3 * MINUTE);          // the lease (2 minutes) ran out
    expect(again).toEqual(first);                                // same top-up, attempt, key, card and amount
    // the dead worker's late answer is no longer current... it is: same attempt, so it counts once
    expect(await kit.result(first!.topup_id, first!.attempt, 'processing', stripeId('pi'), HOUR + 4 * MINUTE))
      .toMatchObject({ status: 'processing' });
    expect(await kit.result(first!.topup_id, first!.attempt, 'declined', null, HOUR + 4 * MINUTE, 'card_declined'))
      .toMatchObject({ status: 'processing' });                  // no longer charging: ignored
  });

  it('no answer from Stripe: the same charge (same key) is tried again; after five tries it gives way to a new top-up, not counted', async () => {
    const { account } = await kit.customerWithCard({ balance: 100 });
    await enable(account);
    await ck.consume({ p_account_id: account, p_amount: 1, p_now: at(HOUR) });
    const keys = new Set<string>();
    for (let n = 1; n <= 5; n++) {
      const [c] = await kit.claim(HOUR + n * MINUTE);
      expect(c, `try ${n}`).toMatchObject({ attempt: n });
      keys.add(c!.idempotency_key);
      expect((await kit.result(c!.topup_id, c!.attempt, 'retry', null, HOUR + n * MINUTE, 'api_error')).status).toBe(n < 5 ? 'pending' : 'failed');
    }
    expect(keys.size).toBe(1);
    expect(await kit.auto(account)).toMatchObject({ status: 'active', failures: 0 });
    expect((await kit.topups(account)).map((t) => [t.status, t.failure_code])).toEqual([['failed', 'api_error'], ['pending', null]]);
    const [next] = await kit.claim(HOUR + 10 * MINUTE);
    expect(keys.has(next!.idempotency_key)).toBe(false);
  });

  it('a decline counts; the third in a row turns auto top-up off until the card changes', async () => {
    const { account, customer } = await kit.customerWithCard({ balance: 100 });
    await enable(account);
    await ck.consume({ p_account_id: account, p_amount: 1, p_now: at(HOUR) });
    for (const n of [1, 2, 3]) {
      const [c] = await kit.claim(HOUR + n * MINUTE);
      expect(c, `attempt ${n}`).toBeDefined();
      const r = await kit.result(c!.topup_id, c!.attempt, 'declined', null, HOUR + n * MINUTE, 'card_declined');
      expect(r).toEqual({ status: 'failed', auto_topup_status: n < 3 ? 'active' : 'disabled' });
    }
    expect(await kit.claim(HOUR + 10 * MINUTE)).toEqual([]);
    expect(await kit.auto(account)).toMatchObject({ status: 'disabled', status_reason: 'failures', failures: 3, enabled: true });
    expect(await kit.events(account)).toEqual(['topup.failed', 'topup.failed', 'topup.failed']);
    // a new card: on again, and still below the threshold, so a top-up starts
    const pm2 = stripeId('pm');
    await kit.apply('setup_intent.succeeded', { id: stripeId('seti'), object: 'setup_intent', usage: 'off_session', customer, payment_method: pm2 });
    expect(await kit.auto(account)).toMatchObject({ status: 'active', failures: 0, payment_method: expect.objectContaining({ id: pm2 }) });
    const [c] = await kit.claim(HOUR + 20 * MINUTE);
    expect(c).toMatchObject({ account_id: account, payment_method: pm2 });
  });

  it('authentication_required pauses auto top-up with a link; paying it on-session lands the credits and resumes', async () => {
    const { account } = await kit.customerWithCard({ balance: 100 });
    await enable(account);
    await ck.consume({ p_account_id: account, p_amount: 1, p_now: at(HOUR) });
    const [c] = await kit.claim(HOUR);
    const pi = stripeId('pi');
    // Stripe's payment_intent.payment_failed can come before the worker's answer
    await kit.paymentIntent('payment_intent.payment_failed', c!, pi, { code: 'authentication_required' });
    expect(await kit.result(c!.topup_id, c!.attempt, 'requires_action', pi, HOUR, 'authentication_required'))
      .toEqual({ status: 'action_required', auto_topup_status: 'action_required' });
    const auto = await kit.auto(account);
    expect(auto).toMatchObject({ status: 'action_required', status_reason: 'authentication_required' });
    expect((auto.last_topup as Record<string, unknown>).action_url).toBe(`https://app.example.com/billing?topup=${c!.topup_id}&pi=${pi}`);
    expect(await kit.events(account)).toEqual(['topup.action_required']);
    await ck.consume({ p_account_id: account, p_amount: 1, p_now: at(2 * HOUR) });
    expect(await kit.claim(2 * HOUR)).toEqual([]);               // paused: no second charge
    await kit.paymentIntent('payment_intent.succeeded', c!, pi);  // the customer paid on-session
    expect(await kit.auto(account)).toMatchObject({ status: 'active' });
    expect(await kit.balance(account)).toBe(598);
  });

  it('cooldown and monthly caps hold; a capped top-up waits for the next month', async () => {
    await ck.call('creditkit_set_auto_topup_terms', {
      p_unit: 'credits', p_currency: 'usd', p_unit_price: 1, p_min_amount: 100, p_max_amount: 10_000,
      p_monthly_count_cap: 2, p_cooldown: '1 hour',
    });
    try {
      const { account } = await kit.customerWithCard({ balance: 100 });
      await enable(account, { p_amount: 100 });
      const charge = async (now: number) => {
        const [c] = await kit.claim(now);
        if (!c) return null;
        await kit.result(c.topup_id, c.attempt, 'succeeded', `pi_${c.topup_id}x`, now);
        await kit.paymentIntent('payment_intent.succeeded', c, `pi_${c.topup_id}x`);
        await ck.consume({ p_account_id: account, p_amount: 100, p_now: at(now) });   // back at the threshold
        return c.topup_id;
      };
      await ck.consume({ p_account_id: account, p_amount: 1, p_now: at(0) });
      expect(await charge(HOUR)).not.toBeNull();
      expect(await charge(HOUR + 30 * MINUTE)).toBeNull();         // cooldown
      expect(await charge(2 * HOUR + MINUTE)).not.toBeNull();      // after it
      expect(await charge(4 * HOUR)).toBeNull();                   // 2 this month: capped
      expect((await kit.topups(account)).at(-1)).toMatchObject({ status: 'pending', failure_code: 'monthly_cap_reached' });
      expect(await charge(32 * DAY)).not.toBeNull();               // next month
    } finally {
      await topupCatalogue(ck);
    }
  });

  it('switched on while already below the threshold, it tops up at once; off drops a top-up not charged yet', async () => {
    const { account } = await kit.customerWithCard({ balance: 50 });
    await enable(account, { p_target: 1000, p_amount: null });
    expect(await kit.topups(account)).toEqual([expect.objectContaining({ status: 'pending', amount: 950 })]);
    await ck.call('creditkit_set_auto_topup', { p_account_id: account, p_unit: 'credits', p_enabled: false });
    expect(await kit.topups(account)).toEqual([expect.objectContaining({ status: 'canceled' })]);
    expect(await kit.auto(account)).toMatchObject({ enabled: false, status: 'off' });
    await enable(account, { p_pack_id: TOPUP_PACK.id, p_amount: null });
    expect((await kit.topups(account)).at(-1)).toMatchObject({ status: 'pending', amount: TOPUP_PACK.credits });
  });

  it('hysteresis: a balance hovering at the threshold is low once and recovers once, clear of it', async () => {
    const account = newAccountId();
    await ck.grant({ p_account_id: account, p_amount: 105, p_now: at(0) });
    await ck.call('creditkit_set_account_balance_alert', { p_account_id: account, p_unit: 'credits', p_threshold: 100 });
    for (let i = 0; i < 5; i++) {
      await ck.consume({ p_account_id: account, p_amount: 6, p_now: at(HOUR) });   // 99
      await ck.grant({ p_account_id: account, p_amount: 6, p_now: at(HOUR) });     // 105: not clear of 100 + 10
    }
    expect(await kit.events(account)).toEqual(['balance.low']);
    await ck.grant({ p_account_id: account, p_amount: 5, p_now: at(HOUR) });       // 110: recovered
    await ck.consume({ p_account_id: account, p_amount: 10, p_now: at(HOUR) });    // 100: low again
    expect(await kit.events(account)).toEqual(['balance.low', 'balance.recovered', 'balance.low']);
    expect((await ck.call('creditkit_balance_alert', { p_account_id: account }))[0])
      .toMatchObject({ threshold: 100, source: 'account', state: 'low', spendable: 100 });
  });

  it("the unit's default threshold (absolute or % of the plan allowance) applies quietly to rows already below it", async () => {
    await ck.upsertUnit({ p_id: 'tokens', p_name: 'Tokens', p_kind: 'metered' });
    const [below, above] = [newAccountId(), newAccountId()];
    await ck.grant({ p_account_id: below, p_amount: 10, p_now: at(0), p_unit: 'tokens' });
    await ck.grant({ p_account_id: above, p_amount: 300, p_now: at(0), p_unit: 'tokens' });
    await ck.call('creditkit_set_balance_alert', { p_unit: 'tokens', p_threshold: 50 });
    expect([...await kit.events(below), ...await kit.events(above)]).toEqual([]);
    await ck.consume({ p_account_id: below, p_amount: 10, p_now: at(HOUR), p_unit: 'tokens' });
    await ck.consume({ p_account_id: above, p_amount: 260, p_now: at(HOUR), p_unit: 'tokens' });
    expect(await kit.events(below)).toEqual(['balance.depleted']);
    expect(await kit.events(above)).toEqual(['balance.low']);
    // a row that opens after the default was set is watched from its first grant
    const late = newAccountId();
    await ck.grant({ p_account_id: late, p_amount: 60, p_now: at(0), p_unit: 'tokens' });
    await ck.consume({ p_account_id: late, p_amount: 20, p_now: at(HOUR), p_unit: 'tokens' });
    expect(await kit.events(late)).toEqual(['balance.low']);
    // a percentage of the plan's allowance
    await ck.upsertPlan({ p_id: 'tokens-plan', p_name: 'Tokens plan', p_allowance: 0 });
    await ck.setPlanLimit({ p_plan_id: 'tokens-plan', p_unit: 'tokens', p_allowance: 1000, p_period: 'month' });
    await ck.call('creditkit_set_balance_alert', { p_unit: 'tokens', p_threshold: null, p_percent: 20 });
    const planned = newAccountId();
    await ck.setPlan({ p_account_id: planned, p_plan_id: 'tokens-plan', p_now: at(0) });
    expect((await ck.call('creditkit_balance_alert', { p_account_id: planned, p_unit: 'tokens' }))[0])
      .toMatchObject({ threshold: 200, source: 'unit' });
    await ck.call('creditkit_set_balance_alert', { p_unit: 'tokens', p_threshold: null });
    expect((await ck.call('creditkit_balance_alert', { p_account_id: planned, p_unit: 'tokens' }))[0])
      .toMatchObject({ threshold: null, source: null });
  });

  it('refuses what it cannot do, with stable codes, and changes nothing', async () => {
    const bare = newAccountId();
    await ck.grant({ p_account_id: bare, p_amount: 100, p_now: at(0) });
    expect(await outcome(enable(bare))).toBe('CK016');                                     // no card on file
    const sepa = await kit.customerWithCard({ type: 'sepa_debit' });
    expect(await outcome(enable(sepa.account))).toBe('CK016');                             // settles days later
    const { account } = await kit.customerWithCard();
    expect(await outcome(enable(account, { p_unit: 'nope' }))).toBe('CK015');
    expect(await outcome(enable(account, { p_unit: 'tokens' }))).toBe('CK016');            // no terms for the unit
    expect(await outcome(enable(account, { p_amount: 50 }))).toBe('CK001');                // below the minimum
    expect(await outcome(enable(account, { p_amount: 20_000 }))).toBe('CK001');
    expect(await outcome(enable(account, { p_target: 1000 }))).toBe('CK006');              // two modes
    expect(await outcome(enable(account, { p_amount: null, p_target: 50 }))).toBe('CK001'); // target below the threshold
    expect(await outcome(enable(account, { p_amount: null, p_pack_id: 'nope' }))).toBe('CK013');
    expect(await outcome(enable(account, { p_threshold: null }))).toBe('CK006');
    expect(await outcome(enable(account, { p_threshold: -1 }))).toBe('CK006');
    expect(await outcome(enable(account, { p_enabled: null }))).toBe('CK006');
    expect(await outcome(enable(newAccountId()))).toBe('CK003');
    expect(await outcome(enable(account, { p_now: 'infinity' }))).toBe('CK006');
    expect(await outcome(ck.call('creditkit_worker_topup_result', { p_topup_id: 999_999_999, p_attempt: 1, p_outcome: 'declined' }))).toBe('CK018');
    expect(await outcome(ck.call('creditkit_worker_topup_result', { p_topup_id: 1, p_attempt: 1, p_outcome: 'maybe' }))).toBe('CK006');
    expect(await outcome(ck.call('creditkit_worker_claim_topups', { p_limit: 0 }))).toBe('CK006');
    expect(await outcome(ck.call('creditkit_set_account_balance_alert', { p_account_id: account, p_unit: 'credits', p_threshold: 10, p_percent: 5 }))).toBe('CK006');
    expect(await outcome(ck.call('creditkit_set_account_balance_alert', { p_account_id: account, p_unit: 'credits', p_threshold: -5 }))).toBe('CK001');
    expect(await outcome(ck.call('creditkit_set_auto_topup_terms', { p_unit: 'credits', p_currency: 'USD', p_unit_price: 1, p_min_amount: 1, p_max_amount: 2 }))).toBe('CK006');
    expect(await outcome(ck.call('creditkit_set_auto_topup_terms', { p_unit: 'credits', p_currency: 'usd', p_unit_price: 0, p_min_amount: 1, p_max_amount: 2 }))).toBe('CK006');
    expect(await outcome(ck.call('creditkit_set_auto_topup_terms', { p_unit: 'credits', p_currency: 'usd', p_unit_price: 1, p_min_amount: 5, p_max_amount: 2 }))).toBe('CK001');
    expect(await kit.topups(account)).toEqual([]);
    expect(await kit.auto(account)).toMatchObject({ enabled: false, status: 'off' });
  });

  it('signed-in users set and read their own auto top-up and threshold, and nobody else\'s', async () => {
    const { account } = await kit.customerWithCard({ balance: 400 });
    const other = newAccountId();
    const me = creditkit(runAs.user(db, account));
    const [mine] = await me.call('creditkit_my_set_auto_topup', { p_unit: 'credits', p_enabled: true, p_threshold: 200, p_amount: 300 });
    expect(mine).toMatchObject({ account_id: account, enabled: true, status: 'active', threshold: 200, amount: 300, currency: 'usd',
      payment_method: { brand: 'visa', last4: '4242', type: 'card' } });
    expect((await me.call('creditkit_my_auto_topup', {}))[0]).toMatchObject({ status: 'active' });
    expect((await me.call('creditkit_my_set_balance_alert', { p_unit: 'credits', p_threshold: 250 }))[0])
      .toMatchObject({ threshold: 250, source: 'account', state: 'ok' });
    expect(await outcome(me.call('creditkit_my_set_auto_topup', { p_unit: 'credits', p_enabled: false, p_account_id: other }))).toBe('CK005');
    expect(await outcome(me.call('creditkit_my_topups', { p_account_id: other }))).toBe('CK005');
    expect(await outcome(me.call('creditkit_set_auto_topup', { p_account_id: account, p_unit: 'credits', p_enabled: false }))).toBe('42501');
    expect(await outcome(me.call('creditkit_worker_claim_topups', {}))).toBe('42501');
    const anon = creditkit(runAs.anon(db));
    expect(await outcome(anon.call('creditkit_my_auto_topup', {}))).toBe('42501');
    expect(await outcome(anon.call('creditkit_my_set_auto_topup', { p_unit: 'credits', p_enabled: false }))).toBe('42501');
    expect((await me.call('creditkit_auto_topup_terms', {}))[0]).toMatchObject({ unit: 'credits', currency: 'usd' });
    await ck.consume({ p_account_id: account, p_amount: 200, p_now: at(HOUR) });
    expect(await me.call('creditkit_my_topups', {})).toEqual([expect.objectContaining({ status: 'pending', amount: 300 })]);
  });
});

describeIfPostgres('auto top-up under concurrency', () => {
  let db: TestDatabase;
  let ck: Creditkit;
  let kit: ReturnType<typeof topupKit>;
  beforeAll(async () => {
    db = await createTestDatabase({ backend: 'postgres' });
    ck = creditkit(runAs.service(db));
    kit = topupKit(db, ck);
    await topupCatalogue(ck);
  });
  afterAll(() => db?.drop());

  it('50 concurrent debits crossing one threshold make one top-up; two workers claim it once', async () => {
    const { account } = await kit.customerWithCard({ balance: 150 });
    await ck.call('creditkit_set_auto_topup', { p_account_id: account, p_unit: 'credits', p_enabled: true, p_threshold: 100, p_amount: 500 });
    const pool = db.pool({ max: 25 });
    await warmPool(pool, 25);
    const run = pooledRunner(pool, 'service_role', { role: 'service_role' }, newGauge());
    const svc = creditkit(run);
    const results = await Promise.all(Array.from({ length: 50 }, () => svc.consume({ p_account_id: account, p_amount: 2, p_now: at(HOUR) })));
    expect(results.filter((r) => r.allowed)).toHaveLength(50);
    expect(await kit.topups(account)).toEqual([expect.objectContaining({ status: 'pending' })]);
    const claims = await Promise.all([0, 1, 2, 3].map(() => svc.call('creditkit_worker_claim_topups', { p_now: at(HOUR) })));
    expect(claims.flat()).toHaveLength(1);
    await pool.end();
    await expectConsistent(db, [account]);
  });
});
