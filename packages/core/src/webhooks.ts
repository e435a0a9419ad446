// Standard Webhooks (https://www.standardwebhooks.com), symmetric scheme: what creditkit's worker
// signs its notifications with, and what a receiver verifies them with. The signed content is
// `${webhook-id}.${webhook-timestamp}.${body}`, the signature 'v1,' + base64(HMAC-SHA256) keyed
// with the base64-decoded secret after 'whsec_'. WebCrypto only (crypto.subtle), so the same
// code runs in Node 20, Deno, browsers and edge runtimes.
import { InvalidArgumentError } from './errors.ts';

/** Why a request is not a notification signed with the endpoint's secret. */
export type WebhookVerificationCode =
  | 'missing_headers' // webhook-id, webhook-timestamp or webhook-signature absent
  | 'invalid_timestamp' // webhook-timestamp is not unix seconds
  | 'timestamp_out_of_tolerance' // older or newer than toleranceSeconds: a replay, or a clock far off
  | 'invalid_signature' // no v1 signature in the header matches the body
  | 'invalid_payload'; // correctly signed, but the body is not JSON

/** The request is not a verified notification: answer 400 and ignore it. */
export class WebhookVerificationError extends Error {
  override name = 'WebhookVerificationError';
  readonly code: WebhookVerificationCode;
  constructor(code: WebhookVerificationCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** A type, not an interface, so it passes where a Record of headers is expected (fetch, verifyWebhook). */
export type WebhookHeaders = {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
};

const PREFIX = 'whsec_';
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const encoder = new TextEncoder();

function base64Encode(bytes: Uint8Array): string {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** The key bytes of 'whsec_<base64>' or of a bare base64 secret; anything else is refused. */
function secretKey(secret: string): Uint8Array {
  const encoded = typeof secret === 'string' && secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret;
  if (typeof encoded !== 'string' || encoded === '' || !BASE64.test(encoded)) {
    // the secret itself is never echoed: it may be a real one with a typo
    throw new InvalidArgumentError("a webhook secret is 'whsec_' followed by base64 (or the base64 alone)", {
      details: { parameter: 'secret' },
    });
  }
  return Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
}

async function hmac(key: Uint8Array, content: string): Promise<string> {
  const cryptoKey = await crypto.subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return base64Encode(new Uint8Array(await crypto.subtle.sign('HMAC', cryptoKey, encoder.encode(content))));
}

/** Equal strings, in time that depends only on their length (which is not secret). */
function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return difference === 0;
}

/** A new endpoint secret: 'whsec_' + base64 of 32 random bytes. */
export function generateWebhookSecret(): string {
  return PREFIX + base64Encode(crypto.getRandomValues(new Uint8Array(32)));
}

/**
 * The headers a notification is sent with. `timestamp` in unix seconds (or a Date); `body` is
 * signed as the exact string that will be sent.
 */
export async function signWebhook(params: { id: string; timestamp: number | Date; body: string; secret: string }): Promise<WebhookHeaders> {
  const { id, body, secret } = params;
  const seconds = params.timestamp instanceof Date ? Math.floor(params.timestamp.getTime() / 1000) : params.timestamp;
  // The id and timestamp delimit the signed content with dots, so neither may hold one.
  if (typeof id !== 'string' || id === '' || id.includes('.')) {
    throw new InvalidArgumentError('a webhook id is a non-empty string without dots', { details: { parameter: 'id' } });
  }
  if (!Number.isSafeInteger(seconds) || seconds < 0) {
    throw new InvalidArgumentError('a webhook timestamp is whole unix seconds (or a valid Date)', { details: { parameter: 'timestamp' } });
  }
  if (typeof body !== 'string') throw new InvalidArgumentError('a webhook body is the string to send', { details: { parameter: 'body' } });
  const signature = await hmac(secretKey(secret), `${id}.${seconds}.${body}`);
  return { 'webhook-id': id, 'webhook-timestamp': String(seconds), 'webhook-signature': `v1,${signature}` };
}

function header(headers: Headers | Record<string, string | undefined>, name: string): string | null {
  if (typeof (headers as Headers).get === 'function') return (headers as Headers).get(name);
  // a plain object, e.g. Node's IncomingHttpHeaders (lower-case) or one written by hand
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === name && typeof value === 'string') return value;
  }
  return null;
}

export interface VerifyWebhookOptions {
  /** How far webhook-timestamp may be from now, either way (default 300 seconds). */
  toleranceSeconds?: number;
  /** The receiver's clock (tests). */
  now?: Date;
}

/**
 * Checks a received notification and returns its parsed JSON payload. `body` must be the raw
 * request body as received (`await request.text()`), not parsed and serialised again. Throws
 * WebhookVerificationError (`code` says why) for anything not signed with `secret` within the
 * tolerance; a malformed secret is InvalidArgumentError, a configuration error rather than a bad
 * request. Use the payload's `id` (the webhook-id) to ignore a notification seen before.
 */
export async function verifyWebhook<T = CreditkitNotification>(
  body: string,
  headers: Headers | Record<string, string | undefined>,
  secret: string,
  options: VerifyWebhookOptions = {},
): Promise<T> {
  const key = secretKey(secret);
  const id = header(headers, 'webhook-id');
  const timestamp = header(headers, 'webhook-timestamp');
  const signatures = header(headers, 'webhook-signature');
  if (!id || !timestamp || !signatures) {
    throw new WebhookVerificationError('missing_headers', 'webhook-id, webhook-timestamp and webhook-signature are required');
  }
  if (!/^\d{1,15}$/.test(timestamp)) {
    throw new WebhookVerificationError('invalid_timestamp', 'webhook-timestamp is not unix seconds');
  }
  const { toleranceSeconds = 300, now = new Date() } = options;
  if (Math.abs(now.getTime() / 1000 - Number(timestamp)) > toleranceSeconds) {
    throw new WebhookVerificationError('timestamp_out_of_tolerance', `webhook-timestamp is more than ${toleranceSeconds} seconds from now`);
  }
  const expected = await hmac(key, `${id}.${timestamp}.${body}`);
  // Several signatures when the sender rotates its secret: any v1 one that matches will do.
  let matched = false;
  for (const candidate of signatures.split(' ')) {
    const [version, signature] = candidate.split(',', 2);
    if (version === 'v1' && signature !== undefined && constantTimeEqual(signature, expected)) matched = true;
  }
  if (!matched) throw new WebhookVerificationError('invalid_signature', 'no signature in webhook-signature matches the body');
  try {
    return JSON.parse(body) as T;
  } catch {
    throw new WebhookVerificationError('invalid_payload', 'the signed body is not JSON');
  }
}

// ── What creditkit sends ──────────────────────────────────────────────────────────────────
// The payloads as creditkit writes them: snake_case keys (the JSON is the wire format, the same
// whatever SDK receives it), amounts as integers, instants as ISO 8601. A later version may add
// types: a receiver should answer 2xx to a type it does not handle.

interface Notification<Type extends string, Data> {
  /** 'ntf_<32 hex>', also the webhook-id header: the key to de-duplicate on. */
  id: string;
  type: Type;
  timestamp: string;
  data: Data;
}

export interface BalanceAlertData {
  account_id: string;
  unit: string;
  balance: number;
  held: number;
  spendable: number;
  threshold: number;
}

export interface TopupData {
  account_id: string;
  unit: string;
  topup_id: number;
  /** Of the unit. */
  amount: number;
  /** In the smallest currency unit (cents). */
  charge_amount: number;
  currency: string;
  payment_intent: string | null;
}

export type CreditkitNotification =
  | Notification<'balance.low' | 'balance.depleted' | 'balance.recovered', BalanceAlertData>
  | Notification<'topup.succeeded', TopupData & { balance: number }>
  | Notification<
      'topup.failed',
      TopupData & { failure_code: string | null; failure_message: string | null; failures: number; auto_topup_status: string }
    >
  | Notification<'topup.action_required', TopupData & { action_url: string | null }>
  | Notification<'plan.changed', { account_id: string; plan_id: string; previous_plan_id: string | null; status: string }>;
