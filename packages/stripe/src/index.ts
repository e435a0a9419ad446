// @creditkit/stripe: sell credit packs and plans through Stripe Checkout, save a card for auto
// top-up (Checkout in setup mode, or saveCard on a pack), open the customer portal, and apply
// Stripe's webhooks to the ledger exactly once. See docs/stripe.md.
export {
  createCheckoutSession,
  createPortalSession,
  createSetupSession,
  ensureStripeCustomer,
  type CheckoutCreditkit,
  type CheckoutParams,
  type CheckoutSession,
  type PortalParams,
  type SetupSession,
  type SetupSessionParams,
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
