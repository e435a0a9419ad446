// POST /api/portal → {url}: Stripe's customer portal for the signed-in user (createPortalSession),
// or the simulated portal when no Stripe keys are configured.
import { CreditkitError } from '@creditkit/core';
import { errorResponse } from '@creditkit/core/http';
import { createPortalSession } from '@creditkit/stripe';
import { getDemo } from '@/lib/server/demo.ts';
import { currentUser, originOf } from '@/lib/server/session.ts';

export const dynamic = 'force-dynamic';

export async function POST(request: Request): Promise<Response> {
  const user = await currentUser();
  if (!user) return Response.json({ error: 'unauthenticated', message: 'Sign in first.' }, { status: 401 });
  const demo = await getDemo();
  if (demo.stripe.mode === 'simulated') return Response.json({ url: '/checkout/simulated?portal=1' });
  try {
    const origin = originOf(request);
    const { url } = await createPortalSession({ stripe: demo.stripe.stripe, creditkit: demo.creditkit, accountId: user.id, returnUrl: `${origin}/billing` });
    return Response.json({ url });
  } catch (error) {
    if (error instanceof CreditkitError) return errorResponse(error);
    throw error;
  }
}
