// What the machine and the server were doing during a run: wait events of the benchmark's own
// backends (pg_stat_activity sampled every 100 ms), CPU use from /proc/stat (busy, iowait,
// steal), and how much of that CPU went to anything else than this run. The machine and the
// server are shared, so that is how a loaded machine shows in the results: ours is the run's
// backends, the server's background processes, pgbench and this Node process; others is the rest.
import { existsSync, readFileSync } from 'node:fs';
import pg from 'pg';

export interface Monitored {
  /** Backend-samples per wait event ("CPU" when active without a wait event). */
  waits: Record<string, number>;
  samples: number;
  /** Mean number of active client backends of other databases. */
  otherActive: number;
  /** Share of CPU time over the run, 0..1 (all cores). */
  cpuBusy: number;
  /** Share of CPU time used by processes other than the run's (see above), 0..1 (all cores). */
  cpuOthers: number;
  cpuIowait: number;
  cpuSteal: number;
  /** 1-minute load average at the start. */
  load1: number;
}

interface CpuTimes {
  total: number;
  idle: number;
  iowait: number;
  steal: number;
}

function cpuTimes(): CpuTimes | undefined {
  if (!existsSync('/proc/stat')) return undefined;
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
  return { total: user + nice + system + idle + iowait + irq + softirq + steal, idle, iowait, steal };
}

const CLK_TCK = 100; // USER_HZ on Linux: the unit of /proc/stat and /proc/<pid>/stat

/** utime + stime of a process (all its threads) in clock ticks, or undefined once it is gone. */
function processTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // fields 14 and 15 of proc(5), counted after the comm
  } catch {
    return undefined;
  }
}

export function loadAverage(): number {
  return existsSync('/proc/loadavg') ? Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]) : NaN;
}

const SAMPLE = `
  select coalesce(wait_event_type || ':' || wait_event, 'CPU') as wait, array_agg(pid) as pids
    from pg_stat_activity
   where datname = current_database() and backend_type = 'client backend'
     and pid <> pg_backend_pid() and application_name = any($1)
   group by 1`;
const BACKGROUND = `select array_agg(pid) as pids from pg_stat_activity where backend_type <> 'client backend'`;
const OTHERS = `
  select count(*)::int as n from pg_stat_activity
   where datname is distinct from current_database() and backend_type = 'client backend' and state = 'active'`;

/**
 * Samples until stop() is called. `client` must be a spare connection to the database under test;
 * `runPids` gives the pids of the run's own processes (pgbench) at any moment.
 */
export async function startMonitor(
  client: pg.Client,
  appNames: string[],
  runPids: () => number[] = () => [],
): Promise<{ stop(): Promise<Monitored> }> {
  const waits: Record<string, number> = {};
  let samples = 0;
  let others = 0;
  let otherSamples = 0;
  // CPU ticks of the run's processes: the largest cumulative value seen per pid (backends and
  // pgbench are new for every run, so their total is the run's), background ones as a difference
  const runTicks = new Map<number, number>();
  const background = ((await client.query<{ pids: number[] | null }>(BACKGROUND)).rows[0]?.pids ?? []).map(Number);
  const background0 = new Map(background.map((pid) => [pid, processTicks(pid) ?? 0]));
  const node0 = process.cpuUsage();
  const cpu0 = cpuTimes();
  const load1 = loadAverage();
  const note = (pid: number) => {
    const t = processTicks(pid);
    if (t !== undefined) runTicks.set(pid, Math.max(t, runTicks.get(pid) ?? 0));
  };
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const started = performance.now();
      try {
        const rows = (await client.query<{ wait: string; pids: number[] }>(SAMPLE, [appNames])).rows;
        if (rows.length > 0) {
          samples++;
          for (const r of rows) {
            waits[r.wait] = (waits[r.wait] ?? 0) + r.pids.length;
            for (const pid of r.pids) note(Number(pid));
          }
        }
        for (const pid of runPids()) note(pid);
        others += (await client.query<{ n: number }>(OTHERS)).rows[0]?.n ?? 0;
        otherSamples++;
      } catch {
        // sampling is best effort; a failed sample is skipped
      }
      await new Promise((r) => setTimeout(r, Math.max(0, 100 - (performance.now() - started))));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      const cpu1 = cpuTimes();
      const node = process.cpuUsage(node0);
      let ours = [...runTicks.values()].reduce((a, b) => a + b, 0) + ((node.user + node.system) / 1e6) * CLK_TCK;
      for (const [pid, t0] of background0) ours += Math.max(0, (processTicks(pid) ?? t0) - t0);
      const d = cpu0 && cpu1 ? cpu1.total - cpu0.total : 0;
      const share = (k: keyof CpuTimes) => (cpu0 && cpu1 && d > 0 ? (cpu1[k] - cpu0[k]) / d : NaN);
      const busy = cpu0 && cpu1 && d > 0 ? 1 - share('idle') - share('iowait') - share('steal') : NaN;
      return {
        waits,
        samples,
        otherActive: otherSamples ? others / otherSamples : NaN,
        cpuBusy: busy,
        cpuOthers: d > 0 ? Math.max(0, busy - ours / d) : NaN,
        cpuIowait: share('iowait'),
        cpuSteal: share('steal'),
        load1,
      };
    },
  };
}

/** The most frequent wait events as "CPU 61%, Client:ClientRead 30%, …" (share of backend-samples). */
export function topWaits(waits: Record<string, number>, n = 3): string {
  const total = Object.values(waits).reduce((a, b) => a + b, 0);
  if (total === 0) return '';
  return Object.entries(waits)
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([w, c]) => `${w} ${Math.round((100 * c) / total)}%`)
    .join(', ');
}

export function mergeWaits(list: Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const w of list) for (const [k, v] of Object.entries(w)) out[k] = (out[k] ?? 0) + v;
  return out;
}
