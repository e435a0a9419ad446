import type { NextConfig } from 'next';

const config: NextConfig = {
  transpilePackages: ['@creditkit/core', '@creditkit/db', '@creditkit/stripe'],
  serverExternalPackages: ['@electric-sql/pglite', 'pg'],
};
export default config;
