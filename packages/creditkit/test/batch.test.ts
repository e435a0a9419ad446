// creditkit_consume_batch against what it promises to be: the same creditkit_consume calls, in
// order, in one transaction.
//
// Equivalence (PGlite and Postgres, fast-check): a random opening (buckets of every category,
// some expired by the time of the consumes, open or expired holds) is made twice, on two fresh
// sets of accounts. A random list of consume items over them (replays of earlier items, keys
// reused with other parameters, now and then an invalid amount or an account that was never
// opened) is applied once as one batch and once as single consumes. Without an error: the
// same answers item by item (transaction ids compared as "the n-th ledger row of account i") and
// the same books, row for row. With an error: the batch fails with the code the whole call
// owes (a validation code before an unknown account before a key conflict, since it validates
// everything, then locks every account, then applies) and its accounts are exactly as before.
//
// Concurrency (real Postgres): batches that walk overlapping accounts in opposite orders, racing
// each other and single consumes, on real connections: no deadlock, exactly as many successes
// per account as it has credits, never below zero, ledger = balance; and a key shared by many
// racing batches and consumes has one effect.
//
// Replay a failure: CREDITKIT_BATCH_SEED=<seed> CREDITKIT_BATCH_PATH=<path>; more runs: CREDITKIT_BATCH_RUNS=200;
// how many runs applied, failed, replayed and blocked: CREDITKIT_BATCH_STATS=1.
import fc from 'fast-check';
import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@creditkit/testing';
import { describeEachBackend, describeIfPostgres } from '@creditkit/testing/vitest';
import { CATEGORIES, type Category } from './ledger-model.ts';
import {
  DAY, GRANTS, HOUR, at, creditkit, expectConsistent, newAccountId, newGauge, openAccount, outcome, pooledRunner, runAs, settle, warmPool,
  type BatchResult, type ConsumeResult, type Creditkit,
} from './support.ts';

const RUNS = Number(process.env.CREDITKIT_BATCH_RUNS) || undefined;
const SEED = process.env.CREDITKIT_BATCH_SEED ? Number(process.env.CREDITKIT_BATCH_SEED) : undefined;
const PATH = process.env.CREDITKIT_BATCH_PATH || undefined;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

// ── What a run is made of ─────────────────────────────────────────────────────────────────

/** The consumes happen at T; the opening at EPOCH. Buckets expire before, at or after T. */
const T = 2 * DAY;
/** Accounts opened per set; an item naming account OPENED is one that was never opened (CK003). */
const OPENED = 3;

interface Opening {
  grants: Array<{ amount: number; category: Category; expiresAt: number | null; priority: number | null }>;
  /** A hold made at EPOCH: '1 hour' has expired by T (booked when the account is locked), '7 days' is open. */
  hold: { amount: number; ttl: string } | null;
}

interface Item {
  account: number;
  amount: number;
  event: string | null;
  key: string | null;
  metadata: { n: number } | null;
  cost: number | null;
}

/** As generated: a new item, an exact copy of an earlier one (a replay when keyed), or a copy with another amount. */
type Draft = { kind: 'new'; item: Omit<Item, 'key'>; keyed: boolean } | { kind: 'repeat' | 'clash'; pick: number };

const opening: fc.Arbitrary<Opening> = fc.record({
  grants: fc.array(
    fc.record({
      amount: fc.integer({ min: 1, max: 80 }),
      category: fc.constantFrom(...CATEGORIES),
      expiresAt: fc.option(fc.constantFrom(T - HOUR, T, T + 1, T + DAY), { nil: null, freq: 2 }),
      priority: fc.option(fc.integer({ min: 0, max: 40 }), { nil: null, freq: 3 }),
    }),
    { minLength: 1, maxLength: 3 },
  ),
  hold: fc.option(fc.record({ amount: fc.integer({ min: 1, max: 20 }), ttl: fc.constantFrom('1 hour', '7 days') }), { nil: null, freq: 3 }),
});

/** `invalid`: how often, in 40, an item names an account never opened, or an amount of 0. */
const draft = (invalid: number): fc.Arbitrary<Draft> => fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('new' as const),
      item: fc.record({
        account: fc.oneof({ weight: 40, arbitrary: fc.integer({ min: 0, max: OPENED - 1 }) }, { weight: invalid, arbitrary: fc.constant(OPENED) }),
        amount: fc.oneof({ weight: 40, arbitrary: fc.integer({ min: 1, max: 25 }) }, { weight: invalid, arbitrary: fc.constant(0) }),
        event: fc.option(fc.constantFrom('chat', 'image'), { nil: null, freq: 2 }),
        metadata: fc.option(fc.record({ n: fc.integer({ min: 0, max: 3 }) }), { nil: null, freq: 2 }),
        cost: fc.option(fc.constantFrom(0, 250, 1_500_000), { nil: null, freq: 2 }),
      }),
      keyed: fc.boolean(),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('repeat' as const), pick: fc.nat(30) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('clash' as const), pick: fc.nat(30) }) },
);

/** Drafts → items: keys are unique unless an item is copied; a copy of nothing is skipped. */
function resolve(drafts: Draft[]): Item[] {
  const items: Item[] = [];
  for (const [i, d] of drafts.entries()) {
    if (d.kind === 'new') {
      items.push({ ...d.item, key: d.keyed ? `key-${i}` : null });
      continue;
    }
    const earlier = items[d.pick % Math.max(items.length, 1)];
    if (!earlier) continue;
    items.push(d.kind === 'repeat' ? { ...earlier } : { ...earlier, amount: earlier.amount + 1 });
  }
  return items;
}

const scenario = fc.record({
  openings: fc.array(opening, { minLength: OPENED, maxLength: OPENED }),
  // most runs rarely have an invalid item (so most batches apply); some have them often
  items: fc.oneof({ weight: 3, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.constant(5) })
    .chain((invalid) => fc.array(draft(invalid), { minLength: 1, maxLength: 25 }))
    .map(resolve)
    .filter((items) => items.length > 0),
});

// ── Running it ────────────────────────────────────────────────────────────────────────────

/** A fresh set of accounts with this opening; one more id at the end that is never opened. */
async function open(ck: Creditkit, openings: Opening[]): Promise<string[]> {
  const ids = openings.map(() => newAccountId());
  for (const [i, o] of openings.entries()) {
    for (const g of o.grants) {
      await ck.grant({
        p_account_id: ids[i], p_amount: g.amount, p_category: g.category, p_priority: g.priority,
        p_expires_at: g.expiresAt === null ? null : at(g.expiresAt), p_now: at(0),
      });
    }
    if (o.hold) await ck.reserve({ p_account_id: ids[i], p_amount: o.hold.amount, p_ttl: o.hold.ttl, p_now: at(0) });
  }
  return [...ids, newAccountId()];
}

const batchEvent = (item: Item, ids: string[]) => ({
  account_id: ids[item.account], amount: item.amount, event: item.event, idempotency_key: item.key,
  metadata: item.metadata, cost_micros: item.cost,
});

/**
 * Everything about these accounts, with the accounts' own ids left out and the ids of ledger
 * rows and buckets replaced by their position in the account: two sets of accounts that went
 * through the same calls compare equal.
 */
async function books(db: TestDatabase, ids: string[]): Promise<unknown[]> {
  return Promise.all(ids.map(async (id) => {
    const [row] = await db.query(`
      select (select jsonb_agg(to_jsonb(a) - 'id' - 'undrawn' order by a.unit) from creditkit.accounts a where a.id = $1) as account,
             (select coalesce(jsonb_agg(to_jsonb(l) - 'id' - 'account_id' - 'grant_id'
                       || jsonb_build_object('bucket', (select count(*) from creditkit.grants g where g.account_id = l.account_id and g.id <= l.grant_id))
                     order by l.id), '[]') from creditkit.ledger l where l.account_id = $1) as ledger,
             (select coalesce(jsonb_agg(to_jsonb(g) - 'id' - 'account_id' order by g.id), '[]') from ${GRANTS} g where g.account_id = $1) as buckets,
             (select coalesce(jsonb_agg(to_jsonb(h) - 'id' - 'account_id' - 'transaction_id' order by h.id), '[]') from creditkit.holds h where h.account_id = $1) as holds,
             (select coalesce(jsonb_agg(to_jsonb(s) - 'account_id'), '[]') from creditkit.subscriptions s where s.account_id = $1) as subscriptions`, [id]);
    return row;
  }));
}

/** Ledger id → "account index#position in its ledger", for comparing transaction ids across sets. */
async function ledgerPositions(db: TestDatabase, ids: string[]): Promise<Map<string, string>> {
  const rows = await db.query<{ id: number; account_id: string }>(
    'select id, account_id from creditkit.ledger where account_id = any ($1::uuid[]) order by id', [ids]);
  const seen = new Map<string, number>();
  return new Map(rows.map((r) => {
    const n = (seen.get(r.account_id) ?? 0) + 1;
    seen.set(r.account_id, n);
    return [String(r.id), `${ids.indexOf(r.account_id)}#${n}`];
  }));
}

const answers = (rows: ConsumeResult[], positions: Map<string, string>) =>
  rows.map((r) => ({ allowed: r.allowed, balance: r.balance, transaction: r.transaction_id === null ? null : positions.get(String(r.transaction_id)) }));

/** The code a batch of these items owes when single consumes of them fail: validation, then the lock, then the rest. */
function batchCode(items: Item[], singleCode: string): string {
  if (items.some((i) => i.amount === 0)) return 'CK001';
  if (items.some((i) => i.account === OPENED)) return 'CK003';
  return singleCode;
}

describeEachBackend('consume batch', (backend) => {
  let db: TestDatabase;
  let ck: Creditkit;
  beforeAll(async () => {
    db = await createTestDatabase({ backend });
    ck = creditkit(runAs.service(db));
  });
  afterAll(() => db?.drop());

  it('a batch does what the same consumes one by one do: the same answers and the same books, or the whole call fails and changes nothing', async () => {
    const outcomes = { applied: 0, failed: 0, replays: 0, blocked: 0 };
    const covered = () => outcomes.applied > 0 && outcomes.failed > 0 && outcomes.replays > 0 && outcomes.blocked > 0;
    // Unseeded runs explore new cases each time; a round that happens to miss a kind of outcome is
    // followed by another (at most four), so that the coverage check below does not fail on one unlucky round.
    for (let round = 0; round < (SEED === undefined ? 4 : 1) && !covered(); round++) await fc.assert(
      fc.asyncProperty(scenario, async ({ openings, items }) => {
        const viaBatch = await open(ck, openings);
        const viaSingles = await open(ck, openings);
        expect(await books(db, viaBatch)).toEqual(await books(db, viaSingles)); // the same start

        const singles: ConsumeResult[] = [];
        let singleCode: string | null = null;
        for (const item of items) {
          const s = await settle(ck.consume({
            p_account_id: viaSingles[item.account], p_amount: item.amount, p_event: item.event, p_idempotency_key: item.key,
            p_metadata: item.metadata, p_cost_micros: item.cost, p_now: at(T),
          }));
          if (!s.ok) {
            singleCode = s.code;
            break;
          }
          singles.push(s.value);
        }

        const before = await books(db, viaBatch);
        const batch = await settle(ck.consumeBatch({ p_events: items.map((i) => batchEvent(i, viaBatch)), p_now: at(T) }));
        if (singleCode !== null) {
          expect(batch.ok ? 'ok' : batch.code).toBe(batchCode(items, singleCode));
          expect(await books(db, viaBatch)).toEqual(before);
          outcomes.failed++;
        } else {
          if (!batch.ok) throw batch.error;
          const rows: BatchResult[] = batch.value;
          expect(rows.map((r) => r.ordinal)).toEqual(range(items.length).map((i) => i + 1));
          expect(answers(rows, await ledgerPositions(db, viaBatch))).toEqual(answers(singles, await ledgerPositions(db, viaSingles)));
          expect(await books(db, viaBatch)).toEqual(await books(db, viaSingles));
          outcomes.applied++;
          outcomes.blocked += rows.filter((r) => !r.allowed).length;
          outcomes.replays += rows.length - new Set(rows.map((r) => r.transaction_id ?? `blocked ${r.ordinal}`)).size;
        }
        await expectConsistent(db, [...viaBatch, ...viaSingles]);
      }),
      { numRuns: RUNS ?? (backend === 'pglite' ? 60 : 30), seed: SEED, path: PATH, endOnFailure: PATH !== undefined },
    );
    // the generator reached every kind of outcome, so the property was not checked on easy cases only
    if (process.env.CREDITKIT_BATCH_STATS) console.log(backend, outcomes);
    expect(outcomes.applied).toBeGreaterThan(0);
    expect(outcomes.failed).toBeGreaterThan(0);
    expect(outcomes.replays).toBeGreaterThan(0);
    expect(outcomes.blocked).toBeGreaterThan(0);
  }, 600_000);

  it('a batch in another unit spends that unit as single consumes of it would: its keys, blocked accounts without it, CK015 and CK003', async () => {
    await ck.upsertUnit({ p_id: 'tokens', p_name: 'Tokens', p_kind: 'metered' });
    await ck.upsertUnit({ p_id: 'flag', p_name: 'Flag', p_kind: 'boolean' });
    const [a, b, none] = [await openAccount(ck, 100), await openAccount(ck, 100), await openAccount(ck, 100)];
    await ck.grant({ p_account_id: a, p_amount: 10, p_unit: 'tokens', p_now: at(0) });
    await ck.grant({ p_account_id: b, p_amount: 3, p_unit: 'tokens', p_now: at(0) });
    await ck.consume({ p_account_id: a, p_amount: 1, p_idempotency_key: 'in-credits', p_now: at(1) });
    const batch = (events: unknown[], unit: string | null = 'tokens') =>
      ck.consumeBatch({ p_events: events, p_now: at(HOUR), p_unit: unit });
    const item = (account: string, amount: number, key: string | null = null) => ({ account_id: account, amount, idempotency_key: key });
    const rows = await batch([item(a, 4, 't-1'), item(b, 2), item(none, 1), item(b, 2), item(a, 4, 't-1'), item(a, 7)]);
    expect(rows.map((r) => [r.allowed, Number(r.balance)])).toEqual([
      [true, 6], [true, 1], [false, 0], [false, 1], [true, 6], [false, 6],
    ]);
    expect(rows[4]!.transaction_id).toBe(rows[0]!.transaction_id); // the key replays within the batch
    const units = await db.query<{ account_id: string; unit: string; balance: number }>(
      `select id as account_id, unit, balance::bigint as balance from creditkit.accounts where id = any($1) order by unit`, [[a, b, none]]);
    const balanceOf = (id: string, unit: string) => Number(units.find((u) => u.account_id === id && u.unit === unit)?.balance ?? NaN);
    expect([balanceOf(a, 'tokens'), balanceOf(b, 'tokens'), balanceOf(a, 'credits'), balanceOf(b, 'credits')]).toEqual([6, 1, 99, 100]);
    expect(units.some((u) => u.account_id === none && u.unit === 'tokens')).toBe(false); // no row opened for it
    const written = await db.query<{ unit: string; n: number }>(
      `select unit, count(*)::int as n from creditkit.ledger where account_id = any($1) and kind = 'consume' group by unit order by unit`, [[a, b]]);
    expect(written).toEqual([{ unit: 'credits', n: 1 }, { unit: 'tokens', n: 2 }]);
    // the same key again in the next batch replays; a key the account used in credits is CK004
    expect((await batch([item(a, 4, 't-1')]))[0]).toMatchObject({ allowed: true, transaction_id: rows[0]!.transaction_id });
    const before = await books(db, [a, b, none]);
    expect(await outcome(batch([item(a, 1, 'in-credits')]))).toBe('CK004');
    expect(await outcome(batch([item(a, 1)], 'nope'))).toBe('CK015');
    expect(await outcome(batch([item(a, 1)], 'flag'))).toBe('CK015');
    expect(await outcome(batch([item(a, 1)], null))).toBe('CK015');
    expect(await outcome(batch([item(a, 1), item(newAccountId(), 1)]))).toBe('CK003');
    expect(await books(db, [a, b, none])).toEqual(before);
    await expectConsistent(db, [a, b, none]);
  });

  it('the comparison notices a difference: a batch one item short of the singles does not compare equal', async () => {
    const openings: Opening[] = range(OPENED).map(() => ({ grants: [{ amount: 10, category: 'purchase', expiresAt: null, priority: null }], hold: null }));
    const items: Item[] = [0, 1, 0].map((account) => ({ account, amount: 3, event: 'chat', key: null, metadata: null, cost: null }));
    const [a, b] = [await open(ck, openings), await open(ck, openings)];
    for (const item of items) await ck.consume({ p_account_id: b[item.account], p_amount: item.amount, p_event: item.event, p_now: at(T) });
    await ck.consumeBatch({ p_events: items.slice(0, 2).map((i) => batchEvent(i, a)), p_now: at(T) });
    expect(await books(db, a)).not.toEqual(await books(db, b));
    await ck.consumeBatch({ p_events: items.slice(2).map((i) => batchEvent(i, a)), p_now: at(T) });
    expect(await books(db, a)).toEqual(await books(db, b));
  });
});

// ── Real connections racing ───────────────────────────────────────────────────────────────

describeIfPostgres('consume batch: concurrency', () => {
  const CONNECTIONS = 24;
  let db: TestDatabase;
  let pool: pg.Pool;
  beforeAll(async () => {
    db = await createTestDatabase({ backend: 'postgres' });
    pool = db.pool({ max: CONNECTIONS });
    await warmPool(pool, CONNECTIONS);
  });
  afterAll(() => db?.drop());

  it('batches walking overlapping accounts in opposite orders, racing single consumes: no deadlock, exactly the credits spent, never below zero', async () => {
    const gauge = newGauge();
    const ck = creditkit(pooledRunner(pool, 'service_role', { role: 'service_role' }, gauge));
    const CREDITS = 60;
    const accounts: string[] = [];
    for (let i = 0; i < 5; i++) accounts.push(await openAccount(ck, CREDITS));
    // every batch visits the accounts round-robin in its own order: a rotation of the list,
    // reversed for every other batch, so each pair of accounts is met in both orders
    const orders = range(10).map((b) => {
      const rotated = [...accounts.slice(b % 5), ...accounts.slice(0, b % 5)];
      return b % 2 === 0 ? rotated : rotated.reverse();
    });
    const batches = orders.map((order) => range(120).map((i) => ({ account_id: order[i % 5]!, amount: 1, event: 'chat' })));
    const singles = range(40).map((i) => accounts[i % 5]!);
    // demand per account: 10 x 24 batch items + 8 singles = 248, for 60 credits

    const [batchResults, singleResults] = await Promise.all([
      Promise.allSettled(batches.map((events) => ck.consumeBatch({ p_events: events, p_now: at(HOUR) }))),
      Promise.allSettled(singles.map((account) => ck.consume({ p_account_id: account, p_amount: 1, p_event: 'chat', p_now: at(HOUR) }))),
    ]);
    const failures = [...batchResults, ...singleResults].flatMap((r) => (r.status === 'rejected' ? [(r.reason as { code?: string }).code ?? String(r.reason)] : []));
    expect(failures).toEqual([]); // a deadlock would be 40P01 here
    expect(gauge.max).toBeGreaterThan(5);

    const answered = [
      ...batchResults.flatMap((r, b) => (r.status === 'fulfilled' ? r.value.map((a) => ({ ...a, account: batches[b]![a.ordinal - 1]!.account_id })) : [])),
      ...singleResults.flatMap((r, i) => (r.status === 'fulfilled' ? [{ ...r.value, account: singles[i]! }] : [])),
    ];
    for (const r of batchResults) if (r.status === 'fulfilled') expect(r.value.map((a) => a.ordinal)).toEqual(range(120).map((i) => i + 1));
    for (const account of accounts) {
      const mine = answered.filter((a) => a.account === account);
      expect(mine).toHaveLength(248);
      const allowed = mine.filter((a) => a.allowed);
      // exactly the credits: each success saw its own balance, 59 down to 0; every refusal saw 0
      expect(allowed.map((a) => a.balance).sort((x, y) => x - y)).toEqual(range(CREDITS));
      expect(new Set(allowed.map((a) => a.transaction_id)).size).toBe(CREDITS);
      expect(mine.filter((a) => !a.allowed).every((a) => a.balance === 0 && a.transaction_id === null)).toBe(true);
    }
    const [books] = await db.query(
      `select count(*) filter (where kind = 'consume') as consumes, min(balance_after) as lowest, sum(amount)::bigint as total
         from creditkit.ledger where account_id = any ($1::uuid[])`, [accounts]);
    expect(books).toEqual({ consumes: 5 * CREDITS, lowest: 0, total: 0 });
    await expectConsistent(db, accounts);
  }, 120_000);

  it('one key in many racing batches and consumes: one ledger row, the same answer everywhere', async () => {
    const gauge = newGauge();
    const ck = creditkit(pooledRunner(pool, 'service_role', { role: 'service_role' }, gauge));
    const [a, b] = [await openAccount(ck, 1000), await openAccount(ck, 1000)];
    type Event = { account_id: string; amount: number; event?: string; idempotency_key?: string };
    const shared: Event[] = [
      { account_id: a, amount: 7, event: 'chat', idempotency_key: 'shared-a' },
      { account_id: b, amount: 9, event: 'image', idempotency_key: 'shared-b' },
    ];
    // each batch: its own keyless spends around the two shared events, accounts in either order
    const batches = range(12).map((n) => {
      const own: Event[] = range(6).map((i) => ({ account_id: (i + n) % 2 ? a : b, amount: 1 }));
      const events = n % 2 ? [...own.slice(0, 3), shared[1]!, ...own.slice(3), shared[0]!] : [shared[0]!, ...own, shared[1]!];
      return { events, sharedAt: events.flatMap((e, i) => (e.idempotency_key ? [[e.idempotency_key, i + 1] as const] : [])) };
    });
    const [batchResults, singleResults] = await Promise.all([
      Promise.all(batches.map(({ events }) => ck.consumeBatch({ p_events: events, p_now: at(HOUR) }))),
      Promise.all(range(12).map((i) => {
        const e = shared[i % 2]!;
        return ck.consume({ p_account_id: e.account_id, p_amount: e.amount, p_event: e.event, p_idempotency_key: e.idempotency_key, p_now: at(HOUR) });
      })),
    ]);
    expect(gauge.max).toBeGreaterThan(5);

    const keyed = await db.query<{ id: number; idempotency_key: string; balance_after: number }>(
      `select id, idempotency_key, balance_after from creditkit.ledger where idempotency_key in ('shared-a', 'shared-b') order by idempotency_key`);
    expect(keyed.map((r) => r.idempotency_key)).toEqual(['shared-a', 'shared-b']);
    const first = Object.fromEntries(keyed.map((r) => [r.idempotency_key, { allowed: true, balance: r.balance_after, transaction_id: r.id }]));
    for (const [n, rows] of batchResults.entries()) {
      for (const [key, ordinal] of batches[n]!.sharedAt) {
        const { ordinal: _, ...answer } = rows[ordinal - 1]!;
        expect(answer, `batch ${n}, ${key}`).toEqual(first[key]);
      }
    }
    for (const [i, answer] of singleResults.entries()) expect(answer).toEqual(first[shared[i % 2]!.idempotency_key!]);
    // every keyless spend went through once: 12 x 6 of them, split evenly
    const [spent] = await db.query(
      `select count(*) filter (where idempotency_key is null) as keyless, sum(amount)::bigint as total from creditkit.ledger
        where account_id in ($1, $2) and kind = 'consume'`, [a, b]);
    expect(spent).toEqual({ keyless: 72, total: -(72 + 7 + 9) });
    await expectConsistent(db, [a, b]);
  }, 120_000);
});
