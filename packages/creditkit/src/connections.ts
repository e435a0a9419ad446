// What setupDatabase needs from a connection, and adapters for the two drivers the kit runs on:
// node-postgres and PGlite. Typed by shape, so this package loads neither driver: an app passes
// in the client it already has.

/** What setup needs from a connection; both PGlite and node-postgres can provide it. */
export interface SetupConnection {
  /** Runs one or more statements (simple protocol). */
  exec(sql: string): Promise<void>;
  query<T>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Runs `fn` in one transaction, rolled back if it throws. */
  transaction(fn: (tx: Omit<SetupConnection, 'transaction'>) => Promise<void>): Promise<void>;
}

/** The part of a node-postgres `Client` (or a client checked out of a `Pool`) that setup uses. */
export interface PgClientLike {
  query(config: string | { text: string; values?: unknown[]; queryMode?: 'extended' }): Promise<{ rows: unknown[] }>;
}

interface PgliteQueryable {
  exec(sql: string): Promise<unknown>;
  query<T>(sql: string, params?: unknown[]): Promise<{ rows: T[] }>;
}

/** The part of a PGlite instance that setup uses. */
export interface PgliteLike extends PgliteQueryable {
  transaction<T>(fn: (tx: PgliteQueryable) => Promise<T>): Promise<T>;
}

/** node-postgres as a SetupConnection. Parameterised queries always use the extended protocol, one statement each, as PGlite's do. */
export function pgConnection(client: PgClientLike): SetupConnection {
  const exec = async (sql: string) => {
    await client.query(sql);
  };
  const query = async <T>(sql: string, params?: unknown[]) =>
    (await client.query({ text: sql, values: params ?? [], queryMode: 'extended' })).rows as T[];
  return {
    exec,
    query,
    async transaction(fn) {
      await client.query('begin');
      try {
        await fn({ exec, query });
        await client.query('commit');
      } catch (err) {
        await client.query('rollback');
        throw err;
      }
    },
  };
}

/** A PGlite instance as a SetupConnection. */
export function pgliteConnection(db: PgliteLike): SetupConnection {
  const on = (q: PgliteQueryable): Omit<SetupConnection, 'transaction'> => ({
    exec: async (sql) => {
      await q.exec(sql);
    },
    query: async <T>(sql: string, params?: unknown[]) => (await q.query<T>(sql, params)).rows,
  });
  return {
    ...on(db),
    transaction: (fn) => db.transaction((tx) => fn(on(tx))),
  };
}

/**
 * How to read an int8 (bigint) column: a JavaScript number while it is exact, a bigint beyond
 * 2^53. PGlite's own rule; pass it as the INT8 parser to node-postgres too, and both drivers
 * return the same values.
 */
export const parseInt8 = (text: string): number | bigint => {
  const n = BigInt(text);
  return n < BigInt(Number.MIN_SAFE_INTEGER) || n > BigInt(Number.MAX_SAFE_INTEGER) ? n : Number(n);
};
