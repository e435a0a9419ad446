// Shared fixtures for the creditkit suites: calling the public.creditkit_* API the way the Data
// API would, exact timestamps for expiry tests, and the ledger invariants checked from the
// catalogue tables as the superuser. Nothing here asserts by itself except the expect* helpers.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { expect } from 'vitest';
import type { ApiRole, Row, TestDatabase } from '@creditkit/db';

/** 2^53-1: the largest amount and balance the kit accepts (exact in JavaScript). */
export const MAX_CREDITS = 9007199254740991;
/** 2^53, the first amount above the limit; a string because it must reach SQL unrounded. */
export const ABOVE_MAX = '9007199254740992';

export const newAccountId = (): string => randomUUID();

// ── Time ──────────────────────────────────────────────────────────────────────────────────
// Expiry is decided to the microsecond, which a JS Date cannot hold, so tests count time as
// integer microseconds after a fixed epoch and send it to SQL as text.

export const EPOCH = '2030-01-01T00:00:00Z';
const EPOCH_MS = Date.parse(EPOCH);
export const SECOND = 1_000_000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

/** The instant `us` microseconds after EPOCH (negative is before), as a timestamptz literal. */
export function at(us: number): string {
  const seconds = Math.floor(us / SECOND);
  const micros = us - seconds * SECOND;
  return `${new Date(EPOCH_MS + seconds * 1000).toISOString().slice(0, 19)}.${String(micros).padStart(6, '0')}Z`;
}

/** SQL for a timestamptz column as microseconds after EPOCH, exact (extract() is numeric). */
export function microsSql(column: string): string {
  return `((extract(epoch from ${column}) - ${EPOCH_MS / 1000}) * 1000000)::bigint`;
}

// ── Calling the API ───────────────────────────────────────────────────────────────────────

/** Runs one statement as some caller and returns its rows. */
export type Runner = <T = Row>(sql: string, params?: unknown[]) => Promise<T[]>;

export const runAs = {
  service: (db: TestDatabase): Runner => (sql, params) => db.asService(sql, params),
  user: (db: TestDatabase, userId: string): Runner => (sql, params) => db.asUser(userId, sql, params),
  anon: (db: TestDatabase): Runner => (sql, params) => db.asAnon(sql, params),
  role: (db: TestDatabase, role: ApiRole, claims: object | null): Runner => (sql, params) =>
    db.asRole(role, claims, sql, params),
};

/**
 * A caller on its own pooled connection, exactly as PostgREST runs an RPC: check out a client,
 * `begin`, set the role and JWT claims locally, one statement, `commit`. Real connections, so
 * concurrent calls really race.
 */
export function pooledRunner(
  pool: pg.Pool,
  role: ApiRole = 'service_role',
  claims: object = { role: 'service_role' },
  gauge?: Gauge,
): Runner {
  return async <T>(sql: string, params?: unknown[]) => {
    const client = await pool.connect();
    let broken = false;
    if (gauge) gauge.max = Math.max(gauge.max, ++gauge.open);
    try {
      await client.query('begin');
      await client.query(`select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)`, [
        role,
        JSON.stringify(claims),
      ]);
      const result = await client.query(sql, params);
      await client.query('commit');
      return result.rows as T[];
    } catch (err) {
      await client.query('rollback').catch(() => {
        broken = true;
      });
      throw err;
    } finally {
      if (gauge) gauge.open--;
      client.release(broken);
    }
  };
}

/** How many calls had a transaction open at once: evidence that a race really overlapped. */
export interface Gauge { open: number; max: number }
export const newGauge = (): Gauge => ({ open: 0, max: 0 });

/** Opens `n` connections at once, so a later burst of calls races instead of queueing on connect. */
export async function warmPool(pool: pg.Pool, n: number): Promise<void> {
  const clients = await Promise.all(Array.from({ length: n }, () => pool.connect()));
  for (const c of clients) c.release();
}

/** SQL types of every parameter name the API uses; named arguments keep calls readable. */
const PARAM_TYPES = {
  p_account_id: 'uuid',
  p_amount: 'bigint',
  p_category: 'text',
  p_expires_at: 'timestamptz',
  p_priority: 'integer',
  p_idempotency_key: 'text',
  p_metadata: 'jsonb',
  p_cost_micros: 'bigint',
  p_revenue_micros: 'bigint',
  p_now: 'timestamptz',
  p_event: 'text',
  p_reason: 'text',
  p_limit: 'integer',
  p_before_id: 'bigint',
} as const;

export type ParamName = keyof typeof PARAM_TYPES;
/** Named arguments; `undefined` leaves the SQL default, `null` sends NULL. */
export type Args = Partial<Record<ParamName, unknown>>;

// Numbers and bigints go as text so that 2^53 and beyond reach SQL exactly; objects are JSON;
// a string for p_metadata is sent as JSON text verbatim (so '[]' or '"x"' can be sent).
function toParam(value: unknown): unknown {
  if (value === null) return null;
  if (typeof value === 'number' || typeof value === 'bigint') return value.toString();
  if (typeof value === 'object' && !(value instanceof Date)) return JSON.stringify(value);
  return value;
}

/** `select <columns> from public.<fn>(p_x => $1::type, …)` with only the given arguments. */
export function rpc(fn: string, args: Args, columns = '*'): { sql: string; params: unknown[] } {
  const names = (Object.keys(args) as ParamName[]).filter((k) => args[k] !== undefined);
  const list = names.map((name, i) => {
    const type = PARAM_TYPES[name];
    if (!type) throw new Error(`rpc: unknown parameter ${name}`);
    return `${name} => $${i + 1}::${type}`;
  });
  return {
    sql: `select ${columns} from public.${fn}(${list.join(', ')})`,
    params: names.map((name) => toParam(args[name])),
  };
}

export interface GrantResult { transaction_id: number; grant_id: number; balance: number }
export interface ConsumeResult { allowed: boolean; balance: number; transaction_id: number | null }
export interface ChargeResult { balance: number; transaction_id: number }
export interface AdjustResult { transaction_id: number; balance: number }
export interface Bucket {
  grant_id: number; category: string; remaining: number; amount: number; priority: number;
  expires_at: string | null; created_at: string;
}
export interface BalanceResult { balance: number; next_expiry: Date | null; buckets: Bucket[] }
export interface MyBalanceResult extends BalanceResult { account_id: string }
export interface LedgerRow {
  id: number; kind: string; amount: number; balance_after: number; grant_id: number | null;
  event: string | null; idempotency_key: string | null; metadata: Record<string, unknown>; created_at: Date;
}

async function single<T>(rows: Promise<T[]>): Promise<T> {
  const [row, ...rest] = await rows;
  if (!row || rest.length > 0) throw new Error(`expected exactly one row, got ${rest.length + (row ? 1 : 0)}`);
  return row;
}

/** The kit's API for one caller. Argument names are the SQL ones. */
export function creditkit(run: Runner) {
  const call = <T>(fn: string, args: Args, columns?: string) => {
    const { sql, params } = rpc(fn, args, columns);
    return run<T>(sql, params);
  };
  return {
    grant: (args: Args) => single(call<GrantResult>('creditkit_grant', args)),
    consume: (args: Args) => single(call<ConsumeResult>('creditkit_consume', args)),
    consumeOrRaise: (args: Args) => single(call<ChargeResult>('creditkit_consume_or_raise', args)),
    adjust: (args: Args) => single(call<AdjustResult>('creditkit_adjust', args)),
    balance: (args: Args) => single(call<BalanceResult>('creditkit_balance', args)),
    history: (args: Args) => call<LedgerRow>('creditkit_history', args),
    bookExpired: async (args: Args = {}) =>
      (await single(call<{ visited: number }>('creditkit_book_expired', args, 'creditkit_book_expired as visited'))).visited,
    myBalance: (args: Args = {}) => single(call<MyBalanceResult>('creditkit_my_balance', args)),
    myHistory: (args: Args = {}) => call<LedgerRow>('creditkit_my_history', args),
    /** Any function by name, for tables of cases. */
    call: (fn: string, args: Args) => call<Row>(fn, args),
  };
}
export type Creditkit = ReturnType<typeof creditkit>;

// ── Outcomes ──────────────────────────────────────────────────────────────────────────────

export type Settled<T> = { ok: true; value: T } | { ok: false; code: string; error: Error };

/** A call's result or its SQLSTATE. Errors without a SQLSTATE (bugs in the test) are rethrown. */
export async function settle<T>(promise: Promise<T>): Promise<Settled<T>> {
  try {
    return { ok: true, value: await promise };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code !== 'string') throw err;
    return { ok: false, code, error: err as Error };
  }
}

/** 'ok' or the SQLSTATE the call failed with. */
export async function outcome(promise: Promise<unknown>): Promise<string> {
  const s = await settle(promise);
  return s.ok ? 'ok' : s.code;
}

// ── State and invariants (read as the superuser, around RLS) ─────────────────────────────

type Query = Pick<TestDatabase, 'query'>;

/**
 * Every way the books can disagree, one line per problem; none means consistent. Per account:
 * balance = sum(ledger.amount) = sum(grants.remaining) >= 0, version = number of ledger rows, and
 * each row's balance_after is the running sum. Overall: total balance = total ledger. $1 limits
 * it to some accounts (NULL: all).
 */
export const LEDGER_PROBLEMS_SQL = `
  with acct as (
    select a.* from creditkit.accounts a where $1::uuid[] is null or a.id = any ($1::uuid[])
  ), sums as (
    select a.id, a.balance, a.version,
           (select coalesce(sum(l.amount), 0) from creditkit.ledger l where l.account_id = a.id) as ledger_sum,
           (select count(*) from creditkit.ledger l where l.account_id = a.id) as ledger_rows,
           (select coalesce(sum(g.remaining), 0) from creditkit.grants g where g.account_id = a.id) as remaining_sum
      from acct a
  ), running as (
    select l.account_id, l.id, l.balance_after,
           sum(l.amount) over (partition by l.account_id order by l.id) as running
      from creditkit.ledger l join acct a on a.id = l.account_id
  )
  select format('account %s: balance %s, ledger sum %s, remaining sum %s, version %s, ledger rows %s',
                id, balance, ledger_sum, remaining_sum, version, ledger_rows) as problem
    from sums
   where balance <> ledger_sum or balance <> remaining_sum or version <> ledger_rows or balance < 0
  union all
  select format('ledger row %s of account %s: balance_after %s, running sum %s', id, account_id, balance_after, running)
    from running where running <> balance_after
  union all
  select format('totals: balances %s, ledger %s', b, l)
    from (select (select coalesce(sum(balance), 0) from acct) as b,
                 (select coalesce(sum(l.amount), 0) from creditkit.ledger l join acct a on a.id = l.account_id) as l) t
   where b <> l`;

export async function ledgerProblems(db: Query, accountIds?: string[]): Promise<string[]> {
  const rows = await db.query<{ problem: string }>(LEDGER_PROBLEMS_SQL, [accountIds ?? null]);
  return rows.map((r) => r.problem);
}

/** The invariant every mutation must keep (checked over all accounts unless some are given). */
export async function expectConsistent(db: Query, accountIds?: string[]): Promise<void> {
  expect(await ledgerProblems(db, accountIds)).toEqual([]);
}

/**
 * Everything a failed call must leave untouched: the ledger's size (it is append-only) and every
 * account and bucket as whole rows, so a column added or renamed later is covered too.
 */
export async function snapshotBooks(db: Query): Promise<Row> {
  const [row] = await db.query(`
    select (select count(*) from creditkit.ledger) as ledger_rows,
           (select coalesce(max(id), 0) from creditkit.ledger) as last_ledger_id,
           (select coalesce(json_agg(to_jsonb(a) order by a.id), '[]') from creditkit.accounts a) as accounts,
           (select coalesce(json_agg(to_jsonb(g) order by g.id), '[]') from creditkit.grants g) as grants`);
  if (!row) throw new Error('snapshot query returned no row');
  return row;
}

/** The account's ledger rows, oldest first, as the superuser. */
export function ledgerOf(db: Query, accountId: string): Promise<LedgerRow[]> {
  return db.query<LedgerRow>('select * from creditkit.ledger where account_id = $1 order by id', [accountId]);
}

/** The account's buckets, oldest first, as the superuser. */
export function grantsOf(db: Query, accountId: string): Promise<Row[]> {
  return db.query(
    `select id, category, amount, remaining, priority, ${microsSql('expires_at')} as expires_us
       from creditkit.grants where account_id = $1 order by id`,
    [accountId],
  );
}

/** An account opened with a purchase grant of `amount` at EPOCH; returns its id. */
export async function openAccount(ck: Creditkit, amount = 100, accountId = newAccountId()): Promise<string> {
  await ck.grant({ p_account_id: accountId, p_amount: amount, p_now: at(0) });
  return accountId;
}

/** A small seeded PRNG (mulberry32), so a randomised run can be repeated from its seed. */
export function prng(seed: number): { next(): number; int(min: number, max: number): number; pick<T>(xs: readonly T[]): T } {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    pick: (xs) => {
      const x = xs[Math.floor(next() * xs.length)];
      if (x === undefined) throw new Error('pick from an empty list');
      return x;
    },
  };
}
