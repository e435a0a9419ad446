// Model-based property test of the hold lifecycle: random sequences of reserve, settle (below, at
// and above the reserve, and again), release, clock moves across hold and bucket expiries,
// consume and grant run against the database and against a small in-memory model side by side.
//
// The model, from the documented rules (docs/sql-api.md), on top of the ledger model:
//   spendable = balance - the open, unexpired holds (never below 0); a touch at or after a hold's
//   expires_at expires it; credit that expires under open holds stays, up to what they hold (they
//   cover credit in spend order, soonest expiry first), until they close; settle charges up to the reserve, above it the actual amount only if
//   the balance not held by other holds covers it (else the reserve, the rest is a shortfall), and
//   never more than the balance; a hold resolves exactly once (settled, released or expired);
//   settling again with the same actual returns the first result; any other second resolution is
//   CK012, except that releasing a released or expired hold is a no-op.
// After every step: the answer, balance, spendable (creditkit_balance), held = sum of open holds,
// every hold's resolution, every ledger row, and the ledger invariants.
//
// Replay a failure: CREDITKIT_HOLDS_SEED=<seed> CREDITKIT_HOLDS_PATH=<path>; more runs: CREDITKIT_HOLDS_RUNS=300;
// what the runs exercised (shortfalls, replays, expiries, CK012s, ...): CREDITKIT_HOLDS_STATS=1.
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@creditkit/testing';
import { describeEachBackend } from '@creditkit/testing/vitest';
import { LedgerModel } from './ledger-model.ts';
import {
  HOUR, MAX_CREDITS, MINUTE, SECOND, at, creditkit, expectConsistent, ledgerProblems, microsSql, newAccountId, rpc, runAs, settle,
  type Creditkit, type Settled,
} from './support.ts';

// ── The model ───────────────────────────────────────────────────────────────────────────────

type HoldStatus = 'open' | 'settled' | 'released' | 'expired';
interface ModelHold {
  id: number; // the database's id, learnt from the reserve's answer
  amount: bigint;
  createdAt: number;
  expiresAt: number;
  event: string | null;
  key: string | null;
  status: HoldStatus;
  settledAmount: bigint | null;
  charged: bigint | null;
  transactionId: number | null;
}

type Answer = Record<string, unknown>;
/** What a call returns: an answer and the state to keep, or an error code and no change. */
type Prediction = { ok: true; next: HoldsModel; answer: Answer } | { ok: false; code: string };

const NEW_ID = -1; // stands for "an id the database assigns": filled in from its answer
const NEW_TX = -2;
const big = (n: bigint | null) => (n === null ? null : Number(n));

class HoldsModel {
  ledger = new LedgerModel();
  holds: ModelHold[] = [];

  private copy(): HoldsModel {
    const m = new HoldsModel();
    m.ledger = this.ledger;
    m.holds = this.holds.map((h) => ({ ...h }));
    return m;
  }

  get balance(): bigint {
    return this.ledger.balance;
  }
  get held(): bigint {
    return this.holds.filter((h) => h.status === 'open').reduce((s, h) => s + h.amount, 0n);
  }
  /** What the open holds reserved before `t`: the expired credit they still cover. */
  readonly heldBefore = (t: number): bigint =>
    this.holds.filter((h) => h.status === 'open' && h.createdAt < t).reduce((s, h) => s + h.amount, 0n);
  get spendable(): bigint {
    const s = this.balance - this.held;
    return s > 0n ? s : 0n;
  }
  nextHoldExpiry(now: number): number | null {
    const times = this.holds.filter((h) => h.status === 'open' && h.expiresAt > now).map((h) => h.expiresAt);
    return times.length ? Math.min(...times) : null;
  }

  /** Every touch books what is due by `now`: expired holds, then expired buckets (keeping what open holds need). */
  private touched(now: number): HoldsModel {
    const m = this.copy();
    for (const h of m.holds) if (h.status === 'open' && h.expiresAt <= now) h.status = 'expired';
    const booked = m.ledger.readBalance(now, m.heldBefore);
    if (booked.type === 'error') throw new Error(`model: the account does not exist (${booked.code})`);
    m.ledger = booked.next;
    return m;
  }

  open(amount: bigint, now: number): HoldsModel {
    const m = this.copy();
    const o = m.ledger.grant({ amount, category: 'purchase', expiresAt: null, priority: null, revenue: null, key: null }, now);
    if (o.type !== 'applied') throw new Error('model: the opening grant failed');
    m.ledger = o.next;
    return m;
  }

  grant(amount: bigint, expiresAt: number | null, now: number): Prediction {
    const m = this.touched(now);
    const o = m.ledger.grant({ amount, category: expiresAt === null ? 'purchase' : 'promotional', expiresAt, priority: null, revenue: null, key: null }, now, m.heldBefore);
    if (o.type === 'error') return { ok: false, code: o.code };
    m.ledger = o.next;
    return { ok: true, next: m, answer: { transaction_id: NEW_TX, grant_id: expect.any(Number), balance: big(m.spendable) } };
  }

  consume(amount: bigint, now: number): Prediction {
    if (amount < 1n) return { ok: false, code: 'CK001' };
    const m = this.touched(now);
    if (m.spendable < amount) return { ok: true, next: m, answer: { allowed: false, balance: big(m.spendable), transaction_id: null } };
    const o = m.ledger.consume({ amount, event: null, cost: null, key: null, raise: false }, now, m.heldBefore);
    if (o.type !== 'applied') throw new Error('model: a covered consume was not applied');
    m.ledger = o.next;
    // Every answer is the spendable balance, allowed or blocked.
    return { ok: true, next: m, answer: { allowed: true, balance: big(m.spendable), transaction_id: NEW_TX } };
  }

  reserve(p: { amount: bigint; ttl: number; event: string | null; key: string | null }, now: number): Prediction {
    if (p.amount < 1n) return { ok: false, code: 'CK001' };
    const m = this.touched(now);
    const prior = p.key === null ? undefined : m.holds.find((h) => h.key === p.key);
    if (prior) {
      if (prior.amount !== p.amount || prior.event !== p.event) return { ok: false, code: 'CK004' };
      // a retry of a hold that is no longer open is refused: it must not look like a new reservation
      if (prior.status !== 'open') return { ok: false, code: 'CK012' };
      // a retry of an open hold returns it, with the balance spendable now
      return { ok: true, next: m, answer: { allowed: true, hold_id: prior.id, balance: big(m.spendable), expires_us: prior.expiresAt } };
    }
    if (m.spendable < p.amount) {
      return { ok: true, next: m, answer: { allowed: false, hold_id: null, balance: big(m.spendable), expires_us: null } };
    }
    const hold: ModelHold = {
      id: NEW_ID, amount: p.amount, createdAt: now, expiresAt: now + p.ttl, event: p.event, key: p.key, status: 'open',
      settledAmount: null, charged: null, transactionId: null,
    };
    m.holds.push(hold);
    return { ok: true, next: m, answer: { allowed: true, hold_id: NEW_ID, balance: big(m.spendable), expires_us: hold.expiresAt } };
  }

  settle(holdId: number, actual: bigint, now: number): Prediction {
    if (actual < 0n || actual > BigInt(MAX_CREDITS)) return { ok: false, code: 'CK001' };
    const index = this.holds.findIndex((h) => h.id === holdId);
    if (index < 0) return { ok: false, code: 'CK011' };
    const m = this.touched(now);
    const h = m.holds[index]!;
    if (h.status === 'settled' && h.settledAmount === actual) {
      const charged = h.charged ?? 0n;
      return { ok: true, next: m, answer: { charged: big(charged), shortfall: big(actual - charged), balance: big(m.spendable), transaction_id: h.transactionId } };
    }
    if (h.status !== 'open') return { ok: false, code: 'CK012' };
    const otherHeld = m.held - h.amount;
    let charged = actual < h.amount ? actual : h.amount;
    if (actual > h.amount && m.balance - otherHeld >= actual) charged = actual;
    if (charged > m.balance) charged = m.balance;
    h.status = 'settled';
    h.settledAmount = actual;
    h.charged = charged;
    h.transactionId = null;
    if (charged > 0n) {
      m.ledger = m.ledger.charge(charged, now, m.heldBefore);
      h.transactionId = NEW_TX;
    } else {
      m.ledger = m.ledger.rebook(now, m.heldBefore);
    }
    return { ok: true, next: m, answer: { charged: big(charged), shortfall: big(actual - charged), balance: big(m.spendable), transaction_id: h.transactionId } };
  }

  release(holdId: number, now: number): Prediction {
    const index = this.holds.findIndex((h) => h.id === holdId);
    if (index < 0) return { ok: false, code: 'CK011' };
    const m = this.touched(now);
    const h = m.holds[index]!;
    if (h.status === 'settled') return { ok: false, code: 'CK012' };
    if (h.status === 'open') {
      h.status = 'released';
      m.ledger = m.ledger.rebook(now, m.heldBefore);
    }
    return { ok: true, next: m, answer: { status: h.status, balance: big(m.spendable) } };
  }

  /** creditkit_balance: a touch that answers the spendable balance. */
  read(now: number): Prediction {
    const m = this.touched(now);
    return { ok: true, next: m, answer: { balance: big(m.spendable) } };
  }
}

// ── Commands ────────────────────────────────────────────────────────────────────────────────

// 'covered' / 'uncovered': just inside / just past what the unreserved balance covers above the reserve.
type ActualKind = 'zero' | 'below' | 'at' | 'above' | 'covered' | 'uncovered' | 'far-above' | 'again' | 'negative';
type Command =
  | { op: 'reserve'; amount: bigint; ttl: number; event: string | null; key: string | null }
  | { op: 'settle'; pick: number; actual: ActualKind; extra: number }
  | { op: 'release'; pick: number }
  | { op: 'reserve-again'; pick: number }
  | { op: 'unknown-hold'; settle: boolean }
  | { op: 'consume'; amount: bigint }
  | { op: 'grant'; amount: bigint; expiresIn: number | null }
  | { op: 'advance'; to: 'hold-expiry' | 'just-before-hold-expiry' | 'bucket-expiry' | number }
  | { op: 'read' };

const TTLS = [MINUTE, 10 * MINUTE, HOUR];
const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 5, arbitrary: fc.record({
    op: fc.constant('reserve' as const),
    amount: fc.oneof({ weight: 12, arbitrary: fc.bigInt({ min: 1n, max: 60n }) }, { weight: 1, arbitrary: fc.constant(0n) }),
    ttl: fc.constantFrom(...TTLS),
    event: fc.option(fc.constant('chat'), { nil: null }),
    key: fc.oneof({ weight: 8, arbitrary: fc.constant(null) }, { weight: 2, arbitrary: fc.constantFrom('r1', 'r2') }),
  }) },
  { weight: 5, arbitrary: fc.record({
    op: fc.constant('settle' as const), pick: fc.nat(30),
    actual: fc.constantFrom<ActualKind>('zero', 'below', 'at', 'above', 'covered', 'uncovered', 'far-above', 'again', 'again', 'negative'),
    extra: fc.integer({ min: 1, max: 40 }),
  }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('reserve-again' as const), pick: fc.nat(30) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('release' as const), pick: fc.nat(30) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('unknown-hold' as const), settle: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('consume' as const), amount: fc.bigInt({ min: 1n, max: 50n }) }) },
  { weight: 2, arbitrary: fc.record({
    op: fc.constant('grant' as const), amount: fc.bigInt({ min: 1n, max: 60n }),
    expiresIn: fc.option(fc.constantFrom(30 * SECOND, 5 * MINUTE, 2 * HOUR), { nil: null }),
  }) },
  { weight: 3, arbitrary: fc.record({
    op: fc.constant('advance' as const),
    to: fc.oneof(fc.constantFrom('hold-expiry' as const, 'just-before-hold-expiry' as const, 'bucket-expiry' as const), fc.integer({ min: 1, max: HOUR })),
  }) },
  { weight: 1, arbitrary: fc.constant({ op: 'read' as const }) },
);
// Half the runs open with 100 credits that never expire, the other half with 40 that never expire
// and 100 that expire in 5 minutes, so that bucket expiry can take the balance below what open
// holds reserve (where "never more than the balance" matters).
const program = fc.record({ expiringOpening: fc.boolean(), commands: fc.array(command, { minLength: 4, maxLength: 30, size: 'max' }) });
const OPENING = { amount: 100n, lasting: 40n, expiring: 100n, expiresIn: 5 * MINUTE };

type Step =
  | { op: 'reserve'; amount: bigint; ttl: number; event: string | null; key: string | null }
  | { op: 'settle'; holdId: number; actual: bigint }
  | { op: 'release'; holdId: number }
  | { op: 'consume'; amount: bigint }
  | { op: 'grant'; amount: bigint; expiresAt: number | null }
  | { op: 'read' }
  | { op: 'advance'; to: number };

const UNKNOWN_HOLD = MAX_CREDITS;

/** The exact call a command makes now, given the model; null when it has nothing to do. */
function resolve(c: Command, model: HoldsModel, clock: number): Step | null {
  const pickHold = (pick: number) => (model.holds.length ? model.holds[pick % model.holds.length] : undefined);
  switch (c.op) {
    case 'reserve-again': { // a retry of an earlier keyed reserve, exactly
      const keyed = model.holds.filter((h) => h.key !== null);
      const h = keyed.length ? keyed[c.pick % keyed.length] : undefined;
      return h ? { op: 'reserve', amount: h.amount, ttl: HOUR, event: h.event, key: h.key } : null;
    }
    case 'reserve':
    case 'consume':
    case 'read':
      return { ...c };
    case 'grant':
      return { op: 'grant', amount: c.amount, expiresAt: c.expiresIn === null ? null : clock + c.expiresIn };
    case 'unknown-hold':
      return c.settle ? { op: 'settle', holdId: UNKNOWN_HOLD, actual: 1n } : { op: 'release', holdId: UNKNOWN_HOLD };
    case 'release': {
      const h = pickHold(c.pick);
      return h ? { op: 'release', holdId: h.id } : null;
    }
    case 'settle': {
      const h = pickHold(c.pick);
      if (!h) return null;
      const actual = {
        zero: 0n,
        below: h.amount > 1n ? h.amount - 1n - (BigInt(c.extra) % (h.amount - 1n)) : 0n,
        at: h.amount,
        above: h.amount + BigInt(c.extra),
        covered: h.amount + model.spendable,
        uncovered: h.amount + model.spendable + 1n,
        'far-above': h.amount + 1000n,
        again: h.settledAmount ?? h.amount,
        negative: -1n,
      }[c.actual];
      return { op: 'settle', holdId: h.id, actual };
    }
    case 'advance': {
      if (typeof c.to === 'number') return { op: 'advance', to: clock + c.to };
      const next = c.to === 'bucket-expiry' ? model.ledger.nextExpiry(clock) : model.nextHoldExpiry(clock);
      if (next === null) return null;
      const to = c.to === 'just-before-hold-expiry' ? next - 1 : next;
      return to > clock ? { op: 'advance', to } : null;
    }
  }
}

function stepText(s: Step): string {
  switch (s.op) {
    case 'reserve': return `reserve(${s.amount}, ttl ${s.ttl / SECOND}s${s.event ? `, event ${s.event}` : ''}${s.key ? `, key ${s.key}` : ''})`;
    case 'settle': return `settle(hold ${s.holdId}, actual ${s.actual})`;
    case 'release': return `release(hold ${s.holdId})`;
    case 'consume': return `consume(${s.amount})`;
    case 'grant': return `grant(${s.amount}${s.expiresAt === null ? '' : `, expires at +${s.expiresAt / SECOND}s`})`;
    case 'read': return 'balance()';
    case 'advance': return `clock → +${s.to / SECOND}s`;
  }
}

function predict(model: HoldsModel, s: Step, now: number): Prediction {
  switch (s.op) {
    case 'reserve': return model.reserve(s, now);
    case 'settle': return model.settle(s.holdId, s.actual, now);
    case 'release': return model.release(s.holdId, now);
    case 'consume': return model.consume(s.amount, now);
    case 'grant': return model.grant(s.amount, s.expiresAt, now);
    case 'read': return model.read(now);
    case 'advance': throw new Error('advance makes no call');
  }
}

async function execute(db: TestDatabase, ck: Creditkit, account: string, s: Step, now: number): Promise<Answer> {
  const p_now = at(now);
  switch (s.op) {
    case 'reserve': { // expires_at to the microsecond
      const { sql, params } = rpc('creditkit_reserve', { p_account_id: account, p_amount: s.amount, p_ttl: `${s.ttl / SECOND} seconds`, p_event: s.event, p_idempotency_key: s.key, p_now },
        `allowed, hold_id, balance, ${microsSql('expires_at')} as expires_us`);
      const [row] = await db.asService(sql, params);
      return { ...row };
    }
    case 'settle':
      return { ...(await ck.settleHold({ p_hold_id: s.holdId, p_actual: s.actual, p_now })) };
    case 'release':
      return { ...(await ck.release({ p_hold_id: s.holdId, p_now })) };
    case 'consume':
      return { ...(await ck.consume({ p_account_id: account, p_amount: s.amount, p_now })) };
    case 'grant':
      return { ...(await ck.grant({ p_account_id: account, p_amount: s.amount, p_category: s.expiresAt === null ? 'purchase' : 'promotional', p_expires_at: s.expiresAt === null ? null : at(s.expiresAt), p_now })) };
    case 'read':
      return { balance: (await ck.balance({ p_account_id: account, p_now })).balance };
    case 'advance':
      throw new Error('advance makes no call');
  }
}

/** Ids the database assigned (new hold, new ledger row) become the model's. */
function learnIds(next: HoldsModel, answer: Answer, s: Step): void {
  if (s.op === 'reserve' && next.holds.at(-1)?.id === NEW_ID) next.holds.at(-1)!.id = answer.hold_id as number;
  if (s.op === 'settle') {
    const h = next.holds.find((x) => x.id === s.holdId);
    if (h?.transactionId === NEW_TX) h.transactionId = answer.transaction_id as number;
  }
}

/** The prediction with the ids the database was free to choose taken from its answer, once checked to be new. */
function expectedAnswer(predicted: Answer, actual: Answer, known: HoldsModel, ledgerIds: Set<number>): Answer {
  const out: Answer = { ...predicted };
  if (out.hold_id === NEW_ID) {
    expect(known.holds.map((h) => h.id), 'a new hold gets a new id').not.toContain(actual.hold_id);
    out.hold_id = actual.hold_id;
  }
  if (out.transaction_id === NEW_TX) {
    expect(ledgerIds, 'a new ledger row gets a new id').not.toContain(actual.transaction_id);
    out.transaction_id = actual.transaction_id;
  }
  return out;
}

interface DbState {
  account: { balance: number; held: number };
  holds: Array<[number, number, string, number | null, number | null, number | null]>;
  ledger: Array<[number, string, number, number]>;
}

async function readState(db: TestDatabase, account: string): Promise<DbState> {
  const [row] = await db.query<DbState>(`
    select (select json_build_object('balance', balance, 'held', held) from creditkit.accounts where id = $1) as account,
           (select coalesce(json_agg(json_build_array(id, amount, status, settled_amount, charged, transaction_id) order by id), '[]')
              from creditkit.holds where account_id = $1) as holds,
           (select coalesce(json_agg(json_build_array(id, kind, amount, balance_after) order by id), '[]')
              from creditkit.ledger where account_id = $1) as ledger`, [account]);
  if (!row) throw new Error('state query returned no row');
  return row;
}

function modelState(m: HoldsModel) {
  return {
    balance: big(m.balance), held: big(m.held),
    holds: m.holds.map((h) => [h.id, big(h.amount), h.status, big(h.settledAmount), big(h.charged), h.transactionId]),
    ledger: m.ledger.entries.map((e) => [e.kind, big(e.amount), big(e.balanceAfter)]),
  };
}

function dbState(s: DbState) {
  return {
    balance: s.account.balance, held: s.account.held,
    holds: s.holds,
    ledger: s.ledger.map(([, kind, amount, after]) => [kind, amount, after]),
  };
}

/** A name for what a successful call did, for the coverage tally. */
function classify(s: Step, answer: Answer, before: HoldsModel): string {
  switch (s.op) {
    case 'reserve': {
      const replay = s.key !== null && before.holds.some((h) => h.key === s.key);
      return `reserve ${replay ? 'replayed' : answer.allowed ? 'allowed' : 'blocked'}`;
    }
    case 'settle': {
      const h = before.holds.find((x) => x.id === s.holdId);
      if (h?.status === 'settled') return 'settle replayed';
      const charged = BigInt(answer.charged as number);
      const where = s.actual < (h?.amount ?? 0n) ? 'below' : s.actual === h?.amount ? 'at' : 'above';
      return `settle ${where} the reserve${charged < s.actual ? ', with a shortfall' : ''}`;
    }
    case 'release':
      return `release → ${String(answer.status)}${before.holds.find((x) => x.id === s.holdId)?.status === 'open' ? '' : ' (no-op)'}`;
    case 'consume':
      return `consume ${answer.allowed ? 'allowed' : 'blocked'}`;
    default:
      return s.op;
  }
}

const RUNS = Number(process.env.CREDITKIT_HOLDS_RUNS) || undefined;
const SEED = process.env.CREDITKIT_HOLDS_SEED ? Number(process.env.CREDITKIT_HOLDS_SEED) : undefined;
const PATH = process.env.CREDITKIT_HOLDS_PATH || undefined;

describeEachBackend('hold lifecycle model', (backend) => {
  let db: TestDatabase;
  let ck: Creditkit;
  beforeAll(async () => {
    db = await createTestDatabase({ backend });
    ck = creditkit(runAs.service(db));
  });
  afterAll(() => db?.drop());

  it('examples: settle below, at and above the reserve; a shortfall; settled again; released; expired at expires_at, not 1µs before', async () => {
    const account = newAccountId();
    await ck.grant({ p_account_id: account, p_amount: 100, p_now: at(0) });
    const reserve = async (amount: number, now: number, ttl = '1 hour') => {
      const r = await ck.reserve({ p_account_id: account, p_amount: amount, p_ttl: ttl, p_event: 'gen', p_now: at(now) });
      if (r.hold_id === null) throw new Error('not reserved');
      return r.hold_id;
    };
    const code = (p: Promise<unknown>) => p.then(() => 'ok', (err: { code?: string }) => err.code);
    const a = await reserve(30, 0);
    const b = await reserve(30, 0);
    const c = await reserve(30, 0, '1 minute');
    expect(await ck.balance({ p_account_id: account, p_now: at(1) })).toMatchObject({ balance: 10 });
    // below: 20 of a's 30 charged, 10 freed
    expect(await ck.settleHold({ p_hold_id: a, p_actual: 20, p_now: at(SECOND) })).toEqual({ charged: 20, shortfall: 0, balance: 20, transaction_id: expect.any(Number) });
    // above, covered: 45 asked of b's 30; 80 - 30 (held by c) = 50 >= 45, so all 45 are charged
    const bSettled = await ck.settleHold({ p_hold_id: b, p_actual: 45, p_now: at(2 * SECOND) });
    expect(bSettled).toEqual({ charged: 45, shortfall: 0, balance: 5, transaction_id: expect.any(Number) });
    // again with the same actual: the first result; with another, or a release: CK012
    expect(await ck.settleHold({ p_hold_id: b, p_actual: 45, p_now: at(3 * SECOND) })).toEqual(bSettled);
    expect(await code(ck.settleHold({ p_hold_id: b, p_actual: 44, p_now: at(3 * SECOND) }))).toBe('CK012');
    expect(await code(ck.release({ p_hold_id: b, p_now: at(3 * SECOND) }))).toBe('CK012');
    // c expires at 1 minute: at expires_at it is closed; releasing it then is a no-op that says so
    expect(await code(ck.settleHold({ p_hold_id: c, p_actual: 1, p_now: at(MINUTE) }))).toBe('CK012');
    expect(await ck.release({ p_hold_id: c, p_now: at(MINUTE) })).toEqual({ status: 'expired', balance: 35 });
    expect(await ck.release({ p_hold_id: c, p_now: at(MINUTE + 1) })).toEqual({ status: 'expired', balance: 35 });
    // above, not covered: 40 asked of d's 30, but 35 - 0 (no other holds) < 40: the reserve is charged
    const d = await reserve(30, MINUTE + SECOND);
    expect(await ck.settleHold({ p_hold_id: d, p_actual: 40, p_now: at(MINUTE + 2 * SECOND) })).toEqual({ charged: 30, shortfall: 10, balance: 5, transaction_id: expect.any(Number) });
    // released: nothing charged; released again, even at its expiry: a no-op; settled after: CK012
    const e = await reserve(5, MINUTE + 3 * SECOND, '1 minute');
    expect(await ck.release({ p_hold_id: e, p_now: at(2 * MINUTE + 3 * SECOND - 1) })).toEqual({ status: 'released', balance: 5 });
    expect(await ck.release({ p_hold_id: e, p_now: at(2 * MINUTE + 3 * SECOND) })).toEqual({ status: 'released', balance: 5 });
    expect(await code(ck.settleHold({ p_hold_id: e, p_actual: 5, p_now: at(2 * MINUTE + 3 * SECOND) }))).toBe('CK012');
    // at: settled 1µs before its expiry
    const f = await reserve(5, MINUTE + 4 * SECOND, '1 minute');
    expect(await ck.settleHold({ p_hold_id: f, p_actual: 5, p_now: at(2 * MINUTE + 4 * SECOND - 1) })).toEqual({ charged: 5, shortfall: 0, balance: 0, transaction_id: expect.any(Number) });

    const holds = await db.query(`select id, status, settled_amount, charged, (transaction_id is not null) as charged_row
                                    from creditkit.holds where account_id = $1 order by id`, [account]);
    expect(holds).toEqual([
      { id: a, status: 'settled', settled_amount: 20, charged: 20, charged_row: true },
      { id: b, status: 'settled', settled_amount: 45, charged: 45, charged_row: true },
      { id: c, status: 'expired', settled_amount: null, charged: null, charged_row: false },
      { id: d, status: 'settled', settled_amount: 40, charged: 30, charged_row: true },
      { id: e, status: 'released', settled_amount: null, charged: null, charged_row: false },
      { id: f, status: 'settled', settled_amount: 5, charged: 5, charged_row: true },
    ]);
    // one consume row per charged hold, naming it
    const rows = await db.query<{ amount: number; event: string; hold: number; reserved: number; actual: number }>(
      `select amount, event, (metadata->>'hold_id')::bigint as hold, (metadata->>'reserved')::bigint as reserved, (metadata->>'actual')::bigint as actual
         from creditkit.ledger where account_id = $1 and kind = 'consume' order by id`, [account]);
    expect(rows).toEqual([
      { amount: -20, event: 'gen', hold: a, reserved: 30, actual: 20 },
      { amount: -45, event: 'gen', hold: b, reserved: 30, actual: 45 },
      { amount: -30, event: 'gen', hold: d, reserved: 30, actual: 40 },
      { amount: -5, event: 'gen', hold: f, reserved: 5, actual: 5 },
    ]);
    await expectConsistent(db, [account]);
  });

  it('example: a bucket expires under open holds; the credit they cover stays payable to them until they close', async () => {
    const account = newAccountId();
    await ck.grant({ p_account_id: account, p_amount: 40, p_now: at(0) });
    await ck.grant({ p_account_id: account, p_amount: 100, p_category: 'promotional', p_expires_at: at(5 * MINUTE), p_now: at(0) });
    const first = await ck.reserve({ p_account_id: account, p_amount: 80, p_ttl: '1 hour', p_now: at(0) });
    const second = await ck.reserve({ p_account_id: account, p_amount: 50, p_ttl: '1 hour', p_now: at(0) });
    expect([first.balance, second.balance]).toEqual([60, 10]);
    // the promotional 100 expires under 130 held: the holds cover it all (soonest expiry first), so
    // none of it leaves, and the 10 not held stay spendable
    expect(await ck.balance({ p_account_id: account, p_now: at(5 * MINUTE) })).toMatchObject({ balance: 10 });
    expect(await db.query('select balance, held from creditkit.accounts where id = $1', [account])).toEqual([{ balance: 140, held: 130 }]);
    expect(await ck.consume({ p_account_id: account, p_amount: 11, p_now: at(5 * MINUTE) })).toMatchObject({ allowed: false, balance: 10 });
    // the first hold settles in full from the expired credit; the second is released, and the
    // expired credit it covered leaves
    expect(await ck.settleHold({ p_hold_id: first.hold_id, p_actual: 80, p_now: at(6 * MINUTE) })).toEqual({ charged: 80, shortfall: 0, balance: 10, transaction_id: expect.any(Number) });
    expect(await db.query('select balance, held from creditkit.accounts where id = $1', [account])).toEqual([{ balance: 60, held: 50 }]);
    expect(await ck.release({ p_hold_id: second.hold_id, p_now: at(6 * MINUTE) })).toEqual({ status: 'released', balance: 40 });
    expect(await db.query('select balance, held from creditkit.accounts where id = $1', [account])).toEqual([{ balance: 40, held: 0 }]);
    expect(await db.query(`select kind, amount from creditkit.ledger where account_id = $1 and kind <> 'grant' order by id`, [account]))
      .toEqual([{ kind: 'consume', amount: -80 }, { kind: 'expire', amount: -20 }]);
    await expectConsistent(db, [account]);
  });

  it('random reserve / settle / release / expiry / consume / grant sequences agree with the model after every step', async () => {
    const seen = new Map<string, number>(); // what the runs exercised, to show they reach every rule
    const tally = (what: string) => seen.set(what, (seen.get(what) ?? 0) + 1);
    await fc.assert(
      fc.asyncProperty(program, async ({ expiringOpening, commands }) => {
        const account = newAccountId();
        let clock = 0;
        const lasting = expiringOpening ? OPENING.lasting : OPENING.amount;
        await ck.grant({ p_account_id: account, p_amount: lasting, p_now: at(clock) });
        let model = new HoldsModel().open(lasting, clock);
        if (expiringOpening) {
          const opened = model.grant(OPENING.expiring, clock + OPENING.expiresIn, clock);
          if (!opened.ok) throw new Error('model: the opening grant failed');
          await ck.grant({ p_account_id: account, p_amount: OPENING.expiring, p_category: 'promotional', p_expires_at: at(clock + OPENING.expiresIn), p_now: at(clock) });
          model = opened.next;
        }
        const trace: string[] = [];
        for (const [i, c] of commands.entries()) {
          const s = resolve(c, model, clock);
          trace.push(`  #${i} at +${clock / SECOND}s: ${s ? stepText(s) : `${c.op}: nothing to do`}`);
          if (!s) continue;
          if (s.op === 'advance') {
            clock = s.to;
            continue;
          }
          let predicted: Prediction | undefined;
          let actual: Settled<Answer> | undefined;
          let state: DbState | undefined;
          try {
            predicted = predict(model, s, clock);
            const before = await readState(db, account);
            actual = await settle(execute(db, ck, account, s, clock));
            if (!predicted.ok) {
              expect(actual.ok ? 'ok' : actual.code, 'error code').toBe(predicted.code);
              expect(await readState(db, account), 'a failed call changes nothing').toEqual(before);
            } else {
              if (!actual.ok) expect(actual.code, 'the model expected an answer').toBe('ok');
              const answer = (actual as { value: Answer }).value;
              const ledgerIds = new Set(before.ledger.map(([id]) => id));
              expect(answer, 'answer').toEqual(expectedAnswer(predicted.answer, answer, model, ledgerIds));
              tally(classify(s, predicted.answer, model));
              model = predicted.next;
              learnIds(model, answer, s);
            }
            if (!predicted.ok) tally(`${s.op} ${predicted.code}`);
            if (model.balance < model.held) tally('balance below held (buckets expired under holds)');
            if (model.holds.some((h) => h.status === 'expired')) tally('a hold expired');
            // every step: the whole state, spendable as creditkit_balance reports it, the invariants
            state = await readState(db, account);
            expect(dbState(state), 'database state vs model').toEqual(modelState(model));
            const read = model.read(clock);
            if (!read.ok) throw new Error('model read failed');
            expect((await ck.balance({ p_account_id: account, p_now: at(clock) })).balance, 'spendable').toBe(read.answer.balance);
            model = read.next;
            expect(await ledgerProblems(db, [account]), 'ledger invariants').toEqual([]);
          } catch (err) {
            const message = err instanceof Error ? err.message : String(err);
            const evidence = [
              predicted ? `  model predicted: ${predicted.ok ? JSON.stringify(predicted.answer) : `error ${predicted.code}`}` : '',
              actual ? `  database answered: ${actual.ok ? JSON.stringify(actual.value) : `error ${actual.code}`}` : '',
              state ? `  database: ${JSON.stringify(dbState(state))}\n  model:    ${JSON.stringify(modelState(model))}` : '',
            ].filter(Boolean).join('\n');
            throw new Error(`step #${i} failed (account ${account}):\n${trace.join('\n')}\n\n${message}\n${evidence}`);
          }
        }
      }),
      { numRuns: RUNS ?? (backend === 'pglite' ? 40 : 20), seed: SEED, path: PATH, endOnFailure: PATH !== undefined },
    );
    if (process.env.CREDITKIT_HOLDS_STATS) console.log(Object.fromEntries([...seen].sort()));
  }, 300_000);
});
