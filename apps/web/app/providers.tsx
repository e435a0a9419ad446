'use client';
// The browser side of the app: one TanStack Query client and the @creditkit/react provider, with
// a CreditkitClient whose calls run as the signed-in user (see lib/client/transport.ts). Signed
// out, the provider gets accountId null and its components fetch nothing account-bound.
import type { CreditkitClient } from '@creditkit/core';
import { CreditkitProvider, createCreditkitQueryClient, type CheckoutTarget } from '@creditkit/react';
import { createContext, useContext, useState, type ReactNode } from 'react';
import { browserCreditkit } from '@/lib/client/transport.ts';

async function post(path: string, body: unknown): Promise<string> {
  const response = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const answer = (await response.json()) as { url?: string; message?: string };
  if (!response.ok || !answer.url) throw new Error(answer.message ?? `${path} answered ${response.status}`);
  return answer.url;
}

const checkout = (target: CheckoutTarget) => post('/api/checkout', target);
const portal = () => post('/api/portal', {});

/** The provider types its client as the read methods only; the studio also asks for quotes. */
const BrowserClient = createContext<CreditkitClient | null>(null);

export function useBrowserCreditkit(): CreditkitClient {
  const client = useContext(BrowserClient);
  if (!client) throw new Error('useBrowserCreditkit: outside <Providers>');
  return client;
}

function makeQueryClient() {
  // @creditkit/react's retry policy (only unavailable/concurrency_conflict errors are retried),
  // and a short staleTime so moving between pages doesn't refetch what was just read.
  const queryClient = createCreditkitQueryClient();
  queryClient.setDefaultOptions({ queries: { ...queryClient.getDefaultOptions().queries, staleTime: 5_000 } });
  return queryClient;
}

export function Providers({ accountId, children }: { accountId: string | null; children: ReactNode }) {
  const [queryClient] = useState(makeQueryClient);
  const [client] = useState(browserCreditkit);
  return (
    <BrowserClient.Provider value={client}>
      {/* en-US: the same number, price and date formats as the server-rendered pages */}
      <CreditkitProvider client={client} accountId={accountId} queryClient={queryClient} checkout={checkout} portal={portal} locale="en-US">
        {children}
      </CreditkitProvider>
    </BrowserClient.Provider>
  );
}
