'use client';
// A metered unit's allowance on the account's plan, in words, under its balance: "20 messages a
// day on Free, reset each day; next at Dec 6, 3:36 AM". The time is the unit balance's next
// expiry, which for a reset allowance is when the next period's allowance arrives.
import type { PlanLimit } from '@creditkit/core';
import { useBalance, usePlan, useUnits } from '@creditkit/react';

const dateTime = (iso: string) => new Date(iso).toLocaleString('en-US', { dateStyle: 'medium', timeStyle: 'short' });

/** How running text names a unit: its catalogue name in lower case ("messages"), or its id. */
export function useUnitNoun(): (unit: string) => string {
  const units = useUnits();
  return (unit) => (units.data?.find((u) => u.id === unit)?.name ?? unit).toLowerCase();
}

/** A plan's allowance of a unit in words: "20 messages a day on Free, reset each day". */
export function allowanceText(limit: PlanLimit, noun: string, planName?: string | null): string {
  const cap = limit.rollover_cap === null ? '' : ` (up to ${limit.rollover_cap})`;
  const renewal = limit.renewal === 'reset' ? `reset each ${limit.period}` : `unused ones roll over${cap}`;
  return `${limit.allowance} ${noun} a ${limit.period}${planName ? ` on ${planName}` : ''}, ${renewal}`;
}

export function UnitAllowance({ unit }: { unit: string }) {
  const plan = usePlan();
  const balance = useBalance({ unit });
  const noun = useUnitNoun()(unit);
  const limit = plan.data?.limits?.[unit];
  const next = limit?.renewal === 'reset' ? balance.data?.nextExpiry : null;
  return (
    <p className="muted small">
      {!plan.data
        ? '\u00a0'
        : limit
          ? `${allowanceText(limit, noun, plan.data.planName)}${next ? `; next at ${dateTime(next)}` : ''}.`
          : `Your plan includes no ${noun}.`}
    </p>
  );
}
