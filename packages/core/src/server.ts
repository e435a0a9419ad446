// @creditkit/core/server: the whole SQL API for trusted code — spending, grants, holds, plans,
// prices and analytics — over supabase-js (service-role key), a node-postgres Pool or PGlite.
// Every method is one call to one public.creditkit_* function; the parameter names are the SQL
// ones in camelCase, and the docs of the SQL function (docs/sql-api.md) apply as written.
import { Caller, camelKeys, toBatchEvents, type BatchConsumeEvent, type CallOptions, type Params } from './call.ts';
import { CreditkitClient, historyPage, withAutoTopupParts, withBuckets, type AlertParams } from './client.ts';
import type {
  AccountMargin,
  UnitUsage,
  AdjustResult,
  AutoTopup,
  AutoTopupTerms,
  Balance,
  BalanceAlert,
  ClaimedDelivery,
  ClaimedTopup,
  DeliveryResult,
  NotificationDelivery,
  NotificationEvent,
  Topup,
  TopupOutcome,
  TopupResultStatus,
  WebhookEndpoint,
  WebhookEndpointRecord,
  BatchConsumeResult,
  ChargeResult,
  CheckResult,
  ConsumeResult,
  CreditsOutstanding,
  GrantResult,
  HistoryEntry,
  HistoryPage,
  Json,
  MeterResult,
  Mrr,
  Pack,
  PackRecord,
  Plan,
  PlanChange,
  PlanCount,
  PlanRecord,
  Quote,
  ReleaseResult,
  ReportResult,
  ReserveResult,
  SettleResult,
  StripeApplyResult,
  StripeEvent,
  StripeReplayResult,
  TopEvent,
  Unit,
  UnitRecord,
  UsagePoint,
} from './results.ts';
import {
  pgliteTransport,
  pgTransport,
  SERVICE_IDENTITY,
  userIdentity,
  type Identity,
  type PgliteLike,
  type PgQueryable,
} from './sql-transport.ts';
import { supabaseTransport, type SupabaseLike, type Transport } from './transport.ts';

export * from './index.ts';
export { pgTransport, pgliteTransport, callSql, callStatements, userIdentity, SERVICE_IDENTITY } from './sql-transport.ts';
export type { Identity, PgQueryable, PgliteLike } from './sql-transport.ts';

/** How to reach the database: exactly one transport, plus retry settings. */
export type CreditkitConfig = CallOptions &
  (
    | { /** A node-postgres Pool with a direct connection (acts as service_role). */ pg: PgQueryable }
    | { /** An embedded PGlite (acts as service_role). */ pglite: PgliteLike }
    | { /** A supabase-js client made with the service-role key. */ supabase: SupabaseLike }
    | { transport: Transport }
  );

export class CreditkitServer {
  protected readonly caller: Caller;
  readonly #forIdentity: ((identity: Identity) => Transport) | undefined;
  readonly #options: CallOptions;

  constructor(transport: Transport, options: CallOptions = {}, forIdentity?: (identity: Identity) => Transport) {
    this.caller = new Caller(transport, options);
    this.#forIdentity = forIdentity;
    this.#options = options;
  }

  /** The transport this client calls through. */
  get transport(): Transport {
    return this.caller.transport;
  }

  /**
   * A browser-style client acting as a signed-in user, the way PostgREST would run their
   * requests (role authenticated, claims { sub: userId }). Direct transports (pg, PGlite) only:
   * with supabase-js, make a client with the user's session and use createCreditkitClient.
   */
  asUser(userId: string, extraClaims?: Record<string, unknown>): CreditkitClient {
    if (!this.#forIdentity) {
      throw new TypeError('asUser needs a direct transport (pg or pglite); with supabase-js use the user session');
    }
    return new CreditkitClient(this.#forIdentity(userIdentity(userId, extraClaims)), this.#options);
  }

  // ── Spending ────────────────────────────────────────────────────────────────────────────

  /** Spend `amount` credits if the account can cover it; otherwise `allowed: false`, nothing spent. */
  consume(params: Params<'creditkit_consume'>): Promise<ConsumeResult> {
    return this.caller.row('creditkit_consume', params);
  }

  /**
   * Spends for up to 1000 buffered usage events in one transaction, each exactly as consume would
   * (its own idempotencyKey, blocked answers allowed: false), all in `unit` (default credits). One
   * answer per event, in order. An invalid event fails the whole call and nothing is spent.
   */
  async consumeBatch(params: { events: BatchConsumeEvent[]; now?: string | Date; unit?: string }): Promise<BatchConsumeResult[]> {
    // async: a refused event rejects the promise, as a refused parameter does in every method
    return this.caller.rows('creditkit_consume_batch', { ...params, events: toBatchEvents(params.events) as Json });
  }

  /** Whether `amount` (default 1) of `unit` (default credits) can be spent now, and the balance; spends nothing. */
  check(params: Params<'creditkit_check'>): Promise<CheckResult> {
    return this.caller.row('creditkit_check', params);
  }

  /** Reports usage of a unit (a feature): spends `amount` of it, with consume's answers. */
  report(params: Params<'creditkit_report'>): Promise<ReportResult> {
    return this.caller.row('creditkit_report', params);
  }

  /** Like consume, but a shortfall throws InsufficientCreditsError (balance, required). */
  consumeOrRaise(params: Params<'creditkit_consume_or_raise'>): Promise<ChargeResult> {
    return this.caller.row('creditkit_consume_or_raise', params);
  }

  /** Spend by event: the price list turns `quantity` units of `event` into credits. */
  meter(params: Params<'creditkit_meter'>): Promise<MeterResult> {
    return this.caller.row('creditkit_meter', params);
  }

  /** What an event would cost now, without spending. */
  quote(params: Params<'creditkit_quote'>): Promise<Quote> {
    return this.caller.row('creditkit_quote', params);
  }

  // ── Holds ───────────────────────────────────────────────────────────────────────────────

  /** Set `amount` aside for up to `ttl` (default 15 minutes) before work whose cost is unknown. */
  reserve(params: Params<'creditkit_reserve'>): Promise<ReserveResult> {
    return this.caller.row('creditkit_reserve', params);
  }

  /** Charge the actual amount against a hold and return the rest. */
  settle(params: Params<'creditkit_settle'>): Promise<SettleResult> {
    return this.caller.row('creditkit_settle', params);
  }

  /** Give a hold back unspent. */
  release(params: Params<'creditkit_release'>): Promise<ReleaseResult> {
    return this.caller.row('creditkit_release', params);
  }

  // ── Credits in ──────────────────────────────────────────────────────────────────────────

  /** Add credits (a purchase, a promotion, …), optionally expiring; creates the account. */
  grant(params: Params<'creditkit_grant'>): Promise<GrantResult> {
    return this.caller.row('creditkit_grant', params);
  }

  /** A signed correction with a reason (operator use). */
  adjust(params: Params<'creditkit_adjust'>): Promise<AdjustResult> {
    return this.caller.row('creditkit_adjust', params);
  }

  /** Books expired credits for up to `limit` accounts (a cron job); returns how many. */
  bookExpired(params: Params<'creditkit_book_expired'> = {}): Promise<number> {
    return this.caller.scalar('creditkit_book_expired', params);
  }

  // ── Reading an account ──────────────────────────────────────────────────────────────────

  /** Spendable balance, next expiry and the buckets it is made of. */
  async balance(params: Params<'creditkit_balance'>): Promise<Balance> {
    return withBuckets(await this.caller.row<Balance, 'creditkit_balance'>('creditkit_balance', params));
  }

  /** The ledger, newest first, one page at a time (`beforeId: page.nextBeforeId`). */
  async history(params: Params<'creditkit_history'>): Promise<HistoryPage> {
    return historyPage(await this.caller.rows<HistoryEntry, 'creditkit_history'>('creditkit_history', params), params.limit);
  }

  // ── Plans, features and prices ──────────────────────────────────────────────────────────

  /** Creates or updates a plan; returns the stored row. */
  async upsertPlan(params: Params<'creditkit_upsert_plan'>): Promise<PlanRecord> {
    return camelKeys(await this.caller.scalar('creditkit_upsert_plan', params));
  }

  /** The active plans, cheapest first. */
  plans(): Promise<Plan[]> {
    return this.caller.rows('creditkit_plans', {});
  }

  /** Creates or renames a unit (metered or boolean); returns the stored row. */
  async upsertUnit(params: Params<'creditkit_upsert_unit'>): Promise<UnitRecord> {
    return camelKeys(await this.caller.scalar('creditkit_upsert_unit', params));
  }

  /** The unit catalogue. */
  units(): Promise<Unit[]> {
    return this.caller.rows('creditkit_units', {});
  }

  /** Sets a plan's limit for a unit (a null allowance removes it); returns the stored limit or null. */
  async setPlanLimit(params: Params<'creditkit_set_plan_limit'>): Promise<Record<string, Json> | null> {
    const limit = await this.caller.scalar<Record<string, Json> | null, 'creditkit_set_plan_limit'>('creditkit_set_plan_limit', params);
    return limit === null ? null : camelKeys(limit);
  }

  /** Puts an account on a plan (its allowance starts now) or changes its status. */
  setPlan(params: Params<'creditkit_set_plan'>): Promise<PlanChange> {
    return this.caller.row('creditkit_set_plan', params);
  }

  /** Whether an account's plan includes a feature. */
  hasFeature(params: Params<'creditkit_has_feature'>): Promise<boolean> {
    return this.caller.scalar('creditkit_has_feature', params);
  }

  /** Prices an event (optionally only for some dimensions) from `effectiveFrom`; returns the price id. */
  setPrice(params: Params<'creditkit_set_price'>): Promise<number> {
    return this.caller.scalar('creditkit_set_price', params);
  }

  // ── Packs and Stripe ────────────────────────────────────────────────────────────────────

  /** Creates or updates a credit pack; returns the stored row. */
  async upsertPack(params: Params<'creditkit_upsert_pack'>): Promise<PackRecord> {
    return camelKeys(await this.caller.scalar('creditkit_upsert_pack', params));
  }

  /** The active credit packs, cheapest first. */
  packs(): Promise<Pack[]> {
    return this.caller.rows('creditkit_packs', {});
  }

  /** Applies one verified Stripe event exactly once (what the webhook calls). */
  stripeApply(params: Params<'creditkit_stripe_apply'>): Promise<StripeApplyResult> {
    return this.caller.row('creditkit_stripe_apply', params);
  }

  /** Applies a dead event again from its stored payload (after fixing the catalogue). */
  stripeReplay(params: Params<'creditkit_stripe_replay'>): Promise<StripeReplayResult> {
    return this.caller.row('creditkit_stripe_replay', params);
  }

  /** The Stripe inbox, newest first; `status: 'dead'` lists what waits for the operator. */
  stripeEvents(params: Params<'creditkit_stripe_events'> = {}): Promise<StripeEvent[]> {
    return this.caller.rows('creditkit_stripe_events', params);
  }

  /** The Stripe customer stored for an account, or null. */
  stripeCustomer(params: Params<'creditkit_stripe_customer'>): Promise<string | null> {
    return this.caller.scalar('creditkit_stripe_customer', params);
  }

  /** Stores an account's Stripe customer unless it has one; returns the stored id (first wins). */
  stripeLinkCustomer(params: Params<'creditkit_stripe_link_customer'>): Promise<string> {
    return this.caller.scalar('creditkit_stripe_link_customer', params);
  }

  // ── Auto top-up and balance alerts ────────────────────────────────────────────────────

  /** Offers auto top-up of a unit: its price, the amounts one top-up may buy, caps and cooldown. Returns the stored terms. */
  setAutoTopupTerms(params: Params<'creditkit_set_auto_topup_terms'>): Promise<AutoTopupTerms> {
    return this.caller.row('creditkit_set_auto_topup_terms', params);
  }

  /** The auto top-up terms of every unit that has them. */
  autoTopupTerms(): Promise<AutoTopupTerms[]> {
    return this.caller.rows('creditkit_auto_topup_terms', {});
  }

  /** A unit's default low-balance threshold: absolute, or a percentage of the plan allowance. Null for both removes it. */
  setBalanceAlert(params: AlertParams<'creditkit_set_balance_alert'>): Promise<unknown> {
    return this.caller.row('creditkit_set_balance_alert', params as Params<'creditkit_set_balance_alert'>);
  }

  /** An account's own low-balance threshold for a unit (null: back to the unit's default). */
  setAccountBalanceAlert(params: AlertParams<'creditkit_set_account_balance_alert'>): Promise<BalanceAlert> {
    return this.caller.row('creditkit_set_account_balance_alert', params as Params<'creditkit_set_account_balance_alert'>);
  }

  /** An account's low-balance alert for a unit and where the balance stands against it. */
  balanceAlert(params: Params<'creditkit_balance_alert'>): Promise<BalanceAlert> {
    return this.caller.row('creditkit_balance_alert', params);
  }

  /** Switches an account's auto top-up for a unit on (threshold and one of amount, target or packId) or off. */
  async setAutoTopup(params: Params<'creditkit_set_auto_topup'>): Promise<AutoTopup> {
    return withAutoTopupParts(await this.caller.row<AutoTopup, 'creditkit_set_auto_topup'>('creditkit_set_auto_topup', params));
  }

  /** An account's auto top-up for a unit: settings, status, card and last top-up. */
  async autoTopup(params: Params<'creditkit_auto_topup'>): Promise<AutoTopup> {
    return withAutoTopupParts(await this.caller.row<AutoTopup, 'creditkit_auto_topup'>('creditkit_auto_topup', params));
  }

  /** Top-ups, newest first, of one account or all, optionally of one status. */
  topups(params: Params<'creditkit_topups'> = {}): Promise<Topup[]> {
    return this.caller.rows('creditkit_topups', params);
  }

  // ── Notifications ───────────────────────────────────────────────────────────────────────

  /** Creates or updates a webhook endpoint; the answer is the only place its secret is shown. */
  upsertWebhookEndpoint(params: Params<'creditkit_upsert_webhook_endpoint'>): Promise<WebhookEndpointRecord> {
    return this.caller.row('creditkit_upsert_webhook_endpoint', params);
  }

  /** The webhook endpoints (no secrets) and their deliveries pending, delivered and dead. */
  webhookEndpoints(): Promise<WebhookEndpoint[]> {
    return this.caller.rows('creditkit_webhook_endpoints', {});
  }

  /** Notification events, newest first, each with its deliveries. */
  async notifications(params: Params<'creditkit_notifications'> = {}): Promise<NotificationEvent[]> {
    const events = await this.caller.rows<NotificationEvent, 'creditkit_notifications'>('creditkit_notifications', params);
    return events.map((event) => ({
      ...event,
      deliveries: Array.isArray(event.deliveries) ? event.deliveries.map((d) => camelKeys<NotificationDelivery>(d)) : [],
    }));
  }

  /** Sends a delivery again from its first attempt (dead, canceled, delivered or waiting). */
  replayDelivery(params: Params<'creditkit_replay_delivery'>): Promise<DeliveryResult> {
    return this.caller.row('creditkit_replay_delivery', params);
  }

  /** Deletes events older than `olderThan` (default 30 days) whose deliveries are all final; returns how many. */
  pruneNotifications(params: Params<'creditkit_prune_notifications'> = {}): Promise<number> {
    return this.caller.scalar('creditkit_prune_notifications', params);
  }

  // ── The worker (runWorker calls these; a worker of your own can too) ─────────────────────

  /** Leases due top-ups to charge; a lease that ran out is claimed again with the same attempt and key. */
  claimTopups(params: Params<'creditkit_worker_claim_topups'> = {}): Promise<ClaimedTopup[]> {
    return this.caller.rows('creditkit_worker_claim_topups', params);
  }

  /** Records what a charge attempt came to; a result for an attempt no longer current changes nothing. */
  recordTopupResult(params: Omit<Params<'creditkit_worker_topup_result'>, 'outcome'> & { outcome: TopupOutcome }): Promise<TopupResultStatus> {
    return this.caller.row('creditkit_worker_topup_result', params);
  }

  /** Leases due notification deliveries: each with its URL, secret, exact body and timestamp to sign. */
  claimDeliveries(params: Params<'creditkit_worker_claim_deliveries'> = {}): Promise<ClaimedDelivery[]> {
    return this.caller.rows('creditkit_worker_claim_deliveries', params);
  }

  /** Records the answer to a delivery attempt (statusCode null: no response, say why in `error`). */
  recordDeliveryResult(
    params: Omit<Params<'creditkit_worker_delivery_result'>, 'statusCode'> & { statusCode: number | null },
  ): Promise<DeliveryResult> {
    return this.caller.row('creditkit_worker_delivery_result', params as Params<'creditkit_worker_delivery_result'>);
  }

  // ── Analytics ───────────────────────────────────────────────────────────────────────────

  /** Credits granted and spent, revenue, cost and margin per account over [from, to). */
  accountMargin(params: Params<'creditkit_account_margin'>): Promise<AccountMargin[]> {
    return this.caller.rows('creditkit_account_margin', params);
  }

  /** Usage and margin per unit over [from, to): an overage call counts for the unit it stood in for. */
  unitUsage(params: Params<'creditkit_unit_usage'>): Promise<UnitUsage[]> {
    return this.caller.rows('creditkit_unit_usage', params);
  }

  /** Calls, credits and cost per UTC day and event over [from, to). */
  usageSeries(params: Params<'creditkit_usage_series'>): Promise<UsagePoint[]> {
    return this.caller.rows('creditkit_usage_series', params);
  }

  /** The events that spent the most credits over [from, to). */
  topEvents(params: Params<'creditkit_top_events'>): Promise<TopEvent[]> {
    return this.caller.rows('creditkit_top_events', params);
  }

  /** Unspent, unexpired credits by category: the liability on the books. */
  creditsOutstanding(params: Params<'creditkit_credits_outstanding'> = {}): Promise<CreditsOutstanding[]> {
    return this.caller.rows('creditkit_credits_outstanding', params);
  }

  /** How many accounts are on each plan. */
  accountsPerPlan(): Promise<PlanCount[]> {
    return this.caller.rows('creditkit_accounts_per_plan', {});
  }

  /** Monthly recurring revenue per currency. */
  mrr(): Promise<Mrr[]> {
    return this.caller.rows('creditkit_mrr', {});
  }
}

/**
 * The server client. Pick the transport at construction:
 *
 *   createCreditkit({ pg: pool })                  // node-postgres, direct connection
 *   createCreditkit({ pglite: db })                // embedded
 *   createCreditkit({ supabase: adminClient })     // supabase-js with the service-role key
 */
export function createCreditkit(config: CreditkitConfig): CreditkitServer {
  if ('pg' in config) {
    const pool = config.pg;
    return new CreditkitServer(pgTransport(pool, SERVICE_IDENTITY), config, (id) => pgTransport(pool, id));
  }
  if ('pglite' in config) {
    const db = config.pglite;
    return new CreditkitServer(pgliteTransport(db, SERVICE_IDENTITY), config, (id) => pgliteTransport(db, id));
  }
  if ('supabase' in config) return new CreditkitServer(supabaseTransport(config.supabase), config);
  return new CreditkitServer(config.transport, config);
}
