// The demo app in a real browser: Debian's Chromium (/usr/bin/chromium) driven by playwright-core
// against `next start` of the production build. On embedded PGlite: sign in, spend until the
// route answers 402 and the paywall shows, chat until the day's 20 messages are gone and the
// chat is refused with a 402 naming messages, buy a pack through the simulated checkout (signed
// events through the real webhook) and see the balance rise and the next message paid in credits,
// subscribe to Pro and see the allowances and HD unlocked, then find the new usage on the
// operator dashboard, per customer and per unit. On DATABASE_URL
// (a database this test creates and drops): the app installs the migrations itself, the same
// flow's core works, and a restart on the same database seeds nothing twice.
// Screenshots of every page go to artifacts/screenshots/.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresAvailable, postgresRequired, testDatabaseName } from '@creditkit/testing';
import { DEMO_USERS } from '../lib/demo-users.ts';
import { SCREENSHOT_DIR, startApp, type RunningApp } from './support/app.ts';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];
const haveChromium = existsSync(CHROMIUM);
const ada = DEMO_USERS.find((u) => u.key === 'ada')!;

if (!haveChromium) {
  const message = `${CHROMIUM} is missing (apt-get install chromium): the browser suite cannot run`;
  if (postgresRequired()) {
    // CI (CREDITKIT_REQUIRE_PG=1) must not pass without the browser suite.
    describe('browser suite', () => {
      it('needs Chromium', () => {
        throw new Error(message);
      });
    });
  } else {
    console.warn(`NOTE: ${message}; skipped`);
  }
}

async function launch(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });
}

/** The balance the page shows: CreditsDisplay's value part (the same hook in @creditkit/react). */
const balanceValue = (page: Page) => page.locator('[data-creditkit="credits-display-value"]').first();

async function shownBalance(page: Page): Promise<number> {
  const text = (await balanceValue(page).textContent()) ?? '';
  return /\d/.test(text) ? Number(text.replace(/\D/g, '')) : Number.NaN;
}

async function expectBalance(page: Page, value: number): Promise<void> {
  await expect.poll(() => shownBalance(page), { timeout: 15_000 }).toBe(value);
}

/** The balance as the database has it, asked through the app's RPC route as the signed-in user. */
async function databaseBalance(page: Page): Promise<number> {
  const response = await page.request.post('/api/creditkit/rpc', { data: { fn: 'creditkit_my_balance', args: {} } });
  expect(response.status()).toBe(200);
  const { data } = (await response.json()) as { data: Array<{ balance: number }> };
  return data[0]!.balance;
}

async function signIn(page: Page, firstName: string): Promise<void> {
  await page.goto('/');
  await page.waitForURL('**/sign-in');
  await page.getByRole('button', { name: `Sign in as ${firstName}` }).click();
  await page.waitForURL((url) => url.pathname === '/');
  await balanceValue(page).waitFor();
}

/** Clicks Generate and waits for /api/generate's answer; returns its status. */
async function generate(page: Page): Promise<number> {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/api/generate') && r.request().method() === 'POST'),
    page.getByRole('button', { name: 'Generate', exact: true }).click(),
  ]);
  await page.getByRole('button', { name: 'Generate', exact: true }).waitFor(); // idle again
  return response.status();
}

/** A metered unit's balance as a CreditsDisplay labelled `label` shows it. */
async function shownUnit(page: Page, label: string): Promise<number> {
  const text = (await page.getByRole('group', { name: label, exact: true }).locator('[data-creditkit="credits-display-value"]').textContent()) ?? '';
  return /\d/.test(text) ? Number(text.replace(/\D/g, '')) : Number.NaN;
}

async function expectUnit(page: Page, label: string, value: number): Promise<void> {
  await expect.poll(() => shownUnit(page, label), { timeout: 15_000 }).toBe(value);
}

/** Sends a chat message and waits for /api/chat's answer: its status and body. */
async function chat(page: Page, message: string): Promise<{ status: number; body: Record<string, unknown> }> {
  await page.getByLabel('Message', { exact: true }).fill(message);
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/api/chat') && r.request().method() === 'POST'),
    page.getByRole('button', { name: 'Send', exact: true }).click(),
  ]);
  await page.getByRole('button', { name: 'Send', exact: true }).waitFor(); // idle again
  return { status: response.status(), body: (await response.json()) as Record<string, unknown> };
}

/** The dashboard's per-unit table: each unit's cells (calls, spent, overage credits, granted, revenue, cost, margin). */
async function unitTable(page: Page): Promise<Record<string, string[]>> {
  await page.goto('/dashboard');
  const table: Record<string, string[]> = {};
  for (const row of await page.getByTestId('units').locator('tbody tr').all()) {
    table[(await row.getByRole('rowheader').textContent()) ?? ''] = (await row.getByRole('cell').allTextContents()).map((t) => t.trim());
  }
  return table;
}

const count = (cell: string | undefined) => Number((cell ?? '').replace(/[^\d.-]/g, ''));

async function payOnSimulatedCheckout(page: Page, button: RegExp, screenshot: string): Promise<void> {
  await page.waitForURL('**/checkout/simulated?**');
  await page.getByText('Simulated Stripe Checkout').waitFor();
  await shot(page, screenshot);
  await page.getByRole('button', { name: button }).click();
  await page.waitForURL('**/billing?checkout=success');
  await page.getByRole('status').filter({ hasText: 'Payment received' }).waitFor();
}

describe.skipIf(!haveChromium)('the demo app in Chromium, on embedded PGlite', () => {
  let app: RunningApp;
  let browser: Browser;
  let page: Page;
  let unitsBefore: Record<string, string[]>;

  beforeAll(async () => {
    [app, browser] = await Promise.all([startApp(), launch()]);
    const context = await browser.newContext({ baseURL: app.url, viewport: { width: 1200, height: 900 } });
    page = await context.newPage();
  });

  afterAll(async () => {
    await browser?.close();
    await app?.stop();
    console.log(`web: screenshots in ${SCREENSHOT_DIR}`);
  });

  it('sends a visitor to sign-in, and shows a signed-in user the balance the database holds', async () => {
    await page.goto('/');
    await page.waitForURL('**/sign-in');
    for (const user of DEMO_USERS) await page.getByRole('button', { name: `Sign in as ${user.name.split(' ')[0]}` }).waitFor();
    await shot(page, '01-sign-in');
    await page.getByRole('button', { name: 'Sign in as Ada' }).click();
    await page.waitForURL((url) => url.pathname === '/');
    await expectBalance(page, 10); // the seeded welcome credits
    expect(await databaseBalance(page)).toBe(10);
    await page.getByText('2 credits for standard quality').waitFor(); // creditkit_quote, as ada
    // the messages unit, untouched yet: it reads as Free's allowance
    await expectUnit(page, 'Messages left', 20);
    await page.getByText('Each message uses one of your 20 messages a day; when they are gone it costs 1 credit instead.').waitFor();
    await shot(page, '02-generate');
  });

  it('shows usage and margin per unit on the operator dashboard (before Ada does anything)', async () => {
    unitsBefore = await unitTable(page);
    expect(Object.keys(unitsBefore)).toEqual(['Credits', 'Messages']); // credits first
    expect(await page.getByTestId('units').getByRole('columnheader').allTextContents()).toEqual([
      'Unit', 'Calls', 'Spent', 'Overage credits', 'Granted', 'Revenue', 'Cost', 'Margin',
    ]);
    // the seeded history: Linus went past his 20 messages twice, 3 messages each time paid in credits
    expect(count(unitsBefore.Messages![2])).toBe(6);
    await page.goto('/');
    await balanceValue(page).waitFor();
  });

  it('spends 2 credits per image until the route answers 402, then shows the paywall', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      statuses.push(await generate(page));
      await expectBalance(page, 10 - 2 * (i + 1));
      // at 6 credits or fewer (but not 0) the banner is a status that says the balance is low
      if (i === 2) await page.getByRole('status').filter({ hasText: 'Running low: buy a pack or subscribe to Pro.' }).waitFor();
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200]);
    await expect.poll(() => page.getByRole('img', { name: /^Generated:/ }).count()).toBe(5);

    // HD on the free plan: 403 before any metering, and @creditkit/react's Paywall offers the plan with the feature
    await page.getByLabel(/HD/).check();
    expect(await generate(page)).toBe(403);
    const proWall = page.getByRole('region', { name: 'HD is a Pro feature' });
    await proWall.waitFor();
    expect(await proWall.getByRole('heading', { level: 2 }).textContent()).toBe('HD is a Pro feature');
    expect(await proWall.textContent()).toContain('Your plan does not include HD quality.');
    expect(await proWall.getByRole('button').allTextContents()).toEqual(['Subscribe to Pro ($19.00 a month)']);
    await shot(page, '03a-paywall-hd');

    await page.getByLabel(/Standard/).check();
    expect(await generate(page)).toBe(402);
    await expect.poll(() => proWall.count()).toBe(0);
    // the Paywall's prompt, named by its title; its numbers come from the balance it reads
    const paywall = page.getByRole('region', { name: 'Out of credits' });
    await paywall.waitFor();
    expect(await paywall.textContent()).toContain('This needs 2 credits; you have 0.');
    expect(await paywall.getByRole('button').allTextContents()).toEqual([
      'Buy Starter pack: 50 credits for $5.00',
      'Buy Plus pack: 250 credits for $20.00',
    ]);
    await page.getByText('Your last image was refused with HTTP 402 before the model was called.').waitFor();
    await page.getByRole('button', { name: 'Subscribe to Pro · $19.00/month' }).waitFor();
    // at zero the banner is an alert that says so
    await page.getByRole('alert').filter({ hasText: 'You are out of credits: buy a pack or subscribe to Pro.' }).waitFor();
    expect(await databaseBalance(page)).toBe(0);
    await expectBalance(page, 0);
    await shot(page, '03-paywall');
  });

  it('chats until the day’s 20 messages are gone; with no credits either the route answers 402 naming messages', async () => {
    const answers = [];
    for (let i = 0; i < 20; i++) answers.push(await chat(page, `message ${i + 1}`));
    expect(answers.map((a) => [a.status, a.body.unit, a.body.balance])).toEqual(Array.from({ length: 20 }, (_, i) => [200, 'messages', 19 - i]));
    await expectUnit(page, 'Messages left', 0);
    const conversation = page.getByRole('list', { name: 'Conversation' });
    await expect.poll(() => conversation.getByRole('listitem').count()).toBe(3); // the last three exchanges
    expect(await conversation.getByRole('listitem').last().textContent()).toContain('You: message 20');
    expect(await conversation.getByRole('listitem').last().textContent()).toContain('−1 message');

    // no messages and no credits for the overage: 402, and the prompt says what ran out
    const refused = await chat(page, 'one more');
    expect(refused).toMatchObject({ status: 402, body: { error: 'insufficient_credits', unit: 'messages', required: 1, balance: 0 } });
    const prompt = page.getByRole('region', { name: 'Out of messages' });
    await prompt.waitFor();
    expect(await prompt.textContent()).toContain('This needs 1 message; you have 0. After your messages each one costs 1 credit, and you have 0 credits.');
    expect(await prompt.getByRole('button').allTextContents()).toEqual([
      'Buy Starter pack · 50 credits · $5.00',
      'Buy Plus pack · 250 credits · $20.00',
      'Subscribe to Pro · 500 messages a day · $19.00/month',
    ]);
    expect(await conversation.getByRole('listitem').count()).toBe(3); // nothing answered
    expect(await databaseBalance(page)).toBe(0);
    await shot(page, '03b-chat-402');
  });

  it('buys a pack through the simulated checkout, and the balance rises by its credits', async () => {
    await page.getByRole('region', { name: 'Out of credits' }).getByRole('button', { name: /^Buy Starter pack: 50 credits/ }).click();
    await payOnSimulatedCheckout(page, /Pay \$5\.00/, '04-checkout-pack');
    await expectBalance(page, 50);
    expect(await databaseBalance(page)).toBe(50);
    // UsageHistory: the newest row is the pack, 50 credits in, balance 50 (amounts are unsigned, the Activity says which way)
    const history = page.getByRole('table', { name: 'Every ledger entry, newest first' });
    const newest = history.getByRole('row').nth(1);
    await expect.poll(async () => (await newest.getByRole('cell').allTextContents()).slice(1)).toEqual(['Credits added', '50', '50']);
    expect(await history.getByRole('columnheader').allTextContents()).toEqual(['Date', 'Activity', 'Credits', 'Balance']);
    await page.getByRole('region', { name: 'Buckets' }).getByRole('cell', { name: 'purchase' }).waitFor();
    // every metered unit has its balance on the billing page, with Free's allowance of messages
    const balances = page.getByRole('region', { name: 'Balances' });
    await expectUnit(page, 'Messages', 0);
    expect(await balances.locator('[data-creditkit="credits-display-label"]').allTextContents()).toEqual(['Spendable credits', 'Messages']);
    await balances.getByText('20 messages a day on Free, reset each day').waitFor();
    await shot(page, '05-billing-after-pack');
  });

  it('with credits again, the next message is paid in credits at the overage price, and says so', async () => {
    await page.goto('/');
    await expectUnit(page, 'Messages left', 0);
    const paid = await chat(page, 'and now?');
    expect(paid).toMatchObject({ status: 200, body: { unit: 'credits', charged: 1, balance: 49 } });
    const last = page.getByRole('list', { name: 'Conversation' }).getByRole('listitem').last();
    expect(await last.textContent()).toContain('−1 credit (overage: no messages left)');
    await expectBalance(page, 49);
    expect(await databaseBalance(page)).toBe(49);
    await expectUnit(page, 'Messages left', 0);
    await shot(page, '05b-chat-overage');
  });

  it('subscribes to Pro: the allowances arrive with the paid invoice and HD is unlocked', async () => {
    await page.goto('/billing');
    await page.getByRole('region', { name: 'Plan' }).getByRole('button', { name: /Subscribe to Pro/ }).click();
    await payOnSimulatedCheckout(page, /Subscribe · \$19\.00/, '06-checkout-pro');
    await expect.poll(async () => page.getByTestId('plan-name').textContent(), { timeout: 15_000 }).toBe('Pro');
    const plan = page.getByRole('region', { name: 'Plan' });
    await plan.getByText('300 credits a month').waitFor();
    await plan.getByText('hd_upscale').waitFor();
    await plan.getByRole('button', { name: 'Manage subscription' }).waitFor();
    await plan.getByText('500 messages a day, reset each day').waitFor();
    await expectBalance(page, 349);
    expect(await databaseBalance(page)).toBe(349);
    // Pro's 500 messages replace what was left of Free's
    await expectUnit(page, 'Messages', 500);
    await page.getByRole('region', { name: 'Buckets' }).getByRole('cell', { name: 'plan' }).waitFor();
    await shot(page, '07-billing-pro');

    await page.goto('/');
    await page.getByLabel(/HD/).check();
    await page.getByText('6 credits for HD quality').waitFor();
    expect(await generate(page)).toBe(200);
    await expectBalance(page, 343);
    await expectUnit(page, 'Messages left', 500);
    await shot(page, '08-generate-hd');
  });

  it('shows the new usage on the operator dashboard', async () => {
    await page.goto('/dashboard');
    await page.getByRole('heading', { name: /Operator dashboard/ }).waitFor();
    const row = page.getByTestId('customers').getByRole('row', { name: /Ada Lovelace/ });
    const cells = (await row.getByRole('cell').allTextContents()).map((t) => t.trim());
    // plan, balance, used (5 standard + 1 HD + 1 message's overage), topped up (welcome + pack + allowance), revenue ($5 + $19)
    expect(cells.slice(0, 5)).toEqual(['Pro', '343', '17', '360', '$24.00']);
    const imageRow = page.getByTestId('top-events').getByRole('row', { name: /image_gen/ });
    await imageRow.waitFor();
    expect(await page.getByRole('img', { name: /Credits used per day/ }).count()).toBe(1);
    expect(await page.getByRole('img', { name: /Margin per customer/ }).count()).toBe(1);
    await page.getByRole('row', { name: /Linus Torvalds/ }).getByText('unprofitable').waitFor();
    await shot(page, '09-dashboard');
  });

  it('counts what Ada did per unit on the dashboard: images in credits, messages and their overage under messages', async () => {
    const after = await unitTable(page);
    const delta = (unit: string, column: number) => count(after[unit]![column]) - count(unitsBefore[unit]![column]);
    // credits: 6 images for 16 credits, 350 granted (pack + Pro's allowance), $24.00 of payments
    expect([delta('Credits', 0), delta('Credits', 1), delta('Credits', 2), delta('Credits', 3)]).toEqual([6, 16, 0, 350]);
    expect(delta('Credits', 4)).toBeCloseTo(24, 2);
    // messages: 21 calls, 20 paid in messages and 1 in credits at the overage price; Free's 20 and Pro's 500 granted
    expect([delta('Messages', 0), delta('Messages', 1), delta('Messages', 2), delta('Messages', 3)]).toEqual([21, 20, 1, 520]);
    expect(delta('Messages', 4)).toBe(0);
  });

  it('lets the browser call only the caller-bound functions, and only for its own account', async () => {
    const call = async (fn: string, args: Record<string, unknown>) => {
      const response = await page.request.post('/api/creditkit/rpc', { data: { fn, args } });
      return { status: response.status(), body: (await response.json()) as { error?: { code?: string } } };
    };
    expect(await call('creditkit_grant', { p_account_id: ada.id, p_amount: 1000 })).toMatchObject({ status: 403, body: { error: { code: '42501' } } });
    const grace = DEMO_USERS.find((u) => u.key === 'grace')!;
    expect(await call('creditkit_my_balance', { p_account_id: grace.id })).toMatchObject({ status: 400, body: { error: { code: 'CK005' } } });
    const anonymous = await fetch(`${app.url}/api/creditkit/rpc`, { method: 'POST', body: JSON.stringify({ fn: 'creditkit_my_balance', args: {} }) });
    expect(anonymous.status).toBe(401);
  });
  it('Grace, with the card she saved, turns auto top-up on; spending below the threshold tops her up, and the receiver verifies the notifications', async () => {
    const context = await browser.newContext({ baseURL: app.url, viewport: { width: 1200, height: 900 } });
    const grace = await context.newPage();
    try {
      await signIn(grace, 'Grace');
      const before = await databaseBalance(grace);
      await grace.goto('/billing');
      const section = grace.getByRole('region', { name: 'Auto top-up' });
      await section.getByTestId('card-on-file').getByText(/Visa •••• 4242/).waitFor();
      await section.getByTestId('auto-topup-status').getByText('Off').waitFor();
      // her own low-balance warning and auto top-up, both just under her balance
      const warning = grace.getByRole('form', { name: 'Low-balance warning' });
      await warning.getByLabel('Warning threshold').fill(String(before - 1));
      await warning.getByRole('button', { name: 'Save' }).click();
      await warning.getByRole('status').filter({ hasText: `You are warned at ${before - 1} credits or fewer.` }).waitFor();
      const settings = grace.getByRole('form', { name: 'Auto top-up settings' });
      await settings.getByLabel('Top up automatically').check();
      await settings.getByRole('spinbutton', { name: /When my balance falls to/ }).fill(String(before - 1));
      await settings.getByLabel('Credits per top-up').fill('100');
      await settings.getByRole('button', { name: 'Save auto top-up' }).click();
      await settings.getByRole('status').filter({ hasText: 'Auto top-up is on.' }).waitFor();
      await section.getByTestId('auto-topup-status').getByText('Active').waitFor();
      await shot(grace, '10-billing-auto-topup-on');

      // one image (2 credits) takes her below the threshold: the top-up lands by itself
      await grace.goto('/');
      await balanceValue(grace).waitFor();
      expect(await generate(grace)).toBe(200);
      await expectBalance(grace, before - 2 + 100);
      expect(await databaseBalance(grace)).toBe(before - 2 + 100);
      await grace.getByTestId('studio-auto-topup').getByText(/Last: 100 credits, succeeded/).waitFor();
      await shot(grace, '11-studio-topped-up');

      await grace.goto('/billing');
      const mine = grace.getByTestId('my-topups');
      await expect.poll(async () => (await mine.locator('tbody tr').first().getByRole('cell').allTextContents()).slice(1, 4)).toEqual(['100', '$1.00', 'succeeded']);
      await section.getByTestId('auto-topup-month').getByText('1 top-up of 10 · $1.00 of $100.00').waitFor();
      await section.getByTestId('last-topup').getByText('succeeded').waitFor();
      await shot(grace, '12-billing-topup-succeeded');

      // the operator: the top-up, the deliveries, and what the receiver verified
      await expect
        .poll(
          async () => {
            await grace.goto('/dashboard');
            return grace.getByTestId('received').getByRole('row', { name: /Grace Hopper/ }).allTextContents();
          },
          { timeout: 20_000 },
        )
        .toEqual(expect.arrayContaining([expect.stringMatching(/balance\.low.*verified/), expect.stringMatching(/topup\.succeeded.*verified/)]));
      const topupRow = grace.getByTestId('topups').getByRole('row', { name: /Grace Hopper/ }).first();
      expect((await topupRow.getByRole('cell').allTextContents()).slice(0, 3)).toEqual(['100', '$1.00', 'succeeded']);
      const delivered = grace.getByTestId('deliveries').getByRole('row', { name: /topup\.succeeded/ }).first();
      expect((await delivered.getByRole('cell').allTextContents()).slice(0, 5)).toEqual(['Grace Hopper', 'demo-receiver', 'delivered', '1', '200']);
      await grace.getByRole('heading', { name: 'Notifications received by the demo receiver' }).scrollIntoViewIfNeeded();
      await shot(grace, '13-dashboard-topups-notifications');
    } finally {
      await context.close();
    }
  });

  it('Linus saves the declining test card: his top-up fails, and billing says so', async () => {
    const context = await browser.newContext({ baseURL: app.url, viewport: { width: 1200, height: 900 } });
    const linus = await context.newPage();
    try {
      await signIn(linus, 'Linus');
      const before = await databaseBalance(linus);
      await linus.goto('/billing');
      const section = linus.getByRole('region', { name: 'Auto top-up' });
      await section.getByRole('button', { name: 'Save a card' }).click();
      await linus.waitForURL('**/checkout/simulated?setup=card');
      await linus.getByLabel(/4000 0000 0000 0002/).check();
      await shot(linus, '14-checkout-save-card');
      await linus.getByRole('button', { name: 'Save card' }).click();
      await linus.waitForURL('**/billing?card=saved');
      await section.getByTestId('card-on-file').getByText(/Visa •••• 0002/).waitFor();
      // switched on while already below the threshold: the top-up is charged at once, and declined
      const settings = linus.getByRole('form', { name: 'Auto top-up settings' });
      await settings.getByLabel('Top up automatically').check();
      await settings.getByRole('spinbutton', { name: /When my balance falls to/ }).fill(String(before + 10));
      await settings.getByLabel('Credits per top-up').fill('100');
      await settings.getByRole('button', { name: 'Save auto top-up' }).click();
      await settings.getByRole('status').filter({ hasText: 'Auto top-up is on.' }).waitFor();
      await section.getByTestId('auto-topup-failures').getByText('1 failed payment in a row').waitFor({ timeout: 15_000 });
      const failedRow = linus.getByTestId('my-topups').getByRole('row').filter({ hasText: 'failed' }).first();
      expect((await failedRow.getByRole('cell').allTextContents()).slice(1)).toEqual(['100', '$1.00', 'failed', 'card declined']);
      expect(await databaseBalance(linus)).toBe(before);
      await shot(linus, '15-billing-topup-declined');
    } finally {
      await context.close();
    }
  });
});

describe.skipIf(!haveChromium || !postgresAvailable())('[postgres] the demo app on DATABASE_URL', () => {
  const serverUrl = process.env.DATABASE_URL ?? '';
  const name = testDatabaseName('web'); // (scripts/test.mjs drops it if this suite cannot)
  let url = '';
  let browser: Browser;
  const admin = async <T>(connection: string, sql: string, params: unknown[] = []): Promise<T[]> => {
    const client = new pg.Client({ connectionString: connection });
    await client.connect();
    try {
      return (await client.query(sql, params)).rows as T[];
    } finally {
      await client.end();
    }
  };

  beforeAll(async () => {
    const u = new URL(serverUrl);
    u.pathname = `/${name}`;
    url = u.toString();
    await admin(serverUrl, `create database ${name} template template0`); // empty: the app installs the migrations
    browser = await launch();
  });

  afterAll(async () => {
    await browser?.close();
    await admin(serverUrl, `drop database if exists ${name} with (force)`);
  });

  it('[postgres] installs the migrations into an empty database, meters, sells a pack, and seeds once across restarts', async () => {
    let app = await startApp({ DATABASE_URL: url });
    try {
      expect(app.output()).toMatch(/installed \d+ migrations into DATABASE_URL/);
      const context = await browser.newContext({ baseURL: app.url, viewport: { width: 1200, height: 900 } });
      const page = await context.newPage();
      await signIn(page, 'Ada');
      await expectBalance(page, 10);
      expect(await generate(page)).toBe(200);
      await expectBalance(page, 8);
      await page.goto('/billing');
      await page.getByRole('region', { name: 'Credit packs' }).getByRole('button', { name: /Buy 50 credits/ }).click();
      await payOnSimulatedCheckout(page, /Pay \$5\.00/, 'postgres-checkout-pack');
      await expectBalance(page, 58);
      await shot(page, 'postgres-billing');
      await context.close();
    } finally {
      await app.stop();
    }
    const balance = async () => (await admin<{ balance: string }>(url, 'select balance from creditkit.accounts where id = $1', [ada.id]))[0]?.balance;
    expect(Number(await balance())).toBe(58);
    const counts = async () =>
      (await admin<{ users: string; prices: string; events: string }>(url,
        `select (select count(*) from auth.users) as users, (select count(*) from creditkit.prices) as prices,
                (select count(*) from creditkit.stripe_events) as events`))[0];
    const before = await counts();

    app = await startApp({ DATABASE_URL: url });
    try {
      expect(app.output()).not.toMatch(/installed \d+ migrations/);
      expect(app.output()).toContain('already seeded');
    } finally {
      await app.stop();
    }
    expect(await counts()).toEqual(before);
    expect(Number(await balance())).toBe(58);
  });
});
