// Stands in for Stripe Checkout (and the customer portal) when no Stripe keys are configured.
// "Pay" posts to /api/checkout/simulated, which sends Stripe-shaped, signed events through the
// app's real webhook route; nothing here grants credits by itself.
import { notFound, redirect } from 'next/navigation';
import { money } from '@/lib/format.ts';
import { getDemo } from '@/lib/server/demo.ts';
import { currentUser } from '@/lib/server/session.ts';
import { stripeIdsOf } from '@/lib/server/stripe.ts';

export const dynamic = 'force-dynamic';

export default async function SimulatedCheckout({ searchParams }: { searchParams: Promise<Record<string, string | undefined>> }) {
  const user = await currentUser();
  if (!user) redirect('/sign-in');
  const demo = await getDemo();
  if (demo.stripe.mode !== 'simulated') notFound();
  const params = await searchParams;

  if (params.portal) {
    const ids = await stripeIdsOf(demo, user.id);
    const plan = (await demo.creditkit.plans()).find((p) => p.id === ids.planId);
    const live = ids.subscription && ids.status !== 'canceled' && plan;
    return (
      <div className="checkout">
        <p className="sim-banner">Simulated Stripe customer portal · test mode</p>
        <section className="card" aria-labelledby="portal-title">
          <h1 id="portal-title">Your subscription</h1>
          {live ? (
            <>
              <p>
                <strong>{plan.name}</strong> · {money(plan.priceAmount, plan.currency)}/{plan.period} · {plan.allowance} credits each period
              </p>
              <p className="muted">
                Subscription <code>{ids.subscription}</code>, customer <code>{ids.customer}</code>.
              </p>
              <form action="/api/checkout/simulated" method="post">
                <input type="hidden" name="action" value="cancel-subscription" />
                <button type="submit" className="ck-button danger">Cancel subscription</button>
              </form>
            </>
          ) : (
            <p>No active subscription.</p>
          )}
          <p>
            <a href="/billing">← Return to billing</a>
          </p>
        </section>
      </div>
    );
  }

  const pack = params.pack ? (await demo.creditkit.packs()).find((p) => p.id === params.pack) : undefined;
  const plan = params.plan ? (await demo.creditkit.plans()).find((p) => p.id === params.plan) : undefined;
  const item = pack ?? plan;
  if (!item) notFound();
  const price = money(item.priceAmount, item.currency);
  return (
    <div className="checkout">
      <p className="sim-banner">Simulated Stripe Checkout · test mode · no card is charged</p>
      <div className="checkout-grid">
        <section aria-labelledby="order-title">
          <p className="muted">creditkit demo</p>
          <h1 id="order-title">{pack ? `${pack.name}: ${pack.credits} credits` : `Subscribe to ${plan!.name}`}</h1>
          <p className="price">
            {price}
            {plan ? <span className="muted"> per {plan.period}</span> : null}
          </p>
          <p className="muted">
            {pack
              ? `One payment. ${pack.credits} credits${pack.expiresAfter ? `, valid ${pack.expiresAfter}` : ', never expiring'}.`
              : `${plan!.allowance} credits every ${plan!.period}, plus ${Object.keys(plan!.features).join(', ') || 'no extra features'}.`}
          </p>
          <p className="muted small">
            Stripe price <code>{item.stripePriceId}</code>
          </p>
        </section>
        <section className="card" aria-labelledby="pay-title">
          <h2 id="pay-title">Pay with card</h2>
          <form action="/api/checkout/simulated" method="post" className="pay">
            <input type="hidden" name={pack ? 'pack' : 'plan'} value={item.id} />
            <label>
              Email <input type="email" value={user.email} readOnly />
            </label>
            <label>
              Card <input value="4242 4242 4242 4242" readOnly />
            </label>
            <button type="submit" className="ck-button primary wide">
              {pack ? `Pay ${price}` : `Subscribe · ${price}`}
            </button>
          </form>
          <p className="muted small">
            Paying sends <code>{pack ? 'checkout.session.completed' : 'checkout.session.completed, customer.subscription.created, invoice.paid'}</code>,
            signed with the webhook secret, to <code>/api/stripe/webhook</code>.
          </p>
          <p>
            <a href="/billing?checkout=canceled">Cancel and go back</a>
          </p>
        </section>
      </div>
    </div>
  );
}
