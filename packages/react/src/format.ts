// Numbers, prices and dates as the components show them: Intl formatting, and never NaN, a
// negative number or a fraction of a credit, whatever the data or the props hold.

/** A count to show: a whole number ≥ 0 (NaN, ±Infinity, negatives and non-numbers become 0). */
export function clampCount(value: unknown): number {
  if (typeof value === 'bigint') return value > 0n ? Number(value) : 0;
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? Math.floor(value) : 0;
}

export function formatCount(value: unknown, locale: string | string[] | undefined): string {
  return new Intl.NumberFormat(locale, { maximumFractionDigits: 0 }).format(clampCount(value));
}

/** What a unit price is for the components: a positive, finite number of credits, else null. */
export function validPrice(amount: unknown): number | null {
  return typeof amount === 'number' && Number.isFinite(amount) && amount > 0 ? amount : null;
}

/**
 * How many whole units `balance` pays for at `amount` credits each, or null for an invalid price.
 * Exact: the price is read as the decimal it was written as (0.2 is 2/10, not the binary
 * 0.2000000000000000111), so 6 credits at 0.2 are 30 units, not 29.
 */
export function unitsLeft(balance: unknown, amount: unknown): number | null {
  const price = validPrice(amount);
  if (price === null) return null;
  const credits = clampCount(balance);
  const decimal = /^(\d+)(?:\.(\d+))?$/.exec(String(price));
  if (!decimal) return clampCount(credits / price); // exponent notation (1e-7, 1e+21): rare enough for floats
  const fraction = decimal[2] ?? '';
  const numerator = BigInt(decimal[1]! + fraction);
  return Number((BigInt(credits) * 10n ** BigInt(fraction.length)) / numerator);
}

/** `unit` or its plural for `count`, by the locale's plural rules ('one' takes the singular). */
export function pluralize(count: number, unit: string, unitPlural: string | undefined, locale: string | string[] | undefined): string {
  return new Intl.PluralRules(locale).select(count) === 'one' ? unit : (unitPlural ?? `${unit}s`);
}

/** "12 credits", "1 credit". */
export function formatCredits(value: unknown, locale: string | string[] | undefined): string {
  const n = clampCount(value);
  return `${formatCount(n, locale)} ${pluralize(n, 'credit', 'credits', locale)}`;
}

/**
 * How running text names a unit: its catalogue name, lower-cased unless it starts with an acronym
 * ("Messages" → "messages", "HD minutes" stays), or its id when the catalogue does not have it.
 */
export function unitNoun(units: ReadonlyArray<{ id: string; name: string }> | undefined, id: string): string {
  const name = units?.find((unit) => unit.id === id)?.name;
  if (!name) return id;
  return /^\p{Lu}\p{Ll}/u.test(name) ? name[0]!.toLowerCase() + name.slice(1) : name;
}

/** "12 credits", "1 credit"; with another unit's noun, "12 messages" (the noun as it is). */
export function formatAmount(value: unknown, noun: string | null, locale: string | string[] | undefined): string {
  return noun === null ? formatCredits(value, locale) : `${formatCount(value, locale)} ${noun}`;
}

/** A price in the currency's smallest unit (cents; yen have none), e.g. 900 USD → "$9.00". */
export function formatMoney(minorUnits: unknown, currency: string, locale: string | string[] | undefined): string {
  try {
    const format = new Intl.NumberFormat(locale, { style: 'currency', currency });
    const digits = format.resolvedOptions().maximumFractionDigits ?? 2;
    return format.format(clampCount(minorUnits) / 10 ** digits);
  } catch {
    return `${formatCount(minorUnits, locale)} ${currency}`; // not an ISO 4217 code
  }
}

/** A date (and optionally time) from an ISO string; '' when it does not parse. */
export function formatDate(iso: string, locale: string | string[] | undefined, withTime = false): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  return new Intl.DateTimeFormat(locale, withTime ? { dateStyle: 'medium', timeStyle: 'short' } : { dateStyle: 'medium' }).format(date);
}
