// Smoke test of `pnpm bench --short`: the benchmark's scripts still run against the current
// migrations and every scenario measures something. No timing assertions and none on the ratios:
// the figures belong in docs/benchmarks.md, produced by a full run on a quiet machine.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { describeIfPostgres } from '@creditkit/testing/vitest';

const root = fileURLToPath(new URL('../../../', import.meta.url));

// Every scenario `pnpm bench` knows (scripts/bench/lib/scenarios.ts). Listed here so that a
// scenario dropped from the bench fails this test instead of silently going unmeasured.
const SCENARIOS = [
  'uniform-16',
  'meter',
  'sdk',
  'batch',
  'holds',
  'mix',
  'uniform-64',
  'hot-16',
  'hot-64',
  'zipf-64',
  'reject-64',
  'cost',
  'storage',
  'pglite',
];

function runBench(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/bench/index.ts', ...args], {
      cwd: root,
      env: process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * The summary tables the bench prints, by scenario: a title line ending in `[id]`, a header, a
 * rule, then rows until a blank line. Columns are separated by two or more spaces.
 */
function sections(stdout: string): Map<string, { headers: string[]; rows: string[][] }> {
  const out = new Map<string, { headers: string[]; rows: string[][] }>();
  const lines = stdout.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /\[([a-z0-9-]+)\]$/.exec(lines[i]!.trim());
    if (!m || !/^-+(\s+-+)*$/.test(lines[i + 2]?.trim() ?? '')) continue;
    const split = (l: string) => l.trim().split(/\s{2,}/);
    const rows: string[][] = [];
    for (let j = i + 3; j < lines.length && lines[j]!.trim() !== ''; j++) rows.push(split(lines[j]!));
    out.set(m[1]!, { headers: split(lines[i + 1]!), rows });
  }
  return out;
}

const number = (cell: string | undefined) => Number((cell ?? '').replace(/,/g, ''));

describeIfPostgres('pnpm bench --short', () => {
  it('runs every scenario and prints a positive rate for each', { timeout: 240_000 }, async () => {
    const { code, stdout, stderr } = await runBench(['--short', '--no-write']);
    if (code !== 0) throw new Error(`pnpm bench --short exited with ${code}:\n${stderr}\n${stdout.slice(-3000)}`);

    const found = sections(stdout);
    expect([...found.keys()].sort()).toEqual([...SCENARIOS].sort());
    for (const id of SCENARIOS) {
      const { headers, rows } = found.get(id)!;
      expect(rows.length, `${id}: rows`).toBeGreaterThan(0);
      // the measured column: events/s or latency (load scenarios), per second (PGlite); storage:
      // the bytes per debit of its "total" rows (their empty cells collapse, so the last cell)
      const col = headers.findIndex((h) => ['events/s', 'latency ms', 'per second'].includes(h));
      const measured = id === 'storage' ? rows.filter((r) => r[1] === 'total').map((r) => r[r.length - 1]) : rows.map((r) => r[col]);
      expect(id === 'storage' || col >= 0, `${id}: measured column in ${headers.join(' | ')}`).toBe(true);
      expect(measured.length, `${id}: measured rows`).toBeGreaterThan(0);
      for (const [i, cell] of measured.entries()) {
        expect(number(cell), `${id} row ${i + 1}: ${rows[i]?.join(' | ')}`).toBeGreaterThan(0);
      }
    }
    expect(stdout).not.toMatch(/^wrote .*benchmarks\.md/m);
  });
});
