// Paywall on the real SDK: the gate opens after a server grant or a subscription to a plan with
// the feature, the prompt lists what would open it (packs, plans) with working checkout buttons,
// `fallback` replaces the prompt, and the loading state is a busy placeholder.
import { screen, waitFor, within } from '@testing-library/react';
import { userEvent } from '@testing-library/user-event';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { creditkitKeys, Paywall, type PaymentRequiredInfo } from '../src/index.ts';
import { clientOver, counting, gated, renderAs, startKit, type Kit } from './support.tsx';

let kit: Kit;
beforeAll(async () => {
  kit = await startKit();
  await kit.creditkit.upsertPlan({ id: 'pro', name: 'Pro', allowance: 100, features: { hd_upscale: true }, priceAmount: 1900 });
  await kit.creditkit.upsertPlan({ id: 'basic', name: 'Basic', allowance: 20, features: { hd_upscale: false }, priceAmount: 500 });
  await kit.creditkit.upsertPack({ id: 'small', name: 'Small', credits: 50, priceAmount: 500 });
  await kit.creditkit.upsertPack({ id: 'large', name: 'Large', credits: 500, priceAmount: 3900 });
  await kit.creditkit.upsertUnit({ id: 'messages', name: 'Messages' });
  await kit.creditkit.upsertPlan({ id: 'chat', name: 'Chat', allowance: 0, priceAmount: 900 });
  await kit.creditkit.setPlanLimit({ planId: 'chat', unit: 'messages', allowance: 100 });
  // a free plan with a few messages is no offer when they run out
  await kit.creditkit.upsertPlan({ id: 'chat-free', name: 'Chat free', allowance: 0 });
  await kit.creditkit.setPlanLimit({ planId: 'chat-free', unit: 'messages', allowance: 5 });
  // a pack of messages: offered when messages run out, never as a credit pack
  await kit.creditkit.upsertPack({ id: 'msgs', name: '200 messages', credits: 200, priceAmount: 300, unit: 'messages' });
});
afterAll(() => kit.close());

const gatedContent = () => screen.queryByRole('button', { name: 'Upscale in HD' });
const UPSCALE = <button type="button">Upscale in HD</button>;

describe('Paywall', () => {
  it('credits: a buy prompt listing the packs, then the children after a server grant', async () => {
    const ada = await kit.signUp();
    await kit.creditkit.grant({ accountId: ada, amount: 1 });
    const checkouts: unknown[] = [];
    const navigated: string[] = [];
    const { queryClient } = renderAs(kit, ada, <Paywall credits={4}>{UPSCALE}</Paywall>, {
      checkout: async (target) => (checkouts.push(target), `https://checkout.example/${target.packId}`),
      navigate: (url) => void navigated.push(url),
    });
    const prompt = await screen.findByRole('region', { name: 'Not enough credits' });
    expect(prompt).toHaveAttribute('data-creditkit', 'paywall');
    expect(prompt).toHaveAttribute('data-state', 'locked');
    expect(prompt).toHaveTextContent('This needs 4 credits; you have 1.');
    expect(within(prompt).getByRole('heading', { level: 2, name: 'Not enough credits' })).toBeInTheDocument();
    const buttons = await within(prompt).findAllByRole('button');
    expect(buttons.map((b) => b.textContent)).toEqual(['Buy Small: 50 credits for $5.00', 'Buy Large: 500 credits for $39.00']);
    expect(gatedContent()).toBeNull();

    await userEvent.setup().click(within(prompt).getByRole('button', { name: /Buy Large/ }));
    await waitFor(() => expect(navigated).toEqual(['https://checkout.example/large']));
    expect(checkouts).toEqual([{ packId: 'large' }]);

    // the webhook granted the pack on the server; the app refreshes the account's keys
    await kit.creditkit.grant({ accountId: ada, amount: 500, category: 'purchase' });
    await queryClient.invalidateQueries({ queryKey: creditkitKeys.account(ada) });
    await waitFor(() => expect(gatedContent()).toBeInTheDocument());
    expect(screen.queryByRole('region')).toBeNull();
  });

  it('credits: exactly enough is enough', async () => {
    const ada = await kit.signUp();
    await kit.creditkit.grant({ accountId: ada, amount: 4 });
    renderAs(kit, ada, <Paywall credits={4}>{UPSCALE}</Paywall>);
    expect(await screen.findByRole('button', { name: 'Upscale in HD' })).toBeInTheDocument();
  });

  it('feature: the plans that include it, then the children after subscribing to one', async () => {
    const ada = await kit.signUp();
    const { queryClient } = renderAs(kit, ada, <Paywall feature="hd_upscale" featureLabel="HD upscaling">{UPSCALE}</Paywall>, {
      checkout: async () => 'https://checkout.example/sub',
    });
    const prompt = await screen.findByRole('region', { name: 'Upgrade to unlock this' });
    expect(prompt).toHaveTextContent('Your plan does not include HD upscaling.');
    // Pro has hd_upscale; Basic (false) and Free (absent) do not
    await waitFor(() => expect(within(prompt).getAllByRole('button').map((b) => b.textContent)).toEqual(['Subscribe to Pro ($19.00 a month)']));

    await kit.creditkit.setPlan({ accountId: ada, planId: 'pro' });
    await queryClient.invalidateQueries({ queryKey: creditkitKeys.account(ada) });
    await waitFor(() => expect(gatedContent()).toBeInTheDocument());

    // and closes again when the subscription moves to a plan without it
    await kit.creditkit.setPlan({ accountId: ada, planId: 'basic' });
    await queryClient.invalidateQueries({ queryKey: creditkitKeys.account(ada) });
    await waitFor(() => expect(gatedContent()).toBeNull());
    expect(screen.getByRole('region', { name: 'Upgrade to unlock this' })).toBeInTheDocument();
  });

  it('a metered feature: names the unit that ran out, lists the plans with a limit of it and its packs, then the children after a grant', async () => {
    const ada = await kit.signUp();
    await kit.creditkit.grant({ accountId: ada, amount: 50 }); // credits do not pay for messages
    const { queryClient } = renderAs(kit, ada, <Paywall feature="messages">{UPSCALE}</Paywall>, {
      checkout: async () => 'https://checkout.example/sub',
    });
    const prompt = await screen.findByRole('region', { name: 'Not enough messages' });
    expect(prompt).toHaveTextContent('This needs 1 messages; you have 0.');
    await waitFor(() => expect(within(prompt).getAllByRole('button').map((b) => b.textContent)).toEqual([
      'Subscribe to Chat ($9.00 a month)', 'Buy 200 messages for $3.00',
    ]));
    expect(gatedContent()).toBeNull();

    await kit.creditkit.grant({ accountId: ada, amount: 1, unit: 'messages' });
    await queryClient.invalidateQueries({ queryKey: creditkitKeys.account(ada) });
    await waitFor(() => expect(gatedContent()).toBeInTheDocument());
  });

  it('a metered feature with an amount: exactly enough opens, one short does not', async () => {
    const ada = await kit.signUp();
    await kit.creditkit.grant({ accountId: ada, amount: 4, unit: 'messages' });
    renderAs(kit, ada, (
      <>
        <Paywall feature="messages" amount={4}>
          <p>four open</p>
        </Paywall>
        <Paywall feature="messages" amount={5} featureLabel="chat messages">
          <p>five open</p>
        </Paywall>
      </>
    ));
    expect(await screen.findByText('four open')).toBeInTheDocument();
    const prompt = await screen.findByRole('region', { name: 'Not enough chat messages' });
    expect(prompt).toHaveTextContent('This needs 5 chat messages; you have 4.');
    expect(screen.queryByText('five open')).toBeNull();
  });

  it("paymentRequired: a route's 402 body locks at once and names what ran out (a unit, or credits with the packs)", async () => {
    const ada = await kit.signUp();
    await kit.creditkit.grant({ accountId: ada, amount: 1000 });
    await kit.creditkit.grant({ accountId: ada, amount: 1000, unit: 'messages' });
    const transport = counting(kit.creditkit.asUser(ada).transport);
    renderAs(kit, ada, (
      <>
        <Paywall paymentRequired={{ error: 'insufficient_credits', unit: 'messages', balance: 0, required: 2 } as PaymentRequiredInfo}>
          <p>unit open</p>
        </Paywall>
        <Paywall paymentRequired={{ balance: 2, required: 4 }} title="Top up">
          <p>credits open</p>
        </Paywall>
      </>
    ), { client: clientOver(kit, ada, () => transport) });
    const unit = screen.getByRole('region', { name: /Not enough/ });
    await waitFor(() => expect(unit).toHaveAccessibleName('Not enough messages'));
    expect(unit).toHaveTextContent('This needs 2 messages; you have 0.');
    const credits = screen.getByRole('region', { name: 'Top up' });
    expect(credits).toHaveTextContent('This needs 4 credits; you have 2.');
    await waitFor(() => expect(within(credits).getAllByRole('button')).toHaveLength(2)); // the packs
    expect(screen.queryByText(/open/)).toBeNull();
    // the 402 is the answer: neither balance was asked for
    expect(transport.calls).not.toContain('creditkit_my_balance');
    expect(transport.calls).not.toContain('creditkit_my_check');
  });

  it('feature and credits together: both must hold', async () => {
    const ada = await kit.signUp();
    await kit.creditkit.setPlan({ accountId: ada, planId: 'pro' }); // 100 credits of allowance
    renderAs(kit, ada, (
      <>
        <Paywall feature="hd_upscale" credits={100}>
          <p>enough</p>
        </Paywall>
        <Paywall feature="hd_upscale" credits={101} title="Top up first">
          <p>too much</p>
        </Paywall>
      </>
    ));
    expect(await screen.findByText('enough')).toBeInTheDocument();
    const prompt = await screen.findByRole('region', { name: 'Top up first' });
    expect(prompt).toHaveTextContent('This needs 101 credits; you have 100.');
    expect(screen.queryByText('too much')).toBeNull();
  });

  it('fallback replaces the prompt', async () => {
    const ada = await kit.signUp();
    renderAs(kit, ada, (
      <Paywall credits={1} fallback={<p>Out of credits: see pricing</p>}>
        {UPSCALE}
      </Paywall>
    ));
    expect(await screen.findByText('Out of credits: see pricing')).toBeInTheDocument();
    expect(screen.queryByRole('region')).toBeNull();
    expect(gatedContent()).toBeNull();
  });

  it('while checking: a busy placeholder with the paywall attributes and classes, and no children', async () => {
    const ada = await kit.signUp();
    await kit.creditkit.grant({ accountId: ada, amount: 10 });
    const transport = gated(kit.creditkit.asUser(ada).transport);
    const { container } = renderAs(
      kit,
      ada,
      <Paywall credits={4} placeholder={<span>Checking…</span>} className="gate" classNames={{ placeholder: 'skeleton' }}>
        {UPSCALE}
      </Paywall>,
      { client: clientOver(kit, ada, () => transport) },
    );
    const placeholder = container.querySelector('[data-creditkit="paywall"]')!;
    expect(placeholder).toHaveAttribute('aria-busy', 'true');
    expect(placeholder).toHaveAttribute('data-state', 'loading');
    expect(placeholder).toHaveClass('gate', 'skeleton');
    expect(placeholder).toHaveTextContent('Checking…');
    expect(gatedContent()).toBeNull();
    transport.release();
    expect(await screen.findByRole('button', { name: 'Upscale in HD' })).toBeInTheDocument();
    expect(container.querySelector('[aria-busy="true"]')).toBeNull();
  });

  it('signed out: locked, asking to sign in, no purchase buttons', async () => {
    renderAs(kit, null, <Paywall credits={1}>{UPSCALE}</Paywall>);
    const prompt = screen.getByRole('region', { name: 'Not enough credits' });
    expect(prompt).toHaveTextContent('Sign in to continue.');
    expect(within(prompt).queryByRole('button')).toBeNull();
    expect(gatedContent()).toBeNull();
  });

  it('odd amounts: NaN credits are never enough, a negative amount always is, half a credit needs one; no NaN on screen', async () => {
    const ada = await kit.signUp();
    renderAs(kit, ada, (
      <>
        <Paywall credits={Number.NaN} title="nan gate">
          <p>nan open</p>
        </Paywall>
        <Paywall credits={-3}>
          <p>negative open</p>
        </Paywall>
        <Paywall credits={0.5} title="half gate">
          <p>half open</p>
        </Paywall>
      </>
    ));
    expect(await screen.findByText('negative open')).toBeInTheDocument();
    const prompt = await screen.findByRole('region', { name: 'nan gate' });
    expect(prompt).toHaveTextContent('You do not have enough credits.');
    expect(await screen.findByRole('region', { name: 'half gate' })).toHaveTextContent('This needs 1 credit; you have 0.');
    expect(document.body).not.toHaveTextContent(/NaN/);
  });
});
