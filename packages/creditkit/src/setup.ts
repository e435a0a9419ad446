// The one place that turns an empty database into a creditkit database: Supabase bootstrap,
// the chosen default-privilege mode, then the migrations, each in its own transaction and
// recorded in supabase_migrations.schema_migrations like the Supabase CLI does. PGlite, the
// test databases, the pgTAP runner and the demo all go through it, so they cannot drift.
import type { SetupConnection } from './connections.ts';
import { readSqlFile } from './files.ts';
import { version } from './files.ts';
import { migrations as shippedMigrations, type Migration } from './migrations.ts';
import { compareVersions, upgradePath } from './upgrades.ts';

/** 'supabase': Supabase's grant-everything-in-public defaults; 'revoked': the hardened ones. */
export type PrivilegeMode = 'supabase' | 'revoked';

export interface SetupOptions {
  /** Default privileges to install before the migrations (default 'supabase'). */
  defaultPrivileges?: PrivilegeMode;
  /** Apply the migrations (default true); false installs only the bootstrap. */
  migrate?: boolean;
  /** Migrations to apply instead of the ones this package ships (default: migrations()). */
  migrations?: Migration[];
  /**
   * Upgrade an install of an older version (a persisted PGlite, a database set up before) with
   * the scripts up to this package's version (default true, when the migrations are this package's).
   */
  upgrade?: boolean;
}

/**
 * The parts of a Supabase project the kit relies on, for plain Postgres (15+) and PGlite: the API
 * roles (anon, authenticated, service_role, authenticator), the `auth` schema with `auth.users`
 * and `auth.uid()`/`auth.jwt()`/`auth.role()`. Idempotent. Not for a Supabase project, which has them.
 */
export function bootstrapSql(): string {
  return readSqlFile('supabase-bootstrap.sql');
}

/** The default-privilege statements for `mode`; run once on a fresh database, before the migrations. */
export function defaultPrivilegesSql(mode: PrivilegeMode): string {
  return readSqlFile(mode === 'supabase' ? 'supabase-default-privileges.sql' : 'revoked-default-privileges.sql');
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
  // read before touching the database: a package without its SQL must fail before it changes anything
  const wanted = opts.migrate === false ? [] : (opts.migrations ?? shippedMigrations());
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
  const upgrading = opts.upgrade ?? opts.migrations === undefined;
  const older = upgrading ? await olderInstall(conn) : null;
  if (older) {
    // An install of an earlier version: the upgrade scripts bring it to this one, including what the
    // migrations added since (a new domain file); those are then recorded as applied, never run on
    // top of the old schema.
    applied.push(...(await upgrade(conn)));
    for (const m of wanted) {
      if (done.has(m.version)) continue;
      await conn.query('insert into supabase_migrations.schema_migrations (version, name, statements) values ($1, $2, $3)', [
        m.version, m.name.replace(/^\d+_/, '').replace(/\.sql$/, ''), [`-- installed by the upgrade to creditkit ${version}`]]);
    }
    return applied;
  }
  for (const m of wanted) {
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
  if (upgrading) applied.push(...(await upgrade(conn)));
  return applied;
}

/** The version of an install older than this package's, or null (none, or current). */
async function olderInstall(conn: SetupConnection): Promise<string | null> {
  const [known] = await conn.query<{ known: boolean }>(`select to_regprocedure('creditkit.version()') is not null as known`);
  if (!known?.known) return null;
  const [installed] = await conn.query<{ version: string }>('select creditkit.version() as version');
  return installed && compareVersions(installed.version, version) < 0 ? installed.version : null;
}

/**
 * Applies the upgrade scripts from the version installed (creditkit.version()) to this package's,
 * each in its own transaction, recorded in the migration history. Returns them, as migrations.
 */
async function upgrade(conn: SetupConnection): Promise<Migration[]> {
  const [known] = await conn.query<{ known: boolean }>(`select to_regprocedure('creditkit.version()') is not null as known`);
  if (!known?.known) return [];
  const [installed] = await conn.query<{ version: string }>('select creditkit.version() as version');
  if (!installed) return [];
  const applied: Migration[] = [];
  for (const u of upgradePath(installed.version, version)) {
    const m: Migration = { name: u.name, version: `creditkit-${u.to}`, sql: u.sql };
    await conn.transaction(async (tx) => {
      await tx.exec(u.sql);
      await tx.query('insert into supabase_migrations.schema_migrations (version, name, statements) values ($1, $2, $3)', [
        m.version, `creditkit_upgrade_${u.from}_to_${u.to}`, [u.sql]]);
    });
    applied.push(m);
  }
  return applied;
}
