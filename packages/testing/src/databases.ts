// Throwaway creditkit databases for tests, on PGlite (fast, in-process) or on a real Postgres
// server (DATABASE_URL: real connections, real concurrency). Both backends answer the same API
// and call statements the way PostgREST does — one transaction per call, with the role and the
// JWT claims set locally (roles.ts) — so a test exercises exactly what the Data API would run.
//
// Neither replays the migrations per database. On Postgres, a run of scripts/test.mjs migrates
// one template database per privilege mode and every test database is a copy of it (`create
// database … template …`); on PGlite, each database loads a dump of one migrated database
// (pglite.ts).
import { randomBytes } from 'node:crypto';
import type { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { parseInt8, pgConnection, setupDatabase, type PrivilegeMode } from 'creditkit';
import { createPgliteDatabase } from './pglite.ts';
import { claimsFor, inRole, requestSettings, SET_REQUEST, type ApiRole } from './roles.ts';

export type Backend = 'pglite' | 'postgres';
export type Row = Record<string, unknown>;

export interface TestDatabaseOptions {
  /** Default: 'postgres' when DATABASE_URL is set, else 'pglite'. */
  backend?: Backend;
  /** Default privileges installed before the migrations (default 'supabase'). */
  defaultPrivileges?: PrivilegeMode;
  /** Apply the migrations (default true); false: only Supabase's bootstrap and default privileges. */
  migrate?: boolean;
}

export interface TestDatabase {
  readonly backend: Backend;
  readonly defaultPrivileges: PrivilegeMode;
  /** URL of the throwaway database (postgres backend only). */
  readonly url: string | undefined;
  /** One statement as the superuser (postgres). Errors carry their SQLSTATE in `code`. */
  query<T = Row>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Several statements at once as the superuser, e.g. fixtures; no parameters. */
  exec(sql: string): Promise<void>;
  /**
   * One statement as PostgREST runs it: `begin; select set_config('role', role, true),
   * set_config('request.jwt.claims', claims, true); <sql>; commit`. `claims: null` sends none.
   */
  asRole<T = Row>(role: ApiRole, claims: object | null, sql: string, params?: unknown[]): Promise<T[]>;
  /** As the service_role key would (claims {role: 'service_role'}). */
  asService<T = Row>(sql: string, params?: unknown[]): Promise<T[]>;
  /** As a signed-in user (claims {sub: userId, role: 'authenticated'}). */
  asUser<T = Row>(userId: string, sql: string, params?: unknown[]): Promise<T[]>;
  /** As the anon key would (claims {role: 'anon'}, so auth.uid() is NULL). */
  asAnon<T = Row>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Inserts a row into auth.users and returns its id. */
  createUser(email?: string): Promise<string>;
  /** A new pool of superuser connections to this database, closed by drop() (postgres only). */
  pool(config?: Omit<pg.PoolConfig, 'connectionString'>): pg.Pool;
  /** Closes every connection and deletes the database. */
  drop(): Promise<void>;
}

/** True when DATABASE_URL points at a Postgres server the real-Postgres suites can use. */
export function postgresAvailable(): boolean {
  return Boolean(process.env.DATABASE_URL);
}

/** True when CI demands the real-Postgres suites (CREDITKIT_REQUIRE_PG=1): skipping is an error. */
export function postgresRequired(): boolean {
  return process.env.CREDITKIT_REQUIRE_PG === '1';
}

/** Throws when the real-Postgres suites must run but cannot; returns whether they can. */
export function checkPostgres(): boolean {
  if (postgresAvailable()) return true;
  if (postgresRequired()) {
    throw new Error(
      'CREDITKIT_REQUIRE_PG=1 but DATABASE_URL is not set: the real-Postgres suites cannot run. ' +
        'Set DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres (a superuser URL).',
    );
  }
  return false;
}

export async function createTestDatabase(opts: TestDatabaseOptions = {}): Promise<TestDatabase> {
  const backend = opts.backend ?? (postgresAvailable() ? 'postgres' : 'pglite');
  const mode = opts.defaultPrivileges ?? 'supabase';
  return backend === 'pglite'
    ? pgliteTestDatabase(await createPgliteDatabase(mode, opts.migrate ?? true), mode)
    : postgresTestDatabase(mode, opts.migrate ?? true);
}

/** The role-specific conveniences, built on asRole and query alike for both backends. */
function withConveniences(
  base: Pick<TestDatabase, 'backend' | 'defaultPrivileges' | 'url' | 'query' | 'exec' | 'asRole' | 'pool' | 'drop'>,
): TestDatabase {
  return {
    ...base,
    asService: (sql, params) => base.asRole('service_role', claimsFor.service, sql, params),
    asUser: (userId, sql, params) => base.asRole('authenticated', claimsFor.user(userId), sql, params),
    asAnon: (sql, params) => base.asRole('anon', claimsFor.anon, sql, params),
    async createUser(email) {
      const [row] = await base.query<{ id: string }>('insert into auth.users (email) values ($1) returning id', [
        email ?? `user-${randomBytes(6).toString('hex')}@example.test`,
      ]);
      if (!row) throw new Error('insert into auth.users returned no row');
      return row.id;
    },
  };
}

function pgliteTestDatabase(db: PGlite, mode: PrivilegeMode): TestDatabase {
  return withConveniences({
    backend: 'pglite',
    defaultPrivileges: mode,
    url: undefined,
    query: async <T>(sql: string, params?: unknown[]) => (await db.query<T>(sql, params)).rows,
    exec: async (sql) => {
      await db.exec(sql);
    },
    asRole: <T>(role: ApiRole, claims: object | null, sql: string, params?: unknown[]) =>
      db.transaction(async (tx) => {
        await tx.query(SET_REQUEST, requestSettings(role, claims));
        return (await tx.query<T>(sql, params)).rows;
      }),
    pool: () => {
      throw new Error('pool() needs the postgres backend (set DATABASE_URL)');
    },
    drop: async () => {
      if (!db.closed) await db.close();
    },
  });
}

// node-postgres returns int8 as a string; PGlite as a number while exact. Same rule on both.
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8 && format !== 'binary'
      ? parseInt8
      : pg.types.getTypeParser(oid, format ?? 'text')) as pg.CustomTypesConfig['getTypeParser'],
};

// Always the extended protocol, as PGlite's query() uses: one statement per call on both
// backends (node-postgres would otherwise accept several when there are no parameters).
export function statement(sql: string, params?: unknown[]): pg.QueryConfig {
  return { text: sql, values: params ?? [], queryMode: 'extended' } as pg.QueryConfig;
}

function databaseUrl(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

/** One superuser connection to `url` for the length of `fn`. */
export async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, types });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** This run's id (scripts/test.mjs sets CREDITKIT_TEST_RUN), if there is one. */
function runId(): string | undefined {
  const run = process.env.CREDITKIT_TEST_RUN ?? '';
  return /^[0-9a-f]{1,16}$/.test(run) ? run : undefined;
}

/**
 * A fresh name for a throwaway test database: creditkit_test_<run>_<tag><random>. scripts/test.mjs
 * sets CREDITKIT_TEST_RUN and at the end drops that run's databases that a suite whose setup
 * failed never dropped.
 */
export function testDatabaseName(tag = ''): string {
  const run = runId();
  return `${run ? `creditkit_test_${run}_` : 'creditkit_test_'}${tag}${randomBytes(6).toString('hex')}`;
}

/** The name of this run's template database for `mode` (scripts/test.mjs drops it at the end). */
export function templateDatabaseName(run: string, mode: PrivilegeMode): string {
  return `creditkit_test_${run}_template_${mode}`;
}

const templates = new Map<string, Promise<string | undefined>>();

/**
 * The run's migrated template database for `mode`, made by the first process of the run that
 * needs it (the others wait on an advisory lock, then find it). Only within a run of
 * scripts/test.mjs, which drops the templates at its end: outside one, nobody would drop it, so
 * each database is migrated instead. Nobody may connect to a template (a connection would make
 * every copy fail), so it is built under another name and allows no connections once renamed.
 */
function postgresTemplate(serverUrl: string, mode: PrivilegeMode): Promise<string | undefined> {
  const run = runId();
  if (!run) return Promise.resolve(undefined);
  const name = templateDatabaseName(run, mode);
  let template = templates.get(name);
  if (!template) {
    template = withClient(serverUrl, async (c) => {
      await c.query('select pg_advisory_lock(hashtext($1))', [name]);
      try {
        if ((await c.query('select 1 from pg_database where datname = $1', [name])).rowCount) return name;
        const building = `${name}_building`;
        await c.query(`drop database if exists ${building} with (force)`); // a builder that died
        await c.query(`create database ${building} template template0`);
        await withClient(databaseUrl(serverUrl, building), (b) => setupDatabase(pgConnection(b), { defaultPrivileges: mode }));
        await c.query(`alter database ${building} rename to ${name}`);
        await c.query(`alter database ${name} with allow_connections false`);
        return name;
      } finally {
        await c.query('select pg_advisory_unlock(hashtext($1))', [name]);
      }
    });
    templates.set(name, template);
    template.catch(() => templates.delete(name));
  }
  return template;
}

async function postgresTestDatabase(mode: PrivilegeMode, migrate: boolean): Promise<TestDatabase> {
  checkPostgres();
  const serverUrl = process.env.DATABASE_URL;
  if (!serverUrl) throw new Error('the postgres backend needs DATABASE_URL (a superuser URL)');
  const name = testDatabaseName();
  const url = databaseUrl(serverUrl, name);
  const template = migrate ? await postgresTemplate(serverUrl, mode) : undefined;
  // template0 otherwise: it never has connections (template1 may), so concurrent creates cannot collide
  await withClient(serverUrl, (c) => c.query(`create database ${name} template ${template ?? 'template0'}`));

  const dropDatabase = () =>
    withClient(serverUrl, async (c) => {
      await c.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [name]);
      await c.query(`drop database if exists ${name} with (force)`);
    });

  try {
    // a copy of the template has every migration already; this checks that, and would apply one it lacked
    await withClient(url, (c) => setupDatabase(pgConnection(c), { defaultPrivileges: mode, migrate }));
  } catch (err) {
    await dropDatabase();
    throw err;
  }
  return postgresDatabase(url, mode, dropDatabase);
}

/**
 * The TestDatabase of an installed database at `url` on a Postgres server (the postgres backend,
 * and citus.ts's coordinator): superuser pools, role switches as PostgREST makes them, and a
 * drop() that closes every pool, then runs `dropDatabase`.
 */
export function postgresDatabase(url: string, mode: PrivilegeMode, dropDatabase: () => Promise<void>): TestDatabase {
  const pools: pg.Pool[] = [];
  const newPool = (config: Omit<pg.PoolConfig, 'connectionString'> = {}): pg.Pool => {
    const pool = new pg.Pool({ types, ...config, connectionString: url });
    // an idle connection that dies (e.g. while drop() terminates it) must not crash the test run
    pool.on('error', () => {});
    pools.push(pool);
    return pool;
  };
  let dropped = false;
  const drop = async () => {
    if (dropped) return;
    dropped = true;
    await Promise.allSettled(pools.map((p) => p.end()));
    await dropDatabase();
  };
  const main = newPool({ max: 4 });
  return withConveniences({
    backend: 'postgres',
    defaultPrivileges: mode,
    url,
    query: async <T>(sql: string, params?: unknown[]) => (await main.query(statement(sql, params))).rows as T[],
    exec: async (sql) => {
      await main.query(sql);
    },
    asRole: <T>(role: ApiRole, claims: object | null, sql: string, params?: unknown[]) =>
      inRole(main, role, claims, async (client) => (await client.query(statement(sql, params))).rows as T[]),
    pool: newPool,
    drop,
  });
}
