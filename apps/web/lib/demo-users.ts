// The demo's users. In a real app these are Supabase Auth users and the account id is the user's
// id (auth.uid()); here they are rows in auth.users with fixed ids, chosen on the sign-in page.
// Shared by the server (session, seed) and the browser (the sign-in page), so nothing secret.

export interface DemoUser {
  /** The key the session cookie stores. */
  key: 'ada' | 'grace' | 'linus';
  id: string;
  name: string;
  email: string;
  /** What the seed gave them, shown on the sign-in page. */
  story: string;
}

export const DEMO_USERS: readonly DemoUser[] = [
  {
    key: 'ada',
    id: '00000000-0000-4000-8000-00000000a11c',
    name: 'Ada Lovelace',
    email: 'ada@example.com',
    story: 'New on the free plan with 10 welcome credits: spend them and meet the paywall.',
  },
  {
    key: 'grace',
    id: '00000000-0000-4000-8000-000000009ace',
    name: 'Grace Hopper',
    email: 'grace@example.com',
    story: 'Subscribed to Pro three weeks ago: a monthly allowance and HD upscaling.',
  },
  {
    key: 'linus',
    id: '00000000-0000-4000-8000-00000000714a',
    name: 'Linus Torvalds',
    email: 'linus@example.com',
    story: 'Bought a pack, got beta credits, renders a lot of video: the unprofitable one.',
  },
];

export function demoUserByKey(key: string | undefined | null): DemoUser | undefined {
  return DEMO_USERS.find((u) => u.key === key);
}

export function demoUserById(id: string): DemoUser | undefined {
  return DEMO_USERS.find((u) => u.id === id);
}
