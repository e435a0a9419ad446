// Shared by the suites: one embedded creditkit (PGlite with every migration) per test file, fresh
// users so tests do not see each other's credits, and a render() inside <CreditkitProvider> with
// the real browser client acting as that user (creditkit.asUser: role authenticated, the user's
// JWT claims). Nothing of the SDK is mocked; the transport wrappers only count or delay calls
// on their way to the database, or (tampered) alter what it answered, to test a guard.
import { type ReactNode } from 'react';
import { QueryClient } from '@tanstack/react-query';
import { render, type RenderResult } from '@testing-library/react';
import { CreditkitClient, type Transport } from '@creditkit/core';
import { createEmbeddedCreditkit, type EmbeddedCreditkit } from '@creditkit/core/embedded';
import { pgliteTemplate } from '@creditkit/testing';
import { CreditkitProvider, type CheckoutTarget, type CreditkitReadClient } from '../src/index.ts';

export interface Kit extends EmbeddedCreditkit {
  /** A new row in auth.users; returns its id (the user's account id). */
  signUp(): Promise<string>;
}

let users = 0;

export async function startKit(): Promise<Kit> {
  const kit = await createEmbeddedCreditkit({ loadDataDir: await pgliteTemplate() });
  const signUp = async () => {
    const email = `user${++users}-${Math.random().toString(36).slice(2)}@example.com`;
    return (await kit.db.query<{ id: string }>('insert into auth.users (email) values ($1) returning id', [email])).rows[0]!.id;
  };
  return { ...kit, signUp };
}

/** A QueryClient for one test: no retries, so a failure shows at once. */
export function testQueryClient(): QueryClient {
  return new QueryClient({ defaultOptions: { queries: { retry: false }, mutations: { retry: false } } });
}

export interface RenderOptions {
  /** Default: the signed-in user's real client. */
  client?: CreditkitReadClient;
  queryClient?: QueryClient;
  checkout?: (target: CheckoutTarget) => Promise<string>;
  portal?: () => Promise<string>;
  navigate?: (url: string) => void;
}

/** Renders `ui` for `accountId` (null: signed out) with the real SDK on the kit's database. */
export function renderAs(
  kit: Kit,
  accountId: string | null,
  ui: ReactNode,
  options: RenderOptions = {},
): RenderResult & { queryClient: QueryClient; client: CreditkitReadClient } {
  const queryClient = options.queryClient ?? testQueryClient();
  const client = options.client ?? kit.creditkit.asUser(accountId ?? '00000000-0000-4000-8000-000000000000');
  const wrap = (children: ReactNode) => (
    <CreditkitProvider
      client={client}
      accountId={accountId}
      queryClient={queryClient}
      locale="en-US"
      {...(options.checkout ? { checkout: options.checkout } : {})}
      {...(options.portal ? { portal: options.portal } : {})}
      navigate={options.navigate ?? (() => {})}
    >
      {children}
    </CreditkitProvider>
  );
  const result = render(wrap(ui));
  return { ...result, rerender: (next: ReactNode) => result.rerender(wrap(next)), queryClient, client };
}

/** The user's real client over a wrapped transport. */
export function clientOver(kit: Kit, userId: string, wrap: (transport: Transport) => Transport): CreditkitClient {
  return new CreditkitClient(wrap(kit.creditkit.asUser(userId).transport));
}

// The transport wrappers (counting, gated, tampered) are @creditkit/testing's.
export { counting, gated, tampered } from '@creditkit/testing';

/** A promise with its resolve/reject exposed. */
export function deferred<T>(): { promise: Promise<T>; resolve(value: T): void; reject(error: unknown): void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}
