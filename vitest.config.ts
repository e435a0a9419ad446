// One `vitest run` at the root covers every package: each packages/* folder is a project with
// its own vitest.config.ts.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: ['packages/*'],
  },
});
