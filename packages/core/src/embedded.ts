// @creditkit/core/embedded: creditkit on PGlite with zero configuration, for demos, tests and
// local development. The database gets Supabase's roles and auth schema, then the migrations.
import { createEmbeddedDatabase, type EmbeddedDatabaseOptions, type PGlite } from '@creditkit/db';
import type { CallOptions } from './call.ts';
import { createCreditkit, type CreditkitServer } from './server.ts';

export { createEmbeddedDatabase, type EmbeddedDatabaseOptions, type PGlite };

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
