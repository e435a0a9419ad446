// An app's Supabase folder, as `creditkit init` and `creditkit upgrade` see it: the migrations
// already there (the Supabase CLI's `<timestamp>_<name>.sql`), the creditkit version they install,
// and new files timestamped after the newest, so a plain `supabase db push` applies them after
// everything the remote database already has.
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { migrationsDir, readFileIn, templatesDir, version as kitVersion } from './files.ts';
import { migrations } from './migrations.ts';
import { compareVersions, upgradePath, type Upgrade } from './upgrades.ts';

/** A problem the CLI reports with an exit code (see cli.ts) instead of a stack trace. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/** Exit codes, as the README documents them. */
export const EXIT = { ok: 0, problems: 1, usage: 2, unreachable: 3, notInstalled: 4 } as const;

const MIGRATION_FILE = /^(\d+)_(.+)\.sql$/;
// `creditkit.version()` as the setup migration and every upgrade script define it
const VERSION_DEFINITION = /function\s+creditkit\.version\s*\(\s*\)[\s\S]*?\$\$\s*select\s+'(\d+\.\d+\.\d+)'/gi;

export interface AppMigration {
  name: string;
  version: string;
}

export class SupabaseProject {
  readonly supabaseDir: string;
  readonly migrationsDir: string;

  /** The app at `root`; a CliError when it has no `supabase/` folder. */
  constructor(readonly root: string) {
    this.supabaseDir = join(root, 'supabase');
    this.migrationsDir = join(this.supabaseDir, 'migrations');
    if (!existsSync(this.supabaseDir) || !statSync(this.supabaseDir).isDirectory()) {
      throw new CliError(
        `no supabase/ folder in ${root}. Run this in your app's root (the folder \`supabase init\` set up), or pass --dir <that folder>.`,
        EXIT.usage,
      );
    }
  }

  /** The app's migrations in the order `supabase db push` applies them. */
  migrations(): AppMigration[] {
    if (!existsSync(this.migrationsDir)) return [];
    return readdirSync(this.migrationsDir)
      .map((name) => ({ name, match: MIGRATION_FILE.exec(name) }))
      .filter((m): m is { name: string; match: RegExpExecArray } => m.match !== null)
      .map(({ name, match }) => ({ name, version: match[1]! }))
      .sort((a, b) => compareTimestamps(a.version, b.version) || (a.name < b.name ? -1 : 1));
  }

  /**
   * The creditkit version these migrations install: the last definition of creditkit.version()
   * in push order, which is the one the database ends up with. Null when the kit is not there.
   */
  installedVersion(): { version: string; file: string } | null {
    let found: { version: string; file: string } | null = null;
    for (const m of this.migrations()) {
      const sql = readFileSync(join(this.migrationsDir, m.name), 'utf8');
      for (const match of sql.matchAll(VERSION_DEFINITION)) found = { version: match[1]!, file: m.name };
    }
    return found;
  }

  /** Files that look like the kit's (`*_creditkit_*.sql`), whatever their version. */
  kitFiles(): string[] {
    return this.migrations()
      .map((m) => m.name)
      .filter((name) => /^\d+_creditkit_/.test(name));
  }

  /** `count` new migration timestamps after the newest one here and not before now (UTC). */
  nextTimestamps(count: number, now: Date = new Date()): string[] {
    const newest = this.migrations().at(-1)?.version;
    let next = formatTimestamp(now);
    if (newest && compareTimestamps(newest, next) >= 0) next = successor(newest);
    const out: string[] = [];
    for (let i = 0; i < count; i++) {
      out.push(next);
      next = successor(next);
    }
    return out;
  }

  /** Writes `files` (name without timestamp, text) as new migrations; returns the names written. */
  writeMigrations(files: Array<{ name: string; sql: string }>, now?: Date): string[] {
    mkdirSync(this.migrationsDir, { recursive: true });
    const stamps = this.nextTimestamps(files.length, now);
    return files.map((file, i) => {
      const name = `${stamps[i]}_${file.name}`;
      writeFileSync(join(this.migrationsDir, name), file.sql, { flag: 'wx' });
      return name;
    });
  }

  relative(path: string): string {
    return relative(this.root, path) || '.';
  }
}

/** Supabase timestamps are digit strings; a longer one is later. */
function compareTimestamps(a: string, b: string): number {
  return a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0;
}

/** `YYYYMMDDHHMMSS` in UTC, the form `supabase migration new` uses. */
export function formatTimestamp(date: Date): string {
  return date.toISOString().replace(/\D/g, '').slice(0, 14);
}

/** The timestamp one second later (a plain +1 for one that is not a date). */
function successor(stamp: string): string {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$/.exec(stamp);
  if (m) {
    const date = new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
    if (!Number.isNaN(date.getTime()) && formatTimestamp(date) === stamp) return formatTimestamp(new Date(date.getTime() + 1000));
  }
  return (BigInt(stamp) + 1n).toString().padStart(stamp.length, '0');
}

/** The first line of every file the CLI writes: which version, and that it is not to be edited. */
function header(what: string): string {
  return (
    `-- creditkit ${kitVersion}: ${what}. Written by the creditkit CLI; do not edit. A newer version\n` +
    `-- arrives as new migrations from \`npx creditkit upgrade\` (see the creditkit CHANGELOG).\n`
  );
}

/** The kit's migrations as an app gets them: `creditkit_<area>.sql` with the header, in order. */
export function installFiles(): Array<{ name: string; sql: string }> {
  return migrations(migrationsDir).map((m) => {
    const name = m.name.replace(/^\d+_/, '');
    return { name, sql: header(name.replace(/\.sql$/, '')) + m.sql };
  });
}

/** The upgrade scripts from `from` to this CLI's version, as migrations. */
export function upgradeFiles(from: string): Array<{ name: string; sql: string; upgrade: Upgrade }> {
  return upgradePath(from, kitVersion).map((upgrade) => ({
    name: `creditkit_upgrade_${upgrade.from.replace(/\./g, '_')}_to_${upgrade.to.replace(/\./g, '_')}.sql`,
    sql: header(`upgrade from ${upgrade.from} to ${upgrade.to}`) + upgrade.sql,
    upgrade,
  }));
}

/** The Stripe webhook Edge Function's files: index.ts as the kit ships it, deno.json pinning this version. */
export function stripeFunctionFiles(): Array<{ name: string; text: string }> {
  const denoJson = {
    imports: {
      '@creditkit/stripe/handler': `npm:@creditkit/stripe@${kitVersion}/handler`,
      stripe: 'npm:stripe@^23.1.0',
      '@supabase/supabase-js': 'npm:@supabase/supabase-js@^2',
    },
  };
  return [
    { name: 'index.ts', text: readFileIn(join(templatesDir, 'stripe-webhook'), 'index.ts') },
    { name: 'deno.json', text: `${JSON.stringify(denoJson, null, 2)}\n` },
  ];
}

/**
 * The worker Edge Function's files: index.ts as the kit ships it, deno.json pinning
 * @creditkit/core (which has runWorker) to this version.
 */
export function workerFunctionFiles(): Array<{ name: string; text: string }> {
  const denoJson = {
    imports: {
      '@creditkit/core/server': `npm:@creditkit/core@${kitVersion}/server`,
      stripe: 'npm:stripe@^23.1.0',
      '@supabase/supabase-js': 'npm:@supabase/supabase-js@^2',
    },
  };
  return [
    { name: 'index.ts', text: readFileIn(join(templatesDir, 'creditkit-worker'), 'index.ts') },
    { name: 'deno.json', text: `${JSON.stringify(denoJson, null, 2)}\n` },
  ];
}

export { compareVersions, kitVersion };
