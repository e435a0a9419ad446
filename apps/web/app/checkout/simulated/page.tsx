// Stands in for Stripe Checkout (and the customer portal) when no Stripe keys are configured:
// paying for a pack or plan, saving a card for auto top-up (setup mode, with a choice of test
// card: one that works, one that is declined, one that needs 3-D Secure), and the 3-D Secure step
// of a top-up that needs the customer.
// "Pay" posts to /api/checkout/simulated, which sends Stripe-shaped, signed events through the
// app's real webhook route; nothing here grants credits by itself.
import { notFound, redirect } from 'next/navigation';
import { money } from '@/lib/format.ts';
import { getDemo } from '@/lib/server/demo.ts';
import { currentUser } from '@/lib/server/session.ts';
import { stripeIdsOf } from '@/lib/server/stripe.ts';
import { TEST_CARDS } from '@/lib/server/stripe-events.ts';

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

  if (params.setup) {
    return (
      <div className="checkout">
        <p className="sim-banner">Simulated Stripe Checkout · setup mode · nothing is charged now</p>
        <div className="checkout-grid">
          <section aria-labelledby="order-title">
            <p className="muted">creditkit demo</p>
            <h1 id="order-title">Save a card for automatic top-ups</h1>
            <p className="muted">
              The card is saved with your Stripe customer for off-session payments. Auto top-up charges it when your balance falls below
              your threshold.
            </p>
            <p className="muted small">
              Choose a Stripe test card to see what happens when a top-up charges it.
            </p>
          </section>
          <section className="card" aria-labelledby="card-title">
            <h2 id="card-title">Card details</h2>
            <form action="/api/checkout/simulated" method="post" className="pay">
              <input type="hidden" name="action" value="save-card" />
              <label>
                Email <input type="email" value={user.email} readOnly />
              </label>
              <fieldset className="cards">
                <legend>Test card</legend>
                {Object.entries(TEST_CARDS).map(([key, card], i) => (
                  <label key={key} className="radio">
                    <input type="radio" name="card" value={key} defaultChecked={i === 0} />
                    <span>
                      <code>{card.number}</code> <span className="muted">{card.label}</span>
                    </span>
                  </label>
                ))}
              </fieldset>
              <button type="submit" className="ck-button primary wide">
                Save card
              </button>
            </form>
            <p className="muted small">
              Saving sends <code>checkout.session.completed</code> (mode setup), <code>payment_method.attached</code> and{' '}
              <code>setup_intent.succeeded</code>, signed, to <code>/api/stripe/webhook</code>.
            </p>
            <p>
              <a href="/billing?checkout=canceled">Cancel and go back</a>
            </p>
          </section>
        </div>
      </div>
    );
  }

  if (params.topup) {
    const topup = (await demo.creditkit.topups({ accountId: user.id, limit: 50 })).find((t) => String(t.id) === params.topup);
    if (!topup) notFound();
    return (
      <div className="checkout">
        <p className="sim-banner">Simulated 3-D Secure · test mode</p>
        <section className="card narrow" aria-labelledby="auth-title">
          <h1 id="auth-title">Confirm your payment</h1>
          <p>
            Automatic top-up of <strong>{topup.amount} credits</strong> for <strong>{money(topup.chargeAmount, topup.currency)}</strong>. Your bank
            asks you to confirm it.
          </p>
          <p className="muted small">
            PaymentIntent <code>{topup.paymentIntent ?? '—'}</code>
          </p>
          {topup.status === 'action_required' ? (
            <form action="/api/checkout/simulated" method="post">
              <input type="hidden" name="action" value="confirm-topup" />
              <input type="hidden" name="topup" value={topup.id} />
              <button type="submit" className="ck-button primary wide">
                Confirm {money(topup.chargeAmount, topup.currency)}
              </button>
            </form>
          ) : (
            <p>This top-up is {topup.status}; there is nothing to confirm.</p>
          )}
          <p className="muted small">
            Confirming sends <code>payment_intent.succeeded</code> for this PaymentIntent to <code>/api/stripe/webhook</code>: the credits land
            from it and auto top-up resumes.
          </p>
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
