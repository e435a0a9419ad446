'use client';
// A stand-in for @creditkit/react (packages/react, being built on another branch) with the same
// names and props, so the pages import from here now and from '@creditkit/react' once it lands:
// swapping is a change of import path and deleting this file. Kept deliberately plain.
import {
  QueryClient,
  QueryClientProvider,
  useMutation,
  useQuery,
  useQueryClient,
  type UseMutationOptions,
} from '@tanstack/react-query';
import type { CreditkitClient } from '@creditkit/core';
import { createContext, useContext, useState, type ReactNode } from 'react';
import { money } from '../format.ts';

type CheckoutTarget = { packId: string; planId?: undefined } | { planId: string; packId?: undefined };

interface CreditkitContextValue {
  client: CreditkitClient;
  accountId: string;
  checkout?: (target: CheckoutTarget) => Promise<string>;
  portal?: () => Promise<string>;
}

const Context = createContext<CreditkitContextValue | null>(null);

export const creditkitKeys = {
  all: ['creditkit'] as const,
  account: (accountId: string) => ['creditkit', accountId] as const,
  balance: (accountId: string) => ['creditkit', accountId, 'balance'] as const,
  history: (accountId: string, pageSize: number) => ['creditkit', accountId, 'history', pageSize] as const,
  plan: (accountId: string) => ['creditkit', accountId, 'plan'] as const,
  feature: (accountId: string, feature: string) => ['creditkit', accountId, 'feature', feature] as const,
  plans: () => ['creditkit', 'catalogue', 'plans'] as const,
  packs: () => ['creditkit', 'catalogue', 'packs'] as const,
};

export function CreditkitProvider(props: CreditkitContextValue & { queryClient?: QueryClient; children: ReactNode }) {
  const [fallback] = useState(() => new QueryClient({ defaultOptions: { queries: { staleTime: 5_000, retry: 1 } } }));
  const { queryClient, children, ...value } = props;
  return (
    <QueryClientProvider client={queryClient ?? fallback}>
      <Context.Provider value={value}>{children}</Context.Provider>
    </QueryClientProvider>
  );
}

export function useCreditkit(): CreditkitContextValue {
  const value = useContext(Context);
  if (!value) throw new Error('useCreditkit: wrap the app in <CreditkitProvider>');
  return value;
}

export function useBalance() {
  const { client, accountId } = useCreditkit();
  return useQuery({ queryKey: creditkitKeys.balance(accountId), queryFn: () => client.balance() });
}

export function useHistory({ pageSize = 20 }: { pageSize?: number } = {}) {
  const { client, accountId } = useCreditkit();
  return useQuery({ queryKey: creditkitKeys.history(accountId, pageSize), queryFn: () => client.history({ limit: pageSize }) });
}

export function usePlan() {
  const { client, accountId } = useCreditkit();
  return useQuery({ queryKey: creditkitKeys.plan(accountId), queryFn: () => client.plan() });
}

export function usePlans() {
  const { client } = useCreditkit();
  return useQuery({ queryKey: creditkitKeys.plans(), queryFn: () => client.plans() });
}

export function usePacks() {
  const { client } = useCreditkit();
  return useQuery({ queryKey: creditkitKeys.packs(), queryFn: () => client.packs() });
}

export function useFeature(feature: string) {
  const { client, accountId } = useCreditkit();
  return useQuery({ queryKey: creditkitKeys.feature(accountId, feature), queryFn: () => client.hasFeature({ feature }) });
}

/** A mutation that spends or grants: the account's balance, history and plan are refetched when it settles. */
export function useCreditsMutation<TData, TError = Error, TVariables = void>(options: UseMutationOptions<TData, TError, TVariables>) {
  const { accountId } = useCreditkit();
  const queryClient = useQueryClient();
  return useMutation<TData, TError, TVariables>({
    ...options,
    onSettled: async (...args) => {
      await queryClient.invalidateQueries({ queryKey: creditkitKeys.account(accountId) });
      await options.onSettled?.(...args);
    },
  });
}

export interface Price {
  amount: number;
  unit: string;
  unitPlural?: string;
}

/** Same DOM hooks as @creditkit/react's: a group labelled "Credits", the number in data-creditkit="credits-display-value". */
export function CreditsDisplay({ price }: { price?: Price }) {
  const { data, isPending, error } = useBalance();
  const units = price && data ? Math.floor(data.balance / price.amount) : null;
  return (
    <span className="ck-credits" role="group" aria-label="Credits" aria-busy={isPending} data-creditkit="credits-display">
      <strong data-creditkit="credits-display-value">{data ? data.balance.toLocaleString('en-US') : error ? '—' : '…'}</strong> credits
      {price && units !== null ? (
        <span className="ck-muted" data-creditkit="credits-display-units">
          {' '}
          · {units} {units === 1 ? price.unit : (price.unitPlural ?? `${price.unit}s`)} left
        </span>
      ) : null}
    </span>
  );
}

/** Children when the account has the feature (or the credits); otherwise a buy prompt or `fallback`. */
export function Paywall({ feature, credits, fallback, children }: { feature?: string; credits?: number; fallback?: ReactNode; children?: ReactNode }) {
  const balance = useBalance();
  const { client, accountId } = useCreditkit();
  const featureQuery = useQuery({
    queryKey: creditkitKeys.feature(accountId, feature ?? ''),
    queryFn: () => client.hasFeature({ feature: feature! }),
    enabled: feature !== undefined,
  });
  const packs = usePacks();
  if (balance.isPending || (feature !== undefined && featureQuery.isPending)) return null;
  const allowed = (feature === undefined || featureQuery.data === true) && (credits === undefined || (balance.data?.balance ?? 0) >= credits);
  if (allowed) return <>{children}</>;
  if (fallback !== undefined) return <>{fallback}</>;
  return (
    <div className="ck-paywall" role="region" aria-label="Paywall">
      <p>
        {feature !== undefined && featureQuery.data !== true
          ? `This needs a plan with ${feature}.`
          : `This needs ${credits} credits; you have ${balance.data?.balance ?? 0}.`}
      </p>
      <div className="ck-row">
        {packs.data?.map((p) => (
          <BuyCreditsButton key={p.id} packId={p.id} />
        ))}
      </div>
    </div>
  );
}

export function BuyCreditsButton({ packId, children }: { packId: string; children?: ReactNode }) {
  const { checkout } = useCreditkit();
  const packs = usePacks();
  const [busy, setBusy] = useState(false);
  const pack = packs.data?.find((p) => p.id === packId);
  const label = children ?? (pack ? `Buy ${pack.credits} credits · ${money(pack.priceAmount, pack.currency)}` : 'Buy credits');
  return (
    <button
      type="button"
      className="ck-button"
      disabled={!checkout || busy}
      onClick={async () => {
        setBusy(true);
        try {
          window.location.assign(await checkout!({ packId }));
        } finally {
          setBusy(false);
        }
      }}
    >
      {label}
    </button>
  );
}

export function ManageSubscriptionLink({ children }: { children?: ReactNode }) {
  const { portal } = useCreditkit();
  return (
    <button type="button" className="ck-link" disabled={!portal} onClick={async () => window.location.assign(await portal!())}>
      {children ?? 'Manage subscription'}
    </button>
  );
}

export function UsageHistory({ pageSize = 10 }: { pageSize?: number }) {
  const { data, isPending, error } = useHistory({ pageSize });
  if (isPending) return <p aria-busy="true">Loading history…</p>;
  if (error) return <p className="ck-error">History unavailable.</p>;
  if (data.entries.length === 0) return <p className="ck-muted">No activity yet.</p>;
  return (
    <table className="ck-table">
      <caption className="sr-only">Credit history, newest first</caption>
      <thead>
        <tr>
          <th scope="col">When</th>
          <th scope="col">What</th>
          <th scope="col" className="num">Credits</th>
          <th scope="col" className="num">Balance</th>
        </tr>
      </thead>
      <tbody>
        {data.entries.map((e) => (
          <tr key={e.id}>
            <td>{new Date(e.createdAt).toLocaleString('en-GB', { dateStyle: 'medium', timeStyle: 'short', timeZone: 'UTC' })}</td>
            <td>{e.event ?? e.kind}</td>
            <td className={`num ${e.amount < 0 ? 'neg' : 'pos'}`}>{e.amount > 0 ? `+${e.amount}` : e.amount}</td>
            <td className="num">{e.balanceAfter}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function LowBalanceBanner({ threshold = 10, children }: { threshold?: number; children?: ReactNode }) {
  const { data } = useBalance();
  if (!data || data.balance >= threshold) return null;
  return (
    <div className="ck-banner" role="status">
      {children ?? `Low balance: ${data.balance} credits left.`}
    </div>
  );
}
