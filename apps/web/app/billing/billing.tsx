'use client';
import {
  BuyCreditsButton,
  CreditsDisplay,
  ManageSubscriptionLink,
  UsageHistory,
  useBalance,
  usePacks,
  usePlan,
  usePlans,
  useUnits,
} from '@creditkit/react';
import { UnitAllowance, allowanceText, useUnitNoun } from '../unit-allowance.tsx';
import { AutoTopupSection, BalanceAlertSection } from './auto-topup.tsx';
import { money } from '@/lib/format.ts';

// The same format as @creditkit/react's dates (the provider's locale is en-US): "Dec 22, 2026".
const date = (iso: string | null) => (iso ? new Date(iso).toLocaleDateString('en-US', { dateStyle: 'medium' }) : 'never');

export function Billing({ notice, simulated, topupToConfirm }: { notice: string | null; simulated: boolean; topupToConfirm: string | null }) {
  const balance = useBalance();
  const plan = usePlan();
  const plans = usePlans();
  const packs = usePacks();
  // every metered unit beside credits (messages), each with its own balance
  const units = useUnits().data?.filter((u) => u.kind === 'metered' && u.id !== 'credits') ?? [];
  const noun = useUnitNoun();
  const paidPlans = plans.data?.filter((p) => p.stripePriceId) ?? [];
  const current = plan.data;
  const subscribed = current?.status === 'active' && paidPlans.some((p) => p.id === current.planId);

  return (
    <div className="grid billing">
      {notice ? (
        <p className="notice span3" role="status">
          {notice}
        </p>
      ) : null}
      <section className="card" aria-labelledby="balance-title">
        <h1 id="balance-title">Balances</h1>
        <CreditsDisplay label="Spendable credits" />
        {units.map((u) => (
          <div key={u.id}>
            {/* no expiry line: a daily allowance "expires" every day; UnitAllowance says when the next arrives */}
            <CreditsDisplay unit={u.id} showExpiry={false} />
            <UnitAllowance unit={u.id} />
          </div>
        ))}
      </section>

      <section className="card" aria-labelledby="plan-title">
        <h2 id="plan-title">Plan</h2>
        {plan.data ? (
          <>
            <p className="big" data-testid="plan-name">
              {plan.data.planName ?? 'Free'}
            </p>
            <p className="muted">
              {plan.data.allowance ? `${plan.data.allowance} credits a ${plans.data?.find((p) => p.id === plan.data.planId)?.period ?? 'period'}` : 'No credits included'}
              {plan.data.periodEnd ? `, renews ${date(plan.data.periodEnd)}` : ''}
              {plan.data.status && plan.data.status !== 'active' ? ` (${plan.data.status})` : ''}
            </p>
            {Object.entries(plan.data.limits ?? {}).map(([unit, limit]) => (
              <p key={unit} className="muted">
                {allowanceText(limit, noun(unit))}
              </p>
            ))}
            <p>
              Features:{' '}
              {Object.entries(plan.data.features ?? {}).filter(([, on]) => on).map(([f]) => <code key={f}>{f}</code>)}
              {Object.values(plan.data.features ?? {}).some(Boolean) ? null : <span className="muted">none</span>}
            </p>
            {subscribed ? (
              <ManageSubscriptionLink classNames={{ button: 'ck-button' }} />
            ) : (
              <div className="ck-row">
                {paidPlans.map((p) => (
                  <BuyCreditsButton key={p.id} planId={p.id} classNames={{ button: 'ck-button primary' }}>
                    {`Subscribe to ${p.name} · ${money(p.priceAmount, p.currency)}/${p.period}`}
                  </BuyCreditsButton>
                ))}
              </div>
            )}
          </>
        ) : (
          <p aria-busy="true">…</p>
        )}
      </section>

      <section className="card" aria-labelledby="packs-title">
        <h2 id="packs-title">Credit packs</h2>
        <ul className="plain">
          {packs.data?.map((p) => (
            <li key={p.id} className="pack">
              <div>
                <strong>{p.name}</strong>
                <span className="muted">
                  {' '}
                  {p.credits} credits · {money(p.priceAmount, p.currency)}
                  {p.expiresAfter ? ` · valid ${p.expiresAfter}` : ''}
                </span>
              </div>
              <BuyCreditsButton packId={p.id} classNames={{ button: 'ck-button' }}>
                {`Buy ${p.credits} credits · ${money(p.priceAmount, p.currency)}`}
              </BuyCreditsButton>
            </li>
          ))}
        </ul>
      </section>

      {topupToConfirm ? (
        <p className="notice warn span3" role="status">
          Your bank asks you to confirm automatic top-up #{topupToConfirm}.{' '}
          {simulated ? <a href={`/checkout/simulated?topup=${encodeURIComponent(topupToConfirm)}`}>Confirm the payment</a> : 'Confirm it from the link in the email.'}
        </p>
      ) : null}
      <AutoTopupSection simulated={simulated} />
      <BalanceAlertSection />

      <section className="card span3" aria-labelledby="buckets-title">
        <h2 id="buckets-title">Buckets</h2>
        <p className="muted">Spent soonest-expiring first, then by priority (promotional, plan, adjustment, purchase), then oldest.</p>
        {balance.data && balance.data.buckets.length === 0 ? (
          <p className="muted">No credit left in any bucket.</p>
        ) : (
          // while loading: the header and one waiting row, so the rows arriving only add to the bottom
          <table className="ck-table fixed" aria-busy={balance.isPending}>
            <thead>
              <tr>
                <th scope="col">Bucket</th>
                <th scope="col" className="num">Remaining</th>
                <th scope="col" className="num">Of</th>
                <th scope="col">Expires</th>
              </tr>
            </thead>
            <tbody>
              {balance.data ? (
                balance.data.buckets.map((b) => (
                  <tr key={b.grantId}>
                    <td>{b.category}</td>
                    <td className="num">{b.remaining}</td>
                    <td className="num">{b.amount}</td>
                    <td>{date(b.expiresAt)}</td>
                  </tr>
                ))
              ) : (
                <tr>
                  <td colSpan={4} className="muted">
                    {balance.isError ? 'The buckets could not be loaded.' : 'Loading…'}
                  </td>
                </tr>
              )}
            </tbody>
          </table>
        )}
      </section>

      <section className="card span3" aria-labelledby="history-title">
        <h2 id="history-title">History</h2>
        <UsageHistory pageSize={10} caption="Every ledger entry, newest first" classNames={{ table: 'ck-table', button: 'ck-button' }} />
      </section>
    </div>
  );
}
