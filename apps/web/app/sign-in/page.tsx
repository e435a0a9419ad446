// Sign in as one of the seeded demo users (a real app has Supabase Auth here).
import { redirect } from 'next/navigation';
import { DEMO_USERS, demoUserByKey } from '@/lib/demo-users.ts';
import { getDemo } from '@/lib/server/demo.ts';
import { signInAs } from '@/lib/server/session.ts';

export const dynamic = 'force-dynamic';

async function signInAction(form: FormData) {
  'use server';
  const user = demoUserByKey(String(form.get('user')));
  if (!user) redirect('/sign-in');
  await signInAs(user);
  redirect('/');
}

export default async function SignIn() {
  const demo = await getDemo();
  return (
    <div className="narrow">
      <h1>Sign in</h1>
      <p className="muted">
        Pick a demo user. Each has an account in the database ({demo.backend === 'pglite' ? 'embedded PGlite' : 'Postgres from DATABASE_URL'};
        checkout is {demo.stripe.mode === 'stripe' ? 'real Stripe Checkout' : 'simulated, through the real webhook'}).
      </p>
      <ul className="users">
        {DEMO_USERS.map((u) => (
          <li key={u.key} className="card">
            <form action={signInAction}>
              <input type="hidden" name="user" value={u.key} />
              <div>
                <h2>{u.name}</h2>
                <p className="muted">{u.story}</p>
              </div>
              <button type="submit" className="ck-button">
                Sign in as {u.name.split(' ')[0]}
              </button>
            </form>
          </li>
        ))}
      </ul>
    </div>
  );
}
