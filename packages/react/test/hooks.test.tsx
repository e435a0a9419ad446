// The hooks against the real SDK on PGlite: what they return, under which key they cache it,
// that signed out means no call at all, paging, and that useCreditsMutation refreshes.
import { type ReactNode } from 'react';
import { QueryClientProvider } from '@tanstack/react-query';
import { act, render, renderHook, screen, waitFor } from '@testing-library/react';
import { userEvent } from '@testing-library/user-event';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreditkitProvider,
  creditkitKeys,
  useBalance,
  useCreditkit,
  useCreditsMutation,
  useFeature,
  useHistory,
  usePacks,
  usePlan,
  usePlans,
  useUnits,
} from '../src/index.ts';
import { clientOver, counting, renderAs, startKit, testQueryClient, type Kit } from './support.tsx';

let kit: Kit;
beforeAll(async () => {
  kit = await startKit();
  await kit.creditkit.upsertPlan({ id: 'pro', name: 'Pro', allowance: 100, features: { hd_upscale: true }, priceAmount: 1900 });
  await kit.creditkit.upsertPack({ id: 'small', name: 'Small', credits: 50, priceAmount: 500 });
  await kit.creditkit.upsertUnit({ id: 'messages', name: 'Messages' });
  await kit.creditkit.upsertUnit({ id: 'images', name: 'Images' });
});
afterAll(() => kit.close());

/** renderHook inside a provider acting as `accountId`, with the real client. */
function hookAs<T>(accountId: string | null, hook: () => T, client = kit.creditkit.asUser(accountId ?? '00000000-0000-4000-8000-000000000000')) {
  const queryClient = testQueryClient();
  const wrapper = ({ children }: { children: ReactNode }) => (
    <CreditkitProvider client={client} accountId={accountId} queryClient={queryClient}>
      {children}
    </CreditkitProvider>
  );
  return { ...renderHook(hook, { wrapper }), queryClient };
}

describe('hooks', () => {
  it('useBalance: the balance a server grant made, cached under creditkitKeys.balance', async () => {
    const ada = await kit.signUp();
    await kit.creditkit.grant({ accountId: ada, amount: 42 });
    const { result, queryClient } = hookAs(ada, () => useBalance());
    await waitFor(() => expect(result.current.isSuccess).toBe(true));
    expect(result.current.data).toMatchObject({ accountId: ada, balance: 42, nextExpiry: null });
    expect(result.current.data!.buckets).toEqual([expect.objectContaining({ category: 'purchase', remaining: 42 })]);
    expect(queryClient.getQueryData(creditkitKeys.balance(ada))).toBe(result.current.data);
  });

  it('signed out: account queries stay idle and call nothing; the catalogue still loads', async () => {
    const someone = await kit.signUp();
    const transport = counting(kit.creditkit.asUser(someone).transport);
    const { result } = hookAs(null, () => ({ balance: useBalance(), plan: usePlan(), feature: useFeature('hd_upscale'), messages: useFeature('messages'), units: useUnits(), history: useHistory(), plans: usePlans() }), clientOver(kit, someone, () => transport));
    await waitFor(() => expect(result.current.plans.isSuccess).toBe(true));
    for (const q of [result.current.balance, result.current.plan, result.current.units, result.current.history]) {
      expect(q.fetchStatus).toBe('idle');
      expect(q.data).toBeUndefined();
    }
    for (const feature of [result.current.feature, result.current.messages]) {
      expect(feature).toMatchObject({ allowed: false, balance: null, loading: false, error: null, data: undefined });
    }
    expect(transport.calls).toEqual(['creditkit_plans']);
    expect(result.current.plans.data!.map((p) => p.id)).toEqual(['free', 'pro']);
  });

  it("switching accounts switches the cached data (the account is part of every key)", async () => {
    const ada = await kit.signUp();
    const grace = await kit.signUp();
    await kit.creditkit.grant({ accountId: ada, amount: 5 });
    await kit.creditkit.grant({ accountId: grace, amount: 8 });
    const queryClient = testQueryClient();
    function Balance(): ReactNode {
      return <output aria-label="balance">{useBalance().data?.balance ?? '…'}</output>;
    }
    const as = (id: string) => (
      <CreditkitProvider client={kit.creditkit.asUser(id)} accountId={id} queryClient={queryClient}>
        <Balance />
      </CreditkitProvider>
    );
    const { rerender } = render(as(ada));
    const out = screen.getByRole('status', { name: 'balance' });
    await waitFor(() => expect(out).toHaveTextContent(/^5$/));
    rerender(as(grace));
    await waitFor(() => expect(out).toHaveTextContent(/^8$/));
    expect(queryClient.getQueryData(creditkitKeys.balance(ada))).toMatchObject({ balance: 5 });
    expect(queryClient.getQueryData(creditkitKeys.balance(grace))).toMatchObject({ balance: 8 });
  });

  it("without a queryClient prop, the provider caches in the app's surrounding QueryClientProvider", async () => {
    const ada = await kit.signUp();
    await kit.creditkit.grant({ accountId: ada, amount: 3 });
    const appClient = testQueryClient();
    const wrapper = ({ children }: { children: ReactNode }) => (
      <QueryClientProvider client={appClient}>
        <CreditkitProvider client={kit.creditkit.asUser(ada)} accountId={ada}>
          {children}
        </CreditkitProvider>
      </QueryClientProvider>
    );
    const { result } = renderHook(() => ({ balance: useBalance(), context: useCreditkit() }), { wrapper });
    await waitFor(() => expect(result.current.balance.isSuccess).toBe(true));
    expect(result.current.context.queryClient).toBe(appClient);
    expect(appClient.getQueryData(creditkitKeys.balance(ada))).toMatchObject({ balance: 3 });
  });

  it('useCreditkit throws outside the provider', () => {
    expect(() => renderHook(() => useCreditkit())).toThrow(/CreditkitProvider/);
  });

  it('usePlan, useFeature, usePlans, usePacks read the catalogue and the subscription', async () => {
    const ada = await kit.signUp();
    await kit.creditkit.setPlan({ accountId: ada, planId: 'pro' });
    const { result, queryClient } = hookAs(ada, () => ({
      plan: usePlan(),
      hd: useFeature('hd_upscale'),
      video: useFeature('video'),
      plans: usePlans(),
      packs: usePacks(),
    }));
    await waitFor(() => {
      const { plan, hd, video, plans, packs } = result.current;
      expect([plan, plans, packs].every((q) => q.isSuccess) && !hd.loading && !video.loading).toBe(true);
    });
    expect(result.current.plan.data).toMatchObject({ accountId: ada, planId: 'pro', allowance: 100, features: { hd_upscale: true } });
    // a flag (not a metered unit): the plan answers, there is no balance
    expect(result.current.hd).toMatchObject({ allowed: true, balance: null, loading: false, error: null, data: true });
    expect(result.current.video).toMatchObject({ allowed: false, balance: null, data: false });
    expect(result.current.packs.data).toEqual([expect.objectContaining({ id: 'small', credits: 50, priceAmount: 500 })]);
    expect(queryClient.getQueryData(creditkitKeys.feature(ada, 'hd_upscale', 1))).toEqual({ allowed: true, balance: null });
    expect(queryClient.getQueryData(creditkitKeys.packs())).toBe(result.current.packs.data);
  });

  it("useBalance({ unit }) reads that unit's balance, cached under creditkitKeys.balance(account, unit)", async () => {
    const ada = await kit.signUp();
    await kit.creditkit.grant({ accountId: ada, amount: 42 });
    await kit.creditkit.grant({ accountId: ada, amount: 7, unit: 'messages' });
    const { result, queryClient } = hookAs(ada, () => ({ credits: useBalance(), messages: useBalance({ unit: 'messages' }), images: useBalance({ unit: 'images' }) }));
    await waitFor(() => expect(Object.values(result.current).every((q) => q.isSuccess)).toBe(true));
    expect([result.current.credits.data!.balance, result.current.messages.data!.balance, result.current.images.data!.balance]).toEqual([42, 7, 0]);
    expect(queryClient.getQueryData(creditkitKeys.balance(ada, 'messages'))).toBe(result.current.messages.data);
    expect(queryClient.getQueryData(creditkitKeys.balance(ada))).toBe(result.current.credits.data);
  });

  it('useFeature on a metered unit: allowed and balance for `amount` (creditkit_my_check), the catalogue read once, refresh after a server report', async () => {
    const ada = await kit.signUp();
    await kit.creditkit.grant({ accountId: ada, amount: 3, unit: 'messages' });
    const transport = counting(kit.creditkit.asUser(ada).transport);
    const { result, queryClient } = hookAs(
      ada,
      () => ({ one: useFeature('messages'), four: useFeature('messages', { amount: 4 }), images: useFeature('images') }),
      clientOver(kit, ada, () => transport),
    );
    expect(result.current.one).toMatchObject({ loading: true, allowed: false, balance: null });
    await waitFor(() => expect(Object.values(result.current).some((f) => f.loading)).toBe(false));
    expect(result.current.one).toMatchObject({ allowed: true, balance: 3, error: null, data: true });
    expect(result.current.four).toMatchObject({ allowed: false, balance: 3 });
    expect(result.current.images).toMatchObject({ allowed: false, balance: 0 });
    expect(queryClient.getQueryData(creditkitKeys.feature(ada, 'messages', 4))).toEqual({ allowed: false, balance: 3 });
    expect(transport.calls.filter((fn) => fn === 'creditkit_units')).toHaveLength(1); // shared by the three
    expect(transport.calls.filter((fn) => fn === 'creditkit_my_check')).toHaveLength(3);
    expect(transport.calls).not.toContain('creditkit_my_feature');

    await kit.creditkit.report({ accountId: ada, unit: 'messages', amount: 3 });
    await act(() => result.current.one.refresh());
    await waitFor(() => expect(result.current.one).toMatchObject({ allowed: false, balance: 0, data: false }));
    expect(transport.calls.filter((fn) => fn === 'creditkit_my_check')).toHaveLength(4);
  });

  it("useFeature reports an error (allowed false) for an account the user may not read", async () => {
    const ada = await kit.signUp();
    const grace = await kit.signUp();
    await kit.creditkit.grant({ accountId: grace, amount: 5, unit: 'messages' });
    const { result } = hookAs(grace, () => useFeature('messages'), kit.creditkit.asUser(ada));
    await waitFor(() => expect(result.current.error).not.toBeNull());
    expect(result.current).toMatchObject({ allowed: false, balance: null, loading: false });
    expect(result.current.error).toMatchObject({ code: 'not_allowed' });
  });

  it('useHistory pages with nextBeforeId until the ledger ends', async () => {
    const ada = await kit.signUp();
    for (let i = 1; i <= 7; i++) await kit.creditkit.grant({ accountId: ada, amount: i });
    const { result, queryClient } = hookAs(ada, () => useHistory({ pageSize: 3 }));
    await waitFor(() => expect(result.current.isSuccess).toBe(true));
    const amounts = () => result.current.data!.pages.flatMap((p) => p.entries.map((e) => e.amount));
    expect(amounts()).toEqual([7, 6, 5]);
    expect(result.current.hasNextPage).toBe(true);
    await act(() => result.current.fetchNextPage());
    await waitFor(() => expect(amounts()).toEqual([7, 6, 5, 4, 3, 2]));
    expect(result.current.hasNextPage).toBe(true);
    await act(() => result.current.fetchNextPage());
    await waitFor(() => expect(amounts()).toEqual([7, 6, 5, 4, 3, 2, 1]));
    // each page after the first starts before the last entry of the page above it
    const idOf = (amount: number) => result.current.data!.pages.flatMap((p) => p.entries).find((e) => e.amount === amount)!.id;
    expect(result.current.data!.pageParams).toEqual([null, idOf(5), idOf(2)]);
    expect(result.current.hasNextPage).toBe(false);
    expect(queryClient.getQueryData(creditkitKeys.history(ada, 3))).toBe(result.current.data);
  });

  it('useCreditsMutation: a server-side consume refreshes the balance and history without a manual refetch', async () => {
    const ada = await kit.signUp();
    await kit.creditkit.grant({ accountId: ada, amount: 10 });
    let settled = 0;
    function Generate(): ReactNode {
      // stands in for fetch('/api/generate'): the route consumes on the server
      const mutation = useCreditsMutation({
        mutationFn: () => kit.creditkit.consume({ accountId: ada, amount: 3, event: 'image_gen' }),
        onSettled: () => void settled++,
      });
      const history = useHistory({ pageSize: 5 });
      const balance = useBalance();
      return (
        <>
          <output aria-label="balance">{balance.data?.balance ?? '…'}</output>
          <button type="button" onClick={() => mutation.mutate()}>
            Generate
          </button>
          <output aria-label="ledger rows">{history.data?.pages.flatMap((p) => p.entries).length ?? '…'}</output>
        </>
      );
    }
    renderAs(kit, ada, <Generate />);
    const balance = screen.getByRole('status', { name: 'balance' });
    await waitFor(() => expect(balance).toHaveTextContent(/^10$/));
    expect(screen.getByRole('status', { name: 'ledger rows' })).toHaveTextContent('1');

    await userEvent.setup().click(screen.getByRole('button', { name: 'Generate' }));
    await waitFor(() => expect(balance).toHaveTextContent(/^7$/));
    expect(screen.getByRole('status', { name: 'ledger rows' })).toHaveTextContent('2');
    expect(settled).toBe(1);
  });

  it('useCreditsMutation refreshes after a failed call too (the route may have charged before failing)', async () => {
    const ada = await kit.signUp();
    await kit.creditkit.grant({ accountId: ada, amount: 10 });
    const { result, queryClient } = hookAs(ada, () => ({
      balance: useBalance(),
      mutation: useCreditsMutation({
        mutationFn: async () => {
          await kit.creditkit.consume({ accountId: ada, amount: 4, event: 'image_gen' });
          throw new Error('the model timed out');
        },
      }),
    }));
    await waitFor(() => expect(result.current.balance.data?.balance).toBe(10));
    let balanceWhenSettled: number | undefined;
    await act(() =>
      result.current.mutation.mutateAsync().catch((error: Error) => {
        expect(error.message).toBe('the model timed out');
        // the mutation stays pending until the refetch is done: the cache is fresh when it rejects
        balanceWhenSettled = (queryClient.getQueryData(creditkitKeys.balance(ada)) as { balance: number }).balance;
      }),
    );
    expect(balanceWhenSettled).toBe(6);
    await waitFor(() => expect(result.current.balance.data?.balance).toBe(6));
  });
});
