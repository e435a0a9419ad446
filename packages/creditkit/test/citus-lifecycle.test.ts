// creditkit on Citus: the lifecycle beyond grant and consume, through the coordinator (issue 25,
// "everything still holds on the cluster"). Plans (creditkit_upsert_plan, creditkit_set_plan), the
// lazy renewal and expiry a touch books, holds (reserve, then settle, release or expiry), the
// optional sweep (creditkit_book_expired) and the plan count (creditkit_accounts_per_plan), each on
// an account on either worker, called as the kit's server role in a transaction block (as PostgREST
// calls: run on the coordinator, a round trip per statement, not delegated). Every answer is
// checked exactly, and after each test the books of every account it touched hold
// (BOOKS_OF_ONE_ACCOUNT). docs/citus.md, "Calls through the coordinator", F3, F5, F6, F7.
//
// One database serves the file, so each test keeps to its own plans and its own years: the sweep
// visits every account due by its p_now, and nothing another test made is due before 2040.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { CitusDatabase, Row } from '@creditkit/testing';
import { describeIfCitus } from '@creditkit/testing/vitest';
import { creditkit, runAs, type Creditkit } from './support.ts';
import { accountsOnEveryWorker, distributedDatabase, expectBooks } from './citus-support.ts';

/**
 * The ledger of an account in credits, oldest first: kind and amount. (Every call here runs on the
 * coordinator, a transaction block is not delegated, so the ids come from its range, in order: D1.)
 */
async function ledgerOf(db: CitusDatabase, account: string): Promise<Array<[string, number]>> {
  const rows = await db.query<{ kind: string; amount: number }>(
    `select kind, amount::int as amount from creditkit.ledger where account_id = $1 and unit = 'credits' order by id`,
    [account],
  );
  return rows.map((r) => [r.kind, r.amount]);
}

const iso = (s: string) => new Date(s);

describeIfCitus('creditkit lifecycle on Citus: plans, renewal, expiry and holds through the coordinator', () => {
  let db: CitusDatabase;
  let ck: Creditkit;

  beforeAll(async () => {
    db = await distributedDatabase();
    ck = creditkit(runAs.service(db));
  }, 300_000);

  afterAll(async () => {
    await db?.drop();
  }, 120_000);

  it('creditkit_upsert_plan creates and updates a plan, without the caller setting sequential mode (F6)', async () => {
    expect(await ck.upsertPlan({ p_id: 'life-pro', p_name: 'Pro', p_allowance: 1000 })).toMatchObject({
      id: 'life-pro', name: 'Pro', allowance: 1000, period: 'month', renewal: 'reset', is_default: false, active: true,
    });
    // an update reads the plan's subscriptions on every shard before it writes the reference table
    expect(await ck.upsertPlan({ p_id: 'life-pro', p_name: 'Pro plan', p_allowance: 1000, p_features: { api: true } })).toMatchObject({
      id: 'life-pro', name: 'Pro plan', allowance: 1000, features: { api: true },
    });
    expect(await db.query('select id, name, allowance::int as allowance from creditkit.plans where id = $1', ['life-pro'])).toEqual([
      { id: 'life-pro', name: 'Pro plan', allowance: 1000 },
    ]);
  }, 60_000);

  it('creditkit_set_plan grants the allowance and writes plan.changed, on both workers', async () => {
    await ck.upsertPlan({ p_id: 'life-start', p_name: 'Start', p_allowance: 300 });
    const accounts = await accountsOnEveryWorker(db);
    for (const account of accounts) {
      expect(await ck.setPlan({ p_account_id: account, p_plan_id: 'life-start', p_now: '2041-03-10T00:00:00Z' })).toEqual({
        plan_id: 'life-start', status: 'active',
        period_start: iso('2041-03-10T00:00:00Z'), period_end: iso('2041-04-10T00:00:00Z'), balance: 300,
      });
      expect(await ledgerOf(db, account)).toEqual([['grant', 300]]);
      const notes = await db.query<{ type: string; plan: string }>(
        `select type, payload ->> 'plan_id' as plan from creditkit.notifications where account_id = $1 order by created_at, id`, [account]);
      expect(notes).toEqual([{ type: 'plan.changed', plan: 'life-start' }]);
    }
    await expectBooks(db, accounts);
  }, 60_000);

  it('a consume after the period end books the renewal (the lazy renewal), on both workers', async () => {
    await ck.upsertPlan({ p_id: 'life-renew', p_name: 'Renew', p_allowance: 1000 });
    const accounts = await accountsOnEveryWorker(db);
    for (const account of accounts) {
      await ck.setPlan({ p_account_id: account, p_plan_id: 'life-renew', p_now: '2042-01-01T00:00:00Z' });
      expect(await ck.consume({ p_account_id: account, p_amount: 100, p_now: '2042-01-15T00:00:00Z' })).toMatchObject({
        allowed: true, balance: 900,
      });
      // after the period end: the old bucket's 900 expire, period 1's 1000 are granted, then the debit
      expect(await ck.consume({ p_account_id: account, p_amount: 30, p_now: '2042-02-03T00:00:00Z' })).toMatchObject({
        allowed: true, balance: 970,
      });
      expect(await ledgerOf(db, account)).toEqual([['grant', 1000], ['consume', -100], ['expire', -900], ['grant', 1000], ['consume', -30]]);
      expect(await db.query(
        `select period_index, renews_at from creditkit.subscriptions where account_id = $1`, [account])).toEqual([
        { period_index: 1, renews_at: iso('2042-03-01T00:00:00Z') },
      ]);
      expect(await db.query(`select due_at from creditkit.accounts where id = $1 and unit = 'credits'`, [account])).toEqual([
        { due_at: iso('2042-03-01T00:00:00Z') },
      ]);
    }
    await expectBooks(db, accounts);
  }, 60_000);

  it('a consume after a grant\'s expiry books the expiry first, on both workers', async () => {
    const accounts = await accountsOnEveryWorker(db);
    for (const account of accounts) {
      await ck.grant({ p_account_id: account, p_amount: 100, p_category: 'promotional', p_expires_at: '2043-05-02T00:00:00Z', p_now: '2043-05-01T00:00:00Z' });
      await ck.grant({ p_account_id: account, p_amount: 50, p_now: '2043-05-01T00:00:00Z' });
      expect(await ck.consume({ p_account_id: account, p_amount: 10, p_now: '2043-05-01T12:00:00Z' })).toMatchObject({ allowed: true, balance: 140 });
      // 90 of the promotional bucket were left (it is spent first): they expire, then 10 more of the 50
      expect(await ck.consume({ p_account_id: account, p_amount: 10, p_now: '2043-05-03T00:00:00Z' })).toMatchObject({ allowed: true, balance: 40 });
      expect(await ledgerOf(db, account)).toEqual([['grant', 100], ['grant', 50], ['consume', -10], ['expire', -90], ['consume', -10]]);
      expect(await ck.balance({ p_account_id: account, p_now: '2043-05-03T00:00:00Z' })).toMatchObject({ balance: 40 });
      expect(await db.query(
        `select category, remaining::int as remaining from creditkit.grants where account_id = $1 order by id`, [account])).toEqual([
        { category: 'promotional', remaining: 0 },
        { category: 'purchase', remaining: 40 },
      ]);
    }
    await expectBooks(db, accounts);
  }, 60_000);

  it('reserve then settle: the charge and the freed rest, below and above the reserve, and a retry, on both workers', async () => {
    const accounts = await accountsOnEveryWorker(db);
    for (const account of accounts) {
      await ck.grant({ p_account_id: account, p_amount: 500, p_now: '2044-01-01T00:00:00Z' });
      const hold = await ck.reserve({ p_account_id: account, p_amount: 200, p_event: 'chat', p_now: '2044-01-01T00:00:00Z' });
      expect(hold).toMatchObject({ allowed: true, balance: 300, expires_at: iso('2044-01-01T00:15:00Z') });
      // the fast path: nothing due, the hold open
      const settled = await ck.settleHold({ p_hold_id: hold.hold_id, p_actual: 120, p_now: '2044-01-01T00:05:00Z' });
      expect(settled).toMatchObject({ charged: 120, shortfall: 0, balance: 380 });
      // a retry with the same amount: the first result (the slow path: the hold is settled)
      expect(await ck.settleHold({ p_hold_id: hold.hold_id, p_actual: 120, p_now: '2044-01-01T00:06:00Z' })).toEqual(settled);
      const second = await ck.reserve({ p_account_id: account, p_amount: 50, p_now: '2044-01-01T00:10:00Z' });
      expect(await ck.settleHold({ p_hold_id: second.hold_id, p_actual: 70, p_now: '2044-01-01T00:11:00Z' })).toMatchObject({
        charged: 70, shortfall: 0, balance: 310,
      });
      expect(await db.query(
        `select status, settled_amount::int as settled, charged::int as charged, transaction_id is not null as booked
           from creditkit.holds where account_id = $1 order by created_at`, [account])).toEqual([
        { status: 'settled', settled: 120, charged: 120, booked: true },
        { status: 'settled', settled: 70, charged: 70, booked: true },
      ]);
      expect(await ledgerOf(db, account)).toEqual([['grant', 500], ['consume', -120], ['consume', -70]]);
      expect(await ck.balance({ p_account_id: account, p_now: '2044-01-01T00:12:00Z' })).toMatchObject({ balance: 310 });
    }
    await expectBooks(db, accounts);
  }, 60_000);

  it('settle on the slow path: a hold settled after a bucket expired books the expiry first, on both workers', async () => {
    const accounts = await accountsOnEveryWorker(db);
    for (const account of accounts) {
      await ck.grant({ p_account_id: account, p_amount: 100, p_category: 'promotional', p_expires_at: '2044-06-01T01:00:00Z', p_now: '2044-06-01T00:00:00Z' });
      await ck.grant({ p_account_id: account, p_amount: 100, p_now: '2044-06-01T00:00:00Z' });
      const hold = await ck.reserve({ p_account_id: account, p_amount: 40, p_ttl: '2 hours', p_now: '2044-06-01T00:00:00Z' });
      // the promotional bucket expired at 01:00 under the open hold: 40 of it stay for the hold, 60 expire
      expect(await ck.settleHold({ p_hold_id: hold.hold_id, p_actual: 30, p_now: '2044-06-01T01:30:00Z' })).toMatchObject({
        charged: 30, shortfall: 0, balance: 100,
      });
      expect(await ledgerOf(db, account)).toEqual([['grant', 100], ['grant', 100], ['expire', -60], ['consume', -30], ['expire', -10]]);
    }
    await expectBooks(db, accounts);
  }, 60_000);

  it('reserve then release: the credit comes back, releasing again changes nothing, on both workers', async () => {
    const accounts = await accountsOnEveryWorker(db);
    for (const account of accounts) {
      await ck.grant({ p_account_id: account, p_amount: 80, p_now: '2045-01-01T00:00:00Z' });
      const hold = await ck.reserve({ p_account_id: account, p_amount: 60, p_now: '2045-01-01T00:00:00Z' });
      expect(hold).toMatchObject({ allowed: true, balance: 20 });
      expect(await ck.release({ p_hold_id: hold.hold_id, p_now: '2045-01-01T00:01:00Z' })).toEqual({ status: 'released', balance: 80 });
      expect(await ck.release({ p_hold_id: hold.hold_id, p_now: '2045-01-01T00:02:00Z' })).toEqual({ status: 'released', balance: 80 });
      expect(await db.query(`select status, resolved_at from creditkit.holds where account_id = $1`, [account])).toEqual([
        { status: 'released', resolved_at: iso('2045-01-01T00:01:00Z') },
      ]);
      expect(await ledgerOf(db, account)).toEqual([['grant', 80]]);
      expect(await ck.balance({ p_account_id: account, p_now: '2045-01-01T00:03:00Z' })).toMatchObject({ balance: 80 });
    }
    await expectBooks(db, accounts);
  }, 60_000);

  it('a hold that expires frees its credit at the next touch; settling it then is CK012, on both workers', async () => {
    const accounts = await accountsOnEveryWorker(db);
    for (const account of accounts) {
      await ck.grant({ p_account_id: account, p_amount: 100, p_now: '2046-01-01T00:00:00Z' });
      const hold = await ck.reserve({ p_account_id: account, p_amount: 70, p_ttl: '10 minutes', p_now: '2046-01-01T00:00:00Z' });
      expect(await ck.consume({ p_account_id: account, p_amount: 50, p_now: '2046-01-01T00:05:00Z' })).toMatchObject({ allowed: false, balance: 30 });
      // after its expiry the consume books it (the slow path: due_at is the hold's expiry)
      expect(await ck.consume({ p_account_id: account, p_amount: 50, p_now: '2046-01-01T00:10:00Z' })).toMatchObject({ allowed: true, balance: 50 });
      expect(await db.query(`select status, resolved_at from creditkit.holds where account_id = $1`, [account])).toEqual([
        { status: 'expired', resolved_at: iso('2046-01-01T00:10:00Z') },
      ]);
      await expect(ck.settleHold({ p_hold_id: hold.hold_id, p_actual: 10, p_now: '2046-01-01T00:11:00Z' })).rejects.toMatchObject({ code: 'CK012' });
      expect(await ck.release({ p_hold_id: hold.hold_id, p_now: '2046-01-01T00:11:00Z' })).toEqual({ status: 'expired', balance: 50 });
      expect(await ledgerOf(db, account)).toEqual([['grant', 100], ['consume', -50]]);
    }
    await expectBooks(db, accounts);
  }, 60_000);

  it('creditkit_book_expired books expired credit, renewals and expired holds of accounts on both workers', async () => {
    await ck.upsertPlan({ p_id: 'life-sweep', p_name: 'Sweep', p_allowance: 200 });
    // everything else in this database is due in 2040 or later
    const [a, b] = await accountsOnEveryWorker(db);
    const [c] = await accountsOnEveryWorker(db);
    await ck.grant({ p_account_id: a, p_amount: 100, p_category: 'promotional', p_expires_at: '2031-01-02T00:00:00Z', p_now: '2031-01-01T00:00:00Z' });
    await ck.grant({ p_account_id: a, p_amount: 5, p_now: '2031-01-01T00:00:00Z' });
    await ck.setPlan({ p_account_id: b, p_plan_id: 'life-sweep', p_now: '2031-01-01T00:00:00Z' });
    await ck.grant({ p_account_id: c, p_amount: 30, p_now: '2031-01-01T00:00:00Z' });
    await ck.reserve({ p_account_id: c, p_amount: 20, p_ttl: '1 hour', p_now: '2031-01-01T00:00:00Z' });

    expect(await ck.bookExpired({ p_now: '2031-01-01T00:59:59Z' })).toBe(0);
    expect(await ck.bookExpired({ p_now: '2031-02-05T00:00:00Z', p_limit: 2 })).toBe(2);
    expect(await ck.bookExpired({ p_now: '2031-02-05T00:00:00Z' })).toBe(1);
    expect(await ck.bookExpired({ p_now: '2031-02-05T00:00:00Z' })).toBe(0);

    expect(await ledgerOf(db, a!)).toEqual([['grant', 100], ['grant', 5], ['expire', -100]]);
    expect(await ledgerOf(db, b!)).toEqual([['grant', 200], ['expire', -200], ['grant', 200]]);
    expect(await ledgerOf(db, c!)).toEqual([['grant', 30]]);
    expect(await db.query(`select status from creditkit.holds where account_id = $1`, [c])).toEqual([{ status: 'expired' }]);
    const rows = await db.query<{ id: string; balance: number; held: number; due_at: Date | null }>(
      `select id::text, balance::int as balance, held::int as held, due_at from creditkit.accounts
        where id = any($1::uuid[]) and unit = 'credits'`, [[a, b, c]]);
    const byId = Object.fromEntries(rows.map((r) => [r.id, { balance: r.balance, held: r.held, due_at: r.due_at }]));
    expect(byId).toEqual({
      [a!]: { balance: 5, held: 0, due_at: null },
      [b!]: { balance: 200, held: 0, due_at: iso('2031-03-01T00:00:00Z') },
      [c!]: { balance: 30, held: 0, due_at: null },
    });
    await expectBooks(db, [a!, b!, c!]);
  }, 60_000);

  // creditkit_accounts_per_plan is SECURITY INVOKER (an analytics read): called by the superuser it
  // runs (the plan in force is a join now, F7); called as service_role, Citus connects to the
  // workers as that role, which cannot log in there (F9, the next test).
  it('creditkit_accounts_per_plan counts accounts by the plan in force, on both workers (as the superuser)', async () => {
    await ck.upsertPlan({ p_id: 'life-count-a', p_name: 'Count A', p_allowance: 10 });
    await ck.upsertPlan({ p_id: 'life-count-b', p_name: 'Count B', p_allowance: 10 });
    const [a1, a2] = await accountsOnEveryWorker(db);
    const [b1, b2] = await accountsOnEveryWorker(db);
    const now = '2047-01-01T00:00:00Z';
    for (const account of [a1, a2]) await ck.setPlan({ p_account_id: account, p_plan_id: 'life-count-a', p_now: now });
    for (const account of [b1, b2]) await ck.setPlan({ p_account_id: account, p_plan_id: 'life-count-b', p_now: now });
    // canceled: back on the default plan
    await ck.setPlan({ p_account_id: b2, p_plan_id: 'life-count-b', p_status: 'canceled', p_now: now });

    const counts = await db.query<{ plan_id: string; plan_name: string; accounts: number }>(
      'select plan_id, plan_name, accounts::int as accounts from public.creditkit_accounts_per_plan()');
    const of = (id: string) => counts.find((r) => r.plan_id === id);
    expect(of('life-count-a')).toEqual({ plan_id: 'life-count-a', plan_name: 'Count A', accounts: 2 });
    expect(of('life-count-b')).toEqual({ plan_id: 'life-count-b', plan_name: 'Count B', accounts: 1 });
    // the default plan: every account without a live subscription (counted here without the function)
    const [free] = await db.query<{ n: number }>(
      `select ((select count(*) from creditkit.accounts where unit = 'credits')
               - (select count(*) from creditkit.subscriptions where status in ('active', 'trialing', 'past_due')))::int as n`);
    expect(of('free')).toEqual({ plan_id: 'free', plan_name: expect.any(String), accounts: free!.n });
    expect(free!.n).toBeGreaterThanOrEqual(1);
    // every plan once, most accounts first, ties by plan id
    const plans = await db.query<{ id: string }>('select id from creditkit.plans order by id');
    expect(counts.map((r) => r.plan_id).sort()).toEqual(plans.map((p) => p.id));
    const order = [...counts].sort((x, y) => y.accounts - x.accounts || (x.plan_id < y.plan_id ? -1 : 1));
    expect(counts).toEqual(order);
    await expectBooks(db, [a1!, a2!, b1!, b2!]);
  }, 60_000);

  // As service_role: security definer since 0.3.0 (docs/citus.md, F9), so Citus reaches the
  // workers as the owner, not as the NOLOGIN role.
  it('creditkit_accounts_per_plan as service_role (F9)', async () => {
    const counts = await ck.call('creditkit_accounts_per_plan', {});
    expect(counts.find((r) => r.plan_id === 'life-count-a')).toMatchObject({ accounts: 2 });
  }, 60_000);
});
