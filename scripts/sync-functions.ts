// Writes the code the Edge Functions share with the packages into supabase/functions/_shared/.
// The Stripe webhook handler lives in @creditkit/stripe (packages/stripe/src/handler.ts), which
// Node apps install; a deployed function can only import what `supabase functions deploy`
// bundles from supabase/functions, so it runs a verbatim copy. The copy imports nothing, so the
// same text type-checks and runs under Deno. A test fails when a copy differs from its source.
//
//   pnpm sync:functions            rewrite the copies
//   pnpm sync:functions --check    exit 1 if a committed copy differs
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = (path: string) => fileURLToPath(new URL(`../${path}`, import.meta.url));

/** Each shared file: the package source it is copied from, and where the functions import it. */
export const SHARED_COPIES = [
  { source: 'packages/stripe/src/handler.ts', target: 'supabase/functions/_shared/stripe-webhook-handler.ts' },
] as const;

/** The text a copy must have: a header naming its source, then the source unchanged. */
export function sharedCopy(source: string): string {
  return (
    `// GENERATED from ${source} by \`pnpm sync:functions\` (scripts/sync-functions.ts). Do not edit:\n` +
    `// change the source and run the script; a test fails when this copy differs from it.\n` +
    readFileSync(root(source), 'utf8')
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const check = process.argv.includes('--check');
  let stale = 0;
  for (const { source, target } of SHARED_COPIES) {
    const wanted = sharedCopy(source);
    let current: string | undefined;
    try {
      current = readFileSync(root(target), 'utf8');
    } catch {
      current = undefined;
    }
    if (current === wanted) continue;
    if (check) {
      console.error(`${target} differs from ${source}: run \`pnpm sync:functions\``);
      stale++;
    } else {
      writeFileSync(root(target), wanted);
      console.log(`wrote ${target}`);
    }
  }
  process.exit(stale > 0 ? 1 : 0);
}
