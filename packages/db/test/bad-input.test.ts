// Invariant 8: bad input raises a documented code and changes nothing. The cases are generated
// from each function's parameter list: every parameter of every public.creditkit_* function
// gets the bad values that apply to its kind (amount, account, key, metadata, …), one at a time
// against an otherwise valid call, so the expected code is unambiguous. Each case opens its own
// account and compares a snapshot of the whole books before and after.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@creditkit/db';
import { describeEachBackend } from '@creditkit/db/vitest';
import {
  ABOVE_MAX, DAY, HOUR, MAX_CREDITS, at, creditkit, newAccountId, outcome, rpc, runAs, snapshotBooks,
  type Args, type ParamName, type Runner,
} from './support.ts';

/** What a case gets to work with: an account holding 100 credits, owned by a signed-in user. */
interface Fixture { db: TestDatabase; account: string; other: string }

interface FunctionSpec {
  /** Parameter names in declaration order; checked against the catalogue. */
  params: ParamName[];
  /** Who calls it: the server key, or the account's owner. */
  caller: 'service' | 'owner';
  /** A call that succeeds. */
  valid: (fx: Fixture) => Args;
}

const NOW = at(HOUR); // after the fixture's grant at EPOCH

const SPECS: Record<string, FunctionSpec> = {
  creditkit_grant: {
    params: ['p_account_id', 'p_amount', 'p_category', 'p_expires_at', 'p_priority', 'p_idempotency_key', 'p_metadata', 'p_revenue_micros', 'p_now'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_amount: 10, p_category: 'promotional', p_expires_at: at(DAY), p_now: NOW }),
  },
  creditkit_consume: {
    params: ['p_account_id', 'p_amount', 'p_event', 'p_idempotency_key', 'p_metadata', 'p_cost_micros', 'p_now'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_amount: 10, p_event: 'chat', p_now: NOW }),
  },
  creditkit_consume_or_raise: {
    params: ['p_account_id', 'p_amount', 'p_event', 'p_idempotency_key', 'p_metadata', 'p_cost_micros', 'p_now'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_amount: 10, p_event: 'chat', p_now: NOW }),
  },
  creditkit_adjust: {
    params: ['p_account_id', 'p_amount', 'p_reason', 'p_idempotency_key', 'p_metadata', 'p_now'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_amount: -10, p_reason: 'correction', p_now: NOW }),
  },
  creditkit_balance: {
    params: ['p_account_id', 'p_now'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_now: NOW }),
  },
  creditkit_history: {
    params: ['p_account_id', 'p_limit', 'p_before_id'],
    caller: 'service',
    valid: (fx) => ({ p_account_id: fx.account, p_limit: 10 }),
  },
  creditkit_book_expired: {
    params: ['p_now', 'p_limit'],
    caller: 'service',
    valid: () => ({ p_now: NOW, p_limit: 10 }),
  },
  creditkit_my_balance: {
    params: ['p_account_id'],
    caller: 'owner',
    valid: (fx) => ({ p_account_id: fx.account }),
  },
  creditkit_my_history: {
    params: ['p_account_id', 'p_limit', 'p_before_id'],
    caller: 'owner',
    valid: (fx) => ({ p_account_id: fx.account, p_limit: 10 }),
  },
};

interface Case { fn: string; label: string; args: (fx: Fixture) => Args; code: string; caller?: 'service' | 'owner' | 'no-sub' }

const key256 = 'k'.repeat(256);
// 8193 bytes of JSON text, as the server measures it (octet_length of the jsonb's text)
const bigMetadata = { pad: 'x'.repeat(8193 - '{"pad": ""}'.length) };

const POSITIVE_AMOUNTS: Array<[string, unknown]> = [['0', 0], ['-1', -1], ['NULL', null], ['2^53', ABOVE_MAX]];
const ADJUST_AMOUNTS: Array<[string, unknown]> = [['0', 0], ['NULL', null], ['2^53', ABOVE_MAX], ['-2^53', `-${ABOVE_MAX}`]];
const BAD_KEYS: Array<[string, unknown]> = [['empty', ''], ['blank', '   '], ['tab and newline', '\t\n'], ['256 characters', key256]];
const BAD_EVENTS: Array<[string, unknown]> = [['empty', ''], ['blank', ' '], ['201 characters', 'e'.repeat(201)]];
const BAD_METADATA: Array<[string, unknown]> = [
  ['a JSON array', '[]'], ['a JSON string', '"text"'], ['a JSON number', '42'], ['JSON null', 'null'], ['over 8192 bytes', bigMetadata],
];
const BAD_REASONS: Array<[string, unknown]> = [['NULL', null], ['empty', ''], ['blank', '  \t'], ['501 characters', 'r'.repeat(501)]];
const LIMITS: Record<string, { max: number }> = {
  creditkit_history: { max: 1000 }, creditkit_my_history: { max: 1000 }, creditkit_book_expired: { max: 100000 },
};

/** The bad values for one parameter of one function, each with its documented code. */
function casesFor(fn: string, param: ParamName): Array<[string, unknown, string]> {
  const each = (values: Array<[string, unknown]>, code: string) => values.map(([l, v]): [string, unknown, string] => [l, v, code]);
  switch (param) {
    case 'p_amount':
      return fn === 'creditkit_adjust' ? each(ADJUST_AMOUNTS, 'CK001') : each(POSITIVE_AMOUNTS, 'CK001');
    case 'p_account_id':
      if (fn.startsWith('creditkit_my_')) return []; // NULL means "my own"; others' accounts: see the CK005 cases
      // a grant opens an unknown account, so only NULL is bad for it
      return fn === 'creditkit_grant' ? [['NULL', null, 'CK006']] : [['NULL', null, 'CK006'], ['unknown', newAccountId(), 'CK003']];
    case 'p_idempotency_key':
      return each(BAD_KEYS, 'CK006');
    case 'p_event':
      return each(BAD_EVENTS, 'CK006');
    case 'p_metadata':
      return each(BAD_METADATA, 'CK006');
    case 'p_category':
      return each([['unknown', 'gift'], ['NULL', null], ['empty', ''], ['upper case', 'PLAN']], 'CK006');
    case 'p_expires_at':
      return each([['equal to p_now', NOW], ['1µs before p_now', at(HOUR - 1)], ['a day in the past', at(-DAY)]], 'CK006');
    case 'p_now':
      return [['NULL', null, 'CK006']];
    case 'p_cost_micros':
    case 'p_revenue_micros': // money is optional (NULL), else 0 to 2^53-1 micros
      return each([['-1', -1], ['2^53', ABOVE_MAX]], 'CK001');
    case 'p_reason':
      return each(BAD_REASONS, 'CK006');
    case 'p_limit': {
      const max = LIMITS[fn]?.max;
      if (!max) throw new Error(`no limit bounds for ${fn}`);
      return each([['0', 0], ['-1', -1], ['NULL', null], [`${max + 1}`, max + 1]], 'CK006');
    }
    case 'p_priority': // any integer is a valid priority
    case 'p_before_id': // any cursor is valid; one past the end just gives an empty page
      return [];
  }
}

const CASES: Case[] = Object.entries(SPECS).flatMap(([fn, spec]) =>
  spec.params.flatMap((param) =>
    casesFor(fn, param).map(([label, value, code]): Case => ({
      fn, label: `${param} ${label}`, code, args: (fx) => ({ ...spec.valid(fx), [param]: value }),
    })),
  ),
);

// Failures that depend on the state rather than on one malformed argument.
CASES.push(
  { fn: 'creditkit_grant', label: 'the balance would pass 2^53-1', code: 'CK007', args: (fx) => ({ ...SPECS.creditkit_grant!.valid(fx), p_amount: MAX_CREDITS }) },
  { fn: 'creditkit_adjust', label: 'the balance would pass 2^53-1', code: 'CK007', args: (fx) => ({ ...SPECS.creditkit_adjust!.valid(fx), p_amount: MAX_CREDITS }) },
  { fn: 'creditkit_adjust', label: 'below zero', code: 'CK002', args: (fx) => ({ ...SPECS.creditkit_adjust!.valid(fx), p_amount: -101 }) },
  { fn: 'creditkit_consume_or_raise', label: 'more than the balance', code: 'CK002', args: (fx) => ({ ...SPECS.creditkit_consume_or_raise!.valid(fx), p_amount: 101 }) },
  { fn: 'creditkit_my_balance', label: "someone else's account", code: 'CK005', args: (fx) => ({ p_account_id: fx.other }) },
  { fn: 'creditkit_my_history', label: "someone else's account", code: 'CK005', args: (fx) => ({ p_account_id: fx.other }) },
  { fn: 'creditkit_my_balance', label: 'authenticated without a sub claim', code: 'CK005', caller: 'no-sub', args: () => ({}) },
  { fn: 'creditkit_my_history', label: 'authenticated without a sub claim', code: 'CK005', caller: 'no-sub', args: () => ({}) },
);

/** Values at the edge of what is accepted: the bad-input cases above are one step past them. */
const ACCEPTED: Case[] = [
  { fn: 'creditkit_grant', label: 'amount 2^53-1 on an empty account', code: 'ok', args: () => ({ p_account_id: newAccountId(), p_amount: MAX_CREDITS, p_now: NOW }) },
  { fn: 'creditkit_grant', label: 'expires 1µs after p_now', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_grant!.valid(fx), p_expires_at: at(HOUR + 1) }) },
  { fn: 'creditkit_grant', label: 'a 255-character key', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_grant!.valid(fx), p_idempotency_key: 'k'.repeat(255) }) },
  { fn: 'creditkit_consume', label: 'metadata of exactly 8192 bytes', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_consume!.valid(fx), p_metadata: { pad: 'x'.repeat(8192 - '{"pad": ""}'.length) } }) },
  { fn: 'creditkit_consume', label: 'a 200-character event', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_consume!.valid(fx), p_event: 'e'.repeat(200) }) },
  { fn: 'creditkit_consume', label: 'cost_micros 0', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_consume!.valid(fx), p_cost_micros: 0 }) },
  { fn: 'creditkit_grant', label: 'revenue_micros 2^53-1', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_grant!.valid(fx), p_revenue_micros: MAX_CREDITS }) },
  { fn: 'creditkit_consume', label: 'the whole balance', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_consume!.valid(fx), p_amount: 100 }) },
  { fn: 'creditkit_adjust', label: 'the whole balance away', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_adjust!.valid(fx), p_amount: -100 }) },
  { fn: 'creditkit_adjust', label: 'a 500-character reason', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_adjust!.valid(fx), p_reason: 'r'.repeat(500) }) },
  { fn: 'creditkit_history', label: 'limit 1000', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_history!.valid(fx), p_limit: 1000 }) },
  { fn: 'creditkit_my_history', label: 'limit 1', code: 'ok', args: (fx) => ({ ...SPECS.creditkit_my_history!.valid(fx), p_limit: 1 }) },
  { fn: 'creditkit_book_expired', label: 'limit 100000', code: 'ok', args: () => ({ p_now: NOW, p_limit: 100000 }) },
];

describeEachBackend('bad input', (backend) => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase({ backend });
  });
  afterAll(() => db?.drop());

  async function fixture(): Promise<Fixture> {
    const [account, other] = [await db.createUser(), await db.createUser()];
    const ck = creditkit(runAs.service(db));
    await ck.grant({ p_account_id: account, p_amount: 100, p_now: at(0) });
    await ck.grant({ p_account_id: other, p_amount: 100, p_now: at(0) });
    return { db, account, other };
  }

  function runnerFor(c: Case, fx: Fixture): Runner {
    const caller = c.caller ?? SPECS[c.fn]?.caller;
    if (caller === 'owner') return runAs.user(db, fx.account);
    if (caller === 'no-sub') return runAs.role(db, 'authenticated', { role: 'authenticated' });
    return runAs.service(db);
  }

  it('the table covers every public.creditkit_* function with its real parameter list', async () => {
    const rows = await db.query<{ name: string; params: string[] }>(`
      select p.proname as name,
             (select coalesce(array_agg(n order by i), '{}') from unnest(p.proargnames, p.proargmodes) with ordinality u(n, m, i)
               where m is null or m in ('i', 'b')) as params
        from pg_proc p where p.pronamespace = 'public'::regnamespace and p.proname like 'creditkit\\_%' order by 1`);
    // proargmodes is NULL when every argument is IN; unnest then pads it with NULLs
    expect(Object.fromEntries(rows.map((r) => [r.name, r.params]))).toEqual(
      Object.fromEntries(Object.entries(SPECS).sort(([a], [b]) => a.localeCompare(b)).map(([fn, s]) => [fn, s.params])),
    );
  });

  it('every expected code is in the documented catalogue', async () => {
    const documented = new Set((await db.query<{ code: string }>('select code from creditkit.error_codes')).map((r) => r.code));
    const used = new Set(CASES.map((c) => c.code));
    expect([...used].filter((c) => !documented.has(c))).toEqual([]);
  });

  it('every valid base call succeeds, so each case below fails only because of its one change', async () => {
    const fx = await fixture();
    const results: Record<string, string> = {};
    for (const [fn, spec] of Object.entries(SPECS)) {
      const { sql, params } = rpc(fn, spec.valid(fx));
      results[fn] = await outcome(runnerFor({ fn, label: 'valid', code: 'ok', args: spec.valid }, fx)(sql, params));
    }
    expect(results).toEqual(Object.fromEntries(Object.keys(SPECS).map((fn) => [fn, 'ok'])));
  });

  describe('raises the documented code and changes nothing', () => {
    it.each(CASES.map((c) => [`${c.fn}: ${c.label} → ${c.code}`, c] as const))('%s', async (_title, c) => {
      const fx = await fixture();
      const before = await snapshotBooks(db);
      const { sql, params } = rpc(c.fn, c.args(fx));
      expect(await outcome(runnerFor(c, fx)(sql, params))).toBe(c.code);
      expect(await snapshotBooks(db)).toEqual(before);
    });
  });

  describe('accepts the values at the edge', () => {
    it.each(ACCEPTED.map((c) => [`${c.fn}: ${c.label}`, c] as const))('%s', async (_title, c) => {
      const fx = await fixture();
      const { sql, params } = rpc(c.fn, c.args(fx));
      expect(await outcome(runnerFor(c, fx)(sql, params))).toBe('ok');
    });
  });
});
