// Model-based property test: random sequences of grants, consumes, adjustments, clock moves and
// expiry touches (with money beside credits now and then) run against the database and against
// the in-memory model (ledger-model.ts) side by side. After every step the answers must agree
// (including which error, if any) and the account's whole state must match: balance = ledger sum
// = model balance, every ledger row, every bucket's remaining. On a mismatch fast-check shrinks
// the sequence and reports the shortest one it found, with a step-by-step trace and what differs.
//
// Replay a failure: CREDITKIT_MODEL_SEED=<seed> CREDITKIT_MODEL_PATH=<path> (printed by fast-check);
// more runs: CREDITKIT_MODEL_RUNS=500.
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@creditkit/testing';
import { describeEachBackend } from '@creditkit/testing/vitest';
import { CATEGORIES, LedgerModel, MAX, type Category, type Outcome } from './ledger-model.ts';
import {
  DAY, GRANTS, SECOND, at, creditkit, ledgerProblems, microsSql, newAccountId, rpc, runAs, settle, type Creditkit, type Settled,
} from './support.ts';

// ── Commands as generated (relative to the model clock) and as executed (absolute) ────────

type Command =
  | { op: 'grant'; amount: bigint; category: Category; expiresIn: number | null; priority: number | null; revenue: bigint | null; key: string | null }
  | { op: 'consume'; amount: bigint; event: string | null; cost: bigint | null; key: string | null; raise: boolean }
  | { op: 'adjust'; amount: bigint; reason: string; key: string | null }
  | { op: 'advance'; to: 'next-expiry' | 'just-before-next-expiry' | number }
  | { op: 'touch'; via: 'balance' | 'sweep' }
  | { op: 'retry'; pick: number };

type Step =
  | { op: 'grant'; amount: bigint; category: Category; expiresAt: number | null; priority: number | null; revenue: bigint | null; key: string | null }
  | { op: 'consume'; amount: bigint; event: string | null; cost: bigint | null; key: string | null; raise: boolean }
  | { op: 'adjust'; amount: bigint; reason: string; key: string | null }
  | { op: 'balance' }
  | { op: 'sweep' }
  | { op: 'advance'; to: number };

const amountText = (n: bigint) => (n === MAX ? 'MAX' : n === MAX + 1n ? 'MAX+1' : n === -MAX ? '-MAX' : n === -(MAX + 1n) ? '-(MAX+1)' : `${n}`);
const timeText = (us: number) => `${us < 0 ? '-' : '+'}${Math.abs(us) / SECOND}s`;

function commandText(c: Command): string {
  switch (c.op) {
    case 'grant':
      return `grant(${amountText(c.amount)} ${c.category}${c.expiresIn === null ? '' : ` expiresIn=${timeText(c.expiresIn)}`}` +
        `${c.priority === null ? '' : ` priority=${c.priority}`}${c.revenue === null ? '' : ` revenue=${c.revenue}`}${c.key ? ` key=${c.key}` : ''})`;
    case 'consume':
      return `${c.raise ? 'consumeOrRaise' : 'consume'}(${amountText(c.amount)}${c.event ? ` event=${c.event}` : ''}` +
        `${c.cost === null ? '' : ` cost=${c.cost}`}${c.key ? ` key=${c.key}` : ''})`;
    case 'adjust':
      return `adjust(${amountText(c.amount)} reason=${c.reason}${c.key ? ` key=${c.key}` : ''})`;
    case 'advance':
      return `advance(${typeof c.to === 'number' ? timeText(c.to) : c.to})`;
    case 'touch':
      return `touch(${c.via})`;
    case 'retry':
      return `retry(#${c.pick})`;
  }
}

function stepText(s: Step): string {
  switch (s.op) {
    case 'grant':
      return `creditkit_grant(${amountText(s.amount)}, ${s.category}, expires ${s.expiresAt === null ? 'never' : `at ${timeText(s.expiresAt)}`}, ` +
        `priority ${s.priority ?? 'default'}, revenue ${s.revenue ?? '-'}, key ${s.key ?? '-'})`;
    case 'consume':
      return `${s.raise ? 'creditkit_consume_or_raise' : 'creditkit_consume'}(${amountText(s.amount)}, event ${s.event ?? '-'}, ` +
        `cost ${s.cost ?? '-'}, key ${s.key ?? '-'})`;
    case 'adjust':
      return `creditkit_adjust(${amountText(s.amount)}, ${s.reason}, key ${s.key ?? '-'})`;
    case 'balance':
      return 'creditkit_balance()';
    case 'sweep':
      return 'creditkit_book_expired()';
    case 'advance':
      return `clock → ${timeText(s.to)}`;
  }
}

// Commands print readably in fast-check's counterexample.
const labelled = (c: Command): Command => Object.defineProperty({ ...c }, fc.toStringMethod, { value: () => commandText(c) });

// A small pool of keys, so keys collide across operations as well as on deliberate retries.
const key = fc.oneof({ weight: 7, arbitrary: fc.constant(null) }, { weight: 3, arbitrary: fc.constantFrom('k1', 'k2', 'k3') });
const positiveAmount = fc.oneof(
  { weight: 12, arbitrary: fc.bigInt({ min: 1n, max: 60n }) },
  { weight: 1, arbitrary: fc.constantFrom(0n, -1n, MAX, MAX + 1n) },
);
const signedAmount = fc.oneof(
  { weight: 12, arbitrary: fc.bigInt({ min: -60n, max: 60n }) },
  { weight: 1, arbitrary: fc.constantFrom(MAX, -MAX, MAX + 1n, -(MAX + 1n)) },
);
// Money is usually absent; -1 micros is the one bad value.
const money = fc.oneof(
  { weight: 12, arbitrary: fc.constant(null) },
  { weight: 4, arbitrary: fc.constantFrom(0n, 250n, 1_500_000n) },
  { weight: 1, arbitrary: fc.constant(-1n) },
);
const expiresIn = fc.option(
  fc.oneof({ weight: 1, arbitrary: fc.constantFrom(-1, 0, 1) }, { weight: 6, arbitrary: fc.integer({ min: 1, max: DAY }) }),
  { nil: null, freq: 2 },
);

const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant('grant' as const), amount: positiveAmount, category: fc.constantFrom(...CATEGORIES), expiresIn, priority: fc.option(fc.integer({ min: -5, max: 40 }), { nil: null, freq: 3 }), revenue: money, key }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('consume' as const), amount: positiveAmount, event: fc.option(fc.constantFrom('chat', 'image'), { nil: null, freq: 2 }), cost: money, key, raise: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('adjust' as const), amount: signedAmount, reason: fc.constantFrom('refund', 'goodwill'), key }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('advance' as const), to: fc.oneof(fc.constant('next-expiry' as const), fc.constant('just-before-next-expiry' as const), fc.integer({ min: 1, max: DAY })) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('touch' as const), via: fc.constantFrom('balance' as const, 'sweep' as const) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('retry' as const), pick: fc.nat(20) }) },
).map(labelled);

// Most runs open the account first; the rest show that nothing but a grant opens it (CK003).
const opening = labelled({ op: 'grant', amount: 100n, category: 'purchase', expiresIn: null, priority: null, revenue: null, key: null });
const program = fc
  .tuple(fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    fc.array(command, { minLength: 1, maxLength: 40, size: 'medium' }))
  .map(([open, commands]) => (open ? [opening, ...commands] : commands));

/** Turns a generated command into the exact call to make now; null when it has nothing to do. */
function resolve(c: Command, model: LedgerModel, clock: number, keyed: Step[]): Step | null {
  switch (c.op) {
    case 'grant':
      return { op: 'grant', amount: c.amount, category: c.category, expiresAt: c.expiresIn === null ? null : clock + c.expiresIn, priority: c.priority, revenue: c.revenue, key: c.key };
    case 'consume':
    case 'adjust':
      return { ...c };
    case 'touch':
      return { op: c.via };
    case 'retry': // the same call as an earlier keyed one, absolute expiry included
      return keyed.length ? (keyed[c.pick % keyed.length] ?? null) : null;
    case 'advance': {
      if (typeof c.to === 'number') return { op: 'advance', to: clock + c.to };
      const next = model.nextExpiry(clock);
      if (next === null) return null;
      const to = c.to === 'next-expiry' ? next : next - 1;
      return to > clock ? { op: 'advance', to } : null;
    }
  }
}

function predict(model: LedgerModel, s: Step, now: number): Outcome {
  switch (s.op) {
    case 'grant': return model.grant(s, now);
    case 'consume': return model.consume(s, now);
    case 'adjust': return model.adjust(s, now);
    case 'balance': return model.readBalance(now);
    case 'sweep': return model.sweep(now);
    case 'advance': throw new Error('advance makes no call');
  }
}

function execute(ck: Creditkit, db: TestDatabase, account: string, s: Step, now: number): Promise<unknown> {
  const p_now = at(now);
  switch (s.op) {
    case 'grant':
      return ck.grant({ p_account_id: account, p_amount: s.amount, p_category: s.category, p_expires_at: s.expiresAt === null ? null : at(s.expiresAt), p_priority: s.priority, p_revenue_micros: s.revenue, p_idempotency_key: s.key, p_now });
    case 'consume': {
      const args = { p_account_id: account, p_amount: s.amount, p_event: s.event, p_cost_micros: s.cost, p_idempotency_key: s.key, p_now };
      return s.raise ? ck.consumeOrRaise(args) : ck.consume(args);
    }
    case 'adjust':
      return ck.adjust({ p_account_id: account, p_amount: s.amount, p_reason: s.reason, p_idempotency_key: s.key, p_now });
    case 'balance': {
      const { sql, params } = rpc('creditkit_balance', { p_account_id: account, p_now }, `balance, ${microsSql('next_expiry')} as next_expiry_us, buckets`);
      return db.asService(sql, params).then((rows) => rows[0]);
    }
    case 'sweep':
      return ck.bookExpired({ p_now, p_limit: 100000 });
    case 'advance':
      throw new Error('advance makes no call');
  }
}

interface DbState {
  account: { balance: number; version: number } | null;
  ledger: Array<{ id: number; kind: string; amount: number; balance_after: number; grant_id: number | null; cost_micros: number | null; revenue_micros: number | null }>;
  grants: Array<{ id: number; category: string; amount: number; remaining: number; priority: number; expires_us: number | null; created_us: number }>;
}

async function readState(db: TestDatabase, account: string): Promise<DbState> {
  const [row] = await db.query<DbState>(`
    select (select json_build_object('balance', balance, 'version', version) from creditkit.accounts where id = $1) as account,
           (select coalesce(json_agg(json_build_object('id', id, 'kind', kind, 'amount', amount, 'balance_after', balance_after,
                                                       'grant_id', grant_id, 'cost_micros', cost_micros,
                                                       'revenue_micros', revenue_micros) order by id), '[]')
              from creditkit.ledger where account_id = $1) as ledger,
           (select coalesce(json_agg(json_build_object('id', id, 'category', category, 'amount', amount, 'remaining', remaining,
                                                       'priority', priority, 'expires_us', ${microsSql('expires_at')},
                                                       'created_us', ${microsSql('created_at')}) order by id), '[]')
              from ${GRANTS} g where account_id = $1) as grants`, [account]);
  if (!row) throw new Error('state query returned no row');
  return row;
}

/** The database's state in the model's terms (grant ids become creation indexes). */
function asModelView(state: DbState) {
  const index = new Map(state.grants.map((g, i) => [g.id, i]));
  return {
    exists: state.account !== null,
    balance: state.account?.balance ?? 0,
    ledger: state.ledger.map((r) => [r.kind, r.amount, r.balance_after, r.grant_id === null ? null : index.get(r.grant_id), r.cost_micros, r.revenue_micros]),
    buckets: state.grants.map((g) => [g.category, g.amount, g.remaining, g.priority, g.expires_us, g.created_us]),
  };
}

function modelView(m: LedgerModel) {
  return {
    exists: m.exists,
    balance: Number(m.balance),
    ledger: m.entries.map((e) => [e.kind, Number(e.amount), Number(e.balanceAfter), e.bucket, e.cost === null ? null : Number(e.cost), e.revenue === null ? null : Number(e.revenue)]),
    buckets: m.buckets.map((b) => [b.category, Number(b.amount), Number(b.remaining), b.priority, b.expiresAt, b.createdAt]),
  };
}

/** Checks one call's answer against the model's prediction and the state the call left. */
function checkAnswer(expected: Outcome, actual: Awaited<ReturnType<typeof settle>>, s: Step, after: DbState, now: number): void {
  if (expected.type === 'error') {
    expect(actual.ok ? 'ok' : actual.code, 'error code').toBe(expected.code);
    return;
  }
  if (!actual.ok) expect(actual.code, `the model expected ${expected.type}`).toBe('ok');
  const value = (actual as { value: unknown }).value;
  const balance = Number(expected.next.balance);
  const lastLedger = after.ledger[after.ledger.length - 1]?.id;

  if (expected.type === 'blocked') {
    expect(value).toEqual({ allowed: false, balance, transaction_id: null });
    return;
  }
  if (expected.type === 'replayed') {
    const r = expected.keyUse.result;
    if (!r) throw new Error('replayed a key whose first result was never recorded');
    expect(value, 'a replay returns the first result').toEqual(
      s.op === 'grant' ? { transaction_id: r.transaction_id, grant_id: r.grant_id, balance: r.balance }
        : s.op === 'consume' ? (s.raise ? { balance: r.balance, transaction_id: r.transaction_id } : { allowed: true, balance: r.balance, transaction_id: r.transaction_id })
          : { transaction_id: r.transaction_id, balance: r.balance },
    );
    return;
  }
  switch (s.op) {
    case 'grant':
      expect(value).toEqual({ transaction_id: lastLedger, grant_id: after.grants[after.grants.length - 1]?.id, balance });
      break;
    case 'consume':
      expect(value).toEqual(s.raise ? { balance, transaction_id: lastLedger } : { allowed: true, balance, transaction_id: lastLedger });
      break;
    case 'adjust':
      expect(value).toEqual({ transaction_id: lastLedger, balance });
      break;
    case 'balance': {
      const index = new Map(after.grants.map((g, i) => [g.id, i]));
      const v = value as { balance: number; next_expiry_us: number | null; buckets: Array<{ grant_id: number; remaining: number }> };
      expect({ balance: v.balance, next_expiry: v.next_expiry_us, buckets: v.buckets.map((b) => [index.get(b.grant_id), b.remaining]) }).toEqual({
        balance,
        next_expiry: expected.next.nextExpiry(now),
        buckets: expected.next.live(now).map((b) => [b.index, Number(b.remaining)]),
      });
      break;
    }
    case 'sweep':
      expect(typeof value).toBe('number');
      break;
  }
}

// vitest's diff is lost once fast-check wraps the error, so the message carries the evidence.
function explain(expected: Outcome | undefined, actual: Settled<unknown> | undefined, state: DbState | undefined, model: LedgerModel): string {
  const lines: string[] = [];
  if (expected) lines.push(`  model predicted: ${expected.type === 'error' ? `error ${expected.code}` : expected.type}`);
  if (actual) lines.push(`  database answered: ${actual.ok ? JSON.stringify(actual.value) : `error ${actual.code}`}`);
  if (state) {
    const want = modelView(model);
    const got = asModelView(state);
    for (const k of Object.keys(want) as Array<keyof typeof want>) {
      if (JSON.stringify(want[k]) === JSON.stringify(got[k])) continue;
      lines.push(`  ${k} differs:`, `    model:    ${JSON.stringify(want[k])}`, `    database: ${JSON.stringify(got[k])}`);
    }
  }
  return lines.join('\n');
}

const RUNS = Number(process.env.CREDITKIT_MODEL_RUNS) || undefined;
const SEED = process.env.CREDITKIT_MODEL_SEED ? Number(process.env.CREDITKIT_MODEL_SEED) : undefined;
const PATH = process.env.CREDITKIT_MODEL_PATH || undefined;

describeEachBackend('ledger model', (backend) => {
  let db: TestDatabase;
  let ck: Creditkit;
  beforeAll(async () => {
    db = await createTestDatabase({ backend });
    ck = creditkit(runAs.service(db));
  });
  afterAll(() => db?.drop());

  it('random command sequences agree with the model after every step', async () => {
    await fc.assert(
      fc.asyncProperty(program, async (commands) => {
        const account = newAccountId(); // one fresh account per run; the database is shared
        let model = new LedgerModel();
        let clock = 0;
        const keyed: Step[] = [];
        const trace: string[] = [];
        for (const [i, c] of commands.entries()) {
          const s = resolve(c, model, clock, keyed);
          trace.push(`  #${i} at ${timeText(clock)}: ${commandText(c)} → ${s ? stepText(s) : 'nothing to do'}`);
          if (!s) continue;
          if (s.op === 'advance') {
            clock = s.to;
            continue;
          }
          if ('key' in s && s.key !== null) keyed.push(s);
          let expected: Outcome | undefined;
          let actual: Settled<unknown> | undefined;
          let state: DbState | undefined;
          try {
            expected = predict(model, s, clock);
            actual = await settle(execute(ck, db, account, s, clock));
            state = await readState(db, account);
            checkAnswer(expected, actual, s, state, clock);
            if (expected.type !== 'error') model = expected.next;
            if (expected.type === 'applied' && expected.keyUse && actual.ok) {
              const v = actual.value as { transaction_id: number; balance: number; grant_id?: number };
              expected.keyUse.result = { transaction_id: v.transaction_id, balance: v.balance, grant_id: v.grant_id };
            }
            // errors and blocked calls must leave everything else exactly as the model says
            expect(asModelView(state), 'database state vs model').toEqual(modelView(model));
            expect(await ledgerProblems(db, [account]), 'ledger invariants').toEqual([]);
          } catch (err) {
            const message = err instanceof Error ? err.message : String(err);
            throw new Error(`step #${i} failed (account ${account}):\n${trace.join('\n')}\n\n${message}\n` +
              explain(expected, actual, state, expected?.type === 'error' ? model : (expected?.next ?? model)));
          }
        }
      }),
      { numRuns: RUNS ?? (backend === 'pglite' ? 60 : 25), seed: SEED, path: PATH, endOnFailure: PATH !== undefined },
    );
  }, 300_000);
});
