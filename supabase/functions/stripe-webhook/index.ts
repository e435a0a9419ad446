// Supabase Edge Function: the Stripe webhook. Deploy with `supabase functions deploy stripe-webhook`
// (verify_jwt is off for it in supabase/config.toml: Stripe signs its requests, it has no JWT).
// Secrets: STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET; SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY
// are provided by Supabase. The handler is @creditkit/stripe's, copied into _shared/ (see there).
import Stripe from 'stripe';
import { createClient } from '@supabase/supabase-js';
import { createWebhookHandler } from '../_shared/stripe-webhook-handler.ts';

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
