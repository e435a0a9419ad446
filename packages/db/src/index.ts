// @creditkit/db: creditkit's migrations on PGlite or on throwaway Postgres databases, with the
// Supabase roles and auth schema they expect. Vitest helpers live in '@creditkit/db/vitest'.
export { loadMigrations, defaultMigrationsDir, type Migration } from './migrations.ts';
export {
  setupDatabase,
  bootstrapSql,
  defaultPrivilegesSql,
  type PrivilegeMode,
  type SetupOptions,
  type SetupConnection,
} from './setup.ts';
export { createEmbeddedDatabase, pgliteConnection, parseInt8, type EmbeddedDatabaseOptions } from './embedded.ts';
export type { PGlite } from '@electric-sql/pglite';
export {
  createTestDatabase,
  testDatabaseName,
  postgresAvailable,
  postgresRequired,
  checkPostgres,
  pgConnection,
  type TestDatabase,
  type TestDatabaseOptions,
  type Backend,
  type ApiRole,
  type Row,
} from './testing.ts';
