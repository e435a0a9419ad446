// The publishable packages as a user outside this repository gets them: packed by
// scripts/pack.mjs (what `pnpm pack:all` and a publish upload), then installed with npm into
// empty folders and loaded by plain Node. What an app met before this test existed: entries that
// were TypeScript (ERR_UNKNOWN_FILE_EXTENSION), exact peer pins (ERESOLVE), PGlite and pg pulled
// into every install of @creditkit/core, and an embedded database that silently found no
// migrations. Installs come from the npm registry (cached after the first run).
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishablePackages } from '../pack.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'creditkit-packages-'));
const MIGRATIONS = readdirSync(join(root, 'supabase/migrations')).filter((f) => f.endsWith('.sql')).sort();
const PUBLISHABLE = ['@creditkit/core', '@creditkit/react', '@creditkit/stripe', 'creditkit'];
/** The kit's version: the creditkit package's, which every package and the SQL share. */
const VERSION: string = JSON.parse(readFileSync(join(root, 'packages/creditkit/package.json'), 'utf8')).version;
const UPGRADES = readdirSync(join(root, 'supabase/upgrades')).filter((f) => f.endsWith('.sql')).sort();

interface Packed {
  name: string;
  file: string;
  files: string[];
  manifest: Record<string, any>;
}
let packed: Packed[] = [];
const tarball = (name: string) => packed.find((p) => p.name === name)!.file;

/** Runs a command without blocking the worker (npm takes a while); never rejects. */
function run(cmd: string, args: string[], cwd: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, encoding: 'utf8', timeout: 300_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolve({ status: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** An empty app folder with these installed by npm; returns its path. */
async function install(name: string, specs: string[]): Promise<string> {
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `app-${name}`, private: true, type: 'module' }));
  const r = await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', ...specs], dir);
  if (r.status !== 0) throw new Error(`npm install in ${name} failed:\n${r.stdout}\n${r.stderr}`);
  return dir;
}

/** Runs an ES module with plain `node` in `dir` (no TypeScript loader). */
const node = (dir: string, code: string) => run(process.execPath, ['--input-type=module', '-e', code], dir);

/** Every JS entry of a package: `name` plus each exports subpath, with its types and JS file. */
function entries(p: Packed): Array<{ specifier: string; types: string; js: string }> {
  return Object.entries(p.manifest.exports as Record<string, string | Record<string, string>>)
    .filter(([subpath]) => subpath !== './package.json')
    .map(([subpath, target]) => ({
      specifier: subpath === '.' ? p.name : `${p.name}/${subpath.slice(2)}`,
      types: typeof target === 'string' ? '' : (target.types ?? ''),
      js: typeof target === 'string' ? target : (target.default ?? target.import ?? ''),
    }));
}

beforeAll(async () => {
  // `pnpm pack:all` into a folder of this run's own
  const out = join(work, 'packs');
  const r = await run(process.execPath, [join(root, 'scripts/pack.mjs'), '--out', out], root);
  if (r.status !== 0) throw new Error(`scripts/pack.mjs failed:\n${r.stdout}\n${r.stderr}`);
  packed = readdirSync(out).map((name) => {
    const file = join(out, name);
    const manifest = JSON.parse(execFileSync('tar', ['-xzOf', file, 'package/package.json'], { encoding: 'utf8' }));
    const files = execFileSync('tar', ['-tzf', file], { encoding: 'utf8' }).split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));
    return { name: manifest.name, file, files, manifest };
  });
}, 300_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('packed tarballs', () => {
  it('one per publishable package, and those are the four the kit publishes', () => {
    expect(publishablePackages().map((p) => p.name).sort()).toEqual(PUBLISHABLE);
    expect(packed.map((p) => p.name).sort()).toEqual(PUBLISHABLE);
  });

  it.each(PUBLISHABLE)('%s: built JavaScript and .d.ts only, no tests, no TypeScript sources', (name) => {
    const { files } = packed.find((p) => p.name === name)!;
    // templates/: the Edge Functions `creditkit init --with-stripe` copies into an app (Deno runs them, not Node);
    // citus/: the script `creditkit distribute` runs on a Citus coordinator
    const allowed = /^(package\.json|README\.md|CHANGELOG\.md|dist\/.+\.(js|d\.ts)|(migrations|upgrades|sql|citus)\/[^/]+\.sql|templates\/(stripe-webhook|creditkit-worker)\/index\.ts)$/;
    expect(files.filter((f) => !allowed.test(f))).toEqual([]);
    expect(files.filter((f) => !f.startsWith('templates/') && /(^|\/)tests?\/|\.test\.|(?<!\.d)\.tsx?$/.test(f))).toEqual([]);
    expect(files.some((f) => f.startsWith('dist/'))).toBe(true);
  });

  it('creditkit carries every migration of supabase/migrations, every upgrade script, the changelog and the Supabase bootstrap', () => {
    const { files } = packed.find((p) => p.name === 'creditkit')!;
    expect(files.filter((f) => f.startsWith('migrations/')).map((f) => f.slice('migrations/'.length)).sort()).toEqual(MIGRATIONS);
    expect(UPGRADES.length).toBeGreaterThan(0);
    expect(files.filter((f) => f.startsWith('upgrades/')).map((f) => f.slice('upgrades/'.length)).sort()).toEqual(UPGRADES);
    expect(files).toContain('CHANGELOG.md');
    expect(files).toContain('templates/stripe-webhook/index.ts');
    expect(files).toContain('templates/creditkit-worker/index.ts');
    expect(files).toContain('citus/distribute.sql');
    expect(packed.find((p) => p.name === 'creditkit')!.manifest.bin).toEqual({ creditkit: './dist/cli.js' });
    expect(files).toEqual(expect.arrayContaining(['sql/supabase-bootstrap.sql', 'sql/supabase-default-privileges.sql', 'sql/revoked-default-privileges.sql']));
  });

  it('every package has the version of the SQL: creditkit.version() in the migrations, the newest upgrade, the changelog', () => {
    expect(VERSION).toMatch(/^\d+\.\d+\.\d+$/);
    const setup = readFileSync(join(root, 'supabase/migrations', MIGRATIONS.find((f) => f.endsWith('_creditkit_setup.sql'))!), 'utf8');
    expect(setup).toMatch(new RegExp(`function creditkit\\.version\\(\\)[^$]*\\$\\$ select '${VERSION.replace(/\./g, '\\.')}' \\$\\$`));
    expect(UPGRADES.at(-1)).toMatch(new RegExp(`--${VERSION.replace(/\./g, '\\.')}\\.sql$`));
    expect(readFileSync(join(root, 'CHANGELOG.md'), 'utf8')).toContain(`## ${VERSION}`);
  });

  it.each(PUBLISHABLE)('%s: the kit\'s version, public, a files list, and every export has types and JavaScript in the tarball', (name) => {
    const p = packed.find((q) => q.name === name)!;
    expect(p.manifest).toMatchObject({ name, version: VERSION, type: 'module' });
    expect(p.manifest.private).toBeUndefined();
    expect(Array.isArray(p.manifest.files)).toBe(true);
    expect(JSON.stringify(p.manifest)).not.toContain('workspace:');
    expect(entries(p).length).toBeGreaterThan(0);
    for (const e of entries(p)) {
      expect(e.types, e.specifier).toMatch(/^\.\/dist\/.+\.d\.ts$/);
      expect(e.js, e.specifier).toMatch(/^\.\/dist\/.+\.js$/);
      expect(p.files, e.specifier).toEqual(expect.arrayContaining([e.types.slice(2), e.js.slice(2)]));
    }
  });

  it.each(PUBLISHABLE)('%s: peer dependencies are ranges; no runtime dependencies but the CLI\'s driver', (name) => {
    const { manifest } = packed.find((p) => p.name === name)!;
    // the creditkit CLI talks to the database (status, doctor) through node-postgres
    expect(Object.keys(manifest.dependencies ?? {})).toEqual(name === 'creditkit' ? ['pg'] : []);
    for (const [peer, range] of Object.entries((manifest.peerDependencies ?? {}) as Record<string, string>)) {
      expect(range, peer).not.toMatch(/^\d+\.\d+\.\d+$/);
    }
  });

  it('@creditkit/core: the drivers and the SQL are optional peers', () => {
    const { manifest } = packed.find((p) => p.name === '@creditkit/core')!;
    const optional = Object.keys(manifest.peerDependenciesMeta ?? {}).filter((k) => manifest.peerDependenciesMeta[k].optional);
    expect(Object.keys(manifest.peerDependencies).sort()).toEqual(['@electric-sql/pglite', '@supabase/supabase-js', 'creditkit', 'pg']);
    expect(optional.sort()).toEqual(['@electric-sql/pglite', '@supabase/supabase-js', 'creditkit', 'pg']);
  });

  it.each(PUBLISHABLE)('%s: npm publish --dry-run accepts the tarball', async (name) => {
    const r = await run('npm', ['publish', tarball(name), '--dry-run', '--loglevel=notice'], work);
    expect(r.status, r.stderr).toBe(0);
    expect(`${r.stdout}${r.stderr}`).toContain(`+ ${name}@${VERSION}`); // what it would have published
  });
});

describe('installed from the tarballs with npm', () => {
  let app: string;
  beforeAll(async () => {
    app = await install('full', [
      ...PUBLISHABLE.map(tarball),
      '@electric-sql/pglite@0.5.16',
      'pg@8.23.1',
      '@supabase/supabase-js@2.119.1',
      'stripe@23.1.0',
      'react@19.3.1',
      'react-dom@19.3.1',
      '@tanstack/react-query@5.108.0',
    ]);
  }, 600_000);

  it('plain node imports every entry of every package', async () => {
    const specifiers = packed.flatMap((p) => entries(p).map((e) => e.specifier));
    expect(specifiers).toEqual(expect.arrayContaining(['@creditkit/core/embedded', '@creditkit/react/keys', 'creditkit']));
    const r = await node(app, `for (const s of ${JSON.stringify(specifiers)}) console.log(s, Object.keys(await import(s)).length);`);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    for (const s of specifiers) expect(r.stdout).toMatch(new RegExp(`^${s} [1-9]\\d*$`, 'm'));
  });

  it('createEmbeddedCreditkit() from node_modules installs every migration the package ships, and works', async () => {
    const r = await node(
      app,
      `import { migrations } from 'creditkit';
       import { createEmbeddedCreditkit } from '@creditkit/core/embedded';
       const { db, creditkit, close } = await createEmbeddedCreditkit();
       const applied = (await db.query('select version from supabase_migrations.schema_migrations order by version')).rows.map((r) => r.version);
       const id = '00000000-0000-4000-8000-00000000a11c';
       await creditkit.grant({ accountId: id, amount: 10 });
       console.log(JSON.stringify({ shipped: migrations().map((m) => m.version), applied, consume: await creditkit.consume({ accountId: id, amount: 3 }) }));
       await close();`,
    );
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.shipped).toEqual(MIGRATIONS.map((f) => f.split('_')[0]));
    expect(out.applied).toEqual(out.shipped);
    expect(out.consume).toEqual({ allowed: true, balance: 7, transactionId: 2 });
  });

  it('the installed types resolve: every exports entry names a .d.ts that exists', () => {
    for (const p of packed) {
      for (const e of entries(p)) expect(existsSync(join(app, 'node_modules', p.name, e.types)), e.specifier).toBe(true);
    }
  });
});

describe('@creditkit/core alone, as a browser app installs it', () => {
  let app: string;
  beforeAll(async () => {
    app = await install('core-only', [tarball('@creditkit/core')]);
  }, 600_000);

  it('installs nothing else: no PGlite, no pg, no SQL', () => {
    const top = readdirSync(join(app, 'node_modules')).filter((f) => !f.startsWith('.'));
    expect(top).toEqual(['@creditkit']);
    expect(readdirSync(join(app, 'node_modules/@creditkit'))).toEqual(['core']);
  });

  it('the browser, server and http entries load without any peer', async () => {
    const r = await node(app, `for (const s of ['@creditkit/core', '@creditkit/core/server', '@creditkit/core/http']) await import(s); console.log('ok');`);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('ok');
  });

  it('the embedded entry says which peer is missing', async () => {
    const r = await node(app, `await import('@creditkit/core/embedded');`);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/Cannot find package '(@electric-sql\/pglite|creditkit)'/);
  });
});

describe('@creditkit/react at the bottom of its peer ranges (React 18, TanStack Query 5.0)', () => {
  let app: string;
  beforeAll(async () => {
    app = await install('react-18', [tarball('@creditkit/core'), tarball('@creditkit/react'), 'react@18', 'react-dom@18', '@tanstack/react-query@5.0.0']);
  }, 600_000);

  it('renders the provider and a component on the server', async () => {
    const r = await node(
      app,
      `import { createElement as h, version } from 'react';
       import { renderToString } from 'react-dom/server';
       import { createCreditkitClient } from '@creditkit/core';
       import { CreditkitProvider, CreditsDisplay } from '@creditkit/react';
       const client = createCreditkitClient({ transport: { kind: 'none', rpc: async () => { throw new Error('no call during SSR'); } } });
       const html = renderToString(h(CreditkitProvider, { client, accountId: '00000000-0000-4000-8000-00000000a11c', locale: 'en-US' }, h(CreditsDisplay)));
       console.log(version.split('.')[0], html);`,
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^18 <[^]*data-creditkit/);
  });
});
