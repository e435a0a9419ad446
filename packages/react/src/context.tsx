'use client';
// The provider: which client to read through, whose account it is, and how to reach Stripe.
// Components and hooks read all of it from here, so none of them takes a client or an account.
import { createContext, useContext, useMemo, useState, type ReactNode } from 'react';
import { QueryClient, QueryClientContext, QueryClientProvider } from '@tanstack/react-query';
import { CreditkitError, type CreditkitClient } from '@creditkit/core';

/** What the hooks call: the browser client's read methods (a `CreditkitClient` has them all). */
export type CreditkitReadClient = Pick<
  CreditkitClient,
  'balance' | 'history' | 'plan' | 'plans' | 'packs' | 'hasFeature' | 'check' | 'units'
> &
  // balance alerts and auto top-up (0.3.0): the hooks that read them need them
  Partial<Pick<CreditkitClient, 'balanceAlert' | 'autoTopup' | 'topups'>>;

/** What to buy: a credit pack (one-off payment) or a plan (subscription). */
export type CheckoutTarget = { packId: string; planId?: undefined } | { planId: string; packId?: undefined };

export interface CreditkitProviderProps {
  /** A browser client with the user's session: `createCreditkitClient({ supabase })`. */
  client: CreditkitReadClient;
  /** The account shown (by default the user's id). Part of every query key; null/undefined = signed out, nothing is fetched. */
  accountId: string | null | undefined;
  /** The QueryClient to cache in. Default: the one of a surrounding QueryClientProvider, else one made here. */
  queryClient?: QueryClient;
  /** Creates a Stripe Checkout session on your server and returns its URL (e.g. a POST to your route calling @creditkit/stripe). */
  checkout?: (target: CheckoutTarget) => Promise<string>;
  /** Creates a Stripe customer-portal session on your server and returns its URL. */
  portal?: () => Promise<string>;
  /** Goes to a URL returned by checkout/portal. Default: `window.location.assign(url)`. */
  navigate?: (url: string) => void | Promise<void>;
  /** Locale(s) for numbers, prices and dates (Intl). Default: the runtime's. */
  locale?: string | string[];
  children?: ReactNode;
}

export interface CreditkitContextValue {
  client: CreditkitReadClient;
  /** The account, or null when signed out. */
  accountId: string | null;
  queryClient: QueryClient;
  checkout: ((target: CheckoutTarget) => Promise<string>) | undefined;
  portal: (() => Promise<string>) | undefined;
  navigate: (url: string) => void | Promise<void>;
  locale: string | string[] | undefined;
}

const CreditkitContext = createContext<CreditkitContextValue | null>(null);

const assignLocation = (url: string) => window.location.assign(url);

/** Errors not worth retrying: the answer will be the same (refused, unknown, invalid). */
const TRANSIENT: ReadonlySet<string> = new Set(['unavailable', 'concurrency_conflict']);

/** The QueryClient the provider makes when it is given none and finds none around it. */
export function createCreditkitQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        // a refused or invalid call fails the same way again; only an unreachable database is retried
        retry: (failures, error) => failures < 2 && (!(error instanceof CreditkitError) || TRANSIENT.has(error.code)),
      },
    },
  });
}

export function CreditkitProvider(props: CreditkitProviderProps): ReactNode {
  const surrounding = useContext(QueryClientContext);
  // made once even when unused, so a provider that loses its queryClient prop keeps one cache
  const [own] = useState(createCreditkitQueryClient);
  const queryClient = props.queryClient ?? surrounding ?? own;
  const { client, accountId, checkout, portal, navigate, locale } = props;
  const value = useMemo<CreditkitContextValue>(
    () => ({
      client,
      accountId: accountId ?? null,
      queryClient,
      checkout,
      portal,
      navigate: navigate ?? assignLocation,
      locale,
    }),
    [client, accountId, queryClient, checkout, portal, navigate, locale],
  );
  const inner = <CreditkitContext.Provider value={value}>{props.children}</CreditkitContext.Provider>;
  // Inside the app's own QueryClientProvider with the same client: no second provider needed.
  return queryClient === surrounding ? inner : <QueryClientProvider client={queryClient}>{inner}</QueryClientProvider>;
}

/** The provider's client, account, QueryClient, checkout, portal and locale. Throws outside a CreditkitProvider. */
export function useCreditkit(): CreditkitContextValue {
  const value = useContext(CreditkitContext);
  if (!value) throw new Error('useCreditkit: wrap your components in <CreditkitProvider client={…} accountId={…}>');
  return value;
}
