// Renders query rows as a psql-style aligned table, for the demo and the generated docs.
export function formatTable(rows: Record<string, unknown>[]): string {
  if (rows.length === 0) return '(0 rows)';
  const cols = Object.keys(rows[0]!);
  const cell = (v: unknown): string =>
    v === null || v === undefined ? '' : v instanceof Date ? v.toISOString() : typeof v === 'object' ? JSON.stringify(v) : String(v);
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[], sep: string) => vals.map((v, i) => v.padEnd(width[i]!)).join(sep).trimEnd();
  return [
    line(cols, ' | '),
    width.map((w) => '-'.repeat(w)).join('-+-'),
    ...rows.map((r) => line(cols.map((c) => cell(r[c])), ' | ')),
    `(${rows.length} row${rows.length === 1 ? '' : 's'})`,
  ].join('\n');
}
