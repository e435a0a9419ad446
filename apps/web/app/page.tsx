// The AI app: generate an image for credits. The route meters before the model call; a 402
// shows the paywall, and the balance on screen changes as soon as a call is charged.
import { redirect } from 'next/navigation';
import { currentUser } from '@/lib/server/session.ts';
import { Studio } from './studio.tsx';

export const dynamic = 'force-dynamic';

export default async function Home() {
  const user = await currentUser();
  if (!user) redirect('/sign-in');
  return <Studio firstName={user.name.split(' ')[0]!} />;
}
