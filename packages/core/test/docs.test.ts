// The TypeScript in docs/sdk.md and README.md is checked, not trusted. Every ```ts block is a
// complete program: the runnable ones are run as a reader would run them (a file inside this
// package, `node --import tsx`, embedded PGlite) and their stdout must equal the ```text block
// that follows, byte for byte. Blocks marked `no-run` (they need a Supabase project or a web
// framework) are typechecked with the runnable ones. The SDK guide's method tables are checked
// against the code (each method calls the function its row names) and against docs/sql-api.md
// (same parameters, same optionality).
//
// To refresh the documented outputs after a deliberate change, run this file with
// CREDITKIT_UPDATE_DOCS=1 and read the diff before committing it.
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { CreditkitClient } from '../src/client.ts';
import { CreditkitServer } from '../src/server.ts';
import type { Transport } from '../src/transport.ts';

const run = promisify(execFile);
const repo = fileURLToPath(new URL('../../../', import.meta.url));
const pkg = fileURLToPath(new URL('../', import.meta.url));
// Inside the package, so '@creditkit/core/…' resolves as it would for a reader; gitignored. One
// directory per process, so two test runs at once don't trample each other's files.
const tmp = join(pkg, 'test/.docs-tmp', `run-${process.pid}`);
const update = process.env.CREDITKIT_UPDATE_DOCS === '1';

/** How many blocks each file may mark no-run: adding one is a decision, not an accident. */
const EXPECTED_NO_RUN: Record<string, number> = { 'docs/sdk.md': 5, 'README.md': 3 };

// ── Parsing ──────────────────────────────────────────────────────────────────────────────────

interface Fence {
  lang: string;
  attrs: string;
  /** 1-based line of the opening fence. */
  line: number;
  /** 1-based line of the closing fence. */
  end: number;
  body: string;
}

export interface Block {
  source: string;
  line: number;
  code: string;
  runnable: boolean;
  /** The ```text block after a runnable block. */
  expected?: { body: string; line: number; end: number };
}

function fences(markdown: string): Fence[] {
  const lines = markdown.split('\n');
  const found: Fence[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const start = i;
    while (++i < lines.length && lines[i] !== '```');
    if (i >= lines.length) throw new Error(`unclosed code fence at line ${start + 1}`);
    found.push({ lang: open[1]!, attrs: open[2]!, line: start + 1, end: i + 1, body: lines.slice(start + 1, i).join('\n') });
  }
  return found;
}

/** The TypeScript blocks of a markdown file, each runnable one paired with its output. */
export function tsBlocks(markdown: string, source: string): Block[] {
  const all = fences(markdown);
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  all.forEach((fence, i) => {
    if (fence.lang !== 'ts' && fence.lang !== 'typescript') return;
    const where = `${source}:${fence.line}`;
    const attrs = fence.attrs.replace(/title="[^"]*"/g, '').trim();
    if (attrs !== '' && attrs !== 'no-run') throw new Error(`${where}: unknown block attributes "${fence.attrs}" (only no-run and title="…")`);
    const runnable = attrs !== 'no-run';
    if (!/^import /m.test(fence.body)) throw new Error(`${where}: a TypeScript block must be a complete program (no import found)`);
    const block: Block = { source, line: fence.line, code: fence.body, runnable };
    if (runnable) {
      const next = all[i + 1];
      const between = next ? lines.slice(fence.end, next.line - 1) : [];
      if (!next || next.lang !== 'text' || between.some((l) => l.trim() !== '')) {
        throw new Error(`${where}: a runnable block needs a \`\`\`text block with its output right after it (or mark it no-run)`);
      }
      block.expected = { body: next.body, line: next.line, end: next.end };
    }
    blocks.push(block);
  });
  return blocks;
}

const read = (path: string) => readFileSync(join(repo, path), 'utf8');
const SOURCES = ['docs/sdk.md', 'README.md'] as const;
const blocks = SOURCES.flatMap((source) => tsBlocks(read(source), source));
const fileOf = (b: Block) => `${b.source.replace(/\W+/g, '-').replace(/-md$/, '')}-L${b.line}.ts`;

rmSync(tmp, { recursive: true, force: true });
mkdirSync(tmp, { recursive: true });
for (const b of blocks) writeFileSync(join(tmp, fileOf(b)), `${b.code}\n`);

// ── Running ──────────────────────────────────────────────────────────────────────────────────

interface Run {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Runs a program file from the temp dir the way a reader would, with colours off. */
async function runProgram(file: string): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  delete env.FORCE_COLOR;
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', join(tmp, file)], {
      cwd: pkg,
      env,
      timeout: 180_000,
    });
    return { stdout, stderr, exitCode: 0 };
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; code?: number };
    return { stdout: e.stdout ?? '', stderr: e.stderr ?? String(error), exitCode: typeof e.code === 'number' ? e.code : 1 };
  }
}

/** Why a run does not match its documented output, or null when it does. */
export function mismatch(block: Block, result: Run): string | null {
  const where = `${block.source}:${block.line}`;
  if (result.exitCode !== 0) return `${where} exited with ${result.exitCode}:\n${result.stderr}`;
  if (result.stderr !== '') return `${where} wrote to stderr:\n${result.stderr}`;
  const actual = result.stdout.replace(/\n$/, '');
  if (actual !== block.expected?.body) {
    return `${where}: output differs from the text block at line ${block.expected?.line}:\n--- documented\n${block.expected?.body}\n--- actual\n${actual}`;
  }
  return null;
}

const runs = new Map<Block, Promise<Run>>();
// Two programs at a time: each starts tsx and an embedded PGlite, and all of them at once on a
// 2-core machine, beside the rest of the suite, ran past the timeout (seen in CI).
const slots: Array<Promise<unknown>> = [Promise.resolve(), Promise.resolve()];
let nextSlot = 0;
const runBlock = (b: Block) => {
  if (!runs.has(b)) {
    const slot = nextSlot++ % slots.length;
    const started = slots[slot]!.then(() => runProgram(fileOf(b)));
    slots[slot] = started.catch(() => undefined);
    runs.set(b, started);
  }
  return runs.get(b)!;
};

const runnable = blocks.filter((b) => b.runnable);

describe('TypeScript examples in the docs', () => {
  it('has the expected blocks: runnable ones in both files, few no-run ones', () => {
    for (const source of SOURCES) {
      const mine = blocks.filter((b) => b.source === source);
      expect(mine.filter((b) => b.runnable).length, `${source}: runnable blocks`).toBeGreaterThan(0);
      expect(mine.filter((b) => !b.runnable).length, `${source}: no-run blocks`).toBe(EXPECTED_NO_RUN[source]);
    }
  });

  it('typecheck, runnable and no-run alike', async () => {
    writeFileSync(
      join(tmp, 'tsconfig.json'),
      JSON.stringify({ extends: '../../../../../tsconfig.base.json', include: ['*.ts'] }, null, 2),
    );
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    let output = '';
    try {
      await run(process.execPath, [tsc, '--noEmit', '-p', join(tmp, 'tsconfig.json')], { cwd: pkg });
    } catch (error) {
      // Point at the markdown line: `sdk-L123.ts(4,7)` is line 123 + 4 of docs/sdk.md.
      output = String((error as { stdout?: string }).stdout ?? error).replace(
        /(?:[^\s(]*\/)?([\w-]+)-L(\d+)\.ts\((\d+),(\d+)\)/g,
        (_, src: string, fence: string, l: string, c: string) =>
          `${src === 'README' ? 'README.md' : `${src.replace(/^docs-/, 'docs/')}.md`}:${Number(fence) + Number(l)}:${c}`,
      );
    }
    expect(output).toBe('');
  }, 120_000);

  for (const block of runnable) {
    it.concurrent(`${block.source}:${block.line} prints what the doc says`, async () => {
      const result = await runBlock(block);
      expect(result.stderr).toBe('');
      expect(result.exitCode).toBe(0);
      if (update) return;
      expect(result.stdout.replace(/\n$/, '')).toBe(block.expected!.body);
    }, 600_000);
  }

  it('the checker catches a doctored output, a failing program and a block without output', async () => {
    const first = runnable.find((b) => b.source === 'docs/sdk.md')!;
    const result = await runBlock(first);
    expect(mismatch(first, result)).toBeNull();
    const doctored = { ...first, expected: { ...first.expected!, body: first.expected!.body.replace(/\d/, (d) => String((Number(d) + 1) % 10)) } };
    expect(doctored.expected.body).not.toBe(first.expected!.body);
    expect(mismatch(doctored, result)).toMatch(/output differs/);
    expect(mismatch(first, { ...result, stdout: `${result.stdout}extra line\n` })).toMatch(/output differs/);

    writeFileSync(join(tmp, 'failing.ts'), "import { InvalidAmountError } from '@creditkit/core';\nthrow new InvalidAmountError('boom');\n");
    const failing = await runProgram('failing.ts');
    expect(mismatch({ ...first, code: '' }, failing)).toMatch(/exited with 1:[\s\S]*InvalidAmountError: boom/);

    expect(() => tsBlocks("```ts\nimport x from 'y';\n```\n\nno output here\n", 'x.md')).toThrow(/needs a ```text block/);
    expect(() => tsBlocks("```ts norun\nimport x from 'y';\n```\n", 'x.md')).toThrow(/unknown block attributes/);
    expect(tsBlocks("```ts no-run title=\"a.ts\"\nimport x from 'y';\n```\n", 'x.md')).toMatchObject([{ runnable: false, line: 1 }]);
  }, 600_000);
});

// ── The method tables ───────────────────────────────────────────────────────────────────────

interface Row {
  method: string;
  params: string[] | null;
  fn: string;
}

function tableRows(markdown: string, heading: string): Row[] {
  const start = markdown.indexOf(`\n### ${heading}`);
  if (start < 0) throw new Error(`no "### ${heading}" section`);
  const section = markdown.slice(start + 1).split(/\n##/)[0]!;
  return [...section.matchAll(/^\| `(\w+)\((?:\{ ([^}]*) \})?\)` \| \[`(creditkit_\w+)`\]\(sql-api\.md#(\w+)\)/gm)].map((m) => {
    expect(m[4], `anchor of ${m[1]}`).toBe(m[3]);
    return { method: m[1]!, params: m[2] ? m[2].split(', ') : null, fn: m[3]! };
  });
}

/** `creditkit_x` → its parameters as the SDK names them, from docs/sql-api.md (`?` = has a default). */
function sqlParams(sqlApi: string): Map<string, string[]> {
  const params = new Map<string, string[]>();
  for (const m of sqlApi.matchAll(/^public\.(creditkit_\w+)\(\n([\s\S]*?)\n\) returns/gm)) {
    const names = m[2]!
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .map((l) => {
        const name = l.split(' ')[0]!.replace(/^p_/, '').replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
        return / DEFAULT /.test(l) ? `${name}?` : name;
      });
    params.set(m[1]!, names);
  }
  return params;
}

/** A transport that records which function a method called and answers with an empty row. */
function recorder(): { transport: Transport; calls: string[] } {
  const calls: string[] = [];
  return { calls, transport: { kind: 'recorder', rpc: async (fn) => (calls.push(fn), [{}]) } };
}

const methodsOf = (proto: object) =>
  Object.getOwnPropertyNames(proto).filter((n) => n !== 'constructor' && typeof Object.getOwnPropertyDescriptor(proto, n)!.value === 'function');

describe('docs/sdk.md method tables', () => {
  const sdk = read('docs/sdk.md');
  const sqlApi = read('docs/sql-api.md');
  const signatures = sqlParams(sqlApi);
  const tables = [
    { heading: 'Server', make: (t: Transport) => new CreditkitServer(t), proto: CreditkitServer.prototype, skip: ['asUser'] },
    { heading: 'Browser', make: (t: Transport) => new CreditkitClient(t), proto: CreditkitClient.prototype, skip: [] as string[] },
  ];

  for (const { heading, make, proto, skip } of tables) {
    it(`${heading}: one row per method, naming the function it calls and its parameters as in sql-api.md`, async () => {
      const rows = tableRows(sdk, heading);
      expect(rows.map((r) => r.method).sort()).toEqual(methodsOf(proto).filter((n) => !skip.includes(n)).sort());
      for (const row of rows) {
        const { transport, calls } = recorder();
        await (make(transport) as unknown as Record<string, (p?: object) => Promise<unknown>>)[row.method]!({});
        expect(calls, row.method).toEqual([row.fn]);
        expect(row.params ?? [], `${row.method} parameters`).toEqual(signatures.get(row.fn));
      }
    });
  }

  it('links only to anchors that exist', () => {
    const slug = (h: string) => h.trim().toLowerCase().replace(/[^\w\s-]/g, '').replace(/\s+/g, '-');
    const anchors = (md: string) => new Set([...md.matchAll(/^#{1,6} (.+)$/gm)].map((m) => slug(m[1]!.replace(/`/g, ''))));
    const readme = read('README.md');
    const check = (md: string, targets: Record<string, Set<string>>, pattern: RegExp) => {
      const links = [...md.matchAll(pattern)];
      for (const [link, file, anchor] of links) expect(targets[file!]?.has(anchor!), link).toBe(true);
      return links.length;
    };
    // sdk.md → itself and sql-api.md; README → itself and sdk.md
    expect(check(sdk, { '': anchors(sdk), 'sql-api.md': anchors(sqlApi) }, /\]\(((?:sql-api\.md)?)#([\w-]+)\)/g)).toBeGreaterThan(30);
    expect(check(readme, { '': anchors(readme), 'docs/sdk.md': anchors(sdk) }, /\]\(((?:docs\/sdk\.md)?)#([\w-]+)\)/g)).toBeGreaterThan(1);
  });
});

// ── Refreshing the documented outputs (CREDITKIT_UPDATE_DOCS=1) ─────────────────────────────

afterAll(async () => {
  rmSync(tmp, { recursive: true, force: true });
  if (!update) return;
  for (const source of SOURCES) {
    const lines = read(source).split('\n');
    // bottom-up, so earlier line numbers stay valid
    for (const block of runnable.filter((b) => b.source === source).reverse()) {
      const result = await runBlock(block);
      if (result.exitCode !== 0) continue;
      const { line, end } = block.expected!;
      lines.splice(line, end - line - 1, ...result.stdout.replace(/\n$/, '').split('\n'));
    }
    writeFileSync(join(repo, source), lines.join('\n'));
  }
});
