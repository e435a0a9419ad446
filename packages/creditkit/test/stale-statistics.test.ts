// Every keyed lookup of the kit stays a probe of its key whatever the planner's statistics say.
// The state that used to break it: statistics taken while the ledger was small (a fresh install,
// autovacuum off or behind), then one account's history grown far past them. With an idempotency
// index on the ledger, the cached generic plan switched to the ledger's primary key (account_id,
// id) and filtered the account's whole history for the key. Here each keyed call (consume, its
// replay, meter, reserve and its retry, grant) runs in a transaction that counts the rows its
// scans returned from the ledger and its key store: a probe returns a row or two, a filtered
// history thousands.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@creditkit/testing';
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
