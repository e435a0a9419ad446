// `pnpm demo:cli`: a short terminal walkthrough of creditkit on the embedded default (PGlite, in
// memory), driven through the TypeScript SDK the way a server would drive it. It installs the
// migrations, grants credit, consumes until the account is blocked, prints the ledger, shows what
// a signed-in user can and cannot do, then plans, prices, a hold and a route handler. Every number
// it prints comes from the database; nothing is simulated. Read this file beside the output.
import { CreditkitError, InsufficientCreditsError } from '@creditkit/core';
import { createEmbeddedCreditkit } from '@creditkit/core/embedded';
import { withCredits } from '@creditkit/core/http';
import { createCreditkit } from '@creditkit/core/server';
import { migrations as loadMigrations } from 'creditkit';
import { formatTable } from './lib/table.ts';

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s: string) => (process.stdout.isTTY ? `\x1b[2m${s}\x1b[0m` : s);

const started = performance.now();
const { db, creditkit, close } = await createEmbeddedCreditkit();
const migrations = loadMigrations();
console.log(bold('creditkit demo') + dim(' — embedded Postgres (PGlite), nothing to install'));
console.log(`installed ${migrations.length} migrations in ${Math.round(performance.now() - started)} ms:`);
for (const m of migrations) console.log(dim(`  ${m.name}`));
console.log(dim('every step below is a call through @creditkit/core, acting as your server (service_role)'));

// Two signed-up users. An account id is the user's id, and the first grant opens the account.
const signUp = async (email: string) =>
  (await db.query<{ id: string }>(`insert into auth.users (email) values ($1) returning id`, [email])).rows[0]!.id;
const ada = await signUp('ada@example.com');
const grace = await signUp('grace@example.com');
const inOneHour = new Date(Date.now() + 3600_000);

console.log(`\n${bold('1. grant')} 5 purchased credits, and 3 promotional credits that expire in an hour, to ada (${ada})`);
await creditkit.grant({ accountId: ada, amount: 5, idempotencyKey: 'stripe:cs_demo_1' });
// A webhook retry with the same key is a no-op that returns the first result.
await creditkit.grant({ accountId: ada, amount: 5, idempotencyKey: 'stripe:cs_demo_1' });
await creditkit.grant({ accountId: ada, amount: 3, category: 'promotional', expiresAt: inOneHour });
const { balance } = await creditkit.balance({ accountId: ada });
console.log(`   balance ${balance} (the retried grant did not count twice); promotional credit is spent first`);

console.log(`\n${bold('2. consume')} 2 credits per image until blocked`);
for (let i = 1; ; i++) {
  const r = await creditkit.consume({
    accountId: ada,
    amount: 2,
    event: 'image_gen',
    idempotencyKey: `req_${i}`,
    metadata: { model: 'demo-xl' },
  });
  console.log(`   request ${i}: ${r.allowed ? `allowed, balance ${r.balance}` : `BLOCKED at balance ${r.balance} -> your route answers HTTP 402`}`);
  if (!r.allowed) break;
}
try {
  await creditkit.consumeOrRaise({ accountId: ada, amount: 2, event: 'image_gen' });
} catch (error) {
  if (!(error instanceof InsufficientCreditsError)) throw error;
  console.log(`   consumeOrRaise() throws instead: ${error.name} (${error.sqlstate}), balance ${error.balance}, required ${error.required}`);
}

console.log(`\n${bold('3. the ledger')} (append-only; balanceAfter is the running balance)`);
const { entries } = await creditkit.history({ accountId: ada, limit: 20 });
console.log(
  formatTable(
    entries.reverse().map((e) => ({
      id: e.id,
      kind: e.kind,
      amount: e.amount,
      balanceAfter: e.balanceAfter,
      grantId: e.grantId,
      event: e.event,
      key: e.idempotencyKey,
      metadata: e.metadata,
    })),
  ),
);

console.log(`\n${bold('4. as ada in the browser')} (role authenticated, claims from her JWT): creditkit.asUser(ada)`);
const asAda = creditkit.asUser(ada);
const outcome = (call: Promise<unknown>) =>
  call.then(
    () => 'ALLOWED (this would be a bug)',
    (error: unknown) => {
      if (!(error instanceof CreditkitError)) throw error;
      return `refused: ${error.name} (${error.sqlstate}: ${error.message})`;
    },
  );
// The browser client has no grant(). Send the call anyway with her credentials, as a script
// holding her JWT could (POST /rest/v1/rpc/creditkit_grant): the database is what refuses it.
const withHerJwt = createCreditkit({ transport: asAda.transport });
const rows: Array<[string, string]> = [
  ['balance()', `balance ${(await asAda.balance()).balance}`],
  ['balance({ accountId: grace })', await outcome(asAda.balance({ accountId: grace }))],
  ['grant({ accountId: ada, amount: 1000000 })', await outcome(withHerJwt.grant({ accountId: ada, amount: 1_000_000 }))],
];
const width = Math.max(...rows.map(([call]) => call.length));
for (const [call, result] of rows) console.log(`   ${call.padEnd(width)} -> ${result}`);
console.log(dim('   (the browser client has no grant(); the last call was sent anyway, with her JWT)'));

console.log(`\n${bold('5. plans, prices and holds')}`);
await creditkit.upsertPlan({ id: 'pro', name: 'Pro', allowance: 100, features: { hd_upscale: true }, priceAmount: 1900 });
const plan = await creditkit.setPlan({ accountId: ada, planId: 'pro' });
const hdUpscale = await asAda.hasFeature({ feature: 'hd_upscale' });
console.log(
  `   ada subscribes to pro: balance ${plan.balance}, hd_upscale ${hdUpscale ? 'on' : 'off'}; ` +
    `this allowance expires ${plan.periodEnd?.slice(0, 10)} when the next one starts (no cron)`,
);
await creditkit.setPrice({ event: 'image_gen', creditsPerUnit: 2 });
await creditkit.setPrice({ event: 'image_gen', creditsPerUnit: 5, dimensions: { quality: 'hd' } });
const hd = await creditkit.meter({ accountId: ada, event: 'image_gen', quantity: 3, dimensions: { quality: 'hd' }, costMicros: 120_000 });
console.log(`   meter 3 hd images: charged ${hd.amount} credits (5 each, the hd price), vendor cost $0.12 recorded beside it; balance ${hd.balance}`);
const hold = await creditkit.reserve({ accountId: ada, amount: 40, event: 'video_gen' });
console.log(`   reserve 40 before a long video job: hold ${hold.holdId}, spendable now ${hold.balance}`);
const settled = await creditkit.settle({ holdId: hold.holdId!, actual: 26 });
console.log(`   settle at the actual 26: charged ${settled.charged}, the other 14 freed; balance ${settled.balance}`);
const day = 86_400_000;
const [margin] = await creditkit.accountMargin({ from: new Date(Date.now() - day), to: new Date(Date.now() + day), accountId: ada });
console.log(`   operator view: cost so far ${margin!.costMicros / 1e6} USD for ada`);

console.log(`\n${bold('6. a route handler')} (@creditkit/core/http): withCredits charges 2 images before the handler runs`);
const images = withCredits(
  creditkit,
  { account: (request) => request.headers.get('x-user-id'), event: 'image_gen', quantity: 2 }, // the header stands in for your auth
  (_request, credits) => Response.json({ images: 2, balance: credits.metered!.balance }),
);
for (const [name, id] of [['ada', ada], ['grace', grace]] as const) {
  const response = await images(new Request('http://localhost/api/images', { method: 'POST', headers: { 'x-user-id': id } }));
  console.log(`   POST /api/images as ${name.padEnd(5)} -> ${response.status} ${await response.text()}`);
}

console.log(dim('\nnext: README.md (install into your Supabase project), docs/sdk.md (this SDK), docs/sql-api.md (every function)'));
await close();
