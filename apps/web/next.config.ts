// Next.js config for the demo app. The creditkit packages are TypeScript source, so Next compiles
// them; PGlite (WebAssembly) and node-postgres are loaded by Node as they are, not bundled.
import type { NextConfig } from 'next';

const config: NextConfig = {
  transpilePackages: ['@creditkit/core', '@creditkit/db', '@creditkit/react', '@creditkit/stripe', 'creditkit'],
  serverExternalPackages: ['@electric-sql/pglite', 'pg'],
  // The browser tests build into their own directory, so they never clash with `pnpm demo`.
  distDir: process.env.CREDITKIT_WEB_DIST_DIR || '.next',
  devIndicators: false,
};
export default config;
