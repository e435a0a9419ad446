// Transports that talk SQL to Postgres directly: node-postgres (a server with a direct
// connection) and PGlite (embedded). Each call does what PostgREST does for an RPC, in one round
// trip that Postgres runs as one implicit transaction:
//
//   select set_config('role', 'service_role', true), set_config('timezone', 'UTC', true),
//          set_config('request.jwt.claims', '{"role":"service_role"}', true);
//   select coalesce(json_agg(r), '[]') from public.creditkit_consume(p_account_id => '…', …) r;
//
// set_config(…, true) is SET LOCAL: the role and claims end with that transaction, so a pooled
// connection goes back clean.
//
// Over node-postgres the two statements are prepared once per connection and then only bound
// and executed (extended protocol: Bind/Execute, Bind/Execute, Sync in one write), so a call
// costs Postgres no parsing or planning. Arguments travel as text parameters of unspecified
// type that Postgres reads as each parameter's declared type, so integers stay exact.
//
// PGlite runs one simple-protocol batch of the same two statements with quoted literals (the
// same text PostgREST would pass); in-process, parsing is not what bounds it.
import type { RawError } from './errors.ts';
import { TransportError, type SqlArgs, type Transport } from './transport.ts';

/** Who the database should see: a Data API role and the JWT claims auth.uid()/auth.jwt() read. */
export interface Identity {
  role: 'service_role' | 'authenticated' | 'anon';
  claims: Record<string, unknown>;
}

export const SERVICE_IDENTITY: Identity = { role: 'service_role', claims: { role: 'service_role' } };

/** A signed-in user, with the claims Supabase Auth puts in its access tokens. */
export function userIdentity(userId: string, extraClaims: Record<string, unknown> = {}): Identity {
  return {
    role: 'authenticated',
    claims: { aud: 'authenticated', ...extraClaims, sub: userId, role: 'authenticated' },
  };
}

/** A quoted SQL literal, safe whatever `standard_conforming_strings` says (as node-postgres does it). */
export function sqlLiteral(value: string): string {
  const quoted = `'${value.replace(/'/g, "''")}'`;
  return value.includes('\\') ? `E${quoted.replace(/\\/g, '\\\\')}` : quoted;
}

/**
 * The parameters declared as a Postgres array (text[]) rather than jsonb. A JavaScript array is
 * JSON for a jsonb parameter ('["a"]') but an array literal for these ('{"a"}'), and the text
 * alone cannot tell Postgres which is meant. PostgREST converts a JSON array itself. A test
 * checks this list against the catalogue.
 */
export const ARRAY_PARAMETERS: ReadonlySet<string> = new Set(['p_event_types']);

/** A Postgres array literal of text elements: each quoted, NULL for null. */
function arrayLiteral(values: unknown[]): string {
  const element = (v: unknown) => (v === null || v === undefined ? 'NULL' : `"${String(v).replace(/[\\"]/g, (c) => `\\${c}`)}"`);
  return `{${values.map(element).join(',')}}`;
}

/** A value as the text Postgres reads as the parameter's declared type (null for SQL NULL). */
function parameter(value: unknown, name: string): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value) && ARRAY_PARAMETERS.has(name)) return arrayLiteral(value);
  return JSON.stringify(value); // jsonb
}

function literal(value: unknown, name: string): string {
  const text = parameter(value, name);
  return text === null ? 'null' : sqlLiteral(text);
}

const IDENT = /^[a-z_][a-z0-9_]*$/;
const ROLES = new Set<string>(['service_role', 'authenticated', 'anon']);

/**
 * The checked argument list of a call, `p_x => <arg>, …`, with each defined value written by
 * `arg` (a literal, or a parameter placeholder). Refuses a name that is not an identifier and a
 * role that is not a Data API role, before anything is sent.
 */
function namedArgs(fn: string, args: SqlArgs, identity: Identity, arg: (value: unknown, name: string) => string): string {
  if (!IDENT.test(fn)) throw new TypeError(`not a function name: ${fn}`);
  if (!ROLES.has(identity.role)) throw new TypeError(`not a Data API role: ${identity.role}`);
  const named: string[] = [];
  for (const [name, value] of Object.entries(args)) {
    if (value === undefined) continue;
    if (!IDENT.test(name)) throw new TypeError(`not a parameter name: ${name}`);
    named.push(`${name} => ${arg(value, name)}`);
  }
  return named.join(', ');
}

/** The call's own statement: the function's rows as one JSON array, as PostgREST answers. */
const callText = (fn: string, named: string) =>
  `select coalesce(json_agg(r), '[]') as result from public.${fn}(${named}) r`;

/** The whole statement for one call (exported for tests and benchmarks). */
export function callSql(fn: string, args: SqlArgs, identity: Identity): string {
  const named = namedArgs(fn, args, identity, literal);
  return (
    // UTC, so instants read the same on every server (PostgREST on Supabase runs in UTC too).
    `select set_config('role', '${identity.role}', true), set_config('timezone', 'UTC', true), ` +
    `set_config('request.jwt.claims', ${literal(identity.claims, 'request.jwt.claims')}, true);\n` + callText(fn, named)
  );
}

/**
 * A node-postgres or PGlite error as a RawError. Errors from the server carry a SQLSTATE in
 * `code`; anything else (ECONNREFUSED, "Connection terminated", a closed PGlite) happened
 * before or around the server and counts as unavailable.
 */
function rawError(error: unknown): RawError {
  const e = error as { code?: unknown; message?: unknown; detail?: unknown; hint?: unknown };
  const sqlstate = typeof e?.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined;
  return {
    code: sqlstate,
    message: typeof e?.message === 'string' ? e.message : String(error),
    details: typeof e?.detail === 'string' ? e.detail : null,
    hint: typeof e?.hint === 'string' ? e.hint : null,
    network: sqlstate === undefined,
  };
}

/** The call's JSON array, parsed if it came as text (throws if it is anything else). */
function jsonResult(value: unknown): unknown[] {
  const parsed = typeof value === 'string' ? JSON.parse(value) : value;
  if (!Array.isArray(parsed)) throw new TransportError({ message: 'unexpected result from Postgres' });
  return parsed;
}

function lastResult(results: unknown): unknown[] {
  const list = (Array.isArray(results) ? results : [results]) as Array<{ rows?: Array<{ result?: unknown }> }>;
  const rows = list[list.length - 1]?.rows;
  // PGlite parses json; guard against a driver configured to return text.
  return jsonResult(rows?.[0]?.result);
}

/** Runs several statements in one simple-protocol round trip and returns every result. */
type Runner = (sql: string) => Promise<unknown>;

function sqlTransport(kind: string, run: Runner, identity: Identity): Transport {
  return {
    kind,
    async rpc(fn, args) {
      const sql = callSql(fn, args, identity);
      let results: unknown;
      try {
        results = await run(sql);
      } catch (error) {
        throw new TransportError(rawError(error), error);
      }
      return lastResult(results);
    },
  };
}

// ── node-postgres: two prepared statements, one round trip ──────────────────────────────────

/** One statement of a pipelined call: its text and its parameters as text (null for SQL null). */
interface Statement {
  text: string;
  values: Array<string | null>;
}

/** The role/timezone/claims statement every call starts with; the same text for every identity. */
const IDENTITY_SQL =
  `select set_config('role', $1, true), set_config('timezone', 'UTC', true), ` +
  `set_config('request.jwt.claims', $2, true)`;

/** The two statements of one call with parameters in place of literals (exported for tests). */
export function callStatements(fn: string, args: SqlArgs, identity: Identity): [Statement, Statement] {
  const values: Array<string | null> = [];
  const named = namedArgs(fn, args, identity, (value, name) => `$${values.push(parameter(value, name))}`);
  return [
    { text: IDENTITY_SQL, values: [identity.role, JSON.stringify(identity.claims)] },
    { text: callText(fn, named), values },
  ];
}

/** The part of node-postgres's Connection a pipelined call writes to. */
interface WireConnection {
  parse(msg: { name: string; text: string; types: number[] }): void;
  bind(msg: { statement: string; values: Array<string | null> }): void;
  execute(msg: { portal?: string; rows?: number }): void;
  close(msg: { type: 'S'; name: string }): void;
  sync(): void;
  stream?: { cork?: () => void; uncork?: () => void };
}

/** Statement text → its name, the same on every connection. */
const statementNames = new Map<string, string>();
/** Per connection: the names of the statements it holds. */
const preparedOn = new WeakMap<object, Set<string>>();

function statementName(text: string): string {
  let name = statementNames.get(text);
  if (name === undefined) {
    name = `creditkit/${statementNames.size + 1}`;
    statementNames.set(text, name);
  }
  return name;
}

/** SQLSTATE 26000: a prepared statement the connection was thought to hold is not there. */
const NO_SUCH_STATEMENT = '26000';

/**
 * A node-postgres "submittable" (the interface pg-cursor uses): for each statement, Parse (first
 * use on this connection only), Bind and Execute, then one Sync — one write, one round trip, one
 * implicit transaction, so the SET LOCALs of the first statement hold for the second and end
 * with it. Parsing and planning happen once per connection instead of once per call. A Close
 * precedes each Parse so a name left behind (by an earlier failed call, or on a backend a pooler
 * hands over) never collides.
 */
class PipelinedCall {
  callback?: (error: unknown, result?: unknown[]) => void;
  readonly done: Promise<unknown[]>;
  private resolve!: (result: unknown[]) => void;
  private reject!: (error: unknown) => void;
  private settled = false;
  private completed = 0;
  private value: string | null = null;
  private parsed: string[] = [];
  private prepared: Set<string> | undefined;

  constructor(private readonly statements: Statement[]) {
    this.done = new Promise<unknown[]>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.done.catch(() => {}); // a Pool reports through `callback` and its own promise
  }

  submit(connection: WireConnection): void {
    let prepared = preparedOn.get(connection);
    if (prepared === undefined) preparedOn.set(connection, (prepared = new Set()));
    this.prepared = prepared;
    connection.stream?.cork?.();
    try {
      for (const { text, values } of this.statements) {
        const name = statementName(text);
        if (!prepared.has(name)) {
          connection.close({ type: 'S', name });
          connection.parse({ name, text, types: [] });
          this.parsed.push(name);
          prepared.add(name);
        }
        connection.bind({ statement: name, values });
        connection.execute({});
      }
      connection.sync();
    } finally {
      connection.stream?.uncork?.();
    }
  }

  handleRowDescription(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}

  handleDataRow(msg: { fields: Array<string | null> }): void {
    if (this.completed === this.statements.length - 1) this.value = msg.fields[0] ?? null;
  }

  handleCommandComplete(): void {
    this.completed++;
  }

  handleCopyInResponse(connection: { sendCopyFail?: (msg: string) => void }): void {
    connection.sendCopyFail?.('creditkit does not COPY');
  }

  handleCopyData(): void {}

  handleError(error: unknown): void {
    // A statement parsed in this round may not exist; 26000 means the connection lost them all.
    const code = (error as { code?: unknown })?.code;
    if (code === NO_SUCH_STATEMENT) this.prepared?.clear();
    else for (const name of this.parsed) this.prepared?.delete(name);
    this.settle(error);
  }

  handleReadyForQuery(): void {
    if (this.settled) return;
    let result: unknown[];
    try {
      result = jsonResult(this.value);
    } catch (error) {
      return this.settle(error);
    }
    this.settle(null, result);
  }

  private settle(error: unknown, result?: unknown[]): void {
    if (this.settled) return;
    this.settled = true;
    if (error) this.reject(error);
    else this.resolve(result!);
    this.callback?.(error ?? null, result);
  }
}

/** A client as node-postgres hands it out of a pool. */
interface PgPoolClient {
  query(call: PipelinedCall): unknown;
  release(error?: Error | boolean): void;
}

/**
 * The part of node-postgres the SDK uses: a `Pool` (a connection is checked out for each call),
 * or a connected `Client` or checked-out pool client (used as it is; node-postgres queues calls).
 */
export interface PgQueryable {
  query(call: { submit(connection: never): void }): unknown;
  connect?(): Promise<unknown>;
}

function isPool(pg: PgQueryable): boolean {
  // pg.Pool and pg.Client both have connect(); only a Pool counts its clients.
  return typeof pg.connect === 'function' && typeof (pg as { totalCount?: unknown }).totalCount === 'number';
}

/** Errors from the server leave the connection usable; anything else retires it from the pool. */
function connectionBroken(error: unknown): boolean {
  return rawError(error).network === true;
}

/** node-postgres's own pipeline mode refuses custom submittables such as this one. */
function refusePipelineMode(client: unknown): void {
  if ((client as { pipeline?: unknown }).pipeline === true) {
    throw new TypeError('creditkit: a node-postgres client in pipeline mode cannot run calls; pass a Pool or Client without `pipeline: true`');
  }
}

async function run(pg: PgQueryable, statements: Statement[]): Promise<unknown[]> {
  const call = new PipelinedCall(statements);
  if (!isPool(pg)) {
    refusePipelineMode(pg);
    const returned = pg.query(call as never);
    // pg.Client hands the submittable back; a promise (a wrapper's) may fail before submitting it
    if (returned && typeof (returned as PromiseLike<unknown>).then === 'function') {
      return Promise.race([call.done, Promise.resolve(returned).then(() => call.done)]);
    }
    return call.done;
  }
  const client = (await pg.connect!()) as PgPoolClient;
  try {
    refusePipelineMode(client);
    client.query(call);
    const result = await call.done;
    client.release();
    return result;
  } catch (error) {
    client.release(connectionBroken(error) ? (error instanceof Error ? error : true) : undefined);
    throw error;
  }
}

/**
 * Over node-postgres. Pass a `Pool` connected as a role that may switch to the Data API roles
 * (`postgres` on Supabase). Each call is one round trip: two prepared statements (identity, then
 * the function) bound and executed in one implicit transaction.
 */
export function pgTransport(pg: PgQueryable, identity: Identity = SERVICE_IDENTITY): Transport {
  return {
    kind: 'pg',
    async rpc(fn, args) {
      const statements = callStatements(fn, args, identity);
      for (let attempt = 0; ; attempt++) {
        try {
          return await run(pg, statements);
        } catch (error) {
          if (error instanceof TransportError || error instanceof TypeError) throw error;
          // The connection had lost its statements (DEALLOCATE ALL, DISCARD ALL, a pooler that
          // moved us to another backend): nothing ran, so send them again, parsed afresh.
          if (attempt === 0 && (error as { code?: unknown })?.code === NO_SUCH_STATEMENT) continue;
          throw new TransportError(rawError(error), error);
        }
      }
    },
  };
}

/** The part of a PGlite instance the SDK uses. */
export interface PgliteLike {
  exec(sql: string): Promise<unknown>;
}

/** Over PGlite (embedded Postgres in WASM); PGlite runs one statement batch at a time. */
export function pgliteTransport(db: PgliteLike, identity: Identity = SERVICE_IDENTITY): Transport {
  return sqlTransport('pglite', (sql) => db.exec(sql), identity);
}
