// creditkit in-process: a PGlite (Postgres compiled to WASM) database with Supabase's roles
// and auth schema and all migrations applied. Used by the demo and the fast test backend;
// nothing to install, nothing listening on a port.
import { PGlite, types } from '@electric-sql/pglite';
import { setupDatabase, type PrivilegeMode, type SetupConnection } from './setup.ts';

export interface EmbeddedDatabaseOptions {
  /** Keep the database in this directory (default: in memory). Reopening applies only new migrations. */
  dataDir?: string;
  /** Default privileges installed on a fresh database (default 'supabase'). */
  defaultPrivileges?: PrivilegeMode;
  /** Apply supabase/migrations (default true). */
  migrate?: boolean;
}

// int8 as a JS number while it is exact (a bigint beyond 2^53) — PGlite's own rule, which the
// Postgres backend copies so both backends return the same values.
export const parseInt8 = (text: string): number | bigint => {
  const n = BigInt(text);
  return n < BigInt(Number.MIN_SAFE_INTEGER) || n > BigInt(Number.MAX_SAFE_INTEGER) ? n : Number(n);
};

/** Adapts a PGlite instance to what setupDatabase needs. */
export function pgliteConnection(db: PGlite): SetupConnection {
  return {
    exec: async (sql) => {
      await db.exec(sql);
    },
    query: async <T>(sql: string, params?: unknown[]) => (await db.query<T>(sql, params)).rows,
    transaction: (fn) =>
      db.transaction(async (tx) => {
        await fn({
          exec: async (sql) => {
            await tx.exec(sql);
          },
          query: async <T>(sql: string, params?: unknown[]) => (await tx.query<T>(sql, params)).rows,
        });
      }),
  };
}

/** A ready PGlite database with bootstrap, default privileges and migrations applied. */
export async function createEmbeddedDatabase(opts: EmbeddedDatabaseOptions = {}): Promise<PGlite> {
  const db = await PGlite.create({
    dataDir: opts.dataDir,
    parsers: { [types.INT8]: parseInt8 },
  });
  try {
    await setupDatabase(pgliteConnection(db), {
      defaultPrivileges: opts.defaultPrivileges,
      migrate: opts.migrate,
    });
  } catch (err) {
    await db.close();
    throw err;
  }
  return db;
}
