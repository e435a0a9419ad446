// The one place that turns an empty database into a creditkit database: Supabase bootstrap,
// the chosen default-privilege mode, then the migrations, each in its own transaction and
// recorded in supabase_migrations.schema_migrations like the Supabase CLI does. PGlite, the
// throwaway Postgres databases and the pgTAP runner all go through it, so they cannot drift.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadMigrations, type Migration } from './migrations.ts';

/** 'supabase': Supabase's grant-everything-in-public defaults; 'revoked': the hardened ones. */
export type PrivilegeMode = 'supabase' | 'revoked';

export interface SetupOptions {
  /** Default privileges to install before the migrations (default 'supabase'). */
  defaultPrivileges?: PrivilegeMode;
  /** Apply supabase/migrations (default true). */
  migrate?: boolean;
  /** Migrations to apply instead of the repo's (default: loadMigrations()). */
  migrations?: Migration[];
}

/** What setup needs from a connection; both PGlite and node-postgres can provide it. */
export interface SetupConnection {
  /** Runs one or more statements (simple protocol). */
  exec(sql: string): Promise<void>;
  query<T>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Runs `fn` in one transaction, rolled back if it throws. */
  transaction(fn: (tx: Omit<SetupConnection, 'transaction'>) => Promise<void>): Promise<void>;
}

function sqlFile(name: string): string {
  // a path join rather than new URL(…, import.meta.url), which bundlers (Next.js) take for an asset
  return readFileSync(join(dirname(fileURLToPath(import.meta.url)), '../sql', name), 'utf8');
}

/** Roles, auth schema and auth.*() helpers of a Supabase project; idempotent. */
export function bootstrapSql(): string {
  return sqlFile('supabase-bootstrap.sql');
}

/** The default-privilege statements for `mode`; run once on a fresh database. */
export function defaultPrivilegesSql(mode: PrivilegeMode): string {
  return sqlFile(mode === 'supabase' ? 'supabase-default-privileges.sql' : 'revoked-default-privileges.sql');
}

const HISTORY = `
  create schema if not exists supabase_migrations;
  create table if not exists supabase_migrations.schema_migrations (
    version text not null primary key,
    statements text[],
    name text
  );`;

/**
 * Brings the database up to date. On a fresh database (no migration history yet) it also
 * installs the default privileges: re-running their `grant all on all tables` later would
 * undo the revokes the migrations made.
 * Returns the migrations applied by this call.
 */
export async function setupDatabase(conn: SetupConnection, opts: SetupOptions = {}): Promise<Migration[]> {
  const mode = opts.defaultPrivileges ?? 'supabase';
  const [state] = await conn.query<{ fresh: boolean }>(
    `select to_regclass('supabase_migrations.schema_migrations') is null as fresh`,
  );
  await conn.exec(bootstrapSql());
  if (state?.fresh) await conn.exec(defaultPrivilegesSql(mode));
  await conn.exec(HISTORY);
  if (opts.migrate === false) return [];

  const done = new Set(
    (await conn.query<{ version: string }>('select version from supabase_migrations.schema_migrations')).map(
      (r) => r.version,
    ),
  );
  const applied: Migration[] = [];
  for (const m of opts.migrations ?? loadMigrations()) {
    if (done.has(m.version)) continue;
    try {
      await conn.transaction(async (tx) => {
        await tx.exec(m.sql);
        await tx.query(
          'insert into supabase_migrations.schema_migrations (version, name, statements) values ($1, $2, $3)',
          [m.version, m.name.replace(/^\d+_/, '').replace(/\.sql$/, ''), [m.sql]],
        );
      });
    } catch (err) {
      // keep the error object (and its SQLSTATE `code`), only say which file failed
      if (err instanceof Error) err.message = `migration ${m.name} failed: ${err.message}`;
      throw err;
    }
    applied.push(m);
  }
  return applied;
}
