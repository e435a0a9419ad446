// POST /api/demo/notifications: the demo's own receiver of creditkit's notifications, registered
// as the webhook endpoint `demo-receiver`. Each delivery is verified with verifyWebhook (Standard
// Webhooks: HMAC-SHA256 of `${webhook-id}.${webhook-timestamp}.${raw body}` with the endpoint's
// secret, timestamp within 5 minutes): a bad signature, a tampered body or a stale timestamp is
// refused with 401 and not kept. What verifies is kept in memory (the last 50) and shown on the
// dashboard. GET lists them (signed-in demo users: it is the operator's view).
import { verifyWebhook, WebhookVerificationError } from '@creditkit/core';
import { getDemo } from '@/lib/server/demo.ts';
import { receivedNotifications, recordNotification, recordRefused } from '@/lib/server/receiver.ts';
import { currentUser } from '@/lib/server/session.ts';

export const dynamic = 'force-dynamic';

export async function POST(request: Request): Promise<Response> {
  const { receiver } = await getDemo();
  const body = await request.text(); // the raw bytes: what was signed
  try {
    const event = await verifyWebhook(body, request.headers, receiver.secret);
    recordNotification(event);
    // 2xx for every verified event, also of a type this receiver does nothing with
    return Response.json({ received: true, id: event.id });
  } catch (error) {
    if (!(error instanceof WebhookVerificationError)) throw error;
    recordRefused();
    return Response.json({ error: error.code, message: error.message }, { status: 401 });
  }
}

export async function GET(): Promise<Response> {
  if (!(await currentUser())) return Response.json({ error: 'unauthenticated' }, { status: 401 });
  return Response.json(receivedNotifications());
}
