'use client';
// The billing page's auto top-up: its status (and why, when it is not active), the card on file
// or a way to save one, this month's top-ups against the cap, the last top-up (with the link to
// confirm it when the bank wants the customer), the settings form, the recent top-ups, and the
// customer's own low-balance threshold. All of it through the browser client, as the signed-in
// user (creditkit_my_auto_topup, _my_set_auto_topup, _my_topups, _my_balance_alert, …).
import type { AutoTopup, Topup } from '@creditkit/core';
import { creditkitKeys, useCreditkit, usePacks } from '@creditkit/react';
import { useEffect, useState, type FormEvent, type ReactNode } from 'react';
import { money } from '@/lib/format.ts';
import { topupInFlight, topupKeys, useAutoTopup, useAutoTopupTerms, useBalanceAlert, useTopups } from '@/lib/client/auto-topup.ts';
import { useBrowserCreditkit } from '../providers.tsx';

const when = (iso: string | null) =>
  iso ? new Date(iso).toLocaleString('en-US', { month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit' }) : '—';

const STATUS: Record<AutoTopup['status'], { label: string; tone: string }> = {
  off: { label: 'Off', tone: 'neutral' },
  active: { label: 'Active', tone: 'good' },
  action_required: { label: 'Action required', tone: 'warn' },
  disabled: { label: 'Stopped', tone: 'bad' },
};

/** Why auto top-up is not active, in the customer's words. */
const REASONS: Record<string, string> = {
  failures: 'Stopped after failed payments in a row. Save a new card to turn it back on.',
  no_payment_method: 'No card on file: save a card to use auto top-up.',
  payment_method_delayed: 'Your payment method settles days later; auto top-up needs a card.',
  authentication_required: 'Your bank asks you to confirm the last top-up. Nothing more is charged until you do.',
};

const TOPUP_STATUS: Record<Topup['status'], string> = {
  pending: 'pending',
  charging: 'charging',
  processing: 'processing',
  succeeded: 'succeeded',
  failed: 'failed',
  action_required: 'needs you',
  canceled: 'canceled',
};

const FAILURES: Record<string, string> = {
  card_declined: 'card declined',
  generic_decline: 'card declined',
  insufficient_funds: 'insufficient funds',
  authentication_required: 'authentication required',
  monthly_cap_reached: 'monthly cap reached',
};
const failureText = (code: string | null) => (code ? (FAILURES[code] ?? code.replaceAll('_', ' ')) : '');

function StatusTag({ status }: { status: Topup['status'] }) {
  const tone = status === 'succeeded' ? 'good' : status === 'failed' ? 'bad' : status === 'action_required' ? 'warn' : 'neutral';
  return <span className={`tag ${tone}`}>{TOPUP_STATUS[status]}</span>;
}

const brand = (b: string | null) => (b ? b[0]!.toUpperCase() + b.slice(1) : 'Card');

/** Where the customer confirms a top-up: the simulated 3-D Secure page, or the action link the top-up carries. */
function confirmUrl(simulated: boolean, topup: { id: number; actionUrl: string | null }): string | null {
  return simulated ? `/checkout/simulated?topup=${topup.id}` : topup.actionUrl;
}

function SaveCardButton({ children }: { children: ReactNode }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  return (
    <>
      <button
        type="button"
        className="ck-button"
        disabled={busy}
        onClick={async () => {
          setBusy(true);
          setError(null);
          try {
            const response = await fetch('/api/checkout', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ setup: true }) });
            const answer = (await response.json()) as { url?: string; message?: string };
            if (!response.ok || !answer.url) throw new Error(answer.message ?? `/api/checkout answered ${response.status}`);
            window.location.assign(answer.url);
          } catch (e) {
            setError((e as Error).message);
            setBusy(false);
          }
        }}
      >
        {children}
      </button>
      {error ? <span className="ck-error small"> {error}</span> : null}
    </>
  );
}

export function AutoTopupSection({ simulated }: { simulated: boolean }) {
  const auto = useAutoTopup();
  const terms = useAutoTopupTerms();
  const topups = useTopups(10);
  const packs = usePacks();
  const client = useBrowserCreditkit();
  const { accountId, queryClient } = useCreditkit();
  const a = auto.data;
  const t = terms.data;

  // the form, filled from the settings once they arrive
  const [enabled, setEnabled] = useState(false);
  const [threshold, setThreshold] = useState('50');
  const [mode, setMode] = useState<'amount' | 'pack'>('amount');
  const [amount, setAmount] = useState('100');
  const [packId, setPackId] = useState('');
  const [saving, setSaving] = useState(false);
  const [message, setMessage] = useState<{ ok: boolean; text: string } | null>(null);
  const [filled, setFilled] = useState(false);
  useEffect(() => {
    if (!a || filled) return;
    setEnabled(a.enabled);
    if (a.threshold !== null) setThreshold(String(a.threshold));
    if (a.packId) {
      setMode('pack');
      setPackId(a.packId);
    } else if (a.amount !== null) setAmount(String(a.amount));
    setFilled(true);
  }, [a, filled]);

  // packs a top-up may buy: within the terms' amounts
  const eligible = (packs.data ?? []).filter((p) => !t || (p.credits >= t.minAmount && p.credits <= t.maxAmount));
  useEffect(() => {
    if (!packId && eligible[0]) setPackId(eligible[0].id);
  }, [packId, eligible]);

  const price = (credits: number) => (t ? money(Math.ceil(credits * t.unitPrice), t.currency) : '');

  async function save(event: FormEvent) {
    event.preventDefault();
    setSaving(true);
    setMessage(null);
    try {
      const saved = await client.setAutoTopup({
        unit: 'credits',
        enabled,
        threshold: Number(threshold),
        ...(enabled ? (mode === 'pack' ? { packId } : { amount: Number(amount) }) : {}),
      });
      queryClient.setQueryData(topupKeys.autoTopup(accountId), saved);
      await queryClient.invalidateQueries({ queryKey: creditkitKeys.account(accountId) });
      setMessage({ ok: true, text: saved.enabled ? 'Auto top-up is on.' : 'Auto top-up is off.' });
    } catch (e) {
      setMessage({ ok: false, text: (e as Error).message });
    } finally {
      setSaving(false);
    }
  }

  const status = a ? STATUS[a.status] : null;
  const last = a?.lastTopup ?? null;
  const card = a?.paymentMethod ?? null;

  return (
    <section className="card span3" aria-labelledby="auto-title">
      <h2 id="auto-title">Auto top-up</h2>
      {t ? (
        <p className="muted">
          Buy credits automatically with your saved card when your balance runs low: {t.minAmount} to {t.maxAmount} credits at a time, at{' '}
          {money(t.unitPrice * 100, t.currency)} per 100 credits
          {t.monthlyAmountCap !== null ? `, at most ${money(t.monthlyAmountCap, t.currency)} a month` : ''}
          {t.monthlyCountCap !== null ? ` and ${t.monthlyCountCap} top-ups` : ''}.
        </p>
      ) : null}
      <div className="auto-grid">
        <dl className="facts" aria-busy={auto.isPending}>
          <dt>Status</dt>
          <dd data-testid="auto-topup-status">
            {status ? <span className={`tag ${status.tone}`}>{status.label}</span> : <span className="muted">…</span>}
            {a?.status === 'active' && a.threshold !== null ? (
              <span className="muted">
                {' '}
                at or below {a.threshold} credits, {a.packId ? `the ${packs.data?.find((p) => p.id === a.packId)?.name ?? a.packId}` : `+${a.amount ?? a.target} credits`}
              </span>
            ) : null}
            {a?.statusReason ? <span className="reason">{REASONS[a.statusReason] ?? a.statusReason.replaceAll('_', ' ')}</span> : null}
          </dd>
          <dt>Card on file</dt>
          <dd data-testid="card-on-file">
            {card ? (
              <>
                <span>
                  {brand(card.brand)} •••• {card.last4}
                  {card.expMonth ? <span className="muted"> · expires {String(card.expMonth).padStart(2, '0')}/{card.expYear}</span> : null}
                </span>{' '}
                <SaveCardButton>Replace card</SaveCardButton>
              </>
            ) : a ? (
              <>
                <span className="muted">No card saved. </span>
                <SaveCardButton>Save a card</SaveCardButton>
              </>
            ) : (
              <span className="muted">…</span>
            )}
          </dd>
          <dt>This month</dt>
          <dd data-testid="auto-topup-month">
            {a ? (
              <>
                {a.monthCount} top-up{a.monthCount === 1 ? '' : 's'}
                {a.monthlyCountCap !== null ? ` of ${a.monthlyCountCap}` : ''} · {money(a.monthAmount, a.currency ?? 'usd')}
                {a.monthlyAmountCap !== null ? ` of ${money(a.monthlyAmountCap, a.currency ?? 'usd')}` : ''}
              </>
            ) : (
              '…'
            )}
          </dd>
          {a && a.failures > 0 ? (
            <>
              <dt>Failures</dt>
              <dd className="ck-error" data-testid="auto-topup-failures">
                {a.failures} failed payment{a.failures === 1 ? '' : 's'} in a row
                {a.status === 'active' ? ' (3 in a row stop auto top-up)' : ''}
              </dd>
            </>
          ) : null}
          <dt>Last top-up</dt>
          <dd data-testid="last-topup">
            {last ? (
              <>
                {last.amount} credits for {money(last.chargeAmount, last.currency)} <StatusTag status={last.status} />
                {last.failureCode ? <span className="ck-error"> {failureText(last.failureCode)}</span> : null}
                <span className="muted"> · {when(last.createdAt)}</span>
                {last.status === 'pending' && a && a.failures > 0 ? <span className="muted">· tried again after the cooldown</span> : null}
                {last.status === 'action_required' && confirmUrl(simulated, last) ? (
                  <>
                    {' '}
                    <a className="ck-button primary small-button" href={confirmUrl(simulated, last)!}>
                      Confirm payment
                    </a>
                  </>
                ) : null}
              </>
            ) : (
              <span className="muted">none yet</span>
            )}
          </dd>
        </dl>

        <form className="auto-form" onSubmit={save} aria-label="Auto top-up settings">
          <label className="check">
            <input type="checkbox" checked={enabled} onChange={(e) => setEnabled(e.target.checked)} /> Top up automatically
          </label>
          <label>
            When my balance falls to
            <span className="with-unit">
              <input type="number" min={t?.minThreshold ?? 0} step={1} value={threshold} onChange={(e) => setThreshold(e.target.value)} required />
              credits
            </span>
          </label>
          <fieldset>
            <legend>Buy</legend>
            <label className="radio">
              <input type="radio" name="topup-mode" checked={mode === 'amount'} onChange={() => setMode('amount')} />
              <span className="with-unit">
                <input
                  type="number"
                  aria-label="Credits per top-up"
                  min={t?.minAmount}
                  max={t?.maxAmount}
                  step={1}
                  value={amount}
                  onChange={(e) => {
                    setAmount(e.target.value);
                    setMode('amount');
                  }}
                />
                credits {Number(amount) > 0 ? <span className="muted">({price(Number(amount))})</span> : null}
              </span>
            </label>
            {eligible.length ? (
              <label className="radio">
                <input type="radio" name="topup-mode" checked={mode === 'pack'} onChange={() => setMode('pack')} />
                <select
                  aria-label="Pack per top-up"
                  value={packId}
                  onChange={(e) => {
                    setPackId(e.target.value);
                    setMode('pack');
                  }}
                >
                  {eligible.map((p) => (
                    <option key={p.id} value={p.id}>
                      {p.name}: {p.credits} credits ({money(p.priceAmount, p.currency)})
                    </option>
                  ))}
                </select>
              </label>
            ) : null}
          </fieldset>
          <div className="ck-row">
            <button type="submit" className="ck-button primary" disabled={saving || !a}>
              Save auto top-up
            </button>
          </div>
          {message ? (
            <p role={message.ok ? 'status' : 'alert'} className={message.ok ? 'ok small' : 'ck-error small'}>
              {message.text}
            </p>
          ) : null}
        </form>
      </div>

      <h3 id="topups-title">Recent top-ups</h3>
      {topups.data && topups.data.length === 0 ? (
        <p className="muted">No top-ups yet.</p>
      ) : (
        <table className="ck-table" aria-labelledby="topups-title" data-testid="my-topups">
          <thead>
            <tr>
              <th scope="col">Date</th>
              <th scope="col" className="num">Credits</th>
              <th scope="col" className="num">Charged</th>
              <th scope="col">Status</th>
              <th scope="col">Details</th>
            </tr>
          </thead>
          <tbody>
            {(topups.data ?? []).map((p) => (
              <tr key={p.id}>
                <td>{when(p.createdAt)}</td>
                <td className="num">{p.amount}</td>
                <td className="num">{money(p.chargeAmount, p.currency)}</td>
                <td>
                  <StatusTag status={p.status} />
                </td>
                <td>
                  {p.status === 'action_required' && confirmUrl(simulated, p) ? (
                    <a href={confirmUrl(simulated, p)!}>Confirm payment</a>
                  ) : p.failureCode ? (
                    <span className="ck-error">{failureText(p.failureCode)}</span>
                  ) : topupInFlight(p.status) ? (
                    <span className="muted">{p.status === 'pending' && p.attempt === 0 && a && a.failures > 0 ? 'retry, after the cooldown' : 'on its way'}</span>
                  ) : p.paymentIntent ? (
                    <code>{p.paymentIntent}</code>
                  ) : null}
                </td>
              </tr>
            ))}
            {topups.data ? null : (
              <tr>
                <td colSpan={5} className="muted">
                  Loading…
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** The customer's low-balance threshold: theirs, or the app's default; the banner and balance.low use it. */
export function BalanceAlertSection() {
  const alert = useBalanceAlert();
  const client = useBrowserCreditkit();
  const { accountId, queryClient } = useCreditkit();
  const [value, setValue] = useState('');
  const [message, setMessage] = useState<{ ok: boolean; text: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const a = alert.data;
  useEffect(() => {
    if (a && value === '') setValue(a.threshold === null ? '' : String(a.threshold));
  }, [a, value]);

  async function set(threshold: number | null) {
    setBusy(true);
    setMessage(null);
    try {
      const saved = await client.setBalanceAlert({ unit: 'credits', threshold });
      queryClient.setQueryData(topupKeys.balanceAlert(accountId), saved);
      setValue(saved.threshold === null ? '' : String(saved.threshold));
      setMessage({ ok: true, text: saved.threshold === null ? 'No low-balance warning.' : `You are warned at ${saved.threshold} credits or fewer.` });
    } catch (e) {
      setMessage({ ok: false, text: (e as Error).message });
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="card span3 alert-card" aria-labelledby="alert-title">
      <h2 id="alert-title">Low-balance warning</h2>
      <form
        className="inline-form"
        aria-label="Low-balance warning"
        onSubmit={(e) => {
          e.preventDefault();
          void set(Number(value));
        }}
      >
        <label>
          Warn me at or below{' '}
          <input type="number" min={0} step={1} value={value} onChange={(e) => setValue(e.target.value)} required aria-label="Warning threshold" /> credits
        </label>
        <button type="submit" className="ck-button" disabled={busy || !a}>
          Save
        </button>
        {a?.source === 'account' ? (
          <button type="button" className="ck-link" disabled={busy} onClick={() => void set(null)}>
            Use the app’s default
          </button>
        ) : null}
        <span className="muted small" data-testid="alert-source">
          {a ? (a.source === 'account' ? 'your own threshold' : a.source === 'unit' ? 'the app’s default' : 'no threshold') : ''}
          {a ? ` · now ${a.state === 'ok' ? 'above it' : a.state}` : ''}
        </span>
        {message ? (
          <span role={message.ok ? 'status' : 'alert'} className={message.ok ? 'ok small' : 'ck-error small'}>
            {message.text}
          </span>
        ) : null}
      </form>
      <p className="muted small">
        The banner on the studio page and the <code>balance.low</code> notification use it.
      </p>
    </section>
  );
}
