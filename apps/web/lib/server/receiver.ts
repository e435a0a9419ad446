// The demo's own notification receiver keeps what it received in memory (the last 50, newest
// first), for the dashboard. A real receiver would act on each event (email the customer, post
// to Slack) and remember the ids it has seen, to ignore a redelivery.
import type { CreditkitNotification } from '@creditkit/core';

export interface ReceivedNotification {
  id: string;
  type: string;
  accountId: string | null;
  /** The payload's data, as verified. */
  data: Record<string, unknown>;
  /** When the event happened (its timestamp) and when the receiver got it. */
  timestamp: string;
  receivedAt: string;
  /** Every stored one is: a delivery whose signature does not verify is refused with 401 and not kept. */
  verified: true;
  /** How many times this id arrived (a redelivery is counted, not stored twice). */
  deliveries: number;
}

export const RECEIVER_KEEPS = 50;

const store = globalThis as typeof globalThis & {
  __creditkitDemoReceiver?: { received: ReceivedNotification[]; refused: number };
};
const state = (store.__creditkitDemoReceiver ??= { received: [], refused: 0 });

export function recordNotification(event: CreditkitNotification): ReceivedNotification {
  const seen = state.received.find((r) => r.id === event.id);
  if (seen) {
    seen.deliveries++;
    return seen;
  }
  const data = event.data as unknown as Record<string, unknown>;
  const received: ReceivedNotification = {
    id: event.id,
    type: event.type,
    accountId: typeof data.account_id === 'string' ? data.account_id : null,
    data,
    timestamp: event.timestamp,
    receivedAt: new Date().toISOString(),
    verified: true,
    deliveries: 1,
  };
  state.received.unshift(received);
  state.received.length = Math.min(state.received.length, RECEIVER_KEEPS);
  return received;
}

export function recordRefused(): void {
  state.refused++;
}

export function receivedNotifications(): { received: ReceivedNotification[]; refused: number } {
  return { received: [...state.received], refused: state.refused };
}
