// The number rules every component shows through: whole, never negative, never NaN.
import { describe, expect, it } from 'vitest';
import { clampCount, unitsLeft } from '../src/index.ts';
import { formatCount, formatCredits, formatDate, formatMoney, pluralize } from '../src/format.ts';

describe('format', () => {
  it('clampCount: whole numbers ≥ 0 only', () => {
    expect([5, 5.9, 0, -3, -0, NaN, Infinity, -Infinity, '7', null, undefined, 12n, -4n].map(clampCount)).toEqual([
      5, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0,
    ]);
  });

  it('unitsLeft: floor(balance / amount), null for a price that is not a positive number', () => {
    expect(unitsLeft(7, 2)).toBe(3);
    expect(unitsLeft(1, 2)).toBe(0);
    expect(unitsLeft(6, 0.2)).toBe(30); // 6 / 0.2 is 29.999999999999996 in binary
    expect(unitsLeft(0.3, 0.1)).toBe(0); // fractional balances are floored first
    expect(unitsLeft(-10, 2)).toBe(0);
    expect(unitsLeft(NaN, 2)).toBe(0);
    expect(unitsLeft(Number.MAX_SAFE_INTEGER, 1)).toBe(Number.MAX_SAFE_INTEGER);
    expect(unitsLeft(Number.MAX_SAFE_INTEGER, 3)).toBe(3002399751580330);
    expect(unitsLeft(9, 0.3)).toBe(30); // 9 / 0.3 is 30.000000000000004, 0.3 * 30 is 8.999999999999998
    expect(unitsLeft(1, 1e-7)).toBe(10_000_000);
    for (const bad of [0, -2, NaN, Infinity, undefined]) expect(unitsLeft(10, bad)).toBeNull();
  });

  it('formats with Intl and plural rules', () => {
    expect(formatCount(1234567, 'en-US')).toBe('1,234,567');
    expect(formatCount(1234567, 'de-DE')).toBe('1.234.567');
    expect(formatCount(-5, 'en-US')).toBe('0');
    expect(formatCredits(1, 'en-US')).toBe('1 credit');
    expect(formatCredits(0, 'en-US')).toBe('0 credits');
    expect(pluralize(1, 'image generation', undefined, 'en-US')).toBe('image generation');
    expect(pluralize(2, 'mouse', 'mice', 'en-US')).toBe('mice');
    expect(formatMoney(900, 'USD', 'en-US')).toBe('$9.00');
    expect(formatMoney(900, 'JPY', 'en-US')).toBe('¥900');
    expect(formatMoney(-900, 'EUR', 'en-US')).toBe('€0.00');
    expect(formatMoney(900, 'not a currency', 'en-US')).toBe('900 not a currency');
    expect(formatDate('2026-12-01T12:00:00+00:00', 'en-US')).toBe('Dec 1, 2026');
    expect(formatDate('not a date', 'en-US')).toBe('');
  });
});
