// Usage and margin per unit (creditkit_unit_usage) for the operator dashboard. @creditkit/core has
// no typed method for it yet, so it is called through the server client's own transport (as
// service_role, like every other dashboard read) with the SDK's parameter conversion.
import { toSqlArgs, type Database } from '@creditkit/core';
import type { CreditkitServer } from '@creditkit/core/server';

type Row = Database['public']['Functions']['creditkit_unit_usage']['Returns'][number];

export interface UnitUsage {
  unit: string;
  calls: number;
  /** Spent of the unit itself. */
  spent: number;
  /** Credits spent in its place at the overage price (those calls count for the unit). */
  overageCredits: number;
  granted: number;
  revenueMicros: number;
  costMicros: number;
  marginMicros: number;
}

/** Per unit over [from, to): credits first, then by unit. */
export async function unitUsage(creditkit: CreditkitServer, params: { from: Date; to: Date }): Promise<UnitUsage[]> {
  const rows = (await creditkit.transport.rpc('creditkit_unit_usage', toSqlArgs(params))) as Row[];
  return rows.map((r) => ({
    unit: r.unit,
    calls: r.calls,
    spent: r.spent,
    overageCredits: r.overage_credits,
    granted: r.granted,
    revenueMicros: r.revenue_micros,
    costMicros: r.cost_micros,
    marginMicros: r.margin_micros,
  }));
}
