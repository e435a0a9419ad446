// The browser's way to the database in this demo: a creditkit Transport that posts each call to
// the app's /api/creditkit/rpc route, which runs it as the signed-in user (role authenticated).
// With real Supabase you would not need this: createCreditkitClient({ supabase }) with a
// supabase-js client holding the user's session calls PostgREST directly.
import { createCreditkitClient, TransportError, type CreditkitClient, type RawError, type Transport } from '@creditkit/core';

export const RPC_PATH = '/api/creditkit/rpc';

export function appTransport(url: string = RPC_PATH): Transport {
  return {
    kind: 'app',
    async rpc(fn, args) {
      let response: Response;
      try {
        response = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          credentials: 'same-origin',
          body: JSON.stringify({ fn, args }),
        });
      } catch (error) {
        throw new TransportError({ message: `request to ${url} failed: ${String(error)}`, network: true }, error);
      }
      let body: { data?: unknown[]; error?: RawError };
      try {
        body = (await response.json()) as typeof body;
      } catch (error) {
        throw new TransportError({ message: `${url} answered ${response.status} without JSON`, network: response.status >= 502 }, error);
      }
      // The route sends the database's error as it was (SQLSTATE, message, detail), so the SDK
      // turns it into the same typed error as on any other transport.
      if (body.error) throw new TransportError(body.error, body.error);
      if (!response.ok || !Array.isArray(body.data)) {
        throw new TransportError({ message: `${url} answered ${response.status}`, network: response.status >= 502 });
      }
      return body.data;
    },
  };
}

/** The signed-in user's client: only the caller-bound functions, run as that user. */
export function browserCreditkit(): CreditkitClient {
  return createCreditkitClient({ transport: appTransport() });
}
