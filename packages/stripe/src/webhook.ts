// The Stripe webhook for Node (or any runtime with Request/Response): the very handler the
// Supabase Edge Function runs (handler.ts; the function imports its copy in
// supabase/functions/_shared/), wired to a creditkit server client instead of supabase-js.
// Signature checked on the raw body with the async SubtleCrypto verifier, then
// creditkit_stripe_apply in one transaction; 2xx only after commit.
import Stripe from 'stripe';
import type { Json } from '@creditkit/core';
import type { CreditkitServer } from '@creditkit/core/server';
import { createWebhookHandler, type ApplyResult } from './handler.ts';

export { createWebhookHandler };
export type { ApplyResult, StripeWebhooks, WebhookOptions } from './handler.ts';

export interface StripeWebhookParams {
  stripe: Stripe;
  creditkit: Pick<CreditkitServer, 'stripeApply'>;
  /** The endpoint's signing secret (whsec_...). */
  secret: string;
  /** Seconds a signature stays valid (default 300, Stripe's). */
  tolerance?: number;
  /** Where failures to apply are reported (default: console.error). */
  onError?: (error: unknown, eventId: string) => void;
}

/**
 * `(request: Request) => Promise<Response>` for a Stripe webhook endpoint: 400 for a missing or bad
 * signature or a payload that is not an event, 200 once the event is committed (applied, ignored,
 * duplicate or parked as dead), 500 when it could not be applied (Stripe retries).
 */
export function createStripeWebhook(params: StripeWebhookParams): (request: Request) => Promise<Response> {
  const { creditkit } = params;
  return createWebhookHandler({
    webhooks: params.stripe.webhooks,
    cryptoProvider: Stripe.createSubtleCryptoProvider(),
    secret: params.secret,
    ...(params.tolerance === undefined ? {} : { tolerance: params.tolerance }),
    ...(params.onError === undefined ? {} : { onError: params.onError }),
    async apply(event): Promise<ApplyResult> {
      const r = await creditkit.stripeApply({ event: event as Json });
      return { event_id: r.eventId, status: r.status, effect: r.effect, account_id: r.accountId, duplicate: r.duplicate };
    },
  });
}
