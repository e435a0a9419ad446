// @creditkit/core/http: helpers for Web-standard route handlers — `(Request) => Response` as in
// Next.js route handlers, Hono, Deno.serve, Bun and Cloudflare Workers.
//
//   const usage = await meter(creditkit, { accountId: user.id, event: 'image.generate' });
//   if (usage.blocked) return usage.response;            // 402 with a JSON body
//
//   export const POST = withCredits(creditkit, { account: userIdOf, unit: 'messages' }, handler);
//
//   export const POST = withCredits(creditkit, { account: userIdOf, reserve: 50 }, async (req, credits) => {
//     const { text, tokens } = await callModel(await req.json());
//     credits.charge(tokens);                             // settle the actual amount
//     return Response.json({ text });
//   });
import { CreditkitError, InsufficientCreditsError, InvalidAmountError, UnknownAccountError } from './errors.ts';
import type { Params } from './call.ts';
import type { MeterResult, ReserveResult } from './results.ts';
import type { CreditkitServer } from './server.ts';

/** The JSON body of a 402 answer. */
export interface PaymentRequiredBody {
  error: 'insufficient_credits';
  message: string;
  /** What the account can spend now, in `unit`. */
  balance: number;
  /** What the request needed, in `unit`. */
  required: number;
  /** The unit (feature) that ran out; absent when it is credits. */
  unit?: string;
}

/** A 402's response settings, and the unit that ran out (default credits). */
export interface PaymentRequiredInit extends ResponseInit {
  unit?: string | undefined;
}

/**
 * HTTP 402 Payment Required with a JSON body saying what was needed and what is left, in the
 * unit that ran out: "This needs 1 messages; the account has 0." (the unit's id, as the app named
 * it; credits leave `unit` out of the body).
 */
export function paymentRequired(balance: number, required: number, init: PaymentRequiredInit = {}): Response {
  const { unit = CREDITS, ...responseInit } = init;
  const body: PaymentRequiredBody = {
    error: 'insufficient_credits',
    message: `This needs ${required} ${unit}; the account has ${balance}.`,
    balance,
    required,
    ...(unit === CREDITS ? {} : { unit }),
  };
  return jsonResponse(body, { ...responseInit, status: 402 });
}

const CREDITS = 'credits';

/** A CreditkitError as JSON with the status a client should see (the stable code in `error`). */
export function errorResponse(error: CreditkitError): Response {
  if (error instanceof InsufficientCreditsError) return paymentRequired(error.balance, error.required, { unit: error.unit });
  const status: Record<string, number> = {
    not_allowed: 403,
    unknown_account: 404,
    unknown_plan: 404,
    unknown_event: 404,
    unknown_hold: 404,
    unknown_unit: 404,
    unknown_endpoint: 404,
    unknown_topup_or_delivery: 404,
    idempotency_conflict: 409,
    hold_closed: 409,
    // the request is fine, the account is not ready for it (no card, no terms for the unit)
    auto_topup_unavailable: 409,
    concurrency_conflict: 503,
    lock_timeout: 503,
    statement_timeout: 503,
    unavailable: 503,
    internal: 500,
    not_installed: 500,
  };
  const code = status[error.code] ?? 400;
  // A 503 here is worth retrying (another transaction held the account, the database was busy
  // or away): say when.
  const headers = code === 503 ? { 'retry-after': error.code === 'unavailable' ? '5' : '1' } : undefined;
  return jsonResponse({ error: error.code, message: error.message }, { status: code, headers });
}

function jsonResponse(body: unknown, init: ResponseInit): Response {
  const headers = new Headers(init.headers);
  headers.set('content-type', 'application/json; charset=utf-8');
  return new Response(JSON.stringify(body), { ...init, headers });
}

export type MeterOutcome = MeterResult &
  ({ blocked: false; response: null } | { blocked: true; /** A 402 to return as is. */ response: Response });

/**
 * What meter charges: an event priced by the price list (creditkit_meter), or `amount` of a unit
 * (a feature) as reported usage (creditkit_report; `event` then only labels the ledger row).
 */
export type MeterParams =
  | (Params<'creditkit_meter'> & { unit?: undefined })
  | (Params<'creditkit_report'> & { quantity?: never; dimensions?: never });

/**
 * Charges an account for an event or for `amount` of a unit. `blocked` says whether the account
 * could not pay; when it could not, `response` is the 402 to send back, naming the unit. An
 * account that does not exist yet has nothing: it is blocked with balance 0 rather than an error.
 */
export async function meter(creditkit: CreditkitServer, params: MeterParams): Promise<MeterOutcome> {
  let result: MeterResult;
  try {
    result = params.unit !== undefined ? await report(creditkit, params) : await creditkit.meter(params);
  } catch (error) {
    if (!(error instanceof UnknownAccountError)) throw error;
    result = { allowed: false, balance: 0, transactionId: null, ...(await unpaid(creditkit, params)) };
  }
  if (result.allowed) return { ...result, blocked: false, response: null };
  return { ...result, blocked: true, response: paymentRequired(result.balance, result.amount, { unit: result.unit }) };
}

async function report(creditkit: CreditkitServer, params: Params<'creditkit_report'>): Promise<MeterResult> {
  return { ...(await creditkit.report(params)), amount: params.amount, unit: params.unit };
}

/** What an account that does not exist would have been charged, and in which unit. */
async function unpaid(creditkit: CreditkitServer, params: MeterParams): Promise<{ amount: number; unit: string }> {
  if (params.unit !== undefined) return { amount: params.amount, unit: params.unit };
  const { event, quantity, dimensions } = params;
  const { amount, unit } = await creditkit.quote({ event, quantity, dimensions });
  return { amount, unit };
}

/** What the wrapped handler gets besides the request. */
export interface CreditsContext {
  accountId: string;
  /** The charge made before the handler ran (metering mode), else null. */
  metered: MeterResult | null;
  /** The hold taken before the handler ran (reserve mode), else null. */
  hold: ReserveResult | null;
  /**
   * Reserve mode: the amount to settle when the handler returns (default: the whole hold).
   * Call it once the real cost is known; `costMicros` records what the work cost you. Throws
   * InvalidAmountError for anything but a whole number from 0 to 2^53-1. Metering mode ignores it.
   */
  charge(actual: number, costMicros?: number): void;
}

type Resolvable<T> = T | ((request: Request) => T | Promise<T>);

export interface WithCreditsOptions {
  /** The account to charge, usually the signed-in user's id; null or undefined answers 401. */
  account: (request: Request) => string | null | undefined | Promise<string | null | undefined>;
  /**
   * Metering mode: charge this event before the handler (priced by the price list). With
   * `unit` or `reserve`, it only labels the charge, which then shows up under this event.
   */
  event?: string;
  /**
   * The feature (a metered unit) to spend from, e.g. 'messages': `amount` of it is charged before
   * the handler (or, with `reserve`, held), and a 402 names it. Default: credits.
   */
  unit?: string;
  /** With `unit`: how much of it the request spends (default 1). */
  amount?: Resolvable<number>;
  /** Units of `event` (default 1). */
  quantity?: Resolvable<number>;
  /** Dimensions for the price lookup, e.g. { model: 'large' }. */
  dimensions?: Resolvable<Record<string, string | number | boolean>>;
  /** Reserve mode: hold this much (of `unit`, default credits) before the handler, settle after it. */
  reserve?: Resolvable<number>;
  /** How long the hold lasts if the process dies mid-request (Postgres interval, default '15 minutes'). */
  ttl?: string;
  /** An idempotency key for the charge or hold, e.g. from a request header. */
  idempotencyKey?: (request: Request) => string | null | undefined | Promise<string | null | undefined>;
  /** Called when settling or releasing after the handler fails (default: console.error). */
  onSettleError?: (error: unknown, holdId: number) => void;
}

const defaultSettleError = (error: unknown, holdId: number) =>
  console.error(`creditkit: could not settle hold ${holdId} after the handler answered`, error);

async function resolve<T>(value: Resolvable<T> | undefined, request: Request): Promise<T | undefined> {
  return typeof value === 'function' ? (value as (r: Request) => T | Promise<T>)(request) : value;
}

/**
 * Wraps a route handler so it only runs for an account that can pay:
 * - metering mode (`event`): charges before the handler; 402 if the account is short.
 * - feature mode (`unit`, optionally `amount` and an `event` label): spends `amount` of the unit
 *   before the handler; 402 naming the unit if the account is short.
 * - reserve mode (`reserve`, optionally labelled with `event`): holds credits before the
 *   handler; 402 if short. When the handler returns a response below 400 the hold is settled
 *   for `charge(actual)` (default: all of it); when it throws, or answers 400 or above without
 *   calling charge(), the hold is released.
 * Errors from creditkit become JSON answers with a stable `error` code; the handler's own
 * errors are rethrown after the release.
 */
export function withCredits<Rest extends unknown[]>(
  creditkit: CreditkitServer,
  options: WithCreditsOptions,
  handler: (request: Request, credits: CreditsContext, ...rest: Rest) => Response | Promise<Response>,
): (request: Request, ...rest: Rest) => Promise<Response> {
  if (options.event === undefined && options.reserve === undefined && options.unit === undefined) {
    throw new TypeError(
      'withCredits: give `event` (metering), `unit` (spend `amount` of a feature) or `reserve` (hold then settle; `event` then labels it)',
    );
  }
  if (options.unit !== undefined && options.reserve === undefined && (options.quantity !== undefined || options.dimensions !== undefined)) {
    throw new TypeError('withCredits: `quantity` and `dimensions` price an event; with `unit`, say how much with `amount`');
  }
  return async (request, ...rest) => {
    const accountId = await options.account(request);
    if (!accountId) {
      return jsonResponse({ error: 'unauthenticated', message: 'Sign in to use this.' }, { status: 401 });
    }
    const idempotencyKey = (await options.idempotencyKey?.(request)) ?? undefined;
    let actual: { amount: number; costMicros: number | undefined } | null = null;
    const context: CreditsContext = {
      accountId,
      metered: null,
      hold: null,
      charge(amount, costMicros) {
        // Checked here, in the handler, rather than at settle time when the answer has gone out.
        if (!Number.isSafeInteger(amount) || amount < 0) {
          throw new InvalidAmountError(`charge() takes a whole number of credits from 0 to 2^53-1, got ${amount}`);
        }
        actual = { amount, costMicros };
      },
    };

    let reserved = 0;
    try {
      if (options.reserve === undefined) {
        const outcome = await meter(
          creditkit,
          options.unit !== undefined
            ? { accountId, unit: options.unit, amount: (await resolve(options.amount, request)) ?? 1, event: options.event, idempotencyKey }
            : {
                accountId,
                event: options.event!,
                quantity: await resolve(options.quantity, request),
                dimensions: await resolve(options.dimensions, request),
                idempotencyKey,
              },
        );
        if (outcome.blocked) return outcome.response;
        const { blocked: _blocked, response: _response, ...metered } = outcome;
        context.metered = metered;
      } else {
        reserved = (await resolve(options.reserve, request)) ?? 0;
        const hold = await reserveOrBlock(creditkit, {
          accountId,
          amount: reserved,
          ttl: options.ttl,
          event: options.event,
          idempotencyKey,
          unit: options.unit,
        });
        if (hold instanceof Response) return hold;
        context.hold = hold;
      }
    } catch (error) {
      if (error instanceof CreditkitError) return errorResponse(error);
      throw error;
    }

    const holdId = context.hold?.holdId;
    if (holdId === undefined || holdId === null) return handler(request, context, ...rest);

    let response: Response;
    try {
      response = await handler(request, context, ...rest);
    } catch (error) {
      // Reported like a failed settle; the hold's TTL is the backstop, and the handler's error wins.
      await creditkit.release({ holdId }).catch((e: unknown) => (options.onSettleError ?? defaultSettleError)(e, holdId));
      throw error;
    }
    const charged = actual as { amount: number; costMicros: number | undefined } | null;
    try {
      if (charged === null && response.status >= 400) await creditkit.release({ holdId });
      else await creditkit.settle({ holdId, actual: charged?.amount ?? reserved, costMicros: charged?.costMicros });
    } catch (error) {
      // The work is done and its response stands; a settle that failed (the hold expired, the
      // database went away) is reported, not turned into an error for the end user.
      (options.onSettleError ?? defaultSettleError)(error, holdId);
    }
    return response;
  };
}

/** Reserve, or the 402 to answer when the account cannot cover it (a new account has nothing). */
async function reserveOrBlock(
  creditkit: CreditkitServer,
  params: Params<'creditkit_reserve'>,
): Promise<ReserveResult | Response> {
  try {
    const hold = await creditkit.reserve(params);
    return hold.allowed ? hold : paymentRequired(hold.balance, params.amount, { unit: params.unit });
  } catch (error) {
    if (error instanceof UnknownAccountError) return paymentRequired(0, params.amount, { unit: params.unit });
    throw error;
  }
}
