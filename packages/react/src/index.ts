'use client';
// @creditkit/react: a provider and TanStack Query hooks over @creditkit/core's browser client,
// and accessible, unstyled components for credits, paywalls, checkout, the billing portal and
// usage history. Server code that only needs the query keys imports '@creditkit/react/keys'.
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
  useUnits,
  useBalanceAlert,
  useAutoTopup,
  useTopups,
  useCreditsMutation,
  DEFAULT_PAGE_SIZE,
  MAX_PAGE_SIZE,
} from './hooks.ts';
export type {
  CreditkitQueryOptions,
  UseBalanceOptions,
  UseFeatureOptions,
  UseUnitOptions,
  FeatureState,
  FeatureCheck,
  UseHistoryOptions,
  HistoryData,
} from './hooks.ts';
export { CreditsDisplay, type CreditsDisplayProps, type CreditsDisplaySlot, type CreditsPrice } from './components/CreditsDisplay.tsx';
export { Paywall, type PaywallProps, type PaywallSlot, type PaymentRequiredInfo } from './components/Paywall.tsx';
export { BuyCreditsButton, type BuyCreditsButtonProps } from './components/BuyCreditsButton.tsx';
export { ManageSubscriptionLink, type ManageSubscriptionLinkProps } from './components/ManageSubscriptionLink.tsx';
export { UsageHistory, describeEntry, type UsageHistoryProps, type UsageHistorySlot } from './components/UsageHistory.tsx';
export { LowBalanceBanner, type LowBalanceBannerProps, type LowBalanceBannerSlot } from './components/LowBalanceBanner.tsx';
export type { RedirectButtonSlot } from './redirect.tsx';
export type { ClassNames } from './slots.ts';
export { clampCount, unitsLeft } from './format.ts';
