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

await db.close();
