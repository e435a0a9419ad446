// @creditkit/core: the browser-safe entry. A client for the caller-bound functions (balance,
// history, plan, features, quotes, the plan catalogue) over supabase-js with the user's session,
// plus the typed errors and result types both entries share. Server code imports
// '@creditkit/core/server', which adds spending, grants, holds, plans and analytics.
import type { CallOptions } from './call.ts';
import { CreditkitClient } from './client.ts';
import { supabaseTransport, type SupabaseLike, type Transport } from './transport.ts';

export { CreditkitClient, DEFAULT_HISTORY_LIMIT } from './client.ts';
export { supabaseTransport, TransportError } from './transport.ts';
export type { Transport, SupabaseLike, SqlArgs } from './transport.ts';
export { toBatchEvents, toSqlArgs, type BatchConsumeEvent, type CallOptions, type FunctionName, type Params } from './call.ts';
export * from './errors.ts';
export {
  generateWebhookSecret,
  signWebhook,
  verifyWebhook,
  WebhookVerificationError,
  type BalanceAlertData,
  type CreditkitNotification,
  type TopupData,
  type VerifyWebhookOptions,
  type WebhookHeaders,
  type WebhookVerificationCode,
} from './webhooks.ts';
export { runWorker, type RunWorkerOptions, type WorkerReport, type WorkerStripe } from './worker.ts';
export type * from './results.ts';
export type { Database } from './database.types.ts';

/**
 * The browser client: `createCreditkitClient({ supabase })` with a supabase-js client that has
 * the user's session. Only the caller-bound functions are on it; the database enforces that too.
 */
export function createCreditkitClient(config: CallOptions & ({ supabase: SupabaseLike } | { transport: Transport })): CreditkitClient {
  const transport = 'supabase' in config ? supabaseTransport(config.supabase) : config.transport;
  return new CreditkitClient(transport, config);
}
