// The simulated Stripe's PaymentIntents, for the worker's off-session top-up charges when there
// are no Stripe keys. It answers as Stripe's API does for the test card the payment method was
// saved with (its id names it, see stripe-events.ts): 4242 succeeds; 0002 throws a card error
// (card_declined); 3184 throws authentication_required (3-D Secure needed, the customer must
// confirm on-session). Then, as Stripe would, it sends payment_intent.succeeded or
// payment_intent.payment_failed, with the metadata the claim gave, signed, to the app's own
// webhook route: the credits land from that event, as with real Stripe.
import type { WorkerStripe } from '@creditkit/core';
import type { Topup } from '@creditkit/core';
import type { Demo } from './demo.ts';
import { deliverEvents, type Delivery } from './stripe.ts';
import { paymentIntentEvent, stripeId, testCardOf, type PaymentIntentParams, type StripeEventPayload } from './stripe-events.ts';

/** What Stripe's Node library throws for a card error (the fields runWorker reads). */
class SimulatedCardError extends Error {
  readonly type = 'StripeCardError';
  readonly rawType = 'card_error';
  readonly statusCode = 402;
  constructor(
    message: string,
    readonly code: string,
    readonly decline_code: string | undefined,
    readonly payment_intent: { id: string; status: string },
  ) {
    super(message);
  }
}

interface Answer {
  intent?: { id: string; status: string };
  error?: SimulatedCardError;
}

const store = globalThis as typeof globalThis & {
  /** Stripe's idempotency: the same key gets the same answer (and no second charge). */
  __creditkitSimulatedIntents?: Map<string, Answer>;
};
const answers = (store.__creditkitSimulatedIntents ??= new Map());

export interface SimulatedStripe extends WorkerStripe {
  /** Sends the webhook events the charges since the last call produced; how many were sent. */
  flush(): Promise<Delivery[]>;
}

export function simulatedStripe(demo: Demo, origin: string): SimulatedStripe {
  let queue: StripeEventPayload[] = [];
  return {
    paymentIntents: {
      async create(params, options) {
        const key = options?.idempotencyKey;
        const seen = key ? answers.get(key) : undefined;
        if (seen) {
          if (seen.error) throw seen.error;
          return seen.intent!;
        }
        const pi: PaymentIntentParams = {
          id: stripeId('pi'),
          amount: Number(params.amount),
          currency: String(params.currency),
          customer: String(params.customer),
          paymentMethod: String(params.payment_method),
          metadata: (params.metadata ?? {}) as Record<string, string>,
          offSession: params.off_session === true,
        };
        const card = testCardOf(pi.paymentMethod);
        let answer: Answer;
        if (card === 'ok') {
          answer = { intent: { id: pi.id, status: 'succeeded' } };
          queue.push(paymentIntentEvent(pi, new Date()));
        } else {
          const failure =
            card === 'decline'
              ? { code: 'card_declined', declineCode: 'generic_decline', message: 'Your card was declined.' }
              : { code: 'authentication_required', declineCode: 'authentication_required', message: 'Your card requires authentication to complete this payment.' };
          answer = { error: new SimulatedCardError(failure.message, failure.code, failure.declineCode, { id: pi.id, status: 'requires_payment_method' }) };
          queue.push(paymentIntentEvent(pi, new Date(), failure));
        }
        if (key) answers.set(key, answer);
        if (answer.error) throw answer.error;
        return answer.intent!;
      },
    },
    async flush() {
      const events = queue;
      queue = [];
      return events.length ? deliverEvents(demo, origin, events) : [];
    },
  };
}

/**
 * The customer confirmed a top-up that needed authentication (the simulated 3-D Secure page):
 * Stripe then sends payment_intent.succeeded for the same PaymentIntent, with its metadata.
 */
export async function confirmTopupPayment(demo: Demo, origin: string, topup: Topup): Promise<Delivery[]> {
  const customer = (await demo.creditkit.stripeCustomer({ accountId: topup.accountId })) ?? stripeId('cus', 14);
  const card = (await demo.creditkit.autoTopup({ accountId: topup.accountId, unit: topup.unit })).paymentMethod;
  const pi: PaymentIntentParams = {
    id: topup.paymentIntent ?? stripeId('pi'),
    amount: topup.chargeAmount,
    currency: topup.currency,
    customer,
    paymentMethod: card?.id ?? 'pm_card_visa',
    metadata: {
      creditkit_topup_id: String(topup.id),
      creditkit_account_id: topup.accountId,
      creditkit_unit: topup.unit,
      creditkit_amount: String(topup.amount),
    },
    offSession: false,
  };
  return deliverEvents(demo, origin, [paymentIntentEvent(pi, new Date())]);
}
