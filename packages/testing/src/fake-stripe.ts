// A local stand-in for the part of Stripe's API that @creditkit/stripe calls, so the real Stripe
// SDK can be pointed at it: `new Stripe(key, { host: '127.0.0.1', port, protocol: 'http' })`.
// It records every request (method, path, the form-encoded body parsed into objects, the
// Idempotency-Key header) and answers with objects shaped like Stripe's:
//
//   POST /v1/customers                 -> customer      (cus_...)
//   POST /v1/checkout/sessions         -> checkout.session (cs_test_..., open, with a url)
//   POST /v1/billing_portal/sessions   -> billing_portal.session (bps_..., with a url)
//
// Idempotency as Stripe documents it: a key seen before with the same parameters replays the
// first response (header Idempotent-Replayed: true); with other parameters it is a 400
// idempotency_error. Anything else is a 404 invalid_request_error.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';

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

  const now = () => Math.floor(Date.now() / 1000);

  function create(path: string, body: Form): { status: number; object: Record<string, unknown> } | undefined {
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
    const result = create(path, record.body);
    if (!result) return stripeError(res, 404, 'invalid_request_error', `Unrecognized request URL (${method}: ${path}).`);
    const response = JSON.stringify(result.object);
    if (key !== undefined) idempotency.set(key, { method, path, body: raw, status: result.status, response });
    res.writeHead(result.status, { 'content-type': 'application/json', 'request-id': id('req_') });
    res.end(response);
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
    reset() {
      requests.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
