// The two things the CLI reads or writes in supabase/config.toml, by line: the `[api]` section's
// `schemas` (doctor: the creditkit schema must not be exposed through the Data API) and the
// `verify_jwt` of the `[functions.stripe-webhook]` and `[functions.creditkit-worker]` sections
// (init --with-stripe: Stripe's requests and the worker's cron calls carry no Supabase JWT).
// Everything else in the file is left byte for byte as it was.

interface Section {
  name: string;
  /** Index of the `[name]` line; -1 for the top of the file. */
  start: number;
  /** Index one past the section's last line. */
  end: number;
}

function sections(lines: string[]): Section[] {
  const out: Section[] = [];
  let current: Section = { name: '', start: -1, end: lines.length };
  lines.forEach((line, i) => {
    const header = /^\s*\[\s*([^\]]+?)\s*\]\s*(#.*)?$/.exec(line);
    if (!header) return;
    current.end = i;
    out.push(current);
    current = { name: header[1]!.replace(/"/g, ''), start: i, end: lines.length };
  });
  out.push(current);
  return out;
}

/** The `[api]` section's `schemas` list, or null when the file does not set it. */
export function apiSchemas(toml: string): string[] | null {
  const lines = toml.split('\n');
  const api = sections(lines).find((s) => s.name === 'api');
  if (!api) return null;
  const body = lines.slice(api.start + 1, api.end).map((l) => l.replace(/#.*$/, '')).join('\n');
  const match = /^\s*schemas\s*=\s*\[([\s\S]*?)\]/m.exec(body);
  if (!match) return null;
  return [...match[1]!.matchAll(/"([^"]*)"|'([^']*)'/g)].map((m) => m[1] ?? m[2] ?? '');
}

/**
 * `toml` with `[functions.<name>]` setting `verify_jwt = false`, and what changed: 'added' (a new
 * section at the end), 'set' (the section was there with another value or none), 'none'.
 */
export function withoutJwtVerification(
  toml: string,
  fn: string,
  why = 'Stripe signs its webhook requests; they carry no Supabase JWT',
): { toml: string; change: 'added' | 'set' | 'none' } {
  const lines = toml.split('\n');
  const section = sections(lines).find((s) => s.name === `functions.${fn}`);
  if (!section) {
    const base = toml === '' ? '' : toml.endsWith('\n') ? `${toml}\n` : `${toml}\n\n`;
    const block =
      `# ${why} (written by creditkit init).\n` +
      `[functions.${fn}]\nverify_jwt = false\n`;
    return { toml: base + block, change: 'added' };
  }
  for (let i = section.start + 1; i < section.end; i++) {
    const setting = /^(\s*verify_jwt\s*=\s*)([^#\s]+)(.*)$/.exec(lines[i]!);
    if (!setting) continue;
    if (setting[2] === 'false') return { toml, change: 'none' };
    lines[i] = `${setting[1]}false${setting[3]}`;
    return { toml: lines.join('\n'), change: 'set' };
  }
  lines.splice(section.start + 1, 0, 'verify_jwt = false');
  return { toml: lines.join('\n'), change: 'set' };
}
