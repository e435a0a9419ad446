// Auto top-up and notifications over HTTP, on the simulated Stripe: the demo receiver verifies
// each delivery (a forged or tampered one is 401 and not kept); POST /api/worker charges a due
// top-up through the simulated PaymentIntents and the credits land from the signed
// payment_intent.succeeded the webhook route applies; a card saved through the simulated
// setup-mode Checkout that declines makes the top-up fail, one that needs 3-D Secure makes it
// wait for the customer, whose confirmation lands the credits.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signWebhook } from '@creditkit/core';
import { DEMO_USERS, type DemoUser } from '../lib/demo-users.ts';
import { startApp, type RunningApp } from './support/app.ts';

const [ada, grace, linus] = ['ada', 'grace', 'linus'].map((k) => DEMO_USERS.find((u) => u.key === k)!) as [DemoUser, DemoUser, DemoUser];
/** The receiver's secret, given to the app so that the test can sign as creditkit does. */
const SECRET = `whsec_${Buffer.from('creditkit demo receiver test secret!!').toString('base64')}`;

describe('auto top-up and notifications in the demo (simulated Stripe)', () => {
  let app: RunningApp;
  const cookie = (user: DemoUser) => ({ cookie: `creditkit_demo_user=${user.key}` });
  const rpc = async (user: DemoUser, fn: string, args: Record<string, unknown>) => {
    const response = await fetch(`${app.url}/api/creditkit/rpc`, {
      method: 'POST',
      headers: { ...cookie(user), 'content-type': 'application/json' },
      body: JSON.stringify({ fn, args }),
    });
    const body = (await response.json()) as { data?: Array<Record<string, unknown>>; error?: { code?: string; message?: string } };
    if (!response.ok) throw new Error(`${fn}: ${response.status} ${JSON.stringify(body.error)}`);
    return body.data!;
  };
  const balance = async (user: DemoUser) => Number((await rpc(user, 'creditkit_my_balance', {}))[0]!.balance);
  const worker = async () => {
    const response = await fetch(`${app.url}/api/worker`, { method: 'POST' });
    expect(response.status).toBe(200);
    return (await response.json()) as { topups: Record<string, number>; deliveries: Record<string, number>; stripeEvents: Array<{ type: string; status: number; effect: string | null }> };
  };
  const received = async () => {
    const response = await fetch(`${app.url}/api/demo/notifications`, { headers: cookie(ada) });
    expect(response.status).toBe(200);
    return (await response.json()) as { received: Array<{ id: string; type: string; accountId: string; verified: boolean; data: Record<string, unknown> }>; refused: number };
  };
  const form = (user: DemoUser, fields: Record<string, string>) =>
    fetch(`${app.url}/api/checkout/simulated`, { method: 'POST', headers: cookie(user), body: new URLSearchParams(fields), redirect: 'manual' });
  const saveCard = async (user: DemoUser, card: string) => {
    const response = await form(user, { action: 'save-card', card });
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toMatch(/\/billing\?card=saved$/);
  };
  const topups = (user: DemoUser) => rpc(user, 'creditkit_my_topups', {});
  const auto = async (user: DemoUser) => (await rpc(user, 'creditkit_my_auto_topup', {}))[0]!;

  beforeAll(async () => {
    app = await startApp({ CREDITKIT_DEMO_RECEIVER_SECRET: SECRET });
  });

  afterAll(async () => {
    await app?.stop();
  });

  it('the receiver keeps a delivery signed with the endpoint secret, and refuses a tampered or unsigned one with 401', async () => {
    const body = JSON.stringify({
      id: 'ntf_0123456789abcdef0123456789abcdef',
      type: 'balance.low',
      timestamp: new Date().toISOString(),
      data: { account_id: ada.id, unit: 'credits', balance: 5, held: 0, spendable: 5, threshold: 6 },
    });
    const headers = await signWebhook({ id: 'ntf_0123456789abcdef0123456789abcdef', timestamp: new Date(), body, secret: SECRET });
    const post = (b: string, h: Record<string, string>) =>
      fetch(`${app.url}/api/demo/notifications`, { method: 'POST', headers: { 'content-type': 'application/json', ...h }, body: b });

    const tampered = await post(body.replace('"spendable":5', '"spendable":500'), headers);
    expect(tampered.status).toBe(401);
    expect(await tampered.json()).toMatchObject({ error: 'invalid_signature' });
    expect((await post(body, {})).status).toBe(401);
    const wrongKey = await signWebhook({ id: 'ntf_0123456789abcdef0123456789abcdef', timestamp: new Date(), body, secret: `whsec_${Buffer.from('another secret, 24 bytes+').toString('base64')}` });
    expect((await post(body, wrongKey)).status).toBe(401);
    const stale = await signWebhook({ id: 'ntf_0123456789abcdef0123456789abcdef', timestamp: new Date(Date.now() - 3_600_000), body, secret: SECRET });
    expect((await post(body, stale)).status).toBe(401);

    const ok = await post(body, headers);
    expect(ok.status).toBe(200);
    const list = await received();
    expect(list.received.filter((r) => r.id === 'ntf_0123456789abcdef0123456789abcdef')).toEqual([
      expect.objectContaining({ type: 'balance.low', accountId: ada.id, verified: true }),
    ]);
    expect(list.refused).toBeGreaterThanOrEqual(4);
    expect((await fetch(`${app.url}/api/demo/notifications`)).status).toBe(401); // the list is for signed-in users
  });

  it('Grace (seeded card) turns auto top-up on below her threshold: the worker charges, the webhook grants, the receiver gets topup.succeeded', async () => {
    expect(await auto(grace)).toMatchObject({ status: 'off', payment_method: expect.objectContaining({ brand: 'visa', last4: '4242' }) });
    const before = await balance(grace);
    const [set] = await rpc(grace, 'creditkit_my_set_auto_topup', { p_unit: 'credits', p_enabled: true, p_threshold: before + 10, p_amount: 150 });
    expect(set).toMatchObject({ enabled: true, status: 'active', threshold: before + 10, amount: 150 });
    await worker(); // waits for the run the setting started, then runs once more
    expect(await topups(grace)).toEqual([expect.objectContaining({ status: 'succeeded', amount: 150, charge_amount: 150, currency: 'usd', payment_intent: expect.stringMatching(/^pi_/) })]);
    expect(await balance(grace)).toBe(before + 150);
    expect(await auto(grace)).toMatchObject({ status: 'active', month_count: 1, month_amount: 150, last_topup: expect.objectContaining({ status: 'succeeded' }) });
    const events = (await received()).received.filter((r) => r.accountId === grace.id);
    expect(events.map((e) => e.type)).toContain('topup.succeeded');
    expect(events.find((e) => e.type === 'topup.succeeded')!.data).toMatchObject({ amount: 150, charge_amount: 150, balance: before + 150 });
    // nothing left to do: a run claims nothing
    expect((await worker()).topups.claimed).toBe(0);
  });

  it('a card saved with the declining test card: the top-up fails with card_declined and topup.failed is delivered', async () => {
    await saveCard(linus, 'decline');
    expect(await auto(linus)).toMatchObject({ payment_method: expect.objectContaining({ last4: '0002' }) });
    const before = await balance(linus);
    await rpc(linus, 'creditkit_my_set_auto_topup', { p_unit: 'credits', p_enabled: true, p_threshold: before + 1, p_amount: 100 });
    await worker();
    // the failed one, and the next, still below the threshold, waiting out the cooldown (30 s)
    expect(await topups(linus)).toEqual([
      expect.objectContaining({ status: 'pending', attempt: 0 }),
      expect.objectContaining({ status: 'failed', failure_code: 'generic_decline', failure_message: 'Your card was declined.' }),
    ]);
    expect(await balance(linus)).toBe(before);
    expect(await auto(linus)).toMatchObject({ status: 'active', failures: 1 });
    expect((await received()).received.filter((r) => r.accountId === linus.id).map((r) => r.type)).toContain('topup.failed');
  });

  it('a card that needs 3-D Secure: the top-up waits for the customer with a link; confirming lands the credits and resumes', async () => {
    await saveCard(ada, 'authenticate');
    const before = await balance(ada);
    await rpc(ada, 'creditkit_my_set_auto_topup', { p_unit: 'credits', p_enabled: true, p_threshold: before + 40, p_amount: 100 });
    await worker();
    const [waiting] = await topups(ada);
    expect(waiting).toMatchObject({ status: 'action_required', action_url: `${app.url}/billing?topup=${waiting!.id}` });
    expect(await auto(ada)).toMatchObject({ status: 'action_required', status_reason: 'authentication_required' });
    const page = await fetch(`${app.url}/checkout/simulated?topup=${waiting!.id}`, { headers: cookie(ada) });
    expect(await page.text()).toContain('Confirm your payment');

    const confirmed = await form(ada, { action: 'confirm-topup', topup: String(waiting!.id) });
    expect(confirmed.headers.get('location')).toMatch(/\/billing\?topup=confirmed$/);
    expect(await balance(ada)).toBe(before + 100);
    expect(await auto(ada)).toMatchObject({ status: 'active' });
    expect((await topups(ada))[0]).toMatchObject({ id: waiting!.id, status: 'succeeded' });
    await worker();
    expect((await received()).received.filter((r) => r.accountId === ada.id).map((r) => r.type)).toEqual(
      expect.arrayContaining(['topup.action_required', 'topup.succeeded']),
    );
    // confirming twice does nothing
    expect((await form(ada, { action: 'confirm-topup', topup: String(waiting!.id) })).headers.get('location')).toMatch(/topup=nothing-to-confirm$/);
  });
});
