// The browser-safe client: the caller-bound functions a signed-in user may call with their own
// session (creditkit_my_*, has_credits, quote, plans). Row-level security decides what they see;
// nothing here can grant, spend or read another user's money.
import { Caller, camelKeys, type CallOptions, type Params } from './call.ts';
import type {
  AccountBalance, AccountPlan, AutoTopup, AutoTopupTerms, Balance, BalanceAlert, Bucket, CheckResult, HistoryEntry, HistoryPage,
  Pack, Plan, Quote, Topup, Unit,
} from './results.ts';
import type { Transport } from './transport.ts';

/** The SQL default page size of creditkit_history / creditkit_my_history. */
export const DEFAULT_HISTORY_LIMIT = 50;

/** Buckets arrive as jsonb with snake_case keys; give them the SDK's casing. */
export function withBuckets<T extends Balance>(row: T): T {
  const buckets = Array.isArray(row.buckets) ? row.buckets.map((b) => camelKeys<Bucket>(b)) : [];
  return { ...row, buckets };
}

/** The card and the last top-up arrive as jsonb with snake_case keys; give them the SDK's casing. */
export function withAutoTopupParts(row: AutoTopup): AutoTopup {
  return {
    ...row,
    paymentMethod: row.paymentMethod === null ? null : camelKeys(row.paymentMethod),
    lastTopup: row.lastTopup === null ? null : camelKeys(row.lastTopup),
  };
}

/**
 * The parameters of a function that sets an alert threshold: `threshold` (and `percent`) null
 * removes the alert, which the generated types cannot say of a parameter without a default.
 */
export type AlertParams<F extends 'creditkit_set_balance_alert' | 'creditkit_set_account_balance_alert' | 'creditkit_my_set_balance_alert'> =
  Omit<Params<F>, 'threshold'> & { threshold: number | null };

/** A page of history; a full page means there may be more before its last entry. */
export function historyPage(entries: HistoryEntry[], limit: number | null | undefined): HistoryPage {
  const last = entries[entries.length - 1];
  const full = entries.length > 0 && entries.length >= (limit ?? DEFAULT_HISTORY_LIMIT);
  return { entries, nextBeforeId: full && last ? last.id : null };
}

export class CreditkitClient {
  protected readonly caller: Caller;

  constructor(transport: Transport, options?: CallOptions) {
    this.caller = new Caller(transport, options);
  }

  /** The transport this client calls through. */
  get transport(): Transport {
    return this.caller.transport;
  }

  /** The caller's balance (or an account they may access), with buckets and the next expiry. */
  async balance(params: Params<'creditkit_my_balance'> = {}): Promise<AccountBalance> {
    return withBuckets(await this.caller.row<AccountBalance, 'creditkit_my_balance'>('creditkit_my_balance', params));
  }

  /** The caller's ledger, newest first, one page at a time. */
  async history(params: Params<'creditkit_my_history'> = {}): Promise<HistoryPage> {
    const entries = await this.caller.rows<HistoryEntry, 'creditkit_my_history'>('creditkit_my_history', params);
    return historyPage(entries, params.limit);
  }

  /** The caller's plan and period; every field null when they have none. */
  async plan(params: Params<'creditkit_my_plan'> = {}): Promise<AccountPlan> {
    return this.caller.row('creditkit_my_plan', params);
  }

  /** Whether the caller's plan includes a feature. */
  async hasFeature(params: Params<'creditkit_my_feature'>): Promise<boolean> {
    return this.caller.scalar('creditkit_my_feature', params);
  }

  /** Whether the caller can spend `amount` (default 1) now. */
  async hasCredits(params: Params<'creditkit_has_credits'> = {}): Promise<boolean> {
    return this.caller.scalar('creditkit_has_credits', params);
  }

  /** Whether the caller can spend `amount` (default 1) of `unit` (default credits) now, and the balance. */
  async check(params: Params<'creditkit_my_check'> = {}): Promise<CheckResult> {
    return this.caller.row('creditkit_my_check', params);
  }

  /** The unit catalogue. */
  async units(): Promise<Unit[]> {
    return this.caller.rows('creditkit_units', {});
  }

  /** What an event would cost now, without spending. */
  async quote(params: Params<'creditkit_quote'>): Promise<Quote> {
    return this.caller.row('creditkit_quote', params);
  }

  /** The active plans, cheapest first. */
  async plans(): Promise<Plan[]> {
    return this.caller.rows('creditkit_plans', {});
  }

  /** The active credit packs, cheapest first. */
  async packs(): Promise<Pack[]> {
    return this.caller.rows('creditkit_packs', {});
  }

  // ── Auto top-up and balance alerts ──

  /** The units that can top up automatically, and on what terms (price, limits). */
  async autoTopupTerms(): Promise<AutoTopupTerms[]> {
    return this.caller.rows('creditkit_auto_topup_terms', {});
  }

  /** The caller's auto top-up for a unit (default credits): settings, status, card and last top-up. */
  async autoTopup(params: Params<'creditkit_my_auto_topup'> = {}): Promise<AutoTopup> {
    return withAutoTopupParts(await this.caller.row<AutoTopup, 'creditkit_my_auto_topup'>('creditkit_my_auto_topup', params));
  }

  /**
   * Switches the caller's auto top-up for a unit on (with a threshold and exactly one of amount,
   * target or packId) or off. AutoTopupUnavailableError when the unit has no terms or the account
   * no card on file.
   */
  async setAutoTopup(params: Params<'creditkit_my_set_auto_topup'>): Promise<AutoTopup> {
    return withAutoTopupParts(await this.caller.row<AutoTopup, 'creditkit_my_set_auto_topup'>('creditkit_my_set_auto_topup', params));
  }

  /** The caller's top-ups, newest first. */
  async topups(params: Params<'creditkit_my_topups'> = {}): Promise<Topup[]> {
    return this.caller.rows('creditkit_my_topups', params);
  }

  /** The caller's low-balance alert for a unit (default credits) and where the balance stands against it. */
  async balanceAlert(params: Params<'creditkit_my_balance_alert'> = {}): Promise<BalanceAlert> {
    return this.caller.row('creditkit_my_balance_alert', params);
  }

  /** Sets the caller's own low-balance threshold for a unit (null: back to the unit's default). */
  async setBalanceAlert(params: AlertParams<'creditkit_my_set_balance_alert'>): Promise<BalanceAlert> {
    return this.caller.row('creditkit_my_set_balance_alert', params as Params<'creditkit_my_set_balance_alert'>);
  }
}
