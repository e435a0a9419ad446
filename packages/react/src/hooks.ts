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
import { useCallback } from 'react';
import type { AccountBalance, AccountPlan, AutoTopup, BalanceAlert, HistoryPage, Pack, Plan, Topup, Unit } from '@creditkit/core';
import { useCreditkit, type CreditkitReadClient } from './context.tsx';
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

export type UseBalanceOptions = CreditkitQueryOptions<AccountBalance> & {
  /** The metered unit (feature) to read, e.g. 'messages' (default: credits). Part of the query key. */
  unit?: string;
};

/** The spendable balance of credits (or of `unit`), the next expiry and the live buckets (in spend order). */
export function useBalance(options: UseBalanceOptions = {}): UseQueryResult<AccountBalance, Error> {
  const { client } = useCreditkit();
  const { unit, ...query } = options;
  return useAccountQuery(
    (accountId) => creditkitKeys.balance(accountId, unit),
    (accountId) => client.balance(unit === undefined ? { accountId } : { accountId, unit }),
    query,
  );
}

/** The client's method, or an error saying which one the provider's client lacks. */
function needs<K extends 'balanceAlert' | 'autoTopup' | 'topups'>(client: CreditkitReadClient, method: K): NonNullable<CreditkitReadClient[K]> {
  const fn = client[method];
  if (!fn) throw new Error(`@creditkit/react: the provider's client has no ${method}() (pass a CreditkitClient)`);
  return fn.bind(client) as NonNullable<CreditkitReadClient[K]>;
}

export type UseUnitOptions<T> = CreditkitQueryOptions<T> & {
  /** The metered unit (default: credits). Part of the query key. */
  unit?: string;
};

/**
 * The account's low-balance threshold in force for a unit (its own, else the app's default for
 * the unit), where it comes from, and the state: ok, low or depleted (creditkit_my_balance_alert).
 * What a low-balance banner shows; <LowBalanceBanner> without a threshold reads it.
 */
export function useBalanceAlert(options: UseUnitOptions<BalanceAlert> = {}): UseQueryResult<BalanceAlert, Error> {
  const { client } = useCreditkit();
  const { unit, ...query } = options;
  return useAccountQuery(
    (accountId) => creditkitKeys.balanceAlert(accountId, unit),
    (accountId) => needs(client, 'balanceAlert')(unit === undefined ? { accountId } : { accountId, unit }),
    query,
  );
}

/** The account's auto top-up of a unit: settings, status and why, this month's use, the card on file, the last top-up. */
export function useAutoTopup(options: UseUnitOptions<AutoTopup> = {}): UseQueryResult<AutoTopup, Error> {
  const { client } = useCreditkit();
  const { unit, ...query } = options;
  return useAccountQuery(
    (accountId) => creditkitKeys.autoTopup(accountId, unit),
    (accountId) => needs(client, 'autoTopup')(unit === undefined ? { accountId } : { accountId, unit }),
    query,
  );
}

/** The account's recent top-ups, newest first. */
export function useTopups(options?: CreditkitQueryOptions<Topup[]>): UseQueryResult<Topup[], Error> {
  const { client } = useCreditkit();
  return useAccountQuery(creditkitKeys.topups, (accountId) => needs(client, 'topups')({ accountId }), options);
}

/** The account's plan and period (every field null when it has none). */
export function usePlan(options?: CreditkitQueryOptions<AccountPlan>): UseQueryResult<AccountPlan, Error> {
  const { client } = useCreditkit();
  return useAccountQuery(creditkitKeys.plan, (accountId) => client.plan({ accountId }), options);
}

/** What useFeature caches under creditkitKeys.feature(account, feature, amount). */
export interface FeatureCheck {
  allowed: boolean;
  /** What is left of a metered unit; null for a plan flag. */
  balance: number | null;
}

export interface FeatureState {
  /**
   * Whether the account may use the feature now: at least `amount` of a metered unit is left
   * (creditkit_my_check), or its plan includes the flag (creditkit_my_feature). False until known.
   */
  allowed: boolean;
  /** What is left of a metered unit; null for a plan flag, and until known. */
  balance: number | null;
  /** The first answer is on its way (false while signed out: nothing is asked). */
  loading: boolean;
  error: Error | null;
  /** Asks again (useCreditsMutation does it for you after spending through your route). */
  refresh: () => Promise<void>;
  /** @deprecated 0.1's answer, the same as `allowed` once known and undefined before: read `allowed` and `loading`. */
  data: boolean | undefined;
}

export type UseFeatureOptions = CreditkitQueryOptions<FeatureCheck> & {
  /** How much of a metered unit the feature needs now (default 1). Part of the query key. */
  amount?: number;
};

/** The unit catalogue's query: shared by useUnits and useFeature, which reads it to tell units from flags. */
const unitsQuery = (client: CreditkitReadClient) => ({ queryKey: creditkitKeys.units(), queryFn: () => client.units() });

/**
 * Whether the account may use `feature` now. A feature is a unit of the catalogue: for a metered
 * one (e.g. 'messages') the answer is whether `amount` of it is left, with the balance; anything
 * else is a plan flag (e.g. 'hd_upscale'), answered by the account's plan.
 */
export function useFeature(feature: string, options: UseFeatureOptions = {}): FeatureState {
  const { client, queryClient } = useCreditkit();
  const { amount = 1, ...query } = options;
  const result = useAccountQuery<FeatureCheck>(
    (accountId) => creditkitKeys.feature(accountId, feature, amount),
    async (accountId) => {
      const units = await queryClient.ensureQueryData(unitsQuery(client));
      if (units.some((unit) => unit.id === feature && unit.kind === 'metered')) return client.check({ accountId, unit: feature, amount });
      return { allowed: await client.hasFeature({ accountId, feature }), balance: null };
    },
    query,
  );
  const { refetch } = result;
  const refresh = useCallback(async () => void (await refetch()), [refetch]);
  return {
    allowed: result.data?.allowed ?? false,
    balance: result.data?.balance ?? null,
    loading: result.isLoading,
    error: result.error,
    refresh,
    data: result.data?.allowed,
  };
}

/** The unit catalogue: metered units (a balance each, credits among them) and plan flags. Needs a signed-in user. */
export function useUnits(options?: CreditkitQueryOptions<Unit[]>): UseQueryResult<Unit[], Error> {
  const { client, accountId, queryClient } = useCreditkit();
  return useQuery({ ...options, ...unitsQuery(client), enabled: accountId !== null && options?.enabled !== false }, queryClient);
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
