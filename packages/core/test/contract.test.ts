// The SDK's contract, one suite body run against every transport it ships: PGlite (always),
// node-postgres and supabase-js over the PostgREST test server (both on real Postgres). Each
// test drives the typed methods and checks the answers against what the scenario implies, and
// where it matters against the tables themselves (superuser SQL): a failed call must leave the
// books untouched, an exact integer must arrive exact.
//
// Every call the suite makes through the SDK is recorded. That record serves three checks:
//  - the fields of every answer are the OUT/TABLE columns the catalogue declares, camelCased;
//  - every public.creditkit_* function in the catalogue was reached through some SDK method;
//  - the last block (real Postgres) compares the three transports' records call by call, after
//    replacing ids, uuids and instants: the same scenario must give the same answers everywhere.
import { randomUUID } from 'node:crypto';
import { PostgrestError } from '@supabase/supabase-js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BOOKED_ACCOUNTS, BOOKED_GRANTS } from '@creditkit/testing';
import { describeIfCitus, describeIfPostgres } from '@creditkit/testing/vitest';
import {
  AutoTopupUnavailableError,
  BalanceLimitError,
  CreditkitError,
  HoldClosedError,
  IdempotencyConflictError,
  InsufficientCreditsError,
  InvalidAmountError,
  InvalidArgumentError,
  InvalidEventError,
  NotAllowedError,
  TransportError,
  UnknownAccountError,
  UnknownEventError,
  UnknownHoldError,
  UnknownPlanError,
  UnknownEndpointError,
  UnknownTopupOrDeliveryError,
  UnknownUnitError,
  signWebhook,
  verifyWebhook,
  type CreditkitClient,
  type CreditkitServer,
  type ErrorCode,
} from '../src/server.ts';
import type { Json } from '../src/database.types.ts';
import {
  CLIENT_METHODS,
  SERVER_METHODS,
  TRANSPORTS,
  counting,
  type CountingTransport,
  type Harness,
  type TransportFactory,
  type TransportName,
} from './support/transports.ts';

const MAX = Number.MAX_SAFE_INTEGER; // 2^53-1, the kit's largest amount and balance

// ── Time: server calls name their instant (p_now), so answers are the same on every run; only
// the signed-in user's reads, which take no p_now, run at the clock's time ──────────────────

const T0 = Date.parse('2030-01-01T00:00:00Z');
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/** The instant `ms` after T0, as an ISO string to send. */
const at = (ms: number): string => new Date(T0 + ms).toISOString();
/** The same instant as Postgres writes a timestamptz in JSON (UTC session). */
const pgTime = (iso: string): string => new Date(iso).toISOString().replace(/\.000Z$/, 'Z').replace(/Z$/, '+00:00');

/** A fixed endpoint secret (generated ones differ per database, and the transports' records are compared). */
const CONTRACT_SECRET = 'whsec_Y3JlZGl0a2l0IGNvbnRyYWN0IHNlY3JldDozMmJ5dGU=';

/** The SDK passes bigint through at runtime; the generated parameter types only say number. */
const big = (n: bigint): number => n as unknown as number;

// ── The record of every SDK call ─────────────────────────────────────────────────────────

type Side = 'server' | 'client';
interface Entry {
  side: Side;
  method: string;
  ok: boolean;
  value?: unknown;
  error?: unknown;
}
const records = new Map<TransportName, Entry[]>();

/** The client, with every mapped method's outcome appended to `log` (the call itself unchanged). */
function recorded<T extends CreditkitServer | CreditkitClient>(target: T, side: Side, log: Entry[]): T {
  const methods: Record<string, string> = side === 'server' ? SERVER_METHODS : CLIENT_METHODS;
  return new Proxy(target, {
    get(obj, prop) {
      const value: unknown = Reflect.get(obj, prop, obj);
      if (typeof prop !== 'string' || !(prop in methods) || typeof value !== 'function') return value;
      return async (...args: unknown[]) => {
        try {
          const result: unknown = await value.apply(obj, args);
          log.push({ side, method: prop, ok: true, value: result });
          return result;
        } catch (error) {
          log.push({ side, method: prop, ok: false, error });
          throw error;
        }
      };
    },
  });
}

const functionOf = (entry: Entry): string =>
  (entry.side === 'server' ? SERVER_METHODS : CLIENT_METHODS)[entry.method as never] as string;

// ── Errors ───────────────────────────────────────────────────────────────────────────────

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

/** The driver's or PostgREST's own error must never reach the caller; it is kept as `cause`. */
function expectNotRaw(error: unknown, fromDatabase: boolean): void {
  expect(error).not.toBeInstanceOf(pg.DatabaseError);
  expect(error).not.toBeInstanceOf(PostgrestError);
  expect(error).not.toBeInstanceOf(TransportError);
  for (const key of ['severity', 'routine', 'file', 'position', 'where', 'status', 'statusText', 'raw']) {
    expect(error).not.toHaveProperty(key);
  }
  if (fromDatabase) expect((error as Error).cause).toBeInstanceOf(TransportError);
  else expect((error as Error).cause).toBeUndefined();
}

type ErrorClass<E extends CreditkitError> = abstract new (...args: never[]) => E;

/** The call fails with exactly this class, code and SQLSTATE (undefined: refused by the SDK). */
async function expectFailure<E extends CreditkitError>(
  promise: Promise<unknown>,
  Class: ErrorClass<E>,
  code: ErrorCode,
  sqlstate: string | undefined,
): Promise<E> {
  const error = await rejectionOf(promise);
  expect(error).toBeInstanceOf(CreditkitError);
  expect((error as object).constructor).toBe(Class);
  expect((error as CreditkitError).code).toBe(code);
  expect((error as CreditkitError).sqlstate).toBe(sqlstate);
  expectNotRaw(error, sqlstate !== undefined);
  return error as E;
}

// ── Evidence from the tables ─────────────────────────────────────────────────────────────

const BOOK_TABLES: Record<string, string> = {
  accounts: 'id', grants: 'id', holds: 'id', ledger: 'id', ledger_keys: 'ledger_id', subscriptions: 'account_id', plans: 'id', prices: 'id',
  packs: 'id', stripe_customers: 'account_id', stripe_events: 'id', stripe_payments: 'id', stripe_invoices: 'invoice_id',
};
/**
 * One md5 per kit table over its whole rows: equal digests mean nothing changed. Accounts and
 * buckets as the books stand (BOOKED_ACCOUNTS, BOOKED_GRANTS: drawing what the fast path left
 * undrawn changes nothing else).
 */
const BOOK_ROWS: Record<string, string> = { accounts: BOOKED_ACCOUNTS, grants: BOOKED_GRANTS };
const BOOKS_SQL = `select ${Object.entries(BOOK_TABLES)
  .map(([table, key]) =>
    `(select md5(coalesce(string_agg(${BOOK_ROWS[table] ? 't.row' : 'to_jsonb(t)'}::text, e'\\n' order by t.${key}), ''))
        from ${BOOK_ROWS[table] ?? `creditkit.${table}`} t) as ${table}`)
  .join(', ')}`;

const camel = (name: string): string => name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
const sortedKeys = (value: unknown): string[] => Object.keys(value as object).sort();

// ── Stripe events as Stripe sends them: the envelope, and a Checkout session in mode payment
// with the fields creditkit reads where Stripe puts them. Ids are fixed strings, so every
// transport's database sees the same payloads and the records can be compared. ──────────────

/** Unix seconds of the instant `ms` after T0 (Stripe's `created`). */
const unix = (ms: number): number => (T0 + ms) / 1000;

function stripeEvent(id: string, type: string, createdMs: number, object: { [key: string]: Json }): Json {
  return {
    id, object: 'event', api_version: '2026-01-28.clover', created: unix(createdMs), livemode: false,
    pending_webhooks: 1, request: { id: null, idempotency_key: null }, type, data: { object },
  };
}

interface PackPayment {
  event: string;
  account: string;
  packId: string;
  /** What the buyer paid, in cents. */
  amount: number;
  customer: string;
  /** The suffix of the session and payment intent ids (cs_test_…, pi_…). */
  payment: string;
  /** When Stripe created the event, in ms after T0. */
  created: number;
}

/** checkout.session.completed for a pack paid by card (the shape @creditkit/stripe's Checkout creates). */
function packCheckoutCompleted(p: PackPayment): Json {
  return stripeEvent(p.event, 'checkout.session.completed', p.created, {
    id: `cs_test_${p.payment}`, object: 'checkout.session', amount_subtotal: p.amount, amount_total: p.amount,
    client_reference_id: p.account, created: unix(p.created) - 90, currency: 'usd', customer: p.customer,
    customer_details: { email: 'ada@example.com', name: 'Ada Lovelace', tax_exempt: 'none' }, invoice: null, livemode: false,
    metadata: { account_id: p.account, pack_id: p.packId }, mode: 'payment', payment_intent: `pi_${p.payment}`,
    payment_method_types: ['card'], payment_status: 'paid', status: 'complete', subscription: null,
    success_url: 'https://app.example.com/billing?session_id={CHECKOUT_SESSION_ID}', ui_mode: 'hosted',
  });
}

/** The fields every bucket in a balance has (jsonb in SQL, so not in the catalogue). */
const BUCKET_FIELDS = ['amount', 'category', 'createdAt', 'expiresAt', 'grantId', 'priority', 'remaining'];

// ── The suite body ───────────────────────────────────────────────────────────────────────

function contract(factory: TransportFactory): void {
  let h: Harness;
  let ck: CreditkitServer;
  const log: Entry[] = [];
  const user = (userId: string): CreditkitClient => recorded(h.asUser(userId), 'client', log);
  const books = async () => (await h.query(BOOKS_SQL))[0];
  /** The books apart from the Stripe inbox, where every delivery is counted even when nothing else changes. */
  const booksBesideInbox = async () => {
    const { stripe_events: _inbox, ...rest } = (await books())!;
    return rest;
  };
  const inbox = async () => (await books())!.stripe_events;
  const ledgerIds = async (accountId: string) =>
    (await h.query<{ id: string }>('select id::text from creditkit.ledger where account_id = $1 order by id desc', [accountId]))
      .map((r) => Number(r.id));

  beforeAll(async () => {
    h = await factory.create();
    ck = recorded(h.creditkit, 'server', log);
    records.set(factory.name, log);
  });
  afterAll(async () => {
    await h?.close();
  });

  it('consume: allowed, blocked (writing nothing), and a replay with the same key returns the first answer', async () => {
    const account = randomUUID();
    await ck.grant({ accountId: account, amount: 100, now: at(0) });
    const call = { accountId: account, amount: 30, event: 'chat', idempotencyKey: 'req-1', metadata: { model: 'xl' } };
    const first = await ck.consume({ ...call, now: at(HOUR) });
    expect(first).toEqual({ allowed: true, balance: 70, transactionId: expect.any(Number) });

    const before = await books();
    expect(await ck.consume({ accountId: account, amount: 71, now: at(HOUR) })).toEqual({
      allowed: false, balance: 70, transactionId: null,
    });
    expect(await books()).toEqual(before);

    await ck.grant({ accountId: account, amount: 5, now: at(2 * HOUR) });
    // the retry answers what the first call answered (balance 70), and spends nothing more
    expect(await ck.consume({ ...call, now: at(3 * HOUR) })).toEqual(first);
    expect((await ck.balance({ accountId: account, now: at(3 * HOUR) })).balance).toBe(75);
    const rows = await h.query<{ kind: string; amount: string }>(
      `select kind, amount::text from creditkit.ledger where account_id = $1 and idempotency_key = 'req-1'`, [account]);
    expect(rows).toEqual([{ kind: 'consume', amount: '-30' }]);
  });

  it('consumeOrRaise charges, or throws InsufficientCreditsError with balance and required, changing nothing', async () => {
    const account = randomUUID();
    await ck.grant({ accountId: account, amount: 50, now: at(0) });
    expect(await ck.consumeOrRaise({ accountId: account, amount: 20, event: 'chat', now: at(HOUR) })).toEqual({
      balance: 30, transactionId: expect.any(Number),
    });
    const before = await books();
    const error = await expectFailure(
      ck.consumeOrRaise({ accountId: account, amount: 31, event: 'chat', now: at(HOUR) }),
      InsufficientCreditsError, 'insufficient_credits', 'CK002');
    expect([error.balance, error.required, error.unit]).toEqual([30, 31, 'credits']);
    expect(error.details).toEqual({ balance: 30, required: 31, unit: 'credits' });
    expect(await books()).toEqual(before);
  });

  it('consumeBatch: one answer per event in order over several accounts; blocked events write nothing; keys replay within and across batches', async () => {
    const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
    await ck.grant({ accountId: a, amount: 50, now: at(0) });
    await ck.grant({ accountId: b, amount: 10, now: at(0) });
    await ck.grant({ accountId: c, amount: 5, now: at(0) });
    const single = await ck.consume({ accountId: c, amount: 2, event: 'chat', idempotencyKey: 'c-single', now: at(HOUR) });
    const chat = { accountId: a, amount: 20, event: 'chat', idempotencyKey: 'batch-1', metadata: { model: 'xl' }, costMicros: 1_500 };
    const events = [
      chat,
      { accountId: b, amount: 11, event: 'video' }, // b has 10: blocked
      { accountId: b, amount: 10, event: 'video', idempotencyKey: 'batch-2' },
      chat, // the same key again in the batch: the first answer
      { accountId: c, amount: 2, event: 'chat', idempotencyKey: 'c-single' }, // a key a single consume wrote
      { accountId: a, amount: 31, event: 'chat', idempotencyKey: 'batch-3' }, // a has 30: blocked
      { accountId: a, amount: 30, costMicros: null, metadata: null },
    ];
    const first = await ck.consumeBatch({ events, now: at(2 * HOUR) });
    const id = (i: number) => first[i]!.transactionId;
    expect(first).toEqual([
      { ordinal: 1, allowed: true, balance: 30, transactionId: expect.any(Number) },
      { ordinal: 2, allowed: false, balance: 10, transactionId: null },
      { ordinal: 3, allowed: true, balance: 0, transactionId: expect.any(Number) },
      { ordinal: 4, allowed: true, balance: 30, transactionId: id(0) },
      { ordinal: 5, allowed: true, balance: 3, transactionId: single.transactionId },
      { ordinal: 6, allowed: false, balance: 30, transactionId: null },
      { ordinal: 7, allowed: true, balance: 0, transactionId: expect.any(Number) },
    ]);
    // the ledger says the same: one row per allowed event, in input order, with what each carried
    const ledger = async () => h.query<{ id: string; account: string; amount: string; after: string; event: string | null; key: string | null; metadata: Json; cost: string | null }>(
      `select l.id::text, l.account_id::text as account, l.amount::text, l.balance_after::text as after, l.event, l.idempotency_key as key,
              l.metadata, l.cost_micros::text as cost
         from creditkit.ledger l where l.account_id = any ($1::uuid[]) and l.kind = 'consume' order by l.id`, [[a, b, c]]);
    const rows = await ledger();
    expect(rows).toEqual([
      { id: String(single.transactionId), account: c, amount: '-2', after: '3', event: 'chat', key: 'c-single', metadata: {}, cost: null },
      { id: String(id(0)), account: a, amount: '-20', after: '30', event: 'chat', key: 'batch-1', metadata: { model: 'xl' }, cost: '1500' },
      { id: String(id(2)), account: b, amount: '-10', after: '0', event: 'video', key: 'batch-2', metadata: {}, cost: null },
      { id: String(id(6)), account: a, amount: '-30', after: '0', event: null, key: null, metadata: {}, cost: null },
    ]);

    // the whole batch retried later: keyed events answer their first result; the others are
    // evaluated afresh at the balances now (all 0, so blocked); nothing is spent twice
    const before = await books();
    expect(await ck.consumeBatch({ events, now: at(3 * HOUR) })).toEqual([
      first[0], { ...first[1], balance: 0 }, first[2], first[3], first[4], { ...first[5], balance: 0 }, { ordinal: 7, allowed: false, balance: 0, transactionId: null },
    ]);
    expect(await books()).toEqual(before);
    expect(await ledger()).toEqual(rows);
    // and a single consume finds a key the batch wrote
    expect(await ck.consume({ accountId: b, amount: 10, event: 'video', idempotencyKey: 'batch-2', now: at(3 * HOUR) })).toEqual({
      allowed: true, balance: 0, transactionId: id(2),
    });
  });

  it('consumeBatch: an event the database refuses fails the whole call with its error class, and nothing is spent', async () => {
    const account = randomUUID();
    await ck.grant({ accountId: account, amount: 10, now: at(0) });
    await ck.consume({ accountId: account, amount: 1, idempotencyKey: 'used', now: at(0) });
    const ok = { accountId: account, amount: 1 };
    const before = await books();
    const batch = (...events: Array<Record<string, unknown>>) => ck.consumeBatch({ events: events as never, now: at(HOUR) });
    await expectFailure(batch(ok, { accountId: account, amount: 0 }), InvalidAmountError, 'invalid_amount', 'CK001');
    await expectFailure(batch(ok, { accountId: account, amount: 1, costMicros: -1 }), InvalidAmountError, 'invalid_amount', 'CK001');
    const conflict = await expectFailure(batch(ok, { accountId: account, amount: 2, idempotencyKey: 'used' }),
      IdempotencyConflictError, 'idempotency_conflict', 'CK004');
    expect(conflict.details).toEqual({ transaction_id: expect.any(Number) });
    await expectFailure(batch(ok, { accountId: account, amount: 1, idempotencyKey: 'twice' }, { accountId: account, amount: 2, idempotencyKey: 'twice' }),
      IdempotencyConflictError, 'idempotency_conflict', 'CK004');
    const stranger = '00000000-0000-4000-8000-0000000000ff';
    const unknown = await expectFailure(batch(ok, { accountId: stranger, amount: 1 }), UnknownAccountError, 'unknown_account', 'CK003');
    expect(unknown.details).toEqual({ account_id: stranger });
    await expectFailure(batch(ok, { accountId: 'not-a-uuid', amount: 1 }), InvalidArgumentError, 'invalid_argument', 'CK006');
    await expectFailure(batch(ok, { accountId: account, amount: 1, quantity: 2 }), InvalidArgumentError, 'invalid_argument', 'CK006');
    await expectFailure(batch(ok, { accountId: account, amount: 1, idempotencyKey: '' }), InvalidArgumentError, 'invalid_argument', 'CK006');
    await expectFailure(batch(), InvalidArgumentError, 'invalid_argument', 'CK006');
    await expectFailure(ck.consumeBatch({ events: Array.from({ length: 1001 }, () => ok), now: at(HOUR) }), InvalidArgumentError, 'invalid_argument', 'CK006');
    expect(await books()).toEqual(before);
    // 1000 is the most: 9 credits cover the first 9 events
    const answers = await ck.consumeBatch({ events: Array.from({ length: 1000 }, () => ok), now: at(HOUR) });
    expect([answers.length, answers.filter((x) => x.allowed).length, answers.map((x) => x.ordinal)]).toEqual([
      1000, 9, Array.from({ length: 1000 }, (_, i) => i + 1),
    ]);
  });

  it('setPrice, quote and meter: the most specific price wins, and meter charges what quote said', async () => {
    const event = 'img.contract';
    const defaultPrice = await ck.setPrice({ event, creditsPerUnit: 4, effectiveFrom: new Date(T0) });
    const hdPrice = await ck.setPrice({ event, creditsPerUnit: 10, dimensions: { quality: 'hd' }, effectiveFrom: at(0) });
    expect(Number.isSafeInteger(defaultPrice) && Number.isSafeInteger(hdPrice)).toBe(true);
    expect(hdPrice).not.toBe(defaultPrice);

    expect(await ck.quote({ event, quantity: 3, dimensions: { quality: 'hd', size: '1024' }, now: at(HOUR) })).toEqual({
      priceId: hdPrice, unitCredits: 10, amount: 30, unit: 'credits', overageAmount: null,
    });
    expect(await ck.quote({ event, quantity: 2, now: at(HOUR) })).toEqual({ priceId: defaultPrice, unitCredits: 4, amount: 8, unit: 'credits', overageAmount: null });

    const account = randomUUID();
    await ck.grant({ accountId: account, amount: 100, now: at(0) });
    const metered = await ck.meter({
      accountId: account, event, quantity: 3, dimensions: { quality: 'hd' }, idempotencyKey: 'm-1', costMicros: 120_000, now: at(HOUR),
    });
    expect(metered).toEqual({ allowed: true, balance: 70, transactionId: expect.any(Number), amount: 30, unit: 'credits' });
    // more than the balance covers: blocked, and the answer says what it would have cost
    expect(await ck.meter({ accountId: account, event, quantity: 100, now: at(HOUR) })).toEqual({
      allowed: false, balance: 70, transactionId: null, amount: 400, unit: 'credits',
    });
    const [row] = await h.query<{ amount: string; event: string; cost: string }>(
      'select amount::text, event, cost_micros::text as cost from creditkit.ledger where id = $1', [metered.transactionId]);
    expect(row).toEqual({ amount: '-30', event, cost: '120000' });
  });

  it('grant takes expiresAt as a Date or an ISO string; balance lists the buckets in spend order, camelCased', async () => {
    const account = randomUUID();
    const promo = await ck.grant({
      accountId: account, amount: 10, category: 'promotional', expiresAt: new Date(T0 + 7 * DAY), now: at(0),
    });
    expect(promo).toEqual({ transactionId: expect.any(Number), grantId: expect.any(Number), balance: 10 });
    // a string keeps microseconds, which a Date cannot hold
    const purchase = await ck.grant({
      accountId: account, amount: 20, category: 'purchase', expiresAt: '2030-01-31T00:00:00.123456Z', now: at(0),
    });
    const adjustment = await ck.grant({ accountId: account, amount: 5, category: 'adjustment', priority: 99, now: at(0) });
    expect(adjustment.balance).toBe(35);

    const balance = await ck.balance({ accountId: account, now: at(HOUR) });
    const created = pgTime(at(0));
    expect(balance).toEqual({
      balance: 35,
      nextExpiry: '2030-01-08T00:00:00+00:00',
      buckets: [
        { grantId: promo.grantId, category: 'promotional', amount: 10, remaining: 10, priority: 30, createdAt: created, expiresAt: '2030-01-08T00:00:00+00:00' },
        { grantId: purchase.grantId, category: 'purchase', amount: 20, remaining: 20, priority: 0, createdAt: created, expiresAt: '2030-01-31T00:00:00.123456+00:00' },
        { grantId: adjustment.grantId, category: 'adjustment', amount: 5, remaining: 5, priority: 99, createdAt: created, expiresAt: null },
      ],
    });
    for (const bucket of balance.buckets) expect(sortedKeys(bucket)).toEqual(BUCKET_FIELDS);

    // spending takes the soonest expiry first; once the promotion expired, it is gone from the balance
    await ck.consume({ accountId: account, amount: 4, now: at(2 * HOUR) });
    const later = await ck.balance({ accountId: account, now: at(8 * DAY) });
    expect(later.balance).toBe(25);
    expect(later.buckets.map((b) => [b.category, b.remaining])).toEqual([['purchase', 20], ['adjustment', 5]]);
    const newest = (await ck.history({ accountId: account, limit: 1 })).entries[0];
    expect(newest).toMatchObject({ kind: 'expire', amount: -6, balanceAfter: 25, grantId: promo.grantId });
  });

  it('adjust adds an adjustment bucket or spends, and never goes below zero', async () => {
    const account = randomUUID();
    await ck.grant({ accountId: account, amount: 20, now: at(0) });
    expect(await ck.adjust({ accountId: account, amount: 15, reason: 'goodwill', now: at(HOUR) })).toEqual({
      transactionId: expect.any(Number), balance: 35,
    });
    const down = await ck.adjust({ accountId: account, amount: -30, reason: 'chargeback', idempotencyKey: 'adj-1', now: at(HOUR) });
    expect(down).toEqual({ transactionId: expect.any(Number), balance: 5 });
    const before = await books();
    const short = await expectFailure(ck.adjust({ accountId: account, amount: -6, reason: 'too much', now: at(HOUR) }),
      InsufficientCreditsError, 'insufficient_credits', 'CK002');
    expect([short.balance, short.required]).toEqual([5, 6]);
    expect(await books()).toEqual(before);
    expect((await ck.history({ accountId: account, limit: 1 })).entries[0]).toMatchObject({
      id: down.transactionId, kind: 'adjust', amount: -30, balanceAfter: 5, idempotencyKey: 'adj-1', metadata: { reason: 'chargeback' },
    });
  });

  it('reserve, settle, release: a hold lowers the spendable balance, settle charges and reports a shortfall, release frees', async () => {
    const account = randomUUID();
    await ck.grant({ accountId: account, amount: 100, now: at(0) });
    const now = at(HOUR);
    const hold = await ck.reserve({ accountId: account, amount: 40, ttl: '10 minutes', event: 'video', idempotencyKey: 'job-1', now });
    expect(hold).toEqual({ allowed: true, holdId: expect.any(Number), balance: 60, expiresAt: pgTime(at(HOUR + 10 * MINUTE)) });
    const settled = await ck.settle({ holdId: hold.holdId!, actual: 25, costMicros: 250_000, now });
    expect(settled).toEqual({ charged: 25, shortfall: 0, balance: 75, transactionId: expect.any(Number) });
    expect(await ck.settle({ holdId: hold.holdId!, actual: 25, costMicros: 250_000, now })).toEqual(settled); // replay
    // the reservation's key now names a settled hold: a retry must not look like a fresh reservation
    const retried = await expectFailure(ck.reserve({ accountId: account, amount: 40, ttl: '10 minutes', event: 'video', idempotencyKey: 'job-1', now }),
      HoldClosedError, 'hold_closed', 'CK012');
    expect(retried.details).toMatchObject({ status: 'settled', hold_id: hold.holdId });

    // actual above reserve + unreserved balance: the reserve is charged, the rest is the shortfall
    const large = await ck.reserve({ accountId: account, amount: 50, now });
    expect(large).toMatchObject({ allowed: true, balance: 25, expiresAt: pgTime(at(HOUR + 15 * MINUTE)) }); // default ttl
    expect(await ck.settle({ holdId: large.holdId!, actual: 90, now })).toEqual({
      charged: 50, shortfall: 40, balance: 25, transactionId: expect.any(Number),
    });

    const small = await ck.reserve({ accountId: account, amount: 10, now });
    expect(small.balance).toBe(15);
    expect(await ck.release({ holdId: small.holdId!, now })).toEqual({ status: 'released', balance: 25 });
    expect(await ck.release({ holdId: small.holdId!, now })).toEqual({ status: 'released', balance: 25 });
    const before = await books();
    const closed = await expectFailure(ck.settle({ holdId: small.holdId!, actual: 1, now }), HoldClosedError, 'hold_closed', 'CK012');
    expect(closed.details).toMatchObject({ status: 'released' });
    const settledClosed = await expectFailure(ck.release({ holdId: large.holdId!, now }), HoldClosedError, 'hold_closed', 'CK012');
    expect(settledClosed.details).toMatchObject({ status: 'settled' });
    expect(await ck.reserve({ accountId: account, amount: 1000, now })).toEqual({
      allowed: false, holdId: null, balance: 25, expiresAt: null,
    });
    expect(await books()).toEqual(before);
  });

  it('history pages newest first; nextBeforeId walks every entry exactly once, then is null', async () => {
    const account = randomUUID();
    await ck.grant({ accountId: account, amount: 100, now: at(0) });
    for (let i = 1; i <= 6; i++) {
      await ck.consume({ accountId: account, amount: i, event: 'chat', idempotencyKey: `k${i}`, metadata: { n: i }, now: at(i * HOUR) });
    }
    const all = await ledgerIds(account);
    expect(all).toHaveLength(7);

    const walk = async (limit: number) => {
      const pages: number[][] = [];
      let beforeId: number | null | undefined;
      do {
        const page = await ck.history({ accountId: account, limit, ...(beforeId === undefined ? {} : { beforeId }) });
        pages.push(page.entries.map((e) => e.id));
        beforeId = page.nextBeforeId;
        if (pages.length > 10) throw new Error('history paging does not end');
      } while (beforeId !== null);
      return pages;
    };
    expect(await walk(3)).toEqual([all.slice(0, 3), all.slice(3, 6), all.slice(6)]);
    // a page that happens to end on the last entry: one more (empty) page, then null
    expect(await walk(7)).toEqual([all, []]);

    const { entries } = await ck.history({ accountId: account, limit: 2 });
    expect(entries[0]).toEqual({
      id: all[0], kind: 'consume', amount: -6, balanceAfter: 79, grantId: null, event: 'chat', idempotencyKey: 'k6',
      metadata: { n: 6 }, createdAt: pgTime(at(6 * HOUR)),
    });
    expect((await ck.history({ accountId: account })).entries.map((e) => e.id)).toEqual(all); // default limit 50
  });

  it('bookExpired books expired credit for the accounts it visits and returns how many', async () => {
    const sweep = at(400 * DAY);
    await ck.bookExpired({ now: sweep }); // whatever earlier tests left due by then
    const account = randomUUID();
    await ck.grant({ accountId: account, amount: 10, expiresAt: at(400 * DAY - HOUR), now: at(399 * DAY) });
    await ck.grant({ accountId: account, amount: 5, now: at(399 * DAY) });
    expect(await ck.bookExpired({ now: sweep, limit: 10 })).toBe(1);
    expect(await ck.bookExpired({ now: sweep })).toBe(0);
    const [entry] = (await ck.history({ accountId: account, limit: 1 })).entries;
    expect(entry).toMatchObject({ kind: 'expire', amount: -10, balanceAfter: 5, createdAt: pgTime(sweep) });
  });

  it('plans: upsertPlan returns the stored row, plans lists active plans cheapest first, setPlan and hasFeature', async () => {
    const record = await ck.upsertPlan({
      id: 'contract_pro', name: 'Contract Pro', allowance: 500, period: 'month', renewal: 'rollover', rolloverCap: 100,
      features: { hd: true }, priceAmount: 2900, currency: 'usd',
    });
    const plan = {
      id: 'contract_pro', name: 'Contract Pro', allowance: 500, period: 'month', renewal: 'rollover', rolloverCap: 100,
      features: { hd: true }, priceAmount: 2900, currency: 'usd', stripePriceId: null, isDefault: false, limits: {},
    };
    const { limits: _limits, ...stored } = plan; // the limits are another table's
    expect(record).toEqual({ ...stored, active: true, createdAt: expect.any(String) });
    const columns = await h.query<{ column_name: string }>(
      `select column_name from information_schema.columns where table_schema = 'creditkit' and table_name = 'plans'`);
    expect(sortedKeys(record)).toEqual(columns.map((c) => camel(c.column_name)).sort());

    const plans = await ck.plans();
    expect(plans.find((p) => p.id === 'contract_pro')).toEqual(plan);
    expect(plans.find((p) => p.id === 'free')).toMatchObject({ isDefault: true, priceAmount: 0 });
    const prices = plans.map((p) => p.priceAmount);
    expect(prices).toEqual([...prices].sort((a, b) => a - b));

    const account = randomUUID();
    expect(await ck.setPlan({ accountId: account, planId: 'contract_pro', now: at(0) })).toEqual({
      planId: 'contract_pro', status: 'active', periodStart: pgTime(at(0)), periodEnd: '2030-02-01T00:00:00+00:00', balance: 500,
    });
    expect(await ck.hasFeature({ accountId: account, feature: 'hd' })).toBe(true);
    expect(await ck.hasFeature({ accountId: account, feature: 'sso' })).toBe(false);
    // back to the free plan: the allowance is booked as expired, the feature is gone
    expect(await ck.setPlan({ accountId: account, planId: 'free', now: at(HOUR) })).toMatchObject({ planId: 'free', balance: 0 });
    expect(await ck.hasFeature({ accountId: account, feature: 'hd' })).toBe(false);
    // an inactive plan is no longer offered
    await ck.upsertPlan({ id: 'contract_old', name: 'Old', active: false });
    expect((await ck.plans()).map((p) => p.id)).not.toContain('contract_old');
  });

  it("a signed-in user reads their own balance, history, plan, features and quotes with their session", async () => {
    const me = await h.createUser();
    const other = await h.createUser();
    await ck.upsertPlan({ id: 'contract_team', name: 'Team', features: { sso: true, hd_upscale: false }, priceAmount: 9900 });
    await ck.setPlan({ accountId: me, planId: 'contract_team' });
    await ck.grant({ accountId: me, amount: 40, expiresAt: '2099-01-01T00:00:00Z', idempotencyKey: 'u-1', metadata: { order_id: 7 } });
    await ck.consume({ accountId: me, amount: 15, event: 'chat' });
    await ck.grant({ accountId: other, amount: 1000 });
    const price = await ck.setPrice({ event: 'contract.user', creditsPerUnit: 7, effectiveFrom: '2020-01-01T00:00:00Z' });

    const client = user(me);
    const balance = await client.balance();
    expect(balance).toMatchObject({ accountId: me, balance: 25, nextExpiry: '2099-01-01T00:00:00+00:00' });
    expect(balance.buckets).toEqual([expect.objectContaining({ category: 'purchase', amount: 40, remaining: 25 })]);
    const { accountId, ...rest } = balance;
    expect(rest).toEqual(await ck.balance({ accountId: me })); // what the server sees, minus the account id
    expect(accountId).toBe(me);

    const history = await client.history();
    expect(history).toEqual(await ck.history({ accountId: me }));
    expect(history.entries.map((e) => [e.kind, e.amount, e.balanceAfter])).toEqual([['consume', -15, 25], ['grant', 40, 40]]);
    expect(history.entries[1]!.metadata).toEqual({ order_id: 7 }); // the app's own keys are not camelCased
    expect(await client.history({ limit: 1 })).toMatchObject({ entries: [{ kind: 'consume' }], nextBeforeId: history.entries[0]!.id });

    expect(await client.plan()).toEqual({
      accountId: me, planId: 'contract_team', planName: 'Team', status: 'active',
      periodStart: expect.any(String), periodEnd: expect.any(String), allowance: 0, features: { sso: true, hd_upscale: false },
      limits: {},
    });
    expect(await client.hasFeature({ feature: 'sso' })).toBe(true);
    expect(await client.hasFeature({ feature: 'hd_upscale' })).toBe(false);
    expect(await client.hasFeature({ feature: 'absent' })).toBe(false);
    expect(await client.hasCredits()).toBe(true);
    expect(await client.hasCredits({ amount: 25 })).toBe(true);
    expect(await client.hasCredits({ amount: 26 })).toBe(false);
    expect(await client.hasCredits({ amount: 1, accountId: other })).toBe(false); // not theirs to read
    expect(await client.quote({ event: 'contract.user', quantity: 3 })).toEqual({ priceId: price, unitCredits: 7, amount: 21, unit: 'credits', overageAmount: null });
    expect(await client.plans()).toEqual(await ck.plans());

    const before = await books();
    await expectFailure(client.balance({ accountId: other }), NotAllowedError, 'not_allowed', 'CK005');
    await expectFailure(client.history({ accountId: other }), NotAllowedError, 'not_allowed', 'CK005');
    expect(await books()).toEqual(before);
  });

  it('units: upsertUnit, units, setPlanLimit, check and report on the server; check and units for a signed-in user', async () => {
    expect(await ck.upsertUnit({ id: 'contract_messages', name: 'Messages', kind: 'metered' }))
      .toEqual({ id: 'contract_messages', name: 'Messages', kind: 'metered', createdAt: expect.any(String) });
    expect((await ck.units()).find((u) => u.id === 'contract_messages')).toEqual({ id: 'contract_messages', name: 'Messages', kind: 'metered' });
    await ck.upsertPlan({ id: 'contract_chat', name: 'Chat', allowance: 5 });
    expect(await ck.setPlanLimit({ planId: 'contract_chat', unit: 'contract_messages', allowance: 20, period: 'day' }))
      .toMatchObject({ planId: 'contract_chat', unit: 'contract_messages', allowance: 20, period: 'day', renewal: 'reset', rolloverCap: null });
    expect((await ck.plans()).find((p) => p.id === 'contract_chat')!.limits)
      .toEqual({ contract_messages: { allowance: 20, period: 'day', renewal: 'reset', rollover_cap: null } });
    const me = await h.createUser();
    await ck.setPlan({ accountId: me, planId: 'contract_chat', now: at(0) });
    expect(await ck.check({ accountId: me, unit: 'contract_messages', amount: 20, now: at(MINUTE) })).toEqual({ allowed: true, balance: 20 });
    const first = await ck.report({ accountId: me, unit: 'contract_messages', amount: 3, idempotencyKey: 'msg-1', now: at(2 * MINUTE) });
    expect(first).toMatchObject({ allowed: true, balance: 17 });
    expect(await ck.report({ accountId: me, unit: 'contract_messages', amount: 3, idempotencyKey: 'msg-1', now: at(3 * MINUTE) })).toEqual(first);
    expect(await ck.check({ accountId: me, now: at(3 * MINUTE) })).toEqual({ allowed: true, balance: 5 }); // credits by default
    await expectFailure(ck.report({ accountId: me, unit: 'contract_nope', amount: 1, now: at(3 * MINUTE) }), UnknownUnitError, 'unknown_unit', 'CK015');
    const client = user(me);
    expect(await client.check({ unit: 'contract_messages', amount: 18 })).toEqual({ allowed: false, balance: 17 });
    expect(await client.units()).toEqual(await ck.units());
    // a NULL allowance removes the limit (the generated types cannot say that an argument without a default takes NULL)
    expect(await ck.setPlanLimit({ planId: 'contract_chat', unit: 'contract_messages', allowance: null as unknown as number })).toBeNull();
  });

  it('unit on every balance method: each grants, spends, holds, reads and pages its own unit, credits untouched', async () => {
    const unit = 'contract_tokens';
    await ck.upsertUnit({ id: unit, name: 'Tokens' });
    const me = await h.createUser();
    await ck.grant({ accountId: me, amount: 7, now: at(0) }); // credits
    expect(await ck.grant({ accountId: me, amount: 50, unit, now: at(0) })).toMatchObject({ balance: 50 });
    expect(await ck.consume({ accountId: me, amount: 5, unit, now: at(MINUTE) })).toMatchObject({ allowed: true, balance: 45 });
    expect(await ck.consumeOrRaise({ accountId: me, amount: 5, unit, now: at(MINUTE) })).toMatchObject({ balance: 40 });
    const short = await expectFailure(ck.consumeOrRaise({ accountId: me, amount: 41, unit, now: at(MINUTE) }),
      InsufficientCreditsError, 'insufficient_credits', 'CK002');
    expect([short.balance, short.required, short.unit]).toEqual([40, 41, unit]);
    expect(await ck.adjust({ accountId: me, amount: -10, reason: 'contract', unit, now: at(2 * MINUTE) })).toMatchObject({ balance: 30 });
    const hold = await ck.reserve({ accountId: me, amount: 20, unit, now: at(2 * MINUTE) });
    expect(hold).toMatchObject({ allowed: true, balance: 10 });
    expect(await ck.reserve({ accountId: me, amount: 11, unit, now: at(2 * MINUTE) })).toMatchObject({ allowed: false, balance: 10 });
    expect(await ck.settle({ holdId: hold.holdId!, actual: 4, now: at(3 * MINUTE) })).toMatchObject({ charged: 4, balance: 26 });
    expect(await ck.check({ accountId: me, unit, amount: 27, now: at(3 * MINUTE) })).toEqual({ allowed: false, balance: 26 });
    expect(await ck.balance({ accountId: me, unit, now: at(3 * MINUTE) })).toMatchObject({ balance: 26, buckets: [{ amount: 50, remaining: 26 }] });
    // a batch in the unit: one event spends 1, the next (26 asked, 25 left) is blocked
    expect((await ck.consumeBatch({ events: [{ accountId: me, amount: 1 }, { accountId: me, amount: 26 }], unit, now: at(3 * MINUTE) }))
      .map((r) => [r.allowed, r.balance])).toEqual([[true, 25], [false, 25]]);
    expect(await ck.adjust({ accountId: me, amount: 1, reason: 'contract: undo the batch', unit, now: at(3 * MINUTE) })).toMatchObject({ balance: 26 });
    const { entries } = await ck.history({ accountId: me, unit });
    expect(entries.map((e) => e.amount)).toEqual([1, -1, -4, -10, -5, -5, 50]);
    // the credits balance saw none of it
    expect(await ck.balance({ accountId: me, now: at(3 * MINUTE) })).toMatchObject({ balance: 7 });
    expect((await ck.history({ accountId: me })).entries.map((e) => e.amount)).toEqual([7]);

    const client = user(me);
    expect(await client.balance({ unit })).toMatchObject({ accountId: me, balance: 26 });
    expect((await client.history({ unit })).entries).toEqual(entries);
    expect([await client.hasCredits({ unit, amount: 26 }), await client.hasCredits({ unit, amount: 27 })]).toEqual([true, false]);
    expect(await client.check({ unit, amount: 26 })).toEqual({ allowed: true, balance: 26 });
    expect(await client.check({ amount: 8 })).toEqual({ allowed: false, balance: 7 }); // credits by default

    // bookExpired books one unit's expired credit
    await ck.grant({ accountId: me, amount: 3, unit, expiresAt: at(10 * MINUTE), now: at(4 * MINUTE) });
    expect(await ck.bookExpired({ unit, now: at(HOUR) })).toBe(1);
    expect((await ck.history({ accountId: me, unit, limit: 1 })).entries).toMatchObject([{ kind: 'expire', amount: -3 }]);
    expect(await ck.balance({ accountId: me, unit, now: at(HOUR) })).toMatchObject({ balance: 26 });
  });

  it('UnknownUnitError (CK015) for a unit that does not exist or is boolean, from the server and the browser client, writing nothing', async () => {
    await ck.upsertUnit({ id: 'contract_flag', name: 'Flag', kind: 'boolean' });
    const me = await h.createUser();
    await ck.grant({ accountId: me, amount: 5, now: at(0) });
    const before = await books();
    for (const unit of ['contract_nope', 'contract_flag']) {
      await expectFailure(ck.grant({ accountId: me, amount: 1, unit, now: at(0) }), UnknownUnitError, 'unknown_unit', 'CK015');
      await expectFailure(ck.consume({ accountId: me, amount: 1, unit, now: at(0) }), UnknownUnitError, 'unknown_unit', 'CK015');
      await expectFailure(ck.reserve({ accountId: me, amount: 1, unit, now: at(0) }), UnknownUnitError, 'unknown_unit', 'CK015');
      await expectFailure(ck.check({ accountId: me, unit, now: at(0) }), UnknownUnitError, 'unknown_unit', 'CK015');
      await expectFailure(ck.balance({ accountId: me, unit, now: at(0) }), UnknownUnitError, 'unknown_unit', 'CK015');
      await expectFailure(user(me).balance({ unit }), UnknownUnitError, 'unknown_unit', 'CK015');
      await expectFailure(user(me).history({ unit }), UnknownUnitError, 'unknown_unit', 'CK015');
      await expectFailure(user(me).check({ unit }), UnknownUnitError, 'unknown_unit', 'CK015');
    }
    expect(await books()).toEqual(before);
  });

  it('packs: upsertPack returns the stored row, packs lists the active ones cheapest first, to signed-in users too', async () => {
    const starter = {
      id: 'contract_starter', name: 'Starter', credits: 500, priceAmount: 900, currency: 'usd',
      stripePriceId: 'price_ContractStarter', expiresAfter: '30 days', unit: 'credits',
    };
    const record = await ck.upsertPack(starter);
    expect(record).toEqual({ ...starter, active: true, createdAt: expect.any(String) });
    const columns = await h.query<{ column_name: string }>(
      `select column_name from information_schema.columns where table_schema = 'creditkit' and table_name = 'packs'`);
    expect(sortedKeys(record)).toEqual(columns.map((c) => camel(c.column_name)).sort());

    const small = { id: 'contract_small', name: 'Small', credits: 100, priceAmount: 200, currency: 'eur', stripePriceId: null, expiresAfter: null, unit: 'credits' };
    expect(await ck.upsertPack({ id: 'contract_small', name: 'Small', credits: 100, priceAmount: 200, currency: 'eur' })).toEqual({
      ...small, active: true, createdAt: expect.any(String),
    });
    await ck.upsertPack({ id: 'contract_retired', name: 'Retired', credits: 10, active: false });
    expect(await ck.packs()).toEqual([small, starter]); // cheapest first; the inactive one is not offered

    // the same id updates the pack in place (created_at kept); its Stripe price names no other pack
    const renamed = await ck.upsertPack({ ...starter, name: 'Starter 500', expiresAfter: '1 year' });
    expect(renamed).toEqual({ ...record, name: 'Starter 500', expiresAfter: '1 year' });
    const packs = await ck.packs();
    expect(packs).toEqual([small, { ...starter, name: 'Starter 500', expiresAfter: '1 year' }]);
    await ck.upsertPack(starter);

    const before = await books();
    const taken = await expectFailure(ck.upsertPack({ id: 'contract_copy', name: 'Copy', credits: 1, stripePriceId: 'price_ContractStarter' }),
      InvalidArgumentError, 'invalid_argument', 'CK006');
    expect(taken.message).toContain('belongs to another pack');
    await expectFailure(ck.upsertPack({ id: 'Contract Pack', name: 'Bad id', credits: 1 }), InvalidArgumentError, 'invalid_argument', 'CK006');
    await expectFailure(ck.upsertPack({ id: 'contract_empty', name: 'Empty', credits: 0 }), InvalidAmountError, 'invalid_amount', 'CK001');
    await expectFailure(ck.upsertPack({ id: 'contract_forever', name: 'Forever', credits: 1, expiresAfter: '-1 day' }),
      InvalidArgumentError, 'invalid_argument', 'CK006');
    expect(await books()).toEqual(before);

    const me = await h.createUser();
    expect(await user(me).packs()).toEqual([small, starter]);
  });

  it('stripeLinkCustomer stores the first customer of an account; stripeCustomer reads it; a customer has one account', async () => {
    const account = randomUUID();
    expect(await ck.stripeCustomer({ accountId: account })).toBeNull();
    expect(await ck.stripeLinkCustomer({ accountId: account, customerId: 'cus_ContractFirst' })).toBe('cus_ContractFirst');
    expect(await ck.stripeLinkCustomer({ accountId: account, customerId: 'cus_ContractFirst' })).toBe('cus_ContractFirst');
    // the first link wins: a second customer for the account is not stored, the first is returned
    expect(await ck.stripeLinkCustomer({ accountId: account, customerId: 'cus_ContractSecond' })).toBe('cus_ContractFirst');
    expect(await ck.stripeCustomer({ accountId: account })).toBe('cus_ContractFirst');
    expect(await h.query('select account_id::text, customer_id from creditkit.stripe_customers where customer_id like $1', ['cus_Contract%']))
      .toEqual([{ account_id: account, customer_id: 'cus_ContractFirst' }]);

    const before = await books();
    const other = randomUUID();
    const taken = await expectFailure(ck.stripeLinkCustomer({ accountId: other, customerId: 'cus_ContractFirst' }),
      InvalidArgumentError, 'invalid_argument', 'CK006');
    expect(taken.message).toContain('cus_ContractFirst belongs to another account');
    await expectFailure(ck.stripeLinkCustomer({ accountId: other, customerId: 'acct_ContractFirst' }), InvalidArgumentError, 'invalid_argument', 'CK006');
    await expectFailure(ck.stripeCustomer({ accountId: 'not-a-uuid' }), InvalidArgumentError, 'invalid_argument', '22P02');
    expect(await books()).toEqual(before); // not even the other account was opened
    expect(await ck.stripeCustomer({ accountId: other })).toBeNull();
  });

  it('stripeApply applies a paid pack checkout once; a redelivery is a duplicate that changes nothing; other types are ignored', async () => {
    const buyer = randomUUID();
    const paid = packCheckoutCompleted({
      event: 'evt_ContractPackPaid', account: buyer, packId: 'contract_starter', amount: 900, customer: 'cus_ContractBuyer',
      payment: 'ContractPackPaid', created: HOUR,
    });
    const first = await ck.stripeApply({ event: paid, now: at(HOUR) });
    expect(first).toEqual({ eventId: 'evt_ContractPackPaid', status: 'applied', effect: 'granted 500 credits', accountId: buyer, duplicate: false });

    // the pack's credits, expiring 30 days after the purchase, with the payment's revenue
    const expires = pgTime(at(HOUR + 30 * DAY));
    const balance = await ck.balance({ accountId: buyer, now: at(2 * HOUR) });
    expect(balance).toEqual({
      balance: 500, nextExpiry: expires,
      buckets: [{ grantId: expect.any(Number), category: 'purchase', amount: 500, remaining: 500, priority: 0, createdAt: pgTime(at(HOUR)), expiresAt: expires }],
    });
    expect((await ck.history({ accountId: buyer })).entries).toEqual([expect.objectContaining({
      kind: 'grant', amount: 500, balanceAfter: 500, grantId: balance.buckets[0]!.grantId, idempotencyKey: 'stripe:pi_ContractPackPaid',
      metadata: { source: 'stripe', payment_intent: 'pi_ContractPackPaid', checkout_session: 'cs_test_ContractPackPaid', pack_id: 'contract_starter' },
      createdAt: pgTime(at(HOUR)),
    })]);
    expect(await ck.accountMargin({ from: at(0), to: at(DAY), accountId: buyer })).toEqual([{
      accountId: buyer, creditsGranted: 500, creditsSpent: 0, revenueMicros: 9_000_000, costMicros: 0, marginMicros: 9_000_000,
    }]);
    expect(await ck.unitUsage({ from: at(0), to: at(DAY), accountId: buyer })).toEqual([{
      unit: 'credits', calls: 0, spent: 0, overageCredits: 0, granted: 500, revenueMicros: 9_000_000, costMicros: 0, marginMicros: 9_000_000,
    }]);
    expect(await ck.stripeCustomer({ accountId: buyer })).toBe('cus_ContractBuyer'); // the webhook linked the buyer

    // Stripe delivers it again: the same answer, marked duplicate; only the delivery is counted
    const [booksBefore, inboxBefore] = [await booksBesideInbox(), await inbox()];
    expect(await ck.stripeApply({ event: paid, now: at(2 * HOUR) })).toEqual({ ...first, duplicate: true });
    expect(await booksBesideInbox()).toEqual(booksBefore);
    expect(await inbox()).not.toEqual(inboxBefore);
    expect((await ck.balance({ accountId: buyer, now: at(2 * HOUR) })).balance).toBe(500);

    const ignored = stripeEvent('evt_ContractIgnored', 'customer.created', 2 * HOUR, { id: 'cus_ContractBuyer', object: 'customer', email: 'ada@example.com' });
    const untouched = await booksBesideInbox();
    expect(await ck.stripeApply({ event: ignored, now: at(2 * HOUR) })).toEqual({
      eventId: 'evt_ContractIgnored', status: 'ignored', effect: 'event type not used by creditkit', accountId: null, duplicate: false,
    });
    expect(await booksBesideInbox()).toEqual(untouched);

    // not a Stripe event at all: CK014, and the inbox does not keep it
    const before = await books();
    for (const event of [{ ...(paid as object), id: 'cs_test_ContractPackPaid' }, { ...(paid as object), data: {} }, { ...(paid as object), created: '1893459600' }, [paid], 42, null]) {
      await expectFailure(ck.stripeApply({ event, now: at(3 * HOUR) }), InvalidEventError, 'invalid_event', 'CK014');
    }
    expect(await books()).toEqual(before);
  });

  it('a pack event naming an unknown pack is dead; stripeReplay applies it once the pack exists; stripeEvents lists the inbox', async () => {
    const buyer = randomUUID();
    const unknownPack = packCheckoutCompleted({
      event: 'evt_ContractPackDead', account: buyer, packId: 'contract_mega', amount: 4900, customer: 'cus_ContractDead',
      payment: 'ContractPackDead', created: 3 * HOUR,
    });
    const message = 'no pack contract_mega (price NULL) in creditkit.packs';
    const before = await booksBesideInbox();
    expect(await ck.stripeApply({ event: unknownPack, now: at(3 * HOUR) })).toEqual({
      eventId: 'evt_ContractPackDead', status: 'dead', effect: message, accountId: null, duplicate: false,
    });
    expect(await booksBesideInbox()).toEqual(before); // nothing granted, no customer linked, no payment recorded
    const dead = {
      id: 'evt_ContractPackDead', type: 'checkout.session.completed', created: pgTime(at(3 * HOUR)), status: 'dead', effect: null,
      accountId: null, errorCode: 'unknown_pack', errorMessage: message, deliveries: 1, receivedAt: pgTime(at(3 * HOUR)),
    };
    expect(await ck.stripeEvents({ status: 'dead' })).toEqual([dead]);

    // replayed while the pack is still missing: still dead
    expect(await ck.stripeReplay({ eventId: 'evt_ContractPackDead', now: at(4 * HOUR) })).toEqual({
      eventId: 'evt_ContractPackDead', status: 'dead', effect: message, accountId: null,
    });
    expect(await ck.stripeEvents({ status: 'dead' })).toEqual([{ ...dead, deliveries: 2 }]);

    // the operator adds the pack, and the replay grants it
    await ck.upsertPack({ id: 'contract_mega', name: 'Mega', credits: 5000, priceAmount: 4900, stripePriceId: 'price_ContractMega' });
    const applied = { eventId: 'evt_ContractPackDead', status: 'applied', effect: 'granted 5000 credits', accountId: buyer };
    expect(await ck.stripeReplay({ eventId: 'evt_ContractPackDead', now: at(5 * HOUR) })).toEqual(applied);
    expect(await ck.balance({ accountId: buyer, now: at(5 * HOUR) })).toEqual({
      balance: 5000, nextExpiry: null,
      buckets: [{ grantId: expect.any(Number), category: 'purchase', amount: 5000, remaining: 5000, priority: 0, createdAt: pgTime(at(5 * HOUR)), expiresAt: null }],
    });
    expect(await ck.stripeCustomer({ accountId: buyer })).toBe('cus_ContractDead');
    expect(await ck.stripeEvents({ status: 'dead' })).toEqual([]);

    // an event that is not dead (any more) is returned as it stands: no second grant
    const settled = await booksBesideInbox();
    expect(await ck.stripeReplay({ eventId: 'evt_ContractPackDead', now: at(6 * HOUR) })).toEqual(applied);
    expect(await ck.stripeApply({ event: unknownPack, now: at(6 * HOUR) })).toEqual({ ...applied, duplicate: true });
    expect((await ck.balance({ accountId: buyer, now: at(6 * HOUR) })).balance).toBe(5000);
    expect(await booksBesideInbox()).toEqual(settled);

    // the whole inbox, newest first (by when it was received), and filtered
    const events = await ck.stripeEvents();
    expect(events.map((e) => [e.id, e.type, e.status, e.effect, e.errorCode, e.errorMessage, e.deliveries, e.receivedAt])).toEqual([
      ['evt_ContractPackDead', 'checkout.session.completed', 'applied', 'granted 5000 credits', null, null, 4, pgTime(at(3 * HOUR))],
      ['evt_ContractIgnored', 'customer.created', 'ignored', 'event type not used by creditkit', null, null, 1, pgTime(at(2 * HOUR))],
      ['evt_ContractPackPaid', 'checkout.session.completed', 'applied', 'granted 500 credits', null, null, 2, pgTime(at(HOUR))],
    ]);
    expect(events[0]).toMatchObject({ accountId: buyer, created: pgTime(at(3 * HOUR)) });
    expect((await ck.stripeEvents({ status: 'applied', limit: 1 })).map((e) => e.id)).toEqual(['evt_ContractPackDead']);
    expect((await ck.stripeEvents({ status: 'ignored' })).map((e) => e.id)).toEqual(['evt_ContractIgnored']);

    const unchanged = await books();
    await expectFailure(ck.stripeReplay({ eventId: 'evt_ContractNeverSent' }), InvalidArgumentError, 'invalid_argument', 'CK006');
    await expectFailure(ck.stripeEvents({ status: 'pending' }), InvalidArgumentError, 'invalid_argument', 'CK006');
    await expectFailure(ck.stripeEvents({ limit: 0 }), InvalidArgumentError, 'invalid_argument', 'CK006');
    expect(await books()).toEqual(unchanged);
  });

  it('auto top-up and balance alerts: terms, thresholds, a card on file, a crossing queues a top-up, the worker\'s claim and results', async () => {
    const W = 50 * DAY; // instants no other test uses
    const unit = 'contract_topup'; // a unit of its own: its alerts and terms touch no other test
    await ck.upsertUnit({ id: unit, name: 'Top-up units' });
    const terms = {
      unit, currency: 'usd', unitPrice: 2, minAmount: 100, maxAmount: 10_000, minThreshold: 0, monthlyAmountCap: 50_000,
      monthlyCountCap: null, cooldown: '00:10:00', actionUrl: 'https://app.example.test/pay/{topup_id}?pi={payment_intent}', enabled: true,
    };
    expect(await ck.setAutoTopupTerms({ ...terms, cooldown: '10 minutes', monthlyCountCap: null })).toEqual({ ...terms, updatedAt: expect.any(String) });
    expect((await ck.autoTopupTerms()).find((t) => t.unit === unit)).toEqual({ ...terms, updatedAt: expect.any(String) });

    // the unit's default threshold, removed again; null and null is the removal
    expect(await ck.setBalanceAlert({ unit, threshold: 50, hysteresis: 5 })).toEqual({ unit, threshold: 50, percent: null, hysteresis: 5, updatedAt: expect.any(String) });
    expect(await ck.setBalanceAlert({ unit, threshold: null, percent: 10 })).toMatchObject({ unit, threshold: null, percent: 10 });
    expect(await ck.setBalanceAlert({ unit, threshold: null })).toBeNull();

    const account = await h.createUser();
    const me = user(account);
    await ck.grant({ accountId: account, amount: 1_000, unit, now: at(W) });
    expect(await ck.balanceAlert({ accountId: account, unit })).toEqual({ accountId: account, unit, threshold: null, source: null, state: 'ok', spendable: 1_000 });
    expect(await ck.setAccountBalanceAlert({ accountId: account, unit, threshold: 300, now: at(W) }))
      .toEqual({ accountId: account, unit, threshold: 300, source: 'account', state: 'ok', spendable: 1_000 });
    const alert = { accountId: account, unit, threshold: 200, source: 'account', state: 'ok', spendable: 1_000 };
    expect(await me.setBalanceAlert({ unit, threshold: 200 })).toEqual(alert);
    expect(await me.balanceAlert({ unit })).toEqual(alert);

    // no card on file yet: auto top-up cannot be switched on
    await expectFailure(me.setAutoTopup({ unit, enabled: true, threshold: 100, amount: 500 }), AutoTopupUnavailableError, 'auto_topup_unavailable', 'CK016');
    const off = await me.autoTopup({ unit });
    expect(off).toMatchObject({ accountId: account, unit, enabled: false, status: 'off', paymentMethod: null, lastTopup: null, monthAmount: 0, monthCount: 0 });

    // a card saved for off-session use, as Stripe reports it
    await ck.stripeLinkCustomer({ accountId: account, customerId: 'cus_ContractTopup' });
    const card = { id: 'pm_ContractCard', object: 'payment_method', type: 'card', customer: 'cus_ContractTopup',
      card: { brand: 'visa', last4: '4242', exp_month: 12, exp_year: 2034 } };
    expect(await ck.stripeApply({ event: stripeEvent('evt_ContractCardSaved', 'setup_intent.succeeded', W, {
      id: 'seti_ContractCard', object: 'setup_intent', customer: 'cus_ContractTopup', payment_method: card, status: 'succeeded', usage: 'off_session',
    }), now: at(W) })).toMatchObject({ status: 'applied', accountId: account });

    const on = await me.setAutoTopup({ unit, enabled: true, threshold: 100, amount: 500 });
    expect(on).toEqual({
      accountId: account, unit, enabled: true, status: 'active', statusReason: null, threshold: 100, amount: 500, target: null, packId: null,
      failures: 0, monthlyAmountCap: 50_000, monthlyCountCap: null, monthAmount: 0, monthCount: 0, currency: 'usd',
      paymentMethod: { id: 'pm_ContractCard', type: 'card', brand: 'visa', last4: '4242', expMonth: 12, expYear: 2034 }, lastTopup: null,
    });
    expect(await ck.autoTopup({ accountId: account, unit })).toEqual(on);
    expect(await ck.setAutoTopup({ accountId: account, unit, enabled: true, threshold: 100, amount: 500, monthlyAmountCap: 20_000, now: at(W) }))
      .toEqual({ ...on, monthlyAmountCap: 20_000 });

    // spending to 80, below both thresholds: balance.low, and one top-up of 500 at 2 cents each
    await ck.consume({ accountId: account, amount: 920, unit, now: at(W + HOUR) });
    const [pending, ...none] = await ck.topups({ accountId: account });
    expect(none).toEqual([]);
    expect(pending).toEqual({
      id: expect.any(Number), accountId: account, unit, status: 'pending', amount: 500, chargeAmount: 1_000, currency: 'usd', attempt: 0,
      paymentIntent: null, failureCode: null, failureMessage: null, actionUrl: null,
      createdAt: expect.any(String), updatedAt: expect.any(String), completedAt: null,
    });
    expect(await me.topups({ unit })).toEqual([pending]);
    expect(await me.balanceAlert({ unit })).toMatchObject({ state: 'low', spendable: 80 });
    expect((await ck.notifications({ accountId: account, type: 'balance.low' })).map((e) => e.payload))
      .toEqual([{ account_id: account, unit, balance: 80, held: 0, spendable: 80, threshold: 200 }]);

    // the worker claims it and Stripe asks the customer to authenticate
    const [claimed, ...others] = await ck.claimTopups({ now: at(W + HOUR) });
    expect(others).toEqual([]);
    expect(claimed).toEqual({
      topupId: pending!.id, attempt: 1, idempotencyKey: `creditkit-topup-${pending!.id}`, accountId: account, unit, amount: 500,
      chargeAmount: 1_000, currency: 'usd', customerId: 'cus_ContractTopup', paymentMethod: 'pm_ContractCard',
      metadata: { creditkit_topup_id: String(pending!.id), creditkit_account_id: account, creditkit_unit: unit, creditkit_amount: '500' },
    });
    expect(await ck.claimTopups({ now: at(W + HOUR) })).toEqual([]); // leased
    expect(await ck.recordTopupResult({ topupId: claimed!.topupId, attempt: 1, outcome: 'requires_action', paymentIntent: 'pi_ContractAuth',
      code: 'authentication_required', message: 'This payment requires authentication', now: at(W + HOUR) }))
      .toEqual({ status: 'action_required', autoTopupStatus: 'action_required' });
    // a late answer for the same attempt changes nothing
    expect(await ck.recordTopupResult({ topupId: claimed!.topupId, attempt: 0, outcome: 'succeeded', paymentIntent: 'pi_Other', now: at(W + HOUR) }))
      .toEqual({ status: 'action_required', autoTopupStatus: 'action_required' });
    const waiting = await me.autoTopup({ unit });
    expect(waiting).toMatchObject({ status: 'action_required', statusReason: 'authentication_required' });
    expect(waiting.lastTopup).toEqual({
      id: pending!.id, status: 'action_required', amount: 500, chargeAmount: 1_000, currency: 'usd', failureCode: 'authentication_required',
      actionUrl: `https://app.example.test/pay/${pending!.id}?pi=pi_ContractAuth`, createdAt: expect.any(String), completedAt: null,
    });

    // the customer pays; the webhook lands the credits once
    expect(await ck.stripeApply({ event: stripeEvent('evt_ContractTopupPaid', 'payment_intent.succeeded', W + 2 * HOUR, {
      id: 'pi_ContractAuth', object: 'payment_intent', amount: 1_000, amount_received: 1_000, currency: 'usd', customer: 'cus_ContractTopup',
      payment_method: 'pm_ContractCard', status: 'succeeded', metadata: claimed!.metadata,
    }), now: at(W + 2 * HOUR) })).toMatchObject({ status: 'applied', accountId: account });
    expect((await ck.balance({ accountId: account, unit, now: at(W + 2 * HOUR) })).balance).toBe(580);
    expect(await ck.topups({ accountId: account, status: 'succeeded', limit: 5 })).toMatchObject([{ id: pending!.id, status: 'succeeded', paymentIntent: 'pi_ContractAuth' }]);
    expect(await me.autoTopup({ unit })).toMatchObject({ status: 'active', monthCount: 1, monthAmount: 1_000 });
    // one type at a time: events written in one transaction share their instant, and their order is not defined
    for (const type of ['topup.action_required', 'topup.succeeded', 'balance.recovered']) {
      expect(await ck.notifications({ accountId: account, type }), type).toHaveLength(1);
    }

    await expectFailure(ck.recordTopupResult({ topupId: 2 ** 40, attempt: 1, outcome: 'succeeded', now: at(W) }), UnknownTopupOrDeliveryError, 'unknown_topup_or_delivery', 'CK018');
    await expectFailure(ck.recordTopupResult({ topupId: claimed!.topupId, attempt: 1, outcome: 'maybe' as never, now: at(W) }), InvalidArgumentError, 'invalid_argument', 'CK006');
    await expectFailure(ck.setAutoTopup({ accountId: account, unit, enabled: true, threshold: 100, amount: 500, target: 900 }), InvalidArgumentError, 'invalid_argument', 'CK006');
    // switched off: nothing more is queued
    expect(await ck.setAutoTopup({ accountId: account, unit, enabled: false, now: at(W + 3 * HOUR) })).toMatchObject({ enabled: false, status: 'off' });
  });

  it('notifications: endpoints, the outbox, a delivery claimed, failed, retried, delivered, replayed and gone', async () => {
    const W = 40 * DAY; // instants no other test uses
    const url = 'https://ops.example.test/creditkit';
    const stored = await ck.upsertWebhookEndpoint({ id: 'contract-ops', url, eventTypes: ['plan.changed'], secret: CONTRACT_SECRET, description: 'ops' });
    expect(stored).toEqual({ id: 'contract-ops', url, eventTypes: ['plan.changed'], enabled: true, secret: CONTRACT_SECRET, disabledReason: null });
    const endpoint = async () => (await ck.webhookEndpoints()).find((e) => e.id === 'contract-ops');
    expect(await endpoint()).toEqual({
      id: 'contract-ops', url, eventTypes: ['plan.changed'], enabled: true, disabledReason: null, description: 'ops',
      createdAt: expect.any(String), pending: 0, delivered: 0, dead: 0,
    });

    // a plan change is an event, with one delivery to the endpoint that wants plan.changed
    const account = randomUUID();
    await ck.setPlan({ accountId: account, planId: 'free', now: at(W) });
    const [event, ...more] = await ck.notifications({ accountId: account, type: 'plan.changed' });
    expect(more).toEqual([]);
    expect(event).toEqual({
      id: expect.stringMatching(/^ntf_[0-9a-f]{32}$/), type: 'plan.changed', accountId: account, unit: null,
      payload: { account_id: account, plan_id: 'free', previous_plan_id: null, status: 'active', previous_status: null },
      createdAt: expect.any(String),
      deliveries: [{ id: expect.any(Number), endpointId: 'contract-ops', status: 'pending', attempts: 0, lastStatus: null, lastError: null, nextAttemptAt: null, deliveredAt: null }],
    });
    const deliveryId = event!.deliveries[0]!.id;
    expect(await endpoint()).toMatchObject({ pending: 1 });

    // the worker's claim: the exact body, signed with the endpoint's secret at the claim's instant
    const [claimed, ...others] = await ck.claimDeliveries({ now: at(W) });
    expect(others).toEqual([]);
    expect(claimed).toEqual({
      deliveryId, attempt: 1, eventId: event!.id, endpointId: 'contract-ops', url, secret: CONTRACT_SECRET,
      body: expect.any(String), timestamp: unix(W),
    });
    expect(JSON.parse(claimed!.body)).toEqual({ id: event!.id, type: 'plan.changed', timestamp: expect.any(String), data: event!.payload });
    const headers = await signWebhook({ id: claimed!.eventId, timestamp: claimed!.timestamp, body: claimed!.body, secret: claimed!.secret });
    expect(await verifyWebhook(claimed!.body, headers, CONTRACT_SECRET, { now: new Date(T0 + W) })).toEqual(JSON.parse(claimed!.body));
    expect(await ck.claimDeliveries({ now: at(W) })).toEqual([]); // leased

    // 500: retried 5 seconds later; a late answer to that attempt changes nothing
    expect(await ck.recordDeliveryResult({ deliveryId, attempt: 1, statusCode: 500, now: at(W) })).toEqual({ status: 'pending', nextAttemptAt: pgTime(at(W + 5_000)) });
    expect(await ck.claimDeliveries({ now: at(W + 4_000) })).toEqual([]);
    expect((await ck.claimDeliveries({ now: at(W + 5_000) })).map((d) => [d.deliveryId, d.attempt])).toEqual([[deliveryId, 2]]);
    expect(await ck.recordDeliveryResult({ deliveryId, attempt: 1, statusCode: 200, now: at(W + 5_000) }))
      .toEqual({ status: 'delivering', nextAttemptAt: pgTime(at(W + 5_000)) });
    expect(await ck.recordDeliveryResult({ deliveryId, attempt: 2, statusCode: null, error: 'no answer within 10000 ms', now: at(W + 6_000) }))
      .toEqual({ status: 'pending', nextAttemptAt: pgTime(at(W + 6_000 + 5 * MINUTE)) });
    const [retried] = await ck.claimDeliveries({ now: at(W + HOUR) });
    expect(retried).toMatchObject({ deliveryId, attempt: 3, body: claimed!.body, timestamp: unix(W + HOUR) });
    expect(await ck.recordDeliveryResult({ deliveryId, attempt: 3, statusCode: 204, now: at(W + HOUR) })).toEqual({ status: 'delivered', nextAttemptAt: null });
    expect((await ck.notifications({ accountId: account }))[0]!.deliveries).toEqual([
      { id: deliveryId, endpointId: 'contract-ops', status: 'delivered', attempts: 3, lastStatus: 204, lastError: null, nextAttemptAt: null, deliveredAt: pgTime(at(W + HOUR)) },
    ]);
    expect(await endpoint()).toMatchObject({ pending: 0, delivered: 1, dead: 0 });

    // replayed: from the first attempt again; this time the receiver answers 410 and the endpoint is disabled
    expect(await ck.replayDelivery({ deliveryId, now: at(W + 2 * HOUR) })).toEqual({ status: 'pending', nextAttemptAt: pgTime(at(W + 2 * HOUR)) });
    const [replayed] = await ck.claimDeliveries({ limit: 1, lease: '30 seconds', now: at(W + 2 * HOUR) });
    expect(replayed).toMatchObject({ deliveryId, attempt: 1 });
    expect(await ck.recordDeliveryResult({ deliveryId, attempt: 1, statusCode: 410, now: at(W + 2 * HOUR) })).toEqual({ status: 'canceled', nextAttemptAt: null });
    expect(await endpoint()).toMatchObject({ enabled: false, disabledReason: 'gone' });

    await expectFailure(ck.replayDelivery({ deliveryId: 2 ** 40, now: at(W) }), UnknownTopupOrDeliveryError, 'unknown_topup_or_delivery', 'CK018');
    await expectFailure(ck.recordDeliveryResult({ deliveryId: 2 ** 40, attempt: 1, statusCode: 200, now: at(W) }),
      UnknownTopupOrDeliveryError, 'unknown_topup_or_delivery', 'CK018');
    await expectFailure(ck.recordDeliveryResult({ deliveryId, attempt: 1, statusCode: 99, now: at(W) }), InvalidArgumentError, 'invalid_argument', 'CK006');
    await expectFailure(ck.upsertWebhookEndpoint({ id: 'contract-bad', url: 'ftp://nope' }), InvalidArgumentError, 'invalid_argument', 'CK006');
    await expectFailure(ck.upsertWebhookEndpoint({ id: 'contract-bad', url, secret: 'whsec_short' }), InvalidArgumentError, 'invalid_argument', 'CK006');
    await expectFailure(ck.notifications({ limit: 0 }), InvalidArgumentError, 'invalid_argument', 'CK006');
    await expectFailure(ck.pruneNotifications({ olderThan: '1 minute' }), InvalidArgumentError, 'invalid_argument', 'CK006');
    await expectFailure(ck.deleteWebhookEndpoint({ id: 'contract-never' }), UnknownEndpointError, 'unknown_endpoint', 'CK017');

    // events whose deliveries are all final are pruned once old enough (an event is as old as the
    // transaction that wrote it: the clock's time, whatever p_now the call that caused it named)
    expect(await ck.pruneNotifications({ now: new Date() })).toBe(0);
    expect(await ck.pruneNotifications({ olderThan: '1 hour', now: new Date(Date.now() + 2 * HOUR) })).toBeGreaterThanOrEqual(1);
    expect(await ck.notifications({ accountId: account })).toEqual([]);

    // a deleted endpoint takes its deliveries with it
    await ck.upsertWebhookEndpoint({ id: 'contract-ops', url, eventTypes: ['plan.changed'] });
    await ck.setPlan({ accountId: account, planId: 'contract_pro', now: at(W + 3 * HOUR) });
    expect(await ck.deleteWebhookEndpoint({ id: 'contract-ops' })).toBe(1);
    expect((await ck.webhookEndpoints()).map((e) => e.id)).not.toContain('contract-ops');
    expect((await ck.notifications({ accountId: account })).map((e) => [e.type, e.deliveries])).toEqual([['plan.changed', []]]);
  });

  it('a signed-in user cannot call the server functions: NotAllowedError (42501) and nothing changes', async () => {
    const me = await h.createUser();
    await ck.grant({ accountId: me, amount: 10 });
    const asMe = recorded(h.serverWithUserCredentials(me), 'server', log);
    const window = { from: at(0), to: at(DAY) };
    // every server-only method, with arguments that would succeed for the service role
    const calls: Record<Exclude<keyof typeof SERVER_METHODS, 'plans' | 'quote' | 'packs' | 'units' | 'autoTopupTerms'>, () => Promise<unknown>> = {
      consume: () => asMe.consume({ accountId: me, amount: 1 }),
      check: () => asMe.check({ accountId: me }),
      report: () => asMe.report({ accountId: me, unit: 'credits', amount: 1 }),
      upsertUnit: () => asMe.upsertUnit({ id: 'contract_mine', name: 'Mine' }),
      setPlanLimit: () => asMe.setPlanLimit({ planId: 'free', unit: 'contract_messages', allowance: 1_000_000 }),
      consumeOrRaise: () => asMe.consumeOrRaise({ accountId: me, amount: 1 }),
      consumeBatch: () => asMe.consumeBatch({ events: [{ accountId: me, amount: 1 }] }),
      meter: () => asMe.meter({ accountId: me, event: 'contract.user' }),
      reserve: () => asMe.reserve({ accountId: me, amount: 1 }),
      settle: () => asMe.settle({ holdId: 1, actual: 1 }),
      release: () => asMe.release({ holdId: 1 }),
      grant: () => asMe.grant({ accountId: me, amount: 1_000_000 }),
      adjust: () => asMe.adjust({ accountId: me, amount: 1_000_000, reason: 'free money' }),
      bookExpired: () => asMe.bookExpired(),
      balance: () => asMe.balance({ accountId: me }),
      history: () => asMe.history({ accountId: me }),
      upsertPlan: () => asMe.upsertPlan({ id: 'free', name: 'Mine', allowance: 1_000_000 }),
      setPlan: () => asMe.setPlan({ accountId: me, planId: 'contract_pro' }),
      hasFeature: () => asMe.hasFeature({ accountId: me, feature: 'hd' }),
      setPrice: () => asMe.setPrice({ event: 'contract.user', creditsPerUnit: 1 }),
      accountMargin: () => asMe.accountMargin(window),
      unitUsage: () => asMe.unitUsage(window),
      usageSeries: () => asMe.usageSeries(window),
      topEvents: () => asMe.topEvents(window),
      creditsOutstanding: () => asMe.creditsOutstanding(),
      accountsPerPlan: () => asMe.accountsPerPlan(),
      mrr: () => asMe.mrr(),
      upsertPack: () => asMe.upsertPack({ id: 'contract_mine', name: 'Mine', credits: 1_000_000 }),
      stripeApply: () => asMe.stripeApply({ event: packCheckoutCompleted({
        event: 'evt_ContractForged', account: me, packId: 'contract_starter', amount: 0, customer: 'cus_ContractMine', payment: 'ContractForged', created: 0,
      }) }),
      stripeReplay: () => asMe.stripeReplay({ eventId: 'evt_ContractPackDead' }),
      stripeEvents: () => asMe.stripeEvents(),
      stripeCustomer: () => asMe.stripeCustomer({ accountId: me }),
      stripeLinkCustomer: () => asMe.stripeLinkCustomer({ accountId: me, customerId: 'cus_ContractMine' }),
      setAutoTopupTerms: () => asMe.setAutoTopupTerms({ unit: 'credits', currency: 'usd', unitPrice: 0, minAmount: 1, maxAmount: 1_000_000 }),
      setBalanceAlert: () => asMe.setBalanceAlert({ unit: 'credits', threshold: null }),
      setAccountBalanceAlert: () => asMe.setAccountBalanceAlert({ accountId: me, unit: 'credits', threshold: null }),
      balanceAlert: () => asMe.balanceAlert({ accountId: me }),
      setAutoTopup: () => asMe.setAutoTopup({ accountId: me, unit: 'credits', enabled: false, threshold: 1 }),
      autoTopup: () => asMe.autoTopup({ accountId: me }),
      topups: () => asMe.topups(),
      upsertWebhookEndpoint: () => asMe.upsertWebhookEndpoint({ id: 'contract-mine', url: 'https://attacker.example/hook' }),
      deleteWebhookEndpoint: () => asMe.deleteWebhookEndpoint({ id: 'contract-ops' }),
      webhookEndpoints: () => asMe.webhookEndpoints(),
      notifications: () => asMe.notifications(),
      replayDelivery: () => asMe.replayDelivery({ deliveryId: 1 }),
      pruneNotifications: () => asMe.pruneNotifications(),
      claimTopups: () => asMe.claimTopups(),
      recordTopupResult: () => asMe.recordTopupResult({ topupId: 1, attempt: 1, outcome: 'succeeded' }),
      claimDeliveries: () => asMe.claimDeliveries(),
      recordDeliveryResult: () => asMe.recordDeliveryResult({ deliveryId: 1, attempt: 1, statusCode: 200 }),
    };
    const before = await books();
    for (const [method, call] of Object.entries(calls)) {
      const error = await expectFailure(call(), NotAllowedError, 'not_allowed', '42501').catch((e: Error) => {
        throw new Error(`${method} as a signed-in user: ${e.message}`);
      });
      expect(error.message).toContain('permission denied');
    }
    expect(await books()).toEqual(before);
  });

  it('analytics follow from what the test did', async () => {
    const W = Date.parse('2032-01-01T00:00:00Z') - T0; // a window no other test writes in
    const window = { from: at(W), to: at(W + 31 * DAY) };
    const outstandingAt = at(W + 10 * DAY);
    const outstanding = async () =>
      Object.fromEntries((await ck.creditsOutstanding({ now: outstandingAt })).map((r) => [r.category, r]));
    const perPlan = async () => Object.fromEntries((await ck.accountsPerPlan()).map((r) => [r.planId, r.accounts]));
    const outstandingBefore = await outstanding();
    const perPlanBefore = await perPlan();
    const mrrBefore = await ck.mrr();

    const [a, b] = [randomUUID(), randomUUID()];
    await ck.grant({ accountId: a, amount: 100, revenueMicros: 5_000_000, now: at(W) });
    await ck.grant({ accountId: b, amount: 50, category: 'promotional', revenueMicros: 1_000_000, now: at(W) });
    await ck.consume({ accountId: a, amount: 30, event: 'contract.a', costMicros: 100_000, now: at(W + DAY) });
    await ck.consume({ accountId: a, amount: 10, event: 'contract.a', costMicros: 50_000, now: at(W + 2 * DAY) });
    await ck.consume({ accountId: b, amount: 5, event: 'contract.b', costMicros: 1_000, now: at(W + 2 * DAY) });
    await ck.upsertPlan({ id: 'contract_annual', name: 'Annual', period: 'year', priceAmount: 12_000, currency: 'chf' });
    await ck.setPlan({ accountId: a, planId: 'contract_annual', now: at(W + 3 * DAY) });

    const marginA = { accountId: a, creditsGranted: 100, creditsSpent: 40, revenueMicros: 5_000_000, costMicros: 150_000, marginMicros: 4_850_000 };
    const marginB = { accountId: b, creditsGranted: 50, creditsSpent: 5, revenueMicros: 1_000_000, costMicros: 1_000, marginMicros: 999_000 };
    expect(await ck.accountMargin({ ...window, accountId: a })).toEqual([marginA]);
    expect(await ck.accountMargin(window)).toEqual([marginA, marginB]); // highest margin first

    expect(await ck.usageSeries(window)).toEqual([
      { day: '2032-01-02', event: 'contract.a', calls: 1, credits: 30, costMicros: 100_000 },
      { day: '2032-01-03', event: 'contract.a', calls: 1, credits: 10, costMicros: 50_000 },
      { day: '2032-01-03', event: 'contract.b', calls: 1, credits: 5, costMicros: 1_000 },
    ]);
    expect(await ck.usageSeries({ ...window, accountId: b })).toEqual([
      { day: '2032-01-03', event: 'contract.b', calls: 1, credits: 5, costMicros: 1_000 },
    ]);
    expect(await ck.usageSeries({ ...window, event: 'contract.a', from: at(W + 2 * DAY) })).toEqual([
      { day: '2032-01-03', event: 'contract.a', calls: 1, credits: 10, costMicros: 50_000 },
    ]);

    const topA = { event: 'contract.a', calls: 2, credits: 40, costMicros: 150_000, accounts: 1 };
    const topB = { event: 'contract.b', calls: 1, credits: 5, costMicros: 1_000, accounts: 1 };
    expect(await ck.topEvents(window)).toEqual([topA, topB]);
    expect(await ck.topEvents({ ...window, limit: 1 })).toEqual([topA]);

    // the liability grew by what a and b still hold, by category
    const after = await outstanding();
    const delta = (category: string, field: 'credits' | 'accounts') =>
      (after[category]?.[field] ?? 0) - (outstandingBefore[category]?.[field] ?? 0);
    expect([delta('purchase', 'credits'), delta('purchase', 'accounts')]).toEqual([60, 1]);
    expect([delta('promotional', 'credits'), delta('promotional', 'accounts')]).toEqual([45, 1]);

    // a is on the annual plan now, b on the default; MRR counts the annual price as 1/12 a month
    const plansAfter = await perPlan();
    expect(plansAfter.contract_annual).toBe(1);
    expect((plansAfter.free ?? 0) - (perPlanBefore.free ?? 0)).toBe(1);
    expect(mrrBefore.find((r) => r.currency === 'chf')).toBeUndefined();
    expect((await ck.mrr()).find((r) => r.currency === 'chf')).toEqual({ currency: 'chf', mrr: 1_000, subscriptions: 1 });
  });

  it('typed errors: each catalogued code the SDK can trigger arrives as its own class, never a raw driver error', async () => {
    const account = randomUUID();
    await ck.grant({ accountId: account, amount: 10, now: at(0) });
    await ck.consume({ accountId: account, amount: 1, idempotencyKey: 'dup', now: at(HOUR) });
    const hold = await ck.reserve({ accountId: account, amount: 2, now: at(HOUR) });
    await ck.release({ holdId: hold.holdId!, now: at(HOUR) });
    const before = await books();
    const stranger = randomUUID();

    await expectFailure(ck.consume({ accountId: account, amount: 0, now: at(HOUR) }), InvalidAmountError, 'invalid_amount', 'CK001');
    await expectFailure(ck.consume({ accountId: account, amount: -5, now: at(HOUR) }), InvalidAmountError, 'invalid_amount', 'CK001');
    await expectFailure(ck.grant({ accountId: account, amount: 0, now: at(HOUR) }), InvalidAmountError, 'invalid_amount', 'CK001');
    const unknown = await expectFailure(ck.consume({ accountId: stranger, amount: 1 }), UnknownAccountError, 'unknown_account', 'CK003');
    expect(unknown.details).toEqual({ account_id: stranger });
    await expectFailure(ck.balance({ accountId: stranger }), UnknownAccountError, 'unknown_account', 'CK003');
    await expectFailure(ck.consume({ accountId: account, amount: 2, idempotencyKey: 'dup', now: at(HOUR) }),
      IdempotencyConflictError, 'idempotency_conflict', 'CK004');
    await expectFailure(ck.setPlan({ accountId: account, planId: 'no_such_plan', now: at(HOUR) }), UnknownPlanError, 'unknown_plan', 'CK009');
    await expectFailure(ck.quote({ event: 'no.such.event' }), UnknownEventError, 'unknown_event', 'CK010');
    await expectFailure(ck.meter({ accountId: account, event: 'no.such.event', now: at(HOUR) }), UnknownEventError, 'unknown_event', 'CK010');
    await expectFailure(ck.release({ holdId: 2 ** 40, now: at(HOUR) }), UnknownHoldError, 'unknown_hold', 'CK011');
    await expectFailure(ck.settle({ holdId: hold.holdId!, actual: 1, now: at(HOUR) }), HoldClosedError, 'hold_closed', 'CK012');
    await expectFailure(ck.consume({ accountId: 'not-a-uuid', amount: 1 }), InvalidArgumentError, 'invalid_argument', '22P02');
    await expectFailure(ck.grant({ accountId: account, amount: 1, category: 'bogus', now: at(HOUR) }), InvalidArgumentError, 'invalid_argument', 'CK006');
    await expectFailure(ck.history({ accountId: account, limit: 0 }), InvalidArgumentError, 'invalid_argument', 'CK006');
    expect(await books()).toEqual(before);
  });

  it('exact integers only: unsafe, fractional, NaN, infinite, string and oversized bigint values are refused before sending', async () => {
    const account = randomUUID();
    await ck.grant({ accountId: account, amount: 10, now: at(0) });
    let sent: CountingTransport | undefined;
    const guarded = h.withTransport((t) => (sent = counting(t)));
    const before = await books();
    const requestsBefore = h.httpRequests?.();

    const BAD: unknown[] = [2 ** 53, 2 ** 53 + 2, -(2 ** 53), 1.5, 0.1, NaN, Infinity, -Infinity, 1e300,
      '9007199254740992', '10', 2n ** 53n, -(2n ** 53n)];
    const bad = (v: unknown) => v as never;
    const credit: Array<[string, (v: unknown) => Promise<unknown>]> = [
      ['grant.amount', (v) => guarded.grant({ accountId: account, amount: bad(v) })],
      ['consume.amount', (v) => guarded.consume({ accountId: account, amount: bad(v) })],
      ['consumeBatch.amount', (v) => guarded.consumeBatch({ events: [{ accountId: account, amount: 1 }, { accountId: account, amount: bad(v) }] })],
      ['adjust.amount', (v) => guarded.adjust({ accountId: account, amount: bad(v), reason: 'x' })],
      ['meter.quantity', (v) => guarded.meter({ accountId: account, event: 'e', quantity: bad(v) })],
      ['settle.actual', (v) => guarded.settle({ holdId: 1, actual: bad(v) })],
      ['setPrice.creditsPerUnit', (v) => guarded.setPrice({ event: 'e', creditsPerUnit: bad(v) })],
      ['upsertPlan.allowance', (v) => guarded.upsertPlan({ id: 'x', name: 'X', allowance: bad(v) })],
      ['upsertPlan.rolloverCap', (v) => guarded.upsertPlan({ id: 'x', name: 'X', rolloverCap: bad(v) })],
      ['quote.quantity', (v) => guarded.quote({ event: 'e', quantity: bad(v) })],
      ['upsertPack.credits', (v) => guarded.upsertPack({ id: 'x', name: 'X', credits: bad(v) })],
    ];
    const other: Array<[string, (v: unknown) => Promise<unknown>]> = [
      ['history.limit', (v) => guarded.history({ accountId: account, limit: bad(v) })],
      ['history.beforeId', (v) => guarded.history({ accountId: account, beforeId: bad(v) })],
      ['settle.holdId', (v) => guarded.settle({ holdId: bad(v), actual: 1 })],
      ['release.holdId', (v) => guarded.release({ holdId: bad(v) })],
      ['consume.costMicros', (v) => guarded.consume({ accountId: account, amount: 1, costMicros: bad(v) })],
      ['consumeBatch.costMicros', (v) => guarded.consumeBatch({ events: [{ accountId: account, amount: 1, costMicros: bad(v) }] })],
      ['grant.revenueMicros', (v) => guarded.grant({ accountId: account, amount: 1, revenueMicros: bad(v) })],
      ['grant.priority', (v) => guarded.grant({ accountId: account, amount: 1, priority: bad(v) })],
      ['upsertPlan.priceAmount', (v) => guarded.upsertPlan({ id: 'x', name: 'X', priceAmount: bad(v) })],
      ['bookExpired.limit', (v) => guarded.bookExpired({ limit: bad(v) })],
      ['topEvents.limit', (v) => guarded.topEvents({ from: at(0), to: at(DAY), limit: bad(v) })],
      ['upsertPack.priceAmount', (v) => guarded.upsertPack({ id: 'x', name: 'X', credits: 1, priceAmount: bad(v) })],
      ['stripeEvents.limit', (v) => guarded.stripeEvents({ limit: bad(v) })],
    ];
    for (const value of BAD) {
      for (const [name, call] of credit) {
        const error = await expectFailure(call(value), InvalidAmountError, 'invalid_amount', undefined)
          .catch((e: Error) => { throw new Error(`${name} = ${String(value)}: ${e.message}`); });
        expect(error.details).toMatchObject({ parameter: name.split('.')[1] });
      }
      for (const [name, call] of other) {
        await expectFailure(call(value), InvalidArgumentError, 'invalid_argument', undefined)
          .catch((e: Error) => { throw new Error(`${name} = ${String(value)}: ${e.message}`); });
      }
    }
    expect(sent?.calls).toEqual([]);
    expect(h.httpRequests?.()).toBe(requestsBefore);
    expect(await books()).toEqual(before);
  });

  it('2^53-1 arrives and returns exactly on this transport, and bigint arguments within range work', async () => {
    const account = randomUUID();
    const granted = await ck.grant({ accountId: account, amount: MAX, now: at(0) });
    expect(granted.balance).toBe(9007199254740991);
    const [stored] = await h.query<{ balance: string }>('select balance::text from creditkit.accounts where id = $1', [account]);
    expect(stored?.balance).toBe('9007199254740991');
    const balance = await ck.balance({ accountId: account, now: at(HOUR) });
    expect(balance.balance).toBe(9007199254740991);
    expect(balance.buckets[0]).toMatchObject({ amount: 9007199254740991, remaining: 9007199254740991 });
    expect((await ck.history({ accountId: account })).entries[0]).toMatchObject({ amount: MAX, balanceAfter: MAX });

    const before = await books();
    await expectFailure(ck.grant({ accountId: account, amount: 1, now: at(HOUR) }), BalanceLimitError, 'balance_limit', 'CK007');
    expect(await books()).toEqual(before);

    // the same exact value as a bigint spends it all
    expect(await ck.consume({ accountId: account, amount: big(9007199254740991n), now: at(2 * HOUR) })).toMatchObject({
      allowed: true, balance: 0,
    });
    const other = randomUUID();
    expect((await ck.grant({ accountId: other, amount: big(250n), revenueMicros: big(1_000n), now: at(0) })).balance).toBe(250);
    expect(await ck.consume({ accountId: other, amount: big(50n), costMicros: big(10n), now: at(HOUR) })).toMatchObject({ balance: 200 });
    const page = await ck.history({ accountId: other, limit: big(1n) });
    expect(page.entries.map((e) => e.amount)).toEqual([-50]);
    expect(page.nextBeforeId).toBe(page.entries[0]!.id);
    expect((await ck.history({ accountId: other, beforeId: big(BigInt(page.nextBeforeId!)) })).entries.map((e) => e.amount)).toEqual([250]);
    const pack = await ck.upsertPack({ id: 'contract_exact', name: 'Exact', credits: big(9007199254740991n), priceAmount: MAX, active: false });
    expect([pack.credits, pack.priceAmount]).toEqual([MAX, MAX]);
  });

  it('text arrives verbatim: quotes, backslashes, newlines, unicode, and JSON metadata of any shape', async () => {
    const account = randomUUID();
    await ck.grant({ accountId: account, amount: 10, now: at(0) });
    const tricky = `it's a "quote" \\ back\\slash \\' \n new line \t tab ünïcødé 😀 $$ $1 -- ;`;
    const metadata = { [tricky]: tricky, nested: { list: [tricky, 1.5, null, true], big: 2 ** 60 }, snake_key: 'kept' };
    const call = { accountId: account, amount: 1, event: tricky, idempotencyKey: tricky, metadata };
    const spent = await ck.consume({ ...call, now: at(HOUR) });
    expect(spent).toMatchObject({ allowed: true, balance: 9 });
    expect(await ck.consume({ ...call, now: at(2 * HOUR) })).toEqual(spent); // the same key finds it again
    const [entry] = (await ck.history({ accountId: account, limit: 1 })).entries;
    expect(entry).toMatchObject({ id: spent.transactionId, event: tricky, idempotencyKey: tricky, metadata });
    const [row] = await h.query('select event, idempotency_key, metadata from creditkit.ledger where id = $1', [spent.transactionId]);
    expect(row).toEqual({ event: tricky, idempotency_key: tricky, metadata });
    expect((await ck.adjust({ accountId: account, amount: 1, reason: tricky, now: at(3 * HOUR) })).balance).toBe(10);
    expect((await ck.history({ accountId: account, limit: 1 })).entries[0]!.metadata).toEqual({ reason: tricky });
  });

  it('sums above 2^53-1 come back exactly, or fail; never silently rounded', async () => {
    // One account is granted 2^53-1, spends it, and is granted 2: 2^53+1 credits granted in the window.
    const W = Date.parse('2033-01-01T00:00:00Z') - T0;
    const account = randomUUID();
    await ck.grant({ accountId: account, amount: MAX, now: at(W) });
    await ck.consume({ accountId: account, amount: MAX, now: at(W + HOUR) });
    await ck.grant({ accountId: account, amount: 2, now: at(W + 2 * HOUR) });
    const [exact] = await h.query<{ granted: string }>(
      'select credits_granted::text as granted from public.creditkit_account_margin($1, $2, $3)', [at(W), at(W + DAY), account]);
    expect(exact?.granted).toBe('9007199254740993');
    const outcome = await ck.accountMargin({ from: at(W), to: at(W + DAY), accountId: account }).then(
      (rows) => rows[0]?.creditsGranted, (error: unknown) => error);
    // Refusing to answer is acceptable (the SDK does, with out_of_range); a wrong number is not.
    expect(outcome).toBeInstanceOf(CreditkitError);
    expect((outcome as CreditkitError).code).toBe('out_of_range');
  });

  // ── From the record of this run ──

  it('every answer has exactly the OUT/TABLE columns of its function, camelCased', async () => {
    const catalogue = await h.query<{ name: string; names: string[] | null; modes: string[] | null }>(
      `select p.proname as name, p.proargnames as names, p.proargmodes::text[] as modes
         from pg_catalog.pg_proc p
        where p.pronamespace = 'public'::regnamespace and p.proname like 'creditkit\\_%'`);
    const columns = new Map<string, string[]>();
    for (const { name, names, modes } of catalogue) {
      const out = (names ?? []).filter((_, i) => ['o', 't', 'b'].includes(modes?.[i] ?? 'i'));
      if (out.length > 0) columns.set(name, out.map(camel).sort());
    }
    expect(columns.size).toBeGreaterThan(15); // the query found the catalogue

    const checked = new Set<string>();
    for (const entry of log.filter((e) => e.ok)) {
      const fn = functionOf(entry);
      const expected = columns.get(fn);
      if (!expected) continue;
      const value = entry.value as { entries?: unknown[] } | unknown[];
      const rows = Array.isArray(value) ? value : 'entries' in value && Array.isArray(value.entries) ? value.entries : [value];
      for (const row of rows) {
        expect(sortedKeys(row), `${entry.side}.${entry.method} (${fn})`).toEqual(expected);
        checked.add(fn);
      }
    }
    // every function with OUT columns returned at least one row somewhere in this run
    expect([...checked].sort()).toEqual([...columns.keys()].sort());
  });

  it('every public creditkit function in the catalogue was reached through an SDK method', async () => {
    const catalogue = (await h.query<{ name: string }>(
      `select distinct p.proname as name from pg_catalog.pg_proc p
        where p.pronamespace = 'public'::regnamespace and p.proname like 'creditkit\\_%'`)).map((r) => r.name).sort();
    const mapped = [...new Set([...Object.values(SERVER_METHODS), ...Object.values(CLIENT_METHODS)])].sort();
    expect(mapped).toEqual(catalogue);
    const reached = [...new Set(log.filter((e) => e.ok).map(functionOf))].sort();
    expect(reached).toEqual(catalogue);
  });

  // Last: it drops a function from this transport's database.
  it('a function missing from the database (migrations not applied) is not_installed', async () => {
    await h.query('drop function public.creditkit_mrr()');
    const error = await rejectionOf(ck.mrr());
    expect(error).toBeInstanceOf(CreditkitError);
    expect((error as CreditkitError).code).toBe('not_installed');
    expect(['42883', 'PGRST202']).toContain((error as CreditkitError).sqlstate);
    expect((error as Error).message).toContain('migrations');
    expectNotRaw(error, true);
  });
}

for (const factory of TRANSPORTS) {
  (factory.citus ? describeIfCitus : factory.postgres ? describeIfPostgres : describe)(`SDK contract over ${factory.name}`, () => contract(factory));
}

// ── The same answers everywhere ──────────────────────────────────────────────────────────

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)$/;
const ID_KEYS = new Set(['id', 'transactionId', 'grantId', 'holdId', 'priceId', 'nextBeforeId', 'transaction_id', 'hold_id', 'grant_id',
  'topupId', 'deliveryId', 'topup_id', 'delivery_id']);

/** Ids, uuids and instants replaced by placeholders; everything else kept. */
function normalize(value: unknown, key?: string): unknown {
  if (Array.isArray(value)) return value.map((v) => normalize(v));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalize(v, k)]));
  }
  if (key !== undefined && ID_KEYS.has(key) && typeof value === 'number') return '<id>';
  // a top-up's id inside its Stripe idempotency key and metadata (ids differ by node on Citus)
  if (key === 'creditkit_topup_id' && typeof value === 'string') return '<id>';
  // ... and wherever a string names a top-up by its id (its key, its link, what a webhook did)
  if (typeof value === 'string' && /(top-?up[- ]|\/pay\/)\d/.test(value)) {
    return normalize(value.replace(/(top-?up[- ]|\/pay\/)\d+/g, '$1<id>'));
  }
  if (typeof value === 'string' && UUID.test(value)) return '<uuid>';
  if (typeof value === 'string' && INSTANT.test(value)) return '<instant>';
  // a notification's id, and the body a delivery sends (JSON holding the id, uuids and an instant)
  if (typeof value === 'string') {
    return value
      .replace(/ntf_[0-9a-f]{32}/g, '<ntf>')
      .replace(new RegExp(UUID.source.slice(1, -1), 'g'), '<uuid>')
      .replace(new RegExp(INSTANT.source.slice(1, -1), 'g'), '<instant>');
  }
  return value;
}

function transcript(log: Entry[]): unknown[] {
  return log.map((e) => {
    const call = `${e.side}.${e.method}`;
    if (!e.ok) {
      const error = e.error as CreditkitError;
      // a missing function is 42883 from Postgres, PGRST202 from PostgREST's schema cache
      const sqlstate = error.code === 'not_installed' ? '<missing function>' : error.sqlstate;
      return { call, error: error.name, code: error.code, sqlstate, details: normalize(error.details) };
    }
    // setPrice answers a bare price id
    return { call, value: e.method === 'setPrice' ? '<id>' : normalize(e.value) };
  });
}

describeIfPostgres('SDK contract: every transport gave the same answers', () => {
  it('the records match call by call (ids, uuids and instants aside)', () => {
    // Citus only where its suite ran (describeIfCitus: required in CI, skipped on a machine without the cluster)
    const names = TRANSPORTS.filter((t) => !t.citus || records.has(t.name)).map((t) => t.name);
    for (const name of names) {
      expect(records.get(name)?.length ?? 0, `no record from ${name}: run the whole file`).toBeGreaterThan(50);
    }
    const [first, ...rest] = names.map((name) => transcript(records.get(name)!));
    for (const [n, other] of rest.entries()) {
      // call by call, so a difference names the first call where the transports part ways
      for (let i = 0; i < Math.max(first!.length, other.length); i++) {
        expect(other[i], `call #${i} on ${names[n + 1]} vs ${names[0]}`).toEqual(first![i]);
      }
    }
  });
});
