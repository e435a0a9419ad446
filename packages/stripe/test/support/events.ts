// Stripe event fixtures, shaped like what Stripe sends (API version 2026-10-28: invoices carry the
// subscription under parent.subscription_details and the price under pricing.price_details), and
// signed with the Stripe SDK's own test-header helper, as Stripe would sign them.
import { randomBytes } from 'node:crypto';
import Stripe from 'stripe';

export const API_VERSION = '2026-10-28.endive';
const hex = (n = 12) => randomBytes(n).toString('hex');
const now = () => Math.floor(Date.now() / 1000);

export interface StripeEventFixture {
  id: string;
  object: 'event';
  api_version: string;
  created: number;
  livemode: boolean;
  pending_webhooks: number;
  request: { id: string | null; idempotency_key: string | null };
  type: string;
  data: { object: Record<string, unknown>; previous_attributes?: Record<string, unknown> };
}

export function event(type: string, object: Record<string, unknown>, opts: { id?: string; created?: number } = {}): StripeEventFixture {
  return {
    id: opts.id ?? `evt_test_${hex()}`,
    object: 'event',
    api_version: API_VERSION,
    created: opts.created ?? now(),
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type,
    data: { object },
  };
}

export interface PackCheckout {
  accountId: string;
  packId: string;
  priceId: string;
  amountTotal: number;
  customer?: string;
  paymentIntent?: string;
  sessionId?: string;
  paymentStatus?: 'paid' | 'unpaid' | 'no_payment_required';
  type?: 'checkout.session.completed' | 'checkout.session.async_payment_succeeded' | 'checkout.session.async_payment_failed';
}

/** checkout.session.completed for a pack, as createCheckoutSession set it up. */
export function packCheckout(p: PackCheckout): StripeEventFixture {
  const sessionId = p.sessionId ?? `cs_test_${hex()}`;
  return event(p.type ?? 'checkout.session.completed', {
    id: sessionId,
    object: 'checkout.session',
    mode: 'payment',
    status: 'complete',
    payment_status: p.paymentStatus ?? 'paid',
    amount_subtotal: p.amountTotal,
    amount_total: p.amountTotal,
    currency: 'usd',
    customer: p.customer ?? `cus_${hex(7)}`,
    client_reference_id: p.accountId,
    metadata: { account_id: p.accountId, pack_id: p.packId, price_id: p.priceId },
    payment_intent: p.paymentIntent ?? `pi_${hex()}`,
    subscription: null,
    livemode: false,
    url: null,
  });
}

/** The session a checkout created (as the Stripe stand-in stored it), completed and paid. */
export function completed(session: Record<string, unknown>, paymentIntent = `pi_${hex()}`): StripeEventFixture {
  return event('checkout.session.completed', {
    ...session,
    status: 'complete',
    payment_status: 'paid',
    payment_intent: session.mode === 'payment' ? paymentIntent : null,
    url: null,
  });
}

export function subscriptionCheckout(p: { accountId: string; planId: string; priceId: string; customer: string; subscription: string }): StripeEventFixture {
  return event('checkout.session.completed', {
    id: `cs_test_${hex()}`,
    object: 'checkout.session',
    mode: 'subscription',
    status: 'complete',
    payment_status: 'paid',
    amount_total: 2000,
    currency: 'usd',
    customer: p.customer,
    client_reference_id: p.accountId,
    metadata: { account_id: p.accountId, plan_id: p.planId, price_id: p.priceId },
    payment_intent: null,
    subscription: p.subscription,
    livemode: false,
  });
}

export function invoicePaid(p: {
  accountId: string;
  planId: string;
  priceId: string;
  customer: string;
  subscription: string;
  periodStart: number;
  periodEnd: number;
  billingReason?: string;
  amountPaid?: number;
}): StripeEventFixture {
  const invoiceId = `in_${hex()}`;
  return event('invoice.paid', {
    id: invoiceId,
    object: 'invoice',
    billing_reason: p.billingReason ?? 'subscription_create',
    customer: p.customer,
    amount_paid: p.amountPaid ?? 2000,
    currency: 'usd',
    status: 'paid',
    parent: {
      type: 'subscription_details',
      quote_details: null,
      subscription_details: { subscription: p.subscription, metadata: { account_id: p.accountId, plan_id: p.planId } },
    },
    lines: {
      object: 'list',
      data: [
        {
          id: `il_${hex()}`,
          object: 'line_item',
          amount: p.amountPaid ?? 2000,
          period: { start: p.periodStart, end: p.periodEnd },
          pricing: { type: 'price_details', price_details: { price: p.priceId, product: `prod_${hex(7)}` } },
          quantity: 1,
        },
      ],
      has_more: false,
    },
    period_start: p.periodStart,
    period_end: p.periodEnd,
    livemode: false,
  });
}

export function chargeRefunded(p: { paymentIntent: string; amount: number; amountRefunded: number }): StripeEventFixture {
  return event('charge.refunded', {
    id: `ch_${hex()}`,
    object: 'charge',
    amount: p.amount,
    amount_refunded: p.amountRefunded,
    refunded: p.amountRefunded >= p.amount,
    currency: 'usd',
    payment_intent: p.paymentIntent,
    livemode: false,
  });
}

const signer = new Stripe('sk_test_signer');

/** The stripe-signature header for `payload` (timestamp in seconds; default now). */
export function sign(payload: string, secret: string, timestamp?: number): string {
  return signer.webhooks.generateTestHeaderString({ payload, secret, ...(timestamp === undefined ? {} : { timestamp }) });
}
