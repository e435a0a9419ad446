// Renewals, holds and metering under real concurrency on real Postgres: each call in its own
// transaction on its own pooled connection, exactly as PostgREST runs an RPC, with the overlap
// measured (a gauge of transactions open at once) so a race that did not happen cannot pass.
// Evidence is taken from the ledger and the holds table, not only from the answers.
import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@creditkit/testing';
import { describeIfPostgres } from '@creditkit/testing/vitest';
import {
  DAY, HOUR, MINUTE, at, creditkit, expectConsistent, ledgerOf, microsSql, newAccountId, newGauge, openAccount, planGrantsOf,
  pooledRunner, prng, settle, usOf, warmPool, type Creditkit, type Gauge, type Settled,
} from './support.ts';

// Fewer than concurrency.test.ts's 60, so that both files together stay under Postgres's default
// max_connections (100) should vitest run them side by side.
const CONNECTIONS = 36;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const FEB_1 = usOf('2030-02-01T00:00:00Z'); // the first renewal of a monthly plan anchored at EPOCH

describeIfPostgres('concurrency: renewals, holds, metering', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let gauge: Gauge;
  beforeAll(async () => {
    db = await createTestDatabase({ backend: 'postgres' });
    pool = db.pool({ max: CONNECTIONS });
    await warmPool(pool, CONNECTIONS);
  });
  afterAll(() => db?.drop());

  // The service key on the pool; each test measures its own overlap.
  const race = (): Creditkit => {
    gauge = newGauge();
    return creditkit(pooledRunner(pool, 'service_role', { role: 'service_role' }, gauge));
  };

  it('50 consumes racing at and just after a renewal boundary (with reads and sweeps): exactly one renewal, exact balances', async () => {
    const ck = race();
    const rnd = prng(20300201);
    await ck.upsertPlan({ p_id: 'race-monthly', p_name: 'Race', p_allowance: 1000 });
    const account = newAccountId();
    await ck.setPlan({ p_account_id: account, p_plan_id: 'race-monthly', p_now: at(0) });
    await ck.consume({ p_account_id: account, p_amount: 100, p_now: at(DAY) }); // 900 of period 0 left

    const calls: Array<Promise<unknown>> = [];
    const consumes = range(50).map(() => ck.consume({ p_account_id: account, p_amount: 1, p_now: at(FEB_1 + rnd.int(0, 999)) }));
    calls.push(...consumes);
    const reads = range(8).map((i) => ck.balance({ p_account_id: account, p_now: at(FEB_1 + i) }));
    calls.push(...reads, ck.bookExpired({ p_now: at(FEB_1) }), ck.bookExpired({ p_now: at(FEB_1 + 1) }));
    await Promise.all(calls);
    expect(gauge.max).toBeGreaterThan(10);

    // one expire row for period 0's bucket, one plan bucket for period 1, fifty consumes
    const grants = await planGrantsOf(db, account);
    expect(grants.map((g) => [g.period_index, g.period_start, g.period_end, g.amount, g.remaining])).toEqual([
      [0, at(0), at(FEB_1), 1000, 0],
      [1, at(FEB_1), at(usOf('2030-03-01T00:00:00Z')), 1000, 950],
    ]);
    const rows = await ledgerOf(db, account);
    expect(rows.filter((r) => r.kind === 'expire').map((r) => [r.amount, r.grant_id])).toEqual([[-900, grants[0]?.grant_id]]);
    expect(rows.filter((r) => r.kind === 'grant').length).toBe(2);
    expect(rows.filter((r) => r.kind === 'consume').length).toBe(51);
    const answers = await Promise.all(consumes);
    expect(answers.every((a) => a.allowed)).toBe(true);
    expect(answers.map((a) => a.balance).sort((a, b) => a - b)).toEqual(range(50).map((i) => 950 + i));
    for (const r of await Promise.all(reads)) expect(r.balance).toBeGreaterThanOrEqual(950);
    expect((await ck.balance({ p_account_id: account, p_now: at(FEB_1 + DAY) })).balance).toBe(950);
    await expectConsistent(db, [account]);
  });

  it('settle, settle again, release and expiry racing on 40 holds (p_now on both sides of expires_at): each resolves exactly once', async () => {
    const ck = race();
    const rnd = prng(424242);
    const E = HOUR; // every hold expires here
    // Two holds per account: a call at E on either hold of an account expires both, so with many
    // holds on one account nearly all would expire; two keeps every outcome common.
    const accounts = await Promise.all(range(20).map(() => openAccount(ck, 1000)));
    const holds: Array<{ id: number; account: string }> = [];
    for (const account of accounts) {
      for (let i = 0; i < 2; i++) {
        const r = await ck.reserve({ p_account_id: account, p_amount: 10, p_ttl: '1 hour', p_now: at(0) });
        if (r.hold_id === null) throw new Error('not reserved');
        holds.push({ id: r.hold_id, account });
      }
    }

    type Answer = { charged?: number; transaction_id?: number | null; status?: string };
    type Call = { hold: number; op: 'settle' | 'release'; actual?: number; now: number; result: Settled<Answer> };
    const side = () => (rnd.next() < 0.5 ? E - 1 : E);
    const plan = holds.flatMap(({ id }) => {
      const actual = rnd.int(0, 20);
      return [
        { hold: id, op: 'settle' as const, actual, now: side() },
        { hold: id, op: 'settle' as const, actual, now: side() }, // the same settle again (a retry)
        { hold: id, op: 'release' as const, now: side() },
      ];
    }).sort(() => rnd.next() - 0.5);
    const calls: Call[] = [];
    await Promise.all([
      ...plan.map(async (c) => {
        const result = await settle<Answer>(c.op === 'settle'
          ? ck.settleHold({ p_hold_id: c.hold, p_actual: c.actual, p_now: at(c.now) })
          : ck.release({ p_hold_id: c.hold, p_now: at(c.now) }));
        calls.push({ ...c, result });
      }),
      // touches that expire holds, and the sweep, racing them
      ...accounts.map((account) => ck.balance({ p_account_id: account, p_now: at(E) })),
      ck.bookExpired({ p_now: at(E) }),
    ]);
    expect(gauge.max).toBeGreaterThan(10);
    for (const account of accounts) await ck.balance({ p_account_id: account, p_now: at(E + 1) }); // expire what is left

    const unexpected = calls.filter((c) => !c.result.ok && c.result.code !== 'CK012');
    expect(unexpected.map((c) => `${c.op} ${c.hold}: ${(c.result as { code: string }).code}`)).toEqual([]);
    const state = await db.query<{ id: number; status: string; settled_amount: number | null; charged: number | null; transaction_id: number | null; resolved_us: number }>(
      `select id, status, settled_amount, charged, transaction_id, ${microsSql('resolved_at')} as resolved_us
         from creditkit.holds where id = any ($1) order by id`, [holds.map((h) => h.id)]);
    const charges = await db.query<{ id: number; amount: number; hold: number }>(
      `select id, amount, (metadata->>'hold_id')::bigint as hold from creditkit.ledger
        where account_id = any ($1) and kind = 'consume'`, [accounts]);
    const problems: string[] = [];
    for (const h of state) {
      const mine = calls.filter((c) => c.hold === h.id);
      const won = mine.filter((c) => c.result.ok);
      const rows = charges.filter((r) => r.hold === h.id);
      const say = (what: string) => problems.push(`hold ${h.id} (${h.status}): ${what}`);
      if (h.status === 'settled') {
        if (h.resolved_us !== E - 1) say(`resolved at ${h.resolved_us}, not before its expiry`);
        for (const c of mine.filter((x) => x.op === 'release')) if (c.result.ok) say('a release succeeded after it was settled');
        for (const c of won) {
          const v = (c.result as { value: { charged?: number; transaction_id?: number | null } }).value;
          if (c.actual !== h.settled_amount || v.charged !== h.charged || v.transaction_id !== h.transaction_id) say(`answer ${JSON.stringify(v)} is not the settlement`);
        }
        const expected = h.charged ? [[h.transaction_id, -h.charged]] : [];
        if (JSON.stringify(rows.map((r) => [r.id, r.amount])) !== JSON.stringify(expected)) say(`charge rows ${JSON.stringify(rows)}`);
      } else if (h.status === 'released' || h.status === 'expired') {
        if (h.status === 'released' && h.resolved_us !== E - 1) say(`released at ${h.resolved_us}, not before its expiry`);
        if (h.status === 'expired' && h.resolved_us < E) say(`expired at ${h.resolved_us}, before its expiry`);
        for (const c of won) {
          if (c.op === 'settle') say('a settle succeeded');
          else if ((c.result as { value: { status?: string } }).value.status !== h.status) say(`a release answered ${JSON.stringify(c.result)}`);
        }
        if (rows.length) say('it was charged');
      } else {
        say('still open');
      }
    }
    expect(problems).toEqual([]);
    // every kind of resolution happened, so the race decided something
    expect(new Set(state.map((h) => h.status))).toEqual(new Set(['settled', 'released', 'expired']));
    // held back to 0 and balances exact: 1000 minus what was charged
    const accountsNow = await db.query<{ id: string; balance: number; held: number }>(
      'select id, balance, held from creditkit.accounts where id = any ($1)', [accounts]);
    for (const a of accountsNow) {
      const charged = state.filter((h) => holds.find((x) => x.id === h.id)?.account === a.id).reduce((s, h) => s + (h.charged ?? 0), 0);
      expect({ balance: a.balance, held: a.held }).toEqual({ balance: 1000 - charged, held: 0 });
    }
    await expectConsistent(db, accounts);
  });

  it('settles, releases, reserves and consumes racing across the expiry of the credit under 40 holds: every hold is paid, nothing held goes unpaid, balance - held never negative', async () => {
    const ck = race();
    const rnd = prng(20300301);
    const account = newAccountId();
    // 200 promotional credits that expire at 10 minutes, and 30 that never expire; 40 holds of 5
    // reserve all but 30 of it before the expiry.
    await ck.grant({ p_account_id: account, p_amount: 200, p_category: 'promotional', p_expires_at: at(10 * MINUTE), p_now: at(0) });
    await ck.grant({ p_account_id: account, p_amount: 30, p_now: at(0) });
    const holds = await Promise.all(range(40).map(() => ck.reserve({ p_account_id: account, p_amount: 5, p_ttl: '1 hour', p_now: at(MINUTE) })));
    expect(holds.every((h) => h.allowed)).toBe(true);

    // After the expiry: half the holds settle (at or below their reserve), the other half are
    // released, while consumes, reserves and reads race them; every call's p_now is after the expiry.
    const after = () => at(10 * MINUTE + rnd.int(0, 60_000) * 1000);
    const actuals = holds.map(() => rnd.int(0, 5));
    const settles = holds.slice(0, 20).map((h, i) => ck.settleHold({ p_hold_id: h.hold_id, p_actual: actuals[i]!, p_now: after() }));
    const releases = holds.slice(20).map((h) => ck.release({ p_hold_id: h.hold_id, p_now: after() }));
    const consumes = range(20).map(() => ck.consume({ p_account_id: account, p_amount: 2, p_now: after() }));
    const reserves = range(10).map(() => ck.reserve({ p_account_id: account, p_amount: 3, p_ttl: '1 hour', p_now: after() }));
    const reads = range(5).map(() => ck.balance({ p_account_id: account, p_now: after() }));
    // every committed state seen while they race: balance - held is never negative
    const seen: number[] = [];
    let racing = true;
    const sampler = (async () => {
      while (racing) {
        const [r] = await db.query<{ spendable: number }>('select balance - held as spendable from creditkit.accounts where id = $1', [account]);
        seen.push(r!.spendable);
      }
    })();
    const [settled, , consumed, reserved] = await Promise.all([
      Promise.all(settles), Promise.all(releases), Promise.all(consumes), Promise.all(reserves), Promise.all(reads),
    ]).finally(() => { racing = false; });
    await sampler;
    expect(gauge.max).toBeGreaterThan(10);
    expect(seen.length).toBeGreaterThan(1);
    expect(seen.filter((v) => v < 0)).toEqual([]);

    // Every settle at or below its reserve is charged in full, though the credit under it expired.
    expect(settled.map((s) => s.shortfall)).toEqual(range(20).map(() => 0));
    expect(settled.map((s) => s.charged)).toEqual(actuals.slice(0, 20));
    // The consumes and new reserves could only use the 30 that never expire.
    const spent = consumed.filter((c) => c.allowed).length * 2;
    const newlyHeld = reserved.filter((r) => r.allowed).length * 3;
    expect(spent + newlyHeld).toBeLessThanOrEqual(30);
    // What the 40 holds kept of the expired credit and did not charge has expired by now.
    const charged = actuals.slice(0, 20).reduce((n, a) => n + a, 0);
    const [row] = await db.query<{ balance: number; held: number }>('select balance, held from creditkit.accounts where id = $1', [account]);
    expect(row).toEqual({ balance: 30 - spent, held: newlyHeld });
    const rows = await ledgerOf(db, account);
    expect(rows.filter((r) => r.kind === 'consume').reduce((n, r) => n - Number(r.amount), 0)).toBe(charged + spent);
    expect(rows.filter((r) => r.kind === 'expire').reduce((n, r) => n - Number(r.amount), 0)).toBe(200 - charged);
    await expectConsistent(db, [account]);
  });

  it('100 concurrent reserve(1) on a balance of 50: exactly 50 holds open, spendable 0, the ledger untouched', async () => {
    const ck = race();
    const account = await openAccount(ck, 50);
    const answers = await Promise.all(range(100).map(() => ck.reserve({ p_account_id: account, p_amount: 1, p_ttl: '1 hour', p_now: at(1) })));
    expect(gauge.max).toBeGreaterThan(10);
    const allowed = answers.filter((a) => a.allowed);
    expect(allowed).toHaveLength(50);
    expect(new Set(allowed.map((a) => a.hold_id)).size).toBe(50);
    expect(allowed.map((a) => a.balance).sort((a, b) => a - b)).toEqual(range(50));
    expect(answers.filter((a) => !a.allowed).every((a) => a.balance === 0 && a.hold_id === null)).toBe(true);
    expect(await db.query(`select count(*) filter (where status = 'open') as open, count(*) as total from creditkit.holds where account_id = $1`, [account])).toEqual([{ open: 50, total: 50 }]);
    expect(await db.query('select balance, held from creditkit.accounts where id = $1', [account])).toEqual([{ balance: 50, held: 50 }]);
    expect((await ck.balance({ p_account_id: account, p_now: at(2) })).balance).toBe(0);
    expect(await ck.consume({ p_account_id: account, p_amount: 1, p_now: at(2) })).toEqual({ allowed: false, balance: 0, transaction_id: null });
    expect((await ledgerOf(db, account)).map((r) => r.kind)).toEqual(['grant']);
    await expectConsistent(db, [account]);
  });

  it('50 concurrent reserve calls with one key: one hold, 50 identical answers, the retries reserve nothing', async () => {
    const ck = race();
    const account = await openAccount(ck, 100);
    const answers = await Promise.all(
      range(50).map(() => ck.reserve({ p_account_id: account, p_amount: 30, p_ttl: '1 hour', p_idempotency_key: 'job-1', p_now: at(1) })),
    );
    expect(gauge.max).toBeGreaterThan(10);
    const holdIds = new Set(answers.map((a) => a.hold_id));
    expect(holdIds.size).toBe(1);
    expect(answers.filter((a) => JSON.stringify(a) !== JSON.stringify(answers[0]))).toEqual([]);
    expect(answers[0]?.allowed).toBe(true);
    expect(await db.query('select count(*) as n, sum(amount)::int as held from creditkit.holds where account_id = $1', [account])).toEqual([{ n: 1, held: 30 }]);
    // The account reserves exactly one hold, and its due time is that hold's expiry (a retry that
    // undid its reservation set it again from what is open).
    expect(await db.query(`select held, due_at = $2::timestamptz + interval '1 hour' as due_is_expiry from creditkit.accounts where id = $1`, [account, at(1)]))
      .toEqual([{ held: 30, due_is_expiry: true }]);
    await expectConsistent(db, [account]);
  });

  it('reserve and settle racing consumes on one account: every credit accounted for, nothing held after', async () => {
    const ck = race();
    const account = await openAccount(ck, 600);
    const rand = prng(7);
    const actuals = range(40).map(() => rand.int(0, 8)); // against a reserve of 5
    const flows = range(40).map(async (i) => {
      const r = await ck.reserve({ p_account_id: account, p_amount: 5, p_ttl: '1 hour', p_now: at(1) });
      if (!r.allowed || r.hold_id === null) return { reserved: false, charged: 0 };
      const s = await ck.settleHold({ p_hold_id: r.hold_id, p_actual: actuals[i]!, p_now: at(2) });
      expect(s.charged + s.shortfall).toBe(actuals[i]);
      return { reserved: true, charged: s.charged };
    });
    const consumes = range(40).map(() => ck.consume({ p_account_id: account, p_amount: 3, p_now: at(2) }));
    const [settled, consumed] = await Promise.all([Promise.all(flows), Promise.all(consumes)]);
    expect(gauge.max).toBeGreaterThan(10);
    expect(settled.every((f) => f.reserved)).toBe(true); // 600 covers every reserve and consume
    const spent = settled.reduce((n, f) => n + f.charged, 0) + consumed.filter((c) => c.allowed).length * 3;
    expect(consumed.every((c) => c.allowed)).toBe(true);
    expect(await db.query('select balance, held from creditkit.accounts where id = $1', [account])).toEqual([{ balance: 600 - spent, held: 0 }]);
    expect(await db.query(`select count(*) filter (where status = 'settled') as settled, count(*) as total from creditkit.holds where account_id = $1`, [account]))
      .toEqual([{ settled: 40, total: 40 }]);
    const rows = await ledgerOf(db, account);
    expect(rows.filter((r) => r.kind === 'consume').reduce((n, r) => n - Number(r.amount), 0)).toBe(spent);
    await expectConsistent(db, [account]);
  });

  it('concurrent meter calls with one key while another transaction changes the price: one effect, identical answers', async () => {
    const ck = race();
    const [SAME_KEY, OTHER_KEYS] = [28, 4];
    await ck.setPrice({ p_event: 'race-gen', p_credits_per_unit: 5, p_effective_from: at(0) });
    const account = await openAccount(ck, 1000);

    // Hold the account's lock so that every meter call is inside its transaction, waiting, while
    // the price changes underneath them; then let them go.
    const blocker = await pool.connect();
    let meters: Array<Promise<unknown>> = [];
    try {
      await blocker.query('begin');
      await blocker.query('select 1 from creditkit.accounts where id = $1 for update', [account]);
      const call = (key: string) => ck.meter({ p_account_id: account, p_event: 'race-gen', p_quantity: 2, p_idempotency_key: key, p_now: at(HOUR) });
      // (leaving connections free for the price change)
      meters = [...range(SAME_KEY).map(() => call('job-1')), ...range(OTHER_KEYS).map((i) => call(`other-${i}`))];
      await waitFor(async () => (await waitingOnLocks(db)) >= 20);
      // the price changes (committed) while they wait
      await ck.setPrice({ p_event: 'race-gen', p_credits_per_unit: 7, p_effective_from: at(1) });
    } finally {
      await blocker.query('rollback');
      blocker.release();
    }
    const answers = (await Promise.all(meters)) as Array<{ allowed: boolean; balance: number; transaction_id: number; amount: number }>;
    expect(gauge.max).toBeGreaterThan(20);

    const same = answers.slice(0, SAME_KEY);
    expect(same.filter((a) => JSON.stringify(a) !== JSON.stringify(same[0]))).toEqual([]);
    // A call prices the event before it waits for the account (READ COMMITTED: the price it read),
    // so whoever won paid the old price or the new one, and its row records which.
    expect(same[0]).toMatchObject({ allowed: true });
    expect([10, 14]).toContain(same[0]?.amount);
    const rows = await db.query<{ id: number; amount: number; key: string; unit: number }>(
      `select id, amount, idempotency_key as key, (metadata->>'unit_credits')::bigint as unit from creditkit.ledger
        where account_id = $1 and kind = 'consume' order by id`, [account]);
    expect(rows.filter((r) => r.key === 'job-1')).toEqual([
      { id: same[0]?.transaction_id, amount: -same[0]!.amount, key: 'job-1', unit: same[0]!.amount / 2 },
    ]);
    expect(rows.length).toBe(1 + OTHER_KEYS); // one per key
    for (const [i, a] of answers.slice(SAME_KEY).entries()) {
      expect(a.allowed).toBe(true);
      expect(rows.find((r) => r.key === `other-${i}`)).toMatchObject({ id: a.transaction_id, amount: -a.amount, unit: a.amount / 2 });
    }
    // a retry after yet another price change still answers the first result
    await ck.setPrice({ p_event: 'race-gen', p_credits_per_unit: 9, p_effective_from: at(2) });
    expect(await ck.meter({ p_account_id: account, p_event: 'race-gen', p_quantity: 2, p_idempotency_key: 'job-1', p_now: at(2 * HOUR) })).toEqual(same[0]);
    expect((await ck.balance({ p_account_id: account, p_now: at(2 * HOUR) })).balance).toBe(1000 + rows.reduce((n, r) => n + Number(r.amount), 0));
    await expectConsistent(db, [account]);
  });
});

/** Backends of this database waiting on a lock right now. */
async function waitingOnLocks(db: TestDatabase): Promise<number> {
  const [row] = await db.query<{ n: number }>(
    `select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`);
  return row?.n ?? 0;
}

async function waitFor(condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the calls to block');
    await new Promise((r) => setTimeout(r, 20));
  }
}
