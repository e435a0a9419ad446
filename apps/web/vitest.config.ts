// Vitest project for the demo app; the root vitest.config.ts runs it with every package. The
// global setup builds the app once (next build into .next-test); the suites start it with
// `next start` on free ports and drive it with Chromium and HTTP.
import { fileURLToPath } from 'node:url';
import { defineProject } from 'vitest/config';

export default defineProject({
  resolve: { alias: { '@': fileURLToPath(new URL('.', import.meta.url)) } },
  test: {
    name: 'web',
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/build.ts'],
    testTimeout: 120_000,
    hookTimeout: 240_000,
  },
});
