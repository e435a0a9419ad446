// CreditsDisplay and LowBalanceBanner on the real SDK: what a server grant shows, the "N left"
// arithmetic and its plurals, the next expiry, the loading state, and the clamp that keeps NaN and
// negative numbers off the screen even when the data is impossible.
import { type ReactNode } from 'react';
import { screen, waitFor, within } from '@testing-library/react';
import { userEvent } from '@testing-library/user-event';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreditsDisplay, LowBalanceBanner, useBalanceAlert, useCreditsMutation, type CreditsPrice } from '../src/index.ts';
import { clientOver, gated, renderAs, startKit, tampered, type Kit } from './support.tsx';

let kit: Kit;
beforeAll(async () => {
  kit = await startKit();
  await kit.creditkit.upsertUnit({ id: 'messages', name: 'Messages' });
  await kit.creditkit.upsertUnit({ id: 'hd_minutes', name: 'HD minutes' });
});
afterAll(() => kit.close());

const IMAGE: CreditsPrice = { amount: 2, unit: 'image generation', unitPlural: 'image generations' };

async function userWith(credits: number): Promise<string> {
  const id = await kit.signUp();
  if (credits > 0) await kit.creditkit.grant({ accountId: id, amount: credits });
  return id;
}

/** The display's parts once the balance arrived. */
async function shown(): Promise<HTMLElement> {
  const display = screen.getByRole('group', { name: 'Credits' });
  await waitFor(() => expect(display).toHaveAttribute('data-state', 'ready'));
  expect(display).not.toHaveTextContent(/NaN|-\d|−\d/);
  return display;
}
const part = (display: HTMLElement, slot: string) => display.querySelector(`[data-creditkit="credits-display-${slot}"]`);

describe('CreditsDisplay', () => {
  it('shows the balance a server grant made, formatted, and how many units it buys', async () => {
    const ada = await userWith(12_345);
    renderAs(kit, ada, <CreditsDisplay price={IMAGE} />);
    const display = await shown();
    expect(part(display, 'value')).toHaveTextContent('12,345');
    expect(part(display, 'units')).toHaveTextContent('6,172 image generations left');
    expect(part(display, 'expiry')).toHaveTextContent('No credits expire');
  });

  it.each([
    [7, IMAGE, '3 image generations left'],
    [3, IMAGE, '1 image generation left'],
    [2, IMAGE, '1 image generation left'],
    [1, IMAGE, '0 image generations left'],
    [0, IMAGE, '0 image generations left'],
    [5, { amount: 1, unit: 'video' }, '5 videos left'], // default plural: unit + "s"
    [6, { amount: 0.2, unit: 'song' }, '30 songs left'], // not 29: the price is read as a decimal
  ])('balance %i at %o: "%s"', async (credits, price, text) => {
    renderAs(kit, await userWith(credits), <CreditsDisplay price={price} />);
    const display = await shown();
    expect(part(display, 'units')).toHaveTextContent(new RegExp(`^${text}$`));
  });

  it.each([0, -2, NaN, Infinity])('a price of %s hides the "left" line instead of showing NaN or Infinity', async (amount) => {
    renderAs(kit, await userWith(10), <CreditsDisplay price={{ amount, unit: 'image' }} />);
    const display = await shown();
    expect(part(display, 'units')).toBeNull();
    expect(display).not.toHaveTextContent(/Infinity|∞/);
    expect(part(display, 'value')).toHaveTextContent('10');
  });

  it('shows the next expiry and how much expires then, from the live buckets', async () => {
    const ada = await kit.signUp();
    const soon = '2099-03-01T12:00:00Z';
    await kit.creditkit.grant({ accountId: ada, amount: 5, category: 'promotional', expiresAt: soon });
    await kit.creditkit.grant({ accountId: ada, amount: 2, category: 'promotional', expiresAt: soon });
    await kit.creditkit.grant({ accountId: ada, amount: 20, expiresAt: '2099-06-01T12:00:00Z' });
    await kit.creditkit.grant({ accountId: ada, amount: 100 });
    renderAs(kit, ada, <CreditsDisplay />);
    const display = await shown();
    expect(part(display, 'value')).toHaveTextContent('127');
    expect(part(display, 'expiry')).toHaveTextContent(/^7 credits expire on Mar 1, 2099$/);
    expect(within(display).getByText('Mar 1, 2099')).toHaveAttribute('datetime', expect.stringMatching(/^2099-03-01T12:00:00/));
  });

  it('unit="messages": that unit\'s balance under its catalogue name, its expiry in its own words; credits not shown', async () => {
    const ada = await userWith(500);
    await kit.creditkit.grant({ accountId: ada, amount: 3, unit: 'messages', expiresAt: '2099-03-01T12:00:00Z' });
    await kit.creditkit.grant({ accountId: ada, amount: 9, unit: 'messages' });
    renderAs(kit, ada, <CreditsDisplay unit="messages" price={{ amount: 4, unit: 'chat' }} />);
    const display = await screen.findByRole('group', { name: 'Messages' });
    await waitFor(() => expect(display).toHaveAttribute('data-state', 'ready'));
    expect(part(display, 'value')).toHaveTextContent(/^12$/);
    expect(part(display, 'units')).toHaveTextContent(/^3 chats left$/);
    expect(part(display, 'expiry')).toHaveTextContent(/^3 messages expire on Mar 1, 2099$/);
  });

  it('unit not touched yet: its plan allowance, all of it lasting to the period\'s end (no bucket yet)', async () => {
    await kit.creditkit.upsertPlan({ id: 'display-chat', name: 'Chat', allowance: 0 });
    await kit.creditkit.setPlanLimit({ planId: 'display-chat', unit: 'messages', allowance: 20, period: 'month' });
    const ada = await userWith(1);
    await kit.creditkit.setPlan({ accountId: ada, planId: 'display-chat' });
    renderAs(kit, ada, <CreditsDisplay unit="messages" />);
    const display = await screen.findByRole('group', { name: 'Messages' });
    await waitFor(() => expect(display).toHaveAttribute('data-state', 'ready'));
    expect(part(display, 'value')).toHaveTextContent(/^20$/);
    expect(part(display, 'expiry')).toHaveTextContent(/^20 messages expire on \w+ \d+, \d{4}$/);
  });

  it('unit: an acronym name keeps its case, no expiry reads "No <unit> expire", a label prop wins', async () => {
    const ada = await userWith(0);
    await kit.creditkit.grant({ accountId: ada, amount: 30, unit: 'hd_minutes' });
    renderAs(kit, ada, (
      <>
        <CreditsDisplay unit="hd_minutes" />
        <CreditsDisplay unit="hd_minutes" label="Video" showExpiry={false} />
      </>
    ));
    const display = await screen.findByRole('group', { name: 'HD minutes' });
    await waitFor(() => expect(part(display, 'expiry')).toHaveTextContent(/^No HD minutes expire$/));
    expect(part(display, 'value')).toHaveTextContent(/^30$/);
    expect(part(screen.getByRole('group', { name: 'Video' }), 'value')).toHaveTextContent(/^30$/);
  });

  it('one expiring credit reads in the singular', async () => {
    const ada = await kit.signUp();
    await kit.creditkit.grant({ accountId: ada, amount: 1, expiresAt: '2099-03-01T12:00:00Z' });
    renderAs(kit, ada, <CreditsDisplay />);
    expect(part(await shown(), 'expiry')).toHaveTextContent(/^1 credit expires on Mar 1, 2099$/);
  });

  it('while loading: the same parts, empty, marked as placeholders, and aria-busy', async () => {
    const ada = await userWith(9);
    const transport = gated(kit.creditkit.asUser(ada).transport);
    renderAs(kit, ada, <CreditsDisplay price={IMAGE} className="mine" classNames={{ value: 'big' }} />, {
      client: clientOver(kit, ada, () => transport),
    });
    const display = screen.getByRole('group', { name: 'Credits' });
    expect(display).toHaveAttribute('aria-busy', 'true');
    expect(display).toHaveAttribute('data-state', 'loading');
    expect(display).toHaveClass('mine');
    const slots = ['label', 'value', 'units', 'expiry'];
    expect(slots.map((s) => part(display, s) !== null)).toEqual([true, true, true, true]);
    for (const s of ['value', 'units', 'expiry']) {
      expect(part(display, s)).toHaveAttribute('data-placeholder');
      expect(part(display, s)!.textContent).toBe('\u00a0'); // one line high, nothing to read
    }
    transport.release();
    await shown();
    expect(display).toHaveAttribute('aria-busy', 'false');
    // the same elements, now filled: nothing was added or removed
    expect(slots.map((s) => part(display, s) !== null)).toEqual([true, true, true, true]);
    expect(part(display, 'value')).toHaveTextContent('9');
    expect(part(display, 'value')).toHaveClass('big');
    expect(part(display, 'value')).not.toHaveAttribute('data-placeholder');
  });

  it('clamps impossible data at 0: a negative or NaN balance never shows', async () => {
    for (const bad of [-40, Number.NaN]) {
      const ada = await userWith(10);
      const client = clientOver(kit, ada, (t) =>
        tampered(t, (fn, rows) => (fn === 'creditkit_my_balance' ? rows.map((r) => ({ ...(r as object), balance: bad })) : rows)),
      );
      const { unmount } = renderAs(kit, ada, <CreditsDisplay price={IMAGE} />, { client });
      const display = await shown();
      expect(part(display, 'value')).toHaveTextContent(/^0$/);
      expect(part(display, 'units')).toHaveTextContent(/^0 image generations left$/);
      unmount();
    }
  });

  it('an error shows an alert and a dash, not a number', async () => {
    const ada = await userWith(10);
    const client = clientOver(kit, ada, (t) => tampered(t, () => Promise.reject(new Error('network down')) as never));
    renderAs(kit, ada, <CreditsDisplay />, { client });
    expect(await screen.findByRole('alert')).toHaveTextContent('Your balance could not be loaded.');
    const display = screen.getByRole('group', { name: 'Credits' });
    expect(display).toHaveAttribute('data-state', 'error');
    expect(part(display, 'value')).toHaveTextContent('—');
  });

  it('renders nothing signed out', () => {
    const { container } = renderAs(kit, null, <CreditsDisplay price={IMAGE} />);
    expect(container).toBeEmptyDOMElement();
  });

  it('refreshes after a useCreditsMutation that consumed on the server', async () => {
    const ada = await userWith(10);
    function Generate(): ReactNode {
      const generate = useCreditsMutation({ mutationFn: () => kit.creditkit.consume({ accountId: ada, amount: 2, event: 'image_gen' }) });
      return (
        <button type="button" onClick={() => generate.mutate()}>
          Generate an image
        </button>
      );
    }
    renderAs(kit, ada, (
      <>
        <CreditsDisplay price={IMAGE} />
        <Generate />
      </>
    ));
    const display = await shown();
    expect(part(display, 'units')).toHaveTextContent('5 image generations left');
    await userEvent.setup().click(screen.getByRole('button', { name: 'Generate an image' }));
    await waitFor(() => expect(part(display, 'units')).toHaveTextContent('4 image generations left'));
    expect(part(display, 'value')).toHaveTextContent(/^8$/);
  });
});

describe('LowBalanceBanner', () => {
  it('appears at or below the threshold: status while credit is left, alert at zero', async () => {
    const ada = await userWith(11);
    function Spend({ amount }: { amount: number }): ReactNode {
      const spend = useCreditsMutation({ mutationFn: () => kit.creditkit.consume({ accountId: ada, amount }) });
      return (
        <button type="button" onClick={() => spend.mutate()}>
          Spend {amount}
        </button>
      );
    }
    renderAs(kit, ada, (
      <>
        <CreditsDisplay />
        <LowBalanceBanner threshold={10} classNames={{ root: 'banner' }} />
        <Spend amount={1} />
        <Spend amount={10} />
      </>
    ));
    await shown();
    expect(screen.queryByRole('status')).toBeNull();
    expect(document.querySelector('[data-creditkit="low-balance"]')).toBeNull();

    const user = userEvent.setup();
    await user.click(screen.getByRole('button', { name: 'Spend 1' }));
    const status = await screen.findByRole('status');
    expect(status).toHaveTextContent(/^Only 10 credits left\.$/);
    expect(status).toHaveAttribute('data-creditkit', 'low-balance');
    expect(status).toHaveClass('banner');

    await user.click(screen.getByRole('button', { name: 'Spend 10' }));
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('You are out of credits.');
    expect(screen.queryByRole('status')).toBeNull();
  });

  it("without a threshold it uses the account's own (the one balance.low uses); none set, no banner", async () => {
    const grace = await userWith(40);
    const linus = await userWith(40);
    await kit.creditkit.setAccountBalanceAlert({ accountId: grace, unit: 'credits', threshold: 50 });
    renderAs(kit, grace, <LowBalanceBanner />);
    expect(await screen.findByRole('status')).toHaveTextContent(/^Only 40 credits left\.$/);
    function AlertState(): ReactNode {
      const { data } = useBalanceAlert();
      return <span>{data ? `threshold: ${data.threshold ?? 'none'}, ${data.state}` : 'loading'}</span>;
    }
    renderAs(kit, linus, (
      <>
        <AlertState />
        <LowBalanceBanner>linus is low</LowBalanceBanner>
      </>
    ));
    expect(await screen.findByText('threshold: none, ok')).toBeInTheDocument();
    expect(screen.queryByText('linus is low')).toBeNull();
  });

  it('takes a message function and an action; NaN as threshold never shows', async () => {
    const ada = await userWith(1);
    renderAs(kit, ada, (
      <>
        <LowBalanceBanner threshold={5} action={<a href="/pricing">Buy more</a>}>
          {(balance) => `${balance} left, top up soon`}
        </LowBalanceBanner>
        <LowBalanceBanner threshold={Number.NaN}>never</LowBalanceBanner>
      </>
    ));
    const status = await screen.findByRole('status');
    expect(status).toHaveTextContent('1 left, top up soon Buy more');
    expect(within(status).getByRole('link', { name: 'Buy more' })).toHaveAttribute('href', '/pricing');
    expect(screen.queryByText('never')).toBeNull();
  });
});
