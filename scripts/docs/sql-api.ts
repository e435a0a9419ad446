// Generates docs/sql-api.md from the database itself: signatures, comments and grants come from the
// catalog of a fresh embedded database, the errors each function can raise are found by reading
// its body (and the bodies of the creditkit functions it calls), and every example is executed
// with its output captured. `--check` fails when the committed file is stale; a test runs it.
//
//   pnpm docs:sql          # rewrite docs/sql-api.md
//   pnpm docs:sql --check  # exit 1 if it would change
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { createEmbeddedDatabase } from '@creditkit/core/embedded';
import type { PGlite, Transaction } from '@electric-sql/pglite';
import { formatTable } from '../lib/table.ts';

const DOC_PATH = fileURLToPath(new URL('../../docs/sql-api.md', import.meta.url));
const ROLES = ['anon', 'authenticated', 'service_role'] as const;

// Parameter names mean the same thing in every function.
const PARAM_DOCS: Record<string, string> = {
  p_account_id: 'The credit account (a uuid; by default a user id from `auth.users`).',
  p_amount: 'Credits, an integer from 1 to 9007199254740991 (2^53−1). Signed for `creditkit_adjust`.',
  p_category: '`plan`, `purchase`, `promotional` or `adjustment`.',
  p_expires_at: 'When the bucket stops being spendable (exclusive); NULL never expires. Must be later than `p_now`.',
  p_priority: 'Spend order among buckets with the same expiry, higher first. Default by category: promotional 30, plan 20, adjustment 10, purchase 0.',
  p_event: 'What the credit was spent on, e.g. `image_gen` (1–200 characters).',
  p_reason: 'Why the correction was made (1–500 characters); stored in the metadata as `reason`.',
  p_idempotency_key: 'Optional, 1–255 characters, unique per account. A retry with the same key returns the first result; different parameters raise CK004.',
  p_metadata: 'Optional JSON object (≤ 8192 bytes) stored on the ledger row.',
  p_now: 'The time the call acts at; defaults to `now()`. A parameter so tests need no clock tricks.',
  p_limit: 'Page size.',
  p_before_id: 'Keyset cursor: return rows with a smaller ledger id (pass the last id of the previous page).',
  p_cost_micros: 'Optional: what this usage cost you (vendor cost), in micros of your reporting currency (1 USD = 1000000). Never shown to browsers.',
  p_revenue_micros: 'Optional: what was paid for this credit, in micros of your reporting currency. Feeds the margin report.',
  p_id: 'Plan id: lowercase letters, digits, `_`, `.` or `-`.',
  p_name: 'Display name.',
  p_allowance: 'Credits granted at the start of every period (0 for a features-only plan).',
  p_period: '`day`, `week`, `month` or `year`. Boundaries are the anchor plus whole periods, in UTC (Jan 31 → Feb 28/29 → Mar 31).',
  p_renewal: '`reset`: leftover allowance expires at the boundary. `rollover`: up to `p_rollover_cap` of it is carried into the next period.',
  p_rollover_cap: 'With `rollover`: the most credit carried into a period (NULL: no cap).',
  p_features: 'Boolean feature flags, e.g. `{"hd_upscale": true}`.',
  p_price_amount: 'Price per period in the currency\'s minor unit (cents), for MRR.',
  p_currency: 'Lowercase ISO currency code.',
  p_stripe_price_id: 'The Stripe price that sells this plan (used by the Stripe integration).',
  p_is_default: 'Make this the default plan (accounts without a live subscription are on it).',
  p_active: 'Inactive plans cannot be newly chosen.',
  p_plan_id: 'A plan id from the catalogue.',
  p_status: '`active`, `trialing`, `past_due` or `canceled`. Only active and trialing subscriptions renew lazily.',
  p_anchor: 'When the subscription\'s first period started (default: `p_now`). Not in the future.',
  p_feature: 'A feature flag name.',
  p_credits_per_unit: 'Credits one unit of the event costs.',
  p_dimensions: 'Dimensions of the event, e.g. `{"quality": "hd"}`; the most specific matching price wins, `{}` is the default.',
  p_effective_from: 'When this price version starts to apply. Past usage keeps the price it paid.',
  p_quantity: 'Units of the event (1 to 2^53−1).',
  p_ttl: 'How long the hold lives before it expires by itself (default 15 minutes, at most 7 days).',
  p_hold_id: 'A hold id from `creditkit_reserve`.',
  p_actual: 'The amount actually used (0 to 2^53−1).',
  p_from: 'Start of the period (inclusive).',
  p_to: 'End of the period (exclusive).',
  p_credits: 'Credits the pack grants (1 to 2^53−1).',
  p_expires_after: 'How long the credits last after the purchase (up to 100 years); NULL: they never expire.',
  p_event_id: 'A Stripe event id (`evt_…`) in the inbox.',
  p_customer_id: 'A Stripe customer id (`cus_…`).',
  p_unit: 'The metered unit of the balance (`credits` by default; a unit from `creditkit_units()`). An unknown unit, or a boolean one, is CK015.',
  p_kind: '`metered` (a balance per account) or `boolean` (a plan feature flag).',
  p_threshold: 'A spendable balance of the unit (0 to 2^53−1): at or below it the account is low (or tops up).',
  p_percent: 'Instead of an absolute threshold: a percentage (0 < p ≤ 100) of the allowance of the plan in force for the unit.',
  p_hysteresis: 'How far above the threshold the balance must come back before `balance.recovered` (default 10% of the threshold, at least 1).',
  p_enabled: 'On or off.',
  p_target: 'Top up to this spendable balance (above the threshold) instead of by a fixed amount.',
  p_pack_id: 'Top up by buying this pack (an active, priced pack of the unit).',
  p_monthly_amount_cap: 'At most this much charged per calendar month (UTC), in the currency\'s minor unit (cents); NULL: no cap of its own.',
  p_monthly_count_cap: 'At most this many charges per calendar month (UTC); NULL: no cap of its own.',
  p_unit_price: 'The price of 1 of the unit, in the currency\'s minor unit (cents; fractions allowed, a charge rounds up to a cent).',
  p_min_amount: 'The smallest top-up, in the unit.',
  p_max_amount: 'The largest top-up, in the unit.',
  p_min_threshold: 'The lowest threshold a customer may choose.',
  p_cooldown: 'At least this long between two charges of one account and unit.',
  p_action_url: 'The link a customer follows to pay a top-up their bank wants authenticated; `{topup_id}` and `{payment_intent}` are filled in.',
  p_lease: 'How long the claimed rows are the caller\'s; a claim whose answer never came is handed out again after it.',
  p_topup_id: 'A top-up id from `creditkit_worker_claim_topups`.',
  p_attempt: 'The attempt the claim answered (a stale one changes nothing).',
  p_outcome: '`succeeded`, `processing`, `requires_action`, `declined` or `retry` (no answer from Stripe).',
  p_payment_intent: 'The PaymentIntent id (`pi_…`), when Stripe gave one.',
  p_code: 'Stripe\'s error or decline code (`card_declined`, `authentication_required`, …).',
  p_message: 'Stripe\'s message, for the operator.',
  p_delivery_id: 'A delivery id from `creditkit_worker_claim_deliveries` or `creditkit_notifications`.',
  p_status_code: 'The HTTP status the endpoint answered; NULL when none came (timeout, connection error).',
  p_error: 'What went wrong, for the operator (at most 1000 characters kept).',
  p_url: 'The endpoint\'s http(s) URL.',
  p_event_types: 'Event types to send (`balance.low`, `balance.depleted`, `balance.recovered`, `topup.succeeded`, `topup.failed`, `topup.action_required`, `plan.changed`); NULL: all.',
  p_secret: 'The signing secret, `whsec_` and the base64 of 24 to 64 bytes; NULL generates one on create and keeps it on update.',
  p_description: 'A note for the operator (up to 500 characters).',
  p_type: 'An event type; NULL: all.',
  p_older_than: 'Keep events younger than this (default 30 days, at least 1 hour).',
};

// Where a parameter means something else in one function.
const PARAM_DOCS_BY_FN: Record<string, Record<string, string>> = {
  creditkit_consume_batch: {
    p_events: 'A JSON array of 1 to 1000 usage events, each an object `{"account_id", "amount", "event"?, "idempotency_key"?, "metadata"?, "cost_micros"?}` whose keys mean what the parameters of `creditkit_consume` mean (`amount` an integer, `metadata` an object). A key left out or JSON null is NULL; any other key is refused. One item that `creditkit_consume` would refuse fails the whole call with its code.',
    p_now: 'The time every event acts at; defaults to `now()`.',
  },
  creditkit_stripe_apply: {
    p_event: 'The Stripe event as delivered, after the webhook verified its signature: `id` (`evt_…`), `type`, `created` and `data.object` are required.',
  },
  creditkit_stripe_events: {
    p_status: '`applied`, `ignored` or `dead`; NULL lists all.',
    p_limit: 'Page size (1–1000).',
  },
  creditkit_upsert_unit: {
    p_id: 'Unit id: lowercase letters, digits, `_`, `.` or `-` (e.g. `messages`).',
    p_name: 'Display name.',
  },
  creditkit_set_plan_limit: {
    p_unit: 'A metered unit other than `credits` (the plan\'s own `allowance` is its credits).',
    p_allowance: 'How much of the unit each period grants (0: available but none included); NULL removes the limit.',
    p_period: '`day`, `week`, `month` or `year`, the limit\'s own period, counted from the subscription\'s anchor (month ends clamped).',
    p_rollover_cap: 'With `rollover`: the most carried into a period (NULL: no cap).',
  },
  creditkit_upsert_webhook_endpoint: {
    p_id: 'Endpoint id: lowercase letters, digits, `_`, `.` or `-`.',
    p_enabled: 'Deliver to it; re-enabling an endpoint a 410 disabled resumes its waiting deliveries.',
  },
  creditkit_delete_webhook_endpoint: {
    p_id: 'An endpoint id.',
  },
  creditkit_topups: {
    p_status: '`pending`, `charging`, `processing`, `succeeded`, `failed`, `action_required` or `canceled`; NULL: all.',
  },
  creditkit_worker_claim_topups: {
    p_limit: 'How many to claim (1–1000).',
  },
  creditkit_worker_claim_deliveries: {
    p_limit: 'How many to claim (1–1000).',
  },
  creditkit_set_auto_topup_terms: {
    p_monthly_amount_cap: 'Default cap per account and calendar month (UTC), in cents; NULL: none.',
    p_monthly_count_cap: 'Default cap on charges per account and calendar month; NULL: none.',
    p_enabled: 'Whether customers may turn auto top-up on for the unit (off: pending top-ups are canceled when claimed).',
  },
  creditkit_upsert_pack: {
    p_id: 'Pack id: lowercase letters, digits, `_`, `.` or `-`; Checkout names it in `metadata.pack_id`.',
    p_name: 'Display name.',
    p_price_amount: 'What the pack sells for, in the currency\'s minor unit (cents); the refunded share of it decides the credits a refund takes back.',
    p_stripe_price_id: 'The Stripe price that sells this pack (optional).',
    p_active: 'Inactive packs are not listed by `creditkit_packs`; a payment for one still applies.',
  },
};

const ALICE = '00000000-0000-4000-8000-00000000a11c';
const BOB = '00000000-0000-4000-8000-000000000b0b';
const T0 = '2026-01-01T00:00:00Z';

interface Example {
  fn: string;
  as: 'service_role' | 'alice';
  sql: string;
  note?: string;
}

// Run in order on one fresh database, so ids and balances are the same every time.
const EXAMPLES: Example[] = [
  { fn: 'creditkit_grant', as: 'service_role', sql: `select * from creditkit_grant('${ALICE}', 100, 'purchase', p_idempotency_key => 'cs_test_1', p_revenue_micros => 9000000, p_now => '${T0}');` },
  { fn: 'creditkit_grant', as: 'service_role', note: 'The same key again (a webhook retry): the first result, nothing added.', sql: `select * from creditkit_grant('${ALICE}', 100, 'purchase', p_idempotency_key => 'cs_test_1', p_revenue_micros => 9000000, p_now => '${T0}');` },
  { fn: 'creditkit_grant', as: 'service_role', note: 'Promotional credit that expires after a week; it is spent before the purchase.', sql: `select * from creditkit_grant('${ALICE}', 20, 'promotional', p_expires_at => '2026-01-08T00:00:00Z', p_now => '${T0}');` },
  { fn: 'creditkit_consume', as: 'service_role', sql: `select * from creditkit_consume('${ALICE}', 30, 'image_gen', 'req_1', '{"model": "xl"}', p_now => '2026-01-02T00:00:00Z');` },
  { fn: 'creditkit_consume', as: 'service_role', note: 'More than the balance: blocked, nothing written.', sql: `select * from creditkit_consume('${ALICE}', 500, 'video_gen', p_now => '2026-01-02T00:00:00Z');` },
  { fn: 'creditkit_consume_or_raise', as: 'service_role', sql: `select * from creditkit_consume_or_raise('${ALICE}', 10, 'image_gen', p_now => '2026-01-03T00:00:00Z');` },
  { fn: 'creditkit_consume_or_raise', as: 'service_role', sql: `select * from creditkit_consume_or_raise('${ALICE}', 500, 'video_gen', p_now => '2026-01-03T00:00:00Z');` },
  { fn: 'creditkit_adjust', as: 'service_role', sql: `select * from creditkit_adjust('${ALICE}', -5, 'duplicate charge on ticket #42', p_now => '2026-01-04T00:00:00Z');` },
  { fn: 'creditkit_adjust', as: 'service_role', sql: `select * from creditkit_adjust('${ALICE}', 15, 'goodwill after outage', p_now => '2026-01-04T00:00:00Z');` },
  { fn: 'creditkit_balance', as: 'service_role', sql: `select * from creditkit_balance('${ALICE}', p_now => '2026-01-05T00:00:00Z');` },
  { fn: 'creditkit_balance', as: 'service_role', note: 'After the promotional bucket expired: its remainder is booked as an expire row on this first touch.', sql: `select balance, next_expiry from creditkit_balance('${ALICE}', p_now => '2026-01-09T00:00:00Z');` },
  { fn: 'creditkit_history', as: 'service_role', sql: `select id, kind, amount, balance_after, grant_id, event, idempotency_key, metadata, created_at from creditkit_history('${ALICE}', p_limit => 4);` },
  { fn: 'creditkit_history', as: 'service_role', note: 'The next page: pass the last id you saw.', sql: `select id, kind, amount, balance_after from creditkit_history('${ALICE}', p_limit => 4, p_before_id => 5);` },
  { fn: 'creditkit_book_expired', as: 'service_role', sql: `select creditkit_book_expired(p_now => '2026-02-01T00:00:00Z');` },
  { fn: 'creditkit_my_balance', as: 'alice', sql: `select account_id, balance, next_expiry from creditkit_my_balance();` },
  { fn: 'creditkit_my_balance', as: 'alice', note: 'Someone else\'s account:', sql: `select * from creditkit_my_balance('${BOB}');` },
  { fn: 'creditkit_my_history', as: 'alice', sql: `select id, kind, amount, balance_after, event from creditkit_my_history(p_limit => 3);` },
  // plans
  { fn: 'creditkit_upsert_plan', as: 'service_role', sql: `select creditkit_upsert_plan('pro', 'Pro', p_allowance => 1000, p_renewal => 'rollover', p_rollover_cap => 500, p_features => '{"hd_upscale": true}', p_price_amount => 1900) ->> 'id' as plan;` },
  { fn: 'creditkit_set_plan', as: 'service_role', note: 'Bob subscribes on Jan 31: his periods end on Feb 29 (2028 is a leap year), Mar 31, Apr 30, ...', sql: `select * from creditkit_set_plan('${BOB}', 'pro', p_now => '2028-01-31T12:00:00Z');` },
  { fn: 'creditkit_set_plan', as: 'service_role', note: 'No cron: the first touch after the boundary books the renewal. 300 spent, 700 left, 500 of it rolls over (the cap):', sql: `select * from creditkit_consume('${BOB}', 300, 'chat', p_now => '2028-02-10T00:00:00Z');` },
  { fn: 'creditkit_set_plan', as: 'service_role', sql: `select balance, next_expiry from creditkit_balance('${BOB}', p_now => '2028-02-29T12:00:00Z');` },
  { fn: 'creditkit_has_feature', as: 'service_role', sql: `select creditkit_has_feature('${BOB}', 'hd_upscale') as bob, creditkit_has_feature('${ALICE}', 'hd_upscale') as alice;` },
  { fn: 'creditkit_plans', as: 'alice', sql: `select id, name, allowance, period, renewal, features, price_amount, currency from creditkit_plans();` },
  { fn: 'creditkit_my_plan', as: 'alice', sql: `select plan_id, status, allowance, features from creditkit_my_plan();` },
  { fn: 'creditkit_my_feature', as: 'alice', sql: `select creditkit_my_feature('hd_upscale');` },
  // pricing
  { fn: 'creditkit_set_price', as: 'service_role', sql: `select creditkit_set_price('image_gen', 4, p_effective_from => '2026-01-01T00:00:00Z') as default_price, creditkit_set_price('image_gen', 10, '{"quality": "hd"}', '2026-01-01T00:00:00Z') as hd_price;` },
  { fn: 'creditkit_quote', as: 'alice', sql: `select * from creditkit_quote('image_gen', 3, '{"quality": "hd", "size": "1024"}', p_now => '2026-01-10T00:00:00Z');` },
  { fn: 'creditkit_meter', as: 'service_role', sql: `select * from creditkit_meter('${ALICE}', 'image_gen', 2, '{"quality": "hd"}', 'req_9', p_cost_micros => 80000, p_now => '2026-01-10T00:00:00Z');` },
  { fn: 'creditkit_meter', as: 'service_role', note: 'An event with no price:', sql: `select * from creditkit_meter('${ALICE}', 'video_gen', p_now => '2026-01-10T00:00:00Z');` },
  // holds
  { fn: 'creditkit_reserve', as: 'service_role', sql: `select * from creditkit_reserve('${ALICE}', 30, interval '10 minutes', 'video_gen', 'job_7', p_now => '2026-01-10T00:00:00Z');` },
  { fn: 'creditkit_settle', as: 'service_role', sql: `select * from creditkit_settle(1, 18, p_cost_micros => 250000, p_now => '2026-01-10T00:05:00Z');` },
  { fn: 'creditkit_release', as: 'service_role', sql: `select * from creditkit_release((select hold_id from creditkit_reserve('${ALICE}', 5, p_now => '2026-01-10T00:06:00Z')), p_now => '2026-01-10T00:06:30Z');` },
  // gating
  { fn: 'creditkit_has_credits', as: 'alice', sql: `select creditkit_has_credits(10) as ten, creditkit_has_credits(1000000) as a_million, creditkit_has_credits(1, '${BOB}') as bobs;` },
  // analytics
  { fn: 'creditkit_account_margin', as: 'service_role', sql: `select * from creditkit_account_margin('2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z');` },
  { fn: 'creditkit_usage_series', as: 'service_role', sql: `select * from creditkit_usage_series('2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z', '${ALICE}');` },
  { fn: 'creditkit_top_events', as: 'service_role', sql: `select * from creditkit_top_events('2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z', 5);` },
  { fn: 'creditkit_credits_outstanding', as: 'service_role', sql: `select * from creditkit_credits_outstanding(p_now => '2028-03-01T00:00:00Z');` },
  { fn: 'creditkit_accounts_per_plan', as: 'service_role', sql: `select * from creditkit_accounts_per_plan();` },
  { fn: 'creditkit_mrr', as: 'service_role', sql: `select * from creditkit_mrr();` },
  // packs and Stripe (last, so the examples above keep their balances)
  { fn: 'creditkit_upsert_pack', as: 'service_role', sql: `select creditkit_upsert_pack('credits-100', '100 credits', 100, 900, p_stripe_price_id => 'price_1QPack100') ->> 'id' as pack;` },
  { fn: 'creditkit_packs', as: 'alice', sql: `select id, name, credits, price_amount, currency, expires_after from creditkit_packs();` },
  { fn: 'creditkit_stripe_link_customer', as: 'service_role', sql: `select creditkit_stripe_link_customer('${ALICE}', 'cus_QxAlice');` },
  { fn: 'creditkit_stripe_customer', as: 'service_role', sql: `select creditkit_stripe_customer('${ALICE}');` },
  { fn: 'creditkit_stripe_apply', as: 'service_role', note: 'Alice paid for a pack in Checkout:', sql: `select * from creditkit_stripe_apply('${stripeEvent('evt_1QPackPaid', 'checkout.session.completed', 1768089600, { id: 'cs_test_a1Pack', object: 'checkout.session', mode: 'payment', payment_status: 'paid', amount_total: 900, currency: 'usd', customer: 'cus_QxAlice', payment_intent: 'pi_3QxPack', metadata: { account_id: ALICE, pack_id: 'credits-100' } })}', p_now => '2026-01-11T00:00:05Z');` },
  { fn: 'creditkit_stripe_apply', as: 'service_role', note: 'Stripe delivers it again: nothing changes.', sql: `select * from creditkit_stripe_apply('${stripeEvent('evt_1QPackPaid', 'checkout.session.completed', 1768089600, { id: 'cs_test_a1Pack', object: 'checkout.session', mode: 'payment', payment_status: 'paid', amount_total: 900, currency: 'usd', customer: 'cus_QxAlice', payment_intent: 'pi_3QxPack', metadata: { account_id: ALICE, pack_id: 'credits-100' } })}', p_now => '2026-01-11T00:05:00Z');` },
  { fn: 'creditkit_stripe_apply', as: 'service_role', note: 'A checkout for a pack that is not in the catalogue: dead, kept for the operator.', sql: `select * from creditkit_stripe_apply('${stripeEvent('evt_1QBigPackPaid', 'checkout.session.completed', 1768176000, { id: 'cs_test_a1Big', object: 'checkout.session', mode: 'payment', payment_status: 'paid', amount_total: 3900, currency: 'usd', customer: 'cus_QxAlice', payment_intent: 'pi_3QxBig', metadata: { account_id: ALICE, pack_id: 'credits-500' } })}', p_now => '2026-01-12T00:00:05Z');` },
  { fn: 'creditkit_stripe_events', as: 'service_role', sql: `select id, type, status, effect, error_code, deliveries from creditkit_stripe_events();` },
  { fn: 'creditkit_upsert_pack', as: 'service_role', note: 'The operator adds the pack the dead event named (see `creditkit_stripe_replay`):', sql: `select creditkit_upsert_pack('credits-500', '500 credits', 500, 3900) ->> 'id' as pack;` },
  { fn: 'creditkit_stripe_replay', as: 'service_role', sql: `select * from creditkit_stripe_replay('evt_1QBigPackPaid', p_now => '2026-01-12T01:00:00Z');` },
  // batch consume (after the packs, so Alice has credit to spend)
  { fn: 'creditkit_consume_batch', as: 'service_role', note: 'Usage buffered by a worker and flushed at once: two accounts, one event more than Bob can cover (blocked), and a retried event (its key again) that answers its first result.', sql: `select * from creditkit_consume_batch('${JSON.stringify([
    { account_id: ALICE, amount: 40, event: 'chat', idempotency_key: 'evt_101', cost_micros: 3000 },
    { account_id: BOB, amount: 5000, event: 'video_gen', idempotency_key: 'evt_102' },
    { account_id: ALICE, amount: 25, event: 'image_gen', idempotency_key: 'evt_103', metadata: { model: 'xl' } },
    { account_id: ALICE, amount: 40, event: 'chat', idempotency_key: 'evt_101', cost_micros: 3000 },
  ])}', p_now => '2028-03-01T12:00:00Z');` },
  { fn: 'creditkit_consume_batch', as: 'service_role', note: 'The worker retries the whole flush: every event is a replay, nothing is spent twice.', sql: `select * from creditkit_consume_batch('${JSON.stringify([
    { account_id: ALICE, amount: 40, event: 'chat', idempotency_key: 'evt_101', cost_micros: 3000 },
    { account_id: BOB, amount: 5000, event: 'video_gen', idempotency_key: 'evt_102' },
    { account_id: ALICE, amount: 25, event: 'image_gen', idempotency_key: 'evt_103', metadata: { model: 'xl' } },
  ])}', p_now => '2028-03-01T12:05:00Z');` },
  // units (last: a balance of another unit beside the credits above)
  { fn: 'creditkit_upsert_unit', as: 'service_role', sql: `select creditkit_upsert_unit('messages', 'Chat messages', 'metered') ->> 'id' as metered, creditkit_upsert_unit('hd_upscale', 'HD upscale', 'boolean') ->> 'id' as flag;` },
  { fn: 'creditkit_units', as: 'alice', sql: `select * from creditkit_units();` },
  { fn: 'creditkit_set_plan_limit', as: 'service_role', note: 'Pro includes 100 messages a day:', sql: `select creditkit_set_plan_limit('pro', 'messages', 100, 'day') - 'created_at' as plan_limit;` },
  { fn: 'creditkit_check', as: 'service_role', note: 'Bob is on Pro: his first touch of messages opens them with the day\'s 100.', sql: `select * from creditkit_check('${BOB}', 'messages', 1, '2028-03-01T13:00:00Z');` },
  { fn: 'creditkit_report', as: 'service_role', sql: `select * from creditkit_report('${BOB}', 'messages', 3, 'msg_1', 'chat', p_now => '2028-03-01T13:00:01Z');` },
  { fn: 'creditkit_report', as: 'service_role', note: 'Alice\'s plan (free) includes no messages: blocked.', sql: `select * from creditkit_report('${ALICE}', 'messages', 1, p_now => '2028-03-01T13:00:01Z');` },
  { fn: 'creditkit_check', as: 'service_role', note: 'The next day: a fresh 100, booked by this check.', sql: `select * from creditkit_check('${BOB}', 'messages', 100, '2028-03-02T13:00:00Z');` },
  { fn: 'creditkit_my_check', as: 'alice', sql: `select * from creditkit_my_check('credits', 50);` },
  { fn: 'creditkit_consume_batch', as: 'service_role', note: 'One invalid event fails the whole call and spends nothing:', sql: `select * from creditkit_consume_batch('${JSON.stringify([
    { account_id: ALICE, amount: 1, event: 'chat' },
    { account_id: ALICE, amount: 0, event: 'chat' },
  ])}', p_now => '2028-03-01T12:10:00Z');` },
  // balance alerts, auto top-up and notifications (last: Alice's card and a top-up)
  { fn: 'creditkit_upsert_webhook_endpoint', as: 'service_role', note: 'A secret is generated when none is given; this one is fixed so the example is the same every time.', sql: `select id, url, event_types, enabled from creditkit_upsert_webhook_endpoint('alerts', 'https://example.com/api/creditkit-events', '{balance.low,topup.succeeded,topup.failed}', 'whsec_${'A'.repeat(43)}=');` },
  { fn: 'creditkit_set_account_balance_alert', as: 'service_role', note: 'Alice is already below her new threshold: she reads as low at once, quietly (the next crossing writes balance.low).', sql: `select * from creditkit_set_account_balance_alert('${ALICE}', 'credits', 1000, p_now => '2028-03-03T00:00:00Z');` },
  { fn: 'creditkit_my_balance_alert', as: 'alice', sql: `select threshold, source, state, spendable from creditkit_my_balance_alert();` },
  { fn: 'creditkit_set_auto_topup_terms', as: 'service_role', note: '1 cent a credit, 100 to 5,000 at a time, at most $100 a month, an hour apart:', sql: `select unit, currency, unit_price, min_amount, max_amount, monthly_amount_cap, cooldown from creditkit_set_auto_topup_terms('credits', 'usd', 1, 100, 5000, p_monthly_amount_cap => 10000, p_cooldown => '1 hour', p_action_url => 'https://example.com/billing?topup={topup_id}');` },
  { fn: 'creditkit_stripe_apply', as: 'service_role', note: 'Alice saved a card (Checkout in setup mode): the webhook records it.', sql: `select status, effect from creditkit_stripe_apply('${stripeEvent('evt_1QCardSaved', 'setup_intent.succeeded', 1772582400, { id: 'seti_1QxAlice', object: 'setup_intent', status: 'succeeded', usage: 'off_session', customer: 'cus_QxAlice', payment_method: 'pm_1QxVisa' })}', p_now => '2028-03-03T00:00:01Z');` },
  { fn: 'creditkit_my_set_auto_topup', as: 'alice', note: 'Alice (587 credits) is already below 600: the first top-up starts now.', sql: `select enabled, status, threshold, amount, currency, payment_method ->> 'id' as card, last_topup ->> 'status' as last_topup from creditkit_my_set_auto_topup('credits', true, 600, 500);` },
  { fn: 'creditkit_worker_claim_topups', as: 'service_role', sql: `select topup_id, attempt, idempotency_key, amount, charge_amount, currency, customer_id, payment_method from creditkit_worker_claim_topups(p_now => '2028-03-03T00:01:00Z');` },
  { fn: 'creditkit_worker_topup_result', as: 'service_role', note: 'Stripe charged it; the credits land from payment_intent.succeeded.', sql: `select * from creditkit_worker_topup_result(1, 1, 'succeeded', 'pi_3QxTopup', p_now => '2028-03-03T00:01:02Z');` },
  { fn: 'creditkit_my_topups', as: 'alice', sql: `select id, status, amount, charge_amount, currency, payment_intent from creditkit_my_topups();` },
];

/** A minimal Stripe event as JSON text for the examples (the envelope Stripe sends, a trimmed object). */
function stripeEvent(id: string, type: string, created: number, object: Record<string, unknown>): string {
  return JSON.stringify({ id, object: 'event', type, created, livemode: false, data: { object } });
}

interface FnInfo {
  name: string;
  signature: string;
  args: { name: string; type: string; default: string | null }[];
  argList: string;
  result: string;
  comment: string;
  definer: boolean;
  volatility: string;
  roles: Record<(typeof ROLES)[number], boolean>;
  body: string;
}

async function catalog(db: PGlite): Promise<FnInfo[]> {
  const rows = (
    await db.query<{
      name: string; signature: string; args: string; result: string; comment: string | null;
      definer: boolean; volatility: string; body: string; anon: boolean; authenticated: boolean; service_role: boolean;
    }>(`
      select p.proname as name, p.oid::regprocedure::text as signature,
             pg_get_function_arguments(p.oid) as args, pg_get_function_result(p.oid) as result,
             obj_description(p.oid, 'pg_proc') as comment, p.prosecdef as definer,
             case p.provolatile when 'i' then 'immutable' when 's' then 'stable' else 'volatile' end as volatility,
             p.prosrc as body,
             has_function_privilege('anon', p.oid, 'execute') as anon,
             has_function_privilege('authenticated', p.oid, 'execute') as authenticated,
             has_function_privilege('service_role', p.oid, 'execute') as service_role
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       -- functions only: the one aggregate (creditkit.running_sum) is an internal of the batch
       where p.prokind = 'f' and ((n.nspname = 'public' and p.proname like 'creditkit\\_%') or n.nspname = 'creditkit')
       order by n.nspname = 'creditkit', p.proname`)
  ).rows;
  return rows.map((r) => {
    const all = r.args.split(/,\s*(?![^(]*\))/).filter(Boolean);
    const outs = all.filter((a) => a.startsWith('OUT ')).map((a) => a.slice(4));
    const ins = all.filter((a) => !a.startsWith('OUT '));
    return {
    name: r.name,
    signature: r.signature,
    args: ins.map((a) => {
      const m = /^(\w+) (.+?)(?: DEFAULT (.+))?$/.exec(a.trim())!;
      return { name: m[1]!, type: m[2]!, default: m[3] ?? null };
    }),
    argList: ins.join(',\n  '),
    // OUT parameters make the result a single row; name its columns rather than say "record".
    result: r.result === 'record' && outs.length ? `one row (${outs.join(', ')})` : r.result,
    comment: r.comment ?? '',
    definer: r.definer,
    volatility: r.volatility,
    roles: { anon: r.anon, authenticated: r.authenticated, service_role: r.service_role },
    body: r.body,
    };
  });
}

// The CK codes a function can raise: its own `errcode = 'CK…'` plus those of the kit functions it calls.
function errorsOf(fns: FnInfo[]): Map<string, string[]> {
  const byName = new Map(fns.map((f) => [f.name, f]));
  const memo = new Map<string, Set<string>>();
  const visit = (name: string, seen: Set<string>): Set<string> => {
    if (memo.has(name)) return memo.get(name)!;
    const f = byName.get(name);
    const codes = new Set<string>();
    if (!f || seen.has(name)) return codes;
    seen.add(name);
    for (const m of f.body.matchAll(/errcode = '(CK\d{3})'/g)) codes.add(m[1]!);
    for (const m of f.body.matchAll(/(?:creditkit\.|public\.)(\w+)\(/g)) if (m[1] !== name) for (const c of visit(m[1]!, seen)) codes.add(c);
    memo.set(name, codes);
    return codes;
  };
  return new Map(fns.map((f) => [f.name, [...visit(f.name, new Set())].sort()]));
}

async function runExample(db: PGlite, ex: Example): Promise<string> {
  const claims = ex.as === 'alice' ? { sub: ALICE, role: 'authenticated' } : { role: 'service_role' };
  const role = ex.as === 'alice' ? 'authenticated' : 'service_role';
  try {
    const rows = await db.transaction(async (tx: Transaction) => {
      await tx.query(`select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)`, [role, JSON.stringify(claims)]);
      return (await tx.query<Record<string, unknown>>(ex.sql)).rows;
    });
    return formatTable(rows);
  } catch (e) {
    const err = e as { code?: string; message: string; detail?: string };
    return `ERROR:  ${err.code}: ${err.message}${err.detail ? `\nDETAIL:  ${err.detail}` : ''}`;
  }
}

export async function renderSqlApiDocs(): Promise<string> {
  const db = await createEmbeddedDatabase({ defaultPrivileges: 'supabase' });
  try {
    await db.query(`insert into auth.users (id, email) values ($1, 'alice@example.com'), ($2, 'bob@example.com')`, [ALICE, BOB]);
    const fns = await catalog(db);
    const errors = errorsOf(fns);
    const codes = (await db.query<{ code: string; name: string; description: string }>(`select * from creditkit.error_codes order by code`)).rows;
    const outputs = new Map<Example, string>();
    for (const ex of EXAMPLES) outputs.set(ex, await runExample(db, ex));

    const api = fns.filter((f) => f.name.startsWith('creditkit_'));
    const who = (f: FnInfo) => ROLES.filter((r) => f.roles[r]).join(', ') || 'nobody (internal)';
    const out: string[] = [];
    out.push(`# creditkit SQL API

<!-- Generated by scripts/docs/sql-api.ts from the migrations; do not edit. Run \`pnpm docs:sql\`. -->

The callable API is the \`public.creditkit_*\` functions below; everything else lives in the private
schema \`creditkit\`, which the Data API does not expose. From supabase-js call them with
\`supabase.rpc('creditkit_consume', { p_account_id, p_amount, ... })\`; from SQL, by name.

Conventions:
- **Amounts** are integer credits (\`bigint\`), at most 9007199254740991 (2^53−1) so they are exact in JavaScript.
- **Server-only** functions are executable by \`service_role\` alone. **Caller-bound** functions
  (\`creditkit_my_*\`) are for signed-in users and only ever show accounts the caller may read.
- **Idempotency**: every mutation takes \`p_idempotency_key\`. A retry with the same key returns the
  first result without a second effect, also when the duplicates race; the same key with different
  parameters raises \`CK004\`. A blocked consume writes nothing, so retrying it is evaluated afresh.
- **Time** is a parameter, \`p_now timestamptz default now()\`, wherever expiry matters.
- **Expiry**: a bucket with \`expires_at = T\` is spendable strictly before \`T\`. Its remainder is
  booked as an \`expire\` ledger row the first time the account is touched at or after \`T\`
  (no cron; \`creditkit_book_expired\` is an optional sweep for reports).
- **Spend order**: soonest expiry first (never-expiring last), then higher priority (promotional
  before plan before adjustment before purchase by default), then oldest.
- Errors are raised with a stable SQLSTATE from the [catalogue](#error-codes); \`DETAIL\` carries
  JSON where noted. Examples below ran against a fresh database; their output is pasted verbatim.

## Contents
${api.map((f) => `- [\`${f.name}\`](#${f.name}) — ${f.comment.split('. ')[0]!.replace(/\.$/, '')}`).join('\n')}
- [Security: who may call what](#security-who-may-call-what)
- [Error codes](#error-codes)
- [Insert trigger: charge in your own transaction](#insert-trigger-charge-in-your-own-transaction)
- [Account access (team accounts)](#account-access-team-accounts)
`);

    for (const f of api) {
      out.push(`## ${f.name}\n`);
      out.push(`\`\`\`sql\npublic.${f.name}(\n  ${f.argList}\n) returns ${f.result}\n\`\`\`\n`);
      out.push(`${f.comment}\n`);
      if (f.args.length) {
        out.push('| parameter | type | default | meaning |\n|---|---|---|---|');
        for (const a of f.args) out.push(`| \`${a.name}\` | ${a.type} | ${a.default ? `\`${a.default}\`` : 'required'} | ${PARAM_DOCS_BY_FN[f.name]?.[a.name] ?? PARAM_DOCS[a.name] ?? ''} |`);
        out.push('');
      }
      out.push(`- **Returns**: \`${f.result}\``);
      out.push(`- **Who may call**: ${who(f)} (${f.definer ? 'security definer' : 'security invoker'}, ${f.volatility})`);
      const errs = errors.get(f.name)!;
      out.push(`- **Errors**: ${errs.length ? errs.map((c) => `\`${c}\` ${codes.find((k) => k.code === c)?.name}`).join(', ') : 'none of its own'}${f.roles.anon ? '' : '; `42501` permission denied for roles without EXECUTE'}\n`);
      for (const ex of EXAMPLES.filter((e) => e.fn === f.name)) {
        if (ex.note) out.push(ex.note + '\n');
        out.push(`\`\`\`sql\n-- as ${ex.as === 'alice' ? 'alice (authenticated)' : 'the service role'}\n${ex.sql}\n\`\`\`\n\`\`\`text\n${outputs.get(ex)}\n\`\`\`\n`);
      }
    }

    out.push(`## Security: who may call what

Generated from \`has_function_privilege\` on a database with Supabase's default privileges in force
(the same holds with them revoked; both are tested). ✅ = EXECUTE.

| function | anon | authenticated | service_role | kind |
|---|---|---|---|---|
${fns.map((f) => `| \`${f.signature.replace(/\(.*/, '')}\` | ${ROLES.map((r) => (f.roles[r] ? '✅' : '—')).join(' | ')} | ${f.definer ? 'definer' : 'invoker'} |`).join('\n')}

Tables: \`creditkit.accounts\`, \`creditkit.grants\`, \`creditkit.ledger\` and \`creditkit.error_codes\`
grant SELECT to \`authenticated\` (filtered by RLS through \`creditkit.can_access_account\`) and to
\`service_role\`; nothing else to anyone, so no client role can INSERT, UPDATE, DELETE, TRUNCATE or
REFERENCE them. \`anon\` has no USAGE on schema \`creditkit\`. The ledger also refuses UPDATE, DELETE
and TRUNCATE from its owner (\`CK008\`, by trigger).

Security definer functions exist only where a write is needed (no client role can write the
tables); each is granted to \`service_role\` only and also refuses \`anon\`/\`authenticated\` callers
itself (\`CK005\`), so a careless \`grant execute … to authenticated\` does not open it.

## Error codes

| SQLSTATE | name | meaning |
|---|---|---|
${codes.map((c) => `| \`${c.code}\` | \`${c.name}\` | ${c.description} |`).join('\n')}

Besides these: \`42501\` (permission denied) when a role lacks EXECUTE or table privileges, and
\`55P03\` (lock_not_available) when a call that writes gave up waiting for an account's row lock
that another transaction held (an app's own transaction left open, a stuck one): every function
that writes waits at most \`lock_timeout\` (3 seconds; \`select creditkit.set_lock_timeout('5
seconds')\` as the kit's owner changes it for all of them), and changes nothing when it gives up.
Reads and refusals never wait. The SDK reports it as \`LockTimeoutError\` after one retry.

## Insert trigger: charge in your own transaction

\`creditkit.charge_on_insert(event [, quantity [, account_column]])\` is a trigger function for your
own tables. It meters the inserting user's account with \`creditkit_meter\` (so the event needs a
price) inside the INSERT's transaction: when the account cannot pay, the insert fails with
\`CK002\`; when the transaction rolls back, so does the charge. With a third argument it charges the
account id found in that column of the new row instead (team accounts; the caller must be allowed
to read that account, and a server insert without a signed-in user must name it).

\`\`\`sql
create trigger charge_image_gen
  before insert on public.tasks
  for each row execute function creditkit.charge_on_insert('image_gen', '4');
\`\`\`

\`creditkit_has_credits(n)\` is the read-only counterpart for RLS policies. Add it as a
**restrictive** policy: Postgres ORs permissive policies together, so next to your own "insert
own rows" policy a permissive credit check would let a user without credit through, while a
restrictive one must pass as well.

\`\`\`sql
create policy "adding a task needs 4 credits"
  on public.tasks as restrictive for insert to authenticated
  with check ((select creditkit_has_credits(4)));
\`\`\`

Like any STABLE function in a policy, it sees the balance as of the start of the statement, so
beside the trigger above it checks what the account had before this insert charged it.

## Account access (team accounts)

\`creditkit.can_access_account(p_account_id uuid) returns boolean\` decides what a signed-in caller
may read: the RLS policies on every kit table and the \`creditkit_my_*\` functions call it. The default
is a personal account: the account id is the caller's \`auth.uid()\`. For team accounts, replace it in
one of your own migrations (creditkit creates it once and never replaces it):

\`\`\`sql
create or replace function creditkit.can_access_account(p_account_id uuid)
returns boolean
language sql
stable
security definer -- reads your membership table, which the caller may not be able to read
set search_path = ''
as $$
  select p_account_id = (select auth.uid())
      or exists (select 1 from public.team_members m
                  where m.team_id = p_account_id and m.user_id = (select auth.uid()));
$$;
\`\`\`

Keep its signature, keep it \`stable\` and \`search_path = ''\`, and never return true for a NULL
\`auth.uid()\`.
`);
    return out.join('\n');
  } finally {
    await db.close();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const doc = await renderSqlApiDocs();
  if (process.argv.includes('--check')) {
    const current = await readFile(DOC_PATH, 'utf8').catch(() => '');
    if (current !== doc) {
      console.error('docs/sql-api.md is stale: run `pnpm docs:sql`');
      process.exit(1);
    }
    console.log('docs/sql-api.md is up to date');
  } else {
    await writeFile(DOC_PATH, doc);
    console.log(`wrote ${DOC_PATH}`);
  }
}
