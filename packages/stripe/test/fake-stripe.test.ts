// The Stripe stand-in (@creditkit/testing's fake-stripe.ts) itself, through the real Stripe SDK:
// off-session PaymentIntents answer as Stripe's test cards do (succeeded, processing, a 402
// card_error carrying the PaymentIntent), idempotency replays whatever was answered first and
// counts no second charge, injected failures fail the way Stripe and networks fail, setup-mode
// Checkout sessions, and the webhook events of what the customer and Stripe did.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import Stripe from 'stripe';
import { startFakeStripe, stripeEvents, type FakeStripe } from '@creditkit/testing';

let api: FakeStripe;

beforeAll(async () => {
  api = await startFakeStripe();
});

afterAll(async () => {
  await api?.close();
});

beforeEach(() => api.reset());

const METADATA = {
  creditkit_topup_id: '7',
  creditkit_account_id: '00000000-0000-4000-8000-000000000007',
  creditkit_unit: 'credits',
  creditkit_amount: '500',
};

/** What the worker sends: an off-session charge of a saved method, with the SQL's key. */
function charge(paymentMethod: string, key: string, extra: Partial<Stripe.PaymentIntentCreateParams> = {}, stripe: Stripe = api.stripe) {
  return stripe.paymentIntents.create(
    { amount: 1000, currency: 'usd', customer: 'cus_topup', payment_method: paymentMethod, confirm: true, off_session: true, metadata: METADATA, ...extra },
    { idempotencyKey: key },
  );
}

const failure = (p: Promise<unknown>) => p.then(() => { throw new Error('expected the request to fail'); }, (e: unknown) => e as Stripe.errors.StripeError);

/** The envelope creditkit_stripe_apply reads (see packages/stripe/src/handler.ts isEvent). */
function expectEvent(e: stripeEvents.StripeEvent, type: string) {
  expect(e.type).toBe(type);
  expect(e.id).toMatch(/^evt_[A-Za-z0-9_]+$/);
  expect(Number.isInteger(e.created)).toBe(true);
  expect(e.object).toBe('event');
  expect(e.livemode).toBe(false);
  expect(typeof e.data.object).toBe('object');
}

describe('POST /v1/payment_intents, off session', () => {
  it('pm_card_visa: succeeded, with the customer, method, amount and metadata sent; one charge', async () => {
    const pi = await charge('pm_card_visa', 'creditkit-topup-1-1');
    expect(pi).toMatchObject({
      object: 'payment_intent', status: 'succeeded', amount: 1000, amount_received: 1000, currency: 'usd',
      customer: 'cus_topup', payment_method: 'pm_card_visa', metadata: METADATA, last_payment_error: null,
    });
    expect(pi.id).toMatch(/^pi_/);
    expect(pi.latest_charge).toMatch(/^ch_/);
    expect(api.posts('/v1/payment_intents')[0]!.body).toMatchObject({ confirm: 'true', off_session: 'true', metadata: METADATA });
    expect(api.paymentIntents.get(pi.id)).toMatchObject({ status: 'succeeded' });
    expect(api.chargeCount({ idempotencyKey: 'creditkit-topup-1-1' })).toBe(1);

    const e = api.paymentIntentEvent(pi.id);
    expectEvent(e, 'payment_intent.succeeded');
    expect(e.data.object).toMatchObject({ id: pi.id, status: 'succeeded', amount_received: 1000, metadata: METADATA, customer: 'cus_topup' });
  });

  it('an unknown payment method id charges like a card that works', async () => {
    expect((await charge('pm_1QSomethingSaved', 'creditkit-topup-2-1')).status).toBe('succeeded');
  });

  it('the same key again is replayed: the same PaymentIntent, no second charge', async () => {
    const first = await charge('pm_card_visa', 'creditkit-topup-3-1', { customer: 'cus_once' });
    const again = await charge('pm_card_visa', 'creditkit-topup-3-1', { customer: 'cus_once' });
    expect(again.id).toBe(first.id);
    expect(api.posts('/v1/payment_intents').map((r) => r.replayed)).toEqual([false, true]);
    expect(api.chargeCount({ idempotencyKey: 'creditkit-topup-3-1' })).toBe(1);
    expect(api.chargeCount({ customer: 'cus_once' })).toBe(1);
  });

  it('the same key with other parameters is a 400 idempotency_error and charges nothing', async () => {
    await charge('pm_card_visa', 'creditkit-topup-4-1');
    const error = await failure(charge('pm_card_visa', 'creditkit-topup-4-1', { amount: 2000 }));
    expect(error).toBeInstanceOf(Stripe.errors.StripeIdempotencyError);
    expect(api.chargeCount({ idempotencyKey: 'creditkit-topup-4-1' })).toBe(1);
  });

  it('pm_card_chargeDeclined: 402 card_declined / generic_decline, the PaymentIntent in the error; payment_intent.payment_failed', async () => {
    const error = await failure(charge('pm_card_chargeDeclined', 'creditkit-topup-5-1'));
    expect(error).toBeInstanceOf(Stripe.errors.StripeCardError);
    expect(error.statusCode).toBe(402);
    expect(error).toMatchObject({ type: 'StripeCardError', code: 'card_declined', decline_code: 'generic_decline', message: 'Your card was declined.' });
    const pi = error.payment_intent!;
    expect(pi).toMatchObject({ object: 'payment_intent', status: 'requires_payment_method', metadata: METADATA, amount: 1000 });
    expect(pi.last_payment_error).toMatchObject({
      type: 'card_error', code: 'card_declined', decline_code: 'generic_decline',
      payment_method: { id: 'pm_card_chargeDeclined', type: 'card', card: { brand: 'visa', last4: '0002' } },
    });
    expect(error.raw).toMatchObject({ charge: expect.stringMatching(/^ch_/) });
    expect(api.paymentIntents.get(pi.id)).toMatchObject({ status: 'requires_payment_method' });

    const e = api.paymentIntentEvent(pi.id);
    expectEvent(e, 'payment_intent.payment_failed');
    expect(e.data.object).toMatchObject({ id: pi.id, status: 'requires_payment_method', last_payment_error: { code: 'card_declined' } });

    // Stripe stores the 402 under the key too: the retry gets the same decline, no new attempt
    const again = await failure(charge('pm_card_chargeDeclined', 'creditkit-topup-5-1'));
    expect(again.payment_intent!.id).toBe(pi.id);
    expect(api.chargeCount({ idempotencyKey: 'creditkit-topup-5-1' })).toBe(1);
  });

  it('pm_card_chargeDeclinedInsufficientFunds: card_declined / insufficient_funds', async () => {
    const error = await failure(charge('pm_card_chargeDeclinedInsufficientFunds', 'creditkit-topup-6-1'));
    expect(error).toMatchObject({ code: 'card_declined', decline_code: 'insufficient_funds' });
  });

  it('pm_card_authenticationRequired off session: 402 authentication_required, the PaymentIntent requires_payment_method', async () => {
    const error = await failure(charge('pm_card_authenticationRequired', 'creditkit-topup-7-1'));
    expect(error).toBeInstanceOf(Stripe.errors.StripeCardError);
    expect(error).toMatchObject({ code: 'authentication_required', decline_code: 'authentication_required' });
    expect(error.payment_intent).toMatchObject({ status: 'requires_payment_method', next_action: null, last_payment_error: { code: 'authentication_required' } });
    expectEvent(api.paymentIntentEvent(error.payment_intent!.id), 'payment_intent.payment_failed');
  });

  it('pm_card_authenticationRequired on session: 200 requires_action with a next action', async () => {
    const pi = await api.stripe.paymentIntents.create({ amount: 1000, currency: 'usd', payment_method: 'pm_card_authenticationRequired', confirm: true });
    expect(pi.status).toBe('requires_action');
    expect(pi.next_action?.type).toBe('use_stripe_sdk');
  });

  it('a SEPA debit: processing, then settles either way with its event', async () => {
    const pi = await charge('pm_sepa_debit', 'creditkit-topup-8-1', { currency: 'eur' });
    expect(pi).toMatchObject({ status: 'processing', payment_method_types: ['sepa_debit'] });
    expectEvent(api.paymentIntentEvent(pi.id), 'payment_intent.processing');
    const ok = api.settlePaymentIntent(pi.id, 'succeeded');
    expectEvent(ok, 'payment_intent.succeeded');
    expect(ok.data.object).toMatchObject({ id: pi.id, amount_received: 1000 });

    const bounced = await charge('pm_sepa_debit', 'creditkit-topup-8-2', { currency: 'eur' });
    const failed = api.settlePaymentIntent(bounced.id, 'failed');
    expectEvent(failed, 'payment_intent.payment_failed');
    expect(failed.data.object).toMatchObject({ status: 'requires_payment_method', last_payment_error: { payment_method: { type: 'sepa_debit' } } });
  });

  it('refuses what Stripe refuses, without storing the key: off_session without confirm, confirm without a method, no amount', async () => {
    for (const params of [
      { amount: 1000, currency: 'usd', payment_method: 'pm_card_visa', off_session: true },
      { amount: 1000, currency: 'usd', confirm: true },
      { currency: 'usd', payment_method: 'pm_card_visa', confirm: true },
      { amount: 10, currency: 'usd', payment_method: 'pm_card_visa', confirm: true },
    ] as Stripe.PaymentIntentCreateParams[]) {
      const error = await failure(api.stripe.paymentIntents.create(params, { idempotencyKey: 'creditkit-topup-9-1' }));
      expect(error).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    }
    expect(api.chargeCount({ idempotencyKey: 'creditkit-topup-9-1' })).toBe(0);
    // the key was not used up by the invalid requests
    expect((await charge('pm_card_visa', 'creditkit-topup-9-1')).status).toBe('succeeded');
  });

  it('without confirm: a PaymentIntent that waits (requires_confirmation)', async () => {
    const pi = await api.stripe.paymentIntents.create({ amount: 1000, currency: 'usd', payment_method: 'pm_card_visa' });
    expect(pi.status).toBe('requires_confirmation');
  });

  it('counts charges per customer across keys', async () => {
    await charge('pm_card_visa', 'creditkit-topup-10-1', { customer: 'cus_counted' });
    await charge('pm_card_visa', 'creditkit-topup-11-1', { customer: 'cus_counted' });
    await failure(charge('pm_card_chargeDeclined', 'creditkit-topup-12-1', { customer: 'cus_counted' }));
    expect(api.chargeCount({ customer: 'cus_counted' })).toBe(3);
    expect(api.chargeCount({ customer: 'cus_counted', status: 'succeeded' })).toBe(2);
  });
});

describe('injected failures', () => {
  it('rate_limit: 429, nothing created; the retry with the same key charges once', async () => {
    api.failNextPaymentIntents(1, 'rate_limit');
    const error = await failure(charge('pm_card_visa', 'creditkit-topup-20-1', { customer: 'cus_rl' }));
    expect(error).toBeInstanceOf(Stripe.errors.StripeRateLimitError);
    expect(api.chargeCount({ customer: 'cus_rl' })).toBe(0);
    expect((await charge('pm_card_visa', 'creditkit-topup-20-1', { customer: 'cus_rl' })).status).toBe('succeeded');
    expect(api.chargeCount({ customer: 'cus_rl' })).toBe(1);
  });

  it('unavailable: a 503 page from in front of the API, nothing stored; the retry works', async () => {
    api.failNextPaymentIntents(2, 'unavailable');
    // not JSON: the SDK reports an API error without a Stripe error body
    expect(await failure(charge('pm_card_visa', 'creditkit-topup-21-1'))).toBeInstanceOf(Stripe.errors.StripeAPIError);
    expect(await failure(charge('pm_card_visa', 'creditkit-topup-21-1'))).toBeInstanceOf(Stripe.errors.StripeAPIError);
    expect(api.chargeCount({ idempotencyKey: 'creditkit-topup-21-1' })).toBe(0);
    expect((await charge('pm_card_visa', 'creditkit-topup-21-1')).status).toBe('succeeded');
    expect(api.chargeCount({ idempotencyKey: 'creditkit-topup-21-1' })).toBe(1);
  });

  it('api_error: 500 stored under the key, so the same key gets the 500 again; a new key charges', async () => {
    api.failNextPaymentIntents(1, 'api_error');
    const error = await failure(charge('pm_card_visa', 'creditkit-topup-22-1'));
    expect(error).toBeInstanceOf(Stripe.errors.StripeAPIError);
    expect(error.statusCode).toBe(500);
    const again = await failure(charge('pm_card_visa', 'creditkit-topup-22-1'));
    expect(again.statusCode).toBe(500);
    expect(api.posts('/v1/payment_intents').map((r) => r.replayed)).toEqual([false, true]);
    expect(api.chargeCount({ idempotencyKey: 'creditkit-topup-22-1' })).toBe(0);
    expect((await charge('pm_card_visa', 'creditkit-topup-22-2')).status).toBe('succeeded');
  });

  it('hang: the charge happens but the client times out; the retry with the same key gets it, one charge', async () => {
    const impatient = new Stripe('sk_test_creditkit', { host: '127.0.0.1', port: api.port, protocol: 'http', maxNetworkRetries: 0, timeout: 300 });
    api.failNextPaymentIntents(1, 'hang');
    const error = await failure(charge('pm_card_visa', 'creditkit-topup-23-1', { customer: 'cus_hang' }, impatient));
    expect(error).toBeInstanceOf(Stripe.errors.StripeConnectionError);
    expect(api.chargeCount({ customer: 'cus_hang' })).toBe(1); // it was charged all the same
    const pi = await charge('pm_card_visa', 'creditkit-topup-23-1', { customer: 'cus_hang' }, impatient);
    expect(pi.id).toBe([...api.createdPaymentIntents].reverse().find((c) => c.customer === 'cus_hang')!.id);
    expect(api.chargeCount({ customer: 'cus_hang' })).toBe(1);
  });

  it('hang for a while: the answer comes late but comes', async () => {
    api.failNextPaymentIntents(1, 'hang', { ms: 150 });
    const started = Date.now();
    expect((await charge('pm_card_visa', 'creditkit-topup-24-1')).status).toBe('succeeded');
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
  });

  it('reset: charged, connection dropped; whoever retries with the key (the SDK itself, once) gets the one charge', async () => {
    api.failNextPaymentIntents(1, 'reset');
    const result = await charge('pm_card_visa', 'creditkit-topup-25-1', { customer: 'cus_reset' }).catch((e: unknown) => e);
    if (result instanceof Error) {
      expect(result).toBeInstanceOf(Stripe.errors.StripeConnectionError);
      expect((await charge('pm_card_visa', 'creditkit-topup-25-1', { customer: 'cus_reset' })).status).toBe('succeeded');
    }
    expect(api.posts('/v1/payment_intents').map((r) => r.replayed)).toEqual([false, true]);
    expect(api.chargeCount({ customer: 'cus_reset' })).toBe(1);
  });
});

describe('saving a card: Checkout in mode setup, payment methods, the customer default', () => {
  it('a setup session has a setup intent and no payment; setup mode needs a currency or allowed_payment_method_types', async () => {
    const error = await failure(api.stripe.checkout.sessions.create({ mode: 'setup', customer: 'cus_setup', success_url: 'https://app.example/ok' }));
    expect(error).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect(error.param).toBe('currency');

    const session = await api.stripe.checkout.sessions.create({
      mode: 'setup', customer: 'cus_setup', allowed_payment_method_types: ['card'], success_url: 'https://app.example/ok',
      metadata: { account_id: 'acc' }, setup_intent_data: { metadata: { account_id: 'acc' } },
    });
    expect(session).toMatchObject({
      object: 'checkout.session', mode: 'setup', status: 'open', customer: 'cus_setup', payment_intent: null,
      allowed_payment_method_types: ['card'], metadata: { account_id: 'acc' },
    });
    expect(session.setup_intent).toMatch(/^seti_/);
    expect(session.url).toContain(session.id);
  });

  it('completeSetup: payment_method.attached, setup_intent.succeeded, checkout.session.completed, as Stripe orders them', async () => {
    const session = await api.stripe.checkout.sessions.create({
      mode: 'setup', customer: 'cus_saver', currency: 'usd', success_url: 'https://app.example/ok',
      metadata: { account_id: 'acc-1' }, setup_intent_data: { metadata: { account_id: 'acc-1' } },
    });
    const [attached, setup, completed] = api.completeSetup(session.id, 'pm_card_mastercard');
    expectEvent(attached!, 'payment_method.attached');
    expect(attached!.data.object).toMatchObject({
      id: 'pm_card_mastercard', object: 'payment_method', customer: 'cus_saver', type: 'card',
      card: { brand: 'mastercard', last4: '4444', exp_month: 12, exp_year: 2034 },
    });
    expectEvent(setup!, 'setup_intent.succeeded');
    expect(setup!.data.object).toMatchObject({
      id: session.setup_intent, object: 'setup_intent', customer: 'cus_saver', payment_method: 'pm_card_mastercard',
      status: 'succeeded', usage: 'off_session', metadata: { account_id: 'acc-1' },
    });
    expectEvent(completed!, 'checkout.session.completed');
    expect(completed!.data.object).toMatchObject({
      id: session.id, mode: 'setup', status: 'complete', payment_status: 'no_payment_required', setup_intent: session.setup_intent,
      customer: 'cus_saver', metadata: { account_id: 'acc-1' },
    });
    expect(api.attachedPaymentMethods.get('pm_card_mastercard')).toBe('cus_saver');
    expect(() => api.completeSetup(session.id)).toThrow(/complete/);

    // attached to cus_saver, it cannot be charged for someone else
    const error = await failure(charge('pm_card_mastercard', 'creditkit-topup-30-1', { customer: 'cus_other' }));
    expect(error).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect((await charge('pm_card_mastercard', 'creditkit-topup-30-2', { customer: 'cus_saver' })).status).toBe('succeeded');
  });

  it('the default payment method: customer.updated with invoice_settings, and what it was before', async () => {
    const set = api.setDefaultPaymentMethod('cus_default', 'pm_card_visa');
    expectEvent(set, 'customer.updated');
    expect(set.data.object).toMatchObject({ id: 'cus_default', object: 'customer', invoice_settings: { default_payment_method: 'pm_card_visa' } });
    expect(set.data.previous_attributes).toEqual({ invoice_settings: { default_payment_method: null } });
    const changed = api.setDefaultPaymentMethod('cus_default', 'pm_sepa_debit');
    expect(changed.data.previous_attributes).toEqual({ invoice_settings: { default_payment_method: 'pm_card_visa' } });
  });

  it('detaching: payment_method.detached with no customer now, the one it left in previous_attributes', async () => {
    api.setDefaultPaymentMethod('cus_detach', 'pm_card_amex');
    const e = api.detachPaymentMethod('pm_card_amex');
    expectEvent(e, 'payment_method.detached');
    expect(e.data.object).toMatchObject({ id: 'pm_card_amex', customer: null, card: { brand: 'amex' } });
    expect(e.data.previous_attributes).toEqual({ customer: 'cus_detach' });
    expect(api.attachedPaymentMethods.has('pm_card_amex')).toBe(false);
  });

  it('the builders work without the stand-in too', () => {
    const pi = stripeEvents.paymentIntentObject({ amount: 500, currency: 'usd', customer: 'cus_x', paymentMethod: 'pm_card_visa', status: 'succeeded', metadata: METADATA });
    expect(stripeEvents.paymentIntentSucceeded(pi, { created: 1_800_000_000 })).toMatchObject({
      type: 'payment_intent.succeeded', created: 1_800_000_000, api_version: stripeEvents.STRIPE_API_VERSION,
      data: { object: { id: pi.id, metadata: METADATA, amount_received: 500 } },
    });
    const failed = stripeEvents.paymentIntentObject({
      amount: 500, currency: 'usd', paymentMethod: 'pm_card_chargeDeclined', status: 'requires_payment_method',
      lastPaymentError: stripeEvents.cardErrorObject('pm_card_chargeDeclined'),
    });
    expect(stripeEvents.paymentIntentPaymentFailed(failed).data.object).toMatchObject({ last_payment_error: { code: 'card_declined', decline_code: 'generic_decline' } });
    expect(() => stripeEvents.paymentIntentPaymentFailed(pi)).toThrow(/last_payment_error/);
  });
});
