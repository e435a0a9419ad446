// The machine and server a run came from, for the report.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import type pg from 'pg';

export interface Machine {
  cpu: string;
  cores: number;
  memory: string;
  os: string;
  node: string;
  postgres: string;
  pgbench: string;
  settings: Array<{ name: string; setting: string }>;
  commit: string;
}

const SETTINGS = [
  'shared_buffers',
  'synchronous_commit',
  'fsync',
  'wal_level',
  'wal_sync_method',
  'wal_buffers',
  'wal_writer_delay',
  'commit_delay',
  'full_page_writes',
  'wal_compression',
  'max_wal_size',
  'checkpoint_timeout',
  'max_connections',
  'work_mem',
  'effective_io_concurrency',
  'autovacuum',
  'jit',
];

export async function describeMachine(client: pg.Client, pgbench: string, root: string): Promise<Machine> {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
  const processors = (cpuinfo.match(/^processor\s*:/gm) ?? []).length || os.cpus().length;
  const meminfo = existsSync('/proc/meminfo') ? readFileSync('/proc/meminfo', 'utf8') : '';
  const memKb = Number(/^MemTotal:\s*(\d+) kB/m.exec(meminfo)?.[1] ?? os.totalmem() / 1024);
  const version = (await client.query<{ v: string }>('select version() as v')).rows[0]!.v;
  const settings = (
    await client.query<{ name: string; setting: string }>(
      `select name, current_setting(name) as setting from pg_settings where name = any($1) order by array_position($1, name)`,
      [SETTINGS],
    )
  ).rows;
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: root, encoding: 'utf8' }).trim();
    if (dirty) commit += ' (with uncommitted changes)';
  } catch {
    // not a git checkout
  }
  return {
    cpu: model,
    cores: processors,
    memory: `${(memKb / 1024 / 1024).toFixed(1)} GiB`,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    postgres: version,
    pgbench,
    settings,
    commit,
  };
}
