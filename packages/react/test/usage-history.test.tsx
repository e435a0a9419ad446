// UsageHistory on the real SDK: a captioned table with column headers, pages loaded with the
// keyboard through "Load more" until the ledger ends, amounts unsigned with their direction in
// words, and a refresh after a credits mutation.
import { type ReactNode } from 'react';
import { screen, waitFor, within } from '@testing-library/react';
import { userEvent } from '@testing-library/user-event';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageHistory, useCreditsMutation } from '../src/index.ts';
import { clientOver, gated, renderAs, startKit, type Kit } from './support.tsx';

let kit: Kit;
beforeAll(async () => {
  kit = await startKit();
});
afterAll(() => kit.close());

const bodyRows = (table: HTMLElement) => within(table).getAllByRole('row').slice(1); // less the header row

describe('UsageHistory', () => {
  it('pages through 25 entries 10 at a time with the keyboard, then keeps focus in the table', async () => {
    const ada = await kit.signUp();
    await kit.creditkit.grant({ accountId: ada, amount: 1000 });
    for (let i = 1; i <= 24; i++) await kit.creditkit.consume({ accountId: ada, amount: i, event: 'image_gen' });
    const transport = gated(kit.creditkit.asUser(ada).transport, false);
    renderAs(kit, ada, <UsageHistory pageSize={10} />, { client: clientOver(kit, ada, () => transport) });

    const table = screen.getByRole('table', { name: 'Usage history' });
    expect(within(table).getAllByRole('columnheader').map((th) => [th.textContent, th.getAttribute('scope')])).toEqual([
      ['Date', 'col'],
      ['Activity', 'col'],
      ['Credits', 'col'],
      ['Balance', 'col'],
    ]);
    await waitFor(() => expect(bodyRows(table)).toHaveLength(10));
    // newest first: the last consume (24) left 1000 - (1 + … + 24) = 700
    const first = within(bodyRows(table)[0]!).getAllByRole('cell').map((td) => td.textContent);
    expect(first.slice(1)).toEqual(['Used: image_gen', '24', '700']);

    const user = userEvent.setup();
    const more = screen.getByRole('button', { name: 'Load more' });
    more.focus();
    transport.close();
    await user.keyboard('{Enter}');
    // loading: busy and aria-disabled, but not disabled (a disabled button would drop the focus)
    await waitFor(() => expect(more).toHaveAttribute('aria-busy', 'true'));
    expect(more).toHaveAttribute('aria-disabled', 'true');
    expect(more).not.toBeDisabled();
    expect(more).toHaveFocus();
    await user.keyboard('{Enter}'); // ignored while loading
    transport.release();
    await waitFor(() => expect(bodyRows(table)).toHaveLength(20));
    expect(transport.calls).toEqual(['creditkit_my_history', 'creditkit_my_history']);
    expect(more).toHaveFocus();
    expect(more).toHaveAttribute('aria-busy', 'false');
    await user.keyboard(' ');
    await waitFor(() => expect(bodyRows(table)).toHaveLength(25));
    // the ledger ended: no button, and focus moved to the table instead of <body>
    await waitFor(() => expect(screen.queryByRole('button', { name: 'Load more' })).toBeNull());
    await waitFor(() => expect(table).toHaveFocus());

    const last = within(bodyRows(table)[24]!).getAllByRole('cell').map((td) => td.textContent);
    expect(last.slice(1)).toEqual(['Credits added', '1,000', '1,000']);
    expect(table).not.toHaveTextContent(/-\d|−\d|NaN/);
  });

  it('a page that ends exactly at the ledger end: one more request finds nothing, and the button goes', async () => {
    const ada = await kit.signUp();
    for (let i = 0; i < 4; i++) await kit.creditkit.grant({ accountId: ada, amount: 5 });
    renderAs(kit, ada, <UsageHistory pageSize={2} />);
    const table = screen.getByRole('table', { name: 'Usage history' });
    const user = userEvent.setup();
    await user.click(await screen.findByRole('button', { name: 'Load more' }));
    await waitFor(() => expect(bodyRows(table)).toHaveLength(4));
    await user.click(await screen.findByRole('button', { name: 'Load more' }));
    await waitFor(() => expect(screen.queryByRole('button', { name: 'Load more' })).toBeNull());
    expect(bodyRows(table)).toHaveLength(4);
  });

  it('describes every kind of entry, and takes a describe function', async () => {
    const ada = await kit.signUp();
    await kit.creditkit.grant({ accountId: ada, amount: 10 });
    await kit.creditkit.consume({ accountId: ada, amount: 2 });
    await kit.creditkit.adjust({ accountId: ada, amount: -3, reason: 'refund' });
    await kit.creditkit.adjust({ accountId: ada, amount: 1, reason: 'goodwill' });
    renderAs(kit, ada, (
      <>
        <UsageHistory caption="Default" />
        <UsageHistory caption="Custom" describe={(e) => `${e.kind}!`} />
      </>
    ));
    const activity = async (name: string) => {
      const table = screen.getByRole('table', { name });
      await waitFor(() => expect(bodyRows(table)).toHaveLength(4));
      return bodyRows(table).map((row) => within(row).getAllByRole('cell')[1]!.textContent);
    };
    expect(await activity('Default')).toEqual(['Adjustment: added', 'Adjustment: removed', 'Credits used', 'Credits added']);
    expect(await activity('Custom')).toEqual(['adjust!', 'adjust!', 'consume!', 'grant!']);
    const rows = bodyRows(screen.getByRole('table', { name: 'Default' }));
    expect(rows.map((r) => r.getAttribute('data-direction'))).toEqual(['in', 'out', 'out', 'in']);
  });

  it('while loading: caption and headers already there, one placeholder row, aria-busy', async () => {
    const ada = await kit.signUp();
    await kit.creditkit.grant({ accountId: ada, amount: 3 });
    const transport = gated(kit.creditkit.asUser(ada).transport);
    const { container } = renderAs(kit, ada, <UsageHistory />, { client: clientOver(kit, ada, () => transport) });
    const root = container.querySelector('[data-creditkit="usage-history"]')!;
    expect(root).toHaveAttribute('aria-busy', 'true');
    const table = screen.getByRole('table', { name: 'Usage history' });
    expect(within(table).getAllByRole('columnheader')).toHaveLength(4);
    expect(bodyRows(table)).toHaveLength(1);
    expect(within(table).getByRole('cell')).toHaveAttribute('data-placeholder');
    transport.release();
    await waitFor(() => expect(root).toHaveAttribute('aria-busy', 'false'));
    expect(within(bodyRows(table)[0]!).getAllByRole('cell')[2]).toHaveTextContent('3');
  });

  it('an empty ledger says so', async () => {
    renderAs(kit, await kit.signUp(), <UsageHistory />);
    expect(await screen.findByRole('cell', { name: 'No activity yet' })).toBeInTheDocument();
    expect(screen.queryByRole('button')).toBeNull();
  });

  it('shows new entries after a useCreditsMutation', async () => {
    const ada = await kit.signUp();
    await kit.creditkit.grant({ accountId: ada, amount: 10 });
    function Generate(): ReactNode {
      const generate = useCreditsMutation({ mutationFn: () => kit.creditkit.consume({ accountId: ada, amount: 4, event: 'video_gen' }) });
      return (
        <button type="button" onClick={() => generate.mutate()}>
          Generate
        </button>
      );
    }
    renderAs(kit, ada, (
      <>
        <UsageHistory />
        <Generate />
      </>
    ));
    const table = screen.getByRole('table', { name: 'Usage history' });
    await waitFor(() => expect(bodyRows(table)).toHaveLength(1));
    await userEvent.setup().click(screen.getByRole('button', { name: 'Generate' }));
    await waitFor(() => expect(bodyRows(table)).toHaveLength(2));
    expect(within(bodyRows(table)[0]!).getAllByRole('cell').map((c) => c.textContent).slice(1)).toEqual(['Used: video_gen', '4', '6']);
  });
});
