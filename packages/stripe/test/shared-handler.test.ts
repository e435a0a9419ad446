// The Edge Function runs a copy of src/handler.ts (supabase/functions/_shared/, written by
// `pnpm sync:functions`): Deno and Node must run the same code, so the copy must not drift.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { SHARED_COPIES, sharedCopy } from '../../../scripts/sync-functions.ts';

const root = (path: string) => fileURLToPath(new URL(`../../../${path}`, import.meta.url));

it.each(SHARED_COPIES.map((c) => [c.target, c.source] as const))('%s is %s, unchanged (pnpm sync:functions)', (target, source) => {
  expect(readFileSync(root(target), 'utf8')).toBe(sharedCopy(source));
});

it('the Edge Function imports the shared copy, not a file outside supabase/functions', () => {
  const entry = readFileSync(root('supabase/functions/stripe-webhook/index.ts'), 'utf8');
  const relative = [...entry.matchAll(/from '(\.[^']*)'/g)].map((m) => m[1]);
  expect(relative).toEqual(['../_shared/stripe-webhook-handler.ts']);
});
