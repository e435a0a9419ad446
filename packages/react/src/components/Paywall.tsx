'use client';
// Gates its children on a plan feature, on enough credits, or on both. Allowed: the children,
// unwrapped. Still checking: a placeholder (aria-busy) that you size with CSS to the gated
// content, so nothing jumps. Refused (or signed out): `fallback`, or a prompt listing the packs
// that buy credits and the plans that include the feature, each with its checkout button.
import { useId, type ReactNode } from 'react';
import type { Pack, Plan } from '@creditkit/core';
import { useCreditkit } from '../context.tsx';
import { formatCount, formatCredits, formatMoney } from '../format.ts';
import { useBalance, useFeature, usePacks, usePlans } from '../hooks.ts';
import { cx, slots, type ClassNames } from '../slots.ts';
import { BuyCreditsButton } from './BuyCreditsButton.tsx';

export type PaywallSlot = 'placeholder' | 'title' | 'message' | 'list' | 'item' | 'button' | 'error';

export interface PaywallProps {
  /** Needs the account's plan to include this feature. */
  feature?: string;
  /** Needs at least this many spendable credits. */
  credits?: number;
  /** What is gated. */
  children?: ReactNode;
  /** Replaces the buy prompt when refused. */
  fallback?: ReactNode;
  /** Content of the loading placeholder (default: empty). */
  placeholder?: ReactNode;
  /** The prompt's heading. */
  title?: ReactNode;
  /** aria-level of the prompt's heading (default 2). */
  headingLevel?: number;
  /** How the prompt names the feature (default: its id). */
  featureLabel?: ReactNode;
  className?: string;
  classNames?: ClassNames<PaywallSlot>;
}

export function Paywall(props: PaywallProps): ReactNode {
  const { feature, credits, children, fallback, placeholder, className, classNames } = props;
  const { accountId } = useCreditkit();
  const needFeature = feature !== undefined;
  const needCredits = credits !== undefined;
  const featureQuery = useFeature(feature ?? '', { enabled: needFeature });
  const balanceQuery = useBalance({ enabled: needCredits });
  const s = slots('paywall', classNames, className);

  const loading = accountId !== null && ((needFeature && featureQuery.isPending) || (needCredits && balanceQuery.isPending));
  if (loading) {
    const root = s.root();
    return (
      <div {...root} className={cx(root.className, classNames?.placeholder)} data-state="loading" aria-busy="true">
        {placeholder}
      </div>
    );
  }
  // NaN credits are never enough; a negative amount always is.
  const missingFeature = needFeature && featureQuery.data !== true;
  const balance = balanceQuery.data?.balance ?? 0;
  const shortOfCredits = needCredits && !(balance >= credits);
  if (accountId !== null && !missingFeature && !shortOfCredits) return <>{children}</>;
  if (fallback !== undefined) return <>{fallback}</>;
  return (
    <BuyPrompt
      {...props}
      missingFeature={missingFeature}
      shortOfCredits={shortOfCredits}
      balance={balance}
      failed={(needFeature && featureQuery.isError) || (needCredits && balanceQuery.isError)}
    />
  );
}

function BuyPrompt(
  props: PaywallProps & { missingFeature: boolean; shortOfCredits: boolean; balance: number; failed: boolean },
): ReactNode {
  const { feature, credits, title, headingLevel = 2, featureLabel, className, classNames } = props;
  const { missingFeature, shortOfCredits, balance, failed } = props;
  const { accountId, locale } = useCreditkit();
  const titleId = useId();
  const packs = usePacks({ enabled: shortOfCredits });
  const plans = usePlans({ enabled: missingFeature });
  const s = slots('paywall', classNames, className);

  const offers: Array<{ key: string; button: ReactNode }> = [];
  if (missingFeature) {
    for (const plan of plans.data ?? []) {
      if (feature !== undefined && plan.features[feature]) offers.push({ key: `plan:${plan.id}`, button: planButton(plan) });
    }
  }
  if (shortOfCredits) {
    for (const pack of packs.data ?? []) offers.push({ key: `pack:${pack.id}`, button: packButton(pack) });
  }
  const loadingOffers = (missingFeature && plans.isPending) || (shortOfCredits && packs.isPending);

  function planButton(plan: Plan): ReactNode {
    return (
      <BuyCreditsButton planId={plan.id} classNames={{ button: classNames?.button }}>
        Subscribe to {plan.name} ({formatMoney(plan.priceAmount, plan.currency, locale)} a {plan.period})
      </BuyCreditsButton>
    );
  }
  function packButton(pack: Pack): ReactNode {
    return (
      <BuyCreditsButton packId={pack.id} classNames={{ button: classNames?.button }}>
        Buy {pack.name}: {formatCredits(pack.credits, locale)} for {formatMoney(pack.priceAmount, pack.currency, locale)}
      </BuyCreditsButton>
    );
  }

  let message: ReactNode;
  if (accountId === null) message = 'Sign in to continue.';
  else if (missingFeature) message = <>Your plan does not include {featureLabel ?? feature}.</>;
  else if (credits === undefined || !Number.isFinite(credits)) message = 'You do not have enough credits.';
  // a fraction of a credit needs the next whole one (the balance is whole)
  else message = `This needs ${formatCredits(Math.ceil(credits), locale)}; you have ${formatCount(balance, locale)}.`;

  return (
    <section {...s.root()} data-state="locked" aria-labelledby={titleId}>
      <div {...s.part('title')} id={titleId} role="heading" aria-level={headingLevel}>
        {title ?? (missingFeature ? 'Upgrade to unlock this' : 'Not enough credits')}
      </div>
      <p {...s.part('message')}>{message}</p>
      {failed ? (
        <p {...s.part('error')} role="alert">
          Access could not be checked. Please try again.
        </p>
      ) : null}
      {accountId !== null && (offers.length > 0 || loadingOffers) ? (
        <ul {...s.part('list')} aria-busy={loadingOffers}>
          {offers.map((offer) => (
            <li key={offer.key} {...s.part('item')}>
              {offer.button}
            </li>
          ))}
        </ul>
      ) : null}
    </section>
  );
}
