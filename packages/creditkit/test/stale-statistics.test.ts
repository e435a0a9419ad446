// Every keyed lookup of the kit stays a probe of its key whatever the planner's statistics say.
// The state that used to break it: statistics taken while the ledger was small (a fresh install,
// autovacuum off or behind), then one account's history grown far past them. With an idempotency
// index on the ledger, the cached generic plan switched to the ledger's primary key (account_id,
// id) and filtered the account's whole history for the key. Here each keyed call (consume, its
// replay, meter, reserve and its retry, grant) runs in a transaction that counts the rows its
// scans returned from the ledger and its key store: a probe returns a row or two, a filtered
// history thousands.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type Row, type TestDatabase } from '@creditkit/testing';
import { describeEachBackend } from '@creditkit/testing/vitest';
import { at, creditkit, newAccountId, type Creditkit } from './support.ts';

const HISTORY = 5000;

// Rows returned by scans of the ledger, ledger_keys and holds (their tables and indexes) during one
// call, from the transaction's own statistics counters.
const TRACE_SQL = `
  create function public.test_rows_read(p_sql text, out rows_read bigint, out answer jsonb)
  language plpgsql
  as $$
  declare
    v_before bigint;
    v_after bigint;
    c_tables constant regclass[] := array['creditkit.ledger', 'creditkit.ledger_keys', 'creditkit.holds']::regclass[];
  begin
    select sum(pg_stat_get_xact_tuples_returned(r.oid)) into v_before
      from pg_class r where r.oid = any(c_tables) or r.oid in (select i.indexrelid from pg_index i where i.indrelid = any(c_tables));
    execute 'select to_jsonb(x) from (' || p_sql || ') x' into answer;
    select sum(pg_stat_get_xact_tuples_returned(r.oid)) into v_after
      from pg_class r where r.oid = any(c_tables) or r.oid in (select i.indexrelid from pg_index i where i.indrelid = any(c_tables));
    rows_read := v_after - v_before;
  end;
  $$;`;

describeEachBackend('keyed lookups under stale statistics', (backend) => {
  let db: TestDatabase;
  let ck: Creditkit;
  const hot = newAccountId();
  beforeAll(async () => {
    db = await createTestDatabase({ backend });
    ck = creditkit((sql, params) => db.asService(sql, params));
    await db.exec(TRACE_SQL);
    await ck.setPrice({ p_event: 'chat', p_credits_per_unit: 1, p_effective_from: at(0) });
    await ck.grant({ p_account_id: hot, p_amount: 10_000_000, p_now: at(0) });
    // statistics while the account has one ledger row and no key
    await db.exec('analyze');
    // then a long keyed history, and a hold with a key
    await db.query(`select count(*) from (select creditkit_consume($1, 1, 'chat', 'k-' || i, null, null, $2)
                      from generate_series(1, ${HISTORY}) i) x`, [hot, at(1)]);
    await db.query(`select creditkit_reserve($1, 1, interval '1 hour', null, 'hold-1', null, $2)`, [hot, at(1)]);
  }, 300_000);
  afterAll(() => db?.drop());

  const traced = async (sql: string) =>
    (await db.query<{ rows_read: number; answer: Record<string, unknown> }>('select * from public.test_rows_read($1)', [sql]))[0]!;

  it('each keyed call reads a handful of rows, not the account history', async () => {
    const calls: Record<string, string> = {
      'consume, new key': `select * from creditkit_consume('${hot}', 1, 'chat', 'fresh-1', null, null, '${at(2)}')`,
      'consume, replayed key': `select * from creditkit_consume('${hot}', 1, 'chat', 'k-${HISTORY / 2}', null, null, '${at(2)}')`,
      'meter, new key': `select * from creditkit_meter('${hot}', 'chat', 1, '{}', 'fresh-2', null, null, '${at(2)}')`,
      'meter, replayed key': `select * from creditkit_meter('${hot}', 'chat', 1, '{}', 'fresh-2', null, null, '${at(2)}')`,
      'reserve, new key': `select * from creditkit_reserve('${hot}', 1, interval '1 hour', null, 'hold-2', null, '${at(2)}')`,
      'reserve, retried key': `select * from creditkit_reserve('${hot}', 1, interval '1 hour', null, 'hold-1', null, '${at(2)}')`,
      'grant, replayed key': `select * from creditkit_grant('${hot}', 5, 'purchase', null, null, 'grant-1', null, null, '${at(2)}')`,
      'batch, replayed and new keys': `select count(*) from creditkit_consume_batch('${JSON.stringify([
        { account_id: hot, amount: 1, event: 'chat', idempotency_key: 'k-7' },
        { account_id: hot, amount: 1, event: 'chat', idempotency_key: 'fresh-3' },
        { account_id: hot, amount: 1, event: 'chat', idempotency_key: `k-${HISTORY}` },
      ])}'::jsonb, '${at(2)}')`,
    };
    await ck.grant({ p_account_id: hot, p_amount: 5, p_idempotency_key: 'grant-1', p_now: at(1) });
    const read: Record<string, number> = {};
    for (const [name, sql] of Object.entries(calls)) {
      const { rows_read, answer } = await traced(sql);
      expect(answer, name).toBeTruthy();
      read[name] = Number(rows_read);
    }
    for (const [name, n] of Object.entries(read)) expect(n, `${name}: rows read ${JSON.stringify(read)}`).toBeLessThan(20);
    // the opposite case, so that the check can fail: a query that does filter the history reads it
    const scan = await traced(`select count(*) from creditkit.ledger where account_id = '${hot}' and event = 'chat'`);
    expect(Number(scan.rows_read)).toBeGreaterThan(HISTORY);
  });
});

// The other state: plans a long-lived connection cached while the tables were still empty. A
// plpgsql function keeps the generic plan it chose after its first few calls for as long as the
// connection lives; chosen against an empty, analyzed table, that plan is a sequential scan, which
// the table's later growth does not undo (nothing invalidates it until the next ANALYZE). Every
// lookup the kit makes by key or by account must still be a probe on such a connection.
describeEachBackend('keyed lookups on a connection whose plans were cached while the tables were empty', (backend) => {
  let db: TestDatabase;
  let session: (sql: string) => Promise<Row[]>;
  let close: () => Promise<void> = async () => {};
  const hot = newAccountId();
  const dry = newAccountId();
  const OTHERS = 3000;
  beforeAll(async () => {
    db = await createTestDatabase({ backend });
    await db.exec(TRACE_SQL);
    if (backend === 'postgres') {
      const client = await db.pool({ max: 1 }).connect();
      session = async (sql) => (await client.query(sql)).rows as Row[];
      close = async () => client.release();
    } else {
      session = (sql) => db.query(sql);
    }
    await session(`select creditkit_set_price('chat', 1, '{}', '${at(0)}')`);
    await session(`select creditkit_grant('${hot}', 10000000, p_now => '${at(0)}')`);
    await session(`select creditkit_grant('${dry}', 1, p_now => '${at(0)}')`);
    await session(`select creditkit_consume('${dry}', 1, p_now => '${at(0)}')`);
    // statistics while the key store and the holds are empty
    await session('analyze');
    // the same connection makes each kind of call ten times, so that its plans are cached
    for (let i = 1; i <= 10; i++) {
      await session(`select creditkit_meter('${hot}', 'chat', 1, '{}', 'warm-meter-${i}', null, null, '${at(1)}')`);
      await session(`select creditkit_meter('${hot}', 'chat', 1, '{}', 'warm-meter-${i}', null, null, '${at(1)}')`);
      await session(`select creditkit_consume('${dry}', 1, 'chat', 'warm-dry-${i}', null, null, '${at(1)}')`);
      await session(`select creditkit_consume('${hot}', 1, 'chat', 'warm-${i}', null, null, '${at(1)}')`);
      await session(`select creditkit_consume('${hot}', 1, 'chat', 'warm-${i}', null, null, '${at(1)}')`);
      await session(`select creditkit_grant('${hot}', 1, 'purchase', null, null, 'warm-grant-${i}', null, null, '${at(1)}')`);
      await session(`select creditkit_grant('${hot}', 1, 'purchase', null, null, 'warm-grant-${i}', null, null, '${at(1)}')`);
      const [hold] = await session(`select hold_id from creditkit_reserve('${hot}', 2, interval '1 hour', null, 'warm-hold-${i}', null, '${at(1)}')`);
      await session(`select creditkit_reserve('${hot}', 2, interval '1 hour', null, 'warm-hold-${i}', null, '${at(1)}')`);
      await session(`select creditkit_settle(${hold!.hold_id}, 1, p_now => '${at(1)}')`);
      const [other] = await session(`select hold_id from creditkit_reserve('${hot}', 2, interval '1 hour', p_now => '${at(1)}')`);
      await session(`select creditkit_release(${other!.hold_id}, '${at(1)}')`);
      await session(`select count(*) from creditkit_history('${hot}', 5)`);
      await session(`select balance from creditkit_balance('${hot}', '${at(1)}')`);
    }
    // then the tables grow: other accounts' keys, ledger rows and holds
    await session(`select count(*) from (select creditkit_grant(('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 10,
                     p_now => '${at(1)}') from generate_series(1, ${OTHERS}) i) x`);
    await session(`select count(*) from (select creditkit_consume(('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 1,
                     'chat', 'grow-' || i, null, null, '${at(1)}') from generate_series(1, ${OTHERS}) i) x`);
    await session(`select count(*) from (select creditkit_reserve(('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 1,
                     interval '1 hour', null, 'grow-hold-' || i, null, '${at(1)}') from generate_series(1, ${OTHERS}) i) x`);
  }, 300_000);
  afterAll(async () => {
    await close();
    await db?.drop();
  });

  it('each call still reads a handful of rows', async () => {
    const traced = async (sql: string) => {
      const [row] = await session(`select * from public.test_rows_read($$${sql}$$)`);
      return Number(row!.rows_read);
    };
    const [hold] = await session(`select hold_id from creditkit_reserve('${hot}', 2, interval '1 hour', null, 'hold-a', null, '${at(2)}')`);
    const [other] = await session(`select hold_id from creditkit_reserve('${hot}', 2, interval '1 hour', p_now => '${at(2)}')`);
    const calls: Record<string, string> = {
      'meter, new key': `select * from creditkit_meter('${hot}', 'chat', 1, '{}', 'fresh-meter', null, null, '${at(2)}')`,
      'meter, replayed key': `select * from creditkit_meter('${hot}', 'chat', 1, '{}', 'fresh-meter', null, null, '${at(2)}')`,
      'consume refused, new key': `select * from creditkit_consume('${dry}', 1, 'chat', 'fresh-dry', null, null, '${at(2)}')`,
      'consume, replayed key': `select * from creditkit_consume('${hot}', 1, 'chat', 'warm-3', null, null, '${at(2)}')`,
      'grant, replayed key': `select * from creditkit_grant('${hot}', 1, 'purchase', null, null, 'warm-grant-3', null, null, '${at(2)}')`,
      'reserve, retried key': `select * from creditkit_reserve('${hot}', 2, interval '1 hour', null, 'hold-a', null, '${at(2)}')`,
      settle: `select * from creditkit_settle(${hold!.hold_id}, 1, p_now => '${at(2)}')`,
      release: `select * from creditkit_release(${other!.hold_id}, '${at(2)}')`,
      history: `select count(*) from creditkit_history('${hot}', 5)`,
    };
    const read: Record<string, number> = {};
    for (const [name, sql] of Object.entries(calls)) read[name] = await traced(sql);
    for (const [name, n] of Object.entries(read)) expect(n, `${name}: rows read ${JSON.stringify(read)}`).toBeLessThan(20);
    // so that the check can fail: the key store now holds thousands of keys a scan would read
    expect(await traced(`select count(*) from creditkit.ledger_keys where idempotency_key like 'grow-%'`)).toBeGreaterThan(OTHERS);
  });
});
