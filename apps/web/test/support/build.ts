// Vitest global setup for the web project: one production build of the app for every suite
// (`next build` into .next-test, so a running `pnpm demo` is not disturbed). The app uses the
// creditkit packages' built output, so they are built first (cached: instant when up to date).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { APP_DIR, NEXT_BIN, REPO_DIR, TEST_DIST_DIR } from './app.ts';

export default function setup(): void {
  const packages = spawnSync(process.execPath, [join(REPO_DIR, 'scripts/build.mjs')], { encoding: 'utf8' });
  if (packages.status !== 0) throw new Error(`building the packages failed:\n${packages.stdout}\n${packages.stderr}`);
  const started = performance.now();
  const build = spawnSync(process.execPath, [NEXT_BIN, 'build'], {
    cwd: APP_DIR,
    env: { ...process.env, NEXT_TELEMETRY_DISABLED: '1', CREDITKIT_WEB_DIST_DIR: TEST_DIST_DIR },
    encoding: 'utf8',
    timeout: 600_000,
  });
  if (build.status !== 0) {
    throw new Error(`next build failed (${build.status ?? build.signal}):\n${build.stdout}\n${build.stderr}`);
  }
  console.log(`web: next build in ${Math.round((performance.now() - started) / 1000)} s`);
}
