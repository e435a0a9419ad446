// Real Deno running a Supabase Edge Function of this repository (supabase/functions/<name>), for
// the Edge Function suites. Deno comes from the `deno` npm package (root devDependency); its first
// run fetches the function's npm imports into Deno's cache. Deno.serve's address comes from
// DENO_SERVE_ADDRESS (tcp:127.0.0.1:0, a free port), so the function needs no test-only code; the
// port is read from Deno's "Listening on" line.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

export const functionDir = (name: string): string => join(ROOT, 'supabase/functions', name);

/** The Deno binary of the `deno` npm package (its platform package, e.g. @deno/linux-x64-glibc). */
export function denoBinary(): string {
  const require = createRequire(join(ROOT, 'package.json'));
  return (require('deno/install_api.cjs') as { runInstall(): string }).runInstall();
}

export interface EdgeFunction {
  url: string;
  /** Everything Deno printed, for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

/** Starts `deno run index.ts` of supabase/functions/<name> with `env`; resolves once Deno.serve listens. */
export function startFunction(name: string, env: Record<string, string>): Promise<EdgeFunction> {
  const child: ChildProcess = spawn(
    denoBinary(),
    ['run', '--frozen', '--config', 'deno.json', '--allow-net', '--allow-env', '--allow-read', 'index.ts'],
    {
      cwd: functionDir(name),
      env: { ...process.env, NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1', DENO_SERVE_ADDRESS: 'tcp:127.0.0.1:0', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let log = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      log += chunk.toString('utf8');
      const listening = /Listening on (http:\/\/127\.0\.0\.1:\d+)\//.exec(log);
      if (listening) resolve({ url: `${listening[1]}/functions/v1/${name}`, output: () => log, stop });
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('error', reject);
    child.once('exit', (code, signal) => reject(new Error(`deno exited (${code ?? signal}) before listening:\n${log}`)));
  });
}

/** `deno check` of supabase/functions/<name>/index.ts with its deno.json and lock. */
export function denoCheck(name: string): { status: number | null; stderr: string } {
  const check = spawnSync(denoBinary(), ['check', '--frozen', '--config', 'deno.json', 'index.ts'], {
    cwd: functionDir(name),
    env: { ...process.env, NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1' },
    encoding: 'utf8',
  });
  return { status: check.status, stderr: check.stderr };
}

/** A port nothing listens on. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
