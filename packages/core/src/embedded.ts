// @creditkit/core/embedded: creditkit on PGlite (Postgres compiled to WASM) with zero
// configuration, for demos, tests and local development: nothing to install, nothing listening
// on a port. The database gets Supabase's roles and auth schema, then the migrations, both from
// the `creditkit` package (the one place the SQL ships). This entry alone needs the optional
// peers `@electric-sql/pglite` and `creditkit`; the other entries load neither.
import { PGlite, types } from '@electric-sql/pglite';
import { parseInt8, pgliteConnection, setupDatabase, type PrivilegeMode } from 'creditkit';
import type { CallOptions } from './call.ts';
import { createCreditkit, type CreditkitServer } from './server.ts';

export type { PGlite };

export interface EmbeddedDatabaseOptions {
  /** Keep the database in this directory (default: in memory). Reopening applies only new migrations. */
  dataDir?: string;
  /**
   * Start from this dump of a creditkit database (PGlite's `dumpDataDir()`): much faster than
   * installing the migrations again, e.g. one dump per test run and a copy per test file.
   * Migrations newer than the dump are still applied.
   */
  loadDataDir?: Blob | File;
  /** Default privileges installed on a fresh database (default 'supabase'). */
  defaultPrivileges?: PrivilegeMode;
  /** Apply the kit's migrations (default true). */
  migrate?: boolean;
}

/** A ready PGlite database with bootstrap, default privileges and migrations applied. */
export async function createEmbeddedDatabase(opts: EmbeddedDatabaseOptions = {}): Promise<PGlite> {
  const db = await PGlite.create({
    ...(opts.dataDir === undefined ? {} : { dataDir: opts.dataDir }),
    ...(opts.loadDataDir === undefined ? {} : { loadDataDir: opts.loadDataDir }),
    // int8 as a number while exact, as the other transports return it
    parsers: { [types.INT8]: parseInt8 },
  });
  try {
    await setupDatabase(pgliteConnection(db), {
      ...(opts.defaultPrivileges === undefined ? {} : { defaultPrivileges: opts.defaultPrivileges }),
      ...(opts.migrate === undefined ? {} : { migrate: opts.migrate }),
    });
  } catch (err) {
    await db.close();
    throw err;
  }
  return db;
}

export interface EmbeddedCreditkit {
  /** The PGlite instance (superuser): run your own SQL on it. */
  db: PGlite;
  /** The server client over it, acting as service_role; `creditkit.asUser(id)` for a user's view. */
  creditkit: CreditkitServer;
  close(): Promise<void>;
}

/** A PGlite database with creditkit installed (in memory, or in `dataDir`), and a client for it. */
export async function createEmbeddedCreditkit(options: EmbeddedDatabaseOptions & CallOptions = {}): Promise<EmbeddedCreditkit> {
  const db = await createEmbeddedDatabase(options);
  return { db, creditkit: createCreditkit({ pglite: db, ...pick(options) }), close: () => db.close() };
}

function pick({ retries, retryDelayMs }: CallOptions): CallOptions {
  return { ...(retries === undefined ? {} : { retries }), ...(retryDelayMs === undefined ? {} : { retryDelayMs }) };
}
