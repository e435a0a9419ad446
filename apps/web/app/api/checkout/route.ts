// POST /api/checkout {packId} | {planId} | {setup: true} → {url}: where to send the buyer. Real
// Stripe Checkout (createCheckoutSession; for `setup`, a Checkout session in setup mode that saves
// a card for off-session top-ups) when Stripe keys are configured, else the simulated checkout page.
import { CreditkitError, InvalidArgumentError, UnknownPackError, UnknownPlanError } from '@creditkit/core';
import { errorResponse } from '@creditkit/core/http';
import { createCheckoutSession, ensureStripeCustomer } from '@creditkit/stripe';
import { getDemo } from '@/lib/server/demo.ts';
import { currentUser, originOf } from '@/lib/server/session.ts';

export const dynamic = 'force-dynamic';

export async function POST(request: Request): Promise<Response> {
  const user = await currentUser();
  if (!user) return Response.json({ error: 'unauthenticated', message: 'Sign in first.' }, { status: 401 });
  const body = (await request.json().catch(() => ({}))) as { packId?: unknown; planId?: unknown; setup?: unknown };
  const packId = typeof body.packId === 'string' ? body.packId : undefined;
  const planId = typeof body.planId === 'string' ? body.planId : undefined;
  const demo = await getDemo();
  const { creditkit } = demo;
  try {
    if (body.setup === true) {
      if (demo.stripe.mode === 'simulated') return Response.json({ url: '/checkout/simulated?setup=card' });
      // Checkout in setup mode: Stripe sends checkout.session.completed, payment_method.attached
      // and setup_intent.succeeded, which the webhook records as the card on file
      const origin = originOf(request);
      const customer = await ensureStripeCustomer({ stripe: demo.stripe.stripe, creditkit, accountId: user.id, customerEmail: user.email });
      const session = await demo.stripe.stripe.checkout.sessions.create({
        mode: 'setup',
        currency: 'usd',
        customer,
        client_reference_id: user.id,
        metadata: { account_id: user.id },
        setup_intent_data: { metadata: { account_id: user.id } },
        success_url: `${origin}/billing?card=saved`,
        cancel_url: `${origin}/billing?checkout=canceled`,
      });
      return Response.json({ url: session.url });
    }
    if ((packId === undefined) === (planId === undefined)) throw new InvalidArgumentError('give exactly one of packId and planId');
    if (demo.stripe.mode === 'simulated') {
      if (packId !== undefined && !(await creditkit.packs()).some((p) => p.id === packId)) throw new UnknownPackError(`no active credit pack ${packId}`);
      if (planId !== undefined && !(await creditkit.plans()).some((p) => p.id === planId)) throw new UnknownPlanError(`no active plan ${planId}`);
      const query = packId !== undefined ? `pack=${encodeURIComponent(packId)}` : `plan=${encodeURIComponent(planId!)}`;
      return Response.json({ url: `/checkout/simulated?${query}` });
    }
    const origin = originOf(request);
    const session = await createCheckoutSession({
      stripe: demo.stripe.stripe,
      creditkit,
      accountId: user.id,
      ...(packId !== undefined ? { packId } : { planId: planId! }),
      successUrl: `${origin}/billing?checkout=success&session={CHECKOUT_SESSION_ID}`,
      cancelUrl: `${origin}/billing?checkout=canceled`,
      customerEmail: user.email,
    });
    return Response.json({ url: session.url });
  } catch (error) {
    if (error instanceof CreditkitError) return errorResponse(error);
    throw error;
  }
}
