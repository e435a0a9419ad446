// The core ledger scenarios, run on PGlite and on real Postgres under both default-privilege
// modes, so the embedded default is shown to behave like the server the kit ships to. Every
// scenario uses its own account; after each mutation the books must still balance
// (accounts.balance = sum(ledger.amount) = sum(grants.remaining)), checked as the superuser.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type PrivilegeMode, type TestDatabase } from '@creditkit/testing';
import { describeEachBackend } from '@creditkit/testing/vitest';
import {
  DAY, HOUR, at, creditkit, expectConsistent, grantsOf, ledgerOf, microsSql, newAccountId, openAccount, outcome,
  rpc, runAs, snapshotBooks, type Args, type Creditkit,
} from './support.ts';

const MODES: PrivilegeMode[] = ['supabase', 'revoked'];

// One representative call per server function, for the privilege checks below.
const SERVER_CALLS: Record<string, (account: string) => Args> = {
  creditkit_grant: (a) => ({ p_account_id: a, p_amount: 1 }),
  creditkit_consume: (a) => ({ p_account_id: a, p_amount: 1 }),
  creditkit_consume_or_raise: (a) => ({ p_account_id: a, p_amount: 1 }),
  creditkit_consume_batch: (a) => ({ p_events: [{ account_id: a, amount: 1 }] }),
  creditkit_adjust: (a) => ({ p_account_id: a, p_amount: -1, p_reason: 'test' }),
  creditkit_balance: (a) => ({ p_account_id: a }),
  creditkit_history: (a) => ({ p_account_id: a }),
  creditkit_book_expired: () => ({}),
  creditkit_upsert_plan: () => ({ p_id: 'x', p_name: 'X' }),
  creditkit_set_plan: (a) => ({ p_account_id: a, p_plan_id: 'free' }),
  creditkit_has_feature: (a) => ({ p_account_id: a, p_feature: 'x' }),
  creditkit_set_price: () => ({ p_event: 'e', p_credits_per_unit: 1 }),
  creditkit_meter: (a) => ({ p_account_id: a, p_event: 'e' }),
  creditkit_reserve: (a) => ({ p_account_id: a, p_amount: 1 }),
  creditkit_settle: () => ({ p_hold_id: 1, p_actual: 1 }),
  creditkit_release: () => ({ p_hold_id: 1 }),
  creditkit_account_margin: () => ({ p_from: '2020-01-01T00:00:00Z', p_to: '2030-01-01T00:00:00Z' }),
  creditkit_unit_usage: () => ({ p_from: '2020-01-01T00:00:00Z', p_to: '2030-01-01T00:00:00Z' }),
  creditkit_usage_series: () => ({ p_from: '2020-01-01T00:00:00Z', p_to: '2030-01-01T00:00:00Z' }),
  creditkit_top_events: () => ({ p_from: '2020-01-01T00:00:00Z', p_to: '2030-01-01T00:00:00Z' }),
  creditkit_credits_outstanding: () => ({}),
  creditkit_accounts_per_plan: () => ({}),
  creditkit_mrr: () => ({}),
  // units
  creditkit_upsert_unit: () => ({ p_id: 'x', p_name: 'X' }),
  creditkit_set_plan_limit: () => ({ p_plan_id: 'free', p_unit: 'credits', p_allowance: 1 }),
  creditkit_check: (a) => ({ p_account_id: a }),
  creditkit_report: (a) => ({ p_account_id: a, p_unit: 'credits', p_amount: 1 }),
  // packs and Stripe
  creditkit_upsert_pack: () => ({ p_id: 'x', p_name: 'X', p_credits: 1 }),
  creditkit_stripe_apply: (a) => ({
    p_event: {
      id: 'evt_1QprivilegeCheck', object: 'event', type: 'checkout.session.completed', created: 1893456000, livemode: false,
      data: { object: { id: 'cs_test_1', object: 'checkout.session', mode: 'payment', payment_status: 'paid', payment_intent: 'pi_1',
                        metadata: { account_id: a, pack_id: 'x' } } },
    },
  }),
  creditkit_stripe_replay: () => ({ p_event_id: 'evt_1QprivilegeCheck' }),
  creditkit_stripe_events: () => ({}),
  creditkit_stripe_customer: (a) => ({ p_account_id: a }),
  creditkit_stripe_link_customer: (a) => ({ p_account_id: a, p_customer_id: 'cus_1QprivilegeCheck' }),
  // auto top-up and balance alerts
  creditkit_set_auto_topup_terms: () => ({ p_unit: 'credits', p_currency: 'usd', p_unit_price: 1, p_min_amount: 1, p_max_amount: 1000 }),
  creditkit_set_balance_alert: () => ({ p_unit: 'credits', p_threshold: 10 }),
  creditkit_set_account_balance_alert: (a) => ({ p_account_id: a, p_unit: 'credits', p_threshold: 10 }),
  creditkit_balance_alert: (a) => ({ p_account_id: a }),
  creditkit_set_auto_topup: (a) => ({ p_account_id: a, p_unit: 'credits', p_enabled: false, p_threshold: 10 }),
  creditkit_auto_topup: (a) => ({ p_account_id: a }),
  creditkit_topups: (a) => ({ p_account_id: a }),
  creditkit_worker_claim_topups: () => ({}),
  creditkit_worker_topup_result: () => ({ p_topup_id: 1, p_attempt: 1, p_outcome: 'retry' }),
  // notifications
  creditkit_upsert_webhook_endpoint: () => ({ p_id: 'x', p_url: 'https://example.test/hook' }),
  creditkit_webhook_endpoints: () => ({}),
  creditkit_notifications: (a) => ({ p_account_id: a }),
  creditkit_replay_delivery: () => ({ p_delivery_id: 1 }),
  creditkit_prune_notifications: () => ({}),
  creditkit_worker_claim_deliveries: () => ({}),
  creditkit_worker_delivery_result: () => ({ p_delivery_id: 1, p_attempt: 1, p_status_code: 200 }),
};
// Signed-in users only (the service role has no user to be).
const CALLER_BOUND: Record<string, (account: string) => Args> = {
  creditkit_my_balance: (a) => ({ p_account_id: a }),
  creditkit_my_history: (a) => ({ p_account_id: a }),
  creditkit_my_plan: (a) => ({ p_account_id: a }),
  creditkit_my_feature: (a) => ({ p_feature: 'x', p_account_id: a }),
  creditkit_has_credits: (a) => ({ p_amount: 1, p_account_id: a }),
  creditkit_my_check: (a) => ({ p_unit: 'credits', p_account_id: a }),
  creditkit_my_auto_topup: (a) => ({ p_account_id: a }),
  creditkit_my_set_auto_topup: (a) => ({ p_unit: 'credits', p_enabled: false, p_threshold: 10, p_account_id: a }),
  creditkit_my_topups: (a) => ({ p_account_id: a }),
  creditkit_my_balance_alert: (a) => ({ p_account_id: a }),
  creditkit_my_set_balance_alert: (a) => ({ p_unit: 'credits', p_threshold: 10, p_account_id: a }),
};
// Both: reads of the price list and the plan, pack, unit and auto top-up catalogues.
const SHARED = ['creditkit_auto_topup_terms', 'creditkit_packs', 'creditkit_plans', 'creditkit_quote', 'creditkit_units'];

describeEachBackend('core ledger', (backend) => {
  for (const mode of MODES) {
    describe(`privileges '${mode}'`, () => {
      let db: TestDatabase;
      let ck: Creditkit;
      beforeAll(async () => {
        db = await createTestDatabase({ backend, defaultPrivileges: mode });
        ck = creditkit(runAs.service(db));
      });
      afterAll(() => db?.drop());

      it('a first grant opens the account; consume spends and books one ledger row each', async () => {
        const account = newAccountId();
        const granted = await ck.grant({ p_account_id: account, p_amount: 100, p_category: 'purchase', p_now: at(0) });
        expect(granted).toEqual({ transaction_id: expect.any(Number), grant_id: expect.any(Number), balance: 100 });
        await expectConsistent(db);

        const spent = await ck.consume({ p_account_id: account, p_amount: 30, p_event: 'chat', p_now: at(HOUR) });
        expect(spent).toEqual({ allowed: true, balance: 70, transaction_id: expect.any(Number) });
        expect(spent.transaction_id).toBeGreaterThan(granted.transaction_id);
        await expectConsistent(db);

        const rows = await ledgerOf(db, account);
        expect(rows.map((r) => [r.id, r.kind, r.amount, r.balance_after, r.grant_id, r.event])).toEqual([
          [granted.transaction_id, 'grant', 100, 100, granted.grant_id, null],
          [spent.transaction_id, 'consume', -30, 70, null, 'chat'],
        ]);
      });

      it('a consume the balance cannot cover is blocked: allowed=false, nothing written', async () => {
        const account = await openAccount(ck, 10);
        const before = await snapshotBooks(db);
        expect(await ck.consume({ p_account_id: account, p_amount: 11, p_now: at(HOUR) })).toEqual({
          allowed: false, balance: 10, transaction_id: null,
        });
        expect(await snapshotBooks(db)).toEqual(before);

        // spending exactly the balance is allowed and reaches zero, never below
        expect(await ck.consume({ p_account_id: account, p_amount: 10, p_now: at(HOUR) })).toMatchObject({ allowed: true, balance: 0 });
        expect(await ck.consume({ p_account_id: account, p_amount: 1, p_now: at(HOUR) })).toMatchObject({ allowed: false, balance: 0 });
        await expectConsistent(db);
      });

      it('a blocked consume does not use up its key: the retry is evaluated afresh', async () => {
        const account = await openAccount(ck, 5);
        const call = { p_account_id: account, p_amount: 8, p_idempotency_key: 'job-1', p_now: at(HOUR) };
        expect(await ck.consume(call)).toMatchObject({ allowed: false });
        await ck.grant({ p_account_id: account, p_amount: 5, p_now: at(HOUR) });
        expect(await ck.consume(call)).toMatchObject({ allowed: true, balance: 2 });
        await expectConsistent(db);
      });

      it('consume_or_raise spends like consume, and raises CK002 (changing nothing) when short', async () => {
        const account = await openAccount(ck, 50);
        expect(await ck.consumeOrRaise({ p_account_id: account, p_amount: 20, p_now: at(HOUR) })).toEqual({
          balance: 30, transaction_id: expect.any(Number),
        });
        await expectConsistent(db);
        const before = await snapshotBooks(db);
        expect(await outcome(ck.consumeOrRaise({ p_account_id: account, p_amount: 31, p_now: at(HOUR) }))).toBe('CK002');
        expect(await snapshotBooks(db)).toEqual(before);
      });

      it('adjust adds an adjustment bucket or spends; it may not go below zero (CK002)', async () => {
        const account = await openAccount(ck, 20);
        const up = await ck.adjust({ p_account_id: account, p_amount: 15, p_reason: 'goodwill', p_now: at(HOUR) });
        expect(up).toEqual({ transaction_id: expect.any(Number), balance: 35 });
        await expectConsistent(db);
        const down = await ck.adjust({ p_account_id: account, p_amount: -30, p_reason: 'chargeback', p_now: at(2 * HOUR) });
        expect(down).toEqual({ transaction_id: expect.any(Number), balance: 5 });
        await expectConsistent(db);

        const before = await snapshotBooks(db);
        expect(await outcome(ck.adjust({ p_account_id: account, p_amount: -6, p_reason: 'too much', p_now: at(3 * HOUR) }))).toBe('CK002');
        expect(await snapshotBooks(db)).toEqual(before);

        const rows = await ledgerOf(db, account);
        expect(rows.slice(1).map((r) => [r.kind, r.amount, r.balance_after, r.metadata])).toEqual([
          ['adjust', 15, 35, { reason: 'goodwill' }],
          ['adjust', -30, 5, { reason: 'chargeback' }],
        ]);
        // the positive adjustment is a bucket of its own, with the adjustment default priority
        expect((await grantsOf(db, account)).map((g) => [g.category, g.amount, g.priority])).toEqual([
          ['purchase', 20, 0], ['adjustment', 15, 10],
        ]);
      });

      it('balance lists the live buckets in spend order; spending follows that order', async () => {
        const account = newAccountId();
        const g = async (p_amount: number, p_category: string, p_expires_at?: string, p_priority?: number) =>
          (await ck.grant({ p_account_id: account, p_amount, p_category, p_expires_at, p_priority, p_now: at(0) })).grant_id;
        const purchase = await g(10, 'purchase');
        const plan = await g(10, 'plan');
        const promo = await g(10, 'promotional');
        const laterExpiring = await g(10, 'purchase', at(2 * DAY));
        const soonExpiring = await g(10, 'purchase', at(DAY));
        const purchaseBoosted = await g(10, 'purchase', undefined, 25);
        await expectConsistent(db);

        // soonest expiry first, never-expiring last; then higher priority; then oldest
        const order = [soonExpiring, laterExpiring, promo, purchaseBoosted, plan, purchase];
        const view = await ck.balance({ p_account_id: account, p_now: at(HOUR) });
        expect(view.balance).toBe(60);
        expect(view.next_expiry?.toISOString()).toBe('2030-01-02T00:00:00.000Z');
        expect(view.buckets.map((b) => b.grant_id)).toEqual(order);
        expect(view.buckets.map((b) => b.priority)).toEqual([0, 0, 30, 25, 20, 0]);

        // 35 credits: empties the two expiring buckets and the promotional one, 5 from the boosted one
        await ck.consume({ p_account_id: account, p_amount: 35, p_now: at(HOUR) });
        await expectConsistent(db);
        const remaining = new Map((await grantsOf(db, account)).map((r) => [r.id, r.remaining]));
        expect(order.map((id) => remaining.get(id))).toEqual([0, 0, 0, 5, 10, 10]);
        const after = await ck.balance({ p_account_id: account, p_now: at(HOUR) });
        expect(after.buckets.map((b) => [b.grant_id, b.remaining])).toEqual([[purchaseBoosted, 5], [plan, 10], [purchase, 10]]);
        expect(after.next_expiry).toBeNull();
      });

      it('history pages newest first with a keyset cursor, with nothing lost or repeated', async () => {
        const account = await openAccount(ck, 100);
        for (let i = 1; i <= 6; i++) await ck.consume({ p_account_id: account, p_amount: i, p_now: at(i * HOUR) });
        await expectConsistent(db);

        const all = await ck.history({ p_account_id: account, p_limit: 1000 });
        expect(all.map((r) => r.amount)).toEqual([-6, -5, -4, -3, -2, -1, 100]);
        expect(all.map((r) => r.id)).toEqual([...all.map((r) => r.id)].sort((a, b) => b - a));

        const pages: number[][] = [];
        let cursor: number | undefined;
        for (;;) {
          const page = await ck.history({ p_account_id: account, p_limit: 3, p_before_id: cursor });
          if (page.length === 0) break;
          pages.push(page.map((r) => r.id));
          cursor = page[page.length - 1]?.id;
        }
        expect(pages.map((p) => p.length)).toEqual([3, 3, 1]);
        expect(pages.flat()).toEqual(all.map((r) => r.id));
        // the default page size is 50 and the newest row comes first
        expect((await ck.history({ p_account_id: account }))[0]).toEqual(all[0]);
      });

      it('a retry with the same key returns the identical first result and writes nothing', async () => {
        const account = newAccountId();
        const grant = { p_account_id: account, p_amount: 40, p_category: 'plan', p_expires_at: at(30 * DAY), p_idempotency_key: 'inv_1', p_now: at(0) };
        const first = await ck.grant(grant);
        const consume = { p_account_id: account, p_amount: 7, p_event: 'chat', p_idempotency_key: 'req_1', p_metadata: { model: 'xl' }, p_now: at(HOUR) };
        const spent = await ck.consume(consume);
        const adjust = { p_account_id: account, p_amount: -3, p_reason: 'refund', p_idempotency_key: 'adj_1', p_now: at(HOUR) };
        const adjusted = await ck.adjust(adjust);
        await ck.consume({ p_account_id: account, p_amount: 1, p_now: at(2 * HOUR) }); // moves the balance on
        await expectConsistent(db);

        const before = await snapshotBooks(db);
        // retried later, after the balance changed: still the first answers, balances included
        expect(await ck.grant({ ...grant, p_now: at(3 * HOUR) })).toEqual(first);
        expect(await ck.consume({ ...consume, p_now: at(3 * HOUR) })).toEqual(spent);
        expect(await ck.consumeOrRaise({ ...consume, p_now: at(3 * HOUR) })).toEqual({ balance: spent.balance, transaction_id: spent.transaction_id });
        expect(await ck.adjust({ ...adjust, p_now: at(3 * HOUR) })).toEqual(adjusted);
        expect(await snapshotBooks(db)).toEqual(before);

        // keys are per account: the same key on another account is a new effect
        const other = await openAccount(ck, 10);
        expect(await ck.consume({ ...consume, p_account_id: other })).toMatchObject({ allowed: true, balance: 3 });
        await expectConsistent(db);
      });

      it('the same key with different parameters raises CK004 and changes nothing', async () => {
        const account = newAccountId();
        const grant: Args = { p_account_id: account, p_amount: 40, p_category: 'promotional', p_expires_at: at(DAY), p_idempotency_key: 'g', p_now: at(0) };
        const consume: Args = { p_account_id: account, p_amount: 5, p_event: 'chat', p_idempotency_key: 'c', p_metadata: { n: 1 }, p_now: at(0) };
        const adjust: Args = { p_account_id: account, p_amount: 2, p_reason: 'why', p_idempotency_key: 'a', p_now: at(0) };
        await ck.grant(grant);
        await ck.consume(consume);
        await ck.adjust(adjust);

        const changed: Array<[string, () => Promise<unknown>]> = [
          ['grant amount', () => ck.grant({ ...grant, p_amount: 41 })],
          ['grant category', () => ck.grant({ ...grant, p_category: 'plan' })],
          ['grant expiry', () => ck.grant({ ...grant, p_expires_at: at(2 * DAY) })],
          ['grant without expiry', () => ck.grant({ ...grant, p_expires_at: null })],
          ['grant priority', () => ck.grant({ ...grant, p_priority: 31 })],
          ['grant metadata', () => ck.grant({ ...grant, p_metadata: { campaign: 'x' } })],
          ['consume amount', () => ck.consume({ ...consume, p_amount: 6 })],
          ['consume event', () => ck.consume({ ...consume, p_event: 'image' })],
          ['consume metadata', () => ck.consume({ ...consume, p_metadata: { n: 2 } })],
          ['consume cost', () => ck.consume({ ...consume, p_cost_micros: 1500 })],
          ['grant revenue', () => ck.grant({ ...grant, p_revenue_micros: 990000 })],
          ['adjust amount', () => ck.adjust({ ...adjust, p_amount: 3 })],
          ['adjust reason', () => ck.adjust({ ...adjust, p_reason: 'other' })],
          ['a grant key reused to consume', () => ck.consume({ ...consume, p_idempotency_key: 'g' })],
          ['a consume key reused to grant', () => ck.grant({ ...grant, p_idempotency_key: 'c' })],
          ['a consume key reused to adjust', () => ck.adjust({ ...adjust, p_idempotency_key: 'c' })],
        ];
        const before = await snapshotBooks(db);
        const codes: Record<string, string> = {};
        // one at a time, so each call meets exactly the state the first calls left
        for (const [name, call] of changed) codes[name] = await outcome(call());
        expect(codes).toEqual(Object.fromEntries(changed.map(([name]) => [name, 'CK004'])));
        expect(await snapshotBooks(db)).toEqual(before);
        // the explicit default priority is the same parameters
        expect(await outcome(ck.grant({ ...grant, p_priority: 30 }))).toBe('ok');
      });

      it('an expiring bucket is spendable 1µs before expires_at and not at expires_at', async () => {
        const account = newAccountId();
        const expires = DAY;
        await ck.grant({ p_account_id: account, p_amount: 10, p_category: 'promotional', p_expires_at: at(expires), p_now: at(0) });
        expect(await ck.consume({ p_account_id: account, p_amount: 4, p_now: at(expires - 1) })).toMatchObject({ allowed: true, balance: 6 });
        expect((await ck.balance({ p_account_id: account, p_now: at(expires - 1) })).balance).toBe(6);
        await expectConsistent(db);
        expect(await ck.consume({ p_account_id: account, p_amount: 1, p_now: at(expires) })).toEqual({
          allowed: false, balance: 0, transaction_id: null,
        });
        await expectConsistent(db);
        const rows = await ledgerOf(db, account);
        expect(rows.map((r) => [r.kind, r.amount, r.balance_after])).toEqual([['grant', 10, 10], ['consume', -4, 6], ['expire', -6, 0]]);
        // booked at the touching call's p_now, to the microsecond
        const [booked] = await db.query<{ us: number }>(`select ${microsSql('created_at')} as us from creditkit.ledger where id = $1`, [rows[2]?.id]);
        expect(booked?.us).toBe(expires);
      });

      it('expiry is booked on the first touch, once, whichever call touches first', async () => {
        const makeAccount = async () => {
          const account = newAccountId();
          await ck.grant({ p_account_id: account, p_amount: 10, p_category: 'promotional', p_expires_at: at(DAY), p_now: at(0) });
          await ck.grant({ p_account_id: account, p_amount: 5, p_category: 'purchase', p_now: at(0) });
          return account;
        };
        const expireRows = async (account: string) => (await ledgerOf(db, account)).filter((r) => r.kind === 'expire').map((r) => r.amount);

        // a plain read does not book; creditkit_balance (the server's read) does, exactly once
        const a = await makeAccount();
        await ck.history({ p_account_id: a });
        expect(await expireRows(a)).toEqual([]);
        expect(await ck.balance({ p_account_id: a, p_now: at(DAY) })).toMatchObject({ balance: 5, next_expiry: null });
        expect(await ck.balance({ p_account_id: a, p_now: at(DAY + HOUR) })).toMatchObject({ balance: 5 });
        expect(await expireRows(a)).toEqual([-10]);
        await expectConsistent(db);

        // a grant is a touch too
        const b = await makeAccount();
        expect(await ck.grant({ p_account_id: b, p_amount: 1, p_now: at(2 * DAY) })).toMatchObject({ balance: 6 });
        expect(await expireRows(b)).toEqual([-10]);
        await expectConsistent(db);

        // a blocked consume books it as well, and the booking stays
        const c = await makeAccount();
        expect(await ck.consume({ p_account_id: c, p_amount: 6, p_now: at(DAY) })).toMatchObject({ allowed: false, balance: 5 });
        expect(await expireRows(c)).toEqual([-10]);
        await expectConsistent(db);

        // several buckets due at once: one expire row each, soonest first, balance_after running down
        const e = await makeAccount();
        await ck.grant({ p_account_id: e, p_amount: 3, p_category: 'plan', p_expires_at: at(DAY + HOUR), p_now: at(0) });
        expect(await ck.balance({ p_account_id: e, p_now: at(2 * DAY) })).toMatchObject({ balance: 5 });
        expect((await ledgerOf(db, e)).filter((r) => r.kind === 'expire').map((r) => [r.amount, r.balance_after])).toEqual([[-10, 8], [-3, 5]]);
        await expectConsistent(db);

        // the optional sweep books every due account once
        const d = await makeAccount();
        expect(await ck.bookExpired({ p_now: at(3 * DAY) })).toBeGreaterThanOrEqual(1);
        expect(await ck.bookExpired({ p_now: at(3 * DAY) })).toBe(0);
        expect(await expireRows(d)).toEqual([-10]);
        await expectConsistent(db);
      });

      describe('caller-bound reads', () => {
        let member: string;
        let outsider: string;
        beforeAll(async () => {
          member = await db.createUser();
          outsider = await db.createUser();
          await ck.grant({ p_account_id: member, p_amount: 25 });
          await ck.consume({ p_account_id: member, p_amount: 5, p_event: 'chat' });
        });

        it('a member reads their own balance and history', async () => {
          const me = creditkit(runAs.user(db, member));
          const own = await me.myBalance();
          expect(own).toMatchObject({ account_id: member, balance: 20, next_expiry: null });
          expect(own.buckets).toHaveLength(1);
          expect(await me.myBalance({ p_account_id: member })).toEqual(own);
          expect((await me.myHistory()).map((r) => [r.kind, r.amount])).toEqual([['consume', -5], ['grant', 25]]);
          expect((await me.myHistory({ p_account_id: member, p_limit: 1 })).map((r) => r.amount)).toEqual([-5]);
        });

        it("an outsider gets CK005 for someone else's account and reads only their own (0)", async () => {
          const them = creditkit(runAs.user(db, outsider));
          expect(await outcome(them.myBalance({ p_account_id: member }))).toBe('CK005');
          expect(await outcome(them.myHistory({ p_account_id: member }))).toBe('CK005');
          expect(await them.myBalance()).toEqual({ account_id: outsider, balance: 0, next_expiry: null, buckets: [] });
          expect(await them.myHistory()).toEqual([]);
        });

        it('a bucket past its expiry is not shown to the member even before anything booked it', async () => {
          // granted "yesterday" with an expiry an hour ago (real time: these reads use now())
          const user = await db.createUser();
          const dayAgo = new Date(Date.now() - 86_400_000).toISOString();
          const hourAgo = new Date(Date.now() - 3_600_000).toISOString();
          await ck.grant({ p_account_id: user, p_amount: 10, p_category: 'promotional', p_expires_at: hourAgo, p_now: dayAgo });
          await ck.grant({ p_account_id: user, p_amount: 4, p_now: dayAgo });
          const me = creditkit(runAs.user(db, user));
          const view = await me.myBalance();
          expect(view).toMatchObject({ balance: 4, next_expiry: null });
          expect(view.buckets.map((b) => b.remaining)).toEqual([4]);
          // a read by the member books nothing; the server's first touch does
          expect((await me.myHistory()).map((r) => r.kind)).toEqual(['grant', 'grant']);
          expect(await ck.balance({ p_account_id: user })).toMatchObject({ balance: 4 });
          expect((await me.myHistory()).map((r) => [r.kind, r.amount])).toEqual([['expire', -10], ['grant', 4], ['grant', 10]]);
          await expectConsistent(db);
        });

        it('anon may not call them at all (42501)', async () => {
          const anon = creditkit(runAs.anon(db));
          expect(await outcome(anon.myBalance())).toBe('42501');
          expect(await outcome(anon.myHistory())).toBe('42501');
          expect(await outcome(anon.myBalance({ p_account_id: member }))).toBe('42501');
        });
      });

      it('client roles cannot call any server function (42501), and change nothing', async () => {
        const user = await db.createUser();
        await ck.grant({ p_account_id: user, p_amount: 10 });
        // every public.creditkit_* function is either listed here or caller-bound
        const names = (await db.query<{ name: string }>(
          `select p.proname as name from pg_proc p where p.pronamespace = 'public'::regnamespace and p.proname like 'creditkit\\_%' order by 1`,
        )).map((r) => r.name);
        expect(names).toEqual([...Object.keys(SERVER_CALLS), ...Object.keys(CALLER_BOUND), ...SHARED].sort());

        const callers = { anon: runAs.anon(db), authenticated: runAs.user(db, user) };
        const before = await snapshotBooks(db);
        const codes: Record<string, string> = {};
        for (const [role, run] of Object.entries(callers)) {
          for (const [fn, args] of Object.entries(SERVER_CALLS)) {
            const { sql, params } = rpc(fn, args(user));
            codes[`${role} ${fn}`] = await outcome(run(sql, params));
          }
        }
        expect(codes).toEqual(Object.fromEntries(Object.keys(codes).map((k) => [k, '42501'])));
        expect(await snapshotBooks(db)).toEqual(before);
        // and the server key cannot use the caller-bound functions (they need a signed-in user)
        for (const [fn, args] of Object.entries(CALLER_BOUND)) {
          const { sql, params } = rpc(fn, args(user));
          expect(await outcome(db.asService(sql, params))).toBe('42501');
        }
      });

      it('a careless grant of EXECUTE to authenticated still does not open a server function (CK005)', async () => {
        const user = await db.createUser();
        await ck.grant({ p_account_id: user, p_amount: 10 });
        const me = creditkit(runAs.user(db, user));
        const before = await snapshotBooks(db);
        // by name only (each is unique), so the test does not pin the signatures
        await db.query('grant execute on function public.creditkit_grant, public.creditkit_consume to authenticated');
        try {
          expect(await outcome(me.grant({ p_account_id: user, p_amount: 1000 }))).toBe('CK005');
          expect(await outcome(me.consume({ p_account_id: user, p_amount: 1 }))).toBe('CK005');
        } finally {
          await db.query('revoke execute on function public.creditkit_grant, public.creditkit_consume from authenticated');
        }
        expect(await snapshotBooks(db)).toEqual(before);
      });
    });
  }
});
