// Races and routing on the Citus cluster (issue 25): the kit placed by distribute.sql as
// `creditkit distribute` places it (no delegation), every call through the coordinator as the
// service role, each in its own transaction on its own connection as PostgREST runs an RPC.
//  - 200 concurrent consume(1) on a balance of 100, for an account on each worker at once: exactly
//    100 succeed on each, never below zero, the books of each account hold;
//  - a consume for one account reaches only the worker that holds it (citus.log_remote_commands);
//  - Stripe pack purchases, a redelivery and a refund for accounts on both workers land once each.
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { CitusDatabase, Row } from '@creditkit/testing';
import { describeIfCitus } from '@creditkit/testing/vitest';
import { at, creditkit, newGauge, pooledRunner, runAs, warmPool, type Creditkit, type Gauge } from './support.ts';
import { chargeRefunded, checkoutCompleted, packPurchase } from './stripe-fixtures.ts';
import { accountsWithWorkers, distributedDatabase, expectBooks } from './citus-support.ts';

const CONNECTIONS = 40;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describeIfCitus('races and routing on Citus', () => {
  let db: CitusDatabase;
  let pool: pg.Pool;

  beforeAll(async () => {
    db = await distributedDatabase();
    pool = db.pool({ max: CONNECTIONS });
    await warmPool(pool, CONNECTIONS);
  }, 300_000);

  afterAll(async () => {
    await pool?.end();
    await db?.drop();
  }, 120_000);

  it('200 concurrent consume(1) on a balance of 100, for an account on each worker at once: exactly 100 succeed on each, never below zero', async () => {
    const gauge: Gauge = newGauge();
    const ck: Creditkit = creditkit(pooledRunner(pool, 'service_role', { role: 'service_role' }, gauge));
    const accounts = (await accountsWithWorkers(db)).map((a) => a.account);
    for (const account of accounts) await ck.grant({ p_account_id: account, p_amount: 100, p_now: at(0) });
    const calls = accounts.flatMap((account) => range(200).map(() => ({ account })));
    const answers = await Promise.all(
      calls.map(async ({ account }) => ({ account, ...(await ck.consume({ p_account_id: account, p_amount: 1, p_now: at(1) })) })),
    );
    expect(gauge.max).toBeGreaterThan(10);
    for (const account of accounts) {
      const mine = answers.filter((a) => a.account === account);
      const allowed = mine.filter((a) => a.allowed);
      expect(allowed).toHaveLength(100);
      expect(new Set(allowed.map((a) => a.transaction_id)).size).toBe(100);
      expect(allowed.map((a) => a.balance).sort((x, y) => x - y)).toEqual(range(100));
      expect(mine.filter((a) => !a.allowed).every((a) => a.balance === 0 && a.transaction_id === null)).toBe(true);
      const [ledger] = await db.query<Row>(
        `select count(*) filter (where kind = 'consume')::int as consumes, min(balance_after)::int as lowest, sum(amount)::int as total
           from creditkit.ledger where account_id = $1`, [account]);
      expect(ledger).toEqual({ consumes: 100, lowest: 0, total: 0 });
      await expectBooks(db, [account]);
    }
  }, 180_000);

  it('a consume through the coordinator reaches only the worker that holds its account', async () => {
    const placed = await accountsWithWorkers(db);
    const ck = creditkit(runAs.service(db));
    for (const { account } of placed) await ck.grant({ p_account_id: account, p_amount: 10 });
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const remote: number[] = [];
    client.on('notice', (n) => {
      const port = /on server \S+@[^:]+:(\d+)/.exec(n.detail ?? '')?.[1];
      if (n.message?.startsWith('issuing ') && port) remote.push(Number(port));
    });
    try {
      await client.query('set citus.log_remote_commands = on');
      for (const { account, port } of placed) {
        remote.length = 0;
        // as PostgREST calls: a transaction as service_role
        await client.query('begin');
        await client.query(`select set_config('role', 'service_role', true)`);
        const { rows } = await client.query('select * from public.creditkit_consume($1, 1)', [account]);
        await client.query('commit');
        expect(rows[0]).toMatchObject({ allowed: true, balance: '9' }); // bigint as text (plain pg)
        expect(remote.length).toBeGreaterThan(0);
        expect(new Set(remote), `the commands of a consume for ${account}`).toEqual(new Set([port]));
      }
    } finally {
      await client.end();
    }
  }, 60_000);

  it('Stripe: a pack checkout for an account on each worker grants once, a redelivery changes nothing, a refund takes its share back', async () => {
    const ck = creditkit(runAs.service(db));
    await ck.call('creditkit_upsert_pack', {
      p_id: 'citus-pack', p_name: 'Pack', p_credits: 500, p_price_amount: 500, p_stripe_price_id: 'price_1QCitusPack',
    });
    const now = Math.floor(Date.now() / 1000);
    const apply = (event: unknown) => ck.call('creditkit_stripe_apply', { p_event: event });
    for (const { account } of await accountsWithWorkers(db)) {
      const p = packPurchase({ account, packId: 'citus-pack', priceId: 'price_1QCitusPack', amount: 500 });
      const paid = checkoutCompleted(p, { created: now });
      expect(await apply(paid)).toMatchObject([{ status: 'applied', duplicate: false }]);
      expect(await apply(paid)).toMatchObject([{ duplicate: true }]);
      expect(await db.query('select balance::int from creditkit.accounts where id = $1', [account])).toEqual([{ balance: 500 }]);
      expect(await apply(chargeRefunded(p, { created: now + 60, amountRefunded: 100 }))).toMatchObject([{ status: 'applied' }]);
      expect(await db.query('select balance::int from creditkit.accounts where id = $1', [account])).toEqual([{ balance: 400 }]);
      await expectBooks(db, [account]);
    }
  }, 120_000);
});
