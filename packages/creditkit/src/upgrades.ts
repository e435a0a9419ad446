// Versioned upgrades. From 0.1.0 on, the migrations are the current state of the kit, and a
// change ships as an upgrade script from one version to the next: `creditkit--<from>--<to>.sql`
// (the repository's supabase/upgrades, copied into this package by its build). An app installed
// at an older version applies the chain of scripts up to this package's version.
import { readFileIn, sqlFileNames, upgradesDir, version } from './files.ts';

export interface Upgrade {
  from: string;
  to: string;
  /** File name, `creditkit--<from>--<to>.sql`. */
  name: string;
  sql: string;
}

const UPGRADE_FILE = /^creditkit--(\d+\.\d+\.\d+)--(\d+\.\d+\.\d+)\.sql$/;

/** Orders versions `major.minor.patch` numerically. */
export function compareVersions(a: string, b: string): number {
  const [x, y] = [a, b].map((v) => v.split('.').map(Number));
  for (let i = 0; i < 3; i++) {
    const d = (x?.[i] ?? 0) - (y?.[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** Every upgrade script this package ships (or that `dir` holds), oldest first. */
export function upgrades(dir: string = upgradesDir): Upgrade[] {
  return sqlFileNames(dir)
    .map((name) => {
      const match = UPGRADE_FILE.exec(name);
      if (!match?.[1] || !match[2]) throw new Error(`creditkit: ${name}: an upgrade must be named creditkit--<from>--<to>.sql`);
      return { from: match[1], to: match[2], name, sql: readFileIn(dir, name) };
    })
    .sort((a, b) => compareVersions(a.from, b.from));
}

/**
 * The scripts that take an install at `from` to `to` (default: this package's version), in
 * order; none when `from` is already `to`. Throws when `from` is newer or no chain reaches `to`.
 */
export function upgradePath(from: string, to: string = version, all: Upgrade[] = upgrades()): Upgrade[] {
  if (compareVersions(from, to) > 0) {
    throw new Error(`creditkit: the database has creditkit ${from}, newer than this package (${to}); upgrade the package`);
  }
  const path: Upgrade[] = [];
  for (let at = from; at !== to; ) {
    const next = all.find((u) => u.from === at);
    if (!next || compareVersions(next.to, to) > 0) {
      throw new Error(`creditkit: no upgrade from ${at} towards ${to} in this package`);
    }
    path.push(next);
    at = next.to;
  }
  return path;
}
