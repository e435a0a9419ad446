// The chat route over HTTP, as the demo users: each message meters `chat`, priced 1 message (the
// plan's daily allowance: 20 on Free, 500 on Pro) with an overage of 1 credit. Ada spends her 20
// messages, then her 10 welcome credits at the overage price, and is then refused with a 402 that
// names messages; a retried request is charged once; the browser may read the messages balance
// and check it through the RPC route.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_USERS } from '../lib/demo-users.ts';
import { startApp, type RunningApp } from './support/app.ts';

const ada = DEMO_USERS.find((u) => u.key === 'ada')!;
const grace = DEMO_USERS.find((u) => u.key === 'grace')!;

describe('POST /api/chat: messages first, then credits as overage, then 402 naming messages', () => {
  let app: RunningApp;
  const post = (path: string, body: unknown, headers: Record<string, string> = {}, user = ada) =>
    fetch(`${app.url}${path}`, {
      method: 'POST',
      headers: { cookie: `creditkit_demo_user=${user.key}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
  const rpc = async (fn: string, args: Record<string, unknown>, user = ada) => {
    const response = await post('/api/creditkit/rpc', { fn, args }, {}, user);
    expect(response.status).toBe(200);
    return ((await response.json()) as { data: Array<Record<string, unknown>> }).data;
  };
  const balance = async (unit: string) => (await rpc('creditkit_my_balance', { p_unit: unit }))[0]!.balance;
  const chat = async (key?: string, user = ada) => {
    const response = await post('/api/chat', { message: 'hello' }, key ? { 'idempotency-key': key } : {}, user);
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  beforeAll(async () => {
    app = await startApp();
  });

  afterAll(async () => {
    await app?.stop();
  });

  it('refuses a visitor who is not signed in', async () => {
    const response = await fetch(`${app.url}/api/chat`, { method: 'POST', body: JSON.stringify({ message: 'hi' }) });
    expect(response.status).toBe(401);
  });

  it('the browser sees the catalogue: the messages unit, the chat price with its overage, Free’s 20 a day', async () => {
    expect(await rpc('creditkit_units', {})).toContainEqual({ id: 'messages', name: 'Messages', kind: 'metered' });
    expect((await rpc('creditkit_quote', { p_event: 'chat' }))[0]).toMatchObject({ amount: 1, unit: 'messages', overage_amount: 1 });
    // an untouched unit reads as the plan's allowance
    expect(await balance('messages')).toBe(20);
    expect((await rpc('creditkit_my_check', { p_unit: 'messages', p_amount: 20 }))[0]).toEqual({ allowed: true, balance: 20 });
    expect((await rpc('creditkit_my_check', { p_unit: 'messages', p_amount: 21 }))[0]).toEqual({ allowed: false, balance: 20 });
  });

  it('spends the 20 messages, one per message; a retry with the same Idempotency-Key is charged once', async () => {
    const answers = [];
    for (let i = 0; i < 20; i++) answers.push(await chat(`ada-chat-${i}`));
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    expect(answers.map((a) => [a.body.unit, a.body.charged, a.body.balance])).toEqual(Array.from({ length: 20 }, (_, i) => ['messages', 1, 19 - i]));
    expect(typeof answers[0]!.body.reply).toBe('string');

    const retry = await chat('ada-chat-19');
    expect(retry).toMatchObject({ status: 200, body: { unit: 'messages', charged: 1, balance: 0 } });
    expect(await balance('messages')).toBe(0);
    expect(await balance('credits')).toBe(10); // the welcome credits, untouched so far
  });

  it('then pays each message in credits at the overage price, until those are gone too', async () => {
    const answers = [];
    for (let i = 0; i < 10; i++) answers.push(await chat());
    expect(answers.map((a) => [a.status, a.body.unit, a.body.charged, a.body.balance])).toEqual(
      Array.from({ length: 10 }, (_, i) => [200, 'credits', 1, 9 - i]),
    );
    expect(await balance('messages')).toBe(0);
    expect(await balance('credits')).toBe(0);
  });

  it('answers 402 naming messages when neither balance can pay, and spends nothing', async () => {
    const refused = await chat();
    expect(refused).toMatchObject({ status: 402, body: { error: 'insufficient_credits', unit: 'messages', required: 1, balance: 0 } });
    expect((await rpc('creditkit_my_check', { p_unit: 'messages', p_amount: 1 }))[0]).toEqual({ allowed: false, balance: 0 });
    expect(await balance('credits')).toBe(0);
  });

  it('Pro’s 500 a day are Grace’s own: her message comes out of them', async () => {
    expect(await chat(undefined, grace)).toMatchObject({ status: 200, body: { unit: 'messages', charged: 1, balance: 499 } });
    expect(await balance('messages')).toBe(0); // Ada's are still gone
  });
});
