// The committed schema types (src/database.types.ts) must be what `supabase gen types` makes of
// the migrations today: the SDK's parameter types (Params<F>) come from that file, so a migration
// that adds, renames or retypes a parameter without regenerating it would leave the SDK typed
// against a schema that no longer exists. Needs real Postgres (the CLI reads a live database).
//
// The second test shows the check can fail: the same pipeline over a database with one extra
// public function gives a different file, and the same database without it gives the committed one.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { format } from 'prettier';
import { expect, it } from 'vitest';
import { createTestDatabase } from '@creditkit/testing';
import { describeIfPostgres } from '@creditkit/testing/vitest';
import { TYPES_FILE, generateTypes } from '../../../scripts/gen-types.ts';

const SUPABASE_BIN = fileURLToPath(new URL('../../../node_modules/.bin/supabase', import.meta.url));
const STALE = 'src/database.types.ts is out of date with supabase/migrations: run `pnpm gen:types` and commit the result';

/** What gen-types does, against a database of our choosing: the CLI, then prettier, after the header. */
async function typesOf(databaseUrl: string, header: string): Promise<string> {
  const url = new URL(databaseUrl);
  url.searchParams.set('sslmode', 'disable');
  const { stdout } = await promisify(execFile)(
    SUPABASE_BIN,
    ['gen', 'types', 'typescript', `--db-url=${url.href}`, '--schema', 'public'],
    { maxBuffer: 16 * 1024 * 1024, env: { ...process.env, DO_NOT_TRACK: '1' } },
  );
  return header + (await format(stdout, { parser: 'typescript', printWidth: 110 }));
}

describeIfPostgres('generated schema types', () => {
  it('src/database.types.ts is what the migrations generate now', async () => {
    const committed = readFileSync(TYPES_FILE, 'utf8');
    const generated = await generateTypes();
    expect(generated.length).toBeGreaterThan(1000);
    expect(committed === generated, STALE).toBe(true);
  }, 120_000);

  it('the comparison notices a schema change (one extra function) and nothing else', async () => {
    const committed = readFileSync(TYPES_FILE, 'utf8');
    const header = committed.slice(0, committed.indexOf('export type Json'));
    expect(header).toMatch(/^\/\/ GENERATED/);
    const db = await createTestDatabase({ backend: 'postgres' });
    try {
      await db.exec(`create function public.creditkit_drift_probe(p_marker bigint) returns bigint
                       language sql immutable as 'select p_marker'`);
      const drifted = await typesOf(db.url!, header);
      expect(drifted).toContain('creditkit_drift_probe: { Args: { p_marker: number }; Returns: number }');
      expect(drifted).not.toBe(committed);

      await db.exec('drop function public.creditkit_drift_probe(bigint)');
      expect(await typesOf(db.url!, header)).toBe(committed);
    } finally {
      await db.drop();
    }
  }, 120_000);
});
