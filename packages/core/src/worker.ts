// The worker: one run charges the top-ups that are due (through Stripe) and delivers the
// notifications that are due (signed HTTP POSTs). The database decides what is due, leases it to
// this run and records each answer; the worker only talks to the outside world, so any number of
// runs may overlap (claims skip what another run holds) and a crashed run's leases simply run out.
// Run it every minute from a cron (the creditkit-worker Edge Function, or the CLI template).
//
// Only web-standard APIs (fetch, AbortSignal, WebCrypto through signWebhook): it runs in Node 20,
// Deno and edge runtimes.
import { CreditkitError } from './errors.ts';
import type { ClaimedDelivery, ClaimedTopup, TopupOutcome } from './results.ts';
import type { CreditkitServer } from './server.ts';
import { signWebhook } from './webhooks.ts';

/** The part of a Stripe client the worker uses (`new Stripe(key)` fits). */
export interface WorkerStripe {
  paymentIntents: {
    create(params: Record<string, unknown>, options?: { idempotencyKey?: string }): Promise<{ id: string; status: string }>;
  };
}

export interface RunWorkerOptions {
  /** A server client (service role). */
  creditkit: CreditkitServer;
  /** Without it, top-ups are left pending (not even claimed) and only notifications are delivered. */
  stripe?: WorkerStripe;
  fetch?: typeof fetch;
  /** How many top-ups and how many deliveries one run takes on, each (default 25). */
  limit?: number;
  /** How long one delivery may take before it counts as failed (default 10000 ms). */
  timeoutMs?: number;
  /** The instant the database acts at (p_now): tests simulate time with it. */
  now?: Date;
}

export interface WorkerReport {
  topups: {
    claimed: number;
    /** Stripe took the payment (succeeded) or is settling it (processing); credits land with its webhook. */
    charged: number;
    declined: number;
    /** The customer has to complete the payment (3-D Secure): the top-up waits for them. */
    actionRequired: number;
    /** No answer from Stripe (network, 5xx, rate limit): tried again next run with the same idempotency key. */
    retried: number;
  };
  deliveries: {
    claimed: number;
    delivered: number;
    /** Failed this time, retried on the schedule. */
    failed: number;
    /** Failed for the last time. */
    dead: number;
    /** The receiver answered 410 Gone: its endpoint is disabled. */
    disabled: number;
  };
}

const DEFAULT_LIMIT = 25;
const DEFAULT_TIMEOUT_MS = 10_000;
/** Deliveries in flight at once: enough to hide a slow receiver, few enough for a small function. */
const DELIVERY_CONCURRENCY = 8;

export async function runWorker(options: RunWorkerOptions): Promise<WorkerReport> {
  const { creditkit, stripe, now } = options;
  const limit = options.limit ?? DEFAULT_LIMIT;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const send = options.fetch ?? globalThis.fetch;
  const report: WorkerReport = {
    topups: { claimed: 0, charged: 0, declined: 0, actionRequired: 0, retried: 0 },
    deliveries: { claimed: 0, delivered: 0, failed: 0, dead: 0, disabled: 0 },
  };

  // Top-ups first: their results write notifications (topup.action_required, topup.failed) that
  // this same run then delivers.
  if (stripe) {
    const claimed = await creditkit.claimTopups({ limit, now });
    report.topups.claimed = claimed.length;
    // One at a time: each is a card charge, and Stripe's rate limit is per account.
    for (const topup of claimed) {
      const result = await chargeTopup(stripe, topup);
      const recorded = await ignoringRowErrors(() =>
        creditkit.recordTopupResult({ topupId: topup.topupId, attempt: topup.attempt, ...result, now }),
      );
      if (recorded === undefined) continue;
      if (result.outcome === 'succeeded' || result.outcome === 'processing') report.topups.charged++;
      else if (result.outcome === 'declined') report.topups.declined++;
      else if (result.outcome === 'requires_action') report.topups.actionRequired++;
      else report.topups.retried++;
    }
  }

  const deliveries = await creditkit.claimDeliveries({ limit, now });
  report.deliveries.claimed = deliveries.length;
  await inParallel(deliveries, DELIVERY_CONCURRENCY, async (delivery) => {
    const answer = await deliver(send, delivery, timeoutMs);
    const recorded = await ignoringRowErrors(() =>
      creditkit.recordDeliveryResult({ deliveryId: delivery.deliveryId, attempt: delivery.attempt, ...answer, now }),
    );
    if (recorded?.status === 'delivered') report.deliveries.delivered++;
    else if (recorded?.status === 'pending') report.deliveries.failed++;
    else if (recorded?.status === 'dead') report.deliveries.dead++;
    else if (recorded?.status === 'canceled' && answer.statusCode === 410) report.deliveries.disabled++;
    // anything else: the attempt was no longer current (another run took the row over), nothing to count
  });
  return report;
}

// ── Top-ups ─────────────────────────────────────────────────────────────────────────────────

interface ChargeResult {
  outcome: TopupOutcome;
  paymentIntent?: string | null;
  code?: string | null;
  message?: string | null;
}

/** What Stripe's Node library (and its REST errors) put on a thrown error. */
interface StripeErrorLike {
  type?: unknown;
  rawType?: unknown;
  code?: unknown;
  decline_code?: unknown;
  message?: unknown;
  payment_intent?: { id?: unknown } | null;
  raw?: { type?: unknown; code?: unknown; decline_code?: unknown; payment_intent?: { id?: unknown } | null } | null;
}

const text = (value: unknown): string | null => (typeof value === 'string' && value !== '' ? value : null);

/** One off-session charge of the saved card, with the attempt's idempotency key. */
export async function chargeTopup(stripe: WorkerStripe, topup: ClaimedTopup): Promise<ChargeResult> {
  let intent: { id: string; status: string };
  try {
    intent = await stripe.paymentIntents.create(
      {
        amount: topup.chargeAmount,
        currency: topup.currency,
        customer: topup.customerId,
        payment_method: topup.paymentMethod,
        off_session: true,
        confirm: true,
        metadata: topup.metadata,
      },
      { idempotencyKey: topup.idempotencyKey },
    );
  } catch (error) {
    return stripeErrorOutcome(error);
  }
  switch (intent.status) {
    case 'succeeded':
      return { outcome: 'succeeded', paymentIntent: intent.id };
    case 'processing':
      return { outcome: 'processing', paymentIntent: intent.id };
    case 'requires_action':
      return { outcome: 'requires_action', paymentIntent: intent.id };
    default:
      // requires_payment_method (a decline reported on the intent rather than thrown), canceled, …:
      // retrying would only get the same answer back for the same idempotency key.
      return { outcome: 'declined', paymentIntent: intent.id, code: intent.status, message: `the PaymentIntent is ${intent.status}` };
  }
}

/** A thrown Stripe error as an outcome: card errors are the customer's, the rest may pass. */
export function stripeErrorOutcome(error: unknown): ChargeResult {
  const e = (typeof error === 'object' && error !== null ? error : {}) as StripeErrorLike;
  const type = text(e.type) ?? text(e.raw?.type);
  const rawType = text(e.rawType) ?? text(e.raw?.type);
  const code = text(e.code) ?? text(e.raw?.code);
  const declineCode = text(e.decline_code) ?? text(e.raw?.decline_code);
  const paymentIntent = text(e.payment_intent?.id) ?? text(e.raw?.payment_intent?.id);
  const message = text(e.message) ?? String(error);
  const card = type === 'StripeCardError' || type === 'card_error' || rawType === 'card_error';
  if (card && (code === 'authentication_required' || declineCode === 'authentication_required')) {
    return { outcome: 'requires_action', paymentIntent, code: 'authentication_required', message };
  }
  if (card) return { outcome: 'declined', paymentIntent, code: declineCode ?? code ?? 'card_declined', message };
  // A request Stripe refuses as such (the card was detached, the customer deleted, the key reused
  // with other parameters) would be refused again next run for the same key: a failure, which
  // counts towards switching auto top-up off, rather than a retry every minute forever.
  const refused = ['StripeInvalidRequestError', 'StripeIdempotencyError', 'invalid_request_error', 'idempotency_error'];
  if (refused.includes(type ?? '') || refused.includes(rawType ?? '')) {
    return { outcome: 'declined', paymentIntent, code: code ?? rawType ?? type, message };
  }
  // Connection errors, 5xx, rate limits, an API key being rotated: the same key next run.
  return { outcome: 'retry', code: code ?? type, message };
}

// ── Deliveries ──────────────────────────────────────────────────────────────────────────────

/** POSTs one delivery; the status code, or null and why when nothing answered in time. */
export async function deliver(
  send: typeof fetch,
  delivery: ClaimedDelivery,
  timeoutMs: number,
): Promise<{ statusCode: number | null; error: string | null }> {
  const signed = await signWebhook({ id: delivery.eventId, timestamp: delivery.timestamp, body: delivery.body, secret: delivery.secret });
  try {
    const response = await send(delivery.url, {
      method: 'POST',
      body: delivery.body,
      headers: { ...signed, 'content-type': 'application/json', 'user-agent': 'creditkit-webhooks' },
      // A redirect would turn the POST into a GET elsewhere; the receiver's answer is what counts.
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    });
    // Only the status matters; free the connection without reading what may be a large body.
    await response.body?.cancel().catch(() => undefined);
    // status 0: an opaque redirect (browsers); there is no code to record
    return response.status === 0 ? { statusCode: null, error: 'redirected' } : { statusCode: response.status, error: null };
  } catch (error) {
    const e = error as { name?: unknown; message?: unknown; cause?: { message?: unknown; code?: unknown } };
    if (e?.name === 'TimeoutError') return { statusCode: null, error: `no answer within ${timeoutMs} ms` };
    // fetch's own message ("fetch failed") says little; the cause (ECONNREFUSED, DNS) says what happened
    const cause = text(e?.cause?.code) ?? text(e?.cause?.message);
    const message = text(e?.message) ?? String(error);
    return { statusCode: null, error: cause ? `${message}: ${cause}` : message };
  }
}

/** Runs `task` over `items`, at most `bound` at a time; the first failure is thrown once all started ones end. */
async function inParallel<T>(items: T[], bound: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const lane = async () => {
    while (next < items.length && !failure) {
      const item = items[next++]!;
      try {
        await task(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(bound, items.length) }, lane));
  if (failure) throw failure.error;
}

/**
 * Recording a result: a row that is gone (pruned, or its top-up canceled meanwhile) or that the
 * database refuses is skipped, so one row never stops the run. Anything else (the database is
 * away, the function is missing, the role may not call it) is the run's problem and is thrown.
 */
async function ignoringRowErrors<T>(record: () => Promise<T>): Promise<T | undefined> {
  try {
    return await record();
  } catch (error) {
    if (error instanceof CreditkitError && ROW_ERRORS.has(error.code)) return undefined;
    throw error;
  }
}

const ROW_ERRORS = new Set(['unknown_topup_or_delivery', 'invalid_argument', 'invalid_amount']);
