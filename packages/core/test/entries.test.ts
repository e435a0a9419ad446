// The browser entry must stay browser-safe: bundled for the browser it pulls in no Node module,
// no driver, and none of the server functions — a page that imports '@creditkit/core' cannot
// even name creditkit_grant. The server entry, bundled the same way, does name them.
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
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  return { code: result.outputFiles[0]!.text, inputs: Object.keys(result.metafile.inputs) };
}

const SERVER_FUNCTIONS = ['creditkit_grant', 'creditkit_consume', 'creditkit_adjust', 'creditkit_reserve', 'creditkit_set_plan', 'creditkit_mrr'];

describe('entry points', () => {
  it('@creditkit/core bundles for the browser with only caller-bound calls', async () => {
    const { code, inputs } = await bundle('index.ts');
    expect(inputs.filter((f) => !f.startsWith('packages/core/src/') && !f.includes('/packages/core/src/'))).toEqual([]);
    expect(inputs.some((f) => f.endsWith('sql-transport.ts') || f.endsWith('server.ts'))).toBe(false);
    for (const fn of SERVER_FUNCTIONS) expect(code, fn).not.toContain(`'${fn}'`);
    for (const fn of SERVER_FUNCTIONS) expect(code, fn).not.toContain(`"${fn}"`);
    expect(code).toContain('creditkit_my_balance');
    expect(code).not.toMatch(/from ["']node:|require\(["']node:/);
  });

  it('@creditkit/core/server names the server functions (the check above can fail)', async () => {
    const { code } = await bundle('server.ts');
    for (const fn of SERVER_FUNCTIONS) expect(code).toContain(`"${fn}"`);
  });
});
