// The customer's billing page: the balance of credits and of every other metered unit (messages)
// with the plan's allowance of it, the credit buckets and when they expire, the plan, packs to
// buy, and the ledger. Everything is read in the browser as the signed-in user.
import { redirect } from 'next/navigation';
import { getDemo } from '@/lib/server/demo.ts';
import { currentUser } from '@/lib/server/session.ts';
import { Billing } from './billing.tsx';

export const dynamic = 'force-dynamic';

const NOTICES: Record<string, string> = {
  'checkout=success': 'Payment received. Stripe’s webhook has been applied: your credits are below.',
  'checkout=canceled': 'Checkout canceled; nothing was charged.',
  'checkout=already-subscribed': 'You already have this plan. Change it from “Manage subscription”.',
  'checkout=failed': 'The webhook could not apply the payment (see the server log).',
  'portal=canceled': 'Subscription canceled: you are back on the free plan; credits already granted stay until they expire.',
  'card=saved': 'Card saved. Stripe’s setup events have been applied: auto top-up can charge it.',
  'topup=confirmed': 'Payment confirmed. Stripe’s payment_intent.succeeded has been applied: the top-up’s credits are below.',
  'topup=nothing-to-confirm': 'That top-up has nothing left to confirm.',
};

export default async function BillingPage({ searchParams }: { searchParams: Promise<Record<string, string | string[] | undefined>> }) {
  const user = await currentUser();
  if (!user) redirect('/sign-in');
  const params = await searchParams;
  const notice = Object.entries(NOTICES).find(([k]) => {
    const [name, value] = k.split('=');
    return params[name!] === value;
  })?.[1];
  // ?topup=<id>: the link a top-up that needs the customer carries (the auto top-up terms' action_url)
  const topup = typeof params.topup === 'string' && /^\d+$/.test(params.topup) ? params.topup : null;
  const { stripe } = await getDemo();
  return <Billing notice={notice ?? null} simulated={stripe.mode === 'simulated'} topupToConfirm={topup} />;
}
