// The operator's analytics on a small fixture with fixed times, every expectation computed by
// hand below. Periods are half-open [p_from, p_to); days are UTC days; money is in micros except
// MRR (the plans' minor unit, cents). The database is this file's own, so the fixture is all
// there is to count.
import { beforeAll, afterAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@creditkit/testing';
import { describeEachBackend } from '@creditkit/testing/vitest';
import { creditkit, expectConsistent, rpc, runAs, usOf, at, type Args, type Creditkit } from './support.ts';

// Accounts, named by what they are; ids chosen so that ties in margin sort C before G.
const A = '00000000-0000-4000-8000-000000000001'; // pro, active; buys 1000 credits; chats and draws
const B = '00000000-0000-4000-8000-000000000002'; // pro, past_due (no allowance granted); buys 500
const C = '00000000-0000-4000-8000-000000000003'; // pro, trialing (allowance granted, pays nothing)
const D = '00000000-0000-4000-8000-000000000004'; // team, yearly 240.00 USD
const E = '00000000-0000-4000-8000-000000000005'; // eu, monthly 15.00 EUR
const F = '00000000-0000-4000-8000-000000000006'; // weekly, 7.00 USD a week
const G = '00000000-0000-4000-8000-000000000007'; // pro, canceled (keeps this period's allowance)
const H = '00000000-0000-4000-8000-000000000008'; // no plan; promotional credit that expires at D2
const I = '00000000-0000-4000-8000-000000000009'; // daily, 1.00 USD a day
const J = '00000000-0000-4000-8000-000000000010'; // no plan; bought credit the day before D1

const FEB_28 = usOf('2030-02-28T00:00:00Z');
const D1 = usOf('2030-03-01T00:00:00Z');
const D2 = usOf('2030-03-02T00:00:00Z');
const D3 = usOf('2030-03-03T00:00:00Z');
const HR = 3_600_000_000;

describeEachBackend('analytics', (backend) => {
  let db: TestDatabase;
  let ck: Creditkit;
  const read = (fn: string, args: Args, columns = '*') => {
    const { sql, params } = rpc(fn, args, columns);
    return db.asService(sql, params);
  };

  beforeAll(async () => {
    db = await createTestDatabase({ backend });
    ck = creditkit(runAs.service(db));
    const plan = (p_id: string, p_name: string, p_period: string, p_price_amount: number, more: Args = {}) =>
      ck.upsertPlan({ p_id, p_name, p_period, p_price_amount, ...more });
    await plan('pro', 'Pro', 'month', 2000, { p_allowance: 100 });
    await plan('team', 'Team', 'year', 24000);
    await plan('eu', 'EU', 'month', 1500, { p_currency: 'eur' });
    await plan('weekly', 'Weekly', 'week', 700);
    await plan('daily', 'Daily', 'day', 100);
    await plan('legacy', 'Legacy', 'month', 5000, { p_active: false });

    const sub = (account: string, plan_id: string, status = 'active', now = D1) =>
      ck.setPlan({ p_account_id: account, p_plan_id: plan_id, p_status: status, p_now: at(now) });
    await sub(A, 'pro'); // + plan grant 100 at D1
    await sub(B, 'pro', 'past_due'); // not live: no grant
    await sub(C, 'pro', 'trialing'); // + plan grant 100 at D1
    await sub(D, 'team');
    await sub(E, 'eu');
    await sub(F, 'weekly');
    await sub(G, 'pro'); // + plan grant 100 at D1
    await sub(G, 'pro', 'canceled', D1 + 1);
    await sub(I, 'daily');

    const spend = (account: string, amount: number, event: string | null, cost: number | null, now: number) =>
      ck.consume({ p_account_id: account, p_amount: amount, p_event: event, p_cost_micros: cost, p_now: at(now) });
    await ck.grant({ p_account_id: J, p_amount: 100, p_revenue_micros: 1_000_000, p_now: at(FEB_28) });
    await spend(J, 2, 'chat', 1_000, D1 - 1); // the last µs before D1
    await spend(J, 3, 'image', 5_000, D1); // the first µs of D1
    await ck.grant({ p_account_id: H, p_amount: 50, p_category: 'promotional', p_expires_at: at(D2), p_now: at(D1 + HR / 2) });
    await ck.grant({ p_account_id: A, p_amount: 1000, p_revenue_micros: 10_000_000, p_now: at(D1 + HR) });
    await spend(A, 10, 'chat', 20_000, D1 + 2 * HR);
    await spend(A, 5, 'chat', 10_000, D1 + 3 * HR);
    await ck.adjust({ p_account_id: A, p_amount: -3, p_reason: 'correction', p_now: at(D1 + 4 * HR) }); // neither granted nor spent
    await ck.grant({ p_account_id: B, p_amount: 500, p_revenue_micros: 5_000_000, p_now: at(D1 + 5 * HR) });
    await spend(B, 60, 'image', 450_000, D1 + 6 * HR);
    await spend(H, 20, 'chat', 40_000, D1 + 12 * HR); // H is not touched again: its 30 left expire unbooked
    await spend(A, 40, 'image', 300_000, D2 + 10 * HR);
    await spend(B, 7, null, null, D3 - 1); // the last µs of D2, no event, no cost
    await spend(A, 1, 'chat', 2_000, D3); // outside [D1, D3)
    await expectConsistent(db);
  });
  afterAll(() => db?.drop());

  const margin = (account: string, granted: number, spent: number, revenue: number, cost: number) => ({
    account_id: account, credits_granted: granted, credits_spent: spent, revenue_micros: revenue, cost_micros: cost, margin_micros: revenue - cost,
  });

  it('creditkit_account_margin: per account over [p_from, p_to), highest margin first', async () => {
    expect(await read('creditkit_account_margin', { p_from: at(D1), p_to: at(D3) })).toEqual([
      // A: granted 100 (plan) + 1000; spent 10 + 5 + 40 (the adjustment and D3's chat do not count);
      //    cost 20000 + 10000 + 300000 = 330000; margin 10000000 - 330000 = 9670000
      margin(A, 1100, 55, 10_000_000, 330_000),
      // B: granted 500; spent 60 + 7; margin 5000000 - 450000 = 4550000
      margin(B, 500, 67, 5_000_000, 450_000),
      // C and G: their plan allowance only; margin 0, ordered by account id
      margin(C, 100, 0, 0, 0),
      margin(G, 100, 0, 0, 0),
      // J: the 3 credits spent at D1 00:00:00.000000 (its grant and the spend 1µs earlier were on Feb 28)
      margin(J, 0, 3, 0, 5_000),
      // H: granted 50 (promotional, no revenue), spent 20 at a cost of 40000
      margin(H, 50, 20, 0, 40_000),
      // D, E, F, I: subscribed to plans without allowance, no ledger rows: not listed
    ]);
    expect(await read('creditkit_account_margin', { p_from: at(D1), p_to: at(D3), p_account_id: A })).toEqual([margin(A, 1100, 55, 10_000_000, 330_000)]);
    // Feb 28: J bought 100 for 1.00 and spent 2 at a cost of 1000: margin 999000
    expect(await read('creditkit_account_margin', { p_from: at(FEB_28), p_to: at(D1) })).toEqual([margin(J, 100, 2, 1_000_000, 1_000)]);
    // D2 only: B spent 7 (no cost, margin 0) ahead of A, who spent 40 at a cost of 300000
    expect(await read('creditkit_account_margin', { p_from: at(D2), p_to: at(D3) })).toEqual([margin(B, 0, 7, 0, 0), margin(A, 0, 40, 0, 300_000)]);
  });

  it('creditkit_usage_series: spending per UTC day and event', async () => {
    const columns = 'day::text as day, event, calls, credits, cost_micros';
    expect(await read('creditkit_usage_series', { p_from: at(D1), p_to: at(D3) }, columns)).toEqual([
      // D1 chat: A 10 + A 5 + H 20 = 35 credits in 3 calls, cost 20000 + 10000 + 40000
      { day: '2030-03-01', event: 'chat', calls: 3, credits: 35, cost_micros: 70_000 },
      // D1 image: J 3 (at 00:00:00.000000) + B 60, cost 5000 + 450000
      { day: '2030-03-01', event: 'image', calls: 2, credits: 63, cost_micros: 455_000 },
      // D2 image: A 40
      { day: '2030-03-02', event: 'image', calls: 1, credits: 40, cost_micros: 300_000 },
      // D2, no event: B 7 at 23:59:59.999999, no cost recorded (0); NULL sorts last
      { day: '2030-03-02', event: null, calls: 1, credits: 7, cost_micros: 0 },
    ]);
    expect(await read('creditkit_usage_series', { p_from: at(D1), p_to: at(D3), p_account_id: A }, columns)).toEqual([
      { day: '2030-03-01', event: 'chat', calls: 2, credits: 15, cost_micros: 30_000 },
      { day: '2030-03-02', event: 'image', calls: 1, credits: 40, cost_micros: 300_000 },
    ]);
    expect(await read('creditkit_usage_series', { p_from: at(FEB_28), p_to: at(D3 + 1), p_event: 'chat' }, columns)).toEqual([
      { day: '2030-02-28', event: 'chat', calls: 1, credits: 2, cost_micros: 1_000 }, // J, 1µs before D1
      { day: '2030-03-01', event: 'chat', calls: 3, credits: 35, cost_micros: 70_000 },
      { day: '2030-03-03', event: 'chat', calls: 1, credits: 1, cost_micros: 2_000 }, // A at D3 00:00:00
    ]);
  });

  it('creditkit_top_events: events by credits spent, with calls, cost and distinct accounts', async () => {
    const top = [
      // image: J 3 + B 60 + A 40 = 103 in 3 calls by 3 accounts, cost 5000 + 450000 + 300000
      { event: 'image', calls: 3, credits: 103, cost_micros: 755_000, accounts: 3 },
      // chat: A 10 + A 5 + H 20 = 35 in 3 calls by 2 accounts
      { event: 'chat', calls: 3, credits: 35, cost_micros: 70_000, accounts: 2 },
      // no event: B 7
      { event: null, calls: 1, credits: 7, cost_micros: 0, accounts: 1 },
    ];
    expect(await read('creditkit_top_events', { p_from: at(D1), p_to: at(D3) })).toEqual(top);
    expect(await read('creditkit_top_events', { p_from: at(D1), p_to: at(D3), p_limit: 2 })).toEqual(top.slice(0, 2));
  });

  it('creditkit_credits_outstanding: credit still spendable at p_now by category; expired credit excluded before it is booked', async () => {
    // plan: A 100 - (10 + 5 + 3 + 40 + 1) = 41 (its plan bucket expires first, so it is spent first),
    //       C 100, G 100 (canceled, still in its period): 241 in 3 accounts
    // purchase: A 1000, B 500 - 67 = 433, J 100 - 5 = 95: 1528 in 3 accounts
    // promotional: H's 50 - 20 = 30 expired at D2 (unbooked): only before D2
    expect(await read('creditkit_credits_outstanding', { p_now: at(D2 + 12 * HR) })).toEqual([
      { category: 'plan', credits: 241, accounts: 3 },
      { category: 'purchase', credits: 1528, accounts: 3 },
    ]);
    expect(await read('creditkit_credits_outstanding', { p_now: at(D2 - 1) })).toEqual([
      { category: 'plan', credits: 241, accounts: 3 },
      { category: 'promotional', credits: 30, accounts: 1 },
      { category: 'purchase', credits: 1528, accounts: 3 },
    ]);
  });

  it('creditkit_accounts_per_plan: accounts by the plan in force (live subscriptions, else the default)', async () => {
    expect(await read('creditkit_accounts_per_plan', {})).toEqual([
      { plan_id: 'free', plan_name: 'Free', accounts: 3 }, // G (canceled), H, J
      { plan_id: 'pro', plan_name: 'Pro', accounts: 3 }, // A, B (past_due is live), C (trialing is live)
      { plan_id: 'daily', plan_name: 'Daily', accounts: 1 },
      { plan_id: 'eu', plan_name: 'EU', accounts: 1 },
      { plan_id: 'team', plan_name: 'Team', accounts: 1 },
      { plan_id: 'weekly', plan_name: 'Weekly', accounts: 1 },
      { plan_id: 'legacy', plan_name: 'Legacy', accounts: 0 },
    ]);
  });

  it('creditkit_mrr: paying subscriptions (active, past_due) normalised to a month, per currency', async () => {
    expect(await read('creditkit_mrr', {})).toEqual([
      // E: 1500 EUR a month
      { currency: 'eur', mrr: 1500, subscriptions: 1 },
      // A 2000 + B 2000 (past_due pays) + D 24000 / 12 = 2000 + F 700 x 52/12 = 3033.33 + I 100 x 365/12 = 3041.67
      // = 12075.00; C (trialing) and G (canceled) pay nothing
      { currency: 'usd', mrr: 12075, subscriptions: 5 },
    ]);
  });
});
