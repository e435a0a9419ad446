// Stripe webhook events as Stripe would send them after a Checkout, for the simulated checkout
// (no Stripe keys) and the seed. The envelope and objects have the shape of API version
// 2025-03-31.basil and later: invoices carry the subscription under parent.subscription_details
// and a line's price under pricing.price_details.price; a subscription's period is on its item.
// Every field creditkit_stripe_apply reads is where Stripe puts it, with the metadata that
// createCheckoutSession (@creditkit/stripe) sets on the session, payment intent and subscription.
import { randomBytes } from 'node:crypto';
import type { Pack, Plan } from '@creditkit/core';

export const API_VERSION = '2026-01-28.clover';

type JsonObject = Record<string, unknown>;

export interface StripeEventPayload {
  id: string;
  object: 'event';
  api_version: string;
  created: number;
  data: { object: JsonObject };
  livemode: false;
  pending_webhooks: number;
  request: { id: string | null; idempotency_key: string | null };
  type: string;
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** A Stripe-style id: `prefix_` and base62 characters (e.g. `pi_3QxY…`). */
export function stripeId(prefix: string, length = 24): string {
  let out = '';
  for (const b of randomBytes(length)) out += BASE62[b % 62];
  return `${prefix}_${out}`;
}

export const unixSeconds = (date: Date): number => Math.floor(date.getTime() / 1000);

function event(type: string, object: JsonObject, created: number): StripeEventPayload {
  return {
    id: stripeId('evt'),
    object: 'event',
    api_version: API_VERSION,
    created,
    data: { object },
    livemode: false,
    pending_webhooks: 1,
    request: { id: stripeId('req', 14), idempotency_key: null },
    type,
  };
}

export interface Buyer {
  accountId: string;
  /** The account's Stripe customer (the stored one, or a new `cus_…`). */
  customer: string;
  email: string;
}

interface SessionUrls {
  successUrl: string;
  cancelUrl: string;
}

/** A completed, paid checkout.session as createCheckoutSession (@creditkit/stripe) set it up. */
function checkoutSession(
  buyer: Buyer,
  urls: SessionUrls,
  created: number,
  sold: { mode: 'payment' | 'subscription'; amount: number; currency: string; metadata: Record<string, string | null> },
  links: { payment_intent: string | null; subscription: string | null; invoice: string | null },
): JsonObject {
  return {
    id: stripeId('cs_test', 58),
    object: 'checkout.session',
    amount_subtotal: sold.amount,
    amount_total: sold.amount,
    cancel_url: urls.cancelUrl,
    client_reference_id: buyer.accountId,
    created: created - 60,
    currency: sold.currency,
    customer: buyer.customer,
    customer_details: { email: buyer.email, name: null, phone: null, tax_exempt: 'none', tax_ids: [], address: null },
    customer_email: null,
    expires_at: created - 60 + 86400,
    livemode: false,
    metadata: { account_id: buyer.accountId, ...sold.metadata },
    mode: sold.mode,
    payment_method_types: ['card'],
    payment_status: 'paid',
    status: 'complete',
    success_url: urls.successUrl,
    total_details: { amount_discount: 0, amount_shipping: 0, amount_tax: 0 },
    ui_mode: 'hosted',
    url: null,
    ...links,
  };
}

/** A paid pack: checkout.session.completed in mode payment, payment_status paid. */
export function packPurchaseEvents(buyer: Buyer, pack: Pack, at: Date, urls: SessionUrls): StripeEventPayload[] {
  const created = unixSeconds(at);
  const session = checkoutSession(
    buyer,
    urls,
    created,
    { mode: 'payment', amount: pack.priceAmount, currency: pack.currency, metadata: { pack_id: pack.id, price_id: pack.stripePriceId } },
    { payment_intent: stripeId('pi'), subscription: null, invoice: null },
  );
  return [event('checkout.session.completed', session, created)];
}

export interface Subscription {
  id: string;
  item: string;
  customer: string;
  accountId: string;
  plan: Plan;
  /** start_date (and billing anchor), unix seconds. */
  start: number;
}

/** One month after `unix` in UTC, month ends clamped (Jan 31 → Feb 28/29), as Stripe bills. */
export function addMonth(unix: number): number {
  const d = new Date(unix * 1000);
  const day = d.getUTCDate();
  const next = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1, d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()));
  const last = new Date(Date.UTC(next.getUTCFullYear(), next.getUTCMonth() + 1, 0)).getUTCDate();
  next.setUTCDate(Math.min(day, last));
  return unixSeconds(next);
}

function subscriptionObject(s: Subscription, status: 'active' | 'canceled', periodStart: number, canceledAt: number | null): JsonObject {
  const metadata = { account_id: s.accountId, plan_id: s.plan.id };
  return {
    id: s.id,
    object: 'subscription',
    billing_cycle_anchor: s.start,
    cancel_at: null,
    cancel_at_period_end: false,
    canceled_at: canceledAt,
    collection_method: 'charge_automatically',
    created: s.start,
    currency: s.plan.currency,
    customer: s.customer,
    ended_at: canceledAt,
    items: {
      object: 'list',
      data: [
        {
          id: s.item,
          object: 'subscription_item',
          created: s.start,
          current_period_start: periodStart,
          current_period_end: addMonth(periodStart),
          metadata: {},
          price: {
            id: s.plan.stripePriceId,
            object: 'price',
            active: true,
            currency: s.plan.currency,
            recurring: { interval: s.plan.period, interval_count: 1, usage_type: 'licensed' },
            type: 'recurring',
            unit_amount: s.plan.priceAmount,
          },
          quantity: 1,
          subscription: s.id,
        },
      ],
      has_more: false,
      total_count: 1,
      url: `/v1/subscription_items?subscription=${s.id}`,
    },
    latest_invoice: null,
    livemode: false,
    metadata,
    start_date: s.start,
    status,
  };
}

function invoiceObject(s: Subscription, billingReason: 'subscription_create', periodStart: number, created: number): JsonObject {
  const id = stripeId('in');
  const periodEnd = addMonth(periodStart);
  const amount = s.plan.priceAmount;
  return {
    id,
    object: 'invoice',
    amount_due: amount,
    amount_paid: amount,
    amount_remaining: 0,
    attempt_count: 1,
    attempted: true,
    billing_reason: billingReason,
    collection_method: 'charge_automatically',
    created,
    currency: s.plan.currency,
    customer: s.customer,
    lines: {
      object: 'list',
      data: [
        {
          id: stripeId('il'),
          object: 'line_item',
          amount,
          currency: s.plan.currency,
          description: `1 × ${s.plan.name} (at $${(amount / 100).toFixed(2)} / ${s.plan.period})`,
          invoice: id,
          metadata: {},
          parent: {
            type: 'subscription_item_details',
            subscription_item_details: { invoice_item: null, proration: false, subscription: s.id, subscription_item: s.item },
          },
          period: { start: periodStart, end: periodEnd },
          pricing: { type: 'price_details', price_details: { price: s.plan.stripePriceId, product: stripeId('prod', 14) }, unit_amount_decimal: String(amount) },
          quantity: 1,
        },
      ],
      has_more: false,
      total_count: 1,
      url: `/v1/invoices/${id}/lines`,
    },
    livemode: false,
    metadata: {},
    parent: {
      type: 'subscription_details',
      quote_details: null,
      subscription_details: { metadata: { account_id: s.accountId, plan_id: s.plan.id }, subscription: s.id },
    },
    // An invoice's own period is the one before its line's period for subscription invoices.
    period_end: periodStart,
    period_start: periodStart,
    status: 'paid',
    status_transitions: { finalized_at: created, paid_at: created },
    subtotal: amount,
    total: amount,
  };
}

/**
 * A new subscription paid at Checkout, in the order Stripe sends it: the session completes, the
 * subscription is created, its first invoice is paid (that one grants the allowance).
 */
export function subscriptionPurchaseEvents(
  buyer: Buyer,
  plan: Plan,
  at: Date,
  urls: SessionUrls,
): { subscription: Subscription; events: StripeEventPayload[] } {
  const created = unixSeconds(at);
  const subscription: Subscription = {
    id: stripeId('sub'),
    item: stripeId('si', 14),
    customer: buyer.customer,
    accountId: buyer.accountId,
    plan,
    start: created,
  };
  const session = checkoutSession(
    buyer,
    urls,
    created,
    { mode: 'subscription', amount: plan.priceAmount, currency: plan.currency, metadata: { plan_id: plan.id, price_id: plan.stripePriceId } },
    { payment_intent: null, subscription: subscription.id, invoice: stripeId('in') },
  );
  return {
    subscription,
    events: [
      event('checkout.session.completed', session, created),
      event('customer.subscription.created', subscriptionObject(subscription, 'active', created, null), created),
      event('invoice.paid', invoiceObject(subscription, 'subscription_create', created, created), created),
    ],
  };
}

/** The subscription cancelled now (what the customer portal's "cancel" sends). */
export function cancellationEvents(s: Subscription, at: Date): StripeEventPayload[] {
  const created = unixSeconds(at);
  return [event('customer.subscription.deleted', subscriptionObject(s, 'canceled', s.start, created), created)];
}

// ── Cards saved for later and off-session PaymentIntents (auto top-up) ──────────────────────

/** The test cards the simulated Stripe knows, by what an off-session charge of them does. */
export const TEST_CARDS = {
  ok: { number: '4242 4242 4242 4242', last4: '4242', brand: 'visa', label: 'Succeeds' },
  decline: { number: '4000 0000 0000 0002', last4: '0002', brand: 'visa', label: 'Declined (card_declined)' },
  authenticate: { number: '4000 0027 6000 3184', last4: '3184', brand: 'visa', label: 'Needs authentication (3-D Secure)' },
} as const;

export type TestCard = keyof typeof TEST_CARDS;

export function isTestCard(value: unknown): value is TestCard {
  return typeof value === 'string' && Object.hasOwn(TEST_CARDS, value);
}

/**
 * The simulated payment method id names its test card (`pm_sim_decline_…`), so the simulated
 * PaymentIntent knows what to answer after a restart too. Real ids are opaque.
 */
export function simulatedPaymentMethodId(card: TestCard): string {
  return stripeId(`pm_sim_${card}`, 14);
}

export function testCardOf(paymentMethod: string): TestCard {
  const match = /^pm_sim_(ok|decline|authenticate)_/.exec(paymentMethod);
  return (match?.[1] as TestCard | undefined) ?? 'ok';
}

/**
 * A card saved through Checkout in setup mode, in the order Stripe sends it: the session
 * completes (metadata.account_id links the customer), the card is attached to the customer, the
 * SetupIntent succeeds for off-session use (that one makes it the card auto top-up charges).
 */
export function cardSetupEvents(buyer: Buyer, card: TestCard, at: Date, urls: SessionUrls): { paymentMethod: string; events: StripeEventPayload[] } {
  const created = unixSeconds(at);
  const paymentMethod = simulatedPaymentMethodId(card);
  const setupIntent = stripeId('seti');
  const expYear = at.getUTCFullYear() + 4;
  const session = {
    id: stripeId('cs_test', 58),
    object: 'checkout.session',
    cancel_url: urls.cancelUrl,
    client_reference_id: buyer.accountId,
    created: created - 60,
    currency: 'usd',
    customer: buyer.customer,
    customer_details: { email: buyer.email },
    livemode: false,
    metadata: { account_id: buyer.accountId },
    mode: 'setup',
    payment_status: 'no_payment_required',
    setup_intent: setupIntent,
    status: 'complete',
    success_url: urls.successUrl,
  };
  const method = {
    id: paymentMethod,
    object: 'payment_method',
    billing_details: { email: buyer.email },
    card: { brand: TEST_CARDS[card].brand, country: 'US', exp_month: 12, exp_year: expYear, funding: 'credit', last4: TEST_CARDS[card].last4 },
    created,
    customer: buyer.customer,
    livemode: false,
    metadata: {},
    type: 'card',
  };
  const intent = {
    id: setupIntent,
    object: 'setup_intent',
    created,
    customer: buyer.customer,
    livemode: false,
    metadata: { account_id: buyer.accountId },
    payment_method: paymentMethod,
    payment_method_types: ['card'],
    status: 'succeeded',
    usage: 'off_session',
  };
  return {
    paymentMethod,
    events: [
      event('checkout.session.completed', session, created),
      event('payment_method.attached', method, created),
      event('setup_intent.succeeded', intent, created),
    ],
  };
}

export interface PaymentIntentParams {
  id: string;
  amount: number;
  currency: string;
  customer: string;
  paymentMethod: string;
  metadata: Record<string, string>;
  offSession: boolean;
}

/** payment_intent.succeeded, or payment_intent.payment_failed with the card error Stripe reports. */
export function paymentIntentEvent(
  pi: PaymentIntentParams,
  at: Date,
  failure?: { code: string; declineCode?: string; message: string },
): StripeEventPayload {
  const created = unixSeconds(at);
  const succeeded = !failure;
  return event(succeeded ? 'payment_intent.succeeded' : 'payment_intent.payment_failed', {
    id: pi.id,
    object: 'payment_intent',
    amount: pi.amount,
    amount_received: succeeded ? pi.amount : 0,
    capture_method: 'automatic',
    confirmation_method: 'automatic',
    created,
    currency: pi.currency,
    customer: pi.customer,
    last_payment_error: failure
      ? { type: 'card_error', code: failure.code, decline_code: failure.declineCode ?? null, message: failure.message, payment_method: { id: pi.paymentMethod } }
      : null,
    latest_charge: succeeded ? stripeId('ch') : null,
    livemode: false,
    metadata: pi.metadata,
    off_session: pi.offSession,
    payment_method: pi.paymentMethod,
    payment_method_types: ['card'],
    // an off-session charge that needs the customer fails as requires_payment_method, as a decline does
    status: succeeded ? 'succeeded' : 'requires_payment_method',
  }, created);
}
