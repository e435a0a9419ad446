// Vitest project for creditkit's SQL (the behaviour of every public.creditkit_* function, on
// PGlite and on real Postgres); the root vitest.config.ts runs it with every other package.
import { fileURLToPath } from 'node:url';
import { defineProject } from 'vitest/config';

export default defineProject({
  test: {
    name: 'sql',
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**'],
    // PGlite boots a WASM Postgres and every suite builds a fresh database: allow for it
    testTimeout: 30_000,
    hookTimeout: 120_000,
    env: {
      // citus.test.ts: the shared Citus build beside the checkout (<repo>/../shared/citus), unless
      // CREDITKIT_CITUS_DIR says where it is; @creditkit/testing reads only the variable
      CREDITKIT_CITUS_DIR: process.env.CREDITKIT_CITUS_DIR || fileURLToPath(new URL('../../../../shared/citus', import.meta.url)),
    },
  },
});
