'use client';
// Gates its children on a feature (a plan flag, or enough of a metered unit such as messages), on
// enough credits, or on both; or shows what a 402 from your route said ran out. Allowed: the
// children, unwrapped. Still checking: a placeholder (aria-busy) that you size with CSS to the
// gated content, so nothing jumps. Refused (or signed out): `fallback`, or a prompt naming what
// is missing and listing the packs that buy credits and the plans that include the feature or a
// limit of the unit, each with its checkout button.
import { useId, type ReactNode } from 'react';
import type { Pack, Plan } from '@creditkit/core';
import { useCreditkit } from '../context.tsx';
import { formatCount, formatCredits, formatMoney, unitNoun } from '../format.ts';
import { useBalance, useFeature, usePacks, usePlans, useUnits } from '../hooks.ts';
import { cx, slots, type ClassNames } from '../slots.ts';
import { BuyCreditsButton } from './BuyCreditsButton.tsx';

export type PaywallSlot = 'placeholder' | 'title' | 'message' | 'list' | 'item' | 'button' | 'error';

/** What a 402 from the route helpers says (their JSON body): what ran out, what was needed and what is left. */
export interface PaymentRequiredInfo {
  /** The unit (feature) that ran out; absent for credits. */
  unit?: string;
  balance: number;
  required: number;
}

export interface PaywallProps {
  /**
   * Needs this feature: for a metered unit (e.g. 'messages'), at least `amount` of it left; for
   * anything else, the account's plan to include it as a flag.
   */
  feature?: string;
  /** With a metered `feature`: how much of it is needed (default 1). */
  amount?: number;
  /** Needs at least this many spendable credits. */
  credits?: number;
  /** A 402 your route answered (its JSON body): locked, naming the unit that ran out, without asking the database. */
  paymentRequired?: PaymentRequiredInfo;
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
  /** How the prompt names the feature (default: a unit's name from the catalogue, else its id). */
  featureLabel?: ReactNode;
  className?: string;
  classNames?: ClassNames<PaywallSlot>;
}

/** A metered unit that is short: which, how much was needed and how much is left. */
interface UnitShortage {
  unit: string;
  required: number;
  balance: number;
}

export function Paywall(props: PaywallProps): ReactNode {
  const { feature, amount = 1, credits, paymentRequired, children, fallback, placeholder, className, classNames } = props;
  const { accountId } = useCreditkit();
  const blocked = paymentRequired !== undefined;
  const needFeature = feature !== undefined && !blocked;
  const needCredits = credits !== undefined && !blocked;
  const featureState = useFeature(feature ?? '', { amount, enabled: needFeature });
  const balanceQuery = useBalance({ enabled: needCredits });
  const s = slots('paywall', classNames, className);

  const loading = accountId !== null && ((needFeature && featureState.loading) || (needCredits && balanceQuery.isPending));
  if (loading) {
    const root = s.root();
    return (
      <div {...root} className={cx(root.className, classNames?.placeholder)} data-state="loading" aria-busy="true">
        {placeholder}
      </div>
    );
  }
  // A feature with a balance is a metered unit; without one (or unanswered), a plan flag.
  const metered = featureState.balance !== null;
  const missingFeature = needFeature && !metered && !featureState.allowed;
  let shortOfUnit: UnitShortage | null =
    needFeature && metered && !featureState.allowed ? { unit: feature!, required: amount, balance: featureState.balance! } : null;
  // NaN credits are never enough; a negative amount always is.
  let balance = balanceQuery.data?.balance ?? 0;
  let needed = credits;
  let shortOfCredits = needCredits && !(balance >= credits);
  if (paymentRequired) {
    const { unit = 'credits', required } = paymentRequired;
    if (unit === 'credits') [shortOfCredits, balance, needed] = [true, paymentRequired.balance, required];
    else shortOfUnit = { unit, required, balance: paymentRequired.balance };
  }
  if (accountId !== null && !missingFeature && !shortOfCredits && !shortOfUnit) return <>{children}</>;
  if (fallback !== undefined) return <>{fallback}</>;
  return (
    <BuyPrompt
      {...props}
      credits={needed}
      missingFeature={missingFeature}
      shortOfCredits={shortOfCredits}
      shortOfUnit={shortOfUnit}
      balance={balance}
      failed={(needFeature && featureState.error !== null) || (needCredits && balanceQuery.isError)}
    />
  );
}

function BuyPrompt(
  props: PaywallProps & {
    missingFeature: boolean;
    shortOfCredits: boolean;
    shortOfUnit: UnitShortage | null;
    balance: number;
    failed: boolean;
  },
): ReactNode {
  const { feature, credits, title, headingLevel = 2, featureLabel, className, classNames } = props;
  const { missingFeature, shortOfCredits, shortOfUnit, balance, failed } = props;
  const { accountId, locale } = useCreditkit();
  const titleId = useId();
  const packs = usePacks({ enabled: shortOfCredits || shortOfUnit !== null });
  const plans = usePlans({ enabled: missingFeature || shortOfUnit !== null });
  const units = useUnits({ enabled: shortOfUnit !== null && featureLabel === undefined });
  const s = slots('paywall', classNames, className);

  const offers: Array<{ key: string; button: ReactNode }> = [];
  for (const plan of missingFeature || shortOfUnit ? (plans.data ?? []) : []) {
    // the plans with the flag, or with an allowance of the unit that ran out (a paid plan: a free
    // one is where an account without a subscription already is)
    const opens = (missingFeature && feature !== undefined && plan.features[feature])
      || (shortOfUnit && plan.limits[shortOfUnit.unit] && plan.priceAmount > 0);
    if (opens) offers.push({ key: `plan:${plan.id}`, button: planButton(plan) });
  }
  // the packs of what ran out: credit packs, or packs of the unit
  const packUnit = shortOfUnit ? shortOfUnit.unit : shortOfCredits ? 'credits' : null;
  for (const pack of packUnit === null ? [] : (packs.data ?? [])) {
    if (pack.unit === packUnit) offers.push({ key: `pack:${pack.id}`, button: packButton(pack) });
  }
  const loadingOffers = ((missingFeature || shortOfUnit !== null) && plans.isPending) || (packUnit !== null && packs.isPending);
  const noun = shortOfUnit ? (featureLabel ?? unitNoun(units.data, shortOfUnit.unit)) : null;

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
        {pack.unit === 'credits'
          ? <>Buy {pack.name}: {formatCredits(pack.credits, locale)} for {formatMoney(pack.priceAmount, pack.currency, locale)}</>
          : <>Buy {pack.name} for {formatMoney(pack.priceAmount, pack.currency, locale)}</>}
      </BuyCreditsButton>
    );
  }

  let message: ReactNode;
  if (accountId === null) message = 'Sign in to continue.';
  else if (missingFeature) message = <>Your plan does not include {featureLabel ?? feature}.</>;
  else if (shortOfUnit) {
    message = (
      <>
        This needs {formatCount(Math.ceil(shortOfUnit.required), locale)} {noun}; you have {formatCount(shortOfUnit.balance, locale)}.
      </>
    );
  } else if (credits === undefined || !Number.isFinite(credits)) message = 'You do not have enough credits.';
  // a fraction of a credit needs the next whole one (the balance is whole)
  else message = `This needs ${formatCredits(Math.ceil(credits), locale)}; you have ${formatCount(balance, locale)}.`;

  return (
    <section {...s.root()} data-state="locked" aria-labelledby={titleId}>
      <div {...s.part('title')} id={titleId} role="heading" aria-level={headingLevel}>
        {title ?? (missingFeature ? 'Upgrade to unlock this' : shortOfUnit ? <>Not enough {noun}</> : 'Not enough credits')}
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
