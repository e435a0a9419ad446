// Throwaway creditkit databases on a local Citus cluster (a coordinator and two workers, each its own
// PostgreSQL 15 cluster on 127.0.0.1), for the "[citus]" suites. The cluster comes from a shared
// Citus build (a folder with cluster.sh, CREDITKIT_CITUS_DIR); this module starts it when it is not
// running (idempotent, and left running for the next run: starting takes a while), creates a
// database on all three nodes with the citus extension and the workers registered, installs the
// Supabase bootstrap and the kit on the coordinator exactly as setupDatabase does everywhere else,
// and drops the database on all three nodes afterwards.
//
// It does not change the kit to suit Citus, and it reads no file of the repository: a suite passes
// the distribute procedure's SQL to distributeKit(), and says which placement it expects.
//
//   env: CREDITKIT_CITUS_DIR   folder with cluster.sh (the SQL suites' vitest config defaults it to
//                              the shared build beside the checkout, ../shared/citus)
//        CREDITKIT_CITUS_PORT  coordinator port; the workers are the next two (default 5441)
//        CREDITKIT_REQUIRE_CITUS=1  a missing cluster is an error, not a skip (default: follows
//                                   CREDITKIT_REQUIRE_PG; CREDITKIT_REQUIRE_CITUS=0 opts out)
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { pgConnection, setupDatabase, type PrivilegeMode } from 'creditkit';
import { postgresDatabase, statement, testDatabaseName, withClient, type Row, type TestDatabase } from './databases.ts';

/** The folder with the shared Citus build and its cluster.sh, if one is configured. */
export function citusDir(): string | undefined {
  return process.env.CREDITKIT_CITUS_DIR || undefined;
}

/** The coordinator's port; the workers listen on the next two. */
export function citusPort(): number {
  const port = Number(process.env.CREDITKIT_CITUS_PORT || 5441);
  if (!Number.isInteger(port) || port < 1 || port > 65533) {
    throw new Error(`CREDITKIT_CITUS_PORT must be a port number, not ${process.env.CREDITKIT_CITUS_PORT}`);
  }
  return port;
}

/** True on a machine with the shared Citus build (cluster.sh); whether it starts is another matter. */
export function citusAvailable(): boolean {
  const dir = citusDir();
  return dir !== undefined && existsSync(join(dir, 'cluster.sh'));
}

/** True when the Citus suites must run (CI): CREDITKIT_REQUIRE_CITUS=1, or CREDITKIT_REQUIRE_PG=1 unless CREDITKIT_REQUIRE_CITUS=0. */
export function citusRequired(): boolean {
  const own = process.env.CREDITKIT_REQUIRE_CITUS;
  if (own === '1') return true;
  if (own === '0') return false;
  return process.env.CREDITKIT_REQUIRE_PG === '1';
}

/** Throws when the Citus suites must run but cannot; returns whether they can. */
export function checkCitus(): boolean {
  if (citusAvailable()) return true;
  if (citusRequired()) {
    const dir = citusDir();
    throw new Error(
      `the Citus suites are required (CREDITKIT_REQUIRE_CITUS=1 or CREDITKIT_REQUIRE_PG=1) but ` +
        `${dir ? `there is no ${join(dir, 'cluster.sh')}` : 'CREDITKIT_CITUS_DIR is not set'}: set CREDITKIT_CITUS_DIR to the ` +
        `folder of the shared Citus build (README.md, cluster.sh), or CREDITKIT_REQUIRE_CITUS=0 to run without them.`,
    );
  }
  return false;
}

export interface CitusCluster {
  /** Coordinator first, then the two workers. */
  readonly ports: readonly [number, number, number];
  /** A superuser URL of `database` on the node listening on `port`. */
  url(port: number, database?: string): string;
}

function clusterAt(port: number): CitusCluster {
  return {
    ports: [port, port + 1, port + 2],
    url: (p, database = 'postgres') => `postgresql://postgres@127.0.0.1:${p}/${database}`,
  };
}

async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

async function allAnswer(cluster: CitusCluster): Promise<boolean> {
  return (await Promise.all(cluster.ports.map((p) => answers(cluster.url(p))))).every(Boolean);
}

const starting = new Map<number, Promise<CitusCluster>>();

/**
 * The local Citus cluster on `port` (default citusPort()), started if it is not running: once per
 * process and port, and safe when several test files start it at once (cluster.sh runs under an
 * flock). Left running afterwards. Throws with cluster.sh's output when a node does not answer.
 */
export function startCitusCluster(port: number = citusPort()): Promise<CitusCluster> {
  let started = starting.get(port);
  if (!started) {
    started = start(port);
    starting.set(port, started);
    started.catch(() => starting.delete(port));
  }
  return started;
}

async function start(port: number): Promise<CitusCluster> {
  const cluster = clusterAt(port);
  if (await allAnswer(cluster)) return cluster;
  checkCitus();
  const dir = citusDir();
  const script = dir && join(dir, 'cluster.sh');
  if (!script || !existsSync(script)) {
    throw new Error(`no Citus cluster answers on port ${port} and there is no cluster.sh to start one (CREDITKIT_CITUS_DIR)`);
  }
  const lock = join('/tmp', `creditkit-citus-${port}.lock`);
  const hasFlock = spawnSync('flock', ['--version'], { stdio: 'ignore' }).status === 0;
  const [cmd, args] = hasFlock ? ['flock', [lock, script, 'start', String(port)]] : [script, ['start', String(port)]];
  const run = spawnSync(cmd, args, { encoding: 'utf8', timeout: 300_000 });
  let output = `${run.stdout ?? ''}${run.stderr ?? ''}${run.error ? String(run.error) : ''}`.trim();
  if (!(await allAnswer(cluster))) {
    // cluster.sh ignores a failed `pg_ctlcluster start`; where systemd is present but not running the
    // clusters (containers), starting without the systemctl redirect is what works.
    for (const p of cluster.ports) {
      const direct = spawnSync('pg_ctlcluster', ['--skip-systemctl-redirect', '15', `citus${p}`, 'start'], { encoding: 'utf8' });
      output += `${direct.stdout ?? ''}${direct.stderr ?? ''}`;
    }
    for (let i = 0; i < 30 && !(await allAnswer(cluster)); i++) await new Promise((r) => setTimeout(r, 1000));
  }
  if (!(await allAnswer(cluster))) {
    throw new Error(
      `could not start the Citus cluster on ports ${cluster.ports.join(', ')} with ${script} start ${port} ` +
        `(it needs root and PostgreSQL 15):\n${output || '(no output)'}`,
    );
  }
  return cluster;
}

// ── Databases ─────────────────────────────────────────────────────────────────────────────

export interface CitusDatabaseOptions {
  /** Default privileges installed before the migrations (default 'supabase'). */
  defaultPrivileges?: PrivilegeMode;
  /** Apply the kit's migrations on the coordinator (default true). */
  migrate?: boolean;
  /** Coordinator port (default citusPort()). */
  port?: number;
}

export interface CitusDatabase extends TestDatabase {
  readonly name: string;
  /** The coordinator's URL. */
  readonly url: string;
  /** URLs of the database on the two workers. */
  readonly workerUrls: readonly string[];
  /** One statement as the superuser on a worker (0 or 1), e.g. to check what reached it. */
  queryWorker<T = Row>(worker: number, sql: string, params?: unknown[]): Promise<T[]>;
}

/** The roles Supabase's bootstrap creates, which every node must have with the same attributes. */
const API_ROLES = ['anon', 'authenticated', 'service_role', 'authenticator'];
const ROLE_STATE = `
  select r.rolname, r.rolcanlogin, r.rolinherit, r.rolbypassrls,
         array(select m.roleid::regrole::text from pg_catalog.pg_auth_members m
                where m.member = r.oid order by 1) as member_of
    from pg_catalog.pg_roles r where r.rolname = any ($1::text[]) order by r.rolname`;

const rolesAt = (url: string) => withClient(url, async (c) => JSON.stringify((await c.query(statement(ROLE_STATE, [API_ROLES]))).rows));

/**
 * A fresh creditkit database on the local Citus cluster: created on the coordinator and both
 * workers (creditkit_test_<run>_citus_…), the citus extension in each, the workers registered,
 * then the Supabase bootstrap and the migrations on the coordinator. Nothing is distributed yet.
 * The bootstrap's roles reach the workers because Citus propagates CREATE ROLE and GRANT run on
 * the coordinator of a database with the extension (also from inside its DO block); this checks
 * that they did.
 */
export async function createCitusDatabase(opts: CitusDatabaseOptions = {}): Promise<CitusDatabase> {
  const cluster = await startCitusCluster(opts.port ?? citusPort());
  const [coordinatorPort, ...workerPorts] = cluster.ports;
  const name = testDatabaseName('citus_');
  const url = cluster.url(coordinatorPort, name);
  const workerUrls = workerPorts.map((p) => cluster.url(p, name));
  const mode = opts.defaultPrivileges ?? 'supabase';

  // the coordinator first: its backends hold the cached connections to the workers
  const dropDatabase = async () => {
    const failures: string[] = [];
    for (const port of cluster.ports) {
      try {
        await withClient(cluster.url(port), (c) => c.query(`drop database if exists ${name} with (force)`));
      } catch (err) {
        failures.push(`:${port}: ${(err as Error).message}`);
      }
    }
    if (failures.length) throw new Error(`could not drop ${name} on every Citus node: ${failures.join('; ')}`);
  };

  try {
    for (const port of cluster.ports) {
      await withClient(cluster.url(port), (c) => c.query(`create database ${name} template template0`));
      await withClient(cluster.url(port, name), (c) => c.query('create extension citus'));
    }
    await withClient(url, async (c) => {
      await c.query(statement('select citus_set_coordinator_host($1, $2)', ['127.0.0.1', coordinatorPort]));
      for (const p of workerPorts) await c.query(statement('select citus_add_node($1, $2)', ['127.0.0.1', p]));
      await setupDatabase(pgConnection(c), { defaultPrivileges: mode, migrate: opts.migrate });
    });
    const expected = await rolesAt(url);
    for (const workerUrl of workerUrls) {
      const found = await rolesAt(workerUrl);
      if (found !== expected) {
        throw new Error(
          `the API roles on ${workerUrl} differ from the coordinator's (Citus did not propagate the bootstrap's ` +
            `roles):\n  coordinator ${expected}\n  worker      ${found}`,
        );
      }
    }
  } catch (err) {
    await dropDatabase().catch(() => {});
    throw err;
  }

  return {
    ...postgresDatabase(url, mode, dropDatabase),
    name,
    url,
    workerUrls,
    queryWorker: async <T>(worker: number, sql: string, params?: unknown[]) => {
      const workerUrl = workerUrls[worker];
      if (!workerUrl) throw new Error(`queryWorker: no worker ${worker} (there are ${workerUrls.length})`);
      return withClient(workerUrl, async (c) => (await c.query(statement(sql, params))).rows as T[]);
    },
  };
}

// ── Distribution ──────────────────────────────────────────────────────────────────────────

/** How one table is placed on the cluster. */
export type CitusPlacement = { table: string; kind: 'distributed'; column: string } | { table: string; kind: 'reference' };

/** 'reference' or 'distributed by <column>', as citusPlacements() reports a table. */
export function describePlacement(p: CitusPlacement): string {
  return p.kind === 'reference' ? 'reference' : `distributed by ${p.column}`;
}

/** A distribute procedure: plain SQL (no psql commands), as the suite read it. */
export interface DistributeScript {
  /** Where it came from, for error messages (e.g. scripts/citus/distribute.sql). */
  name: string;
  sql: string;
}

export interface DistributeOptions {
  /** Shards per distributed table (default 4: tests run on small machines; Citus's default is 32). */
  shardCount?: number;
  /** Delegate the single-account functions to the account's worker (creditkit.citus_delegate = on; default off). */
  delegate?: boolean;
}

/**
 * Runs `script` on the database at `url` (the coordinator) with citus.shard_count set for the
 * session. Throws what Citus (or the script) said, with its detail, hint and context, when it
 * refuses.
 */
export async function distributeKit(url: string, script: DistributeScript, opts: DistributeOptions = {}): Promise<void> {
  const shardCount = opts.shardCount ?? 4;
  await withClient(url, async (c) => {
    await c.query(statement(`select set_config('citus.shard_count', $1, false)`, [String(shardCount)]));
    await c.query(statement(`select set_config('creditkit.citus_delegate', $1, false)`, [opts.delegate ? 'on' : 'off']));
    try {
      await c.query(script.sql); // simple protocol: the script's statements as they are, BEGIN to COMMIT
    } catch (err) {
      const e = err as pg.DatabaseError;
      if (typeof e.code !== 'string') throw err;
      const lines = [
        `${e.code} ${e.message}`,
        e.detail && `DETAIL: ${e.detail}`,
        e.hint && `HINT: ${e.hint}`,
        e.where && `CONTEXT: ${e.where}`,
      ];
      throw new Error(`${script.name} failed: ${lines.filter(Boolean).join('\n')}`, { cause: err });
    }
  });
}

export interface PlacementOptions {
  /** The schema whose tables are reported (default 'creditkit'). */
  schema?: string;
  /** `colocated` says whether a table is in this table's colocation group. */
  colocateWith: string;
}

export interface TablePlacement {
  table: string;
  /** 'reference', 'distributed by <column>', 'local' (Citus-managed, on the coordinator only), or null (a plain table). */
  placement: string | null;
  colocated: boolean;
}

const PLACEMENT_SQL = `
  select format('%I.%I', n.nspname, cl.relname) as table,
         case when p.partmethod = 'h' then 'distributed by ' || column_to_column_name(p.logicalrelid, p.partkey)
              when p.partmethod = 'n' and p.repmodel = 't' then 'reference'
              when p.partmethod = 'n' then 'local'
              else 'partmethod ' || p.partmethod::text end as placement,
         coalesce(p.colocationid = (select a.colocationid from pg_dist_partition a where a.logicalrelid = $1::regclass), false)
           as colocated
    from pg_class cl join pg_namespace n on n.oid = cl.relnamespace
    left join pg_dist_partition p on p.logicalrelid = cl.oid
   where n.nspname = $2 and cl.relkind in ('r', 'p') and not relation_is_a_known_shard(cl.oid)
   order by 1`;

/** How the database at `url` places each table of the schema now, by table name (shards left out). */
export function citusPlacements(url: string, opts: PlacementOptions): Promise<TablePlacement[]> {
  return withClient(url, async (c) => {
    const { rows } = await c.query(statement(PLACEMENT_SQL, [opts.colocateWith, opts.schema ?? 'creditkit']));
    return rows as TablePlacement[];
  });
}
