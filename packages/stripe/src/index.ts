// @creditkit/stripe: sell credit packs and plans through Stripe Checkout, open the customer
// portal, and apply Stripe's webhooks to the ledger exactly once. See docs/stripe.md.
export {
  createCheckoutSession,
  createPortalSession,
  ensureStripeCustomer,
  type CheckoutCreditkit,
  type CheckoutParams,
  type CheckoutSession,
  type PortalParams,
} from './checkout.ts';
export { NoStripeCustomerError, NoStripePriceError } from './errors.ts';
export {
  createStripeWebhook,
  createWebhookHandler,
  type ApplyResult,
  type StripeWebhookParams,
  type StripeWebhooks,
  type WebhookOptions,
} from './webhook.ts';
