// The node-postgres transport on real Postgres (src/sql-transport.ts): every call is two
// prepared statements (identity, then the function) bound and executed in one round trip.
//  - each connection parses them once and then only binds them (pg_prepared_statements);
//  - the role and claims are SET LOCAL: the connection goes back as it came, and a user's
//    identity reaches auth.uid() inside the call;
//  - a connection that lost its statements (DEALLOCATE ALL) is re-prepared, and the call runs once;
//  - errors from the server keep the pooled connection (and its statements); a statement that
//    fails to parse is parsed afresh next time instead of colliding with its own name;
//  - a Pool, a connected Client and a checked-out pool client all work; pipeline mode is refused.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@creditkit/testing';
import { describeIfPostgres } from '@creditkit/testing/vitest';
import { TransportError, callStatements, pgTransport, userIdentity, SERVICE_IDENTITY } from '../src/server.ts';

describeIfPostgres('node-postgres transport: prepared statements, one round trip', () => {
  let db: TestDatabase;
  const pools: pg.Pool[] = [];
  const clients: pg.Client[] = [];
  beforeAll(async () => {
    db = await createTestDatabase({ backend: 'postgres' });
  });
  afterAll(async () => {
    await Promise.allSettled([...pools.map((p) => p.end()), ...clients.map((c) => c.end())]);
    await db?.drop();
  });

  function pool(max = 1): pg.Pool {
    const p = new pg.Pool({ connectionString: db.url, max });
    p.on('error', () => {});
    pools.push(p);
    return p;
  }

  async function client(): Promise<pg.Client> {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    clients.push(c);
    return c;
  }

  async function granted(amount = 100): Promise<string> {
    const account = randomUUID();
    await db.query('select public.creditkit_grant($1, $2)', [account, amount]);
    return account;
  }

  const consumes = async (account: string) =>
    Number((await db.query<{ n: string }>(`select count(*) as n from creditkit.ledger where account_id = $1 and kind = 'consume'`, [account]))[0]!.n);

  const ours = async (c: pg.Client | pg.PoolClient) =>
    (await c.query<{ name: string; statement: string }>(`select name, statement from pg_prepared_statements where name like 'creditkit/%' order by statement`)).rows;

  it('statements carry parameters, not literals, and one text serves every identity', () => {
    const [identity, call] = callStatements('creditkit_consume', { p_account_id: 'x', p_amount: 5, p_metadata: { a: 1 }, p_note: undefined }, SERVICE_IDENTITY);
    const [userIdentityStatement] = callStatements('creditkit_consume', {}, userIdentity(randomUUID()));
    expect(identity.text).toBe(userIdentityStatement.text);
    expect(identity.values).toEqual(['service_role', '{"role":"service_role"}']);
    expect(call.text).toBe(`select coalesce(json_agg(r), '[]') as result from public.creditkit_consume(p_account_id => $1, p_amount => $2, p_metadata => $3) r`);
    expect(call.values).toEqual(['x', '5', '{"a":1}']);
    expect(() => callStatements('x; drop table y', {}, SERVICE_IDENTITY)).toThrow(TypeError);
    expect(() => callStatements('creditkit_consume', { 'p_a => 1, p_b': 1 }, SERVICE_IDENTITY)).toThrow(TypeError);
  });

  it('a connection parses the two statements once, then only binds them', async () => {
    const c = await client();
    const account = await granted();
    const transport = pgTransport(c);
    for (let i = 0; i < 3; i++) {
      const [row] = (await transport.rpc('creditkit_consume', { p_account_id: account, p_amount: 2 })) as Array<{ allowed: boolean; balance: number }>;
      expect(row).toMatchObject({ allowed: true, balance: 100 - 2 * (i + 1) });
    }
    const statements = await ours(c);
    expect(statements).toHaveLength(2);
    expect(statements.map((s) => s.statement).join('\n')).toContain('public.creditkit_consume(p_account_id => $1, p_amount => $2)');
    // a different set of arguments is a statement of its own
    await transport.rpc('creditkit_consume', { p_account_id: account, p_amount: 1, p_idempotency_key: 'k1' });
    expect(await ours(c)).toHaveLength(3);
    expect(await consumes(account)).toBe(4);
  });

  it('the role and claims last for the call only; a user identity reaches auth.uid()', async () => {
    const p = pool(1);
    const user = randomUUID();
    await db.query('select public.creditkit_grant($1, 7)', [user]);
    const [mine] = (await pgTransport(p, userIdentity(user)).rpc('creditkit_my_balance', {})) as Array<{ account_id: string; balance: number }>;
    expect(mine).toMatchObject({ account_id: user, balance: 7 });
    // the same pooled connection, afterwards: back to the role it connected as, no claims
    const after = await p.query<{ who: string; claims: string | null; tz: string }>(
      `select current_user as who, nullif(current_setting('request.jwt.claims', true), '') as claims, current_setting('timezone') as tz`);
    expect(after.rows[0]!.who).toBe('postgres');
    expect(after.rows[0]!.claims).toBeNull();
    // the user's role may not call the service functions: the identity really was switched
    const refused = await pgTransport(p, userIdentity(user)).rpc('creditkit_grant', { p_account_id: user, p_amount: 1 }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(TransportError);
    expect((refused as TransportError).raw.code).toBe('42501');
    expect(after.rows).toHaveLength(1);
  });

  it('a connection that lost its statements (DEALLOCATE ALL) is prepared again, and the call runs once', async () => {
    const p = pool(1);
    const account = await granted();
    const transport = pgTransport(p);
    await transport.rpc('creditkit_consume', { p_account_id: account, p_amount: 1 });
    await p.query('deallocate all');
    const [row] = (await transport.rpc('creditkit_consume', { p_account_id: account, p_amount: 1 })) as Array<{ balance: number }>;
    expect(row!.balance).toBe(98);
    expect(await consumes(account)).toBe(2);
    const c = await p.connect();
    try {
      expect(await ours(c)).toHaveLength(2);
    } finally {
      c.release();
    }
  });

  it('a server error keeps the pooled connection and its statements', async () => {
    const p = pool(1);
    const transport = pgTransport(p);
    const account = await granted();
    await transport.rpc('creditkit_consume', { p_account_id: account, p_amount: 1 });
    const pid = async () => (await p.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
    const before = await pid();
    for (const [args, code] of [
      [{ p_account_id: 'not-a-uuid', p_amount: 1 }, '22P02'], // refused at Bind
      [{ p_account_id: account, p_amount: 0 }, 'CK001'], // refused by the function
    ] as const) {
      const error = await transport.rpc('creditkit_consume', args).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TransportError);
      expect((error as TransportError).raw).toMatchObject({ code, network: false });
    }
    expect(await pid()).toBe(before);
    expect(p.totalCount).toBe(1);
    const [row] = (await transport.rpc('creditkit_consume', { p_account_id: account, p_amount: 1 })) as Array<{ balance: number }>;
    expect(row!.balance).toBe(98);
  });

  it('a statement that fails to parse is parsed afresh next time (not a duplicate name)', async () => {
    const c = await client();
    const transport = pgTransport(c);
    for (let i = 0; i < 2; i++) {
      const error = await transport.rpc('creditkit_no_such_function', { p_x: 1 }).catch((e: unknown) => e);
      expect((error as TransportError).raw.code).toBe('42883');
    }
    const account = await granted();
    const [row] = (await transport.rpc('creditkit_consume', { p_account_id: account, p_amount: 3 })) as Array<{ balance: number }>;
    expect(row!.balance).toBe(97);
  });

  it('works over a checked-out pool client, and many calls at once over a Pool', async () => {
    const p = pool(4);
    const account = await granted(1000);
    const checkedOut = await p.connect();
    try {
      const [row] = (await pgTransport(checkedOut).rpc('creditkit_consume', { p_account_id: account, p_amount: 10 })) as Array<{ balance: number }>;
      expect(row!.balance).toBe(990);
    } finally {
      checkedOut.release();
    }
    const transport = pgTransport(p);
    const results = await Promise.all(
      Array.from({ length: 40 }, () => transport.rpc('creditkit_consume', { p_account_id: account, p_amount: 1 }) as Promise<Array<{ allowed: boolean }>>),
    );
    expect(results.every(([r]) => r!.allowed)).toBe(true);
    expect(await consumes(account)).toBe(41);
    const [balance] = await db.query<{ balance: string }>('select balance from creditkit.accounts where id = $1', [account]);
    expect(Number(balance!.balance)).toBe(950);
  });

  it("node-postgres's pipeline mode is refused with a TypeError, not reported as an outage", async () => {
    const c = new pg.Client({ connectionString: db.url, pipeline: true } as pg.ClientConfig);
    await c.connect();
    clients.push(c);
    const error = await pgTransport(c).rpc('creditkit_consume', { p_account_id: randomUUID(), p_amount: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect(String(error)).toContain('pipeline mode');
  });
});
