// The kit's migrations, exactly the files `supabase db push` applies, in the same order. Every
// installer (setupDatabase on PGlite or Postgres, the test databases, the demo) reads them here.
import { migrationsDir, readFileIn, sqlFileNames } from './files.ts';

export interface Migration {
  /** File name, e.g. `20250101000000_creditkit_setup.sql`. */
  name: string;
  /** The timestamp before the first `_`, the key the Supabase CLI records it under. */
  version: string;
  sql: string;
}

// The Supabase CLI skips files that do not match this; we refuse them instead, so a misnamed
// file cannot be tested here yet silently never deployed.
const MIGRATION_FILE = /^(\d+)_(.+)\.sql$/;

/**
 * Every migration in `dir` (default: the ones this package ships), sorted by file name. Throws
 * when there are none: an installer that applied zero migrations would look like success.
 */
export function migrations(dir: string = migrationsDir): Migration[] {
  const names = sqlFileNames(dir);
  if (names.length === 0) {
    throw new Error(
      `creditkit: no migrations in ${dir}. This copy of the package is incomplete` +
        ' (in the creditkit repository, `pnpm build` copies supabase/migrations there).',
    );
  }
  return names.map((name) => {
    const match = MIGRATION_FILE.exec(name);
    if (!match?.[1]) throw new Error(`creditkit: ${name}: a migration must be named <timestamp>_<name>.sql`);
    return { name, version: match[1], sql: readFileIn(dir, name) };
  });
}
