// Invariant 8: bad input raises a documented code and changes nothing. The cases are generated
// from each function's parameter list: every parameter of every public.creditkit_* function
// gets the bad values that apply to its kind (amount, account, key, metadata, …), one at a time
// against an otherwise valid call, so the expected code is unambiguous. Each case opens its own
// accounts and compares a digest of the whole books (ledger, accounts, buckets, holds,
// subscriptions, plans, prices: every row) before and after.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@creditkit/testing';
import { describeEachBackend } from '@creditkit/testing/vitest';
import {
  ABOVE_MAX, DAY, HOUR, MAX_CREDITS, SECOND, at, booksDigest, creditkit, newAccountId, outcome, rpc, runAs, snapshotBooks,
  type Args, type Creditkit, type ParamName, type Runner,
} from './support.ts';
import { otherEvent, stripeEvent, stripeId, unix, type JsonObject } from './stripe-fixtures.ts';

/**
 * What a case gets to work with: an account holding 100 credits, owned by a signed-in user, and
 * another user's account holding 100 credits of which 10 are reserved by an open hold (expiring
 * at DAY), so that the first account's state is the plain ledger's.
 */
interface Fixture {
  db: TestDatabase; account: string; other: string; hold: number;
  /** With need 'card' (or 'sepa'): the account's Stripe customer and the payment method on file. */
  card?: { customer: string; pm: string };
  /** With need 'topup': the account's top-up, claimed by a worker (charging). */
  topup?: { id: number; attempt: number };
  /** With need 'delivery' / 'claimed-delivery': a balance.low delivery of the account (pending / delivering). */
  delivery?: { id: number; attempt: number };
  /** With need 'endpoint': a webhook endpoint of its own (disabled, so it collects no deliveries). */
  endpoint?: string;
}
/** State a function's cases need beyond the plain fixture (built only for those cases). */
type Need = 'card' | 'sepa' | 'topup' | 'delivery' | 'claimed-delivery' | 'endpoint';

interface FunctionSpec {
  /** Parameter names in declaration order; checked against the catalogue. */
  params: ParamName[];
  /** Who calls it: the server key, or the account's owner. */
  caller: 'service' | 'owner';
  /** A call that succeeds. */
  valid: (fx: Fixture) => Args;
  /** What the fixture must have for the valid call to succeed. */
  needs?: Need[];
}

const NOW = at(HOUR); // after the fixture's grant at EPOCH
/** One item of a creditkit_consume_batch call: a valid consume of the fixture account, with changes. */
const batchItem = (fx: Fixture, change: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ account_id: fx.account, amount: 10, event: 'chat', ...change });
/** A batch whose first item is valid and whose second is `bad`: the whole call must fail. */
const batchWith = (bad: (fx: Fixture) => unknown) => (fx: Fixture) => [batchItem(fx), bad(fx)];
// An event already in the Stripe inbox (applied in beforeAll as 'ignored'), for creditkit_stripe_replay.
const INBOX_EVENT = otherEvent('customer.updated', { created: unix(0) });
/** A Stripe event creditkit ignores (a new id every time), as a valid creditkit_stripe_apply argument. */
const ignoredEvent = () => otherEvent('payment_intent.created', { created: unix(0) });
let stripeClock = 0;
/** Applies a Stripe event of `type` about `object`, each a second after the last (the newest wins). */
function applyEvent(ck: Creditkit, type: string, object: JsonObject, previous?: JsonObject) {
  stripeClock += 1;
  return ck.call('creditkit_stripe_apply', { p_event: stripeEvent(type, object, { created: unix(stripeClock * SECOND), previous }), p_now: NOW });
}
// The catalogue every case can rely on (created once per database, see beforeAll).
const PLAN = 'pro'; // active, allowance 50, features {hd: true}
const RETIRED_PLAN = 'retired'; // inactive
const PRICED = 'image'; // 3 credits per unit from EPOCH, no dimensions
const PERIOD = { p_from: at(0), p_to: at(DAY) };
const METERED_UNIT = 'messages'; // a metered unit besides credits (auto top-up is not offered for it)
const BOOLEAN_UNIT = 'hd'; // a feature flag: no balance
// Auto top-up of credits (see beforeAll): 1 cent per credit, 100 to 10000 a top-up, thresholds of
// at least 10, no cooldown (a fixture's top-up is claimed at once).
const TOPUP_TERMS = {
  p_unit: 'credits', p_currency: 'usd', p_unit_price: 1, p_min_amount: 100, p_max_amount: 10_000, p_min_threshold: 10,
  p_cooldown: '0 seconds', p_action_url: 'https://app.example.com/billing?topup={topup_id}&pi={payment_intent}',
};
const TOPUP_PACK = 'bad-input-topup'; // active, 500 credits for 500 cents
const FREE_PACK = 'bad-input-free'; // active, price 0: not for auto top-up
const RETIRED_PACK = 'bad-input-retired'; // inactive, priced
const MESSAGES_PACK = 'bad-input-messages'; // active, priced, of METERED_UNIT
const TERMS_OFF_UNIT = 'terms-off'; // a metered unit whose auto top-up terms are disabled
const ALERT_UNIT = 'alerted'; // a metered unit for creditkit_set_balance_alert (its default threshold)
const HOOKS = 'bad-input-hooks'; // an enabled endpoint for balance.low: every fixture's alert is delivered to it
/** A signing secret: whsec_ and the base64 of 32 bytes. */
const SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;

const SPECS: Record<string, FunctionSpec> = {
  creditkit_grant: {
    params: ['p_account_id', 'p_amount', 'p_category', 'p_expires_at', 'p_priority', 'p_idempotency_key', 'p_metadata', 'p_revenue_micros', 'p_now', 'p_unit'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_amount: 10, p_category: 'promotional', p_expires_at: at(DAY), p_now: NOW }),
  },
  creditkit_consume: {
    params: ['p_account_id', 'p_amount', 'p_event', 'p_idempotency_key', 'p_metadata', 'p_cost_micros', 'p_now', 'p_unit'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_amount: 10, p_event: 'chat', p_now: NOW }),
  },
  creditkit_consume_or_raise: {
    params: ['p_account_id', 'p_amount', 'p_event', 'p_idempotency_key', 'p_metadata', 'p_cost_micros', 'p_now', 'p_unit'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_amount: 10, p_event: 'chat', p_now: NOW }),
  },
  creditkit_consume_batch: {
    params: ['p_events', 'p_now', 'p_unit'],
    caller: 'service',
    valid: (fx) => ({ p_events: [batchItem(fx), batchItem(fx, { amount: 5, idempotency_key: 'batch-1' })], p_now: NOW }),
  },
  creditkit_adjust: {
    params: ['p_account_id', 'p_amount', 'p_reason', 'p_idempotency_key', 'p_metadata', 'p_now', 'p_unit'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_amount: -10, p_reason: 'correction', p_now: NOW }),
  },
  creditkit_balance: {
    params: ['p_account_id', 'p_now', 'p_unit'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_now: NOW }),
  },
  creditkit_history: {
    params: ['p_account_id', 'p_limit', 'p_before_id', 'p_unit'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_limit: 10 }),
  },
  creditkit_book_expired: {
    params: ['p_now', 'p_limit', 'p_unit'],
    caller: 'service',
    valid: () => ({ p_now: NOW, p_limit: 10 }),
  },
  creditkit_my_balance: {
    params: ['p_account_id', 'p_unit'],
    caller: 'owner',
    valid: (fx) => ({ p_account_id: fx.account }),
  },
  creditkit_my_history: {
    params: ['p_account_id', 'p_limit', 'p_before_id', 'p_unit'],
    caller: 'owner',
    valid: (fx) => ({ p_account_id: fx.account, p_limit: 10 }),
  },
  // ── plans ──
  creditkit_upsert_plan: {
    params: ['p_id', 'p_name', 'p_allowance', 'p_period', 'p_renewal', 'p_rollover_cap', 'p_features', 'p_price_amount', 'p_currency', 'p_stripe_price_id', 'p_is_default', 'p_active'],
    caller: 'service',
    valid: () => ({
      p_id: 'bad-input', p_name: 'Bad input', p_allowance: 10, p_period: 'month', p_renewal: 'rollover', p_rollover_cap: 5,
      p_features: { hd: true }, p_price_amount: 900, p_currency: 'usd', p_stripe_price_id: 'price_bad_input', p_is_default: false, p_active: true,
    }),
  },
  creditkit_set_plan: {
    params: ['p_account_id', 'p_plan_id', 'p_status', 'p_anchor', 'p_now'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_plan_id: PLAN, p_status: 'active', p_anchor: at(0), p_now: NOW }),
  },
  creditkit_has_feature: {
    params: ['p_account_id', 'p_feature'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_feature: 'hd' }),
  },
  creditkit_my_plan: {
    params: ['p_account_id'],
    caller: 'owner',
    valid: (fx) => ({ p_account_id: fx.account }),
  },
  creditkit_my_feature: {
    params: ['p_feature', 'p_account_id'],
    caller: 'owner',
    valid: (fx) => ({ p_feature: 'hd', p_account_id: fx.account }),
  },
  // ── pricing ──
  creditkit_set_price: {
    params: ['p_event', 'p_credits_per_unit', 'p_dimensions', 'p_effective_from', 'p_unit', 'p_overage_credits_per_unit'],
    caller: 'service',
    valid: () => ({ p_event: PRICED, p_credits_per_unit: 5, p_dimensions: { quality: 'hd' }, p_effective_from: NOW }),
  },
  creditkit_meter: {
    params: ['p_account_id', 'p_event', 'p_quantity', 'p_dimensions', 'p_idempotency_key', 'p_cost_micros', 'p_metadata', 'p_now'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_event: PRICED, p_quantity: 2, p_dimensions: { quality: 'sd' }, p_now: NOW }),
  },
  creditkit_quote: {
    params: ['p_event', 'p_quantity', 'p_dimensions', 'p_now'],
    caller: 'service',
    valid: () => ({ p_event: PRICED, p_quantity: 2, p_dimensions: {}, p_now: NOW }),
  },
  // ── holds ──
  creditkit_reserve: {
    params: ['p_account_id', 'p_amount', 'p_ttl', 'p_event', 'p_idempotency_key', 'p_metadata', 'p_now', 'p_unit'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_amount: 10, p_ttl: '1 hour', p_event: 'chat', p_now: NOW }),
  },
  creditkit_settle: {
    params: ['p_hold_id', 'p_actual', 'p_cost_micros', 'p_metadata', 'p_now'],
    caller: 'service',
    valid: (fx) => ({ p_hold_id: fx.hold, p_actual: 5, p_now: NOW }),
  },
  creditkit_release: {
    params: ['p_hold_id', 'p_now'],
    caller: 'service',
    valid: (fx) => ({ p_hold_id: fx.hold, p_now: NOW }),
  },
  // ── gating ──
  creditkit_has_credits: {
    params: ['p_amount', 'p_account_id', 'p_unit'],
    caller: 'owner',
    valid: (fx) => ({ p_amount: 1, p_account_id: fx.account }),
  },
  // ── units ──
  creditkit_upsert_unit: {
    params: ['p_id', 'p_name', 'p_kind'],
    caller: 'service',
    valid: () => ({ p_id: 'bad-input-unit', p_name: 'Bad input unit', p_kind: 'metered' }),
  },
  creditkit_units: { params: [], caller: 'service', valid: () => ({}) },
  creditkit_set_plan_limit: {
    params: ['p_plan_id', 'p_unit', 'p_allowance', 'p_period', 'p_renewal', 'p_rollover_cap'],
    caller: 'service',
    valid: () => ({ p_plan_id: PLAN, p_unit: METERED_UNIT, p_allowance: 10, p_period: 'day', p_renewal: 'rollover', p_rollover_cap: 5 }),
  },
  creditkit_check: {
    params: ['p_account_id', 'p_unit', 'p_amount', 'p_now'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_unit: 'credits', p_amount: 10, p_now: NOW }),
  },
  creditkit_report: {
    params: ['p_account_id', 'p_unit', 'p_amount', 'p_idempotency_key', 'p_event', 'p_metadata', 'p_now'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_unit: 'credits', p_amount: 10, p_event: 'chat', p_now: NOW }),
  },
  creditkit_my_check: {
    params: ['p_unit', 'p_amount', 'p_account_id'],
    caller: 'owner',
    valid: (fx) => ({ p_unit: 'credits', p_amount: 10, p_account_id: fx.account }),
  },
  // ── analytics ──
  creditkit_account_margin: {
    params: ['p_from', 'p_to', 'p_account_id'],
    caller: 'service',
    valid: (fx) => ({ ...PERIOD, p_account_id: fx.account }),
  },
  creditkit_unit_usage: {
    params: ['p_from', 'p_to', 'p_account_id'],
    caller: 'service',
    valid: (fx) => ({ ...PERIOD, p_account_id: fx.account }),
  },
  creditkit_usage_series: {
    params: ['p_from', 'p_to', 'p_account_id', 'p_event'],
    caller: 'service',
    valid: (fx) => ({ ...PERIOD, p_account_id: fx.account, p_event: 'chat' }),
  },
  creditkit_top_events: {
    params: ['p_from', 'p_to', 'p_limit'],
    caller: 'service',
    valid: () => ({ ...PERIOD, p_limit: 10 }),
  },
  creditkit_credits_outstanding: {
    params: ['p_now'],
    caller: 'service',
    valid: () => ({ p_now: NOW }),
  },
  creditkit_accounts_per_plan: { params: [], caller: 'service', valid: () => ({}) },
  creditkit_mrr: { params: [], caller: 'service', valid: () => ({}) },
  creditkit_plans: { params: [], caller: 'service', valid: () => ({}) },
  // ── packs and Stripe ──
  creditkit_upsert_pack: {
    params: ['p_id', 'p_name', 'p_credits', 'p_price_amount', 'p_currency', 'p_stripe_price_id', 'p_expires_after', 'p_active', 'p_unit'],
    caller: 'service',
    valid: () => ({
      p_id: 'bad-input-pack', p_name: 'Bad input pack', p_credits: 100, p_price_amount: 900, p_currency: 'usd',
      p_stripe_price_id: 'price_bad_input_pack', p_expires_after: '30 days', p_active: true,
    }),
  },
  creditkit_packs: { params: [], caller: 'service', valid: () => ({}) },
  creditkit_stripe_apply: {
    params: ['p_event', 'p_now'],
    caller: 'service',
    valid: () => ({ p_event: ignoredEvent(), p_now: NOW }),
  },
  creditkit_stripe_replay: {
    params: ['p_event_id', 'p_now'],
    caller: 'service',
    valid: () => ({ p_event_id: INBOX_EVENT.id, p_now: NOW }),
  },
  creditkit_stripe_events: {
    params: ['p_status', 'p_limit'],
    caller: 'service',
    valid: () => ({ p_status: 'dead', p_limit: 10 }),
  },
  creditkit_stripe_customer: {
    params: ['p_account_id'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account }),
  },
  creditkit_stripe_link_customer: {
    params: ['p_account_id', 'p_customer_id'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_customer_id: stripeId('cus', 14) }),
  },
  // ── balance alerts ──
  creditkit_set_balance_alert: {
    params: ['p_unit', 'p_threshold', 'p_percent', 'p_hysteresis'],
    caller: 'service',
    valid: () => ({ p_unit: ALERT_UNIT, p_threshold: 10, p_hysteresis: 5 }),
  },
  creditkit_set_account_balance_alert: {
    params: ['p_account_id', 'p_unit', 'p_threshold', 'p_percent', 'p_now'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_unit: 'credits', p_threshold: 10, p_now: NOW }),
  },
  creditkit_my_set_balance_alert: {
    params: ['p_unit', 'p_threshold', 'p_account_id'],
    caller: 'owner',
    valid: (fx) => ({ p_unit: 'credits', p_threshold: 10, p_account_id: fx.account }),
  },
  creditkit_balance_alert: {
    params: ['p_account_id', 'p_unit'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_unit: 'credits' }),
  },
  creditkit_my_balance_alert: {
    params: ['p_unit', 'p_account_id'],
    caller: 'owner',
    valid: (fx) => ({ p_unit: 'credits', p_account_id: fx.account }),
  },
  // ── auto top-up ──
  creditkit_set_auto_topup_terms: {
    params: ['p_unit', 'p_currency', 'p_unit_price', 'p_min_amount', 'p_max_amount', 'p_min_threshold', 'p_monthly_amount_cap', 'p_monthly_count_cap', 'p_cooldown', 'p_action_url', 'p_enabled'],
    caller: 'service',
    valid: () => ({
      p_unit: METERED_UNIT, p_currency: 'eur', p_unit_price: 0.5, p_min_amount: 10, p_max_amount: 1000, p_min_threshold: 0,
      p_monthly_amount_cap: 10_000, p_monthly_count_cap: 5, p_cooldown: '1 hour', p_action_url: 'https://app.example.com/topup/{topup_id}',
      p_enabled: false,
    }),
  },
  creditkit_auto_topup_terms: { params: [], caller: 'service', valid: () => ({}) },
  creditkit_set_auto_topup: {
    params: ['p_account_id', 'p_unit', 'p_enabled', 'p_threshold', 'p_amount', 'p_target', 'p_pack_id', 'p_monthly_amount_cap', 'p_monthly_count_cap', 'p_now'],
    caller: 'service',
    needs: ['card'],
    valid: (fx) => ({ p_account_id: fx.account, p_unit: 'credits', p_enabled: true, p_threshold: 50, p_amount: 500, p_now: NOW }),
  },
  creditkit_my_set_auto_topup: {
    params: ['p_unit', 'p_enabled', 'p_threshold', 'p_amount', 'p_target', 'p_pack_id', 'p_account_id'],
    caller: 'owner',
    needs: ['card'],
    valid: (fx) => ({ p_unit: 'credits', p_enabled: true, p_threshold: 50, p_amount: 500, p_account_id: fx.account }),
  },
  creditkit_auto_topup: {
    params: ['p_account_id', 'p_unit'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_unit: 'credits' }),
  },
  creditkit_my_auto_topup: {
    params: ['p_unit', 'p_account_id'],
    caller: 'owner',
    valid: (fx) => ({ p_unit: 'credits', p_account_id: fx.account }),
  },
  creditkit_topups: {
    params: ['p_account_id', 'p_status', 'p_limit'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_status: 'pending', p_limit: 10 }),
  },
  creditkit_my_topups: {
    params: ['p_unit', 'p_limit', 'p_account_id'],
    caller: 'owner',
    valid: (fx) => ({ p_unit: 'credits', p_limit: 10, p_account_id: fx.account }),
  },
  // ── the worker ──
  creditkit_worker_claim_topups: {
    params: ['p_limit', 'p_lease', 'p_now'],
    caller: 'service',
    valid: () => ({ p_limit: 10, p_lease: '2 minutes', p_now: NOW }),
  },
  creditkit_worker_topup_result: {
    params: ['p_topup_id', 'p_attempt', 'p_outcome', 'p_payment_intent', 'p_code', 'p_message', 'p_now'],
    caller: 'service',
    needs: ['topup'],
    valid: (fx) => ({ p_topup_id: fx.topup!.id, p_attempt: fx.topup!.attempt, p_outcome: 'processing', p_payment_intent: stripeId('pi'), p_now: NOW }),
  },
  creditkit_worker_claim_deliveries: {
    params: ['p_limit', 'p_lease', 'p_now'],
    caller: 'service',
    valid: () => ({ p_limit: 10, p_lease: '1 minute', p_now: NOW }),
  },
  creditkit_worker_delivery_result: {
    params: ['p_delivery_id', 'p_attempt', 'p_status_code', 'p_error', 'p_now'],
    caller: 'service',
    needs: ['claimed-delivery'],
    valid: (fx) => ({ p_delivery_id: fx.delivery!.id, p_attempt: fx.delivery!.attempt, p_status_code: 500, p_error: 'Internal Server Error', p_now: NOW }),
  },
  // ── notifications ──
  creditkit_upsert_webhook_endpoint: {
    params: ['p_id', 'p_url', 'p_event_types', 'p_secret', 'p_enabled', 'p_description'],
    caller: 'service',
    valid: () => ({
      p_id: 'bad-input-endpoint', p_url: 'https://example.com/creditkit', p_event_types: '{topup.succeeded,topup.failed}',
      p_secret: SECRET, p_enabled: false, p_description: 'Bad input',
    }),
  },
  creditkit_delete_webhook_endpoint: {
    params: ['p_id'],
    caller: 'service',
    needs: ['endpoint'],
    valid: (fx) => ({ p_id: fx.endpoint! }),
  },
  creditkit_webhook_endpoints: { params: [], caller: 'service', valid: () => ({}) },
  creditkit_notifications: {
    params: ['p_account_id', 'p_type', 'p_limit'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_type: 'balance.low', p_limit: 10 }),
  },
  creditkit_replay_delivery: {
    params: ['p_delivery_id', 'p_now'],
    caller: 'service',
    needs: ['delivery'],
    valid: (fx) => ({ p_delivery_id: fx.delivery!.id, p_now: NOW }),
  },
  creditkit_prune_notifications: {
    params: ['p_older_than', 'p_now'],
    caller: 'service',
    // older than 100 years: nothing is, so the valid call deletes nothing other cases rely on
    valid: () => ({ p_older_than: '100 years', p_now: NOW }),
  },
};

interface Case {
  fn: string;
  label: string;
  args: (fx: Fixture) => Args;
  code: string;
  caller?: 'service' | 'owner' | 'no-sub';
  /** The fixture's extra state, when not the function's own (SPECS[fn].needs). */
  needs?: Need[];
  /** State the case needs beyond the fixture, set up before the snapshot is taken. */
  prepare?: (fx: Fixture, ck: Creditkit) => Promise<unknown>;
}

const key256 = 'k'.repeat(256);
// 8193 bytes of JSON text, as the server measures it (octet_length of the jsonb's text)
const bigMetadata = { pad: 'x'.repeat(8193 - '{"pad": ""}'.length) };

const POSITIVE_AMOUNTS: Array<[string, unknown]> = [['0', 0], ['-1', -1], ['NULL', null], ['2^53', ABOVE_MAX]];
const ADJUST_AMOUNTS: Array<[string, unknown]> = [['0', 0], ['NULL', null], ['2^53', ABOVE_MAX], ['-2^53', `-${ABOVE_MAX}`]];
const BAD_KEYS: Array<[string, unknown]> = [['empty', ''], ['blank', '   '], ['tab and newline', '\t\n'], ['256 characters', key256]];
const BAD_EVENTS: Array<[string, unknown]> = [['empty', ''], ['blank', ' '], ['201 characters', 'e'.repeat(201)]];
const BAD_METADATA: Array<[string, unknown]> = [
  ['a JSON array', '[]'], ['a JSON string', '"text"'], ['a JSON number', '42'], ['JSON null', 'null'], ['over 8192 bytes', bigMetadata],
];
// Batch consume: the events array, then one bad item after a valid one. Each item is checked like
// creditkit_consume's arguments, with the same codes; a JSON null is the same as leaving a key out.
const without = (item: Record<string, unknown>, key: string) => Object.fromEntries(Object.entries(item).filter(([k]) => k !== key));
const BAD_BATCHES: Array<[string, unknown, string]> = [
  ['NULL', null, 'CK006'], ['JSON null', 'null', 'CK006'], ['a JSON object', '{}', 'CK006'], ['a JSON string', '"[]"', 'CK006'],
  ['an empty array', [], 'CK006'],
  ['1001 items', (fx: Fixture) => Array.from({ length: 1001 }, () => batchItem(fx, { amount: 1 })), 'CK006'],
  ...([['not an object (a string)', 'chat'], ['not an object (a number)', 10], ['not an object (null)', null], ['not an object (an array)', []]] as const)
    .map(([l, v]): [string, unknown, string] => [`an item ${l}`, batchWith(() => v), 'CK006']),
  ['an item with an unknown key', batchWith((fx) => batchItem(fx, { quantity: 2 })), 'CK006'],
  ['an item with camelCase keys', batchWith((fx) => ({ accountId: fx.account, amount: 1 })), 'CK006'],
  ...([['0', 0], ['-1', -1], ['NULL', null], ['2^53', 2 ** 53], ['1.5', 1.5], ['a string', '10'], ['true', true]] as const)
    .map(([l, v]): [string, unknown, string] => [`an item amount ${l}`, batchWith((fx) => batchItem(fx, { amount: v })), 'CK001']),
  ['an item without amount', batchWith((fx) => without(batchItem(fx), 'amount')), 'CK001'],
  ...([['-1', -1], ['2^53', 2 ** 53], ['0.5', 0.5], ['a string', '5']] as const)
    .map(([l, v]): [string, unknown, string] => [`an item cost_micros ${l}`, batchWith((fx) => batchItem(fx, { cost_micros: v })), 'CK001']),
  ...([['NULL', null], ['not a uuid', 'not-a-uuid'], ['a number', 42], ['an object', {}]] as const)
    .map(([l, v]): [string, unknown, string] => [`an item account_id ${l}`, batchWith((fx) => batchItem(fx, { account_id: v })), 'CK006']),
  ['an item without account_id', batchWith((fx) => without(batchItem(fx), 'account_id')), 'CK006'],
  ['an item account_id unknown', batchWith((fx) => batchItem(fx, { account_id: newAccountId() })), 'CK003'],
  ...([...BAD_KEYS, ['a number', 42]] as Array<[string, unknown]>)
    .map(([l, v]): [string, unknown, string] => [`an item idempotency_key ${l}`, batchWith((fx) => batchItem(fx, { idempotency_key: v })), 'CK006']),
  ...([...BAD_EVENTS, ['an object', {}]] as Array<[string, unknown]>)
    .map(([l, v]): [string, unknown, string] => [`an item event ${l}`, batchWith((fx) => batchItem(fx, { event: v })), 'CK006']),
  ...([['a JSON array', []], ['a JSON string', 'text'], ['a JSON number', 42], ['over 8192 bytes', bigMetadata]] as Array<[string, unknown]>)
    .map(([l, v]): [string, unknown, string] => [`an item metadata ${l}`, batchWith((fx) => batchItem(fx, { metadata: v })), 'CK006']),
];
const BAD_REASONS: Array<[string, unknown]> = [['NULL', null], ['empty', ''], ['blank', '  \t'], ['501 characters', 'r'.repeat(501)]];
const LIMITS: Record<string, { max: number }> = {
  creditkit_history: { max: 1000 }, creditkit_my_history: { max: 1000 }, creditkit_book_expired: { max: 100000 },
  creditkit_top_events: { max: 1000 }, creditkit_stripe_events: { max: 1000 },
  creditkit_topups: { max: 1000 }, creditkit_my_topups: { max: 1000 }, creditkit_notifications: { max: 1000 },
  creditkit_worker_claim_topups: { max: 1000 }, creditkit_worker_claim_deliveries: { max: 1000 },
};
// Functions of balance alerts and auto top-up that set a threshold or a top-up for an (account, unit).
const AUTO_TOPUP_SETTERS = new Set(['creditkit_set_auto_topup', 'creditkit_my_set_auto_topup']);
const ALERT_SETTERS = new Set(['creditkit_set_balance_alert', 'creditkit_set_account_balance_alert', 'creditkit_my_set_balance_alert']);
// Reads of one (account, unit) that answer for any account id (an unknown one has nothing set).
const ACCOUNT_READS = new Set(['creditkit_balance_alert', 'creditkit_auto_topup']);
// Filters: NULL is every account, and an unknown one has no rows.
const ACCOUNT_FILTERS = new Set(['creditkit_topups', 'creditkit_notifications']);
// Not a Stripe event creditkit can read (stripe.test.ts has the full list).
const BAD_STRIPE_EVENTS: Array<[string, unknown]> = [
  ['NULL', null], ['JSON null', 'null'], ['a JSON array', '[]'], ['a JSON string', '"evt_1"'], ['an empty object', {}],
  ['without an id', { ...otherEvent('x.y', { created: unix(0) }), id: undefined }],
  ['an id without evt_', { ...otherEvent('x.y', { created: unix(0) }), id: 'ev_123' }],
  ['without a type', { ...otherEvent('x.y', { created: unix(0) }), type: undefined }],
  ['without created', { ...otherEvent('x.y', { created: unix(0) }), created: undefined }],
  ['without data.object', { ...otherEvent('x.y', { created: unix(0) }), data: {} }],
];
// Dimensions: a flat JSON object of strings, numbers and booleans, at most 8192 bytes.
const BAD_DIMENSIONS: Array<[string, unknown]> = [
  ['NULL', null], ['a JSON array', '[]'], ['JSON null', 'null'], ['a JSON string', '"hd"'], ['a nested object', { size: { w: 1 } }],
  ['an array value', { sizes: [1, 2] }], ['a null value', { quality: null }], ['over 8192 bytes', bigMetadata],
];
const BAD_FEATURE_NAMES: Array<[string, unknown]> = [['NULL', null], ['empty', ''], ['blank', '  '], ['201 characters', 'f'.repeat(201)]];
// Functions whose p_event names a priced event (required); elsewhere an event is an optional label.
const PRICED_EVENT_FUNCTIONS = new Set(['creditkit_meter', 'creditkit_quote', 'creditkit_set_price']);

/** The bad values for one parameter of one function, each with its documented code. */
function casesFor(fn: string, param: ParamName): Array<[string, unknown, string]> {
  const each = (values: Array<[string, unknown]>, code: string) => values.map(([l, v]): [string, unknown, string] => [l, v, code]);
  switch (param) {
    case 'p_amount':
      if (AUTO_TOPUP_SETTERS.has(fn)) { // the terms bound an amount (100 to 10000); NULL leaves no mode
        return [
          ...each([['0', 0], ['-1', -1], ['2^53', ABOVE_MAX], ['below the terms\' minimum', 99], ['above the terms\' maximum', 10_001]], 'CK001'),
          ['NULL (no target or pack either)', null, 'CK006'],
        ];
      }
      return fn === 'creditkit_adjust' ? each(ADJUST_AMOUNTS, 'CK001') : each(POSITIVE_AMOUNTS, 'CK001');
    case 'p_account_id':
      if (fn.startsWith('creditkit_my_')) return []; // NULL means "my own"; others' accounts: see the CK005 cases
      if (ACCOUNT_FILTERS.has(fn)) return [];
      if (ACCOUNT_READS.has(fn)) return [['NULL', null, 'CK006']];
      // an account with no customer simply has none (NULL); linking one opens the account
      if (fn === 'creditkit_stripe_customer' || fn === 'creditkit_stripe_link_customer') return [['NULL', null, 'CK006']];
      if (fn === 'creditkit_has_credits') return []; // NULL means "my own"; anyone else's account is simply false
      // analytics: NULL means every account, and an unknown one just has no rows
      if (fn === 'creditkit_account_margin' || fn === 'creditkit_usage_series' || fn === 'creditkit_unit_usage') return [];
      // a grant or a subscription opens an unknown account, so only NULL is bad for them
      return fn === 'creditkit_grant' || fn === 'creditkit_set_plan'
        ? [['NULL', null, 'CK006']]
        : [['NULL', null, 'CK006'], ['unknown', newAccountId(), 'CK003']];
    case 'p_idempotency_key':
      return each(BAD_KEYS, 'CK006');
    case 'p_event':
      if (fn === 'creditkit_stripe_apply') return each(BAD_STRIPE_EVENTS, 'CK014'); // a whole Stripe event
      if (fn === 'creditkit_usage_series') return []; // a filter: a name nothing used matches nothing
      if (PRICED_EVENT_FUNCTIONS.has(fn)) {
        const unpriced: Array<[string, unknown, string]> = fn === 'creditkit_set_price' ? [] : [['with no price', 'unpriced', 'CK010']];
        return [...each([['NULL', null], ...BAD_EVENTS], 'CK006'), ...unpriced];
      }
      return each(BAD_EVENTS, 'CK006');
    case 'p_metadata':
      return each(BAD_METADATA, 'CK006');
    case 'p_category':
      return each([['unknown', 'gift'], ['NULL', null], ['empty', ''], ['upper case', 'PLAN']], 'CK006');
    case 'p_expires_at':
      return each([['equal to p_now', NOW], ['1µs before p_now', at(HOUR - 1)], ['a day in the past', at(-DAY)]], 'CK006');
    case 'p_now':
      return [['NULL', null, 'CK006']];
    // ── plans ──
    case 'p_id':
      // deleting looks the id up: whatever is not an endpoint's id is unknown
      if (fn === 'creditkit_delete_webhook_endpoint') return each([['NULL', null], ['unknown', 'no-such-endpoint'], ['empty', ''], ['upper case', 'Hooks']], 'CK017');
      return each([['NULL', null], ['empty', ''], ['upper case', 'Pro'], ['a leading dash', '-pro'], ['a space', 'pro plan'], ['64 characters', 'p'.repeat(64)]], 'CK006');
    case 'p_name':
      return each([['NULL', null], ['empty', ''], ['blank', ' \t'], ['201 characters', 'n'.repeat(201)]], 'CK006');
    case 'p_allowance':
      if (fn === 'creditkit_set_plan_limit') return each([['-1', -1], ['2^53', ABOVE_MAX]], 'CK001'); // NULL removes the limit
      return each([['-1', -1], ['NULL', null], ['2^53', ABOVE_MAX]], 'CK001');
    case 'p_price_amount':
      return each([['-1', -1], ['NULL', null], ['2^53', ABOVE_MAX]], 'CK001');
    case 'p_rollover_cap': // NULL: no cap
      return each([['-1', -1], ['2^53', ABOVE_MAX]], 'CK001');
    case 'p_period':
      return each([['NULL', null], ['unknown', 'quarter'], ['upper case', 'Month'], ['plural', 'months']], 'CK006');
    case 'p_renewal':
      return each([['NULL', null], ['unknown', 'carry'], ['empty', '']], 'CK006');
    case 'p_features':
      return each([['NULL', null], ['a JSON array', '[]'], ['JSON null', 'null'], ['a number flag', { hd: 1 }], ['a string flag', { hd: 'true' }], ['a nested flag', { hd: { on: true } }]], 'CK006');
    case 'p_currency':
      return each([['NULL', null], ['upper case', 'USD'], ['two letters', 'us'], ['four letters', 'usdd'], ['a symbol', '$']], 'CK006');
    case 'p_stripe_price_id': // NULL: none
      return each([['empty', ''], ['a dash', 'price-1'], ['a space', 'price 1'], ['256 characters', 's'.repeat(256)]], 'CK006');
    case 'p_is_default':
    case 'p_active':
      return [['NULL', null, 'CK006']];
    case 'p_plan_id': // a limit may be set on an inactive plan (as upsert_plan may change one)
      if (fn === 'creditkit_set_plan_limit') return each([['NULL', null], ['unknown', 'no-such-plan']], 'CK009');
      return each([['NULL', null], ['unknown', 'no-such-plan'], ['inactive', RETIRED_PLAN]], 'CK009');
    // ── units ──
    case 'p_unit':
      if (fn === 'creditkit_my_topups') { // NULL: every unit
        return each([['unknown', 'tokens'], ['boolean', BOOLEAN_UNIT], ['upper case', 'Credits'], ['empty', '']], 'CK015');
      }
      return [
        ...each([['NULL', null], ['unknown', 'tokens'], ['boolean', BOOLEAN_UNIT], ['upper case', 'Credits'], ['empty', '']], 'CK015'),
        ...(fn === 'creditkit_set_plan_limit' ? each([['credits (the plan\'s own allowance)', 'credits']], 'CK006') : []),
      ];
    case 'p_kind':
      return each([['NULL', null], ['unknown', 'counted'], ['upper case', 'Metered'], ['empty', '']], 'CK006');
    case 'p_status':
      if (fn === 'creditkit_stripe_events') return each([['unknown', 'lost'], ['upper case', 'Dead'], ['empty', '']], 'CK006'); // NULL: all
      // NULL: all. An unknown status is not refused (it matches nothing), unlike
      // creditkit_stripe_events' CK006: reported as a doubt, not pinned here.
      if (fn === 'creditkit_topups') return [];
      return each([['NULL', null], ['unknown', 'paused'], ['upper case', 'Active'], ['empty', '']], 'CK006');
    case 'p_anchor': // NULL: the anchor is p_now
      return [['1µs after p_now', at(HOUR + 1), 'CK006']];
    case 'p_feature':
      return each(BAD_FEATURE_NAMES, 'CK006');
    // ── pricing ──
    case 'p_credits_per_unit':
    case 'p_quantity':
      return each(POSITIVE_AMOUNTS, 'CK001');
    case 'p_overage_credits_per_unit': // NULL: no overage rule
      return each(POSITIVE_AMOUNTS.filter(([label]) => label !== 'NULL'), 'CK001');
    case 'p_dimensions':
      return each(BAD_DIMENSIONS, 'CK006');
    case 'p_effective_from':
      return [['NULL', null, 'CK006']];
    // ── holds ──
    case 'p_ttl':
      return each([['NULL', null], ['zero', '0 seconds'], ['negative', '-1 second'], ['1µs over 7 days', '7 days 0.000001 seconds']], 'CK006');
    case 'p_hold_id':
      return each([['NULL', null], ['unknown', MAX_CREDITS], ['0', 0]], 'CK011');
    case 'p_actual': // 0 is a valid actual amount (nothing used)
      return each([['-1', -1], ['NULL', null], ['2^53', ABOVE_MAX]], 'CK001');
    // ── analytics ──
    case 'p_from':
      return each([['NULL', null], ['equal to p_to', PERIOD.p_to], ['after p_to', at(DAY + 1)]], 'CK006');
    case 'p_to':
      return each([['NULL', null], ['equal to p_from', PERIOD.p_from], ['before p_from', at(-1)]], 'CK006');
    case 'p_cost_micros':
    case 'p_revenue_micros': // money is optional (NULL), else 0 to 2^53-1 micros
      return each([['-1', -1], ['2^53', ABOVE_MAX]], 'CK001');
    case 'p_reason':
      return each(BAD_REASONS, 'CK006');
    case 'p_limit': {
      const max = LIMITS[fn]?.max;
      if (!max) throw new Error(`no limit bounds for ${fn}`);
      return each([['0', 0], ['-1', -1], ['NULL', null], [`${max + 1}`, max + 1]], 'CK006');
    }
    // ── packs and Stripe ──
    case 'p_credits':
      return each(POSITIVE_AMOUNTS, 'CK001');
    case 'p_expires_after': // NULL: never
      return each([['zero', '0 seconds'], ['negative', '-1 day'], ['over 100 years', '100 years 1 second']], 'CK006');
    case 'p_event_id':
      return each([['NULL', null], ['empty', ''], ['not in the inbox', 'evt_1QneverDelivered']], 'CK006');
    case 'p_customer_id':
      return each([['NULL', null], ['empty', ''], ['not cus_', 'cust_123'], ['just cus_', 'cus_'], ['a dash', 'cus_a-b']], 'CK006');
    case 'p_events':
      return BAD_BATCHES;
    // ── balance alerts and auto top-up ──
    case 'p_threshold':
      // a balance alert's threshold is an amount (CK001; NULL: the default / none); an auto
      // top-up's is checked against the terms' min_threshold (10 here) and is required (CK006)
      if (ALERT_SETTERS.has(fn)) return each([['-1', -1], ['2^53', ABOVE_MAX]], 'CK001');
      return each([['NULL', null], ['-1', -1], ['below the terms\' min_threshold', 9], ['2^53', ABOVE_MAX]], 'CK006');
    case 'p_percent': // the valid calls give a threshold, so any percentage is "both"; see the rows with a NULL threshold
      return each([['0', 0], ['-1', -1], ['100.5', 100.5], ['50 with a threshold as well', 50]], 'CK006');
    case 'p_hysteresis': // NULL: 10% of the threshold
      return each([['0', 0], ['-1', -1], ['2^53', ABOVE_MAX]], 'CK001');
    case 'p_unit_price':
      return each([['NULL', null], ['0', 0], ['-1', -1], ['above 1000000', '1000000.01']], 'CK006');
    case 'p_min_amount':
    case 'p_max_amount':
      return each(POSITIVE_AMOUNTS, 'CK001');
    case 'p_min_threshold':
      return each([['NULL', null], ['-1', -1], ['2^53', ABOVE_MAX]], 'CK006');
    case 'p_monthly_amount_cap': // NULL: no cap of its own
      return each([['0', 0], ['-1', -1], ['2^53', ABOVE_MAX]], 'CK001');
    case 'p_monthly_count_cap': // NULL: no cap of its own
      return each([['0', 0], ['-1', -1]], 'CK006');
    case 'p_cooldown':
      return each([['NULL', null], ['negative', '-1 second']], 'CK006');
    case 'p_action_url': // NULL: no link
      return each([['empty', ''], ['not http(s)', 'ftp://example.com/pay'], ['no scheme', 'app.example.com/pay'], ['a space', 'https://example.com/a b'], ['2001 characters', `https://${'a'.repeat(1993)}`]], 'CK006');
    case 'p_enabled':
      return [['NULL', null, 'CK006']];
    case 'p_target': // the valid calls give an amount: see the rows with a NULL amount
      return [['with an amount as well', 1000, 'CK006']];
    case 'p_pack_id': // the same
      return [['with an amount as well', TOPUP_PACK, 'CK006']];
    // ── the worker ──
    case 'p_lease':
      return each([['NULL', null], ['zero', '0 seconds'], ['under a second', '0.999999 seconds'], ['negative', '-1 minute']], 'CK006');
    case 'p_topup_id':
    case 'p_delivery_id':
      return each([['NULL', null], ['unknown', MAX_CREDITS], ['0', 0]], 'CK018');
    case 'p_attempt': // an attempt that is not the current one is answered as things stand (see "answers, not errors")
      return [];
    case 'p_outcome':
      return each([['NULL', null], ['unknown', 'failed'], ['upper case', 'Succeeded'], ['empty', '']], 'CK006');
    case 'p_payment_intent': // NULL: none known (a network error)
      return each([['empty', ''], ['not pi_', 'ch_3Nabc'], ['just pi_', 'pi_'], ['a dash', 'pi_a-b']], 'CK006');
    case 'p_status_code': // NULL: no answer
      return each([['99', 99], ['600', 600], ['0', 0], ['-1', -1]], 'CK006');
    case 'p_code':
    case 'p_message':
    case 'p_error': // free text from Stripe or the receiver, kept truncated
      return [];
    // ── notifications ──
    case 'p_url':
      return each([['NULL', null], ['empty', ''], ['not http(s)', 'ftp://example.com/hooks'], ['no scheme', 'example.com/hooks'], ['just the scheme', 'https://'], ['a space', 'https://example.com/a b'], ['2001 characters', `https://${'a'.repeat(1993)}`]], 'CK006');
    case 'p_event_types': // NULL: every type
      return each([['empty', '{}'], ['a NULL type', '{NULL}'], ['unknown', '{balance.high}'], ['upper case', '{Balance.Low}'], ['a known and an unknown one', '{balance.low,topup.refunded}']], 'CK006');
    case 'p_secret': // NULL: generated on create, kept on update
      return each([
        ['empty', ''], ['without whsec_', Buffer.alloc(32, 7).toString('base64')], ['too short (23 bytes)', `whsec_${Buffer.alloc(23, 7).toString('base64')}`],
        ['too long (67 bytes)', `whsec_${Buffer.alloc(67, 7).toString('base64')}`], ['not base64', `whsec_${'!'.repeat(44)}`], ['a space', `${SECRET} `],
      ], 'CK006');
    case 'p_description': // NULL: none
      return [['501 characters', 'd'.repeat(501), 'CK006']];
    case 'p_type': // a filter: a type nothing has matches nothing
      return [];
    case 'p_older_than':
      return each([['NULL', null], ['under an hour', '59 minutes'], ['zero', '0 seconds'], ['negative', '-1 day']], 'CK006');
    case 'p_priority': // any integer is a valid priority
    case 'p_before_id': // any cursor is valid; one past the end just gives an empty page
      return [];
  }
}

/** The valid base call of a function (for cases that change more than one argument). */
function valid(fn: string, fx?: Fixture): Args {
  const spec = SPECS[fn];
  if (!spec) throw new Error(`no spec for ${fn}`);
  return spec.valid(fx as Fixture);
}

const CASES: Case[] = Object.entries(SPECS).flatMap(([fn, spec]) =>
  spec.params.flatMap((param) =>
    casesFor(fn, param).map(([label, value, code]): Case => ({
      fn, label: `${param} ${label}`, code,
      // a function value is made from the fixture (batch items name its account)
      args: (fx) => ({ ...spec.valid(fx), [param]: typeof value === 'function' ? (value as (f: Fixture) => unknown)(fx) : value }),
    })),
  ),
);

// Failures that depend on the state rather than on one malformed argument.
CASES.push(
  { fn: 'creditkit_grant', label: 'the balance would pass 2^53-1', code: 'CK007', args: (fx) => ({ ...SPECS.creditkit_grant!.valid(fx), p_amount: MAX_CREDITS }) },
  { fn: 'creditkit_adjust', label: 'the balance would pass 2^53-1', code: 'CK007', args: (fx) => ({ ...SPECS.creditkit_adjust!.valid(fx), p_amount: MAX_CREDITS }) },
  { fn: 'creditkit_adjust', label: 'below zero', code: 'CK002', args: (fx) => ({ ...SPECS.creditkit_adjust!.valid(fx), p_amount: -101 }) },
  // the ceiling is on the balance, not on the spendable balance: credit on hold counts
  ...(['creditkit_grant', 'creditkit_adjust'] as const).map((fn): Case => ({
    fn, label: 'the balance would pass 2^53-1, the spendable balance (10 on hold) would not', code: 'CK007',
    prepare: async (fx, ck) => {
      await ck.grant({ p_account_id: fx.account, p_amount: MAX_CREDITS - 110, p_now: at(0) });
      await ck.reserve({ p_account_id: fx.account, p_amount: 10, p_ttl: '1 day', p_now: at(0) });
    },
    args: (f) => ({ ...valid(fn, f), p_amount: 15 }),
  })),
  // batch consume: a key reused with other parameters fails the whole batch, as it fails a consume
  {
    fn: 'creditkit_consume_batch', label: 'an item reusing a key a consume wrote, with another amount', code: 'CK004',
    prepare: (fx, ck) => ck.consume({ p_account_id: fx.account, p_amount: 10, p_event: 'chat', p_idempotency_key: 'used-1', p_now: NOW }),
    args: (fx) => ({ p_events: batchWith((f) => batchItem(f, { amount: 11, idempotency_key: 'used-1' }))(fx), p_now: NOW }),
  },
  {
    fn: 'creditkit_consume_batch', label: 'two items with one key and different amounts', code: 'CK004',
    args: (fx) => ({ p_events: [batchItem(fx, { idempotency_key: 'twice' }), batchItem(fx, { amount: 11, idempotency_key: 'twice' })], p_now: NOW }),
  },
  {
    fn: 'creditkit_consume_batch', label: 'an item reusing a key with other metadata', code: 'CK004',
    args: (fx) => ({ p_events: [batchItem(fx, { idempotency_key: 'meta' }), batchItem(fx, { idempotency_key: 'meta', metadata: { n: 1 } })], p_now: NOW }),
  },
  { fn: 'creditkit_consume_or_raise', label: 'more than the balance', code: 'CK002', args: (fx) => ({ ...SPECS.creditkit_consume_or_raise!.valid(fx), p_amount: 101 }) },
  { fn: 'creditkit_my_balance', label: "someone else's account", code: 'CK005', args: (fx) => ({ p_account_id: fx.other }) },
  { fn: 'creditkit_my_history', label: "someone else's account", code: 'CK005', args: (fx) => ({ p_account_id: fx.other }) },
  { fn: 'creditkit_my_balance', label: 'authenticated without a sub claim', code: 'CK005', caller: 'no-sub', args: () => ({}) },
  { fn: 'creditkit_my_history', label: 'authenticated without a sub claim', code: 'CK005', caller: 'no-sub', args: () => ({}) },
  // plans
  { fn: 'creditkit_my_plan', label: "someone else's account", code: 'CK005', args: (fx) => ({ p_account_id: fx.other }) },
  { fn: 'creditkit_my_feature', label: "someone else's account", code: 'CK005', args: (fx) => ({ p_feature: 'hd', p_account_id: fx.other }) },
  { fn: 'creditkit_my_plan', label: 'authenticated without a sub claim', code: 'CK005', caller: 'no-sub', args: () => ({}) },
  { fn: 'creditkit_my_feature', label: 'authenticated without a sub claim', code: 'CK005', caller: 'no-sub', args: () => ({ p_feature: 'hd' }) },
  { fn: 'creditkit_upsert_plan', label: 'an inactive default plan', code: 'CK006', args: () => ({ ...valid('creditkit_upsert_plan'), p_is_default: true, p_active: false }) },
  { fn: 'creditkit_upsert_plan', label: 'the default plan no longer default (make another the default first)', code: 'CK006', args: () => ({ p_id: 'free', p_name: 'Free', p_is_default: false }) },
  {
    fn: 'creditkit_upsert_plan', label: 'a Stripe price id another plan has', code: 'CK006',
    prepare: (_fx, ck) => ck.upsertPlan({ p_id: 'stripe-a', p_name: 'A', p_stripe_price_id: 'price_shared' }),
    args: () => ({ p_id: 'stripe-b', p_name: 'B', p_stripe_price_id: 'price_shared' }),
  },
  {
    fn: 'creditkit_upsert_plan', label: 'a new period for a plan with live subscriptions', code: 'CK006',
    prepare: (fx, ck) => ck.setPlan({ p_account_id: fx.account, p_plan_id: PLAN, p_now: NOW }),
    args: () => ({ p_id: PLAN, p_name: 'Pro', p_allowance: 50, p_features: { hd: true }, p_period: 'year' }),
  },
  // units
  { fn: 'creditkit_upsert_unit', label: 'credits made boolean', code: 'CK006', args: () => ({ p_id: 'credits', p_name: 'Credits', p_kind: 'boolean' }) },
  {
    fn: 'creditkit_upsert_unit', label: 'a unit an account holds made boolean', code: 'CK006',
    prepare: (fx, ck) => ck.grant({ p_account_id: fx.account, p_amount: 1, p_now: NOW, p_unit: 'held-unit' }),
    args: () => ({ p_id: 'held-unit', p_name: 'Held', p_kind: 'boolean' }),
  },
  {
    fn: 'creditkit_report', label: 'a key used in another unit', code: 'CK004',
    prepare: (fx, ck) => ck.consume({ p_account_id: fx.account, p_amount: 10, p_event: 'chat', p_idempotency_key: 'u-1', p_now: NOW }),
    args: (fx) => ({ ...valid('creditkit_report', fx), p_unit: METERED_UNIT, p_idempotency_key: 'u-1' }),
  },
  { fn: 'creditkit_my_check', label: "someone else's account", code: 'CK005', args: (fx) => ({ p_unit: 'credits', p_account_id: fx.other }) },
  { fn: 'creditkit_my_check', label: 'authenticated without a sub claim', code: 'CK005', caller: 'no-sub', args: () => ({ p_unit: 'credits' }) },
  // pricing
  { fn: 'creditkit_meter', label: 'quantity x price above 2^53-1', code: 'CK001', args: (fx) => ({ ...valid('creditkit_meter', fx), p_quantity: MAX_CREDITS }) },
  { fn: 'creditkit_quote', label: 'quantity x price above 2^53-1', code: 'CK001', args: () => ({ ...valid('creditkit_quote'), p_quantity: MAX_CREDITS }) },
  { fn: 'creditkit_set_price', label: 'an overage price on credits (it would charge credits for credits)', code: 'CK006', args: () => ({ ...valid('creditkit_set_price'), p_overage_credits_per_unit: 2 }) },
  { fn: 'creditkit_meter', label: 'an event priced only for other dimensions', code: 'CK010', args: (fx) => ({ ...valid('creditkit_meter', fx), p_event: 'hd-only', p_dimensions: { quality: 'sd' } }) },
  { fn: 'creditkit_quote', label: 'an event priced only for other dimensions', code: 'CK010', args: () => ({ ...valid('creditkit_quote'), p_event: 'hd-only' }) },
  { fn: 'creditkit_meter', label: 'a price that takes effect after p_now', code: 'CK010', args: (fx) => ({ ...valid('creditkit_meter', fx), p_event: 'future' }) },
  { fn: 'creditkit_quote', label: 'a price that takes effect after p_now', code: 'CK010', args: () => ({ ...valid('creditkit_quote'), p_event: 'future' }) },
  {
    fn: 'creditkit_meter', label: 'a key used for a different quantity', code: 'CK004',
    prepare: (fx, ck) => ck.meter({ ...valid('creditkit_meter', fx), p_idempotency_key: 'm-1' }),
    args: (fx) => ({ ...valid('creditkit_meter', fx), p_quantity: 3, p_idempotency_key: 'm-1' }),
  },
  {
    fn: 'creditkit_meter', label: 'a key used by creditkit_consume', code: 'CK004',
    prepare: (fx, ck) => ck.consume({ p_account_id: fx.account, p_amount: 6, p_event: PRICED, p_idempotency_key: 'c-1', p_now: NOW }),
    args: (fx) => ({ ...valid('creditkit_meter', fx), p_idempotency_key: 'c-1' }),
  },
  // packs and Stripe
  {
    fn: 'creditkit_upsert_pack', label: 'a Stripe price id another pack has', code: 'CK006',
    prepare: (_fx, ck) => ck.call('creditkit_upsert_pack', { p_id: 'pack-a', p_name: 'A', p_credits: 1, p_stripe_price_id: 'price_shared_pack' }),
    args: () => ({ p_id: 'pack-b', p_name: 'B', p_credits: 1, p_stripe_price_id: 'price_shared_pack' }),
  },
  {
    fn: 'creditkit_stripe_link_customer', label: 'a customer linked to another account', code: 'CK006',
    prepare: (fx, ck) => ck.call('creditkit_stripe_link_customer', { p_account_id: fx.other, p_customer_id: 'cus_1QtakenByOther' }),
    args: (fx) => ({ p_account_id: fx.account, p_customer_id: 'cus_1QtakenByOther' }),
  },
  // holds
  {
    fn: 'creditkit_reserve', label: 'a key used for a different amount', code: 'CK004',
    prepare: (fx, ck) => ck.reserve({ ...valid('creditkit_reserve', fx), p_idempotency_key: 'r-1' }),
    args: (fx) => ({ ...valid('creditkit_reserve', fx), p_amount: 11, p_idempotency_key: 'r-1' }),
  },
  { fn: 'creditkit_settle', label: 'the hold expired (p_now at its expires_at)', code: 'CK012', args: (fx) => ({ ...valid('creditkit_settle', fx), p_now: at(DAY) }) },
  {
    fn: 'creditkit_settle', label: 'the hold was released', code: 'CK012',
    prepare: (fx, ck) => ck.release({ p_hold_id: fx.hold, p_now: NOW }),
    args: (fx) => valid('creditkit_settle', fx),
  },
  {
    fn: 'creditkit_settle', label: 'the hold was settled with another actual amount', code: 'CK012',
    prepare: (fx, ck) => ck.settleHold({ p_hold_id: fx.hold, p_actual: 4, p_now: NOW }),
    args: (fx) => valid('creditkit_settle', fx),
  },
  {
    fn: 'creditkit_release', label: 'the hold was settled', code: 'CK012',
    prepare: (fx, ck) => ck.settleHold({ p_hold_id: fx.hold, p_actual: 4, p_now: NOW }),
    args: (fx) => valid('creditkit_release', fx),
  },
);

// Balance alerts and auto top-up: the rows one parameter at a time cannot make.
const withoutAmount = (fn: string, change: Args) => (fx: Fixture): Args => ({ ...valid(fn, fx), p_amount: undefined, ...change });
for (const fn of ['creditkit_set_balance_alert', 'creditkit_set_account_balance_alert'] as const) {
  CASES.push(
    { fn, label: 'percent 0 without a threshold', code: 'CK006', args: (fx) => ({ ...valid(fn, fx), p_threshold: null, p_percent: 0 }) },
    { fn, label: 'percent 100.01 without a threshold', code: 'CK006', args: (fx) => ({ ...valid(fn, fx), p_threshold: null, p_percent: 100.01 }) },
  );
}
for (const fn of ['creditkit_my_set_balance_alert', 'creditkit_my_balance_alert', 'creditkit_my_auto_topup', 'creditkit_my_set_auto_topup', 'creditkit_my_topups'] as const) {
  CASES.push(
    { fn, label: "someone else's account", code: 'CK005', args: (fx) => ({ ...valid(fn, fx), p_account_id: fx.other }) },
    { fn, label: 'authenticated without a sub claim', code: 'CK005', caller: 'no-sub', args: (fx) => ({ ...valid(fn, fx), p_account_id: undefined }) },
  );
}
for (const fn of AUTO_TOPUP_SETTERS) {
  CASES.push(
    // how much: a target balance above the threshold (50), or an active priced pack of the unit
    { fn, label: 'a target equal to the threshold', code: 'CK001', args: withoutAmount(fn, { p_target: 50 }) },
    { fn, label: 'a target below the threshold', code: 'CK001', args: withoutAmount(fn, { p_target: 49 }) },
    { fn, label: 'a target of 2^53', code: 'CK001', args: withoutAmount(fn, { p_target: ABOVE_MAX }) },
    { fn, label: 'a target and a pack', code: 'CK006', args: withoutAmount(fn, { p_target: 1000, p_pack_id: TOPUP_PACK }) },
    { fn, label: 'an unknown pack', code: 'CK013', args: withoutAmount(fn, { p_pack_id: 'no-such-pack' }) },
    { fn, label: 'an inactive pack', code: 'CK013', args: withoutAmount(fn, { p_pack_id: RETIRED_PACK }) },
    { fn, label: 'a free pack (nothing to charge)', code: 'CK013', args: withoutAmount(fn, { p_pack_id: FREE_PACK }) },
    { fn, label: 'a pack of another unit', code: 'CK013', args: withoutAmount(fn, { p_pack_id: MESSAGES_PACK }) },
    // CK016: auto top-up is not available
    { fn, label: 'a unit without terms', code: 'CK016', args: (fx) => ({ ...valid(fn, fx), p_unit: METERED_UNIT }) },
    { fn, label: 'a unit whose terms are disabled', code: 'CK016', args: (fx) => ({ ...valid(fn, fx), p_unit: TERMS_OFF_UNIT }) },
    { fn, label: 'no card on file', code: 'CK016', needs: [], args: (fx) => valid(fn, fx) },
    { fn, label: 'a card on file that settles days later (sepa_debit)', code: 'CK016', needs: ['sepa'], args: (fx) => valid(fn, fx) },
    {
      fn, label: 'the card on file was detached', code: 'CK016',
      prepare: (fx, ck) => applyEvent(ck, 'payment_method.detached', { id: fx.card!.pm, object: 'payment_method', type: 'card', customer: null }, { customer: fx.card!.customer }),
      args: (fx) => valid(fn, fx),
    },
  );
}
CASES.push(
  { fn: 'creditkit_set_auto_topup_terms', label: 'max_amount below min_amount', code: 'CK001', args: () => ({ ...valid('creditkit_set_auto_topup_terms'), p_min_amount: 100, p_max_amount: 99 }) },
  { fn: 'creditkit_set_auto_topup_terms', label: 'unit_price NaN', code: 'CK006', args: () => ({ ...valid('creditkit_set_auto_topup_terms'), p_unit_price: 'NaN' }) },
);

/** Values at the edge of what is accepted: the bad-input cases above are one step past them. */
const ACCEPTED: Case[] = [
  { fn: 'creditkit_grant', label: 'amount 2^53-1 on an empty account', code: 'ok', args: () => ({ p_account_id: newAccountId(), p_amount: MAX_CREDITS, p_now: NOW }) },
  { fn: 'creditkit_grant', label: 'expires 1µs after p_now', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_grant!.valid(fx), p_expires_at: at(HOUR + 1) }) },
  { fn: 'creditkit_grant', label: 'a 255-character key', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_grant!.valid(fx), p_idempotency_key: 'k'.repeat(255) }) },
  { fn: 'creditkit_consume', label: 'metadata of exactly 8192 bytes', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_consume!.valid(fx), p_metadata: { pad: 'x'.repeat(8192 - '{"pad": ""}'.length) } }) },
  { fn: 'creditkit_consume', label: 'a 200-character event', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_consume!.valid(fx), p_event: 'e'.repeat(200) }) },
  { fn: 'creditkit_consume_batch', label: '1000 items (100 allowed, the rest blocked)', code: 'ok', args: (fx) => ({ p_events: Array.from({ length: 1000 }, () => batchItem(fx, { amount: 1 })), p_now: NOW }) },
  { fn: 'creditkit_consume_batch', label: 'an item amount 2^53-1 (blocked), cost_micros 0 and 2^53-1', code: 'ok', args: (fx) => ({ p_events: [batchItem(fx, { amount: MAX_CREDITS }), batchItem(fx, { cost_micros: 0 }), batchItem(fx, { cost_micros: MAX_CREDITS })], p_now: NOW }) },
  { fn: 'creditkit_consume_batch', label: 'JSON null for event, idempotency_key, metadata and cost_micros', code: 'ok', args: (fx) => ({ p_events: [batchItem(fx, { event: null, idempotency_key: null, metadata: null, cost_micros: null })], p_now: NOW }) },
  { fn: 'creditkit_consume_batch', label: 'a 255-character key, a 200-character event, metadata of exactly 8192 bytes', code: 'ok', args: (fx) => ({ p_events: [batchItem(fx, { idempotency_key: 'k'.repeat(255), event: 'e'.repeat(200), metadata: { pad: 'x'.repeat(8192 - '{"pad": ""}'.length) } })], p_now: NOW }) },
  { fn: 'creditkit_consume_batch', label: 'an account id in upper case, in braces, without hyphens', code: 'ok', args: (fx) => ({ p_events: [batchItem(fx, { account_id: fx.account.toUpperCase() }), batchItem(fx, { account_id: `{${fx.account}}` }), batchItem(fx, { account_id: fx.account.replace(/-/g, '') })], p_now: NOW }) },
  { fn: 'creditkit_consume_batch', label: 'amount 1e1 (an integer in exponent form)', code: 'ok', args: (fx) => ({ p_events: '[' + JSON.stringify(batchItem(fx)).replace('"amount":10', '"amount":1e1') + ']', p_now: NOW }) },
  { fn: 'creditkit_consume', label: 'cost_micros 0', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_consume!.valid(fx), p_cost_micros: 0 }) },
  { fn: 'creditkit_grant', label: 'revenue_micros 2^53-1', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_grant!.valid(fx), p_revenue_micros: MAX_CREDITS }) },
  { fn: 'creditkit_consume', label: 'the whole balance', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_consume!.valid(fx), p_amount: 100 }) },
  { fn: 'creditkit_adjust', label: 'the whole balance away', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_adjust!.valid(fx), p_amount: -100 }) },
  { fn: 'creditkit_adjust', label: 'a 500-character reason', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_adjust!.valid(fx), p_reason: 'r'.repeat(500) }) },
  { fn: 'creditkit_history', label: 'limit 1000', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_history!.valid(fx), p_limit: 1000 }) },
  { fn: 'creditkit_my_history', label: 'limit 1', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_my_history!.valid(fx), p_limit: 1 }) },
  { fn: 'creditkit_book_expired', label: 'limit 100000', code: 'ok', args: () => ({ p_now: NOW, p_limit: 100000 }) },
  // plans
  { fn: 'creditkit_upsert_plan', label: 'a 63-character id, a 200-character name', code: 'ok', args: () => ({ p_id: 'p'.repeat(63), p_name: 'n'.repeat(200) }) },
  { fn: 'creditkit_upsert_plan', label: 'allowance and price 2^53-1, rollover cap 0', code: 'ok', args: () => ({ ...valid('creditkit_upsert_plan'), p_allowance: MAX_CREDITS, p_price_amount: MAX_CREDITS, p_rollover_cap: 0 }) },
  { fn: 'creditkit_upsert_plan', label: 'allowance 0 (features only), no stripe price, no cap', code: 'ok', args: () => ({ ...valid('creditkit_upsert_plan'), p_allowance: 0, p_stripe_price_id: null, p_rollover_cap: null }) },
  { fn: 'creditkit_set_plan', label: 'anchor equal to p_now', code: 'ok', args: (fx) => ({ ...valid('creditkit_set_plan', fx), p_anchor: NOW }) },
  { fn: 'creditkit_set_plan', label: 'no anchor (p_now), an account that does not exist yet', code: 'ok', args: () => ({ p_account_id: newAccountId(), p_plan_id: PLAN, p_now: NOW }) },
  { fn: 'creditkit_has_feature', label: 'a 200-character feature name', code: 'ok', args: (fx) => ({ ...valid('creditkit_has_feature', fx), p_feature: 'f'.repeat(200) }) },
  // pricing
  { fn: 'creditkit_quote', label: 'a total of exactly 2^53-1', code: 'ok', args: () => ({ p_event: 'unit', p_quantity: MAX_CREDITS, p_now: NOW }) },
  { fn: 'creditkit_meter', label: 'more than the balance (blocked is an answer, not an error)', code: 'ok', args: (fx) => ({ ...valid('creditkit_meter', fx), p_quantity: 1000 }) },
  { fn: 'creditkit_set_price', label: 'dimensions of strings, numbers and booleans', code: 'ok', args: () => ({ ...valid('creditkit_set_price'), p_dimensions: { quality: 'hd', steps: 30, upscale: true } }) },
  // holds
  { fn: 'creditkit_reserve', label: 'ttl of exactly 7 days', code: 'ok', args: (fx) => ({ ...valid('creditkit_reserve', fx), p_ttl: '7 days' }) },
  { fn: 'creditkit_reserve', label: 'ttl of 1µs', code: 'ok', args: (fx) => ({ ...valid('creditkit_reserve', fx), p_ttl: '0.000001 seconds' }) },
  { fn: 'creditkit_reserve', label: 'more than the spendable balance (blocked)', code: 'ok', args: (fx) => ({ ...valid('creditkit_reserve', fx), p_amount: 101 }) },
  { fn: 'creditkit_settle', label: 'actual 0', code: 'ok', args: (fx) => ({ ...valid('creditkit_settle', fx), p_actual: 0 }) },
  { fn: 'creditkit_settle', label: 'actual 2^53-1 (far above the reserve: the reserve is charged)', code: 'ok', args: (fx) => ({ ...valid('creditkit_settle', fx), p_actual: MAX_CREDITS }) },
  { fn: 'creditkit_settle', label: '1µs before the hold expires', code: 'ok', args: (fx) => ({ ...valid('creditkit_settle', fx), p_now: at(DAY - 1) }) },
  { fn: 'creditkit_release', label: 'at the hold\'s expiry (already free: a no-op)', code: 'ok', args: (fx) => ({ ...valid('creditkit_release', fx), p_now: at(DAY) }) },
  // units
  { fn: 'creditkit_upsert_unit', label: 'a boolean unit, a 63-character id, a 200-character name', code: 'ok', args: () => ({ p_id: 'u'.repeat(63), p_name: 'n'.repeat(200), p_kind: 'boolean' }) },
  { fn: 'creditkit_set_plan_limit', label: 'allowance 0 (available, none included), cap 2^53-1', code: 'ok', args: () => ({ ...valid('creditkit_set_plan_limit'), p_allowance: 0, p_rollover_cap: MAX_CREDITS }) },
  { fn: 'creditkit_set_plan_limit', label: 'NULL allowance (removes the limit)', code: 'ok', args: () => ({ ...valid('creditkit_set_plan_limit'), p_allowance: null }) },
  { fn: 'creditkit_set_plan_limit', label: 'an inactive plan', code: 'ok', args: () => ({ ...valid('creditkit_set_plan_limit'), p_plan_id: RETIRED_PLAN }) },
  { fn: 'creditkit_check', label: 'amount 2^53-1 (not allowed is an answer)', code: 'ok', args: (fx) => ({ ...valid('creditkit_check', fx), p_amount: MAX_CREDITS }) },
  { fn: 'creditkit_report', label: 'a unit the account holds none of (blocked)', code: 'ok', args: (fx) => ({ ...valid('creditkit_report', fx), p_unit: METERED_UNIT }) },
  { fn: 'creditkit_check', label: 'a unit the account holds none of (not allowed)', code: 'ok', args: (fx) => ({ ...valid('creditkit_check', fx), p_unit: METERED_UNIT }) },
  { fn: 'creditkit_my_check', label: 'a unit the account holds none of', code: 'ok', args: (fx) => ({ ...valid('creditkit_my_check', fx), p_unit: METERED_UNIT }) },
  // gating and analytics
  { fn: 'creditkit_has_credits', label: 'amount 2^53-1', code: 'ok', args: (fx) => ({ ...valid('creditkit_has_credits', fx), p_amount: MAX_CREDITS }) },
  { fn: 'creditkit_top_events', label: 'limit 1000', code: 'ok', args: () => ({ ...PERIOD, p_limit: 1000 }) },
  { fn: 'creditkit_account_margin', label: 'a period of 1µs', code: 'ok', args: () => ({ p_from: at(0), p_to: at(1) }) },
  // packs and Stripe
  { fn: 'creditkit_upsert_pack', label: 'expires after exactly 100 years, credits 2^53-1, price 0, no Stripe price', code: 'ok', args: () => ({ ...valid('creditkit_upsert_pack'), p_expires_after: '100 years', p_credits: MAX_CREDITS, p_price_amount: 0, p_stripe_price_id: null }) },
  { fn: 'creditkit_stripe_apply', label: 'an event id of 255 characters', code: 'ok', args: () => ({ p_event: { ...ignoredEvent(), id: `evt_${stripeId('x', 249)}` }, p_now: NOW }) },
  { fn: 'creditkit_stripe_apply', label: 'an event without livemode', code: 'ok', args: () => ({ p_event: { ...ignoredEvent(), livemode: undefined }, p_now: NOW }) },
  { fn: 'creditkit_stripe_events', label: 'no status (all), limit 1000', code: 'ok', args: () => ({ p_status: null, p_limit: 1000 }) },
  { fn: 'creditkit_stripe_customer', label: 'an account that does not exist (no customer: NULL)', code: 'ok', args: () => ({ p_account_id: newAccountId() }) },
  { fn: 'creditkit_stripe_link_customer', label: 'an account that does not exist yet', code: 'ok', args: () => ({ p_account_id: newAccountId(), p_customer_id: stripeId('cus', 14) }) },
  // balance alerts
  { fn: 'creditkit_set_balance_alert', label: 'threshold 0, hysteresis 2^53-1', code: 'ok', args: () => ({ ...valid('creditkit_set_balance_alert'), p_threshold: 0, p_hysteresis: MAX_CREDITS }) },
  { fn: 'creditkit_set_balance_alert', label: 'percent 100 without a threshold', code: 'ok', args: () => ({ ...valid('creditkit_set_balance_alert'), p_threshold: null, p_percent: 100 }) },
  { fn: 'creditkit_set_balance_alert', label: 'threshold and percent NULL (removes it)', code: 'ok', args: () => ({ p_unit: ALERT_UNIT, p_threshold: null }) },
  { fn: 'creditkit_set_account_balance_alert', label: 'threshold 2^53-1', code: 'ok', args: (fx) => ({ ...valid('creditkit_set_account_balance_alert', fx), p_threshold: MAX_CREDITS }) },
  { fn: 'creditkit_set_account_balance_alert', label: 'percent 0.01 without a threshold', code: 'ok', args: (fx) => ({ ...valid('creditkit_set_account_balance_alert', fx), p_threshold: null, p_percent: 0.01 }) },
  { fn: 'creditkit_set_account_balance_alert', label: 'a unit the account holds none of (opens its row)', code: 'ok', args: (fx) => ({ ...valid('creditkit_set_account_balance_alert', fx), p_unit: METERED_UNIT }) },
  { fn: 'creditkit_my_set_balance_alert', label: 'NULL (back to the default)', code: 'ok', args: (fx) => ({ ...valid('creditkit_my_set_balance_alert', fx), p_threshold: null }) },
  { fn: 'creditkit_balance_alert', label: 'an account that does not exist (no threshold, ok)', code: 'ok', args: () => ({ p_account_id: newAccountId() }) },
  // auto top-up
  // the largest top-up whose charge (amount x unit price, in cents) stays within 2^53-1
  { fn: 'creditkit_set_auto_topup_terms', label: 'unit price 1000000, min = max = 9007199254 (a charge of 2^53-1 at most), cooldown 0', code: 'ok', args: () => ({ ...valid('creditkit_set_auto_topup_terms'), p_unit_price: 1_000_000, p_min_amount: 9_007_199_254, p_max_amount: 9_007_199_254, p_cooldown: '0 seconds' }) },
  { fn: 'creditkit_set_auto_topup_terms', label: 'unit price 0.0001, no caps, no link, a 2000-character link', code: 'ok', args: () => ({ ...valid('creditkit_set_auto_topup_terms'), p_unit_price: 0.0001, p_monthly_amount_cap: null, p_monthly_count_cap: null, p_action_url: `https://${'a'.repeat(1992)}` }) },
  { fn: 'creditkit_set_auto_topup', label: 'off, with nothing else', code: 'ok', needs: [], args: (fx) => ({ p_account_id: fx.account, p_unit: 'credits', p_enabled: false, p_now: NOW }) },
  { fn: 'creditkit_set_auto_topup', label: 'amount at the terms\' bounds (100), threshold at min_threshold (10)', code: 'ok', args: (fx) => ({ ...valid('creditkit_set_auto_topup', fx), p_amount: 100, p_threshold: 10 }) },
  { fn: 'creditkit_set_auto_topup', label: 'amount 10000, caps 2^53-1 and 1', code: 'ok', args: (fx) => ({ ...valid('creditkit_set_auto_topup', fx), p_amount: 10_000, p_monthly_amount_cap: MAX_CREDITS, p_monthly_count_cap: 1 }) },
  { fn: 'creditkit_set_auto_topup', label: 'a target 1 above the threshold', code: 'ok', args: (fx) => ({ ...valid('creditkit_set_auto_topup', fx), p_amount: undefined, p_target: 51 }) },
  { fn: 'creditkit_set_auto_topup', label: 'a pack', code: 'ok', args: (fx) => ({ ...valid('creditkit_set_auto_topup', fx), p_amount: undefined, p_pack_id: TOPUP_PACK }) },
  { fn: 'creditkit_set_auto_topup', label: 'a threshold above the balance (tops up at once)', code: 'ok', args: (fx) => ({ ...valid('creditkit_set_auto_topup', fx), p_threshold: 1000 }) },
  { fn: 'creditkit_my_set_auto_topup', label: 'off, with nothing else and no card', code: 'ok', needs: [], args: (fx) => ({ p_unit: 'credits', p_enabled: false, p_account_id: fx.account }) },
  { fn: 'creditkit_my_set_auto_topup', label: 'a target', code: 'ok', args: (fx) => ({ ...valid('creditkit_my_set_auto_topup', fx), p_amount: undefined, p_target: 5000 }) },
  { fn: 'creditkit_auto_topup', label: 'an account that does not exist (off)', code: 'ok', args: () => ({ p_account_id: newAccountId() }) },
  { fn: 'creditkit_topups', label: 'every account and status, limit 1000', code: 'ok', args: () => ({ p_limit: 1000 }) },
  { fn: 'creditkit_my_topups', label: 'every unit, limit 1000', code: 'ok', args: (fx) => ({ p_unit: null, p_limit: 1000, p_account_id: fx.account }) },
  // the worker
  { fn: 'creditkit_worker_claim_topups', label: 'limit 1000, a lease of 1 second', code: 'ok', args: () => ({ p_limit: 1000, p_lease: '1 second', p_now: NOW }) },
  { fn: 'creditkit_worker_claim_deliveries', label: 'limit 1000, a lease of 1 second', code: 'ok', args: () => ({ p_limit: 1000, p_lease: '1 second', p_now: NOW }) },
  ...(['succeeded', 'requires_action', 'declined', 'retry'] as const).map((o): Case => ({
    fn: 'creditkit_worker_topup_result', label: `outcome ${o}, no payment intent, a 2000-character message`, code: 'ok',
    args: (fx) => ({ ...valid('creditkit_worker_topup_result', fx), p_outcome: o, p_payment_intent: null, p_code: 'c'.repeat(200), p_message: 'm'.repeat(2000) }),
  })),
  { fn: 'creditkit_worker_delivery_result', label: 'no answer (status NULL), a 2000-character error', code: 'ok', args: (fx) => ({ ...valid('creditkit_worker_delivery_result', fx), p_status_code: null, p_error: 'e'.repeat(2000) }) },
  { fn: 'creditkit_worker_delivery_result', label: 'status 100', code: 'ok', args: (fx) => ({ ...valid('creditkit_worker_delivery_result', fx), p_status_code: 100 }) },
  { fn: 'creditkit_worker_delivery_result', label: 'status 599', code: 'ok', args: (fx) => ({ ...valid('creditkit_worker_delivery_result', fx), p_status_code: 599 }) },
  { fn: 'creditkit_worker_delivery_result', label: 'status 200', code: 'ok', args: (fx) => ({ ...valid('creditkit_worker_delivery_result', fx), p_status_code: 200 }) },
  // notifications
  { fn: 'creditkit_upsert_webhook_endpoint', label: 'a 63-character id, a 2000-character URL, every type, a generated secret, a 500-character description', code: 'ok', args: () => ({ p_id: 'e'.repeat(63), p_url: `http://${'a'.repeat(1993)}`, p_secret: null, p_enabled: false, p_description: 'd'.repeat(500) }) },
  { fn: 'creditkit_upsert_webhook_endpoint', label: 'a secret of 24 bytes', code: 'ok', args: () => ({ ...valid('creditkit_upsert_webhook_endpoint'), p_secret: `whsec_${Buffer.alloc(24, 1).toString('base64')}` }) },
  { fn: 'creditkit_upsert_webhook_endpoint', label: 'a secret of 64 bytes', code: 'ok', args: () => ({ ...valid('creditkit_upsert_webhook_endpoint'), p_secret: `whsec_${Buffer.alloc(64, 1).toString('base64')}` }) },
  { fn: 'creditkit_notifications', label: 'every account and type, limit 1000', code: 'ok', args: () => ({ p_limit: 1000 }) },
  { fn: 'creditkit_prune_notifications', label: 'older than exactly 1 hour, as of the epoch', code: 'ok', args: () => ({ p_older_than: '1 hour', p_now: at(-100 * 365 * DAY) }) },
];

describeEachBackend('bad input', (backend) => {
  let db: TestDatabase;
  let ck: Creditkit;
  beforeAll(async () => {
    db = await createTestDatabase({ backend });
    ck = creditkit(runAs.service(db));
    await ck.upsertPlan({ p_id: PLAN, p_name: 'Pro', p_allowance: 50, p_features: { hd: true } });
    await ck.upsertPlan({ p_id: RETIRED_PLAN, p_name: 'Retired', p_active: false });
    await ck.upsertUnit({ p_id: METERED_UNIT, p_name: 'Messages', p_kind: 'metered' });
    await ck.upsertUnit({ p_id: 'held-unit', p_name: 'Held', p_kind: 'metered' });
    await ck.upsertUnit({ p_id: BOOLEAN_UNIT, p_name: 'HD', p_kind: 'boolean' });
    await ck.setPrice({ p_event: PRICED, p_credits_per_unit: 3, p_effective_from: at(0) });
    await ck.setPrice({ p_event: 'unit', p_credits_per_unit: 1, p_effective_from: at(0) });
    await ck.setPrice({ p_event: 'hd-only', p_credits_per_unit: 5, p_dimensions: { quality: 'hd' }, p_effective_from: at(0) });
    await ck.setPrice({ p_event: 'future', p_credits_per_unit: 1, p_effective_from: at(DAY) });
    await ck.call('creditkit_stripe_apply', { p_event: INBOX_EVENT, p_now: at(0) });
    // auto top-up: terms for credits, packs, a unit whose terms are off; an endpoint for balance.low
    await ck.upsertUnit({ p_id: TERMS_OFF_UNIT, p_name: 'Terms off', p_kind: 'metered' });
    await ck.upsertUnit({ p_id: ALERT_UNIT, p_name: 'Alerted', p_kind: 'metered' });
    await ck.call('creditkit_set_auto_topup_terms', TOPUP_TERMS);
    await ck.call('creditkit_set_auto_topup_terms', { ...TOPUP_TERMS, p_unit: TERMS_OFF_UNIT, p_enabled: false });
    await ck.call('creditkit_upsert_pack', { p_id: TOPUP_PACK, p_name: 'Top-up', p_credits: 500, p_price_amount: 500 });
    await ck.call('creditkit_upsert_pack', { p_id: FREE_PACK, p_name: 'Free', p_credits: 500, p_price_amount: 0 });
    await ck.call('creditkit_upsert_pack', { p_id: RETIRED_PACK, p_name: 'Retired', p_credits: 500, p_price_amount: 500, p_active: false });
    await ck.call('creditkit_upsert_pack', { p_id: MESSAGES_PACK, p_name: 'Messages', p_credits: 500, p_price_amount: 500, p_unit: METERED_UNIT });
    await ck.call('creditkit_upsert_webhook_endpoint', { p_id: HOOKS, p_url: 'https://example.com/hooks', p_event_types: '{balance.low}' });
  });
  afterAll(() => db?.drop());

  /** A card saved for off-session use, as Stripe's events report it (the payment method, then the setup). */
  async function saveCard(account: string, type = 'card'): Promise<{ customer: string; pm: string }> {
    const [customer, pm] = [stripeId('cus'), stripeId('pm')];
    await ck.call('creditkit_stripe_link_customer', { p_account_id: account, p_customer_id: customer });
    await applyEvent(ck, 'payment_method.attached', {
      id: pm, object: 'payment_method', type, customer, card: type === 'card' ? { brand: 'visa', last4: '4242', exp_month: 12, exp_year: 2034 } : null,
    });
    await applyEvent(ck, 'setup_intent.succeeded', {
      id: stripeId('seti'), object: 'setup_intent', status: 'succeeded', usage: 'off_session', customer, payment_method: pm,
    });
    return { customer, pm };
  }

  async function fixture(needs: Need[] = []): Promise<Fixture> {
    const [account, other] = [await db.createUser(), await db.createUser()];
    await ck.grant({ p_account_id: account, p_amount: 100, p_now: at(0) });
    await ck.grant({ p_account_id: other, p_amount: 100, p_now: at(0) });
    const { hold_id: hold } = await ck.reserve({ p_account_id: other, p_amount: 10, p_ttl: '1 day', p_now: at(0) });
    if (hold === null) throw new Error('the fixture hold was not reserved');
    const fx: Fixture = { db, account, other, hold };
    if (needs.includes('card') || needs.includes('topup')) fx.card = await saveCard(account);
    if (needs.includes('sepa')) fx.card = await saveCard(account, 'sepa_debit');
    if (needs.includes('topup')) {
      // on at 50 and a debit to 40: one pending top-up at commit, which a worker claims
      await ck.call('creditkit_set_auto_topup', { p_account_id: account, p_unit: 'credits', p_enabled: true, p_threshold: 50, p_amount: 500, p_now: NOW });
      await ck.consume({ p_account_id: account, p_amount: 60, p_now: NOW });
      await ck.call('creditkit_worker_claim_topups', { p_limit: 1000, p_lease: '1 hour', p_now: NOW });
      const [row] = await db.query<{ id: string; attempt: number }>(
        `select id::text, attempt from creditkit.topups where account_id = $1 and status = 'charging'`, [account]);
      if (!row) throw new Error('the fixture top-up was not claimed');
      fx.topup = { id: Number(row.id), attempt: row.attempt };
    }
    if (needs.includes('delivery') || needs.includes('claimed-delivery')) {
      // a threshold just below the balance and a consume that crosses it: balance.low, delivered to HOOKS
      const [{ spendable }] = (await db.query<{ spendable: string }>(
        `select (balance - held)::text as spendable from creditkit.accounts where id = $1 and unit = 'credits'`, [account])) as [{ spendable: string }];
      await ck.call('creditkit_set_account_balance_alert', { p_account_id: account, p_unit: 'credits', p_threshold: Number(spendable) - 1, p_now: NOW });
      await ck.consume({ p_account_id: account, p_amount: 1, p_now: NOW });
      if (needs.includes('claimed-delivery')) await ck.call('creditkit_worker_claim_deliveries', { p_limit: 1000, p_lease: '1 hour', p_now: NOW });
      const [row] = await db.query<{ id: string; attempts: number }>(
        `select d.id::text, d.attempts from creditkit.deliveries d join creditkit.notifications n on n.id = d.notification_id
          where n.account_id = $1 and n.type = 'balance.low' and d.endpoint_id = $2`, [account, HOOKS]);
      if (!row) throw new Error('the fixture delivery was not written');
      fx.delivery = { id: Number(row.id), attempt: row.attempts };
    }
    if (needs.includes('endpoint')) {
      fx.endpoint = `bad-input-${stripeId('e', 12).slice(2).toLowerCase()}`;
      await ck.call('creditkit_upsert_webhook_endpoint', { p_id: fx.endpoint, p_url: 'https://example.com/gone', p_enabled: false });
    }
    return fx;
  }
  const needsOf = (c: Case): Need[] => c.needs ?? SPECS[c.fn]?.needs ?? [];

  function runnerFor(c: Case, fx: Fixture): Runner {
    const caller = c.caller ?? SPECS[c.fn]?.caller;
    if (caller === 'owner') return runAs.user(db, fx.account);
    if (caller === 'no-sub') return runAs.role(db, 'authenticated', { role: 'authenticated' });
    return runAs.service(db);
  }

  it('the table covers every public.creditkit_* function with its real parameter list', async () => {
    const rows = await db.query<{ name: string; params: string[] }>(`
      select p.proname as name,
             (select coalesce(array_agg(n order by i), '{}') from unnest(p.proargnames, p.proargmodes) with ordinality u(n, m, i)
               where m is null or m in ('i', 'b')) as params
        from pg_proc p where p.pronamespace = 'public'::regnamespace and p.proname like 'creditkit\\_%' order by 1`);
    // proargmodes is NULL when every argument is IN; unnest then pads it with NULLs
    expect(Object.fromEntries(rows.map((r) => [r.name, r.params]))).toEqual(
      Object.fromEntries(Object.entries(SPECS).sort(([a], [b]) => a.localeCompare(b)).map(([fn, s]) => [fn, s.params])),
    );
  });

  it('every expected code is in the documented catalogue', async () => {
    const documented = new Set((await db.query<{ code: string }>('select code from creditkit.error_codes')).map((r) => r.code));
    const used = new Set(CASES.map((c) => c.code));
    expect([...used].filter((c) => !documented.has(c))).toEqual([]);
  });

  it('every valid base call succeeds, so each case below fails only because of its one change', async () => {
    const results: Record<string, string> = {};
    for (const [fn, spec] of Object.entries(SPECS)) {
      const fx = await fixture(spec.needs); // its own, as in the cases: settle and release use up the hold
      const { sql, params } = rpc(fn, spec.valid(fx));
      results[fn] = await outcome(runnerFor({ fn, label: 'valid', code: 'ok', args: spec.valid }, fx)(sql, params));
    }
    expect(results).toEqual(Object.fromEntries(Object.keys(SPECS).map((fn) => [fn, 'ok'])));
  });

  describe('raises the documented code and changes nothing', () => {
    it.each(CASES.map((c) => [`${c.fn}: ${c.label} → ${c.code}`, c] as const))('%s', async (_title, c) => {
      const fx = await fixture(needsOf(c));
      await c.prepare?.(fx, ck);
      const before = await booksDigest(db);
      const { sql, params } = rpc(c.fn, c.args(fx));
      expect(await outcome(runnerFor(c, fx)(sql, params))).toBe(c.code);
      expect(await booksDigest(db)).toEqual(before);
    });
  });

  describe('accepts the values at the edge', () => {
    it.each(ACCEPTED.map((c) => [`${c.fn}: ${c.label}`, c] as const))('%s', async (_title, c) => {
      const fx = await fixture(needsOf(c));
      const { sql, params } = rpc(c.fn, c.args(fx));
      expect(await outcome(runnerFor(c, fx)(sql, params))).toBe('ok');
    });
  });

  // it.fails: reported. The terms accept a top-up whose charge cannot be written (amount x unit
  // price above 2^53-1 cents): the crossing's top-up then violates topups_charge_amount_range
  // inside the balance watch, at the COMMIT of the customer's debit (23514), and the debit fails.
  it('auto top-up terms whose largest charge passes 2^53-1 cents are refused (CK001), not left to fail debits at commit', async () => {
    const before = await booksDigest(db);
    expect(await outcome(ck.call('creditkit_set_auto_topup_terms', { ...valid('creditkit_set_auto_topup_terms'), p_unit_price: 1_000_000, p_max_amount: MAX_CREDITS })))
      .toBe('CK001');
    expect(await booksDigest(db)).toEqual(before);
  });

  describe('answers, not errors', () => {
    it("creditkit_has_credits is false for someone else's account, and without a sub claim", async () => {
      const fx = await fixture();
      const before = await snapshotBooks(db);
      expect(await creditkit(runAs.user(db, fx.account)).hasCredits({ p_amount: 1, p_account_id: fx.other })).toBe(false);
      expect(await creditkit(runAs.role(db, 'authenticated', { role: 'authenticated' })).hasCredits({ p_amount: 1 })).toBe(false);
      expect(await snapshotBooks(db)).toEqual(before);
    });

    it("a worker's answer for an attempt that is no longer current is answered as things stand, and changes nothing", async () => {
      const fx = await fixture(['topup', 'claimed-delivery']);
      const before = await booksDigest(db);
      for (const attempt of [null, 0, fx.topup!.attempt + 1]) {
        expect((await ck.call('creditkit_worker_topup_result', { p_topup_id: fx.topup!.id, p_attempt: attempt, p_outcome: 'declined', p_now: NOW }))[0])
          .toEqual({ status: 'charging', auto_topup_status: 'active' });
      }
      for (const attempt of [null, 0, fx.delivery!.attempt + 1]) {
        expect((await ck.call('creditkit_worker_delivery_result', { p_delivery_id: fx.delivery!.id, p_attempt: attempt, p_status_code: 410, p_now: NOW }))[0])
          .toMatchObject({ status: 'delivering' });
      }
      expect(await booksDigest(db)).toEqual(before);
    });

    it('reads of an account with nothing set answer off and no threshold, not an error', async () => {
      const unknown = newAccountId();
      expect((await ck.call('creditkit_auto_topup', { p_account_id: unknown }))[0]).toMatchObject({ enabled: false, status: 'off', payment_method: null, last_topup: null });
      expect((await ck.call('creditkit_balance_alert', { p_account_id: unknown }))[0]).toMatchObject({ threshold: null, source: null, state: 'ok' });
      expect(await ck.call('creditkit_topups', { p_account_id: unknown })).toEqual([]);
      expect(await ck.call('creditkit_notifications', { p_account_id: unknown })).toEqual([]);
    });

    it('analytics for an account with no activity are empty, not an error', async () => {
      const unknown = newAccountId();
      expect(await ck.call('creditkit_account_margin', { ...PERIOD, p_account_id: unknown })).toEqual([]);
      expect(await ck.call('creditkit_usage_series', { ...PERIOD, p_account_id: unknown })).toEqual([]);
    });
  });
});
