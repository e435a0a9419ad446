// What the bench measures. Every scenario is a list of variants run once per repetition, in this
// order, each on freshly reset state: the baselines first (R, R+L, R+L+K, N, M, M+T), then the
// kit. Scenarios with a `reference` (sdk, meter, batch, holds, mix) are compared with uniform-16's
// runs of the same repetition instead of repeating those runs. Scenarios that `alternate` (release,
// check) compare two variants with each other and run them in the reverse order in every other
// repetition, so that drift over the run favours neither. The citus scenario runs only when asked
// for (--only citus): it needs the local Citus cluster (docs/scaling.md).
import { CURRENT, PREVIOUS } from './releases.ts';

export const SCENARIO_IDS = [
  'uniform-16',
  'meter',
  'sdk',
  'batch',
  'holds',
  'mix',
  'release',
  'check',
  'autotopup',
  'uniform-64',
  'hot-16',
  'hot-64',
  'zipf-64',
  'reject-64',
  'cost',
  'storage',
  'pglite',
  'citus',
] as const;
export type ScenarioId = (typeof SCENARIO_IDS)[number];

/** Scenarios a run without --only leaves out: citus needs a Citus cluster beside the server. */
export const OPT_IN_SCENARIOS: readonly ScenarioId[] = ['citus'];

export type DatasetId = 'uniform' | 'hot' | 'zipf' | 'reject';
export interface Dataset {
  id: DatasetId;
  /** Accounts 1..n exist on both sides (kit and baselines). */
  accounts: number;
  /** Starting balance of every account (one purchase bucket on the kit's side; 0: no bucket). */
  balance: number;
  /** pgbench draws accounts Zipf-distributed (s = 1.1) instead of uniformly. */
  zipf: boolean;
  label: string;
}

export function datasets(short: boolean): Record<DatasetId, Dataset> {
  const uniform = 10_000;
  const zipf = short ? 10_000 : 100_000;
  return {
    uniform: { id: 'uniform', accounts: uniform, balance: 1e9, zipf: false, label: `${fmtInt(uniform)} accounts, uniform` },
    hot: { id: 'hot', accounts: 1, balance: 1e12, zipf: false, label: 'one account' },
    zipf: { id: 'zipf', accounts: zipf, balance: 1e9, zipf: true, label: `${fmtInt(zipf)} accounts, Zipf s=1.1` },
    reject: { id: 'reject', accounts: uniform, balance: 0, zipf: false, label: `${fmtInt(uniform)} accounts at balance 0, uniform` },
  };
}

/** The baselines, in the order they run and are shown. */
export const BASELINES = ['R', 'RL', 'RLK', 'N', 'M', 'MT'] as const;
export type Baseline = (typeof BASELINES)[number];
/** How a baseline's role reads in keys, columns and goals. */
export const BASELINE_NAMES: Record<Baseline, string> = { R: 'R', RL: 'R+L', RLK: 'R+L+K', N: 'N', M: 'M', MT: 'M+T' };

/** A baseline; kit: the kit's function the scenario is about; extra: other kit variants. */
export type Role = Baseline | 'kit' | 'extra';

export interface PgbenchScript {
  /** File under scripts/bench/sql. */
  file: string;
  weight?: number;
}

export interface Variant {
  /** Unique within the scenario: 'R', 'R+L', 'M+T', 'kit', 'kit keyed', 'kit ×10', 'sdk', 'kit @10M' … */
  key: string;
  label: string;
  role: Role;
  clients: number;
  dataset: DatasetId;
  /**
   * main: the bench database; big: the cost-growth database with the filler ledger; previous: a
   * database installed at the previous release (releases.ts), seeded and reset as main is; citus:
   * the same kit on the coordinator of the local Citus cluster, distributed by
   * scripts/citus/distribute.sql, seeded with the same rows.
   */
  db: 'main' | 'big' | 'previous' | 'citus';
  /**
   * pgbench with custom scripts, or 16 async loops in the bench's Node process: through the SDK
   * (`sdk`), or the bare driver (`driver`: node-postgres calling the function with a named
   * prepared statement as the superuser, no role switch and no json_agg).
   */
  runner: { kind: 'pgbench'; scripts: PgbenchScript[]; defines?: Record<string, number | string> } | { kind: 'node'; via: 'sdk' | 'driver' };
  /** Debits one transaction makes when it succeeds (a batch of n: n). The rate is tps × this. */
  eventsPerTx: number;
  /**
   * Where successful debits are counted: the kit's ledger, the baseline ledger (R+L, R+L+K), the
   * baselines' balances (R, N), M's credits or M+T's credit_transactions; none: a call that spends
   * nothing (check), whose run must leave the kit's ledger as it was.
   */
  debits: 'kit' | 'bench-ledger' | 'bench-balance' | 'bench-credits' | 'bench-transactions' | 'none';
  /** Also compare with this variant of the same scenario and repetition (cost growth: @10M vs @empty). */
  compareTo?: string;
  /**
   * After the reset, every account gets auto top-up configured with this threshold (bench.watch_all):
   * its row is watched (alert_at set) and a debit that stays above the threshold crosses nothing.
   */
  watchedAt?: number;
}

export interface Scenario {
  id: Exclude<ScenarioId, 'storage' | 'pglite'>;
  title: string;
  /** One paragraph for the doc: what is measured and how. */
  what: string;
  /** rate: events/s, higher is better; latency: ms per transaction at one client. */
  metric: 'rate' | 'latency';
  /** Ratios against this scenario's baselines and kit of the same repetition. */
  reference?: 'uniform-16';
  /** Run the variants in the reverse order in even repetitions (two variants compared side by side). */
  alternate?: boolean;
  variants: Variant[];
}

const pg = (...scripts: PgbenchScript[]) => ({ kind: 'pgbench' as const, scripts });

// Every key-writing script counts from 0 per client (pgbench -D seq=0; see consume-keyed.sql).
const keyed = { seq: 0 };
// What the SDK's keyed call carries beside the key: a small metadata object, as JSON text.
const keyedMeta = { ...keyed, meta: '{"model":"m"}' };

const BASELINE_VARIANTS: Record<Baseline, Pick<Variant, 'label' | 'runner' | 'debits'>> = {
  R: { label: 'raw UPDATE', runner: pg({ file: 'r.sql' }), debits: 'bench-balance' },
  RL: { label: 'UPDATE + ledger INSERT (plpgsql)', runner: pg({ file: 'rl.sql' }), debits: 'bench-ledger' },
  RLK: {
    label: 'UPDATE + ledger INSERT with a fresh key in a unique (account, key) index (plpgsql)',
    runner: { ...pg({ file: 'rlk.sql' }), defines: keyed },
    debits: 'bench-ledger',
  },
  N: { label: 'naive SELECT FOR UPDATE + UPDATE (plpgsql)', runner: pg({ file: 'n.sql' }), debits: 'bench-balance' },
  M: { label: "Makerkit guide's consume_credits (security definer, SELECT FOR UPDATE + UPDATE)", runner: pg({ file: 'm.sql' }), debits: 'bench-credits' },
  MT: { label: 'M + INSERT into credit_transactions', runner: pg({ file: 'mt.sql' }), debits: 'bench-transactions' },
};

/** The baseline scripts, which the short smoke runs only in uniform-16. */
const BASELINE_FILES = new Set(Object.values(BASELINE_VARIANTS).flatMap((b) => (b.runner.kind === 'pgbench' ? b.runner.scripts.map((x) => x.file) : [])));

function baselines(clients: number, dataset: DatasetId, roles: readonly Baseline[] = ['R', 'RL', 'N'], db: 'main' | 'big' = 'main'): Variant[] {
  return BASELINES.filter((r) => roles.includes(r)).map((role) => ({
    key: BASELINE_NAMES[role],
    role,
    clients,
    dataset,
    db,
    eventsPerTx: 1,
    ...BASELINE_VARIANTS[role],
  }));
}

function kitConsume(clients: number, dataset: DatasetId, key = 'kit', db: Variant['db'] = 'main'): Variant {
  return { key, label: 'creditkit_consume', role: 'kit', clients, dataset, db, runner: pg({ file: 'consume.sql' }), eventsPerTx: 1, debits: 'kit' };
}

function kitKeyed(clients: number, dataset: DatasetId): Variant {
  return {
    key: 'kit keyed',
    label: "creditkit_consume with an event, a fresh idempotency key and metadata (the SDK's call)",
    role: 'extra',
    clients,
    dataset,
    db: 'main',
    runner: { ...pg({ file: 'consume-keyed.sql' }), defines: keyedMeta },
    eventsPerTx: 1,
    debits: 'kit',
  };
}

/**
 * A load scenario: the baselines named, then the kit's plain consume and, with `withKeyed`, its
 * keyed consume, so each is compared with its own floor (R+L, R+L+K) and with M+T side by side.
 */
function loadScenario(
  id: Scenario['id'],
  title: string,
  what: string,
  clients: number,
  dataset: DatasetId,
  roles: readonly Baseline[] = ['R', 'RL', 'N'],
  withKeyed = false,
): Scenario {
  return {
    id,
    title,
    what,
    metric: 'rate',
    variants: [...baselines(clients, dataset, roles), kitConsume(clients, dataset), ...(withKeyed ? [kitKeyed(clients, dataset)] : [])],
  };
}

/**
 * Every scenario. With `short` (the CI smoke) the baseline scripts run only in uniform-16: the
 * smoke checks that every script still runs, and the other scenarios run the same baseline
 * scripts on other data. The short smoke also caps clients at 16.
 */
export function scenarios(short: boolean, fillerRows: number): Scenario[] {
  const all = allScenarios(short, fillerRows);
  if (!short) return all;
  return all.map((sc) =>
    sc.id === 'uniform-16'
      ? sc
      : { ...sc, variants: sc.variants.filter((v) => v.runner.kind !== 'pgbench' || !v.runner.scripts.some((s) => BASELINE_FILES.has(s.file))) },
  );
}

function allScenarios(short: boolean, fillerRows: number): Scenario[] {
  const d = datasets(short);
  // The "-64" scenarios run 16 clients in the short smoke, which runs beside the test suite on a
  // server with max_connections = 100 (the concurrency suites open up to 60).
  const many = short ? 16 : 64;
  // n events of 1 credit for one account per call: the kit's batch, or (floor) its R+L baseline.
  // The kit's events are JSON text, as an app sends them, with the account written AID.
  const batchEvents = (n: number): string => JSON.stringify(Array.from({ length: n }, () => ({ account_id: 'AID', amount: 1 })));
  const batchVariant = (n: number, floor = false): Variant => ({
    key: floor ? `R+L ×${n}` : `kit ×${n}`,
    label: floor ? `one UPDATE and an INSERT of ${n} ledger rows (plpgsql)` : `creditkit_consume_batch of ${n} events for one account`,
    role: 'extra',
    clients: 16,
    dataset: 'uniform',
    db: 'main',
    runner: floor
      ? { kind: 'pgbench', scripts: [{ file: 'rl-batch.sql' }], defines: { batch: n } }
      : { kind: 'pgbench', scripts: [{ file: 'consume-batch.sql' }], defines: { events: batchEvents(n) } },
    eventsPerTx: n,
    debits: floor ? 'bench-ledger' : 'kit',
  });
  const filler = fmtRows(fillerRows);
  const all: readonly Baseline[] = BASELINES;
  const debits = (where: string) =>
    `Single debits of 1 credit ${where}. **kit** is a plain creditkit_consume(account, 1), compared with R+L and M+T; ` +
    `**kit keyed** is the call the SDK makes for an app: an event name, a fresh idempotency key per call (client id and a ` +
    `per-client counter) and a small metadata object as JSON text, compared with R+L+K (R+L writing the same key into a ` +
    `unique (account, key) index) and M+T. M and M+T are Makerkit's credit-based billing guide as an app would copy it: ` +
    `its own credits table (integer tokens), its consume_credits (security definer, SELECT … FOR UPDATE, UPDATE), and for ` +
    `M+T its usage tracking, an INSERT into credit_transactions in the same transaction.`;
  return [
    loadScenario('uniform-16', 'Uniform load, 16 clients', debits(`on ${d.uniform.label}`), 16, 'uniform', all, true),
    {
      id: 'meter',
      title: 'Metered (priced) consume, 16 clients',
      what:
        `creditkit_meter(account, 'chat'): the event priced from the price list (the bench sets 1 credit per 'chat' event, ` +
        `so each call spends what a plain consume of 1 does; the ledger row also records quantity, dimensions and the price ` +
        `paid), on ${d.uniform.label}, right after uniform-16 in each repetition; ×kit compares it with uniform-16's plain consume.`,
      metric: 'rate',
      reference: 'uniform-16',
      variants: [
        { key: 'kit meter', label: 'creditkit_meter of one priced event', role: 'extra', clients: 16, dataset: 'uniform', db: 'main', runner: pg({ file: 'meter.sql' }), eventsPerTx: 1, debits: 'kit' },
      ],
    },
    {
      id: 'sdk',
      title: 'Through the TypeScript SDK (node-postgres), 16 clients',
      what:
        `The uniform-16 load through \`createCreditkit({ pg: new pg.Pool({ max: 16 }) }).consume()\`: 16 concurrent async loops ` +
        `in one Node process for the same duration, compared with uniform-16's pgbench run of creditkit_consume (×kit). ` +
        `Each SDK call is one round trip doing what PostgREST does (the role service_role and the JWT claims, then the ` +
        `function wrapped in json_agg), as two statements each connection prepares once and then only binds; pgbench calls ` +
        `the function directly as the superuser with prepared statements. ` +
        `**pg driver** is the floor for any Node client on this machine: the same loops calling the function through node-postgres ` +
        `with a named prepared statement as the superuser (what pgbench does), no role switch, no claims, no json_agg; ` +
        `the SDK is compared with it in the same repetition (vs).`,
      metric: 'rate',
      reference: 'uniform-16',
      variants: [
        { key: 'sdk', label: 'SDK consume over node-postgres', role: 'extra', clients: 16, dataset: 'uniform', db: 'main', runner: { kind: 'node', via: 'sdk' }, eventsPerTx: 1, debits: 'kit', compareTo: 'pg driver' },
        { key: 'pg driver', label: 'creditkit_consume over bare node-postgres (prepared, superuser)', role: 'extra', clients: 16, dataset: 'uniform', db: 'main', runner: { kind: 'node', via: 'driver' }, eventsPerTx: 1, debits: 'kit' },
      ],
    },
    {
      id: 'batch',
      title: 'Batched consume, 16 clients',
      what:
        `creditkit_consume_batch with n usage events of 1 credit for one random account of ${d.uniform.label} ` +
        `(a buffered batch of one user's metered events, sent as an app sends it: JSON text in a bind parameter, which the ` +
        `statement casts to jsonb after writing this call's account id into it). ` +
        `The rate is events (debits) per second; ×kit compares it with uniform-16's single consume. ` +
        `**R+L ×100** is the floor for any batch that writes a ledger row per event: one plpgsql call doing one UPDATE of ` +
        `the account by the total and one INSERT of 100 ledger rows on the baseline tables, no checks.`,
      metric: 'rate',
      reference: 'uniform-16',
      variants: [batchVariant(100, true), batchVariant(10), batchVariant(100)],
    },
    {
      id: 'holds',
      title: 'Holds (reserve + settle), 16 clients',
      what:
        `One logical debit = creditkit_reserve(2) then creditkit_settle(actual 1): two calls, two transactions, as an app ` +
        `does around a model call, on ${d.uniform.label}. The rate is logical debits per second.`,
      metric: 'rate',
      reference: 'uniform-16',
      variants: [
        { key: 'kit hold', label: 'creditkit_reserve + creditkit_settle', role: 'extra', clients: 16, dataset: 'uniform', db: 'main', runner: pg({ file: 'hold.sql' }), eventsPerTx: 1, debits: 'kit' },
      ],
    },
    {
      id: 'mix',
      title: 'Mixed load, 16 clients',
      what:
        `pgbench picks per transaction: 95% creditkit_consume(1), 4% creditkit_grant(100) (a purchase: a new bucket), ` +
        `1% reset (bench.reset_plan: the account moves to the other of two plans with a 1,000-credit monthly allowance; ` +
        `creditkit_set_plan books what is left of the old allowance as expired and grants the new one, which is what a ` +
        `period reset does), on ${d.uniform.label}. The rate counts every operation.`,
      metric: 'rate',
      reference: 'uniform-16',
      variants: [
        {
          key: 'kit mix',
          label: '95% consume, 4% grant, 1% reset',
          role: 'extra',
          clients: 16,
          dataset: 'uniform',
          db: 'main',
          runner: pg({ file: 'consume.sql', weight: 95 }, { file: 'grant.sql', weight: 4 }, { file: 'reset.sql', weight: 1 }),
          eventsPerTx: 1,
          debits: 'kit',
        },
      ],
    },
    {
      id: 'release',
      title: `${CURRENT} against ${PREVIOUS}: plain consume, 16 clients`,
      what:
        `The plain creditkit_consume(account, 1) (consume.sql, the same script as uniform-16's **kit**) in two databases on ` +
        `the same server: **kit ${PREVIOUS}** in one installed at ${PREVIOUS} (its migrations as shipped, the frozen copy ` +
        `in packages/creditkit/test/releases), **kit ${CURRENT}** in the bench database at this version, where the call ` +
        `spends the default unit (credits). Both are seeded with the same data (${d.uniform.label}, one purchase bucket ` +
        `each) and reset the same way before every run; the two runs alternate (${PREVIOUS} first in odd repetitions, ` +
        `${CURRENT} first in even ones), and vs is ${CURRENT} ÷ ${PREVIOUS} of the same repetition.`,
      metric: 'rate',
      alternate: true,
      variants: [
        { ...kitConsume(16, 'uniform', `kit ${PREVIOUS}`, 'previous'), role: 'extra' },
        { ...kitConsume(16, 'uniform', `kit ${CURRENT}`), compareTo: `kit ${PREVIOUS}` },
      ],
    },
    {
      id: 'check',
      title: 'Check against consume, 16 clients',
      what:
        `creditkit_check(account, 'credits', 1) (allowed and the spendable balance, spending nothing: while nothing is due ` +
        `on the account it writes nothing and takes no lock) against the plain creditkit_consume(account, 1), on the same ` +
        `accounts (${d.uniform.label}), the two runs alternating as in the release scenario; vs is check ÷ consume of the ` +
        `same repetition. After each check run the harness verifies that the kit's ledger gained no row.`,
      metric: 'rate',
      alternate: true,
      variants: [
        kitConsume(16, 'uniform'),
        {
          key: 'kit check',
          label: 'creditkit_check of 1 credit (writes nothing)',
          role: 'extra',
          clients: 16,
          dataset: 'uniform',
          db: 'main',
          runner: pg({ file: 'check.sql' }),
          eventsPerTx: 1,
          debits: 'none',
          compareTo: 'kit',
        },
      ],
    },
    {
      id: 'autotopup',
      title: 'Consume with auto top-up configured (not crossing) against without, 16 clients',
      what:
        `The plain creditkit_consume(account, 1) (consume.sql) on ${d.uniform.label}: **kit** as seeded, nothing watched; ` +
        `**kit watched** after bench.watch_all(1) gave every account auto top-up (threshold 1, so that no run reaches it) and ` +
        `set its alert level, as creditkit_set_auto_topup would. The debit's code is the same; the difference is the ` +
        `constraint trigger's WHEN, evaluated on every update of the balance, which queues nothing here. The runs alternate ` +
        `as in the release scenario, and vs is watched ÷ unwatched of the same repetition.`,
      metric: 'rate',
      alternate: true,
      variants: [
        kitConsume(16, 'uniform'),
        { ...kitConsume(16, 'uniform', 'kit watched'), role: 'extra', compareTo: 'kit', watchedAt: 1 },
      ],
    },
    {
      id: 'citus',
      title: 'Citus (a coordinator, two workers) against a single node: plain consume, 16 clients',
      what:
        `The plain creditkit_consume(account, 1) (consume.sql) on ${d.uniform.label}: **single node** in the bench ` +
        `database, **citus** through the coordinator of the local Citus cluster (a coordinator and two workers, each its ` +
        `own PostgreSQL on this machine), where scripts/citus/distribute.sql distributed the kit by account and delegates ` +
        `each call to the worker that holds the account (one round trip from the coordinator); **citus in a transaction** is ` +
        `the same call inside BEGIN … COMMIT (consume-tx.sql), as PostgREST makes every call, which Citus does not delegate: ` +
        `it runs on the coordinator, a round trip to the worker per statement, as every call does without --delegate. All are seeded with the same ` +
        `rows and reset before every run; the runs alternate as in the release scenario, and vs is citus ÷ single node of ` +
        `the same repetition. No goal: the three nodes share this machine's cores, so this measures the routing overhead ` +
        `of a coordinator hop, not what more machines buy (docs/scaling.md).`,
      metric: 'rate',
      alternate: true,
      variants: [
        kitConsume(16, 'uniform', 'single node'),
        { ...kitConsume(16, 'uniform', 'citus', 'citus'), role: 'extra', compareTo: 'single node' },
        {
          ...kitConsume(16, 'uniform', 'citus in a transaction', 'citus'),
          label: 'creditkit_consume in a transaction block (not delegated)',
          runner: pg({ file: 'consume-tx.sql' }),
          role: 'extra',
          compareTo: 'single node',
        },
      ],
    },
    loadScenario('uniform-64', `Uniform load, ${many} clients`, debits(`on ${d.uniform.label}`), many, 'uniform', all, true),
    loadScenario('hot-16', 'One hot account, 16 clients', debits('on one account that every client debits'), 16, 'hot', all, true),
    loadScenario('hot-64', `One hot account, ${many} clients`, debits('on one account that every client debits'), many, 'hot', all, true),
    loadScenario('zipf-64', `Zipf-skewed accounts, ${many} clients`, `Single debits on ${d.zipf.label} (pgbench random_zipfian).`, many, 'zipf'),
    loadScenario(
      'reject-64',
      `Rejection storm, ${many} clients`,
      `Every account is at balance 0, so every call is refused (${d.reject.label}). The rate is refusals per second; ` +
        `R and R+L match no row (their guard fails); N and M (Makerkit's consume_credits) lock the row first (a row lock, so a ` +
        `transaction id and a WAL flush at commit); ` +
        `the kit's guarded UPDATE matches no row, then it reads the account once without a lock and writes nothing.`,
      many,
      'reject',
      ['R', 'RL', 'N', 'M'],
    ),
    {
      id: 'cost',
      title: `Cost growth: one client, empty ledger vs ${filler} ledger rows`,
      what:
        `Average latency of one client (pgbench -c 1) on ${d.uniform.label}, in the bench database (only the seed's ` +
        `grant rows in the ledger) and in a second database whose ledger also holds ${filler} rows of filler history ` +
        `on ${fmtInt(fillerRows / 100)} other accounts (written directly with generate_series, then VACUUM ANALYZE). ` +
        `R runs in both as a control: it does not touch the ledger. The second database is not reset between runs, ` +
        `so its ledger grows by what earlier runs consumed.`,
      metric: 'latency',
      variants: [
        { ...baselines(1, 'uniform')[0]!, key: 'R @empty' },
        kitConsume(1, 'uniform', 'kit @empty'),
        { ...baselines(1, 'uniform', ['R'], 'big')[0]!, key: `R @${filler}`, role: 'extra', compareTo: 'R @empty' },
        { ...kitConsume(1, 'uniform', `kit @${filler}`, 'big'), role: 'extra', compareTo: 'kit @empty' },
      ],
    },
  ];
}

export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function fmtRows(n: number): string {
  if (n >= 1e6 && n % 1e6 === 0) return `${n / 1e6}M`;
  if (n >= 1e3 && n % 1e3 === 0) return `${n / 1e3}k`;
  return fmtInt(n);
}
