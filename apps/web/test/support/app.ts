// Starting and stopping the demo app for the tests: `next start` of the build made by build.ts,
// on a free port, with the environment the test chooses (DATABASE_URL, Stripe keys). Ready when
// /api/health answers (the database is installed and seeded by then).
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const APP_DIR = join(dirname(fileURLToPath(import.meta.url)), '../..');
export const REPO_DIR = join(APP_DIR, '../..');
export const NEXT_BIN = createRequire(join(APP_DIR, 'package.json')).resolve('next/dist/bin/next');
export const TEST_DIST_DIR = '.next-test';
/** Where the browser suite saves its screenshots (gitignored). */
export const SCREENSHOT_DIR = join(REPO_DIR, 'artifacts/screenshots');

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface RunningApp {
  url: string;
  /** Everything the server printed so far. */
  output(): string;
  stop(): Promise<void>;
}

/** Waits until `url` answers 2xx, or the process exits, or the deadline passes. */
export async function waitForHealth(url: string, child: ChildProcess, output: () => string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the app exited before it was ready:\n${output()}`);
    try {
      const response = await fetch(url);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms:\n${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

export function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** `next start` on a free port with `env` added to (and, for undefined values, removed from) the environment. */
export async function startApp(env: Record<string, string | undefined> = {}): Promise<RunningApp> {
  const port = await freePort();
  const childEnv: NodeJS.ProcessEnv = { ...process.env, NEXT_TELEMETRY_DISABLED: '1', CREDITKIT_WEB_DIST_DIR: TEST_DIST_DIR };
  // By default the app runs on PGlite with the simulated checkout, whatever the test runner has set.
  for (const name of ['DATABASE_URL', 'STRIPE_SECRET_KEY', 'STRIPE_WEBHOOK_SECRET', 'STRIPE_API_URL']) delete childEnv[name];
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) delete childEnv[name];
    else childEnv[name] = value;
  }
  const child = spawn(process.execPath, [NEXT_BIN, 'start', '--port', String(port), '--hostname', '127.0.0.1'], {
    cwd: APP_DIR,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout!.on('data', (chunk) => (log += String(chunk)));
  child.stderr!.on('data', (chunk) => (log += String(chunk)));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHealth(`${url}/api/health`, child, () => log);
  } catch (error) {
    await stopProcess(child);
    throw error;
  }
  return { url, output: () => log, stop: () => stopProcess(child) };
}
