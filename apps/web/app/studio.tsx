'use client';
// The generate form. POST /api/generate answers 200 (charged, with the new balance), 402 (out of
// credits: the paywall) or 403 (HD needs Pro). useCreditsMutation refetches the balance and
// history when the call settles; the 200's balance is shown at once.
import { useQuery, useQueryClient } from '@tanstack/react-query';
import type { AccountBalance } from '@creditkit/core';
import { useState } from 'react';
import {
  BuyCreditsButton,
  CreditsDisplay,
  LowBalanceBanner,
  Paywall,
  creditkitKeys,
  useCreditkit,
  useCreditsMutation,
  useFeature,
  usePlans,
} from '@creditkit/react';
import { money } from '@/lib/format.ts';
import { useAutoTopup, useBalanceAlert } from '@/lib/client/auto-topup.ts';
import { useBrowserCreditkit } from './providers.tsx';

type Quality = 'standard' | 'hd';

/** The paywall's offers look like the app's other buttons; the box around it is the app's `.paywall`. */
const PAYWALL_CLASSES = { list: 'ck-row', button: 'ck-button' };
type Outcome =
  | { kind: 'image'; image: string; prompt: string; quality: Quality; charged: number; balance: number }
  | { kind: 'blocked'; balance: number; required: number }
  | { kind: 'feature'; feature: string };

export function Studio({ firstName }: { firstName: string }) {
  const { accountId } = useCreditkit();
  const client = useBrowserCreditkit();
  const queryClient = useQueryClient();
  const [prompt, setPrompt] = useState('a lighthouse at dusk, oil on canvas');
  const [quality, setQuality] = useState<Quality>('standard');
  const [images, setImages] = useState<Extract<Outcome, { kind: 'image' }>[]>([]);
  const [blocked, setBlocked] = useState<Extract<Outcome, { kind: 'blocked' }> | null>(null);
  const [needsPro, setNeedsPro] = useState(false);
  const hd = useFeature('hd_upscale');
  const pro = usePlans().data?.find((p) => p.id === 'pro');
  const lowAlert = useBalanceAlert();
  const quote = useQuery({
    queryKey: ['quote', 'image_gen', quality],
    queryFn: () => client.quote({ event: 'image_gen', ...(quality === 'hd' ? { dimensions: { quality: 'hd' } } : {}) }),
  });

  const generate = useCreditsMutation<Outcome, Error, void>({
    mutationFn: async () => {
      const response = await fetch('/api/generate', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': crypto.randomUUID() },
        body: JSON.stringify({ prompt, quality }),
      });
      const body = await response.json();
      if (response.status === 402) return { kind: 'blocked', balance: body.balance, required: body.required };
      if (response.status === 403 && body.error === 'feature_required') return { kind: 'feature', feature: body.feature };
      if (!response.ok) throw new Error(body.message ?? `generate answered ${response.status}`);
      return { kind: 'image', ...body };
    },
    onSuccess: (outcome) => {
      setBlocked(outcome.kind === 'blocked' ? outcome : null);
      setNeedsPro(outcome.kind === 'feature');
      if (outcome.kind === 'image') {
        setImages((list) => [outcome, ...list].slice(0, 6));
        // the charge's balance, on screen now; the refetch on settle confirms it
        queryClient.setQueryData<AccountBalance>(creditkitKeys.balance(accountId), (b) => (b ? { ...b, balance: outcome.balance } : b));
      }
    },
  });

  return (
    <div className="grid">
      <section className="card span2" aria-labelledby="gen-title">
        <h1 id="gen-title">Image studio</h1>
        {/* two fixed lines, so the price arriving doesn't rewrap the paragraph and push the form down */}
        <p className="muted">
          Hi {firstName}. Each image is metered before the model runs:
          <br />
          {quote.data ? `${quote.data.amount} credits` : '… credits'} for {quality === 'hd' ? 'HD' : 'standard'} quality.
        </p>
        <form
          className="gen"
          onSubmit={(e) => {
            e.preventDefault();
            generate.mutate();
          }}
        >
          <label htmlFor="prompt">Prompt</label>
          <input id="prompt" value={prompt} onChange={(e) => setPrompt(e.target.value)} maxLength={200} />
          <fieldset>
            <legend>Quality</legend>
            <label>
              <input type="radio" name="quality" checked={quality === 'standard'} onChange={() => setQuality('standard')} /> Standard
            </label>
            <label>
              <input type="radio" name="quality" checked={quality === 'hd'} onChange={() => setQuality('hd')} /> HD{' '}
              {!hd.loading && !hd.allowed ? <span className="tag">Pro</span> : null}
            </label>
          </fieldset>
          <button type="submit" className="ck-button primary" disabled={generate.isPending}>
            {generate.isPending ? 'Generating…' : 'Generate'}
          </button>
        </form>
        {generate.error ? <p className="ck-error" role="alert">{generate.error.message}</p> : null}

        {blocked ? (
          <div className="paywall">
            <Paywall credits={blocked.required} title="Out of credits" classNames={PAYWALL_CLASSES}>
              <p>You have credits again: generate away.</p>
            </Paywall>
            <p className="muted small">Your last image was refused with HTTP 402 before the model was called.</p>
            {hd.allowed ? null : (
              <p className="upsell">
                <span>
                  Or go Pro: {pro ? `${pro.allowance} credits a ${pro.period}` : 'a monthly allowance'} and HD.
                </span>{' '}
                <BuyCreditsButton planId="pro" classNames={{ button: 'ck-button primary' }}>
                  {pro ? `Subscribe to ${pro.name} · ${money(pro.priceAmount, pro.currency)}/${pro.period}` : 'Subscribe to Pro'}
                </BuyCreditsButton>
              </p>
            )}
          </div>
        ) : null}

        {needsPro ? (
          <div className="paywall">
            <Paywall feature="hd_upscale" featureLabel="HD quality" title="HD is a Pro feature" classNames={PAYWALL_CLASSES}>
              <p>You are on Pro now: HD is unlocked.</p>
            </Paywall>
          </div>
        ) : null}

        {images.length > 0 ? (
          <ul className="gallery" aria-label="Generated images">
            {images.map((img, i) => (
              <li key={`${images.length - i}`}>
                {/* eslint-disable-next-line @next/next/no-img-element */}
                <img src={img.image} alt={`Generated: ${img.prompt}`} width={160} height={160} />
                <span className="muted">
                  {img.quality === 'hd' ? 'HD' : 'standard'} · −{img.charged} credits
                </span>
              </li>
            ))}
          </ul>
        ) : null}
      </section>

      <aside className="card" aria-labelledby="bal-title">
        <h2 id="bal-title">Your credits</h2>
        <CreditsDisplay
          label="Balance"
          price={{ amount: quote.data?.amount ?? 2, unit: `${quality === 'hd' ? 'HD' : 'standard'} image` }}
        />
        {/* the customer's low-balance threshold (their own or the app's default), as balance.low uses it */}
        <LowBalanceBanner threshold={lowAlert.data?.threshold ?? Number.NaN}>
          {(balance) =>
            balance === 0
              ? 'You are out of credits: buy a pack or subscribe to Pro.'
              : 'Running low: buy a pack or subscribe to Pro.'}
        </LowBalanceBanner>
        <AutoTopupLine />
        <p className="muted">
          <a href="/billing">Billing</a>: buckets, history, packs, plans and auto top-up.
        </p>
      </aside>
    </div>
  );
}

/** One line on auto top-up under the balance; its hook refetches the balance when a top-up lands. */
function AutoTopupLine() {
  const auto = useAutoTopup();
  const a = auto.data;
  if (!a || a.status === 'off') return null;
  const last = a.lastTopup;
  return (
    <p className="small" data-testid="studio-auto-topup">
      {a.status === 'active' ? (
        <>
          Auto top-up on: +{a.amount ?? a.target ?? 'a pack of'} credits at or below {a.threshold}.
        </>
      ) : (
        <>
          Auto top-up <strong>{a.status === 'action_required' ? 'needs you' : 'stopped'}</strong>: see <a href="/billing">billing</a>.
        </>
      )}
      {last ? (
        <span className="muted">
          {' '}
          Last: {last.amount} credits, {last.status.replace('_', ' ')}.
        </span>
      ) : null}
    </p>
  );
}
