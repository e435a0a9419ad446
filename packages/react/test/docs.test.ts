// docs/react.md is checked, not trusted: every ```tsx block in it and in the README is typechecked
// against the package (as an app imports it, '@creditkit/react'), and every export is documented.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import * as api from '../src/index.ts';

const pkg = fileURLToPath(new URL('..', import.meta.url));
const read = (file: string) => readFileSync(fileURLToPath(new URL(`../../../${file}`, import.meta.url)), 'utf8');
const doc = read('docs/react.md');
const readme = read('README.md');
const tmp = `${pkg}test/.docs-tmp/`;
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The ```tsx blocks with the line each starts on. */
function tsxBlocks(markdown: string, source: string): Array<{ source: string; line: number; code: string }> {
  const blocks: Array<{ source: string; line: number; code: string }> = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== '```tsx') continue;
    const start = i;
    while (++i < lines.length && lines[i] !== '```');
    blocks.push({ source, line: start + 1, code: lines.slice(start + 1, i).join('\n') });
  }
  return blocks;
}

describe('docs/react.md', () => {
  it('every tsx block, in this doc and the README, typechecks against @creditkit/react', () => {
    const blocks = [...tsxBlocks(doc, 'docs/react.md'), ...tsxBlocks(readme, 'README.md')];
    expect(blocks.filter((b) => b.source === 'README.md')).toHaveLength(1);
    expect(blocks.length).toBeGreaterThanOrEqual(6);
    mkdirSync(tmp, { recursive: true });
    const files = blocks.map((block, i) => {
      const file = `${tmp}block-${i + 1}.tsx`;
      writeFileSync(file, block.code);
      return file;
    });
    const config = ts.getParsedCommandLineOfConfigFile(`${pkg}tsconfig.json`, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} })!;
    const program = ts.createProgram(files, { ...config.options, noEmit: true });
    const problems = ts
      .getPreEmitDiagnostics(program)
      .filter((d) => d.file && files.includes(d.file.fileName))
      .map((d) => {
        const block = blocks[files.indexOf(d.file!.fileName)]!;
        const { line } = d.file!.getLineAndCharacterOfPosition(d.start ?? 0);
        return `${block.source}:${block.line + 1 + line}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
      });
    expect(problems).toEqual([]);
  }, 60_000);

  it('documents every export', () => {
    const missing = Object.keys(api).filter((name) => !doc.includes(`\`${name}`) && !doc.includes(`${name}(`) && !doc.includes(`<${name}`));
    expect(missing).toEqual([]);
  });
});
