'use client';
// The balance of credits or of a metered unit (unit="messages"), what it buys ("12 image
// generations left") and when some of it next expires. While
// loading, the same parts are rendered empty (data-placeholder, aria-busy) so nothing moves
// when the numbers arrive; no part ever shows NaN or a negative number.
import { useId, type ReactNode } from 'react';
import type { AccountBalance } from '@creditkit/core';
import { useCreditkit } from '../context.tsx';
import { formatAmount, formatCount, formatDate, pluralize, unitNoun, unitsLeft } from '../format.ts';
import { useBalance, useUnits } from '../hooks.ts';
import { slots, type ClassNames } from '../slots.ts';

/** What one unit of your product costs in credits, e.g. { amount: 2, unit: 'image generation' }. */
export interface CreditsPrice {
  /** Credits per unit: a positive number. Anything else (0, negative, NaN) hides the "left" line. */
  amount: number;
  unit: string;
  /** Default: `${unit}s`. */
  unitPlural?: string;
}

export type CreditsDisplaySlot = 'label' | 'value' | 'units' | 'expiry' | 'error';

export interface CreditsDisplayProps {
  /** The metered unit (feature) to show, e.g. 'messages' (default: credits). */
  unit?: string;
  /** Adds "N <units> left": floor(balance / amount). */
  price?: CreditsPrice;
  /** Default "Credits", or the unit's name from the catalogue (its id until that is known). */
  label?: ReactNode;
  /** Show the next expiry (default true). */
  showExpiry?: boolean;
  className?: string;
  classNames?: ClassNames<CreditsDisplaySlot>;
}

const EMPTY = '\u00a0'; // keeps a loading part one line high

/**
 * Credits expiring at the balance's next expiry (the buckets that expire at that instant). A unit
 * the account has not touched yet has no bucket: its balance is the plan allowance it would open
 * with, all of which lasts until the period's end.
 */
export function expiringCredits(balance: AccountBalance): number {
  if (!balance.nextExpiry) return 0;
  if (balance.buckets.length === 0) return balance.balance;
  const at = Date.parse(balance.nextExpiry);
  return balance.buckets.reduce((sum, b) => (b.expiresAt && Date.parse(b.expiresAt) === at ? sum + b.remaining : sum), 0);
}

export function CreditsDisplay({ unit, price, label, showExpiry = true, className, classNames }: CreditsDisplayProps): ReactNode {
  const { accountId, locale } = useCreditkit();
  const ofUnit = unit !== undefined && unit !== 'credits';
  const balance = useBalance(ofUnit ? { unit } : {});
  const units = useUnits({ enabled: ofUnit });
  const labelId = useId();
  if (accountId === null) return null;

  const data = balance.data;
  const loading = balance.isPending;
  const failed = !data && balance.isError;
  const s = slots('credits-display', classNames, className);
  const placeholder = loading ? { 'data-placeholder': '' } : {};

  const left = price ? unitsLeft(data?.balance, price.amount) : null;
  const noun = ofUnit ? unitNoun(units.data, unit) : null;
  let expiry: ReactNode = EMPTY;
  if (data && data.nextExpiry) {
    const credits = expiringCredits(data);
    expiry = (
      <>
        {formatAmount(credits, noun, locale)} {pluralize(credits, 'expires', 'expire', locale)} on{' '}
        <time dateTime={data.nextExpiry}>{formatDate(data.nextExpiry, locale)}</time>
      </>
    );
  } else if (data) {
    expiry = `No ${noun ?? 'credits'} expire`;
  }

  return (
    <div {...s.root()} role="group" aria-labelledby={labelId} aria-busy={loading} data-state={loading ? 'loading' : failed ? 'error' : 'ready'}>
      <span {...s.part('label')} id={labelId}>
        {label ?? (ofUnit ? (units.data?.find((u) => u.id === unit)?.name ?? unit) : 'Credits')}
      </span>{' '}
      <span {...s.part('value')} {...placeholder}>
        {data ? formatCount(data.balance, locale) : failed ? '—' : EMPTY}
      </span>
      {price && left !== null ? (
        <>
          {' '}
          <span {...s.part('units')} {...placeholder}>
            {data ? `${formatCount(left, locale)} ${pluralize(left, price.unit, price.unitPlural, locale)} left` : EMPTY}
          </span>
        </>
      ) : null}
      {showExpiry ? (
        <>
          {' '}
          <span {...s.part('expiry')} {...placeholder}>
            {expiry}
          </span>
        </>
      ) : null}
      {failed ? (
        <span {...s.part('error')} role="alert">
          Your balance could not be loaded.
        </span>
      ) : null}
    </div>
  );
}
