// Stripe webhook events as Stripe sends them, for the Stripe suites: the envelope (`evt_…` id,
// `created` in unix seconds, `livemode: false`, `api_version`, `data.object`) around objects with
// the fields and nesting of the real API objects (checkout.session, charge, dispute, subscription,
// invoice). Only what creditkit reads has to be right, but everything around it is there too, so
// a reader that looks in the wrong place (an old field, a moved one) reads null and fails.
//
// Invoices come in both shapes:
//   'new' (API 2025-03-31.basil and later): the subscription is under
//        parent.subscription_details.{subscription, metadata} and a line's price under
//        lines.data[i].pricing.price_details.price (a string);
//   'old' (API 2024-xx and before): invoice.subscription, invoice.subscription_details.metadata
//        and lines.data[i].price (an expanded price object).
// Subscriptions carry their period on the item (items.data[0].current_period_start/end), as in
// API 2025+.
//
// Ids are random (base62, like Stripe's), so fixtures made twice never collide; pass them in to
// make the same object twice (a redelivery, or the same payment in another event).
import { randomBytes, randomUUID } from 'node:crypto';
import { EPOCH, SECOND, type Creditkit } from './support.ts';

export const API_VERSION = '2026-01-28.clover';
export const OLD_API_VERSION = '2024-06-20';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** A Stripe-style id: prefix, '_', then 24 base62 characters (e.g. `pi_3QxY…`). */
export function stripeId(prefix: string, length = 24): string {
  const bytes = randomBytes(length);
  let out = '';
  for (const b of bytes) out += BASE62[b % 62];
  return `${prefix}_${out}`;
}

const EPOCH_UNIX = Date.parse(EPOCH) / 1000;

/** Unix seconds of the instant `us` microseconds after EPOCH (support.ts's time scale). */
export function unix(us: number): number {
  return EPOCH_UNIX + Math.floor(us / SECOND);
}

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export interface StripeEvent {
  id: string;
  object: 'event';
  api_version: string;
  created: number;
  data: { object: JsonObject; previous_attributes?: JsonObject };
  livemode: false;
  pending_webhooks: number;
  request: { id: string | null; idempotency_key: string | null };
  type: string;
}

export interface EventOptions {
  /** Unix seconds. */
  created: number;
  id?: string;
  apiVersion?: string;
  previous?: JsonObject;
}

/** The event envelope around an API object. */
export function stripeEvent(type: string, object: JsonObject, opts: EventOptions): StripeEvent {
  return {
    id: opts.id ?? stripeId('evt'),
    object: 'event',
    api_version: opts.apiVersion ?? API_VERSION,
    created: opts.created,
    data: opts.previous ? { object, previous_attributes: opts.previous } : { object },
    livemode: false,
    pending_webhooks: 1,
    request: { id: stripeId('req', 14), idempotency_key: randomUUID() },
    type,
  };
}

/** The same event delivered again: Stripe redelivers the identical payload (same id). */
export const redeliver = (e: StripeEvent): StripeEvent => structuredClone(e);

// ── Packs: Checkout in mode payment, charges, refunds, disputes ──────────────────────────────

/** One pack purchase: who, what, and the Stripe ids its events share. */
export interface PackPurchase {
  account: string;
  customer: string;
  packId: string;
  priceId: string;
  /** In cents. */
  amount: number;
  currency: string;
  session: string;
  paymentIntent: string;
  charge: string;
  dispute: string;
}

export function packPurchase(opts: {
  account: string; packId: string; priceId: string; amount: number; customer?: string; currency?: string;
}): PackPurchase {
  return {
    account: opts.account,
    customer: opts.customer ?? stripeId('cus', 14),
    packId: opts.packId,
    priceId: opts.priceId,
    amount: opts.amount,
    currency: opts.currency ?? 'usd',
    session: stripeId('cs_test', 58),
    paymentIntent: stripeId('pi'),
    charge: stripeId('ch'),
    dispute: stripeId('dp'),
  };
}

export interface CheckoutOptions {
  created: number;
  paymentStatus?: 'paid' | 'unpaid' | 'no_payment_required';
  /** Replace metadata (e.g. to leave out the account or name an unknown pack). */
  metadata?: JsonObject;
  clientReferenceId?: string | null;
  paymentMethodTypes?: string[];
  id?: string;
}

/** A checkout.session object in mode payment. */
export function packSession(p: PackPurchase, opts: CheckoutOptions): JsonObject {
  const created = opts.created - 90; // the session was opened a minute and a half before it completed
  return {
    id: p.session,
    object: 'checkout.session',
    adaptive_pricing: { enabled: false },
    after_expiration: null,
    allow_promotion_codes: null,
    amount_subtotal: p.amount,
    amount_total: p.amount,
    automatic_tax: { enabled: false, liability: null, provider: null, status: null },
    billing_address_collection: null,
    cancel_url: 'https://app.example.com/billing?canceled=1',
    client_reference_id: opts.clientReferenceId === undefined ? p.account : opts.clientReferenceId,
    collected_information: null,
    consent: null,
    created,
    currency: p.currency,
    customer: p.customer,
    customer_creation: 'if_required',
    customer_details: {
      address: { city: null, country: 'DE', line1: null, line2: null, postal_code: null, state: null },
      email: 'ada@example.com', name: 'Ada Lovelace', phone: null, tax_exempt: 'none', tax_ids: [],
    },
    customer_email: null,
    discounts: [],
    expires_at: created + 86400,
    invoice: null,
    invoice_creation: { enabled: false, invoice_data: { account_tax_ids: null, custom_fields: null, description: null, footer: null, issuer: null, metadata: {}, rendering_options: null } },
    livemode: false,
    locale: null,
    metadata: opts.metadata ?? { account_id: p.account, pack_id: p.packId },
    mode: 'payment',
    payment_intent: p.paymentIntent,
    payment_link: null,
    payment_method_collection: 'if_required',
    payment_method_types: opts.paymentMethodTypes ?? (opts.paymentStatus === 'unpaid' ? ['sepa_debit'] : ['card']),
    payment_status: opts.paymentStatus ?? 'paid',
    phone_number_collection: { enabled: false },
    recovered_from: null,
    saved_payment_method_options: null,
    setup_intent: null,
    shipping_address_collection: null,
    shipping_cost: null,
    status: 'complete',
    submit_type: null,
    subscription: null,
    success_url: 'https://app.example.com/billing?session_id={CHECKOUT_SESSION_ID}',
    total_details: { amount_discount: 0, amount_shipping: 0, amount_tax: 0 },
    ui_mode: 'hosted',
    url: null,
    wallet_options: null,
  };
}

/** checkout.session.completed for a pack (payment_status 'paid' unless told otherwise). */
export function checkoutCompleted(p: PackPurchase, opts: CheckoutOptions & { eventId?: string }): StripeEvent {
  return stripeEvent('checkout.session.completed', packSession(p, opts), { created: opts.created, id: opts.eventId });
}

/** checkout.session.async_payment_succeeded: the delayed payment (SEPA, ACH, …) went through. */
export function asyncPaymentSucceeded(p: PackPurchase, opts: CheckoutOptions & { eventId?: string }): StripeEvent {
  return stripeEvent('checkout.session.async_payment_succeeded', packSession(p, { ...opts, paymentStatus: 'paid' }), {
    created: opts.created, id: opts.eventId,
  });
}

/** checkout.session.async_payment_failed: the delayed payment failed. */
export function asyncPaymentFailed(p: PackPurchase, opts: CheckoutOptions & { eventId?: string }): StripeEvent {
  return stripeEvent('checkout.session.async_payment_failed', packSession(p, { ...opts, paymentStatus: 'unpaid' }), {
    created: opts.created, id: opts.eventId,
  });
}

/** The charge of a pack payment, refunded so far by `amountRefunded` cents (cumulative). */
export function chargeObject(p: PackPurchase, opts: { created: number; amountRefunded: number; disputed?: boolean }): JsonObject {
  return {
    id: p.charge,
    object: 'charge',
    amount: p.amount,
    amount_captured: p.amount,
    amount_refunded: opts.amountRefunded,
    application: null,
    application_fee: null,
    application_fee_amount: null,
    balance_transaction: stripeId('txn'),
    billing_details: { address: { city: null, country: 'DE', line1: null, line2: null, postal_code: null, state: null }, email: 'ada@example.com', name: 'Ada Lovelace', phone: null, tax_id: null },
    calculated_statement_descriptor: 'CREDITKIT',
    captured: true,
    created: opts.created - 3600,
    currency: p.currency,
    customer: p.customer,
    description: null,
    disputed: opts.disputed ?? false,
    failure_code: null,
    failure_message: null,
    fraud_details: {},
    livemode: false,
    metadata: {},
    on_behalf_of: null,
    outcome: { advice_code: null, network_advice_code: null, network_decline_code: null, network_status: 'approved_by_network', reason: null, risk_level: 'normal', seller_message: 'Payment complete.', type: 'authorized' },
    paid: true,
    payment_intent: p.paymentIntent,
    payment_method: stripeId('pm'),
    payment_method_details: { card: { brand: 'visa', country: 'US', exp_month: 12, exp_year: 2034, funding: 'credit', last4: '4242', network: 'visa' }, type: 'card' },
    receipt_email: null,
    receipt_url: `https://pay.stripe.com/receipts/payment/${stripeId('CAcaFwoVYWNjdF8', 20).slice(16)}`,
    refunded: opts.amountRefunded >= p.amount,
    refunds: { object: 'list', data: [], has_more: false, total_count: opts.amountRefunded > 0 ? 1 : 0, url: `/v1/charges/${p.charge}/refunds` },
    review: null,
    shipping: null,
    source_transfer: null,
    statement_descriptor: null,
    statement_descriptor_suffix: null,
    status: 'succeeded',
    transfer_data: null,
    transfer_group: null,
  };
}

/** charge.refunded: `amountRefunded` is the charge's cumulative amount_refunded, in cents. */
export function chargeRefunded(p: PackPurchase, opts: { created: number; amountRefunded: number; eventId?: string }): StripeEvent {
  return stripeEvent('charge.refunded', chargeObject(p, opts), {
    created: opts.created, id: opts.eventId, previous: { amount_refunded: 0, refunded: false },
  });
}

export function disputeObject(p: PackPurchase, opts: { created: number; status: string }): JsonObject {
  return {
    id: p.dispute,
    object: 'dispute',
    amount: p.amount,
    balance_transactions: [],
    charge: p.charge,
    created: opts.created,
    currency: p.currency,
    enhanced_eligibility_types: [],
    evidence: { customer_email_address: null, product_description: null, uncategorized_text: null },
    evidence_details: { due_by: opts.created + 7 * 86400, enhanced_eligibility: {}, has_evidence: false, past_due: false, submission_count: 0 },
    is_charge_refundable: false,
    livemode: false,
    metadata: {},
    network_reason_code: '10.4',
    payment_intent: p.paymentIntent,
    payment_method_details: { card: { brand: 'visa', case_type: 'chargeback', network_reason_code: '10.4' }, type: 'card' },
    reason: 'fraudulent',
    status: opts.status,
  };
}

/** charge.dispute.funds_withdrawn: the disputed amount left the balance. */
export function disputeFundsWithdrawn(p: PackPurchase, opts: { created: number; eventId?: string }): StripeEvent {
  return stripeEvent('charge.dispute.funds_withdrawn', disputeObject(p, { created: opts.created, status: 'needs_response' }), {
    created: opts.created, id: opts.eventId,
  });
}

/** charge.dispute.funds_reinstated: the dispute was won and the funds came back. */
export function disputeFundsReinstated(p: PackPurchase, opts: { created: number; eventId?: string }): StripeEvent {
  return stripeEvent('charge.dispute.funds_reinstated', disputeObject(p, { created: opts.created, status: 'won' }), {
    created: opts.created, id: opts.eventId,
  });
}

// ── Subscriptions: Checkout in mode subscription, subscription events, invoices ──────────────

export interface SubscriptionFixture {
  account: string;
  customer: string;
  subscription: string;
  item: string;
  /** The plan the checkout was for (metadata.plan_id) and its Stripe price. */
  planId: string;
  priceId: string;
  session: string;
  /** start_date of the subscription (unix seconds). */
  start: number;
  /**
   * The metadata the subscription carries (subscription_data.metadata at checkout): Stripe copies
   * it to the invoices' subscription_details.metadata.
   */
  metadata: JsonObject;
}

export function subscriptionFixture(opts: {
  account: string; planId: string; priceId: string; start: number; customer?: string; metadata?: JsonObject;
}): SubscriptionFixture {
  return {
    account: opts.account,
    customer: opts.customer ?? stripeId('cus', 14),
    subscription: stripeId('sub'),
    item: stripeId('si', 14),
    planId: opts.planId,
    priceId: opts.priceId,
    session: stripeId('cs_test', 58),
    start: opts.start,
    metadata: opts.metadata ?? { account_id: opts.account, plan_id: opts.planId },
  };
}

/** checkout.session.completed in mode subscription. */
export function subscriptionCheckoutCompleted(
  s: SubscriptionFixture, opts: { created: number; amount?: number; metadata?: JsonObject; eventId?: string },
): StripeEvent {
  const amount = opts.amount ?? 1900;
  const session: JsonObject = {
    id: s.session,
    object: 'checkout.session',
    amount_subtotal: amount,
    amount_total: amount,
    automatic_tax: { enabled: false, liability: null, provider: null, status: null },
    cancel_url: 'https://app.example.com/pricing',
    client_reference_id: s.account,
    created: opts.created - 120,
    currency: 'usd',
    customer: s.customer,
    customer_creation: 'always',
    customer_details: { email: 'ada@example.com', name: 'Ada Lovelace', phone: null, tax_exempt: 'none', tax_ids: [], address: null },
    customer_email: null,
    expires_at: opts.created - 120 + 86400,
    invoice: stripeId('in'),
    livemode: false,
    metadata: opts.metadata ?? { account_id: s.account, plan_id: s.planId },
    mode: 'subscription',
    payment_intent: null,
    payment_method_types: ['card'],
    payment_status: 'paid',
    setup_intent: null,
    status: 'complete',
    subscription: s.subscription,
    success_url: 'https://app.example.com/billing?session_id={CHECKOUT_SESSION_ID}',
    total_details: { amount_discount: 0, amount_shipping: 0, amount_tax: 0 },
    ui_mode: 'hosted',
    url: null,
  };
  return stripeEvent('checkout.session.completed', session, { created: opts.created, id: opts.eventId });
}

export interface SubscriptionState {
  created: number;
  status: 'active' | 'trialing' | 'past_due' | 'unpaid' | 'canceled' | 'incomplete' | 'incomplete_expired' | 'paused';
  /** The price of the subscription's item now (default: the fixture's). */
  priceId?: string;
  periodStart: number;
  periodEnd: number;
  metadata?: JsonObject;
  eventId?: string;
  previous?: JsonObject;
}

export function subscriptionObject(s: SubscriptionFixture, st: SubscriptionState): JsonObject {
  const price = st.priceId ?? s.priceId;
  const canceled = st.status === 'canceled';
  return {
    id: s.subscription,
    object: 'subscription',
    application: null,
    automatic_tax: { disabled_reason: null, enabled: false, liability: null },
    billing_cycle_anchor: s.start,
    billing_cycle_anchor_config: null,
    billing_mode: { type: 'flexible' },
    cancel_at: null,
    cancel_at_period_end: false,
    canceled_at: canceled ? st.created : null,
    cancellation_details: { comment: null, feedback: null, reason: canceled ? 'cancellation_requested' : null },
    collection_method: 'charge_automatically',
    created: s.start,
    currency: 'usd',
    customer: s.customer,
    days_until_due: null,
    default_payment_method: stripeId('pm'),
    description: null,
    discounts: [],
    ended_at: canceled ? st.created : null,
    items: {
      object: 'list',
      data: [{
        id: s.item,
        object: 'subscription_item',
        created: s.start,
        current_period_end: st.periodEnd,
        current_period_start: st.periodStart,
        discounts: [],
        metadata: {},
        price: {
          id: price, object: 'price', active: true, billing_scheme: 'per_unit', created: s.start - 86400 * 30,
          currency: 'usd', livemode: false, lookup_key: null, metadata: {}, nickname: null, product: stripeId('prod', 14),
          recurring: { interval: 'month', interval_count: 1, meter: null, trial_period_days: null, usage_type: 'licensed' },
          tax_behavior: 'unspecified', type: 'recurring', unit_amount: 1900, unit_amount_decimal: '1900',
        },
        quantity: 1,
        subscription: s.subscription,
        tax_rates: [],
      }],
      has_more: false,
      total_count: 1,
      url: `/v1/subscription_items?subscription=${s.subscription}`,
    },
    latest_invoice: stripeId('in'),
    livemode: false,
    metadata: st.metadata ?? s.metadata,
    pending_update: null,
    start_date: s.start,
    status: st.status,
    trial_end: null,
    trial_start: null,
  };
}

/** customer.subscription.created / updated / deleted. */
export function subscriptionEvent(
  type: 'created' | 'updated' | 'deleted', s: SubscriptionFixture, st: SubscriptionState,
): StripeEvent {
  return stripeEvent(`customer.subscription.${type}`, subscriptionObject(s, st), {
    created: st.created, id: st.eventId, previous: st.previous,
  });
}

export type InvoiceShape = 'new' | 'old';

export interface InvoiceOptions {
  created: number;
  billingReason: string | null;
  periodStart: number;
  periodEnd: number;
  /** The price on the subscription line (default: the fixture's). */
  priceId?: string;
  amountPaid?: number;
  shape?: InvoiceShape;
  invoice?: string;
  /** The subscription's metadata as copied onto the invoice (default: the fixture's). */
  metadata?: JsonObject;
  eventId?: string;
}

/** A paid subscription invoice in either shape (see the top of this file). */
export function invoiceObject(s: SubscriptionFixture, o: InvoiceOptions): JsonObject {
  const id = o.invoice ?? stripeId('in');
  const price = o.priceId ?? s.priceId;
  const amount = o.amountPaid ?? 1900;
  const metadata = o.metadata ?? s.metadata;
  const shape = o.shape ?? 'new';
  const common: JsonObject = {
    id,
    object: 'invoice',
    account_country: 'DE',
    account_name: 'Creditkit Demo',
    amount_due: amount,
    amount_overpaid: 0,
    amount_paid: amount,
    amount_remaining: 0,
    amount_shipping: 0,
    attempt_count: 1,
    attempted: true,
    auto_advance: false,
    automatic_tax: { disabled_reason: null, enabled: false, liability: null, provider: null, status: null },
    billing_reason: o.billingReason,
    collection_method: 'charge_automatically',
    created: o.created - 3600,
    currency: 'usd',
    customer: s.customer,
    customer_email: 'ada@example.com',
    customer_name: 'Ada Lovelace',
    description: null,
    discounts: [],
    due_date: null,
    ending_balance: 0,
    footer: null,
    hosted_invoice_url: `https://invoice.stripe.com/i/acct_test/${id}`,
    invoice_pdf: `https://pay.stripe.com/invoice/acct_test/${id}/pdf`,
    livemode: false,
    metadata: {},
    next_payment_attempt: null,
    number: `CK-${id.slice(3, 9).toUpperCase()}-0001`,
    // The invoice's own period is the one *before* its lines' period for subscription invoices:
    // a reader must take the period from the line.
    period_end: o.periodStart,
    period_start: o.periodStart - (o.periodEnd - o.periodStart),
    starting_balance: 0,
    status: 'paid',
    status_transitions: { finalized_at: o.created - 3500, marked_uncollectible_at: null, paid_at: o.created, voided_at: null },
    subtotal: amount,
    total: amount,
  };
  const lineCommon: JsonObject = {
    id: stripeId('il', 24),
    object: 'line_item',
    amount,
    currency: 'usd',
    description: `1 × ${s.planId} (at $${(amount / 100).toFixed(2)} / month)`,
    discount_amounts: [],
    discountable: true,
    discounts: [],
    invoice: id,
    livemode: false,
    metadata: {},
    period: { end: o.periodEnd, start: o.periodStart },
    quantity: 1,
  };
  if (shape === 'new') {
    return {
      ...common,
      confirmation_secret: null,
      lines: {
        object: 'list',
        data: [{
          ...lineCommon,
          parent: {
            type: 'subscription_item_details',
            invoice_item_details: null,
            subscription_item_details: { invoice_item: null, proration: false, proration_details: { credited_items: null }, subscription: s.subscription, subscription_item: s.item },
          },
          pricing: { type: 'price_details', price_details: { price, product: stripeId('prod', 14) }, unit_amount_decimal: String(amount) },
          taxes: [],
        }],
        has_more: false,
        total_count: 1,
        url: `/v1/invoices/${id}/lines`,
      },
      parent: {
        type: 'subscription_details',
        quote_details: null,
        subscription_details: { metadata, subscription: s.subscription },
      },
      payments: { object: 'list', data: [], has_more: false, url: `/v1/invoices/${id}/payments` },
    };
  }
  return {
    ...common,
    charge: stripeId('ch'),
    lines: {
      object: 'list',
      data: [{
        ...lineCommon,
        invoice_item: null,
        plan: { id: price, object: 'plan', active: true, amount, currency: 'usd', interval: 'month', interval_count: 1, product: stripeId('prod', 14) },
        price: {
          id: price, object: 'price', active: true, billing_scheme: 'per_unit', currency: 'usd', livemode: false,
          product: stripeId('prod', 14), recurring: { interval: 'month', interval_count: 1, usage_type: 'licensed' },
          type: 'recurring', unit_amount: amount, unit_amount_decimal: String(amount),
        },
        proration: false,
        proration_details: { credited_items: null },
        subscription: s.subscription,
        subscription_item: s.item,
        type: 'subscription',
      }],
      has_more: false,
      total_count: 1,
      url: `/v1/invoices/${id}/lines`,
    },
    paid: true,
    paid_out_of_band: false,
    payment_intent: stripeId('pi'),
    subscription: s.subscription,
    subscription_details: { metadata },
  };
}

/** invoice.paid for a subscription invoice. */
export function invoicePaid(s: SubscriptionFixture, o: InvoiceOptions): StripeEvent {
  return stripeEvent('invoice.paid', invoiceObject(s, o), {
    created: o.created, id: o.eventId, apiVersion: (o.shape ?? 'new') === 'old' ? OLD_API_VERSION : API_VERSION,
  });
}

/** An event type creditkit does not act on, around a plausible object. */
export function otherEvent(type: string, opts: { created: number; object?: JsonObject; eventId?: string }): StripeEvent {
  const object: JsonObject = opts.object ?? {
    id: stripeId('pi'), object: 'payment_intent', amount: 900, amount_received: 900, currency: 'usd', status: 'succeeded', metadata: {},
  };
  return stripeEvent(type, object, { created: opts.created, id: opts.eventId });
}

// ── The catalogue the Stripe suites sell from ──────────────────────────────────────────────────

// A pack and three plans with their Stripe prices (created once per database by createCatalogue).
export const PACK = { id: 'credits-100', name: '100 credits', credits: 100, amount: 900, price: 'price_1QPackHundredCredits' };
export const PLANS = {
  basic: { id: 'basic', allowance: 100, price: 'price_1QBasicMonthly', features: { api: true } },
  pro: { id: 'pro', allowance: 500, price: 'price_1QProMonthly', features: { api: true, hd: true } },
  // allowance 200, up to 150 of what is left carries into the next period
  team: { id: 'team', allowance: 200, price: 'price_1QTeamMonthly', features: { api: true }, cap: 150 },
} as const;

export async function createCatalogue(ck: Creditkit): Promise<void> {
  await ck.call('creditkit_upsert_pack', {
    p_id: PACK.id, p_name: PACK.name, p_credits: PACK.credits, p_price_amount: PACK.amount, p_stripe_price_id: PACK.price,
  });
  for (const p of [PLANS.basic, PLANS.pro]) {
    await ck.upsertPlan({ p_id: p.id, p_name: p.id, p_allowance: p.allowance, p_features: p.features, p_price_amount: 1900, p_stripe_price_id: p.price });
  }
  await ck.upsertPlan({
    p_id: PLANS.team.id, p_name: 'Team', p_allowance: PLANS.team.allowance, p_renewal: 'rollover', p_rollover_cap: PLANS.team.cap,
    p_features: PLANS.team.features, p_price_amount: 4900, p_stripe_price_id: PLANS.team.price,
  });
}

