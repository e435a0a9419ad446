'use client';
// Opens Stripe Checkout for a credit pack (or a plan): the provider's checkout() creates the
// session on your server, then the browser goes to its URL.
import { useCallback, type ReactNode } from 'react';
import { useCreditkit } from '../context.tsx';
import { RedirectButton, type RedirectButtonProps } from '../redirect.tsx';

export type BuyCreditsButtonProps = RedirectButtonProps & {
  /** The credit pack to buy (a one-off payment). */
  packId?: string;
  /** Or a plan to subscribe to (a subscription). */
  planId?: string;
};

/** A <button> (default text "Buy credits"; for a plan "Subscribe"); role=alert under it if checkout fails. */
export function BuyCreditsButton({ packId, planId, ...props }: BuyCreditsButtonProps): ReactNode {
  const { checkout } = useCreditkit();
  const createUrl = useCallback(
    () => checkout!(packId !== undefined ? { packId } : { planId: planId! }),
    [checkout, packId, planId],
  );
  const configured = checkout !== undefined && (packId !== undefined || planId !== undefined);
  return (
    <RedirectButton
      component="buy-credits"
      createUrl={configured ? createUrl : undefined}
      missing="BuyCreditsButton needs a packId or planId, and checkout={…} on <CreditkitProvider>"
      label={packId === undefined && planId !== undefined ? 'Subscribe' : 'Buy credits'}
      failure="Checkout could not be opened. Please try again."
      props={props}
    />
  );
}
