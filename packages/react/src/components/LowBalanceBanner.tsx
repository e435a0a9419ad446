'use client';
// A notice when the balance is at or below a threshold: role=status while some credit is left,
// role=alert at zero. Renders nothing otherwise (and nothing while loading or signed out). Without
// a threshold prop it uses the account's own (creditkit_my_balance_alert: the one the customer
// set, else the app's default for credits), so the banner and the balance.low event agree.
import { type ReactNode } from 'react';
import { useCreditkit } from '../context.tsx';
import { clampCount, formatCredits } from '../format.ts';
import { useBalance, useBalanceAlert } from '../hooks.ts';
import { slots, type ClassNames } from '../slots.ts';

export type LowBalanceBannerSlot = 'message' | 'action';

export interface LowBalanceBannerProps {
  /**
   * Shown when the spendable balance is at most this (a number; NaN never shows). Default: the
   * account's low-balance threshold in force (useBalanceAlert); none set, no banner.
   */
  threshold?: number;
  /** The message; a function gets the balance. Default "Only 3 credits left." / "You are out of credits." */
  children?: ReactNode | ((balance: number) => ReactNode);
  /** After the message, e.g. a <BuyCreditsButton packId="…" />. */
  action?: ReactNode;
  className?: string;
  classNames?: ClassNames<LowBalanceBannerSlot>;
}

export function LowBalanceBanner({ threshold, children, action, className, classNames }: LowBalanceBannerProps): ReactNode {
  const { accountId, locale } = useCreditkit();
  const { data } = useBalance();
  const alert = useBalanceAlert({ enabled: threshold === undefined });
  const limit = threshold ?? alert.data?.threshold ?? Number.NaN;
  if (accountId === null || !data || !(data.balance <= limit)) return null;

  const balance = clampCount(data.balance);
  const s = slots('low-balance', classNames, className);
  const message =
    typeof children === 'function'
      ? children(balance)
      : (children ?? (balance === 0 ? 'You are out of credits.' : `Only ${formatCredits(balance, locale)} left.`));
  return (
    <div {...s.root()} role={balance === 0 ? 'alert' : 'status'} data-state={balance === 0 ? 'empty' : 'low'}>
      <span {...s.part('message')}>{message}</span>
      {action ? (
        <>
          {' '}
          <span {...s.part('action')}>{action}</span>
        </>
      ) : null}
    </div>
  );
}
