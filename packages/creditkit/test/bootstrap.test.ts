// Proves the test harness itself: the Supabase stand-in behaves like Supabase (roles, auth.*()
// helpers, RLS bypass, both default-privilege modes) on PGlite and on real Postgres, errors keep
// their SQLSTATE, and every migration applies. Every other suite trusts these facts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrapSql, defaultPrivilegesSql, migrations as loadMigrations } from 'creditkit';
import { createTestDatabase, type TestDatabase } from '@creditkit/testing';
import { describeEachBackend } from '@creditkit/testing/vitest';

describeEachBackend('supabase bootstrap', (backend) => {
  describe("privileges 'supabase'", () => {
    let db: TestDatabase;
    beforeAll(async () => {
      db = await createTestDatabase({ backend, defaultPrivileges: 'supabase' });
    });
    afterAll(() => db?.drop());

    it('is idempotent and creates the API roles like Supabase', async () => {
      await db.exec(bootstrapSql());
      await db.exec(bootstrapSql());
      const roles = await db.query<{ rolname: string; rolcanlogin: boolean; rolinherit: boolean; rolbypassrls: boolean }>(
        `select rolname, rolcanlogin, rolinherit, rolbypassrls from pg_roles
          where rolname in ('anon', 'authenticated', 'service_role', 'authenticator') order by rolname`,
      );
      expect(roles).toEqual([
        { rolname: 'anon', rolcanlogin: false, rolinherit: false, rolbypassrls: false },
        { rolname: 'authenticated', rolcanlogin: false, rolinherit: false, rolbypassrls: false },
        { rolname: 'authenticator', rolcanlogin: true, rolinherit: false, rolbypassrls: false },
        { rolname: 'service_role', rolcanlogin: false, rolinherit: false, rolbypassrls: true },
      ]);
      const [member] = await db.query<{ ok: boolean }>(
        `select bool_and(pg_has_role('authenticator', r, 'member')) as ok
           from unnest(array['anon', 'authenticated', 'service_role']) r`,
      );
      expect(member?.ok).toBe(true);
    });

    it('auth.uid() is NULL for anon and the sub for a user; auth.role() and auth.jwt() read the claims', async () => {
      const userId = await db.createUser('alice@example.test');
      expect(await db.asAnon('select auth.uid() as uid, auth.role() as role')).toEqual([{ uid: null, role: 'anon' }]);
      expect(await db.asUser(userId, 'select auth.uid() as uid, auth.role() as role, current_user as who')).toEqual([
        { uid: userId, role: 'authenticated', who: 'authenticated' },
      ]);
      expect(await db.asService('select auth.role() as role, current_user as who')).toEqual([
        { role: 'service_role', who: 'service_role' },
      ]);
      expect(await db.asRole('authenticated', { sub: userId, role: 'authenticated', plan: 'pro' }, `select auth.jwt() ->> 'plan' as plan`)).toEqual([
        { plan: 'pro' },
      ]);
      expect(await db.asRole('anon', null, 'select auth.uid() as uid, auth.jwt() as jwt')).toEqual([{ uid: null, jwt: null }]);
    });

    it('settings are local to each call: the superuser connection is unchanged afterwards', async () => {
      await db.asAnon('select 1');
      expect(await db.query(`select current_user as who, coalesce(current_setting('request.jwt.claims', true), '') as claims`)).toEqual([
        { who: 'postgres', claims: '' },
      ]);
    });

    it('service_role bypasses RLS, authenticated does not', async () => {
      await db.exec(`
        create table public.harness_rls (id int);
        alter table public.harness_rls enable row level security;
        insert into public.harness_rls values (1), (2);`);
      expect(await db.asService('select count(*)::int as n from public.harness_rls')).toEqual([{ n: 2 }]);
      expect(await db.asUser(await db.createUser(), 'select count(*)::int as n from public.harness_rls')).toEqual([{ n: 0 }]);
    });

    it('anything new in public is open to anon (Supabase default)', async () => {
      await db.exec(`
        create table public.harness_open (id int);
        create function public.harness_fn() returns int language sql as 'select 42';`);
      expect(await db.asAnon('select public.harness_fn() as v')).toEqual([{ v: 42 }]);
      expect(await db.asAnon('select count(*)::int as n from public.harness_open')).toEqual([{ n: 0 }]);
    });

    it('errors keep their SQLSTATE and roll the call back', async () => {
      await expect(db.query('select 1/0')).rejects.toMatchObject({ code: '22012' });
      await expect(db.asAnon('select * from auth.users')).rejects.toMatchObject({ code: '42501' });
      await db.exec('create table public.harness_tx (id int primary key)');
      await expect(db.asService('insert into public.harness_tx values (1), (1)')).rejects.toMatchObject({ code: '23505' });
      expect(await db.query('select count(*)::int as n from public.harness_tx')).toEqual([{ n: 0 }]);
    });

    it.skipIf(backend !== 'postgres')('pool() gives real connections to the throwaway database', async () => {
      const pool = db.pool({ max: 6 });
      const rows = await Promise.all(
        Array.from({ length: 6 }, () => pool.query<{ db: string; pid: number }>('select current_database() as db, pg_backend_pid() as pid, pg_sleep(0.2)')),
      );
      expect(new Set(rows.map((r) => r.rows[0]?.db))).toEqual(new Set([new URL(db.url ?? '').pathname.slice(1)]));
      expect(new Set(rows.map((r) => r.rows[0]?.pid)).size).toBe(6);
    });

    it('applies every migration exactly once, recorded like the Supabase CLI', async () => {
      const rows = await db.query<{ version: string }>('select version from supabase_migrations.schema_migrations order by version');
      expect(rows.map((r) => r.version)).toEqual(loadMigrations().map((m) => m.version));
    });
  });

  describe("privileges 'revoked'", () => {
    let db: TestDatabase;
    beforeAll(async () => {
      db = await createTestDatabase({ backend, defaultPrivileges: 'revoked', migrate: false });
    });
    afterAll(() => db?.drop());

    it('nothing new in public is open to anon', async () => {
      await db.exec(`
        create table public.harness_closed (id int);
        create function public.harness_fn() returns int language sql as 'select 42';`);
      await expect(db.asAnon('select public.harness_fn()')).rejects.toMatchObject({ code: '42501' });
      await expect(db.asAnon('select count(*) from public.harness_closed')).rejects.toMatchObject({ code: '42501' });
      await expect(db.asUser(await db.createUser(), 'select public.harness_fn()')).rejects.toMatchObject({ code: '42501' });
    });

    it('auth.uid() still works for a user', async () => {
      const userId = await db.createUser();
      expect(await db.asUser(userId, 'select auth.uid() as uid')).toEqual([{ uid: userId }]);
    });

    it('the default-privilege statements can be rerun', async () => {
      await db.exec(defaultPrivilegesSql('revoked'));
      await db.exec(bootstrapSql());
    });
  });
});
