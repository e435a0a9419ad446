// Checkout and the customer portal. A pack is sold as a one-off payment (optionally saving the
// card for auto top-up), a plan as a subscription, and a card is saved on its own with Checkout
// in setup mode; all carry the creditkit account and the pack or plan in their metadata, which is
// what the webhook (creditkit_stripe_apply) reads to grant the credits. Each account has exactly
// one Stripe customer, created on its first checkout and stored in creditkit.stripe_customers.
import type Stripe from 'stripe';
import {
  CreditkitError,
  InvalidArgumentError,
  UnknownPackError,
  UnknownPlanError,
} from '@creditkit/core';
import type { CreditkitServer } from '@creditkit/core/server';
import { NoStripeCustomerError, NoStripePriceError } from './errors.ts';

/** The creditkit methods Checkout needs (any `createCreditkit(...)` client has them). */
export type CheckoutCreditkit = Pick<CreditkitServer, 'packs' | 'plans' | 'stripeCustomer' | 'stripeLinkCustomer'>;

interface CheckoutCommon {
  stripe: Stripe;
  creditkit: CheckoutCreditkit;
  /** The creditkit account (a uuid; by default the user's id) the purchase is credited to. */
  accountId: string;
  /** Where Stripe sends the buyer after paying; may contain `{CHECKOUT_SESSION_ID}`. */
  successUrl: string;
  cancelUrl: string;
  /**
   * Used only when the account's Stripe customer is created (its first checkout); later
   * checkouts reuse the stored customer and its email.
   */
  customerEmail?: string;
  /**
   * Idempotency key for creating the session, e.g. derived from your request id, so that a
   * retried request returns the same session instead of opening a second one. Default: the
   * Stripe SDK's own key per call (which only covers its internal retries).
   */
  idempotencyKey?: string;
}

export type CheckoutParams = CheckoutCommon &
  (
    | {
        /** A credit pack: a one-off payment (mode `payment`). */
        packId: string;
        planId?: undefined;
        /**
         * Also save the card for later off-session charges (auto top-up): the PaymentIntent gets
         * `setup_future_usage: 'off_session'`, Checkout shows the buyer that the card is kept,
         * and Stripe attaches it to the account's customer.
         */
        saveCard?: boolean;
      }
    | { /** A plan: a subscription (mode `subscription`). */ planId: string; packId?: undefined; saveCard?: undefined }
  );

export interface CheckoutSession {
  id: string;
  /** Send the buyer here (Stripe-hosted Checkout). */
  url: string;
}

/**
 * The account's Stripe customer: the stored one, or a new one created with an idempotency key
 * per account and stored. If two first checkouts race, the customer stored first wins and both
 * use it (with the per-account key, Stripe returns the same customer to both anyway).
 */
export async function ensureStripeCustomer(params: {
  stripe: Stripe;
  creditkit: Pick<CreditkitServer, 'stripeCustomer' | 'stripeLinkCustomer'>;
  accountId: string;
  customerEmail?: string;
}): Promise<string> {
  const { stripe, creditkit, accountId } = params;
  const stored = await creditkit.stripeCustomer({ accountId });
  if (stored) return stored;
  const customer = await stripe.customers.create(
    {
      ...(params.customerEmail ? { email: params.customerEmail } : {}),
      metadata: { account_id: accountId },
    },
    { idempotencyKey: `creditkit-customer-${accountId}` },
  );
  return creditkit.stripeLinkCustomer({ accountId, customerId: customer.id });
}

/** What is being sold: the pack or plan and its Stripe price, or a typed error. */
async function priceFor(params: CheckoutParams): Promise<{ kind: 'pack' | 'plan'; id: string; price: string }> {
  const { creditkit } = params;
  if (params.packId !== undefined && params.planId === undefined) {
    const pack = (await creditkit.packs()).find((p) => p.id === params.packId);
    if (!pack) throw new UnknownPackError(`no active credit pack ${JSON.stringify(params.packId)}`, { details: { packId: params.packId } });
    if (!pack.stripePriceId) {
      throw new NoStripePriceError(`pack ${pack.id} has no Stripe price id (set stripePriceId with upsertPack)`, { details: { packId: pack.id } });
    }
    return { kind: 'pack', id: pack.id, price: pack.stripePriceId };
  }
  if (params.planId !== undefined && params.packId === undefined) {
    const plan = (await creditkit.plans()).find((p) => p.id === params.planId);
    if (!plan) throw new UnknownPlanError(`no active plan ${JSON.stringify(params.planId)}`, { details: { planId: params.planId } });
    if (!plan.stripePriceId) {
      throw new NoStripePriceError(`plan ${plan.id} has no Stripe price id (set stripePriceId with upsertPlan)`, { details: { planId: plan.id } });
    }
    return { kind: 'plan', id: plan.id, price: plan.stripePriceId };
  }
  throw new InvalidArgumentError('createCheckoutSession needs exactly one of packId and planId');
}

/**
 * A Stripe Checkout session for a pack (mode `payment`) or a plan (mode `subscription`), for the
 * account's one Stripe customer. The webhook grants the credits when Stripe reports the payment.
 */
export async function createCheckoutSession(params: CheckoutParams): Promise<CheckoutSession> {
  const { stripe, accountId } = params;
  if (params.saveCard !== undefined && params.packId === undefined) {
    throw new InvalidArgumentError('saveCard is for packs: a subscription keeps its card already');
  }
  const item = await priceFor(params);
  const customer = await ensureStripeCustomer(params);

  const common = {
    customer,
    client_reference_id: accountId,
    line_items: [{ price: item.price, quantity: 1 }],
    success_url: params.successUrl,
    cancel_url: params.cancelUrl,
  } satisfies Stripe.Checkout.SessionCreateParams;
  const body: Stripe.Checkout.SessionCreateParams =
    item.kind === 'pack'
      ? {
          ...common,
          mode: 'payment',
          metadata: { account_id: accountId, pack_id: item.id, price_id: item.price },
          // on the payment intent too, so refunds and disputes can be traced in the dashboard
          payment_intent_data: {
            metadata: { account_id: accountId, pack_id: item.id },
            ...(params.saveCard ? { setup_future_usage: 'off_session' as const } : {}),
          },
        }
      : {
          ...common,
          mode: 'subscription',
          metadata: { account_id: accountId, plan_id: item.id, price_id: item.price },
          // invoices carry the subscription's metadata: renewals find the account from it
          subscription_data: { metadata: { account_id: accountId, plan_id: item.id } },
        };
  const session = await stripe.checkout.sessions.create(
    body,
    params.idempotencyKey ? { idempotencyKey: params.idempotencyKey } : undefined,
  );
  if (!session.url) throw new CreditkitError('internal', `Stripe returned checkout session ${session.id} without a url`);
  return { id: session.id, url: session.url };
}

export interface PortalParams {
  stripe: Stripe;
  creditkit: Pick<CreditkitServer, 'stripeCustomer'>;
  accountId: string;
  /** Where the portal's "return" link goes. */
  returnUrl: string;
}

/**
 * A Stripe customer-portal session for the account's stored customer (manage the subscription,
 * payment methods, invoices). NoStripeCustomerError if the account never went through Checkout.
 */
export async function createPortalSession(params: PortalParams): Promise<{ url: string }> {
  const { stripe, creditkit, accountId } = params;
  const customer = await creditkit.stripeCustomer({ accountId });
  if (!customer) {
    throw new NoStripeCustomerError(`account ${accountId} has no Stripe customer (it has not been through Checkout)`, {
      details: { accountId },
    });
  }
  const session = await stripe.billingPortal.sessions.create({ customer, return_url: params.returnUrl });
  return { url: session.url };
}

export interface SetupSessionParams {
  stripe: Stripe;
  creditkit: Pick<CreditkitServer, 'stripeCustomer' | 'stripeLinkCustomer'>;
  /** The creditkit account whose customer keeps the card. */
  accountId: string;
  /** Where Stripe sends the customer after saving; may contain `{CHECKOUT_SESSION_ID}`. */
  successUrl: string;
  cancelUrl: string;
  /** Used only when the account's Stripe customer is created here (see createCheckoutSession). */
  customerEmail?: string;
  /**
   * The payment method types Checkout offers (`allowed_payment_method_types`). Default
   * `['card']`: auto top-up charges off session and needs the money at once, which a debit that
   * settles days later (SEPA, ACH) does not give (creditkit refuses those with CK016).
   */
  paymentMethodTypes?: Stripe.Checkout.SessionCreateParams.AllowedPaymentMethodType[];
  /** The currency the methods are for (Stripe needs it in setup mode when no types are given). */
  currency?: string;
  /** Idempotency key for creating the session (see createCheckoutSession). */
  idempotencyKey?: string;
}

export interface SetupSession extends CheckoutSession {
  /** The SetupIntent the session confirms (seti_...), when Stripe made it with the session. */
  setupIntent: string | null;
}

/**
 * A Stripe Checkout session in mode `setup`: the customer saves a card, nothing is charged. The
 * card is attached to the account's one Stripe customer (created and linked here if it has none),
 * for off-session charges later; the session and its SetupIntent carry the account in metadata.
 * The webhook (creditkit_stripe_apply) records the saved method from the events that follow
 * (payment_method.attached, setup_intent.succeeded, checkout.session.completed).
 */
export async function createSetupSession(params: SetupSessionParams): Promise<SetupSession> {
  const { stripe, accountId } = params;
  const customer = await ensureStripeCustomer(params);
  const types = params.paymentMethodTypes ?? (params.currency === undefined ? ['card' as const] : undefined);
  const body: Stripe.Checkout.SessionCreateParams = {
    mode: 'setup',
    customer,
    client_reference_id: accountId,
    ...(types ? { allowed_payment_method_types: types } : {}),
    ...(params.currency === undefined ? {} : { currency: params.currency }),
    success_url: params.successUrl,
    cancel_url: params.cancelUrl,
    metadata: { account_id: accountId },
    setup_intent_data: { metadata: { account_id: accountId } },
  };
  const session = await stripe.checkout.sessions.create(
    body,
    params.idempotencyKey ? { idempotencyKey: params.idempotencyKey } : undefined,
  );
  if (!session.url) throw new CreditkitError('internal', `Stripe returned checkout session ${session.id} without a url`);
  const setupIntent = typeof session.setup_intent === 'string' ? session.setup_intent : (session.setup_intent?.id ?? null);
  return { id: session.id, url: session.url, setupIntent };
}
