// Command-line flags of `pnpm bench`.
import { SCENARIO_IDS, type ScenarioId } from './scenarios.ts';

export interface Options {
  /** CI smoke: ~1 s runs, 1 repetition, small datasets; checks that every script still runs. */
  short: boolean;
  /** Scenarios to run (null: all). Scenarios that need uniform-16's runs for their ratios pull it in. */
  only: ScenarioId[] | null;
  reps: number;
  /** Seconds per pgbench / SDK run. */
  duration: number;
  /** Write docs/benchmarks.md (full mode with every scenario only). */
  write: boolean;
}

export const USAGE = `usage: pnpm bench [--short] [--only <scenario,...>] [--reps N] [--duration S] [--no-write]

  --short        CI smoke: 1 s runs, 1 repetition, small datasets, ≤ 16 clients (checks the scripts still run)
  --only         run only these scenarios: ${SCENARIO_IDS.join(', ')}
                 (citus only when named: it needs the local Citus cluster, CREDITKIT_CITUS_DIR)
  --reps N       repetitions (default 3; 1 with --short)
  --duration S   seconds per run (default 10; 1 with --short)
  --no-write     do not write docs/benchmarks.md (only a full run of every scenario writes it)

Needs DATABASE_URL (a superuser URL; the bench creates and drops its own creditkit_bench_* databases)
and pgbench on PATH (or PGBENCH=/path/to/pgbench).`;

export function parseOptions(argv: string[]): Options {
  let short = false;
  let only: ScenarioId[] | null = null;
  let reps: number | undefined;
  let duration: number | undefined;
  let write = true;
  const value = (i: number, flag: string): string => {
    const v = argv[i];
    if (v === undefined || v.startsWith('--')) throw new UsageError(`${flag} needs a value`);
    return v;
  };
  const positiveInt = (v: string, flag: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag} must be a positive integer, got ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const next = () => inline ?? value(++i, flag);
    switch (flag) {
      case '--short':
        short = true;
        break;
      case '--no-write':
        write = false;
        break;
      case '--only': {
        const ids = next().split(',').map((s) => s.trim()).filter(Boolean);
        const unknown = ids.filter((id) => !(SCENARIO_IDS as readonly string[]).includes(id));
        if (unknown.length > 0 || ids.length === 0) {
          throw new UsageError(`unknown scenario ${unknown.join(', ') || '(none)'}; known: ${SCENARIO_IDS.join(', ')}`);
        }
        only = ids as ScenarioId[];
        break;
      }
      case '--reps':
        reps = positiveInt(next(), flag);
        break;
      case '--duration':
        duration = positiveInt(next(), flag);
        break;
      case '--help':
      case '-h':
        throw new UsageError('');
      default:
        throw new UsageError(`unknown argument ${arg}`);
    }
  }
  return { short, only, reps: reps ?? (short ? 1 : 3), duration: duration ?? (short ? 1 : 10), write };
}

export class UsageError extends Error {}
