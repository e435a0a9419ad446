// One `vitest run` at the root covers every package and app: each vitest.config.ts below is a
// project (the SQL's tests are a package of their own in packages/creditkit/test), and scripts/
// holds the checks of the repository as a whole. Config files, not folders: vitest would make a
// project of every folder a glob matches, config or not.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: ['packages/*/vitest.config.ts', 'packages/creditkit/test/vitest.config.ts', 'apps/*/vitest.config.ts', 'scripts/vitest.config.ts'],
  },
});
