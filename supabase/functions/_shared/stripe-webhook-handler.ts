// GENERATED from packages/stripe/src/handler.ts by `pnpm sync:functions` (scripts/sync-functions.ts). Do not edit:
// change the source and run the script; a test fails when this copy differs from it.
// The Stripe webhook, as a Web-standard handler with its dependencies passed in, so the same code
// runs in the Edge Function (Deno), in Node (the demo's simulated checkout, tests) and anywhere
// else that has Request/Response. It imports nothing, so the Edge Function can run a verbatim
// copy of it: supabase/functions/_shared/stripe-webhook-handler.ts, written by
// `pnpm sync:functions` (scripts/sync-functions.ts) and checked by a test to be identical.
//
//   1. read the raw body (the signature covers the exact bytes);
//   2. verify `stripe-signature` with the Stripe SDK's async verifier (SubtleCrypto) — 400 and
//      nothing written when it is missing, wrong or older than the tolerance, or when the signed
//      body is not a JSON event;
//   3. apply the event in one SQL transaction (public.creditkit_stripe_apply);
//   4. 2xx only after that commit; 5xx when it could not be applied, so Stripe retries.

/** The part of the Stripe SDK the handler uses: `stripe.webhooks` and the SubtleCrypto provider. */
export interface StripeWebhooks {
  constructEventAsync(
    payload: string,
    header: string,
    secret: string,
    tolerance?: number,
    cryptoProvider?: unknown,
  ): Promise<{ id: string; type: string }>;
}

/** What creditkit_stripe_apply answered. */
export interface ApplyResult {
  event_id?: string | null;
  status: 'applied' | 'ignored' | 'dead' | string;
  effect?: string | null;
  account_id?: string | null;
  duplicate?: boolean | null;
}

export interface WebhookOptions {
  webhooks: StripeWebhooks;
  /** `Stripe.createSubtleCryptoProvider()`: Deno has no Node crypto for the sync verifier. */
  cryptoProvider?: unknown;
  /** The endpoint's signing secret (whsec_...). */
  secret: string;
  /** Seconds a signature stays valid (Stripe's default: 300). */
  tolerance?: number;
  /** Applies the verified event: calls public.creditkit_stripe_apply(p_event) as the service role. */
  apply: (event: unknown) => Promise<ApplyResult>;
  /** Where failures to apply are reported (default: console.error). */
  onError?: (error: unknown, eventId: string) => void;
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json; charset=utf-8' } });

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * The shape creditkit_stripe_apply reads, exactly as it checks it (creditkit.stripe_is_event): an
 * id evt_… of letters, digits and _, a type of 1 to 255 characters, created in whole unix
 * seconds, data.object an object, and livemode, if any, a boolean. Anything else would be refused
 * by the database on every retry, so it is refused here with a 400.
 */
const isEvent = (value: unknown): value is { id: string; type: string } =>
  isObject(value) && typeof value.id === 'string' && /^evt_[A-Za-z0-9_]{1,251}$/.test(value.id) &&
  typeof value.type === 'string' && value.type.length >= 1 && value.type.length <= 255 &&
  typeof value.created === 'number' && Number.isInteger(value.created) && value.created >= 0 && value.created < 1e11 &&
  isObject(value.data) && isObject(value.data.object) &&
  (value.livemode === undefined || typeof value.livemode === 'boolean');

/** The database refused the event as unreadable (CK014): retrying cannot help either. */
const isInvalidEvent = (error: unknown): boolean =>
  isObject(error) && (error.code === 'CK014' || error.sqlstate === 'CK014' || error.code === 'invalid_event');

export function createWebhookHandler(options: WebhookOptions): (request: Request) => Promise<Response> {
  if (!options.secret) throw new Error('stripe-webhook: STRIPE_WEBHOOK_SECRET is not set');
  return async (request) => {
    if (request.method !== 'POST') return json(405, { error: 'method_not_allowed' });
    const signature = request.headers.get('stripe-signature');
    if (!signature) return json(400, { error: 'missing_signature', message: 'No stripe-signature header.' });
    const body = await request.text();

    let event: { id: string; type: string };
    try {
      event = await options.webhooks.constructEventAsync(body, signature, options.secret, options.tolerance, options.cryptoProvider);
    } catch (error) {
      // Wrong secret, altered body, stale timestamp: nothing is written. The verifier parses the
      // body only after the signature matched, so a SyntaxError means a signed body that is not JSON.
      const message = error instanceof Error ? error.message : String(error);
      if (error instanceof SyntaxError) return json(400, { error: 'invalid_payload', message: `The body is not JSON: ${message}` });
      return json(400, { error: 'invalid_signature', message });
    }
    // Signed, but not an event (only someone holding the secret can send this): retrying cannot
    // help, and nothing is written.
    if (!isEvent(event)) {
      return json(400, {
        error: 'invalid_payload',
        message: 'The body is not a Stripe event (an id evt_…, a type, created in unix seconds and a data.object).',
      });
    }

    let result: ApplyResult;
    try {
      result = await options.apply(event);
    } catch (error) {
      if (isInvalidEvent(error)) {
        return json(400, { error: 'invalid_payload', message: 'The database does not read this as a Stripe event (CK014).' });
      }
      (options.onError ?? ((e, id) => console.error(`stripe-webhook: could not apply ${id}`, e)))(error, event.id);
      // Nothing was committed; Stripe retries with backoff for up to three days.
      return json(500, { error: 'not_applied', event: event.id });
    }
    // Applied, deliberately ignored, duplicate, or parked as dead (visible to the operator in
    // creditkit_stripe_events, replayable): all are recorded, so Stripe may stop retrying.
    return json(200, {
      received: true,
      event: event.id,
      status: result.status,
      duplicate: Boolean(result.duplicate),
      effect: result.effect ?? null,
    });
  };
}
