// Vitest project for @creditkit/db; the root vitest.config.ts runs it with every other package.
import { defineProject } from 'vitest/config';

export default defineProject({
  test: {
    name: 'db',
    include: ['test/**/*.test.ts'],
    // PGlite boots a WASM Postgres and every suite builds a fresh database: allow for it
    testTimeout: 30_000,
    hookTimeout: 120_000,
  },
});
