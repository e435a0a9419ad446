// Next.js config for the demo app. It uses the creditkit packages as any app does: their built
// JavaScript from node_modules, so nothing of theirs is transpiled here. PGlite (WebAssembly) and
// node-postgres are loaded by Node as they are, not bundled.
import type { NextConfig } from 'next';

const config: NextConfig = {
  serverExternalPackages: ['@electric-sql/pglite', 'pg'],
  // The browser tests build into their own directory, so they never clash with `pnpm demo`.
  distDir: process.env.CREDITKIT_WEB_DIST_DIR || '.next',
  devIndicators: false,
};
export default config;
