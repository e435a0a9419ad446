// POST /api/chat {message}: the app's second metered feature. Each message meters the event
// `chat`, priced 1 message (the unit whose daily allowance the plan sets: 20 on Free, 500 on Pro)
// with an overage of 1 credit: once the day's messages are gone, creditkit_meter charges credits
// instead, and only when neither pays does the route answer 402, naming messages. The answer
// says which balance paid (`unit`: messages, or credits as overage).
import { CreditkitError } from '@creditkit/core';
import { errorResponse, meter } from '@creditkit/core/http';
import { getDemo } from '@/lib/server/demo.ts';
import { simulatedChat } from '@/lib/server/model.ts';
import { vendorCostMicros } from '@/lib/server/seed.ts';
import { currentUser, originOf } from '@/lib/server/session.ts';
import { kickWorker } from '@/lib/server/worker.ts';

export const dynamic = 'force-dynamic';

export async function POST(request: Request): Promise<Response> {
  const user = await currentUser();
  if (!user) return Response.json({ error: 'unauthenticated', message: 'Sign in to chat.' }, { status: 401 });
  const body = (await request.json().catch(() => ({}))) as { message?: unknown };
  const message = typeof body.message === 'string' && body.message.trim() ? body.message.trim().slice(0, 500) : 'Hello';
  const demo = await getDemo();
  const { creditkit } = demo;
  try {
    const usage = await meter(creditkit, {
      accountId: user.id,
      event: 'chat',
      costMicros: vendorCostMicros('chat'),
      idempotencyKey: request.headers.get('idempotency-key') ?? undefined,
      metadata: { model: 'demo-chat' },
    });
    // a debit may have crossed a threshold: a top-up to charge, a notification to deliver
    if (!usage.blocked) kickWorker(demo, originOf(request));
    if (usage.blocked) return usage.response; // 402 {"error":"insufficient_credits","unit":"messages",…}

    const reply = await simulatedChat(message);
    return Response.json({ message, reply, unit: usage.unit, charged: usage.amount, balance: usage.balance });
  } catch (error) {
    if (error instanceof CreditkitError) return errorResponse(error);
    throw error;
  }
}
