// One `vitest run` at the root covers every package and app: each packages/* and apps/* folder
// with a vitest.config.ts is a project, and scripts/ holds the checks of the repository as a whole.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: ['packages/*', 'apps/*/vitest.config.ts', 'scripts/vitest.config.ts'],
  },
});
