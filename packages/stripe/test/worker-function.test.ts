// The worker Edge Function (supabase/functions/creditkit-worker/index.ts) under real Deno, as
// Supabase Cron calls it: only a POST with `Authorization: Bearer <CREDITKIT_WORKER_SECRET>` runs
// runWorker (against real Postgres through the PostgREST stand-in and supabase-js, like a deployed
// function); any other request is refused before anything is claimed. In this repository its
// deno.json maps @creditkit/core to the package's source, so `deno check` checks the function
// against the current SDK.
//
// runWorker comes from the SDK's 0.3.0 work (branch topup-sdk): until @creditkit/core exports it
// the function cannot start, and this suite says so in its title and is skipped.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, startPostgrestServer, type PostgrestServer, type TestDatabase } from '@creditkit/testing';
import { describeIfPostgres } from '@creditkit/testing/vitest';
import { closedPort, denoCheck, startFunction, type EdgeFunction } from './support/deno.ts';

const WORKER_SECRET = 'ck_worker_test_4f1d0c9a8b7e6d5c';
const sdkHasWorker = 'runWorker' in (await import('@creditkit/core/server'));

async function call(fn: EdgeFunction, init: RequestInit = {}) {
  const res = await fetch(fn.url, { method: 'POST', ...init });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

const suite = sdkHasWorker ? describeIfPostgres : (name: string, fn: () => void) => describe.skip(`${name} (needs runWorker in @creditkit/core)`, fn);

suite('creditkit-worker Edge Function under Deno', () => {
  let db: TestDatabase;
  let postgrest: PostgrestServer;
  let fn: EdgeFunction;
  let noDataApi: EdgeFunction;

  beforeAll(async () => {
    db = await createTestDatabase({ backend: 'postgres' });
    postgrest = await startPostgrestServer({ connectionString: db.url! });
    const secrets = { CREDITKIT_WORKER_SECRET: WORKER_SECRET, STRIPE_SECRET_KEY: 'sk_test_creditkit_worker' };
    fn = await startFunction('creditkit-worker', { ...secrets, SUPABASE_URL: postgrest.url, SUPABASE_SERVICE_ROLE_KEY: postgrest.serviceRoleKey });
    noDataApi = await startFunction('creditkit-worker', {
      ...secrets, SUPABASE_URL: `http://127.0.0.1:${await closedPort()}`, SUPABASE_SERVICE_ROLE_KEY: postgrest.serviceRoleKey,
    });
  });

  afterAll(async () => {
    await Promise.allSettled([fn?.stop(), noDataApi?.stop()]);
    await postgrest?.close();
    await db?.drop();
  });

  it('index.ts type-checks under Deno against the SDK source and the real stripe and supabase-js types', () => {
    const check = denoCheck('creditkit-worker');
    expect(check.status, check.stderr).toBe(0);
  });

  it.each<[string, RequestInit]>([
    ['no Authorization header', {}],
    ['a wrong secret', bearer('ck_worker_test_wrong')],
    ['the secret with one character more', bearer(`${WORKER_SECRET}x`)],
    ['a prefix of the secret', bearer(WORKER_SECRET.slice(0, -1))],
    ['the secret in another scheme', { headers: { authorization: `Basic ${WORKER_SECRET}` } }],
    ['the service-role key', bearer('service-role-is-not-the-worker-secret')],
  ])('%s: 401, and the worker does not run', async (_, init) => {
    // the function with no database behind it: had it run the worker, it would answer 500
    for (const target of [fn, noDataApi]) {
      const res = await call(target, init);
      expect(res.status, target.output()).toBe(401);
      expect(res.body).toMatchObject({ error: 'unauthorized' });
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
    }
  });

  it('anything but POST: 405, even with the secret', async () => {
    const res = await call(fn, { method: 'GET', ...bearer(WORKER_SECRET) });
    expect(res).toMatchObject({ status: 405, body: { error: 'method_not_allowed' } });
    expect(res.headers.get('allow')).toBe('POST');
  });

  it('with the secret: runs the worker and answers its report (nothing due here)', async () => {
    const res = await call(fn, bearer(WORKER_SECRET));
    expect(res.status, fn.output()).toBe(200);
    expect(res.body).toMatchObject({ topups: { claimed: 0 }, deliveries: { claimed: 0 } });
  });

  it('with the secret but the Data API unreachable: 500 worker_failed, for the next run to try again', async () => {
    const res = await call(noDataApi, bearer(WORKER_SECRET));
    expect(res.status, noDataApi.output()).toBe(500);
    expect(res.body).toMatchObject({ error: 'worker_failed' });
  });
});
