// BuyCreditsButton and ManageSubscriptionLink: real buttons that ask the app's server for a Stripe
// URL and go there. The checkout and portal functions here stand in for the app's routes: they
// check the pack or plan against the real catalogue (creditkit on PGlite) and return a URL.
import { act, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { userEvent } from '@testing-library/user-event';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BuyCreditsButton, CreditkitProvider, ManageSubscriptionLink, type CheckoutTarget } from '../src/index.ts';
import { deferred, renderAs, startKit, type Kit } from './support.tsx';

let kit: Kit;
let ada: string;
beforeAll(async () => {
  kit = await startKit();
  await kit.creditkit.upsertPack({ id: 'small', name: 'Small', credits: 50, priceAmount: 500 });
  await kit.creditkit.upsertPlan({ id: 'pro', name: 'Pro', allowance: 100, priceAmount: 1900 });
  ada = await kit.signUp();
});
afterAll(() => kit.close());

/** What an app's checkout route does before calling Stripe: refuse what is not for sale. */
async function checkoutRoute(target: CheckoutTarget): Promise<string> {
  if (target.packId !== undefined) {
    if (!(await kit.creditkit.packs()).some((p) => p.id === target.packId)) throw new Error(`no pack ${target.packId}`);
    return `https://checkout.stripe.test/pay/${target.packId}`;
  }
  if (!(await kit.creditkit.plans()).some((p) => p.id === target.planId)) throw new Error(`no plan ${target.planId}`);
  return `https://checkout.stripe.test/subscribe/${target.planId}`;
}

describe('BuyCreditsButton', () => {
  it('calls checkout with the packId and navigates to the URL it returns', async () => {
    const calls: CheckoutTarget[] = [];
    const navigated: string[] = [];
    renderAs(kit, ada, <BuyCreditsButton packId="small">Buy 50 credits</BuyCreditsButton>, {
      checkout: (target) => (calls.push(target), checkoutRoute(target)),
      navigate: (url) => void navigated.push(url),
    });
    const button = screen.getByRole('button', { name: 'Buy 50 credits' });
    expect(button).toHaveAttribute('type', 'button');
    await userEvent.setup().click(button);
    await waitFor(() => expect(navigated).toEqual(['https://checkout.stripe.test/pay/small']));
    expect(calls).toEqual([{ packId: 'small' }]);
  });

  it('a plan: checkout gets the planId; default text "Subscribe"', async () => {
    const navigated: string[] = [];
    renderAs(kit, ada, <BuyCreditsButton planId="pro" />, { checkout: checkoutRoute, navigate: (url) => void navigated.push(url) });
    await userEvent.setup().click(screen.getByRole('button', { name: 'Subscribe' }));
    await waitFor(() => expect(navigated).toEqual(['https://checkout.stripe.test/subscribe/pro']));
  });

  it('disabled and aria-busy while the session is created; a second click opens nothing', async () => {
    const pending = deferred<string>();
    let calls = 0;
    const navigated: string[] = [];
    renderAs(kit, ada, <BuyCreditsButton packId="small" />, {
      checkout: () => (calls++, pending.promise),
      navigate: (url) => void navigated.push(url),
    });
    const button = screen.getByRole('button', { name: 'Buy credits' });
    expect(button).not.toBeDisabled();
    expect(button).toHaveAttribute('aria-busy', 'false');
    fireEvent.click(button);
    await waitFor(() => expect(button).toBeDisabled());
    expect(button).toHaveAttribute('aria-busy', 'true');
    fireEvent.click(button);
    await act(async () => pending.resolve('https://checkout.stripe.test/pay/small'));
    await waitFor(() => expect(navigated).toHaveLength(1));
    expect(calls).toBe(1);
    // the page is leaving: the button stays busy, so it cannot be clicked again meanwhile
    expect(button).toBeDisabled();
    // back from Stripe through the back/forward cache, the page is as it was left: usable again
    act(() => void window.dispatchEvent(Object.assign(new Event('pageshow'), { persisted: true })));
    await waitFor(() => expect(button).not.toBeDisabled());
  });

  it('a failed checkout shows an alert and enables the button again; onError gets the error', async () => {
    const errors: unknown[] = [];
    renderAs(kit, ada, <BuyCreditsButton packId="gone" onError={(e) => void errors.push(e)} classNames={{ error: 'oops' }} />, {
      checkout: checkoutRoute,
    });
    const button = screen.getByRole('button', { name: 'Buy credits' });
    await userEvent.setup().click(button);
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('Checkout could not be opened. Please try again.');
    expect(alert).toHaveAttribute('data-creditkit', 'buy-credits-error');
    expect(alert).toHaveClass('oops');
    expect(button).not.toBeDisabled();
    expect(button).toHaveAttribute('aria-busy', 'false');
    expect(errors).toEqual([new Error('no pack gone')]);
  });

  it('works from the keyboard (Enter and Space), and a retry clears the alert', async () => {
    let fail = true;
    const navigated: string[] = [];
    renderAs(kit, ada, <BuyCreditsButton packId="small" errorMessage="Try again later" />, {
      checkout: async (target) => {
        if (fail) throw new Error('Stripe is down');
        return checkoutRoute(target);
      },
      navigate: (url) => void navigated.push(url),
    });
    const user = userEvent.setup();
    await user.tab();
    expect(screen.getByRole('button', { name: 'Buy credits' })).toHaveFocus();
    await user.keyboard('{Enter}');
    expect(await screen.findByRole('alert')).toHaveTextContent('Try again later');
    fail = false;
    await user.keyboard(' ');
    await waitFor(() => expect(navigated).toEqual(['https://checkout.stripe.test/pay/small']));
    expect(screen.queryByRole('alert')).toBeNull();
  });

  it('without checkout on the provider: an alert instead of a silent no-op', async () => {
    renderAs(kit, ada, <BuyCreditsButton packId="small" />);
    await userEvent.setup().click(screen.getByRole('button', { name: 'Buy credits' }));
    expect(await screen.findByRole('alert')).toBeInTheDocument();
  });

  it('passes button attributes through and takes slot classes', () => {
    renderAs(kit, ada, <BuyCreditsButton packId="small" aria-describedby="price" name="buy" className="wrap" classNames={{ button: 'btn' }} />);
    const button = screen.getByRole('button', { name: 'Buy credits' });
    expect(button).toHaveAttribute('aria-describedby', 'price');
    expect(button).toHaveAttribute('data-creditkit', 'buy-credits-button');
    expect(button).toHaveClass('btn');
    expect(button.parentElement).toHaveAttribute('data-creditkit', 'buy-credits');
    expect(button.parentElement).toHaveClass('wrap');
  });
});

describe('ManageSubscriptionLink', () => {
  it('calls portal() and navigates to its URL', async () => {
    let calls = 0;
    const navigated: string[] = [];
    renderAs(kit, ada, <ManageSubscriptionLink />, {
      portal: async () => (calls++, 'https://billing.stripe.test/session/abc'),
      navigate: (url) => void navigated.push(url),
    });
    await userEvent.setup().click(screen.getByRole('button', { name: 'Manage subscription' }));
    await waitFor(() => expect(navigated).toEqual(['https://billing.stripe.test/session/abc']));
    expect(calls).toBe(1);
  });

  it('an empty URL or a failing portal shows an alert', async () => {
    renderAs(kit, ada, <ManageSubscriptionLink>Billing</ManageSubscriptionLink>, { portal: async () => '' });
    await userEvent.setup().click(screen.getByRole('button', { name: 'Billing' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('The billing portal could not be opened. Please try again.');
  });

  it('navigates with window.location.assign by default (provider without navigate or queryClient)', async () => {
    const assigned: string[] = [];
    const original = window.location.assign;
    window.location.assign = (url: string | URL) => void assigned.push(String(url));
    try {
      render(
        <CreditkitProvider client={kit.creditkit.asUser(ada)} accountId={ada} portal={async () => 'https://billing.stripe.test/x'}>
          <ManageSubscriptionLink />
        </CreditkitProvider>,
      );
      await userEvent.setup().click(screen.getByRole('button', { name: 'Manage subscription' }));
      await waitFor(() => expect(assigned).toEqual(['https://billing.stripe.test/x']));
    } finally {
      window.location.assign = original;
    }
  });
});
