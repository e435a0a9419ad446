// The operator dashboard: every customer's balance, plan, usage and top-ups; usage and margin
// per unit (credits, messages); usage over time and the top events; MRR and credits outstanding;
// revenue, cost and margin per customer. It is read on the server as service_role with the
// analytics functions (creditkit_account_margin, _unit_usage, _usage_series, _top_events,
// _credits_outstanding, _accounts_per_plan, _mrr). In the demo any signed-in demo user may open
// it; in your app, put it behind your operators' sign-in. Below: automatic top-ups
// (creditkit_topups), the notification outbox's deliveries (creditkit_notifications), and what
// the demo's own receiver got and verified (kept in the server's memory).
import type { ReactNode } from 'react';
import { HBarChart, StackedBarChart } from '@/lib/charts.tsx';
import { demoUserById } from '@/lib/demo-users.ts';
import { int, micros, money } from '@/lib/format.ts';
import { getDemo } from '@/lib/server/demo.ts';
import { receivedNotifications } from '@/lib/server/receiver.ts';

export const dynamic = 'force-dynamic';

const DAY = 86_400_000;
const DAYS = 30;
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

const MONEY = ['Revenue', 'Cost', 'Margin'];

const time = (iso: string) => new Date(iso).toLocaleString('en-US', { month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit', second: '2-digit' });

/** A received notification's data in a few words. */
function describe(type: string, data: Record<string, unknown>): string {
  const n = (key: string) => (typeof data[key] === 'number' ? int(data[key] as number) : String(data[key] ?? '—'));
  if (type.startsWith('balance.')) return `${n('spendable')} ${String(data.unit ?? 'credits')} (threshold ${n('threshold')})`;
  if (type === 'topup.succeeded') return `+${n('amount')} for ${money(Number(data.charge_amount), String(data.currency))}, balance ${n('balance')}`;
  if (type === 'topup.failed') return `${n('amount')} credits: ${String(data.failure_code ?? 'failed')}`;
  if (type === 'topup.action_required') return `${n('amount')} credits: needs the customer`;
  if (type === 'plan.changed') return `${String(data.previous_plan_id ?? 'no plan')} → ${String(data.plan_id)}`;
  return '';
}

/** A table's header row: text columns, then numeric ones (right-aligned). */
function Head({ columns, numeric }: { columns: string[]; numeric: string[] }) {
  return (
    <thead>
      <tr>
        {columns.map((c) => (
          <th key={c} scope="col">
            {c}
          </th>
        ))}
        {numeric.map((c) => (
          <th key={c} scope="col" className="num">
            {c}
          </th>
        ))}
      </tr>
    </thead>
  );
}

/** Revenue, cost and margin cells; `children` follow the margin. */
function MoneyCells({ of, children }: { of: { revenueMicros: number; costMicros: number; marginMicros: number }; children?: ReactNode }) {
  return (
    <>
      <td className="num">{micros(of.revenueMicros)}</td>
      <td className="num">{micros(of.costMicros)}</td>
      <td className="num">
        {micros(of.marginMicros)} {children}
      </td>
    </>
  );
}

export default async function Dashboard() {
  const demo = await getDemo();
  const { creditkit, sql } = demo;
  const now = Date.now();
  const from = new Date(now - DAYS * DAY);
  const to = new Date(now + 60_000);
  const margin = await creditkit.accountMargin({ from, to });
  const series = await creditkit.usageSeries({ from, to });
  const top = await creditkit.topEvents({ from, to, limit: 5 });
  const outstanding = await creditkit.creditsOutstanding();
  const perPlan = await creditkit.accountsPerPlan();
  const mrr = await creditkit.mrr();
  const perUnit = await creditkit.unitUsage({ from, to });
  const unitNames = new Map((await creditkit.units()).map((u) => [u.id, u.name]));
  const topups = await creditkit.topups({ limit: 20 });
  const notifications = await creditkit.notifications({ limit: 30 });
  const deliveries = notifications.flatMap((n) => n.deliveries.map((d) => ({ ...d, event: n })));
  const receiver = receivedNotifications();

  // Every account with activity in the window: its balance (a server read, which also books
  // expired credit) and its plan.
  const emails = new Map(
    (await sql<{ id: string; email: string | null }>('select id::text, email from auth.users')).map((u) => [u.id, u.email]),
  );
  const customers = await Promise.all(
    margin.map(async (m) => {
      const [balance, plan] = [await creditkit.balance({ accountId: m.accountId }), await creditkit.asUser(m.accountId).plan()];
      const demoUser = demoUserById(m.accountId);
      return { ...m, name: demoUser?.name ?? emails.get(m.accountId) ?? m.accountId.slice(0, 8), balance: balance.balance, plan: plan.planName ?? 'Free' };
    }),
  );
  customers.sort((a, b) => a.name.localeCompare(b.name));
  const nameOf = (id: string | null) => (id ? (demoUserById(id)?.name ?? emails.get(id) ?? id.slice(0, 8)) : '—');

  const days = Array.from({ length: DAYS + 1 }, (_, i) => new Date(now - (DAYS - i) * DAY).toISOString().slice(0, 10));
  const events = [...new Set(series.map((p) => p.event ?? '(none)'))].sort();
  const stacked = events.map((e) => ({
    name: e,
    values: days.map((d) => series.filter((p) => p.day === d && (p.event ?? '(none)') === e).reduce((s, p) => s + p.credits, 0)),
  }));
  const totalOutstanding = outstanding.reduce((s, o) => s + o.credits, 0);
  const usageCredits = series.reduce((s, p) => s + p.credits, 0);
  const unprofitable = customers.filter((c) => c.marginMicros < 0);

  return (
    <div className="dash">
      <div className="dash-head">
        <h1>
          Operator dashboard <span className="tag">operator</span>
        </h1>
        <p className="muted">
          All customers, last {DAYS} days. Read on the server as <code>service_role</code>; browsers cannot call these functions. (In this demo every
          signed-in user may look.)
        </p>
      </div>

      <section className="kpis" aria-label="Key figures">
        <div className="card kpi">
          <span className="muted">MRR</span>
          <strong data-testid="mrr">{mrr.length ? mrr.map((m) => money(m.mrr, m.currency)).join(' + ') : money(0, 'usd')}</strong>
          <span className="muted">{plural(mrr.reduce((s, m) => s + m.subscriptions, 0), 'subscription')}</span>
        </div>
        <div className="card kpi">
          <span className="muted">Credits outstanding</span>
          <strong data-testid="outstanding">{int(totalOutstanding)}</strong>
          <span className="muted">{outstanding.map((o) => `${o.category} ${int(o.credits)}`).join(' · ') || 'none'}</span>
        </div>
        <div className="card kpi">
          <span className="muted">Credits used ({DAYS} days)</span>
          <strong data-testid="usage-total">{int(usageCredits)}</strong>
          <span className="muted">{int(series.reduce((s, p) => s + p.calls, 0))} calls</span>
        </div>
        <div className="card kpi">
          <span className="muted">Accounts per plan</span>
          <strong>{perPlan.map((p) => `${p.planName} ${p.accounts}`).join(' · ') || '—'}</strong>
          <span className="muted">{unprofitable.length} unprofitable</span>
        </div>
      </section>

      <section className="card" aria-labelledby="customers-title">
        <h2 id="customers-title">Customers</h2>
        <table className="ck-table" data-testid="customers">
          <Head columns={['Customer', 'Plan']} numeric={['Balance', 'Used', 'Topped up', ...MONEY]} />
          <tbody>
            {customers.map((c) => (
              <tr key={c.accountId} className={c.marginMicros < 0 ? 'loss' : undefined}>
                <th scope="row">{c.name}</th>
                <td>{c.plan}</td>
                <td className="num">{int(c.balance)}</td>
                <td className="num">{int(c.creditsSpent)}</td>
                <td className="num">{int(c.creditsGranted)}</td>
                <MoneyCells of={c}>{c.marginMicros < 0 ? <span className="tag bad">unprofitable</span> : null}</MoneyCells>
              </tr>
            ))}
          </tbody>
        </table>
      </section>

      <section className="card" aria-labelledby="units-title">
        <h2 id="units-title">Usage and margin per unit</h2>
        <p className="muted">
          Each metered feature: calls, what was spent of it, the credits spent in its place at the overage price once a customer&apos;s allowance
          was gone, what was granted, and revenue (Stripe payments, booked to the unit they granted: Pro&apos;s price to its credits), cost and
          margin.
        </p>
        <table className="ck-table" data-testid="units">
          <Head columns={['Unit']} numeric={['Calls', 'Spent', 'Overage credits', 'Granted', ...MONEY]} />
          <tbody>
            {perUnit.map((u) => (
              <tr key={u.unit} className={u.marginMicros < 0 ? 'loss' : undefined}>
                <th scope="row">{unitNames.get(u.unit) ?? u.unit}</th>
                <td className="num">{int(u.calls)}</td>
                <td className="num">{int(u.spent)}</td>
                <td className="num">{int(u.overageCredits)}</td>
                <td className="num">{int(u.granted)}</td>
                <MoneyCells of={u} />
              </tr>
            ))}
          </tbody>
        </table>
      </section>

      <div className="two">
        <section className="card" aria-labelledby="usage-title">
          <h2 id="usage-title">Usage over time</h2>
          <StackedBarChart
            id="usage"
            title={`Credits used per day, last ${DAYS} days, by event`}
            description={`${int(usageCredits)} credits over ${DAYS} days across ${events.length} events.`}
            categories={days}
            series={stacked}
            unit="credits"
            width={460}
          />
          <details>
            <summary>Usage as a table</summary>
            <table className="ck-table">
              <thead>
                <tr>
                  <th scope="col">Day</th>
                  <th scope="col">Event</th>
                  <th scope="col" className="num">Calls</th>
                  <th scope="col" className="num">Credits</th>
                  <th scope="col" className="num">Cost</th>
                </tr>
              </thead>
              <tbody>
                {series.map((p) => (
                  <tr key={`${p.day}-${p.event}`}>
                    <td>{p.day}</td>
                    <td>{p.event ?? '(none)'}</td>
                    <td className="num">{p.calls}</td>
                    <td className="num">{p.credits}</td>
                    <td className="num">{micros(p.costMicros)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </details>
        </section>

        <section className="card" aria-labelledby="top-title">
          <h2 id="top-title">Top events</h2>
          <HBarChart
            id="top"
            title="Events by credits spent"
            description={top.map((t) => `${t.event}: ${t.credits} credits in ${t.calls} calls`).join('; ')}
            bars={top.map((t) => ({ label: t.event ?? '(none)', value: t.credits, display: `${int(t.credits)} cr` }))}
            width={460}
          />
          <table className="ck-table" data-testid="top-events">
            <thead>
              <tr>
                <th scope="col">Event</th>
                <th scope="col" className="num">Calls</th>
                <th scope="col" className="num">Credits</th>
                <th scope="col" className="num">Cost</th>
                <th scope="col" className="num">Accounts</th>
              </tr>
            </thead>
            <tbody>
              {top.map((t) => (
                <tr key={t.event ?? ''}>
                  <th scope="row">{t.event ?? '(none)'}</th>
                  <td className="num">{int(t.calls)}</td>
                  <td className="num">{int(t.credits)}</td>
                  <td className="num">{micros(t.costMicros)}</td>
                  <td className="num">{t.accounts}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      </div>

      <section className="card" aria-labelledby="topups-title">
        <h2 id="topups-title">Top-ups</h2>
        <p className="muted">
          Automatic top-ups, newest first: written when a debit takes a balance below the customer&apos;s threshold, charged off-session by the
          worker, credited when Stripe&apos;s <code>payment_intent.succeeded</code> arrives.
        </p>
        {topups.length === 0 ? (
          <p className="muted">No top-ups yet. Turn auto top-up on in Billing (Grace has a card on file) and spend below the threshold.</p>
        ) : (
          <table className="ck-table" data-testid="topups">
            <thead>
              <tr>
                <th scope="col">Customer</th>
                <th scope="col" className="num">Credits</th>
                <th scope="col" className="num">Charge</th>
                <th scope="col">Status</th>
                <th scope="col">Failure</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {topups.map((t) => (
                <tr key={t.id}>
                  <th scope="row">{nameOf(t.accountId)}</th>
                  <td className="num">{int(t.amount)}</td>
                  <td className="num">{money(t.chargeAmount, t.currency)}</td>
                  <td>
                    <span className={`tag ${t.status === 'succeeded' ? 'good' : t.status === 'failed' ? 'bad' : t.status === 'action_required' ? 'warn' : 'neutral'}`}>
                      {t.status.replace('_', ' ')}
                    </span>
                  </td>
                  <td>{t.failureCode ? <span title={t.failureMessage ?? undefined}>{t.failureCode}</span> : <span className="muted">—</span>}</td>
                  <td>{time(t.createdAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>

      <section className="card" aria-labelledby="deliveries-title">
        <h2 id="deliveries-title">Notification deliveries</h2>
        <p className="muted">
          The outbox: each event to each endpoint, signed per Standard Webhooks and retried on failure (5 s, 5 min, 30 min, … dead after 8).
        </p>
        {deliveries.length === 0 ? (
          <p className="muted">No notifications yet.</p>
        ) : (
          <table className="ck-table" data-testid="deliveries">
            <thead>
              <tr>
                <th scope="col">Event</th>
                <th scope="col">Customer</th>
                <th scope="col">Endpoint</th>
                <th scope="col">Status</th>
                <th scope="col" className="num">Attempts</th>
                <th scope="col" className="num">HTTP</th>
              </tr>
            </thead>
            <tbody>
              {deliveries.map((d) => (
                <tr key={d.id}>
                  <th scope="row">
                    <code>{d.event.type}</code>
                  </th>
                  <td>{nameOf(d.event.accountId)}</td>
                  <td>{d.endpointId}</td>
                  <td>
                    <span className={`tag ${d.status === 'delivered' ? 'good' : d.status === 'dead' ? 'bad' : 'neutral'}`}>{d.status}</span>
                  </td>
                  <td className="num">{d.attempts}</td>
                  <td className="num">{d.lastStatus ?? '—'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>

      <section className="card" aria-labelledby="received-title">
        <h2 id="received-title">Notifications received by the demo receiver</h2>
        <p className="muted">
          <code>POST /api/demo/notifications</code> checks each delivery with <code>verifyWebhook</code> and the endpoint&apos;s secret; a bad
          signature gets a 401 and is not kept{receiver.refused ? ` (${plural(receiver.refused, 'refused delivery')})` : ''}. The last{' '}
          {receiver.received.length} kept in memory, newest first.
        </p>
        {receiver.received.length === 0 ? (
          <p className="muted">Nothing received yet.</p>
        ) : (
          <table className="ck-table" data-testid="received">
            <thead>
              <tr>
                <th scope="col">Event</th>
                <th scope="col">Customer</th>
                <th scope="col">Details</th>
                <th scope="col">Received</th>
              </tr>
            </thead>
            <tbody>
              {receiver.received.map((r) => (
                <tr key={r.id}>
                  <th scope="row">
                    <code>{r.type}</code> <span className="tag good">verified</span>
                  </th>
                  <td>{nameOf(r.accountId)}</td>
                  <td className="small">{describe(r.type, r.data)}</td>
                  <td>{time(r.receivedAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>

      <section className="card" aria-labelledby="margin-title">
        <h2 id="margin-title">Revenue, cost and margin per customer</h2>
        <p className="muted">Revenue is what Stripe payments granted; cost is the vendor cost recorded with each call. Red: costs more than it brings in.</p>
        <HBarChart
          id="margin"
          title="Margin per customer"
          description={customers.map((c) => `${c.name}: revenue ${micros(c.revenueMicros)}, cost ${micros(c.costMicros)}, margin ${micros(c.marginMicros)}`).join('; ')}
          bars={customers.flatMap((c) => [
            { label: `${c.name.split(' ')[0]} revenue`, value: c.revenueMicros / 1e6, display: micros(c.revenueMicros), tone: 'plain' as const },
            { label: `${c.name.split(' ')[0]} cost`, value: -c.costMicros / 1e6, display: micros(c.costMicros), tone: 'bad' as const },
            { label: `${c.name.split(' ')[0]} margin`, value: c.marginMicros / 1e6, display: micros(c.marginMicros), tone: c.marginMicros < 0 ? ('bad' as const) : ('good' as const) },
          ])}
          width={900}
        />
      </section>
    </div>
  );
}
