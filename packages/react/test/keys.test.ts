// The query keys are a contract with apps (they invalidate and prefetch by them): their exact
// shape, their stability, and that the account prefix reaches everything of one account only.
import { hashKey, matchQuery, QueryClient } from '@tanstack/react-query';
import { describe, expect, it } from 'vitest';
import { creditkitKeys } from '../src/index.ts';
import { creditkitKeys as serverKeys } from '../src/keys.ts';

const ada = '00000000-0000-4000-8000-00000000a11c';
const grace = '00000000-0000-4000-8000-0000000091ac';

describe('creditkitKeys', () => {
  it('have the documented shapes', () => {
    expect(creditkitKeys.all).toEqual(['creditkit']);
    expect(creditkitKeys.account(ada)).toEqual(['creditkit', ada]);
    expect(creditkitKeys.balance(ada)).toEqual(['creditkit', ada, 'balance']);
    expect(creditkitKeys.histories(ada)).toEqual(['creditkit', ada, 'history']);
    expect(creditkitKeys.history(ada, 10)).toEqual(['creditkit', ada, 'history', 10]);
    expect(creditkitKeys.plan(ada)).toEqual(['creditkit', ada, 'plan']);
    expect(creditkitKeys.feature(ada, 'hd_upscale')).toEqual(['creditkit', ada, 'feature', 'hd_upscale']);
    expect(creditkitKeys.feature(ada, 'messages', 2)).toEqual(['creditkit', ada, 'feature', 'messages', 2]);
    expect(creditkitKeys.balance(ada, 'messages')).toEqual(['creditkit', ada, 'balance', 'messages']);
    expect(creditkitKeys.balance(ada, 'credits')).toEqual(creditkitKeys.balance(ada));
    expect(creditkitKeys.plans()).toEqual(['creditkit', 'plans']);
    expect(creditkitKeys.packs()).toEqual(['creditkit', 'packs']);
    expect(creditkitKeys.units()).toEqual(['creditkit', 'units']);
  });

  it('are stable: the same arguments hash the same, signed out is null either way', () => {
    expect(hashKey(creditkitKeys.balance(ada))).toBe(hashKey(creditkitKeys.balance(ada)));
    expect(creditkitKeys.balance(undefined)).toEqual(creditkitKeys.balance(null));
    expect(creditkitKeys.balance(null)).toEqual(['creditkit', null, 'balance']);
    expect(hashKey(creditkitKeys.history(ada, 10))).not.toBe(hashKey(creditkitKeys.history(ada, 20)));
    expect(serverKeys).toBe(creditkitKeys); // '@creditkit/react/keys' is the same object
  });

  it('are hierarchical: an account prefix matches all of that account and nothing else', () => {
    const cache = new QueryClient().getQueryCache();
    const client = new QueryClient({ queryCache: cache });
    const keys = [
      creditkitKeys.balance(ada),
      creditkitKeys.history(ada, 10),
      creditkitKeys.plan(ada),
      creditkitKeys.feature(ada, 'hd_upscale', 1),
      creditkitKeys.balance(ada, 'messages'),
      creditkitKeys.feature(ada, 'messages', 1),
      creditkitKeys.feature(ada, 'messages', 3),
      creditkitKeys.balance(grace),
      creditkitKeys.feature(grace, 'messages', 1),
      creditkitKeys.plans(),
      creditkitKeys.packs(),
      creditkitKeys.units(),
    ];
    for (const key of keys) client.setQueryData(key, 1);
    const matching = (queryKey: readonly unknown[]) =>
      cache
        .getAll()
        .filter((q) => matchQuery({ queryKey }, q))
        .map((q) => q.queryKey);
    expect(matching(creditkitKeys.account(ada))).toEqual(keys.slice(0, 7));
    expect(matching(creditkitKeys.histories(ada))).toEqual([creditkitKeys.history(ada, 10)]);
    // a feature without an amount reaches every amount of it; the credits balance key every unit's balance
    expect(matching(creditkitKeys.feature(ada, 'messages'))).toEqual([creditkitKeys.feature(ada, 'messages', 1), creditkitKeys.feature(ada, 'messages', 3)]);
    expect(matching(creditkitKeys.balance(ada))).toEqual([creditkitKeys.balance(ada), creditkitKeys.balance(ada, 'messages')]);
    expect(matching(creditkitKeys.all)).toHaveLength(keys.length);
  });
});
