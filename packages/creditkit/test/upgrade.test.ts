// Versioned upgrades: a database installed at each earlier release (the frozen copy of its
// migrations in test/releases/<version>/), with data in every domain — grants with and without
// expiry, consumes, a metered event, an open and a settled hold, a subscription from Stripe
// Checkout with its invoice, a pack bought through Stripe, a parked dead letter — is upgraded with
// the chain of scripts this package ships. Afterwards its catalog is a fresh install's (every
// table, column, index, constraint, policy, privilege, function body and setting:
// scripts/catalog/snapshot.sql), its books are what they were (every balance, bucket, hold and
// ledger row now in the credits unit) and balance, the old calls still work, and each upgrade's
// own change is in force. On PGlite, the same path an embedded database persisted at the old
// version takes.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { PGlite } from '@electric-sql/pglite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  compareVersions,
  migrations,
  pgConnection,
  pgliteConnection,
  setupDatabase,
  upgradePath,
  upgrades,
  version,
  type SetupConnection,
} from 'creditkit';
import { claimsFor, createTestDatabase, requestSettings, SET_REQUEST, type Row, type TestDatabase } from '@creditkit/testing';
import { describeIfPostgres } from '@creditkit/testing/vitest';
import { at, creditkit, DAY, HOUR, ledgerProblems, newAccountId, outcome, snapshotBooks, type Creditkit } from './support.ts';
import {
  checkoutCompleted, createCatalogue, invoicePaid, otherEvent, packPurchase, PACK, PLANS, subscriptionCheckoutCompleted,
  subscriptionFixture, unix,
} from './stripe-fixtures.ts';

const RELEASES = fileURLToPath(new URL('./releases/', import.meta.url));
const SNAPSHOT_SQL = readFileSync(fileURLToPath(new URL('../../../scripts/catalog/snapshot.sql', import.meta.url)), 'utf8');
/** Every release this repository keeps a frozen copy of, oldest first. */
const OLD_RELEASES = readdirSync(RELEASES).sort(compareVersions);

interface CatalogRow {
  kind: string;
  name: string;
  detail: unknown;
}

/** The kit's catalog; seeded catalogue rows only where the test wrote none (error codes). */
async function catalog(conn: Pick<SetupConnection, 'query'>): Promise<Map<string, string>> {
  const rows = await conn.query<CatalogRow>(SNAPSHOT_SQL);
  return new Map(
    rows.filter((r) => r.kind !== 'row' || r.name.startsWith('error_codes.')).map((r) => [`${r.kind} ${r.name}`, JSON.stringify(r.detail)]),
  );
}

/** The keys whose descriptions differ between two catalogs (empty: the same kit). */
function differences(a: Map<string, string>, b: Map<string, string>): string[] {
  return [...new Set([...a.keys(), ...b.keys()])].filter((k) => a.get(k) !== b.get(k)).sort();
}

/** A SetupConnection's statements run as the service role would through PostgREST. */
function asService(conn: SetupConnection) {
  return async <T = Row>(sql: string, params?: unknown[]): Promise<T[]> => {
    let rows: T[] = [];
    await conn.transaction(async (tx) => {
      await tx.query(SET_REQUEST, requestSettings('service_role', claimsFor.service));
      rows = await tx.query<T>(sql, params);
    });
    return rows;
  };
}

describe('the upgrade scripts this package ships', () => {
  it('form one chain from every frozen release to this version, the newest ending at it', () => {
    expect(OLD_RELEASES.length).toBeGreaterThan(0);
    for (const release of OLD_RELEASES) {
      const path = upgradePath(release, version);
      expect(path.length, release).toBeGreaterThan(0);
      expect(path.at(-1)!.to).toBe(version);
    }
    expect(upgrades().at(-1)!.to).toBe(version);
    expect(upgradePath(version, version)).toEqual([]);
    expect(() => upgradePath('99.0.0', version)).toThrow(/newer than this package/);
  });

  it('each script states what it changes on its first line and sets creditkit.version() to its target', () => {
    for (const u of upgrades()) {
      expect(u.sql.split('\n')[0]).toMatch(new RegExp(`^-- creditkit ${u.from.replace(/\./g, '\\.')} -> ${u.to.replace(/\./g, '\\.')}: \\S`));
      expect(u.sql).toMatch(new RegExp(`function creditkit\\.version\\(\\)[^$]*\\$\\$ select '${u.to.replace(/\./g, '\\.')}' \\$\\$`));
    }
  });
});

/** Data in every domain, written through the API of the old version. Returns the accounts. */
async function writeData(ck: Creditkit): Promise<{ ada: string; grace: string; linus: string; holdOpen: number; keyed: number }> {
  const [ada, grace, linus] = [newAccountId(), newAccountId(), newAccountId()];
  const now = at(0);
  await createCatalogue(ck);
  await ck.setPrice({ p_event: 'image', p_credits_per_unit: 3, p_dimensions: {}, p_effective_from: at(-DAY) });
  await ck.grant({ p_account_id: ada, p_amount: 100, p_category: 'purchase', p_idempotency_key: 'buy-1', p_now: now });
  await ck.grant({ p_account_id: ada, p_amount: 40, p_category: 'promotional', p_expires_at: at(2 * DAY), p_now: now });
  const keyed = await ck.consume({ p_account_id: ada, p_amount: 7, p_event: 'chat', p_idempotency_key: 'req-1', p_now: at(HOUR) });
  await ck.meter({ p_account_id: ada, p_event: 'image', p_quantity: 2, p_idempotency_key: 'img-1', p_now: at(HOUR) });
  const open = await ck.reserve({ p_account_id: ada, p_amount: 30, p_ttl: '1 day', p_now: at(2 * HOUR) });
  const settled = await ck.reserve({ p_account_id: ada, p_amount: 20, p_ttl: '1 day', p_now: at(2 * HOUR) });
  await ck.settleHold({ p_hold_id: settled.hold_id, p_actual: 12, p_now: at(3 * HOUR) });
  // Stripe: grace subscribes through Checkout (and its first invoice is paid), linus buys a pack
  const s = subscriptionFixture({ account: grace, planId: PLANS.pro.id, priceId: PLANS.pro.price, start: unix(0) });
  const apply = (event: unknown, sec: number) => ck.call('creditkit_stripe_apply', { p_event: event, p_now: at((sec - unix(0) + 5) * 1_000_000) });
  await apply(subscriptionCheckoutCompleted(s, { created: unix(0) + 2 }), unix(0) + 2);
  await apply(invoicePaid(s, { created: unix(0) + 3, billingReason: 'subscription_create', periodStart: unix(0), periodEnd: unix(30 * 86400) }), unix(0) + 3);
  const p = packPurchase({ account: linus, packId: PACK.id, priceId: PACK.price, amount: PACK.amount });
  await apply(checkoutCompleted(p, { created: unix(0) + 10 }), unix(0) + 10);
  await apply(otherEvent('customer.created', { created: unix(0) + 11 }), unix(0) + 11);
  await ck.consume({ p_account_id: linus, p_amount: 5, p_event: 'chat', p_now: at(HOUR) });
  return { ada, grace, linus, holdOpen: Number(open.hold_id), keyed: Number(keyed.transaction_id) };
}

/** Data of a release with units (0.2.0 on): a second unit with a grant, a spend and a plan limit. */
async function writeUnitData(ck: Creditkit, account: string): Promise<void> {
  await ck.upsertUnit({ p_id: 'messages', p_name: 'Messages', p_kind: 'metered' });
  await ck.setPlanLimit({ p_plan_id: PLANS.basic.id, p_unit: 'messages', p_allowance: 50, p_period: 'day' });
  await ck.grant({ p_account_id: account, p_amount: 30, p_unit: 'messages', p_now: at(HOUR) });
  await ck.consume({ p_account_id: account, p_amount: 5, p_unit: 'messages', p_idempotency_key: 'msg-1', p_now: at(2 * HOUR) });
}

/** The installed version, as the CLI and the app read it. */
async function installedVersion(conn: Pick<SetupConnection, 'query'>): Promise<string> {
  const [row] = await conn.query<{ version: string }>('select creditkit.version() as version');
  return row!.version;
}

/** An old release's migrations, as an app that installed it has them. */
const oldMigrations = (release: string) => migrations(join(RELEASES, release));

/**
 * What each upgrade changes, as something a database answers: the answer before it (on the old
 * release) and after it (on this version) must differ as stated.
 */
const CHANGES: { to: string; what: string; probe: (conn: SetupConnection, ada: string) => Promise<string>; before: string; after: string }[] = [
  {
    to: '0.1.1',
    what: 'an infinite p_now is CK006',
    // rolled back: the old version accepted it, and booked every expiry
    probe: async (conn, ada) => {
      await conn.exec('begin');
      try {
        await conn.query(SET_REQUEST, requestSettings('service_role', claimsFor.service));
        return await outcome(conn.query(`select * from creditkit_consume($1, 1, 'chat', p_now => 'infinity')`, [ada]));
      } finally {
        await conn.exec('rollback');
      }
    },
    before: 'ok',
    after: 'CK006',
  },
  {
    to: '0.1.2',
    what: 'the API functions plan with enable_seqscan = off',
    probe: async (conn) => {
      const [row] = await conn.query<{ off: boolean }>(
        `select coalesce('enable_seqscan=off' = any(proconfig), false) as off from pg_proc
          where oid = 'public.creditkit_meter(uuid,text,bigint,jsonb,text,bigint,jsonb,timestamptz)'::regprocedure`,
      );
      return row!.off ? 'off' : 'default';
    },
    before: 'default',
    after: 'off',
  },
  {
    to: '0.2.0',
    what: 'the unit catalogue exists',
    probe: async (conn) => {
      const [row] = await conn.query<{ present: boolean }>(`select to_regclass('creditkit.units') is not null as present`);
      return row!.present ? 'present' : 'absent';
    },
    before: 'absent',
    after: 'present',
  },
  {
    to: '0.3.0',
    what: 'a debit that crosses a threshold writes balance.low',
    // rolled back: the probe leaves the account as it was
    probe: async (conn, ada) => {
      await conn.exec('begin');
      try {
        if (!(await conn.query<{ present: boolean }>(`select to_regclass('creditkit.notifications') is not null as present`))[0]!.present) {
          return 'no alerts';
        }
        // a threshold just below the balance, then a consume that crosses it
        await conn.query(
          `select * from creditkit_set_account_balance_alert($1, 'credits',
             (select greatest(a.balance - a.held, 0) - 1 from creditkit.accounts a where a.id = $1 and a.unit = 'credits'))`, [ada]);
        await conn.query(`select * from creditkit_consume($1, 1, p_now => $2)`, [ada, at(6 * HOUR)]);
        await conn.exec('set constraints all immediate');
        const [row] = await conn.query<{ n: number }>(
          `select count(*)::int as n from creditkit.notifications where account_id = $1 and type = 'balance.low'`, [ada]);
        return row!.n === 1 ? 'balance.low' : `${row!.n} events`;
      } finally {
        await conn.exec('rollback');
      }
    },
    before: 'no alerts',
    after: 'balance.low',
  },
];

/** The books with each row's unit (and a price's empty overage rule, an account's empty alert level) left out, and the units they name: a 0.1.x install has none. */
function withoutUnits(books: Row): { books: Row; units: string[] } {
  const units = new Set<string>();
  const strip = (rows: unknown) =>
    (rows as Array<Record<string, unknown>>).map((r) => {
      const row = { ...r };
      if ('unit' in row) units.add(String(row.unit));
      delete row.unit;
      // (a price's overage rule is new too: none of the old prices has one)
      if ('overage_credits_per_unit' in row && row.overage_credits_per_unit === null) delete row.overage_credits_per_unit;
      // (nor is an account's alert level: nothing is watched after an upgrade)
      if ('alert_at' in row && row.alert_at === null) delete row.alert_at;
      return row;
    });
  const stripped = Object.fromEntries(
    Object.entries(books).map(([table, rows]) => [table, Array.isArray(rows) ? strip(rows) : rows]),
  );
  return { books: stripped, units: [...units] };
}

for (const from of OLD_RELEASES) describeIfPostgres(`an install of ${from} upgraded to ${version}`, () => {
  const changes = CHANGES.filter((c) => compareVersions(c.to, from) > 0);
  let db: TestDatabase;
  let fresh: TestDatabase;
  let client: pg.Client;
  let conn: SetupConnection;
  let ck: Creditkit;
  let accounts: Awaited<ReturnType<typeof writeData>>;
  let booksBefore: Row;
  const answersBefore: string[] = [];
  let applied: string[];

  beforeAll(async () => {
    [db, fresh] = await Promise.all([
      createTestDatabase({ backend: 'postgres', migrate: false }),
      createTestDatabase({ backend: 'postgres' }),
    ]);
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
    conn = pgConnection(client);
    await setupDatabase(conn, { migrations: oldMigrations(from), upgrade: false });
    ck = creditkit(asService(conn));
    accounts = await writeData(ck);
    if (compareVersions(from, '0.2.0') >= 0) await writeUnitData(ck, accounts.ada);
    // the app's own table, gated by a restrictive creditkit_has_credits policy (the README's pattern)
    await conn.exec(`
      create table public.upgrade_tasks (id bigint generated always as identity primary key,
                                         owner uuid not null default auth.uid());
      alter table public.upgrade_tasks enable row level security;
      grant select, insert on public.upgrade_tasks to authenticated;
      create policy "own tasks" on public.upgrade_tasks for all to authenticated
        using (owner = (select auth.uid())) with check (owner = (select auth.uid()));
      create policy "a task needs 4 credits" on public.upgrade_tasks as restrictive for insert to authenticated
        with check ((select creditkit_has_credits(4)));`);
    booksBefore = await snapshotBooks(db);
    for (const change of changes) answersBefore.push(await change.probe(conn, accounts.ada));
    // the upgrade: the shipped migrations are recorded already, so only the upgrade scripts run
    applied = (await setupDatabase(conn)).map((m) => m.name);
  }, 120_000);
  afterAll(async () => {
    await client?.end();
    await Promise.all([db?.drop(), fresh?.drop()]);
  });

  it('was at the old version, and the upgrade applied exactly the scripts from it', async () => {
    expect(applied).toEqual(upgradePath(from, version).map((u) => u.name));
    expect(await installedVersion(conn)).toBe(version);
    const history = await db.query<{ version: string }>(
      `select version from supabase_migrations.schema_migrations where version like 'creditkit-%' order by version`,
    );
    expect(history.map((h) => h.version)).toEqual(upgradePath(from, version).map((u) => `creditkit-${u.to}`));
  });

  it('has the catalog of a fresh install: the same objects, definitions, privileges and settings', async () => {
    const [upgraded, installed] = await Promise.all([catalog(db), catalog(fresh)]);
    expect(upgraded.size).toBeGreaterThan(300);
    expect(differences(upgraded, installed)).toEqual([]);
  });

  it('kept the books exactly, every balance, bucket, hold and ledger row now in credits, and they balance', async () => {
    const after = withoutUnits(await snapshotBooks(db));
    expect(after.books).toEqual(withoutUnits(booksBefore).books);
    // a 0.1.x install had no units: its rows are all credits now; a later one keeps its units
    const units = compareVersions(from, '0.2.0') >= 0 ? ['credits', 'messages'] : ['credits'];
    expect(withoutUnits(booksBefore).units.sort()).toEqual(compareVersions(from, '0.2.0') >= 0 ? units : []);
    expect(after.units.sort()).toEqual(units);
    const [ledger] = await db.query<{ rows: number; units: string[] }>(
      'select count(*)::int as rows, array_agg(distinct unit order by unit) as units from creditkit.ledger');
    expect(ledger).toEqual({ rows: Number(booksBefore.ledger_rows), units });
    expect(await ledgerProblems(db)).toEqual([]);
  });

  it('left no overload behind: each kit function has one signature', async () => {
    const rows = await db.query(
      `select n.nspname || '.' || p.proname as name, count(*)::int as n
         from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'creditkit' or (n.nspname = 'public' and p.proname like 'creditkit\\_%')
        group by 1 having count(*) > 1`);
    expect(rows).toEqual([]);
  });

  it('answers the old calls: a replayed key, the open hold, the Stripe inbox, a signed-in user', async () => {
    const replay = await ck.consume({ p_account_id: accounts.ada, p_amount: 7, p_event: 'chat', p_idempotency_key: 'req-1', p_now: at(4 * HOUR) });
    expect(Number(replay.transaction_id)).toBe(accounts.keyed); // the first answer, not a second charge
    const settled = await ck.settleHold({ p_hold_id: accounts.holdOpen, p_actual: 25, p_now: at(5 * HOUR) });
    expect(Number(settled.charged)).toBe(25);
    const [dead] = await ck.call('creditkit_stripe_events', { p_status: 'ignored' });
    expect(dead).toBeDefined();
    const [mine] = await db.asUser(accounts.grace, 'select * from creditkit_my_balance()');
    expect(Number(mine!.balance)).toBe(PLANS.pro.allowance);
    expect(await ledgerProblems(db)).toEqual([]);
  });

  it("has each upgrade's change in force, and did not before", async () => {
    expect(changes.map((c) => c.to)).toEqual(upgradePath(from, version).map((u) => u.to));
    for (const [i, change] of changes.entries()) {
      expect(answersBefore[i], `${change.to}: ${change.what}, before`).toBe(change.before);
      expect(await change.probe(conn, accounts.ada), `${change.to}: ${change.what}, after`).toBe(change.after);
    }
    if (changes.some((c) => c.to === '0.1.1')) {
      expect(await outcome(ck.consume({ p_account_id: accounts.ada, p_amount: 1, p_event: 'chat', p_metadata: { hold_id: 1 } }))).toBe('CK006');
    }
  });

  it("has 0.2.0's units: the old balances answer in credits, another unit is its own balance, limits renew", async () => {
    const before = await ck.balance({ p_account_id: accounts.ada, p_now: at(6 * HOUR) });
    expect(await ck.check({ p_account_id: accounts.ada, p_unit: 'credits', p_amount: 1, p_now: at(6 * HOUR) }))
      .toEqual({ allowed: true, balance: before.balance });
    await ck.upsertUnit({ p_id: 'messages', p_name: 'Messages', p_kind: 'metered' });
    expect(await outcome(ck.report({ p_account_id: accounts.ada, p_unit: 'nope', p_amount: 1, p_now: at(6 * HOUR) }))).toBe('CK015');
    await ck.setPlanLimit({ p_plan_id: PLANS.pro.id, p_unit: 'messages', p_allowance: 30, p_period: 'day' });
    // grace is on pro (through Stripe): her messages open with the day's 30 (this connection reads bigint as text)
    const report = await ck.report({ p_account_id: accounts.grace, p_unit: 'messages', p_amount: 4, p_idempotency_key: 'm-1', p_now: at(6 * HOUR) });
    expect([report.allowed, Number(report.balance)]).toEqual([true, 26]);
    expect(await outcome(ck.consume({ p_account_id: accounts.grace, p_amount: 4, p_idempotency_key: 'm-1', p_now: at(6 * HOUR) }))).toBe('CK004');
    expect(Number((await ck.check({ p_account_id: accounts.grace, p_unit: 'messages', p_amount: 1, p_now: at(DAY + HOUR) })).balance)).toBe(30);
    expect((await ck.balance({ p_account_id: accounts.ada, p_now: at(6 * HOUR) })).balance).toBe(before.balance);
    expect(await ledgerProblems(db)).toEqual([]);
  });

  it("kept the app's policy that calls creditkit_has_credits, and it still gates on credits", async () => {
    const [policy] = await db.query<{ permissive: string; with_check: string }>(
      `select permissive, with_check from pg_policies where tablename = 'upgrade_tasks' and policyname = 'a task needs 4 credits'`);
    expect(policy).toMatchObject({ permissive: 'RESTRICTIVE', with_check: expect.stringContaining('creditkit_has_credits') });
    expect(await db.asUser(accounts.grace, 'insert into public.upgrade_tasks default values returning id')).toHaveLength(1);
    expect(await outcome(db.asUser(newAccountId(), 'insert into public.upgrade_tasks default values'))).toBe('42501');
  });

  it('is left alone by a second setup: nothing to apply', async () => {
    expect(await setupDatabase(conn)).toEqual([]);
  });
});

for (const PREVIOUS of OLD_RELEASES) describe(`an embedded (PGlite) database persisted at ${PREVIOUS}, opened by this package [pglite]`, () => {
  let db: PGlite;
  afterAll(() => db?.close());

  it('is upgraded by setupDatabase, keeps its books, and has a fresh install\'s catalog', async () => {
    db = new PGlite();
    const conn = pgliteConnection(db);
    await setupDatabase(conn, { migrations: oldMigrations(PREVIOUS), upgrade: false });
    expect(await installedVersion(conn)).toBe(PREVIOUS);
    const ck = creditkit(asService(conn));
    const { ada } = await writeData(ck);
    const before = await ck.balance({ p_account_id: ada, p_now: at(4 * HOUR) });

    const applied = await setupDatabase(conn);
    expect(applied.map((m) => m.name)).toEqual(upgradePath(PREVIOUS, version).map((u) => u.name));
    expect(await installedVersion(conn)).toBe(version);
    expect(await ck.balance({ p_account_id: ada, p_now: at(4 * HOUR) })).toEqual(before);
    expect(await ledgerProblems({ query: (sql, params) => conn.query(sql, params) })).toEqual([]);

    const other = new PGlite();
    try {
      await setupDatabase(pgliteConnection(other));
      expect(differences(await catalog(conn), await catalog(pgliteConnection(other)))).toEqual([]);
    } finally {
      await other.close();
    }
  }, 120_000);
});
