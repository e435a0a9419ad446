// PGlite test databases start from a dump of one migrated database instead of running initdb and
// every migration again: loading a dump takes less than half the time (2-core machine under other
// load, median of 4: 1.6 s against 3.9 s). The dump is made once per content and shared by the test processes (vitest
// runs each test file in a process of its own) as a file in the OS temp dir. Its name hashes
// PGlite's version, the privilege mode and every byte of SQL setup would run, so a changed
// migration gets a new dump and never a stale one. setupDatabase still runs on each copy and
// applies anything the dump lacks (nothing, when the key matched).
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { PGlite, types } from '@electric-sql/pglite';
import { bootstrapSql, defaultPrivilegesSql, migrations, parseInt8, pgliteConnection, setupDatabase, type PrivilegeMode } from 'creditkit';

const DUMPS = join(tmpdir(), 'creditkit-test-templates');
/** Dumps of other contents are removed once this old: another checkout's run may still use its own. */
const STALE_MS = 60 * 60 * 1000;

/** PGlite's package version: a dump is only loadable by the PGlite that wrote it. */
function pgliteVersion(): string {
  const entry = createRequire(import.meta.url).resolve('@electric-sql/pglite'); // …/dist/index.cjs
  return (JSON.parse(readFileSync(join(dirname(entry), '..', 'package.json'), 'utf8')) as { version: string }).version;
}

function dumpKey(mode: PrivilegeMode): string {
  const hash = createHash('sha256').update(pgliteVersion()).update(mode).update(bootstrapSql()).update(defaultPrivilegesSql(mode));
  for (const m of migrations()) hash.update(m.name).update(m.sql);
  return hash.digest('hex').slice(0, 16);
}

/** A new PGlite as the kit's embedded one is made: int8 as a number while exact. */
function open(loadDataDir?: File): Promise<PGlite> {
  return PGlite.create({ parsers: { [types.INT8]: parseInt8 }, ...(loadDataDir ? { loadDataDir } : {}) });
}

const dumps = new Map<string, Promise<File>>();

/** The dump of a migrated creditkit database in `mode` (gzipped tar, as PGlite's dumpDataDir writes it). */
export function pgliteTemplate(mode: PrivilegeMode = 'supabase'): Promise<File> {
  const key = `${mode}-${dumpKey(mode)}`;
  let dump = dumps.get(key);
  if (!dump) {
    dump = loadOrMake(key, mode);
    dumps.set(key, dump);
    dump.catch(() => dumps.delete(key));
  }
  return dump;
}

async function loadOrMake(key: string, mode: PrivilegeMode): Promise<File> {
  const file = join(DUMPS, `pglite-${key}.tar.gz`);
  const asFile = (bytes: Uint8Array<ArrayBuffer>) => new File([bytes], 'pgdata.tar.gz', { type: 'application/x-gzip' });
  try {
    return asFile(new Uint8Array(readFileSync(file)));
  } catch {
    // not made yet
  }
  const db = await open();
  try {
    await setupDatabase(pgliteConnection(db), { defaultPrivileges: mode });
    await db.exec('checkpoint');
    const dump = await db.dumpDataDir('gzip');
    const bytes = new Uint8Array(await dump.arrayBuffer());
    mkdirSync(DUMPS, { recursive: true });
    // write then rename: a process reading the file sees all of it or none (two writers: the last wins, same bytes)
    const partial = `${file}.${process.pid}.partial`;
    writeFileSync(partial, bytes);
    renameSync(partial, file);
    removeStale(file);
    return asFile(bytes);
  } finally {
    await db.close();
  }
}

function removeStale(keep: string): void {
  for (const name of readdirSync(DUMPS)) {
    const path = join(DUMPS, name);
    try {
      if (path !== keep && Date.now() - statSync(path).mtimeMs > STALE_MS) rmSync(path, { force: true });
    } catch {
      // removed by another process meanwhile
    }
  }
}

/** A creditkit database on PGlite: a copy of the template, or (migrate: false) only the bootstrap. */
export async function createPgliteDatabase(mode: PrivilegeMode, migrate: boolean): Promise<PGlite> {
  const db = await open(migrate ? await pgliteTemplate(mode) : undefined);
  try {
    await setupDatabase(pgliteConnection(db), { defaultPrivileges: mode, migrate });
  } catch (err) {
    await db.close();
    throw err;
  }
  return db;
}
