// POST /api/checkout/simulated (a form on /checkout/simulated): "pay" for a pack or plan, save a
// card (Checkout in setup mode, with the test card chosen), confirm a top-up that needed
// authentication (the 3-D Secure step), or cancel the subscription from the simulated portal. It builds the events Stripe would send for
// that (stripe-events.ts), signs them with the webhook secret and delivers them to the app's own
// webhook route, then sends the browser back to /billing like Stripe's success_url would.
import type { Pack, Plan } from '@creditkit/core';
import { getDemo } from '@/lib/server/demo.ts';
import { currentUser, originOf } from '@/lib/server/session.ts';
import { deliverEvents, stripeIdsOf } from '@/lib/server/stripe.ts';
import { confirmTopupPayment } from '@/lib/server/simulated-stripe.ts';
import {
  cancellationEvents, cardSetupEvents, isTestCard, packPurchaseEvents, stripeId, subscriptionPurchaseEvents, unixSeconds, type Subscription,
} from '@/lib/server/stripe-events.ts';
import { kickWorker } from '@/lib/server/worker.ts';

export const dynamic = 'force-dynamic';

const back = (origin: string, query: string) => Response.redirect(new URL(`/billing?${query}`, origin), 303);

export async function POST(request: Request): Promise<Response> {
  const user = await currentUser();
  const origin = originOf(request);
  if (!user) return Response.redirect(new URL('/sign-in', origin), 303);
  const demo = await getDemo();
  if (demo.stripe.mode !== 'simulated') {
    return Response.json({ error: 'not_simulated', message: 'Stripe keys are configured: checkout is real Stripe Checkout.' }, { status: 404 });
  }
  const form = await request.formData();
  const { creditkit } = demo;
  const ids = await stripeIdsOf(demo, user.id);
  const buyer = { accountId: user.id, customer: ids.customer ?? stripeId('cus', 14), email: user.email };
  const urls = { successUrl: `${origin}/billing?checkout=success`, cancelUrl: `${origin}/billing?checkout=canceled` };
  const now = new Date();

  let events;
  const packId = form.get('pack');
  const planId = form.get('plan');
  const action = form.get('action');
  if (action === 'confirm-topup') {
    const id = Number(form.get('topup'));
    const topup = (await creditkit.topups({ accountId: user.id, limit: 50 })).find((t) => t.id === id);
    if (!topup || topup.status !== 'action_required') return back(origin, 'topup=nothing-to-confirm');
    const deliveries = await confirmTopupPayment(demo, origin, topup);
    kickWorker(demo, origin); // deliver topup.succeeded
    const failed = deliveries.find((d) => d.status !== 200 || d.body.status === 'dead');
    return back(origin, failed ? `checkout=failed&event=${encodeURIComponent(failed.type)}` : 'topup=confirmed');
  }
  if (action === 'save-card') {
    const card = form.get('card');
    if (!isTestCard(card)) return back(origin, 'checkout=unknown');
    events = cardSetupEvents(buyer, card, now, { successUrl: `${origin}/billing?card=saved`, cancelUrl: urls.cancelUrl }).events;
  } else if (action === 'cancel-subscription') {
    const plan = (await creditkit.plans()).find((p) => p.id === ids.planId);
    if (!ids.subscription || !plan || ids.status === 'canceled') return back(origin, 'portal=nothing-to-cancel');
    const subscription: Subscription = {
      id: ids.subscription,
      item: stripeId('si', 14),
      customer: buyer.customer,
      accountId: user.id,
      plan,
      start: ids.anchor ? unixSeconds(new Date(ids.anchor)) : unixSeconds(now),
    };
    events = cancellationEvents(subscription, now);
  } else if (typeof packId === 'string') {
    const pack = (await creditkit.packs()).find((p) => p.id === packId) as Pack | undefined;
    if (!pack) return back(origin, 'checkout=unknown');
    events = packPurchaseEvents(buyer, pack, now, urls);
  } else if (typeof planId === 'string') {
    const plan = (await creditkit.plans()).find((p) => p.id === planId) as Plan | undefined;
    if (!plan || !plan.stripePriceId) return back(origin, 'checkout=unknown');
    if (ids.planId === plan.id && ids.status !== 'canceled' && ids.subscription) return back(origin, 'checkout=already-subscribed');
    events = subscriptionPurchaseEvents(buyer, plan, now, urls).events;
  } else {
    return back(origin, 'checkout=unknown');
  }

  const deliveries = await deliverEvents(demo, origin, events);
  const failed = deliveries.find((d) => d.status !== 200 || d.body.status === 'dead');
  if (failed) {
    console.error('creditkit demo: the simulated checkout could not deliver', failed);
    return back(origin, `checkout=failed&event=${encodeURIComponent(failed.type)}`);
  }
  // a new card restarts an auto top-up that was stopped for the old one: a top-up may be due
  if (action === 'save-card') kickWorker(demo, origin);
  return back(origin, action === 'cancel-subscription' ? 'portal=canceled' : action === 'save-card' ? 'card=saved' : 'checkout=success');
}
