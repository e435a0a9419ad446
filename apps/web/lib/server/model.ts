// The "models": a short wait and an SVG made from the prompt, or a canned chat reply, standing in
// for paid vendor calls. Deterministic per prompt, so the same prompt draws the same picture and
// gets the same answer.
import { createHash } from 'node:crypto';

const escape = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export async function simulatedModel(prompt: string, quality: 'standard' | 'hd'): Promise<string> {
  await new Promise((resolve) => setTimeout(resolve, quality === 'hd' ? 400 : 200));
  const h = createHash('sha256').update(prompt).digest();
  const hue = (i: number) => Math.round((h[i]! / 255) * 360);
  const size = quality === 'hd' ? 512 : 256;
  const circles = Array.from({ length: quality === 'hd' ? 9 : 5 }, (_, i) => {
    const x = (h[i + 3]! / 255) * size;
    const y = (h[i + 12]! / 255) * size;
    const r = 12 + (h[i + 20]! / 255) * (size / 4);
    return `<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="${r.toFixed(1)}" fill="hsl(${hue(i + 1)} 70% 60%)" fill-opacity="0.55"/>`;
  }).join('');
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${size} ${size}" width="${size}" height="${size}">` +
    `<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="hsl(${hue(0)} 60% 25%)"/>` +
    `<stop offset="1" stop-color="hsl(${hue(1)} 60% 45%)"/></linearGradient></defs>` +
    `<rect width="100%" height="100%" fill="url(#g)"/>${circles}` +
    `<text x="12" y="${size - 14}" font-family="sans-serif" font-size="${size / 18}" fill="white">${escape(prompt.slice(0, 40))}</text></svg>`;
  return `data:image/svg+xml;base64,${Buffer.from(svg).toString('base64')}`;
}

const REPLIES = [
  'Good question. In a real app a language model would answer here; this demo only meters the message.',
  'Noted. Each message you send is one of your daily messages, or a credit once they are gone.',
  'I am a simulated assistant: no model was called, but the message was metered before this reply.',
  'Interesting. Try the billing page to see your messages and credits side by side.',
];

export async function simulatedChat(message: string): Promise<string> {
  await new Promise((resolve) => setTimeout(resolve, 80));
  return REPLIES[createHash('sha256').update(message).digest()[0]! % REPLIES.length]!;
}
