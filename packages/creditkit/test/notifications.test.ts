// The notification outbox at the SQL API: events are written with their cause (and not without
// it), one delivery per subscribed endpoint, claimed once by concurrent workers, retried on the
// documented schedule, dead after the last attempt, canceled (and the endpoint disabled) by a
// 410, replayable, and pruned once final. Sending them over HTTP with signatures is runWorker's
// (packages/core/test/worker.test.ts).
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@creditkit/testing';
import { describeEachBackend, describeIfPostgres } from '@creditkit/testing/vitest';
import { DAY, HOUR, MINUTE, SECOND, at, creditkit, newAccountId, newGauge, outcome, pooledRunner, runAs, warmPool, type Creditkit } from './support.ts';

interface Claimed {
  delivery_id: number; attempt: number; event_id: string; endpoint_id: string; url: string; secret: string; body: string; timestamp: number;
}

/** The schedule docs/notifications.md documents: the wait after failed attempt n. */
const SCHEDULE = [5 * SECOND, 5 * MINUTE, 30 * MINUTE, 2 * HOUR, 5 * HOUR, 10 * HOUR, 10 * HOUR];

function outbox(db: TestDatabase, ck: Creditkit) {
  return {
    claim: async (now: number, limit = 50) =>
      (await ck.call('creditkit_worker_claim_deliveries', { p_limit: limit, p_lease: '1 minute', p_now: at(now) })) as unknown as Claimed[],
    answer: async (c: Pick<Claimed, 'delivery_id' | 'attempt'>, status: number | null, now: number) =>
      (await ck.call('creditkit_worker_delivery_result', {
        p_delivery_id: c.delivery_id, p_attempt: c.attempt, p_status_code: status, p_error: status === null ? 'timeout' : null, p_now: at(now),
      }))[0] as { status: string; next_attempt_at: string | null },
    /** An event for a new account: a consume takes it from 60 to 10, below its threshold of 50. */
    lowEvent: async () => {
      const account = newAccountId();
      await ck.grant({ p_account_id: account, p_amount: 60, p_now: at(0) });
      await ck.call('creditkit_set_account_balance_alert', { p_account_id: account, p_unit: 'credits', p_threshold: 50, p_now: at(0) });
      await ck.consume({ p_account_id: account, p_amount: 50, p_now: at(0) });
      const [row] = await db.query<{ id: string }>(`select id from creditkit.notifications where account_id = $1`, [account]);
      return { account, event: row!.id };
    },
    /** Every delivery still to make goes: each test starts with an empty queue. */
    clear: () => db.query(`update creditkit.deliveries set status = 'canceled' where status in ('pending', 'delivering')`),
  };
}

describeEachBackend('notifications', (backend) => {
  let db: TestDatabase;
  let ck: Creditkit;
  let box: ReturnType<typeof outbox>;
  beforeAll(async () => {
    db = await createTestDatabase({ backend });
    ck = creditkit(runAs.service(db));
    box = outbox(db, ck);
    await ck.call('creditkit_upsert_webhook_endpoint', { p_id: 'all', p_url: 'https://hooks.example.com/all' });
    await ck.call('creditkit_upsert_webhook_endpoint', { p_id: 'plans', p_url: 'https://hooks.example.com/plans', p_event_types: '{plan.changed}' });
  });
  afterAll(() => db?.drop());
  beforeEach(() => box.clear());

  it('an event is written with its cause, with a stable id and a delivery to each endpoint that wants it', async () => {
    const { account, event } = await box.lowEvent();
    expect(event).toMatch(/^ntf_[0-9a-f]{32}$/);
    const claimed = await box.claim(HOUR);
    expect(claimed.map((c) => [c.event_id, c.endpoint_id, c.attempt])).toEqual([[event, 'all', 1]]);
    const body = JSON.parse(claimed[0]!.body);
    expect(body).toMatchObject({ id: event, type: 'balance.low', data: { account_id: account, unit: 'credits', spendable: 10, threshold: 50 } });
    expect(Date.parse(body.timestamp)).not.toBeNaN();
    expect(claimed[0]!.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(claimed[0]!.timestamp).toBe(Math.floor(Date.parse(at(HOUR)) / 1000));
    // a plan change goes to both endpoints
    await ck.setPlan({ p_account_id: account, p_plan_id: 'free', p_now: at(HOUR) });
    const plan = await box.claim(HOUR);
    expect(plan.map((c) => c.endpoint_id).sort()).toEqual(['all', 'plans']);
    expect(JSON.parse(plan[0]!.body)).toMatchObject({ type: 'plan.changed', data: { account_id: account, plan_id: 'free' } });
    // a rolled-back cause leaves no event
    const before = await db.query(`select count(*)::int as n from creditkit.notifications`);
    await db.exec(`begin; select creditkit_set_plan('${account}', 'free', 'canceled', p_now => '${at(HOUR)}'); rollback;`);
    expect(await db.query(`select count(*)::int as n from creditkit.notifications`)).toEqual(before);
  });

  it('a receiver that fails twice gets it on the third attempt, on the schedule; a lease that ran out counts as an attempt', async () => {
    await box.lowEvent();
    let now = HOUR;
    let [c] = await box.claim(now);
    expect(await box.answer(c!, 500, now)).toEqual({ status: 'pending', next_attempt_at: expect.anything() });
    expect(await box.claim(now + SCHEDULE[0]! - 1)).toEqual([]);           // not due yet
    now += SCHEDULE[0]!;
    [c] = await box.claim(now);
    expect(c!.attempt).toBe(2);
    // no answer (the worker died): after the lease it is attempt 3, and the dead worker's late answer changes nothing
    const late = c!;
    [c] = await box.claim(now + 2 * MINUTE);
    expect(c!.attempt).toBe(3);
    expect(await box.answer(late, 200, now + 2 * MINUTE)).toMatchObject({ status: 'delivering' });
    expect(await box.answer(c!, 204, now + 2 * MINUTE)).toEqual({ status: 'delivered', next_attempt_at: null });
    expect(await box.claim(now + DAY)).toEqual([]);
  });

  it('dead after the eighth attempt fails; the operator replays it', async () => {
    const { event } = await box.lowEvent();
    let now = HOUR;
    for (let attempt = 1; attempt <= 8; attempt++) {
      const [c] = await box.claim(now);
      expect(c, `attempt ${attempt}`).toMatchObject({ attempt, event_id: event });
      const r = await box.answer(c!, attempt % 2 ? 503 : null, now);
      expect(r.status).toBe(attempt < 8 ? 'pending' : 'dead');
      if (attempt < 8) expect(new Date(r.next_attempt_at!).getTime()).toBe(Date.parse(at(now + SCHEDULE[attempt - 1]!)));
      now += SCHEDULE[attempt - 1] ?? 0;
    }
    const [row] = await ck.call('creditkit_notifications', { p_type: 'balance.low', p_limit: 1 });
    const delivery = (row!.deliveries as Array<{ id: number; status: string; attempts: number }>)[0]!;
    expect(delivery).toMatchObject({ status: 'dead', attempts: 8 });
    expect((await ck.call('creditkit_replay_delivery', { p_delivery_id: delivery.id, p_now: at(3 * DAY) }))[0]).toMatchObject({ status: 'pending' });
    const [again] = await box.claim(3 * DAY);
    expect(again).toMatchObject({ event_id: event, attempt: 1 });
    expect(await outcome(ck.call('creditkit_replay_delivery', { p_delivery_id: 999_999_999 }))).toBe('CK018');
  });

  it('a 410 disables the endpoint and cancels the delivery; re-enabled, its waiting deliveries go again', async () => {
    await ck.call('creditkit_upsert_webhook_endpoint', { p_id: 'gone', p_url: 'https://old.example.com/hook', p_event_types: '{balance.low}' });
    await box.lowEvent();
    const claimed = await box.claim(HOUR);
    const gone = claimed.find((c) => c.endpoint_id === 'gone')!;
    expect(await box.answer(gone, 410, HOUR)).toEqual({ status: 'canceled', next_attempt_at: null });
    const endpoints = await ck.call('creditkit_webhook_endpoints', {});
    expect(endpoints.find((e) => e.id === 'gone')).toMatchObject({ enabled: false, disabled_reason: 'gone' });
    expect(endpoints[0]).not.toHaveProperty('secret');
    await box.lowEvent();   // not delivered to a disabled endpoint
    expect((await box.claim(HOUR)).map((c) => c.endpoint_id)).toEqual(['all']);
    const [{ secret }] = (await ck.call('creditkit_upsert_webhook_endpoint', { p_id: 'gone', p_url: 'https://new.example.com/hook' })) as [{ secret: string }];
    expect(secret).toBe(gone.secret);   // kept when not given
    expect(await ck.call('creditkit_delete_webhook_endpoint', { p_id: 'gone' })).toEqual([{ creditkit_delete_webhook_endpoint: 1 }]);
    expect(await outcome(ck.call('creditkit_delete_webhook_endpoint', { p_id: 'gone' }))).toBe('CK017');
  });

  it('pruning deletes events past the policy whose deliveries are all final, and nothing still being delivered', async () => {
    await box.lowEvent();
    await box.clear();   // its delivery is final now
    await db.query(`update creditkit.notifications set created_at = now() - interval '40 days'`);
    const deleted = Number((await ck.call('creditkit_prune_notifications', { p_older_than: '30 days' }))[0]!.creditkit_prune_notifications);
    expect(deleted).toBeGreaterThan(0);
    expect(await db.query(`select id from creditkit.notifications`)).toEqual([]);
    expect(await db.query(`select id from creditkit.deliveries`)).toEqual([]);
    // an event whose delivery is still pending stays, however old
    const { event } = await box.lowEvent();
    await db.query(`update creditkit.notifications set created_at = now() - interval '40 days' where id = $1`, [event]);
    expect(Number((await ck.call('creditkit_prune_notifications', {}))[0]!.creditkit_prune_notifications)).toBe(0);
    expect(await outcome(ck.call('creditkit_prune_notifications', { p_older_than: '1 minute' }))).toBe('CK006');
  });

  it('refuses bad endpoints and answers with stable codes', async () => {
    const up = (args: Record<string, unknown>) => ck.call('creditkit_upsert_webhook_endpoint', { p_id: 'x', p_url: 'https://x.example.com', ...args });
    expect(await outcome(up({ p_url: 'ftp://x' }))).toBe('CK006');
    expect(await outcome(up({ p_url: null }))).toBe('CK006');
    expect(await outcome(up({ p_id: 'Bad Id' }))).toBe('CK006');
    expect(await outcome(up({ p_event_types: '{balance.sideways}' }))).toBe('CK006');
    expect(await outcome(up({ p_event_types: '{}' }))).toBe('CK006');
    expect(await outcome(up({ p_secret: 'not-a-secret' }))).toBe('CK006');
    expect(await outcome(up({ p_secret: `whsec_${Buffer.alloc(32, 7).toString('base64')}` }))).toBe('ok');
    expect(await outcome(ck.call('creditkit_worker_delivery_result', { p_delivery_id: 1, p_attempt: 1, p_status_code: 99 }))).toBe('CK006');
    expect(await outcome(ck.call('creditkit_worker_delivery_result', { p_delivery_id: 999_999_999, p_attempt: 1, p_status_code: 200 }))).toBe('CK018');
    const user = creditkit(runAs.user(db, newAccountId()));
    expect(await outcome(user.call('creditkit_worker_claim_deliveries', {}))).toBe('42501');
    expect(await outcome(user.call('creditkit_webhook_endpoints', {}))).toBe('42501');
  });
});

describeIfPostgres('notifications under concurrency', () => {
  let db: TestDatabase;
  let ck: Creditkit;
  beforeAll(async () => {
    db = await createTestDatabase({ backend: 'postgres' });
    ck = creditkit(runAs.service(db));
    await ck.call('creditkit_upsert_webhook_endpoint', { p_id: 'all', p_url: 'https://hooks.example.com/all' });
  });
  afterAll(() => db?.drop());

  it('four workers claiming at once never share a delivery', async () => {
    const box = outbox(db, ck);
    for (let i = 0; i < 40; i++) await box.lowEvent();
    const pool = db.pool({ max: 4 });
    await warmPool(pool, 4);
    const svc = creditkit(pooledRunner(pool, 'service_role', { role: 'service_role' }, newGauge()));
    const claims = await Promise.all([0, 1, 2, 3].map(() => svc.call('creditkit_worker_claim_deliveries', { p_limit: 15, p_now: at(HOUR) })));
    const ids = claims.flat().map((c) => c.delivery_id);
    expect(ids).toHaveLength(40);
    expect(new Set(ids).size).toBe(40);
    await pool.end();
  });
});
