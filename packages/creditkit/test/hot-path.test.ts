// The consume hot path (one guarded UPDATE, undrawn credit, the lock-free refusal) and the reserve refusal, checked
// for what they promise beyond correct answers (which the model, concurrency and pgTAP suites
// check): a refused consume or reserve writes nothing, takes no lock and reads the ledger or the
// holds only for a key; a consume updates only the account row, HOT, and leaves the buckets to the
// next lock, which draws them in spend order; a replayed key on the fast path leaves no trace.
// Each check is made inside the call's own transaction (pg_current_xact_id_if_assigned and the
// xact stats counters), so nothing else on the server can disturb it, and each also shows the
// opposite case so the check can fail.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@creditkit/testing';
import { describeEachBackend, describeIfPostgres } from '@creditkit/testing/vitest';
import { GRANTS, MINUTE, at, creditkit, expectConsistent, newAccountId, openAccount, type Creditkit } from './support.ts';

// One consume and what its transaction did: whether it was assigned a transaction id (any write
// or row lock assigns one) and how many rows of accounts and grants it updated, HOT or not. The
// xact stats counters also hold this session's not yet flushed counts, hence the differences.
const TRACE_SQL = `
  create function public.test_consume_trace(p_account_id uuid, p_amount bigint, p_key text, p_now timestamptz,
    out allowed boolean, out balance bigint, out transaction_id bigint,
    out wrote boolean, out updates integer, out hot_updates integer, out key_scans integer)
  language plpgsql
  as $$
  declare
    v_upd0 bigint; v_hot0 bigint; v_upd1 bigint; v_hot1 bigint; v_scan0 bigint; v_scan1 bigint;
  begin
    select sum(pg_stat_get_xact_tuples_updated(r.oid)), sum(pg_stat_get_xact_tuples_hot_updated(r.oid))
      into v_upd0, v_hot0 from (values ('creditkit.accounts'::regclass), ('creditkit.grants'::regclass)) r(oid);
    select sum(pg_stat_get_xact_numscans(i.indexrelid)) into v_scan0
      from pg_index i where i.indrelid in ('creditkit.ledger'::regclass, 'creditkit.ledger_keys'::regclass);
    select c.allowed, c.balance, c.transaction_id into allowed, balance, transaction_id
      from public.creditkit_consume(p_account_id, p_amount, p_idempotency_key => p_key, p_now => p_now) c;
    wrote := pg_current_xact_id_if_assigned() is not null;
    select sum(pg_stat_get_xact_tuples_updated(r.oid)), sum(pg_stat_get_xact_tuples_hot_updated(r.oid))
      into v_upd1, v_hot1 from (values ('creditkit.accounts'::regclass), ('creditkit.grants'::regclass)) r(oid);
    updates := v_upd1 - v_upd0;
    hot_updates := v_hot1 - v_hot0;
    select sum(pg_stat_get_xact_numscans(i.indexrelid)) into v_scan1
      from pg_index i where i.indrelid in ('creditkit.ledger'::regclass, 'creditkit.ledger_keys'::regclass);
    key_scans := v_scan1 - v_scan0;
  end;
  $$;
  grant execute on function public.test_consume_trace(uuid, bigint, text, timestamptz) to service_role;`;

interface Trace {
  allowed: boolean;
  balance: number;
  transaction_id: number | null;
  wrote: boolean;
  updates: number;
  hot_updates: number;
  /** Index scans of the ledger and its key store (the idempotency lookups). */
  key_scans: number;
}

// The same for one reserve: its answer, whether its transaction was assigned an id, and the index
// scans of holds it made (the key lookups).
const RESERVE_TRACE_SQL = `
  create function public.test_reserve_trace(p_account_id uuid, p_amount bigint, p_key text, p_now timestamptz,
    out allowed boolean, out hold_id bigint, out balance bigint, out expires_at timestamptz,
    out wrote boolean, out hold_scans integer)
  language plpgsql
  as $$
  declare
    v_scan0 bigint; v_scan1 bigint;
  begin
    select sum(pg_stat_get_xact_numscans(i.indexrelid)) into v_scan0
      from pg_index i where i.indrelid = 'creditkit.holds'::regclass;
    select r.allowed, r.hold_id, r.balance, r.expires_at into allowed, hold_id, balance, expires_at
      from public.creditkit_reserve(p_account_id, p_amount, interval '1 hour', p_idempotency_key => p_key, p_now => p_now) r;
    wrote := pg_current_xact_id_if_assigned() is not null;
    select sum(pg_stat_get_xact_numscans(i.indexrelid)) into v_scan1
      from pg_index i where i.indrelid = 'creditkit.holds'::regclass;
    hold_scans := v_scan1 - v_scan0;
  end;
  $$;
  grant execute on function public.test_reserve_trace(uuid, bigint, text, timestamptz) to service_role;`;

interface ReserveTrace {
  allowed: boolean;
  hold_id: number | null;
  balance: number;
  expires_at: Date | null;
  wrote: boolean;
  /** Index scans of holds (the idempotency lookups). */
  hold_scans: number;
}

describeEachBackend('consume hot path', (backend) => {
  let db: TestDatabase;
  let ck: Creditkit;
  beforeAll(async () => {
    db = await createTestDatabase({ backend });
    await db.exec(TRACE_SQL);
    ck = creditkit((sql, params) => db.asService(sql, params));
  });
  afterAll(() => db?.drop());

  const trace = async (account: string, amount: number, key: string | null = null, now = at(10)) =>
    (await db.asService<Trace>(`select * from public.test_consume_trace($1, $2, $3, $4)`, [account, amount, key, now]))[0]!;
  const accountRow = async (account: string) =>
    (await db.query(`select balance, held, version, undrawn from creditkit.accounts where id = $1`, [account]))[0];
  const storedBuckets = (account: string) =>
    db.query(`select category, remaining, live from creditkit.grants where account_id = $1 order by id`, [account]);

  it('a refused consume writes nothing and locks nothing: no transaction id is ever assigned', async () => {
    const empty = await openAccount(ck, 3);
    const before = await accountRow(empty);
    const refused = await trace(empty, 5);
    expect(refused).toMatchObject({ allowed: false, balance: 3, transaction_id: null, wrote: false, updates: 0 });
    // without a key the refusal reads neither the ledger nor its keys
    expect(refused.key_scans).toBe(0);
    // with a key that was never used, too; that refusal looks the key up
    expect(await trace(empty, 5, 'never-used')).toMatchObject({ allowed: false, wrote: false, key_scans: 1 });
    expect(await accountRow(empty)).toEqual(before);
    // the opposite case: a consume that spends does write
    expect(await trace(empty, 2)).toMatchObject({ allowed: true, balance: 1, wrote: true });
    await expectConsistent(db, [empty]);
  });

  it('a consume updates only the account, HOT; the next lock draws the buckets', async () => {
    const account = await openAccount(ck, 100);
    const spent = await trace(account, 7);
    expect(spent).toMatchObject({ allowed: true, balance: 93, wrote: true, updates: 1, hot_updates: 1 });
    // spending the account dry is the same single HOT update: the bucket is not touched yet
    const emptied = await trace(account, 93);
    expect(emptied).toMatchObject({ allowed: true, balance: 0, updates: 1, hot_updates: 1 });
    expect(await accountRow(account)).toMatchObject({ balance: 0, undrawn: 100 });
    expect(await storedBuckets(account)).toEqual([{ category: 'purchase', remaining: 100, live: true }]);
    await expectConsistent(db, [account]);
    // the opposite case: anything that locks the account (here a grant) first draws what is undrawn
    await ck.grant({ p_account_id: account, p_amount: 5, p_now: at(20) });
    expect(await accountRow(account)).toMatchObject({ balance: 5, undrawn: 0 });
    expect(await storedBuckets(account)).toEqual([
      { category: 'purchase', remaining: 0, live: false },
      { category: 'purchase', remaining: 5, live: true },
    ]);
    await expectConsistent(db, [account]);
  });

  it('a draw spanning buckets spends them in order: soonest expiry, then priority, then oldest', async () => {
    const account = newAccountId();
    await ck.grant({ p_account_id: account, p_amount: 5, p_category: 'purchase', p_now: at(0) });
    await ck.grant({ p_account_id: account, p_amount: 4, p_category: 'promotional', p_now: at(1) });
    await ck.grant({ p_account_id: account, p_amount: 3, p_category: 'purchase', p_expires_at: at(1000), p_now: at(2) });
    expect(await trace(account, 4)).toMatchObject({ allowed: true, balance: 8 });
    expect(await trace(account, 5)).toMatchObject({ allowed: true, balance: 3 });
    // the expiring purchase (3), then promotional (priority 30, 4), then 2 of the oldest purchase:
    // as the reads see it now, and as the buckets are drawn when the next call locks the account
    const expected = [
      { category: 'purchase', remaining: 3 },
      { category: 'promotional', remaining: 0 },
      { category: 'purchase', remaining: 0 },
    ];
    const read = async () => db.query(`select category, remaining from ${GRANTS} g where account_id = $1 order by id`, [account]);
    expect(await read()).toEqual(expected);
    expect((await ck.balance({ p_account_id: account, p_now: at(30) })).buckets.map((b) => b.remaining)).toEqual([3]);
    await ck.adjust({ p_account_id: account, p_amount: -1, p_reason: 'test', p_now: at(31) });
    expect(await storedBuckets(account)).toEqual([
      { category: 'purchase', remaining: 2, live: true },
      { category: 'promotional', remaining: 0, live: false },
      { category: 'purchase', remaining: 0, live: false },
    ]);
    await expectConsistent(db, [account]);
  });

  it('a key replayed while the account can pay answers the first result and leaves no trace', async () => {
    const account = await openAccount(ck, 50);
    const first = await ck.consume({ p_account_id: account, p_amount: 10, p_idempotency_key: 'req-1', p_now: at(5) });
    const before = await accountRow(account);
    const replay = await trace(account, 10, 'req-1');
    expect(replay).toMatchObject({ allowed: true, balance: 40, transaction_id: first.transaction_id });
    expect(await accountRow(account)).toEqual(before);
    const consumes = await db.query<{ rows: number }>(
      `select count(*)::int as rows from creditkit.ledger where account_id = $1 and kind = 'consume'`, [account]);
    expect(consumes).toEqual([{ rows: 1 }]);
    // the same key for another amount is a conflict, and the debit the fast path made is rolled back
    await expect(ck.consume({ p_account_id: account, p_amount: 11, p_idempotency_key: 'req-1', p_now: at(6) }))
      .rejects.toMatchObject({ code: 'CK004' });
    expect(await accountRow(account)).toEqual(before);
    await expectConsistent(db, [account]);
  });

  it('a key replayed after the account ran dry still answers the first result', async () => {
    const account = await openAccount(ck, 10);
    const first = await ck.consume({ p_account_id: account, p_amount: 10, p_idempotency_key: 'all', p_now: at(5) });
    expect(await trace(account, 10, 'all')).toMatchObject({ allowed: true, balance: 0, transaction_id: first.transaction_id });
    expect(await trace(account, 10, 'other')).toMatchObject({ allowed: false, balance: 0, wrote: false });
  });

  it('something due takes the slow path: credit that expired is booked before the answer', async () => {
    const account = newAccountId();
    await ck.grant({ p_account_id: account, p_amount: 8, p_category: 'promotional', p_expires_at: at(100), p_now: at(0) });
    await ck.grant({ p_account_id: account, p_amount: 2, p_now: at(1) });
    const refused = await trace(account, 5, null, at(200));
    expect(refused).toMatchObject({ allowed: false, balance: 2, wrote: true }); // the expiry was booked
    const kinds = await db.query<{ kinds: string[] }>(
      `select array_agg(kind::text order by id) as kinds from creditkit.ledger where account_id = $1`, [account]);
    expect(kinds).toEqual([{ kinds: ['grant', 'grant', 'expire'] }]);
    await expectConsistent(db, [account]);
  });

  it('undrawn credit is taken from a bucket that expired since, as the consumes took it then', async () => {
    const account = newAccountId();
    await ck.grant({ p_account_id: account, p_amount: 10, p_category: 'purchase', p_expires_at: at(100), p_now: at(0) });
    await ck.grant({ p_account_id: account, p_amount: 10, p_category: 'purchase', p_now: at(1) });
    // two fast-path consumes before the expiry: the expiring bucket pays (soonest expiry first)
    expect(await trace(account, 3, null, at(10))).toMatchObject({ allowed: true, balance: 17, updates: 1 });
    expect(await trace(account, 1, null, at(20))).toMatchObject({ allowed: true, balance: 16, updates: 1 });
    // after the expiry, before anything was booked, a read already sees the 6 left of it as gone
    const [read] = await db.query<{ balance: number; buckets: Array<{ remaining: number }> }>(
      `select balance, buckets from creditkit.live_buckets($1, 'credits', $2)`, [account, at(200)]);
    expect([read!.balance, read!.buckets.map((b) => b.remaining)]).toEqual([10, [10]]);
    // the server read books it: 6 expire (10 less the 4 spent), not 10, and the other bucket is whole
    expect((await ck.balance({ p_account_id: account, p_now: at(200) })).balance).toBe(10);
    const rows = await db.query<{ kind: string; amount: number }>(
      `select kind, amount from creditkit.ledger where account_id = $1 order by id`, [account]);
    expect(rows.map((r) => [r.kind, r.amount])).toEqual([['grant', 10], ['grant', 10], ['consume', -3], ['consume', -1], ['expire', -6]]);
    expect(await storedBuckets(account)).toEqual([
      { category: 'purchase', remaining: 0, live: false },
      { category: 'purchase', remaining: 10, live: true },
    ]);
    expect(await accountRow(account)).toMatchObject({ balance: 10, undrawn: 0 });
    await expectConsistent(db, [account]);
  });

  it('a batch counts what it spends as undrawn too, and does not draw; the next lock draws it all in spend order', async () => {
    const account = newAccountId();
    await ck.grant({ p_account_id: account, p_amount: 6, p_category: 'purchase', p_expires_at: at(1000), p_now: at(0) });
    await ck.grant({ p_account_id: account, p_amount: 10, p_category: 'purchase', p_now: at(1) });
    const events = [4, 3].map((amount) => ({ account_id: account, amount }));
    expect(await ck.consumeBatch({ p_events: events, p_now: at(10) })).toMatchObject([
      { ordinal: 1, allowed: true, balance: 12 },
      { ordinal: 2, allowed: true, balance: 9 },
    ]);
    // the buckets are untouched and the account counts the 7 as undrawn; reads see the truth
    expect(await accountRow(account)).toMatchObject({ balance: 9, undrawn: 7 });
    expect(await storedBuckets(account)).toEqual([
      { category: 'purchase', remaining: 6, live: true },
      { category: 'purchase', remaining: 10, live: true },
    ]);
    expect((await ck.balance({ p_account_id: account, p_now: at(20) })).buckets.map((b) => b.remaining)).toEqual([9]);
    await expectConsistent(db, [account]);
    // a second batch, with nothing due, locks the account without drawing: undrawn grows to 9
    expect(await ck.consumeBatch({ p_events: [{ account_id: account, amount: 2 }], p_now: at(25) })).toMatchObject([
      { ordinal: 1, allowed: true, balance: 7 },
    ]);
    expect(await accountRow(account)).toMatchObject({ balance: 7, undrawn: 9 });
    expect((await storedBuckets(account)).map((b) => b.remaining)).toEqual([6, 10]);
    await expectConsistent(db, [account]);
    // the next lock (here a one-credit adjustment) draws the 9 and its own 1: the expiring bucket
    // first, then 4 of the other
    await ck.adjust({ p_account_id: account, p_amount: -1, p_reason: 'test', p_now: at(30) });
    expect(await accountRow(account)).toMatchObject({ balance: 6, undrawn: 0 });
    expect(await storedBuckets(account)).toEqual([
      { category: 'purchase', remaining: 0, live: false },
      { category: 'purchase', remaining: 6, live: true },
    ]);
    await expectConsistent(db, [account]);
  });

  it('an unknown account is CK003, on the fast path as before', async () => {
    await expect(ck.consume({ p_account_id: newAccountId(), p_amount: 1, p_now: at(1) })).rejects.toMatchObject({ code: 'CK003' });
  });
});

describeEachBackend('reserve refusal', (backend) => {
  let db: TestDatabase;
  let ck: Creditkit;
  beforeAll(async () => {
    db = await createTestDatabase({ backend });
    await db.exec(RESERVE_TRACE_SQL);
    ck = creditkit((sql, params) => db.asService(sql, params));
  });
  afterAll(() => db?.drop());

  const trace = async (account: string, amount: number, key: string | null = null, now = at(10)) =>
    (await db.asService<ReserveTrace>(`select * from public.test_reserve_trace($1, $2, $3, $4)`, [account, amount, key, now]))[0]!;
  const accountRow = async (account: string) =>
    (await db.query(`select balance, held, due_at, version, undrawn from creditkit.accounts where id = $1`, [account]))[0];
  const holdCount = async (account: string) =>
    (await db.query<{ n: number }>(`select count(*)::int as n from creditkit.holds where account_id = $1`, [account]))[0]!.n;

  it('a refused reserve writes nothing and locks nothing: no transaction id is ever assigned', async () => {
    const account = await openAccount(ck, 3);
    const before = await accountRow(account);
    const refused = await trace(account, 5);
    expect(refused).toMatchObject({ allowed: false, hold_id: null, balance: 3, expires_at: null, wrote: false });
    // without a key the refusal does not read the holds at all; with a key never used it looks it up
    expect(refused.hold_scans).toBe(0);
    expect(await trace(account, 5, 'never-used')).toMatchObject({ allowed: false, hold_id: null, wrote: false, hold_scans: 1 });
    // credit held by an open hold is not spendable: refused the same way, at what is left
    expect(await trace(account, 2)).toMatchObject({ allowed: true, balance: 1, wrote: true });
    const held = await accountRow(account);
    expect(await trace(account, 2)).toMatchObject({ allowed: false, balance: 1, hold_id: null, wrote: false });
    expect(await accountRow(account)).toEqual(held);
    expect(before).toMatchObject({ held: 0 });
    expect(held).toMatchObject({ held: 2 });
    expect(await holdCount(account)).toBe(1);
    await expectConsistent(db, [account]);
  });

  it('a key used for an open hold answers that hold even when nothing is left to reserve', async () => {
    const account = await openAccount(ck, 10);
    const first = await ck.reserve({ p_account_id: account, p_amount: 10, p_ttl: '1 hour', p_idempotency_key: 'job-1', p_now: at(5) });
    expect(first).toMatchObject({ allowed: true, balance: 0 });
    const retry = await trace(account, 10, 'job-1');
    expect(retry).toMatchObject({ allowed: true, hold_id: first.hold_id, balance: 0 });
    expect(retry.expires_at).toEqual(first.expires_at);
    // another key on the dry account is a refusal that writes nothing
    expect(await trace(account, 10, 'job-2')).toMatchObject({ allowed: false, hold_id: null, wrote: false });
    // the same key for another amount is a conflict, not a refusal
    await expect(ck.reserve({ p_account_id: account, p_amount: 9, p_ttl: '1 hour', p_idempotency_key: 'job-1', p_now: at(6) }))
      .rejects.toMatchObject({ code: 'CK004' });
    // once the hold is settled, a retry of its key is CK012 (the slow way), not "blocked"
    await ck.settleHold({ p_hold_id: first.hold_id, p_actual: 10, p_now: at(7) });
    await expect(ck.reserve({ p_account_id: account, p_amount: 10, p_ttl: '1 hour', p_idempotency_key: 'job-1', p_now: at(8) }))
      .rejects.toMatchObject({ code: 'CK012' });
    expect(await holdCount(account)).toBe(1);
    await expectConsistent(db, [account]);
  });

  it('something due takes the slow path: an expired hold is booked before the refusal', async () => {
    const account = await openAccount(ck, 10);
    const hold = await ck.reserve({ p_account_id: account, p_amount: 8, p_ttl: '1 minute', p_now: at(0) });
    expect(hold).toMatchObject({ allowed: true, balance: 2 });
    // at(0) + 1 minute has passed: the hold expires, its 8 are spendable again, and 20 is still too much
    const refused = await trace(account, 20, null, at(2 * MINUTE));
    expect(refused).toMatchObject({ allowed: false, balance: 10, hold_id: null, wrote: true });
    const [row] = await db.query<{ status: string }>(`select status from creditkit.holds where id = $1`, [hold.hold_id]);
    expect(row).toEqual({ status: 'expired' });
    expect(await accountRow(account)).toMatchObject({ held: 0, due_at: null });
    await expectConsistent(db, [account]);
  });

  it('an unknown account is CK003, as before', async () => {
    await expect(ck.reserve({ p_account_id: newAccountId(), p_amount: 1, p_ttl: '1 hour', p_now: at(1) }))
      .rejects.toMatchObject({ code: 'CK003' });
  });
});

describeIfPostgres('consume hot path: locks', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase({ backend: 'postgres' });
  });
  afterAll(() => db?.drop());

  // While another transaction holds an account's row lock (balance 1), a call of `fn` for 5 must
  // be refused at once with the `refused` answer, and a call for 1, which needs the lock, must wait
  // and fail on the lock timeout: the opposite case, so that the first check can fail.
  async function whileLocked(fn: string, extraArgs: string, refused: Record<string, unknown>) {
    const ck = creditkit((sql, params) => db.asService(sql, params));
    const account = await openAccount(ck, 1);
    const pool = db.pool({ max: 2 });
    const holder = await pool.connect();
    const asker = await pool.connect();
    const call = (amount: number) =>
      asker.query(`select * from public.${fn}($1, ${amount}${extraArgs}, p_now => $2)`, [account, at(1)]);
    try {
      await holder.query('begin');
      await holder.query(`select 1 from creditkit.accounts where id = $1 for update`, [account]);
      await asker.query(`set lock_timeout = '2s'`);
      expect((await call(5)).rows[0]).toMatchObject(refused);
      await expect(call(1)).rejects.toMatchObject({ code: '55P03' });
      await holder.query('rollback');
    } finally {
      holder.release();
      asker.release();
    }
  }

  it('a refused consume answers at once while another transaction holds the account row lock', () =>
    whileLocked('creditkit_consume', '', { allowed: false, balance: 1 }));

  it('a refused reserve answers at once while another transaction holds the account row lock', () =>
    whileLocked('creditkit_reserve', `, interval '1 hour'`, { allowed: false, balance: 1, hold_id: null }));
});
