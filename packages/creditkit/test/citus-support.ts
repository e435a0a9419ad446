// What the Citus suites share (citus*.test.ts): the procedure that places the kit, the layout it
// must produce, a database with the kit installed and placed, accounts on each worker, the books of
// one account, delegated calls with the commands they sent, and Stripe events through the webhook's
// SQL. Nothing here starts or checks anything by itself.
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { expect } from 'vitest';
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
import { creditkit, newAccountId } from './support.ts';
import { stripeEvent, stripeId, type JsonObject } from './stripe-fixtures.ts';

/** The procedure that places every kit table (plain SQL, one transaction, idempotent), read here: the harness reads no repository file. */
export const DISTRIBUTE: DistributeScript = {
  name: 'scripts/citus/distribute.sql',
  sql: readFileSync(new URL('../../../scripts/citus/distribute.sql', import.meta.url), 'utf8'),
};

/** The table every distributed kit table is colocated with. */
export const COLOCATE_WITH = 'creditkit.accounts';

/**
 * Scale-out by account, by the classes of supabase/tests/distribution.test.sql: every per-account
 * table hash-distributed by its account id and colocated with creditkit.accounts (an account's rows,
 * and the statements of one call, stay on one node); the catalogues and the Stripe state (keyed by
 * Stripe's ids) as reference tables (a copy on every node). What distribute.sql must produce: the
 * script states the layout it applies, this is what the tests expect of it.
 */
export const CITUS_LAYOUT: readonly CitusPlacement[] = [
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
  { table: 'creditkit.notifications', kind: 'distributed', column: 'account_id' },
  { table: 'creditkit.deliveries', kind: 'distributed', column: 'account_id' },
  { table: 'creditkit.topups', kind: 'distributed', column: 'account_id' },
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
];


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
export const EXPECTED = CITUS_LAYOUT.map((p) => ({
  table: p.table,
  placement: describePlacement(p),
  colocated: p.kind === 'distributed',
})).sort((a, b) => (a.table < b.table ? -1 : 1));

export const placements = (db: CitusDatabase) => citusPlacements(db.url, { colocateWith: COLOCATE_WITH });


export interface DelegatedCall {
  fn: string;
  row: Row;
  /** What the coordinator sent to other nodes for this call (citus.log_remote_commands). */
  remote: Array<{ port: number; command: string }>;
}

/**
 * Each call as its own statement outside a transaction block (where Citus delegates), on one
 * coordinator connection with citus.log_remote_commands on, with the commands it sent to the workers.
 */
export async function delegatedCalls(url: string, calls: Array<[fn: string, sql: string, params: unknown[]]>): Promise<DelegatedCall[]> {
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
export async function accountsOnEveryWorker(db: CitusDatabase): Promise<string[]> {
  return (await accountsWithWorkers(db)).map((a) => a.account);
}

/** Two new account ids whose shards are on different workers, with the port of each one's worker. */
export async function accountsWithWorkers(db: CitusDatabase): Promise<Array<{ account: string; port: number }>> {
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


let stripeClock = 0;
/** A Stripe event applied through creditkit_stripe_apply, as the webhook would. */
export function applyStripe(ck: ReturnType<typeof creditkit>, type: string, object: JsonObject, id?: string) {
  stripeClock += 1;
  return ck.call('creditkit_stripe_apply', {
    p_event: stripeEvent(type, object, { id, created: Math.floor(Date.now() / 1000) + stripeClock }),
  });
}

/** Credits, a Stripe customer, and a card saved for off-session use, through the API and the webhook. */
export async function customerWithCard(db: CitusDatabase, ck: ReturnType<typeof creditkit>, account: string, balance: number) {
  const customer = stripeId('cus');
  const pm = stripeId('pm');
  await db.query('select * from public.creditkit_grant($1, $2)', [account, balance]);
  await ck.call('creditkit_stripe_link_customer', { p_account_id: account, p_customer_id: customer });
  await applyStripe(ck, 'payment_method.attached', {
    id: pm, object: 'payment_method', type: 'card', customer, card: { brand: 'visa', last4: '4242', exp_month: 12, exp_year: 2034 },
  });
  await applyStripe(ck, 'setup_intent.succeeded', {
    id: stripeId('seti'), object: 'setup_intent', status: 'succeeded', usage: 'off_session', customer, payment_method: pm,
  });
  return { customer, pm };
}

/** A new database on the cluster with the kit installed through the coordinator and placed by distribute.sql. */
export async function distributedDatabase(): Promise<CitusDatabase> {
  const db = await createCitusDatabase();
  try {
    await distributeKit(db.url, DISTRIBUTE);
  } catch (err) {
    await db.drop();
    throw err;
  }
  return db;
}

/** The books of each account hold (BOOKS_OF_ONE_ACCOUNT), read one account at a time (one shard each). */
export async function expectBooks(db: CitusDatabase, accounts: readonly unknown[]): Promise<void> {
  for (const account of accounts) {
    const [books] = await db.query<Row>(BOOKS_OF_ONE_ACCOUNT, [account]);
    expect(books, String(account)).toEqual({ balance_is_ledger: true, balance_is_buckets: true, version_is_rows: true, held_is_holds: true });
  }
}
