// The project's one test command (`corepack pnpm test`, run by CI): every vitest project, then
// the pgTAP suites when a Postgres server is configured. It adds up the results into one
// closing line, and with CREDITKIT_REQUIRE_PG=1 (CI) refuses to pass unless the real-Postgres
// suites actually ran and passed something: a skipped suite must never look like a green one.
//
//   node scripts/test.mjs [vitest filters...]
//   env: DATABASE_URL (superuser URL; enables the real-Postgres suites), CREDITKIT_REQUIRE_PG=1
//        (CI: also requires the demo app's browser suite, apps/web/test/browser.test.ts, and the
//        outside-app suite, scripts/test/outside-app.test.ts, to pass, and the Citus suite, titled
//        "[citus]", unless CREDITKIT_REQUIRE_CITUS=0), CREDITKIT_REQUIRE_CITUS=1 (requires the
//        Citus suite on its own), CREDITKIT_CITUS_PORT (the local Citus coordinator, default 5441;
//        @creditkit/testing's citus.ts starts it)
//
// Every database the run creates is named creditkit_test_<run>_…, with <run> this run's id
// (CREDITKIT_TEST_RUN). The test databases are copies of the run's migrated templates
// (creditkit_test_<run>_template_<mode>, made by the first suite that needs one), which the run
// drops at its end. It also drops any test database still there, on the DATABASE_URL server and on
// the three nodes of the local Citus cluster: a suite whose setup failed or timed out may never get
// to drop its own. A run that passes everything else but leaves one behind fails, since that is a
// suite that does not clean up.
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const runId = randomBytes(4).toString('hex');
const env = {
  ...process.env,
  PATH: `${join(root, 'node_modules/.bin')}${delimiter}${process.env.PATH ?? ''}`,
  CREDITKIT_TEST_RUN: runId,
};
const requirePg = process.env.CREDITKIT_REQUIRE_PG === '1';
const hasPg = Boolean(process.env.DATABASE_URL);
const POSTGRES_TAG = '[postgres]';
const BROWSER_SUITE = 'apps/web/test/browser.test.ts';
const OUTSIDE_APP_SUITE = 'scripts/test/outside-app.test.ts';
// @creditkit/testing's citusRequired() says the same
const requireCitus =
  process.env.CREDITKIT_REQUIRE_CITUS === '1' || (requirePg && process.env.CREDITKIT_REQUIRE_CITUS !== '0');
const CITUS_TAG = '[citus]';
const citusPort = Number(process.env.CREDITKIT_CITUS_PORT || 5441);

const totals = { passed: 0, failed: 0, skipped: 0 };
const problems = [];

function finish() {
  for (const p of problems) console.error(`\nERROR: ${p}`);
  const skipped = totals.skipped ? `, ${totals.skipped} skipped` : '';
  console.log(`\ncreditkit: ${totals.passed} passed, ${totals.failed} failed${skipped}`);
  process.exit(totals.failed > 0 || problems.length > 0 ? 1 : 0);
}

/** A requirement that was not met counts as a failed test, so the closing line says so. */
function problem(message) {
  problems.push(message);
  totals.failed++;
}

if (requirePg && !hasPg) {
  problem(
    'CREDITKIT_REQUIRE_PG=1 but DATABASE_URL is not set, so the real-Postgres suites cannot run.\n' +
      '       Set DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres (a superuser URL).',
  );
  finish();
}

// ── build, then types: the suites and the demo app use the packages as built (creditkit's copy of
// the migrations, and each package's dist/), and a type error anywhere (packages via turbo,
// scripts via the root tsconfig) fails the run ──
const steps = [
  ['build', 'turbo', ['run', 'build', '--filter=./packages/*', '--output-logs=errors-only']],
  ['typecheck', 'turbo', ['run', 'typecheck', '--output-logs=errors-only']],
  ['typecheck', 'tsc', ['-p', 'tsconfig.json', '--noEmit']],
];
for (const [step, cmd, args] of steps) {
  const r = spawnSync(cmd, args, { cwd: root, env, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) problem(`${step} failed: ${cmd} ${args.join(' ')}`);
}

const work = mkdtempSync(join(tmpdir(), 'creditkit-test-'));
try {
  // ── vitest: all packages, PGlite always, real Postgres when DATABASE_URL is set ──
  const vitestJson = join(work, 'vitest.json');
  const vitest = spawnSync(
    'vitest',
    ['run', '--reporter=default', '--reporter=json', `--outputFile.json=${vitestJson}`, ...process.argv.slice(2)],
    { cwd: root, env, stdio: ['ignore', 'inherit', 'inherit'] },
  );
  if (vitest.error) problem(`could not start vitest: ${vitest.error.message}`);
  let postgresPassed = 0;
  let browserPassed = 0;
  let outsideAppPassed = 0;
  let citusPassed = 0;
  if (existsSync(vitestJson)) {
    const report = JSON.parse(readFileSync(vitestJson, 'utf8'));
    totals.passed += report.numPassedTests;
    totals.skipped += report.numPendingTests + report.numTodoTests;
    let failed = report.numFailedTests;
    for (const file of report.testResults) {
      // a file that fails to load, or a failing hook, fails without failing a test: count it once
      if (file.status === 'failed' && !file.assertionResults.some((t) => t.status === 'failed')) failed++;
      for (const t of file.assertionResults) {
        if (t.status === 'passed' && t.fullName.includes(POSTGRES_TAG)) postgresPassed++;
        if (t.status === 'passed' && file.name.endsWith(BROWSER_SUITE)) browserPassed++;
        if (t.status === 'passed' && file.name.endsWith(OUTSIDE_APP_SUITE)) outsideAppPassed++;
        if (t.status === 'passed' && t.fullName.includes(CITUS_TAG)) citusPassed++;
      }
    }
    if (vitest.status !== 0 && failed === 0) failed = 1;
    totals.failed += failed;
  } else if (!vitest.error) {
    problem(`vitest exited with ${vitest.status ?? vitest.signal} and wrote no report`);
  }

  // ── pgTAP on real Postgres ──
  let pgtapPassed = 0;
  let pgtapFiles = 0;
  if (hasPg) {
    const pgtapJson = join(work, 'pgtap.json');
    const pgtap = spawnSync('tsx', ['scripts/pgtap.ts', '--json', pgtapJson], {
      cwd: root,
      env,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    if (existsSync(pgtapJson)) {
      const summary = JSON.parse(readFileSync(pgtapJson, 'utf8'));
      pgtapFiles = summary.testFiles;
      for (const r of summary.modes) {
        totals.passed += r.passed;
        totals.failed += r.failed;
        totals.skipped += r.skipped;
        pgtapPassed += r.passed;
      }
      if (pgtap.status !== 0 && summary.modes.every((r) => r.failed === 0)) problem('the pgTAP runner failed');
    } else {
      problem(`the pgTAP runner exited with ${pgtap.status ?? pgtap.signal} and wrote no summary`);
    }
  } else {
    console.log(
      '\nNOTE: real-Postgres suites SKIPPED (DATABASE_URL is not set): the vitest suites titled "[postgres]" and\n' +
        'the pgTAP suites in supabase/tests did not run; only PGlite was tested. To run everything:\n' +
        '  apt-get install postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl   # pgTAP + pg_prove\n' +
        '  DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres corepack pnpm test  # a superuser URL',
    );
  }

  if (requirePg) {
    if (postgresPassed === 0) problem(`CREDITKIT_REQUIRE_PG=1 but no vitest test titled "${POSTGRES_TAG}" passed`);
    if (browserPassed === 0 && process.argv.length <= 2) {
      problem(`CREDITKIT_REQUIRE_PG=1 but no test of the browser suite (${BROWSER_SUITE}, needs /usr/bin/chromium) passed`);
    }
    if (outsideAppPassed === 0 && process.argv.length <= 2) {
      problem(`CREDITKIT_REQUIRE_PG=1 but no test of the outside-app suite (${OUTSIDE_APP_SUITE}, needs the npm registry) passed`);
    }
    if (pgtapFiles === 0) problem('CREDITKIT_REQUIRE_PG=1 but there are no supabase/tests/*.test.sql files');
    else if (pgtapPassed === 0) problem('CREDITKIT_REQUIRE_PG=1 but no pgTAP test passed');
  }
  if (requireCitus && citusPassed === 0 && process.argv.length <= 2) {
    problem(
      `the Citus suite is required (CREDITKIT_REQUIRE_PG=1 or CREDITKIT_REQUIRE_CITUS=1) but no vitest test titled "${CITUS_TAG}" passed\n` +
        `       (packages/creditkit/test/citus.test.ts: it runs cluster.sh start ${citusPort} from CREDITKIT_CITUS_DIR, default ../shared/citus; CREDITKIT_REQUIRE_CITUS=0 opts out)`,
    );
  }
  if (hasPg) dropLeftovers(['-d', process.env.DATABASE_URL], 'the DATABASE_URL server');
  for (const port of [citusPort, citusPort + 1, citusPort + 2]) {
    const where = ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres'];
    // only where a Citus node answers (a run without the cluster has nothing to clean there)
    if (spawnSync('psql', ['-X', '-At', ...where, '-c', 'select 1'], { stdio: 'ignore' }).status === 0) {
      dropLeftovers(where, `Citus node :${port}`);
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
finish();

/** Drops this run's test databases that are still there (see the header) on one server. */
function dropLeftovers(where, label) {
  const psql = (sql) =>
    spawnSync('psql', ['-X', '-At', '-v', 'ON_ERROR_STOP=1', ...where, '-c', sql], {
      cwd: root,
      env,
      encoding: 'utf8',
    });
  const list = psql(`select datname from pg_database where datname like 'creditkit\\_test\\_${runId}\\_%' order by 1`);
  if (list.status !== 0) {
    console.error(`\nWARNING: could not list this run's test databases on ${label}: ${(list.stderr || String(list.error)).trim()}`);
    return;
  }
  // the templates are the run's own, meant to last until now (a half-built one is a leftover)
  const template = new RegExp(`^creditkit_test_${runId}_template_[a-z]+$`);
  const all = list.stdout.split('\n').filter(Boolean);
  for (const name of all) psql(`drop database if exists ${name} with (force)`);
  const names = all.filter((name) => !template.test(name));
  if (names.length === 0) return;
  const message = `${names.length} test database(s) of this run were left behind on ${label} and are now dropped: ${names.join(', ')}`;
  if (totals.failed === 0) problem(`${message}\n       (a suite that creates a database must drop it, also when it fails)`);
  else console.warn(`\nNOTE: ${message}`);
}
