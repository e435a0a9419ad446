// `pnpm demo:cli`, the terminal walkthrough the README quotes: run the real script and read what it
// prints, the way a newcomer would, so a change that breaks the walkthrough fails the suite.
// (`pnpm demo`, the web app, is tested in apps/web/test.)
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../../', import.meta.url));

describe('pnpm demo:cli', () => {
  it('installs the migrations, spends until blocked, refuses a browser mint, then plans, prices, a hold and a route', () => {
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/demo.ts'], { cwd: root, encoding: 'utf8', timeout: 120_000 });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const out = run.stdout;
    expect(out).toMatch(/installed \d+ migrations/);
    expect(out).toContain('balance 8 (the retried grant did not count twice)');
    expect(out).toMatch(/request 5: BLOCKED at balance 0/);
    expect(out).toContain('consumeOrRaise() throws instead: InsufficientCreditsError (CK002), balance 0, required 2');
    expect(out).toMatch(/^6 +\| consume \| -2 +\| 0 /m);
    expect(out).toMatch(/^ +balance\(\) +-> balance 0$/m);
    expect(out).toMatch(/balance\(\{ accountId: grace \}\) +-> refused: NotAllowedError \(CK005: /);
    expect(out).toMatch(/grant\(\{ accountId: ada, amount: 1000000 \}\) +-> refused: NotAllowedError \(42501: /);
    expect(out).not.toContain('ALLOWED');
    expect(out).toContain('ada subscribes to pro: balance 100, hd_upscale on');
    expect(out).toContain('charged 15 credits (5 each, the hd price)');
    expect(out).toContain('settle at the actual 26: charged 26, the other 14 freed; balance 59');
    expect(out).toContain('cost so far 0.12 USD');
    expect(out).toMatch(/as ada +-> 200 \{"images":2,"balance":55\}/);
    expect(out).toMatch(/as grace -> 402 \{"error":"insufficient_credits",.*"balance":0,"required":4\}/);

    // The README quotes this output; every line it quotes must be a line the demo printed, in
    // order (dates excepted: the plan period depends on the day the demo runs).
    const readme = readFileSync(`${root}README.md`, 'utf8');
    const quoted = /Everything it prints came out of the database:\n\n```text\n([\s\S]*?)\n```/.exec(readme)?.[1];
    expect(quoted, 'the README quotes the demo').toBeDefined();
    const printed = out.split('\n');
    let at = 0;
    for (const line of quoted!.split('\n').filter((l) => l.trim() !== '' && l.trim() !== '...')) {
      const pattern = new RegExp(`^${line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/\d{4}-\d{2}-\d{2}/g, '\\d{4}-\\d{2}-\\d{2}')}$`);
      const found = printed.findIndex((l, i) => i >= at && pattern.test(l));
      expect(found, `README line not printed (in this order) by the demo: ${line}`).toBeGreaterThanOrEqual(0);
      at = found + 1;
    }
  }, 120_000);
});
