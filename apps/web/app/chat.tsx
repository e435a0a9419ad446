'use client';
// The chat box: the app's second metered feature, beside the image studio. POST /api/chat answers
// 200 with the balance that paid (messages, or credits as the overage once the day's messages are
// gone) or 402 naming messages when neither can pay; the prompt then says what the 402 said and
// offers credit packs (they keep the chat going at the overage price) and Pro's larger allowance.
// useCreditsMutation refetches both balances when a message settles.
import { useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import {
  BuyCreditsButton,
  CreditsDisplay,
  useBalance,
  useCreditsMutation,
  usePacks,
  usePlan,
  usePlans,
  type PaymentRequiredInfo,
} from '@creditkit/react';
import { money } from '@/lib/format.ts';
import { useBrowserCreditkit } from './providers.tsx';
import { UnitAllowance } from './unit-allowance.tsx';

interface Exchange {
  id: number;
  message: string;
  reply: string;
  /** The balance that paid: 'messages', or 'credits' as the overage. */
  unit: string;
  charged: number;
}

type Outcome = { kind: 'reply'; exchange: Omit<Exchange, 'id'> } | { kind: 'refused'; info: PaymentRequiredInfo };

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

export function Chat() {
  const client = useBrowserCreditkit();
  const plan = usePlan();
  const packs = usePacks();
  const plans = usePlans();
  const credits = useBalance();
  const [draft, setDraft] = useState('What can you do?');
  const [exchanges, setExchanges] = useState<Exchange[]>([]);
  const [refused, setRefused] = useState<PaymentRequiredInfo | null>(null);
  const quote = useQuery({ queryKey: ['quote', 'chat'], queryFn: () => client.quote({ event: 'chat' }) });
  const limit = plan.data?.limits?.messages;
  const overage = quote.data?.overageAmount;
  // packs sold in credits: what pays the overage
  const creditPacks = packs.data?.filter((p) => p.unit === 'credits') ?? [];
  // paid plans with more messages than the account's plan
  const upgrades =
    plans.data?.filter((p) => p.stripePriceId && p.id !== plan.data?.planId && (p.limits.messages?.allowance ?? 0) > (limit?.allowance ?? 0)) ?? [];

  const send = useCreditsMutation<Outcome, Error, string>({
    mutationFn: async (message) => {
      const response = await fetch('/api/chat', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': crypto.randomUUID() },
        body: JSON.stringify({ message }),
      });
      const body = await response.json();
      if (response.status === 402) return { kind: 'refused', info: body };
      if (!response.ok) throw new Error(body.message ?? `chat answered ${response.status}`);
      return { kind: 'reply', exchange: body };
    },
    onSuccess: (outcome) => {
      setRefused(outcome.kind === 'refused' ? outcome.info : null);
      if (outcome.kind === 'reply') {
        setExchanges((list) => [...list, { ...outcome.exchange, id: (list.at(-1)?.id ?? 0) + 1 }].slice(-3));
        setDraft('');
      }
    },
  });

  return (
    <div className="grid">
      <section className="card span2" aria-labelledby="chat-title">
        <h2 id="chat-title">Chat</h2>
        <p className="muted">
          Each message uses one of your {limit ? `${limit.allowance} messages a ${limit.period}` : 'messages'}; when they are gone it costs{' '}
          {overage ? plural(overage, 'credit') : 'credits'} instead.
        </p>
        {exchanges.length > 0 ? (
          <ol className="chat" aria-label="Conversation">
            {exchanges.map((x) => (
              <li key={x.id}>
                <p className="you">
                  <span className="sr-only">You: </span>
                  {x.message}
                </p>
                <p className="bot">
                  <span className="sr-only">Assistant: </span>
                  {x.reply}
                </p>
                <p className="muted small paid">
                  {x.unit === 'credits' ? `−${plural(x.charged, 'credit')} (overage: no messages left)` : `−${plural(x.charged, 'message')}`}
                </p>
              </li>
            ))}
          </ol>
        ) : null}
        <form
          className="chat-form"
          onSubmit={(e) => {
            e.preventDefault();
            send.mutate(draft);
          }}
        >
          <label htmlFor="chat-message" className="sr-only">
            Message
          </label>
          <input id="chat-message" value={draft} onChange={(e) => setDraft(e.target.value)} maxLength={500} placeholder="Say something" />
          <button type="submit" className="ck-button primary" disabled={send.isPending}>
            {send.isPending ? 'Sending…' : 'Send'}
          </button>
        </form>
        {send.error ? (
          <p className="ck-error" role="alert">
            {send.error.message}
          </p>
        ) : null}

        {refused ? (
          // not @creditkit/react's Paywall: for a unit it offers every plan with a limit of it (the
          // free plan too) and no credits, while here credits are what keep the chat going
          <section className="paywall" aria-labelledby="chat-paywall-title">
            <h3 id="chat-paywall-title">Out of messages</h3>
            <p>
              This needs {plural(refused.required, 'message')}; you have {refused.balance}.
              {overage ? ` After your messages each one costs ${plural(overage, 'credit')}, and you have ${plural(credits.data?.balance ?? 0, 'credit')}.` : ''}
            </p>
            <p className="muted small">Your message was refused with HTTP 402 before the model was called.</p>
            <div className="ck-row">
              {creditPacks.map((p) => (
                <BuyCreditsButton key={p.id} packId={p.id} classNames={{ button: 'ck-button' }}>
                  {`Buy ${p.name} · ${p.credits} credits · ${money(p.priceAmount, p.currency)}`}
                </BuyCreditsButton>
              ))}
              {upgrades.map((p) => (
                <BuyCreditsButton key={p.id} planId={p.id} classNames={{ button: 'ck-button primary' }}>
                  {`Subscribe to ${p.name} · ${p.limits.messages!.allowance} messages a ${p.limits.messages!.period} · ${money(p.priceAmount, p.currency)}/${p.period}`}
                </BuyCreditsButton>
              ))}
            </div>
          </section>
        ) : null}
      </section>

      <aside className="card" aria-labelledby="messages-title">
        <h2 id="messages-title">Your messages</h2>
        <CreditsDisplay unit="messages" label="Messages left" showExpiry={false} />
        <UnitAllowance unit="messages" />
      </aside>
    </div>
  );
}
