// The PostgREST stand-in (@creditkit/testing's postgrest.ts) driven by the real supabase-js client, over a
// throwaway creditkit database: result shapes, argument passing, auth and roles, and errors with
// PostgREST's codes and statuses. Test-only functions (pgrst_test_*) are added to the database
// for what the creditkit API cannot show (void, sets of scalars, request settings, any SQLSTATE).
import { createHmac, randomUUID } from 'node:crypto';
import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@creditkit/testing';
import { describeIfPostgres } from '@creditkit/testing/vitest';
import { noWebSocket, startPostgrestServer, type PostgrestServer } from '@creditkit/testing';

const FIXTURES = `
  create table public.pgrst_test_log (note text not null);
  create function public.pgrst_test_echo(p_value bigint) returns bigint
    language sql immutable as $$ select p_value $$;
  create function public.pgrst_test_series(p_n integer) returns setof bigint
    language sql immutable as $$ select 9007199254740993 + g from generate_series(1, p_n) g $$;
  create function public.pgrst_test_args(
    p_json jsonb default null, p_text text default 'the default', p_ints integer[] default null) returns jsonb
    language sql immutable as $$
      select jsonb_build_object('json', p_json, 'json_is_sql_null', p_json is null, 'text', p_text, 'ints', p_ints) $$;
  -- what the function sees of the request; stable, so it runs in a read-only transaction
  create function public.pgrst_test_context() returns jsonb
    language sql stable as $$
      select jsonb_build_object(
        'current_user', current_user,
        'claims', nullif(current_setting('request.jwt.claims', true), '')::jsonb,
        'method', current_setting('request.method', true),
        'path', current_setting('request.path', true),
        'headers', nullif(current_setting('request.headers', true), '')::jsonb,
        'read_only', current_setting('transaction_read_only')) $$;
  create function public.pgrst_test_read_only() returns text
    language sql volatile as $$ select current_setting('transaction_read_only') $$;
  create function public.pgrst_test_log_note(p_note text) returns void
    language sql volatile as $$ insert into public.pgrst_test_log values (p_note) $$;
  create function public.pgrst_test_raise(p_note text, p_code text) returns void
    language plpgsql volatile as $$
    begin
      insert into public.pgrst_test_log values (p_note);
      raise exception using errcode = p_code, message = 'raised ' || p_code, detail = 'the detail', hint = 'the hint';
    end $$;
  create function public.pgrst_test_overloaded(p_a integer) returns integer language sql immutable as $$ select 1 $$;
  create function public.pgrst_test_overloaded(p_a integer, p_b integer default 0) returns integer
    language sql immutable as $$ select 2 $$;
  grant select, insert on public.pgrst_test_log to anon, authenticated, service_role;
  do $$
  declare f regprocedure;
  begin
    for f in select oid::regprocedure from pg_proc where proname like 'pgrst_test_%' loop
      execute format('grant execute on function %s to anon, authenticated, service_role', f);
    end loop;
  end $$;
`;

describeIfPostgres('PostgREST stand-in', () => {
  let db: TestDatabase;
  let server: PostgrestServer;
  let service: SupabaseClient;
  let anon: SupabaseClient;

  const clientWith = (key: string, accessToken?: string, target: PostgrestServer = server): SupabaseClient =>
    createClient(target.url, key, {
      auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
      realtime: { transport: noWebSocket },
      global: accessToken === undefined ? {} : { headers: { Authorization: `Bearer ${accessToken}` } },
    });
  const asUser = (userId: string): SupabaseClient => clientWith(server.anonKey, server.userToken(userId));

  /** A raw POST, for what supabase-js hides: exact body text, headers, malformed input. */
  async function post(fn: string, body: string, headers: Record<string, string> = {}) {
    const res = await fetch(`${server.url}/rest/v1/rpc/${fn}`, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        apikey: server.serviceRoleKey,
        Authorization: `Bearer ${server.serviceRoleKey}`,
        ...headers,
      },
      body,
    });
    return { status: res.status, headers: res.headers, text: await res.text() };
  }

  const balanceOf = async (account: string): Promise<number | undefined> => {
    const [row] = await db.query<{ balance: string | number }>('select balance from creditkit.accounts where id = $1', [
      account,
    ]);
    return row === undefined ? undefined : Number(row.balance);
  };
  const logged = async (note: string): Promise<number> =>
    (await db.query('select 1 from public.pgrst_test_log where note = $1', [note])).length;

  beforeAll(async () => {
    db = await createTestDatabase({ backend: 'postgres' });
    await db.exec(FIXTURES);
    const url = db.url;
    if (url === undefined) throw new Error('the postgres backend has a URL');
    server = await startPostgrestServer({ connectionString: url, port: 0 });
    service = clientWith(server.serviceRoleKey);
    anon = clientWith(server.anonKey);
  });
  afterAll(async () => {
    await server?.close();
    await db?.drop();
  });

  // ── Result shapes ──────────────────────────────────────────────────────────────────────

  it('returns a function with OUT parameters as one object, and commits its work', async () => {
    const account = randomUUID();
    const { data, error, status } = await service.rpc('creditkit_grant', { p_account_id: account, p_amount: 100 });
    expect(error).toBeNull();
    expect(status).toBe(200);
    expect(data).toEqual({ transaction_id: expect.any(Number), grant_id: expect.any(Number), balance: 100 });
    expect(await balanceOf(account)).toBe(100);
  });

  it('returns a set-returning function (RETURNS TABLE) as an array of rows', async () => {
    const account = randomUUID();
    await service.rpc('creditkit_grant', { p_account_id: account, p_amount: 7 });
    await service.rpc('creditkit_consume', { p_account_id: account, p_amount: 2, p_event: 'api_call' });
    const { data, error, status } = await service.rpc('creditkit_history', { p_account_id: account });
    expect(error).toBeNull();
    expect(status).toBe(200);
    expect(data).toMatchObject([
      { kind: 'consume', amount: -2, balance_after: 5, event: 'api_call' },
      { kind: 'grant', amount: 7, balance_after: 7 },
    ]);
  });

  it('returns [] for an empty set and a bare JSON array for a set of scalars', async () => {
    expect(await service.rpc('pgrst_test_series', { p_n: 0 })).toMatchObject({ data: [], status: 200 });
    const { data } = await service.rpc('pgrst_test_series', { p_n: 2 });
    expect(data).toEqual([expect.any(Number), expect.any(Number)]);
  });

  it('returns a scalar bare: a boolean, and a jsonb value as-is', async () => {
    const userId = await db.createUser();
    await service.rpc('creditkit_grant', { p_account_id: userId, p_amount: 10 });
    const user = asUser(userId);
    expect(await user.rpc('creditkit_has_credits', { p_amount: 10 })).toMatchObject({
      data: true,
      error: null,
      status: 200,
    });
    expect(await user.rpc('creditkit_has_credits', { p_amount: 11 })).toMatchObject({
      data: false,
      error: null,
      status: 200,
    });
    const { data } = await service.rpc('pgrst_test_args', { p_text: 'x' });
    expect(data).toMatchObject({ text: 'x', json: null });
  });

  it('answers a void function with 204 and no body, after committing', async () => {
    const note = `void-${randomUUID()}`;
    const { data, error, status } = await service.rpc('pgrst_test_log_note', { p_note: note });
    expect({ data, error, status }).toEqual({ data: null, error: null, status: 204 });
    expect(await logged(note)).toBe(1);
  });

  it('sends JSON with Content-Type and Content-Range as PostgREST does', async () => {
    const single = await post('pgrst_test_echo', '{"p_value": 5}');
    expect(single.text).toBe('5');
    expect(single.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(single.headers.get('content-range')).toBe('0-0/*');
    expect((await post('pgrst_test_series', '{"p_n": 3}')).headers.get('content-range')).toBe('0-2/*');
    expect((await post('pgrst_test_series', '{"p_n": 0}')).headers.get('content-range')).toBe('*/*');
  });

  it('returns one object for .single() and PGRST116 (406) unless exactly one row', async () => {
    const one = await service.rpc('pgrst_test_series', { p_n: 1 }).single();
    expect(one).toMatchObject({ data: expect.any(Number), error: null, status: 200 });
    const two = await service.rpc('pgrst_test_series', { p_n: 2 }).single();
    expect(two.status).toBe(406);
    expect(two.error).toMatchObject({ code: 'PGRST116', details: 'The result contains 2 rows' });
  });

  // ── Arguments ──────────────────────────────────────────────────────────────────────────

  it('passes a bigint argument exactly (9007199254740993 is not a JS number)', async () => {
    const account = randomUUID();
    const raw = await post('creditkit_grant', `{"p_account_id": "${account}", "p_amount": 9007199254740993}`);
    expect(raw.status).toBe(400);
    const error = JSON.parse(raw.text) as { code: string; message: string };
    expect(error.code).toBe('CK001');
    // had the body gone through JSON.parse, Postgres would have seen ...992
    expect(error.message).toContain('invalid amount: 9007199254740993 ');
    // supabase-js sends a BigInt as a string, which reaches the bigint parameter as well
    const { error: viaClient, status } = await service.rpc('creditkit_grant', {
      p_account_id: account,
      p_amount: 9007199254740993n,
    });
    expect(status).toBe(400);
    expect(viaClient?.message).toContain('invalid amount: 9007199254740993 ');
  });

  it('sends bigint results exactly, as the text Postgres built', async () => {
    expect((await post('pgrst_test_echo', '{"p_value": 9223372036854775807}')).text).toBe('9223372036854775807');
    const series = await post('pgrst_test_series', '{"p_n": 2}');
    expect(series.text.replace(/\s/g, '')).toBe('[9007199254740994,9007199254740995]');
  });

  it('passes json as JSON, arrays as arrays, JSON null as SQL NULL, and omitted arguments as defaults', async () => {
    const given = await service.rpc('pgrst_test_args', { p_json: { a: [1, 'b'] }, p_text: 'hi', p_ints: [1, 2] });
    expect(given.data).toEqual({ json: { a: [1, 'b'] }, json_is_sql_null: false, text: 'hi', ints: [1, 2] });
    const nulls = await service.rpc('pgrst_test_args', { p_json: null, p_text: null });
    expect(nulls.data).toEqual({ json: null, json_is_sql_null: true, text: null, ints: null });
    const defaults = await service.rpc('pgrst_test_args', {});
    expect(defaults.data).toMatchObject({ text: 'the default' });
  });

  it('calls without arguments when the body is empty', async () => {
    const userId = await db.createUser();
    const raw = await post('creditkit_my_balance', '', { Authorization: `Bearer ${server.userToken(userId)}` });
    expect(raw.status).toBe(200);
    expect(JSON.parse(raw.text)).toMatchObject({ account_id: userId, balance: 0 });
  });

  it('refuses a malformed JSON body with PGRST102 (400)', async () => {
    const raw = await post('creditkit_grant', '{"p_account_id": ');
    expect(raw.status).toBe(400);
    expect(JSON.parse(raw.text)).toEqual({
      code: 'PGRST102',
      details: null,
      hint: null,
      message: 'Empty or invalid json',
    });
  });

  // ── Function lookup ────────────────────────────────────────────────────────────────────

  it('answers an unknown function with PGRST202 (404) in PostgREST wording', async () => {
    const { error, status } = await service.rpc('creditkit_grnt', { p_amount: 1, p_account_id: randomUUID() });
    expect(status).toBe(404);
    expect(error).toEqual({
      code: 'PGRST202',
      message: 'Could not find the function public.creditkit_grnt(p_account_id, p_amount) in the schema cache',
      details:
        'Searched for the function public.creditkit_grnt with parameters p_account_id, p_amount or with a single ' +
        'unnamed json/jsonb parameter, but no matches were found in the schema cache.',
      hint: 'Perhaps you meant to call the function public.creditkit_grant',
    });
    const none = await service.rpc('creditkit_nothing_like_this');
    expect(none.error?.message).toBe(
      'Could not find the function public.creditkit_nothing_like_this without parameters in the schema cache',
    );
  });

  it('answers an unknown or missing argument with PGRST202, hinting at the parameters', async () => {
    const unknown = await service.rpc('creditkit_grant', { p_account_id: randomUUID(), p_amount: 1, p_bogus: 1 });
    expect(unknown.status).toBe(404);
    expect(unknown.error).toMatchObject({
      code: 'PGRST202',
      message:
        'Could not find the function public.creditkit_grant(p_account_id, p_amount, p_bogus) in the schema cache',
    });
    // a near miss gets the closest parameter list (Data.FuzzySet, as PostgREST uses)
    const typo = await asUser(await db.createUser()).rpc('creditkit_has_credits', { p_amonut: 1, p_unit: 'credits' });
    expect(typo.error).toMatchObject({
      code: 'PGRST202',
      hint: 'Perhaps you meant to call the function public.creditkit_has_credits(p_account_id, p_amount, p_unit)',
    });
    const missing = await service.rpc('creditkit_grant', { p_account_id: randomUUID() });
    expect(missing).toMatchObject({ status: 404, error: { code: 'PGRST202' } });
    // a function without parameters takes no arguments
    const extra = await service.rpc('pgrst_test_context', { p_x: 1 });
    expect(extra).toMatchObject({
      status: 404,
      error: {
        code: 'PGRST202',
        message: 'Could not find the function public.pgrst_test_context(p_x) in the schema cache',
      },
    });
  });

  it('answers overloads that both fit with PGRST203 (300)', async () => {
    const { error, status } = await service.rpc('pgrst_test_overloaded', { p_a: 1 });
    expect(status).toBe(300);
    expect(error?.code).toBe('PGRST203');
    expect((await service.rpc('pgrst_test_overloaded', { p_a: 1, p_b: 2 })).data).toBe(2);
  });

  // ── Auth and roles ─────────────────────────────────────────────────────────────────────

  it('runs as the role and claims of the JWT, with the request settings PostgREST sets', async () => {
    const userId = await db.createUser();
    const token = server.userToken(userId);
    const { data } = await clientWith(server.anonKey, token).rpc('pgrst_test_context');
    expect(data).toMatchObject({
      current_user: 'authenticated',
      claims: { sub: userId, role: 'authenticated', aud: 'authenticated' },
      method: 'POST',
      path: '/rpc/pgrst_test_context',
      headers: { apikey: server.anonKey, authorization: `Bearer ${token}` },
      read_only: 'on', // stable: READ ONLY, as PostgREST runs it
    });
    expect((await service.rpc('pgrst_test_context')).data).toMatchObject({ current_user: 'service_role' });
    expect((await anon.rpc('pgrst_test_context')).data).toMatchObject({
      current_user: 'anon',
      claims: { role: 'anon' },
    });
    expect((await service.rpc('pgrst_test_read_only')).data).toBe('off');
  });

  it('reads the token from apikey when there is no Authorization header, and is anon without either', async () => {
    const call = async (headers: Record<string, string>) => {
      const res = await fetch(`${server.url}/rest/v1/rpc/pgrst_test_context`, { method: 'POST', headers });
      return ((await res.json()) as { current_user: string }).current_user;
    };
    expect(await call({ apikey: server.serviceRoleKey })).toBe('service_role');
    expect(await call({})).toBe('anon');
    expect(await call({ apikey: server.serviceRoleKey, Authorization: `Bearer ${server.anonKey}` })).toBe('anon');
  });

  it("gives a user their own balance, and auth.uid() is the token's sub", async () => {
    const userId = await db.createUser();
    await service.rpc('creditkit_grant', { p_account_id: userId, p_amount: 42 });
    const { data, error, status } = await asUser(userId).rpc('creditkit_my_balance');
    expect(error).toBeNull();
    expect(status).toBe(200);
    expect(data).toMatchObject({ account_id: userId, balance: 42 });
    const other = await asUser(await db.createUser()).rpc('creditkit_my_balance', { p_account_id: userId });
    expect(other).toMatchObject({ status: 400, error: { code: 'CK005' } });
  });

  it('answers 42501 with 401 for anon and 403 for a signed-in user', async () => {
    const args = { p_account_id: randomUUID(), p_amount: 1 };
    const asAnon = await anon.rpc('creditkit_grant', args);
    expect(asAnon.status).toBe(401);
    expect(asAnon.error?.code).toBe('42501');
    const asAuthenticated = await asUser(await db.createUser()).rpc('creditkit_grant', args);
    expect(asAuthenticated.status).toBe(403);
    expect(asAuthenticated.error?.code).toBe('42501');
    const raw = await post('creditkit_grant', JSON.stringify(args), {
      apikey: server.anonKey,
      Authorization: `Bearer ${server.anonKey}`,
    });
    expect(raw.headers.get('www-authenticate')).toBe('Bearer');
    expect(await balanceOf(args.p_account_id)).toBeUndefined();
  });

  it('refuses a bad signature, an expired token and a malformed one with PGRST301 (401)', async () => {
    const claims = { role: 'service_role', exp: Math.floor(Date.now() / 1000) + 60 };
    // the same claims signed with the server's secret pass, so the secret is what fails below
    const good = await clientWith(server.anonKey, signHs256(server.jwtSecret, claims)).rpc('pgrst_test_context');
    expect(good.status).toBe(200);
    const bad = await clientWith(server.anonKey, signHs256('another-secret-of-at-least-32-chars', claims)).rpc(
      'pgrst_test_context',
    );
    expect(bad.status).toBe(401);
    expect(bad.error).toEqual({ code: 'PGRST301', details: null, hint: null, message: 'JWSError JWSInvalidSignature' });

    const now = Math.floor(Date.now() / 1000);
    const expired = await clientWith(server.anonKey, server.signJwt({ role: 'service_role', exp: now - 3600 })).rpc(
      'pgrst_test_context',
    );
    expect(expired.status).toBe(401);
    expect(expired.error).toMatchObject({ code: 'PGRST301', message: 'JWT expired' });
    // PostgREST allows 30 seconds of clock skew
    const justExpired = await clientWith(server.anonKey, server.signJwt({ role: 'service_role', exp: now - 5 })).rpc(
      'pgrst_test_context',
    );
    expect(justExpired.status).toBe(200);

    const malformed = await clientWith(server.anonKey, 'not-a-jwt').rpc('pgrst_test_context');
    expect(malformed.status).toBe(401);
    expect(malformed.error).toMatchObject({
      code: 'PGRST301',
      message: expect.stringContaining('Expected 3 parts; got 1'),
    });
  });

  it('refuses roles the authenticator cannot switch to', async () => {
    const existing = await clientWith(server.anonKey, server.signJwt({ role: 'postgres' })).rpc('pgrst_test_context');
    expect(existing).toMatchObject({
      status: 403,
      error: { code: '42501', message: 'permission denied to set role "postgres"' },
    });
    const unknown = await clientWith(server.anonKey, server.signJwt({ role: 'no_such_role' })).rpc(
      'pgrst_test_context',
    );
    expect(unknown).toMatchObject({
      status: 400,
      error: { code: '22023', message: 'role "no_such_role" does not exist' },
    });
  });

  // ── Errors ─────────────────────────────────────────────────────────────────────────────

  it('answers CK002 with 400 and its JSON detail as details, unchanged', async () => {
    const account = randomUUID();
    await service.rpc('creditkit_grant', { p_account_id: account, p_amount: 100 });
    const { data, error, status } = await service.rpc('creditkit_consume_or_raise', {
      p_account_id: account,
      p_amount: 250,
    });
    expect(data).toBeNull();
    expect(status).toBe(400);
    expect(error?.code).toBe('CK002');
    expect(JSON.parse(error?.details ?? 'null')).toEqual({ balance: 100, required: 250, unit: 'credits' });
    expect(await balanceOf(account)).toBe(100);
  });

  it("maps SQLSTATEs to PostgREST's statuses, passes detail and hint, and rolls back", async () => {
    const cases: [string, number][] = [
      ['P0001', 400],
      ['CK001', 400],
      ['22P02', 400],
      ['23505', 409],
      ['23503', 409],
      ['25006', 405],
      ['40001', 500],
      ['40P01', 500],
      ['53300', 503],
      ['53400', 500],
      ['42883', 404],
      ['42P01', 404],
      ['0P000', 403],
      ['28000', 403],
      ['08006', 503],
      ['P0002', 500],
      ['XX000', 500],
      ['PT402', 402],
      ['42501', 403],
    ];
    for (const [code, expected] of cases) {
      const note = `${code}-${randomUUID()}`;
      const { error, status } = await service.rpc('pgrst_test_raise', { p_note: note, p_code: code });
      expect({ code, status }).toEqual({ code, status: expected });
      expect(error).toEqual({ code, message: `raised ${code}`, details: 'the detail', hint: 'the hint' });
      expect(await logged(note)).toBe(0);
    }
  });

  it('answers other paths with 404 and other methods with 405', async () => {
    const other = await fetch(`${server.url}/rest/v1/creditkit_accounts`, {
      headers: { apikey: server.serviceRoleKey },
    });
    expect(other.status).toBe(404);
    expect(((await other.json()) as { code: string }).code).toBe('PGRST125');
    const patch = await fetch(`${server.url}/rest/v1/rpc/pgrst_test_context`, {
      method: 'PATCH',
      headers: { apikey: server.serviceRoleKey },
    });
    expect(patch.status).toBe(405);
    expect(((await patch.json()) as { message: string }).message).toBe('Cannot use the PATCH method on RPC');
  });

  it('answers 503 PGRST000 when it cannot reach the database', async () => {
    const url = new URL(db.url ?? '');
    url.pathname = `/creditkit_no_such_database_${randomUUID().slice(0, 8)}`;
    const down = await startPostgrestServer({ connectionString: url.toString() });
    try {
      const { error, status } = await clientWith(down.serviceRoleKey, undefined, down).rpc('creditkit_grant', {
        p_account_id: randomUUID(),
        p_amount: 1,
      });
      expect(status).toBe(503);
      expect(error).toMatchObject({
        code: 'PGRST000',
        message: 'Database connection error. Retrying the connection.',
        details: expect.stringContaining('does not exist'),
      });
    } finally {
      await down.close();
    }
  });

  it('runs concurrent requests in their own transactions and counts them', async () => {
    const account = randomUUID();
    await service.rpc('creditkit_grant', { p_account_id: account, p_amount: 1 });
    const before = server.requests;
    const results = await Promise.all(
      Array.from({ length: 20 }, () => service.rpc('creditkit_grant', { p_account_id: account, p_amount: 1 })),
    );
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(server.requests - before).toBe(20);
    expect(await balanceOf(account)).toBe(21);
  });
});

/** An HS256 JWT, written independently of the server's signer. */
function signHs256(secret: string, claims: object): string {
  const part = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}
