// Compares what two sets of migrations install: each is applied to a fresh Postgres database (with
// Supabase's roles and default privileges), scripts/catalog/snapshot.sql describes the result, and
// every object that differs is printed. Exit 0 when both installs are the same kit.
//
//   tsx scripts/catalog/compare.ts <from> [<to>] [--ignore-comments]
//     <from>, <to>: a git revision (its supabase/migrations) or a folder of .sql files;
//                   <to> defaults to the working tree's supabase/migrations.
//     --ignore-comments: compare function bodies without their SQL comments and blank lines
//                   (behaviour), so rewording a comment inside a body is not a difference.
//   env: DATABASE_URL (a superuser URL; two throwaway databases are created and dropped)
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { bootstrapSql, defaultPrivilegesSql } from 'creditkit';

const root = fileURLToPath(new URL('../..', import.meta.url));
const snapshotSql = readFileSync(join(root, 'scripts/catalog/snapshot.sql'), 'utf8');

interface SqlFile {
  name: string;
  sql: string;
}

/** The migrations of a folder, or of a git revision's supabase/migrations, in name order. */
function migrationsOf(source: string): SqlFile[] {
  if (existsSync(source) && statSync(source).isDirectory()) {
    return readdirSync(source)
      .filter((n) => n.endsWith('.sql'))
      .sort()
      .map((name) => ({ name, sql: readFileSync(join(source, name), 'utf8') }));
  }
  const git = (...args: string[]) => execFileSync('git', args, { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
  return git('ls-tree', '--name-only', `${source}:supabase/migrations`)
    .split('\n')
    .filter((n) => n.endsWith('.sql'))
    .sort()
    .map((name) => ({ name, sql: git('show', `${source}:supabase/migrations/${name}`) }));
}

export interface CatalogRow {
  kind: string;
  name: string;
  detail: Record<string, unknown>;
}

/** The snapshot of a database (snapshot.sql's rows). */
export async function snapshot(client: pg.Client): Promise<CatalogRow[]> {
  return (await client.query<CatalogRow>(snapshotSql)).rows;
}

/** Drops SQL comments and blank lines from a function body, and trailing spaces from its lines. */
function withoutComments(body: string): string {
  return body
    .split('\n')
    .map((line) => line.replace(/--.*$/, '').replace(/\s+$/, ''))
    .filter((line) => line.trim() !== '')
    .join('\n');
}

async function install(url: string, files: SqlFile[]): Promise<CatalogRow[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(bootstrapSql());
    await client.query(defaultPrivilegesSql('supabase'));
    for (const f of files) {
      try {
        await client.query('begin');
        await client.query(f.sql);
        await client.query('commit');
      } catch (err) {
        throw new Error(`${f.name}: ${(err as Error).message}`);
      }
    }
    return await snapshot(client);
  } finally {
    await client.end();
  }
}

async function main() {
  const args = process.argv.slice(2);
  const ignoreComments = args.includes('--ignore-comments');
  const [from, to = join(root, 'supabase/migrations')] = args.filter((a) => !a.startsWith('--'));
  const server = process.env.DATABASE_URL;
  if (!from || !server) {
    console.error('usage: DATABASE_URL=… tsx scripts/catalog/compare.ts <from> [<to>] [--ignore-comments]');
    process.exit(2);
  }
  const admin = new pg.Client({ connectionString: server });
  await admin.connect();
  const names = [`creditkit_catalog_a_${process.pid}`, `creditkit_catalog_b_${process.pid}`];
  const urlOf = (db: string) => {
    const u = new URL(server);
    u.pathname = `/${db}`;
    return u.toString();
  };
  try {
    for (const n of names) await admin.query(`create database ${n} template template0`);
    const [a, b] = await Promise.all([install(urlOf(names[0]!), migrationsOf(from)), install(urlOf(names[1]!), migrationsOf(to))]);
    const key = (r: CatalogRow) => `${r.kind} ${r.name}`;
    const norm = (r: CatalogRow) => {
      const d = { ...r.detail };
      if (ignoreComments && typeof d.body === 'string') d.body = withoutComments(d.body);
      return JSON.stringify(d);
    };
    const left = new Map(a.map((r) => [key(r), r]));
    const right = new Map(b.map((r) => [key(r), r]));
    let differences = 0;
    for (const k of [...new Set([...left.keys(), ...right.keys()])].sort()) {
      const l = left.get(k);
      const r = right.get(k);
      if (!l) console.log(`+ ${k} (only in ${to})`);
      else if (!r) console.log(`- ${k} (only in ${from})`);
      else if (norm(l) !== norm(r)) {
        const dl = JSON.parse(norm(l)) as Record<string, unknown>;
        const dr = JSON.parse(norm(r)) as Record<string, unknown>;
        const fields = Object.keys({ ...dl, ...dr }).filter((f) => JSON.stringify(dl[f]) !== JSON.stringify(dr[f]));
        console.log(`~ ${k}: ${fields.join(', ')}`);
        for (const f of fields) {
          if (f === 'body') continue;
          console.log(`    ${f}: ${JSON.stringify(dl[f])}\n      -> ${JSON.stringify(dr[f])}`);
        }
      } else continue;
      differences++;
    }
    console.log(`${a.length} objects in ${from}, ${b.length} in ${to}: ${differences} differ`);
    process.exitCode = differences === 0 ? 0 : 1;
  } finally {
    for (const n of names) await admin.query(`drop database if exists ${n} with (force)`);
    await admin.end();
  }
}

await main();
