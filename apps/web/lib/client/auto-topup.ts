'use client';
// Hooks for auto top-up and the low-balance threshold, over the browser client's caller-bound
// methods (autoTopup, topups, balanceAlert, autoTopupTerms). Their keys sit under the account's
// prefix (creditkitKeys.account), so useCreditsMutation's refetch after a metered request
// refreshes them too. While a top-up is on its way (pending, charging, processing) the auto
// top-up is polled; when its last top-up changes state, everything of the account is refetched,
// so the balance and the history show the credits as they land.
import { useQuery, type UseQueryResult } from '@tanstack/react-query';
import type { AutoTopup, AutoTopupTerms, BalanceAlert, Topup } from '@creditkit/core';
import { creditkitKeys, useCreditkit } from '@creditkit/react';
import { useEffect, useRef } from 'react';
import { useBrowserCreditkit } from '@/app/providers.tsx';

export const topupKeys = {
  autoTopup: (accountId: string | null) => [...creditkitKeys.account(accountId), 'auto-topup'] as const,
  topups: (accountId: string | null) => [...creditkitKeys.account(accountId), 'topups'] as const,
  balanceAlert: (accountId: string | null) => [...creditkitKeys.account(accountId), 'balance-alert'] as const,
  terms: () => ['creditkit', 'auto-topup-terms'] as const,
};

const IN_FLIGHT = new Set(['pending', 'charging', 'processing']);
export const topupInFlight = (status: string | null | undefined): boolean => IN_FLIGHT.has(status ?? '');

/** The signed-in user's auto top-up of credits; polled while its last top-up is on its way. */
export function useAutoTopup(): UseQueryResult<AutoTopup, Error> {
  const { accountId, queryClient } = useCreditkit();
  const client = useBrowserCreditkit();
  const result = useQuery(
    {
      queryKey: topupKeys.autoTopup(accountId),
      queryFn: () => client.autoTopup({ unit: 'credits' }),
      enabled: accountId !== null,
      refetchInterval: (query) => (topupInFlight(query.state.data?.lastTopup?.status) ? 1_000 : false),
    },
    queryClient,
  );
  // the last top-up moved on (landed, failed, needs the customer): refetch the balance and the rest
  const last = result.data?.lastTopup;
  const seen = useRef<string | null>(null);
  const state = last ? `${last.id}:${last.status}` : 'none';
  useEffect(() => {
    if (!result.data) return;
    if (seen.current !== null && seen.current !== state) {
      void queryClient.invalidateQueries({
        queryKey: creditkitKeys.account(accountId),
        predicate: (q) => q.queryKey[2] !== 'auto-topup',
      });
    }
    seen.current = state;
  }, [state, result.data, accountId, queryClient]);
  return result;
}

/** The signed-in user's recent top-ups of credits, newest first. */
export function useTopups(limit = 10): UseQueryResult<Topup[], Error> {
  const { accountId, queryClient } = useCreditkit();
  const client = useBrowserCreditkit();
  return useQuery(
    { queryKey: [...topupKeys.topups(accountId), limit], queryFn: () => client.topups({ unit: 'credits', limit }), enabled: accountId !== null },
    queryClient,
  );
}

/** The signed-in user's low-balance threshold of credits (their own, or the app's default) and its state. */
export function useBalanceAlert(): UseQueryResult<BalanceAlert, Error> {
  const { accountId, queryClient } = useCreditkit();
  const client = useBrowserCreditkit();
  return useQuery(
    { queryKey: topupKeys.balanceAlert(accountId), queryFn: () => client.balanceAlert({ unit: 'credits' }), enabled: accountId !== null },
    queryClient,
  );
}

/** The terms auto top-up of credits is offered on (price, amounts, caps), or undefined if none. */
export function useAutoTopupTerms(): UseQueryResult<AutoTopupTerms | null, Error> {
  const { queryClient } = useCreditkit();
  const client = useBrowserCreditkit();
  return useQuery(
    { queryKey: topupKeys.terms(), queryFn: async () => (await client.autoTopupTerms()).find((t) => t.unit === 'credits') ?? null, staleTime: 60_000 },
    queryClient,
  );
}
