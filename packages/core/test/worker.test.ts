// runWorker (src/worker.ts).
//  - Top-ups: how a Stripe answer becomes the outcome the database records (chargeTopup and
//    stripeErrorOutcome), with a small in-test WorkerStripe: the charge is one off-session
//    PaymentIntent with the claim's idempotency key and metadata; PaymentIntent statuses and
//    thrown Stripe errors map to succeeded / processing / requires_action / declined / retry.
//    Over the real SQL, one run charges every due top-up, records each outcome and delivers the
//    events those write; a retried one goes again with the same key. (The end-to-end top-up
//    suites, with the fake Stripe and the webhook that lands the credits, are the SQL package's.)
//  - Deliveries, end to end on every transport against the real SQL: a local HTTP receiver
//    (127.0.0.1, a random port) records each request and checks its signature with
//    verifyWebhook; a receiver that fails twice gets the event on the third run, once the
//    simulated clock passes the retry schedule; 410 disables the endpoint; a receiver that never
//    answers or a closed port is a failure with the reason kept; eight failures are dead; no more
//    than 8 requests are in flight at once.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { describeIfCitus, describeIfPostgres } from '@creditkit/testing/vitest';
import { runWorker, verifyWebhook, type CreditkitNotification, type CreditkitServer, type WorkerStripe } from '../src/server.ts';
import type { ClaimedTopup } from '../src/results.ts';
import { chargeTopup, stripeErrorOutcome } from '../src/worker.ts';
import { TRANSPORTS, type Harness, type TransportFactory } from './support/transports.ts';

// ── Top-ups: Stripe's answers → outcomes ─────────────────────────────────────────────────────

const TOPUP: ClaimedTopup = {
  topupId: 41,
  attempt: 2,
  idempotencyKey: 'creditkit-topup-41',
  accountId: '00000000-0000-4000-8000-00000000a11c',
  unit: 'credits',
  amount: 1_000,
  chargeAmount: 500,
  currency: 'usd',
  customerId: 'cus_WorkerTest',
  paymentMethod: 'pm_WorkerTest',
  metadata: { creditkit_topup_id: '41', creditkit_account_id: '00000000-0000-4000-8000-00000000a11c', creditkit_unit: 'credits', creditkit_amount: '1000' },
};

/** A WorkerStripe that answers (or throws) `answer` and remembers what it was asked. */
function stripeAnswering(answer: { id: string; status: string } | Error): WorkerStripe & { calls: unknown[][] } {
  const calls: unknown[][] = [];
  return {
    calls,
    paymentIntents: {
      async create(params, options) {
        calls.push([params, options]);
        if (answer instanceof Error) throw answer;
        return answer;
      },
    },
  };
}

/** An error shaped as stripe-node throws them (type = class name, rawType = the API's type). */
function stripeError(type: string, rawType: string, fields: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(String(fields.message ?? `${type} from the test`)), { type, rawType, ...fields });
}

describe('runWorker top-ups: what Stripe answers becomes the recorded outcome', () => {
  it('charges the saved card off-session, once, with the claim\'s idempotency key and metadata', async () => {
    const stripe = stripeAnswering({ id: 'pi_1', status: 'succeeded' });
    expect(await chargeTopup(stripe, TOPUP)).toEqual({ outcome: 'succeeded', paymentIntent: 'pi_1' });
    expect(stripe.calls).toEqual([[
      { amount: 500, currency: 'usd', customer: 'cus_WorkerTest', payment_method: 'pm_WorkerTest', off_session: true, confirm: true, metadata: TOPUP.metadata },
      { idempotencyKey: 'creditkit-topup-41' },
    ]]);
  });

  it('maps each PaymentIntent status', async () => {
    const outcome = async (status: string) => chargeTopup(stripeAnswering({ id: 'pi_2', status }), TOPUP);
    expect(await outcome('processing')).toEqual({ outcome: 'processing', paymentIntent: 'pi_2' });
    expect(await outcome('requires_action')).toEqual({ outcome: 'requires_action', paymentIntent: 'pi_2' });
    // a decline reported on the intent, or a state retrying could not change: a failure, not a retry loop
    expect(await outcome('requires_payment_method')).toMatchObject({ outcome: 'declined', paymentIntent: 'pi_2', code: 'requires_payment_method' });
    expect(await outcome('canceled')).toMatchObject({ outcome: 'declined', code: 'canceled' });
  });

  it('maps thrown Stripe errors: authentication_required → requires_action with the intent, card errors → declined with the decline code, the rest → retry', async () => {
    const cases: Array<[Error, Record<string, unknown>]> = [
      [stripeError('StripeCardError', 'card_error', { code: 'authentication_required', payment_intent: { id: 'pi_auth' } }),
        { outcome: 'requires_action', paymentIntent: 'pi_auth', code: 'authentication_required' }],
      // the intent only on the raw body, and a card_declined whose decline code asks for authentication
      [stripeError('StripeCardError', 'card_error', { code: 'card_declined', decline_code: 'authentication_required', raw: { payment_intent: { id: 'pi_raw' } } }),
        { outcome: 'requires_action', paymentIntent: 'pi_raw' }],
      // a plain REST error object: `type` is the API's own
      [Object.assign(new Error('Your card was declined.'), { type: 'card_error', code: 'card_declined', decline_code: 'insufficient_funds', payment_intent: { id: 'pi_nsf' } }),
        { outcome: 'declined', paymentIntent: 'pi_nsf', code: 'insufficient_funds', message: 'Your card was declined.' }],
      [stripeError('StripeCardError', 'card_error', { code: 'expired_card' }), { outcome: 'declined', paymentIntent: null, code: 'expired_card' }],
      [stripeError('StripeCardError', 'card_error'), { outcome: 'declined', code: 'card_declined' }],
      [stripeError('StripeInvalidRequestError', 'invalid_request_error', { code: 'resource_missing' }), { outcome: 'declined', code: 'resource_missing' }],
      [stripeError('StripeIdempotencyError', 'idempotency_error'), { outcome: 'declined', code: 'idempotency_error' }],
      [stripeError('StripeConnectionError', 'api_connection_error'), { outcome: 'retry', code: 'StripeConnectionError' }],
      [stripeError('StripeAPIError', 'api_error'), { outcome: 'retry' }],
      [stripeError('StripeRateLimitError', 'rate_limit_error', { code: 'rate_limit' }), { outcome: 'retry', code: 'rate_limit' }],
      [new TypeError('fetch failed'), { outcome: 'retry', message: 'fetch failed' }],
    ];
    for (const [error, expected] of cases) {
      expect(await chargeTopup(stripeAnswering(error), TOPUP), error.message).toMatchObject(expected);
      expect(stripeErrorOutcome(error)).toMatchObject(expected);
    }
    expect(stripeErrorOutcome('a string')).toMatchObject({ outcome: 'retry', message: 'a string' });
  });
});

// ── Deliveries, end to end ───────────────────────────────────────────────────────────────────

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A local HTTP receiver; `answer` decides each response (a status, or 'hang' to never answer). */
class Receiver {
  readonly received: Received[] = [];
  answer: (request: Received, n: number) => number | 'hang' = () => 200;
  inFlight = 0;
  maxInFlight = 0;
  delayMs = 0;
  readonly #server: Server;
  readonly #hanging = new Set<() => void>();

  constructor() {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const request = { path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
        this.received.push(request);
        const status = this.answer(request, this.received.length);
        if (status === 'hang') {
          this.#hanging.add(() => res.destroy());
          return;
        }
        this.inFlight++;
        this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
        setTimeout(() => {
          this.inFlight--;
          res.writeHead(status, { 'content-type': 'text/plain' }).end('ok');
        }, this.delayMs);
      });
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return this;
  }

  url(path: string): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}${path}`;
  }

  on(path: string): Received[] {
    return this.received.filter((r) => r.path === path);
  }

  async close(): Promise<void> {
    for (const end of this.#hanging) end();
    this.#server.closeAllConnections();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}

/** A port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const T0 = Date.parse('2030-03-01T00:00:00Z');
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const at = (ms: number) => new Date(T0 + ms);

function deliveries(factory: TransportFactory) {
  let h: Harness;
  let ck: CreditkitServer;
  let receiver: Receiver;
  beforeAll(async () => {
    h = await factory.create();
    ck = h.creditkit;
    receiver = await new Receiver().start();
    await ck.upsertPlan({ id: 'worker_pro', name: 'Pro', allowance: 100 });
  });
  afterAll(async () => {
    await receiver?.close();
    await h?.close();
  });
  beforeEach(async () => {
    // each test has the receiver and the endpoints to itself
    receiver.received.length = 0;
    receiver.answer = () => 200;
    receiver.delayMs = 0;
    receiver.maxInFlight = 0;
    for (const e of await ck.webhookEndpoints()) {
      if (e.enabled) await ck.upsertWebhookEndpoint({ id: e.id, url: e.url, eventTypes: e.eventTypes, enabled: false });
    }
  });

  /** An endpoint on the receiver at /<id>; returns its secret. */
  async function endpoint(id: string, eventTypes: string[] | null = null): Promise<string> {
    const stored = await ck.upsertWebhookEndpoint({ id, url: receiver.url(`/${id}`), eventTypes });
    expect(stored).toMatchObject({ id, url: receiver.url(`/${id}`), eventTypes, enabled: true, disabledReason: null });
    return stored.secret;
  }

  /** A plan.changed event (an account put on a plan); returns the account. */
  async function planChange(): Promise<string> {
    const account = randomUUID();
    await ck.setPlan({ accountId: account, planId: 'worker_pro', now: at(0) });
    return account;
  }

  /** The deliveries to an endpoint as the tables hold them (superuser SQL: evidence, not the SDK's own answers). */
  const deliveriesTo = (endpointId: string) =>
    h.query<{ id: number; notification_id: string; status: string; attempts: number; last_status: number | null; last_error: string | null }>(
      `select id::float8 as id, notification_id, status, attempts, last_status, last_error from creditkit.deliveries where endpoint_id = $1 order by id`,
      [endpointId]);
  const eventsOf = (accountId: string) =>
    h.query<{ id: string; type: string; payload: Record<string, unknown> }>(
      'select id, type, payload from creditkit.notifications where account_id = $1 order by id', [accountId]);

  /** Every request to `path` carries a signature verifyWebhook accepts at `when`; returns the payloads. */
  async function verified(path: string, secret: string, when: (r: Received, i: number) => Date): Promise<CreditkitNotification[]> {
    return Promise.all(receiver.on(path).map(async (r, i) => {
      expect(r.headers['content-type']).toBe('application/json');
      expect(r.headers['user-agent']).toBe('creditkit-webhooks');
      const payload = await verifyWebhook(r.body, r.headers as Record<string, string>, secret, { now: when(r, i), toleranceSeconds: 0 });
      expect(r.headers['webhook-id']).toBe(payload.id);
      return payload;
    }));
  }

  it('delivers each event once, signed, to the endpoints that want its type; nothing is left for the next run', async () => {
    const secret = await endpoint('worker-all');
    await endpoint('worker-low-only', ['balance.low']);
    const account = await planChange();
    const events = await eventsOf(account);
    expect(events.map((e) => e.type)).toContain('plan.changed');

    const report = await runWorker({ creditkit: ck, now: at(MINUTE) });
    expect(report.topups).toEqual({ claimed: 0, charged: 0, declined: 0, actionRequired: 0, retried: 0 });
    expect(report.deliveries).toEqual({ claimed: events.length, delivered: events.length, failed: 0, dead: 0, disabled: 0 });
    expect(receiver.on('/worker-low-only')).toEqual([]);

    const payloads = await verified('/worker-all', secret, () => at(MINUTE));
    expect(payloads.map((p) => p.id).sort()).toEqual(events.map((e) => e.id).sort());
    const change = payloads.find((p) => p.type === 'plan.changed')!;
    const event = events.find((e) => e.id === change.id)!;
    // the body is the event: its id, type, when, and the data creditkit_notifications shows
    expect(change).toEqual({ id: event.id, type: 'plan.changed', timestamp: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T/), data: event.payload });
    expect(change.data).toMatchObject({ account_id: account, plan_id: 'worker_pro' });
    expect(receiver.on('/worker-all').find((r) => r.headers['webhook-id'] === change.id)!.headers['webhook-timestamp'])
      .toBe(String(Math.floor(at(MINUTE).getTime() / 1000)));

    expect((await deliveriesTo('worker-all')).filter((d) => d.notification_id === change.id)).toEqual([
      { id: expect.any(Number), notification_id: change.id, status: 'delivered', attempts: 1, last_status: 200, last_error: null },
    ]);
    expect((await runWorker({ creditkit: ck, now: at(2 * MINUTE) })).deliveries.claimed).toBe(0);
    expect(receiver.received).toHaveLength(events.length);
    const listed = (await ck.webhookEndpoints()).find((e) => e.id === 'worker-all')!;
    expect(listed).toMatchObject({ enabled: true, pending: 0, dead: 0 });
    expect(listed.delivered).toBeGreaterThanOrEqual(events.length);
    expect(listed).not.toHaveProperty('secret');
  });

  it('a receiver that fails twice gets the event on the third run, once the clock passes the retry schedule (5 s, then 5 min)', async () => {
    const secret = await endpoint('worker-flaky', ['plan.changed']);
    receiver.answer = (_, n) => (n <= 2 ? 503 : 204);
    await planChange();
    const run = async (ms: number) => (await runWorker({ creditkit: ck, now: at(ms) })).deliveries;

    expect(await run(0)).toMatchObject({ claimed: 1, failed: 1 });
    expect(await run(4 * SECOND)).toMatchObject({ claimed: 0 }); // not due yet
    expect(await run(5 * SECOND)).toMatchObject({ claimed: 1, failed: 1 });
    expect(await run(5 * SECOND + 4 * MINUTE)).toMatchObject({ claimed: 0 });
    expect(await run(5 * SECOND + 5 * MINUTE)).toEqual({ claimed: 1, delivered: 1, failed: 0, dead: 0, disabled: 0 });
    expect(await run(HOUR)).toMatchObject({ claimed: 0 });

    const times = [0, 5 * SECOND, 5 * SECOND + 5 * MINUTE];
    const payloads = await verified('/worker-flaky', secret, (_, i) => at(times[i]!));
    expect(payloads).toHaveLength(3);
    expect(new Set(payloads.map((p) => p.id)).size).toBe(1); // the same event each time, same webhook-id
    expect(new Set(receiver.on('/worker-flaky').map((r) => r.body)).size).toBe(1); // byte for byte
    expect(await deliveriesTo('worker-flaky')).toMatchObject([{ notification_id: payloads[0]!.id, status: 'delivered', attempts: 3, last_status: 204 }]);
  });

  it('410 Gone disables the endpoint: nothing more is sent to it until the operator enables it again', async () => {
    await endpoint('worker-gone', ['plan.changed']);
    receiver.answer = () => 410;
    await planChange();
    expect((await runWorker({ creditkit: ck, now: at(0) })).deliveries).toEqual({ claimed: 1, delivered: 0, failed: 0, dead: 0, disabled: 1 });
    expect((await ck.webhookEndpoints()).find((e) => e.id === 'worker-gone')).toMatchObject({ enabled: false, disabledReason: 'gone' });
    const [delivery, ...none] = await deliveriesTo('worker-gone');
    expect(none).toEqual([]);
    expect(delivery).toMatchObject({ status: 'canceled', last_status: 410 });

    await planChange();
    expect((await runWorker({ creditkit: ck, now: at(HOUR) })).deliveries.claimed).toBe(0);
    expect(receiver.received).toHaveLength(1);

    // the operator fixes the receiver, enables the endpoint and replays the canceled delivery
    receiver.answer = () => 200;
    await ck.upsertWebhookEndpoint({ id: 'worker-gone', url: receiver.url('/worker-gone'), eventTypes: ['plan.changed'] });
    expect(await ck.replayDelivery({ deliveryId: delivery!.id, now: at(2 * HOUR) })).toEqual({ status: 'pending', nextAttemptAt: expect.any(String) });
    expect((await runWorker({ creditkit: ck, now: at(2 * HOUR) })).deliveries).toMatchObject({ claimed: 1, delivered: 1 });
    expect(receiver.received.at(-1)!.headers['webhook-id']).toBe(delivery!.notification_id);
  });

  it('no answer within timeoutMs, or nothing listening, is a failure with the reason recorded', async () => {
    await endpoint('worker-hangs', ['plan.changed']);
    const port = await closedPort();
    await ck.upsertWebhookEndpoint({ id: 'worker-closed', url: `http://127.0.0.1:${port}/hook`, eventTypes: ['plan.changed'] });
    receiver.answer = () => 'hang';
    await planChange();
    const started = Date.now();
    expect((await runWorker({ creditkit: ck, now: at(0), timeoutMs: 300 })).deliveries).toEqual({ claimed: 2, delivered: 0, failed: 2, dead: 0, disabled: 0 });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await deliveriesTo('worker-hangs')).toMatchObject([{ status: 'pending', attempts: 1, last_status: null, last_error: 'no answer within 300 ms' }]);
    expect(await deliveriesTo('worker-closed')).toMatchObject([{ status: 'pending', attempts: 1, last_status: null, last_error: expect.stringContaining('ECONNREFUSED') }]);
  });

  it('eight failed attempts on the schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) and the delivery is dead', async () => {
    await endpoint('worker-broken', ['plan.changed']);
    receiver.answer = () => 500;
    await planChange();
    const delays = [5 * SECOND, 5 * MINUTE, 30 * MINUTE, 2 * HOUR, 5 * HOUR, 10 * HOUR, 10 * HOUR];
    let now = 0;
    for (const delay of delays) {
      expect((await runWorker({ creditkit: ck, now: at(now) })).deliveries).toMatchObject({ claimed: 1, failed: 1 });
      expect((await runWorker({ creditkit: ck, now: at(now + delay - SECOND) })).deliveries.claimed).toBe(0);
      now += delay;
    }
    expect((await runWorker({ creditkit: ck, now: at(now) })).deliveries).toEqual({ claimed: 1, delivered: 0, failed: 0, dead: 1, disabled: 0 });
    expect((await runWorker({ creditkit: ck, now: at(now + 100 * HOUR) })).deliveries.claimed).toBe(0);
    expect(receiver.received).toHaveLength(8);
    expect((await ck.webhookEndpoints()).find((e) => e.id === 'worker-broken')).toMatchObject({ enabled: true, dead: 1, pending: 0 });
  });

  it('sends at most 8 at once and takes at most `limit` per run', async () => {
    await endpoint('worker-busy', ['plan.changed']);
    receiver.delayMs = 50;
    for (let i = 0; i < 30; i++) await planChange();
    const first = await runWorker({ creditkit: ck, now: at(0), limit: 20 });
    expect(first.deliveries).toEqual({ claimed: 20, delivered: 20, failed: 0, dead: 0, disabled: 0 });
    expect(receiver.maxInFlight).toBe(8);
    expect((await runWorker({ creditkit: ck, now: at(0) })).deliveries).toMatchObject({ claimed: 10, delivered: 10 });
    expect(new Set(receiver.received.map((r) => r.headers['webhook-id'])).size).toBe(30);
  });

  it('charges the due top-ups through the Stripe client, records each outcome, and sends the events they write in the same run', async () => {
    const unit = 'worker_topup';
    await ck.upsertUnit({ id: unit, name: 'Worker top-ups' });
    await ck.setAutoTopupTerms({ unit, currency: 'usd', unitPrice: 3, minAmount: 10, maxAmount: 1_000, cooldown: '1 day' });
    const secret = await endpoint('worker-topups', ['topup.failed', 'topup.action_required']);
    /** An account with a card on file and auto top-up of 100 below 50, spent down to 40: one top-up due. */
    const holder = async (customer: string): Promise<string> => {
      const account = randomUUID();
      await ck.grant({ accountId: account, amount: 100, unit, now: at(0) });
      await ck.stripeLinkCustomer({ accountId: account, customerId: customer });
      await ck.stripeApply({ now: at(0), event: {
        id: `evt_${customer}`, object: 'event', type: 'setup_intent.succeeded', created: T0 / 1000, livemode: false,
        data: { object: { id: `seti_${customer}`, object: 'setup_intent', customer, payment_method: `pm_${customer}`, status: 'succeeded', usage: 'off_session' } },
      } });
      await ck.setAutoTopup({ accountId: account, unit, enabled: true, threshold: 50, amount: 100, now: at(0) });
      await ck.consume({ accountId: account, amount: 60, unit, now: at(0) });
      return account;
    };
    const paid = await holder('cus_WorkerPaid');
    const declined = await holder('cus_WorkerDeclined');
    const authenticate = await holder('cus_WorkerAuth');
    const unreachable = await holder('cus_WorkerUnreachable');

    const keys: Record<string, string[]> = {};
    let stripeDown = true;
    const stripe: WorkerStripe = {
      paymentIntents: {
        async create(params, options) {
          const customer = params.customer as string;
          (keys[customer] ??= []).push(options!.idempotencyKey!);
          expect(params).toMatchObject({ amount: 300, currency: 'usd', payment_method: `pm_${customer}`, off_session: true, confirm: true });
          if (customer === 'cus_WorkerPaid') return { id: 'pi_WorkerPaid', status: 'succeeded' };
          if (customer === 'cus_WorkerDeclined') throw stripeError('StripeCardError', 'card_error', { code: 'card_declined', decline_code: 'insufficient_funds' });
          if (customer === 'cus_WorkerAuth') throw stripeError('StripeCardError', 'card_error', { code: 'authentication_required', payment_intent: { id: 'pi_WorkerAuth' } });
          if (stripeDown) throw stripeError('StripeConnectionError', 'api_connection_error');
          return { id: 'pi_WorkerLater', status: 'processing' };
        },
      },
    };

    const first = await runWorker({ creditkit: ck, stripe, now: at(MINUTE) });
    expect(first.topups).toEqual({ claimed: 4, charged: 1, declined: 1, actionRequired: 1, retried: 1 });
    expect(first.deliveries).toEqual({ claimed: 2, delivered: 2, failed: 0, dead: 0, disabled: 0 });
    const topup = async (account: string) => (await ck.topups({ accountId: account }))[0];
    expect(await topup(paid)).toMatchObject({ status: 'processing', paymentIntent: 'pi_WorkerPaid' }); // credits land with the webhook
    // still below its threshold: the next top-up is queued at once, and charged after the cooldown
    expect(await ck.topups({ accountId: declined })).toMatchObject([{ status: 'pending' }, { status: 'failed', failureCode: 'insufficient_funds' }]);
    expect(await topup(authenticate)).toMatchObject({ status: 'action_required', paymentIntent: 'pi_WorkerAuth' });
    expect(await topup(unreachable)).toMatchObject({ status: 'pending' });

    // the events the results wrote went out in this run, signed
    const payloads = await verified('/worker-topups', secret, () => at(MINUTE));
    expect(payloads.map((p) => [p.type, p.data.account_id]).sort()).toEqual([['topup.action_required', authenticate], ['topup.failed', declined]]);

    // Stripe is back: the retried top-up goes with the same idempotency key, after the 30 second pause
    stripeDown = false;
    expect((await runWorker({ creditkit: ck, stripe, now: at(MINUTE + 10 * SECOND) })).topups.claimed).toBe(0);
    expect((await runWorker({ creditkit: ck, stripe, now: at(2 * MINUTE) })).topups).toMatchObject({ claimed: 1, charged: 1 });
    expect(keys.cus_WorkerUnreachable).toHaveLength(2);
    expect(new Set(keys.cus_WorkerUnreachable).size).toBe(1);
    expect(Object.values(keys).flat().filter((k) => k !== keys.cus_WorkerUnreachable![0])).toHaveLength(3);
    expect(await topup(unreachable)).toMatchObject({ status: 'processing', paymentIntent: 'pi_WorkerLater' });
  });

  it('with a Stripe client and no top-up due, Stripe is not called', async () => {
    const stripe = stripeAnswering({ id: 'pi_none', status: 'succeeded' });
    const report = await runWorker({ creditkit: ck, stripe, now: at(HOUR) });
    expect(report.topups).toEqual({ claimed: 0, charged: 0, declined: 0, actionRequired: 0, retried: 0 });
    expect(stripe.calls).toEqual([]); // no account here has auto top-up
  });
}

for (const factory of TRANSPORTS) {
  (factory.citus ? describeIfCitus : factory.postgres ? describeIfPostgres : describe)(`runWorker deliveries over ${factory.name}`, () => deliveries(factory));
}
