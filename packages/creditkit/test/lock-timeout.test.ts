// Invariant 9: no request waits unboundedly. While another transaction holds an account's row lock
// (an app's own transaction that called the kit and then idles, or a `select … for update`),
// every call that writes that account gives up after the kit's lock_timeout with 55P03
// (lock_not_available), and every read and every refusal answers at once. No timings are
// asserted: a call that waits raises 55P03 (the kit's own bound, set low here), and a read that
// waited would raise it too, from the session's bound on the asking connection.
import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@creditkit/testing';
import { describeIfPostgres } from '@creditkit/testing/vitest';
import { HOUR, SECOND, at, creditkit, openAccount, type Creditkit } from './support.ts';
import { stripeEvent, stripeId, unix, type JsonObject } from './stripe-fixtures.ts';

describeIfPostgres('bounded lock waits', () => {
  let db: TestDatabase;
  let ck: Creditkit;
  let pool: pg.Pool;
  beforeAll(async () => {
    db = await createTestDatabase({ backend: 'postgres' });
    // the installer's setting, lowered so that the suite does not wait 3 s per call
    await db.query(`select creditkit.set_lock_timeout('300 milliseconds')`);
    ck = creditkit((sql, params) => db.asService(sql, params));
    pool = db.pool({ max: 4 });
    await ck.setPrice({ p_event: 'lock-gen', p_credits_per_unit: 1, p_effective_from: at(0) });
  });
  afterAll(() => db?.drop());

  /** Runs `fn` on a second connection while a first one holds `account`'s row lock. */
  async function whileLocked<T>(account: string, fn: (asker: pg.PoolClient) => Promise<T>): Promise<T> {
    const holder = await pool.connect();
    const asker = await pool.connect();
    try {
      await holder.query('begin');
      await holder.query('select 1 from creditkit.accounts where id = $1 for update', [account]);
      // a read that waited for the lock would fail this bound instead of hanging
      await asker.query(`set lock_timeout = '2s'`);
      await asker.query(`select set_config('role', 'service_role', false), set_config('request.jwt.claims', '{"role":"service_role"}', false)`);
      return await fn(asker);
    } finally {
      await holder.query('rollback');
      holder.release();
      await asker.query('reset role; reset lock_timeout');
      asker.release();
    }
  }

  it('every writing call on a locked account gives up with 55P03, and changes nothing', async () => {
    const account = await openAccount(ck, 100);
    const hold = await ck.reserve({ p_account_id: account, p_amount: 5, p_ttl: '1 hour', p_now: at(1) });
    const other = await ck.reserve({ p_account_id: account, p_amount: 5, p_ttl: '1 hour', p_now: at(1) });
    const before = await db.query('select balance, held, version from creditkit.accounts where id = $1', [account]);
    const calls: Array<[string, string, unknown[]]> = [
      ['grant', 'select * from creditkit_grant($1, 1, p_now => $2)', [account, at(2)]],
      ['consume', 'select * from creditkit_consume($1, 1, p_now => $2)', [account, at(2)]],
      ['consume with a key', `select * from creditkit_consume($1, 1, 'e', 'k-1', p_now => $2)`, [account, at(2)]],
      ['consume_or_raise', 'select * from creditkit_consume_or_raise($1, 1, p_now => $2)', [account, at(2)]],
      ['adjust down', `select * from creditkit_adjust($1, -1, 'r', p_now => $2)`, [account, at(2)]],
      ['adjust up', `select * from creditkit_adjust($1, 1, 'r', p_now => $2)`, [account, at(2)]],
      ['reserve', `select * from creditkit_reserve($1, 1, interval '1 hour', p_now => $2)`, [account, at(2)]],
      ['settle', 'select * from creditkit_settle($1, 5, p_now => $2)', [hold.hold_id, at(2)]],
      ['release', 'select * from creditkit_release($1, p_now => $2)', [other.hold_id, at(2)]],
      ['meter', `select * from creditkit_meter($1, 'lock-gen', p_now => $2)`, [account, at(2)]],
      ['set_plan', `select * from creditkit_set_plan($1, 'free', p_now => $2)`, [account, at(2)]],
      ['consume_batch', 'select * from creditkit_consume_batch($1::jsonb, $2)', [JSON.stringify([{ account_id: account, amount: 1 }]), at(2)]],
      ['stripe_link_customer', `select creditkit_stripe_link_customer($1, 'cus_LockTest1')`, [account]],
      // 0.3.0: an account's own threshold and auto top-up take its row lock like a debit
      ['set_account_balance_alert', `select * from creditkit_set_account_balance_alert($1, 'credits', 5, p_now => $2)`, [account, at(2)]],
      ['set_auto_topup off', `select * from creditkit_set_auto_topup($1, 'credits', false, p_now => $2)`, [account, at(2)]],
    ];
    const outcomes = await whileLocked(account, async (asker) => {
      const seen: Record<string, string> = {};
      for (const [name, sql, params] of calls) {
        seen[name] = await asker.query(sql, params).then(() => 'answered', (e: { code?: string }) => e.code ?? 'error');
      }
      return seen;
    });
    expect(outcomes).toEqual(Object.fromEntries(calls.map(([name]) => [name, '55P03'])));
    expect(await db.query('select balance, held, version from creditkit.accounts where id = $1', [account])).toEqual(before);
    // once the lock is gone, the same calls go through
    expect(await ck.consume({ p_account_id: account, p_amount: 1, p_now: at(3) })).toMatchObject({ allowed: true });
  });

  it('reads and refusals answer at once while the account is locked', async () => {
    const account = await openAccount(ck, 10);
    const answers = await whileLocked(account, async (asker) => ({
      refused: (await asker.query('select * from creditkit_consume($1, 50, p_now => $2)', [account, at(2)])).rows[0],
      refusedReserve: (await asker.query(`select allowed from creditkit_reserve($1, 50, interval '1 hour', p_now => $2)`, [account, at(2)])).rows[0],
      balance: (await asker.query('select balance from creditkit_balance($1, $2)', [account, at(2)])).rows[0],
      history: (await asker.query('select count(*)::int as n from creditkit_history($1)', [account])).rows[0],
      sweep: (await asker.query('select creditkit_book_expired($1) as visited', [at(2)])).rows[0],
      alert: (await asker.query('select state, spendable from creditkit_balance_alert($1)', [account])).rows[0],
      auto: (await asker.query('select status from creditkit_auto_topup($1)', [account])).rows[0],
      topups: (await asker.query('select count(*)::int as n from creditkit_topups($1)', [account])).rows[0],
      notifications: (await asker.query('select count(*)::int as n from creditkit_notifications($1)', [account])).rows[0],
    }));
    expect(answers).toEqual({
      refused: { allowed: false, balance: 10, transaction_id: null }, refusedReserve: { allowed: false },
      balance: { balance: 10 }, history: { n: 1 }, sweep: { visited: 0 },
      alert: { state: 'ok', spendable: 10 }, auto: { status: 'off' }, topups: { n: 0 }, notifications: { n: 0 },
    });
  });

  it('a grant that must book an expiry first waits for the lock and gives up too; the caller-bound reads do not', async () => {
    const account = await openAccount(ck, 10);
    await ck.grant({ p_account_id: account, p_amount: 5, p_category: 'promotional', p_expires_at: at(HOUR), p_now: at(1) });
    const user = await db.createUser();
    await ck.grant({ p_account_id: user, p_amount: 3, p_now: at(1) });
    const outcome = await whileLocked(account, async (asker) =>
      // after the expiry: the server balance read books it, so it needs the lock
      asker.query('select balance from creditkit_balance($1, $2)', [account, at(2 * HOUR)]).then(() => 'answered', (e: { code?: string }) => e.code));
    expect(outcome).toBe('55P03');
    const mine = await whileLocked(user, async (asker) => {
      await asker.query(`select set_config('role', 'authenticated', false), set_config('request.jwt.claims', $1, false)`,
        [JSON.stringify({ sub: user, role: 'authenticated' })]);
      return (await asker.query('select balance from creditkit_my_balance()')).rows[0];
    });
    expect(mine).toEqual({ balance: 3 });
  });

  // it.fails: the SQL does not do this yet (reported). Once it does, vitest says so: drop `.fails`.
  it("the worker's claim of top-ups is not held up by one locked account: it charges the others", async () => {
    let clock = 0;
    const apply = (type: string, object: JsonObject) =>
      ck.call('creditkit_stripe_apply', { p_event: stripeEvent(type, object, { created: unix(++clock * SECOND) }), p_now: at(1) });
    await ck.call('creditkit_set_auto_topup_terms', {
      p_unit: 'credits', p_currency: 'usd', p_unit_price: 1, p_min_amount: 100, p_max_amount: 10_000, p_cooldown: '0 seconds',
    });
    const pending: string[] = [];
    for (let i = 0; i < 2; i++) {
      const account = await openAccount(ck, 200);
      const [customer, pm] = [stripeId('cus'), stripeId('pm')];
      await ck.call('creditkit_stripe_link_customer', { p_account_id: account, p_customer_id: customer });
      await apply('payment_method.attached', { id: pm, object: 'payment_method', type: 'card', customer, card: { brand: 'visa', last4: '4242' } });
      await apply('setup_intent.succeeded', { id: stripeId('seti'), object: 'setup_intent', status: 'succeeded', usage: 'off_session', customer, payment_method: pm });
      await ck.call('creditkit_set_auto_topup', { p_account_id: account, p_unit: 'credits', p_enabled: true, p_threshold: 100, p_amount: 500, p_now: at(1) });
      await ck.consume({ p_account_id: account, p_amount: 150, p_now: at(2) }); // 50: a pending top-up at commit
      pending.push(account);
    }
    const [locked, free] = pending as [string, string];
    const claim = await whileLocked(locked, async (asker) =>
      asker.query(`select account_id from creditkit_worker_claim_topups(10, interval '1 minute', $1)`, [at(3)])
        .then((r) => r.rows.map((row: { account_id: string }) => row.account_id), (e: { code?: string }) => e.code));
    // what it does now (0.3.0): the claim locks each pending top-up's account row without
    // SKIP LOCKED / NOWAIT, so one account held by another transaction fails the whole claim
    // with 55P03 (and rolls back the top-ups it had claimed before it): nobody's top-up is
    // charged until that account is free. This is the behaviour the worker needs:
    expect(claim).toEqual([free]);
  });

  // it.fails: reported. The claim locks a top-up, then its account; turning auto top-up off (like
  // the watch and a card change) locks the account, then its open top-ups. When both meet on one
  // account they wait for each other: Postgres ends one with 40P01 (deadlock_detected).
  it('turning auto top-up off while the worker claims its top-up: both answer, no deadlock', async () => {
    let clock = 100;
    const apply = (type: string, object: JsonObject) =>
      ck.call('creditkit_stripe_apply', { p_event: stripeEvent(type, object, { created: unix(++clock * SECOND) }), p_now: at(1) });
    await ck.call('creditkit_set_auto_topup_terms', {
      p_unit: 'credits', p_currency: 'usd', p_unit_price: 1, p_min_amount: 100, p_max_amount: 10_000, p_cooldown: '0 seconds',
    });
    await db.query(`update creditkit.topups set status = 'canceled' where status in ('pending', 'charging')`);
    const account = await openAccount(ck, 200);
    const [customer, pm] = [stripeId('cus'), stripeId('pm')];
    await ck.call('creditkit_stripe_link_customer', { p_account_id: account, p_customer_id: customer });
    await apply('payment_method.attached', { id: pm, object: 'payment_method', type: 'card', customer, card: { brand: 'visa', last4: '4242' } });
    await apply('setup_intent.succeeded', { id: stripeId('seti'), object: 'setup_intent', status: 'succeeded', usage: 'off_session', customer, payment_method: pm });
    await ck.call('creditkit_set_auto_topup', { p_account_id: account, p_unit: 'credits', p_enabled: true, p_threshold: 100, p_amount: 500, p_now: at(1) });
    await ck.consume({ p_account_id: account, p_amount: 150, p_now: at(2) }); // a pending top-up
    // the kit's own bound, so that the deadlock detector (deadlock_timeout, 1 s) speaks first
    await db.query(`select creditkit.set_lock_timeout('3 seconds')`);
    const [holder, customerSide, worker] = [await pool.connect(), await pool.connect(), await pool.connect()];
    const service = `select set_config('role', 'service_role', false), set_config('request.jwt.claims', '{"role":"service_role"}', false)`;
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    try {
      await customerSide.query(service);
      await worker.query(service);
      await holder.query('begin');
      await holder.query('select 1 from creditkit.accounts where id = $1 for update', [account]);
      // turning it off queues first for the account; the claim takes the top-up, then queues too
      const off = customerSide.query(`select status from creditkit_set_auto_topup($1, 'credits', false, p_now => $2)`, [account, at(3)])
        .then(() => 'answered', (e: { code?: string }) => e.code ?? 'error');
      await sleep(200);
      const claim = worker.query(`select topup_id from creditkit_worker_claim_topups(10, interval '1 minute', $1)`, [at(3)])
        .then(() => 'answered', (e: { code?: string }) => e.code ?? 'error');
      await sleep(200);
      await holder.query('rollback');
      expect({ off: await off, claim: await claim }).toEqual({ off: 'answered', claim: 'answered' });
    } finally {
      await db.query(`select creditkit.set_lock_timeout('300 milliseconds')`);
      for (const c of [customerSide, worker]) await c.query('reset role');
      for (const c of [holder, customerSide, worker]) c.release();
    }
  });

  it('an insert that the charge-on-insert trigger charges gives up with 55P03 too', async () => {
    await db.exec(`
      create table public.lock_tasks (id bigint generated always as identity primary key, prompt text);
      grant insert on public.lock_tasks to authenticated;
      create trigger charge_lock_tasks before insert on public.lock_tasks
        for each row execute function creditkit.charge_on_insert('lock-now');`);
    // the trigger charges at the real now()
    await ck.setPrice({ p_event: 'lock-now', p_credits_per_unit: 1, p_effective_from: '2000-01-01T00:00:00Z' });
    const user = await db.createUser();
    await ck.grant({ p_account_id: user, p_amount: 3, p_now: at(1) });
    const outcome = await whileLocked(user, async (asker) => {
      await asker.query(`select set_config('role', 'authenticated', false), set_config('request.jwt.claims', $1, false)`,
        [JSON.stringify({ sub: user, role: 'authenticated' })]);
      return asker.query(`insert into public.lock_tasks (prompt) values ('a cat')`).then(() => 'inserted', (e: { code?: string }) => e.code);
    });
    expect(outcome).toBe('55P03');
    expect(await db.query('select count(*)::int as n from public.lock_tasks')).toEqual([{ n: 0 }]);
  });
});
