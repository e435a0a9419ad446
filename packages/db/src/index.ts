// @creditkit/db: creditkit's migrations on PGlite or on throwaway Postgres databases, with the
// Supabase roles and auth schema they expect. Vitest helpers live in '@creditkit/db/vitest'.
// The SQL and its installer are the `creditkit` package's; re-exported under the names the
// suites use.
export {
  migrations as loadMigrations,
  migrationsDir as defaultMigrationsDir,
  setupDatabase,
  bootstrapSql,
  defaultPrivilegesSql,
  pgConnection,
  type Migration,
  type PrivilegeMode,
  type SetupOptions,
  type SetupConnection,
} from 'creditkit';
export { createEmbeddedDatabase, pgliteConnection, parseInt8, type EmbeddedDatabaseOptions } from './embedded.ts';
export type { PGlite } from '@electric-sql/pglite';
export {
  createTestDatabase,
  testDatabaseName,
  postgresAvailable,
  postgresRequired,
  checkPostgres,
  type TestDatabase,
  type TestDatabaseOptions,
  type Backend,
  type ApiRole,
  type Row,
} from './testing.ts';
