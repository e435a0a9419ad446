// Stripe for the demo. With STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET the buttons open real
// Stripe Checkout and the customer portal (@creditkit/stripe). Without them, the app's own
// /checkout/simulated page stands in for Checkout: paying there builds the events Stripe would
// send, signs them with the webhook secret exactly as Stripe does, and POSTs them to this app's
// /api/stripe/webhook, the same createStripeWebhook handler (and SQL) real Stripe events go through.
import { createStripeWebhook } from '@creditkit/stripe';
import type { Demo } from './demo.ts';
import type { StripeEventPayload } from './stripe-events.ts';

export const WEBHOOK_PATH = '/api/stripe/webhook';

const handlers = new WeakMap<Demo, (request: Request) => Promise<Response>>();

/** The webhook handler for this process's database and secret (one per Demo). */
export function webhookHandler(demo: Demo): (request: Request) => Promise<Response> {
  let handler = handlers.get(demo);
  if (!handler) {
    handler = createStripeWebhook({ stripe: demo.stripe.stripe, creditkit: demo.creditkit, secret: demo.stripe.webhookSecret });
    handlers.set(demo, handler);
  }
  return handler;
}

export interface Delivery {
  type: string;
  status: number;
  body: { status?: string; effect?: string | null; error?: string };
}

/**
 * Delivers events to the app's webhook over HTTP, as Stripe would: the JSON body signed with the
 * endpoint's secret in a `stripe-signature` header (t=…,v1=…). Stops at the first non-2xx.
 */
export async function deliverEvents(demo: Demo, origin: string, events: StripeEventPayload[]): Promise<Delivery[]> {
  const deliveries: Delivery[] = [];
  for (const event of events) {
    const payload = JSON.stringify(event, null, 2);
    const signature = demo.stripe.stripe.webhooks.generateTestHeaderString({ payload, secret: demo.stripe.webhookSecret });
    const response = await fetch(new URL(WEBHOOK_PATH, origin), {
      method: 'POST',
      headers: { 'content-type': 'application/json; charset=utf-8', 'stripe-signature': signature, 'user-agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks) creditkit-demo-simulated' },
      body: payload,
    });
    const delivery = { type: event.type, status: response.status, body: (await response.json().catch(() => ({}))) as Delivery['body'] };
    deliveries.push(delivery);
    if (!response.ok) break;
  }
  return deliveries;
}

/** The account's Stripe customer and subscription, as the webhook recorded them. */
export async function stripeIdsOf(demo: Demo, accountId: string): Promise<{ customer: string | null; subscription: string | null; planId: string | null; status: string | null; anchor: string | null }> {
  const [row] = await demo.sql<{ subscription: string | null; plan_id: string | null; status: string | null; anchor: string | null }>(
    `select s.stripe_subscription_id as subscription, s.plan_id, s.status, s.anchor::text as anchor
       from creditkit.subscriptions s where s.account_id = $1`,
    [accountId],
  );
  return {
    customer: await demo.creditkit.stripeCustomer({ accountId }),
    subscription: row?.subscription ?? null,
    planId: row?.plan_id ?? null,
    status: row?.status ?? null,
    anchor: row?.anchor ?? null,
  };
}
