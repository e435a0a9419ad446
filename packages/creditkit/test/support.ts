// Shared fixtures for the SQL suites: calling the public.creditkit_* API the way the Data API
// would, exact timestamps for expiry tests, and the ledger invariants checked from the catalogue
// tables as the superuser. Nothing here asserts by itself except the expect* helpers. The
// parameter names come from the generated types (@creditkit/core's database.types.ts) and the
// result rows from the SDK's result types, so nothing here restates the API by hand; the
// databases and role switches are @creditkit/testing's.
import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import type * as Sdk from '@creditkit/core';
import { BOOKED_ACCOUNTS, BOOKED_GRANTS, GRANTS, type Row, type TestDatabase } from '@creditkit/testing';

export { beginAs, newGauge, pooledRunner, runAs, warmPool, type Gauge, type Runner, type Session } from '@creditkit/testing';
import type { Runner } from '@creditkit/testing';

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

/** An ISO instant with at most millisecond precision (e.g. '2027-01-31T09:30:00Z') as microseconds after EPOCH. */
export function usOf(iso: string): number {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) throw new Error(`usOf: not an ISO instant: ${iso}`);
  return (ms - EPOCH_MS) * 1000;
}

/** SQL for a timestamptz column as microseconds after EPOCH, exact (extract() is numeric). */
export function microsSql(column: string): string {
  return `((extract(epoch from ${column}) - ${EPOCH_MS / 1000}) * 1000000)::bigint`;
}

// ── Calling the API ───────────────────────────────────────────────────────────────────────

type Functions = Sdk.Database['public']['Functions'];
/** A public.creditkit_* function, as `supabase gen types` saw the migrations. */
export type FunctionName = keyof Functions;
/** The named keys of T (functions without parameters have `Args: Record<PropertyKey, never>`). */
type NamedKeys<T> = keyof { [K in keyof T as string extends K ? never : K]: T[K] } & string;
/** Every parameter name of those functions. */
export type ParamName = { [F in FunctionName]: NamedKeys<Functions[F]['Args']> }[FunctionName];
/**
 * Named arguments; `undefined` leaves the SQL default, `null` sends NULL. The names are checked
 * against the generated types; the values are not, since the suites also send what SQL must refuse.
 */
export type Args = Partial<Record<ParamName, unknown>>;

// Numbers and bigints go as text so that 2^53 and beyond reach SQL exactly; objects are JSON;
// a string for a jsonb parameter is sent as JSON text verbatim (so '[]' or '"x"' can be sent).
function toParam(value: unknown): unknown {
  if (value === null) return null;
  if (typeof value === 'number' || typeof value === 'bigint') return value.toString();
  if (typeof value === 'object' && !(value instanceof Date)) return JSON.stringify(value);
  return value;
}

/**
 * `select <columns> from public.<fn>(p_x => $1, …)` with only the given arguments. The parameters
 * go untyped, as the SDK sends them: Postgres reads each as the type the function declares.
 */
export function rpc(fn: string, args: Args, columns = '*'): { sql: string; params: unknown[] } {
  const names = (Object.keys(args) as ParamName[]).filter((k) => args[k] !== undefined);
  for (const name of names) if (!/^p_[a-z0-9_]+$/.test(name)) throw new Error(`rpc: not a parameter name: ${name}`);
  return {
    sql: `select ${columns} from public.${fn}(${names.map((name, i) => `${name} => $${i + 1}`).join(', ')})`,
    params: names.map((name) => toParam(args[name])),
  };
}

/** `balanceAfter` → `balance_after`. */
type Snake<S extends string> = S extends `${infer C}${infer Rest}` ? `${C extends Lowercase<C> ? C : `_${Lowercase<C>}`}${Snake<Rest>}` : S;
/** A JSON object from SQL (jsonb): the SDK's fields with the SQL's snake_case keys. */
export type JsonRow<T> = { [K in keyof T & string as Snake<K>]: T[K] };
/** The timestamptz columns of the functions' results, which the drivers return as Date. */
type DateColumn = 'next_expiry' | 'expires_at' | 'period_start' | 'period_end' | 'created_at';
/**
 * A row as a function returns it to the driver: the SDK's result type (which the SDK's contract
 * suite checks against the catalogue) with snake_case columns, timestamptz columns as Date, and
 * jsonb arrays (buckets) as JSON rows.
 */
export type SqlRow<T> = {
  [K in keyof T & string as Snake<K>]: Snake<K> extends DateColumn
    ? Date | Extract<T[K], null>
    : T[K] extends ReadonlyArray<infer E> ? JsonRow<E>[] : T[K];
};

export type GrantResult = SqlRow<Sdk.GrantResult>;
export type ConsumeResult = SqlRow<Sdk.ConsumeResult>;
export type BatchResult = SqlRow<Sdk.BatchConsumeResult>;
export type ChargeResult = SqlRow<Sdk.ChargeResult>;
export type AdjustResult = SqlRow<Sdk.AdjustResult>;
export type Bucket = JsonRow<Sdk.Bucket>;
export type BalanceResult = SqlRow<Sdk.Balance>;
export type MyBalanceResult = SqlRow<Sdk.AccountBalance>;
export type Plan = JsonRow<Sdk.PlanRecord>;
export type SetPlanResult = SqlRow<Sdk.PlanChange>;
export type MyPlanResult = SqlRow<Sdk.AccountPlan>;
export type MeterResult = SqlRow<Sdk.MeterResult>;
export type QuoteResult = SqlRow<Sdk.Quote>;
export type ReserveResult = SqlRow<Sdk.ReserveResult>;
export type SettleResult = SqlRow<Sdk.SettleResult>;
export type ReleaseResult = SqlRow<Sdk.ReleaseResult>;
export type LedgerRow = SqlRow<Sdk.HistoryEntry>;

async function single<T>(rows: Promise<T[]>): Promise<T> {
  const [row, ...rest] = await rows;
  if (!row || rest.length > 0) throw new Error(`expected exactly one row, got ${rest.length + (row ? 1 : 0)}`);
  return row;
}

/** The one value of a function that returns a scalar, selected `as value`. */
async function scalar<T>(rows: Promise<Row[]>): Promise<T> {
  return (await single(rows)).value as T;
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
    consumeBatch: (args: Args) => call<BatchResult>('creditkit_consume_batch', args),
    adjust: (args: Args) => single(call<AdjustResult>('creditkit_adjust', args)),
    balance: (args: Args) => single(call<BalanceResult>('creditkit_balance', args)),
    history: (args: Args) => call<LedgerRow>('creditkit_history', args),
    bookExpired: async (args: Args = {}) =>
      (await single(call<{ visited: number }>('creditkit_book_expired', args, 'creditkit_book_expired as visited'))).visited,
    myBalance: (args: Args = {}) => single(call<MyBalanceResult>('creditkit_my_balance', args)),
    myHistory: (args: Args = {}) => call<LedgerRow>('creditkit_my_history', args),
    // plans
    upsertPlan: async (args: Args) => (await single(call<{ plan: Plan }>('creditkit_upsert_plan', args, 'creditkit_upsert_plan as plan'))).plan,
    setPlan: (args: Args) => single(call<SetPlanResult>('creditkit_set_plan', args)),
    hasFeature: (args: Args) => scalar<boolean>(call<Row>('creditkit_has_feature', args, 'creditkit_has_feature as value')),
    myPlan: (args: Args = {}) => single(call<MyPlanResult>('creditkit_my_plan', args)),
    myFeature: (args: Args) => scalar<boolean>(call<Row>('creditkit_my_feature', args, 'creditkit_my_feature as value')),
    // pricing
    setPrice: (args: Args) => scalar<number>(call<Row>('creditkit_set_price', args, 'creditkit_set_price as value')),
    meter: (args: Args) => single(call<MeterResult>('creditkit_meter', args)),
    quote: (args: Args) => single(call<QuoteResult>('creditkit_quote', args)),
    // holds
    reserve: (args: Args) => single(call<ReserveResult>('creditkit_reserve', args)),
    settleHold: (args: Args) => single(call<SettleResult>('creditkit_settle', args)),
    release: (args: Args) => single(call<ReleaseResult>('creditkit_release', args)),
    // gating
    hasCredits: (args: Args = {}) => scalar<boolean>(call<Row>('creditkit_has_credits', args, 'creditkit_has_credits as value')),
    // units
    upsertUnit: async (args: Args) => (await single(call<{ unit: Row }>('creditkit_upsert_unit', args, 'creditkit_upsert_unit as unit'))).unit,
    units: () => call<{ id: string; name: string; kind: string }>('creditkit_units', {}),
    setPlanLimit: async (args: Args) =>
      (await single(call<{ limit: Row | null }>('creditkit_set_plan_limit', args, 'creditkit_set_plan_limit as limit'))).limit,
    check: (args: Args) => single(call<{ allowed: boolean; balance: number }>('creditkit_check', args)),
    report: (args: Args) => single(call<ConsumeResult>('creditkit_report', args)),
    myCheck: (args: Args = {}) => single(call<{ allowed: boolean; balance: number }>('creditkit_my_check', args)),
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

// creditkit.grants as the buckets truly stand (true remainders): from ${GRANTS} g.
export { GRANTS };

type Query = Pick<TestDatabase, 'query'>;

/**
 * Every way the books can disagree, one line per problem; none means consistent. Per (account,
 * unit): balance = sum(ledger.amount) = sum(grants.remaining) - undrawn >= 0 (undrawn: what the
 * fast path spent and the next lock draws from the buckets), version = number of ledger rows,
 * held = the sum of its open holds, and each row's balance_after is the running sum; no ledger
 * row in a unit the account holds no row of. Overall, per unit: total balance = total ledger.
 * $1 limits it to some accounts (NULL: all).
 */
export const LEDGER_PROBLEMS_SQL = `
  with acct as (
    select a.* from creditkit.accounts a where $1::uuid[] is null or a.id = any ($1::uuid[])
  ), sums as (
    select a.id, a.unit, a.balance, a.version, a.held, a.undrawn,
           (select coalesce(sum(l.amount), 0) from creditkit.ledger l where l.account_id = a.id and l.unit = a.unit) as ledger_sum,
           (select count(*) from creditkit.ledger l where l.account_id = a.id and l.unit = a.unit) as ledger_rows,
           (select coalesce(sum(g.remaining), 0) from creditkit.grants g where g.account_id = a.id and g.unit = a.unit) as remaining_sum,
           (select coalesce(sum(h.amount), 0) from creditkit.holds h
             where h.account_id = a.id and h.unit = a.unit and h.status = 'open') as open_held
      from acct a
  ), running as (
    select l.account_id, l.unit, l.id, l.balance_after,
           sum(l.amount) over (partition by l.account_id, l.unit order by l.id) as running
      from creditkit.ledger l join acct a on a.id = l.account_id and a.unit = l.unit
  )
  select format('account %s in %s: balance %s, ledger sum %s, remaining sum %s, undrawn %s, version %s, ledger rows %s, held %s, open holds %s',
                id, unit, balance, ledger_sum, remaining_sum, undrawn, version, ledger_rows, held, open_held) as problem
    from sums
   where balance <> ledger_sum or balance <> remaining_sum - undrawn or version <> ledger_rows or balance < 0
      or held <> open_held
  union all
  select format('ledger row %s of account %s in %s: balance_after %s, running sum %s', id, account_id, unit, balance_after, running)
    from running where running <> balance_after
  union all
  select format('ledger row %s of account %s is in %s, where the account has no balance', l.id, l.account_id, l.unit)
    from creditkit.ledger l
   where ($1::uuid[] is null or l.account_id = any ($1::uuid[]))
     and not exists (select from creditkit.accounts a where a.id = l.account_id and a.unit = l.unit)
  union all
  select format('totals in %s: balances %s, ledger %s', t.unit, t.b, t.l)
    from (select u.unit,
                 (select coalesce(sum(a.balance), 0) from acct a where a.unit = u.unit) as b,
                 (select coalesce(sum(l.amount), 0) from creditkit.ledger l join acct a on a.id = l.account_id and a.unit = l.unit
                   where l.unit = u.unit) as l
            from (select distinct a.unit from acct a) u) t
   where t.b <> t.l`;

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
 * account, bucket, hold, subscription, plan, price, pack and Stripe row (customers, the event
 * inbox, payments, invoices) as whole rows, so a column added or renamed
 * later is covered too. Accounts and buckets are compared as the books stand: a call that only
 * draws what the fast path left undrawn (a replay takes the lock, and the lock draws) moves credit
 * from accounts.undrawn into grants.remaining and changes nothing else, so `undrawn` is left out
 * and each bucket's remaining (and live) is its true remainder (GRANTS).
 */
export async function snapshotBooks(db: Query): Promise<Row> {
  const [row] = await db.query(`
    select (select count(*) from creditkit.ledger) as ledger_rows,
           (select coalesce(max(id), 0) from creditkit.ledger) as last_ledger_id,
           (select coalesce(json_agg(b.row order by b.id), '[]') from ${BOOKED_ACCOUNTS} b) as accounts,
           (select coalesce(json_agg(b.row order by b.id), '[]') from ${BOOKED_GRANTS} b) as grants,
           (select coalesce(json_agg(to_jsonb(h) order by h.id), '[]') from creditkit.holds h) as holds,
           (select coalesce(json_agg(to_jsonb(s) order by s.account_id), '[]') from creditkit.subscriptions s) as subscriptions,
           (select coalesce(json_agg(to_jsonb(p) order by p.id), '[]') from creditkit.plans p) as plans,
           (select coalesce(json_agg(to_jsonb(p) order by p.id), '[]') from creditkit.prices p) as prices,
           (select coalesce(json_agg(to_jsonb(k) order by k.id), '[]') from creditkit.packs k) as packs,
           (select coalesce(json_agg(to_jsonb(c) order by c.account_id), '[]') from creditkit.stripe_customers c) as stripe_customers,
           (select coalesce(json_agg(to_jsonb(e) order by e.id), '[]') from creditkit.stripe_events e) as stripe_events,
           (select coalesce(json_agg(to_jsonb(p) order by p.payment_intent), '[]') from creditkit.stripe_payments p) as stripe_payments,
           (select coalesce(json_agg(to_jsonb(i) order by i.invoice_id), '[]') from creditkit.stripe_invoices i) as stripe_invoices`);
  if (!row) throw new Error('snapshot query returned no row');
  return row;
}

/**
 * The same coverage as snapshotBooks (whole rows of every table, the ledger's size) as one md5 per
 * table: about three times cheaper on a database that has seen hundreds of cases, and a mismatch
 * still says which tables changed. It also covers 0.3.0's tables (the card on file, alerts, auto
 * top-ups and top-ups, endpoints, notifications and deliveries), so that a refused call is seen
 * to leave those alone too.
 */
export async function booksDigest(db: Query): Promise<Row> {
  const digest = (table: string, order: string) =>
    `(select md5(coalesce(string_agg(t::text, e'\\n' order by ${order}), '')) from ${table} t) as ${table.replace('creditkit.', '')}`;
  const [row] = await db.query(`
    select (select count(*) from creditkit.ledger) as ledger_rows,
           (select coalesce(max(id), 0) from creditkit.ledger) as last_ledger_id,
           ${digest('creditkit.accounts', 't.id')},
           ${digest('creditkit.grants', 't.id')},
           ${digest('creditkit.holds', 't.id')},
           ${digest('creditkit.subscriptions', 't.account_id')},
           ${digest('creditkit.plans', 't.id')},
           ${digest('creditkit.prices', 't.id')},
           ${digest('creditkit.packs', 't.id')},
           ${digest('creditkit.stripe_customers', 't.account_id')},
           ${digest('creditkit.stripe_events', 't.id')},
           ${digest('creditkit.stripe_payments', 't.payment_intent')},
           ${digest('creditkit.stripe_invoices', 't.invoice_id')},
           ${digest('creditkit.stripe_payment_methods', 't.id')},
           ${digest('creditkit.stripe_default_methods', 't.customer_id')},
           ${digest('creditkit.auto_topup_terms', 't.unit')},
           ${digest('creditkit.balance_alerts', 't.unit')},
           ${digest('creditkit.account_alerts', 't.account_id, t.unit')},
           ${digest('creditkit.auto_topups', 't.account_id, t.unit')},
           ${digest('creditkit.topups', 't.id')},
           ${digest('creditkit.webhook_endpoints', 't.id')},
           ${digest('creditkit.notifications', 't.id')},
           ${digest('creditkit.deliveries', 't.id')}`);
  if (!row) throw new Error('digest query returned no row');
  return row;
}

/** The account's ledger rows, oldest first, as the superuser. */
export function ledgerOf(db: Query, accountId: string): Promise<LedgerRow[]> {
  return db.query<LedgerRow>('select * from creditkit.ledger where account_id = $1 order by id', [accountId]);
}

export interface PlanGrant {
  grant_id: number; amount: number; remaining: number; plan_id: string; reason: string; period_index: number;
  allowance: number; rollover: number; period_start: string; period_end: string; expires_at: string; created_at: string;
}

/**
 * The account's plan-allowance buckets (category 'plan', written by a subscription), oldest first,
 * with their metadata; every time as an `at()` string, to the microsecond and in UTC.
 */
export async function planGrantsOf(db: Query, accountId: string): Promise<PlanGrant[]> {
  const rows = await db.query<Record<string, number | string>>(
    `select id as grant_id, amount, remaining, metadata->>'plan_id' as plan_id, metadata->>'reason' as reason,
            (metadata->>'period_index')::int as period_index, (metadata->>'allowance')::bigint as allowance,
            (metadata->>'rollover')::bigint as rollover,
            ${microsSql("(metadata->>'period_start')::timestamptz")} as start_us,
            ${microsSql("(metadata->>'period_end')::timestamptz")} as end_us,
            ${microsSql('expires_at')} as expires_us, ${microsSql('created_at')} as created_us
       from ${GRANTS} g where account_id = $1 and category = 'plan' and metadata ? 'period_index' order by id`,
    [accountId],
  );
  return rows.map(({ start_us, end_us, expires_us, created_us, ...r }) => ({
    ...r,
    period_start: at(Number(start_us)),
    period_end: at(Number(end_us)),
    expires_at: at(Number(expires_us)),
    created_at: at(Number(created_us)),
  }) as PlanGrant);
}

/** The account's ledger as [kind, amount, balance_after, at()] rows, oldest first. */
export async function ledgerLines(db: Query, accountId: string): Promise<Array<[string, number, number, string]>> {
  const rows = await db.query<{ kind: string; amount: number; balance_after: number; at_us: number }>(
    `select kind, amount, balance_after, ${microsSql('created_at')} as at_us from creditkit.ledger where account_id = $1 order by id`,
    [accountId],
  );
  return rows.map((r) => [r.kind, r.amount, r.balance_after, at(Number(r.at_us))]);
}

/** The account's buckets, oldest first, as the superuser. */
export function grantsOf(db: Query, accountId: string): Promise<Row[]> {
  return db.query(
    `select id, category, amount, remaining, priority, ${microsSql('expires_at')} as expires_us
       from ${GRANTS} g where account_id = $1 order by id`,
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
