// The creditkit worker inside the demo: runWorker (from @creditkit/core) charges the top-ups that
// are due and delivers the notifications that are due. In your app it runs every minute from a
// cron (the creditkit-worker Edge Function); here it runs in the server process: after each
// metered request, after auto top-up settings change, on POST /api/worker, and every few seconds
// once the app has been reached. Runs never overlap in this process (kicks while one runs share
// the next), although runWorker would be safe if they did: the database leases each row to one run.
//
// Without Stripe keys it charges through the simulated Stripe (simulated-stripe.ts), whose
// webhook events it then sends to the app's webhook route, so one call to runDemoWorker takes a
// top-up from pending to credited and delivers the notifications that wrote.
import { runWorker, type WorkerReport, type WorkerStripe } from '@creditkit/core';
import type { Demo } from './demo.ts';
import { configureForOrigin } from './seed.ts';
import { simulatedStripe } from './simulated-stripe.ts';

/** How often the worker runs on its own once the app knows its origin. */
export const WORKER_INTERVAL_MS = 3_000;
/** Passes per run at most: charge, apply Stripe's events, deliver what they wrote. */
const MAX_PASSES = 4;

export interface DemoWorkerRun {
  passes: WorkerReport[];
  /** Webhook events the simulated Stripe sent to /api/stripe/webhook during the run. */
  stripeEvents: { type: string; status: number; effect: string | null }[];
}

interface WorkerState {
  origin: string | null;
  configuredOrigin: string | null;
  queued: Promise<DemoWorkerRun> | null;
  running: Promise<DemoWorkerRun> | null;
  timer: ReturnType<typeof setInterval> | null;
  last: { at: string; run?: DemoWorkerRun; error?: string } | null;
}

const store = globalThis as typeof globalThis & { __creditkitDemoWorker?: WorkerState };
const state = (store.__creditkitDemoWorker ??= { origin: null, configuredOrigin: null, queued: null, running: null, timer: null, last: null });

async function run(demo: Demo, origin: string): Promise<DemoWorkerRun> {
  if (state.configuredOrigin !== origin) {
    // the top-up's action link and the receiver's URL follow the origin the app is reached at
    await configureForOrigin(demo.creditkit, origin, demo.receiver.secret);
    state.configuredOrigin = origin;
  }
  const simulated = demo.stripe.mode === 'simulated' ? simulatedStripe(demo, origin) : null;
  // (Stripe's own typings are stricter than WorkerStripe's Record params: the cast is only for tsc)
  const stripe: WorkerStripe = simulated ?? (demo.stripe.stripe as unknown as WorkerStripe);
  const result: DemoWorkerRun = { passes: [], stripeEvents: [] };
  for (let pass = 0; pass < MAX_PASSES; pass++) {
    const report = await runWorker({ creditkit: demo.creditkit, stripe, fetch: globalThis.fetch, timeoutMs: 5_000 });
    result.passes.push(report);
    const sent = simulated ? await simulated.flush() : [];
    for (const d of sent) result.stripeEvents.push({ type: d.type, status: d.status, effect: d.body.effect ?? d.body.error ?? null });
    if (sent.length === 0 && report.topups.claimed === 0 && report.deliveries.claimed === 0) break;
  }
  return result;
}

/**
 * Runs the worker (after the run in progress, if any) and answers what it did. `origin` is where
 * the app is reached (the receiver and the webhook are called there); without it, the last one seen.
 */
export function runDemoWorker(demo: Demo, origin?: string): Promise<DemoWorkerRun> {
  if (origin) state.origin = origin;
  const at = state.origin;
  if (!at) return Promise.resolve({ passes: [], stripeEvents: [] });
  startInterval(demo);
  if (state.queued) return state.queued;
  const previous = state.running ?? Promise.resolve();
  const next: Promise<DemoWorkerRun> = previous
    .catch(() => undefined)
    .then(() => {
      state.queued = null;
      state.running = next;
      return run(demo, state.origin ?? at);
    })
    .then(
      (done) => {
        state.last = { at: new Date().toISOString(), run: done };
        return done;
      },
      (error: unknown) => {
        state.last = { at: new Date().toISOString(), error: String(error) };
        console.error('creditkit demo: the worker run failed', error);
        throw error;
      },
    )
    .finally(() => {
      if (state.running === next) state.running = null;
    });
  state.queued = next;
  return next;
}

/** Starts a run without waiting for it (after a metered request); failures are logged. */
export function kickWorker(demo: Demo, origin: string): void {
  runDemoWorker(demo, origin).catch(() => undefined);
}

function startInterval(demo: Demo): void {
  if (state.timer) return;
  state.timer = setInterval(() => kickWorker(demo, state.origin!), WORKER_INTERVAL_MS);
  state.timer.unref?.();
}

export function lastWorkerRun(): WorkerState['last'] {
  return state.last;
}
