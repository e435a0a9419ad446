// docs/sql-api.md is generated from a fresh database (catalog comments, grants, executed
// examples). Re-rendering it here runs every example against the current migrations and fails
// when the committed file no longer matches what the database says.
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { renderSqlApiDocs } from '../../../scripts/docs/sql-api.ts';

describe('docs/sql-api.md', () => {
  it('matches the migrations and the real output of its examples (run `pnpm docs:sql` to refresh)', async () => {
    const committed = await readFile(new URL('../../../docs/sql-api.md', import.meta.url), 'utf8');
    const rendered = await renderSqlApiDocs();
    expect(rendered).toBe(committed);
    // The examples must have run, not just printed errors: the first grant shows a balance of 100.
    expect(rendered).toMatch(/transaction_id \| grant_id \| balance\n-+\+-+\+-+\n1 +\| 1 +\| 100/);
  }, 60_000);
});
