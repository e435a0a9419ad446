// The SQL this package ships, found next to the code that reads it: `migrations/` (copied from
// the repository's supabase/migrations by the build) and `sql/` (the Supabase bootstrap for plain
// Postgres and PGlite). Both sit beside `src/` and `dist/`, so the same relative path works from
// the sources in the repository and from an installed copy in node_modules.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// A path join, not `new URL('…', import.meta.url)`: bundlers (Next.js) read that form as an
// asset to copy, and a directory is not one. The turbopackIgnore comments below tell Turbopack
// these are read at run time, so it neither traces nor bundles them.
const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The folder holding the kit's migrations, `<timestamp>_creditkit_<area>.sql`. */
export const migrationsDir: string = join(packageDir, 'migrations');

/** The folder holding the upgrade scripts, `creditkit--<from>--<to>.sql` (copied from supabase/upgrades). */
export const upgradesDir: string = join(packageDir, 'upgrades');

/** The files `creditkit init` copies into an app as they are (the Stripe webhook Edge Function). */
export const templatesDir: string = join(packageDir, 'templates');
/** scripts/citus/distribute.sql of the repository, copied in by the build: `creditkit distribute` runs it. */
export const citusDir: string = join(packageDir, 'citus');

/** The version of this package, which is the version of the SQL it installs (creditkit.version()). */
export const version: string = (
  JSON.parse(readFileSync(/*turbopackIgnore: true*/ join(packageDir, 'package.json'), 'utf8')) as { version: string }
).version;

const sqlDir = join(packageDir, 'sql');

export function readSqlFile(name: string): string {
  return readFileSync(/*turbopackIgnore: true*/ join(sqlDir, name), 'utf8');
}

/** The `*.sql` file names in `dir`, in byte order (as the Supabase CLI applies them); none if it is missing. */
export function sqlFileNames(dir: string): string[] {
  if (!existsSync(/*turbopackIgnore: true*/ dir)) return [];
  return readdirSync(/*turbopackIgnore: true*/ dir)
    .filter((name) => name.endsWith('.sql'))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

export function readFileIn(dir: string, name: string): string {
  return readFileSync(/*turbopackIgnore: true*/ join(dir, name), 'utf8');
}
