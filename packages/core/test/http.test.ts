// The route helpers of @creditkit/core/http (meter, withCredits, paymentRequired, errorResponse)
// against the real SDK on one embedded PGlite database, with real Request/Response objects:
// 402/401/4xx answers, holds settled or released around the handler, idempotent retries,
// concurrency, and one end-to-end call through a node:http server. Every test uses fresh accounts.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { pgliteTemplate } from '@creditkit/testing';
import { createEmbeddedCreditkit, type EmbeddedCreditkit } from '../src/embedded.ts';
import {
  AutoTopupUnavailableError,
  CreditkitError,
  HoldClosedError,
  InsufficientCreditsError,
  InvalidAmountError,
  UnknownAccountError,
  UnknownEndpointError,
  UnknownEventError,
  UnknownTopupOrDeliveryError,
  UnknownUnitError,
} from '../src/errors.ts';
import { errorResponse, meter, paymentRequired, withCredits, type CreditsContext } from '../src/http.ts';
import { CreditkitServer } from '../src/server.ts';
import { TransportError, type Transport } from '../src/transport.ts';

let kit: EmbeddedCreditkit;
let creditkit: CreditkitServer;

// Prices: 'http.ping' costs 3 a unit; 'http.render' 2 by default, 5 for {quality: 'hd'}; 'http.unit' 1.
const PING = 'http.ping';
const RENDER = 'http.render';
const UNIT = 'http.unit';
const UNPRICED = 'http.unpriced';
// Units (features): 'messages' is metered (a balance of its own); 'hd' is a boolean plan flag.
const MESSAGES = 'messages';
const FLAG = 'hd';

beforeAll(async () => {
  kit = await createEmbeddedCreditkit({ loadDataDir: await pgliteTemplate() });
  creditkit = kit.creditkit;
  await creditkit.setPrice({ event: PING, creditsPerUnit: 3 });
  await creditkit.setPrice({ event: RENDER, creditsPerUnit: 2 });
  await creditkit.setPrice({ event: RENDER, creditsPerUnit: 5, dimensions: { quality: 'hd' } });
  await creditkit.setPrice({ event: UNIT, creditsPerUnit: 1 });
  await creditkit.upsertUnit({ id: MESSAGES, name: 'Messages' });
  await creditkit.upsertUnit({ id: FLAG, name: 'HD', kind: 'boolean' });
});

afterAll(async () => {
  await kit?.close();
});

/** A fresh account with `credits` granted (none at all, not even the account, when 0). */
async function account(credits: number): Promise<string> {
  const id = randomUUID();
  if (credits > 0) await creditkit.grant({ accountId: id, amount: credits });
  return id;
}

const spendable = async (accountId: string, unit?: string) => (await creditkit.balance({ accountId, unit })).balance;

/** A fresh account with `credits` credits and `messages` messages (neither granted when 0). */
async function accountWith(credits: number, messages: number): Promise<string> {
  const id = await account(credits);
  if (messages > 0) await creditkit.grant({ accountId: id, amount: messages, unit: MESSAGES });
  return id;
}
const ledger = async (accountId: string) => (await creditkit.history({ accountId })).entries;

interface HoldRow {
  id: number;
  status: string;
  amount: number;
  settled_amount: number | null;
  charged: number | null;
}
async function holdsOf(accountId: string): Promise<HoldRow[]> {
  const { rows } = await kit.db.query<HoldRow>(
    'select id, status, amount, settled_amount, charged from creditkit.holds where account_id = $1 order by id',
    [accountId],
  );
  return rows;
}

/** A request from a signed-in user (the `x-user` header is the account id; none means anonymous). */
function request(user: string | null, path = '/api', init: RequestInit = {}): Request {
  const headers = new Headers(init.headers);
  if (user !== null) headers.set('x-user', user);
  return new Request(`http://app.test${path}`, { method: 'POST', ...init, headers });
}
const userOf = (req: Request) => req.headers.get('x-user');

const ok = () => Response.json({ ok: true });

async function expectPaymentRequired(response: Response, balance: number, required: number) {
  expect(response.status).toBe(402);
  expect(response.headers.get('content-type')).toMatch(/^application\/json\b/);
  expect(await response.json()).toEqual({
    error: 'insufficient_credits',
    message: `This needs ${required} credits; the account has ${balance}.`,
    balance,
    required,
  });
}

// ── paymentRequired / errorResponse ─────────────────────────────────────────────────────────

describe('paymentRequired and errorResponse', () => {
  it('paymentRequired is a 402 JSON answer that keeps the caller headers but not a caller status', async () => {
    const response = paymentRequired(4, 9, { status: 200, headers: { 'x-trace': 't1' } });
    expect(response.headers.get('x-trace')).toBe('t1');
    await expectPaymentRequired(response, 4, 9);
  });

  it('paymentRequired names the unit that ran out, and is the credits answer byte for byte when the unit is credits', async () => {
    const response = paymentRequired(0, 1, { unit: MESSAGES, headers: { 'x-trace': 't2' } });
    expect([response.status, response.headers.get('x-trace')]).toEqual([402, 't2']);
    expect(await response.text()).toBe(
      '{"error":"insufficient_credits","message":"This needs 1 messages; the account has 0.","balance":0,"required":1,"unit":"messages"}',
    );
    const credits = '{"error":"insufficient_credits","message":"This needs 9 credits; the account has 4.","balance":4,"required":9}';
    expect(await paymentRequired(4, 9, { unit: 'credits' }).text()).toBe(credits);
    expect(await paymentRequired(4, 9).text()).toBe(credits);
  });

  it('errorResponse maps codes to statuses and keeps the stable code in `error`', async () => {
    const short = errorResponse(new InsufficientCreditsError('short', { balance: 1, required: 5 }));
    await expectPaymentRequired(short, 1, 5);
    // a raising consume of a unit: the 402 names the unit its CK002 detail named
    const shortOfMessages = errorResponse(new InsufficientCreditsError('short', { balance: 0, required: 2, unit: 'messages' }));
    expect(shortOfMessages.status).toBe(402);
    expect(await shortOfMessages.json()).toEqual({
      error: 'insufficient_credits', message: 'This needs 2 messages; the account has 0.', balance: 0, required: 2, unit: 'messages',
    });

    const unknown = errorResponse(new UnknownEventError('no price'));
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ error: 'unknown_event', message: 'no price' });

    const invalid = errorResponse(new InvalidAmountError('bad amount'));
    expect(invalid.status).toBe(400);
    expect(invalid.headers.get('content-type')).toMatch(/^application\/json\b/);
    expect(await invalid.json()).toEqual({ error: 'invalid_amount', message: 'bad amount' });

    expect(errorResponse(new HoldClosedError('closed')).status).toBe(409);
    expect(errorResponse(new UnknownUnitError('no such unit')).status).toBe(404);
    expect(errorResponse(new UnknownEndpointError('no such endpoint')).status).toBe(404);
    expect(errorResponse(new UnknownTopupOrDeliveryError('no such delivery')).status).toBe(404);
    expect(errorResponse(new AutoTopupUnavailableError('no card on file')).status).toBe(409);
    expect(errorResponse(new CreditkitError('unavailable', 'down')).status).toBe(503);
    // the 503s say when to come back; no other status does
    for (const code of ['lock_timeout', 'statement_timeout', 'concurrency_conflict'] as const) {
      const busy = errorResponse(new CreditkitError(code, 'busy'));
      expect([busy.status, busy.headers.get('retry-after')], code).toEqual([503, '1']);
    }
    expect(errorResponse(new CreditkitError('unavailable', 'down')).headers.get('retry-after')).toBe('5');
    expect(errorResponse(new HoldClosedError('closed')).headers.get('retry-after')).toBeNull();
  });

  it('withCredits answers 503 with Retry-After when the account stays locked past the retry, and the handler never runs', async () => {
    const id = await account(10);
    let attempts = 0;
    const locked: Transport = {
      kind: 'locked',
      async rpc(fn, args) {
        if (fn !== 'creditkit_meter') return kit.creditkit.transport.rpc(fn, args);
        attempts++;
        throw new TransportError({ code: '55P03', message: 'canceling statement due to lock timeout' }, new Error('lock timeout'));
      },
    };
    const handler = vi.fn(() => new Response('ran'));
    const route = withCredits(new CreditkitServer(locked, { retryDelayMs: 0 }), { event: PING, account: () => id }, handler);
    const response = await route(new Request('http://localhost/api'));
    expect([response.status, response.headers.get('retry-after'), attempts]).toEqual([503, '1', 2]);
    expect(await response.json()).toEqual({ error: 'lock_timeout', message: 'canceling statement due to lock timeout' });
    expect(handler).not.toHaveBeenCalled();
    expect(await spendable(id)).toBe(10);
  });
});

// ── meter() ─────────────────────────────────────────────────────────────────────────────────

describe('meter', () => {
  it('charges an account that can pay: not blocked, no response, balance down in the database', async () => {
    const id = await account(10);
    const outcome = await meter(creditkit, { accountId: id, event: PING });
    expect(outcome).toMatchObject({ blocked: false, response: null, allowed: true, amount: 3, balance: 7 });
    expect(outcome.transactionId).toEqual(expect.any(Number));

    expect(await spendable(id)).toBe(7);
    const [last, ...rest] = await ledger(id);
    expect(last).toMatchObject({ id: outcome.transactionId, kind: 'consume', amount: -3, balanceAfter: 7, event: PING });
    expect(rest.map((e) => e.kind)).toEqual(['grant']);
  });

  it('prices quantity and dimensions from the price list', async () => {
    const id = await account(100);
    const hd = await meter(creditkit, { accountId: id, event: RENDER, quantity: 3, dimensions: { quality: 'hd' } });
    expect(hd).toMatchObject({ blocked: false, amount: 15, balance: 85 });
    const sd = await meter(creditkit, { accountId: id, event: RENDER, quantity: 3, dimensions: { quality: 'sd' } });
    expect(sd).toMatchObject({ blocked: false, amount: 6, balance: 79 });
    expect(await spendable(id)).toBe(79);
  });

  it('blocks an account that is short with a 402 JSON answer and charges nothing', async () => {
    const id = await account(2);
    const outcome = await meter(creditkit, { accountId: id, event: PING });
    expect(outcome).toMatchObject({ blocked: true, allowed: false, balance: 2, amount: 3, transactionId: null });
    expect(outcome.response).toBeInstanceOf(Response);
    await expectPaymentRequired(outcome.response!, 2, 3);

    expect(await spendable(id)).toBe(2);
    expect((await ledger(id)).map((e) => e.kind)).toEqual(['grant']);
  });

  it('blocks an account that was never granted anything with balance 0, without creating it', async () => {
    const id = await account(0);
    const outcome = await meter(creditkit, { accountId: id, event: PING, quantity: 4 });
    expect(outcome).toMatchObject({ blocked: true, allowed: false, balance: 0, amount: 12, transactionId: null });
    await expectPaymentRequired(outcome.response!, 0, 12);
    await expect(creditkit.balance({ accountId: id })).rejects.toBeInstanceOf(UnknownAccountError);
  });

  it('throws UnknownEventError for an event with no price, for known and unknown accounts alike', async () => {
    const funded = await account(10);
    await expect(meter(creditkit, { accountId: funded, event: UNPRICED })).rejects.toBeInstanceOf(UnknownEventError);
    expect(await spendable(funded)).toBe(10);
    // The never-granted path quotes the event to fill in `required`; the quote fails the same way.
    await expect(meter(creditkit, { accountId: randomUUID(), event: UNPRICED })).rejects.toBeInstanceOf(UnknownEventError);
  });

  it('charges once for a replayed idempotency key, even when the balance could not pay again', async () => {
    const id = await account(5);
    const first = await meter(creditkit, { accountId: id, event: PING, idempotencyKey: 'req-1' });
    const replay = await meter(creditkit, { accountId: id, event: PING, idempotencyKey: 'req-1' });
    expect(first).toMatchObject({ blocked: false, amount: 3, balance: 2 });
    // 2 left cannot pay 3, but a replay is the first result, not a new charge.
    expect(replay).toMatchObject({ blocked: false, response: null, amount: 3, transactionId: first.transactionId });
    expect(await spendable(id)).toBe(2);
    expect((await ledger(id)).filter((e) => e.kind === 'consume')).toHaveLength(1);

    // A new key is a new charge, and this one is short.
    const other = await meter(creditkit, { accountId: id, event: PING, idempotencyKey: 'req-2' });
    expect(other.blocked).toBe(true);
  });
});

// ── withCredits, metering mode ─────────────────────────────────────────────────────────────

describe('withCredits, metering mode', () => {
  it('charges, then runs the handler with the charge in its context, and passes its response through', async () => {
    const id = await account(10);
    const handler = vi.fn(async (_req: Request, credits: CreditsContext) => {
      expect(await spendable(id)).toBe(7); // charged before the handler ran
      return Response.json({ account: credits.accountId }, { status: 201, headers: { 'x-handler': 'yes' } });
    });
    const route = withCredits(creditkit, { account: userOf, event: PING }, handler);

    const response = await route(request(id));
    expect(response.status).toBe(201);
    expect(response.headers.get('x-handler')).toBe('yes');
    expect(await response.json()).toEqual({ account: id });
    expect(handler).toHaveBeenCalledTimes(1);
    const credits = handler.mock.calls[0]![1];
    expect(credits.metered).toMatchObject({ allowed: true, amount: 3, balance: 7 });
    expect(credits.metered!.transactionId).toEqual(expect.any(Number));
    expect(credits.hold).toBeNull();
    expect(await spendable(id)).toBe(7);
  });

  it('answers 402 without running the handler when the account is short', async () => {
    const id = await account(2);
    const handler = vi.fn(ok);
    const route = withCredits(creditkit, { account: userOf, event: PING }, handler);
    await expectPaymentRequired(await route(request(id)), 2, 3);
    expect(handler).not.toHaveBeenCalled();
    expect(await spendable(id)).toBe(2);

    // A user that has no account yet: 402 with balance 0, not an error.
    await expectPaymentRequired(await route(request(randomUUID())), 0, 3);
    expect(handler).not.toHaveBeenCalled();
  });

  it('answers 401 JSON when `account` gives no account (null, undefined, empty, async)', async () => {
    const handler = vi.fn(ok);
    const resolvers = [() => null, () => undefined, () => '', async () => null];
    for (const resolver of resolvers) {
      const route = withCredits(creditkit, { account: resolver, event: PING }, handler);
      const response = await route(request(null));
      expect(response.status).toBe(401);
      expect(response.headers.get('content-type')).toMatch(/^application\/json\b/);
      expect(await response.json()).toEqual({ error: 'unauthenticated', message: expect.any(String) });
    }
    expect(handler).not.toHaveBeenCalled();
  });

  it('reads quantity and dimensions from the request', async () => {
    const id = await account(100);
    const route = withCredits(
      creditkit,
      {
        account: userOf,
        event: RENDER,
        quantity: (req) => Number(new URL(req.url).searchParams.get('n')),
        dimensions: async (req) => ({ quality: req.headers.get('x-quality') ?? 'sd' }),
      },
      (_req, credits) => Response.json({ charged: credits.metered!.amount }),
    );

    const hd = await route(request(id, '/render?n=3', { headers: { 'x-quality': 'hd' } }));
    expect(await hd.json()).toEqual({ charged: 15 });
    const sd = await route(request(id, '/render?n=4'));
    expect(await sd.json()).toEqual({ charged: 8 });
    expect(await spendable(id)).toBe(100 - 15 - 8);
  });

  it('turns a CreditkitError into a JSON error with its stable code and a 4xx status, handler not run', async () => {
    const id = await account(10);
    const handler = vi.fn(ok);

    const zero = withCredits(creditkit, { account: userOf, event: PING, quantity: () => 0 }, handler);
    const response = await zero(request(id));
    expect(response.status).toBe(400);
    expect(response.headers.get('content-type')).toMatch(/^application\/json\b/);
    expect(await response.json()).toEqual({ error: 'invalid_amount', message: expect.any(String) });

    const fractional = withCredits(creditkit, { account: userOf, event: PING, quantity: 1.5 }, handler);
    expect(await (await fractional(request(id))).json()).toMatchObject({ error: 'invalid_amount' });

    const notUuid = withCredits(creditkit, { account: () => 'not-a-uuid', event: PING }, handler);
    const bad = await notUuid(request(null));
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: 'invalid_argument' });

    // An unpriced event is a 404 with code unknown_event (see the report: arguably a server error).
    const unpriced = withCredits(creditkit, { account: userOf, event: UNPRICED }, handler);
    const missing = await unpriced(request(id));
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: 'unknown_event' });

    expect(handler).not.toHaveBeenCalled();
    expect(await spendable(id)).toBe(10);
  });

  it('charges once for requests with the same idempotency key (the handler runs for each)', async () => {
    const id = await account(10);
    const handler = vi.fn((_req: Request, _credits: CreditsContext) => ok());
    const route = withCredits(
      creditkit,
      { account: userOf, event: PING, idempotencyKey: (req) => req.headers.get('idempotency-key') },
      handler,
    );
    const init = { headers: { 'idempotency-key': 'k-1' } };
    expect((await route(request(id, '/api', init))).status).toBe(200);
    expect((await route(request(id, '/api', init))).status).toBe(200);
    expect(handler).toHaveBeenCalledTimes(2);
    expect(await spendable(id)).toBe(7);
    expect(handler.mock.calls[1]![1].metered!.transactionId).toBe(handler.mock.calls[0]![1].metered!.transactionId);
  });

  it('keeps the charge when the handler throws, and rethrows the error', async () => {
    const id = await account(10);
    const boom = new Error('model down');
    const route = withCredits(creditkit, { account: userOf, event: PING }, () => {
      throw boom;
    });
    await expect(route(request(id))).rejects.toBe(boom);
    expect(await spendable(id)).toBe(7);
  });

  it('passes extra handler arguments (a Next.js route context) through', async () => {
    const id = await account(10);
    const route = withCredits(
      creditkit,
      { account: userOf, event: PING },
      async (_req, _credits, context: { params: Promise<{ slug: string }> }) => Response.json(await context.params),
    );
    const response = await route(request(id), { params: Promise.resolve({ slug: 'abc' }) });
    expect(await response.json()).toEqual({ slug: 'abc' });
  });
});

// ── withCredits, reserve mode ──────────────────────────────────────────────────────────────

describe('withCredits, reserve mode', () => {
  it('holds the reserve while the handler runs, then settles what charge() says and frees the rest', async () => {
    const id = await account(100);
    let during: number | undefined;
    const route = withCredits(creditkit, { account: userOf, reserve: 30 }, async (_req, credits) => {
      during = await spendable(id);
      expect(credits.metered).toBeNull();
      expect(credits.hold).toMatchObject({ allowed: true, holdId: expect.any(Number), balance: 70 });
      expect(await holdsOf(id)).toMatchObject([{ id: credits.hold!.holdId, status: 'open', amount: 30 }]);
      credits.charge(12, 4_000);
      return Response.json({ done: true });
    });

    const response = await route(request(id));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ done: true });
    expect(during).toBe(70);
    expect(await spendable(id)).toBe(88);

    const [hold] = await holdsOf(id);
    expect(hold).toMatchObject({ status: 'settled', amount: 30, settled_amount: 12, charged: 12 });
    const [settle, ...rest] = await ledger(id);
    expect(settle).toMatchObject({ kind: 'consume', amount: -12, balanceAfter: 88 });
    expect(settle!.metadata).toMatchObject({ hold_id: hold!.id, reserved: 30, actual: 12 });
    expect(rest.map((e) => e.kind)).toEqual(['grant']);
  });

  it('takes the reserve from the request when it is a function', async () => {
    const id = await account(100);
    const route = withCredits(
      creditkit,
      { account: userOf, reserve: async (req) => Number(req.headers.get('x-estimate')) },
      async () => {
        expect(await spendable(id)).toBe(60);
        return ok();
      },
    );
    expect((await route(request(id, '/api', { headers: { 'x-estimate': '40' } }))).status).toBe(200);
    expect(await spendable(id)).toBe(60); // no charge(): the whole reserve
  });

  it('settles the whole reserve when the handler never calls charge()', async () => {
    const id = await account(100);
    const route = withCredits(creditkit, { account: userOf, reserve: 30 }, ok);
    expect((await route(request(id))).status).toBe(200);
    expect(await spendable(id)).toBe(70);
    expect(await holdsOf(id)).toMatchObject([{ status: 'settled', settled_amount: 30, charged: 30 }]);
    expect((await ledger(id))[0]).toMatchObject({ kind: 'consume', amount: -30 });
  });

  it('charge(0) settles for nothing: no ledger row, the whole reserve back', async () => {
    const id = await account(100);
    const route = withCredits(creditkit, { account: userOf, reserve: 30 }, (_req, credits) => {
      credits.charge(0);
      return ok();
    });
    expect((await route(request(id))).status).toBe(200);
    expect(await spendable(id)).toBe(100);
    expect(await holdsOf(id)).toMatchObject([{ status: 'settled', settled_amount: 0, charged: 0 }]);
    expect((await ledger(id)).map((e) => e.kind)).toEqual(['grant']);
  });

  it('releases the hold and rethrows when the handler throws', async () => {
    const id = await account(100);
    const boom = new Error('model down');
    const route = withCredits(creditkit, { account: userOf, reserve: 30 }, async (_req, credits) => {
      credits.charge(10); // charge() before a throw does not matter: nothing is settled
      throw boom;
    });
    await expect(route(request(id))).rejects.toBe(boom);
    expect(await spendable(id)).toBe(100);
    expect(await holdsOf(id)).toMatchObject([{ status: 'released' }]);
    expect((await ledger(id)).map((e) => e.kind)).toEqual(['grant']);
  });

  it('releases the hold when the handler answers 400 or above without charge()', async () => {
    const id = await account(100);
    const route = withCredits(creditkit, { account: userOf, reserve: 30 }, () =>
      Response.json({ error: 'upstream' }, { status: 500 }),
    );
    const response = await route(request(id));
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ error: 'upstream' });
    expect(await spendable(id)).toBe(100);
    expect(await holdsOf(id)).toMatchObject([{ status: 'released' }]);
  });

  it('settles what charge() says even on an answer of 400 or above', async () => {
    const id = await account(100);
    const route = withCredits(creditkit, { account: userOf, reserve: 30 }, (_req, credits) => {
      credits.charge(5);
      return new Response('partly done', { status: 422 });
    });
    expect((await route(request(id))).status).toBe(422);
    expect(await spendable(id)).toBe(95);
    expect(await holdsOf(id)).toMatchObject([{ status: 'settled', charged: 5 }]);
  });

  describe('charge() above the reserve follows creditkit_settle', () => {
    const over = (actual: number) =>
      withCredits(creditkit, { account: userOf, reserve: 30 }, (_req, credits) => {
        credits.charge(actual);
        return ok();
      });

    it('charges it all when the unreserved balance covers it', async () => {
      const id = await account(100);
      expect((await over(50)(request(id))).status).toBe(200);
      expect(await spendable(id)).toBe(50);
      expect(await holdsOf(id)).toMatchObject([{ status: 'settled', settled_amount: 50, charged: 50 }]);
      expect((await ledger(id))[0]).toMatchObject({ kind: 'consume', amount: -50 });
    });

    it('charges only the reserve when the balance cannot cover it (the rest is shortfall)', async () => {
      const id = await account(40);
      const onSettleError = vi.fn();
      const route = withCredits(creditkit, { account: userOf, reserve: 30, onSettleError }, (_req, credits) => {
        credits.charge(50);
        return ok();
      });
      expect((await route(request(id))).status).toBe(200);
      expect(onSettleError).not.toHaveBeenCalled(); // a shortfall is a result, not an error
      expect(await spendable(id)).toBe(10);
      expect(await holdsOf(id)).toMatchObject([{ status: 'settled', settled_amount: 50, charged: 30 }]);
      expect((await ledger(id))[0]).toMatchObject({ kind: 'consume', amount: -30 });
    });

    it('does not spend credit held by another open hold', async () => {
      const id = await account(100);
      const other = await creditkit.reserve({ accountId: id, amount: 60 });
      expect(other.allowed).toBe(true);
      expect((await over(50)(request(id))).status).toBe(200);
      // 100 - 60 held elsewhere = 40 free, short of 50: only the 30 reserved is charged.
      expect(await spendable(id)).toBe(10);
      expect(await holdsOf(id)).toMatchObject([
        { id: other.holdId, status: 'open', amount: 60 },
        { status: 'settled', settled_amount: 50, charged: 30 },
      ]);
    });
  });

  it('answers 402 without running the handler when the reserve cannot be covered', async () => {
    const id = await account(20);
    const handler = vi.fn(ok);
    const route = withCredits(creditkit, { account: userOf, reserve: 30 }, handler);
    await expectPaymentRequired(await route(request(id)), 20, 30);
    expect(await holdsOf(id)).toEqual([]);
    expect(await spendable(id)).toBe(20);

    // No account yet: 402 with balance 0.
    await expectPaymentRequired(await route(request(randomUUID())), 0, 30);
    expect(handler).not.toHaveBeenCalled();
  });

  it('answers 400 invalid_amount for a reserve of 0, handler not run', async () => {
    const id = await account(20);
    const handler = vi.fn(ok);
    const route = withCredits(creditkit, { account: userOf, reserve: () => 0 }, handler);
    const response = await route(request(id));
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: 'invalid_amount' });
    expect(handler).not.toHaveBeenCalled();
  });

  it('reports a settle that fails to onSettleError and still returns the response', async () => {
    const id = await account(100);
    const onSettleError = vi.fn();
    const route = withCredits(creditkit, { account: userOf, reserve: 30, onSettleError }, async (_req, credits) => {
      await creditkit.release({ holdId: credits.hold!.holdId! }); // the hold is gone before withCredits settles
      return Response.json({ done: true });
    });
    const response = await route(request(id));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ done: true });
    expect(onSettleError).toHaveBeenCalledTimes(1);
    const [error, holdId] = onSettleError.mock.calls[0]!;
    expect(error).toBeInstanceOf(HoldClosedError);
    expect(holdId).toBe((await holdsOf(id))[0]!.id);
    expect(await spendable(id)).toBe(100);
  });

  it('throws InvalidAmountError from charge() itself for a bad amount, and releases the hold', async () => {
    const id = await account(100);
    const onSettleError = vi.fn();
    for (const bad of [2.5, -1, Number.NaN, 2 ** 53]) {
      const route = withCredits(creditkit, { account: userOf, reserve: 30, onSettleError }, (_req, credits) => {
        credits.charge(bad);
        return ok();
      });
      await expect(route(request(id))).rejects.toBeInstanceOf(InvalidAmountError);
    }
    expect(onSettleError).not.toHaveBeenCalled();
    expect(await spendable(id)).toBe(100);
    expect((await holdsOf(id)).map((h) => h.status)).toEqual(['released', 'released', 'released', 'released']);
  });

  // Was a bug: the release after a handler error swallowed its failure (`.catch(() => undefined)`)
  // although onSettleError is documented as "called when settling or releasing after the handler
  // fails"; src/http.ts now reports it there.
  it('reports a release that fails after the handler threw to onSettleError, and rethrows', async () => {
    const id = await account(100);
    const onSettleError = vi.fn();
    const boom = new Error('after settling by hand');
    const route = withCredits(creditkit, { account: userOf, reserve: 30, onSettleError }, async (_req, credits) => {
      await creditkit.settle({ holdId: credits.hold!.holdId!, actual: 10 }); // the release will hit CK012
      throw boom;
    });
    await expect(route(request(id))).rejects.toBe(boom);
    expect(await holdsOf(id)).toMatchObject([{ status: 'settled', charged: 10 }]);
    expect(onSettleError).toHaveBeenCalledTimes(1);
    expect(onSettleError.mock.calls[0]![0]).toBeInstanceOf(HoldClosedError);
  });

  it('charges once for a retried request with the same idempotency key: the retry of a finished request is a 409', async () => {
    const id = await account(100);
    const handler = vi.fn((_req: Request, credits: CreditsContext) => {
      credits.charge(12);
      return ok();
    });
    const route = withCredits(
      creditkit,
      { account: userOf, reserve: 30, idempotencyKey: (req) => req.headers.get('idempotency-key') },
      handler,
    );
    const init = { headers: { 'idempotency-key': 'job-1' } };
    expect((await route(request(id, '/api', init))).status).toBe(200);
    const retry = await route(request(id, '/api', init));
    expect(retry.status).toBe(409);
    expect(await retry.json()).toMatchObject({ error: 'hold_closed' });
    expect(handler).toHaveBeenCalledTimes(1);
    expect(await spendable(id)).toBe(88);
    expect(await holdsOf(id)).toHaveLength(1);
  });

  // creditkit_reserve refuses (CK012) a replayed key whose hold is no longer open, so a retry
  // after a failed first attempt cannot run the handler with nothing held.
  it('does not run the handler for free on a retry whose first attempt was released', async () => {
    const id = await account(100);
    const handler = vi.fn((req: Request, credits: CreditsContext) => {
      if (req.headers.get('x-fail')) return Response.json({ error: 'bad input' }, { status: 400 }); // released
      credits.charge(30);
      return ok();
    });
    const onSettleError = vi.fn();
    const route = withCredits(
      creditkit,
      { account: userOf, reserve: 30, idempotencyKey: (req) => req.headers.get('idempotency-key'), onSettleError },
      handler,
    );
    const first = await route(request(id, '/api', { headers: { 'idempotency-key': 'k', 'x-fail': '1' } }));
    expect(first.status).toBe(400);
    expect(await holdsOf(id)).toMatchObject([{ status: 'released' }]);

    // The retry must be refused (its key belongs to a closed hold), not served unpaid.
    const retry = await route(request(id, '/api', { headers: { 'idempotency-key': 'k' } }));
    expect(retry.status).toBeGreaterThanOrEqual(400);
    expect(handler).toHaveBeenCalledTimes(1);
    expect(await spendable(id)).toBe(100);
  });

  it('passes extra handler arguments (a Next.js route context) through', async () => {
    const id = await account(100);
    const route = withCredits(
      creditkit,
      { account: userOf, reserve: 5 },
      async (_req, _credits, context: { params: Promise<{ id: string }> }, extra: number) =>
        Response.json({ ...(await context.params), extra }),
    );
    const response = await route(request(id), { params: Promise.resolve({ id: 'p-7' }) }, 42);
    expect(await response.json()).toEqual({ id: 'p-7', extra: 42 });
    expect(await spendable(id)).toBe(95);
  });
});

describe('withCredits options', () => {
  it('throws TypeError at construction when neither event, unit nor reserve is given, or an event price with a unit', () => {
    const handler = vi.fn(ok);
    expect(() => withCredits(creditkit, { account: userOf }, handler)).toThrow(TypeError);
    expect(() => withCredits(creditkit, { account: userOf, amount: 2 }, handler)).toThrow(TypeError);
    expect(() => withCredits(creditkit, { account: userOf, event: PING }, handler)).not.toThrow();
    expect(() => withCredits(creditkit, { account: userOf, reserve: 5 }, handler)).not.toThrow();
    expect(() => withCredits(creditkit, { account: userOf, event: PING, reserve: 5 }, handler)).not.toThrow();
    expect(() => withCredits(creditkit, { account: userOf, unit: MESSAGES }, handler)).not.toThrow();
    expect(() => withCredits(creditkit, { account: userOf, unit: MESSAGES, reserve: 5 }, handler)).not.toThrow();
    expect(() => withCredits(creditkit, { account: userOf, unit: MESSAGES, quantity: 2 }, handler)).toThrow(/amount/);
    expect(() => withCredits(creditkit, { account: userOf, unit: MESSAGES, dimensions: { q: 'hd' } }, handler)).toThrow(/amount/);
    expect(handler).not.toHaveBeenCalled();
  });

  it('with both reserve and event, holds (no metering) and books the settled charge under the event', async () => {
    const id = await account(100);
    const route = withCredits(creditkit, { account: userOf, event: 'video.render', reserve: 40 }, (_req, credits) => {
      expect(credits.metered).toBeNull();
      expect(credits.hold).not.toBeNull();
      credits.charge(25);
      return ok();
    });
    expect((await route(request(id))).status).toBe(200);
    expect(await spendable(id)).toBe(75);
    const { entries } = await creditkit.history({ accountId: id, limit: 1 });
    expect(entries[0]).toMatchObject({ kind: 'consume', amount: -25, event: 'video.render' });
  });
});

// ── Features (units) ───────────────────────────────────────────────────────────────────────

describe('meter, a feature (unit)', () => {
  it('spends `amount` of the unit, not credits, and answers like meter', async () => {
    const id = await accountWith(10, 5);
    const outcome = await meter(creditkit, { accountId: id, unit: MESSAGES, amount: 2, event: 'chat.send' });
    expect(outcome).toMatchObject({ blocked: false, response: null, allowed: true, amount: 2, balance: 3, unit: MESSAGES });
    expect([await spendable(id, MESSAGES), await spendable(id)]).toEqual([3, 10]);
    const [last] = (await creditkit.history({ accountId: id, unit: MESSAGES })).entries;
    expect(last).toMatchObject({ id: outcome.transactionId, kind: 'consume', amount: -2, event: 'chat.send' });
  });

  it('blocks with a 402 naming the unit when the unit is short, even with credits to spare', async () => {
    const id = await accountWith(100, 1);
    const outcome = await meter(creditkit, { accountId: id, unit: MESSAGES, amount: 2 });
    expect(outcome).toMatchObject({ blocked: true, allowed: false, balance: 1, amount: 2, unit: MESSAGES, transactionId: null });
    expect(await outcome.response!.json()).toEqual({
      error: 'insufficient_credits',
      message: 'This needs 2 messages; the account has 1.',
      balance: 1,
      required: 2,
      unit: MESSAGES,
    });
    expect([await spendable(id, MESSAGES), await spendable(id)]).toEqual([1, 100]);
  });

  it('blocks an account that was never granted anything with balance 0 in the unit', async () => {
    const outcome = await meter(creditkit, { accountId: randomUUID(), unit: MESSAGES, amount: 3 });
    expect(outcome).toMatchObject({ blocked: true, balance: 0, amount: 3, unit: MESSAGES });
    expect(await outcome.response!.json()).toMatchObject({ balance: 0, required: 3, unit: MESSAGES });
  });

  it('throws UnknownUnitError for an unknown unit and for a boolean one', async () => {
    const id = await accountWith(10, 5);
    await expect(meter(creditkit, { accountId: id, unit: 'nope', amount: 1 })).rejects.toBeInstanceOf(UnknownUnitError);
    await expect(meter(creditkit, { accountId: id, unit: FLAG, amount: 1 })).rejects.toBeInstanceOf(UnknownUnitError);
    expect([await spendable(id, MESSAGES), await spendable(id)]).toEqual([5, 10]);
  });
});

describe('withCredits, a feature (unit)', () => {
  it('spends one of the unit per request before the handler, and 402s naming it once it runs out', async () => {
    const id = await accountWith(50, 2);
    const handler = vi.fn(async (_req: Request, credits: CreditsContext) => {
      expect(credits.metered).toMatchObject({ allowed: true, amount: 1, unit: MESSAGES });
      expect(credits.hold).toBeNull();
      return ok();
    });
    const route = withCredits(creditkit, { account: userOf, unit: MESSAGES }, handler);
    expect((await route(request(id))).status).toBe(200);
    expect((await route(request(id))).status).toBe(200);
    const refused = await route(request(id));
    expect(refused.status).toBe(402);
    expect(await refused.text()).toBe(
      '{"error":"insufficient_credits","message":"This needs 1 messages; the account has 0.","balance":0,"required":1,"unit":"messages"}',
    );
    expect(handler).toHaveBeenCalledTimes(2);
    expect([await spendable(id, MESSAGES), await spendable(id)]).toEqual([0, 50]);
  });

  it('reads the amount from the request, labels the charge with `event`, and charges a key once', async () => {
    const id = await accountWith(0, 10);
    const route = withCredits(
      creditkit,
      {
        account: userOf,
        unit: MESSAGES,
        amount: (req) => Number(req.headers.get('x-count')),
        event: 'chat.batch',
        idempotencyKey: (req) => req.headers.get('x-key'),
      },
      ok,
    );
    const init = { headers: { 'x-count': '4', 'x-key': 'batch-1' } };
    expect((await route(request(id, '/api', init))).status).toBe(200);
    expect((await route(request(id, '/api', init))).status).toBe(200);
    expect(await spendable(id, MESSAGES)).toBe(6);
    const { entries } = await creditkit.history({ accountId: id, unit: MESSAGES });
    expect(entries.filter((e) => e.kind === 'consume')).toMatchObject([{ amount: -4, event: 'chat.batch', idempotencyKey: 'batch-1' }]);
  });

  it('answers 404 unknown_unit for a unit that is not metered, handler not run', async () => {
    const id = await accountWith(10, 0);
    const handler = vi.fn(ok);
    for (const unit of ['nope', FLAG]) {
      const response = await withCredits(creditkit, { account: userOf, unit }, handler)(request(id));
      expect([response.status, ((await response.json()) as { error: string }).error], unit).toEqual([404, 'unknown_unit']);
    }
    expect(handler).not.toHaveBeenCalled();
    expect(await spendable(id)).toBe(10);
  });

  it('reserve mode holds and settles in the unit, and a short unit 402s naming it', async () => {
    const id = await accountWith(30, 10);
    const during: number[] = [];
    const route = withCredits(creditkit, { account: userOf, unit: MESSAGES, reserve: 6 }, async (_req, credits) => {
      during.push(await spendable(id, MESSAGES));
      credits.charge(2);
      return ok();
    });
    expect((await route(request(id))).status).toBe(200);
    expect([await spendable(id, MESSAGES), await spendable(id)]).toEqual([8, 30]);
    expect((await route(request(id))).status).toBe(200);
    expect((await route(request(id))).status).toBe(200);
    expect(during).toEqual([4, 2, 0]); // the 6 held while the handler ran
    // 4 left cannot cover a hold of 6
    const refused = await route(request(id));
    expect(await refused.json()).toEqual({
      error: 'insufficient_credits',
      message: 'This needs 6 messages; the account has 4.',
      balance: 4,
      required: 6,
      unit: MESSAGES,
    });
    expect(await spendable(id)).toBe(30);
  });
});

// ── Concurrency ────────────────────────────────────────────────────────────────────────────

describe('concurrent requests', () => {
  it('metering: 20 requests at 1 credit on 10 credits run the handler exactly 10 times', async () => {
    const id = await account(10);
    const handler = vi.fn(ok);
    const route = withCredits(creditkit, { account: userOf, event: UNIT }, handler);
    const responses = await Promise.all(Array.from({ length: 20 }, () => route(request(id))));
    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(10);
    expect(statuses.filter((s) => s === 402)).toHaveLength(10);
    expect(handler).toHaveBeenCalledTimes(10);
    expect(await spendable(id)).toBe(0);
    expect((await ledger(id)).filter((e) => e.kind === 'consume')).toHaveLength(10);
  });

  it('reserve: 20 requests holding 1 on 10 credits run the handler exactly 10 times', async () => {
    const id = await account(10);
    const handler = vi.fn(ok);
    const route = withCredits(creditkit, { account: userOf, reserve: 1 }, handler);
    const responses = await Promise.all(Array.from({ length: 20 }, () => route(request(id))));
    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(10);
    expect(statuses.filter((s) => s === 402)).toHaveLength(10);
    expect(handler).toHaveBeenCalledTimes(10);
    expect(await spendable(id)).toBe(0);
    expect((await holdsOf(id)).map((h) => h.status)).toEqual(Array(10).fill('settled'));
  });
});

// ── End to end over HTTP ───────────────────────────────────────────────────────────────────

/** Serves a Web-standard handler from node:http (Node 20 has no Request-based server). */
function serve(handler: (request: Request) => Promise<Response>): Promise<Server> {
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const headers = new Headers();
      for (const [name, value] of Object.entries(req.headers)) {
        if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
      }
      const body = req.method === 'GET' || req.method === 'HEAD' ? undefined : Buffer.concat(chunks);
      const response = await handler(new Request(`http://${req.headers.host}${req.url}`, { method: req.method, headers, body }));
      res.writeHead(response.status, Object.fromEntries(response.headers));
      res.end(Buffer.from(await response.arrayBuffer()));
    } catch (error) {
      res.writeHead(500).end(String(error));
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

describe('end to end through node:http and fetch', () => {
  it('settles what the handler charges and answers 402 once the account is short', async () => {
    const id = await account(50);
    const route = withCredits(creditkit, { account: userOf, reserve: 20 }, async (req, credits) => {
      const { tokens } = (await req.json()) as { tokens: number };
      credits.charge(tokens);
      return Response.json({ tokens });
    });
    const server = await serve(route);
    try {
      const { port } = server.address() as AddressInfo;
      const call = (tokens: number) =>
        fetch(`http://127.0.0.1:${port}/api/generate`, {
          method: 'POST',
          headers: { 'x-user': id, 'content-type': 'application/json' },
          body: JSON.stringify({ tokens }),
        });

      const first = await call(15);
      expect(first.status).toBe(200);
      expect(await first.json()).toEqual({ tokens: 15 });
      expect(await spendable(id)).toBe(35);

      const second = await call(20);
      expect(second.status).toBe(200);
      expect(await spendable(id)).toBe(15);

      const third = await call(1);
      expect(third.status).toBe(402);
      expect(third.headers.get('content-type')).toMatch(/^application\/json\b/);
      expect(await third.json()).toMatchObject({ error: 'insufficient_credits', balance: 15, required: 20 });
      expect(await spendable(id)).toBe(15);
    } finally {
      await new Promise<void>((resolve, reject) => server.close((e) => (e ? reject(e) : resolve())));
    }
  });
});
