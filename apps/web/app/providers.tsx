'use client';
// The browser side of the app: one TanStack Query client, and for a signed-in user the creditkit
// provider with a CreditkitClient whose calls run as that user (see lib/client/transport.ts).
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { useState, type ReactNode } from 'react';
import { CreditkitProvider } from '@/lib/client/creditkit-react.tsx';
import { browserCreditkit } from '@/lib/client/transport.ts';

async function post(path: string, body: unknown): Promise<string> {
  const response = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const answer = (await response.json()) as { url?: string; message?: string };
  if (!response.ok || !answer.url) throw new Error(answer.message ?? `${path} answered ${response.status}`);
  return answer.url;
}

const checkout = (target: { packId: string } | { planId: string }) => post('/api/checkout', target);
const portal = () => post('/api/portal', {});

export function Providers({ accountId, children }: { accountId: string | null; children: ReactNode }) {
  const [queryClient] = useState(() => new QueryClient({ defaultOptions: { queries: { staleTime: 5_000, retry: 1 } } }));
  const [client] = useState(() => browserCreditkit());
  if (!accountId) return <QueryClientProvider client={queryClient}>{children}</QueryClientProvider>;
  return (
    <CreditkitProvider client={client} accountId={accountId} queryClient={queryClient} checkout={checkout} portal={portal}>
      {children}
    </CreditkitProvider>
  );
}
