// POST /api/worker: one run of the creditkit worker (lib/server/worker.ts), answered with what it
// did: top-ups claimed and charged, the Stripe events the simulated Stripe sent, notifications
// delivered. The app also runs it by itself (after metered requests and every few seconds); this
// route is what a cron would call. In your app, protect it (a secret header) or use the
// creditkit-worker Edge Function: anyone who can call it can make the worker run early.
import { getDemo } from '@/lib/server/demo.ts';
import { originOf } from '@/lib/server/session.ts';
import { runDemoWorker } from '@/lib/server/worker.ts';

export const dynamic = 'force-dynamic';

export async function POST(request: Request): Promise<Response> {
  const demo = await getDemo();
  const run = await runDemoWorker(demo, originOf(request));
  const sum = (pick: (r: (typeof run.passes)[number]) => number) => run.passes.reduce((s, r) => s + pick(r), 0);
  return Response.json({
    topups: {
      claimed: sum((r) => r.topups.claimed),
      charged: sum((r) => r.topups.charged),
      declined: sum((r) => r.topups.declined),
      actionRequired: sum((r) => r.topups.actionRequired),
      retried: sum((r) => r.topups.retried),
    },
    deliveries: {
      claimed: sum((r) => r.deliveries.claimed),
      delivered: sum((r) => r.deliveries.delivered),
      failed: sum((r) => r.deliveries.failed),
      dead: sum((r) => r.deliveries.dead),
    },
    stripeEvents: run.stripeEvents,
    passes: run.passes.length,
  });
}
