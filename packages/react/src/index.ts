'use client';
// @creditkit/react: a provider and TanStack Query hooks over @creditkit/core's browser client,
// and accessible, unstyled components for credits, paywalls, checkout, the billing portal and
// usage history (the components follow). Server code that only needs the query keys imports '@creditkit/react/keys'.
export { CreditkitProvider, useCreditkit, createCreditkitQueryClient } from './context.tsx';
export type { CreditkitProviderProps, CreditkitContextValue, CreditkitReadClient, CheckoutTarget } from './context.tsx';
export { creditkitKeys, type AccountKey } from './keys.ts';
export {
  useBalance,
  useHistory,
  usePlan,
  usePlans,
  usePacks,
  useFeature,
  useCreditsMutation,
  DEFAULT_PAGE_SIZE,
  MAX_PAGE_SIZE,
} from './hooks.ts';
export type { CreditkitQueryOptions, UseHistoryOptions, HistoryData } from './hooks.ts';
export type { ClassNames } from './slots.ts';
export { clampCount, unitsLeft } from './format.ts';
