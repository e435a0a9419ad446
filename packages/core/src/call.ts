// The layer between the typed methods and a transport: parameter names and values in (camelCase
// to `p_snake_case`, exact integers only), typed errors and retries out, rows to camelCase.
import type { Database } from './database.types.ts';
import {
  CreditkitError,
  InvalidAmountError,
  InvalidArgumentError,
  isRetryable,
  LOCK_TIMEOUT,
  toCreditkitError,
} from './errors.ts';
import { TransportError, type SqlArgs, type Transport } from './transport.ts';

type Functions = Database['public']['Functions'];
/** Every public.creditkit_* function, as `supabase gen types` saw the migrations. */
export type FunctionName = keyof Functions;

type CamelCase<S extends string> = S extends `${infer Head}_${infer Tail}` ? `${Head}${Capitalize<CamelCase<Tail>>}` : S;
/** Parameters that take an instant: an ISO 8601 string (microseconds kept) or a Date. */
type TimeParam = 'now' | 'expiresAt' | 'from' | 'to' | 'anchor' | 'effectiveFrom';

/**
 * The SQL function's parameters, named as in SQL without the `p_` prefix, in camelCase:
 * `creditkit_consume(p_account_id, p_amount, p_idempotency_key …)` takes
 * `{ accountId, amount, idempotencyKey … }`. Optional exactly where SQL has a default.
 */
export type Params<F extends FunctionName> = {
  [K in keyof Functions[F]['Args'] as K extends `p_${infer Rest}` ? CamelCase<Rest> : never]: K extends `p_${infer Rest}`
    ? (CamelCase<Rest> extends TimeParam ? string | Date : Functions[F]['Args'][K]) | OptionalNull<Functions[F]['Args'], K>
    : never;
};
/**
 * Optional parameters whose SQL default is NULL also take null (the same as leaving them out),
 * e.g. `beforeId: page.nextBeforeId`. The others (limit, now, ttl, ...) have a real default, and
 * SQL NULL would be refused, so their types do not admit null.
 */
type OptionalNull<A, K extends keyof A> = {} extends Pick<A, K>
  ? K extends `p_${NullDefault}`
    ? null
    : never
  : never;
type NullDefault =
  | 'account_id'
  | 'before_id'
  | 'expires_at'
  | 'priority'
  | 'idempotency_key'
  | 'metadata'
  | 'cost_micros'
  | 'revenue_micros'
  | 'event'
  | 'anchor'
  | 'rollover_cap'
  | 'overage_credits_per_unit'
  | 'stripe_price_id'
  | 'expires_after'
  | 'status'
  | 'type'
  | 'percent'
  | 'hysteresis'
  | 'target'
  | 'pack_id'
  | 'monthly_amount_cap'
  | 'monthly_count_cap'
  | 'action_url'
  | 'event_types'
  | 'secret'
  | 'description'
  | 'payment_intent'
  | 'code'
  | 'message'
  | 'error';

/** Integer parameters holding credits (or another unit); the rest are ids, limits, counts, cents or micros. */
const CREDIT_PARAMS = new Set([
  'amount',
  'quantity',
  'actual',
  'creditsPerUnit',
  'overageCreditsPerUnit',
  'allowance',
  'rolloverCap',
  'credits',
  'threshold',
  'target',
  'minAmount',
  'maxAmount',
  'minThreshold',
  'hysteresis',
]);
const INTEGER_PARAMS = new Set([
  ...CREDIT_PARAMS,
  'costMicros',
  'revenueMicros',
  'priceAmount',
  'priority',
  'limit',
  'beforeId',
  'holdId',
  'monthlyAmountCap',
  'monthlyCountCap',
  'topupId',
  'deliveryId',
  'attempt',
  'statusCode',
]);

/** A name conversion remembered per name: every call converts the same few keys. */
function remembered(convert: (name: string) => string): (name: string) => string {
  const seen = new Map<string, string>();
  return (name) => {
    let converted = seen.get(name);
    if (converted === undefined) {
      converted = convert(name);
      if (seen.size < 1000) seen.set(name, converted); // the app's keys are few; never grow unbounded
    }
    return converted;
  };
}

const snake = remembered((name) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`));
const camel = remembered((name) => name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase()));

/**
 * An integer parameter as a JavaScript number, refused unless it is an exact integer within
 * ±(2^53−1): no float rounding can happen on the way to SQL or back.
 */
function exactInteger(name: string, value: unknown, where: string = name): number {
  let n: number | undefined;
  if (typeof value === 'number' && Number.isSafeInteger(value)) n = value;
  else if (typeof value === 'bigint' && value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= -BigInt(Number.MAX_SAFE_INTEGER)) {
    n = Number(value);
  }
  if (n !== undefined) return n;
  const shown = typeof value === 'bigint' ? `${value}n` : typeof value === 'string' ? JSON.stringify(value) : String(value);
  const message = `${where} must be a whole number between -(2^53-1) and 2^53-1, got ${shown}`;
  const details = { parameter: name, value: typeof value === 'bigint' ? value.toString() : value };
  throw CREDIT_PARAMS.has(name) ? new InvalidAmountError(message, { details }) : new InvalidArgumentError(message, { details });
}

/** `{ accountId, amount }` → `{ p_account_id, p_amount }`, validated. Undefined values are left out. */
export function toSqlArgs(params: object): SqlArgs {
  const args: SqlArgs = {};
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined) continue;
    let sqlValue: unknown = value;
    if (value instanceof Date) {
      if (Number.isNaN(value.getTime())) throw new InvalidArgumentError(`${name} is an invalid Date`, { details: { parameter: name } });
      sqlValue = value.toISOString();
    } else if (INTEGER_PARAMS.has(name) && value !== null) {
      sqlValue = exactInteger(name, value);
    }
    args[`p_${snake(name)}`] = sqlValue;
  }
  return args;
}

/**
 * One usage event for consumeBatch: the parameters of consume except `now` (the batch acts at one
 * instant) and `unit` (a batch spends one unit, named once), in camelCase like every method's parameters.
 */
export type BatchConsumeEvent = Omit<Params<'creditkit_consume'>, 'now' | 'unit'>;

/**
 * consumeBatch's events → the JSON array creditkit_consume_batch reads: keys to snake_case,
 * undefined values left out, `amount` and `costMicros` validated like every integer parameter
 * (refused before anything is sent, naming the event's index). What is not an array of objects
 * goes as it is: the database refuses it with the code a consume would get (CK006).
 */
export function toBatchEvents(events: unknown): unknown {
  if (events === undefined) return null;
  if (!Array.isArray(events)) return events;
  return events.map((event: unknown, index) => {
    if (event === null || typeof event !== 'object' || Array.isArray(event)) return event;
    const item: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(event)) {
      if (value === undefined) continue;
      item[snake(name)] =
        (name === 'amount' || name === 'costMicros') && value !== null ? exactInteger(name, value, `events[${index}].${name}`) : value;
    }
    return item;
  });
}

/** Top-level keys to camelCase (values untouched: metadata and features are the app's own). */
export function camelKeys<T>(row: unknown): T {
  if (row === null || typeof row !== 'object' || Array.isArray(row)) return row as T;
  const out: Record<string, unknown> = {};
  for (const key in row) out[camel(key)] = (row as Record<string, unknown>)[key];
  return out as T;
}

export interface CallOptions {
  /** Retries after a serialization failure or deadlock (default 4). Business errors never retry. */
  retries?: number;
  /**
   * Retries after a lock timeout (55P03; default 1). Each attempt already waited the kit's
   * lock_timeout for a lock another transaction holds, so a few more rarely help.
   */
  lockRetries?: number;
  /** First backoff in ms (default 10), doubled each retry with full jitter, capped at 500 ms. */
  retryDelayMs?: number;
}

/**
 * Refuses a result with an integer JSON could not carry exactly (beyond 2^53-1): balances and
 * amounts are capped below it, but analytics sums over many accounts are not. Only the row's own
 * columns are checked; metadata is the app's JSON and passes through as parsed.
 */
function exactResult(fn: string, rows: unknown[]): unknown[] {
  for (const row of rows) {
    const values = row !== null && typeof row === 'object' && !Array.isArray(row) ? Object.entries(row) : [['result', row]];
    for (const [column, value] of values) {
      if (typeof value === 'number' && Number.isInteger(value) && !Number.isSafeInteger(value)) {
        throw new CreditkitError(
          'out_of_range',
          `creditkit: ${fn} returned ${column} beyond 2^53-1, which cannot be represented exactly in JavaScript`,
          { details: { function: fn, column } },
        );
      }
    }
  }
  return rows;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Calls functions through a transport with typed errors and retries. */
export class Caller {
  readonly transport: Transport;
  readonly #retries: number;
  readonly #lockRetries: number;
  readonly #delay: number;

  constructor(transport: Transport, options: CallOptions = {}) {
    this.transport = transport;
    this.#retries = options.retries ?? 4;
    this.#lockRetries = options.lockRetries ?? 1;
    this.#delay = options.retryDelayMs ?? 10;
  }

  /** The function's result as a list (rows, or one scalar), with typed errors. */
  async call<F extends FunctionName>(fn: F, params: Params<F> | Record<string, never>): Promise<unknown[]> {
    const args = toSqlArgs(params);
    for (let attempt = 0, lockAttempt = 0; ; attempt++) {
      try {
        return exactResult(fn, await this.transport.rpc(fn, args));
      } catch (error) {
        if (error instanceof CreditkitError) throw error;
        if (!(error instanceof TransportError)) {
          throw new CreditkitError('internal', `creditkit: ${fn} failed: ${String(error)}`, { cause: error });
        }
        const lock = error.raw.code === LOCK_TIMEOUT;
        if (isRetryable(error.raw.code) && attempt < this.#retries && (!lock || lockAttempt++ < this.#lockRetries)) {
          const cap = Math.min(500, this.#delay * 2 ** attempt);
          await sleep(Math.random() * cap);
          continue;
        }
        throw toCreditkitError(error.raw, error);
      }
    }
  }

  /** The one row of an OUT-parameter function, camelCased. */
  async row<T, F extends FunctionName>(fn: F, params: Params<F> | Record<string, never>): Promise<T> {
    const [row] = await this.call(fn, params);
    if (row === undefined) throw new CreditkitError('internal', `creditkit: ${fn} returned no row`);
    return camelKeys<T>(row);
  }

  /** The rows of a set-returning function, camelCased. */
  async rows<T, F extends FunctionName>(fn: F, params: Params<F> | Record<string, never>): Promise<T[]> {
    return (await this.call(fn, params)).map((row) => camelKeys<T>(row));
  }

  /** The value of a scalar function. */
  async scalar<T, F extends FunctionName>(fn: F, params: Params<F> | Record<string, never>): Promise<T> {
    const [value] = await this.call(fn, params);
    return value as T;
  }
}
