// What the functions answer, in camelCase. Credits are integers (exact: the kit caps every
// balance at 2^53-1); instants are ISO 8601 strings as Postgres writes them, microseconds kept;
// ids of ledger rows, grants, holds and prices are integers. A test checks these field lists
// against the OUT parameters in the catalogue.
import type { Json } from './database.types.ts';

export type { Json };
/** An instant as Postgres renders it, e.g. "2026-11-22T04:16:06.516515+00:00". */
export type Timestamp = string;

/** consume: spent (allowed) or not (balance unchanged). `transactionId` is null when refused. */
export interface ConsumeResult {
  allowed: boolean;
  /** Spendable balance after the call (balance minus open holds). */
  balance: number;
  transactionId: number | null;
}

/** consumeBatch: one answer per event, in the order the events were sent. */
export interface BatchConsumeResult extends ConsumeResult {
  /** The event's position in the batch, counted from 1. */
  ordinal: number;
}

/** consumeOrRaise: only ever a success; a shortfall throws InsufficientCreditsError. */
export interface ChargeResult {
  balance: number;
  transactionId: number;
}

/** report: consume's answers for `amount` of a unit (a feature). */
export type ReportResult = ConsumeResult;

/** meter: like consume, with the price applied: `amount` is what the event cost, in `unit`. */
export interface MeterResult extends ConsumeResult {
  amount: number;
  /**
   * The balance that paid: the price's unit, or 'credits' when an overage rule charged credits
   * instead (then `amount` is in credits). A refusal names the price's unit.
   */
  unit: string;
}

export interface GrantResult {
  transactionId: number;
  grantId: number;
  balance: number;
}

export interface AdjustResult {
  transactionId: number;
  balance: number;
}

/** One grant with credits left, in the order they will be spent. */
export interface Bucket {
  grantId: number;
  category: string;
  amount: number;
  remaining: number;
  priority: number;
  createdAt: Timestamp;
  expiresAt: Timestamp | null;
}

export interface Balance {
  balance: number;
  /** When the next credits expire, or null if none do. */
  nextExpiry: Timestamp | null;
  buckets: Bucket[];
}

export interface AccountBalance extends Balance {
  accountId: string;
}

export interface HistoryEntry {
  id: number;
  /** 'grant' | 'consume' | 'adjust' | 'expire' | 'settle' | … (the ledger's kinds). */
  kind: string;
  /** Signed: credits in are positive, credits out negative. */
  amount: number;
  balanceAfter: number;
  grantId: number | null;
  event: string | null;
  idempotencyKey: string | null;
  metadata: Json | null;
  createdAt: Timestamp;
}

/** A page of history, newest first. Pass `nextBeforeId` as `beforeId` for the next page. */
export interface HistoryPage {
  entries: HistoryEntry[];
  /** null when this page is the last. */
  nextBeforeId: number | null;
}

export interface Quote {
  priceId: number;
  unitCredits: number;
  amount: number;
  /** The unit `amount` (and `unitCredits`) is counted in: the metered unit the event spends. */
  unit: string;
  /** What the price's overage rule charges in credits instead, when the unit's balance cannot cover the event; null without a rule. */
  overageAmount: number | null;
}

export interface ReserveResult {
  allowed: boolean;
  /** null when refused. */
  holdId: number | null;
  balance: number;
  expiresAt: Timestamp | null;
}

export interface SettleResult {
  charged: number;
  /** What the account could not cover when `actual` exceeded the hold and the balance. */
  shortfall: number;
  balance: number;
  transactionId: number | null;
}

export interface ReleaseResult {
  status: string;
  balance: number;
}

export interface Plan {
  id: string;
  name: string;
  allowance: number;
  period: 'day' | 'week' | 'month' | 'year';
  renewal: 'reset' | 'rollover';
  rolloverCap: number | null;
  features: Record<string, Json>;
  /** In the smallest currency unit (cents). */
  priceAmount: number;
  currency: string;
  /** The Stripe price a subscription to this plan is sold at (null: not sold through Stripe). */
  stripePriceId: string | null;
  isDefault: boolean;
  /** The plan's limit per metered unit other than credits, keyed by unit (snake_case keys, as stored). */
  limits: Record<string, PlanLimit>;
}

/** A plan's allowance of one unit (creditkit_set_plan_limit), as creditkit_plans returns it. */
export interface PlanLimit {
  allowance: number;
  period: 'day' | 'week' | 'month' | 'year';
  renewal: 'reset' | 'rollover';
  rollover_cap: number | null;
}

/** A unit of the catalogue: metered (a balance per account) or boolean (a plan feature flag). */
export interface Unit {
  id: string;
  name: string;
  kind: 'metered' | 'boolean';
}

/** The unit row as stored, returned by upsertUnit. */
export interface UnitRecord extends Unit {
  createdAt: Timestamp;
}

/** What creditkit_check and creditkit_my_check answer: whether `amount` can be spent now, and the balance. */
export interface CheckResult {
  allowed: boolean;
  balance: number;
}

/** The plan row as stored, returned by upsertPlan. */
export interface PlanRecord extends Plan {
  active: boolean;
  createdAt: Timestamp;
}

export interface PlanChange {
  planId: string;
  status: string;
  periodStart: Timestamp;
  periodEnd: Timestamp | null;
  balance: number;
}

export interface AccountPlan {
  accountId: string;
  planId: string | null;
  planName: string | null;
  status: string | null;
  periodStart: Timestamp | null;
  periodEnd: Timestamp | null;
  allowance: number | null;
  features: Record<string, Json> | null;
  limits: Record<string, PlanLimit> | null;
}

export interface AccountMargin {
  accountId: string;
  creditsGranted: number;
  creditsSpent: number;
  revenueMicros: number;
  costMicros: number;
  marginMicros: number;
}

export interface UnitUsage {
  unit: string;
  /** Usage rows (consumes, reports, meters), overage calls included. */
  calls: number;
  /** Amount of the unit spent (for credits: not counting overage of other units). */
  spent: number;
  /** Credits spent as this unit's overage. */
  overageCredits: number;
  granted: number;
  revenueMicros: number;
  costMicros: number;
  marginMicros: number;
}

export interface UsagePoint {
  /** 'YYYY-MM-DD' (UTC day). */
  day: string;
  event: string | null;
  calls: number;
  credits: number;
  costMicros: number;
}

export interface TopEvent {
  event: string | null;
  calls: number;
  credits: number;
  costMicros: number;
  accounts: number;
}

export interface CreditsOutstanding {
  category: string;
  credits: number;
  accounts: number;
}

export interface PlanCount {
  planId: string;
  planName: string;
  accounts: number;
}

export interface Mrr {
  currency: string;
  /** Monthly recurring revenue in the smallest currency unit. */
  mrr: number;
  subscriptions: number;
}

/** A credit pack sold through Stripe Checkout. */
export interface Pack {
  id: string;
  name: string;
  credits: number;
  /** In the smallest currency unit (cents). */
  priceAmount: number;
  currency: string;
  stripePriceId: string | null;
  /** How long the credits last after purchase, as Postgres prints an interval ("30 days"), or null. */
  expiresAfter: string | null;
  /** The metered unit the pack tops up (`credits` is the amount of it). */
  unit: string;
}

/** The pack row as stored, returned by upsertPack. */
export interface PackRecord extends Pack {
  active: boolean;
  createdAt: Timestamp;
}

/** What applying a Stripe event did. */
export interface StripeApplyResult {
  eventId: string;
  /** applied; ignored (a type creditkit does not act on); dead (kept for the operator to replay). */
  status: 'applied' | 'ignored' | 'dead';
  effect: string | null;
  accountId: string | null;
  /** Seen before: nothing changed this time. */
  duplicate: boolean;
}

export interface StripeReplayResult {
  eventId: string;
  status: 'applied' | 'ignored' | 'dead';
  effect: string | null;
  accountId: string | null;
}

/** One row of the Stripe inbox. */
export interface StripeEvent {
  id: string;
  type: string;
  created: Timestamp;
  status: 'applied' | 'ignored' | 'dead';
  effect: string | null;
  accountId: string | null;
  errorCode: string | null;
  errorMessage: string | null;
  deliveries: number;
  receivedAt: Timestamp;
}

// ── Auto top-up and notifications (0.3.0) ───────────────────────────────────────────────────

/** What the operator sells a unit for when an account tops up automatically (setAutoTopupTerms). */
export interface AutoTopupTerms {
  unit: string;
  currency: string;
  /** Smallest currency units (cents) per 1 of the unit; may be fractional (0.5 = 2 for a cent). */
  unitPrice: number;
  /** The smallest and largest amount of the unit one top-up may buy. */
  minAmount: number;
  maxAmount: number;
  /** The lowest threshold an account may set. */
  minThreshold: number;
  /** Per account and calendar month (UTC), in cents; null: no cap. */
  monthlyAmountCap: number | null;
  monthlyCountCap: number | null;
  /** The least time between two top-ups of one account, as Postgres prints an interval ("01:00:00"). */
  cooldown: string;
  /** Where a customer completes a payment that needs them; `{topup_id}` and `{payment_intent}` are filled in. */
  actionUrl: string | null;
  enabled: boolean;
}

/** An account's low-balance alert for a unit and where the balance stands against it. */
export interface BalanceAlert {
  accountId: string;
  unit: string;
  /** The threshold in effect, or null when there is none. */
  threshold: number | null;
  /** Where it comes from: the account's own, the unit's default, or null (none). */
  source: 'account' | 'unit' | null;
  state: 'ok' | 'low' | 'depleted';
  spendable: number;
}

/** The card an automatic top-up charges (from Stripe, as the webhook stored it). */
export interface PaymentMethodSummary {
  id: string;
  type: string;
  brand: string | null;
  last4: string | null;
  expMonth: number | null;
  expYear: number | null;
}

/** The latest top-up of an account's unit, as autoTopup summarises it. */
export interface LastTopup {
  id: number;
  status: TopupStatus;
  amount: number;
  chargeAmount: number;
  currency: string;
  failureCode: string | null;
  /** Where the customer completes a payment that needs them (status action_required). */
  actionUrl: string | null;
  createdAt: Timestamp;
}

/** An account's auto top-up settings for a unit, and how they stand. */
export interface AutoTopup {
  accountId: string;
  unit: string;
  enabled: boolean;
  /** off (not enabled); active; action_required (a payment waits for the customer); disabled (by creditkit, see statusReason). */
  status: 'off' | 'active' | 'action_required' | 'disabled';
  /** Why it is not active, e.g. 'failures', 'no_payment_method', 'payment_method_delayed', 'authentication_required'. */
  statusReason: string | null;
  /** A top-up starts when the spendable balance falls below this. */
  threshold: number | null;
  /** How much one top-up buys: a fixed amount, up to a target balance, or a pack; one of the three. */
  amount: number | null;
  target: number | null;
  packId: string | null;
  /** Failed top-ups in a row. */
  failures: number;
  monthlyAmountCap: number | null;
  monthlyCountCap: number | null;
  /** Charged and counted so far this calendar month (UTC). */
  monthAmount: number;
  monthCount: number;
  currency: string | null;
  paymentMethod: PaymentMethodSummary | null;
  lastTopup: LastTopup | null;
}

export type TopupStatus = 'pending' | 'charging' | 'processing' | 'succeeded' | 'failed' | 'action_required' | 'canceled';

/** One automatic top-up. */
export interface Topup {
  id: number;
  accountId: string;
  unit: string;
  status: TopupStatus;
  amount: number;
  /** In the smallest currency unit (cents). */
  chargeAmount: number;
  currency: string;
  /** Charge attempts so far; a retry after a network error keeps the attempt (and the idempotency key). */
  attempt: number;
  paymentIntent: string | null;
  failureCode: string | null;
  failureMessage: string | null;
  actionUrl: string | null;
  createdAt: Timestamp;
  updatedAt: Timestamp;
  completedAt: Timestamp | null;
}

/** A top-up the worker has leased to charge (claimTopups). */
export interface ClaimedTopup {
  topupId: number;
  attempt: number;
  /** 'creditkit-topup-<id>-<attempt>': send it as Stripe's Idempotency-Key. */
  idempotencyKey: string;
  accountId: string;
  unit: string;
  amount: number;
  chargeAmount: number;
  currency: string;
  customerId: string;
  paymentMethod: string;
  /** The PaymentIntent's metadata, as is: the webhook finds the top-up by it. */
  metadata: Record<string, string>;
}

/** What a charge attempt came to, as recordTopupResult takes it. */
export type TopupOutcome = 'succeeded' | 'processing' | 'requires_action' | 'declined' | 'retry';

export interface TopupResultStatus {
  /** The top-up's status now (as it stands, when the attempt was no longer the current one). */
  status: TopupStatus;
  autoTopupStatus: AutoTopup['status'];
}

/** A notification delivery the worker has leased to send (claimDeliveries). */
export interface ClaimedDelivery {
  deliveryId: number;
  attempt: number;
  /** The notification's id: the webhook-id header. */
  eventId: string;
  endpointId: string;
  url: string;
  secret: string;
  /** The exact bytes to POST (JSON). */
  body: string;
  /** Unix seconds for webhook-timestamp. */
  timestamp: number;
}

/** pending (waiting for its next attempt), delivering (a worker holds it), delivered, dead (the last attempt failed), canceled (the endpoint answered 410). */
export type DeliveryStatus = 'pending' | 'delivering' | 'delivered' | 'dead' | 'canceled';

/** Where a delivery stands after a result or a replay. */
export interface DeliveryResult {
  /** delivered, pending (retried at nextAttemptAt), dead, canceled; or as it stands, for an attempt no longer current. */
  status: DeliveryStatus;
  /** When the worker will try again (status pending), else null. */
  nextAttemptAt: Timestamp | null;
}

/** The endpoint as stored, with its secret (upsertWebhookEndpoint is the only place it is shown). */
export interface WebhookEndpointRecord {
  id: string;
  url: string;
  /** The event types it receives; null: all. */
  eventTypes: string[] | null;
  enabled: boolean;
  secret: string;
  /** Why creditkit disabled it (e.g. the receiver answered 410 Gone), or null. */
  disabledReason: string | null;
}

export interface WebhookEndpoint {
  id: string;
  url: string;
  eventTypes: string[] | null;
  enabled: boolean;
  disabledReason: string | null;
  description: string | null;
  createdAt: Timestamp;
  /** Deliveries to it by status. */
  pending: number;
  delivered: number;
  dead: number;
}

/** One delivery of a notification to one endpoint. */
export interface NotificationDelivery {
  id: number;
  endpointId: string;
  status: DeliveryStatus;
  attempts: number;
  /** The HTTP status of the last attempt, or null (none yet, or no response). */
  lastStatus: number | null;
  /** What went wrong when there was no response (a timeout, a refused connection). */
  lastError: string | null;
  nextAttemptAt: Timestamp | null;
  deliveredAt: Timestamp | null;
}

/** A notification event and its deliveries (the operator's view of the outbox). */
export interface NotificationEvent {
  /** 'ntf_<32 hex>'. */
  id: string;
  type: string;
  accountId: string | null;
  unit: string | null;
  /** The event's `data` as sent (snake_case keys, as on the wire). */
  payload: Record<string, Json>;
  createdAt: Timestamp;
  deliveries: NotificationDelivery[];
}
