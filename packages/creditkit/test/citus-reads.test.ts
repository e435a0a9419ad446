// The reads of issue 25 on Citus: the caller-bound reads (creditkit_my_*, creditkit_has_credits,
// also inside an RLS policy of an app table) as a signed-in user with JWT claims, and the server
// reads (history, balance, the analytics) as service_role, through the coordinator, on accounts
// on both workers. docs/citus.md F9: an invoker function reaches the workers as the current role,
// which is NOLOGIN (08006), and RLS on a worker would not see the claims; distribute.sql makes the
// caller-bound reads definer (each binds the caller on the coordinator first) and the server reads
// are definer in the schema (assert_server_caller first).
//
// Every answer is checked twice: against values stated here, and against the same calls on a
// plain Postgres database with the same data (ids and times aside), so that "works on Citus"
// means "answers as on Postgres". The refusals too: the same SQLSTATE as on Postgres.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type CitusDatabase, type Row, type TestDatabase } from '@creditkit/testing';
import { describeIfCitus } from '@creditkit/testing/vitest';
import { creditkit, newAccountId, outcome, runAs, type Args, type Creditkit } from './support.ts';
import { accountsOnEveryWorker, distributedDatabase, expectBooks } from './citus-support.ts';

/** The caller-bound reads distribute.sql makes security definer on the cluster. */
const CALLER_BOUND_READS = [
  'public.creditkit_has_credits(bigint,uuid,text)',
  'public.creditkit_my_balance(uuid,text)',
  'public.creditkit_my_check(text,bigint,uuid)',
  'public.creditkit_my_feature(text,uuid)',
  'public.creditkit_my_history(uuid,integer,bigint,text)',
  'public.creditkit_my_plan(uuid)',
];

/** The API functions still security invoker on the cluster: each reads reference tables only. */
const INVOKER_CATALOGUE_READS = [
  'public.creditkit_packs()',
  'public.creditkit_plans()',
  'public.creditkit_quote(text,bigint,jsonb,timestamp with time zone)',
  'public.creditkit_stripe_customer(uuid)',
  'public.creditkit_stripe_events(text,integer)',
  'public.creditkit_units()',
];

/** The public API functions, by signature as the pgTAP privileges test spells them. */
const SIGNATURES = `
  select format('public.%s(%s)', p.proname, replace(pg_catalog.oidvectortypes(p.proargtypes), ', ', ',')) collate "C" as fn,
         p.prosecdef as definer, coalesce('search_path=""' = any (p.proconfig), false) as pinned
    from pg_catalog.pg_proc p
   where p.pronamespace = 'public'::regnamespace and p.proname like 'creditkit\\_%'`;

const PERIOD = { p_from: '2000-01-01T00:00:00Z', p_to: '2100-01-01T00:00:00Z' };

/** The server reads of per-account tables (each with its arguments for the accounts a, b). */
const serverReads = (a: string): Array<[fn: string, args: Args]> => [
  ['creditkit_history', { p_account_id: a }],
  ['creditkit_credits_outstanding', {}],
  ['creditkit_account_margin', PERIOD],
  ['creditkit_usage_series', PERIOD],
  ['creditkit_top_events', PERIOD],
  ['creditkit_unit_usage', PERIOD],
  ['creditkit_accounts_per_plan', {}],
  ['creditkit_mrr', {}],
];

/**
 * The same books on either database, written through the API as service_role: a with 100
 * purchased, 30 spent on chat, then 20 promotional (balance 90); b with 40 purchased and 5 spent on
 * search (35). Two plans (free, the default, and pro at 1000 cents a month), a on pro. The plans
 * and the subscription are written as the superuser: creditkit_upsert_plan and creditkit_set_plan
 * are refused on Citus (docs/citus.md F6, F3), which is not what this file is about.
 */
async function seed(db: TestDatabase, a: string, b: string): Promise<void> {
  const ck = creditkit(runAs.service(db));
  await ck.grant({ p_account_id: a, p_amount: 100 });
  await ck.consume({ p_account_id: a, p_amount: 30, p_event: 'chat' });
  await ck.grant({ p_account_id: a, p_amount: 20, p_category: 'promotional' });
  await ck.grant({ p_account_id: b, p_amount: 40 });
  await ck.consume({ p_account_id: b, p_amount: 5, p_event: 'search' });
  await db.exec(`
    begin;
    set local citus.multi_shard_modify_mode = 'sequential';
    select creditkit_upsert_plan('free', 'Free', p_is_default => true);
    select creditkit_upsert_plan('pro', 'Pro', p_price_amount => 1000, p_features => '{"export": true}');
    commit;`);
  await db.query(`insert into creditkit.subscriptions (account_id, plan_id, anchor) values ($1, 'pro', now())`, [a]);
  // a metered unit neither account has touched (creditkit_upsert_unit is refused on Citus: its
  // `exists (select from …)` over accounts fails with 42601 "a column definition list is required")
  await db.query(`insert into creditkit.units (id, name, kind) values ('messages', 'Messages', 'metered')`);
}

/** An app table on the coordinator (plain, not distributed) whose rows need 50 credits to be seen. */
async function documents(db: TestDatabase, owners: string[]): Promise<void> {
  await db.exec(`
    create table public.documents (id int primary key, owner uuid not null, title text not null);
    alter table public.documents enable row level security;
    create policy "own documents" on public.documents for select to authenticated
      using (owner = (select auth.uid()));
    create policy "reading needs 50 credits" on public.documents as restrictive for select to authenticated
      using ((select creditkit_has_credits(50)));
    grant select on public.documents to authenticated;`);
  for (const [i, owner] of owners.entries()) {
    await db.query('insert into public.documents values ($1, $2, $3)', [i + 1, owner, `doc ${i + 1}`]);
  }
}

/** A row without what differs between two databases by construction (ids, times). */
const VARYING = new Set(['id', 'grant_id', 'created_at', 'expires_at', 'next_expiry', 'day']);
const plain = (row: Row): Row =>
  Object.fromEntries(
    Object.entries(row)
      .filter(([k]) => !VARYING.has(k))
      .map(([k, v]) => [k, k === 'buckets' && Array.isArray(v) ? (v as Row[]).map(plain) : v]),
  );

describeIfCitus('caller-bound and server reads through the coordinator (issue 25, docs/citus.md F9)', () => {
  let db: CitusDatabase;
  let pg: TestDatabase;
  let a: string;
  let b: string;
  const stranger = newAccountId(); // signed in, no account

  beforeAll(async () => {
    [db, pg] = await Promise.all([distributedDatabase(), createTestDatabase({ backend: 'postgres' })]);
    [a, b] = (await accountsOnEveryWorker(db)) as [string, string];
    await seed(db, a, b);
    await seed(pg, a, b);
  }, 300_000);

  afterAll(async () => {
    await Promise.all([db?.drop(), pg?.drop()]);
  }, 120_000);

  /** The same call on Citus and on Postgres: both outcomes ('ok' or the SQLSTATE) and rows. */
  async function both(run: (d: TestDatabase) => Promise<Row[]>): Promise<{ citus: Row[] | string; postgres: Row[] | string }> {
    const once = async (d: TestDatabase) => {
      try {
        return (await run(d)).map(plain);
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (typeof code !== 'string') throw err;
        return code;
      }
    };
    return { citus: await once(db), postgres: await once(pg) };
  }

  it('distribute.sql made the caller-bound reads security definer on every node; every other invoker API function reads only reference tables', async () => {
    const definer = `select f.fn, f.definer, f.pinned from (${SIGNATURES}) f where f.fn = any ($1::text[]) order by 1`;
    const expected = CALLER_BOUND_READS.map((fn) => ({ fn, definer: true, pinned: true }));
    expect(await db.query(definer, [CALLER_BOUND_READS])).toEqual(expected);
    for (const worker of [0, 1]) expect(await db.queryWorker(worker, definer, [CALLER_BOUND_READS])).toEqual(expected);
    // on Postgres they stay invoker, RLS behind their own check
    expect((await pg.query(definer, [CALLER_BOUND_READS])).map((r) => r.definer)).toEqual(CALLER_BOUND_READS.map(() => false));

    const invoker = await db.query<{ fn: string }>(`select f.fn from (${SIGNATURES}) f where not f.definer order by 1`);
    expect(invoker.map((r) => r.fn)).toEqual(INVOKER_CATALOGUE_READS);
  });

  it('as a signed-in user (JWT claims): my_balance, my_history, my_check and has_credits answer the own account exactly, on both workers, as on Postgres', async () => {
    for (const [account, balance, history] of [
      [a, 90, [['grant', 20, 90], ['consume', -30, 70], ['grant', 100, 100]]],
      [b, 35, [['consume', -5, 35], ['grant', 40, 40]]],
    ] as const) {
      const me = creditkit(runAs.user(db, account));
      expect(await me.myBalance()).toMatchObject({ account_id: account, balance, next_expiry: null });
      expect((await me.myHistory()).map((r) => [r.kind, r.amount, r.balance_after])).toEqual(history);
      expect(await me.myHistory({ p_limit: 1 })).toHaveLength(1);
      expect(await me.myCheck({ p_amount: balance })).toEqual({ allowed: true, balance });
      expect(await me.myCheck({ p_amount: balance + 1 })).toEqual({ allowed: false, balance });
      expect(await me.hasCredits({ p_amount: balance })).toBe(true);
      expect(await me.hasCredits({ p_amount: balance + 1 })).toBe(false);
      expect(await me.hasCredits({ p_amount: 1, p_account_id: account })).toBe(true);

      for (const [fn, args] of [
        ['creditkit_my_balance', {}],
        ['creditkit_my_history', {}],
        ['creditkit_my_check', { p_amount: 1 }],
        ['creditkit_has_credits', { p_amount: 1 }],
      ] as const) {
        const answers = await both((d) => creditkit(runAs.user(d, account)).call(fn, args));
        expect(answers.citus, fn).toEqual(answers.postgres);
      }
    }
    expect((await creditkit(runAs.user(db, a)).myBalance()).buckets.map((k) => [k.category, k.remaining])).toEqual([
      ['promotional', 20], // spent first (a higher priority than purchases)
      ['purchase', 70],
    ]);
  });

  it('a user gets only their own: another account id is refused (CK005) or false, their own reads show nothing of the other account; a user without an account reads an empty one', async () => {
    const asB = creditkit(runAs.user(db, b));
    for (const [fn, args] of [
      ['creditkit_my_balance', { p_account_id: a }],
      ['creditkit_my_history', { p_account_id: a }],
      ['creditkit_my_check', { p_amount: 1, p_account_id: a }],
    ] as const) {
      expect(await outcome(asB.call(fn, args)), fn).toBe('CK005');
      const answers = await both((d) => creditkit(runAs.user(d, b)).call(fn, args));
      expect(answers.citus, fn).toEqual(answers.postgres);
    }
    expect(await asB.hasCredits({ p_amount: 1, p_account_id: a })).toBe(false);
    const mine = await asB.myHistory({ p_limit: 1000 });
    expect(mine.map((r) => r.amount)).toEqual([-5, 40]);
    expect((await asB.myBalance()).account_id).toBe(b);

    const nobody = creditkit(runAs.user(db, stranger));
    expect(await nobody.myBalance()).toMatchObject({ account_id: stranger, balance: 0, buckets: [] });
    expect(await nobody.myHistory()).toEqual([]);
    expect(await nobody.hasCredits({ p_amount: 1 })).toBe(false);
    // no claims at all (authenticated role, no sub): refused, as on Postgres
    const unsigned = await both((d) => runAs.role(d, 'authenticated', null)('select * from public.creditkit_my_balance()'));
    expect(unsigned).toEqual({ citus: 'CK005', postgres: 'CK005' });
  });

  it('anon is refused every read, and authenticated every server read, with the SQLSTATE of Postgres (42501); a stray grant to authenticated meets assert_server_caller (CK005) on both', async () => {
    const anonCalls: Array<[string, Args]> = [
      ['creditkit_my_balance', {}],
      ['creditkit_my_history', {}],
      ['creditkit_my_check', { p_amount: 1 }],
      ['creditkit_has_credits', { p_amount: 1 }],
      ...serverReads(a),
    ];
    for (const [fn, args] of anonCalls) {
      const answers = await both((d) => creditkit(runAs.anon(d)).call(fn, args));
      expect(answers, `anon ${fn}`).toEqual({ citus: '42501', postgres: '42501' });
    }
    for (const [fn, args] of [...serverReads(a), ['creditkit_balance', { p_account_id: a }] as [string, Args]]) {
      const answers = await both((d) => creditkit(runAs.user(d, a)).call(fn, args));
      expect(answers, `authenticated ${fn}`).toEqual({ citus: '42501', postgres: '42501' });
    }
    // the operator grants one by mistake: the function refuses the client role itself
    const grant = (verb: 'grant' | 'revoke') =>
      `${verb} execute on function public.creditkit_history(uuid, integer, bigint, text), public.creditkit_credits_outstanding(timestamptz) ${verb === 'grant' ? 'to' : 'from'} authenticated`;
    for (const d of [db, pg]) await d.exec(grant('grant'));
    try {
      for (const [fn, args] of [['creditkit_history', { p_account_id: a }], ['creditkit_credits_outstanding', {}]] as const) {
        const answers = await both((d) => creditkit(runAs.user(d, b)).call(fn, args));
        expect(answers, `authenticated ${fn} with a stray grant`).toEqual({ citus: 'CK005', postgres: 'CK005' });
      }
    } finally {
      for (const d of [db, pg]) await d.exec(grant('revoke'));
    }
  });

  it('as service_role: history, balance, credits_outstanding and the analytics answer exactly, as on Postgres', async () => {
    const ck = creditkit(runAs.service(db));
    expect((await ck.history({ p_account_id: a })).map((r) => [r.kind, r.amount, r.balance_after])).toEqual([
      ['grant', 20, 90],
      ['consume', -30, 70],
      ['grant', 100, 100],
    ]);
    expect(await ck.balance({ p_account_id: b })).toMatchObject({ balance: 35 });
    expect(await ck.call('creditkit_credits_outstanding', {})).toEqual([
      { category: 'promotional', credits: 20, accounts: 1 },
      { category: 'purchase', credits: 105, accounts: 2 },
    ]);
    expect(await ck.call('creditkit_top_events', PERIOD)).toEqual([
      { event: 'chat', calls: 1, credits: 30, cost_micros: 0, accounts: 1 },
      { event: 'search', calls: 1, credits: 5, cost_micros: 0, accounts: 1 },
    ]);
    expect(await ck.call('creditkit_account_margin', PERIOD)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ account_id: a, credits_granted: 120, credits_spent: 30 }),
        expect.objectContaining({ account_id: b, credits_granted: 40, credits_spent: 5 }),
      ]),
    );
    expect(await ck.call('creditkit_unit_usage', PERIOD)).toMatchObject([{ unit: 'credits', calls: 2, spent: 35, granted: 160 }]);
    expect(await ck.call('creditkit_accounts_per_plan', {})).toEqual([
      { plan_id: 'free', plan_name: 'Free', accounts: 1 },
      { plan_id: 'pro', plan_name: 'Pro', accounts: 1 },
    ]);
    expect(await ck.call('creditkit_mrr', {})).toEqual([{ currency: 'usd', mrr: 1000, subscriptions: 1 }]);

    for (const [fn, args] of [...serverReads(a), ['creditkit_balance', { p_account_id: a }] as [string, Args]]) {
      const answers = await both((d) => creditkit(runAs.service(d)).call(fn, args));
      expect(answers.citus, fn).not.toBeTypeOf('string');
      expect(answers.citus, fn).toEqual(answers.postgres);
    }
    for (const account of [a, b]) {
      await expectBooks(db, [account]);
    }
  });

  // effective_plan and allowance_anchor were LANGUAGE sql with parameters (docs/citus.md F3: "0A000
  // could not create distributed plan", whoever called them, live_buckets too through unit_terms for
  // a metered unit the account has no row of); plpgsql now.
  it('my_plan, my_feature, my_balance and has_credits in a metered unit not opened yet (signed-in user) and has_feature (service_role) answer as on Postgres (F3)', async () => {
    for (const account of [a, b]) {
      for (const [fn, args] of [
        ['creditkit_my_balance', { p_unit: 'messages' }],
        ['creditkit_has_credits', { p_amount: 1, p_unit: 'messages' }],
      ] as const) {
        const unopened = await both((d) => creditkit(runAs.user(d, account)).call(fn, args));
        expect(unopened.citus, fn).toEqual(unopened.postgres);
      }
      // each database subscribed the account at its own instant: the period is compared apart
      const plan = await both((d) => creditkit(runAs.user(d, account)).call('creditkit_my_plan', {}));
      const [onCitus, onPostgres] = [plan.citus, plan.postgres].map((rows) =>
        (rows as Row[]).map(({ period_start, period_end, ...rest }) => ({
          ...rest, period_days: Math.round((+new Date(String(period_end)) - +new Date(String(period_start))) / 86_400_000),
        })));
      expect(onCitus).toEqual(onPostgres);
      expect(onCitus).toHaveLength(1);
      const feature = await both((d) => creditkit(runAs.user(d, account)).call('creditkit_my_feature', { p_feature: 'export' }));
      expect(feature.citus).toEqual(feature.postgres);
      const server = await both((d) => creditkit(runAs.service(d)).call('creditkit_has_feature', { p_account_id: account, p_feature: 'export' }));
      expect(server.citus).toEqual(server.postgres);
    }
  }, 60_000);

  it('creditkit_has_credits in a restrictive RLS policy of an app table on the coordinator: rows only for a signed-in user with the credits, as on Postgres', async () => {
    const read = (d: TestDatabase, user: string) => runAs.user(d, user)<{ title: string }>('select title from public.documents order by id');
    for (const d of [db, pg]) await documents(d, [a, b, stranger]);
    for (const d of [db, pg]) {
      expect(await read(d, a)).toEqual([{ title: 'doc 1' }]); // 90 credits
      expect(await read(d, b)).toEqual([]); // 35
      expect(await read(d, stranger)).toEqual([]); // no account
      // anon: no policy lets it read (and, with Supabase's default privileges revoked, no grant)
      expect([[], '42501']).toContainEqual(await runAs.anon(d)('select title from public.documents').catch((e: { code?: string }) => e.code));
    }
    // b buys 20: 55 credits, the row shows; spends 10: 45, it is gone again
    for (const d of [db, pg]) {
      const ck: Creditkit = creditkit(runAs.service(d));
      await ck.grant({ p_account_id: b, p_amount: 20 });
      expect(await read(d, b)).toEqual([{ title: 'doc 2' }]);
      await ck.consume({ p_account_id: b, p_amount: 10, p_event: 'search' });
      expect(await read(d, b)).toEqual([]);
      expect(await read(d, a)).toEqual([{ title: 'doc 1' }]);
    }
  });
});
