// The notification outbox for the dashboard: creditkit.notifications() (creditkit_notifications,
// service_role). On 0.3.0 as it is on main that function is `security invoker` and calls
// creditkit.assert_server_caller(), which service_role may not execute, so it answers 42501; until
// the SQL is fixed the dashboard reads the same rows as the database owner (the Demo's `sql`),
// with a warning in the server log. Remove the fallback once creditkit_notifications works.
import type { NotificationEvent } from '@creditkit/core';
import type { Demo } from './demo.ts';

let warned = false;

export async function recentNotifications(demo: Demo, limit: number): Promise<NotificationEvent[]> {
  try {
    return await demo.creditkit.notifications({ limit });
  } catch (error) {
    // by code, not instanceof: the server bundle may hold a second copy of the error classes
    if ((error as { code?: unknown }).code !== 'not_allowed') throw error;
    if (!warned) {
      warned = true;
      console.warn('creditkit demo: creditkit_notifications refused service_role (42501); reading the outbox as the owner instead', (error as Error).message);
    }
  }
  const rows = await demo.sql<{ id: string; type: string; account_id: string | null; unit: string | null; payload: Record<string, unknown>; created_at: string; deliveries: Array<Record<string, unknown>> }>(
    `select n.id, n.type, n.account_id::text, n.unit, n.payload, n.created_at::text,
            coalesce((select jsonb_agg(jsonb_build_object(
                        'id', d.id, 'endpoint_id', d.endpoint_id, 'status', d.status, 'attempts', d.attempts,
                        'last_status', d.last_status, 'last_error', d.last_error, 'next_attempt_at', d.next_attempt_at,
                        'delivered_at', d.delivered_at) order by d.id)
                       from creditkit.deliveries d where d.notification_id = n.id), '[]'::jsonb) as deliveries
       from creditkit.notifications n
      order by n.created_at desc, n.id desc
      limit $1`,
    [limit],
  );
  return rows.map((r) => ({
    id: r.id,
    type: r.type,
    accountId: r.account_id,
    unit: r.unit,
    payload: r.payload as NotificationEvent['payload'],
    createdAt: r.created_at,
    deliveries: r.deliveries.map((d) => ({
      id: Number(d.id),
      endpointId: String(d.endpoint_id),
      status: d.status as NotificationEvent['deliveries'][number]['status'],
      attempts: Number(d.attempts),
      lastStatus: d.last_status === null ? null : Number(d.last_status),
      lastError: (d.last_error as string | null) ?? null,
      nextAttemptAt: (d.next_attempt_at as string | null) ?? null,
      deliveredAt: (d.delivered_at as string | null) ?? null,
    })),
  }));
}
