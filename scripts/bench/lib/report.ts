// Medians, ranges and ratios from the runs, the targets, and the two renderings: an aligned table
// on stdout and docs/benchmarks.md. Every number printed comes from a run's result.
import type { Machine } from './machine.ts';
import { mergeWaits, topWaits, type Monitored } from './monitor.ts';
import { CURRENT, PREVIOUS } from './releases.ts';
import { BASELINE_NAMES, BASELINES, fmtInt, type Baseline, type Role, type Scenario, type Variant } from './scenarios.ts';

export interface RunResult {
  scenario: string;
  variant: string;
  role: Role;
  rep: number;
  clients: number;
  db: Variant['db'];
  /** Transactions (pgbench) or calls (SDK) per second. */
  tps: number;
  /** tps × debits per transaction: events per second. */
  rate: number;
  latencyMs: number;
  transactions: number;
  seconds: number;
  /** Successful debits counted from the ledgers (kit, R+L, R+L+K, M+T) or the balances (R, N, M); 0 for a check. */
  debits: number;
  debitsPerS: number;
  monitored: Monitored;
  /** Ledger rows in that database when the run started (cost growth). */
  ledgerRows?: number;
  /** SDK runs: CPU the bench's Node process used, in cores. */
  clientCores?: number;
}

export interface Stat {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function stat(xs: number[]): Stat | undefined {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const mid = Math.floor(v.length / 2);
  const median = v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { median, min: v[0]!, max: v[v.length - 1]!, n: v.length };
}

export interface Summary {
  scenario: Scenario;
  variant: Scenario['variants'][number];
  runs: RunResult[];
  value: Stat;
  tps: Stat;
  latency: Stat;
  debitsPerS: Stat | undefined;
  /** Per-repetition ratios (this ÷ that baseline of the same repetition), then median/min/max. */
  vs: Partial<Record<Baseline, Stat>>;
  /** The same against the scenario's kit (scenarios with a reference: uniform-16's plain consume). */
  vsKit?: Stat;
  vsCompare?: Stat;
  waits: string;
}

export interface StorageResult {
  consumes: number;
  perConsume: number;
  parts: Array<{ table: string; tableBytes: number; indexBytes: number }>;
  baseline: { debits: number; perDebit: number; parts: Array<{ table: string; tableBytes: number; indexBytes: number }> };
}

export interface PgliteRep {
  kitRate: number;
  kitLedger: number;
  rawRate: number;
}

export interface Target {
  what: string;
  measured: Stat | undefined;
  unit: 'x' | 'B' | '/s';
  op: '>=' | '<=';
  threshold: number;
  pass: boolean | undefined;
}

export interface BenchReport {
  mode: 'full' | 'short';
  command: string;
  started: Date;
  finished: Date;
  reps: number;
  duration: number;
  machine: Machine;
  fill?: { rows: number; seconds: number };
  scenarios: Scenario[];
  runs: RunResult[];
  summaries: Summary[];
  storage?: StorageResult;
  pglite?: PgliteRep[];
  targets: Target[];
  load: { before: number; after: number };
}

function ratioStat(runs: RunResult[], refs: RunResult[], field: 'rate' | 'latencyMs'): Stat | undefined {
  if (refs.length === 0) return undefined;
  const byRep = new Map(refs.map((r) => [r.rep, r[field]]));
  return stat(runs.map((r) => r[field] / (byRep.get(r.rep) ?? NaN)));
}

export function summarize(scenarios: Scenario[], runs: RunResult[]): Summary[] {
  const out: Summary[] = [];
  for (const sc of scenarios) {
    const baseId = sc.reference ?? sc.id;
    const base = scenarios.find((s) => s.id === baseId);
    const refRuns = (role: Role) => {
      const v = base?.variants.find((x) => x.role === role);
      return v ? runs.filter((r) => r.scenario === baseId && r.variant === v.key) : [];
    };
    for (const v of sc.variants) {
      const mine = runs.filter((r) => r.scenario === sc.id && r.variant === v.key);
      if (mine.length === 0) continue;
      const field = sc.metric === 'latency' ? 'latencyMs' : 'rate';
      const value = stat(mine.map((r) => r[field]))!;
      const isRate = sc.metric === 'rate';
      out.push({
        scenario: sc,
        variant: v,
        runs: mine,
        value,
        tps: stat(mine.map((r) => r.tps))!,
        latency: stat(mine.map((r) => r.latencyMs))!,
        debitsPerS: stat(mine.map((r) => r.debitsPerS)),
        vs: isRate
          ? Object.fromEntries(BASELINES.flatMap((b) => {
              const r = ratioStat(mine, refRuns(b), 'rate');
              return r ? [[b, r]] : [];
            }))
          : {},
        vsKit: isRate && v.role !== 'kit' && sc.reference ? ratioStat(mine, refRuns('kit'), 'rate') : undefined,
        vsCompare: v.compareTo
          ? ratioStat(mine, runs.filter((r) => r.scenario === sc.id && r.variant === v.compareTo), field)
          : undefined,
        waits: topWaits(mergeWaits(mine.map((r) => r.monitored.waits))),
      });
    }
  }
  return out;
}

export function findSummary(summaries: Summary[], scenario: string, variant: string): Summary | undefined {
  return summaries.find((s) => s.scenario.id === scenario && s.variant.key === variant);
}

/**
 * The goals of PERFORMANCE.md (restated 2026-12-04), issue 23's for units (this version's consume
 * against the previous release's, check against consume) and issue 24's for auto top-up (consume
 * with it configured against without), each with what this run measured. A goal
 * whose scenario did not run reads "not run". R and N stay in the tables as references, not as goals.
 */
export function buildTargets(
  summaries: Summary[],
  storage: StorageResult | undefined,
  pglite: PgliteRep[] | undefined,
  fillerLabel: string,
): Target[] {
  const t: Target[] = [];
  const add = (what: string, measured: Stat | undefined, unit: Target['unit'], op: Target['op'], threshold: number) =>
    t.push({
      what,
      measured,
      unit,
      op,
      threshold,
      pass: measured === undefined ? undefined : op === '>=' ? measured.median >= threshold : measured.median <= threshold,
    });
  const loads = ['uniform-16', 'uniform-64', 'hot-16', 'hot-64'];
  const vs = (scenario: string, variant: string, b: Baseline) => findSummary(summaries, scenario, variant)?.vs[b];
  for (const id of loads) add(`plain consume ÷ R+L, ${id}`, vs(id, 'kit', 'RL'), 'x', '>=', 0.9);
  for (const id of loads) add(`plain consume ÷ M+T, ${id}`, vs(id, 'kit', 'MT'), 'x', '>=', 1.0);
  for (const id of loads) add(`keyed consume ÷ R+L+K, ${id}`, vs(id, 'kit keyed', 'RLK'), 'x', '>=', 0.9);
  for (const id of loads) add(`keyed consume ÷ M+T, ${id}`, vs(id, 'kit keyed', 'MT'), 'x', '>=', 0.9);
  add('meter ÷ plain consume (16 clients)', findSummary(summaries, 'meter', 'kit meter')?.vsKit, 'x', '>=', 0.9);
  add('reserve + settle ÷ plain consume (logical debits, 16 clients)', findSummary(summaries, 'holds', 'kit hold')?.vsKit, 'x', '>=', 0.45);
  add('rejection storm ÷ M, reject-64', vs('reject-64', 'kit', 'M'), 'x', '>=', 1.5);
  add(
    `${CURRENT} plain consume ÷ ${PREVIOUS} plain consume (two databases, same data, 16 clients)`,
    findSummary(summaries, 'release', `kit ${CURRENT}`)?.vsCompare,
    'x',
    '>=',
    0.95,
  );
  add('check ÷ plain consume (check writes nothing; same accounts, 16 clients)', findSummary(summaries, 'check', 'kit check')?.vsCompare, 'x', '>=', 3);
  add('consume with auto top-up configured (not crossing) ÷ without (16 clients)', findSummary(summaries, 'autotopup', 'kit watched')?.vsCompare, 'x', '>=', 0.95);
  add('100-event batches ÷ single consume (events/s, 16 clients)', findSummary(summaries, 'batch', 'kit ×100')?.vsKit, 'x', '>=', 20);
  add(
    `consume latency at ${fillerLabel} ledger rows ÷ empty ledger (1 client)`,
    findSummary(summaries, 'cost', `kit @${fillerLabel}`)?.vsCompare,
    'x',
    '<=',
    1.1,
  );
  add('storage per consume (bytes)', storage ? { median: storage.perConsume, min: storage.perConsume, max: storage.perConsume, n: 1 } : undefined, 'B', '<=', 160);
  add('SDK over node-postgres ÷ bare pg driver, same function, 16 clients', findSummary(summaries, 'sdk', 'sdk')?.vsCompare, 'x', '>=', 0.85);
  add('PGlite consumes/s (SDK, single-threaded)', pglite ? stat(pglite.map((p) => p.kitRate)) : undefined, '/s', '>=', 2000);
  return t;
}

// ── formatting ────────────────────────────────────────────────────────────────────────────────

const rate = (n: number) => fmtInt(n);
const ratio = (n: number) => `${n.toFixed(2)}×`;
const ms = (n: number) => n.toFixed(3);

function range(s: Stat | undefined, f: (n: number) => string): string {
  if (!s) return '';
  return s.n > 1 ? `${f(s.min)}–${f(s.max)}` : '';
}

function withRange(s: Stat | undefined, f: (n: number) => string): string {
  if (!s) return '';
  return s.n > 1 ? `${f(s.median)} (${f(s.min)}–${f(s.max)})` : f(s.median);
}

export function targetValue(t: Target): string {
  if (!t.measured) return 'not run';
  const f = t.unit === 'x' ? ratio : t.unit === 'B' ? (n: number) => `${n.toFixed(0)} B` : (n: number) => `${rate(n)}/s`;
  return withRange(t.measured, f);
}

export function targetGoal(t: Target): string {
  const v = t.unit === 'x' ? ratio(t.threshold) : t.unit === 'B' ? `${t.threshold} B` : `${rate(t.threshold)}/s`;
  return `${t.op === '>=' ? '≥' : '≤'} ${v}`;
}

const verdict = (t: Target) => (t.pass === undefined ? '–' : t.pass ? 'met' : 'MISSED');

type Table = { headers: string[]; rows: string[][]; right?: number[] };

function scenarioTable(report: BenchReport, sc: Scenario): Table | undefined {
  const rows = report.summaries.filter((s) => s.scenario.id === sc.id);
  if (rows.length === 0) return undefined;
  if (sc.metric === 'latency') {
    return {
      headers: ['variant', 'clients', 'latency ms', 'min–max', 'tps', 'vs @empty', 'ledger rows', 'debits/s (ledger)', 'top waits'],
      right: [1, 2, 3, 4, 5, 6, 7],
      rows: rows.map((s) => [
        s.variant.key,
        String(s.variant.clients),
        ms(s.value.median),
        range(s.value, ms),
        rate(s.tps.median),
        s.vsCompare ? withRange(s.vsCompare, ratio) : '',
        s.runs[0]?.ledgerRows !== undefined ? fmtInt(s.runs[0].ledgerRows) : '',
        s.debitsPerS ? rate(s.debitsPerS.median) : '',
        s.waits,
      ]),
    };
  }
  // a column per baseline this scenario's rows were compared with (the short smoke runs the
  // baselines in uniform-16 only), then the kit and the variant's own comparison if any row has one;
  // a scenario measured against uniform-16 shows only the two floors its consume is held to
  const shown: readonly Baseline[] = sc.reference ? ['RL', 'MT'] : BASELINES;
  const bases = shown.filter((b) => rows.some((s) => s.vs[b]));
  const hasKit = rows.some((s) => s.vsKit);
  const hasCompare = rows.some((s) => s.vsCompare);
  const ratioCols = bases.length + (hasKit ? 1 : 0) + (hasCompare ? 1 : 0);
  return {
    headers: [
      'variant',
      'clients',
      'events/s',
      'min–max',
      ...bases.map((b) => `×${BASELINE_NAMES[b]}`),
      ...(hasKit ? ['×kit'] : []),
      ...(hasCompare ? ['vs'] : []),
      'debits/s (counted)',
      'top waits',
    ],
    right: Array.from({ length: 4 + ratioCols }, (_, i) => i + 1),
    rows: rows.map((s) => [
      s.variant.key,
      String(s.variant.clients),
      rate(s.value.median),
      range(s.value, rate),
      ...bases.map((b) => (s.vs[b] ? withRange(s.vs[b], ratio) : '')),
      ...(hasKit ? [s.vsKit ? withRange(s.vsKit, ratio) : ''] : []),
      ...(hasCompare ? [s.vsCompare ? `${withRange(s.vsCompare, ratio)} ${s.variant.compareTo}` : ''] : []),
      s.debitsPerS ? rate(s.debitsPerS.median) : '',
      s.waits,
    ]),
  };
}

function targetsTable(report: BenchReport): Table {
  return {
    headers: ['goal', 'threshold', 'measured: median (min–max)', 'result'],
    rows: report.targets.map((t) => [t.what, targetGoal(t), targetValue(t), verdict(t)]),
  };
}

function storageTable(s: StorageResult): Table {
  const row = (who: string, n: number, p: StorageResult['parts']) =>
    p.map((x) => [who, x.table, (x.tableBytes / n).toFixed(1), (x.indexBytes / n).toFixed(1), ((x.tableBytes + x.indexBytes) / n).toFixed(1)]);
  return {
    headers: ['side', 'table', 'heap B/debit', 'indexes B/debit', 'total B/debit'],
    right: [2, 3, 4],
    rows: [
      ...row(`kit (${fmtInt(s.consumes)} consumes)`, s.consumes, s.parts),
      ['kit', 'total', '', '', s.perConsume.toFixed(1)],
      ...row(`R+L (${fmtInt(s.baseline.debits)} debits)`, s.baseline.debits, s.baseline.parts),
      ['R+L', 'total', '', '', s.baseline.perDebit.toFixed(1)],
    ],
  };
}

function pgliteTable(p: PgliteRep[]): Table {
  const kit = stat(p.map((x) => x.kitRate))!;
  const raw = stat(p.map((x) => x.rawRate))!;
  const r = stat(p.map((x) => x.kitRate / x.rawRate))!;
  return {
    headers: ['variant', 'per second', 'min–max', '×raw'],
    right: [1, 2, 3],
    rows: [
      ['raw UPDATE (db.query)', rate(raw.median), range(raw, rate), ''],
      ['creditkit.consume() (SDK)', rate(kit.median), range(kit, rate), withRange(r, ratio)],
    ],
  };
}

function text(t: Table): string {
  const all = [t.headers, ...t.rows];
  const w = t.headers.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r.map((c, i) => (t.right?.includes(i) ? c.padStart(w[i]!) : c.padEnd(w[i]!))).join('  ').trimEnd();
  return [line(t.headers), w.map((x) => '-'.repeat(x)).join('  '), ...t.rows.map(line)].join('\n');
}

function md(t: Table): string {
  const esc = (c: string) => c.replace(/\|/g, '\\|');
  return [
    `| ${t.headers.map(esc).join(' | ')} |`,
    `|${t.headers.map((_, i) => (t.right?.includes(i) ? '---:' : '---')).join('|')}|`,
    ...t.rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

export function renderText(report: BenchReport): string {
  const out: string[] = [];
  for (const sc of report.scenarios) {
    const t = scenarioTable(report, sc);
    if (!t) continue;
    out.push(`\n${sc.title} [${sc.id}]`, text(t));
  }
  if (report.storage) out.push('\nStorage per debit [storage]', text(storageTable(report.storage)));
  if (report.pglite) out.push('\nEmbedded PGlite, single-threaded [pglite]', text(pgliteTable(report.pglite)));
  out.push('\nGoals', text(targetsTable(report)));
  return out.join('\n');
}

function loadNote(report: BenchReport): string {
  const mons = report.runs.map((r) => r.monitored);
  const avg = (f: (m: Monitored) => number) => {
    const v = mons.map(f).filter(Number.isFinite);
    return v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN;
  };
  const others = stat(mons.map((m) => m.cpuOthers));
  const pct = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? '?' : `${(100 * n).toFixed(0)}%`);
  const loaded = (others?.median ?? 0) > 0.1 || (others?.max ?? 0) > 0.3;
  return [
    `- CPU during runs (both cores, mean over runs): busy ${pct(avg((m) => m.cpuBusy))}, iowait ${pct(avg((m) => m.cpuIowait))}, steal ${pct(avg((m) => m.cpuSteal))}.`,
    `- CPU used by other processes than the run's own (its backends, the server's background processes, pgbench, the bench's Node ` +
      `process) during runs: median ${pct(others?.median)}, highest ${pct(others?.max)} of the machine. Active client backends of ` +
      `other databases on the server: mean ${avg((m) => m.otherActive).toFixed(2)}. Load average: ${report.load.before.toFixed(2)} ` +
      `before the bench started, ${report.load.after.toFixed(2)} when it ended. ` +
      (loaded
        ? '**The machine was shared and loaded during this run**: other work took CPU from the runs, which lowers absolute figures and widens ranges; ratios within a repetition suffer less, since the runs are interleaved.'
        : 'The machine was otherwise mostly idle.'),
  ].join('\n');
}

export const NOTES_START = '<!-- notes:start (hand-written; kept when the file is regenerated) -->';
export const NOTES_END = '<!-- notes:end -->';

export function renderMarkdown(report: BenchReport, notes: string): string {
  const m = report.machine;
  const minutes = ((report.finished.getTime() - report.started.getTime()) / 60000).toFixed(1);
  const out: string[] = [];
  out.push(
    '# Benchmarks',
    '',
    `Generated by \`${report.command}\` (scripts/bench) on ${report.started.toISOString().slice(0, 16).replace('T', ' ')} UTC, ` +
      `${minutes} minutes, from commit ${m.commit}. Every figure below comes from that run; do not edit them by hand, run the bench again. ` +
      'Absolute figures depend on the machine; what carries over is the ratio to the baselines measured in the same run.',
    '',
    '## Machine',
    '',
    `- CPU: ${m.cpu}, ${m.cores} cores; RAM ${m.memory}; ${m.os}`,
    `- ${m.postgres}; ${m.pgbench}; Node ${m.node}`,
    `- Postgres settings: ${m.settings.map((s) => `${s.name}=${s.setting}`).join(', ')}`,
    '- The server is shared with other projects\' test runs; the bench uses its own throwaway databases.',
    loadNote(report),
    '',
    '## Method',
    '',
    `- ${report.reps} repetitions of every run, ${report.duration} s each. In each repetition every scenario runs its baselines first ` +
      '(R, R+L, R+L+K, N, M, M+T, as far as it has them), then the kit; figures are medians with min–max over the repetitions. A ratio is computed per repetition ' +
      '(the kit ÷ the baseline of the same repetition and client count), then its median and min–max are reported.',
    `- Side by side: the release scenario runs the same consume script in the bench database (${CURRENT}) and in a second ` +
      `database installed at ${PREVIOUS} from its migrations as shipped, both seeded and reset alike; it and the check scenario ` +
      'run their two variants in the reverse order in every other repetition, and compare them within each repetition.',
    '- pgbench: `-M prepared -j 2 -c N -T S -n`, custom scripts in scripts/bench/sql, as the superuser, calling the functions directly.',
    '- Before every run the state is reset with separate statements: both sides truncated and seeded with the dataset ' +
      '(bench.seed), `VACUUM ANALYZE` per table, then `CHECKPOINT`.',
    '- Successful debits are counted from the kit\'s ledger (consume rows written during the run), from the baseline ledger (R+L, R+L+K), ' +
      'from M+T\'s credit_transactions and from the baselines\' balances (R, N, M), not from calls; "debits/s (counted)" is that count over the run\'s duration. ' +
      'After every kit run on the bench database the invariants are checked (balance = ledger sum = bucket sum, held = open holds).',
    '- Baselines (schema `bench`, only in the bench database; same table shape, constraints, indexes, storage parameters and uuid key as ' +
      'the kit\'s): **R** `UPDATE … SET balance = balance - 1 WHERE id = $1 AND balance >= 1`; **R+L** that UPDATE plus a ledger ' +
      'INSERT in one plpgsql function; **R+L+K** R+L with a fresh idempotency key per debit in the ledger\'s unique (account, key) index; ' +
      '**N** plpgsql `SELECT … FOR UPDATE`, then `UPDATE`, no ledger. ' +
      '**M** and **M+T** are Makerkit\'s credit-based billing guide with its own tables (a credits row with integer tokens per account, ' +
      'a credit_transactions table with a serial key): **M** its consume_credits (SECURITY DEFINER, `SET search_path = \'\'`, ' +
      '`SELECT … FOR UPDATE`, refuse or `UPDATE`, no history); **M+T** the same plus its usage tracking, an INSERT into ' +
      'credit_transactions in the same transaction, which is what an app would otherwise build. R and N are kept as references; ' +
      'the goals are stated against R+L, R+L+K, M and M+T.',
    '- Top waits: pg_stat_activity of the run\'s backends sampled every 100 ms (`CPU` = active without a wait event; ' +
      '`Client:ClientRead` = idle, waiting for the next statement), share of backend-samples over all repetitions.',
    '',
    '## Goals',
    '',
    'The goals of PERFORMANCE.md (restated 2026-12-04), each with the ratio this run measured.',
    '',
    md(targetsTable(report)),
    '',
  );
  for (const sc of report.scenarios) {
    const t = scenarioTable(report, sc);
    if (!t) continue;
    out.push(`## ${sc.title}`, '', sc.what, '', md(t), '');
    const nodeRuns = report.runs.filter((r) => r.scenario === sc.id && r.clientCores !== undefined);
    for (const key of [...new Set(nodeRuns.map((r) => r.variant))]) {
      const cores = stat(nodeRuns.filter((r) => r.variant === key).map((r) => r.clientCores!));
      if (cores) out.push(`The Node process (${key}) used ${withRange(cores, (n) => n.toFixed(2))} cores of CPU during these runs.`, '');
    }
    if (sc.id === 'cost' && report.fill) {
      out.push(
        `The filler (${fmtInt(report.fill.rows)} ledger rows) took ${report.fill.seconds.toFixed(0)} s to write, vacuum and analyze.`,
        '',
      );
    }
  }
  if (report.storage) {
    out.push(
      '## Storage per debit',
      '',
      `Size growth of the tables (heap with TOAST, free-space and visibility maps) and of their indexes over ` +
        `${fmtInt(report.storage.consumes)} creditkit_consume calls (pgbench, 16 clients, ${'uniform'} accounts) ` +
        'between two `VACUUM ANALYZE`s, divided by the debits counted in the ledger; the same for R+L on the baseline tables. ' +
        'Growth of accounts and grants is dead-row space from the updates that VACUUM keeps for reuse.',
      '',
      md(storageTable(report.storage)),
      '',
    );
  }
  if (report.pglite) {
    out.push(
      '## Embedded PGlite',
      '',
      '`createEmbeddedCreditkit()` in memory in the bench\'s Node process, 100 accounts granted through the SDK, then ' +
        '`creditkit.consume()` one call after another for the run\'s duration; the raw UPDATE runs the same way through `db.query()` ' +
        'on a copy of the accounts table. Consumes counted from its ledger.',
      '',
      md(pgliteTable(report.pglite)),
      '',
    );
  }
  out.push('## What bounds it', '', NOTES_START, notes.trim() || '_No notes yet._', NOTES_END, '');
  out.push(
    '## Every run',
    '',
    md({
      headers: ['rep', 'scenario', 'variant', 'clients', 'tps', 'events/s', 'latency ms', 'debits', 'cpu busy', 'cpu others', 'top waits'],
      right: [0, 3, 4, 5, 6, 7, 8, 9],
      rows: report.runs.map((r) => [
        String(r.rep),
        r.scenario,
        r.variant,
        String(r.clients),
        rate(r.tps),
        rate(r.rate),
        ms(r.latencyMs),
        fmtInt(r.debits),
        `${(100 * r.monitored.cpuBusy).toFixed(0)}%`,
        `${(100 * r.monitored.cpuOthers).toFixed(0)}%`,
        topWaits(r.monitored.waits, 2),
      ]),
    }),
    '',
  );
  return out.join('\n');
}

/** The hand-written notes of an existing docs/benchmarks.md, to carry over. */
export function existingNotes(doc: string | undefined): string {
  if (!doc) return '';
  const a = doc.indexOf(NOTES_START);
  const b = doc.indexOf(NOTES_END);
  return a >= 0 && b > a ? doc.slice(a + NOTES_START.length, b).trim().replace(/^_No notes yet\._$/, '') : '';
}
