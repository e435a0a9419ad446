// The AI app: generate an image for credits, and chat for messages (a daily allowance, then
// credits). The routes meter before the model call; a 402 shows the paywall, and the balances on
// screen change as soon as a call is charged.
import { redirect } from 'next/navigation';
import { currentUser } from '@/lib/server/session.ts';
import { Chat } from './chat.tsx';
import { Studio } from './studio.tsx';

export const dynamic = 'force-dynamic';

export default async function Home() {
  const user = await currentUser();
  if (!user) redirect('/sign-in');
  return (
    <>
      <Studio firstName={user.name.split(' ')[0]!} />
      <Chat />
    </>
  );
}
