// creditkit in-process: a PGlite (Postgres compiled to WASM) database with Supabase's roles
// and auth schema and all migrations applied. Used by the demo and the fast test backend;
// nothing to install, nothing listening on a port.
import { PGlite, types } from '@electric-sql/pglite';
import { parseInt8, pgliteConnection, setupDatabase, type PrivilegeMode } from 'creditkit';

export { parseInt8, pgliteConnection };

export interface EmbeddedDatabaseOptions {
  /** Keep the database in this directory (default: in memory). Reopening applies only new migrations. */
  dataDir?: string;
  /** Default privileges installed on a fresh database (default 'supabase'). */
  defaultPrivileges?: PrivilegeMode;
  /** Apply supabase/migrations (default true). */
  migrate?: boolean;
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
