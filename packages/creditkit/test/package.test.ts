// The creditkit package's own API: the migrations it ships are the repository's, byte for byte
// (the build copies them; a stale copy would test and install yesterday's SQL), and a copy of the
// package without them fails loudly instead of installing nothing.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { migrations, migrationsDir } from 'creditkit';
import { afterAll, describe, expect, it } from 'vitest';

const repoMigrations = fileURLToPath(new URL('../../../supabase/migrations/', import.meta.url));
const empty = mkdtempSync(join(tmpdir(), 'creditkit-no-migrations-'));
afterAll(() => rmSync(empty, { recursive: true, force: true }));

describe('creditkit: the SQL it ships', () => {
  it('migrations() is supabase/migrations/*.sql, in name order, byte for byte (pnpm build copies them)', () => {
    const names = readdirSync(repoMigrations).filter((f) => f.endsWith('.sql')).sort();
    expect(names.length).toBeGreaterThan(0);
    expect(migrations().map((m) => [m.name, m.version, m.sql])).toEqual(
      names.map((name) => [name, name.split('_')[0], readFileSync(join(repoMigrations, name), 'utf8')]),
    );
    expect(readdirSync(migrationsDir).sort()).toEqual(names);
  });

  it('a folder without migrations is an error, not zero migrations', () => {
    expect(() => migrations(empty)).toThrow(/no migrations in/);
  });

  it('a misnamed file is refused rather than silently never deployed', () => {
    const dir = mkdtempSync(join(empty, 'misnamed-'));
    writeFileSync(join(dir, 'creditkit_setup.sql'), 'select 1;');
    expect(() => migrations(dir)).toThrow(/must be named <timestamp>_<name>\.sql/);
  });
});
