// POST /api/creditkit/rpc {fn, args}: the browser's CreditkitClient calls land here and run as
// the signed-in user (creditkit.asUser: role authenticated, claims { sub: user id }), the way
// PostgREST runs a supabase-js call that carries the user's JWT. Only the caller-bound
// functions are passed on; the database's grants and RLS refuse the rest anyway.
import { TransportError, type RawError } from '@creditkit/core';
import { getDemo } from '@/lib/server/demo.ts';
import { BROWSER_FUNCTIONS, currentUser, originOf } from '@/lib/server/session.ts';
import { kickWorker } from '@/lib/server/worker.ts';

export const dynamic = 'force-dynamic';

const failure = (error: RawError, status: number) => Response.json({ error }, { status });

export async function POST(request: Request): Promise<Response> {
  const user = await currentUser();
  if (!user) return failure({ code: 'CK005', message: 'not allowed: sign in first' }, 401);
  let fn: unknown;
  let args: unknown;
  try {
    ({ fn, args } = (await request.json()) as { fn?: unknown; args?: unknown });
  } catch {
    return failure({ code: 'CK006', message: 'invalid argument: the body must be JSON {fn, args}' }, 400);
  }
  if (typeof fn !== 'string' || typeof args !== 'object' || args === null || Array.isArray(args)) {
    return failure({ code: 'CK006', message: 'invalid argument: the body must be JSON {fn, args}' }, 400);
  }
  if (!BROWSER_FUNCTIONS.has(fn)) {
    // What Postgres answers a role without EXECUTE; the SDK maps it to NotAllowedError.
    return failure({ code: '42501', message: `permission denied for function ${fn}` }, 403);
  }
  const demo = await getDemo();
  try {
    const data = await demo.creditkit.asUser(user.id).transport.rpc(fn, args as Record<string, unknown>);
    // switched on below the threshold: the top-up is due now
    if (fn === 'creditkit_my_set_auto_topup') kickWorker(demo, originOf(request));
    return Response.json({ data });
  } catch (error) {
    if (!(error instanceof TransportError)) throw error;
    return failure(error.raw, error.raw.network ? 503 : 400);
  }
}
