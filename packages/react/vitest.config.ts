// Vitest project for @creditkit/react; the root vitest.config.ts runs it with every other package.
// Components render in happy-dom and talk to the real SDK on PGlite (one database per file).
import { defineProject } from 'vitest/config';

export default defineProject({
  test: {
    name: 'react',
    environment: 'happy-dom',
    include: ['test/**/*.test.{ts,tsx}'],
    setupFiles: ['test/setup.ts'],
    // Transform as for Node, not the web: in web mode Vite rewrites `new URL(path, import.meta.url)`
    // into a URL on the dev server, and the embedded database could not find its migrations.
    testTransformMode: { ssr: ['**/*'] },
    // PGlite boots a WASM Postgres once per file
    testTimeout: 30_000,
    hookTimeout: 120_000,
  },
});
