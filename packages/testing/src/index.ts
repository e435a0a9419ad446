// @creditkit/testing: the one home of what the suites share (private, never published). Test
// databases on PGlite or Postgres, copied from one migrated template, and on a local Citus cluster
// (citus.ts); role switches as PostgREST makes them; the books as the superuser reads them;
// transport wrappers; the PostgREST and Stripe stand-ins, and the Stripe events of saved cards and
// off-session payments (`stripeEvents`). The vitest helpers (per-backend suites,
// knownBug) are '@creditkit/testing/vitest', so scripts can use this entry without loading vitest.
export {
  createTestDatabase,
  templateDatabaseName,
  testDatabaseName,
  postgresAvailable,
  postgresRequired,
  checkPostgres,
  type TestDatabase,
  type TestDatabaseOptions,
  type Backend,
  type Row,
} from './databases.ts';
export { pgliteTemplate } from './pglite.ts';
export {
  checkCitus,
  citusAvailable,
  citusDir,
  citusPlacements,
  citusPort,
  citusRequired,
  createCitusDatabase,
  describePlacement,
  distributeKit,
  startCitusCluster,
  type CitusCluster,
  type CitusDatabase,
  type CitusDatabaseOptions,
  type CitusPlacement,
  type DistributeOptions,
  type DistributeScript,
  type PlacementOptions,
  type TablePlacement,
} from './citus.ts';
export {
  SET_REQUEST,
  beginAs,
  claimsFor,
  inRole,
  newGauge,
  pooledRunner,
  requestSettings,
  runAs,
  warmPool,
  type ApiRole,
  type Gauge,
  type Runner,
  type Session,
} from './roles.ts';
export { BOOKED_ACCOUNTS, BOOKED_GRANTS, GRANTS } from './books.ts';
export { counting, gated, tampered, type TransportLike } from './transports.ts';
export { noWebSocket, startPostgrestServer, type PostgrestServer, type PostgrestServerOptions } from './postgrest.ts';
export {
  startFakeStripe,
  type CreatedPaymentIntent,
  type FakeStripe,
  type FakeStripeOptions,
  type PaymentIntentFailure,
  type RecordedRequest,
} from './fake-stripe.ts';
export * as stripeEvents from './stripe-events.ts';
export type { StripeEvent as StripeWebhookEvent } from './stripe-events.ts';
export type { PrivilegeMode } from 'creditkit';
