// POST /api/stripe/webhook: Stripe's webhook (or the simulated checkout's signed events). The
// handler is createStripeWebhook from @creditkit/stripe, the code the Supabase Edge Function runs:
// it verifies the signature on the raw body and applies the event once with creditkit_stripe_apply.
import { getDemo } from '@/lib/server/demo.ts';
import { webhookHandler } from '@/lib/server/stripe.ts';

export const dynamic = 'force-dynamic';

export async function POST(request: Request): Promise<Response> {
  return webhookHandler(await getDemo())(request);
}
