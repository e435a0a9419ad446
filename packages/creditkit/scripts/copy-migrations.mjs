// Build step: copies the repository's supabase/migrations/*.sql into this package's migrations/
// (git-ignored), so the published package carries the SQL it installs and reads nothing outside
// its own folder at run time. Files no longer in supabase/migrations are removed from the copy.
import { copyFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const from = fileURLToPath(new URL('../../../supabase/migrations/', import.meta.url));
const to = fileURLToPath(new URL('../migrations/', import.meta.url));

const names = readdirSync(from).filter((name) => name.endsWith('.sql'));
if (names.length === 0) throw new Error(`copy-migrations: no *.sql in ${from}`);
mkdirSync(to, { recursive: true });
for (const name of readdirSync(to)) if (!names.includes(name)) rmSync(join(to, name));
for (const name of names) copyFileSync(join(from, name), join(to, name));
console.log(`creditkit: copied ${names.length} migrations into migrations/`);
