// Real connections racing on real Postgres, each call in its own transaction on its own
// connection exactly as PostgREST runs an RPC. PGlite has a single connection, so it cannot show
// any of this. Evidence is taken from the ledger, not only from the answers: an answer can only
// say what one caller saw, the ledger says what happened.
import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@creditkit/testing';
import { describeIfPostgres } from '@creditkit/testing/vitest';
import { LedgerModel, type Outcome } from './ledger-model.ts';
import {
  DAY, GRANTS, LEDGER_PROBLEMS_SQL, at, creditkit, expectConsistent, ledgerOf, microsSql, newAccountId, newGauge,
  openAccount, pooledRunner, prng, settle, warmPool, type Creditkit, type Gauge,
} from './support.ts';

const CONNECTIONS = 60;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describeIfPostgres('concurrency', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let gauge: Gauge;
  beforeAll(async () => {
    db = await createTestDatabase({ backend: 'postgres' });
    pool = db.pool({ max: CONNECTIONS });
    await warmPool(pool, CONNECTIONS); // so a burst of calls races instead of queueing on connect
  });
  afterAll(() => db?.drop());

  // The service key on the pool; each test measures its own overlap.
  const race = (): Creditkit => {
    gauge = newGauge();
    return creditkit(pooledRunner(pool, 'service_role', { role: 'service_role' }, gauge));
  };

  it('200 concurrent consume(1) on a balance of 100: exactly 100 succeed, never below zero', async () => {
    const ck = race();
    const account = await openAccount(ck, 100);
    const answers = await Promise.all(range(200).map(() => ck.consume({ p_account_id: account, p_amount: 1, p_now: at(1) })));
    expect(gauge.max).toBeGreaterThan(10);

    const [books] = await db.query(
      `select count(*) filter (where kind = 'consume') as consumes, min(balance_after) as lowest, sum(amount)::bigint as total
         from creditkit.ledger where account_id = $1`, [account]);
    expect(books).toEqual({ consumes: 100, lowest: 0, total: 0 });
    expect((await ck.balance({ p_account_id: account, p_now: at(2) })).balance).toBe(0);
    await expectConsistent(db, [account]);

    const allowed = answers.filter((a) => a.allowed);
    expect(allowed).toHaveLength(100);
    // each success names its own ledger row and saw a distinct balance, 99 down to 0
    expect(new Set(allowed.map((a) => a.transaction_id)).size).toBe(100);
    expect(allowed.map((a) => a.balance).sort((a, b) => a - b)).toEqual(range(100));
    expect(answers.filter((a) => !a.allowed).every((a) => a.balance === 0 && a.transaction_id === null)).toBe(true);
  });

  it('50 concurrent calls with one idempotency key: one ledger row, 50 identical answers', async () => {
    const ck = race();
    const account = await openAccount(ck, 1000);
    const answers = await Promise.all(
      range(50).map(() => ck.consume({ p_account_id: account, p_amount: 7, p_event: 'chat', p_idempotency_key: 'req-1', p_now: at(1) })),
    );
    expect(gauge.max).toBeGreaterThan(10);
    expect(answers[0]).toEqual({ allowed: true, balance: 993, transaction_id: expect.any(Number) });
    expect(answers.filter((a) => JSON.stringify(a) !== JSON.stringify(answers[0]))).toEqual([]);
    const rows = await ledgerOf(db, account);
    expect(rows.map((r) => [r.kind, r.amount, r.idempotency_key])).toEqual([['grant', 1000, null], ['consume', -7, 'req-1']]);
    expect(rows[1]?.id).toBe(answers[0]?.transaction_id);
    await expectConsistent(db, [account]);
  });

  it('50 concurrent grants with one key on an account that does not exist yet: one account, one grant', async () => {
    const ck = race();
    const account = newAccountId();
    const answers = await Promise.all(
      range(50).map(() => ck.grant({ p_account_id: account, p_amount: 25, p_category: 'plan', p_idempotency_key: 'inv-1', p_now: at(0) })),
    );
    expect(gauge.max).toBeGreaterThan(10);
    expect(answers[0]).toEqual({ transaction_id: expect.any(Number), grant_id: expect.any(Number), balance: 25 });
    expect(answers.filter((a) => JSON.stringify(a) !== JSON.stringify(answers[0]))).toEqual([]);
    const [counts] = await db.query(
      `select (select count(*) from creditkit.accounts where id = $1) as accounts,
              (select count(*) from creditkit.grants where account_id = $1) as grants,
              (select count(*) from creditkit.ledger where account_id = $1) as ledger_rows`, [account]);
    expect(counts).toEqual({ accounts: 1, grants: 1, ledger_rows: 1 });
    await expectConsistent(db, [account]);
  });

  it('consume racing the expiry instant: no credit is spent from a bucket at or after its expires_at', async () => {
    const ck = race();
    const rnd = prng(20261122);
    const T = DAY;
    for (let round = 0; round < 5; round++) {
      // 10 credits that expire at T, 5 that never do; 45 callers with p_now on both sides of T
      const account = newAccountId();
      const opening = [
        { amount: 10n, category: 'promotional' as const, expiresAt: T, priority: null, revenue: null, key: null },
        { amount: 5n, category: 'purchase' as const, expiresAt: null, priority: null, revenue: null, key: null },
      ];
      let model = new LedgerModel();
      for (const g of opening) {
        await ck.grant({ p_account_id: account, p_amount: g.amount, p_category: g.category, p_expires_at: g.expiresAt === null ? null : at(g.expiresAt), p_now: at(0) });
        model = applied(model.grant(g, 0));
      }
      const nows = [...range(20).map(() => T - 1), ...range(20).map(() => T), ...range(5).map(() => T + 1)].sort(() => rnd.next() - 0.5);
      const answers = await Promise.all(nows.map(async (now) => ({ now, ...(await ck.consume({ p_account_id: account, p_amount: 1, p_now: at(now) })) })));

      // The ledger is the serial order the lock imposed. Replayed through the model in that order
      // (each row at the p_now it was written with), it must come out row for row the same.
      const rows = await db.query<{ id: number; kind: string; amount: number; balance_after: number; at_us: number }>(
        `select id, kind, amount, balance_after, ${microsSql('created_at')} as at_us from creditkit.ledger where account_id = $1 order by id`, [account]);
      for (const row of rows.slice(opening.length)) {
        model = applied(row.kind === 'consume'
          ? model.consume({ amount: 1n, event: null, cost: null, key: null, raise: false }, row.at_us)
          : model.readBalance(row.at_us)); // an expire row: the touch that booked it
      }
      expect(rows.map((r) => [r.kind, r.amount, r.balance_after])).toEqual(
        model.entries.map((e) => [e.kind, Number(e.amount), Number(e.balanceAfter)]),
      );
      expect(rows.filter((r) => r.kind === 'expire').length).toBeLessThanOrEqual(1);
      const spentLate = answers.filter((a) => a.allowed && a.now >= T).length;
      expect(spentLate).toBeLessThanOrEqual(5); // only the never-expiring bucket is there for them
      expect(new Set(answers.filter((a) => a.allowed).map((a) => a.transaction_id))).toEqual(
        new Set(rows.filter((r) => r.kind === 'consume').map((r) => r.id)),
      );
      await expectConsistent(db, [account]);
    }
  });

  it('bank check: concurrent grants, consumes, adjustments and expiries across accounts conserve every total', async () => {
    const ck = race();
    const seed = Number(process.env.CREDITKIT_BANK_SEED) || Date.now() % 2 ** 31;
    const rnd = prng(seed);
    const WORKERS = 24;
    const OPS_PER_WORKER = 40;
    const deadline = Date.now() + 15_000;

    // Every effect a caller was told about, by ledger id; replays must repeat the same effect.
    const told = new Map<number, number>();
    const unexpected: string[] = [];
    const tell = (id: number, amount: number) => {
      const seen = told.get(id);
      if (seen !== undefined && seen !== amount) unexpected.push(`ledger id ${id} reported as ${seen} and as ${amount}`);
      told.set(id, amount);
    };

    const accounts: string[] = [];
    for (let i = 0; i < 6; i++) {
      const account = newAccountId();
      tell((await ck.grant({ p_account_id: account, p_amount: 500 })).transaction_id, 500);
      accounts.push(account);
    }

    const run = pooledRunner(pool, 'service_role', { role: 'service_role' }, gauge);
    async function operate(): Promise<void> {
      const account = rnd.pick(accounts);
      const dice = rnd.next();
      if (dice < 0.35) {
        const amount = rnd.int(1, 25);
        const a = await ck.consume({ p_account_id: account, p_amount: amount });
        if (a.allowed && a.transaction_id !== null) tell(a.transaction_id, -amount);
      } else if (dice < 0.45) {
        // a few keys per account, each always for the same amount: concurrent duplicates replay
        const k = rnd.int(0, 3);
        const a = await ck.consume({ p_account_id: account, p_amount: k + 1, p_idempotency_key: `job-${k}` });
        if (a.allowed && a.transaction_id !== null) tell(a.transaction_id, -(k + 1));
      } else if (dice < 0.55) {
        const amount = rnd.int(1, 25);
        const s = await settle(ck.consumeOrRaise({ p_account_id: account, p_amount: amount }));
        if (s.ok) tell(s.value.transaction_id, -amount);
        else if (s.code !== 'CK002') unexpected.push(`consume_or_raise: ${s.code}`);
      } else if (dice < 0.75) {
        const amount = rnd.int(1, 40);
        // half of the grants expire within a second of their own transaction's now()
        const expiring = rnd.next() < 0.5;
        const [g] = await run<{ transaction_id: number }>(
          `select * from public.creditkit_grant(p_account_id => $1::uuid, p_amount => $2::bigint, p_category => $3,
                                                p_expires_at => case when $4::int > 0 then now() + $4::int * interval '1 millisecond' end)`,
          [account, amount, expiring ? 'promotional' : 'purchase', expiring ? rnd.int(20, 1000) : 0]);
        if (g) tell(g.transaction_id, amount);
      } else if (dice < 0.88) {
        const amount = rnd.next() < 0.5 ? rnd.int(1, 30) : -rnd.int(1, 30);
        const s = await settle(ck.adjust({ p_account_id: account, p_amount: amount, p_reason: 'bank test' }));
        if (s.ok) tell(s.value.transaction_id, amount);
        else if (s.code !== 'CK002') unexpected.push(`adjust: ${s.code}`);
      } else if (dice < 0.96) {
        await ck.balance({ p_account_id: account }); // a touch: books what expired
      } else {
        await ck.bookExpired();
      }
    }

    let done = false;
    let snapshots = 0;
    const sizes = new Set<number>();
    const broken: string[] = [];
    // Reads the books in separate statements of one REPEATABLE READ transaction: they must agree
    // with each other, i.e. every snapshot is of a consistent state.
    async function reader(): Promise<void> {
      while (!done) {
        const client = await pool.connect();
        try {
          await client.query('begin isolation level repeatable read');
          const balances = await client.query<{ id: string; n: string }>('select id, balance::text as n from creditkit.accounts where id = any ($1)', [accounts]);
          const ledger = await client.query<{ id: string; n: string; rows: number }>(
            'select account_id as id, sum(amount)::text as n, count(*) as rows from creditkit.ledger where account_id = any ($1) group by 1', [accounts]);
          const remaining = await client.query<{ id: string; n: string }>(
            `select account_id as id, sum(remaining)::text as n from ${GRANTS} g where account_id = any ($1) group by 1`, [accounts]);
          const problems = await client.query<{ problem: string }>(LEDGER_PROBLEMS_SQL, [accounts]);
          await client.query('commit');
          const byId = (rows: Array<{ id: string; n: string }>) => Object.fromEntries(rows.map((r) => [r.id, r.n]));
          const b = byId(balances.rows);
          const l = byId(ledger.rows);
          const r = byId(remaining.rows);
          for (const id of accounts) {
            if (b[id] !== l[id] || b[id] !== r[id]) broken.push(`snapshot ${snapshots}: ${id} balance ${b[id]}, ledger ${l[id]}, remaining ${r[id]}`);
          }
          const total = (m: Record<string, string>) => Object.values(m).reduce((s, n) => s + BigInt(n), 0n);
          if (total(b) !== total(l)) broken.push(`snapshot ${snapshots}: total balance ${total(b)}, total ledger ${total(l)}`);
          broken.push(...problems.rows.map((p) => `snapshot ${snapshots}: ${p.problem}`));
          sizes.add(ledger.rows.reduce((s, x) => s + Number(x.rows), 0));
          snapshots++;
        } finally {
          client.release();
        }
      }
    }

    const readerDone = reader();
    await Promise.all(range(WORKERS).map(async () => {
      for (let i = 0; i < OPS_PER_WORKER && Date.now() < deadline; i++) {
        await operate().catch((err: unknown) => unexpected.push(`${(err as { code?: string }).code ?? ''} ${String(err)}`));
      }
    }));
    done = true;
    await readerDone;

    const context = `seed ${seed} (rerun with CREDITKIT_BANK_SEED=${seed})`;
    expect(unexpected, context).toEqual([]);
    expect(broken, context).toEqual([]);
    expect(gauge.max, context).toBeGreaterThan(10);
    expect(snapshots, `${context}: the reader must have overlapped the writers`).toBeGreaterThanOrEqual(3);
    expect(sizes.size, `${context}: snapshots saw the ledger grow`).toBeGreaterThan(1);

    // Book whatever is still due, then the ledger holds exactly the effects callers were told of,
    // plus expiries: nothing lost, nothing invented.
    await ck.bookExpired({ p_now: new Date(Date.now() + DAY / 1000).toISOString() });
    await expectConsistent(db, accounts);
    const effects = await db.query<{ id: number; amount: number }>(
      `select id, amount from creditkit.ledger where account_id = any ($1) and kind <> 'expire' order by id`, [accounts]);
    expect(new Map(effects.map((e) => [e.id, e.amount])), context).toEqual(told);
    const [expired] = await db.query<{ n: number }>(`select count(*) as n from creditkit.ledger where account_id = any ($1) and kind = 'expire'`, [accounts]);
    expect(expired?.n, `${context}: some credit expired`).toBeGreaterThan(0);
  }, 60_000);
});

function applied(o: Outcome): LedgerModel {
  if (o.type === 'error') throw new Error(`the model refused a step the database took: ${o.code}`);
  return o.next;
}
