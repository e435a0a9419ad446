// The same consume through the TypeScript SDK: over node-postgres against the bench database, and
// on embedded PGlite.
import pg from 'pg';
import { createEmbeddedCreditkit } from '@creditkit/core/embedded';
import { createCreditkit } from '@creditkit/core/server';

/** Account n as the bench's SQL writes it (bench.account_id), in uuid text form. */
export function accountId(n: number): string {
  const h = n.toString(16).padStart(32, '0');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const DRIVER_SQL = 'select allowed from public.creditkit_consume($1::uuid, $2::bigint)';

export interface LoopResult {
  calls: number;
  allowed: number;
  seconds: number;
  /** CPU this Node process used over the loop, in cores (1 = one core busy all the time). */
  clientCores: number;
}

function cpuClock(): () => number {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  return () => {
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / 1000 / (performance.now() - t0);
  };
}

/**
 * `clients` concurrent async loops calling creditkit.consume() on random accounts 1..accounts for
 * `seconds`, over a pg.Pool of `clients` connections opened before the clock starts (pgbench does
 * not count connection time either). `via: 'driver'` makes the same call without the SDK: a named
 * prepared statement through node-postgres as the connecting superuser, the cheapest call a Node
 * client can make, so the SDK's cost can be told apart from the driver's and the Node process's.
 */
export async function sdkConsumeLoop(
  url: string,
  clients: number,
  accounts: number,
  seconds: number,
  via: 'sdk' | 'driver' = 'sdk',
): Promise<LoopResult> {
  const pool = new pg.Pool({ connectionString: url, max: clients, application_name: 'creditkit-bench-sdk' });
  pool.on('error', () => {});
  try {
    const warm = await Promise.all(Array.from({ length: clients }, () => pool.connect()));
    for (const c of warm) c.release();
    const creditkit = createCreditkit({ pg: pool });
    const ids = Array.from({ length: accounts }, (_, i) => accountId(i + 1));
    let calls = 0;
    let allowed = 0;
    const cpu = cpuClock();
    const started = performance.now();
    const end = started + seconds * 1000;
    await Promise.all(
      Array.from({ length: clients }, async () => {
        while (performance.now() < end) {
          const accountId = ids[Math.floor(Math.random() * accounts)]!;
          const ok =
            via === 'sdk'
              ? (await creditkit.consume({ accountId, amount: 1 })).allowed
              : (await pool.query<{ allowed: boolean }>({ name: 'creditkit-bench-consume', text: DRIVER_SQL, values: [accountId, 1] })).rows[0]!.allowed;
          calls++;
          if (ok) allowed++;
        }
      }),
    );
    return { calls, allowed, seconds: (performance.now() - started) / 1000, clientCores: cpu() };
  } finally {
    await pool.end();
  }
}

export interface PgliteResult {
  /** creditkit.consume() through the SDK, one after another. */
  kit: LoopResult & { ledger: number };
  /** The raw UPDATE on a table of the accounts' shape, db.query() one after another. */
  raw: LoopResult;
}

export interface Pglite {
  run(seconds: number): Promise<PgliteResult>;
  close(): Promise<void>;
}

/**
 * createEmbeddedCreditkit() (in memory) with `accounts` accounts of 1e9 credits granted through
 * the SDK, and a copy of their shape for the raw-UPDATE baseline. Single-threaded: PGlite runs one
 * query at a time.
 */
export async function startPglite(accounts: number): Promise<Pglite> {
  const { db, creditkit, close } = await createEmbeddedCreditkit();
  const ids = Array.from({ length: accounts }, (_, i) => accountId(i + 1));
  for (const id of ids) await creditkit.grant({ accountId: id, amount: 1_000_000_000 });
  await db.exec(`
    create table public.bench_accounts (like creditkit.accounts including all);
    insert into public.bench_accounts (id, balance) select id, balance from creditkit.accounts;`);
  await db.exec('vacuum analyze'); // on its own: exec runs a multi-statement string as one transaction
  const pick = () => ids[Math.floor(Math.random() * accounts)]!;
  const consumes = async () =>
    Number((await db.query<{ n: number }>(`select count(*)::int as n from creditkit.ledger where kind = 'consume'`)).rows[0]!.n);
  return {
    async run(seconds) {
      const before = await consumes();
      let calls = 0;
      let allowed = 0;
      let cpu = cpuClock();
      let started = performance.now();
      let end = started + seconds * 1000;
      while (performance.now() < end) {
        const r = await creditkit.consume({ accountId: pick(), amount: 1 });
        calls++;
        if (r.allowed) allowed++;
      }
      const kitSeconds = (performance.now() - started) / 1000;
      const kit = { calls, allowed, seconds: kitSeconds, clientCores: cpu(), ledger: (await consumes()) - before };
      calls = 0;
      cpu = cpuClock();
      started = performance.now();
      end = started + seconds * 1000;
      while (performance.now() < end) {
        await db.query('update public.bench_accounts set balance = balance - 1 where id = $1 and balance >= 1', [pick()]);
        calls++;
      }
      const raw = { calls, allowed: calls, seconds: (performance.now() - started) / 1000, clientCores: cpu() };
      return { kit, raw };
    },
    close,
  };
}
