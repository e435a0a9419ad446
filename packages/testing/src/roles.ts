// Role switches, made the way PostgREST makes them: inside one transaction,
// `set_config('role', …, true)` and `set_config('request.jwt.claims', …, true)` (SET LOCAL, so
// both end with the transaction and a pooled connection goes back clean). Every suite that acts as
// anon, a signed-in user or the service role goes through these, so none can switch differently.
import type pg from 'pg';
import type { Row, TestDatabase } from './databases.ts';

/** The roles PostgREST switches to. */
export type ApiRole = 'anon' | 'authenticated' | 'service_role';

/** The statement that switches: $1 the role, $2 the JWT claims as JSON ('' for none). */
export const SET_REQUEST = `select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)`;

/** SET_REQUEST's parameters. `claims: null` sends none (auth.uid() and auth.jwt() are NULL). */
export const requestSettings = (role: ApiRole, claims: object | null): string[] => [role, claims === null ? '' : JSON.stringify(claims)];

/** The claims Supabase's keys and sessions carry. */
export const claimsFor = {
  service: { role: 'service_role' },
  anon: { role: 'anon' },
  user: (sub: string) => ({ sub, role: 'authenticated' }),
};

/** Runs one statement as some caller and returns its rows. */
export type Runner = <T = Row>(sql: string, params?: unknown[]) => Promise<T[]>;

export const runAs = {
  service: (db: TestDatabase): Runner => (sql, params) => db.asService(sql, params),
  user: (db: TestDatabase, userId: string): Runner => (sql, params) => db.asUser(userId, sql, params),
  anon: (db: TestDatabase): Runner => (sql, params) => db.asAnon(sql, params),
  role: (db: TestDatabase, role: ApiRole, claims: object | null): Runner => (sql, params) =>
    db.asRole(role, claims, sql, params),
};

/** How many calls had a transaction open at once: evidence that a race really overlapped. */
export interface Gauge { open: number; max: number }
export const newGauge = (): Gauge => ({ open: 0, max: 0 });

/**
 * Runs `statement` in one transaction as `role` with these claims, on a connection checked out of
 * `pool`: `begin`, the switch, the statement, `commit` (rollback on error; a connection that cannot
 * even roll back is not reused).
 */
export async function inRole<T>(
  pool: pg.Pool,
  role: ApiRole,
  claims: object | null,
  statement: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('begin');
    await client.query(SET_REQUEST, requestSettings(role, claims));
    const result = await statement(client);
    await client.query('commit');
    return result;
  } catch (err) {
    await client.query('rollback').catch(() => {
      broken = true;
    });
    throw err;
  } finally {
    client.release(broken);
  }
}

/**
 * A caller on its own pooled connection, exactly as PostgREST runs an RPC: check out a client,
 * `begin`, set the role and JWT claims locally, one statement, `commit`. Real connections, so
 * concurrent calls really race.
 */
export function pooledRunner(
  pool: pg.Pool,
  role: ApiRole = 'service_role',
  claims: object = claimsFor.service,
  gauge?: Gauge,
): Runner {
  return async <T>(sql: string, params?: unknown[]) => {
    if (gauge) gauge.max = Math.max(gauge.max, ++gauge.open);
    try {
      return await inRole(pool, role, claims, async (client) => (await client.query(sql, params)).rows as T[]);
    } finally {
      if (gauge) gauge.open--;
    }
  };
}

/** Opens `n` connections at once, so a later burst of calls races instead of queueing on connect. */
export async function warmPool(pool: pg.Pool, n: number): Promise<void> {
  const clients = await Promise.all(Array.from({ length: n }, () => pool.connect()));
  for (const c of clients) c.release();
}

/** An open transaction as some caller: statements run in it until commit() or rollback() (the first one counts). */
export interface Session {
  run: Runner;
  commit(): Promise<void>;
  rollback(): Promise<void>;
}

const sessionPools = new WeakMap<TestDatabase, pg.Pool>();

/**
 * Begins a transaction as `role` with these JWT claims, the way PostgREST sets them (locally), so
 * that a test can run several statements and then commit or roll back the whole of it. On PGlite
 * it is the database's one connection: run nothing else on `db` until the session ends.
 */
export async function beginAs(db: TestDatabase, role: ApiRole, claims: object | null): Promise<Session> {
  const settings = requestSettings(role, claims);
  if (db.backend === 'pglite') {
    await db.query('begin');
    await db.query(SET_REQUEST, settings);
    let open = true;
    const end = (how: string) => async () => {
      if (!open) return;
      open = false;
      await db.query(how);
    };
    return { run: (sql, params) => db.query(sql, params), commit: end('commit'), rollback: end('rollback') };
  }
  let pool = sessionPools.get(db);
  if (!pool) {
    pool = db.pool({ max: 4 });
    sessionPools.set(db, pool);
  }
  const client = await pool.connect();
  await client.query('begin');
  await client.query(SET_REQUEST, settings);
  let open = true;
  const end = (how: string) => async () => {
    if (!open) return;
    open = false;
    try {
      await client.query(how);
      client.release();
    } catch (err) {
      client.release(true);
      throw err;
    }
  };
  return {
    run: async <T>(sql: string, params?: unknown[]) => (await client.query(sql, params)).rows as T[],
    commit: end('commit'),
    rollback: end('rollback'),
  };
}
