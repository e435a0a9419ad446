// Metered units: one balance per (account, unit), each with everything the credit balance has
// (buckets, expiry, spend order, holds, idempotency, lazy renewals), plan limits per unit, and
// check/report. The property test runs random commands on one account holding two units and on
// accounts that each see only one unit's commands: every answer and ledger row of a unit must be
// the same either way, so nothing of one unit can leak into the other.
//
// Replay a failure: CREDITKIT_UNITS_SEED=<seed> CREDITKIT_UNITS_PATH=<path>; more runs: CREDITKIT_UNITS_RUNS=100.
import fc from 'fast-check';
import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@creditkit/testing';
import { describeEachBackend, describeIfPostgres } from '@creditkit/testing/vitest';
import {
  DAY, HOUR, MINUTE, at, booksDigest, creditkit, expectConsistent, ledgerProblems, newAccountId, newGauge, openAccount, outcome,
  pooledRunner, runAs, settle, usOf, warmPool, type Creditkit, type Gauge,
} from './support.ts';

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describeEachBackend('units', (backend) => {
  let db: TestDatabase;
  let ck: Creditkit;
  beforeAll(async () => {
    db = await createTestDatabase({ backend });
    ck = creditkit(runAs.service(db));
    await ck.upsertUnit({ p_id: 'messages', p_name: 'Messages', p_kind: 'metered' });
    await ck.upsertUnit({ p_id: 'images', p_name: 'Images', p_kind: 'metered' });
    await ck.upsertUnit({ p_id: 'hd', p_name: 'HD', p_kind: 'boolean' });
  });
  afterAll(() => db?.drop());

  /** Balances of an account by unit, as creditkit.accounts holds them. */
  async function balances(account: string): Promise<Record<string, number>> {
    const rows = await db.query<{ unit: string; balance: number }>(
      'select unit, balance::bigint as balance from creditkit.accounts where id = $1 order by unit', [account]);
    return Object.fromEntries(rows.map((r) => [r.unit, Number(r.balance)]));
  }

  it('the catalogue: credits is seeded and metered; a kind changes only while nothing uses the unit', async () => {
    expect(await ck.units()).toEqual([
      { id: 'credits', name: 'Credits', kind: 'metered' }, { id: 'hd', name: 'HD', kind: 'boolean' },
      { id: 'images', name: 'Images', kind: 'metered' }, { id: 'messages', name: 'Messages', kind: 'metered' },
    ]);
    await ck.upsertUnit({ p_id: 'seats', p_name: 'Seats', p_kind: 'boolean' });
    expect(await ck.upsertUnit({ p_id: 'seats', p_name: 'Seats', p_kind: 'metered' })).toMatchObject({ kind: 'metered' });
    const account = await openAccount(ck);
    await ck.grant({ p_account_id: account, p_amount: 3, p_now: at(1), p_unit: 'seats' });
    expect(await outcome(ck.upsertUnit({ p_id: 'seats', p_name: 'Seats', p_kind: 'boolean' }))).toBe('CK006');
    expect(await outcome(ck.upsertUnit({ p_id: 'credits', p_name: 'Credits', p_kind: 'boolean' }))).toBe('CK006');
    expect(await ck.upsertUnit({ p_id: 'seats', p_name: 'Team seats', p_kind: 'metered' })).toMatchObject({ name: 'Team seats' });
  });

  it('each unit is its own balance: grants, spends, expiries and history never touch another unit', async () => {
    const a = await openAccount(ck, 100);
    await ck.grant({ p_account_id: a, p_amount: 10, p_category: 'promotional', p_expires_at: at(2 * HOUR), p_now: at(1), p_unit: 'messages' });
    await ck.grant({ p_account_id: a, p_amount: 5, p_now: at(2), p_unit: 'messages' });
    await ck.grant({ p_account_id: a, p_amount: 7, p_now: at(3), p_unit: 'images' });
    expect(await balances(a)).toEqual({ credits: 100, images: 7, messages: 15 });

    expect(await ck.consume({ p_account_id: a, p_amount: 12, p_now: at(HOUR), p_unit: 'messages' }))
      .toMatchObject({ allowed: true, balance: 3 });
    expect(await ck.consume({ p_account_id: a, p_amount: 8, p_now: at(HOUR), p_unit: 'images' }))
      .toMatchObject({ allowed: false, balance: 7 });
    expect(await ck.consume({ p_account_id: a, p_amount: 30, p_now: at(HOUR), p_unit: 'credits' }))
      .toMatchObject({ allowed: true, balance: 70 });
    // the promotional bucket (spent first, soonest expiry) is used up; nothing of it is left to expire
    const messages = await ck.balance({ p_account_id: a, p_now: at(3 * HOUR), p_unit: 'messages' });
    expect(messages).toMatchObject({ balance: 3, next_expiry: null });
    expect(messages.buckets.map((b) => [b.category, b.remaining])).toEqual([['purchase', 3]]);
    expect((await ck.balance({ p_account_id: a, p_now: at(3 * HOUR) })).balance).toBe(70);

    const history = await ck.history({ p_account_id: a, p_unit: 'messages' });
    expect(history.map((h) => [h.kind, Number(h.amount), Number(h.balance_after)])).toEqual([
      ['consume', -12, 3], ['grant', 5, 15], ['grant', 10, 10],
    ]);
    expect((await ck.history({ p_account_id: a })).map((h) => [h.kind, Number(h.amount)])).toEqual([['consume', -30], ['grant', 100]]);
    expect(await balances(a)).toEqual({ credits: 70, images: 7, messages: 3 });
    await expectConsistent(db, [a]);
  });

  it('an expired bucket of one unit leaves as an expire row of that unit only', async () => {
    const a = await openAccount(ck, 50);
    await ck.grant({ p_account_id: a, p_amount: 9, p_expires_at: at(HOUR), p_now: at(1), p_unit: 'images' });
    await ck.grant({ p_account_id: a, p_amount: 4, p_expires_at: at(HOUR), p_now: at(1) });
    expect((await ck.balance({ p_account_id: a, p_now: at(2 * HOUR), p_unit: 'images' })).balance).toBe(0);
    const rows = await db.query<{ unit: string; kind: string; amount: number }>(
      `select unit, kind, amount::bigint as amount from creditkit.ledger where account_id = $1 and kind = 'expire' order by id`, [a]);
    expect(rows.map((r) => [r.unit, Number(r.amount)])).toEqual([['images', -9]]);
    expect(await balances(a)).toEqual({ credits: 54, images: 0 }); // credits' expiry waits for a credits touch
    expect((await ck.balance({ p_account_id: a, p_now: at(2 * HOUR) })).balance).toBe(50);
    await expectConsistent(db, [a]);
  });

  it('an unknown unit, a boolean unit or NULL is CK015 and changes nothing; a known account with nothing in a unit is blocked', async () => {
    const a = await openAccount(ck, 10);
    const before = await booksDigest(db);
    for (const unit of ['tokens', 'hd', null]) {
      expect(await outcome(ck.consume({ p_account_id: a, p_amount: 1, p_now: at(1), p_unit: unit }))).toBe('CK015');
      expect(await outcome(ck.report({ p_account_id: a, p_unit: unit, p_amount: 1, p_now: at(1) }))).toBe('CK015');
      expect(await outcome(ck.check({ p_account_id: a, p_unit: unit, p_amount: 1, p_now: at(1) }))).toBe('CK015');
      expect(await outcome(ck.grant({ p_account_id: a, p_amount: 1, p_now: at(1), p_unit: unit }))).toBe('CK015');
      expect(await outcome(ck.reserve({ p_account_id: a, p_amount: 1, p_now: at(1), p_unit: unit }))).toBe('CK015');
      expect(await outcome(ck.balance({ p_account_id: a, p_now: at(1), p_unit: unit }))).toBe('CK015');
      expect(await outcome(ck.adjust({ p_account_id: a, p_amount: 1, p_reason: 'r', p_now: at(1), p_unit: unit }))).toBe('CK015');
    }
    // unknown account, known unit: CK003 as before
    expect(await outcome(ck.report({ p_account_id: newAccountId(), p_unit: 'messages', p_amount: 1, p_now: at(1) }))).toBe('CK003');
    expect(await booksDigest(db)).toEqual(before);
    // a known account that holds no messages (and whose plan includes none): blocked, nothing written
    expect(await ck.report({ p_account_id: a, p_unit: 'messages', p_amount: 1, p_now: at(1) }))
      .toEqual({ allowed: false, balance: 0, transaction_id: null });
    expect(await ck.check({ p_account_id: a, p_unit: 'messages', p_amount: 1, p_now: at(1) })).toEqual({ allowed: false, balance: 0 });
    expect(await ck.reserve({ p_account_id: a, p_amount: 1, p_now: at(1), p_unit: 'messages' }))
      .toMatchObject({ allowed: false, balance: 0, hold_id: null });
    expect(await booksDigest(db)).toEqual(before);
  });

  it('an idempotency key names one operation of the account: the same key in another unit is CK004', async () => {
    const a = await openAccount(ck, 10);
    await ck.grant({ p_account_id: a, p_amount: 10, p_now: at(1), p_unit: 'messages' });
    const first = await ck.report({ p_account_id: a, p_unit: 'messages', p_amount: 2, p_idempotency_key: 'req-1', p_now: at(2) });
    expect(await ck.report({ p_account_id: a, p_unit: 'messages', p_amount: 2, p_idempotency_key: 'req-1', p_now: at(3) })).toEqual(first);
    expect(await outcome(ck.consume({ p_account_id: a, p_amount: 2, p_idempotency_key: 'req-1', p_now: at(3) }))).toBe('CK004');
    expect(await outcome(ck.report({ p_account_id: a, p_unit: 'images', p_amount: 2, p_idempotency_key: 'req-1', p_now: at(3) }))).toBe('CK004');
    const hold = await ck.reserve({ p_account_id: a, p_amount: 1, p_idempotency_key: 'job-1', p_now: at(4), p_unit: 'messages' });
    expect(await outcome(ck.reserve({ p_account_id: a, p_amount: 1, p_idempotency_key: 'job-1', p_now: at(4) }))).toBe('CK004');
    expect(await ck.reserve({ p_account_id: a, p_amount: 1, p_idempotency_key: 'job-1', p_now: at(5), p_unit: 'messages' }))
      .toMatchObject({ allowed: true, hold_id: hold.hold_id });
    expect(await outcome(ck.grant({ p_account_id: a, p_amount: 2, p_idempotency_key: 'req-1', p_now: at(6), p_unit: 'messages' }))).toBe('CK004');
    expect(await balances(a)).toEqual({ credits: 10, messages: 8 });
    await expectConsistent(db, [a]);
  });

  it('the calls of 0.1.x answer as before: positional arguments, the credits unit by default', async () => {
    const a = await openAccount(ck, 20);
    const [c] = await db.asService<{ allowed: boolean; balance: number }>(
      `select * from creditkit_consume($1, 5, 'chat', null, null, null, $2)`, [a, at(1)]);
    expect(c).toMatchObject({ allowed: true, balance: 15 });
    const [g] = await db.asService<{ balance: number }>(
      `select * from creditkit_grant($1, 5, 'purchase', null, null, null, null, null, $2)`, [a, at(2)]);
    expect(g!.balance).toBe(20);
    const [b] = await db.asService<{ balance: number }>(`select * from creditkit_balance($1, $2)`, [a, at(3)]);
    expect(b!.balance).toBe(20);
    const [r] = await db.asService<{ allowed: boolean }>(`select * from creditkit_reserve($1, 4, '1 hour', null, null, null, $2)`, [a, at(4)]);
    expect(r!.allowed).toBe(true);
    const h = await db.asService(`select * from creditkit_history($1, 10, null)`, [a]);
    expect(h).toHaveLength(3);
    expect(await balances(a)).toEqual({ credits: 20 });
  });

  it('no function is left overloaded: each kit function has one signature', async () => {
    const rows = await db.query<{ name: string; n: number }>(
      `select n.nspname || '.' || p.proname as name, count(*)::int as n
         from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'creditkit' or (n.nspname = 'public' and p.proname like 'creditkit\\_%')
        group by 1 having count(*) > 1`);
    expect(rows).toEqual([]);
  });

  it('check answers allowed and the balance, and writes nothing (no transaction id) when nothing is due', async () => {
    const a = await openAccount(ck, 10);
    await ck.grant({ p_account_id: a, p_amount: 3, p_expires_at: at(DAY), p_now: at(1), p_unit: 'messages' });
    const probe = (unit: string, amount: number, now: number) =>
      db.asService<{ allowed: boolean; balance: number; tx: string | null }>(
        `with c as materialized (select * from creditkit_check($1, $2, $3, $4))
         select c.allowed, c.balance, txid_current_if_assigned()::text as tx from c`, [a, unit, amount, at(now)]);
    expect(await probe('messages', 3, HOUR)).toEqual([{ allowed: true, balance: 3, tx: null }]);
    expect(await probe('messages', 4, HOUR)).toEqual([{ allowed: false, balance: 3, tx: null }]);
    expect(await probe('credits', 10, HOUR)).toEqual([{ allowed: true, balance: 10, tx: null }]);
    // the same probe sees a write: a report in the same statement has a transaction id
    const [spent] = await db.asService<{ tx: string | null }>(
      `with r as materialized (select * from creditkit_report($1, 'messages', 1, p_now => $2))
       select txid_current_if_assigned()::text as tx from r`, [a, at(HOUR)]);
    expect(spent!.tx).not.toBeNull();
    // something due (the bucket expired): check books it, and then writes
    const [due] = await probe('messages', 1, 2 * DAY);
    expect(due).toMatchObject({ allowed: false, balance: 0 });
    expect(due!.tx).not.toBeNull();
    const [expired] = await db.query<{ n: number }>(
      `select count(*)::int as n from creditkit.ledger where account_id = $1 and unit = 'messages' and kind = 'expire'`, [a]);
    expect(expired!.n).toBe(1);
    await expectConsistent(db, [a]);
  });

  it('report answers as consume does: allowed, blocked and replayed, in any unit', async () => {
    const [a, b] = [await openAccount(ck, 6), await openAccount(ck, 6)];
    const steps: Array<[number, string | null]> = [[4, 'k1'], [4, null], [4, 'k1'], [2, 'k2'], [1, null]];
    for (const [amount, key] of steps) {
      const viaReport = await ck.report({ p_account_id: a, p_unit: 'credits', p_amount: amount, p_idempotency_key: key, p_now: at(1) });
      const viaConsume = await ck.consume({ p_account_id: b, p_amount: amount, p_idempotency_key: key, p_now: at(1) });
      expect({ ...viaReport, transaction_id: viaReport.transaction_id === null }).toEqual({
        ...viaConsume, transaction_id: viaConsume.transaction_id === null,
      });
    }
    expect(await balances(a)).toEqual(await balances(b));
  });

  it('holds per unit: a reserve of messages holds messages only; settle, release and expiry stay in the unit', async () => {
    const a = await openAccount(ck, 10);
    await ck.grant({ p_account_id: a, p_amount: 10, p_now: at(1), p_unit: 'messages' });
    const hold = await ck.reserve({ p_account_id: a, p_amount: 8, p_ttl: '1 hour', p_now: at(2), p_unit: 'messages' });
    expect(hold).toMatchObject({ allowed: true, balance: 2 });
    expect(await ck.check({ p_account_id: a, p_unit: 'credits', p_amount: 10, p_now: at(3) })).toEqual({ allowed: true, balance: 10 });
    expect(await ck.report({ p_account_id: a, p_unit: 'messages', p_amount: 3, p_now: at(3) })).toMatchObject({ allowed: false, balance: 2 });
    expect(await ck.settleHold({ p_hold_id: hold.hold_id, p_actual: 5, p_now: at(4) })).toMatchObject({ charged: 5, balance: 5 });
    const second = await ck.reserve({ p_account_id: a, p_amount: 5, p_ttl: '1 hour', p_now: at(5), p_unit: 'messages' });
    expect(await ck.release({ p_hold_id: second.hold_id, p_now: at(6) })).toEqual({ status: 'released', balance: 5 });
    await ck.reserve({ p_account_id: a, p_amount: 4, p_ttl: '1 hour', p_now: at(7), p_unit: 'messages' });
    expect((await ck.balance({ p_account_id: a, p_now: at(2 * HOUR), p_unit: 'messages' })).balance).toBe(5); // expired: freed
    const [held] = await db.query<{ unit: string; held: number }>(
      `select string_agg(unit || ':' || held, ',' order by unit) as held from creditkit.accounts where id = $1`, [a]);
    expect(held!.held).toBe('credits:0,messages:0');
    expect(await balances(a)).toEqual({ credits: 10, messages: 5 });
    await expectConsistent(db, [a]);
  });

  it('plan limits: a unit opens on first touch with its allowance, renews lazily on its own period, and resets', async () => {
    await ck.upsertPlan({ p_id: 'units-daily', p_name: 'Daily', p_allowance: 100 });
    expect(await ck.setPlanLimit({ p_plan_id: 'units-daily', p_unit: 'messages', p_allowance: 20, p_period: 'day' }))
      .toMatchObject({ plan_id: 'units-daily', unit: 'messages', allowance: 20, period: 'day', renewal: 'reset' });
    const a = newAccountId();
    await ck.setPlan({ p_account_id: a, p_plan_id: 'units-daily', p_now: at(0) });
    expect(await balances(a)).toEqual({ credits: 100 });
    expect(await ck.check({ p_account_id: a, p_unit: 'messages', p_amount: 20, p_now: at(HOUR) })).toEqual({ allowed: true, balance: 20 });
    expect(await ck.report({ p_account_id: a, p_unit: 'messages', p_amount: 15, p_now: at(2 * HOUR) })).toMatchObject({ allowed: true, balance: 5 });
    // 1µs before the day ends: still the first day's 5; at the boundary: a fresh 20 (reset)
    expect(await ck.check({ p_account_id: a, p_unit: 'messages', p_amount: 6, p_now: at(DAY - 1) })).toEqual({ allowed: false, balance: 5 });
    expect(await ck.check({ p_account_id: a, p_unit: 'messages', p_amount: 6, p_now: at(DAY) })).toEqual({ allowed: true, balance: 20 });
    // three untouched days later: one renewal, booked once
    expect(await ck.report({ p_account_id: a, p_unit: 'messages', p_amount: 1, p_now: at(4 * DAY + HOUR) })).toMatchObject({ balance: 19 });
    const rows = await db.query<{ kind: string; amount: number; reason: string | null }>(
      `select kind, amount::bigint as amount, metadata ->> 'reason' as reason from creditkit.ledger
        where account_id = $1 and unit = 'messages' order by id`, [a]);
    expect(rows.map((r) => [r.kind, Number(r.amount), r.reason])).toEqual([
      ['grant', 20, 'plan_start'], ['consume', -15, null], ['expire', -5, null], ['grant', 20, 'renewal'],
      ['expire', -20, null], ['grant', 20, 'renewal'], ['consume', -1, null],
    ]);
    // credits renew monthly, untouched by the messages' days
    expect(await balances(a)).toEqual({ credits: 100, messages: 19 });
    await expectConsistent(db, [a]);
  });

  it('plan limits: month ends are safe (Jan 31 -> Feb 28 -> Mar 31), rollover is capped', async () => {
    await ck.upsertPlan({ p_id: 'units-monthly', p_name: 'Monthly', p_allowance: 0 });
    await ck.setPlanLimit({ p_plan_id: 'units-monthly', p_unit: 'images', p_allowance: 10, p_period: 'month', p_renewal: 'rollover', p_rollover_cap: 15 });
    const a = newAccountId();
    const t = (iso: string, less = 0) => at(usOf(iso) - less);
    await ck.setPlan({ p_account_id: a, p_plan_id: 'units-monthly', p_anchor: t('2031-01-31T12:00:00Z'), p_now: t('2031-01-31T12:00:00Z') });
    expect(await ck.report({ p_account_id: a, p_unit: 'images', p_amount: 2, p_now: t('2031-02-01T00:00:00Z') })).toMatchObject({ balance: 8 });
    expect((await ck.check({ p_account_id: a, p_unit: 'images', p_amount: 1, p_now: t('2031-02-28T12:00:00Z', 1) })).balance).toBe(8);
    // Feb 28 12:00: the allowance 10 and the 8 left carried (at most 15 is carried)
    expect((await ck.check({ p_account_id: a, p_unit: 'images', p_amount: 1, p_now: t('2031-02-28T12:00:00Z') })).balance).toBe(18);
    expect((await ck.check({ p_account_id: a, p_unit: 'images', p_amount: 1, p_now: t('2031-03-31T12:00:00Z', 1) })).balance).toBe(18);
    // Mar 31 12:00: 10 and 15 of the 18 left
    expect((await ck.check({ p_account_id: a, p_unit: 'images', p_amount: 1, p_now: t('2031-03-31T12:00:00Z') })).balance).toBe(25);
    const [allowance] = await db.query<{ period_index: number; renews_at: Date }>(
      `select period_index, renews_at from creditkit.allowances where account_id = $1 and unit = 'images'`, [a]);
    expect(allowance).toEqual({ period_index: 2, renews_at: new Date('2031-04-30T12:00:00Z') });
    await expectConsistent(db, [a]);
  });

  it('prices in a unit: meter spends the unit the price names; with an overage rule credits pay all of it once the unit cannot', async () => {
    await ck.setPrice({ p_event: 'chat', p_credits_per_unit: 1, p_effective_from: at(0), p_unit: 'messages', p_overage_credits_per_unit: 3 });
    await ck.setPrice({ p_event: 'render', p_credits_per_unit: 2, p_effective_from: at(0), p_unit: 'images' });
    expect(await ck.quote({ p_event: 'chat', p_quantity: 2, p_now: at(1) }))
      .toMatchObject({ unit_credits: 1, amount: 2, unit: 'messages', overage_amount: 6 });
    expect(await ck.quote({ p_event: 'render', p_now: at(1) })).toMatchObject({ amount: 2, unit: 'images', overage_amount: null });
    const a = await openAccount(ck, 10);
    await ck.grant({ p_account_id: a, p_amount: 2, p_now: at(1), p_unit: 'messages' });
    const meter = (quantity: number, key: string | null = null) =>
      ck.meter({ p_account_id: a, p_event: 'chat', p_quantity: quantity, p_idempotency_key: key, p_now: at(2) });
    expect(await meter(1, 'm1')).toMatchObject({ allowed: true, unit: 'messages', amount: 1, balance: 1 });
    // 2 asked, 1 message left: never half from each; credits pay both at the overage price
    expect(await meter(2, 'm2')).toMatchObject({ allowed: true, unit: 'credits', amount: 6, balance: 4 });
    expect(await balances(a)).toEqual({ credits: 4, messages: 1 });
    // retries answer from the balance that paid, whatever the balances are now
    expect(await meter(1, 'm1')).toMatchObject({ allowed: true, unit: 'messages', amount: 1, balance: 1 });
    expect(await meter(2, 'm2')).toMatchObject({ allowed: true, unit: 'credits', amount: 6, balance: 4 });
    expect(await outcome(meter(3, 'm2'))).toBe('CK004');
    // neither can pay: refused in the unit the price names, nothing written
    expect(await meter(2)).toMatchObject({ allowed: false, unit: 'messages', amount: 2, balance: 1 });
    expect(await balances(a)).toEqual({ credits: 4, messages: 1 });
    const rows = await db.query<{ unit: string; amount: number; overage: string | null; unit_credits: number }>(
      `select unit, amount::bigint as amount, metadata ->> 'overage' as overage, (metadata ->> 'unit_credits')::int as unit_credits
         from creditkit.ledger where account_id = $1 and kind = 'consume' order by id`, [a]);
    expect(rows.map((r) => [r.unit, Number(r.amount), r.overage, r.unit_credits])).toEqual([
      ['messages', -1, null, 1], ['credits', -6, 'messages', 3],
    ]);
    // without an overage rule a unit that cannot pay refuses, and credits are never touched
    expect(await ck.meter({ p_account_id: a, p_event: 'render', p_now: at(3) })).toMatchObject({ allowed: false, unit: 'images', balance: 0 });
    // an account that never held the unit pays overage from credits
    const b = await openAccount(ck, 5);
    expect(await ck.meter({ p_account_id: b, p_event: 'chat', p_now: at(3) })).toMatchObject({ allowed: true, unit: 'credits', amount: 3, balance: 2 });
    expect(await balances(b)).toEqual({ credits: 2 });
    await expectConsistent(db, [a, b]);
  });

  it('unit_usage: calls, spend, overage, grants, revenue, cost and margin per unit; an overage call counts for the unit it stood in for', async () => {
    await ck.setPrice({ p_event: 'ask', p_credits_per_unit: 1, p_effective_from: at(0), p_unit: 'messages', p_overage_credits_per_unit: 2 });
    const a = await openAccount(ck, 10); // 10 credits at at(0)
    await ck.grant({ p_account_id: a, p_amount: 3, p_now: at(1), p_unit: 'messages', p_revenue_micros: 500_000 });
    for (const cost of [100, 200, 300]) await ck.meter({ p_account_id: a, p_event: 'ask', p_cost_micros: cost, p_now: at(2) });
    expect(await ck.meter({ p_account_id: a, p_event: 'ask', p_quantity: 2, p_cost_micros: 1_000, p_now: at(3) }))
      .toMatchObject({ unit: 'credits', amount: 4 });
    await ck.consume({ p_account_id: a, p_amount: 1, p_cost_micros: 50, p_now: at(3) });
    const rows = await ck.call('creditkit_unit_usage', { p_from: at(0), p_to: at(HOUR), p_account_id: a });
    expect(rows).toEqual([
      { unit: 'credits', calls: 1, spent: 1, overage_credits: 0, granted: 10, revenue_micros: 0, cost_micros: 50, margin_micros: -50 },
      { unit: 'messages', calls: 4, spent: 3, overage_credits: 4, granted: 3, revenue_micros: 500_000, cost_micros: 1_600, margin_micros: 498_400 },
    ]);
    expect(await ck.call('creditkit_unit_usage', { p_from: at(HOUR), p_to: at(DAY), p_account_id: a })).toEqual([]);
  });

  it('set_price checks its unit and overage rule: CK015 for a unit that holds no balance, CK006 for an overage on credits, CK001 out of range', async () => {
    const before = await db.query('select count(*)::int as n from creditkit.prices');
    expect(await outcome(ck.setPrice({ p_event: 'x', p_credits_per_unit: 1, p_unit: 'nope' }))).toBe('CK015');
    expect(await outcome(ck.setPrice({ p_event: 'x', p_credits_per_unit: 1, p_unit: 'hd' }))).toBe('CK015');
    expect(await outcome(ck.setPrice({ p_event: 'x', p_credits_per_unit: 1, p_unit: null }))).toBe('CK015');
    expect(await outcome(ck.setPrice({ p_event: 'x', p_credits_per_unit: 1, p_overage_credits_per_unit: 2 }))).toBe('CK006');
    expect(await outcome(ck.setPrice({ p_event: 'x', p_credits_per_unit: 1, p_unit: 'messages', p_overage_credits_per_unit: 0 }))).toBe('CK001');
    expect(await db.query('select count(*)::int as n from creditkit.prices')).toEqual(before);
    // a unit a price names keeps its kind
    await ck.upsertUnit({ p_id: 'tokens', p_name: 'Tokens', p_kind: 'metered' });
    await ck.setPrice({ p_event: 'tokens', p_credits_per_unit: 1, p_unit: 'tokens' });
    expect(await outcome(ck.upsertUnit({ p_id: 'tokens', p_name: 'Tokens', p_kind: 'boolean' }))).toBe('CK006');
  });

  it('signed-in reads of a unit the account has not touched yet answer its plan allowance, not 0', async () => {
    await ck.upsertPlan({ p_id: 'units-preview', p_name: 'Preview', p_allowance: 0 });
    await ck.setPlanLimit({ p_plan_id: 'units-preview', p_unit: 'images', p_allowance: 7, p_period: 'week' });
    const a = newAccountId();
    await ck.setPlan({ p_account_id: a, p_plan_id: 'units-preview', p_now: at(0) });
    await ck.grant({ p_account_id: a, p_amount: 1, p_now: at(0) });
    expect(await balances(a)).toEqual({ credits: 1 }); // images not opened yet
    const me = creditkit(runAs.user(db, a));
    expect(await me.myCheck({ p_unit: 'images', p_amount: 7 })).toEqual({ allowed: true, balance: 7 });
    expect(await me.myCheck({ p_unit: 'images', p_amount: 8 })).toEqual({ allowed: false, balance: 7 });
    expect(await me.myBalance({ p_unit: 'images' })).toMatchObject({ balance: 7, buckets: [] });
    expect(await me.myCheck({ p_unit: 'messages' })).toEqual({ allowed: false, balance: 0 }); // no limit: nothing
    expect(await balances(a)).toEqual({ credits: 1 }); // reads wrote nothing
    // and the server's first touch opens it with exactly that
    expect(await ck.check({ p_account_id: a, p_unit: 'images', p_amount: 7 })).toEqual({ allowed: true, balance: 7 });
  });

  it('a plan change re-bases every unit; a removed limit stops renewing; a limit added later starts at the next touch', async () => {
    await ck.upsertPlan({ p_id: 'units-a', p_name: 'A', p_allowance: 10 });
    await ck.upsertPlan({ p_id: 'units-b', p_name: 'B', p_allowance: 10 });
    await ck.setPlanLimit({ p_plan_id: 'units-a', p_unit: 'messages', p_allowance: 50, p_period: 'week' });
    await ck.setPlanLimit({ p_plan_id: 'units-b', p_unit: 'messages', p_allowance: 500, p_period: 'month' });
    const a = newAccountId();
    await ck.setPlan({ p_account_id: a, p_plan_id: 'units-a', p_now: at(0) });
    await ck.report({ p_account_id: a, p_unit: 'messages', p_amount: 10, p_now: at(HOUR) });
    await ck.grant({ p_account_id: a, p_amount: 3, p_now: at(HOUR), p_unit: 'images' }); // no limit: a plain bucket
    await ck.setPlan({ p_account_id: a, p_plan_id: 'units-b', p_now: at(2 * HOUR) });
    // A's 40 messages left are booked as expired at once, B's 500 start now
    expect(await balances(a)).toEqual({ credits: 10, images: 3, messages: 500 });
    // B stops including messages: what was granted runs to its period end, then nothing renews
    expect(await ck.setPlanLimit({ p_plan_id: 'units-b', p_unit: 'messages', p_allowance: null })).toBeNull();
    expect((await ck.check({ p_account_id: a, p_unit: 'messages', p_amount: 1, p_now: at(DAY) })).balance).toBe(500);
    expect((await ck.check({ p_account_id: a, p_unit: 'messages', p_amount: 1, p_now: at(40 * DAY) })).balance).toBe(0);
    const [none] = await db.query<{ n: number }>(`select count(*)::int as n from creditkit.allowances where account_id = $1`, [a]);
    expect(none!.n).toBe(0);
    // images had no limit when its row opened; a limit added now starts at the account's next touch of images
    await ck.setPlanLimit({ p_plan_id: 'units-b', p_unit: 'images', p_allowance: 4, p_period: 'day' });
    expect((await ck.check({ p_account_id: a, p_unit: 'images', p_amount: 1, p_now: at(40 * DAY + HOUR) })).balance).toBe(7);
    const [plan] = await db.asUser<{ plan_id: string; limits: unknown }>(a, 'select plan_id, limits from creditkit_my_plan()');
    expect(plan).toEqual({ plan_id: 'units-b', limits: { images: { allowance: 4, period: 'day', renewal: 'reset', rollover_cap: null } } });
    await expectConsistent(db, [a]);
  });

  it('the charge-on-insert trigger spends a unit named as its fourth argument; the three-argument form still prices in credits', async () => {
    await db.exec(`
      create table public.units_chat (id bigint generated always as identity primary key, account_id uuid not null, body text);
      create trigger charge_message before insert on public.units_chat
        for each row execute function creditkit.charge_on_insert('message', '2', 'account_id', 'messages');
      create table public.units_tasks (id bigint generated always as identity primary key, account_id uuid not null);
      create trigger charge_task before insert on public.units_tasks
        for each row execute function creditkit.charge_on_insert('task', '1', 'account_id');`);
    await ck.setPrice({ p_event: 'task', p_credits_per_unit: 3, p_effective_from: '2020-01-01T00:00:00Z' }); // the trigger acts at now()
    const a = await openAccount(ck, 10);
    await ck.grant({ p_account_id: a, p_amount: 3, p_now: at(1), p_unit: 'messages' });
    await db.query(`insert into public.units_chat (account_id, body) values ($1, 'hi')`, [a]);
    expect(await outcome(db.query(`insert into public.units_chat (account_id, body) values ($1, 'again')`, [a]))).toBe('CK002');
    await db.query(`insert into public.units_tasks (account_id) values ($1)`, [a]);
    expect(await balances(a)).toEqual({ credits: 7, messages: 1 });
    const [row] = await db.query<{ event: string; metadata: unknown }>(
      `select event, metadata from creditkit.ledger where account_id = $1 and unit = 'messages' and kind = 'consume'`, [a]);
    expect(row).toEqual({ event: 'message', metadata: { table: 'public.units_chat' } });
    await expectConsistent(db, [a]);
  });

  it('signed-in reads per unit: my_check, my_balance, my_history and has_credits see the unit asked for', async () => {
    const a = await openAccount(ck, 9);
    await ck.grant({ p_account_id: a, p_amount: 4, p_now: at(1), p_unit: 'messages' });
    const me = creditkit(runAs.user(db, a));
    expect(await me.myCheck({ p_unit: 'messages', p_amount: 4 })).toEqual({ allowed: true, balance: 4 });
    expect(await me.myCheck({ p_unit: 'messages', p_amount: 5 })).toEqual({ allowed: false, balance: 4 });
    expect(await me.myCheck({})).toEqual({ allowed: true, balance: 9 });
    expect((await me.myBalance({ p_unit: 'messages' })).balance).toBe(4);
    expect((await me.myHistory({ p_unit: 'messages' })).map((h) => Number(h.amount))).toEqual([4]);
    expect(await me.hasCredits({ p_amount: 5, p_unit: 'messages' })).toBe(false);
    expect(await me.hasCredits({ p_amount: 9 })).toBe(true);
    const other = creditkit(runAs.user(db, newAccountId()));
    expect(await outcome(other.myCheck({ p_unit: 'messages', p_account_id: a }))).toBe('CK005');
    expect(await other.hasCredits({ p_amount: 1, p_unit: 'messages', p_account_id: a })).toBe(false);
    expect(await outcome(creditkit(runAs.anon(db)).myCheck({ p_unit: 'messages' }))).toBe('42501');
  });

  it('the starter grant (opt-in): each sign-up gets every unit\'s starter amount once; a failing grant never fails the sign-up', async () => {
    await db.exec(`select creditkit.set_starter_grant('credits', 50, 'promotional', '30 days');
                   select creditkit.set_starter_grant('messages', 10);`);
    expect(await outcome(db.query(`select creditkit.set_starter_grant('hd', 1)`))).toBe('CK015');
    expect(await outcome(db.query(`select creditkit.set_starter_grant('credits', 0)`))).toBe('CK001');
    const before = await db.createUser();
    expect(await balances(before)).toEqual({}); // configured, not enabled: nothing
    await db.exec('select creditkit.enable_starter_grant(); select creditkit.enable_starter_grant();'); // idempotent
    try {
      const user = await db.createUser();
      expect(await balances(user)).toEqual({ credits: 50, messages: 10 });
      // the account opened on the default plan (its credits allowance and unit limits start now)
      expect(await db.query('select plan_id, status from creditkit.subscriptions where account_id = $1', [user]))
        .toEqual([{ plan_id: 'free', status: 'active' }]);
      const [credits] = await db.query<{ category: string; expires: boolean }>(
        `select category, expires_at is not null as expires from creditkit.grants where account_id = $1 and unit = 'credits'`, [user]);
      expect(credits).toEqual({ category: 'promotional', expires: true });
      await db.query('select creditkit.grant_starter($1, now())', [user]); // again: each key replays
      expect(await balances(user)).toEqual({ credits: 50, messages: 10 });
      // a starter grant that fails (messages made boolean behind the kit's back) never fails the sign-up
      await db.exec(`update creditkit.units set kind = 'boolean' where id = 'messages'`);
      let broken: string;
      try {
        broken = await db.createUser();
      } finally {
        await db.exec(`update creditkit.units set kind = 'metered' where id = 'messages'`);
      }
      expect(await balances(broken)).toEqual({}); // nothing of it: it failed as a whole
      const taken = broken;
      await expectConsistent(db, [user, taken]);
    } finally {
      await db.exec(`select creditkit.disable_starter_grant();
                     select creditkit.set_starter_grant('credits', null); select creditkit.set_starter_grant('messages', null);`);
    }
    expect(await balances(await db.createUser())).toEqual({});
  });

  // ── Property: one account holding two units answers, per unit, exactly as accounts that only
  // ever see that unit's commands ────────────────────────────────────────────────────────────

  type Unit = 'credits' | 'messages';
  type Command =
    | { t: 'grant'; unit: Unit; amount: number; expiresIn: number | null }
    | { t: 'consume'; unit: Unit; amount: number; key: number | null }
    | { t: 'check'; unit: Unit; amount: number }
    | { t: 'reserve'; unit: Unit; amount: number; ttlMinutes: number }
    | { t: 'settle'; unit: Unit; hold: number; actual: number }
    | { t: 'release'; unit: Unit; hold: number }
    | { t: 'adjust'; unit: Unit; amount: number }
    | { t: 'tick'; minutes: number };

  const unitArb = fc.constantFrom<Unit>('credits', 'messages');
  const commandArb: fc.Arbitrary<Command> = fc.oneof(
    fc.record({ t: fc.constant('grant' as const), unit: unitArb, amount: fc.integer({ min: 1, max: 20 }),
                expiresIn: fc.option(fc.integer({ min: 10, max: 300 }), { nil: null }) }),
    fc.record({ t: fc.constant('consume' as const), unit: unitArb, amount: fc.integer({ min: 1, max: 12 }),
                key: fc.option(fc.integer({ min: 0, max: 2 }), { nil: null }) }),
    fc.record({ t: fc.constant('check' as const), unit: unitArb, amount: fc.integer({ min: 1, max: 12 }) }),
    fc.record({ t: fc.constant('reserve' as const), unit: unitArb, amount: fc.integer({ min: 1, max: 12 }),
                ttlMinutes: fc.integer({ min: 5, max: 120 }) }),
    fc.record({ t: fc.constant('settle' as const), unit: unitArb, hold: fc.nat(3), actual: fc.integer({ min: 0, max: 15 }) }),
    fc.record({ t: fc.constant('release' as const), unit: unitArb, hold: fc.nat(3) }),
    fc.record({ t: fc.constant('adjust' as const), unit: unitArb, amount: fc.integer({ min: -8, max: 8 }).filter((n) => n !== 0) }),
    fc.record({ t: fc.constant('tick' as const), minutes: fc.integer({ min: 1, max: 180 }) }),
  );

  /** What an answer says, without the ids the two databases' runs assign differently. */
  function gist(s: Awaited<ReturnType<typeof settle>>): unknown {
    if (!s.ok) return { code: s.code };
    const row = { ...(s.value as Record<string, unknown>) };
    for (const id of ['transaction_id', 'grant_id', 'hold_id']) if (id in row) row[id] = row[id] === null ? null : 'id';
    return row;
  }

  it('property: two units of one account never leak into each other (spends, grants, expiries, holds)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(commandArb, { minLength: 1, maxLength: 30 }), async (commands) => {
        const both = newAccountId();
        const alone: Record<Unit, string> = { credits: newAccountId(), messages: newAccountId() };
        for (const account of [both, alone.credits, alone.messages]) await openAccount(ck, 5, account);
        const holds = new Map<string, Array<number | null>>(); // account/unit -> hold ids in reserve order
        let now = MINUTE;
        const run = async (account: string, c: Exclude<Command, { t: 'tick' }>) => {
          const unit = c.unit;
          const mine = holds.get(`${account}/${unit}`) ?? [];
          holds.set(`${account}/${unit}`, mine);
          switch (c.t) {
            case 'grant':
              return settle(ck.grant({ p_account_id: account, p_amount: c.amount, p_now: at(now), p_unit: unit,
                                       p_expires_at: c.expiresIn === null ? null : at(now + c.expiresIn * MINUTE) }));
            case 'consume':
              return settle(ck.report({ p_account_id: account, p_unit: unit, p_amount: c.amount, p_now: at(now),
                                        p_idempotency_key: c.key === null ? null : `${unit}-${c.key}` }));
            case 'check':
              return settle(ck.check({ p_account_id: account, p_unit: unit, p_amount: c.amount, p_now: at(now) }));
            case 'reserve': {
              const r = await settle(ck.reserve({ p_account_id: account, p_amount: c.amount, p_ttl: `${c.ttlMinutes} minutes`,
                                                 p_now: at(now), p_unit: unit }));
              if (r.ok && r.value.allowed) mine.push(r.value.hold_id);
              return r;
            }
            case 'settle': {
              const id = mine[c.hold];
              return id === undefined ? { ok: true as const, value: 'no hold' } : settle(ck.settleHold({ p_hold_id: id, p_actual: c.actual, p_now: at(now) }));
            }
            case 'release': {
              const id = mine[c.hold];
              return id === undefined ? { ok: true as const, value: 'no hold' } : settle(ck.release({ p_hold_id: id, p_now: at(now) }));
            }
            case 'adjust':
              return settle(ck.adjust({ p_account_id: account, p_amount: c.amount, p_reason: 'fix', p_now: at(now), p_unit: unit }));
          }
        };
        for (const c of commands) {
          if (c.t === 'tick') {
            now += c.minutes * MINUTE;
            continue;
          }
          const [together, apart] = [await run(both, c), await run(alone[c.unit], c)];
          expect(gist(together), JSON.stringify(c)).toEqual(gist(apart));
        }
        const end = at(now + DAY);
        for (const unit of ['credits', 'messages'] as const) {
          const ledger = (account: string) => db.query(
            `select kind, amount::bigint as amount, balance_after::bigint as after, created_at, event, metadata - 'hold_id' as metadata
               from creditkit.ledger where account_id = $1 and unit = $2 order by id`, [account, unit]);
          expect(await ledger(both), unit).toEqual(await ledger(alone[unit]));
          const [x, y] = [await settle(ck.check({ p_account_id: both, p_unit: unit, p_amount: 1, p_now: end })),
                          await settle(ck.check({ p_account_id: alone[unit], p_unit: unit, p_amount: 1, p_now: end }))];
          expect(gist(x)).toEqual(gist(y));
          // the buckets as they stand, drawn (a lock draws what the fast path left undrawn)
          const buckets = async (account: string) => {
            const b = await settle(ck.balance({ p_account_id: account, p_now: end, p_unit: unit }));
            return b.ok ? b.value.buckets.map(({ grant_id: _id, ...rest }) => rest) : b.code;
          };
          expect(await buckets(both), `${unit} buckets`).toEqual(await buckets(alone[unit]));
          const remaining = (account: string) => db.query(
            `select category, amount::bigint as amount, remaining::bigint as remaining, expires_at from creditkit.grants
              where account_id = $1 and unit = $2 order by id`, [account, unit]);
          expect(await remaining(both), `${unit} grants`).toEqual(await remaining(alone[unit]));
        }
        expect(await ledgerProblems(db, [both, alone.credits, alone.messages])).toEqual([]);
      }),
      {
        numRuns: Number(process.env.CREDITKIT_UNITS_RUNS ?? 20),
        seed: process.env.CREDITKIT_UNITS_SEED ? Number(process.env.CREDITKIT_UNITS_SEED) : undefined,
        path: process.env.CREDITKIT_UNITS_PATH,
        endOnFailure: true,
      },
    );
  }, 300_000);
});

describeIfPostgres('units under concurrency', () => {
  const CONNECTIONS = 40;
  let db: TestDatabase;
  let pool: pg.Pool;
  let gauge: Gauge;
  beforeAll(async () => {
    db = await createTestDatabase({ backend: 'postgres' });
    pool = db.pool({ max: CONNECTIONS });
    await warmPool(pool, CONNECTIONS);
    await creditkit(runAs.service(db)).upsertUnit({ p_id: 'messages', p_name: 'Messages', p_kind: 'metered' });
  });
  afterAll(() => db?.drop());

  it('150 reports of messages and 150 consumes of credits at once on one account: exactly 100 of each, nothing negative', async () => {
    gauge = newGauge();
    const ck = creditkit(pooledRunner(pool, 'service_role', { role: 'service_role' }, gauge));
    const a = await openAccount(ck, 100);
    await ck.grant({ p_account_id: a, p_amount: 100, p_now: at(1), p_unit: 'messages' });
    const calls = range(300).map((i) =>
      i % 2 === 0
        ? ck.report({ p_account_id: a, p_unit: 'messages', p_amount: 1, p_now: at(2) }).then((r) => ['messages', r] as const)
        : ck.consume({ p_account_id: a, p_amount: 1, p_now: at(2) }).then((r) => ['credits', r] as const));
    // a few checks in the race as well: they never block a spend and never see below zero
    const checks = range(20).map(() => ck.check({ p_account_id: a, p_unit: 'messages', p_amount: 1, p_now: at(2) }));
    const [answers, seen] = await Promise.all([Promise.all(calls), Promise.all(checks)]);
    expect(gauge.max).toBeGreaterThan(5);
    for (const unit of ['messages', 'credits']) {
      const mine = answers.filter(([u]) => u === unit).map(([, r]) => r);
      expect(mine.filter((r) => r.allowed)).toHaveLength(100);
      expect(mine.filter((r) => r.allowed).map((r) => r.balance).sort((x, y) => x - y)).toEqual(range(100));
    }
    expect(seen.every((c) => c.balance >= 0 && c.balance <= 100)).toBe(true);
    const rows = await db.query<{ unit: string; balance: number; lowest: number }>(
      `select a.unit, a.balance::bigint as balance,
              (select min(l.balance_after)::bigint from creditkit.ledger l where l.account_id = a.id and l.unit = a.unit) as lowest
         from creditkit.accounts a where a.id = $1 order by a.unit`, [a]);
    expect(rows).toEqual([{ unit: 'credits', balance: 0, lowest: 0 }, { unit: 'messages', balance: 0, lowest: 0 }]);
    await expectConsistent(db, [a]);
  });

  it('plan changes racing reports on several units of one account end consistent, without deadlock', async () => {
    const service = creditkit(runAs.service(db));
    await service.upsertUnit({ p_id: 'images', p_name: 'Images', p_kind: 'metered' });
    await service.upsertPlan({ p_id: 'race-a', p_name: 'A', p_allowance: 50 });
    await service.upsertPlan({ p_id: 'race-b', p_name: 'B', p_allowance: 80 });
    for (const plan of ['race-a', 'race-b']) {
      await service.setPlanLimit({ p_plan_id: plan, p_unit: 'messages', p_allowance: 30, p_period: 'day' });
      await service.setPlanLimit({ p_plan_id: plan, p_unit: 'images', p_allowance: 10, p_period: 'day' });
    }
    const a = newAccountId();
    await service.setPlan({ p_account_id: a, p_plan_id: 'race-a', p_now: at(0) });
    gauge = newGauge();
    const ck = creditkit(pooledRunner(pool, 'service_role', { role: 'service_role' }, gauge));
    const now = at(HOUR);
    const results = await Promise.all(range(120).map((i) => {
      if (i % 15 === 0) return settle(ck.setPlan({ p_account_id: a, p_plan_id: i % 30 === 0 ? 'race-b' : 'race-a', p_now: now }));
      const unit = ['messages', 'images', 'credits'][i % 3]!;
      return settle(ck.report({ p_account_id: a, p_unit: unit, p_amount: 1, p_now: now }));
    }));
    expect(results.filter((r) => !r.ok).map((r) => (r as { code: string }).code)).toEqual([]);
    await expectConsistent(db, [a]);
  });
});
