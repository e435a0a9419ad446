// creditkit: the kit's SQL and the code that installs it. The migrations (the product: ledger,
// grants, plans, holds, Stripe, RLS and the public.creditkit_* functions), the Supabase bootstrap
// that lets them run on plain Postgres or PGlite, and setupDatabase, which applies both the way
// `supabase db push` would. Reads only files inside this package; loads no database driver.
export { migrations, type Migration } from './migrations.ts';
export { migrationsDir, upgradesDir, version } from './files.ts';
export { compareVersions, upgradePath, upgrades, type Upgrade } from './upgrades.ts';
export {
  setupDatabase,
  bootstrapSql,
  defaultPrivilegesSql,
  type PrivilegeMode,
  type SetupOptions,
} from './setup.ts';
export {
  pgConnection,
  pgliteConnection,
  parseInt8,
  type SetupConnection,
  type PgClientLike,
  type PgliteLike,
} from './connections.ts';
