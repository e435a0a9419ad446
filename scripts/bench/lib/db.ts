// The bench's throwaway databases: created from template0 as creditkit_bench_<random>, the kit
// installed by creditkit's setupDatabase (Supabase bootstrap, default privileges, then every
// migration in its own transaction: exactly what the test databases get; for the release scenario
// one is installed at the previous release instead), then the bench schema (sql/schema.sql).
// Dropped at the end, also after a failure or Ctrl-C.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { pgConnection, setupDatabase, type Migration } from 'creditkit';
import { createCitusDatabase, distributeKit } from '@creditkit/testing';
import { SQL_DIR } from './pgbench.ts';
import type { Dataset } from './scenarios.ts';

export interface BenchDb {
  name: string;
  url: string;
  /** Superuser connection for resets and accounting. */
  admin: pg.Client;
  /** Spare connection for the wait-event sampler. */
  sampler: pg.Client;
  /** A database on the local Citus cluster (createCitusBenchDb): reset its own way, dropped on every node. */
  citus?: { drop(): Promise<void> };
}

export function databaseUrl(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

async function connect(url: string, applicationName: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: applicationName });
  await client.connect();
  client.on('error', () => {}); // a connection killed by the final drop must not crash the process
  return client;
}

const created = new Set<string>();

/** A bench database at this version, or at an older release when given its migrations (no upgrade). */
export async function createBenchDb(serverUrl: string, suffix = '', migrations?: Migration[]): Promise<BenchDb> {
  const name = `creditkit_bench_${randomBytes(5).toString('hex')}${suffix}`;
  const server = await connect(serverUrl, 'creditkit-bench-admin');
  try {
    await server.query(`create database ${name} template template0`);
  } finally {
    await server.end();
  }
  created.add(name);
  const url = databaseUrl(serverUrl, name);
  const admin = await connect(url, 'creditkit-bench-admin');
  await setupDatabase(pgConnection(admin), migrations ? { migrations, upgrade: false } : {});
  await admin.query(readFileSync(join(SQL_DIR, 'schema.sql'), 'utf8'));
  const sampler = await connect(url, 'creditkit-bench-sampler');
  return { name, url, admin, sampler };
}

const DISTRIBUTE_SQL = fileURLToPath(new URL('../../citus/distribute.sql', import.meta.url));

/**
 * The bench database on the local Citus cluster (started by @creditkit/testing's harness if it is
 * not running, and left running): the kit installed through the coordinator as everywhere else, the
 * bench schema, then scripts/citus/distribute.sql with Citus's default 32 shards per table.
 */
export async function createCitusBenchDb(): Promise<BenchDb> {
  const db = await createCitusDatabase();
  let admin: pg.Client | undefined;
  try {
    admin = await connect(db.url, 'creditkit-bench-admin');
    await admin.query(readFileSync(join(SQL_DIR, 'schema.sql'), 'utf8'));
    await distributeKit(db.url, { name: 'scripts/citus/distribute.sql', sql: readFileSync(DISTRIBUTE_SQL, 'utf8') }, { shardCount: 32, delegate: true });
    const sampler = await connect(db.url, 'creditkit-bench-sampler');
    return { name: db.name, url: db.url, admin, sampler, citus: { drop: () => db.drop() } };
  } catch (err) {
    await admin?.end();
    await db.drop();
    throw err;
  }
}

/** Drops every database this process created (idempotent). */
export async function dropBenchDbs(serverUrl: string, dbs: BenchDb[]): Promise<void> {
  await Promise.allSettled(dbs.flatMap((db) => [db.admin.end(), db.sampler.end()]));
  for (const db of dbs) await db.citus?.drop(); // on every node; idempotent
  if (created.size === 0) return;
  const server = await connect(serverUrl, 'creditkit-bench-admin');
  try {
    for (const name of [...created]) {
      await server.query(`drop database if exists ${name} with (force)`);
      created.delete(name);
    }
  } finally {
    await server.end();
  }
}

export const KIT_TABLES = ['creditkit.accounts', 'creditkit.grants', 'creditkit.ledger', 'creditkit.ledger_keys', 'creditkit.holds', 'creditkit.subscriptions'];
export const BENCH_TABLES = ['bench.accounts', 'bench.ledger', 'bench.credits', 'bench.credit_transactions'];

/** VACUUM ANALYZE, one statement per table (VACUUM cannot run in a transaction block). */
export async function vacuum(db: BenchDb, tables: string[] = [...KIT_TABLES, ...BENCH_TABLES]): Promise<void> {
  for (const t of tables) await db.admin.query(`vacuum analyze ${t}`);
}

/**
 * Fresh state for one run: both sides emptied and seeded with the dataset, vacuumed and analyzed,
 * then a CHECKPOINT so that every run starts right after one (same full-page-write pattern, and
 * no checkpoint lands inside a run).
 */
export async function reset(db: BenchDb, ds: Dataset): Promise<void> {
  if (db.citus) await seedCitus(db, ds);
  else await db.admin.query('select bench.seed($1, $2)', [ds.accounts, ds.balance]);
  await vacuum(db);
  await db.admin.query(db.citus ? `select run_command_on_all_nodes('checkpoint')` : 'checkpoint');
}

/**
 * bench.seed's rows for the kit on Citus, in statements Citus runs: bench.seed's TRUNCATE under
 * session_replication_role = replica would not reach the shards (Citus does not propagate in that
 * mode), so the ledger's append-only triggers are off for the TRUNCATE instead; its chain of
 * data-modifying CTEs deadlocks across the nodes, so each table is one INSERT … SELECT.
 */
async function seedCitus(db: BenchDb, ds: Dataset): Promise<void> {
  const q = (sql: string, params?: unknown[]) => db.admin.query(sql, params);
  await q('set citus.enable_unsafe_triggers = on');
  await q('begin');
  try {
    for (const t of ['ledger', 'ledger_keys']) await q(`alter table creditkit.${t} disable trigger user`);
    await q(`truncate ${KIT_TABLES.join(', ')}, creditkit.allowances`);
    for (const t of ['ledger', 'ledger_keys']) await q(`alter table creditkit.${t} enable trigger user`);
    await q('commit');
  } catch (err) {
    await q('rollback');
    throw err;
  }
  if (ds.balance > 0) {
    await q('insert into creditkit.accounts (id, balance, version) select bench.account_id(i), $2, 1 from generate_series(1, $1) i', [ds.accounts, ds.balance]);
    await q(`insert into creditkit.grants (account_id, category, amount, remaining, priority)
             select a.id, 'purchase', a.balance, a.balance, 0 from creditkit.accounts a`);
    await q(`insert into creditkit.ledger (account_id, kind, amount, balance_after, grant_id)
             select g.account_id, 'grant', g.amount, g.amount, g.id from creditkit.grants g`);
  } else {
    await q('insert into creditkit.accounts (id) select bench.account_id(i) from generate_series(1, $1) i', [ds.accounts]);
  }
}

/** Between runs on the cost-growth database, which keeps its filler: vacuum and checkpoint only. */
export async function settle(db: BenchDb): Promise<void> {
  await vacuum(db);
  await db.admin.query('checkpoint');
}

export interface Snapshot {
  kitMaxId: number;
  benchMaxId: number;
  benchBalance: number;
  creditsTokens: number;
  transactionsMaxId: number;
}

export async function snapshot(db: BenchDb): Promise<Snapshot> {
  const r = await db.admin.query<{ k: string; b: string; s: string; c: string; t: string }>(
    `select (select coalesce(max(id), 0) from creditkit.ledger)::text as k,
            (select coalesce(max(id), 0) from bench.ledger)::text as b,
            (select coalesce(sum(balance), 0) from bench.accounts)::text as s,
            (select coalesce(sum(tokens), 0) from bench.credits)::text as c,
            (select coalesce(max(id), 0) from bench.credit_transactions)::text as t`,
  );
  const row = r.rows[0]!;
  return {
    kitMaxId: Number(row.k),
    benchMaxId: Number(row.b),
    benchBalance: Number(row.s),
    creditsTokens: Number(row.c),
    transactionsMaxId: Number(row.t),
  };
}

export interface Debits {
  /** Consume rows the kit's ledger gained. */
  kit: number;
  /** Rows the baseline ledger gained. */
  benchLedger: number;
  /** Credits the baseline accounts lost (each baseline debit is 1 credit). */
  benchBalance: number;
  /** Tokens M's credits rows lost (each M or M+T debit is 1). */
  credits: number;
  /** Rows M+T's credit_transactions gained. */
  transactions: number;
}

/** Successful debits since `before`, counted from the ledgers and balances, not from calls. */
export async function debitsSince(db: BenchDb, before: Snapshot): Promise<Debits> {
  const r = await db.admin.query<{ k: string; b: string; s: string; c: string; t: string }>(
    `select (select count(*) from creditkit.ledger where id > $1 and kind = 'consume')::text as k,
            (select count(*) from bench.ledger where id > $2)::text as b,
            (select coalesce(sum(balance), 0) from bench.accounts)::text as s,
            (select coalesce(sum(tokens), 0) from bench.credits)::text as c,
            (select count(*) from bench.credit_transactions where id > $3)::text as t`,
    [before.kitMaxId, before.benchMaxId, before.transactionsMaxId],
  );
  const row = r.rows[0]!;
  return {
    kit: Number(row.k),
    benchLedger: Number(row.b),
    benchBalance: before.benchBalance - Number(row.s),
    credits: before.creditsTokens - Number(row.c),
    transactions: Number(row.t),
  };
}

/** Accounts that break the kit's invariants (balance = sum(ledger) = sum(buckets), held = open holds). */
export async function brokenAccounts(db: BenchDb): Promise<number> {
  return Number((await db.admin.query<{ n: string }>('select bench.broken_accounts()::text as n')).rows[0]!.n);
}

/**
 * Cost growth: `rows` ledger rows of filler history on rows/100 other accounts, appended
 * round-robin in steps of about a million rows, then VACUUM ANALYZE and a CHECKPOINT.
 */
export async function fillLedger(db: BenchDb, rows: number, log: (msg: string) => void): Promise<void> {
  const per = 100;
  const accounts = Math.round(rows / per);
  await db.admin.query('select bench.fill_accounts($1, $2)', [accounts, per]);
  const step = Math.max(1, Math.floor(1_000_000 / accounts));
  let done = 0;
  for (let j = 1; j <= per; j += step) {
    const to = Math.min(per, j + step - 1);
    done += Number((await db.admin.query<{ n: string }>('select bench.fill_rows($1, $2)::text as n', [j, to])).rows[0]!.n);
    log(`  filler ledger rows: ${done.toLocaleString('en-US')} / ${(accounts * per).toLocaleString('en-US')}`);
  }
  await db.admin.query('drop table bench.filler');
  await vacuum(db, ['creditkit.ledger', 'creditkit.accounts', 'creditkit.grants']);
  await db.admin.query('checkpoint');
}

export interface RelationSizes {
  /** Bytes per table: heap (with TOAST, FSM and VM) and all its indexes. */
  [table: string]: { table: number; indexes: number };
}

export async function relationSizes(db: BenchDb, tables: string[]): Promise<RelationSizes> {
  const out: RelationSizes = {};
  for (const t of tables) {
    const r = await db.admin.query<{ t: string; i: string }>(
      'select pg_table_size($1::regclass)::text as t, pg_indexes_size($1::regclass)::text as i',
      [t],
    );
    out[t] = { table: Number(r.rows[0]!.t), indexes: Number(r.rows[0]!.i) };
  }
  return out;
}

export async function ledgerRows(db: BenchDb): Promise<number> {
  // exact count; on the 10M-row database this is a few seconds, run once per cost run
  return Number((await db.admin.query<{ n: string }>('select count(*)::text as n from creditkit.ledger')).rows[0]!.n);
}
