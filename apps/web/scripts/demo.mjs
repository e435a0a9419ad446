// `pnpm demo` (from the repository root): starts the demo app with zero configuration and prints
// its URL once the database is up and seeded. Embedded PGlite unless DATABASE_URL is set;
// simulated Stripe Checkout unless STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET are set.
//
//   node apps/web/scripts/demo.mjs [--production]
//   env: PORT (default: 3000, or the next free port), DATABASE_URL, STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET
//
// Default is `next dev` (starts at once, compiles each page on its first visit); --production
// builds first and runs `next start`. Either way the creditkit packages are built first: the app
// uses them as an outside app does, from their built output.
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildPackages } from '../../../scripts/build.mjs';

const app = join(dirname(fileURLToPath(import.meta.url)), '..');
const next = createRequire(join(app, 'package.json')).resolve('next/dist/bin/next');
const production = process.argv.includes('--production');
const env = { ...process.env, NEXT_TELEMETRY_DISABLED: '1' };

/** Whether something already listens on the port (on any of localhost's addresses). */
const taken = (port) =>
  new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(true));
    server.listen(port, () => server.close(() => resolve(false)));
  });

async function choosePort() {
  if (process.env.PORT) return Number(process.env.PORT);
  for (let port = 3000; port < 3020; port++) if (!(await taken(port))) return port;
  throw new Error('ports 3000-3019 are all in use: set PORT');
}

const port = await choosePort();
const url = `http://localhost:${port}`;

buildPackages();
if (production) {
  const build = spawnSync(process.execPath, [next, 'build'], { cwd: app, env, stdio: 'inherit' });
  if (build.status !== 0) process.exit(build.status ?? 1);
}
console.log(`creditkit demo: starting Next.js (${production ? 'next start' : 'next dev'}) on ${url} …`);
const child = spawn(process.execPath, [next, production ? 'start' : 'dev', '--port', String(port)], {
  cwd: app,
  env,
  stdio: ['ignore', 'pipe', 'inherit'],
});
// Next's own banner is noise next to ours; its later output (requests, errors) goes through.
let ready = false;
child.stdout.on('data', (chunk) => {
  if (ready || /error|warn/i.test(String(chunk))) process.stdout.write(chunk);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));

// The first call to /api/health compiles the route (dev), installs the migrations and seeds.
const deadline = Date.now() + 180_000;
for (;;) {
  try {
    const response = await fetch(`${url}/api/health`);
    if (response.ok) {
      const health = await response.json();
      ready = true;
      console.log(
        `\ncreditkit demo is running at ${url}\n` +
          `  database: ${health.backend === 'pglite' ? 'embedded PGlite (in memory; set DATABASE_URL for your Postgres)' : 'Postgres from DATABASE_URL'}\n` +
          `  checkout: ${health.stripe === 'stripe' ? 'Stripe Checkout (test keys from the environment)' : 'simulated Stripe Checkout, through the real webhook (set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET for Stripe)'}\n` +
          `  sign in as ada, grace or linus; the operator dashboard is at ${url}/dashboard\n` +
          `  Ctrl-C stops it.\n`,
      );
      break;
    }
  } catch {
    // not listening yet
  }
  if (Date.now() > deadline) {
    console.error(`creditkit demo: ${url}/api/health did not answer within 180 s`);
    child.kill('SIGTERM');
    process.exit(1);
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
}
