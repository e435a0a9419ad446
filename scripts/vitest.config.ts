// Vitest project for checks of the repository as a whole (scripts/test): the packages as packed
// and installed outside the monorepo. The root vitest.config.ts runs it with every package.
import { defineProject } from 'vitest/config';

export default defineProject({
  test: {
    name: 'repo',
    include: ['test/**/*.test.ts'],
    // npm installs from the registry (cached after the first run)
    testTimeout: 120_000,
    hookTimeout: 600_000,
  },
});
