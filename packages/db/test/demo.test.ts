// `pnpm demo` is one of the README's two commands: run the real script and read what it prints,
// the way a newcomer would, so a change that breaks the walkthrough fails the suite.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../../', import.meta.url));

describe('pnpm demo', () => {
  it('installs the migrations, spends until blocked, refuses a browser mint, then plans, prices and a hold', () => {
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/demo.ts'], { cwd: root, encoding: 'utf8', timeout: 120_000 });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const out = run.stdout;
    expect(out).toMatch(/installed \d+ migrations/);
    expect(out).toContain('balance 8 (the retried grant did not count twice)');
    expect(out).toMatch(/request 5: BLOCKED at balance 0/);
    expect(out).toMatch(/^6 +\| consume \| -2 +\| 0 /m);
    expect(out).toMatch(/creditkit_grant\(ada, 1000000\) +-> refused, 42501/);
    expect(out).toContain('ada subscribes to pro: balance 100');
    expect(out).toContain('charged 15 credits (5 each, the hd price)');
    expect(out).toContain('settle at the actual 26: charged 26, the other 14 freed; balance 59');
    expect(out).toContain('cost so far 0.12 USD');
  }, 120_000);
});
