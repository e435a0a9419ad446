// Build step: copies the repository's SQL into this package, so the published package carries the
// SQL it installs and reads nothing outside its own folder at run time: supabase/migrations/*.sql
// (the current state) into migrations/, supabase/upgrades/*.sql (from one version to the next)
// into upgrades/, the repository's CHANGELOG.md, scripts/citus/distribute.sql into citus/, and the index.ts of the Stripe webhook and worker
// Edge Functions into templates/ (what `creditkit init --with-stripe` writes). All are git-ignored here. Files no longer in the source are removed from the copy.
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

function copy(source, target, required) {
  const from = fileURLToPath(new URL(`../../../supabase/${source}/`, import.meta.url));
  const to = fileURLToPath(new URL(`../${target}/`, import.meta.url));
  const names = existsSync(from) ? readdirSync(from).filter((name) => name.endsWith('.sql')) : [];
  if (required && names.length === 0) throw new Error(`copy-migrations: no *.sql in ${from}`);
  mkdirSync(to, { recursive: true });
  for (const name of readdirSync(to)) if (!names.includes(name)) rmSync(join(to, name));
  for (const name of names) copyFileSync(join(from, name), join(to, name));
  return names.length;
}

const m = copy('migrations', 'migrations', true);
const fromRepo = (path) => fileURLToPath(new URL(`../../../${path}`, import.meta.url));
const intoPackage = (path) => fileURLToPath(new URL(`../${path}`, import.meta.url));
copyFileSync(fromRepo('CHANGELOG.md'), intoPackage('CHANGELOG.md'));
// the Edge Functions `creditkit init --with-stripe` writes into an app, verbatim
for (const fn of ['stripe-webhook', 'creditkit-worker']) {
  mkdirSync(intoPackage(`templates/${fn}`), { recursive: true });
  copyFileSync(fromRepo(`supabase/functions/${fn}/index.ts`), intoPackage(`templates/${fn}/index.ts`));
}
const u = copy('upgrades', 'upgrades', false);
// the Citus distribute script `creditkit distribute` runs
mkdirSync(intoPackage('citus'), { recursive: true });
copyFileSync(fromRepo('scripts/citus/distribute.sql'), intoPackage('citus/distribute.sql'));
console.log(`creditkit: copied ${m} migrations into migrations/ and ${u} upgrade scripts into upgrades/`);
