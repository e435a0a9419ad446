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

it('the Edge Function imports the handler by name, and in this repository deno.json maps it to the shared copy', () => {
  const entry = readFileSync(root('supabase/functions/stripe-webhook/index.ts'), 'utf8');
  const imports = [...entry.matchAll(/from '([^']*)'/g)].map((m) => m[1]);
  // no relative import: `creditkit init --with-stripe` writes this file into apps unchanged
  expect(imports.filter((i) => i!.startsWith('.'))).toEqual([]);
  const { imports: map } = JSON.parse(readFileSync(root('supabase/functions/stripe-webhook/deno.json'), 'utf8')) as {
    imports: Record<string, string>;
  };
  expect(Object.keys(map).sort()).toEqual([...imports].sort());
  expect(map['@creditkit/stripe/handler']).toBe('../_shared/stripe-webhook-handler.ts');
});

it('the worker Edge Function imports the SDK by name too, and in this repository deno.json maps it to the package source', () => {
  const entry = readFileSync(root('supabase/functions/creditkit-worker/index.ts'), 'utf8');
  const imports = [...entry.matchAll(/from '([^']*)'/g)].map((m) => m[1]);
  // no relative import: `creditkit init --with-stripe` writes this file into apps unchanged
  expect(imports.filter((i) => i!.startsWith('.'))).toEqual([]);
  const { imports: map } = JSON.parse(readFileSync(root('supabase/functions/creditkit-worker/deno.json'), 'utf8')) as {
    imports: Record<string, string>;
  };
  expect(Object.keys(map).sort()).toEqual([...imports].sort());
  expect(map['@creditkit/core/server']).toBe('../../../packages/core/src/server.ts');
});
