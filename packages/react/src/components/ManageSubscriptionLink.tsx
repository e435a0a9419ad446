'use client';
// Opens the Stripe customer portal: the provider's portal() creates the session on your server,
// then the browser goes there. A <button>, not an <a>: there is no URL until the server made one.
import { type ReactNode } from 'react';
import { useCreditkit } from '../context.tsx';
import { RedirectButton, type RedirectButtonProps } from '../redirect.tsx';

export type ManageSubscriptionLinkProps = RedirectButtonProps;

/** A <button> (default text "Manage subscription"); role=alert under it if the portal fails. */
export function ManageSubscriptionLink(props: ManageSubscriptionLinkProps): ReactNode {
  const { portal } = useCreditkit();
  return (
    <RedirectButton
      component="manage-subscription"
      createUrl={portal}
      missing="ManageSubscriptionLink needs portal={…} on <CreditkitProvider>"
      label="Manage subscription"
      failure="The billing portal could not be opened. Please try again."
      props={props}
    />
  );
}
