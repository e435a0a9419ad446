'use client';
// Checkout for a plan (a subscription), beside BuyCreditsButton which does it for a pack.
import { useState } from 'react';
import { useCreditkit, usePlans } from '@/lib/client/creditkit-react.tsx';
import { money } from '@/lib/format.ts';

export function SubscribeButton({ planId }: { planId: string }) {
  const { checkout } = useCreditkit();
  const plans = usePlans();
  const [busy, setBusy] = useState(false);
  const plan = plans.data?.find((p) => p.id === planId);
  return (
    <button
      type="button"
      className="ck-button primary"
      disabled={!checkout || busy || !plan}
      onClick={async () => {
        setBusy(true);
        try {
          window.location.assign(await checkout!({ planId }));
        } finally {
          setBusy(false);
        }
      }}
    >
      {plan ? `Subscribe to ${plan.name} · ${money(plan.priceAmount, plan.currency)}/${plan.period}` : 'Subscribe'}
    </button>
  );
}
