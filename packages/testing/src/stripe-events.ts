// Stripe objects and webhook events for saved cards and off-session payments (auto top-up),
// shaped like Stripe's (API 2026-10-28.endive, the version stripe-node 23.1 pins): payment
// methods, payment intents (with last_payment_error as a failed off-session attempt leaves it),
// setup intents, customers, Checkout sessions in mode setup, and the envelope around them.
// The Stripe stand-in (fake-stripe.ts) builds its answers and the events of what it did from
// these; suites that need an event without going through the stand-in call them directly.
//
// Test payment methods behave like Stripe's test cards (docs.stripe.com/testing), chosen by id:
//
//   pm_card_visa, pm_card_mastercard, any other id   a card; an off-session charge succeeds
//   pm_card_chargeDeclined                           402 card_error card_declined / generic_decline
//   pm_card_chargeDeclinedInsufficientFunds          402 card_error card_declined / insufficient_funds
//   pm_card_authenticationRequired                   402 card_error authentication_required (off
//                                                    session: the customer has to come back)
//   pm_sepa_debit… / pm_us_bank_account…             a debit that settles days later: status processing
import { createHash, randomBytes, randomUUID } from 'node:crypto';

export const STRIPE_API_VERSION = '2026-10-28.endive';

export type StripeObject = Record<string, unknown>;

export interface StripeEvent {
  id: string;
  object: 'event';
  api_version: string;
  created: number;
  data: { object: StripeObject; previous_attributes?: StripeObject };
  livemode: false;
  pending_webhooks: number;
  request: { id: string | null; idempotency_key: string | null };
  type: string;
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** A Stripe-style id: prefix, '_', then base62 characters (e.g. `pi_3QxY…`). */
export function stripeObjectId(prefix: string, length = 24): string {
  let out = '';
  for (const b of randomBytes(length)) out += BASE62[b % 62];
  return `${prefix}_${out}`;
}

export const unixNow = (): number => Math.floor(Date.now() / 1000);

/** The event envelope around an API object. */
export function stripeEvent(
  type: string,
  object: StripeObject,
  opts: { created?: number; id?: string; previous?: StripeObject; idempotencyKey?: string | null } = {},
): StripeEvent {
  return {
    id: opts.id ?? stripeObjectId('evt'),
    object: 'event',
    api_version: STRIPE_API_VERSION,
    created: opts.created ?? unixNow(),
    data: opts.previous ? { object, previous_attributes: opts.previous } : { object },
    livemode: false,
    pending_webhooks: 1,
    request: { id: stripeObjectId('req', 14), idempotency_key: opts.idempotencyKey === undefined ? randomUUID() : opts.idempotencyKey },
    type,
  };
}

// ── Test payment methods ──────────────────────────────────────────────────────────────────────

/** What an off-session confirmation with a test payment method does. */
export type TestOutcome =
  | { kind: 'succeeded' }
  | { kind: 'processing' }
  | { kind: 'card_error'; code: 'card_declined' | 'authentication_required'; declineCode: string; message: string };

export interface TestPaymentMethod {
  type: 'card' | 'sepa_debit' | 'us_bank_account';
  brand?: string;
  last4: string;
  outcome: TestOutcome;
}

const declined = (declineCode: string, message = 'Your card was declined.'): TestOutcome =>
  ({ kind: 'card_error', code: 'card_declined', declineCode, message });

const TEST_METHODS: Record<string, TestPaymentMethod> = {
  pm_card_visa: { type: 'card', brand: 'visa', last4: '4242', outcome: { kind: 'succeeded' } },
  pm_card_mastercard: { type: 'card', brand: 'mastercard', last4: '4444', outcome: { kind: 'succeeded' } },
  pm_card_amex: { type: 'card', brand: 'amex', last4: '8431', outcome: { kind: 'succeeded' } },
  pm_card_chargeDeclined: { type: 'card', brand: 'visa', last4: '0002', outcome: declined('generic_decline') },
  pm_card_chargeDeclinedInsufficientFunds: {
    type: 'card', brand: 'visa', last4: '9995', outcome: declined('insufficient_funds', 'Your card has insufficient funds.'),
  },
  pm_card_authenticationRequired: {
    type: 'card', brand: 'visa', last4: '3184',
    outcome: {
      kind: 'card_error', code: 'authentication_required', declineCode: 'authentication_required',
      message: 'Your card was declined. This transaction requires authentication.',
    },
  },
};

/** How the stand-in treats a payment method id (see the top of this file). */
export function testPaymentMethod(id: string): TestPaymentMethod {
  const known = TEST_METHODS[id];
  if (known) return known;
  if (/^pm_sepa/i.test(id)) return { type: 'sepa_debit', last4: '3000', outcome: { kind: 'processing' } };
  if (/^pm_us_?bank/i.test(id)) return { type: 'us_bank_account', last4: '6789', outcome: { kind: 'processing' } };
  return { type: 'card', brand: 'visa', last4: '4242', outcome: { kind: 'succeeded' } };
}

const fingerprint = (id: string) => createHash('sha256').update(id).digest('base64url').slice(0, 16);

/** A payment_method object, attached to `customer` (or to none). */
export function paymentMethodObject(id: string, opts: { customer?: string | null; created?: number } = {}): StripeObject {
  const m = testPaymentMethod(id);
  const details =
    m.type === 'card'
      ? {
          card: {
            brand: m.brand, checks: { address_line1_check: null, address_postal_code_check: null, cvc_check: 'pass' },
            country: 'US', display_brand: m.brand, exp_month: 12, exp_year: 2034, fingerprint: fingerprint(id), funding: 'credit',
            generated_from: null, last4: m.last4, networks: { available: [m.brand], preferred: null },
            regulated_status: 'unregulated', three_d_secure_usage: { supported: true }, wallet: null,
          },
        }
      : m.type === 'sepa_debit'
        ? { sepa_debit: { bank_code: '37040044', branch_code: '', country: 'DE', fingerprint: fingerprint(id), generated_from: { charge: null, setup_attempt: null }, last4: m.last4 } }
        : { us_bank_account: { account_holder_type: 'individual', account_type: 'checking', bank_name: 'STRIPE TEST BANK', financial_connections_account: null, fingerprint: fingerprint(id), last4: m.last4, networks: { preferred: 'ach', supported: ['ach'] }, routing_number: '110000000', status_details: {} } };
  return {
    id,
    object: 'payment_method',
    allow_redisplay: 'always',
    billing_details: {
      address: { city: null, country: null, line1: null, line2: null, postal_code: null, state: null },
      email: 'ada@example.com', name: 'Ada Lovelace', phone: null, tax_id: null,
    },
    ...details,
    created: opts.created ?? unixNow(),
    customer: opts.customer ?? null,
    customer_account: null,
    livemode: false,
    metadata: {},
    type: m.type,
  };
}

// ── Payment intents ───────────────────────────────────────────────────────────────────────────

export type PaymentIntentStatus =
  | 'requires_payment_method' | 'requires_confirmation' | 'requires_action' | 'processing' | 'succeeded' | 'canceled';

export interface PaymentIntentInit {
  id?: string;
  amount: number;
  currency: string;
  customer?: string | null;
  paymentMethod?: string | null;
  metadata?: Record<string, string>;
  status: PaymentIntentStatus;
  created?: number;
  /** The failed attempt's error (status requires_payment_method after a card error). */
  lastPaymentError?: StripeObject | null;
  latestCharge?: string | null;
  setupFutureUsage?: 'off_session' | 'on_session' | null;
  description?: string | null;
}

export function paymentIntentObject(p: PaymentIntentInit): StripeObject {
  const id = p.id ?? stripeObjectId('pi');
  const type = p.paymentMethod ? testPaymentMethod(p.paymentMethod).type : 'card';
  return {
    id,
    object: 'payment_intent',
    amount: p.amount,
    amount_capturable: 0,
    amount_details: { tip: {} },
    amount_received: p.status === 'succeeded' ? p.amount : 0,
    application: null,
    application_fee_amount: null,
    automatic_payment_methods: null,
    canceled_at: null,
    cancellation_reason: null,
    capture_method: 'automatic_async',
    client_secret: `${id}_secret_${stripeObjectId('x', 24).slice(2)}`,
    confirmation_method: 'automatic',
    created: p.created ?? unixNow(),
    currency: p.currency,
    customer: p.customer ?? null,
    customer_account: null,
    description: p.description ?? null,
    excluded_payment_method_types: null,
    last_payment_error: p.lastPaymentError ?? null,
    latest_charge: p.latestCharge ?? null,
    livemode: false,
    metadata: p.metadata ?? {},
    next_action: null,
    on_behalf_of: null,
    payment_method: p.paymentMethod ?? null,
    payment_method_configuration_details: null,
    payment_method_options: type === 'card'
      ? { card: { installments: null, mandate_options: null, network: null, request_three_d_secure: 'automatic' } }
      : { [type]: {} },
    payment_method_types: [type],
    processing: null,
    receipt_email: null,
    review: null,
    setup_future_usage: p.setupFutureUsage ?? null,
    shipping: null,
    source: null,
    statement_descriptor: null,
    statement_descriptor_suffix: null,
    status: p.status,
    transfer_data: null,
    transfer_group: null,
  };
}

/**
 * The `error` Stripe answers (HTTP 402) when confirming with this payment method fails, as a
 * PaymentIntent's last_payment_error carries it too: the payment method expanded, the failed
 * charge (a decline has one; an off-session authentication_required has none).
 */
export function cardErrorObject(
  paymentMethod: string,
  opts: { customer?: string | null; charge?: string | null } = {},
): StripeObject & { code: string; decline_code: string } {
  const m = testPaymentMethod(paymentMethod);
  if (m.outcome.kind !== 'card_error') throw new Error(`${paymentMethod} does not fail`);
  const { code, declineCode, message } = m.outcome;
  return {
    type: 'card_error',
    code,
    decline_code: declineCode,
    ...(code === 'card_declined' ? { advice_code: 'try_again_later', charge: opts.charge ?? stripeObjectId('ch') } : {}),
    doc_url: `https://docs.stripe.com/error-codes/${code.replace(/_/g, '-')}`,
    message,
    payment_method: paymentMethodObject(paymentMethod, { customer: opts.customer ?? null }),
    request_log_url: `https://dashboard.stripe.com/test/logs/${stripeObjectId('req', 14)}`,
  };
}

/** payment_intent.succeeded: credits land from this one. */
export function paymentIntentSucceeded(pi: StripeObject, opts: { created?: number; id?: string } = {}): StripeEvent {
  return stripeEvent('payment_intent.succeeded', { ...pi, status: 'succeeded', amount_received: pi.amount, last_payment_error: null }, opts);
}

/** payment_intent.payment_failed: status requires_payment_method, last_payment_error says why. */
export function paymentIntentPaymentFailed(pi: StripeObject, opts: { created?: number; id?: string } = {}): StripeEvent {
  if (!pi.last_payment_error) throw new Error('payment_intent.payment_failed needs a PaymentIntent with last_payment_error');
  return stripeEvent('payment_intent.payment_failed', { ...pi, status: 'requires_payment_method', amount_received: 0 }, opts);
}

/** payment_intent.processing: a debit that settles later (SEPA, ACH). */
export function paymentIntentProcessing(pi: StripeObject, opts: { created?: number; id?: string } = {}): StripeEvent {
  return stripeEvent('payment_intent.processing', { ...pi, status: 'processing' }, opts);
}

// ── Saving a card: setup intents, Checkout in mode setup, payment methods, customers ─────────

export interface SetupInit {
  id?: string;
  customer: string;
  paymentMethod: string;
  metadata?: Record<string, string>;
  created?: number;
}

export function setupIntentObject(s: SetupInit & { status?: string }): StripeObject {
  const id = s.id ?? stripeObjectId('seti');
  const type = testPaymentMethod(s.paymentMethod).type;
  return {
    id,
    object: 'setup_intent',
    application: null,
    automatic_payment_methods: null,
    cancellation_reason: null,
    client_secret: `${id}_secret_${stripeObjectId('x', 24).slice(2)}`,
    created: s.created ?? unixNow(),
    customer: s.customer,
    customer_account: null,
    description: null,
    excluded_payment_method_types: null,
    flow_directions: null,
    last_setup_error: null,
    latest_attempt: stripeObjectId('setatt'),
    livemode: false,
    mandate: type === 'card' ? null : stripeObjectId('mandate'),
    metadata: s.metadata ?? {},
    next_action: null,
    on_behalf_of: null,
    payment_method: s.paymentMethod,
    payment_method_configuration_details: null,
    payment_method_options: type === 'card' ? { card: { mandate_options: null, network: null, request_three_d_secure: 'automatic' } } : { [type]: {} },
    payment_method_types: [type],
    single_use_mandate: null,
    status: s.status ?? 'succeeded',
    usage: 'off_session',
  };
}

/** setup_intent.succeeded: a payment method saved for off-session use (payment_method is an id). */
export function setupIntentSucceeded(s: SetupInit | StripeObject, opts: { created?: number; id?: string } = {}): StripeEvent {
  const object = 'object' in s ? { ...s, status: 'succeeded' } : setupIntentObject(s as SetupInit);
  return stripeEvent('setup_intent.succeeded', object, opts);
}

/** payment_method.attached: the full payment method (card brand, last4, expiry), with its customer. */
export function paymentMethodAttached(paymentMethod: string, customer: string, opts: { created?: number; id?: string } = {}): StripeEvent {
  return stripeEvent('payment_method.attached', paymentMethodObject(paymentMethod, { customer, created: opts.created }), opts);
}

/** payment_method.detached: customer is null now; previous_attributes names the one it left. */
export function paymentMethodDetached(paymentMethod: string, customer: string, opts: { created?: number; id?: string } = {}): StripeEvent {
  return stripeEvent('payment_method.detached', paymentMethodObject(paymentMethod, { customer: null, created: opts.created }), {
    ...opts, previous: { customer },
  });
}

export function customerObject(c: {
  id: string; email?: string | null; metadata?: Record<string, string>; defaultPaymentMethod?: string | null; created?: number;
}): StripeObject {
  return {
    id: c.id,
    object: 'customer',
    address: null,
    balance: 0,
    created: c.created ?? unixNow(),
    currency: null,
    default_source: null,
    delinquent: false,
    description: null,
    email: c.email ?? null,
    invoice_prefix: c.id.slice(4, 12).toUpperCase(),
    invoice_settings: { custom_fields: null, default_payment_method: c.defaultPaymentMethod ?? null, footer: null, rendering_options: null },
    livemode: false,
    metadata: c.metadata ?? {},
    name: null,
    phone: null,
    preferred_locales: [],
    shipping: null,
    tax_exempt: 'none',
    test_clock: null,
  };
}

/**
 * customer.updated after the customer's default payment method changed (Stripe sends the whole
 * customer; previous_attributes holds the old invoice_settings).
 */
export function customerUpdated(
  c: { id: string; email?: string | null; metadata?: Record<string, string>; defaultPaymentMethod: string | null; previousDefault?: string | null },
  opts: { created?: number; id?: string } = {},
): StripeEvent {
  return stripeEvent('customer.updated', customerObject(c), {
    ...opts,
    previous: { invoice_settings: { default_payment_method: c.previousDefault ?? null } },
  });
}

/** A checkout.session in mode setup (as created: open, with its setup intent). */
export function setupSessionObject(s: {
  id?: string; customer: string | null; metadata?: Record<string, string>; setupIntent?: string; currency?: string | null;
  allowedPaymentMethodTypes?: string[] | null; successUrl?: string | null; cancelUrl?: string | null; clientReferenceId?: string | null; created?: number;
}): StripeObject {
  const id = s.id ?? `cs_test_${stripeObjectId('a', 58).slice(2)}`;
  const created = s.created ?? unixNow();
  return {
    id,
    object: 'checkout.session',
    allowed_payment_method_types: s.allowedPaymentMethodTypes ?? null,
    amount_subtotal: null,
    amount_total: null,
    cancel_url: s.cancelUrl ?? null,
    client_reference_id: s.clientReferenceId ?? null,
    created,
    currency: s.currency ?? null,
    customer: s.customer,
    customer_creation: null,
    customer_details: null,
    customer_email: null,
    expires_at: created + 24 * 3600,
    invoice: null,
    livemode: false,
    metadata: s.metadata ?? {},
    mode: 'setup',
    payment_intent: null,
    payment_method_types: s.allowedPaymentMethodTypes ?? ['card'],
    payment_status: 'no_payment_required',
    setup_intent: s.setupIntent ?? stripeObjectId('seti'),
    status: 'open',
    subscription: null,
    success_url: s.successUrl ?? null,
    ui_mode: 'hosted',
    url: `https://checkout.stripe.com/c/pay/${id}`,
  };
}

/** checkout.session.completed in mode setup: complete, no payment, the setup intent's id. */
export function setupCheckoutCompleted(session: StripeObject, opts: { created?: number; id?: string } = {}): StripeEvent {
  if (session.mode !== 'setup') throw new Error('setupCheckoutCompleted needs a session in mode setup');
  return stripeEvent('checkout.session.completed', {
    ...session,
    status: 'complete',
    payment_status: 'no_payment_required',
    customer_details: { address: null, email: 'ada@example.com', name: 'Ada Lovelace', phone: null, tax_exempt: 'none', tax_ids: [] },
    url: null,
  }, opts);
}
