// Transports: how a call to public.creditkit_<fn>(named args) reaches Postgres. Three ship with
// the SDK: supabase-js (`.rpc`, over PostgREST), and two that speak SQL directly —
// node-postgres and PGlite (see sql-transport.ts, server-only). Every transport answers with
// the JSON PostgREST would send, normalised to a list (rows, or one scalar), so the layer above
// sees the same values whichever transport it runs on.
import type { RawError } from './errors.ts';

/** Named arguments as the SQL function declares them: `{ p_account_id: ..., p_amount: ... }`. */
export type SqlArgs = Record<string, unknown>;

export interface Transport {
  /**
   * Calls `public.<fn>(p_x => ...)` in one transaction. Resolves with the result as a list: the
   * rows of a set-returning function, the single row of an OUT-parameter function, or the one
   * scalar. Rejects with a TransportError.
   */
  rpc(fn: string, args: SqlArgs): Promise<unknown[]>;
  /** Short name for messages and tests: 'supabase', 'pg', 'pglite', ... */
  readonly kind: string;
}

/** What transports reject with: the raw error, described, with the original kept as `cause`. */
export class TransportError extends Error {
  override name = 'TransportError';
  readonly raw: RawError;
  constructor(raw: RawError, cause?: unknown) {
    super(raw.message, cause === undefined ? undefined : { cause });
    this.raw = raw;
  }
}

/** The part of a supabase-js client the SDK uses (any `SupabaseClient` fits). */
export interface SupabaseLike {
  rpc(
    fn: string,
    args?: Record<string, unknown>,
  ): PromiseLike<{
    data: unknown;
    error: { code?: string; message: string; details?: string | null; hint?: string | null } | null;
    status?: number;
  }>;
}

/**
 * Over supabase-js: each call is `POST /rest/v1/rpc/<fn>` with the client's key or session, so
 * the database sees the caller's role and JWT claims. With the service-role key it is a server
 * client; with a user's session, a browser client limited to the caller-bound functions.
 */
export function supabaseTransport(client: SupabaseLike): Transport {
  return {
    kind: 'supabase',
    async rpc(fn, args) {
      let response: Awaited<ReturnType<SupabaseLike['rpc']>>;
      try {
        response = await client.rpc(fn, args);
      } catch (error) {
        throw new TransportError({ message: `request to the Data API failed: ${String(error)}`, network: true }, error);
      }
      const { data, error } = response;
      if (error) {
        // supabase-js reports fetch failures as an error without a code and status 0; a gateway
        // with no Data API behind it answers 502/503/504 without a PostgREST code.
        const status = response.status;
        const network = !error.code && (status === 0 || status === undefined || status === 502 || status === 503 || status === 504);
        throw new TransportError(
          { code: error.code, message: error.message, details: error.details, hint: error.hint, network },
          error,
        );
      }
      return Array.isArray(data) ? data : [data];
    },
  };
}
