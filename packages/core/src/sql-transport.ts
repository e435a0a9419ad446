// Transports that talk SQL to Postgres directly: a node-postgres Pool (a server with a direct
// connection) and PGlite (embedded). Each call is one round trip of the simple query protocol,
// run by Postgres as one implicit transaction, doing what PostgREST does for an RPC:
//
//   select set_config('role', 'service_role', true), set_config('timezone', 'UTC', true),
//          set_config('request.jwt.claims', '{"role":"service_role"}', true);
//   select coalesce(json_agg(r), '[]') from public.creditkit_consume(p_account_id => '…', …) r;
//
// set_config(…, true) is SET LOCAL: the role and claims end with that transaction, so a pooled
// connection goes back clean. Two statements, not four: each one costs a parse and a result.
// Arguments travel as quoted literals of unknown type that Postgres reads as each parameter's
// declared type — the same text PostgREST would pass — so integers stay exact.
import type { RawError } from './errors.ts';
import { TransportError, type SqlArgs, type Transport } from './transport.ts';

/** Who the database should see: a Data API role and the JWT claims auth.uid()/auth.jwt() read. */
export interface Identity {
  role: 'service_role' | 'authenticated' | 'anon';
  claims: Record<string, unknown>;
}

export const SERVICE_IDENTITY: Identity = { role: 'service_role', claims: { role: 'service_role' } };

/** A signed-in user, with the claims Supabase Auth puts in its access tokens. */
export function userIdentity(userId: string, extraClaims: Record<string, unknown> = {}): Identity {
  return {
    role: 'authenticated',
    claims: { aud: 'authenticated', ...extraClaims, sub: userId, role: 'authenticated' },
  };
}

/** A quoted SQL literal, safe whatever `standard_conforming_strings` says (as node-postgres does it). */
export function sqlLiteral(value: string): string {
  const quoted = `'${value.replace(/'/g, "''")}'`;
  return value.includes('\\') ? `E${quoted.replace(/\\/g, '\\\\')}` : quoted;
}

function literal(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return sqlLiteral(value);
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') {
    return sqlLiteral(String(value));
  }
  return sqlLiteral(JSON.stringify(value)); // jsonb
}

const IDENT = /^[a-z_][a-z0-9_]*$/;
const ROLES = new Set<string>(['service_role', 'authenticated', 'anon']);

/** The whole statement for one call (exported for tests and benchmarks). */
export function callSql(fn: string, args: SqlArgs, identity: Identity): string {
  if (!IDENT.test(fn)) throw new TypeError(`not a function name: ${fn}`);
  if (!ROLES.has(identity.role)) throw new TypeError(`not a Data API role: ${identity.role}`);
  const named = Object.entries(args)
    .filter(([, value]) => value !== undefined)
    .map(([name, value]) => {
      if (!IDENT.test(name)) throw new TypeError(`not a parameter name: ${name}`);
      return `${name} => ${literal(value)}`;
    });
  return (
    // UTC, so instants read the same on every server (PostgREST on Supabase runs in UTC too).
    `select set_config('role', '${identity.role}', true), set_config('timezone', 'UTC', true), ` +
    `set_config('request.jwt.claims', ${literal(identity.claims)}, true);\n` +
    `select coalesce(json_agg(r), '[]') as result from public.${fn}(${named.join(', ')}) r`
  );
}

/**
 * A node-postgres or PGlite error as a RawError. Errors from the server carry a SQLSTATE in
 * `code`; anything else (ECONNREFUSED, "Connection terminated", a closed PGlite) happened
 * before or around the server and counts as unavailable.
 */
function rawError(error: unknown): RawError {
  const e = error as { code?: unknown; message?: unknown; detail?: unknown; hint?: unknown };
  const sqlstate = typeof e?.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined;
  return {
    code: sqlstate,
    message: typeof e?.message === 'string' ? e.message : String(error),
    details: typeof e?.detail === 'string' ? e.detail : null,
    hint: typeof e?.hint === 'string' ? e.hint : null,
    network: sqlstate === undefined,
  };
}

function lastResult(results: unknown): unknown[] {
  const list = (Array.isArray(results) ? results : [results]) as Array<{ rows?: Array<{ result?: unknown }> }>;
  const rows = list[list.length - 1]?.rows;
  const value = rows?.[0]?.result;
  // node-postgres and PGlite both parse json; guard against a driver configured to return text.
  const parsed = typeof value === 'string' ? JSON.parse(value) : value;
  if (!Array.isArray(parsed)) throw new TransportError({ message: 'unexpected result from Postgres' });
  return parsed;
}

/** Runs several statements in one simple-protocol round trip and returns every result. */
type Runner = (sql: string) => Promise<unknown>;

function sqlTransport(kind: string, run: Runner, identity: Identity): Transport {
  return {
    kind,
    async rpc(fn, args) {
      const sql = callSql(fn, args, identity);
      let results: unknown;
      try {
        results = await run(sql);
      } catch (error) {
        throw new TransportError(rawError(error), error);
      }
      return lastResult(results);
    },
  };
}

/** The part of a node-postgres `Pool` (or `Client`) the SDK uses. */
export interface PgQueryable {
  query(text: string): Promise<unknown>;
}

/**
 * Over node-postgres. Pass a `Pool` connected as a role that may switch to the Data API roles
 * (`postgres` on Supabase); each call checks a connection out for one round trip.
 */
export function pgTransport(pool: PgQueryable, identity: Identity = SERVICE_IDENTITY): Transport {
  return sqlTransport('pg', (sql) => pool.query(sql), identity);
}

/** The part of a PGlite instance the SDK uses. */
export interface PgliteLike {
  exec(sql: string): Promise<unknown>;
}

/** Over PGlite (embedded Postgres in WASM); PGlite runs one statement batch at a time. */
export function pgliteTransport(db: PgliteLike, identity: Identity = SERVICE_IDENTITY): Transport {
  return sqlTransport('pglite', (sql) => db.exec(sql), identity);
}
