// Vitest helpers: suites per backend and on Citus, and known bugs. Kept out of index.ts so that
// scripts (the pgTAP runner, the type generator) never load vitest. Real-Postgres suite titles
// carry "[postgres]", Citus suite titles "[citus]": scripts/test.mjs counts those to prove CI
// really ran them.
import { describe, it } from 'vitest';
import { checkCitus } from './citus.ts';
import { checkPostgres, type Backend } from './databases.ts';

export const POSTGRES_TAG = '[postgres]';
/** Title tag of the suites on a local Citus cluster (citus.ts); scripts/test.mjs counts those too. */
export const CITUS_TAG = '[citus]';

/**
 * describe() on real Postgres. Skipped when DATABASE_URL is unset — unless
 * CREDITKIT_REQUIRE_PG=1, where it throws so the run fails instead of passing hollow.
 */
export function describeIfPostgres(name: string, fn: () => void): void {
  const title = name.includes(POSTGRES_TAG) ? name : `${name} ${POSTGRES_TAG}`;
  if (checkPostgres()) describe(title, fn);
  else describe.skip(title, fn);
}

/**
 * describe() on the local Citus cluster ("[citus]"). Skipped on a machine without the shared Citus
 * build (CREDITKIT_CITUS_DIR with its cluster.sh) — unless the Citus suites are required
 * (CREDITKIT_REQUIRE_CITUS=1, or CREDITKIT_REQUIRE_PG=1 unless CREDITKIT_REQUIRE_CITUS=0), where
 * it throws. A cluster that does not start is a failure, never a skip.
 */
export function describeIfCitus(name: string, fn: () => void): void {
  const title = name.includes(CITUS_TAG) ? name : `${name} ${CITUS_TAG}`;
  if (checkCitus()) describe(title, fn);
  else describe.skip(title, fn);
}

/** The same suite on PGlite ("[pglite]") and, when available, on real Postgres ("[postgres]"). */
export function describeEachBackend(name: string, fn: (backend: Backend) => void): void {
  describe(`${name} [pglite]`, () => fn('pglite'));
  describeIfPostgres(name, () => fn('postgres'));
}

/**
 * A test for a bug found and reported but not fixed yet: it states the correct behaviour and is
 * expected to fail. When the fix lands it starts to pass, vitest reports that as a failure, and
 * the marker must come off. CREDITKIT_KNOWN_BUGS=show runs them as plain tests, to see how they fail.
 */
export function knownBug(title: string, fn: () => Promise<void>, timeout?: number): void {
  if (process.env.CREDITKIT_KNOWN_BUGS === 'show') it(`KNOWN BUG (reported): ${title}`, fn, timeout);
  else it.fails(`KNOWN BUG (reported): ${title}`, fn, timeout);
}
