// `pnpm bench`: creditkit's hot path against baselines on the Postgres server in DATABASE_URL.
//
// Creates throwaway creditkit_bench_* databases, installs the kit the way every test database gets
// it (creditkit's setupDatabase), adds the bench schema (scripts/bench/sql/schema.sql), then runs
// pgbench custom scripts per scenario: the baselines (R, R+L, R+L+K, N, and M and M+T, Makerkit's
// guide), then the kit, on freshly reset state, interleaved per repetition. It prints medians, min–max and ratios, and in a full run of
// every scenario writes docs/benchmarks.md. The method is PERFORMANCE.md's. The release scenario
// also creates a database installed at the previous release and runs the same consume there.
//
//   pnpm bench                         full run (3 repetitions × 10 s runs, about 20 minutes)
//   pnpm bench --short --no-write      CI smoke: 1 s runs, 1 repetition, small datasets
//   pnpm bench --only hot-16,reject-64 --reps 5 --duration 20
//   pnpm bench --only release,check    this version's consume against the previous release's, check against consume
//   pnpm bench --only autotopup        consume with auto top-up configured (not crossing) against without
//   pnpm bench --only citus            consume through a local Citus cluster against this server (CREDITKIT_CITUS_DIR)
//   pnpm bench --short --only release,check --no-write   the same as a smoke (a few seconds of runs)
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  brokenAccounts,
  createBenchDb,
  createCitusBenchDb,
  debitsSince,
  dropBenchDbs,
  fillLedger,
  ledgerRows,
  relationSizes,
  reset,
  settle,
  snapshot,
  vacuum,
  type BenchDb,
  type RelationSizes,
} from './lib/db.ts';
import { describeMachine } from './lib/machine.ts';
import { loadAverage, startMonitor, type Monitored } from './lib/monitor.ts';
import { parseOptions, USAGE, UsageError, type Options } from './lib/options.ts';
import { killPgbench, NoTransactionsError, pgbenchPids, pgbenchVersion, runPgbench } from './lib/pgbench.ts';
import {
  buildTargets,
  existingNotes,
  renderMarkdown,
  renderText,
  summarize,
  type BenchReport,
  type PgliteRep,
  type RunResult,
  type StorageResult,
} from './lib/report.ts';
import { CURRENT, PREVIOUS, previousMigrations } from './lib/releases.ts';
import { datasets, fmtInt, fmtRows, OPT_IN_SCENARIOS, SCENARIO_IDS, scenarios, type Scenario, type ScenarioId, type Variant } from './lib/scenarios.ts';
import { sdkConsumeLoop, startPglite } from './lib/sdk.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const docPath = join(root, 'docs/benchmarks.md');
const log = (msg: string) => console.log(msg);

let opts: Options;
try {
  opts = parseOptions(process.argv.slice(2));
} catch (err) {
  if (err instanceof UsageError) {
    if (err.message) console.error(`error: ${err.message}\n`);
    console.error(USAGE);
    process.exit(err.message ? 2 : 0);
  }
  throw err;
}

const serverUrl = process.env.DATABASE_URL;
if (!serverUrl) {
  console.error('error: DATABASE_URL is not set (a superuser URL, e.g. postgresql://postgres@127.0.0.1:5432/postgres)\n');
  console.error(USAGE);
  process.exit(2);
}

const fillerRows = opts.short ? 100_000 : 10_000_000;
const storageDebits = opts.short ? 1_600 : 160_000;
const pgliteAccounts = 100;
const ds = datasets(opts.short);
const allScenarios = scenarios(opts.short, fillerRows);

// --only: the scenarios asked for, plus uniform-16 when a scenario's ratios need its runs
const wanted = new Set<ScenarioId>(opts.only ?? SCENARIO_IDS.filter((id) => !OPT_IN_SCENARIOS.includes(id)));
for (const s of allScenarios) if (wanted.has(s.id) && s.reference) wanted.add(s.reference);
const selected = allScenarios.filter((s) => wanted.has(s.id));
const fullDoc = !opts.short && opts.only === null;

const dbs: BenchDb[] = [];
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    console.error(`\n${signal}: stopping pgbench and dropping the bench databases…`);
    killPgbench();
    void dropBenchDbs(serverUrl, dbs).finally(() => process.exit(130));
  });
}

async function main(): Promise<void> {
  const started = new Date();
  const loadBefore = loadAverage();
  const pgbench = pgbenchVersion();
  const modeLine = `${opts.short ? 'short' : 'full'} mode: ${opts.reps} repetition(s) × ${opts.duration} s runs`;
  log(`creditkit bench — ${modeLine}; scenarios: ${[...wanted].join(', ')}`);

  const mainDb = await createBenchDb(serverUrl!);
  dbs.push(mainDb);
  log(`bench database ${mainDb.name}: kit installed (setupDatabase) and bench schema added`);
  const machine = await describeMachine(mainDb.admin, pgbench, root);

  let previous: BenchDb | undefined;
  if (wanted.has('release')) {
    previous = await createBenchDb(serverUrl!, '_prev', previousMigrations());
    dbs.push(previous);
    log(`previous-release database ${previous.name}: creditkit ${PREVIOUS} installed (its migrations as shipped) and bench schema added; the bench database is at ${CURRENT}`);
  }

  let citus: BenchDb | undefined;
  if (wanted.has('citus')) {
    citus = await createCitusBenchDb();
    dbs.push(citus);
    log(
      `citus database ${citus.name}: kit installed through the coordinator (${citus.url.replace(/\/[^/]*$/, '')}), bench schema ` +
        `added, distributed by scripts/citus/distribute.sql; the cluster stays running (cluster.sh stop to end it)`,
    );
  }

  let big: BenchDb | undefined;
  let bigLedger = 0;
  let fill: BenchReport['fill'];
  if (wanted.has('cost')) {
    big = await createBenchDb(serverUrl!, '_big');
    dbs.push(big);
    log(`cost-growth database ${big.name}: seeding ${fmtInt(ds.uniform.accounts)} accounts, then ${fmtRows(fillerRows)} filler ledger rows`);
    const t0 = performance.now();
    await reset(big, ds.uniform);
    await fillLedger(big, fillerRows, opts.short ? () => {} : log);
    await vacuum(big);
    fill = { rows: fillerRows, seconds: (performance.now() - t0) / 1000 };
    bigLedger = await ledgerRows(big);
    log(`  done in ${fill.seconds.toFixed(1)} s; ledger rows: ${fmtInt(bigLedger)}`);
  }

  const runs: RunResult[] = [];
  for (let rep = 1; rep <= opts.reps; rep++) {
    for (const sc of selected) {
      const variants = sc.alternate && rep % 2 === 0 ? [...sc.variants].reverse() : sc.variants;
      for (const v of variants) {
        const db = { main: mainDb, big, previous, citus }[v.db]!;
        const r = await runVariant(sc, v, rep, db, v.db === 'big' ? bigLedger : undefined);
        if (v.db === 'big') bigLedger += r.debits;
        runs.push(r);
        log(
          `[rep ${rep}/${opts.reps}] ${sc.id.padEnd(10)} ${v.key.padEnd(10)} c${String(v.clients).padEnd(3)}` +
            ` ${fmtInt(r.tps).padStart(7)} tps  ${fmtInt(r.rate).padStart(7)} events/s  ${r.latencyMs.toFixed(3)} ms` +
            `  debits ${fmtInt(r.debits)}  cpu ${(100 * r.monitored.cpuBusy).toFixed(0)}% (others ${(100 * r.monitored.cpuOthers).toFixed(0)}%)` +
            `${r.clientCores === undefined ? '' : `  (node ${r.clientCores.toFixed(2)} cores)`}`,
        );
      }
    }
  }

  let storage: StorageResult | undefined;
  if (wanted.has('storage')) {
    storage = await measureStorage(mainDb);
    log(`storage: ${storage.perConsume.toFixed(1)} bytes per consume over ${fmtInt(storage.consumes)} consumes (R+L: ${storage.baseline.perDebit.toFixed(1)})`);
  }

  let pglite: PgliteRep[] | undefined;
  if (wanted.has('pglite')) {
    pglite = [];
    const p = await startPglite(pgliteAccounts);
    try {
      for (let rep = 1; rep <= opts.reps; rep++) {
        const r = await p.run(opts.duration);
        if (r.kit.ledger !== r.kit.allowed) throw new Error(`PGlite: ${r.kit.allowed} consumes allowed but ${r.kit.ledger} in the ledger`);
        pglite.push({ kitRate: r.kit.ledger / r.kit.seconds, kitLedger: r.kit.ledger, rawRate: r.raw.calls / r.raw.seconds });
        log(`[rep ${rep}/${opts.reps}] pglite     kit ${fmtInt(r.kit.ledger / r.kit.seconds)}/s, raw UPDATE ${fmtInt(r.raw.calls / r.raw.seconds)}/s`);
      }
    } finally {
      await p.close();
    }
  }

  const summaries = summarize(selected, runs);
  const report: BenchReport = {
    mode: opts.short ? 'short' : 'full',
    command: `pnpm bench${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(' ')}` : ''}`,
    started,
    finished: new Date(),
    reps: opts.reps,
    duration: opts.duration,
    machine,
    fill,
    scenarios: selected,
    runs,
    summaries,
    storage,
    pglite,
    targets: buildTargets(summaries, storage, pglite, fmtRows(fillerRows)),
    load: { before: loadBefore, after: loadAverage() },
  };
  log(renderText(report));

  if (opts.write && fullDoc) {
    const previous = existsSync(docPath) ? readFileSync(docPath, 'utf8') : undefined;
    writeFileSync(docPath, renderMarkdown(report, existingNotes(previous)));
    log(`\nwrote ${docPath}`);
  } else if (opts.write) {
    log(`\ndocs/benchmarks.md not written (${opts.short ? '--short' : '--only'}: only a full run of every scenario writes it)`);
  }
}

async function runVariant(sc: Scenario, v: Variant, rep: number, db: BenchDb, ledgerBefore: number | undefined): Promise<RunResult> {
  const dataset = ds[v.dataset];
  if (v.db === 'big') await settle(db);
  else await reset(db, dataset);
  if (v.watchedAt !== undefined) await db.admin.query('select bench.watch_all($1)', [v.watchedAt]);
  let before = await snapshot(db);
  const ledgerAtStart = sc.id === 'cost' ? (ledgerBefore ?? (await ledgerRows(db))) : undefined;

  const monitor = await startMonitor(db.sampler, ['pgbench', 'creditkit-bench-sdk'], pgbenchPids);
  let tps: number;
  let latencyMs: number;
  let transactions: number;
  let seconds: number;
  let clientCores: number | undefined;
  let monitored: Monitored;
  try {
    if (v.runner.kind === 'pgbench') {
      const runner = v.runner;
      const timed = (s: number) =>
        runPgbench({
          url: db.url,
          scripts: runner.scripts,
          clients: v.clients,
          seconds: s,
          defines: { naccounts: dataset.accounts, zipf: dataset.zipf ? 1 : 0, ...runner.defines },
        });
      let r;
      try {
        r = await timed(opts.duration);
      } catch (err) {
        // A short smoke run of 1 s can end on a loaded machine before any backend finishes its
        // first call (which compiles the plpgsql functions it reaches); a longer run on the same
        // state still tells whether the script works. Full runs keep the error.
        if (!(opts.short && err instanceof NoTransactionsError)) throw err;
        log(`  ${sc.id} ${v.key}: no transaction completed in ${opts.duration} s; running it again for ${opts.duration * 5} s`);
        before = await snapshot(db);
        r = await timed(opts.duration * 5);
      }
      ({ tps, latencyMs, transactions, seconds } = r);
    } else {
      const r = await sdkConsumeLoop(db.url, v.clients, dataset.accounts, opts.duration, v.runner.via);
      transactions = r.calls;
      seconds = r.seconds;
      tps = r.calls / r.seconds;
      latencyMs = (v.clients * r.seconds * 1000) / r.calls;
      clientCores = r.clientCores;
    }
  } finally {
    monitored = await monitor.stop();
  }

  const counted = await debitsSince(db, before);
  if (v.debits === 'none' && (await snapshot(db)).kitMaxId !== before.kitMaxId) {
    throw new Error(`${sc.id} ${v.key}: spends nothing, yet the kit's ledger gained rows during the run`);
  }
  const debits = {
    none: 0,
    kit: counted.kit,
    'bench-ledger': counted.benchLedger,
    'bench-balance': counted.benchBalance,
    'bench-credits': counted.credits,
    'bench-transactions': counted.transactions,
  }[v.debits];
  if (v.db !== 'big' && (v.debits === 'kit' || v.debits === 'none')) {
    const broken = await brokenAccounts(db);
    if (broken > 0) throw new Error(`${sc.id} ${v.key}: ${broken} accounts break the kit's invariants after the run`);
  }
  return {
    scenario: sc.id,
    variant: v.key,
    role: v.role,
    rep,
    clients: v.clients,
    db: v.db,
    tps,
    rate: tps * v.eventsPerTx,
    latencyMs,
    transactions,
    seconds,
    debits,
    debitsPerS: debits / seconds,
    monitored,
    ledgerRows: ledgerAtStart,
    clientCores,
  };
}

/** Bytes per debit: table and index growth between two VACUUMs over a known number of debits. */
async function measureStorage(db: BenchDb): Promise<StorageResult> {
  const kitTables = ['creditkit.ledger', 'creditkit.accounts', 'creditkit.grants'];
  const benchTables = ['bench.ledger', 'bench.accounts'];
  const clients = 16;
  const perClient = storageDebits / clients;
  const delta = (a: RelationSizes, b: RelationSizes, tables: string[]) =>
    tables.map((t) => ({ table: t, tableBytes: b[t]!.table - a[t]!.table, indexBytes: b[t]!.indexes - a[t]!.indexes }));
  const sum = (parts: Array<{ tableBytes: number; indexBytes: number }>) => parts.reduce((s, p) => s + p.tableBytes + p.indexBytes, 0);
  const defines = { naccounts: ds.uniform.accounts, zipf: 0 };

  await reset(db, ds.uniform);
  const kit0 = await relationSizes(db, kitTables);
  const bench0 = await relationSizes(db, benchTables);
  const before = await snapshot(db);
  await runPgbench({ url: db.url, scripts: [{ file: 'consume.sql' }], clients, transactionsPerClient: perClient, defines });
  await vacuum(db, kitTables);
  const kit1 = await relationSizes(db, kitTables);
  await runPgbench({ url: db.url, scripts: [{ file: 'rl.sql' }], clients, transactionsPerClient: perClient, defines });
  await vacuum(db, benchTables);
  const bench1 = await relationSizes(db, benchTables);
  const counted = await debitsSince(db, before);
  const parts = delta(kit0, kit1, kitTables);
  const baseParts = delta(bench0, bench1, benchTables);
  return {
    consumes: counted.kit,
    perConsume: sum(parts) / counted.kit,
    parts,
    baseline: { debits: counted.benchLedger, perDebit: sum(baseParts) / counted.benchLedger, parts: baseParts },
  };
}

try {
  await main();
} catch (err) {
  console.error(`\nbench failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
} finally {
  if (!interrupted) await dropBenchDbs(serverUrl, dbs);
}
