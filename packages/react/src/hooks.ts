'use client';
// TanStack Query hooks over the browser client. Every account-bound query is keyed by the
// provider's account (creditkitKeys) and disabled while signed out; useCreditsMutation is how
// spending from the browser (through your route) refreshes what these hooks show.
import {
  useInfiniteQuery,
  useMutation,
  useQuery,
  type InfiniteData,
  type UseInfiniteQueryResult,
  type UseMutationOptions,
  type UseMutationResult,
  type UseQueryOptions,
  type UseQueryResult,
} from '@tanstack/react-query';
import type { AccountBalance, AccountPlan, HistoryPage, Pack, Plan } from '@creditkit/core';
import { useCreditkit } from './context.tsx';
import { creditkitKeys } from './keys.ts';

/** Query options the hooks pass through (staleTime, refetchInterval, select is not offered, …). */
export type CreditkitQueryOptions<T> = Omit<UseQueryOptions<T, Error, T, readonly unknown[]>, 'queryKey' | 'queryFn' | 'enabled' | 'select'> & {
  /** Also needs a signed-in account for account-bound queries. */
  enabled?: boolean;
};

/** One account-bound query: keyed by the account, fetched only when signed in. */
function useAccountQuery<T>(
  key: (accountId: string | null) => readonly unknown[],
  fetch: (accountId: string) => Promise<T>,
  options: CreditkitQueryOptions<T> | undefined,
): UseQueryResult<T, Error> {
  const { accountId, queryClient } = useCreditkit();
  return useQuery(
    {
      ...options,
      queryKey: key(accountId),
      queryFn: () => fetch(accountId!),
      enabled: accountId !== null && options?.enabled !== false,
    },
    queryClient,
  );
}

/** The spendable balance, the next expiry and the live buckets (in spend order). */
export function useBalance(options?: CreditkitQueryOptions<AccountBalance>): UseQueryResult<AccountBalance, Error> {
  const { client } = useCreditkit();
  return useAccountQuery(creditkitKeys.balance, (accountId) => client.balance({ accountId }), options);
}

/** The account's plan and period (every field null when it has none). */
export function usePlan(options?: CreditkitQueryOptions<AccountPlan>): UseQueryResult<AccountPlan, Error> {
  const { client } = useCreditkit();
  return useAccountQuery(creditkitKeys.plan, (accountId) => client.plan({ accountId }), options);
}

/** Whether the account's plan includes `feature`. */
export function useFeature(feature: string, options?: CreditkitQueryOptions<boolean>): UseQueryResult<boolean, Error> {
  const { client } = useCreditkit();
  return useAccountQuery(
    (accountId) => creditkitKeys.feature(accountId, feature),
    (accountId) => client.hasFeature({ accountId, feature }),
    options,
  );
}

/** The active plans, cheapest first (fetched signed out too: it is the public catalogue). */
export function usePlans(options?: CreditkitQueryOptions<Plan[]>): UseQueryResult<Plan[], Error> {
  const { client, queryClient } = useCreditkit();
  return useQuery({ ...options, queryKey: creditkitKeys.plans(), queryFn: () => client.plans() }, queryClient);
}

/** The credit packs on sale, cheapest first. */
export function usePacks(options?: CreditkitQueryOptions<Pack[]>): UseQueryResult<Pack[], Error> {
  const { client, queryClient } = useCreditkit();
  return useQuery({ ...options, queryKey: creditkitKeys.packs(), queryFn: () => client.packs() }, queryClient);
}

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 1000;

/** A page size the SQL function accepts: a whole number from 1 to 1000, else the default. */
export function pageSizeOf(pageSize: number | undefined): number {
  return pageSize !== undefined && Number.isInteger(pageSize) && pageSize >= 1 ? Math.min(pageSize, MAX_PAGE_SIZE) : DEFAULT_PAGE_SIZE;
}

export interface UseHistoryOptions {
  /** Entries per page (default 20, at most 1000). Part of the query key. */
  pageSize?: number;
  enabled?: boolean;
}

export type HistoryData = InfiniteData<HistoryPage, number | null>;

/**
 * The ledger, newest first, a page at a time: `data.pages`, then `fetchNextPage()` while
 * `hasNextPage` (the SDK's keyset paging: each page's nextBeforeId is the next page's beforeId).
 */
export function useHistory(options: UseHistoryOptions = {}): UseInfiniteQueryResult<HistoryData, Error> {
  const { client, accountId, queryClient } = useCreditkit();
  const pageSize = pageSizeOf(options.pageSize);
  return useInfiniteQuery(
    {
      queryKey: creditkitKeys.history(accountId, pageSize),
      queryFn: ({ pageParam }) => client.history({ accountId: accountId!, limit: pageSize, beforeId: pageParam }),
      initialPageParam: null as number | null,
      getNextPageParam: (last: HistoryPage) => last.nextBeforeId ?? undefined,
      enabled: accountId !== null && options.enabled !== false,
    },
    queryClient,
  );
}

/**
 * useMutation for anything that changes the account's credits, typically a call to your own
 * route (`fetch('/api/generate')`) that consumes on the server. When it settles, success or not,
 * everything cached for the account (balance, history, plan, features) is invalidated, and the
 * mutation stays pending until the visible queries have refetched. Your onSettled still runs.
 */
export function useCreditsMutation<TData = unknown, TError = Error, TVariables = void, TOnMutateResult = unknown>(
  options: UseMutationOptions<TData, TError, TVariables, TOnMutateResult>,
): UseMutationResult<TData, TError, TVariables, TOnMutateResult> {
  const { accountId, queryClient } = useCreditkit();
  return useMutation(
    {
      ...options,
      onSettled: async (...args) => {
        await Promise.all([queryClient.invalidateQueries({ queryKey: creditkitKeys.account(accountId) }), options.onSettled?.(...args)]);
      },
    },
    queryClient,
  );
}
