// What the demo starts with: the catalogue (units, plans with their limits, packs, per-event
// prices with their Stripe price ids) and three users with a few weeks of history, so the
// dashboard has something to show.
// Safe to run on every boot: the catalogue is upserted, and the history is written only when the
// database has none yet (ada's account is opened last, and its existence means "seeded"). Then,
// on every boot, auto top-up: its terms for credits, the default low-balance threshold, and the
// notification endpoint of the demo's own receiver (after the history, so the seeded past sends
// no notifications).
import { UnknownAccountError, UnknownEventError } from '@creditkit/core';
import type { Pack, Plan } from '@creditkit/core';
import type { CreditkitServer } from '@creditkit/core/server';
import { DEMO_USERS, type DemoUser } from '../demo-users.ts';
import type { Demo } from './demo.ts';
import { cardSetupEvents, packPurchaseEvents, stripeId, subscriptionPurchaseEvents } from './stripe-events.ts';

export const CATALOGUE = {
  /** Metered features beside credits: chat messages, a daily allowance per plan. */
  units: [{ id: 'messages', name: 'Messages', kind: 'metered' }],
  plans: [
    {
      id: 'pro',
      name: 'Pro',
      allowance: 300,
      period: 'month' as const,
      renewal: 'reset' as const,
      features: { hd_upscale: true },
      priceAmount: 1900,
      currency: 'usd',
      stripePriceId: 'price_demo_pro_monthly',
    },
  ],
  /** Each plan's allowance of a unit; `free` is the default plan the migrations create. */
  limits: [
    { planId: 'free', unit: 'messages', allowance: 20, period: 'day' as const },
    { planId: 'pro', unit: 'messages', allowance: 500, period: 'day' as const },
  ],
  packs: [
    { id: 'starter', name: 'Starter pack', credits: 50, priceAmount: 500, currency: 'usd', stripePriceId: 'price_demo_starter_50' },
    { id: 'plus', name: 'Plus pack', credits: 250, priceAmount: 2000, currency: 'usd', stripePriceId: 'price_demo_plus_250', expiresAfter: '365 days' },
  ],
  /**
   * What one event costs, by event and dimensions, in its unit (credits unless named); a chat
   * message once the day's messages are gone costs its overage in credits instead. And what each
   * costs the demo's "vendor", in micros.
   */
  prices: [
    { event: 'image_gen', dimensions: {}, creditsPerUnit: 2, costMicros: 20_000 },
    { event: 'image_gen', dimensions: { quality: 'hd' }, creditsPerUnit: 6, costMicros: 60_000 },
    { event: 'video_gen', dimensions: {}, creditsPerUnit: 20, costMicros: 450_000 },
    { event: 'chat', dimensions: {}, creditsPerUnit: 1, unit: 'messages', overageCreditsPerUnit: 1, costMicros: 2_000 },
  ],
} as const;

/**
 * Auto top-up of credits: 1 cent a credit, 100 to 5,000 credits at a time, at most $100.00 and 10
 * top-ups a month per customer, and a cooldown short enough to try it twice in a demo. The link
 * in a top-up that needs the customer (3-D Secure) opens the billing page on it.
 */
export const AUTO_TOPUP_TERMS = {
  unit: 'credits',
  currency: 'usd',
  unitPrice: 1,
  minAmount: 100,
  maxAmount: 5000,
  minThreshold: 0,
  monthlyAmountCap: 10_000,
  monthlyCountCap: 10,
  cooldown: '30 seconds',
  actionPath: '/billing?topup={topup_id}',
} as const;

/** The default low-balance threshold of credits (an account may set its own): three standard images. */
export const LOW_BALANCE_THRESHOLD = 6;

/** The notification endpoint of the demo's own receiver, POST /api/demo/notifications. */
export const RECEIVER_ENDPOINT_ID = 'demo-receiver';
export const RECEIVER_PATH = '/api/demo/notifications';

/**
 * The auto top-up terms and the receiver's endpoint for the origin the app is reached at (the
 * top-up's action link and the endpoint's URL are absolute). Run at boot and again whenever the
 * app is reached at another origin; the endpoint's secret is the one this process holds.
 */
export async function configureForOrigin(creditkit: CreditkitServer, origin: string, receiverSecret: string): Promise<void> {
  const { actionPath, ...terms } = AUTO_TOPUP_TERMS;
  await creditkit.setAutoTopupTerms({ ...terms, actionUrl: `${origin}${actionPath}`, enabled: true });
  await creditkit.upsertWebhookEndpoint({
    id: RECEIVER_ENDPOINT_ID,
    url: `${origin}${RECEIVER_PATH}`,
    secret: receiverSecret,
    enabled: true,
    description: 'The demo receiver: verifies each delivery and shows it on the dashboard',
  });
}

type CataloguePrice = (typeof CATALOGUE.prices)[number] & { unit?: string; overageCreditsPerUnit?: number };

/** What the demo's simulated model call costs the operator, in micros, for the dashboard's margin. */
export function vendorCostMicros(event: string, quality?: string): number {
  const exact = CATALOGUE.prices.find((p) => p.event === event && (p.dimensions as { quality?: string }).quality === quality);
  return (exact ?? CATALOGUE.prices.find((p) => p.event === event && Object.keys(p.dimensions).length === 0))?.costMicros ?? 0;
}

/** Ada's welcome credits: the paywall appears after five standard images. */
export const WELCOME_CREDITS = 10;

// Prices take effect long before the seeded history, so metering the past finds them.
const PRICES_FROM = '2020-01-01T00:00:00Z';

async function seedCatalogue(creditkit: CreditkitServer): Promise<void> {
  for (const unit of CATALOGUE.units) await creditkit.upsertUnit({ ...unit });
  for (const plan of CATALOGUE.plans) await creditkit.upsertPlan({ ...plan });
  for (const limit of CATALOGUE.limits) await creditkit.setPlanLimit({ ...limit });
  for (const pack of CATALOGUE.packs) await creditkit.upsertPack({ ...pack });
  for (const price of CATALOGUE.prices as readonly CataloguePrice[]) {
    const unit = price.unit ?? 'credits';
    const overage = price.overageCreditsPerUnit ?? null;
    // A new price version only when the current one differs: a reboot adds nothing.
    const current = await creditkit
      .quote({ event: price.event, dimensions: price.dimensions })
      .catch((error: unknown) => (error instanceof UnknownEventError ? null : Promise.reject(error)));
    if (current?.unitCredits !== price.creditsPerUnit || current.unit !== unit || current.overageAmount !== overage) {
      await creditkit.setPrice({
        event: price.event,
        creditsPerUnit: price.creditsPerUnit,
        dimensions: price.dimensions,
        effectiveFrom: PRICES_FROM,
        unit,
        ...(overage === null ? {} : { overageCreditsPerUnit: overage }),
      });
    }
  }
}

/** A small deterministic generator (mulberry32), so every seeded database looks the same. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const DAY = 86_400_000;
const HOUR = 3_600_000;
/** The simulated model each seeded event ran on (image_gen's is the default). */
const MODELS: Record<string, string> = { video_gen: 'demo-video-1', chat: 'demo-chat' };
const urls = { successUrl: 'http://localhost/billing', cancelUrl: 'http://localhost/billing' };

/**
 * Seeds the catalogue, the users and their history unless already there, then auto top-up and
 * notifications; true if it wrote history.
 */
export async function seedDemo(demo: Pick<Demo, 'creditkit' | 'sql' | 'receiver'>, origin: string): Promise<boolean> {
  const { creditkit, sql } = demo;
  await seedCatalogue(creditkit);
  for (const user of DEMO_USERS) {
    await sql('insert into auth.users (id, email) values ($1, $2) on conflict (id) do nothing', [user.id, user.email]);
  }
  const opened = await creditkit.balance({ accountId: (DEMO_USERS[0] as DemoUser).id }).then(
    () => true,
    (error: unknown) => (error instanceof UnknownAccountError ? false : Promise.reject(error)),
  );
  if (!opened) await seedHistory(creditkit);
  await creditkit.setBalanceAlert({ unit: 'credits', threshold: LOW_BALANCE_THRESHOLD });
  await configureForOrigin(creditkit, origin, demo.receiver.secret);
  return !opened;
}

async function seedHistory(creditkit: CreditkitServer): Promise<void> {
  const [ada, grace, linus] = DEMO_USERS as [DemoUser, DemoUser, DemoUser];

  const now = Date.now();
  const day = new Date(now).toISOString().slice(0, 10);
  const key = (rest: string) => `demo-seed:${day}:${rest}`;
  const plans = await creditkit.plans();
  const packs = await creditkit.packs();
  const pro = plans.find((p) => p.id === 'pro') as Plan;
  const starter = packs.find((p) => p.id === 'starter') as Pack;
  const apply = async (events: { created: number }[]) => {
    for (const event of events) await creditkit.stripeApply({ event: event as never, now: new Date(event.created * 1000) });
  };
  const meter = (user: DemoUser, at: number, event: string, n: string, quality?: string) =>
    creditkit.meter({
      accountId: user.id,
      event,
      ...(quality ? { dimensions: { quality } } : {}),
      costMicros: vendorCostMicros(event, quality),
      idempotencyKey: key(`${user.key}:${n}`),
      metadata: { model: MODELS[event] ?? 'demo-xl', seeded: true },
      now: new Date(at),
    });

  // n chat messages a minute apart from `at`, on the day d days ago
  const chats = async (user: DemoUser, d: number, n: number, at: number) => {
    for (let i = 0; i < n; i++) await meter(user, at + i * 60_000, 'chat', `${d}:chat:${i}`);
  };

  // Grace subscribed to Pro 20 days ago through Checkout: the same events the webhook applies.
  const graceSub = subscriptionPurchaseEvents({ accountId: grace.id, customer: stripeId('cus', 14), email: grace.email }, pro, new Date(now - 20 * DAY), urls);
  await apply(graceSub.events);
  // ... and saved a card for later (Checkout in setup mode): the card auto top-up would charge
  const graceCard = cardSetupEvents({ accountId: grace.id, customer: graceSub.subscription.customer, email: grace.email }, 'ok', new Date(now - 20 * DAY + HOUR), urls);
  await apply(graceCard.events);

  // Linus: beta credits, then a Starter pack, then a lot of video.
  await creditkit.grant({
    accountId: linus.id,
    amount: 300,
    category: 'promotional',
    expiresAt: new Date(now + 30 * DAY),
    idempotencyKey: key('linus:beta'),
    metadata: { reason: 'beta tester' },
    now: new Date(now - 16 * DAY),
  });
  await apply(packPurchaseEvents({ accountId: linus.id, customer: stripeId('cus', 14), email: linus.email }, starter, new Date(now - 12 * DAY), urls));

  // Three weeks of usage, day by day, in time order.
  const rand = random(7);
  for (let d = 19; d >= 1; d--) {
    const base = now - d * DAY;
    const images = 2 + Math.floor(rand() * 4);
    for (let i = 0; i < images; i++) {
      const hd = rand() < 0.3;
      await meter(grace, base + (9 + i) * HOUR, 'image_gen', `${d}:${i}`, hd ? 'hd' : undefined);
    }
    // chat messages come out of the day's allowance (Pro: 500, Free: 20); Linus goes past his
    // twice, and those messages are paid in credits at the overage price
    await chats(grace, d, 3 + Math.floor(rand() * 10), base + 18 * HOUR);
    if (d <= 14) {
      await meter(linus, base + 20 * HOUR, 'video_gen', `${d}:video`);
      await meter(linus, base + 21 * HOUR, 'image_gen', `${d}:image`);
      await chats(linus, d, d === 9 || d === 3 ? 23 : 2 + Math.floor(rand() * 6), base + 22 * HOUR);
    }
  }

  // Ada last: her account's existence is what marks the database as seeded.
  await creditkit.grant({
    accountId: ada.id,
    amount: WELCOME_CREDITS,
    category: 'promotional',
    expiresAt: new Date(now + 30 * DAY),
    idempotencyKey: key('ada:welcome'),
    metadata: { reason: 'welcome credits' },
    now: new Date(now - HOUR),
  });
}
