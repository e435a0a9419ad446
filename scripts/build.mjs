// Builds the packages before a script that uses them (`pnpm demo`, `pnpm demo:cli`, the docs and
// type generators, the bench): `turbo run build` over packages/*, cached, so it costs about a
// second when nothing changed. Quiet unless it fails, so a walkthrough's output stays its own.
//
//   node scripts/build.mjs
import { spawnSync } from 'node:child_process';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Runs the build; on failure prints turbo's output and exits. */
export function buildPackages() {
  const r = spawnSync('turbo', ['run', 'build', '--filter=./packages/*', '--output-logs=errors-only'], {
    cwd: root,
    // turbo finds pnpm (the root devDependency) on PATH
    env: { ...process.env, PATH: `${join(root, 'node_modules/.bin')}${delimiter}${process.env.PATH ?? ''}` },
    encoding: 'utf8',
  });
  if (r.status !== 0) {
    process.stderr.write(`${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}\n`);
    console.error('creditkit: building the packages failed (turbo run build)');
    process.exit(r.status ?? 1);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) buildPackages();
