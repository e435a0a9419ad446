// A test-only stand-in for the part of PostgREST that supabase-js `.rpc()` talks to:
// `POST /rest/v1/rpc/<fn>` over a real Postgres database. There is no Docker here, so the real
// PostgREST cannot run; this server reproduces what a contract test can observe of PostgREST
// v12 (the version Supabase runs), taken from its source (src/PostgREST/Error.hs, Auth.hs,
// ApiRequest/Payload.hs, Plan.hs, Response.hs at v12.2):
//
// - Auth: HS256 JWT from `Authorization: Bearer` (or, like the gateway in front of Supabase's
//   PostgREST, from `apikey` when there is no Authorization header). No token means the anon
//   role. Failures are 401 PGRST301 with PostgREST's messages ("JWT expired", "JWSError
//   JWSInvalidSignature", ...). The `role` claim picks the database role; like Supabase's
//   authenticator, only anon, authenticated and service_role can be switched to.
// - Function lookup by name and the set of argument keys, as PostgREST's schema cache does;
//   PGRST202 (404) when nothing matches, PGRST203 (300) when several overloads do.
// - One transaction per request: `begin` (READ ONLY for stable/immutable functions, as
//   PostgREST does for POST), set_config of search_path, role, request.jwt.claims,
//   request.method, request.path, request.headers, request.cookies; the call; commit (rollback
//   on any error).
// - Arguments are extracted from the raw body in SQL (never parsed into JS numbers), and the
//   response JSON is built by Postgres and sent as-is, so bigints are exact in both directions.
// - Results: set-returning -> array, composite (OUT params, RETURNS TABLE, row types) -> object,
//   scalar -> bare JSON value, void -> 204. Errors -> {code, details, hint, message} with
//   PostgREST's SQLSTATE -> HTTP status mapping (pgErrorStatus below).
//
// Not implemented: GET/HEAD calls, query-string filters or `select`, non-JSON bodies, CSV/plan
// media types, Prefer: tx/params/missing, db-pre-request, per-function settings other than the
// isolation level.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';

export interface PostgrestServer {
  /** Base URL, e.g. http://127.0.0.1:54321; createClient(url, key) appends /rest/v1. */
  url: string;
  jwtSecret: string;
  /** HS256 JWT {role: 'anon'}. */
  anonKey: string;
  /** HS256 JWT {role: 'service_role'}. */
  serviceRoleKey: string;
  /** Signs claims with jwtSecret (HS256), adding iat and exp (1 hour) when absent. */
  signJwt(claims: Record<string, unknown>): string;
  /** A signed-in user's access token: {sub: userId, role: 'authenticated', aud: 'authenticated', ...extra}. */
  userToken(userId: string, extra?: Record<string, unknown>): string;
  /** How many requests reached /rest/v1/rpc/ so far, whatever their outcome. */
  readonly requests: number;
  /** Stops the server and ends its connection pool. */
  close(): Promise<void>;
}

export interface PostgrestServerOptions {
  /** A superuser connection string for the database to serve. */
  connectionString: string;
  /** Default: 32 random bytes, base64url. */
  jwtSecret?: string;
  /** Default 0: a free port. */
  port?: number;
}

/**
 * supabase-js builds a realtime client, which wants a WebSocket constructor that Node 20 lacks.
 * Pass `realtime: { transport: noWebSocket }` to createClient in tests that never subscribe;
 * it throws if a socket is ever opened.
 */
export const noWebSocket: new (address: string | URL) => never = class {
  constructor() {
    throw new Error('realtime is not available in these tests (Node 20 has no WebSocket)');
  }
} as unknown as new (address: string | URL) => never;

// ── JWT (HS256) ────────────────────────────────────────────────────────────────────────────

const TEN_YEARS = 10 * 365 * 24 * 3600;
/** PostgREST v12 accepts exp/nbf up to 30 seconds off. */
const CLOCK_SKEW = 30;

const nowSeconds = (): number => Math.floor(Date.now() / 1000);
const base64url = (data: string | Buffer): string => Buffer.from(data).toString('base64url');
const hmac = (secret: string, input: string): Buffer => createHmac('sha256', secret).update(input).digest();

function signHs256(claims: Record<string, unknown>, secret: string): string {
  const input = `${base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${base64url(JSON.stringify(claims))}`;
  return `${input}.${base64url(hmac(secret, input))}`;
}

type Claims = Record<string, unknown>;

/** The token's claims, or PostgREST v12's message for why it was refused. */
function verifyHs256(token: string, secret: string, now: number): { claims: Claims } | { refused: string } {
  const parts = token.split('.');
  if (parts.length !== 3) {
    return { refused: `JWSError (CompactDecodeError Invalid number of parts: Expected 3 parts; got ${parts.length})` };
  }
  const [header, payload, signature] = parts as [string, string, string];
  const decode = (part: string): unknown => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  let alg: unknown;
  try {
    alg = (decode(header) as { alg?: unknown } | null)?.alg;
  } catch {
    return { refused: 'JWSError (CompactDecodeError Invalid JSON in JWS header)' };
  }
  const expected = hmac(secret, `${header}.${payload}`);
  const given = Buffer.from(signature, 'base64url');
  // timingSafeEqual needs equal lengths; a length mismatch is a bad signature anyway
  if (alg !== 'HS256' || given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { refused: 'JWSError JWSInvalidSignature' };
  }
  let claims: unknown;
  try {
    claims = decode(payload);
  } catch {
    return { refused: 'JWTClaimsSetDecodeError "Invalid JSON"' };
  }
  if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) {
    return { refused: 'JWTClaimsSetDecodeError "expected Object"' };
  }
  const { exp, nbf } = claims as Claims;
  if (exp !== undefined && typeof exp !== 'number')
    return { refused: 'JWTClaimsSetDecodeError "exp: expected Number"' };
  if (nbf !== undefined && typeof nbf !== 'number')
    return { refused: 'JWTClaimsSetDecodeError "nbf: expected Number"' };
  if (exp !== undefined && now > exp + CLOCK_SKEW) return { refused: 'JWT expired' };
  if (nbf !== undefined && now + CLOCK_SKEW < nbf) return { refused: 'JWTNotYetValid' };
  return { claims: claims as Claims };
}

// ── Errors ─────────────────────────────────────────────────────────────────────────────────

/** An error response: PostgREST's JSON body plus its HTTP status and extra headers. */
class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: string | null = null,
    readonly hint: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  /** Keys in Aeson's (alphabetical) order, as PostgREST prints them. */
  body(): string {
    return JSON.stringify({ code: this.code, details: this.details, hint: this.hint, message: this.message });
  }
}

/** PostgREST v12's pgErrorStatus (src/PostgREST/Error.hs): SQLSTATE -> HTTP status. */
export function pgErrorStatus(sqlstate: string, message: string, authenticated: boolean): number {
  const exact: Record<string, number> = {
    '23503': 409, // foreign_key_violation
    '23505': 409, // unique_violation
    '25006': 405, // read_only_sql_transaction
    '53400': 500, // configuration_limit_exceeded
    '57P01': 503, // admin_shutdown
    P0001: 400, // RAISE's default
    '42P01': 404, // undefined_table
    '42P17': 500, // infinite recursion
  };
  if (sqlstate in exact) return exact[sqlstate]!;
  // pg-safeupdate's "DELETE requires a WHERE clause" is a client error; other 21000s are not
  if (sqlstate === '21000') return message.endsWith('requires a WHERE clause') ? 400 : 500;
  if (sqlstate === '42883') return message.startsWith('function xmlagg(') ? 406 : 404;
  if (sqlstate === '42501') return authenticated ? 403 : 401;
  // RAISE SQLSTATE 'PT402' chooses the status itself
  if (/^PT\d{3}$/.test(sqlstate)) return Number(sqlstate.slice(2));
  const byClass: Record<string, number> = {
    '08': 503,
    '09': 500,
    '0L': 403,
    '0P': 403,
    '25': 500,
    '28': 403,
    '2D': 500,
    '38': 500,
    '39': 500,
    '3B': 500,
    '40': 500,
    '53': 503,
    '54': 500,
    '55': 500,
    '57': 500,
    '58': 500,
    F0: 500,
    HV: 500,
    P0: 500,
    XX: 500,
  };
  // everything else, including 22*, 23* and custom classes such as CK*, is a client error
  return byClass[sqlstate.slice(0, 2)] ?? 400;
}

function fromPgError(err: pg.DatabaseError, authenticated: boolean): ApiError {
  const code = err.code ?? 'XX000';
  // RAISE SQLSTATE 'PGRST' with a JSON message and detail: full control of the response
  if (code === 'PGRST') {
    try {
      const msg = JSON.parse(err.message) as { code: string; message: string; details?: string; hint?: string };
      const det = JSON.parse(err.detail ?? '') as { status: number; headers?: Record<string, string> };
      return new ApiError(det.status, msg.code, msg.message, msg.details ?? null, msg.hint ?? null, det.headers ?? {});
    } catch {
      return new ApiError(500, 'PGRST121', `Could not parse JSON in the "RAISE SQLSTATE 'PGRST'" error`);
    }
  }
  const status = pgErrorStatus(code, err.message, authenticated);
  return new ApiError(
    status,
    code,
    err.message,
    err.detail ?? null,
    err.hint ?? null,
    status === 401 ? { 'WWW-Authenticate': 'Bearer' } : {},
  );
}

const connectionError = (err: unknown): ApiError =>
  new ApiError(
    503,
    'PGRST000',
    'Database connection error. Retrying the connection.',
    String((err as Error)?.message ?? err),
  );

const clientError = (err: unknown): ApiError =>
  new ApiError(
    503,
    'PGRST001',
    'Database client error. Retrying the connection.',
    String((err as Error)?.message ?? err),
  );

const jwtError = (message: string): ApiError =>
  new ApiError(401, 'PGRST301', message, null, null, {
    'WWW-Authenticate': `Bearer error="invalid_token", error_description=${JSON.stringify(message)}`,
  });

// ── Schema cache: the functions of schema public, looked up by name ────────────────────────

interface Param {
  name: string;
  /** format_type(), as PostgREST names it in messages. */
  type: string;
  /** How the argument is read from the body: json/jsonb as JSON, arrays and rows via a record, else as text. */
  kind: 'json' | 'record' | 'text';
  required: boolean;
  variadic: boolean;
}

interface Routine {
  name: string;
  params: Param[];
  returnsSet: boolean;
  returnsComposite: boolean;
  returnsVoid: boolean;
  /** Stable and immutable functions run in a READ ONLY transaction. */
  readOnly: boolean;
  /** From `set default_transaction_isolation` on the function. */
  isolation: string;
}

// Input parameters (modes i, b, v) in order; OUT and TABLE columns only shape the result.
const ROUTINES_SQL = `
  select p.proname as name,
         p.proretset as returns_set,
         p.provolatile in ('s', 'i') as read_only,
         p.prorettype = 'pg_catalog.void'::regtype as returns_void,
         rt.typtype = 'c' or coalesce(p.proargmodes::text[] && '{t,b,o}', false) as returns_composite,
         p.pronargdefaults as n_defaults,
         (select substr(c, length('default_transaction_isolation=') + 1) from unnest(p.proconfig) c
           where c like 'default_transaction_isolation=%') as isolation,
         coalesce((
           select json_agg(json_build_object(
                    'name', coalesce(a.name, ''),
                    'type', pg_catalog.format_type(a.type, null),
                    'mode', a.mode,
                    'kind', case
                              when coalesce(nullif(t.typbasetype, 0), t.oid) in ('json'::regtype, 'jsonb'::regtype) then 'json'
                              when t.typcategory = 'A' or t.typtype = 'c' then 'record'
                              else 'text'
                            end)
                  order by a.ord)
             from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]),
                         coalesce(p.proargmodes::text[], array_fill('i'::text, array[p.pronargs::int])),
                         coalesce(p.proargnames, '{}'))
                  with ordinality as a(type, mode, name, ord)
             join pg_catalog.pg_type t on t.oid = a.type
            where a.mode in ('i', 'b', 'v')), '[]') as params
    from pg_catalog.pg_proc p
    join pg_catalog.pg_type rt on rt.oid = p.prorettype
   where p.pronamespace = 'public'::regnamespace and p.proname = $1
     and p.prokind = 'f' and p.prorettype <> 'pg_catalog.trigger'::regtype`;

interface RoutineRow {
  name: string;
  returns_set: boolean;
  read_only: boolean;
  returns_void: boolean;
  returns_composite: boolean;
  n_defaults: number;
  isolation: string | null;
  params: { name: string; type: string; mode: string; kind: Param['kind'] }[];
}

function toRoutine(row: RoutineRow): Routine {
  // pronargdefaults counts the trailing input parameters that have a default
  const firstOptional = row.params.length - row.n_defaults;
  return {
    name: row.name,
    returnsSet: row.returns_set,
    returnsComposite: row.returns_composite,
    returnsVoid: row.returns_void && !row.returns_set,
    readOnly: row.read_only,
    isolation: (row.isolation ?? 'read committed').toUpperCase(),
    params: row.params.map((p, i) => ({
      name: p.name,
      type: p.type,
      kind: p.kind,
      required: i < firstOptional,
      variadic: p.mode === 'v',
    })),
  };
}

const isJsonType = (type: string): boolean => type === 'json' || type === 'jsonb';

type Match = { routine: Routine; wholeBody: boolean };

/** PostgREST's findProc (Plan.hs): the overload whose parameters fit the argument keys. */
async function findRoutine(
  name: string,
  keys: Set<string>,
  overloads: Routine[],
  allNames: () => Promise<string[]>,
): Promise<Match> {
  // every key names a parameter, and every parameter without a default has a key
  const fits = (r: Routine): boolean => {
    if (r.params.length === 0) return keys.size === 0;
    const names = new Set(r.params.map((p) => p.name));
    return [...keys].every((k) => names.has(k)) && r.params.every((p) => !p.required || keys.has(p.name));
  };
  const named = overloads.filter(fits);
  // fallback: a function with a single unnamed json/jsonb parameter receives the whole body
  const single = overloads.filter(
    (r) => r.params.length === 1 && r.params[0]!.name === '' && isJsonType(r.params[0]!.type),
  );
  const chosen = named.length > 0 ? named : single;
  if (chosen.length === 1) return { routine: chosen[0]!, wholeBody: named.length === 0 };
  if (chosen.length > 1) {
    const signatures = chosen.map(
      (r) => `public.${r.name}(${r.params.map((p) => `${p.name} => ${p.type}`).join(', ')})`,
    );
    throw new ApiError(
      300,
      'PGRST203',
      `Could not choose the best candidate function between: ${signatures.join(', ')}`,
      null,
      'Try renaming the parameters or the function itself in the database so function overloading can be resolved',
    );
  }

  const sorted = [...keys].sort();
  const fn = `public.${name}`;
  const listed = sorted.join(', ');
  const message = `Could not find the function ${fn}${sorted.length === 0 ? ' without parameters' : `(${listed})`} in the schema cache`;
  const details = `Searched for the function ${fn}${
    sorted.length === 0 ? ' without parameters' : ` with parameter${sorted.length > 1 ? 's' : ''} ${listed}`
  } or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.`;
  // The hint names the closest overload's parameters or, when there is none, the closest function.
  const paramList = (names: string[]): string => `(${[...names].sort().join(', ')})`;
  let suggestion: string | undefined;
  if (overloads.length > 0) {
    const params = fuzzyBest(
      paramList(sorted),
      overloads.map((r) => paramList(r.params.map((p) => p.name))),
    );
    suggestion = params === undefined ? undefined : `${name}${params}`;
  } else {
    suggestion = fuzzyBest(name, await allNames());
  }
  const hint = suggestion === undefined ? null : `Perhaps you meant to call the function public.${suggestion}`;
  throw new ApiError(404, 'PGRST202', message, details, hint);
}

/**
 * The best match of Haskell's Data.FuzzySet `getOne` (minimum score 0.33), which PostgREST uses
 * for hints: candidates sharing 3-grams (else 2-grams) of the normalized, '-'-padded strings,
 * the 50 best by cosine similarity re-scored as 1 - Levenshtein distance / longer length of
 * the lower-cased strings, the best of those scoring at least 0.33.
 */
function fuzzyBest(query: string, candidates: string[], minScore = 0.33): string | undefined {
  const key = query.toLowerCase();
  const exact = candidates.find((c) => c.toLowerCase() === key);
  if (exact !== undefined) return exact;
  const grams = (s: string, n: number): Map<string, number> => {
    // Data.FuzzySet.normalized keeps letters, digits, spaces and commas
    const padded = `-${s.toLowerCase().replace(/[^\p{L}\p{N}\s,]/gu, '')}-`;
    const counts = new Map<string, number>();
    for (let i = 0; i + n <= padded.length; i++)
      counts.set(padded.slice(i, i + n), (counts.get(padded.slice(i, i + n)) ?? 0) + 1);
    return counts;
  };
  const magnitude = (v: Map<string, number>): number => Math.hypot(...v.values());
  for (const n of [3, 2]) {
    const q = grams(query, n);
    const best = candidates
      .map((c) => {
        const v = grams(c, n);
        let dot = 0;
        for (const [g, k] of q) dot += k * (v.get(g) ?? 0);
        return { c, cosine: dot / (magnitude(q) * magnitude(v)) };
      })
      .filter((m) => m.cosine > 0)
      .sort((a, b) => b.cosine - a.cosine)
      .slice(0, 50)
      .map(({ c }) => {
        const entry = c.toLowerCase();
        return { c, score: 1 - levenshtein(key, entry) / Math.max(key.length, entry.length) };
      })
      .filter((m) => m.score >= minScore)
      .sort((a, b) => b.score - a.score);
    if (best.length > 0) return best[0]!.c;
  }
  return undefined;
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

// ── The call ───────────────────────────────────────────────────────────────────────────────

/** character and bit without a length mean length 1 in a cast; PostgREST passes them unbounded. */
const castType = (type: string): string =>
  type.replace(/^character(?=\[|$)/, 'bpchar').replace(/^bit(?=\[|$)/, 'bit varying');

/** One argument read from the request body (pgrst_body.args, jsonb); a JSON null is SQL NULL. */
function argument(p: Param): string {
  const value = `pgrst_body.args -> ${pg.escapeLiteral(p.name)}`;
  switch (p.kind) {
    case 'json':
      return `nullif(${value}, 'null'::jsonb)::${castType(p.type)}`;
    case 'record': // arrays and row types take their JSON form, as PostgREST's json_to_record does
      return `(select r.v from jsonb_to_record(jsonb_build_object('v', ${value})) as r(v ${castType(p.type)}))`;
    case 'text':
      return `(pgrst_body.args ->> ${pg.escapeLiteral(p.name)})::${castType(p.type)}`;
  }
}

/**
 * The statement that calls the function and returns its JSON response (`body`, text, built in
 * SQL so numbers keep every digit) and row count. $1 is the request body when there are arguments.
 */
function callSql(match: Match, keys: Set<string>, singular: boolean): { text: string; usesBody: boolean } {
  const { routine, wholeBody } = match;
  const given = wholeBody ? [] : routine.params.filter((p) => keys.has(p.name));
  const args = wholeBody
    ? `pgrst_body.args::${castType(routine.params[0]!.type)}`
    : given.map((p) => `${p.variadic ? 'variadic ' : ''}${pg.escapeIdentifier(p.name)} => ${argument(p)}`).join(', ');
  const call = `public.${pg.escapeIdentifier(routine.name)}(${args})`;
  const usesBody = wholeBody || given.length > 0;
  const composite = routine.returnsComposite;
  const source = composite ? `${call} pgrst_call` : `(select ${call} as pgrst_scalar) pgrst_call`;
  const from = usesBody ? `(select $1::jsonb as args) pgrst_body cross join lateral ${source}` : source;
  const row = composite ? 'pgrst_call' : 'pgrst_call.pgrst_scalar';
  // a set is an array unless one object was asked for; a single value is the array's element
  const body = routine.returnsVoid
    ? 'null::text'
    : routine.returnsSet && !singular
      ? `coalesce(json_agg(${row})::text, '[]')`
      : `coalesce((json_agg(${row}) -> 0)::text, 'null')`;
  return { text: `select ${body} as body, count(*)::int as page_total from ${from}`, usesBody };
}

// ── HTTP ───────────────────────────────────────────────────────────────────────────────────

const ALLOWED_ROLES = new Set(['anon', 'authenticated', 'service_role']);
const JSON_TYPE = 'application/json; charset=utf-8';
const OBJECT_TYPE = 'application/vnd.pgrst.object+json; charset=utf-8';

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** The argument keys of a body, as PostgREST's payload parser sees them. */
function bodyKeys(raw: string): Set<string> {
  let json: unknown;
  try {
    // an empty body calls the function without arguments
    json = raw === '' ? {} : JSON.parse(raw);
  } catch {
    throw new ApiError(400, 'PGRST102', 'Empty or invalid json');
  }
  if (Array.isArray(json)) {
    const first: unknown = json[0];
    if (json.length === 0 || typeof first !== 'object' || first === null) return new Set();
    const keys = Object.keys(first).sort().join('\0');
    const uniform = json.every(
      (o) => typeof o === 'object' && o !== null && !Array.isArray(o) && Object.keys(o).sort().join('\0') === keys,
    );
    if (!uniform) throw new ApiError(400, 'PGRST102', 'All object keys must match');
    // PostgREST passes the array to json_to_record, which Postgres refuses
    throw new ApiError(400, '22023', 'cannot call json_to_record on an array');
  }
  return typeof json === 'object' && json !== null ? new Set(Object.keys(json)) : new Set();
}

/** Which representation the Accept header asks for; PGRST107 (406) for anything else. */
function negotiate(accept: string | undefined): 'array' | 'object' {
  if (!accept) return 'array';
  for (const range of accept.split(',')) {
    const type = range.split(';')[0]!.trim().toLowerCase();
    if (['*/*', 'application/*', 'application/json', 'application/vnd.pgrst.array+json'].includes(type)) return 'array';
    if (type === 'application/vnd.pgrst.object+json') return 'object';
  }
  throw new ApiError(
    406,
    'PGRST107',
    `None of these media types are available: ${accept
      .split(',')
      .map((s) => s.trim())
      .join(', ')}`,
  );
}

function parseCookies(header: string | undefined): Record<string, string> {
  const cookies: Record<string, string> = {};
  for (const pair of header?.split(';') ?? []) {
    const at = pair.indexOf('=');
    if (at > 0) cookies[pair.slice(0, at).trim()] = pair.slice(at + 1).trim();
  }
  return cookies;
}

function send(res: ServerResponse, status: number, body: string | null, headers: Record<string, string> = {}): void {
  const all: Record<string, string> = { ...headers };
  if (body !== null) {
    all['Content-Type'] ??= JSON_TYPE;
    all['Content-Length'] = String(Buffer.byteLength(body));
  }
  res.writeHead(status, all);
  res.end(body ?? undefined);
}

export async function startPostgrestServer(opts: PostgrestServerOptions): Promise<PostgrestServer> {
  const jwtSecret = opts.jwtSecret ?? randomBytes(32).toString('base64url');
  const pool = new pg.Pool({ connectionString: opts.connectionString, max: 10 });
  // an idle connection that dies (e.g. when the test database is dropped) must not crash the run
  pool.on('error', () => {});
  const cache = new Map<string, Routine[]>();
  let requests = 0;

  const signJwt = (claims: Record<string, unknown>): string => {
    const iat = nowSeconds();
    return signHs256({ iat, exp: iat + 3600, ...claims }, jwtSecret);
  };

  /** The role and claims of a request (PostgREST's Auth.hs); no token means anon. */
  function authenticate(req: IncomingMessage): { role: string; claims: Claims } {
    const authorization = req.headers.authorization;
    const apikey = req.headers.apikey;
    let token = '';
    if (authorization !== undefined) {
      const [scheme, ...rest] = authorization.trim().split(/\s+/);
      if (scheme?.toLowerCase() === 'bearer') token = rest.join(' ');
    } else if (typeof apikey === 'string') {
      token = apikey.trim();
    }
    if (token === '') return { role: 'anon', claims: { role: 'anon' } };
    const verified = verifyHs256(token, jwtSecret, nowSeconds());
    if ('refused' in verified) throw jwtError(verified.refused);
    const claim = verified.claims.role;
    const role = claim === undefined ? 'anon' : typeof claim === 'string' ? claim : JSON.stringify(claim);
    return { role, claims: { ...verified.claims, role } };
  }

  /** The overloads of public.<name>, cached once found (PostgREST's schema cache). */
  async function routines(client: pg.PoolClient, name: string): Promise<Routine[]> {
    const cached = cache.get(name);
    if (cached) return cached;
    const rows = (await client.query<RoutineRow>(ROUTINES_SQL, [name])).rows.map(toRoutine);
    if (rows.length > 0) cache.set(name, rows);
    return rows;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = /^\/rest\/v1\/rpc\/([^/]+)\/?$/.exec(url.pathname);
    if (path) requests++;
    // like PostgREST, authentication comes first, whatever the path
    const { role, claims } = authenticate(req);
    if (!path) throw new ApiError(404, 'PGRST125', 'Invalid path specified in request URL');
    const name = decodeURIComponent(path[1]!);
    const method = req.method ?? 'GET';
    if (method !== 'POST') {
      throw new ApiError(
        405,
        'PGRST101',
        ['GET', 'HEAD'].includes(method)
          ? `The test PostgREST server does not implement ${method} on RPC`
          : `Cannot use the ${method} method on RPC`,
      );
    }
    if ([...url.searchParams.keys()].length > 0) {
      throw new ApiError(400, 'PGRST100', 'The test PostgREST server does not implement query parameters on RPC');
    }
    const contentType = req.headers['content-type']?.split(';')[0]?.trim().toLowerCase();
    if (contentType !== undefined && contentType !== 'application/json') {
      throw new ApiError(400, 'PGRST102', `Content-Type not acceptable: ${contentType}`);
    }
    const representation = negotiate(req.headers.accept);
    const raw = await readBody(req);
    const keys = bodyKeys(raw);
    const authenticated = role !== 'anon';

    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      throw connectionError(err);
    }
    let broken = false;
    try {
      let match: Match;
      try {
        match = await findRoutine(name, keys, await routines(client, name), () => functionNames(client));
      } catch (err) {
        if (err instanceof ApiError) throw err;
        throw err instanceof pg.DatabaseError ? fromPgError(err, authenticated) : clientError(err);
      }
      if (!ALLOWED_ROLES.has(role)) throw await refusedRole(client, role);

      const { routine } = match;
      const singular = representation === 'object';
      const call = callSql(match, keys, singular);
      const headers = Object.fromEntries(
        Object.entries(req.headers)
          .filter(([k]) => k !== 'cookie')
          .map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : (v ?? '')]),
      );
      const begin = beginSql(routine, {
        search_path: '"public", "extensions"',
        role,
        'request.jwt.claims': JSON.stringify(claims),
        'request.method': method,
        'request.path': `/rpc/${name}`,
        'request.headers': JSON.stringify(headers),
        'request.cookies': JSON.stringify(parseCookies(req.headers.cookie)),
      });

      let result: { body: string | null; page_total: number };
      try {
        await client.query(begin);
        const rows = (await client.query<typeof result>({ text: call.text, values: call.usesBody ? [raw] : [] })).rows;
        result = rows[0] ?? { body: null, page_total: 0 };
        if (singular && result.page_total !== 1) {
          throw new ApiError(
            406,
            'PGRST116',
            'Cannot coerce the result to a single JSON object',
            `The result contains ${result.page_total} rows`,
          );
        }
        await client.query('commit');
      } catch (err) {
        await client.query('rollback').catch(() => {
          broken = true;
        });
        if (err instanceof ApiError) throw err;
        if (err instanceof pg.DatabaseError) throw fromPgError(err, authenticated);
        broken = true;
        throw clientError(err);
      }

      const n = result.page_total;
      const total = /count=(exact|planned|estimated)/.test(String(req.headers.prefer ?? '')) ? String(n) : '*';
      const contentRange = n === 0 ? `*/${total}` : `0-${n - 1}/${total}`;
      if (routine.returnsVoid) send(res, 204, null, { 'Content-Range': contentRange });
      else
        send(res, 200, result.body ?? 'null', {
          'Content-Range': contentRange,
          'Content-Type': singular ? OBJECT_TYPE : JSON_TYPE,
        });
    } finally {
      client.release(broken);
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const error =
        err instanceof ApiError ? err : new ApiError(500, 'PGRSTX00', String((err as Error)?.message ?? err));
      if (!res.headersSent) send(res, error.status, error.body(), error.headers);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  let closing: Promise<void> | undefined;
  const now = nowSeconds();
  return {
    url: `http://127.0.0.1:${port}`,
    jwtSecret,
    anonKey: signJwt({ role: 'anon', exp: now + TEN_YEARS }),
    serviceRoleKey: signJwt({ role: 'service_role', exp: now + TEN_YEARS }),
    signJwt,
    userToken: (userId, extra = {}) => signJwt({ sub: userId, role: 'authenticated', aud: 'authenticated', ...extra }),
    get requests() {
      return requests;
    },
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await stopped;
        await pool.end();
      })();
      return closing;
    },
  };
}

/**
 * `begin` with PostgREST's access mode and isolation level, then the transaction-local settings,
 * in one round trip (simple protocol; every value is a quoted literal).
 */
function beginSql(routine: Routine, settings: Record<string, string>): string {
  const mode = routine.readOnly ? 'read only' : 'read write';
  const set = Object.entries(settings).map(
    ([k, v]) => `set_config(${pg.escapeLiteral(k)}, ${pg.escapeLiteral(v)}, true)`,
  );
  return `begin isolation level ${routine.isolation} ${mode}; select ${set.join(', ')}`;
}

/** Every function name in schema public, for the PGRST202 hint. */
async function functionNames(client: pg.PoolClient): Promise<string[]> {
  const sql = `select distinct proname from pg_catalog.pg_proc where pronamespace = 'public'::regnamespace and prokind = 'f'`;
  return (await client.query<{ proname: string }>(sql)).rows.map((r) => r.proname);
}

/**
 * What Postgres answers when PostgREST sets a role its authenticator may not switch to: 42501
 * for an existing role (403, the caller is not anon), 22023 for an unknown one (400 in v12).
 */
async function refusedRole(client: pg.PoolClient, role: string): Promise<ApiError> {
  let exists: boolean | undefined;
  try {
    const sql = 'select exists (select from pg_catalog.pg_roles where rolname = $1)';
    exists = (await client.query<{ exists: boolean }>(sql, [role])).rows[0]?.exists;
  } catch (err) {
    return clientError(err);
  }
  return exists
    ? new ApiError(403, '42501', `permission denied to set role ${JSON.stringify(role)}`)
    : new ApiError(400, '22023', `role ${JSON.stringify(role)} does not exist`);
}
