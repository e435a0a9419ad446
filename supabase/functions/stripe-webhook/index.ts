// Supabase Edge Function: creditkit's Stripe webhook. Deploy with `supabase functions deploy
// stripe-webhook`; supabase/config.toml turns verify_jwt off for it (Stripe signs its requests,
// they carry no JWT). Secrets: STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET (`supabase secrets
// set`); Supabase provides SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY. The handler is
// @creditkit/stripe's: deno.json maps it to the npm package at a pinned version (in the creditkit
// repository, to the generated copy in ../_shared). `npx creditkit init --with-stripe` writes
// this file into an app unchanged.
import Stripe from 'stripe';
import { createClient } from '@supabase/supabase-js';
import { createWebhookHandler } from '@creditkit/stripe/handler';

// The two Deno APIs this file uses, typed here: an app's Node toolchain may type-check this folder
// too (`next build` with create-next-app's tsconfig includes every .ts), and Node has no `Deno`.
declare const Deno: {
  env: { get(name: string): string | undefined };
  serve(handler: (request: Request) => Response | Promise<Response>): unknown;
};

function env(name: string): string {
  const value = Deno.env.get(name);
  if (!value) throw new Error(`stripe-webhook: ${name} is not set`);
  return value;
}

const stripe = new Stripe(env('STRIPE_SECRET_KEY'));
const supabase = createClient(env('SUPABASE_URL'), env('SUPABASE_SERVICE_ROLE_KEY'), {
  auth: { persistSession: false, autoRefreshToken: false },
});

const handler = createWebhookHandler({
  webhooks: stripe.webhooks,
  cryptoProvider: Stripe.createSubtleCryptoProvider(),
  secret: env('STRIPE_WEBHOOK_SECRET'),
  async apply(event) {
    const { data, error } = await supabase.rpc('creditkit_stripe_apply', { p_event: event });
    if (error) throw new Error(`${error.code}: ${error.message}`);
    return data;
  },
});

Deno.serve(handler);
