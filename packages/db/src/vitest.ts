// Vitest helpers for suites that need a real Postgres server. Kept out of index.ts so that
// runtime code (the demo, scripts) never loads vitest. Real-Postgres suite titles carry
// "[postgres]": scripts/test.mjs counts those to prove CI really ran them.
import { describe } from 'vitest';
import { checkPostgres, type Backend } from './testing.ts';

export const POSTGRES_TAG = '[postgres]';

/**
 * describe() on real Postgres. Skipped when DATABASE_URL is unset — unless
 * CREDITKIT_REQUIRE_PG=1, where it throws so the run fails instead of passing hollow.
 */
export function describeIfPostgres(name: string, fn: () => void): void {
  const title = name.includes(POSTGRES_TAG) ? name : `${name} ${POSTGRES_TAG}`;
  if (checkPostgres()) describe(title, fn);
  else describe.skip(title, fn);
}

/** The same suite on PGlite ("[pglite]") and, when available, on real Postgres ("[postgres]"). */
export function describeEachBackend(name: string, fn: (backend: Backend) => void): void {
  describe(`${name} [pglite]`, () => fn('pglite'));
  describeIfPostgres(name, () => fn('postgres'));
}
