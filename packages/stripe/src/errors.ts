// Errors of @creditkit/stripe. Both are CreditkitErrors with a stable `code`, like every error
// the kit reports; an unknown pack or plan is @creditkit/core's UnknownPackError / UnknownPlanError.
import { CreditkitError, type ErrorInit } from '@creditkit/core';

/** The pack or plan exists but has no Stripe price id, so Checkout cannot sell it (code `no_stripe_price`). */
export class NoStripePriceError extends CreditkitError {
  override name = 'NoStripePriceError';
  constructor(message: string, init?: ErrorInit) {
    super('no_stripe_price', message, init);
  }
}

/** The account has no Stripe customer yet: it has never been through Checkout (code `no_stripe_customer`). */
export class NoStripeCustomerError extends CreditkitError {
  override name = 'NoStripeCustomerError';
  constructor(message: string, init?: ErrorInit) {
    super('no_stripe_customer', message, init);
  }
}
