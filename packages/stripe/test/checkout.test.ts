// createCheckoutSession and createPortalSession with the real Stripe SDK pointed at a local
// stand-in for Stripe's API (@creditkit/testing's fake-stripe.ts), and the real creditkit SDK on embedded
// PGlite: what is sent to Stripe (mode, price, customer, metadata), one Stripe customer per
// account however many checkouts (and however concurrent), and typed errors before any Stripe call.
// Saving a card for auto top-up: createSetupSession (Checkout in mode setup) and saveCard on a pack.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CreditkitError, InvalidArgumentError, UnknownPackError, UnknownPlanError } from '@creditkit/core';
import { createEmbeddedCreditkit, type EmbeddedCreditkit } from '@creditkit/core/embedded';
import type { CreditkitServer } from '@creditkit/core/server';
import {
  createCheckoutSession,
  createPortalSession,
  createSetupSession,
  NoStripeCustomerError,
  NoStripePriceError,
} from '../src/index.ts';
import { pgliteTemplate, startFakeStripe, type FakeStripe } from '@creditkit/testing';

let kit: EmbeddedCreditkit;
let creditkit: CreditkitServer;
let api: FakeStripe;

const URLS = { successUrl: 'https://app.example/billing/done?session={CHECKOUT_SESSION_ID}', cancelUrl: 'https://app.example/billing' };

beforeAll(async () => {
  kit = await createEmbeddedCreditkit({ loadDataDir: await pgliteTemplate() });
  creditkit = kit.creditkit;
  await creditkit.upsertPack({ id: 'starter', name: 'Starter', credits: 100, priceAmount: 500, stripePriceId: 'price_starter' });
  await creditkit.upsertPack({ id: 'bulk', name: 'Bulk', credits: 1000, priceAmount: 4000, stripePriceId: 'price_bulk' });
  await creditkit.upsertPack({ id: 'unpriced', name: 'Not on Stripe', credits: 10, priceAmount: 100 });
  await creditkit.upsertPack({ id: 'retired', name: 'Retired', credits: 10, priceAmount: 100, stripePriceId: 'price_retired', active: false });
  await creditkit.upsertPlan({ id: 'pro', name: 'Pro', allowance: 1000, period: 'month', priceAmount: 2000, stripePriceId: 'price_pro' });
  await creditkit.upsertPlan({ id: 'team', name: 'Team', allowance: 5000, period: 'month', priceAmount: 9000 });
  api = await startFakeStripe({ prices: { price_starter: { unitAmount: 500 }, price_bulk: { unitAmount: 4000 } } });
});

afterAll(async () => {
  await api?.close();
  await kit?.close();
});

beforeEach(() => api.reset());

const storedCustomer = (accountId: string) => creditkit.stripeCustomer({ accountId });

describe('createCheckoutSession: a pack', () => {
  it('creates the customer, then a payment session for the pack price with the account and pack in metadata', async () => {
    const accountId = randomUUID();
    const session = await createCheckoutSession({ stripe: api.stripe, creditkit, accountId, packId: 'starter', ...URLS, customerEmail: 'ada@example.test' });

    expect(session.id).toMatch(/^cs_test_/);
    expect(session.url).toBe(`https://checkout.stripe.com/c/pay/${session.id}`);
    expect(api.requests.map((r) => `${r.method} ${r.path}`)).toEqual(['POST /v1/customers', 'POST /v1/checkout/sessions']);

    const [customerReq, sessionReq] = api.requests;
    expect(customerReq!.body).toEqual({ email: 'ada@example.test', metadata: { account_id: accountId } });
    expect(customerReq!.idempotencyKey).toBe(`creditkit-customer-${accountId}`);
    const customerId = [...api.customers.keys()].find((id) => api.customers.get(id)!.metadata && (api.customers.get(id)!.metadata as Record<string, string>).account_id === accountId);
    expect(customerId).toMatch(/^cus_/);
    expect(await storedCustomer(accountId)).toBe(customerId);

    expect(sessionReq!.body).toEqual({
      mode: 'payment',
      customer: customerId,
      client_reference_id: accountId,
      line_items: [{ price: 'price_starter', quantity: '1' }],
      success_url: URLS.successUrl,
      cancel_url: URLS.cancelUrl,
      metadata: { account_id: accountId, pack_id: 'starter', price_id: 'price_starter' },
      payment_intent_data: { metadata: { account_id: accountId, pack_id: 'starter' } },
    });
  });

  it('reuses the stored customer: a second checkout makes no customers.create', async () => {
    const accountId = randomUUID();
    await createCheckoutSession({ stripe: api.stripe, creditkit, accountId, packId: 'starter', ...URLS });
    const customer = await storedCustomer(accountId);
    expect(api.posts('/v1/customers')).toHaveLength(1);

    api.reset();
    await createCheckoutSession({ stripe: api.stripe, creditkit, accountId, packId: 'bulk', ...URLS });
    expect(api.posts('/v1/customers')).toHaveLength(0);
    const [sessionReq] = api.posts('/v1/checkout/sessions');
    expect(sessionReq!.body.customer).toBe(customer);
    expect(sessionReq!.body.line_items).toEqual([{ price: 'price_bulk', quantity: '1' }]);
    expect(await storedCustomer(accountId)).toBe(customer);
  });

  it('different accounts get different customers', async () => {
    const [a, b] = [randomUUID(), randomUUID()];
    await createCheckoutSession({ stripe: api.stripe, creditkit, accountId: a, packId: 'starter', ...URLS });
    await createCheckoutSession({ stripe: api.stripe, creditkit, accountId: b, packId: 'starter', ...URLS });
    const [ca, cb] = [await storedCustomer(a), await storedCustomer(b)];
    expect(ca).toMatch(/^cus_/);
    expect(cb).toMatch(/^cus_/);
    expect(ca).not.toBe(cb);
  });

  it('passes an idempotency key for the session through to Stripe, and a retry returns the same session', async () => {
    const accountId = randomUUID();
    const first = await createCheckoutSession({ stripe: api.stripe, creditkit, accountId, packId: 'starter', ...URLS, idempotencyKey: `checkout-${accountId}-1` });
    const again = await createCheckoutSession({ stripe: api.stripe, creditkit, accountId, packId: 'starter', ...URLS, idempotencyKey: `checkout-${accountId}-1` });
    const sessionReqs = api.posts('/v1/checkout/sessions');
    expect(sessionReqs.map((r) => r.idempotencyKey)).toEqual([`checkout-${accountId}-1`, `checkout-${accountId}-1`]);
    expect(sessionReqs.map((r) => r.replayed)).toEqual([false, true]);
    expect(again.id).toBe(first.id);
  });
});

describe('createCheckoutSession: a plan', () => {
  it('creates a subscription session with the plan in the session and subscription metadata', async () => {
    const accountId = randomUUID();
    const session = await createCheckoutSession({ stripe: api.stripe, creditkit, accountId, planId: 'pro', ...URLS });
    expect(session.url).toContain(session.id);
    const customer = await storedCustomer(accountId);
    const [sessionReq] = api.posts('/v1/checkout/sessions');
    expect(sessionReq!.body).toEqual({
      mode: 'subscription',
      customer,
      client_reference_id: accountId,
      line_items: [{ price: 'price_pro', quantity: '1' }],
      success_url: URLS.successUrl,
      cancel_url: URLS.cancelUrl,
      metadata: { account_id: accountId, plan_id: 'pro', price_id: 'price_pro' },
      subscription_data: { metadata: { account_id: accountId, plan_id: 'pro' } },
    });
    expect(sessionReq!.body).not.toHaveProperty('payment_intent_data');
  });

  it('uses the same customer for a pack and a plan of one account', async () => {
    const accountId = randomUUID();
    await createCheckoutSession({ stripe: api.stripe, creditkit, accountId, packId: 'starter', ...URLS });
    await createCheckoutSession({ stripe: api.stripe, creditkit, accountId, planId: 'pro', ...URLS });
    const customers = api.posts('/v1/checkout/sessions').map((r) => r.body.customer);
    expect(api.posts('/v1/customers')).toHaveLength(1);
    expect(new Set(customers).size).toBe(1);
    expect(customers[0]).toBe(await storedCustomer(accountId));
  });
});

describe('one Stripe customer per account under concurrency', () => {
  it('concurrent first checkouts send one idempotency key, and all sessions use the one stored customer', async () => {
    const race = await startFakeStripe({ holdCustomerCreatesUntil: 5 });
    try {
      const accountId = randomUUID();
      const sessions = await Promise.all(
        Array.from({ length: 5 }, () => createCheckoutSession({ stripe: race.stripe, creditkit, accountId, packId: 'starter', ...URLS })),
      );
      expect(new Set(sessions.map((s) => s.id)).size).toBe(5);
      const creates = race.posts('/v1/customers');
      expect(creates).toHaveLength(5); // all five saw no stored customer: the race really happened
      expect(new Set(creates.map((r) => r.idempotencyKey))).toEqual(new Set([`creditkit-customer-${accountId}`]));
      expect(race.customers.size).toBe(1);
      const stored = await storedCustomer(accountId);
      expect(stored).toBe([...race.customers.keys()][0]);
      expect(race.posts('/v1/checkout/sessions').map((r) => r.body.customer)).toEqual(Array(5).fill(stored));
    } finally {
      await race.close();
    }
  });

  it('even when Stripe creates several customers (keys not honoured), the first stored wins for every session', async () => {
    const race = await startFakeStripe({ ignoreIdempotency: true, holdCustomerCreatesUntil: 4 });
    try {
      const accountId = randomUUID();
      await Promise.all(
        Array.from({ length: 4 }, () => createCheckoutSession({ stripe: race.stripe, creditkit, accountId, packId: 'starter', ...URLS })),
      );
      expect(race.customers.size).toBe(4); // Stripe made four customers ...
      const stored = await storedCustomer(accountId);
      expect(race.customers.has(stored!)).toBe(true);
      // ... but every session went to the one creditkit stored
      expect(race.posts('/v1/checkout/sessions').map((r) => r.body.customer)).toEqual(Array(4).fill(stored));
    } finally {
      await race.close();
    }
  });
});

describe('createCheckoutSession: errors before any Stripe call', () => {
  const attempt = (params: Record<string, unknown>) =>
    createCheckoutSession({ stripe: api.stripe, creditkit, accountId: randomUUID(), ...URLS, ...params } as unknown as Parameters<typeof createCheckoutSession>[0]);

  it.each([
    ['an unknown pack', { packId: 'nope' }, UnknownPackError, 'unknown_pack'],
    ['an inactive pack', { packId: 'retired' }, UnknownPackError, 'unknown_pack'],
    ['a pack without a Stripe price id', { packId: 'unpriced' }, NoStripePriceError, 'no_stripe_price'],
    ['an unknown plan', { planId: 'nope' }, UnknownPlanError, 'unknown_plan'],
    ['a plan without a Stripe price id', { planId: 'team' }, NoStripePriceError, 'no_stripe_price'],
    ['the default free plan (no price id)', { planId: 'free' }, NoStripePriceError, 'no_stripe_price'],
    ['neither pack nor plan', {}, InvalidArgumentError, 'invalid_argument'],
    ['both pack and plan', { packId: 'starter', planId: 'pro' }, InvalidArgumentError, 'invalid_argument'],
    ['an account id that is not a uuid', { packId: 'starter', accountId: 'ada' }, InvalidArgumentError, 'invalid_argument'],
  ])('%s', async (_, params, ErrorClass, code) => {
    const error = await attempt(params).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ErrorClass);
    expect(error).toBeInstanceOf(CreditkitError);
    expect((error as CreditkitError).code).toBe(code);
    expect(api.requests).toEqual([]);
  });

  it('the error names the pack or plan', async () => {
    const error = (await attempt({ packId: 'unpriced' }).catch((e: unknown) => e)) as CreditkitError;
    expect(error.details).toEqual({ packId: 'unpriced' });
    const planError = (await attempt({ planId: 'team' }).catch((e: unknown) => e)) as CreditkitError;
    expect(planError.details).toEqual({ planId: 'team' });
  });
});

describe('saving a card for auto top-up', () => {
  it('createSetupSession: creates and links the customer, then a setup session for cards with the account in metadata', async () => {
    const accountId = randomUUID();
    const session = await createSetupSession({ stripe: api.stripe, creditkit, accountId, ...URLS, customerEmail: 'ada@example.test' });
    expect(session.id).toMatch(/^cs_test_/);
    expect(session.url).toBe(`https://checkout.stripe.com/c/pay/${session.id}`);
    expect(session.setupIntent).toMatch(/^seti_/);
    expect(api.requests.map((r) => `${r.method} ${r.path}`)).toEqual(['POST /v1/customers', 'POST /v1/checkout/sessions']);
    const customer = await storedCustomer(accountId);
    expect(customer).toMatch(/^cus_/);
    expect(api.requests[0]!.idempotencyKey).toBe(`creditkit-customer-${accountId}`);
    expect(api.requests[1]!.body).toEqual({
      mode: 'setup',
      customer,
      client_reference_id: accountId,
      allowed_payment_method_types: ['card'],
      success_url: URLS.successUrl,
      cancel_url: URLS.cancelUrl,
      metadata: { account_id: accountId },
      setup_intent_data: { metadata: { account_id: accountId } },
    });

    // the customer saves a card: the events carry the account's customer and the account
    const [attached, setup, completed] = api.completeSetup(session.id, 'pm_card_visa');
    expect(attached!.type).toBe('payment_method.attached');
    expect(attached!.data.object).toMatchObject({ object: 'payment_method', customer, card: { last4: '4242' } });
    expect(setup!.data.object).toMatchObject({ customer, payment_method: 'pm_card_visa', metadata: { account_id: accountId } });
    expect(completed!.data.object).toMatchObject({ mode: 'setup', customer, metadata: { account_id: accountId }, setup_intent: session.setupIntent });
  });

  it('createSetupSession reuses the stored customer (one per account, whatever was bought before)', async () => {
    const accountId = randomUUID();
    await createCheckoutSession({ stripe: api.stripe, creditkit, accountId, packId: 'starter', ...URLS });
    const customer = await storedCustomer(accountId);
    api.reset();
    await createSetupSession({ stripe: api.stripe, creditkit, accountId, ...URLS });
    expect(api.posts('/v1/customers')).toHaveLength(0);
    expect(api.posts('/v1/checkout/sessions')[0]!.body.customer).toBe(customer);
  });

  it('createSetupSession: other payment method types, a currency instead, an idempotency key', async () => {
    const accountId = randomUUID();
    await createSetupSession({ stripe: api.stripe, creditkit, accountId, ...URLS, paymentMethodTypes: ['card', 'link'] });
    await createSetupSession({ stripe: api.stripe, creditkit, accountId, ...URLS, currency: 'eur', idempotencyKey: `setup-${accountId}` });
    const [typed, currency] = api.posts('/v1/checkout/sessions');
    expect(typed!.body.allowed_payment_method_types).toEqual(['card', 'link']);
    expect(currency!.body).toMatchObject({ currency: 'eur' });
    expect(currency!.body).not.toHaveProperty('allowed_payment_method_types');
    expect(currency!.idempotencyKey).toBe(`setup-${accountId}`);
  });

  it('createSetupSession: an account id that is not a uuid is refused before Stripe is called', async () => {
    const error = await createSetupSession({ stripe: api.stripe, creditkit, accountId: 'ada', ...URLS }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(api.requests).toEqual([]);
  });

  it('saveCard on a pack: the payment intent is set up for off-session use, the rest as before', async () => {
    const accountId = randomUUID();
    await createCheckoutSession({ stripe: api.stripe, creditkit, accountId, packId: 'starter', ...URLS, saveCard: true });
    const [sessionReq] = api.posts('/v1/checkout/sessions');
    expect(sessionReq!.body).toMatchObject({
      mode: 'payment',
      metadata: { account_id: accountId, pack_id: 'starter', price_id: 'price_starter' },
      payment_intent_data: { metadata: { account_id: accountId, pack_id: 'starter' }, setup_future_usage: 'off_session' },
    });
    api.reset();
    await createCheckoutSession({ stripe: api.stripe, creditkit, accountId, packId: 'starter', ...URLS, saveCard: false });
    expect(api.posts('/v1/checkout/sessions')[0]!.body.payment_intent_data).toEqual({ metadata: { account_id: accountId, pack_id: 'starter' } });
  });

  it('saveCard on a plan is an InvalidArgumentError (a subscription keeps its card) and Stripe is not called', async () => {
    const error = await createCheckoutSession({
      stripe: api.stripe, creditkit, accountId: randomUUID(), planId: 'pro', ...URLS, saveCard: true,
    } as unknown as Parameters<typeof createCheckoutSession>[0]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(api.requests).toEqual([]);
  });
});

describe('createPortalSession', () => {
  it('opens the portal for the stored customer', async () => {
    const accountId = randomUUID();
    await createCheckoutSession({ stripe: api.stripe, creditkit, accountId, planId: 'pro', ...URLS });
    const customer = await storedCustomer(accountId);
    api.reset();

    const portal = await createPortalSession({ stripe: api.stripe, creditkit, accountId, returnUrl: 'https://app.example/account' });
    expect(portal.url).toMatch(/^https:\/\/billing\.stripe\.com\/p\/session\/test_bps_/);
    expect(api.requests.map((r) => `${r.method} ${r.path}`)).toEqual(['POST /v1/billing_portal/sessions']);
    expect(api.requests[0]!.body).toEqual({ customer, return_url: 'https://app.example/account' });
  });

  it('an account without a customer gets NoStripeCustomerError and Stripe is not called', async () => {
    const accountId = randomUUID();
    const error = await createPortalSession({ stripe: api.stripe, creditkit, accountId, returnUrl: 'https://app.example/account' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NoStripeCustomerError);
    expect((error as CreditkitError).code).toBe('no_stripe_customer');
    expect((error as CreditkitError).details).toEqual({ accountId });
    expect(api.requests).toEqual([]);
  });
});
