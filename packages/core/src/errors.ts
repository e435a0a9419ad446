// Typed errors. Every failure the SDK reports is a CreditkitError whose `code` is stable: the
// `name` column of creditkit.error_codes for the CKnnn catalogue, or one of a few client-side
// codes below. The raw driver or PostgREST error is kept as `cause`, never thrown itself.

/** Stable error codes: the SQL catalogue (CK001-CK018) plus client-side conditions. */
export type ErrorCode =
  | 'invalid_amount' // CK001
  | 'insufficient_credits' // CK002
  | 'unknown_account' // CK003
  | 'idempotency_conflict' // CK004
  | 'not_allowed' // CK005, or 42501: the caller lacks EXECUTE on the function
  | 'invalid_argument' // CK006, or a value Postgres could not read (22xxx)
  | 'balance_limit' // CK007
  | 'append_only' // CK008
  | 'unknown_plan' // CK009
  | 'unknown_event' // CK010
  | 'unknown_hold' // CK011
  | 'hold_closed' // CK012
  | 'unknown_pack' // CK013
  | 'invalid_event' // CK014
  | 'unknown_unit' // CK015
  | 'auto_topup_unavailable' // CK016
  | 'unknown_endpoint' // CK017
  | 'unknown_topup_or_delivery' // CK018
  | 'no_stripe_price' // @creditkit/stripe: the pack or plan has no Stripe price id, so it cannot be sold
  | 'no_stripe_customer' // @creditkit/stripe: the account has no Stripe customer yet
  | 'concurrency_conflict' // 40001 / 40P01 still failing after every retry
  | 'lock_timeout' // 55P03: the account was locked by another transaction for longer than the kit's lock_timeout, after the retry
  | 'statement_timeout' // 57014: the statement ran past the server's statement_timeout (or was cancelled)
  | 'unavailable' // the database or the Data API could not be reached
  | 'not_installed' // the function does not exist: creditkit's migrations are missing or older
  | 'out_of_range' // a result (an analytics sum) beyond 2^53-1, which JavaScript cannot hold exactly
  | 'internal'; // anything else, with the SQLSTATE kept in `sqlstate`

/** SQLSTATE of each catalogued creditkit error. */
export const SQLSTATE_CODES: Readonly<Record<string, ErrorCode>> = {
  CK001: 'invalid_amount',
  CK002: 'insufficient_credits',
  CK003: 'unknown_account',
  CK004: 'idempotency_conflict',
  CK005: 'not_allowed',
  CK006: 'invalid_argument',
  CK007: 'balance_limit',
  CK008: 'append_only',
  CK009: 'unknown_plan',
  CK010: 'unknown_event',
  CK011: 'unknown_hold',
  CK012: 'hold_closed',
  CK013: 'unknown_pack',
  CK014: 'invalid_event',
  CK015: 'unknown_unit',
  CK016: 'auto_topup_unavailable',
  CK017: 'unknown_endpoint',
  CK018: 'unknown_topup_or_delivery',
};

export interface ErrorInit {
  sqlstate?: string | undefined;
  /** DETAIL of the Postgres error, parsed when it is JSON (creditkit puts JSON there). */
  details?: unknown;
  hint?: string | undefined;
  cause?: unknown;
}

export class CreditkitError extends Error {
  override name = 'CreditkitError';
  readonly code: ErrorCode;
  /** The SQLSTATE Postgres raised, if the error came from the database. */
  readonly sqlstate: string | undefined;
  readonly details: unknown;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, init: ErrorInit = {}) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = code;
    this.sqlstate = init.sqlstate;
    this.details = init.details;
    this.hint = init.hint;
  }

  /** A JSON-safe summary for logs and API responses (no cause, no stack). */
  toJSON(): { code: ErrorCode; message: string; sqlstate?: string; details?: unknown } {
    return {
      code: this.code,
      message: this.message,
      ...(this.sqlstate ? { sqlstate: this.sqlstate } : {}),
      ...(this.details === undefined || this.details === null ? {} : { details: this.details }),
    };
  }
}

export class InvalidAmountError extends CreditkitError {
  override name = 'InvalidAmountError';
  constructor(message: string, init?: ErrorInit) {
    super('invalid_amount', message, init);
  }
}

/**
 * The account cannot cover the amount; `balance` is what it could spend, `required` what was
 * asked, both in `unit` (the balance that ran out: credits unless the call named another unit).
 */
export class InsufficientCreditsError extends CreditkitError {
  override name = 'InsufficientCreditsError';
  readonly balance: number;
  readonly required: number;
  readonly unit: string;
  constructor(message: string, init: ErrorInit & { balance: number; required: number; unit?: string }) {
    super('insufficient_credits', message, init);
    this.balance = init.balance;
    this.required = init.required;
    this.unit = init.unit ?? 'credits';
  }
}

export class UnknownAccountError extends CreditkitError {
  override name = 'UnknownAccountError';
  constructor(message: string, init?: ErrorInit) {
    super('unknown_account', message, init);
  }
}

export class IdempotencyConflictError extends CreditkitError {
  override name = 'IdempotencyConflictError';
  constructor(message: string, init?: ErrorInit) {
    super('idempotency_conflict', message, init);
  }
}

export class NotAllowedError extends CreditkitError {
  override name = 'NotAllowedError';
  constructor(message: string, init?: ErrorInit) {
    super('not_allowed', message, init);
  }
}

export class InvalidArgumentError extends CreditkitError {
  override name = 'InvalidArgumentError';
  constructor(message: string, init?: ErrorInit) {
    super('invalid_argument', message, init);
  }
}

export class BalanceLimitError extends CreditkitError {
  override name = 'BalanceLimitError';
  constructor(message: string, init?: ErrorInit) {
    super('balance_limit', message, init);
  }
}

export class UnknownPlanError extends CreditkitError {
  override name = 'UnknownPlanError';
  constructor(message: string, init?: ErrorInit) {
    super('unknown_plan', message, init);
  }
}

export class UnknownEventError extends CreditkitError {
  override name = 'UnknownEventError';
  constructor(message: string, init?: ErrorInit) {
    super('unknown_event', message, init);
  }
}

export class UnknownHoldError extends CreditkitError {
  override name = 'UnknownHoldError';
  constructor(message: string, init?: ErrorInit) {
    super('unknown_hold', message, init);
  }
}

export class HoldClosedError extends CreditkitError {
  override name = 'HoldClosedError';
  constructor(message: string, init?: ErrorInit) {
    super('hold_closed', message, init);
  }
}

export class UnknownPackError extends CreditkitError {
  override name = 'UnknownPackError';
  constructor(message: string, init?: ErrorInit) {
    super('unknown_pack', message, init);
  }
}

/** Not a Stripe event creditkit can read (creditkit_stripe_apply needs id, type, created, data.object). */
export class InvalidEventError extends CreditkitError {
  override name = 'InvalidEventError';
  constructor(message: string, init?: ErrorInit) {
    super('invalid_event', message, init);
  }
}

/** No unit with that id, or a boolean unit where a metered one (a balance) is needed. */
export class UnknownUnitError extends CreditkitError {
  override name = 'UnknownUnitError';
  constructor(message: string, init?: ErrorInit) {
    super('unknown_unit', message, init);
  }
}

/**
 * Auto top-up cannot be switched on for this account and unit: the unit has no top-up terms or
 * they are disabled, or the account has no card on file (or only a payment method that settles
 * days later, which cannot top up a balance now).
 */
export class AutoTopupUnavailableError extends CreditkitError {
  override name = 'AutoTopupUnavailableError';
  constructor(message: string, init?: ErrorInit) {
    super('auto_topup_unavailable', message, init);
  }
}

/** No webhook endpoint with that id. */
export class UnknownEndpointError extends CreditkitError {
  override name = 'UnknownEndpointError';
  constructor(message: string, init?: ErrorInit) {
    super('unknown_endpoint', message, init);
  }
}

/** No top-up or notification delivery with that id (a worker's result, or a replay, named one that is gone). */
export class UnknownTopupOrDeliveryError extends CreditkitError {
  override name = 'UnknownTopupOrDeliveryError';
  constructor(message: string, init?: ErrorInit) {
    super('unknown_topup_or_delivery', message, init);
  }
}

/** Serialization failures or deadlocks that outlasted every retry. Safe to retry later. */
export class ConcurrencyError extends CreditkitError {
  override name = 'ConcurrencyError';
  constructor(message: string, init?: ErrorInit) {
    super('concurrency_conflict', message, init);
  }
}

/**
 * The account's row lock was held by another transaction (an app's own transaction still open, a
 * stuck one) for longer than the kit's lock_timeout (3 seconds by default), on the retry too.
 * Nothing was changed. Safe to retry later: the route helpers answer 503 with Retry-After.
 */
export class LockTimeoutError extends CreditkitError {
  override name = 'LockTimeoutError';
  constructor(message: string, init?: ErrorInit) {
    super('lock_timeout', message, init);
  }
}

/** The statement ran past the server's statement_timeout, or was cancelled. Nothing was changed. */
export class StatementTimeoutError extends CreditkitError {
  override name = 'StatementTimeoutError';
  constructor(message: string, init?: ErrorInit) {
    super('statement_timeout', message, init);
  }
}

/** The database (or the Data API in front of it) could not be reached or refused the connection. */
export class UnavailableError extends CreditkitError {
  override name = 'UnavailableError';
  constructor(message: string, init?: ErrorInit) {
    super('unavailable', message, init);
  }
}

/** What a transport reports: a Postgres error (or PostgREST's JSON for one), or a network failure. */
export interface RawError {
  /** SQLSTATE, or PostgREST's PGRSTnnn code. */
  code?: string | undefined;
  message: string;
  /** Postgres DETAIL text. */
  details?: string | null | undefined;
  hint?: string | null | undefined;
  /** True when the request never got an answer (connection refused, reset, DNS). */
  network?: boolean;
}

function parseDetails(details: string | null | undefined): unknown {
  if (details === null || details === undefined || details === '') return undefined;
  try {
    return JSON.parse(details);
  } catch {
    return details;
  }
}

const SIMPLE: Partial<Record<ErrorCode, new (message: string, init?: ErrorInit) => CreditkitError>> = {
  invalid_amount: InvalidAmountError,
  unknown_account: UnknownAccountError,
  idempotency_conflict: IdempotencyConflictError,
  not_allowed: NotAllowedError,
  invalid_argument: InvalidArgumentError,
  balance_limit: BalanceLimitError,
  unknown_plan: UnknownPlanError,
  unknown_event: UnknownEventError,
  unknown_hold: UnknownHoldError,
  hold_closed: HoldClosedError,
  unknown_pack: UnknownPackError,
  invalid_event: InvalidEventError,
  unknown_unit: UnknownUnitError,
  auto_topup_unavailable: AutoTopupUnavailableError,
  unknown_endpoint: UnknownEndpointError,
  unknown_topup_or_delivery: UnknownTopupOrDeliveryError,
};

/** SQLSTATEs the SDK retries: the transaction was rolled back and can simply run again. */
export function isRetryable(sqlstate: string | undefined): boolean {
  return sqlstate === '40001' || sqlstate === '40P01' || sqlstate === LOCK_TIMEOUT;
}

/** lock_not_available: a call gave up waiting for an account's row lock (the kit's lock_timeout). */
export const LOCK_TIMEOUT = '55P03';

/** The typed error for what a transport reported. */
export function toCreditkitError(raw: RawError, cause: unknown): CreditkitError {
  const sqlstate = raw.code || undefined;
  const init: ErrorInit = { sqlstate, details: parseDetails(raw.details), hint: raw.hint ?? undefined, cause };
  if (raw.network) return new UnavailableError(raw.message, init);
  const catalogued = sqlstate ? SQLSTATE_CODES[sqlstate] : undefined;
  if (catalogued === 'insufficient_credits') {
    const d = (init.details ?? {}) as { balance?: unknown; required?: unknown; unit?: unknown };
    return new InsufficientCreditsError(raw.message, {
      ...init,
      balance: Number(d.balance ?? 0),
      required: Number(d.required ?? 0),
      ...(typeof d.unit === 'string' ? { unit: d.unit } : {}),
    });
  }
  if (catalogued) {
    const Specific = SIMPLE[catalogued];
    return Specific ? new Specific(raw.message, init) : new CreditkitError(catalogued, raw.message, init);
  }
  if (!sqlstate) return new CreditkitError('internal', raw.message, init);
  if (sqlstate === '42501') return new NotAllowedError(raw.message, init);
  if (sqlstate === LOCK_TIMEOUT) return new LockTimeoutError(raw.message, init);
  if (isRetryable(sqlstate)) return new ConcurrencyError(raw.message, init);
  if (sqlstate === '57014') return new StatementTimeoutError(raw.message, init);
  // 42883 from SQL, PGRST202 from PostgREST: no such function (or not with those arguments).
  if (sqlstate === '42883' || sqlstate === 'PGRST202') {
    return new CreditkitError('not_installed', `${raw.message} (are creditkit's migrations applied?)`, init);
  }
  // Values Postgres could not read as the parameter's type: malformed uuid, timestamp, number.
  if (sqlstate.startsWith('22')) return new InvalidArgumentError(raw.message, init);
  // Connection exceptions, shutdown, too many connections, PostgREST's "cannot reach the database".
  if (/^(08|57P|53)/.test(sqlstate) || sqlstate === 'PGRST000' || sqlstate === 'PGRST001') {
    return new UnavailableError(raw.message, init);
  }
  if (sqlstate.startsWith('PGRST3')) return new NotAllowedError(raw.message, init); // JWT problems
  return new CreditkitError('internal', raw.message, init);
}
