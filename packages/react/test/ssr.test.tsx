// @vitest-environment node
// Server rendering (a Next.js page renders client components on the server first): no window, no
// document. Every component must render its signed-in loading state there, the state the browser
// then hydrates, with the placeholders and aria-busy already in the HTML.
import { renderToString } from 'react-dom/server';
import { describe, expect, it } from 'vitest';
import { CreditkitClient, type Transport } from '@creditkit/core';
import {
  BuyCreditsButton,
  CreditkitProvider,
  CreditsDisplay,
  LowBalanceBanner,
  ManageSubscriptionLink,
  Paywall,
  UsageHistory,
} from '../src/index.ts';

// Nothing is fetched during a server render (queries start in effects), so no database is needed.
const unused: Transport = { kind: 'unused', rpc: () => Promise.reject(new Error('no call expected during a server render')) };

describe('server rendering', () => {
  it('renders every component without window or document', () => {
    expect(typeof window).toBe('undefined');
    const html = renderToString(
      <CreditkitProvider client={new CreditkitClient(unused)} accountId="00000000-0000-4000-8000-00000000a11c" checkout={async () => ''}>
        <CreditsDisplay price={{ amount: 2, unit: 'image' }} />
        <LowBalanceBanner threshold={10} />
        <Paywall credits={4}>
          <p>secret</p>
        </Paywall>
        <UsageHistory />
        <BuyCreditsButton packId="small" />
        <ManageSubscriptionLink />
      </CreditkitProvider>,
    );
    expect(html).toContain('data-creditkit="credits-display"');
    expect(html).toMatch(/data-creditkit="paywall"[^>]*data-state="loading"[^>]*aria-busy="true"/);
    expect(html).toContain('<caption');
    expect(html).toContain('>Buy credits</button>');
    expect(html).toContain('>Manage subscription</button>');
    expect(html).not.toContain('secret');
    expect(html).not.toContain('low-balance');
  });
});
