// Credit checks inside Postgres, next to the app's own tables, and the price list behind them.
//
// Gating: a real example table (public.tasks) with RLS, an insert policy that uses
// creditkit_has_credits, a select policy for the owner, and the creditkit.charge_on_insert trigger,
// used by a signed-in user the way supabase-js would (role and JWT claims set locally), in
// transactions of several statements: the charge commits and rolls back with the insert.
// Pricing: dimensions, the default price, versions by effective_from, unknown events.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@creditkit/testing';
import { describeEachBackend } from '@creditkit/testing/vitest';
import {
  DAY, HOUR, at, beginAs, creditkit, expectConsistent, ledgerOf, newAccountId, outcome, runAs, snapshotBooks,
  type Creditkit,
} from './support.ts';

// The app's side: what a developer writes in their own migration (see docs/sql-api.md,
// "Insert trigger: charge in your own transaction").
const APP_SQL = `
  create table public.tasks (
    id bigint generated always as identity primary key,
    user_id uuid not null default auth.uid(),
    title text not null
  );
  alter table public.tasks enable row level security;
  -- the app's own policy, and the credit check as docs/sql-api.md shows it: restrictive
  create policy "members add their own tasks" on public.tasks for insert to authenticated
    with check (user_id = (select auth.uid()));
  create policy "adding a task needs 6 credits" on public.tasks as restrictive for insert to authenticated
    with check ((select public.creditkit_has_credits(6)));
  create policy "owners read their tasks" on public.tasks for select to authenticated
    using (user_id = (select auth.uid()));
  revoke all on public.tasks from anon;
  grant select, insert on public.tasks to authenticated;
  -- 2 units of 'task' per row (3 credits each: 6 a row)
  create trigger charge_task before insert on public.tasks
    for each row execute function creditkit.charge_on_insert('task', '2');

  -- team accounts: the row names the account to charge
  create table public.team_tasks (
    id bigint generated always as identity primary key,
    account_id uuid not null,
    title text not null
  );
  alter table public.team_tasks enable row level security;
  create policy "members add tasks to accounts they may read" on public.team_tasks for insert to authenticated
    with check (public.creditkit_has_credits(1, account_id));
  revoke all on public.team_tasks from anon;
  grant insert on public.team_tasks to authenticated;
  grant select, insert on public.team_tasks to service_role;
  create trigger charge_team_task before insert on public.team_tasks
    for each row execute function creditkit.charge_on_insert('task', '1', 'account_id');

  -- a table anyone may write to (the policy lets every insert through): only the trigger decides
  -- which account may be charged
  create table public.guestbook (
    id bigint generated always as identity primary key,
    account_id uuid not null,
    note text
  );
  alter table public.guestbook enable row level security;
  create policy "anyone may sign" on public.guestbook for insert to anon, authenticated with check (true);
  grant insert on public.guestbook to anon, authenticated;
  create trigger charge_guestbook before insert on public.guestbook
    for each row execute function creditkit.charge_on_insert('task', '1', 'account_id');

  -- a table gated by the policies alone (no trigger): the app's own policy and the restrictive check
  create table public.drafts (
    id bigint generated always as identity primary key,
    user_id uuid not null default auth.uid(),
    body text
  );
  alter table public.drafts enable row level security;
  create policy "members add their own drafts" on public.drafts for insert to authenticated
    with check (user_id = (select auth.uid()));
  create policy "adding a draft needs 6 credits" on public.drafts as restrictive for insert to authenticated
    with check ((select public.creditkit_has_credits(6)));
  grant select, insert on public.drafts to authenticated;

  -- the same pair of policies, the credit check left permissive: ORed with the app's own policy,
  -- it lets anyone through who may insert at all (why the docs say restrictive)
  create table public.notes (
    id bigint generated always as identity primary key,
    user_id uuid not null default auth.uid(),
    body text
  );
  alter table public.notes enable row level security;
  create policy "members add their own notes" on public.notes for insert to authenticated
    with check (user_id = (select auth.uid()));
  create policy "adding a note needs 6 credits" on public.notes for insert to authenticated
    with check ((select public.creditkit_has_credits(6)));
  grant select, insert on public.notes to authenticated;

  -- misuse: a trigger without its event argument, and one whose quantity is not a number
  create table public.misused (id int);
  grant insert on public.misused to authenticated;
  create trigger no_event before insert on public.misused for each row execute function creditkit.charge_on_insert();
  create table public.misused_quantity (id int);
  grant insert on public.misused_quantity to authenticated;
  create trigger bad_quantity before insert on public.misused_quantity
    for each row execute function creditkit.charge_on_insert('task', 'two');`;

// The trigger meters at now(): prices must already be in force in real time.
const LONG_AGO = '2020-01-01T00:00:00Z';

describeEachBackend('gating and pricing', (backend) => {
  let db: TestDatabase;
  let ck: Creditkit;
  beforeAll(async () => {
    db = await createTestDatabase({ backend });
    ck = creditkit(runAs.service(db));
    await db.exec(APP_SQL);
    await ck.setPrice({ p_event: 'task', p_credits_per_unit: 3, p_effective_from: LONG_AGO });
  });
  afterAll(() => db?.drop());

  /** A signed-in user with `credits` in their own account (none: no account at all). */
  async function member(credits: number | null): Promise<string> {
    const user = await db.createUser();
    if (credits !== null) await ck.grant({ p_account_id: user, p_amount: credits });
    return user;
  }
  const claims = (user: string) => ({ sub: user, role: 'authenticated' });
  const tasksOf = async (user: string) =>
    (await db.query<{ n: number }>('select count(*)::int as n from public.tasks where user_id = $1', [user]))[0]?.n;
  const balanceOf = async (account: string) =>
    (await db.query<{ balance: number }>('select balance from creditkit.accounts where id = $1', [account]))[0]?.balance;

  describe('charge_on_insert and creditkit_has_credits', () => {
    it('the documented restrictive has_credits policy refuses a user without credit beside a permissive own-rows policy, and admits one with credit', async () => {
      const broke = await member(5); // 5 credits: not the 6 a task needs
      const rich = await member(20);
      const draftsOf = async (user: string) =>
        (await db.query('select count(*)::int as n from public.drafts where user_id = $1', [user]))[0];
      await expect(db.asUser(broke, `insert into public.drafts (body) values ('free ride')`)).rejects.toMatchObject({ code: '42501' });
      expect(await draftsOf(broke)).toEqual({ n: 0 });
      await db.asUser(rich, `insert into public.drafts (body) values ('paid ride')`);
      expect(await draftsOf(rich)).toEqual({ n: 1 });
      // the opposite case: the same check as an ordinary (permissive) policy gates nothing
      await db.asUser(broke, `insert into public.notes (body) values ('free ride')`);
      expect(await db.query('select count(*)::int as n from public.notes where user_id = $1', [broke])).toEqual([{ n: 1 }]);
    });

    it('an insert charges the inserting user in the same transaction; the commit keeps both', async () => {
      const user = await member(20);
      const tx = await beginAs(db, 'authenticated', claims(user));
      try {
        const [task] = await tx.run<{ id: number; user_id: string }>(`insert into public.tasks (title) values ('draw a cat') returning id, user_id`);
        expect(task?.user_id).toBe(user);
        // inside the transaction the user already sees the charge
        expect(await tx.run('select balance from public.creditkit_my_balance()')).toEqual([{ balance: 14 }]);
        expect(await tx.run('select kind, amount, event from public.creditkit_my_history(p_limit => 1)')).toEqual([{ kind: 'consume', amount: -6, event: 'task' }]);
        await tx.commit();
      } finally {
        await tx.rollback();
      }
      expect(await tasksOf(user)).toBe(1);
      const rows = await ledgerOf(db, user);
      expect(rows.map((r) => [r.kind, r.amount, r.balance_after, r.event])).toEqual([['grant', 20, 20, null], ['consume', -6, 14, 'task']]);
      expect(rows[1]?.metadata).toEqual({ table: 'public.tasks', quantity: 2, dimensions: {}, unit_credits: 3, price_id: expect.any(Number) });
      // the owner reads their task through the select policy; someone else does not
      expect(await db.asUser(user, 'select title from public.tasks')).toEqual([{ title: 'draw a cat' }]);
      expect(await db.asUser(await member(null), 'select title from public.tasks')).toEqual([]);
      await expectConsistent(db, [user]);
    });

    it('a rollback of the whole transaction leaves no task and no charge', async () => {
      const user = await member(20);
      const before = await snapshotBooks(db);
      const tx = await beginAs(db, 'authenticated', claims(user));
      try {
        await tx.run(`insert into public.tasks (title) values ('one')`);
        await tx.run(`insert into public.tasks (title) values ('two')`);
        expect(await tx.run('select balance from public.creditkit_my_balance()')).toEqual([{ balance: 8 }]);
      } finally {
        await tx.rollback();
      }
      expect(await tasksOf(user)).toBe(0);
      expect(await snapshotBooks(db)).toEqual(before);
    });

    it('out of credit: CK002 and nothing written, also when only a later row of a multi-row insert cannot pay', async () => {
      const poor = await member(5);
      const some = await member(14);
      const before = await snapshotBooks(db);
      expect(await outcome(db.asUser(poor, `insert into public.tasks (title) values ('x')`))).toBe('CK002');
      // 14 credits pay for two rows of 6, not three: the statement fails whole
      expect(await outcome(db.asUser(some, `insert into public.tasks (title) values ('a'), ('b'), ('c')`))).toBe('CK002');
      expect(await snapshotBooks(db)).toEqual(before);
      expect([await tasksOf(poor), await tasksOf(some)]).toEqual([0, 0]);
      expect(await outcome(db.asUser(some, `insert into public.tasks (title) values ('a'), ('b')`))).toBe('ok');
      expect(await balanceOf(some)).toBe(2);
      await expectConsistent(db, [poor, some]);
    });

    it('exactly enough credit is enough (the policy sees the balance before this insert charged it)', async () => {
      const user = await member(6);
      expect(await outcome(db.asUser(user, `insert into public.tasks (title) values ('last one')`))).toBe('ok');
      expect(await balanceOf(user)).toBe(0);
      expect(await outcome(db.asUser(user, `insert into public.tasks (title) values ('one more')`))).toBe('CK002');
      await expectConsistent(db, [user]);
    });

    it('credit on hold cannot pay for an insert; a user with no credit account is refused like an empty one (CK002); anon cannot insert (42501)', async () => {
      const held = await member(10);
      await ck.reserve({ p_account_id: held, p_amount: 5, p_ttl: '1 hour' });
      const newcomer = await member(null);
      const before = await snapshotBooks(db);
      expect(await outcome(db.asUser(held, `insert into public.tasks (title) values ('x')`))).toBe('CK002');
      expect(await outcome(db.asUser(newcomer, `insert into public.tasks (title) values ('x')`))).toBe('CK002');
      expect(await outcome(db.asAnon(`insert into public.tasks (user_id, title) values ($1, 'x')`, [held]))).toBe('42501');
      expect(await snapshotBooks(db)).toEqual(before);
    });

    it('team accounts: the row names the account; only one the caller may read (CK005); a server insert must name it', async () => {
      const alice = await member(10);
      const bob = await member(10);
      expect(await outcome(db.asUser(alice, `insert into public.team_tasks (account_id, title) values ($1, 'mine')`, [alice]))).toBe('ok');
      const before = await snapshotBooks(db);
      expect(await outcome(db.asUser(alice, `insert into public.team_tasks (account_id, title) values ($1, 'on bob')`, [bob]))).toBe('CK005');
      // public.tasks has no account column: with no signed-in user there is no account to charge
      expect(await outcome(db.asService(`insert into public.tasks (user_id, title) values ($1, 'server')`, [alice]))).toBe('CK005');
      expect(await snapshotBooks(db)).toEqual(before);
      // the server may insert for any account it names
      expect(await outcome(db.asService(`insert into public.team_tasks (account_id, title) values ($1, 'by the server')`, [bob]))).toBe('ok');
      expect([await balanceOf(alice), await balanceOf(bob)]).toEqual([7, 7]);
      await expectConsistent(db, [alice, bob]);
    });

    it('a signed-in user cannot make someone else\'s account pay, even where the table\'s policy lets every insert through', async () => {
      const victim = await member(10);
      const outsider = await member(10);
      const before = await snapshotBooks(db);
      expect(await outcome(db.asUser(outsider, `insert into public.guestbook (account_id, note) values ($1, 'hi')`, [victim]))).toBe('CK005');
      expect(await snapshotBooks(db)).toEqual(before);
      expect(await outcome(db.asUser(outsider, `insert into public.guestbook (account_id, note) values ($1, 'hi')`, [outsider]))).toBe('ok');
      expect([await balanceOf(victim), await balanceOf(outsider)]).toEqual([10, 7]);
    });

    // With no user, only the server may name the account: anon and a JWT without a sub have no user either.
    it('anon, or a signed-in role without a user id, cannot make an account pay by naming it (CK005)', async () => {
      const victim = await member(10);
      const before = await snapshotBooks(db);
      const insert = `insert into public.guestbook (account_id, note) values ($1, 'free lunch')`;
      expect(await outcome(db.asAnon(insert, [victim]))).toBe('CK005');
      expect(await outcome(db.asRole('authenticated', { role: 'authenticated' }, insert, [victim]))).toBe('CK005');
      expect(await snapshotBooks(db)).toEqual(before);
    });

    it('a misused trigger refuses the insert with CK006', async () => {
      const user = await member(10);
      expect(await outcome(db.asUser(user, 'insert into public.misused values (1)'))).toBe('CK006');
      expect(await outcome(db.asUser(user, 'insert into public.misused_quantity values (1)'))).toBe('CK006');
      expect(await balanceOf(user)).toBe(10);
    });

    it('creditkit_has_credits: the member\'s spendable credit; false for an outsider or without a sub; anon may not call it (42501)', async () => {
      const user = await member(10);
      // an expired bucket does not count even though nothing booked it yet
      const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000).toISOString();
      const hourAgo = new Date(Date.now() - 3_600_000).toISOString();
      await ck.grant({ p_account_id: user, p_amount: 100, p_category: 'promotional', p_expires_at: hourAgo, p_now: twoHoursAgo });
      const me = creditkit(runAs.user(db, user));
      const outsider = creditkit(runAs.user(db, await member(50)));
      const check = async (who: Creditkit, args: Record<string, unknown>) => who.hasCredits(args);
      expect(await check(me, {})).toBe(true);
      expect(await check(me, { p_amount: 10 })).toBe(true);
      expect(await check(me, { p_amount: 11 })).toBe(false);
      expect(await check(me, { p_amount: 10, p_account_id: user })).toBe(true);
      await ck.reserve({ p_account_id: user, p_amount: 4, p_ttl: '1 hour' }); // holds lower what is spendable
      expect(await check(me, { p_amount: 7 })).toBe(false);
      expect(await check(me, { p_amount: 6 })).toBe(true);
      // no oracle on anyone else's balance: false, never an error
      expect(await check(outsider, { p_amount: 1, p_account_id: user })).toBe(false);
      expect(await check(outsider, { p_amount: 1, p_account_id: newAccountId() })).toBe(false);
      expect(await creditkit(runAs.role(db, 'authenticated', { role: 'authenticated' })).hasCredits({ p_amount: 1, p_account_id: user })).toBe(false);
      expect(await outcome(creditkit(runAs.anon(db)).hasCredits({ p_amount: 1, p_account_id: user }))).toBe('42501');
      expect(await outcome(ck.hasCredits({ p_amount: 1, p_account_id: user }))).toBe('42501'); // not for the server key either
      expect(await outcome(check(me, { p_amount: 0 }))).toBe('CK001');
    });
  });

  describe('pricing', () => {
    const T = at(HOUR);

    it('the most specific matching dimension set wins; {} is the default; unknown dimensions are ignored', async () => {
      const ids = {
        base: await ck.setPrice({ p_event: 'img', p_credits_per_unit: 2, p_effective_from: at(0) }),
        hd: await ck.setPrice({ p_event: 'img', p_credits_per_unit: 5, p_dimensions: { quality: 'hd' }, p_effective_from: at(0) }),
        xl: await ck.setPrice({ p_event: 'img', p_credits_per_unit: 4, p_dimensions: { size: 'xl' }, p_effective_from: at(0) }),
        hdXl: await ck.setPrice({ p_event: 'img', p_credits_per_unit: 9, p_dimensions: { quality: 'hd', size: 'xl' }, p_effective_from: at(0) }),
      };
      const cases: Array<[Record<string, unknown>, keyof typeof ids, number]> = [
        [{}, 'base', 2],
        [{ quality: 'sd' }, 'base', 2],
        [{ quality: 'HD' }, 'base', 2], // values match exactly
        [{ quality: 'hd' }, 'hd', 5],
        [{ size: 'xl' }, 'xl', 4],
        [{ quality: 'hd', size: 'm' }, 'hd', 5],
        [{ quality: 'hd', size: 'xl' }, 'hdXl', 9],
        [{ quality: 'hd', size: 'xl', seed: 7, upscale: true }, 'hdXl', 9],
      ];
      const got = [];
      for (const [dimensions] of cases) got.push(await ck.quote({ p_event: 'img', p_quantity: 3, p_dimensions: dimensions, p_now: T }));
      expect(got).toEqual(cases.map(([, price, unit]) => ({ price_id: ids[price], unit_credits: unit, amount: 3 * unit, unit: 'credits', overage_amount: null })));
      // signed-in users may quote as well; anon may not
      const user = await member(null);
      expect(await creditkit(runAs.user(db, user)).quote({ p_event: 'img', p_dimensions: { quality: 'hd' }, p_now: T })).toEqual({ price_id: ids.hd, unit_credits: 5, amount: 5, unit: 'credits', overage_amount: null });
      expect(await outcome(creditkit(runAs.anon(db)).quote({ p_event: 'img', p_now: T }))).toBe('42501');

      // metering uses the same lookup and records it
      const account = newAccountId();
      await ck.grant({ p_account_id: account, p_amount: 100, p_now: at(0) });
      const charged = await ck.meter({ p_account_id: account, p_event: 'img', p_quantity: 2, p_dimensions: { quality: 'hd', size: 'xl' }, p_cost_micros: 4000, p_metadata: { model: 'flux' }, p_now: T });
      expect(charged).toEqual({ allowed: true, balance: 82, transaction_id: expect.any(Number), amount: 18, unit: 'credits' });
      const [row] = await db.query('select kind, amount, event, cost_micros, metadata from creditkit.ledger where id = $1', [charged.transaction_id]);
      expect(row).toEqual({
        kind: 'consume', amount: -18, event: 'img', cost_micros: 4000,
        metadata: { model: 'flux', quantity: 2, dimensions: { quality: 'hd', size: 'xl' }, unit_credits: 9, price_id: ids.hdXl },
      });
      await expectConsistent(db, [account]);
    });

    it('versions: a price applies from its effective_from on, past usage is never re-priced, the same version again replaces it', async () => {
      const v1 = await ck.setPrice({ p_event: 'ver', p_credits_per_unit: 10, p_effective_from: at(DAY) });
      const v2 = await ck.setPrice({ p_event: 'ver', p_credits_per_unit: 12, p_effective_from: at(2 * DAY) });
      const quote = (now: number, dimensions: Record<string, unknown> = {}) => ck.quote({ p_event: 'ver', p_dimensions: dimensions, p_now: at(now) });
      expect(await outcome(quote(DAY - 1))).toBe('CK010');
      expect(await quote(DAY)).toEqual({ price_id: v1, unit_credits: 10, amount: 10, unit: 'credits', overage_amount: null });
      expect(await quote(2 * DAY - 1)).toEqual({ price_id: v1, unit_credits: 10, amount: 10, unit: 'credits', overage_amount: null });
      expect(await quote(2 * DAY)).toEqual({ price_id: v2, unit_credits: 12, amount: 12, unit: 'credits', overage_amount: null });

      const account = newAccountId();
      await ck.grant({ p_account_id: account, p_amount: 100, p_now: at(0) });
      const first = await ck.meter({ p_account_id: account, p_event: 'ver', p_now: at(DAY + HOUR) });
      const second = await ck.meter({ p_account_id: account, p_event: 'ver', p_now: at(2 * DAY) });
      expect([first.amount, second.amount]).toEqual([10, 12]);

      // replacing version 1 changes quotes from then on, not the row already charged at 10
      expect(await ck.setPrice({ p_event: 'ver', p_credits_per_unit: 11, p_effective_from: at(DAY) })).toBe(v1);
      expect(await quote(DAY)).toEqual({ price_id: v1, unit_credits: 11, amount: 11, unit: 'credits', overage_amount: null });
      const rows = await db.query<{ amount: number; unit: number }>(
        `select amount, (metadata->>'unit_credits')::bigint as unit from creditkit.ledger where account_id = $1 and kind = 'consume' order by id`, [account]);
      expect(rows).toEqual([{ amount: -10, unit: 10 }, { amount: -12, unit: 12 }]);
      // a newer dimensioned version only concerns its dimension set; the more specific still wins over a newer default
      const pro = await ck.setPrice({ p_event: 'ver', p_credits_per_unit: 6, p_dimensions: { tier: 'pro' }, p_effective_from: at(DAY + HOUR) });
      const v3 = await ck.setPrice({ p_event: 'ver', p_credits_per_unit: 15, p_effective_from: at(3 * DAY) });
      expect(await quote(3 * DAY, { tier: 'pro' })).toEqual({ price_id: pro, unit_credits: 6, amount: 6, unit: 'credits', overage_amount: null });
      expect(await quote(3 * DAY)).toEqual({ price_id: v3, unit_credits: 15, amount: 15, unit: 'credits', overage_amount: null });
      expect(await quote(DAY + HOUR - 1, { tier: 'pro' })).toEqual({ price_id: v1, unit_credits: 11, amount: 11, unit: 'credits', overage_amount: null });
      await expectConsistent(db, [account]);
    });

    it('an event with no price in force is CK010 and meters nothing; a blocked meter is an answer; a key replays its first result', async () => {
      await ck.setPrice({ p_event: 'only-hd', p_credits_per_unit: 5, p_dimensions: { quality: 'hd' }, p_effective_from: at(0) });
      await ck.setPrice({ p_event: 'later', p_credits_per_unit: 1, p_effective_from: at(DAY) });
      await ck.setPrice({ p_event: 'chat', p_credits_per_unit: 4, p_effective_from: at(0) });
      const account = newAccountId();
      await ck.grant({ p_account_id: account, p_amount: 10, p_now: at(0) });
      const before = await snapshotBooks(db);
      const meter = (event: string, extra: Record<string, unknown> = {}) => ck.meter({ p_account_id: account, p_event: event, p_now: T, ...extra });
      expect(await outcome(meter('never-priced'))).toBe('CK010');
      expect(await outcome(meter('only-hd'))).toBe('CK010');
      expect(await outcome(meter('only-hd', { p_dimensions: { quality: 'sd' } }))).toBe('CK010');
      expect(await outcome(meter('later'))).toBe('CK010');
      expect(await outcome(ck.quote({ p_event: 'never-priced', p_now: T }))).toBe('CK010');
      // more than the balance: blocked, with what it would have cost
      expect(await meter('chat', { p_quantity: 3 })).toEqual({ allowed: false, balance: 10, transaction_id: null, amount: 12, unit: 'credits' });
      expect(await snapshotBooks(db)).toEqual(before);

      const first = await meter('chat', { p_quantity: 2, p_idempotency_key: 'job-7' });
      expect(first).toEqual({ allowed: true, balance: 2, transaction_id: expect.any(Number), amount: 8, unit: 'credits' });
      await ck.setPrice({ p_event: 'chat', p_credits_per_unit: 1, p_effective_from: at(1) });
      await ck.grant({ p_account_id: account, p_amount: 5, p_now: T });
      // the retry answers what the first call did, although the price and the balance changed since
      expect(await meter('chat', { p_quantity: 2, p_idempotency_key: 'job-7' })).toEqual(first);
      expect(await outcome(meter('chat', { p_quantity: 3, p_idempotency_key: 'job-7' }))).toBe('CK004');
      expect(await outcome(meter('chat', { p_quantity: 2, p_dimensions: { fast: true }, p_idempotency_key: 'job-7' }))).toBe('CK004');
      expect(await meter('chat', { p_quantity: 2 })).toMatchObject({ allowed: true, amount: 2, balance: 5 });
      await expectConsistent(db, [account]);
    });

    // A metered row's metadata carries the kit's quantity, dimensions, unit_credits and price_id;
    // a caller's own keys of those names would be overwritten or break replay matching, so they are refused.
    it('metadata keys reserved for metering are refused (CK006) and change nothing; other keys replay', async () => {
      await ck.setPrice({ p_event: 'meta', p_credits_per_unit: 2, p_effective_from: at(0) });
      const account = newAccountId();
      await ck.grant({ p_account_id: account, p_amount: 100, p_now: at(0) });
      const before = await snapshotBooks(db);
      for (const key of ['price_id', 'unit_credits', 'quantity', 'dimensions']) {
        const call = { p_account_id: account, p_event: 'meta', p_idempotency_key: `job-${key}`, p_metadata: { [key]: 'x' }, p_now: T };
        expect(await outcome(ck.meter(call))).toBe('CK006');
      }
      expect(await snapshotBooks(db)).toEqual(before);
      const call = { p_account_id: account, p_event: 'meta', p_idempotency_key: 'job-ok', p_metadata: { job: 'price_123' }, p_now: T };
      const first = await ck.meter(call);
      expect(await ck.meter(call)).toEqual(first);
    });
  });
});
