// The shell: header with the signed-in demo user and the three places of the demo.
import type { Metadata } from 'next';
import Link from 'next/link';
import type { ReactNode } from 'react';
import { currentUser, signOut } from '@/lib/server/session.ts';
import { redirect } from 'next/navigation';
import { Providers } from './providers.tsx';
import './globals.css';

export const metadata: Metadata = {
  title: 'creditkit demo',
  description: 'Prepaid credits for an AI app on Postgres: metering, a paywall, Stripe checkout and an operator dashboard.',
};

async function signOutAction() {
  'use server';
  await signOut();
  redirect('/sign-in');
}

export default async function RootLayout({ children }: { children: ReactNode }) {
  const user = await currentUser();
  return (
    <html lang="en">
      <body>
        <header className="top">
          <Link href="/" className="brand">
            <span aria-hidden="true">◆</span> creditkit <span className="muted">demo</span>
          </Link>
          <nav aria-label="Main">
            <Link href="/">Generate</Link>
            <Link href="/billing">Billing</Link>
            <Link href="/dashboard">Dashboard <span className="tag">operator</span></Link>
          </nav>
          <div className="who">
            {user ? (
              <form action={signOutAction}>
                <span>
                  Signed in as <strong>{user.name.split(' ')[0]}</strong>
                </span>{' '}
                <button type="submit" className="ck-link">Sign out</button>
              </form>
            ) : (
              <Link href="/sign-in">Sign in</Link>
            )}
          </div>
        </header>
        <Providers accountId={user?.id ?? null}>
          <main>{children}</main>
        </Providers>
      </body>
    </html>
  );
}
