// One `vitest run` at the root covers every package and app: each packages/* and apps/* folder
// with a vitest.config.ts is a project.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: ['packages/*', 'apps/*/vitest.config.ts'],
  },
});
