// The transports the SDK ships, as a list of factories the contract suite runs one suite body
// against: PGlite (always), node-postgres on real Postgres, and supabase-js through the
// PostgREST test server on real Postgres (both need DATABASE_URL). Each factory builds a
// Harness: a fresh database with creditkit installed, a service-role client over that
// transport, signed-in user clients the way that transport makes them, and superuser SQL for
// evidence taken from the tables rather than from the SDK's own answers.
//
// Also here: METHOD_FUNCTIONS, which SQL function each SDK method calls (checked by
// caller.test.ts against what the methods really send, and by contract.test.ts against the
// catalogue). The transport wrappers (counting, …) are @creditkit/testing's.
import { createClient } from '@supabase/supabase-js';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { counting, createCitusDatabase, createTestDatabase, distributeKit, noWebSocket, pgliteTemplate, startPostgrestServer, type PostgrestServer, type TestDatabase } from '@creditkit/testing';
import { createEmbeddedCreditkit } from '../../src/embedded.ts';
import {
  CreditkitServer,
  createCreditkit,
  createCreditkitClient,
  type CallOptions,
  type CreditkitClient,
  type Transport,
} from '../../src/server.ts';

export type TransportName = 'pglite' | 'pg' | 'supabase' | 'citus';

export interface Harness {
  readonly name: TransportName;
  /** The server client (service role) over this transport. */
  readonly creditkit: CreditkitServer;
  /** A new server client whose transport is `wrap(the real one)`, e.g. to count or fail calls. */
  withTransport(wrap: (transport: Transport) => Transport, options?: CallOptions): CreditkitServer;
  /** A browser client signed in as `userId`, made the way this transport's users get one. */
  asUser(userId: string): CreditkitClient;
  /** The server methods, but sent with the user's credentials: the database must refuse them. */
  serverWithUserCredentials(userId: string): CreditkitServer;
  /** A row in auth.users; returns its id. */
  createUser(): Promise<string>;
  /** SQL as the superuser, straight to the database (evidence, fixtures). */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** HTTP requests the PostgREST test server received so far (supabase only). */
  httpRequests?(): number;
  close(): Promise<void>;
}

export interface TransportFactory {
  readonly name: TransportName;
  /** Needs a real Postgres server (DATABASE_URL): run it inside describeIfPostgres. */
  readonly postgres: boolean;
  /** Needs the local Citus cluster: run it inside describeIfCitus. */
  readonly citus?: boolean;
  create(): Promise<Harness>;
}

const NO_SESSION = { persistSession: false, autoRefreshToken: false } as const;
/** Node 20 has no WebSocket; these clients never subscribe to realtime. */
const NO_REALTIME = { transport: noWebSocket };

async function pgliteHarness(): Promise<Harness> {
  const { db, creditkit, close } = await createEmbeddedCreditkit({ loadDataDir: await pgliteTemplate() });
  const query = async <T>(sql: string, params?: unknown[]) => (await db.query<T>(sql, params)).rows;
  return {
    name: 'pglite',
    creditkit,
    withTransport: (wrap, options) => new CreditkitServer(wrap(creditkit.transport), options),
    asUser: (userId) => creditkit.asUser(userId),
    serverWithUserCredentials: (userId) => new CreditkitServer(creditkit.asUser(userId).transport),
    createUser: () => createUserWith(query),
    query,
    close,
  };
}

async function pgHarness(): Promise<Harness> {
  const db = await createTestDatabase({ backend: 'postgres' });
  return undoOnFailure(db.drop, async () => pgHarnessOn(db));
}

/**
 * node-postgres to the coordinator of the local Citus cluster, on a database where the kit was
 * installed through the coordinator and then placed by scripts/citus/distribute.sql (per-account
 * tables distributed by account, the single-account API delegated to the account's worker).
 */
async function citusHarness(): Promise<Harness> {
  const db = await createCitusDatabase();
  return undoOnFailure(db.drop, async () => {
    const sql = readFileSync(new URL('../../../../scripts/citus/distribute.sql', import.meta.url), 'utf8');
    await distributeKit(db.url, { name: 'scripts/citus/distribute.sql', sql });
    return pgHarnessOn(db, 'citus');
  });
}

function pgHarnessOn(db: TestDatabase, name: 'pg' | 'citus' = 'pg'): Harness {
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  pool.on('error', () => {}); // an idle connection killed by drop() must not crash the run
  const creditkit = createCreditkit({ pg: pool });
  return {
    name,
    creditkit,
    withTransport: (wrap, options) => new CreditkitServer(wrap(creditkit.transport), options),
    asUser: (userId) => creditkit.asUser(userId),
    serverWithUserCredentials: (userId) => new CreditkitServer(creditkit.asUser(userId).transport),
    createUser: () => createUserWith(db.query),
    query: db.query,
    async close() {
      await pool.end();
      await db.drop();
    },
  };
}

async function supabaseHarness(): Promise<Harness> {
  const db = await createTestDatabase({ backend: 'postgres' });
  return undoOnFailure(db.drop, () => supabaseHarnessOn(db));
}

async function supabaseHarnessOn(db: TestDatabase): Promise<Harness> {
  const url = db.url;
  if (!url) throw new Error('the postgres backend has no url');
  const server = await startPostgrestServer({ connectionString: url });
  return undoOnFailure(() => server.close(), async () => supabaseClients(db, server));
}

function supabaseClients(db: TestDatabase, server: PostgrestServer): Harness {
  const admin = createClient(server.url, server.serviceRoleKey, { auth: NO_SESSION, realtime: NO_REALTIME });
  const userClient = (userId: string) =>
    createClient(server.url, server.anonKey, {
      global: { headers: { Authorization: `Bearer ${server.userToken(userId)}` } },
      auth: NO_SESSION,
      realtime: NO_REALTIME,
    });
  const creditkit = createCreditkit({ supabase: admin });
  return {
    name: 'supabase',
    creditkit,
    withTransport: (wrap, options) => new CreditkitServer(wrap(creditkit.transport), options),
    asUser: (userId) => createCreditkitClient({ supabase: userClient(userId) }),
    serverWithUserCredentials: (userId) => createCreditkit({ supabase: userClient(userId) }),
    createUser: () => createUserWith(db.query),
    query: db.query,
    httpRequests: () => server.requests,
    async close() {
      await server.close();
      await db.drop();
    },
  };
}

/** Builds the rest of a harness; if that fails, undoes what was made so far (no database is left behind). */
async function undoOnFailure<T>(undo: () => Promise<void>, build: () => Promise<T>): Promise<T> {
  try {
    return await build();
  } catch (error) {
    await undo().catch(() => undefined);
    throw error;
  }
}

async function createUserWith(query: Harness['query']): Promise<string> {
  const [row] = await query<{ id: string }>(`insert into auth.users (email) values ($1) returning id`, [
    `user-${Math.random().toString(36).slice(2)}@example.test`,
  ]);
  if (!row) throw new Error('insert into auth.users returned no row');
  return row.id;
}

export const TRANSPORTS: readonly TransportFactory[] = [
  { name: 'pglite', postgres: false, create: pgliteHarness },
  { name: 'pg', postgres: true, create: pgHarness },
  { name: 'supabase', postgres: true, create: supabaseHarness },
  { name: 'citus', postgres: true, citus: true, create: citusHarness },
];

// ── Which SQL function each SDK method calls ────────────────────────────────────────────

/** CreditkitServer method → public function it calls. */
export const SERVER_METHODS = {
  consume: 'creditkit_consume',
  consumeBatch: 'creditkit_consume_batch',
  consumeOrRaise: 'creditkit_consume_or_raise',
  check: 'creditkit_check',
  report: 'creditkit_report',
  meter: 'creditkit_meter',
  quote: 'creditkit_quote',
  reserve: 'creditkit_reserve',
  settle: 'creditkit_settle',
  release: 'creditkit_release',
  grant: 'creditkit_grant',
  adjust: 'creditkit_adjust',
  bookExpired: 'creditkit_book_expired',
  balance: 'creditkit_balance',
  history: 'creditkit_history',
  upsertPlan: 'creditkit_upsert_plan',
  plans: 'creditkit_plans',
  upsertUnit: 'creditkit_upsert_unit',
  units: 'creditkit_units',
  setPlanLimit: 'creditkit_set_plan_limit',
  setPlan: 'creditkit_set_plan',
  hasFeature: 'creditkit_has_feature',
  setPrice: 'creditkit_set_price',
  upsertPack: 'creditkit_upsert_pack',
  packs: 'creditkit_packs',
  stripeApply: 'creditkit_stripe_apply',
  stripeReplay: 'creditkit_stripe_replay',
  stripeEvents: 'creditkit_stripe_events',
  stripeCustomer: 'creditkit_stripe_customer',
  stripeLinkCustomer: 'creditkit_stripe_link_customer',
  setAutoTopupTerms: 'creditkit_set_auto_topup_terms',
  autoTopupTerms: 'creditkit_auto_topup_terms',
  setBalanceAlert: 'creditkit_set_balance_alert',
  setAccountBalanceAlert: 'creditkit_set_account_balance_alert',
  balanceAlert: 'creditkit_balance_alert',
  setAutoTopup: 'creditkit_set_auto_topup',
  autoTopup: 'creditkit_auto_topup',
  topups: 'creditkit_topups',
  upsertWebhookEndpoint: 'creditkit_upsert_webhook_endpoint',
  deleteWebhookEndpoint: 'creditkit_delete_webhook_endpoint',
  webhookEndpoints: 'creditkit_webhook_endpoints',
  notifications: 'creditkit_notifications',
  replayDelivery: 'creditkit_replay_delivery',
  pruneNotifications: 'creditkit_prune_notifications',
  claimTopups: 'creditkit_worker_claim_topups',
  recordTopupResult: 'creditkit_worker_topup_result',
  claimDeliveries: 'creditkit_worker_claim_deliveries',
  recordDeliveryResult: 'creditkit_worker_delivery_result',
  accountMargin: 'creditkit_account_margin',
  unitUsage: 'creditkit_unit_usage',
  usageSeries: 'creditkit_usage_series',
  topEvents: 'creditkit_top_events',
  creditsOutstanding: 'creditkit_credits_outstanding',
  accountsPerPlan: 'creditkit_accounts_per_plan',
  mrr: 'creditkit_mrr',
} as const satisfies Partial<Record<keyof CreditkitServer, string>>;

/** CreditkitClient (signed-in user) method → public function it calls. */
export const CLIENT_METHODS = {
  balance: 'creditkit_my_balance',
  history: 'creditkit_my_history',
  plan: 'creditkit_my_plan',
  hasFeature: 'creditkit_my_feature',
  hasCredits: 'creditkit_has_credits',
  check: 'creditkit_my_check',
  units: 'creditkit_units',
  quote: 'creditkit_quote',
  plans: 'creditkit_plans',
  packs: 'creditkit_packs',
  autoTopupTerms: 'creditkit_auto_topup_terms',
  autoTopup: 'creditkit_my_auto_topup',
  setAutoTopup: 'creditkit_my_set_auto_topup',
  topups: 'creditkit_my_topups',
  balanceAlert: 'creditkit_my_balance_alert',
  setBalanceAlert: 'creditkit_my_set_balance_alert',
} as const satisfies Partial<Record<keyof CreditkitClient, string>>;

export type ServerMethod = keyof typeof SERVER_METHODS;
export type ClientMethod = keyof typeof CLIENT_METHODS;

// ── Transport wrappers ──────────────────────────────────────────────────────────────────

export { counting };
/** A transport that counts the calls it passes on (and remembers which functions). */
export type CountingTransport = ReturnType<typeof counting>;
