// A local stand-in for the part of Stripe's API that @creditkit/stripe calls, so the real Stripe
// SDK can be pointed at it: `new Stripe(key, { host: '127.0.0.1', port, protocol: 'http' })`.
// It records every request (method, path, the form-encoded body parsed into objects, the
// Idempotency-Key header) and answers with objects shaped like Stripe's:
//
//   POST /v1/customers                 -> customer      (cus_...)
//   POST /v1/checkout/sessions         -> checkout.session (cs_test_..., open, with a url); in mode
//                                         setup, with its setup intent (seti_...)
//   POST /v1/billing_portal/sessions   -> billing_portal.session (bps_..., with a url)
//   POST /v1/payment_intents           -> payment_intent (pi_...): with confirm, the payment method
//                                         decides what happens, like Stripe's test cards
//                                         (stripe-events.ts): succeeded, processing, or a 402
//                                         card_error carrying the PaymentIntent
//
// Idempotency as Stripe documents it: a key seen before with the same parameters replays the
// first response (header Idempotent-Replayed: true), whatever it was (a 402 decline, a 500); with
// other parameters it is a 400 idempotency_error. Anything else is a 404 invalid_request_error.
//
// What a customer does in Stripe's pages, and what Stripe does later, are methods that return the
// webhook events Stripe would send: completeSetup (the customer saved a card in a setup session),
// setDefaultPaymentMethod, detachPaymentMethod, paymentIntentEvent and settlePaymentIntent.
// failNextPaymentIntents makes the next requests fail the ways a network and Stripe can fail.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';
import {
  cardErrorObject,
  customerUpdated,
  paymentIntentObject,
  paymentIntentPaymentFailed,
  paymentIntentProcessing,
  paymentIntentSucceeded,
  paymentMethodAttached,
  paymentMethodDetached,
  paymentMethodObject,
  setupCheckoutCompleted,
  setupIntentObject,
  setupIntentSucceeded,
  setupSessionObject,
  stripeObjectId,
  testPaymentMethod,
  type StripeEvent,
} from './stripe-events.ts';

export type Form = { [key: string]: string | Form | Form[] | string[] };

export interface RecordedRequest {
  method: string;
  /** Path without the query string, e.g. /v1/checkout/sessions. */
  path: string;
  /** The form body, nested as Stripe encodes it (`metadata[account_id]`, `line_items[0][price]`). */
  body: Form;
  idempotencyKey: string | undefined;
  /** True when this request was answered from the idempotency store. */
  replayed: boolean;
}

export interface FakeStripeOptions {
  /**
   * Ignore Idempotency-Key (as if each request had its own key, or the 24-hour window had
   * passed): every customer create makes a new customer.
   */
  ignoreIdempotency?: boolean;
  /** Hold every customers.create answer until this many have arrived (to force a race). */
  holdCustomerCreatesUntil?: number;
  /** Unit amounts by price id, for amount_total on sessions (default 500). */
  prices?: Record<string, { unitAmount: number; currency?: string }>;
}

/**
 * How the next POST /v1/payment_intents fails:
 *   'rate_limit'   429 rate_limit before anything runs: nothing is created or stored under the key
 *   'unavailable'  503 from in front of the API: nothing is created or stored
 *   'api_error'    500 api_error (stripe-should-retry: false): nothing is created, and the 500 is
 *                  stored under the idempotency key, so a retry with the same key gets it again,
 *                  as Stripe documents (a new key is needed)
 *   'hang'         the PaymentIntent IS created and stored under the key, but the answer is held
 *                  for `ms` (default: until close) — the client times out not knowing
 *   'reset'        created and stored, then the connection is dropped without an answer
 */
export type PaymentIntentFailure = 'rate_limit' | 'unavailable' | 'api_error' | 'hang' | 'reset';

/** A PaymentIntent really created (not an idempotent replay). */
export interface CreatedPaymentIntent {
  id: string;
  idempotencyKey: string | undefined;
  customer: string | null;
  paymentMethod: string | null;
  amount: number;
  currency: string;
  /** Its status when created. */
  status: string;
}

export interface FakeStripe {
  url: string;
  port: number;
  /** A real Stripe SDK client talking to this server (no retries, so requests are exactly what the code sent). */
  stripe: Stripe;
  readonly requests: RecordedRequest[];
  /** Requests to one path (and method POST). */
  posts(path: string): RecordedRequest[];
  /** Customers created (not replays), by id. */
  readonly customers: Map<string, Record<string, unknown>>;
  /** Checkout sessions created, by id: what the webhook events are built from. */
  readonly sessions: Map<string, Record<string, unknown>>;
  /** PaymentIntents as they stand now, by id (failed ones too: a 402 still creates one). */
  readonly paymentIntents: Map<string, Record<string, unknown>>;
  /** Every PaymentIntent really created (replays are not), in order. */
  readonly createdPaymentIntents: CreatedPaymentIntent[];
  /**
   * How many PaymentIntents were really created (replays do not count), for one idempotency key,
   * customer and/or status: what "exactly one charge" is asserted on.
   */
  chargeCount(filter?: { idempotencyKey?: string; customer?: string; status?: string }): number;
  /** The next `count` POST /v1/payment_intents fail as `how` says (then they work again; reset() forgets them). */
  failNextPaymentIntents(count: number, how: PaymentIntentFailure, options?: { ms?: number }): void;
  /**
   * The customer completed the setup session `sessionId` with `paymentMethod` (a test payment
   * method id, default pm_card_visa): the method is attached to the session's customer, the
   * setup intent succeeded and the session is complete. Returns the events Stripe sends, in
   * order: payment_method.attached, setup_intent.succeeded, checkout.session.completed.
   * Stripe does not make the saved method the customer's default (setDefaultPaymentMethod does).
   */
  completeSetup(sessionId: string, paymentMethod?: string): StripeEvent[];
  /** Sets invoice_settings.default_payment_method (attaching it if needed): customer.updated. */
  setDefaultPaymentMethod(customer: string, paymentMethod: string | null): StripeEvent;
  /** Detaches a payment method from its customer: payment_method.detached. */
  detachPaymentMethod(paymentMethod: string): StripeEvent;
  /** Which customer a payment method is attached to (as the stand-in knows it). */
  readonly attachedPaymentMethods: Map<string, string>;
  /**
   * The event Stripe sends for a PaymentIntent as it stands: payment_intent.succeeded,
   * payment_intent.payment_failed (after a card error) or payment_intent.processing.
   */
  paymentIntentEvent(paymentIntentId: string): StripeEvent;
  /** A processing PaymentIntent (a debit) settles: payment_intent.succeeded or payment_intent.payment_failed. */
  settlePaymentIntent(paymentIntentId: string, outcome: 'succeeded' | 'failed'): StripeEvent;
  /** Forgets the recorded requests and any failures still to come (objects stay). */
  reset(): void;
  close(): Promise<void>;
}

const id = (prefix: string) => `${prefix}${randomBytes(12).toString('hex')}`;

/** `a[b][0][c]=v` pairs to nested objects; numeric segments make arrays. */
export function parseForm(text: string): Form {
  const root: Record<string, unknown> = {};
  for (const [key, value] of new URLSearchParams(text)) {
    const path = key.replace(/\]/g, '').split('[');
    let node: Record<string, unknown> | unknown[] = root;
    path.forEach((segment, i) => {
      const last = i === path.length - 1;
      const nextIsIndex = !last && /^\d+$/.test(path[i + 1]!);
      const k = Array.isArray(node) ? Number(segment) : segment;
      const container = node as Record<string | number, unknown>;
      if (last) container[k] = value;
      else {
        container[k] ??= nextIsIndex ? [] : {};
        node = container[k] as Record<string, unknown> | unknown[];
      }
    });
  }
  return root as Form;
}

function stripeError(res: ServerResponse, status: number, type: string, message: string, extra: Record<string, unknown> = {}) {
  res.writeHead(status, { 'content-type': 'application/json', 'request-id': id('req_') });
  res.end(JSON.stringify({ error: { type, message, ...extra } }));
}

export async function startFakeStripe(options: FakeStripeOptions = {}): Promise<FakeStripe> {
  const requests: RecordedRequest[] = [];
  const customers = new Map<string, Record<string, unknown>>();
  const sessions = new Map<string, Record<string, unknown>>();
  const idempotency = new Map<string, { method: string; path: string; body: string; status: number; response: string }>();
  let heldCreates: (() => void)[] = [];
  let customerCreates = 0;
  const paymentIntents = new Map<string, Record<string, unknown>>();
  const createdPaymentIntents: CreatedPaymentIntent[] = [];
  /** payment method id -> customer id */
  const attached = new Map<string, string>();
  const defaults = new Map<string, string | null>();
  /** setup session id -> the metadata its SetupIntent gets (setup_intent_data.metadata) */
  const setupMetadata = new Map<string, Record<string, string>>();
  const failures: { how: PaymentIntentFailure; ms?: number }[] = [];
  const timers = new Set<NodeJS.Timeout>();

  const now = () => Math.floor(Date.now() / 1000);
  const invalid = (message: string, extra: Record<string, unknown> = {}) => ({
    status: 400,
    object: { error: { type: 'invalid_request_error', message, ...extra } },
  });

  function createPaymentIntent(body: Form, key: string | undefined): { status: number; object: Record<string, unknown> } {
    const amount = Number(body.amount);
    if (body.amount === undefined) return invalid('Missing required param: amount.', { code: 'parameter_missing', param: 'amount' });
    if (typeof body.currency !== 'string') return invalid('Missing required param: currency.', { code: 'parameter_missing', param: 'currency' });
    if (!Number.isInteger(amount) || amount < 1) return invalid('Invalid integer: amount', { code: 'parameter_invalid_integer', param: 'amount' });
    if (amount < 50 && ['usd', 'eur'].includes(body.currency)) {
      return invalid(`Amount must be at least 50 cents`, { code: 'amount_too_small', param: 'amount' });
    }
    const confirm = body.confirm === 'true';
    const offSession = body.off_session === 'true' || body.off_session === 'one_off' || body.off_session === 'recurring';
    if (body.off_session !== undefined && !confirm) {
      return invalid('You can only pass `off_session` when `confirm` is `true`.', { code: 'parameter_invalid_empty', param: 'off_session' });
    }
    const pm = typeof body.payment_method === 'string' ? body.payment_method : null;
    const customer = typeof body.customer === 'string' ? body.customer : null;
    if (confirm && !pm) {
      return invalid("You cannot confirm this PaymentIntent because it's missing a payment method.", { code: 'payment_intent_unexpected_state' });
    }
    const owner = pm ? attached.get(pm) : undefined;
    if (pm && owner !== undefined && owner !== customer) {
      return invalid(`The provided PaymentMethod ${pm} belongs to a different Customer.`, { code: 'resource_missing', param: 'payment_method' });
    }
    const metadata = (body.metadata ?? {}) as Record<string, string>;
    const common = {
      amount, currency: body.currency, customer, paymentMethod: pm, metadata,
      setupFutureUsage: (body.setup_future_usage as 'off_session' | 'on_session' | undefined) ?? null,
      description: typeof body.description === 'string' ? body.description : null,
    };
    let pi: Record<string, unknown>;
    let answer: { status: number; object: Record<string, unknown> };
    const outcome = pm ? testPaymentMethod(pm).outcome : undefined;
    if (!confirm || !outcome) {
      pi = paymentIntentObject({ ...common, status: pm ? 'requires_confirmation' : 'requires_payment_method' });
      answer = { status: 200, object: pi };
    } else if (outcome.kind === 'succeeded') {
      pi = paymentIntentObject({ ...common, status: 'succeeded', latestCharge: stripeObjectId('ch') });
      answer = { status: 200, object: pi };
    } else if (outcome.kind === 'processing') {
      pi = paymentIntentObject({ ...common, status: 'processing', latestCharge: stripeObjectId('py') });
      answer = { status: 200, object: pi };
    } else if (outcome.code === 'authentication_required' && !offSession) {
      // on session, the customer is there to authenticate: 3D Secure is the next action
      pi = paymentIntentObject({ ...common, status: 'requires_action' });
      pi.next_action = { type: 'use_stripe_sdk', use_stripe_sdk: { type: 'three_d_secure_redirect', stripe_js: 'https://hooks.stripe.com/3d_secure_2/hosted' } };
      answer = { status: 200, object: pi };
    } else {
      // a declined or (off session) unauthenticated attempt: a 402 whose error carries the
      // PaymentIntent, now requires_payment_method with the error as its last_payment_error
      const error = cardErrorObject(pm!, { customer });
      pi = paymentIntentObject({ ...common, status: 'requires_payment_method', lastPaymentError: error, latestCharge: (error.charge as string | undefined) ?? null });
      answer = { status: 402, object: { error: { ...error, payment_intent: pi } } };
    }
    paymentIntents.set(pi.id as string, pi);
    createdPaymentIntents.push({
      id: pi.id as string, idempotencyKey: key, customer, paymentMethod: pm, amount, currency: body.currency, status: pi.status as string,
    });
    return answer;
  }

  function create(path: string, body: Form, key?: string): { status: number; object: Record<string, unknown> } | undefined {
    if (path === '/v1/payment_intents') return createPaymentIntent(body, key);
    if (path === '/v1/checkout/sessions' && body.mode === 'setup') {
      if (body.line_items !== undefined) return invalid('You cannot pass `line_items` in `setup` mode.', { param: 'line_items' });
      // allowed_payment_method_types since API 2026-10-28 (payment_method_types before it)
      const types = body.allowed_payment_method_types ?? body.payment_method_types;
      if (body.currency === undefined && types === undefined) {
        return invalid('Missing required param: currency. `currency` is required in `setup` mode when `allowed_payment_method_types` is not set.', {
          code: 'parameter_missing', param: 'currency',
        });
      }
      const session = setupSessionObject({
        customer: typeof body.customer === 'string' ? body.customer : null,
        metadata: (body.metadata ?? {}) as Record<string, string>,
        currency: typeof body.currency === 'string' ? body.currency : null,
        allowedPaymentMethodTypes: Array.isArray(types) ? (types as string[]) : null,
        successUrl: typeof body.success_url === 'string' ? body.success_url : null,
        cancelUrl: typeof body.cancel_url === 'string' ? body.cancel_url : null,
        clientReferenceId: typeof body.client_reference_id === 'string' ? body.client_reference_id : null,
      });
      sessions.set(session.id as string, session);
      const data = body.setup_intent_data as Form | undefined;
      setupMetadata.set(session.id as string, (data?.metadata ?? {}) as Record<string, string>);
      return { status: 200, object: session };
    }
    if (path === '/v1/customers') {
      const customer = {
        id: id('cus_'),
        object: 'customer',
        created: now(),
        email: typeof body.email === 'string' ? body.email : null,
        metadata: body.metadata ?? {},
        livemode: false,
      };
      customers.set(customer.id, customer);
      return { status: 200, object: customer };
    }
    if (path === '/v1/checkout/sessions') {
      const sessionId = id('cs_test_');
      const items = (body.line_items ?? []) as Form[];
      const price = options.prices?.[String(items[0]?.price)];
      const amount = (price?.unitAmount ?? 500) * Number(items[0]?.quantity ?? 1);
      const session = {
        id: sessionId,
        object: 'checkout.session',
        created: now(),
        expires_at: now() + 24 * 3600,
        livemode: false,
        mode: body.mode,
        status: 'open',
        payment_status: 'unpaid',
        customer: body.customer ?? null,
        customer_email: body.customer_email ?? null,
        client_reference_id: body.client_reference_id ?? null,
        metadata: body.metadata ?? {},
        amount_subtotal: amount,
        amount_total: amount,
        currency: price?.currency ?? 'usd',
        payment_intent: null,
        subscription: null,
        invoice: null,
        success_url: body.success_url ?? null,
        cancel_url: body.cancel_url ?? null,
        ui_mode: 'hosted',
        url: `https://checkout.stripe.com/c/pay/${sessionId}`,
      };
      sessions.set(sessionId, session);
      return { status: 200, object: session };
    }
    if (path === '/v1/billing_portal/sessions') {
      if (typeof body.customer !== 'string' || !customers.has(body.customer)) {
        return {
          status: 400,
          object: { error: { type: 'invalid_request_error', code: 'resource_missing', param: 'customer', message: `No such customer: '${String(body.customer)}'` } },
        };
      }
      const portalId = id('bps_');
      return {
        status: 200,
        object: {
          id: portalId,
          object: 'billing_portal.session',
          created: now(),
          customer: body.customer,
          return_url: body.return_url ?? null,
          livemode: false,
          url: `https://billing.stripe.com/p/session/test_${portalId}`,
        },
      };
    }
    return undefined;
  }

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const path = (req.url ?? '/').split('?')[0]!;
    const method = req.method ?? 'GET';
    const key = options.ignoreIdempotency ? undefined : (req.headers['idempotency-key'] as string | undefined);
    const record: RecordedRequest = {
      method,
      path,
      body: parseForm(raw),
      idempotencyKey: req.headers['idempotency-key'] as string | undefined,
      replayed: false,
    };
    requests.push(record);

    if (!String(req.headers.authorization ?? '').startsWith('Bearer sk_test_')) {
      return stripeError(res, 401, 'invalid_request_error', 'Invalid API Key provided');
    }
    if (method !== 'POST') return stripeError(res, 404, 'invalid_request_error', `Unrecognized request URL (${method}: ${path}).`);

    // an injected failure: the first two never reach the API (nothing stored under the key)
    const ahead = path === '/v1/payment_intents' ? failures[0] : undefined;
    if (ahead?.how === 'rate_limit' || ahead?.how === 'unavailable') failures.shift();
    if (ahead?.how === 'rate_limit') {
      return stripeError(res, 429, 'invalid_request_error', 'Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.', { code: 'rate_limit' });
    }
    if (ahead?.how === 'unavailable') {
      res.writeHead(503, { 'content-type': 'text/html' });
      return res.end('<html><body><h1>503 Service Unavailable</h1></body></html>');
    }

    if (path === '/v1/customers' && options.holdCustomerCreatesUntil) {
      customerCreates++;
      await new Promise<void>((resolve) => {
        heldCreates.push(resolve);
        if (customerCreates >= options.holdCustomerCreatesUntil!) {
          for (const release of heldCreates) release();
          heldCreates = [];
        }
      });
    }

    if (key !== undefined) {
      const seen = idempotency.get(key);
      if (seen) {
        if (seen.method !== method || seen.path !== path || seen.body !== raw) {
          return stripeError(res, 400, 'idempotency_error',
            `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.`);
        }
        record.replayed = true;
        res.writeHead(seen.status, { 'content-type': 'application/json', 'idempotent-replayed': 'true', 'request-id': id('req_') });
        return res.end(seen.response);
      }
    }
    // the others happen to a request the API runs (a replay is answered as stored, above)
    const failure = path === '/v1/payment_intents' ? failures.shift() : undefined;
    if (failure?.how === 'api_error') {
      const response = JSON.stringify({ error: { type: 'api_error', message: 'An unknown error occurred' } });
      // stored like any result: the same key gets this 500 again
      if (key !== undefined) idempotency.set(key, { method, path, body: raw, status: 500, response });
      res.writeHead(500, { 'content-type': 'application/json', 'request-id': id('req_'), 'stripe-should-retry': 'false' });
      return res.end(response);
    }
    const result = create(path, record.body, key);
    if (!result) return stripeError(res, 404, 'invalid_request_error', `Unrecognized request URL (${method}: ${path}).`);
    const response = JSON.stringify(result.object);
    // a request that failed validation never ran: Stripe saves no result for its key
    if (key !== undefined && result.status !== 400) idempotency.set(key, { method, path, body: raw, status: result.status, response });
    if (failure?.how === 'reset') return req.socket.destroy();
    if (failure?.how === 'hang') {
      if (failure.ms === undefined) return; // answered never; close() drops the connection
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          timers.delete(timer);
          resolve();
        }, failure.ms);
        timers.add(timer);
      });
      if (res.destroyed) return;
    }
    res.writeHead(result.status, { 'content-type': 'application/json', 'request-id': id('req_') });
    res.end(response);
  }

  const knownPaymentIntent = (piId: string) => {
    const pi = paymentIntents.get(piId);
    if (!pi) throw new Error(`fake-stripe: no PaymentIntent ${piId}`);
    return pi;
  };

  function attach(paymentMethod: string, customer: string): StripeEvent | undefined {
    if (attached.get(paymentMethod) === customer) return undefined;
    attached.set(paymentMethod, customer);
    return paymentMethodAttached(paymentMethod, customer);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => stripeError(res, 500, 'api_error', String(error)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    stripe: new Stripe('sk_test_creditkit', { host: '127.0.0.1', port, protocol: 'http', maxNetworkRetries: 0 }),
    requests,
    posts: (path) => requests.filter((r) => r.method === 'POST' && r.path === path),
    customers,
    sessions,
    paymentIntents,
    createdPaymentIntents,
    attachedPaymentMethods: attached,
    chargeCount: (filter = {}) =>
      createdPaymentIntents.filter(
        (c) =>
          (filter.idempotencyKey === undefined || c.idempotencyKey === filter.idempotencyKey) &&
          (filter.customer === undefined || c.customer === filter.customer) &&
          (filter.status === undefined || c.status === filter.status),
      ).length,
    failNextPaymentIntents(count, how, opts = {}) {
      for (let i = 0; i < count; i++) failures.push({ how, ...(opts.ms === undefined ? {} : { ms: opts.ms }) });
    },
    completeSetup(sessionId, paymentMethod = 'pm_card_visa') {
      const session = sessions.get(sessionId);
      if (!session || session.mode !== 'setup') throw new Error(`fake-stripe: no setup session ${sessionId}`);
      if (session.status !== 'open') throw new Error(`fake-stripe: session ${sessionId} is ${String(session.status)}`);
      const customer = session.customer as string | null;
      if (!customer) throw new Error('fake-stripe: completeSetup needs a session made for a customer');
      const events: StripeEvent[] = [];
      const attachedEvent = attach(paymentMethod, customer);
      if (attachedEvent) events.push(attachedEvent);
      const setupIntent = setupIntentObject({
        id: session.setup_intent as string, customer, paymentMethod, metadata: setupMetadata.get(sessionId) ?? {},
      });
      events.push(setupIntentSucceeded(setupIntent));
      Object.assign(session, { status: 'complete', payment_status: 'no_payment_required', url: null });
      events.push(setupCheckoutCompleted(session));
      return events;
    },
    setDefaultPaymentMethod(customer, paymentMethod) {
      if (paymentMethod !== null) attach(paymentMethod, customer);
      const previous = defaults.get(customer) ?? null;
      defaults.set(customer, paymentMethod);
      const known = customers.get(customer);
      return customerUpdated({
        id: customer,
        email: (known?.email as string | null | undefined) ?? null,
        metadata: (known?.metadata as Record<string, string> | undefined) ?? {},
        defaultPaymentMethod: paymentMethod,
        previousDefault: previous,
      });
    },
    detachPaymentMethod(paymentMethod) {
      const customer = attached.get(paymentMethod);
      if (customer === undefined) throw new Error(`fake-stripe: ${paymentMethod} is not attached`);
      attached.delete(paymentMethod);
      // Stripe clears a default that was this method (no customer.updated is built for it here)
      if (defaults.get(customer) === paymentMethod) defaults.set(customer, null);
      return paymentMethodDetached(paymentMethod, customer);
    },
    paymentIntentEvent(piId) {
      const pi = knownPaymentIntent(piId);
      if (pi.status === 'succeeded') return paymentIntentSucceeded(pi);
      if (pi.status === 'processing') return paymentIntentProcessing(pi);
      if (pi.status === 'requires_payment_method' && pi.last_payment_error) return paymentIntentPaymentFailed(pi);
      throw new Error(`fake-stripe: PaymentIntent ${piId} is ${String(pi.status)}: Stripe sends no event for it yet`);
    },
    settlePaymentIntent(piId, outcome) {
      const pi = knownPaymentIntent(piId);
      if (pi.status !== 'processing') throw new Error(`fake-stripe: PaymentIntent ${piId} is ${String(pi.status)}, not processing`);
      if (outcome === 'succeeded') {
        Object.assign(pi, { status: 'succeeded', amount_received: pi.amount });
        return paymentIntentSucceeded(pi);
      }
      // a debit that bounced: the attempt failed after processing
      Object.assign(pi, {
        status: 'requires_payment_method',
        last_payment_error: {
          type: 'card_error',
          code: 'payment_intent_payment_attempt_failed',
          decline_code: 'insufficient_funds',
          doc_url: 'https://docs.stripe.com/error-codes/payment-intent-payment-attempt-failed',
          message: 'The latest payment attempt of this PaymentIntent has failed or been canceled, and the attached payment method has been removed. You can try confirming again with a new payment method.',
          payment_method: paymentMethodObject(String(pi.payment_method), { customer: (pi.customer as string | null) ?? null }),
        },
      });
      return paymentIntentPaymentFailed(pi);
    },
    reset() {
      requests.length = 0;
      failures.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
