// Vitest project for @creditkit/stripe; the root vitest.config.ts runs it with every other package.
import { defineProject } from 'vitest/config';

export default defineProject({
  test: {
    name: 'stripe',
    include: ['test/**/*.test.ts'],
    // PGlite boots a WASM Postgres per suite; the Edge Function suite starts Deno, which fetches
    // its npm dependencies on a fresh machine
    testTimeout: 60_000,
    hookTimeout: 300_000,
  },
});
