// Plans and lazy renewals with injected time. Period k of a subscription starts at anchor + k
// periods (UTC, month ends clamped, always from the anchor), and the first touch at or after a
// boundary books the period change exactly once: the ended period's allowance leaves as an expire
// row (or part of it rolls over) and the new period's allowance arrives as a plan bucket that
// expires at the period's end. Every scenario drives real renewals through the public calls
// (consume, balance, set_plan) at the boundary and 1µs before it, and checks the ledger
// invariants after each step: balance = sum(ledger) = sum(grants.remaining).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@creditkit/testing';
import { describeEachBackend } from '@creditkit/testing/vitest';
import {
  DAY, HOUR, at, creditkit, expectConsistent, ledgerLines, newAccountId, outcome, planGrantsOf, runAs,
  usOf, type Creditkit,
} from './support.ts';

// The starts of periods 0..25 of a monthly subscription anchored on 2027-01-31 09:30 UTC, written
// out by hand: the day is clamped to each month's end (Feb 28 in 2027, Feb 29 in the leap year
// 2028) and comes back to the 31st whenever the month has one.
const MONTH_END_BOUNDARIES = [
  '2027-01-31', '2027-02-28', '2027-03-31', '2027-04-30', '2027-05-31', '2027-06-30', '2027-07-31', '2027-08-31',
  '2027-09-30', '2027-10-31', '2027-11-30', '2027-12-31', '2028-01-31', '2028-02-29', '2028-03-31', '2028-04-30',
  '2028-05-31', '2028-06-30', '2028-07-31', '2028-08-31', '2028-09-30', '2028-10-31', '2028-11-30', '2028-12-31',
  '2029-01-31', '2029-02-28',
].map((day) => usOf(`${day}T09:30:00Z`));

/** Start of period k for a monthly subscription anchored at EPOCH (2030-01-01T00:00Z). */
const month = (k: number): number => usOf(new Date(Date.UTC(2030, k, 1)).toISOString());

describeEachBackend('plans and renewals', (backend) => {
  let db: TestDatabase;
  let ck: Creditkit;
  beforeAll(async () => {
    db = await createTestDatabase({ backend });
    ck = creditkit(runAs.service(db));
  });
  afterAll(() => db?.drop());

  /** A plan of its own for one test (the catalogue is shared by the whole file). */
  async function plan(id: string, allowance: number, extra: Record<string, unknown> = {}): Promise<string> {
    await ck.upsertPlan({ p_id: id, p_name: id, p_allowance: allowance, ...extra });
    return id;
  }

  it('period arithmetic: anchor + k periods in UTC, month ends clamped, and 1µs before a boundary is the period before', async () => {
    // [period, anchor, k, start of period k]
    const cases: Array<[string, string, number, string]> = [
      ['month', '2027-01-31T09:30:00Z', 1, '2027-02-28T09:30:00Z'],
      ['month', '2027-01-31T09:30:00Z', 13, '2028-02-29T09:30:00Z'],
      ['month', '2027-01-31T09:30:00Z', 14, '2028-03-31T09:30:00Z'],
      ['month', '2028-02-29T00:00:00Z', 1, '2028-03-29T00:00:00Z'], // the anchor's day, not the month's end
      ['month', '2028-02-29T00:00:00Z', 12, '2029-02-28T00:00:00Z'],
      ['year', '2028-02-29T12:00:00Z', 1, '2029-02-28T12:00:00Z'],
      ['year', '2028-02-29T12:00:00Z', 4, '2032-02-29T12:00:00Z'],
      ['week', '2027-12-29T23:00:00Z', 1, '2028-01-05T23:00:00Z'],
      ['week', '2027-12-29T23:00:00Z', 9, '2028-03-01T23:00:00Z'],
      ['day', '2028-02-28T06:00:00Z', 1, '2028-02-29T06:00:00Z'],
      ['day', '2028-02-28T06:00:00Z', 2, '2028-03-01T06:00:00Z'],
    ];
    const got = [];
    for (const [period, anchor, k, start] of cases) {
      const [row] = await db.query<{ start_us: number; before: number; at_start: number; anchor_index: number }>(
        `select ((extract(epoch from creditkit.period_start($1::timestamptz, $2::text, $3::int))
                  - extract(epoch from $4::timestamptz)) * 1000000)::bigint as start_us,
                creditkit.period_index($1::timestamptz, $2::text, $4::timestamptz - interval '1 microsecond') as before,
                creditkit.period_index($1::timestamptz, $2::text, $4::timestamptz) as at_start,
                creditkit.period_index($1::timestamptz, $2::text, $1::timestamptz) as anchor_index`,
        [anchor, period, k, start]);
      got.push([period, anchor, k, row]);
    }
    expect(got).toEqual(cases.map(([period, anchor, k]) => [period, anchor, k, { start_us: 0, before: k - 1, at_start: k, anchor_index: 0 }]));
  });

  it('a month-end anchor renews on the clamped day for 24 periods (leap year 2028), once, at the boundary and not 1µs before', async () => {
    const monthly = await plan('monthly-24', 100);
    const account = newAccountId();
    const B = MONTH_END_BOUNDARIES;
    const started = await ck.setPlan({ p_account_id: account, p_plan_id: monthly, p_anchor: at(B[0]!), p_now: at(B[0]!) });
    expect(started).toEqual({
      plan_id: monthly, status: 'active', period_start: new Date(at(B[0]!)), period_end: new Date(at(B[1]!)), balance: 100,
    });
    await expectConsistent(db, [account]);

    let left = 100; // what is left of the current period's allowance
    const expectedLedger: Array<[string, number, number, string]> = [['grant', 100, 100, at(B[0]!)]];
    for (let k = 1; k <= 24; k++) {
      const before = B[k]! - 1;
      const boundary = B[k]!;
      // 1µs before the boundary nothing is due: spend from (or read) the ending period's bucket.
      // Odd periods are renewed by a balance read, even ones by a consume.
      if (k % 2 === 1) {
        expect(await ck.consume({ p_account_id: account, p_amount: 1, p_now: at(before) })).toMatchObject({ allowed: true, balance: left - 1 });
        expectedLedger.push(['consume', -1, left - 1, at(before)]);
        left -= 1;
      } else {
        expect(await ck.balance({ p_account_id: account, p_now: at(before) })).toMatchObject({ balance: left, next_expiry: new Date(at(boundary)) });
      }
      expect((await planGrantsOf(db, account)).length, `no renewal 1µs before boundary ${k}`).toBe(k);

      // At the boundary: the old bucket expires, the new period's allowance arrives.
      expectedLedger.push(['expire', -left, 0, at(boundary)], ['grant', 100, 100, at(boundary)]);
      left = 100;
      if (k % 2 === 1) {
        expect(await ck.balance({ p_account_id: account, p_now: at(boundary) })).toMatchObject({ balance: 100, next_expiry: new Date(at(B[k + 1]!)) });
      } else {
        expect(await ck.consume({ p_account_id: account, p_amount: 1, p_now: at(boundary) })).toMatchObject({ allowed: true, balance: 99 });
        expectedLedger.push(['consume', -1, 99, at(boundary)]);
        left = 99;
      }
      // and a second touch at the same instant books nothing more
      await ck.balance({ p_account_id: account, p_now: at(boundary) });
      expect((await planGrantsOf(db, account)).length, `one renewal at boundary ${k}`).toBe(k + 1);
      await expectConsistent(db, [account]);
    }

    const grants = await planGrantsOf(db, account);
    expect(grants.map((g) => [g.period_index, g.period_start, g.period_end, g.expires_at, g.created_at, g.amount, g.reason])).toEqual(
      B.slice(0, 25).map((start, k) => [k, at(start), at(B[k + 1]!), at(B[k + 1]!), at(start), 100, k === 0 ? 'plan_start' : 'renewal']),
    );
    // spot checks, in words
    expect(grants[1]?.period_start).toBe('2027-02-28T09:30:00.000000Z');
    expect(grants[13]?.period_start).toBe('2028-02-29T09:30:00.000000Z');
    expect(grants[14]?.period_start).toBe('2028-03-31T09:30:00.000000Z');
    expect(grants[24]?.period_end).toBe('2029-02-28T09:30:00.000000Z');
    expect(await ledgerLines(db, account)).toEqual(expectedLedger);
  });

  it('periods nobody touched are skipped, not granted one by one (reset)', async () => {
    const monthly = await plan('reset-skip', 100);
    const account = newAccountId();
    await ck.setPlan({ p_account_id: account, p_plan_id: monthly, p_now: at(0) });
    await ck.consume({ p_account_id: account, p_amount: 30, p_now: at(DAY) });
    // first touch in period 3: one expire row for period 0's bucket, one grant for period 3
    expect(await ck.consume({ p_account_id: account, p_amount: 5, p_now: at(month(3) + HOUR) })).toMatchObject({ allowed: true, balance: 95 });
    expect((await planGrantsOf(db, account)).map((g) => [g.period_index, g.period_start, g.period_end, g.amount, g.rollover])).toEqual([
      [0, at(0), at(month(1)), 100, 0],
      [3, at(month(3)), at(month(4)), 100, 0],
    ]);
    expect(await ledgerLines(db, account)).toEqual([
      ['grant', 100, 100, at(0)],
      ['consume', -30, 70, at(DAY)],
      ['expire', -70, 0, at(month(3) + HOUR)],
      ['grant', 100, 100, at(month(3) + HOUR)],
      ['consume', -5, 95, at(month(3) + HOUR)],
    ]);
    await expectConsistent(db, [account]);
  });

  describe('rollover', () => {
    it('carries the leftover allowance up to the cap; untouched periods carry their whole allowance', async () => {
      const roll = await plan('roll-150', 100, { p_renewal: 'rollover', p_rollover_cap: 150 });
      const account = newAccountId();
      await ck.grant({ p_account_id: account, p_amount: 5, p_category: 'purchase', p_now: at(0) }); // never part of a rollover
      await ck.setPlan({ p_account_id: account, p_plan_id: roll, p_now: at(0) });
      await ck.consume({ p_account_id: account, p_amount: 30, p_now: at(DAY) }); // from the plan bucket (it expires first)
      await expectConsistent(db, [account]);

      // period 1: 70 left, under the cap: all of it carried, 170 in the new bucket
      expect(await ck.balance({ p_account_id: account, p_now: at(month(1) - 1) })).toMatchObject({ balance: 75 });
      expect(await ck.balance({ p_account_id: account, p_now: at(month(1)) })).toMatchObject({ balance: 175 });
      await expectConsistent(db, [account]);
      // period 2: 170 left, over the cap: 150 carried
      expect(await ck.consume({ p_account_id: account, p_amount: 1, p_now: at(month(2)) })).toMatchObject({ allowed: true, balance: 254 });
      await expectConsistent(db, [account]);
      // periods 3 untouched; first touch in period 4: min(min(249, 150) + 1 x 100, 150) = 150 carried
      expect(await ck.balance({ p_account_id: account, p_now: at(month(4) + HOUR) })).toMatchObject({ balance: 255 });
      await expectConsistent(db, [account]);

      expect((await planGrantsOf(db, account)).map((g) => [g.period_index, g.amount, g.rollover, g.allowance, g.period_start, g.expires_at])).toEqual([
        [0, 100, 0, 100, at(0), at(month(1))],
        [1, 170, 70, 100, at(month(1)), at(month(2))],
        [2, 250, 150, 100, at(month(2)), at(month(3))],
        [4, 250, 150, 100, at(month(4)), at(month(5))],
      ]);
      // the old bucket always leaves whole (expire row), the carried part arrives in the new one
      expect((await ledgerLines(db, account)).filter(([kind]) => kind === 'expire')).toEqual([
        ['expire', -70, 5, at(month(1))],
        ['expire', -170, 5, at(month(2))],
        ['expire', -249, 5, at(month(4) + HOUR)],
      ]);
    });

    it('without a cap everything rolls over, untouched periods included; a cap of 0 carries nothing', async () => {
      const uncapped = await plan('roll-uncapped', 100, { p_renewal: 'rollover' });
      const zero = await plan('roll-zero-cap', 100, { p_renewal: 'rollover', p_rollover_cap: 0 });
      const a = newAccountId();
      const b = newAccountId();
      for (const [account, p] of [[a, uncapped], [b, zero]] as const) {
        await ck.setPlan({ p_account_id: account, p_plan_id: p, p_now: at(0) });
        await ck.consume({ p_account_id: account, p_amount: 80, p_now: at(DAY) });
        // first touch 1µs into period 3 (periods 1 and 2 untouched)
        await ck.balance({ p_account_id: account, p_now: at(month(3) + 1) });
        await expectConsistent(db, [account]);
      }
      // uncapped: 20 left + 2 untouched periods x 100 = 220 carried
      expect((await planGrantsOf(db, a)).map((g) => [g.period_index, g.amount, g.rollover])).toEqual([[0, 100, 0], [3, 320, 220]]);
      expect((await planGrantsOf(db, b)).map((g) => [g.period_index, g.amount, g.rollover])).toEqual([[0, 100, 0], [3, 100, 0]]);
    });
  });

  describe('plan changes', () => {
    it('a change mid-period applies at once: the old allowance is forfeited, the new period starts at the change', async () => {
      const basic = await plan('change-basic', 100, { p_features: { export: true } });
      const pro = await plan('change-pro', 500, { p_features: { export: true, hd: true } });
      const user = await db.createUser();
      const me = creditkit(runAs.user(db, user));
      await ck.grant({ p_account_id: user, p_amount: 20, p_category: 'purchase', p_now: at(0) });
      await ck.setPlan({ p_account_id: user, p_plan_id: basic, p_now: at(0) });
      await ck.consume({ p_account_id: user, p_amount: 40, p_now: at(5 * DAY) }); // 60 of basic left
      expect(await ck.hasFeature({ p_account_id: user, p_feature: 'hd' })).toBe(false);
      expect(await me.myPlan()).toMatchObject({ account_id: user, plan_id: basic, allowance: 100, features: { export: true } });

      const change = 10 * DAY;
      const changedEnd = usOf('2030-02-11T00:00:00Z');
      expect(await ck.setPlan({ p_account_id: user, p_plan_id: pro, p_now: at(change) })).toEqual({
        plan_id: pro, status: 'active', period_start: new Date(at(change)), period_end: new Date(at(changedEnd)), balance: 520,
      });
      await expectConsistent(db, [user]);
      expect((await ledgerLines(db, user)).slice(3)).toEqual([['expire', -60, 20, at(change)], ['grant', 500, 520, at(change)]]);
      expect((await planGrantsOf(db, user)).map((g) => [g.plan_id, g.period_index, g.period_start, g.period_end, g.remaining, g.reason])).toEqual([
        [basic, 0, at(0), at(month(1)), 0, 'plan_start'],
        [pro, 0, at(change), at(changedEnd), 500, 'plan_start'],
      ]);
      expect(await ck.hasFeature({ p_account_id: user, p_feature: 'hd' })).toBe(true);
      expect(await me.myFeature({ p_feature: 'hd' })).toBe(true);
      expect(await me.myPlan()).toMatchObject({ plan_id: pro, plan_name: pro, status: 'active', allowance: 500, features: { export: true, hd: true } });

      // the old anchor's boundary is nothing now; the new one renews, not 1µs before
      await ck.consume({ p_account_id: user, p_amount: 1, p_now: at(month(1)) });
      await ck.consume({ p_account_id: user, p_amount: 1, p_now: at(changedEnd - 1) });
      expect((await planGrantsOf(db, user)).length).toBe(2);
      expect(await ck.balance({ p_account_id: user, p_now: at(changedEnd) })).toMatchObject({ balance: 520 });
      expect((await planGrantsOf(db, user)).at(-1)).toMatchObject({ plan_id: pro, period_index: 1, period_start: at(changedEnd), amount: 500 });
      await expectConsistent(db, [user]);

      // back to basic on the original (e.g. Stripe) anchor: the period that contains p_now, at once
      const downgrade = usOf('2030-02-20T00:00:00Z');
      expect(await ck.setPlan({ p_account_id: user, p_plan_id: basic, p_anchor: at(0), p_now: at(downgrade) })).toEqual({
        plan_id: basic, status: 'active', period_start: new Date(at(month(1))), period_end: new Date(at(month(2))), balance: 120,
      });
      expect((await planGrantsOf(db, user)).at(-1)).toMatchObject({ plan_id: basic, period_index: 1, period_start: at(month(1)), period_end: at(month(2)), reason: 'plan_start' });
      await expectConsistent(db, [user]);

      // the same plan and anchor again changes nothing (set_plan is naturally idempotent)
      const rows = (await ledgerLines(db, user)).length;
      expect(await ck.setPlan({ p_account_id: user, p_plan_id: basic, p_anchor: at(0), p_now: at(downgrade + HOUR) })).toMatchObject({
        plan_id: basic, period_start: new Date(at(month(1))), balance: 120,
      });
      expect((await ledgerLines(db, user)).length).toBe(rows);
      // and the renewal follows the original anchor
      await ck.balance({ p_account_id: user, p_now: at(month(2)) });
      expect((await planGrantsOf(db, user)).at(-1)).toMatchObject({ plan_id: basic, period_index: 2, period_start: at(month(2)), reason: 'renewal' });
      await expectConsistent(db, [user]);
    });
  });

  describe('status', () => {
    it('past_due pauses renewals (the allowance granted stays until its period ends); active resumes with the current period', async () => {
      const basic = await plan('status-basic', 100, { p_features: { export: true } });
      const account = newAccountId();
      await ck.setPlan({ p_account_id: account, p_plan_id: basic, p_now: at(0) });
      await ck.consume({ p_account_id: account, p_amount: 10, p_now: at(DAY) });
      expect(await ck.setPlan({ p_account_id: account, p_plan_id: basic, p_status: 'past_due', p_now: at(20 * DAY) })).toMatchObject({
        status: 'past_due', period_start: new Date(at(0)), period_end: new Date(at(month(1))), balance: 90,
      });
      // still spendable, and the plan's features stay on while past_due
      expect(await ck.consume({ p_account_id: account, p_amount: 5, p_now: at(25 * DAY) })).toMatchObject({ allowed: true, balance: 85 });
      expect(await ck.hasFeature({ p_account_id: account, p_feature: 'export' })).toBe(true);
      // the boundary passes: the allowance expires, nothing is renewed, now or later
      expect(await ck.balance({ p_account_id: account, p_now: at(month(1)) })).toMatchObject({ balance: 0 });
      expect(await ck.balance({ p_account_id: account, p_now: at(month(2) + HOUR) })).toMatchObject({ balance: 0 });
      expect((await planGrantsOf(db, account)).length).toBe(1);
      await expectConsistent(db, [account]);

      // resuming grants the period that contains p_now at once (and answers it), once
      const resume = month(2) + 5 * DAY;
      expect(await ck.setPlan({ p_account_id: account, p_plan_id: basic, p_status: 'active', p_now: at(resume) })).toEqual({
        plan_id: basic, status: 'active', period_start: new Date(at(month(2))), period_end: new Date(at(month(3))), balance: 100,
      });
      expect(await ck.balance({ p_account_id: account, p_now: at(resume) })).toMatchObject({ balance: 100 });
      expect(await ck.balance({ p_account_id: account, p_now: at(resume + HOUR) })).toMatchObject({ balance: 100 });
      expect((await planGrantsOf(db, account)).map((g) => [g.period_index, g.period_start, g.period_end, g.amount, g.rollover, g.reason])).toEqual([
        [0, at(0), at(month(1)), 100, 0, 'plan_start'],
        [2, at(month(2)), at(month(3)), 100, 0, 'resume'],
      ]);
      expect(await ledgerLines(db, account)).toEqual([
        ['grant', 100, 100, at(0)],
        ['consume', -10, 90, at(DAY)],
        ['consume', -5, 85, at(25 * DAY)],
        ['expire', -85, 0, at(month(1))],
        ['grant', 100, 100, at(resume)],
      ]);
      await expectConsistent(db, [account]);
      // and renewals go on from there
      await ck.balance({ p_account_id: account, p_now: at(month(3)) });
      expect((await planGrantsOf(db, account)).at(-1)).toMatchObject({ period_index: 3, period_start: at(month(3)), reason: 'renewal' });
      await expectConsistent(db, [account]);
    });

    it('resuming within the same period grants nothing new; resuming a rollover plan carries nothing over from paused periods', async () => {
      const basic = await plan('status-same-period', 100);
      const same = newAccountId();
      await ck.setPlan({ p_account_id: same, p_plan_id: basic, p_now: at(0) });
      await ck.setPlan({ p_account_id: same, p_plan_id: basic, p_status: 'past_due', p_now: at(DAY) });
      expect(await ck.setPlan({ p_account_id: same, p_plan_id: basic, p_status: 'active', p_now: at(2 * DAY) })).toEqual({
        plan_id: basic, status: 'active', period_start: new Date(at(0)), period_end: new Date(at(month(1))), balance: 100,
      });
      expect((await planGrantsOf(db, same)).length).toBe(1);
      await ck.balance({ p_account_id: same, p_now: at(month(1)) }); // and the renewal follows as usual
      expect((await planGrantsOf(db, same)).map((g) => [g.period_index, g.reason])).toEqual([[0, 'plan_start'], [1, 'renewal']]);
      await expectConsistent(db, [same]);

      const roll = await plan('status-rollover', 100, { p_renewal: 'rollover' });
      const paused = newAccountId();
      await ck.setPlan({ p_account_id: paused, p_plan_id: roll, p_now: at(0) });
      await ck.setPlan({ p_account_id: paused, p_plan_id: roll, p_status: 'past_due', p_now: at(20 * DAY) });
      await ck.balance({ p_account_id: paused, p_now: at(month(1)) }); // the allowance expires while paused
      expect(await ck.setPlan({ p_account_id: paused, p_plan_id: roll, p_status: 'active', p_now: at(month(3) + DAY) })).toMatchObject({
        period_start: new Date(at(month(3))), period_end: new Date(at(month(4))), balance: 100,
      });
      expect((await planGrantsOf(db, paused)).at(-1)).toMatchObject({ period_index: 3, amount: 100, rollover: 0, reason: 'resume' });
      // the next renewal rolls over what is left of the resumed period, as usual
      await ck.consume({ p_account_id: paused, p_amount: 40, p_now: at(month(3) + 2 * DAY) });
      await ck.balance({ p_account_id: paused, p_now: at(month(4)) });
      expect((await planGrantsOf(db, paused)).at(-1)).toMatchObject({ period_index: 4, amount: 160, rollover: 60, reason: 'renewal' });
      await expectConsistent(db, [paused]);
    });

    it('canceled: the default plan applies at once, the granted allowance runs out, nothing renews; a restart is a new subscription', async () => {
      const basic = await plan('status-cancel', 100, { p_features: { export: true } });
      const account = newAccountId();
      await ck.setPlan({ p_account_id: account, p_plan_id: basic, p_now: at(0) });
      await ck.setPlan({ p_account_id: account, p_plan_id: basic, p_status: 'canceled', p_now: at(DAY) });
      expect(await ck.hasFeature({ p_account_id: account, p_feature: 'export' })).toBe(false); // the free plan
      expect(await ck.balance({ p_account_id: account, p_now: at(2 * DAY) })).toMatchObject({ balance: 100 });
      expect(await ck.balance({ p_account_id: account, p_now: at(month(2)) })).toMatchObject({ balance: 0 });
      expect((await planGrantsOf(db, account)).length).toBe(1);

      const restart = month(2) + 3 * DAY;
      expect(await ck.setPlan({ p_account_id: account, p_plan_id: basic, p_now: at(restart) })).toEqual({
        plan_id: basic, status: 'active', period_start: new Date(at(restart)), period_end: new Date(at(month(3) + 3 * DAY)), balance: 100,
      });
      expect(await ck.hasFeature({ p_account_id: account, p_feature: 'export' })).toBe(true);
      expect((await planGrantsOf(db, account)).at(-1)).toMatchObject({ period_index: 0, period_start: at(restart), reason: 'plan_start' });
      await expectConsistent(db, [account]);
    });

    it('an account without a subscription is on the default plan; upsert_plan can move the default', async () => {
      const user = await db.createUser();
      const me = creditkit(runAs.user(db, user));
      await ck.grant({ p_account_id: user, p_amount: 1 });
      expect(await me.myPlan()).toEqual({
        account_id: user, plan_id: 'free', plan_name: 'Free', status: 'active', period_start: null, period_end: null, allowance: 0, features: {},
        limits: {},
      });
      expect(await outcome(ck.setPlan({ p_account_id: user, p_plan_id: 'no-such-plan' }))).toBe('CK009');
      const starter = await plan('default-starter', 0, { p_features: { beta: true } });
      await ck.upsertPlan({ p_id: starter, p_name: 'Starter', p_features: { beta: true }, p_is_default: true });
      try {
        expect(await me.myFeature({ p_feature: 'beta' })).toBe(true);
        expect(await ck.hasFeature({ p_account_id: user, p_feature: 'beta' })).toBe(true);
      } finally {
        await ck.upsertPlan({ p_id: 'free', p_name: 'Free', p_is_default: true });
      }
      expect(await me.myFeature({ p_feature: 'beta' })).toBe(false);
    });
  });

  it("a plan's period cannot change while live subscriptions use it (CK006): theirs renew as before", async () => {
    const monthly = await plan('period-locked', 100, { p_renewal: 'rollover' });
    const live = newAccountId();
    const paused = newAccountId();
    await ck.setPlan({ p_account_id: live, p_plan_id: monthly, p_now: at(0) });
    await ck.setPlan({ p_account_id: paused, p_plan_id: monthly, p_now: at(0) });
    await ck.setPlan({ p_account_id: paused, p_plan_id: monthly, p_status: 'past_due', p_now: at(DAY) });
    const yearly = { p_id: monthly, p_name: monthly, p_allowance: 100, p_renewal: 'rollover', p_period: 'year' };
    expect(await outcome(ck.upsertPlan(yearly))).toBe('CK006');
    // other changes are fine, and the subscriptions renew monthly as before
    await ck.upsertPlan({ p_id: monthly, p_name: monthly, p_allowance: 120, p_renewal: 'rollover' });
    expect(await outcome(ck.consume({ p_account_id: live, p_amount: 1, p_now: at(month(1)) }))).toBe('ok');
    expect((await planGrantsOf(db, live)).at(-1)).toMatchObject({ period_index: 1, period_start: at(month(1)), period_end: at(month(2)), amount: 220 });
    await expectConsistent(db, [live]);
    // a past_due subscription still counts (it can resume); once both are canceled the period may change
    expect(await outcome(ck.setPlan({ p_account_id: live, p_plan_id: monthly, p_status: 'canceled', p_now: at(month(1) + 1) }))).toBe('ok');
    expect(await outcome(ck.upsertPlan(yearly))).toBe('CK006');
    await ck.setPlan({ p_account_id: paused, p_plan_id: monthly, p_status: 'canceled', p_now: at(month(1) + 1) });
    expect(await outcome(ck.upsertPlan(yearly))).toBe('ok');
    // a restart is a new subscription, in the new period
    expect(await ck.setPlan({ p_account_id: live, p_plan_id: monthly, p_now: at(month(2)) })).toMatchObject({
      period_start: new Date(at(month(2))), period_end: new Date(at(usOf('2031-03-01T00:00:00Z'))),
    });
    await expectConsistent(db, [live, paused]);
  });
});
