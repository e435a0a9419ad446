// POST /api/generate {prompt, quality}: the AI app's one paid action. It meters the event at its
// price *before* the (simulated) model call, so a user who is out of credits gets a 402 and the
// model is never called; the vendor cost is recorded beside the charge for the margin report.
// HD needs the plan feature hd_upscale (Pro): 403 feature_required otherwise.
import { CreditkitError } from '@creditkit/core';
import { errorResponse, meter } from '@creditkit/core/http';
import { getDemo } from '@/lib/server/demo.ts';
import { vendorCostMicros } from '@/lib/server/seed.ts';
import { currentUser, originOf } from '@/lib/server/session.ts';
import { kickWorker } from '@/lib/server/worker.ts';
import { simulatedModel } from '@/lib/server/model.ts';

export const dynamic = 'force-dynamic';

export async function POST(request: Request): Promise<Response> {
  const user = await currentUser();
  if (!user) return Response.json({ error: 'unauthenticated', message: 'Sign in to generate.' }, { status: 401 });
  const body = (await request.json().catch(() => ({}))) as { prompt?: unknown; quality?: unknown };
  const prompt = typeof body.prompt === 'string' && body.prompt.trim() ? body.prompt.trim().slice(0, 200) : 'a lighthouse at dusk';
  const quality = body.quality === 'hd' ? 'hd' : 'standard';
  const demo = await getDemo();
  const { creditkit } = demo;
  try {
    if (quality === 'hd' && !(await creditkit.hasFeature({ accountId: user.id, feature: 'hd_upscale' }))) {
      return Response.json({ error: 'feature_required', feature: 'hd_upscale', message: 'HD needs the Pro plan.' }, { status: 403 });
    }
    const usage = await meter(creditkit, {
      accountId: user.id,
      event: 'image_gen',
      ...(quality === 'hd' ? { dimensions: { quality } } : {}),
      costMicros: vendorCostMicros('image_gen', quality === 'hd' ? 'hd' : undefined),
      // a retried request (same Idempotency-Key) is charged once
      idempotencyKey: request.headers.get('idempotency-key') ?? undefined,
      metadata: { model: 'demo-xl', quality },
    });
    // a debit may have crossed a threshold: a top-up to charge, a notification to deliver
    if (!usage.blocked) kickWorker(demo, originOf(request));
    if (usage.blocked) return usage.response; // 402 {"error":"insufficient_credits","balance":…,"required":…}

    const image = await simulatedModel(prompt, quality);
    return Response.json({ image, prompt, quality, charged: usage.amount, balance: usage.balance });
  } catch (error) {
    if (error instanceof CreditkitError) return errorResponse(error);
    throw error;
  }
}
