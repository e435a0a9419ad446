// Runs pgbench the one way PERFORMANCE.md prescribes (-M prepared -j 2 -n, custom scripts) and
// reads its summary.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PgbenchScript } from './scenarios.ts';

export const SQL_DIR = fileURLToPath(new URL('../sql/', import.meta.url));
const PGBENCH = process.env.PGBENCH ?? 'pgbench';

export interface PgbenchResult {
  tps: number;
  /** Transactions pgbench counted as processed. */
  transactions: number;
  failed: number;
  latencyMs: number;
  /** transactions / tps: the measured period, without connection time. */
  seconds: number;
  output: string;
}

export interface PgbenchRun {
  url: string;
  scripts: PgbenchScript[];
  clients: number;
  /** -T seconds, or -t transactions per client. */
  seconds?: number;
  transactionsPerClient?: number;
  defines?: Record<string, number | string>;
}

/** `pgbench --version`, or throws with a hint when it is not installed. */
export function pgbenchVersion(): string {
  const r = spawnSync(PGBENCH, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(`pgbench not found (${r.error?.message ?? r.stderr}); install postgresql-client or set PGBENCH=/path/to/pgbench`);
  }
  return r.stdout.trim();
}

const running = new Set<ChildProcess>();

/** Pids of the pgbench processes running now. */
export function pgbenchPids(): number[] {
  return [...running].flatMap((c) => (c.pid === undefined ? [] : [c.pid]));
}

/** Stops pgbench processes this bench started (on Ctrl-C). */
export function killPgbench(): void {
  for (const child of running) child.kill('SIGINT');
}

export function pgbenchArgs(run: PgbenchRun): string[] {
  const args = ['-M', 'prepared', '-j', '2', '-c', String(run.clients), '-n'];
  if (run.seconds !== undefined) args.push('-T', String(run.seconds));
  else if (run.transactionsPerClient !== undefined) args.push('-t', String(run.transactionsPerClient));
  else throw new Error('pgbench run needs seconds or transactionsPerClient');
  for (const [k, v] of Object.entries(run.defines ?? {})) args.push('-D', `${k}=${v}`);
  for (const s of run.scripts) args.push('-f', `${join(SQL_DIR, s.file)}${s.weight === undefined ? '' : `@${s.weight}`}`);
  args.push(run.url);
  return args;
}

export function runPgbench(run: PgbenchRun): Promise<PgbenchResult> {
  const args = pgbenchArgs(run);
  return new Promise((resolve, reject) => {
    const child = spawn(PGBENCH, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PGAPPNAME: 'pgbench' } });
    running.add(child);
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      running.delete(child);
      const shown = args.map((a) => (a === run.url ? '<url>' : a)).join(' ');
      if (code !== 0) {
        reject(new Error(`pgbench ${shown} exited with ${code ?? signal}:\n${output}`));
        return;
      }
      try {
        resolve(parsePgbench(output));
      } catch (err) {
        const Err = err instanceof NoTransactionsError ? NoTransactionsError : Error;
        reject(new Err(`pgbench ${shown}: ${(err as Error).message}\n${output}`));
      }
    });
  });
}

/** A timed run ended with no transaction completed and none failed (see runVariant). */
export class NoTransactionsError extends Error {}

export function parsePgbench(output: string): PgbenchResult {
  const num = (re: RegExp, what: string): number => {
    const m = re.exec(output);
    if (!m?.[1]) throw new Error(`no ${what} in pgbench output`);
    return Number(m[1]);
  };
  if (/aborted in command|Run was aborted/.test(output)) throw new Error('a pgbench client aborted');
  if (/^number of transactions actually processed: 0$/m.test(output) && !/^number of failed transactions: [1-9]/m.test(output)) {
    throw new NoTransactionsError('pgbench processed no transactions');
  }
  const tps = num(/^tps = ([\d.]+) \(without initial connection time\)/m, 'tps');
  const transactions = num(/^number of transactions actually processed: (\d+)/m, 'transaction count');
  const failedMatch = /^number of failed transactions: (\d+)/m.exec(output);
  const failed = failedMatch?.[1] ? Number(failedMatch[1]) : 0;
  const latencyMs = num(/^latency average = ([\d.]+) ms/m, 'latency');
  if (!(tps > 0) || transactions === 0) throw new Error('pgbench processed no transactions');
  if (failed > 0) throw new Error(`${failed} pgbench transactions failed`);
  return { tps, transactions, failed, latencyMs, seconds: transactions / tps, output };
}
