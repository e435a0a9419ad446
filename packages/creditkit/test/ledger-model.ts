// A deliberately simple in-memory model of one creditkit account, written from the documented
// rules (docs/sql-api.md), not from the SQL: buckets, spend order, expiry booked on first touch,
// idempotency keys, the 2^53-1 limit, money beside credits (cost and revenue in micros) and the
// order in which a call's checks fail. The property
// test runs random command sequences against it and the database side by side; the race test
// replays a ledger produced under contention through it.
//
// Every operation works on a copy and returns the copy to keep, or an error code and no copy:
// a call that raises is rolled back whole, including any expiry it booked on the way.

export type Category = 'plan' | 'purchase' | 'promotional' | 'adjustment';
export const CATEGORIES: readonly Category[] = ['plan', 'purchase', 'promotional', 'adjustment'];
export const DEFAULT_PRIORITY: Record<Category, number> = { promotional: 30, plan: 20, adjustment: 10, purchase: 0 };
export const MAX = 2n ** 53n - 1n;

export interface ModelBucket {
  /** Creation index: the n-th bucket of the account (the database's grant ids, in order). */
  index: number;
  category: Category;
  amount: bigint;
  remaining: bigint;
  priority: number;
  /** Microseconds after the test epoch; null never expires. */
  expiresAt: number | null;
  createdAt: number;
}

export interface ModelEntry {
  kind: 'grant' | 'consume' | 'expire' | 'adjust';
  amount: bigint;
  balanceAfter: bigint;
  /** Bucket index for grant, expire and positive adjust rows. */
  bucket: number | null;
  /** Money beside credits (micros): what a consume cost, what a grant earned. */
  cost: bigint | null;
  revenue: bigint | null;
}

/** What a key was first used for; `result` is the database's answer, attached by the caller. */
export interface KeyUse {
  kind: 'grant' | 'consume' | 'adjust';
  amount: bigint;
  event: string | null;
  reason: string | null;
  category: Category | null;
  expiresAt: number | null;
  priority: number | null;
  cost: bigint | null;
  revenue: bigint | null;
  result?: { transaction_id: number; balance: number; grant_id?: number };
}

export type Outcome =
  | { type: 'applied'; next: LedgerModel; keyUse?: KeyUse }
  | { type: 'replayed'; next: LedgerModel; keyUse: KeyUse }
  | { type: 'blocked'; next: LedgerModel }
  | { type: 'error'; code: string };

const error = (code: string): Outcome => ({ type: 'error', code });
const badMoney = (micros: bigint | null) => micros !== null && (micros < 0n || micros > MAX);

/** Spend order: soonest expiry (never-expiring last), higher priority, oldest. */
export function spendOrder(a: ModelBucket, b: ModelBucket): number {
  if (a.expiresAt !== b.expiresAt) {
    if (a.expiresAt === null) return 1;
    if (b.expiresAt === null) return -1;
    return a.expiresAt - b.expiresAt;
  }
  if (a.priority !== b.priority) return b.priority - a.priority;
  if (a.createdAt !== b.createdAt) return a.createdAt - b.createdAt;
  return a.index - b.index;
}

/** What the open holds reserved before a time: the expired credit they still cover (book). */
export type HeldBefore = (expiresAt: number) => bigint;

export class LedgerModel {
  exists = false;
  buckets: ModelBucket[] = [];
  entries: ModelEntry[] = [];
  keys = new Map<string, KeyUse>();

  private copy(): LedgerModel {
    const m = new LedgerModel();
    m.exists = this.exists;
    m.buckets = this.buckets.map((b) => ({ ...b }));
    m.entries = [...this.entries];
    m.keys = new Map(this.keys); // KeyUse objects are shared on purpose: results attach once
    return m;
  }

  get balance(): bigint {
    return this.buckets.reduce((sum, b) => sum + b.remaining, 0n);
  }

  /** Buckets spendable at `now`, in spend order. */
  live(now: number): ModelBucket[] {
    return this.buckets
      .filter((b) => b.remaining > 0n && (b.expiresAt === null || b.expiresAt > now))
      .sort(spendOrder);
  }

  /** The soonest expiry among spendable buckets, or null. */
  nextExpiry(now: number): number | null {
    const times = this.live(now).flatMap((b) => (b.expiresAt === null ? [] : [b.expiresAt]));
    return times.length ? Math.min(...times) : null;
  }

  /**
   * First touch at `now`: every bucket expired by then leaves the balance, one row each, except
   * what open holds cover. A hold covers credit in spend order, soonest expiry first, so up to what
   * the open holds reserved before the expired credit expired (`heldBefore(last expiry)`) stays,
   * the last to expire keeping it, until they close.
   */
  book(now: number, heldBefore: HeldBefore = () => 0n): void {
    const due = this.buckets
      .filter((b) => b.remaining > 0n && b.expiresAt !== null && b.expiresAt <= now)
      .sort((a, b) => (a.expiresAt ?? 0) - (b.expiresAt ?? 0) || a.index - b.index);
    if (due.length === 0) return;
    const last = Math.max(...due.map((b) => b.expiresAt ?? 0));
    let left = due.reduce((s, b) => s + b.remaining, 0n) - heldBefore(last); // to expire
    for (const b of due) {
      if (left <= 0n) break;
      const take = b.remaining < left ? b.remaining : left;
      b.remaining -= take;
      left -= take;
      this.entries.push({ kind: 'expire', amount: -take, balanceAfter: this.balance, bucket: b.index, cost: null, revenue: null });
    }
  }

  /**
   * A hold's settle charge: drawn in spend order from every bucket with credit left, expired or
   * not (after booking, an expired bucket with credit left holds what the holds kept), then
   * whatever the expired buckets kept beyond what the remaining holds (`heldAfter`) need expires.
   */
  charge(amount: bigint, now: number, heldAfter: HeldBefore): LedgerModel {
    const m = this.copy();
    m.drawDown(amount, -Infinity);
    m.entries.push({ kind: 'consume', amount: -amount, balanceAfter: m.balance, bucket: null, cost: null, revenue: null });
    m.book(now, heldAfter);
    return m;
  }

  /** Books what expired beyond what the holds (`held`) still need: after a hold closes. */
  rebook(now: number, held: HeldBefore): LedgerModel {
    const m = this.copy();
    m.book(now, held);
    return m;
  }

  private drawDown(amount: bigint, now: number): void {
    let left = amount;
    for (const b of this.live(now)) {
      const take = b.remaining < left ? b.remaining : left;
      b.remaining -= take;
      left -= take;
      if (left === 0n) break;
    }
    if (left !== 0n) throw new Error('model: buckets do not cover the balance');
  }

  private addBucket(category: Category, amount: bigint, priority: number | null, expiresAt: number | null, now: number): number {
    const index = this.buckets.length;
    this.buckets.push({
      index, category, amount, remaining: amount, priority: priority ?? DEFAULT_PRIORITY[category], expiresAt, createdAt: now,
    });
    return index;
  }

  private record(key: string | null, use: Omit<KeyUse, 'result'>): KeyUse | undefined {
    if (key === null) return undefined;
    const keyUse: KeyUse = { ...use };
    this.keys.set(key, keyUse);
    return keyUse;
  }

  grant(p: { amount: bigint; category: Category; expiresAt: number | null; priority: number | null; revenue: bigint | null; key: string | null }, now: number, held?: HeldBefore): Outcome {
    if (p.amount < 1n || p.amount > MAX || badMoney(p.revenue)) return error('CK001');
    const m = this.copy();
    m.exists = true; // a grant opens the account
    m.book(now, held);
    const prior = p.key === null ? undefined : m.keys.get(p.key);
    if (prior) {
      // A NULL priority on the retry means "whatever the first call got".
      const same = prior.kind === 'grant' && prior.amount === p.amount && prior.category === p.category &&
        prior.expiresAt === p.expiresAt && (p.priority === null || p.priority === prior.priority) &&
        prior.revenue === p.revenue && prior.cost === null;
      return same ? { type: 'replayed', next: m, keyUse: prior } : error('CK004');
    }
    if (p.expiresAt !== null && p.expiresAt <= now) return error('CK006');
    if (m.balance + p.amount > MAX) return error('CK007');
    const index = m.addBucket(p.category, p.amount, p.priority, p.expiresAt, now);
    m.entries.push({ kind: 'grant', amount: p.amount, balanceAfter: m.balance, bucket: index, cost: null, revenue: p.revenue });
    const keyUse = m.record(p.key, {
      kind: 'grant', amount: p.amount, event: null, reason: null, category: p.category, expiresAt: p.expiresAt,
      priority: m.buckets[index]?.priority ?? null, cost: null, revenue: p.revenue,
    });
    return { type: 'applied', next: m, keyUse };
  }

  /** creditkit_consume (raise: false) and creditkit_consume_or_raise (raise: true). */
  consume(p: { amount: bigint; event: string | null; cost: bigint | null; key: string | null; raise: boolean }, now: number, held?: HeldBefore): Outcome {
    if (p.amount < 1n || p.amount > MAX || badMoney(p.cost)) return error('CK001');
    if (!this.exists) return error('CK003');
    const m = this.copy();
    m.book(now, held);
    const prior = p.key === null ? undefined : m.keys.get(p.key);
    if (prior) {
      const same = prior.kind === 'consume' && prior.amount === p.amount && prior.event === p.event &&
        prior.cost === p.cost && prior.revenue === null;
      return same ? { type: 'replayed', next: m, keyUse: prior } : error('CK004');
    }
    // Blocked is a result, not an error: the expiry booked above stays; raising rolls it back.
    if (m.balance < p.amount) return p.raise ? error('CK002') : { type: 'blocked', next: m };
    m.drawDown(p.amount, now);
    m.entries.push({ kind: 'consume', amount: -p.amount, balanceAfter: m.balance, bucket: null, cost: p.cost, revenue: null });
    const keyUse = m.record(p.key, {
      kind: 'consume', amount: p.amount, event: p.event, reason: null, category: null, expiresAt: null, priority: null,
      cost: p.cost, revenue: null,
    });
    return { type: 'applied', next: m, keyUse };
  }

  adjust(p: { amount: bigint; reason: string; key: string | null }, now: number): Outcome {
    if (p.amount === 0n || p.amount > MAX || p.amount < -MAX) return error('CK001');
    if (!this.exists) return error('CK003');
    const m = this.copy();
    m.book(now);
    const prior = p.key === null ? undefined : m.keys.get(p.key);
    if (prior) {
      const same = prior.kind === 'adjust' && prior.amount === p.amount && prior.reason === p.reason &&
        prior.cost === null && prior.revenue === null;
      return same ? { type: 'replayed', next: m, keyUse: prior } : error('CK004');
    }
    let bucket: number | null = null;
    if (p.amount > 0n) {
      if (m.balance + p.amount > MAX) return error('CK007');
      bucket = m.addBucket('adjustment', p.amount, null, null, now);
    } else {
      if (m.balance < -p.amount) return error('CK002');
      m.drawDown(-p.amount, now);
    }
    m.entries.push({ kind: 'adjust', amount: p.amount, balanceAfter: m.balance, bucket, cost: null, revenue: null });
    const keyUse = m.record(p.key, {
      kind: 'adjust', amount: p.amount, event: null, reason: p.reason, category: null, expiresAt: null, priority: null,
      cost: null, revenue: null,
    });
    return { type: 'applied', next: m, keyUse };
  }

  /** creditkit_balance: a read that books what expired by `now`. */
  readBalance(now: number, held?: HeldBefore): Outcome {
    if (!this.exists) return error('CK003');
    const m = this.copy();
    m.book(now, held);
    return { type: 'applied', next: m };
  }

  /** creditkit_book_expired: the sweep books every due account. */
  sweep(now: number): Outcome {
    const m = this.copy();
    if (m.exists) m.book(now);
    return { type: 'applied', next: m };
  }
}
