// The TanStack Query keys of everything @creditkit/react caches. They are hierarchical, so one
// prefix reaches a whole account (`creditkitKeys.account(id)`) or the whole kit
// (`creditkitKeys.all`), and stable: the same arguments always give equal arrays, on the server
// too (this module has no 'use client' and no React, so a server component may import it from
// '@creditkit/react/keys' to prefetch).

/** Whose data a key holds: the account id; null (or undefined) when signed out. */
export type AccountKey = string | null | undefined;

const ROOT = 'creditkit';
const CREDITS = 'credits';
const account = (accountId: AccountKey) => [ROOT, accountId ?? null] as const;

export const creditkitKeys = {
  /** Everything cached by @creditkit/react. */
  all: [ROOT] as const,
  /** Everything about one account (balances, history, plan, features). */
  account,
  /**
   * The balance of credits, or of another unit (a metered feature). Without a unit (or with
   * 'credits') it is the credits balance's key, which is also the prefix of every unit's.
   */
  balance: (accountId: AccountKey, unit?: string) =>
    unit === undefined || unit === CREDITS ? ([...account(accountId), 'balance'] as const) : ([...account(accountId), 'balance', unit] as const),
  /** Every history list of the account, whatever its page size. */
  histories: (accountId: AccountKey) => [...account(accountId), 'history'] as const,
  history: (accountId: AccountKey, pageSize: number) => [...account(accountId), 'history', pageSize] as const,
  plan: (accountId: AccountKey) => [...account(accountId), 'plan'] as const,
  /** useFeature's answer for `amount` of a feature; without an amount, the prefix of every amount's. */
  feature: (accountId: AccountKey, feature: string, amount?: number) =>
    amount === undefined ? ([...account(accountId), 'feature', feature] as const) : ([...account(accountId), 'feature', feature, amount] as const),
  /** The account's low-balance threshold in force and its state, per unit (useBalanceAlert). */
  balanceAlert: (accountId: AccountKey, unit: string = CREDITS) => [...account(accountId), 'balance-alert', unit] as const,
  /** The account's auto top-up of a unit: settings, status, card on file (useAutoTopup). */
  autoTopup: (accountId: AccountKey, unit: string = CREDITS) => [...account(accountId), 'auto-topup', unit] as const,
  /** The account's recent top-ups (useTopups). */
  topups: (accountId: AccountKey) => [...account(accountId), 'topups'] as const,
  /** The plan catalogue: the same for every account. */
  plans: () => [ROOT, 'plans'] as const,
  /** The credit packs on sale: the same for every account. */
  packs: () => [ROOT, 'packs'] as const,
  /** The unit catalogue (features: metered units and plan flags): the same for every account. */
  units: () => [ROOT, 'units'] as const,
};
