// creditkit on Citus, scaled out by account: a local cluster (a coordinator and two workers, from
// the shared Citus build beside the repo), the kit installed through the coordinator as on any
// Postgres, then scripts/citus/distribute.sql (through distributeKit) places every table as
// CITUS_LAYOUT says (per-account tables distributed by account id and colocated with
// creditkit.accounts, catalogues and Stripe state as reference tables) and delegates the
// single-account API to the account's worker, then the API is called through the coordinator.
//
// Installing and distributing pass. Calls through the coordinator do not all work yet (docs/citus.md,
// "Calls through the coordinator": SECURITY INVOKER functions as an API role, SQL functions with
// parameters, FOR UPDATE across shards, ...), so the call test is a known bug: it states what must
// hold and fails until the functions change; when it starts to pass, vitest fails it and the marker
// comes off. CREDITKIT_KNOWN_BUGS=show runs it as a plain test, to read the error.
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { migrations } from 'creditkit';
import {
  citusPlacements,
  createCitusDatabase,
  describePlacement,
  distributeKit,
  type CitusDatabase,
  type CitusPlacement,
  type DistributeScript,
  type Row,
} from '@creditkit/testing';
import { describeIfCitus, knownBug } from '@creditkit/testing/vitest';
import { creditkit, newAccountId, runAs } from './support.ts';

/** The procedure that places every kit table (plain SQL, one transaction, idempotent), read here: the harness reads no repository file. */
const DISTRIBUTE: DistributeScript = {
  name: 'scripts/citus/distribute.sql',
  sql: readFileSync(new URL('../../../scripts/citus/distribute.sql', import.meta.url), 'utf8'),
};

/** The table every distributed kit table is colocated with. */
const COLOCATE_WITH = 'creditkit.accounts';

/**
 * Scale-out by account, by the classes of supabase/tests/distribution.test.sql: every per-account
 * table hash-distributed by its account id and colocated with creditkit.accounts (an account's rows,
 * and the statements of one call, stay on one node); the catalogues and the Stripe state (keyed by
 * Stripe's ids) as reference tables (a copy on every node). What distribute.sql must produce: the
 * script states the layout it applies, this is what the tests expect of it.
 */
const CITUS_LAYOUT: readonly CitusPlacement[] = [
  // per-account
  { table: 'creditkit.accounts', kind: 'distributed', column: 'id' },
  { table: 'creditkit.grants', kind: 'distributed', column: 'account_id' },
  { table: 'creditkit.ledger', kind: 'distributed', column: 'account_id' },
  { table: 'creditkit.ledger_keys', kind: 'distributed', column: 'account_id' },
  { table: 'creditkit.holds', kind: 'distributed', column: 'account_id' },
  { table: 'creditkit.subscriptions', kind: 'distributed', column: 'account_id' },
  { table: 'creditkit.allowances', kind: 'distributed', column: 'account_id' },
  { table: 'creditkit.account_alerts', kind: 'distributed', column: 'account_id' },
  { table: 'creditkit.auto_topups', kind: 'distributed', column: 'account_id' },
  // catalogue
  { table: 'creditkit.error_codes', kind: 'reference' },
  { table: 'creditkit.settings', kind: 'reference' },
  { table: 'creditkit.starter_grants', kind: 'reference' },
  { table: 'creditkit.units', kind: 'reference' },
  { table: 'creditkit.plans', kind: 'reference' },
  { table: 'creditkit.plan_limits', kind: 'reference' },
  { table: 'creditkit.prices', kind: 'reference' },
  { table: 'creditkit.packs', kind: 'reference' },
  { table: 'creditkit.auto_topup_terms', kind: 'reference' },
  { table: 'creditkit.balance_alerts', kind: 'reference' },
  { table: 'creditkit.webhook_endpoints', kind: 'reference' },
  // Stripe state
  { table: 'creditkit.stripe_customers', kind: 'reference' },
  { table: 'creditkit.stripe_events', kind: 'reference' },
  { table: 'creditkit.stripe_payments', kind: 'reference' },
  { table: 'creditkit.stripe_invoices', kind: 'reference' },
  { table: 'creditkit.stripe_payment_methods', kind: 'reference' },
  { table: 'creditkit.stripe_default_methods', kind: 'reference' },
  // the outbox and the top-ups (0.3.0): keyed by their own ids, so not by the account as they are
  { table: 'creditkit.notifications', kind: 'reference' },
  { table: 'creditkit.deliveries', kind: 'reference' },
  { table: 'creditkit.topups', kind: 'reference' },
];

const KIT_FUNCTIONS = `
  select p.oid::regprocedure::text as fn from pg_proc p
   where p.pronamespace = 'creditkit'::regnamespace
      or (p.pronamespace = 'public'::regnamespace and p.proname like 'creditkit\\_%')
   order by 1`;

/** Constraints and triggers of the kit's tables (shards left out), to compare before and after distributing. */
const KEYS_AND_TRIGGERS = `
  select c.conrelid::regclass::text as table, c.conname::text as name, pg_get_constraintdef(c.oid) as definition
    from pg_constraint c
   where c.connamespace = 'creditkit'::regnamespace and c.conrelid <> 0 and not relation_is_a_known_shard(c.conrelid)
  union all
  select t.tgrelid::regclass::text, t.tgname::text, pg_get_triggerdef(t.oid)
    from pg_trigger t join pg_class cl on cl.oid = t.tgrelid
   where cl.relnamespace = 'creditkit'::regnamespace and not t.tgisinternal and not relation_is_a_known_shard(t.tgrelid)
   order by 1, 2, 3`;

/** The ledger invariants of support.ts's LEDGER_PROBLEMS_SQL for one account ($1), in credits. */
const BOOKS_OF_ONE_ACCOUNT = `
  select a.balance = (select coalesce(sum(l.amount), 0) from creditkit.ledger l where l.account_id = $1 and l.unit = a.unit)
           as balance_is_ledger,
         a.balance = (select coalesce(sum(g.remaining), 0) from creditkit.grants g where g.account_id = $1 and g.unit = a.unit)
           - a.undrawn as balance_is_buckets,
         a.version = (select count(*) from creditkit.ledger l where l.account_id = $1 and l.unit = a.unit) as version_is_rows,
         a.held = (select coalesce(sum(h.amount), 0) from creditkit.holds h
                    where h.account_id = $1 and h.unit = a.unit and h.status = 'open') as held_is_holds
    from creditkit.accounts a where a.id = $1 and a.unit = 'credits'`;

/** The layout as citusPlacements() reports it once applied. */
const EXPECTED = CITUS_LAYOUT.map((p) => ({
  table: p.table,
  placement: describePlacement(p),
  colocated: p.kind === 'distributed',
})).sort((a, b) => (a.table < b.table ? -1 : 1));

const placements = (db: CitusDatabase) => citusPlacements(db.url, { colocateWith: COLOCATE_WITH });

describeIfCitus('creditkit on Citus', () => {
  let db: CitusDatabase;

  beforeAll(async () => {
    db = await createCitusDatabase();
  }, 300_000);

  afterAll(async () => {
    await db?.drop();
  }, 120_000);

  it('installs through the coordinator: every migration, and the API roles, auth schema and kit schema on the workers', async () => {
    const [row] = await db.query<{ applied: number }>(
      'select count(*)::int as applied from supabase_migrations.schema_migrations',
    );
    expect(row?.applied).toBe(migrations().length);
    for (const worker of [0, 1]) {
      const [state] = await db.queryWorker<Row>(
        worker,
        `select array(select r.rolname::text from pg_roles r
                       where r.rolname in ('anon', 'authenticated', 'service_role', 'authenticator') order by 1) as roles,
                to_regprocedure('auth.uid()') is not null as auth_uid,
                to_regnamespace('creditkit') is not null as kit_schema`,
      );
      expect(state).toEqual({
        roles: ['anon', 'authenticated', 'authenticator', 'service_role'],
        auth_uid: true,
        kit_schema: true,
      });
    }
  });

  it('CITUS_LAYOUT places every table of schema creditkit, and nothing else', async () => {
    const tables = (await placements(db)).map((t) => t.table);
    expect([...CITUS_LAYOUT.map((p) => p.table)].sort()).toEqual(tables);
    expect(CITUS_LAYOUT[0]?.table).toBe(COLOCATE_WITH);
  });

  it('distribute.sql refuses a kit table its layout does not list, and then places nothing', async () => {
    await db.exec('create table creditkit.unclassed (id bigint primary key)');
    try {
      await expect(distributeKit(db.url, DISTRIBUTE)).rejects.toThrow(/creditkit\.unclassed not in the layout/);
      expect((await placements(db)).filter((t) => t.placement !== null)).toEqual([]);
    } finally {
      await db.exec('drop table creditkit.unclassed');
    }
  }, 60_000);

  it('distribute.sql places every table as CITUS_LAYOUT says, keeps every key and trigger, and is idempotent', async () => {
    const before = await db.query<Row>(KEYS_AND_TRIGGERS);
    await distributeKit(db.url, DISTRIBUTE);
    expect(await placements(db)).toEqual(EXPECTED);
    // the foreign keys it drops around the placement are back, as they were
    expect(await db.query<Row>(KEYS_AND_TRIGGERS)).toEqual(before);
    // a second run places nothing and changes nothing
    await distributeKit(db.url, DISTRIBUTE);
    expect(await placements(db)).toEqual(EXPECTED);
    expect(await db.query<Row>(KEYS_AND_TRIGGERS)).toEqual(before);
  }, 180_000);

  it('once distributed, every kit function exists on every worker', async () => {
    expect(await placements(db)).toEqual(EXPECTED);
    const onCoordinator = (await db.query<{ fn: string }>(KIT_FUNCTIONS)).map((r) => r.fn);
    for (const worker of [0, 1]) {
      const onWorker = (await db.queryWorker<{ fn: string }>(worker, KIT_FUNCTIONS)).map((r) => r.fn);
      expect(onCoordinator.filter((fn) => !onWorker.includes(fn))).toEqual([]);
    }
  });

  it('delegates the single-account API to the worker that holds the account: one round trip, the books kept', async () => {
    expect(await placements(db)).toEqual(EXPECTED);
    // what distribute.sql (run twice above) made of the functions: DELEGATED, colocated with accounts
    const delegated = await db.query<{ fn: string }>(
      `select p.proname::text as fn from pg_dist_object o join pg_proc p on p.oid = o.objid
        where o.classid = 'pg_proc'::regclass and o.distribution_argument_index = 0
          and o.colocationid = (select colocationid from pg_dist_partition where logicalrelid = $1::regclass)
        order by 1`,
      [COLOCATE_WITH],
    );
    expect(delegated.map((r) => r.fn)).toEqual([...DELEGATED].sort());
    const groups = new Map(
      (await db.query<{ port: number; groupid: number }>('select nodeport as port, groupid from pg_dist_node')).map((r) => [r.port, r.groupid]),
    );

    for (const [i, { account, port }] of (await accountsWithWorkers(db)).entries()) {
      const calls = await delegatedCalls(db.url, [
        ['creditkit_grant', 'select * from public.creditkit_grant($1, $2)', [account, 100 * (i + 1)]],
        ['creditkit_consume', 'select * from public.creditkit_consume($1, 30)', [account]],
        ['creditkit_consume', 'select * from public.creditkit_consume($1, 1000)', [account]],
        ['creditkit_consume', `select * from public.creditkit_consume($1, 1, 'chat', 'k1', '{"model": "m"}')`, [account]],
        ['creditkit_consume', `select * from public.creditkit_consume($1, 1, 'chat', 'k1', '{"model": "m"}')`, [account]],
        ['creditkit_report', `select * from public.creditkit_report($1, 'credits', 2)`, [account]],
        ['creditkit_check', 'select * from public.creditkit_check($1)', [account]],
        ['creditkit_balance', 'select * from public.creditkit_balance($1)', [account]],
        ['creditkit_reserve', 'select * from public.creditkit_reserve($1, 5)', [account]],
        ['creditkit_adjust', `select * from public.creditkit_adjust($1, 5, 'goodwill')`, [account]],
      ]);
      const start = 100 * (i + 1);
      expect(calls.map((c) => c.row)).toMatchObject([
        { balance: start },
        { allowed: true, balance: start - 30 },
        { allowed: false, balance: start - 30 },
        { allowed: true, balance: start - 31 },
        { allowed: true, transaction_id: calls[3]!.row.transaction_id }, // the replay: the first call's row
        { allowed: true, balance: start - 33 },
        { allowed: true, balance: start - 33 },
        { balance: start - 33 },
        { allowed: true, balance: start - 38 },
        { balance: start - 33 },
      ]);
      // each call: exactly one command from the coordinator, the call itself, to the account's worker
      for (const c of calls) {
        expect(c.remote, c.fn).toEqual([{ port, command: expect.stringMatching(new RegExp(`^SELECT .* FROM public\\.${c.fn}\\(`)) }]);
      }
      // the rows were written there: ids from that node's range of the sequences (docs/citus.md, D1)
      const ids = await db.query<{ node: number }>(
        'select distinct (id >> 48)::int as node from creditkit.ledger where account_id = $1',
        [account],
      );
      expect(ids).toEqual([{ node: groups.get(port) }]);
      const [books] = await db.query<Row>(BOOKS_OF_ONE_ACCOUNT, [account]);
      expect(books).toMatchObject({ balance_is_ledger: true, balance_is_buckets: true, version_is_rows: true, held_is_holds: true });
    }

    // Errors come back with the kit's codes: an unknown account (open_unit's nested read of units
    // on the worker, F7) and an amount out of range.
    for (const [sql, code] of [
      ['select * from public.creditkit_consume($1, 1)', 'CK003'],
      ['select * from public.creditkit_check($1)', 'CK003'],
      ['select * from public.creditkit_consume($1, 0)', 'CK001'],
    ] as const) {
      await expect(db.query(sql, [newAccountId()]), sql).rejects.toMatchObject({ code });
    }
  }, 120_000);

  // Grant, consume and balance work; history as service_role does not: creditkit_history is SECURITY
  // INVOKER, so Citus connects to the worker as service_role, which cannot log in ("08006 connection
  // to the remote node service_role@… failed … not permitted to log in", docs/citus.md F9).
  knownBug('grant, consume, balance and history through the coordinator keep the books', async () => {
    expect(await placements(db)).toEqual(EXPECTED);
    const ck = creditkit(runAs.service(db));
    const accounts = await accountsOnEveryWorker(db);
    for (const [i, account] of accounts.entries()) {
      expect(await ck.grant({ p_account_id: account, p_amount: 100 * (i + 1) })).toMatchObject({ balance: 100 * (i + 1) });
      expect(await ck.consume({ p_account_id: account, p_amount: 30, p_event: 'chat' })).toMatchObject({
        allowed: true,
        balance: 100 * (i + 1) - 30,
      });
      expect(await ck.consume({ p_account_id: account, p_amount: 1000, p_event: 'chat' })).toMatchObject({
        allowed: false,
      });
      expect(await ck.balance({ p_account_id: account })).toMatchObject({ balance: 100 * (i + 1) - 30 });
      const history = await ck.history({ p_account_id: account, p_limit: 10 });
      expect(history.map((r) => [r.kind, r.amount])).toEqual([
        ['consume', -30],
        ['grant', 100 * (i + 1)],
      ]);
    }
    // The books, account by account. (support.ts's expectConsistent reads every account in one query
    // that joins the tables on more than the account id, which Citus refuses: "complex joins are
    // only supported when all distributed tables are co-located and joined on their distribution
    // columns". Filtered on one account, every table below is read on that account's shard.)
    for (const account of accounts) {
      const [books] = await db.query<Row>(BOOKS_OF_ONE_ACCOUNT, [account]);
      expect(books).toMatchObject({ balance_is_ledger: true, balance_is_buckets: true, version_is_rows: true, held_is_holds: true });
    }
  }, 120_000);
});

/** The API functions distribute.sql delegates to the account's worker (its creditkit_delegated). */
const DELEGATED = [
  'creditkit_consume',
  'creditkit_consume_or_raise',
  'creditkit_report',
  'creditkit_meter',
  'creditkit_check',
  'creditkit_balance',
  'creditkit_grant',
  'creditkit_adjust',
  'creditkit_reserve',
];

interface DelegatedCall {
  fn: string;
  row: Row;
  /** What the coordinator sent to other nodes for this call (citus.log_remote_commands). */
  remote: Array<{ port: number; command: string }>;
}

/**
 * Each call as its own statement outside a transaction block (where Citus delegates), on one
 * coordinator connection with citus.log_remote_commands on, with the commands it sent to the workers.
 */
async function delegatedCalls(url: string, calls: Array<[fn: string, sql: string, params: unknown[]]>): Promise<DelegatedCall[]> {
  // bigints as numbers, as the suites' clients read them (ids from a worker's range are < 2^53)
  const types = { getTypeParser: (oid: number, format?: 'text' | 'binary') => (oid === 20 ? Number : pg.types.getTypeParser(oid, format)) };
  const client = new pg.Client({ connectionString: url, types: types as pg.CustomTypesConfig });
  await client.connect();
  let remote: DelegatedCall['remote'] = [];
  client.on('notice', (n) => {
    const port = /on server \S+@[^:]+:(\d+)/.exec(n.detail ?? '')?.[1];
    if (n.message?.startsWith('issuing ')) remote.push({ port: Number(port), command: n.message.slice('issuing '.length) });
  });
  try {
    await client.query('set citus.log_remote_commands = on');
    const out: DelegatedCall[] = [];
    for (const [fn, sql, params] of calls) {
      remote = [];
      const { rows } = await client.query({ text: sql, values: params });
      out.push({ fn, row: rows[0] as Row, remote });
    }
    return out;
  } finally {
    await client.end();
  }
}

/** Two new account ids whose shards are on different workers (so a test crosses nodes). */
async function accountsOnEveryWorker(db: CitusDatabase): Promise<string[]> {
  return (await accountsWithWorkers(db)).map((a) => a.account);
}

/** Two new account ids whose shards are on different workers, with the port of each one's worker. */
async function accountsWithWorkers(db: CitusDatabase): Promise<Array<{ account: string; port: number }>> {
  const byPort = new Map<number, string>();
  for (let i = 0; i < 64 && byPort.size < 2; i++) {
    const id = newAccountId();
    const [row] = await db.query<{ port: number }>(
      `select p.nodeport as port from pg_dist_shard_placement p
        where p.shardid = get_shard_id_for_distribution_column('creditkit.accounts', $1::uuid)`,
      [id],
    );
    if (row && !byPort.has(row.port)) byPort.set(row.port, id);
  }
  if (byPort.size < 2) throw new Error('could not find accounts on two workers: is creditkit.accounts distributed?');
  return [...byPort].map(([port, account]) => ({ account, port }));
}
