// The release this version is measured against side by side: the newest frozen copy of a shipped
// release's migrations (packages/creditkit/test/releases/<version>/, exactly what an app that
// installed it has) older than this package's version.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compareVersions, migrations, version, type Migration } from 'creditkit';

const RELEASES = fileURLToPath(new URL('../../../packages/creditkit/test/releases/', import.meta.url));

/** This package's version: what the bench database gets (setupDatabase). */
export const CURRENT: string = version;

/** The newest frozen release older than CURRENT. */
export const PREVIOUS: string = (() => {
  const older = readdirSync(RELEASES).filter((v) => compareVersions(v, version) < 0).sort(compareVersions);
  if (older.length === 0) throw new Error(`no frozen release older than ${version} in ${RELEASES}`);
  return older.at(-1)!;
})();

/** PREVIOUS's migrations, as shipped. */
export function previousMigrations(): Migration[] {
  return migrations(join(RELEASES, PREVIOUS));
}
