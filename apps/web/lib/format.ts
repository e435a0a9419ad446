// Formatting shared by server and client components.

/** An amount in the currency's minor unit (cents) as money: 1900 → "$19.00". */
export function money(amount: number, currency: string): string {
  return new Intl.NumberFormat('en-US', { style: 'currency', currency: currency.toUpperCase() }).format(amount / 100);
}

/** Micros of the reporting currency (1 cent = 10,000 micros) as dollars: 1_500_000 → "$1.50". */
export function micros(amount: number): string {
  return new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' }).format(amount / 1_000_000);
}

export const int = (n: number): string => new Intl.NumberFormat('en-US').format(n);
