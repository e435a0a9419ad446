// Supabase Edge Function: creditkit's worker. Each call claims what is due — auto top-ups to
// charge off session through Stripe, notifications to deliver to your webhook endpoints — does
// it, and answers what it did (runWorker's WorkerReport) as JSON. Supabase Cron calls it every
// few seconds with pg_net (docs/stripe.md, "Scheduling the worker"). Only a POST with
// `Authorization: Bearer <CREDITKIT_WORKER_SECRET>` runs it (405, 401 otherwise);
// supabase/config.toml turns verify_jwt off for it, because that bearer is the shared secret, not a
// Supabase JWT. Secrets: CREDITKIT_WORKER_SECRET and STRIPE_SECRET_KEY (`supabase secrets set`);
// Supabase provides SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY. Deploy with `supabase functions
// deploy creditkit-worker`. deno.json maps @creditkit/core to the npm package at a pinned version
// (in the creditkit repository, to the package's source). `npx creditkit init --with-stripe`
// writes this file into an app unchanged.
import Stripe from 'stripe';
import { createClient } from '@supabase/supabase-js';
import { createCreditkit, runWorker } from '@creditkit/core/server';

// The two Deno APIs this file uses, typed here: an app's Node toolchain may type-check this folder
// too (`next build` with create-next-app's tsconfig includes every .ts), and Node has no `Deno`.
declare const Deno: {
  env: { get(name: string): string | undefined };
  serve(handler: (request: Request) => Response | Promise<Response>): unknown;
};

function env(name: string): string {
  const value = Deno.env.get(name);
  if (!value) throw new Error(`creditkit-worker: ${name} is not set`);
  return value;
}

const secret = env('CREDITKIT_WORKER_SECRET');
const stripe = new Stripe(env('STRIPE_SECRET_KEY'));
const supabase = createClient(env('SUPABASE_URL'), env('SUPABASE_SERVICE_ROLE_KEY'), {
  auth: { persistSession: false, autoRefreshToken: false },
});
const creditkit = createCreditkit({ supabase });

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json; charset=utf-8', ...headers } });

const encoder = new TextEncoder();

/**
 * Whether `given` is the secret, in constant time: the SHA-256 digests of both are compared byte
 * by byte without stopping early, so neither the secret's content nor its length shows in timing.
 */
async function isSecret(given: string): Promise<boolean> {
  const [a, b] = await Promise.all([given, secret].map((s) => crypto.subtle.digest('SHA-256', encoder.encode(s))));
  const x = new Uint8Array(a!);
  const y = new Uint8Array(b!);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i]! ^ y[i]!;
  return diff === 0;
}

Deno.serve(async (request) => {
  if (request.method !== 'POST') return json(405, { error: 'method_not_allowed' }, { allow: 'POST' });
  const bearer = /^Bearer +(\S+) *$/.exec(request.headers.get('authorization') ?? '')?.[1];
  if (bearer === undefined || !(await isSecret(bearer))) {
    return json(401, { error: 'unauthorized', message: 'Authorization: Bearer <CREDITKIT_WORKER_SECRET> is required.' }, {
      'www-authenticate': 'Bearer',
    });
  }
  try {
    return json(200, await runWorker({ creditkit, stripe }));
  } catch (error) {
    // what was claimed and not finished is claimed again when its lease runs out
    console.error('creditkit-worker: the run failed', error);
    return json(500, { error: 'worker_failed', message: error instanceof Error ? error.message : String(error) });
  }
});
