// Runs the pgTAP suites (supabase/tests/*.test.sql) with pg_prove on the real Postgres server
// at DATABASE_URL, once per default-privilege mode: creditkit must be correct both under
// Supabase's grant-everything defaults and under the hardened ones. Each mode gets a throwaway
// database from @creditkit/testing (a copy of the run's migrated template, like the TypeScript suites').
//
//   tsx scripts/pgtap.ts [--json summary.json]
//
// Test files can branch on the mode through `current_setting('creditkit.privilege_mode')`
// or psql's `\getenv mode CREDITKIT_PRIVILEGE_MODE`.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, type PrivilegeMode } from '@creditkit/testing';

const root = fileURLToPath(new URL('..', import.meta.url));
const testsDir = join(root, 'supabase/tests');
const helpersFile = join(testsDir, 'helpers/supabase_test_helpers.sql');
// Checks the helpers themselves (role switching from every role, in both modes).
const selftestFile = join(testsDir, 'helpers/selftest.sql');
const modes: PrivilegeMode[] = ['supabase', 'revoked'];

interface ModeResult {
  mode: PrivilegeMode;
  /** pg_prove's "Files=…, Tests=…" line (includes the helpers' self-test). */
  files: number;
  tests: number;
  passed: number;
  failed: number;
  skipped: number;
  ok: boolean;
}

interface PgtapSummary {
  /** How many supabase/tests/*.test.sql files exist (the self-test not counted). */
  testFiles: number;
  modes: ModeResult[];
}

function runPgProve(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('pg_prove', args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      process.stdout.write(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => process.stderr.write(chunk));
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'ENOENT'
          ? new Error('pg_prove not found: apt-get install postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl')
          : err,
      ),
    );
    child.on('close', (code) => resolve({ code: code ?? 1, output }));
  });
}

/**
 * Counts from pg_prove --verbose output: totals from the "Files=…, Tests=…" line, skips from
 * the TAP lines, failures from the summary report, where a file that broke without a failing
 * assertion (bad plan, an SQL error that ended it early) counts as one failure.
 */
function parsePgProve(output: string, exitCode: number): Omit<ModeResult, 'mode'> {
  const summary = /Files=(\d+), Tests=(\d+)/.exec(output);
  const files = Number(summary?.[1] ?? 0);
  const tests = Number(summary?.[2] ?? 0);
  let skipped = 0;
  for (const line of output.split('\n')) {
    if (/^\s*(not )?ok \d+\b.*#\s*(skip|todo)/i.test(line)) skipped++;
  }
  let failedAssertions = 0;
  let failed = 0;
  for (const m of output.matchAll(/\(Wstat: \d+.*?Tests: \d+ Failed: (\d+)\)$/gm)) {
    const n = Number(m[1]);
    failedAssertions += n;
    failed += Math.max(n, 1);
  }
  if (exitCode !== 0 && failed === 0) failed = 1;
  const passed = Math.max(0, tests - failedAssertions - skipped);
  return { files, tests, passed, failed, skipped, ok: exitCode === 0 && tests > 0 };
}

async function runMode(mode: PrivilegeMode, testFiles: string[]): Promise<ModeResult> {
  const db = await createTestDatabase({ backend: 'postgres', defaultPrivileges: mode });
  try {
    const url = new URL(db.url ?? '');
    const dbName = decodeURIComponent(url.pathname.slice(1));
    // pgTAP in `extensions` (where Supabase puts extensions), not in public where the privilege
    // tests would see its hundreds of functions; callable after switching to any API role.
    await db.exec(`
      create schema if not exists extensions;
      create extension if not exists pgtap with schema extensions;
      grant usage on schema extensions to anon, authenticated, service_role;
      grant execute on all functions in schema extensions to anon, authenticated, service_role;
      alter database "${dbName}" set search_path = "$user", public, extensions;
      alter database "${dbName}" set creditkit.privilege_mode = '${mode}';`);
    await db.exec(readFileSync(helpersFile, 'utf8'));

    const args = ['--verbose', '--dbname', dbName, '--host', url.searchParams.get('host') ?? url.hostname];
    if (url.port) args.push('--port', url.port);
    args.push('--username', decodeURIComponent(url.username) || 'postgres');
    const env: NodeJS.ProcessEnv = { ...process.env, CREDITKIT_PRIVILEGE_MODE: mode };
    if (url.password) env.PGPASSWORD = decodeURIComponent(url.password);

    console.log(`\n── pgTAP, privileges '${mode}' (${testFiles.length} test file(s) + helpers self-test) ──`);
    const { code, output } = await runPgProve([...args, selftestFile, ...testFiles], env);
    return { mode, ...parsePgProve(output, code) };
  } finally {
    await db.drop();
  }
}

async function main(): Promise<number> {
  const jsonAt = process.argv.indexOf('--json');
  const jsonPath = jsonAt >= 0 ? process.argv[jsonAt + 1] : undefined;
  const testFiles = readdirSync(testsDir)
    .filter((name) => name.endsWith('.test.sql'))
    .sort()
    .map((name) => join(testsDir, name));
  if (testFiles.length === 0) {
    console.warn('WARNING: no supabase/tests/*.test.sql files yet; only the helpers self-test runs.');
  }

  const summary: PgtapSummary = { testFiles: testFiles.length, modes: [] };
  for (const mode of modes) {
    try {
      summary.modes.push(await runMode(mode, testFiles));
    } catch (err) {
      console.error(`pgTAP, privileges '${mode}': could not run: ${err instanceof Error ? err.message : String(err)}`);
      summary.modes.push({ mode, files: 0, tests: 0, passed: 0, failed: 1, skipped: 0, ok: false });
    }
  }

  console.log('\npgTAP results:');
  for (const r of summary.modes) {
    console.log(
      `  ${r.ok ? 'PASS' : 'FAIL'}  privileges '${r.mode}': Files=${r.files}, Tests=${r.tests} ` +
        `(${r.passed} passed, ${r.failed} failed, ${r.skipped} skipped)`,
    );
  }
  if (jsonPath) writeFileSync(jsonPath, JSON.stringify(summary, null, 2));
  return summary.modes.every((r) => r.ok) ? 0 : 1;
}

process.exitCode = await main();
