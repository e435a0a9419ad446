// `pnpm demo`: a short terminal walkthrough of creditkit on the embedded default (PGlite, in
// memory). It installs the migrations, grants credit, consumes until the account is blocked and
// prints the ledger — every number below comes from the database, nothing is simulated.
import { createEmbeddedDatabase, loadMigrations } from '@creditkit/db';
import { formatTable } from './lib/table.ts';

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s: string) => (process.stdout.isTTY ? `\x1b[2m${s}\x1b[0m` : s);

const started = performance.now();
const db = await createEmbeddedDatabase();
const migrations = loadMigrations();
console.log(bold('creditkit demo') + dim(' — embedded Postgres (PGlite), nothing to install'));
console.log(`installed ${migrations.length} migrations in ${Math.round(performance.now() - started)} ms:`);
for (const m of migrations) console.log(dim(`  ${m.name}`));

// The demo talks SQL as your server would (the service role); a browser gets only creditkit_my_*.
async function asServer<T>(sql: string, params: unknown[] = []): Promise<T[]> {
  return db.transaction(async (tx) => {
    await tx.query(`select set_config('role', 'service_role', true), set_config('request.jwt.claims', '{"role":"service_role"}', true)`);
    return (await tx.query<T>(sql, params)).rows;
  });
}

const [{ id: user }] = (await db.query<{ id: string }>(`insert into auth.users (email) values ('ada@example.com') returning id`)).rows as [{ id: string }];
const inOneHour = new Date(Date.now() + 3600_000);

console.log(`\n${bold('1. grant')} 5 purchased credits, and 3 promotional credits that expire in an hour, to ada (${user})`);
await asServer(`select * from creditkit_grant($1, 5, 'purchase', p_idempotency_key => 'stripe:cs_demo_1')`, [user]);
// A webhook retry with the same key is a no-op that returns the first result.
await asServer(`select * from creditkit_grant($1, 5, 'purchase', p_idempotency_key => 'stripe:cs_demo_1')`, [user]);
await asServer(`select * from creditkit_grant($1, 3, 'promotional', $2)`, [user, inOneHour]);
const [bal] = await asServer<{ balance: number }>(`select balance from creditkit_balance($1)`, [user]);
console.log(`   balance ${bal!.balance} (the retried grant did not count twice); promotional credit is spent first`);

console.log(`\n${bold('2. consume')} 2 credits per image until blocked`);
for (let i = 1; ; i++) {
  const [r] = await asServer<{ allowed: boolean; balance: number }>(
    `select * from creditkit_consume($1, 2, 'image_gen', $2, '{"model":"demo-xl"}')`,
    [user, `req_${i}`],
  );
  console.log(`   request ${i}: ${r!.allowed ? `allowed, balance ${r!.balance}` : `BLOCKED at balance ${r!.balance} -> your route answers HTTP 402`}`);
  if (!r!.allowed) break;
}

console.log(`\n${bold('3. the ledger')} (append-only; balance_after is the running balance)`);
const ledger = await asServer<Record<string, unknown>>(
  `select id, kind, amount, balance_after, grant_id, event, idempotency_key as key, metadata
     from creditkit_history($1, 20) order by id`,
  [user],
);
console.log(formatTable(ledger));

console.log(`\n${bold('4. as ada in the browser')} (role authenticated, claims from her JWT)`);
const browser = await db.transaction(async (tx) => {
  await tx.query(`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)`, [
    JSON.stringify({ sub: user, role: 'authenticated' }),
  ]);
  const [b] = (await tx.query<{ balance: number }>(`select balance from creditkit_my_balance()`)).rows;
  await tx.query(`savepoint before_mint`);
  const minted = await tx.query(`select creditkit_grant($1, 1000000)`, [user]).then(
    () => 'ALLOWED (this would be a bug)',
    (e: { code?: string; message: string }) => `refused, ${e.code}: ${e.message}`,
  );
  await tx.query(`rollback to savepoint before_mint`);
  return { balance: b!.balance, minted };
});
console.log(`   select creditkit_my_balance()          -> balance ${browser.balance}`);
console.log(`   select creditkit_grant(ada, 1000000)   -> ${browser.minted}`);

console.log(`\n${bold('5. plans, prices and holds')}`);
await asServer(`select creditkit_upsert_plan('pro', 'Pro', p_allowance => 100, p_features => '{"hd_upscale": true}', p_price_amount => 1900)`);
const [plan] = await asServer<{ balance: number; period_end: Date }>(`select balance, period_end from creditkit_set_plan($1, 'pro')`, [user]);
console.log(`   ada subscribes to pro: balance ${plan!.balance}, this allowance expires ${plan!.period_end.toISOString().slice(0, 10)} when the next one starts (no cron)`);
await asServer(`select creditkit_set_price('image_gen', 2), creditkit_set_price('image_gen', 5, '{"quality": "hd"}')`);
const [hd] = await asServer<{ amount: number; balance: number }>(
  `select amount, balance from creditkit_meter($1, 'image_gen', 3, '{"quality": "hd"}', p_cost_micros => 120000)`,
  [user],
);
console.log(`   meter 3 hd images: charged ${hd!.amount} credits (5 each, the hd price), vendor cost $0.12 recorded beside it; balance ${hd!.balance}`);
const [hold] = await asServer<{ hold_id: number; balance: number }>(`select hold_id, balance from creditkit_reserve($1, 40, p_event => 'video_gen')`, [user]);
console.log(`   reserve 40 before a long video job: hold ${hold!.hold_id}, spendable now ${hold!.balance}`);
const [settled] = await asServer<{ charged: number; balance: number }>(`select charged, balance from creditkit_settle($1, 26)`, [hold!.hold_id]);
console.log(`   settle at the actual 26: charged ${settled!.charged}, the other 14 freed; balance ${settled!.balance}`);
const [margin] = await asServer<{ revenue_micros: number; cost_micros: number }>(
  `select revenue_micros, cost_micros from creditkit_account_margin(now() - interval '1 day', now() + interval '1 day', $1)`,
  [user],
);
console.log(`   operator view: cost so far ${margin!.cost_micros / 1e6} USD for ada`);

await db.close();
