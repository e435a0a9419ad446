// The demo's sign-in: the chosen demo user's key in an httpOnly cookie. A real app has Supabase
// Auth here, and the account id is the user's id from the verified session (auth.uid()).
import { cookies } from 'next/headers';
import { demoUserByKey, type DemoUser } from '../demo-users.ts';

export const SESSION_COOKIE = 'creditkit_demo_user';

/** The signed-in demo user, or undefined. Only the seeded demo users can be signed in as. */
export async function currentUser(): Promise<DemoUser | undefined> {
  return demoUserByKey((await cookies()).get(SESSION_COOKIE)?.value);
}

export async function signInAs(user: DemoUser): Promise<void> {
  (await cookies()).set(SESSION_COOKIE, user.key, { httpOnly: true, sameSite: 'lax', path: '/' });
}

export async function signOut(): Promise<void> {
  (await cookies()).delete(SESSION_COOKIE);
}

/**
 * What a signed-in user may call: my balance and history (of any unit), my check of a unit, my
 * plan and features, quotes, and the catalogue (plans, packs, units); my auto top-up, my top-ups
 * and my low-balance threshold, read and set, and the auto top-up terms.
 */
export const BROWSER_FUNCTIONS: ReadonlySet<string> = new Set([
  'creditkit_my_balance',
  'creditkit_my_history',
  'creditkit_my_check',
  'creditkit_my_plan',
  'creditkit_my_feature',
  'creditkit_has_credits',
  'creditkit_quote',
  'creditkit_plans',
  'creditkit_packs',
  'creditkit_units',
  'creditkit_my_auto_topup',
  'creditkit_my_set_auto_topup',
  'creditkit_my_topups',
  'creditkit_my_balance_alert',
  'creditkit_my_set_balance_alert',
  'creditkit_auto_topup_terms',
]);

/**
 * The origin the browser used (from the Host header), for redirects, Stripe's return URLs and
 * the simulated checkout's delivery to the webhook. Next.js's request.url names `localhost`
 * whatever address was dialled.
 */
export function originOf(request: Request): string {
  const host = request.headers.get('x-forwarded-host') ?? request.headers.get('host');
  if (!host) return new URL(request.url).origin;
  const proto = request.headers.get('x-forwarded-proto') ?? new URL(request.url).protocol.replace(':', '');
  return `${proto}://${host}`;
}
