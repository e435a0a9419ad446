// Reads creditkit's SQL migrations (the product: supabase/migrations at the repo root) so
// every harness — PGlite, throwaway Postgres databases, the pgTAP runner, the demo — applies
// exactly the files `supabase db push` would, in the same order.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Migration {
  /** File name, e.g. `20250101000000_creditkit_setup.sql`. */
  name: string;
  /** The timestamp before the first `_`, the key the Supabase CLI records it under. */
  version: string;
  sql: string;
}

/**
 * `<repo>/supabase/migrations`, found from this file so it works under tsx, vitest and Next.js
 * alike. (A path join, not `new URL('…', import.meta.url)`: bundlers read that form as an asset
 * to copy, and a directory is not one.)
 */
export const defaultMigrationsDir: string = join(dirname(fileURLToPath(import.meta.url)), '../../../supabase/migrations');

// The Supabase CLI skips files that do not match this; we refuse them instead, so a misnamed
// file cannot be tested here yet silently never deployed.
const MIGRATION_FILE = /^(\d+)_(.+)\.sql$/;

/** All `*.sql` migrations in `dir`, sorted by file name (byte order, like the CLI). */
export function loadMigrations(dir: string = defaultMigrationsDir): Migration[] {
  // turbopackIgnore: the directory is read at run time, not a file for Next.js to trace and bundle
  if (!existsSync(/*turbopackIgnore: true*/ dir)) return [];
  return readdirSync(/*turbopackIgnore: true*/ dir)
    .filter((name) => name.endsWith('.sql'))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((name) => {
      const match = MIGRATION_FILE.exec(name);
      if (!match?.[1]) {
        throw new Error(
          `supabase/migrations/${name}: a migration must be named <timestamp>_<name>.sql`,
        );
      }
      return { name, version: match[1], sql: readFileSync(join(dir, name), 'utf8') };
    });
}
