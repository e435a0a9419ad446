// Standard Webhooks signing and verifying (src/webhooks.ts): the specification's own test vector
// (standard-webhooks/standard-webhooks, libraries/*/ "sign function works"), signatures checked
// against an independent HMAC (node:crypto), tampering with each signed part, the timestamp
// tolerance both ways, several signatures in one header (secret rotation), and bad secrets.
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  InvalidArgumentError,
  WebhookVerificationError,
  generateWebhookSecret,
  signWebhook,
  verifyWebhook,
  type WebhookVerificationCode,
} from '../src/index.ts';

// The vector every Standard Webhooks library tests its signer with.
const VECTOR = {
  secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
  timestamp: 1614265330,
  body: '{"test": 2432232314}',
  signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
};
const AT_VECTOR = new Date(VECTOR.timestamp * 1000);

async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

async function refused(promise: Promise<unknown>, code: WebhookVerificationCode): Promise<void> {
  const error = await failure(promise);
  expect(error).toBeInstanceOf(WebhookVerificationError);
  expect((error as WebhookVerificationError).code).toBe(code);
}

describe('signWebhook', () => {
  it('gives the specification vector its documented signature, with the whsec_ prefix or without', async () => {
    const headers = await signWebhook(VECTOR);
    expect(headers).toEqual({ 'webhook-id': VECTOR.id, 'webhook-timestamp': '1614265330', 'webhook-signature': VECTOR.signature });
    expect(await signWebhook({ ...VECTOR, secret: VECTOR.secret.slice('whsec_'.length) })).toEqual(headers);
    expect(await signWebhook({ ...VECTOR, timestamp: AT_VECTOR })).toEqual(headers);
  });

  it('agrees with an independent HMAC-SHA256 over id.timestamp.body, unicode and newlines included', async () => {
    const secret = generateWebhookSecret();
    const body = JSON.stringify({ id: 'ntf_0123', type: 'balance.low', data: { note: 'ünïcødé 😀\nline' } });
    const headers = await signWebhook({ id: 'ntf_0123', timestamp: 1_900_000_000, body, secret });
    const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
    const expected = createHmac('sha256', key).update(`ntf_0123.1900000000.${body}`, 'utf8').digest('base64');
    expect(headers['webhook-signature']).toBe(`v1,${expected}`);
  });

  it('refuses an id with a dot, a timestamp that is not whole seconds, and a bad secret, as InvalidArgumentError', async () => {
    for (const bad of [{ id: 'a.b' }, { id: '' }, { timestamp: 1.5 }, { timestamp: -1 }, { timestamp: new Date('x') }, { secret: 'whsec_' }, { secret: 'not base64!' }]) {
      expect(await failure(signWebhook({ ...VECTOR, ...bad })), JSON.stringify(bad)).toBeInstanceOf(InvalidArgumentError);
    }
  });
});

describe('generateWebhookSecret', () => {
  it('makes whsec_ + base64 of 32 random bytes, different each time, that signs and verifies', async () => {
    const a = generateWebhookSecret();
    const b = generateWebhookSecret();
    expect(a).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(Buffer.from(a.slice(6), 'base64')).toHaveLength(32);
    expect(a).not.toBe(b);
    const headers = await signWebhook({ id: 'ntf_x', timestamp: AT_VECTOR, body: '{}', secret: a });
    expect(await verifyWebhook('{}', headers, a, { now: AT_VECTOR })).toEqual({});
    await refused(verifyWebhook('{}', headers, b, { now: AT_VECTOR }), 'invalid_signature');
  });
});

describe('verifyWebhook', () => {
  const headers = { 'webhook-id': VECTOR.id, 'webhook-timestamp': String(VECTOR.timestamp), 'webhook-signature': VECTOR.signature };
  const verify = (body: string, h: Headers | Record<string, string | undefined>, options: { now?: Date; toleranceSeconds?: number } = {}) =>
    verifyWebhook(body, h, VECTOR.secret, { now: AT_VECTOR, ...options });

  it('accepts the specification vector and returns the parsed payload, from a Headers object or a plain one in any case', async () => {
    expect(await verify(VECTOR.body, headers)).toEqual({ test: 2432232314 });
    expect(await verify(VECTOR.body, new Headers(headers))).toEqual({ test: 2432232314 });
    const shouting = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toUpperCase(), v]));
    expect(await verify(VECTOR.body, shouting)).toEqual({ test: 2432232314 });
  });

  it('refuses a change to the body, the id, the timestamp or the signature', async () => {
    await refused(verify('{"test": 2432232315}', headers), 'invalid_signature');
    await refused(verify(`${VECTOR.body} `, headers), 'invalid_signature');
    await refused(verify(VECTOR.body, { ...headers, 'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJel' }), 'invalid_signature');
    await refused(verify(VECTOR.body, { ...headers, 'webhook-timestamp': String(VECTOR.timestamp + 1) }), 'invalid_signature');
    // one character off (the tampered signature of the Python library's tests), cut short, empty, another version
    for (const signature of ['v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=', VECTOR.signature.slice(0, 8), 'v1,', 'v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=', 'g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=']) {
      await refused(verify(VECTOR.body, { ...headers, 'webhook-signature': signature }), 'invalid_signature');
    }
    // the right signature under another secret
    await refused(verifyWebhook(VECTOR.body, headers, generateWebhookSecret(), { now: AT_VECTOR }), 'invalid_signature');
  });

  it('passes when any v1 signature of several matches (a rotated secret), and only then', async () => {
    const old = await signWebhook({ ...VECTOR, secret: generateWebhookSecret() });
    const both = `${old['webhook-signature']} ${VECTOR.signature}`;
    expect(await verify(VECTOR.body, { ...headers, 'webhook-signature': both })).toEqual({ test: 2432232314 });
    expect(await verify(VECTOR.body, { ...headers, 'webhook-signature': `v1a,bm90IGNoZWNrZWQ= ${VECTOR.signature}` })).toEqual({ test: 2432232314 });
    await refused(verify(VECTOR.body, { ...headers, 'webhook-signature': `${old['webhook-signature']} v1,AAAA` }), 'invalid_signature');
  });

  it('refuses a timestamp outside the tolerance either way (default 5 minutes), and one that is not unix seconds', async () => {
    const at = (seconds: number) => new Date((VECTOR.timestamp + seconds) * 1000);
    expect(await verify(VECTOR.body, headers, { now: at(300) })).toEqual({ test: 2432232314 });
    expect(await verify(VECTOR.body, headers, { now: at(-300) })).toEqual({ test: 2432232314 });
    await refused(verify(VECTOR.body, headers, { now: at(301) }), 'timestamp_out_of_tolerance');
    await refused(verify(VECTOR.body, headers, { now: at(-301) }), 'timestamp_out_of_tolerance');
    await refused(verify(VECTOR.body, headers, { now: at(11), toleranceSeconds: 10 }), 'timestamp_out_of_tolerance');
    // without `now`, the real clock: a 2021 timestamp is far too old
    await refused(verifyWebhook(VECTOR.body, headers, VECTOR.secret), 'timestamp_out_of_tolerance');
    for (const timestamp of ['hello', '1614265330.5', '-1614265330', '', ' 1614265330', '1e9']) {
      const code = timestamp === '' ? 'missing_headers' : 'invalid_timestamp';
      await refused(verify(VECTOR.body, { ...headers, 'webhook-timestamp': timestamp }), code);
    }
  });

  it('refuses a request without any one of the three headers', async () => {
    for (const name of Object.keys(headers)) {
      await refused(verify(VECTOR.body, { ...headers, [name]: undefined }), 'missing_headers');
    }
    await refused(verify(VECTOR.body, new Headers()), 'missing_headers');
  });

  it('a correctly signed body that is not JSON is invalid_payload', async () => {
    const signed = await signWebhook({ ...VECTOR, body: 'not json' });
    await refused(verify('not json', signed), 'invalid_payload');
  });

  it('a malformed secret is InvalidArgumentError (a configuration error), never a verification failure', async () => {
    for (const secret of ['', 'whsec_', 'whsec_***', 'whsec_abc', 'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS']) {
      const error = await failure(verifyWebhook(VECTOR.body, headers, secret, { now: AT_VECTOR }));
      expect(error, secret).toBeInstanceOf(InvalidArgumentError);
      expect((error as InvalidArgumentError).message).not.toContain(secret.slice(6) || '\0');
    }
  });
});
