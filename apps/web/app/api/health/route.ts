// GET /api/health: boots the database on first call (migrations, seed) and says what it runs on.
// `pnpm demo` and the browser tests call it before printing or using the URL.
import { getDemo } from '@/lib/server/demo.ts';

export const dynamic = 'force-dynamic';

export async function GET(): Promise<Response> {
  const demo = await getDemo();
  return Response.json({ ok: true, backend: demo.backend, stripe: demo.stripe.mode });
}
