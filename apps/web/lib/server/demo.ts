// The demo's one database and creditkit server client per server process. With no
// configuration it is embedded Postgres (PGlite, in memory) with the migrations applied; with
// DATABASE_URL it is that Postgres over node-postgres, and the migrations are installed into it
// first if they are not there yet (the same installer the tests use). Either way the catalogue
// and the demo users are seeded once. Kept on globalThis, so Next.js dev reloads of this module
// reuse the database instead of booting a second one.
import pg from 'pg';
import Stripe from 'stripe';
import { generateWebhookSecret } from '@creditkit/core';
import { createCreditkit, type CreditkitServer } from '@creditkit/core/server';
import { pgConnection, setupDatabase } from 'creditkit';
import { seedDemo } from './seed.ts';

/** The webhook secret of the simulated checkout when STRIPE_WEBHOOK_SECRET is not set. */
export const DEMO_WEBHOOK_SECRET = 'whsec_creditkit_demo_simulated_checkout';

export interface StripeSetup {
  /**
   * 'stripe': STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET are set, Checkout and the portal are
   * Stripe's. 'simulated': the app's own checkout page sends signed events to the webhook.
   */
  mode: 'stripe' | 'simulated';
  /** A Stripe SDK client (in simulated mode it is only used to sign and verify events). */
  stripe: Stripe;
  webhookSecret: string;
}

export interface Demo {
  backend: 'pglite' | 'postgres';
  /** The server client: acts as service_role; `creditkit.asUser(id)` acts as a signed-in user. */
  creditkit: CreditkitServer;
  /**
   * One statement as the database owner, for what the SDK has no method for: the demo's
   * auth.users rows and a subscription's Stripe ids (for the simulated portal).
   */
  sql<T>(text: string, params?: unknown[]): Promise<T[]>;
  stripe: StripeSetup;
  /**
   * The demo's own notification receiver (POST /api/demo/notifications): the secret its endpoint
   * is registered with, CREDITKIT_DEMO_RECEIVER_SECRET or a new one per process, held in memory.
   */
  receiver: { secret: string };
  close(): Promise<void>;
}

/** Where the app is until a request says otherwise (the worker re-registers with the origin it is reached at). */
export function defaultOrigin(): string {
  return process.env.CREDITKIT_DEMO_ORIGIN ?? `http://localhost:${process.env.PORT ?? 3000}`;
}

function stripeSetup(): StripeSetup {
  const key = process.env.STRIPE_SECRET_KEY;
  const secret = process.env.STRIPE_WEBHOOK_SECRET;
  if (key && secret) {
    // STRIPE_API_URL points the SDK at a stand-in for Stripe's API (stripe-mock, or the tests' fake).
    const api = process.env.STRIPE_API_URL ? new URL(process.env.STRIPE_API_URL) : undefined;
    const stripe = new Stripe(
      key,
      api
        ? { host: api.hostname, port: Number(api.port || (api.protocol === 'https:' ? 443 : 80)), protocol: api.protocol === 'https:' ? 'https' : 'http' }
        : {},
    );
    return { mode: 'stripe', stripe, webhookSecret: secret };
  }
  if (key || secret) {
    console.warn('creditkit demo: real Stripe needs both STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET; using the simulated checkout');
  }
  // No request is ever made with this key: the simulated checkout only signs events with it.
  return { mode: 'simulated', stripe: new Stripe('sk_test_simulated_checkout'), webhookSecret: secret ?? DEMO_WEBHOOK_SECRET };
}

async function bootPostgres(url: string): Promise<Omit<Demo, 'stripe' | 'receiver'>> {
  // Install or update the migrations under an advisory lock, so two servers starting on one
  // database at once do not both apply them.
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`select pg_advisory_lock(hashtext('creditkit-demo-setup'))`);
    const applied = await setupDatabase(pgConnection(client));
    if (applied.length > 0) console.log(`creditkit demo: installed ${applied.length} migrations into DATABASE_URL`);
  } finally {
    await client.end();
  }
  const pool = new pg.Pool({ connectionString: url, max: 5 });
  pool.on('error', (error) => console.error('creditkit demo: idle connection error', error));
  return {
    backend: 'postgres',
    creditkit: createCreditkit({ pg: pool }),
    sql: async <T>(text: string, params?: unknown[]) => (await pool.query(text, params)).rows as T[],
    close: () => pool.end(),
  };
}

async function bootPglite(): Promise<Omit<Demo, 'stripe' | 'receiver'>> {
  const { createEmbeddedCreditkit } = await import('@creditkit/core/embedded');
  const dataDir = process.env.CREDITKIT_DATA_DIR || undefined;
  const { db, creditkit, close } = await createEmbeddedCreditkit(dataDir ? { dataDir } : {});
  return {
    backend: 'pglite',
    creditkit,
    sql: async <T>(text: string, params?: unknown[]) => (await db.query<T>(text, params)).rows,
    close,
  };
}

async function boot(): Promise<Demo> {
  const started = performance.now();
  const url = process.env.DATABASE_URL;
  const base = url ? await bootPostgres(url) : await bootPglite();
  const demo: Demo = {
    ...base,
    stripe: stripeSetup(),
    receiver: { secret: process.env.CREDITKIT_DEMO_RECEIVER_SECRET || generateWebhookSecret() },
  };
  const seeded = await seedDemo(demo, defaultOrigin());
  console.log(
    `creditkit demo: ${demo.backend === 'pglite' ? 'embedded PGlite' : 'Postgres (DATABASE_URL)'}, ` +
      `${demo.stripe.mode === 'stripe' ? 'Stripe Checkout' : 'simulated Stripe Checkout'}, ` +
      `${seeded ? 'seeded' : 'already seeded'} in ${Math.round(performance.now() - started)} ms`,
  );
  return demo;
}

const store = globalThis as typeof globalThis & { __creditkitDemo?: Promise<Demo> };

/** The process's demo database and client, booted (and seeded) on first use. */
export function getDemo(): Promise<Demo> {
  if (!store.__creditkitDemo) {
    store.__creditkitDemo = boot();
    // a failed boot is retried by the next request instead of being cached
    store.__creditkitDemo.catch(() => {
      store.__creditkitDemo = undefined;
    });
  }
  return store.__creditkitDemo;
}
