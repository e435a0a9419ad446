// `pnpm pack:all`: builds the packages, then packs each publishable one (every packages/* folder
// whose package.json is not private) into packs/ (git-ignored), exactly as `pnpm publish` would
// upload it: workspace: ranges become the versions they point at. Prints each tarball's size.
//
//   node scripts/pack.mjs [--out <dir>]
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildPackages } from './build.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

/** The publishable packages: folder, name and version. */
export function publishablePackages() {
  return readdirSync(join(root, 'packages'))
    .map((folder) => join(root, 'packages', folder))
    .filter((dir) => {
      try {
        return statSync(join(dir, 'package.json')).isFile();
      } catch {
        return false;
      }
    })
    .map((dir) => ({ dir, manifest: JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) }))
    .filter(({ manifest }) => manifest.private !== true)
    .map(({ dir, manifest }) => ({ dir, name: manifest.name, version: manifest.version }));
}

/** Packs every publishable package into `outDir` (emptied first); returns the tarballs. */
export function packAll(outDir) {
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  return publishablePackages().map(({ dir, name, version }) => {
    const r = spawnSync(join(root, 'node_modules/.bin/pnpm'), ['pack', '--pack-destination', outDir, '--json'], {
      cwd: dir,
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`pnpm pack failed in ${dir}:\n${r.stdout}\n${r.stderr}`);
    const { filename } = JSON.parse(r.stdout);
    return { name, version, file: filename, bytes: statSync(filename).size };
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const at = process.argv.indexOf('--out');
  const outDir = resolve(root, at >= 0 ? process.argv[at + 1] : 'packs');
  buildPackages();
  for (const { name, file, bytes } of packAll(outDir)) {
    console.log(`${name.padEnd(20)} ${(bytes / 1024).toFixed(1).padStart(7)} kB  ${file.slice(root.length)}`);
  }
}
