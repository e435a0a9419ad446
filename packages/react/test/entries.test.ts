// @creditkit/react must be browser-safe: bundled for the browser it pulls in no Node module, no
// database driver and none of the SDK's server code (mirrors packages/core/test/entries.test.ts).
// '@creditkit/react/keys' is for server components too: it must not pull in React at all.
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';

const src = (file: string) => fileURLToPath(new URL(`../src/${file}`, import.meta.url));

async function bundle(entry: string): Promise<{ code: string; inputs: string[] }> {
  const result = await build({
    entryPoints: [src(entry)],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    jsx: 'automatic',
    write: false,
    metafile: true,
    logLevel: 'silent',
    define: { 'process.env.NODE_ENV': '"production"' },
  });
  return { code: result.outputFiles[0]!.text, inputs: Object.keys(result.metafile.inputs) };
}

const SERVER_FUNCTIONS = ['creditkit_grant', 'creditkit_consume', 'creditkit_adjust', 'creditkit_reserve', 'creditkit_set_plan', 'creditkit_mrr'];

describe('entry points', () => {
  it('@creditkit/react bundles for the browser: no node:, no driver, no server SDK', async () => {
    const { code, inputs } = await bundle('index.ts');
    // @creditkit/core resolves to its built output (dist/), as it does for an app
    const foreign = inputs.filter((f) => /sql-transport|core\/(src|dist)\/(server|embedded)|pglite|\/pg\/|(^|\/)db\/src\/|creditkit\/(src|dist)\//.test(f));
    expect(foreign).toEqual([]);
    expect(inputs.some((f) => f.includes('@tanstack/query-core'))).toBe(true);
    expect(inputs.some((f) => /core\/(src\/index\.ts|dist\/index\.js)$/.test(f))).toBe(true); // the browser entry, for CreditkitError
    for (const fn of SERVER_FUNCTIONS) expect(code, fn).not.toMatch(new RegExp(`["']${fn}["']`));
    expect(code).toMatch(/^"use client";/); // Next.js: the components are client components
    expect(code).not.toMatch(/from ["']node:|require\(["']node:/);
  });

  it("@creditkit/react/keys has no React and no 'use client'", async () => {
    const { inputs } = await bundle('keys.ts');
    expect(inputs.map((f) => f.replace(/^.*packages\/react\//, ''))).toEqual(['src/keys.ts']);
  });
});
