// Unit tests of the layer between the typed methods and a transport (src/call.ts, errors.ts):
//  - which SQL function each SDK method calls, with which arguments (fake transport);
//  - argument conversion and validation (toSqlArgs): camelCase to p_snake_case, Dates, exact
//    integers only, nothing sent when a value is refused;
//  - error mapping (toCreditkitError): every catalogued SQLSTATE to its class, Postgres and
//    PostgREST conditions to stable codes;
//  - retries: serialization failures and deadlocks are retried up to `retries` times, business
//    and network errors never. Injected failures run over a real PGlite transport so the
//    effect of a retried call can be counted in the ledger; on real Postgres, a real
//    serialization failure and a real deadlock are provoked with a second session;
//  - the SQL transports' own job: literals that mean the same text whatever
//    standard_conforming_strings says, and instants in UTC whatever the session's TimeZone;
//  - unreachable databases (closed port, closed PGlite, a gateway without PostgREST behind it).
import { randomUUID } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { createClient } from '@supabase/supabase-js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, noWebSocket, pgliteTemplate, type TestDatabase } from '@creditkit/testing';
import { describeIfPostgres } from '@creditkit/testing/vitest';
import { createEmbeddedCreditkit, type EmbeddedCreditkit } from '../src/embedded.ts';
import {
  AutoTopupUnavailableError,
  BalanceLimitError,
  ConcurrencyError,
  LockTimeoutError,
  StatementTimeoutError,
  CreditkitClient,
  CreditkitError,
  CreditkitServer,
  HoldClosedError,
  IdempotencyConflictError,
  InsufficientCreditsError,
  InvalidAmountError,
  InvalidArgumentError,
  InvalidEventError,
  NotAllowedError,
  SQLSTATE_CODES,
  TransportError,
  UnavailableError,
  UnknownAccountError,
  UnknownEndpointError,
  UnknownEventError,
  UnknownHoldError,
  UnknownPackError,
  UnknownPlanError,
  UnknownTopupOrDeliveryError,
  UnknownUnitError,
  createCreditkit,
  isRetryable,
  pgTransport,
  toCreditkitError,
  toBatchEvents,
  toSqlArgs,
  type ErrorCode,
  type RawError,
  type SqlArgs,
  type Transport,
} from '../src/server.ts';
import { CLIENT_METHODS, SERVER_METHODS, counting } from './support/transports.ts';

async function rejectionOf(promise: Promise<unknown>): Promise<CreditkitError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(CreditkitError);
    return error as CreditkitError;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

// ── Methods → functions ──────────────────────────────────────────────────────────────────

/** A transport that answers one empty row and remembers what it was asked. */
function fake(): Transport & { sent: Array<{ fn: string; args: SqlArgs }> } {
  const sent: Array<{ fn: string; args: SqlArgs }> = [];
  return {
    kind: 'fake',
    sent,
    async rpc(fn, args) {
      sent.push({ fn, args });
      return [{}];
    },
  };
}

const ACCOUNT = '00000000-0000-4000-8000-00000000a11c';
const WINDOW = { from: '2030-01-01T00:00:00Z', to: '2030-02-01T00:00:00Z' };
/** The fewest arguments each method needs, and what they become in SQL. */
const SERVER_CALLS: Record<keyof typeof SERVER_METHODS, [(ck: CreditkitServer) => Promise<unknown>, SqlArgs]> = {
  consume: [(ck) => ck.consume({ accountId: ACCOUNT, amount: 1 }), { p_account_id: ACCOUNT, p_amount: 1 }],
  consumeOrRaise: [(ck) => ck.consumeOrRaise({ accountId: ACCOUNT, amount: 2 }), { p_account_id: ACCOUNT, p_amount: 2 }],
  check: [(ck) => ck.check({ accountId: ACCOUNT, unit: 'messages' }), { p_account_id: ACCOUNT, p_unit: 'messages' }],
  report: [(ck) => ck.report({ accountId: ACCOUNT, unit: 'messages', amount: 2, idempotencyKey: 'm' }),
    { p_account_id: ACCOUNT, p_unit: 'messages', p_amount: 2, p_idempotency_key: 'm' }],
  consumeBatch: [(ck) => ck.consumeBatch({
    events: [{ accountId: ACCOUNT, amount: 3, idempotencyKey: 'k', costMicros: 4n as unknown as number, metadata: { nested_key: 1 }, event: undefined },
             { accountId: ACCOUNT, amount: 5, event: null }],
    now: new Date('2030-01-01T00:00:00Z'),
  }), {
    p_events: [{ account_id: ACCOUNT, amount: 3, idempotency_key: 'k', cost_micros: 4, metadata: { nested_key: 1 } },
               { account_id: ACCOUNT, amount: 5, event: null }],
    p_now: '2030-01-01T00:00:00.000Z',
  }],
  meter: [(ck) => ck.meter({ accountId: ACCOUNT, event: 'e', dimensions: { q: 'hd' } }), { p_account_id: ACCOUNT, p_event: 'e', p_dimensions: { q: 'hd' } }],
  quote: [(ck) => ck.quote({ event: 'e', quantity: 3 }), { p_event: 'e', p_quantity: 3 }],
  reserve: [(ck) => ck.reserve({ accountId: ACCOUNT, amount: 4, ttl: '1 hour' }), { p_account_id: ACCOUNT, p_amount: 4, p_ttl: '1 hour' }],
  settle: [(ck) => ck.settle({ holdId: 5, actual: 0 }), { p_hold_id: 5, p_actual: 0 }],
  release: [(ck) => ck.release({ holdId: 6 }), { p_hold_id: 6 }],
  grant: [(ck) => ck.grant({ accountId: ACCOUNT, amount: 7, expiresAt: new Date('2030-01-01T00:00:00Z') }),
    { p_account_id: ACCOUNT, p_amount: 7, p_expires_at: '2030-01-01T00:00:00.000Z' }],
  adjust: [(ck) => ck.adjust({ accountId: ACCOUNT, amount: -8, reason: 'r' }), { p_account_id: ACCOUNT, p_amount: -8, p_reason: 'r' }],
  bookExpired: [(ck) => ck.bookExpired(), {}],
  balance: [(ck) => ck.balance({ accountId: ACCOUNT }), { p_account_id: ACCOUNT }],
  history: [(ck) => ck.history({ accountId: ACCOUNT, beforeId: null }), { p_account_id: ACCOUNT, p_before_id: null }],
  upsertPlan: [(ck) => ck.upsertPlan({ id: 'pro', name: 'Pro', isDefault: false }), { p_id: 'pro', p_name: 'Pro', p_is_default: false }],
  plans: [(ck) => ck.plans(), {}],
  upsertUnit: [(ck) => ck.upsertUnit({ id: 'messages', name: 'Messages', kind: 'metered' }), { p_id: 'messages', p_name: 'Messages', p_kind: 'metered' }],
  units: [(ck) => ck.units(), {}],
  setPlanLimit: [(ck) => ck.setPlanLimit({ planId: 'pro', unit: 'messages', allowance: 100, period: 'day' }),
    { p_plan_id: 'pro', p_unit: 'messages', p_allowance: 100, p_period: 'day' }],
  setPlan: [(ck) => ck.setPlan({ accountId: ACCOUNT, planId: 'pro' }), { p_account_id: ACCOUNT, p_plan_id: 'pro' }],
  hasFeature: [(ck) => ck.hasFeature({ accountId: ACCOUNT, feature: 'f' }), { p_account_id: ACCOUNT, p_feature: 'f' }],
  setPrice: [(ck) => ck.setPrice({ event: 'e', creditsPerUnit: 9, effectiveFrom: WINDOW.from }),
    { p_event: 'e', p_credits_per_unit: 9, p_effective_from: WINDOW.from }],
  accountMargin: [(ck) => ck.accountMargin(WINDOW), { p_from: WINDOW.from, p_to: WINDOW.to }],
  unitUsage: [(ck) => ck.unitUsage({ ...WINDOW, accountId: ACCOUNT }), { p_from: WINDOW.from, p_to: WINDOW.to, p_account_id: ACCOUNT }],
  usageSeries: [(ck) => ck.usageSeries({ ...WINDOW, event: 'e' }), { p_from: WINDOW.from, p_to: WINDOW.to, p_event: 'e' }],
  topEvents: [(ck) => ck.topEvents({ ...WINDOW, limit: 3 }), { p_from: WINDOW.from, p_to: WINDOW.to, p_limit: 3 }],
  creditsOutstanding: [(ck) => ck.creditsOutstanding(), {}],
  accountsPerPlan: [(ck) => ck.accountsPerPlan(), {}],
  mrr: [(ck) => ck.mrr(), {}],
  upsertPack: [(ck) => ck.upsertPack({ id: 'starter', name: 'Starter', credits: 500, expiresAfter: '30 days', stripePriceId: null }),
    { p_id: 'starter', p_name: 'Starter', p_credits: 500, p_expires_after: '30 days', p_stripe_price_id: null }],
  packs: [(ck) => ck.packs(), {}],
  stripeApply: [(ck) => ck.stripeApply({ event: { id: 'evt_1', type: 't', created: 1, data: { object: {} } }, now: new Date(WINDOW.from) }),
    { p_event: { id: 'evt_1', type: 't', created: 1, data: { object: {} } }, p_now: '2030-01-01T00:00:00.000Z' }],
  stripeReplay: [(ck) => ck.stripeReplay({ eventId: 'evt_1' }), { p_event_id: 'evt_1' }],
  stripeEvents: [(ck) => ck.stripeEvents({ status: 'dead', limit: 10 }), { p_status: 'dead', p_limit: 10 }],
  stripeCustomer: [(ck) => ck.stripeCustomer({ accountId: ACCOUNT }), { p_account_id: ACCOUNT }],
  stripeLinkCustomer: [(ck) => ck.stripeLinkCustomer({ accountId: ACCOUNT, customerId: 'cus_1' }), { p_account_id: ACCOUNT, p_customer_id: 'cus_1' }],
  setAutoTopupTerms: [(ck) => ck.setAutoTopupTerms({ unit: 'credits', currency: 'usd', unitPrice: 0.5, minAmount: 100, maxAmount: 10_000, cooldown: '10 minutes' }),
    { p_unit: 'credits', p_currency: 'usd', p_unit_price: 0.5, p_min_amount: 100, p_max_amount: 10_000, p_cooldown: '10 minutes' }],
  autoTopupTerms: [(ck) => ck.autoTopupTerms(), {}],
  setBalanceAlert: [(ck) => ck.setBalanceAlert({ unit: 'credits', threshold: null, percent: 10 }), { p_unit: 'credits', p_threshold: null, p_percent: 10 }],
  setAccountBalanceAlert: [(ck) => ck.setAccountBalanceAlert({ accountId: ACCOUNT, unit: 'credits', threshold: 50n as unknown as number }),
    { p_account_id: ACCOUNT, p_unit: 'credits', p_threshold: 50 }],
  balanceAlert: [(ck) => ck.balanceAlert({ accountId: ACCOUNT }), { p_account_id: ACCOUNT }],
  setAutoTopup: [(ck) => ck.setAutoTopup({ accountId: ACCOUNT, unit: 'credits', enabled: true, threshold: 100, target: 1_000, monthlyAmountCap: 5_000 }),
    { p_account_id: ACCOUNT, p_unit: 'credits', p_enabled: true, p_threshold: 100, p_target: 1_000, p_monthly_amount_cap: 5_000 }],
  autoTopup: [(ck) => ck.autoTopup({ accountId: ACCOUNT, unit: 'messages' }), { p_account_id: ACCOUNT, p_unit: 'messages' }],
  topups: [(ck) => ck.topups({ status: 'failed', limit: 5 }), { p_status: 'failed', p_limit: 5 }],
  upsertWebhookEndpoint: [(ck) => ck.upsertWebhookEndpoint({ id: 'ops', url: 'https://example.test/hooks', eventTypes: ['balance.low'] }),
    { p_id: 'ops', p_url: 'https://example.test/hooks', p_event_types: ['balance.low'] }],
  webhookEndpoints: [(ck) => ck.webhookEndpoints(), {}],
  notifications: [(ck) => ck.notifications({ accountId: ACCOUNT, type: 'balance.low' }), { p_account_id: ACCOUNT, p_type: 'balance.low' }],
  replayDelivery: [(ck) => ck.replayDelivery({ deliveryId: 7 }), { p_delivery_id: 7 }],
  pruneNotifications: [(ck) => ck.pruneNotifications({ olderThan: '7 days' }), { p_older_than: '7 days' }],
  claimTopups: [(ck) => ck.claimTopups({ limit: 3, now: new Date(WINDOW.from) }), { p_limit: 3, p_now: '2030-01-01T00:00:00.000Z' }],
  recordTopupResult: [(ck) => ck.recordTopupResult({ topupId: 8, attempt: 1, outcome: 'declined', code: 'card_declined' }),
    { p_topup_id: 8, p_attempt: 1, p_outcome: 'declined', p_code: 'card_declined' }],
  claimDeliveries: [(ck) => ck.claimDeliveries({ lease: '30 seconds' }), { p_lease: '30 seconds' }],
  recordDeliveryResult: [(ck) => ck.recordDeliveryResult({ deliveryId: 9, attempt: 2, statusCode: null, error: 'timed out' }),
    { p_delivery_id: 9, p_attempt: 2, p_status_code: null, p_error: 'timed out' }],
};
const CLIENT_CALLS: Record<keyof typeof CLIENT_METHODS, [(c: CreditkitClient) => Promise<unknown>, SqlArgs]> = {
  balance: [(c) => c.balance(), {}],
  history: [(c) => c.history({ limit: 10 }), { p_limit: 10 }],
  plan: [(c) => c.plan({ accountId: ACCOUNT }), { p_account_id: ACCOUNT }],
  hasFeature: [(c) => c.hasFeature({ feature: 'f' }), { p_feature: 'f' }],
  hasCredits: [(c) => c.hasCredits({ amount: 5 }), { p_amount: 5 }],
  check: [(c) => c.check({ unit: 'messages', amount: 2 }), { p_unit: 'messages', p_amount: 2 }],
  units: [(c) => c.units(), {}],
  quote: [(c) => c.quote({ event: 'e' }), { p_event: 'e' }],
  plans: [(c) => c.plans(), {}],
  packs: [(c) => c.packs(), {}],
  autoTopupTerms: [(c) => c.autoTopupTerms(), {}],
  autoTopup: [(c) => c.autoTopup(), {}],
  setAutoTopup: [(c) => c.setAutoTopup({ unit: 'credits', enabled: true, threshold: 50, packId: 'starter' }),
    { p_unit: 'credits', p_enabled: true, p_threshold: 50, p_pack_id: 'starter' }],
  topups: [(c) => c.topups({ unit: 'credits', limit: 5 }), { p_unit: 'credits', p_limit: 5 }],
  balanceAlert: [(c) => c.balanceAlert({ unit: 'messages' }), { p_unit: 'messages' }],
  setBalanceAlert: [(c) => c.setBalanceAlert({ unit: 'credits', threshold: 25, accountId: ACCOUNT }), { p_unit: 'credits', p_threshold: 25, p_account_id: ACCOUNT }],
};

/** The public methods a class's instances have (getters like `transport` excluded). */
const methodsOf = (proto: object, except: string[]): string[] =>
  Object.getOwnPropertyNames(proto)
    .filter((name) => name !== 'constructor' && !except.includes(name))
    .filter((name) => typeof Object.getOwnPropertyDescriptor(proto, name)?.value === 'function')
    .sort();

describe('SDK methods and the functions they call', () => {
  it('the method maps cover every method of CreditkitServer and CreditkitClient', () => {
    expect(methodsOf(CreditkitServer.prototype, ['asUser'])).toEqual(Object.keys(SERVER_METHODS).sort());
    expect(methodsOf(CreditkitClient.prototype, [])).toEqual(Object.keys(CLIENT_METHODS).sort());
  });

  it('each server method calls its function once, with the arguments in SQL names', async () => {
    for (const [method, [call, args]] of Object.entries(SERVER_CALLS)) {
      const transport = fake();
      await call(new CreditkitServer(transport));
      expect(transport.sent, method).toEqual([{ fn: SERVER_METHODS[method as keyof typeof SERVER_METHODS], args }]);
    }
  });

  it('each client method calls its function once, with the arguments in SQL names', async () => {
    for (const [method, [call, args]] of Object.entries(CLIENT_CALLS)) {
      const transport = fake();
      await call(new CreditkitClient(transport));
      expect(transport.sent, method).toEqual([{ fn: CLIENT_METHODS[method as keyof typeof CLIENT_METHODS], args }]);
    }
  });

  it('asUser is refused over supabase-js (there is no identity to switch to)', () => {
    const ck = createCreditkit({ supabase: { rpc: async () => ({ data: null, error: null }) } });
    expect(() => ck.asUser(ACCOUNT)).toThrow(TypeError);
  });
});

// ── Arguments ────────────────────────────────────────────────────────────────────────────

describe('toSqlArgs: conversion and validation', () => {
  it('renames camelCase to p_snake_case, sends Dates as ISO strings, leaves out undefined and keeps null', () => {
    expect(toSqlArgs({
      accountId: ACCOUNT, idempotencyKey: 'k', costMicros: 5, expiresAt: new Date('2030-01-02T03:04:05.678Z'),
      now: '2030-01-01T00:00:00.123456Z', event: undefined, beforeId: null, metadata: { nested_key: 1, deep: { a: [1] } },
      isDefault: true, ttl: '5 minutes',
    })).toEqual({
      p_account_id: ACCOUNT, p_idempotency_key: 'k', p_cost_micros: 5, p_expires_at: '2030-01-02T03:04:05.678Z',
      p_now: '2030-01-01T00:00:00.123456Z', p_before_id: null, p_metadata: { nested_key: 1, deep: { a: [1] } },
      p_is_default: true, p_ttl: '5 minutes',
    });
  });

  it('an invalid Date is refused as InvalidArgumentError', () => {
    expect(() => toSqlArgs({ now: new Date('not a date') })).toThrow(InvalidArgumentError);
  });

  it('integers within ±(2^53-1) pass exactly, bigint included; signs are left to SQL', () => {
    expect(toSqlArgs({ amount: Number.MAX_SAFE_INTEGER })).toEqual({ p_amount: 9007199254740991 });
    expect(toSqlArgs({ amount: 9007199254740991n })).toEqual({ p_amount: 9007199254740991 });
    expect(toSqlArgs({ amount: -9007199254740991n })).toEqual({ p_amount: -9007199254740991 });
    expect(toSqlArgs({ amount: -5, limit: 0, holdId: 7n })).toEqual({ p_amount: -5, p_limit: 0, p_hold_id: 7 });
    expect(Object.is(toSqlArgs({ amount: 12n }).p_amount, 12)).toBe(true); // a number, not a bigint
  });

  const BAD: unknown[] = [2 ** 53, -(2 ** 53), 1.5, NaN, Infinity, -Infinity, '9007199254740992', '5', 2n ** 53n, -(2n ** 53n), true, {}];
  const CREDIT = ['amount', 'quantity', 'actual', 'creditsPerUnit', 'allowance', 'rolloverCap', 'credits',
    'threshold', 'target', 'minAmount', 'maxAmount', 'minThreshold', 'hysteresis'];
  const OTHER = ['costMicros', 'revenueMicros', 'priceAmount', 'priority', 'limit', 'beforeId', 'holdId',
    'monthlyAmountCap', 'monthlyCountCap', 'topupId', 'deliveryId', 'attempt', 'statusCode'];

  it('credit amounts that are not exact integers are InvalidAmountError, naming the parameter', () => {
    for (const name of CREDIT) {
      for (const value of BAD) {
        let error: unknown;
        try {
          toSqlArgs({ [name]: value });
        } catch (e) {
          error = e;
        }
        expect(error, `${name} = ${String(value)}`).toBeInstanceOf(InvalidAmountError);
        expect((error as CreditkitError).details).toMatchObject({ parameter: name });
      }
    }
  });

  it('other integer parameters that are not exact integers are InvalidArgumentError', () => {
    for (const name of OTHER) {
      for (const value of BAD) {
        expect(() => toSqlArgs({ [name]: value }), `${name} = ${String(value)}`).toThrow(InvalidArgumentError);
      }
    }
  });

  it('consumeBatch: each event is converted like a call (snake_case keys, exact integers) and a bad one refuses the whole batch', async () => {
    expect(toBatchEvents([{ accountId: ACCOUNT, amount: 12n, costMicros: 0, idempotencyKey: 'k', event: undefined, metadata: null }])).toEqual([
      { account_id: ACCOUNT, amount: 12, cost_micros: 0, idempotency_key: 'k', metadata: null },
    ]);
    // what is not an array of objects is left for the database to refuse (CK006)
    expect(toBatchEvents('[]')).toBe('[]');
    expect(toBatchEvents([null, 'x', [1]])).toEqual([null, 'x', [1]]);
    expect(toBatchEvents(undefined)).toBeNull();
    for (const value of BAD) {
      const transport = counting(fake());
      const ck = new CreditkitServer(transport);
      const amount = await rejectionOf(ck.consumeBatch({ events: [{ accountId: ACCOUNT, amount: 1 }, { accountId: ACCOUNT, amount: value as number }] }));
      expect(amount, `amount = ${String(value)}`).toBeInstanceOf(InvalidAmountError);
      expect(amount.details).toMatchObject({ parameter: 'amount' });
      expect(amount.message).toMatch(/^events\[1\]\.amount /);
      const cost = await rejectionOf(ck.consumeBatch({ events: [{ accountId: ACCOUNT, amount: 1, costMicros: value as number }] }));
      expect(cost, `costMicros = ${String(value)}`).toBeInstanceOf(InvalidArgumentError);
      expect(cost.message).toMatch(/^events\[0\]\.costMicros /);
      expect(transport.calls).toEqual([]);
    }
  });

  it('a refused value stops the call before the transport is used', async () => {
    const transport = counting(fake());
    const ck = new CreditkitServer(transport);
    const error = await rejectionOf(ck.grant({ accountId: ACCOUNT, amount: 2 ** 53 }));
    expect(error).toBeInstanceOf(InvalidAmountError);
    expect(error.sqlstate).toBeUndefined();
    expect(transport.calls).toEqual([]);
  });
});

// ── Errors ───────────────────────────────────────────────────────────────────────────────

describe('toCreditkitError: what a transport reports → a typed error', () => {
  const CLASSES: Record<string, [new (...args: never[]) => CreditkitError, ErrorCode]> = {
    CK001: [InvalidAmountError, 'invalid_amount'],
    CK002: [InsufficientCreditsError, 'insufficient_credits'],
    CK003: [UnknownAccountError, 'unknown_account'],
    CK004: [IdempotencyConflictError, 'idempotency_conflict'],
    CK005: [NotAllowedError, 'not_allowed'],
    CK006: [InvalidArgumentError, 'invalid_argument'],
    CK007: [BalanceLimitError, 'balance_limit'],
    CK008: [CreditkitError, 'append_only'],
    CK009: [UnknownPlanError, 'unknown_plan'],
    CK010: [UnknownEventError, 'unknown_event'],
    CK011: [UnknownHoldError, 'unknown_hold'],
    CK012: [HoldClosedError, 'hold_closed'],
    CK013: [UnknownPackError, 'unknown_pack'],
    CK014: [InvalidEventError, 'invalid_event'],
    CK015: [UnknownUnitError, 'unknown_unit'],
    CK016: [AutoTopupUnavailableError, 'auto_topup_unavailable'],
    CK017: [UnknownEndpointError, 'unknown_endpoint'],
    CK018: [UnknownTopupOrDeliveryError, 'unknown_topup_or_delivery'],
    '42501': [NotAllowedError, 'not_allowed'],
    '40001': [ConcurrencyError, 'concurrency_conflict'],
    '40P01': [ConcurrencyError, 'concurrency_conflict'],
    '55P03': [LockTimeoutError, 'lock_timeout'],
    '57014': [StatementTimeoutError, 'statement_timeout'],
    '42883': [CreditkitError, 'not_installed'],
    PGRST202: [CreditkitError, 'not_installed'],
    '22P02': [InvalidArgumentError, 'invalid_argument'],
    '22003': [InvalidArgumentError, 'invalid_argument'],
    '08006': [UnavailableError, 'unavailable'],
    '57P01': [UnavailableError, 'unavailable'],
    '53300': [UnavailableError, 'unavailable'],
    PGRST000: [UnavailableError, 'unavailable'],
    PGRST001: [UnavailableError, 'unavailable'],
    PGRST301: [NotAllowedError, 'not_allowed'],
    XX000: [CreditkitError, 'internal'],
    '23505': [CreditkitError, 'internal'],
  };

  it('every SQLSTATE of the catalogue has a class (the table above is complete)', () => {
    for (const sqlstate of Object.keys(SQLSTATE_CODES)) expect(CLASSES[sqlstate], sqlstate).toBeDefined();
  });

  it('maps each SQLSTATE to its class and code, keeping sqlstate, message, hint and cause', () => {
    for (const [sqlstate, [Class, code]] of Object.entries(CLASSES)) {
      const cause = new Error('raw');
      const error = toCreditkitError({ code: sqlstate, message: `m ${sqlstate}`, details: null, hint: 'h' }, cause);
      expect(error.constructor, sqlstate).toBe(Class);
      expect(error, sqlstate).toBeInstanceOf(CreditkitError);
      expect([error.code, error.sqlstate, error.hint, error.cause], sqlstate).toEqual([code, sqlstate, 'h', cause]);
      expect(error.message.startsWith(`m ${sqlstate}`), sqlstate).toBe(true);
    }
  });

  it('parses JSON DETAIL (insufficient credits carries balance and required); other DETAIL stays text', () => {
    const short = toCreditkitError({ code: 'CK002', message: 'short', details: '{"balance": 80, "required": 500}' }, null);
    expect(short).toBeInstanceOf(InsufficientCreditsError);
    expect([(short as InsufficientCreditsError).balance, (short as InsufficientCreditsError).required]).toEqual([80, 500]);
    expect(short.details).toEqual({ balance: 80, required: 500 });
    expect(toCreditkitError({ code: 'XX000', message: 'x', details: 'not json' }, null).details).toBe('not json');
    expect(toCreditkitError({ code: 'XX000', message: 'x', details: '' }, null).details).toBeUndefined();
    expect(short.toJSON()).toEqual({ code: 'insufficient_credits', message: 'short', sqlstate: 'CK002', details: { balance: 80, required: 500 } });
  });

  it('a network failure is UnavailableError whatever else it says; no code at all is internal', () => {
    expect(toCreditkitError({ message: 'ECONNREFUSED', network: true }, null)).toBeInstanceOf(UnavailableError);
    expect(toCreditkitError({ code: '40001', message: 'reset', network: true }, null)).toBeInstanceOf(UnavailableError);
    const internal = toCreditkitError({ message: 'odd' }, null);
    expect([internal.constructor, internal.code, internal.sqlstate]).toEqual([CreditkitError, 'internal', undefined]);
  });

  it('only serialization failures, deadlocks and lock timeouts are retryable', () => {
    expect(['40001', '40P01', '55P03'].map(isRetryable)).toEqual([true, true, true]);
    expect(['CK002', '40000', '40003', '08006', '57P01', '57014', undefined].map(isRetryable)).toEqual([false, false, false, false, false, false, false]);
  });
});

// ── Retries ──────────────────────────────────────────────────────────────────────────────

/** Fails with each of `failures` in turn, then passes calls to `inner`. Counts both. */
function failing(inner: Transport, failures: RawError[]): Transport & { attempts: number; passed: number; args: SqlArgs[] } {
  const queue = [...failures];
  const state = {
    kind: `failing(${inner.kind})`,
    attempts: 0,
    passed: 0,
    args: [] as SqlArgs[],
    async rpc(fn: string, args: SqlArgs) {
      state.attempts++;
      state.args.push(args);
      const failure = queue.shift();
      if (failure) throw new TransportError(failure, new Error(failure.message));
      state.passed++;
      return inner.rpc(fn, args);
    },
  };
  return state;
}

const times = (n: number, raw: RawError): RawError[] => Array.from({ length: n }, () => raw);

describe('retries (injected failures over PGlite)', () => {
  let kit: EmbeddedCreditkit;
  beforeAll(async () => {
    kit = await createEmbeddedCreditkit({ loadDataDir: await pgliteTemplate() });
  });
  afterAll(() => kit?.close());

  const consumeRows = async (account: string) =>
    (await kit.db.query<{ n: number }>(`select count(*)::int as n from creditkit.ledger where account_id = $1 and kind = 'consume'`, [account]))
      .rows[0]?.n;
  async function account(): Promise<string> {
    const id = randomUUID();
    await kit.creditkit.grant({ accountId: id, amount: 100 });
    return id;
  }

  for (const [sqlstate, message] of [['40001', 'could not serialize access'], ['40P01', 'deadlock detected']] as const) {
    const raw: RawError = { code: sqlstate, message };

    it(`${sqlstate}: succeeds after N failures for every N ≤ retries, with N+1 attempts and one effect`, async () => {
      for (let n = 0; n <= 3; n++) {
        const id = await account();
        const transport = failing(kit.creditkit.transport, times(n, raw));
        const ck = new CreditkitServer(transport, { retries: 3, retryDelayMs: 0 });
        expect(await ck.consume({ accountId: id, amount: 10, idempotencyKey: 'once' })).toMatchObject({ allowed: true, balance: 90 });
        expect([transport.attempts, transport.passed], `N = ${n}`).toEqual([n + 1, 1]);
        expect(new Set(transport.args.map((a) => JSON.stringify(a))).size).toBe(1); // the same arguments each time
        expect(await consumeRows(id)).toBe(1);
      }
    });

    it(`${sqlstate}: after retries+1 failed attempts, ConcurrencyError (concurrency_conflict) and no effect`, async () => {
      const id = await account();
      const transport = failing(kit.creditkit.transport, times(10, raw));
      const ck = new CreditkitServer(transport, { retries: 3, retryDelayMs: 0 });
      const error = await rejectionOf(ck.consume({ accountId: id, amount: 10 }));
      expect(error).toBeInstanceOf(ConcurrencyError);
      expect([error.code, error.sqlstate]).toEqual(['concurrency_conflict', sqlstate]);
      expect(error.cause).toBeInstanceOf(TransportError);
      expect([transport.attempts, transport.passed]).toEqual([4, 0]);
      expect(await consumeRows(id)).toBe(0);
    });

    it(`${sqlstate}: 4 retries by default, none with retries: 0`, async () => {
      const id = await account();
      const four = failing(kit.creditkit.transport, times(4, raw));
      await new CreditkitServer(four, { retryDelayMs: 0 }).consume({ accountId: id, amount: 1 });
      expect(four.attempts).toBe(5);
      const five = failing(kit.creditkit.transport, times(5, raw));
      expect(await rejectionOf(new CreditkitServer(five, { retryDelayMs: 0 }).consume({ accountId: id, amount: 1 }))).toBeInstanceOf(ConcurrencyError);
      expect(five.attempts).toBe(5);
      const none = failing(kit.creditkit.transport, times(1, raw));
      expect(await rejectionOf(new CreditkitServer(none, { retries: 0 }).consume({ accountId: id, amount: 1 }))).toBeInstanceOf(ConcurrencyError);
      expect(none.attempts).toBe(1);
      expect(await consumeRows(id)).toBe(1);
    });
  }

  it('55P03 (lock timeout): retried once by default, then LockTimeoutError; lockRetries sets how often', async () => {
    const raw: RawError = { code: '55P03', message: 'canceling statement due to lock timeout' };
    const id = await account();
    const once = failing(kit.creditkit.transport, times(1, raw));
    expect(await new CreditkitServer(once, { retryDelayMs: 0 }).consume({ accountId: id, amount: 1 })).toMatchObject({ allowed: true });
    expect(once.attempts).toBe(2);
    const twice = failing(kit.creditkit.transport, times(2, raw));
    const error = await rejectionOf(new CreditkitServer(twice, { retryDelayMs: 0 }).consume({ accountId: id, amount: 1 }));
    expect(error).toBeInstanceOf(LockTimeoutError);
    expect([error.code, error.sqlstate, twice.attempts]).toEqual(['lock_timeout', '55P03', 2]);
    const three = failing(kit.creditkit.transport, times(3, raw));
    expect(await new CreditkitServer(three, { retryDelayMs: 0, lockRetries: 3 }).consume({ accountId: id, amount: 1 })).toMatchObject({ allowed: true });
    expect(three.attempts).toBe(4);
    expect(await consumeRows(id)).toBe(2);
  });

  it('business errors from the database are attempted exactly once', async () => {
    const id = await account();
    const hold = await kit.creditkit.reserve({ accountId: id, amount: 1 });
    await kit.creditkit.release({ holdId: hold.holdId! });
    await kit.creditkit.consume({ accountId: id, amount: 1, idempotencyKey: 'k' });
    const cases: Array<[string, (ck: CreditkitServer) => Promise<unknown>, new (...a: never[]) => CreditkitError]> = [
      ['CK001', (ck) => ck.consume({ accountId: id, amount: 0 }), InvalidAmountError],
      ['CK002', (ck) => ck.consumeOrRaise({ accountId: id, amount: 1000 }), InsufficientCreditsError],
      ['CK003', (ck) => ck.consume({ accountId: randomUUID(), amount: 1 }), UnknownAccountError],
      ['CK004', (ck) => ck.consume({ accountId: id, amount: 2, idempotencyKey: 'k' }), IdempotencyConflictError],
      ['CK006', (ck) => ck.history({ accountId: id, limit: 0 }), InvalidArgumentError],
      ['CK007', (ck) => ck.grant({ accountId: id, amount: Number.MAX_SAFE_INTEGER }), BalanceLimitError],
      ['CK009', (ck) => ck.setPlan({ accountId: id, planId: 'nope' }), UnknownPlanError],
      ['CK010', (ck) => ck.quote({ event: 'nope' }), UnknownEventError],
      ['CK011', (ck) => ck.release({ holdId: 2 ** 40 }), UnknownHoldError],
      ['CK012', (ck) => ck.settle({ holdId: hold.holdId!, actual: 1 }), HoldClosedError],
      ['CK014', (ck) => ck.stripeApply({ event: { id: 'not-an-event', type: 'checkout.session.completed' } }), InvalidEventError],
      ['22P02', (ck) => ck.balance({ accountId: 'nope' }), InvalidArgumentError],
    ];
    for (const [sqlstate, call, Class] of cases) {
      const transport = failing(kit.creditkit.transport, []);
      const error = await rejectionOf(call(new CreditkitServer(transport, { retryDelayMs: 0 })));
      expect(error.constructor, sqlstate).toBe(Class);
      expect([error.sqlstate, transport.attempts], sqlstate).toEqual([sqlstate, 1]);
    }
    // 42501 too: a user calling a server function
    const asUser = failing(kit.creditkit.asUser(id).transport, []);
    const refused = await rejectionOf(new CreditkitServer(asUser).grant({ accountId: id, amount: 1 }));
    expect([refused.constructor, refused.sqlstate, asUser.attempts]).toEqual([NotAllowedError, '42501', 1]);
  });

  it('a serialization failure then a business error: retried once, then the business error', async () => {
    const id = await account();
    const transport = failing(kit.creditkit.transport, [{ code: '40001', message: 'could not serialize' }]);
    const error = await rejectionOf(new CreditkitServer(transport, { retryDelayMs: 0 }).consumeOrRaise({ accountId: id, amount: 1000 }));
    expect(error).toBeInstanceOf(InsufficientCreditsError);
    expect(transport.attempts).toBe(2);
  });

  it('network errors and unavailable SQLSTATEs are UnavailableError and are not retried', async () => {
    const id = await account();
    const raws: RawError[] = [
      { message: 'connect ECONNREFUSED 127.0.0.1:5432', network: true },
      { code: '08006', message: 'connection failure' },
      { code: '57P01', message: 'terminating connection due to administrator command' },
      { code: '53300', message: 'too many connections' },
      { code: 'PGRST000', message: 'Database connection error. Retrying the connection.' },
    ];
    for (const raw of raws) {
      const transport = failing(kit.creditkit.transport, times(10, raw));
      const error = await rejectionOf(new CreditkitServer(transport, { retryDelayMs: 0 }).consume({ accountId: id, amount: 1 }));
      expect(error, raw.message).toBeInstanceOf(UnavailableError);
      expect([error.code, error.sqlstate, transport.attempts], raw.message).toEqual(['unavailable', raw.code, 1]);
    }
    expect(await consumeRows(id)).toBe(0);
  });

  it('anything else a transport throws becomes an internal CreditkitError, attempted once', async () => {
    let attempts = 0;
    const broken: Transport = {
      kind: 'broken',
      async rpc() {
        attempts++;
        throw new TypeError('boom');
      },
    };
    const error = await rejectionOf(new CreditkitServer(broken).consume({ accountId: ACCOUNT, amount: 1 }));
    expect([error.constructor, error.code, attempts]).toEqual([CreditkitError, 'internal', 1]);
    expect(error.cause).toBeInstanceOf(TypeError);
  });
});

// The SQL transports send values as quoted literals. A literal must mean the same text whatever
// standard_conforming_strings says (off: a backslash escapes), or a backslash could end the quote.
const AWKWARD = `back\\slash \\' quote' "double" \n newline ünï 😀 $$ --`;

async function expectVerbatim(ck: CreditkitServer): Promise<void> {
  const account = randomUUID();
  await ck.grant({ accountId: account, amount: 10 });
  const metadata = { [AWKWARD]: [AWKWARD, { nested: AWKWARD }] };
  const spent = await ck.consume({ accountId: account, amount: 1, event: AWKWARD, idempotencyKey: AWKWARD, metadata });
  expect(spent).toMatchObject({ allowed: true, balance: 9 });
  const { entries } = await ck.history({ accountId: account, limit: 1 });
  expect(entries[0]).toMatchObject({ event: AWKWARD, idempotencyKey: AWKWARD, metadata });
  // the replay finds the row by the same key: the key was stored as sent
  expect(await ck.consume({ accountId: account, amount: 1, event: AWKWARD, idempotencyKey: AWKWARD, metadata })).toEqual(spent);
}

/** Instants come back in UTC whatever the session's TimeZone, as PostgREST on Supabase sends them. */
async function expectUtc(ck: CreditkitServer): Promise<void> {
  const account = randomUUID();
  await ck.grant({ accountId: account, amount: 1, expiresAt: '2030-06-01T12:00:00Z', now: '2030-01-01T00:00:00.5Z' });
  const balance = await ck.balance({ accountId: account, now: '2030-01-02T00:00:00Z' });
  expect([balance.nextExpiry, balance.buckets[0]?.createdAt]).toEqual(['2030-06-01T12:00:00+00:00', '2030-01-01T00:00:00.5+00:00']);
  expect((await ck.history({ accountId: account })).entries[0]?.createdAt).toBe('2030-01-01T00:00:00.5+00:00');
}

describe('SQL transport on PGlite: literals and instants', () => {
  it('instants are UTC even when the session TimeZone is not', async () => {
    const kit = await createEmbeddedCreditkit({ loadDataDir: await pgliteTemplate() });
    try {
      await kit.db.exec(`set timezone = 'America/New_York'`);
      expect((await kit.db.query<{ t: string }>(`select '2030-01-01T00:00:00Z'::timestamptz::text as t`)).rows[0]?.t).toBe('2029-12-31 19:00:00-05');
      await expectUtc(kit.creditkit);
    } finally {
      await kit.close();
    }
  });

  it('text and JSON arrive verbatim with standard_conforming_strings on and off', async () => {
    const kit = await createEmbeddedCreditkit({ loadDataDir: await pgliteTemplate() });
    try {
      expect(AWKWARD).toContain('\\');
      await expectVerbatim(kit.creditkit);
      await kit.db.exec('set standard_conforming_strings = off');
      expect((await kit.db.query<{ s: string }>("select current_setting('standard_conforming_strings') as s")).rows[0]?.s).toBe('off');
      await expectVerbatim(kit.creditkit);
    } finally {
      await kit.close();
    }
  });
});

describe('unreachable databases are UnavailableError, attempted once', () => {
  let closedPort: number;
  beforeAll(async () => {
    // a port that was free a moment ago: nothing listens on it, so connecting is refused
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    closedPort = (server.address() as { port: number }).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('node-postgres to a closed port', async () => {
    const pool = new pg.Pool({ connectionString: `postgresql://postgres@127.0.0.1:${closedPort}/postgres` });
    try {
      const transport = counting(pgTransport(pool));
      const error = await rejectionOf(new CreditkitServer(transport).consume({ accountId: ACCOUNT, amount: 1 }));
      expect([error.constructor, error.code, error.sqlstate]).toEqual([UnavailableError, 'unavailable', undefined]);
      expect(transport.calls).toHaveLength(1);
    } finally {
      await pool.end();
    }
  });

  it('supabase-js to a closed port', async () => {
    const supabase = createClient(`http://127.0.0.1:${closedPort}`, 'any-key', {
      auth: { persistSession: false, autoRefreshToken: false },
      realtime: { transport: noWebSocket },
    });
    const ck = createCreditkit({ supabase });
    const transport = counting(ck.transport);
    const error = await rejectionOf(new CreditkitServer(transport).consume({ accountId: ACCOUNT, amount: 1 }));
    expect([error.constructor, error.code]).toEqual([UnavailableError, 'unavailable']);
    expect(transport.calls).toHaveLength(1);
  });

  /** supabase-js against a stand-in for the API gateway that answers every request with `status` and `body`. */
  async function viaGateway(status: number, body: string, contentType: string): Promise<CreditkitError> {
    const gateway = createHttpServer((_req, res) => {
      res.writeHead(status, { 'content-type': contentType });
      res.end(body);
    });
    await new Promise<void>((resolve) => gateway.listen(0, '127.0.0.1', resolve));
    try {
      const supabase = createClient(`http://127.0.0.1:${(gateway.address() as { port: number }).port}`, 'any-key', {
        auth: { persistSession: false, autoRefreshToken: false },
        realtime: { transport: noWebSocket },
      });
      return await rejectionOf(createCreditkit({ supabase }).consume({ accountId: ACCOUNT, amount: 1 }));
    } finally {
      await new Promise<void>((resolve) => gateway.close(() => resolve()));
    }
  }

  it("PostgREST's own 503 (PGRST000: no database connection) is UnavailableError", async () => {
    const error = await viaGateway(503, '{"code":"PGRST000","details":"connection refused","hint":null,"message":"Database connection error. Retrying the connection."}', 'application/json');
    expect([error.constructor, error.code, error.sqlstate]).toEqual([UnavailableError, 'unavailable', 'PGRST000']);
  });

  it('a gateway 502/503/504 without a PostgREST code (Data API down) is UnavailableError, not internal', async () => {
    const answers: Array<[number, string, string]> = [
      [502, '{"message":"An invalid response was received from the upstream server"}', 'application/json'],
      [503, 'upstream connect error or disconnect/reset before headers', 'text/plain'],
      [504, '<html><body>Gateway Timeout</body></html>', 'text/html'],
    ];
    for (const [status, body, type] of answers) {
      const error = await viaGateway(status, body, type);
      expect(error.code, `HTTP ${status}`).toBe('unavailable'); // today: 'internal'
    }
  });

  it('a closed PGlite', async () => {
    const kit = await createEmbeddedCreditkit({ loadDataDir: await pgliteTemplate() });
    await kit.close();
    const error = await rejectionOf(kit.creditkit.balance({ accountId: ACCOUNT }));
    expect([error.constructor, error.code]).toEqual([UnavailableError, 'unavailable']);
  });
});

// ── Real conflicts on real Postgres ──────────────────────────────────────────────────────

describeIfPostgres('node-postgres on real Postgres: conflicts retried, literals and instants exact', () => {
  let db: TestDatabase;
  const pools: pg.Pool[] = [];
  beforeAll(async () => {
    db = await createTestDatabase({ backend: 'postgres' });
  });
  afterAll(async () => {
    await Promise.allSettled(pools.map((p) => p.end()));
    await db?.drop();
  });

  function sdk(options: { retries: number }, connectionOptions?: string) {
    const pool = new pg.Pool({ connectionString: db.url, max: 2, ...(connectionOptions ? { options: connectionOptions } : {}) });
    pool.on('error', () => {});
    pools.push(pool);
    const transport = counting(pgTransport(pool));
    return { transport, ck: new CreditkitServer(transport, { ...options, retryDelayMs: 0 }) };
  }

  async function session(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    return client;
  }

  /** Resolves once a backend running `fn` is waiting for a lock (the SDK call is blocked). */
  async function blockedOnLock(fn: string): Promise<void> {
    for (let i = 0; i < 1000; i++) {
      const rows = await db.query(
        `select pid from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query like $1`,
        [`%public.${fn}(%`]);
      if (rows.length > 0) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error(`no backend running ${fn} ever waited for a lock`);
  }

  const ledger = async (account: string) =>
    (await db.query<{ kind: string; amount: number }>('select kind, amount from creditkit.ledger where account_id = $1 order by id', [account]))
      .map((r) => [r.kind, Number(r.amount)]);

  it('a consume behind a row lock held by another transaction: LockTimeoutError after the retry, nothing spent', async () => {
    await db.query(`select creditkit.set_lock_timeout('200 milliseconds')`);
    try {
      const { transport, ck } = sdk({ retries: 4 });
      const account = randomUUID();
      await ck.grant({ accountId: account, amount: 100 });
      transport.calls.length = 0;
      const other = await session();
      try {
        await other.query('begin');
        await other.query('select 1 from creditkit.accounts where id = $1 for update', [account]);
        const error = await rejectionOf(ck.consume({ accountId: account, amount: 1 }));
        expect(error).toBeInstanceOf(LockTimeoutError);
        expect([error.code, error.sqlstate]).toEqual(['lock_timeout', '55P03']);
        // one retry by default, whatever `retries` says (each attempt already waited the lock_timeout)
        expect(transport.calls.filter((fn) => fn === 'creditkit_consume')).toHaveLength(2);
        await other.query('rollback');
      } finally {
        await other.end();
      }
      expect(await ledger(account)).toEqual([['grant', 100]]);
      expect(await ck.consume({ accountId: account, amount: 1 })).toMatchObject({ allowed: true, balance: 99 });
    } finally {
      await db.query(`select creditkit.set_lock_timeout('3 seconds')`);
    }
  });

  it('node-postgres: instants are UTC on connections whose TimeZone is not', async () => {
    const { ck } = sdk({ retries: 0 }, '-c TimeZone=Asia/Kolkata');
    await expectUtc(ck);
  });

  it('node-postgres: text and JSON arrive verbatim on connections with standard_conforming_strings off', async () => {
    const { ck } = sdk({ retries: 0 }, '-c standard_conforming_strings=off');
    await expectVerbatim(ck);
  });

  // The SDK's connections run serializable transactions; another session grants to the account
  // while the SDK's consume waits for the account row. When that session commits, the consume's
  // snapshot is stale: Postgres raises 40001 and the SDK runs the call again, which sees the grant.
  async function serializationConflict(retries: number) {
    const { transport, ck } = sdk({ retries }, '-c default_transaction_isolation=serializable');
    const account = randomUUID();
    await ck.grant({ accountId: account, amount: 100 });
    transport.calls.length = 0;
    const other = await session();
    try {
      await other.query('begin');
      await other.query('select * from public.creditkit_grant(p_account_id => $1, p_amount => 5)', [account]);
      const pending = ck.consume({ accountId: account, amount: 30, event: 'race' }).then(
        (value) => ({ value }), (error: unknown) => ({ error }));
      await blockedOnLock('creditkit_consume');
      await other.query('commit');
      return { outcome: await pending, calls: transport.calls, ledger: await ledger(account) };
    } finally {
      await other.end();
    }
  }

  it('a real serialization failure (40001) is retried, and the retry sees the other commit', async () => {
    const { outcome, calls, ledger: rows } = await serializationConflict(2);
    expect(outcome).toEqual({ value: { allowed: true, balance: 75, transactionId: expect.any(Number) } });
    expect(calls).toEqual(['creditkit_consume', 'creditkit_consume']);
    expect(rows).toEqual([['grant', 100], ['grant', 5], ['consume', -30]]);
  });

  it('with retries: 0 the real serialization failure is a ConcurrencyError (40001), nothing spent', async () => {
    const { outcome, calls, ledger: rows } = await serializationConflict(0);
    const error = (outcome as { error: CreditkitError }).error;
    expect(error).toBeInstanceOf(ConcurrencyError);
    expect([error.code, error.sqlstate]).toEqual(['concurrency_conflict', '40001']);
    expect(calls).toEqual(['creditkit_consume']);
    expect(rows).toEqual([['grant', 100], ['grant', 5]]);
  });

  // Another session locks the account's buckets; the SDK's consume locks the account row and then
  // waits for a bucket; the other session then asks for the account row: a lock cycle. (The
  // consume comes after a bucket's expiry, so it takes the slow path, which books the expiry on
  // that bucket under the account's lock; the fast path touches no bucket.) The other session's
  // deadlock_timeout is long, so the SDK's backend is the one that detects it (2s after it began
  // to wait; the cycle closes within milliseconds) and is rolled back, 40P01.
  async function deadlock(retries: number) {
    const { transport, ck } = sdk({ retries }, '-c deadlock_timeout=2s');
    const account = randomUUID();
    const t0 = Date.now();
    await ck.grant({ accountId: account, amount: 100, now: new Date(t0) });
    await ck.grant({ accountId: account, amount: 5, expiresAt: new Date(t0 + 60_000), now: new Date(t0) });
    transport.calls.length = 0;
    const other = await session();
    try {
      await other.query('begin');
      await other.query(`set local deadlock_timeout = '10min'`);
      await other.query('select id from creditkit.grants where account_id = $1 for update', [account]);
      const pending = ck.consume({ accountId: account, amount: 30, now: new Date(t0 + 120_000) })
        .then((value) => ({ value }), (error: unknown) => ({ error }));
      await blockedOnLock('creditkit_consume');
      await other.query('select id from creditkit.accounts where id = $1 for update', [account]); // granted once the SDK rolled back
      await other.query('commit');
      return { outcome: await pending, calls: transport.calls, ledger: await ledger(account) };
    } finally {
      await other.end();
    }
  }

  it('a real deadlock (40P01) is retried and the call then succeeds once', async () => {
    const { outcome, calls, ledger: rows } = await deadlock(2);
    expect(outcome).toEqual({ value: { allowed: true, balance: 70, transactionId: expect.any(Number) } });
    expect(calls).toEqual(['creditkit_consume', 'creditkit_consume']);
    expect(rows).toEqual([['grant', 100], ['grant', 5], ['expire', -5], ['consume', -30]]);
  });

  it('with retries: 0 the real deadlock is a ConcurrencyError (40P01), nothing spent', async () => {
    const { outcome, calls, ledger: rows } = await deadlock(0);
    const error = (outcome as { error: CreditkitError }).error;
    expect(error).toBeInstanceOf(ConcurrencyError);
    expect([error.code, error.sqlstate]).toEqual(['concurrency_conflict', '40P01']);
    expect(calls).toEqual(['creditkit_consume']);
    expect(rows).toEqual([['grant', 100], ['grant', 5]]);
  });
});
