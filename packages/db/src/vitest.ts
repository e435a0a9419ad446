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

/**
 * creditkit.grants as the buckets truly stand, for reading as the superuser: `remaining` is the
 * stored remainder less the bucket's share of accounts.undrawn (credit the fast path spent and
 * the next lock draws), attributed in spend order the way creditkit.live_buckets reads it. Use
 * it as a table: from ${GRANTS} g.
 */
export const GRANTS = `(select g.id, g.account_id, g.category, g.amount, g.priority, g.expires_at, g.metadata, g.created_at,
           (g.remaining - least(g.remaining, greatest(coalesce(a.undrawn, 0) - (sum(g.remaining) over w - g.remaining), 0)))::bigint
             as remaining
      from creditkit.grants g left join creditkit.accounts a on a.id = g.account_id
    window w as (partition by g.account_id order by g.expires_at, g.priority desc, g.created_at, g.id
                 rows between unbounded preceding and current row))`;

/**
 * Accounts and buckets as the books stand, for comparing before and after a call: drawing what the
 * fast path left undrawn (any lock does) moves credit from accounts.undrawn into grants.remaining
 * and changes nothing else, so accounts leave `undrawn` out and buckets show their true remainder
 * (GRANTS). Each is a table of (id, row jsonb): from ${BOOKED_ACCOUNTS} b.
 */
export const BOOKED_ACCOUNTS = `(select a.id, to_jsonb(a) - 'undrawn' as row from creditkit.accounts a)`;
export const BOOKED_GRANTS = `(select g.id, to_jsonb(g) || jsonb_build_object('remaining', e.remaining, 'live', e.remaining > 0) as row
      from creditkit.grants g join ${GRANTS} e on e.id = g.id)`;
