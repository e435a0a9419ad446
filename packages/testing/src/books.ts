// The books as they truly stand, for reading as the superuser around RLS: SQL to use as tables in
// assertions (the SQL suites, and the SDK contract suite's evidence taken from the tables).

// A row's unit, read so that the same SQL also reads an install from before units (0.1.x, the
// upgrade suite's), where every balance is in credits.
const UNIT_OF = (alias: string) => `coalesce(to_jsonb(${alias}) ->> 'unit', 'credits')`;
const SAME_UNIT = `${UNIT_OF('a')} = ${UNIT_OF('g')}`;

/**
 * creditkit.grants as the buckets truly stand, for reading as the superuser: `remaining` is the
 * stored remainder less the bucket's share of accounts.undrawn (credit the fast path spent and
 * the next lock draws), attributed in spend order the way creditkit.live_buckets reads it. Use
 * it as a table: from ${GRANTS} g.
 */
export const GRANTS = `(select g.id, g.account_id, g.category, g.amount, g.priority, g.expires_at, g.metadata, g.created_at,
           (g.remaining - least(g.remaining, greatest(coalesce(a.undrawn, 0) - (sum(g.remaining) over w - g.remaining), 0)))::bigint
             as remaining
      from creditkit.grants g left join creditkit.accounts a on a.id = g.account_id and ${SAME_UNIT}
    window w as (partition by g.account_id, ${UNIT_OF('g')} order by g.expires_at, g.priority desc, g.created_at, g.id
                 rows between unbounded preceding and current row))`;

/**
 * Accounts and buckets as the books stand, for comparing before and after a call: drawing what the
 * fast path left undrawn (any lock does) moves credit from accounts.undrawn into grants.remaining
 * and changes nothing else, so accounts leave `undrawn` out and buckets show their true remainder
 * (GRANTS). Each is a table of (id, row jsonb): from ${BOOKED_ACCOUNTS} b (an account's id is
 * `<account>/<unit>`).
 */
export const BOOKED_ACCOUNTS = `(select a.id::text || '/' || ${UNIT_OF('a')} as id, to_jsonb(a) - 'undrawn' as row from creditkit.accounts a)`;
export const BOOKED_GRANTS = `(select g.id, to_jsonb(g) || jsonb_build_object('remaining', e.remaining, 'live', e.remaining > 0) as row
      from creditkit.grants g join ${GRANTS} e on e.id = g.id)`;
