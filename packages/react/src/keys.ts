// The TanStack Query keys of everything @creditkit/react caches. They are hierarchical, so one
// prefix reaches a whole account (`creditkitKeys.account(id)`) or the whole kit
// (`creditkitKeys.all`), and stable: the same arguments always give equal arrays, on the server
// too (this module has no 'use client' and no React, so a server component may import it from
// '@creditkit/react/keys' to prefetch).

/** Whose data a key holds: the account id; null (or undefined) when signed out. */
export type AccountKey = string | null | undefined;

const ROOT = 'creditkit';
const account = (accountId: AccountKey) => [ROOT, accountId ?? null] as const;

export const creditkitKeys = {
  /** Everything cached by @creditkit/react. */
  all: [ROOT] as const,
  /** Everything about one account (balance, history, plan, features). */
  account,
  balance: (accountId: AccountKey) => [...account(accountId), 'balance'] as const,
  /** Every history list of the account, whatever its page size. */
  histories: (accountId: AccountKey) => [...account(accountId), 'history'] as const,
  history: (accountId: AccountKey, pageSize: number) => [...account(accountId), 'history', pageSize] as const,
  plan: (accountId: AccountKey) => [...account(accountId), 'plan'] as const,
  feature: (accountId: AccountKey, feature: string) => [...account(accountId), 'feature', feature] as const,
  /** The plan catalogue: the same for every account. */
  plans: () => [ROOT, 'plans'] as const,
  /** The credit packs on sale: the same for every account. */
  packs: () => [ROOT, 'packs'] as const,
};
