// Transport wrappers the suites put around the SDK's real transports: they count, hold back or
// alter calls on their way to the database, and never answer in its place. Typed by shape (a
// transport is `{ kind, rpc(fn, args) }`), so this package needs nothing from @creditkit/core and
// core's own tests can use it without a dependency cycle.

/** The shape of @creditkit/core's Transport. */
export interface TransportLike {
  readonly kind: string;
  rpc(fn: string, args: Record<string, unknown>): Promise<unknown[]>;
}

/** Counts the calls it passes on, and remembers which functions they called. */
export function counting<T extends TransportLike>(inner: T): TransportLike & { readonly calls: string[] } {
  const calls: string[] = [];
  return {
    kind: `counting(${inner.kind})`,
    calls,
    rpc(fn, args) {
      calls.push(fn);
      return inner.rpc(fn, args);
    },
  };
}

/**
 * Holds calls until release(): the components stay in their loading state meanwhile. Closed from
 * the start unless told otherwise; close() holds the calls after it again. Counts the calls.
 */
export function gated(inner: TransportLike, closed = true): TransportLike & { calls: string[]; close(): void; release(): void } {
  let gate: Promise<void> | null = null;
  let open = () => {};
  const close = () => void (gate = new Promise<void>((resolve) => (open = resolve)));
  if (closed) close();
  const calls: string[] = [];
  return {
    kind: `gated(${inner.kind})`,
    calls,
    close,
    release: () => ((gate = null), open()),
    rpc: async (fn, args) => {
      calls.push(fn);
      if (gate) await gate;
      return inner.rpc(fn, args);
    },
  };
}

/** Passes the database's answer through `alter` (to prove a guard against impossible data). */
export function tampered(inner: TransportLike, alter: (fn: string, rows: unknown[]) => unknown[]): TransportLike {
  return { kind: `tampered(${inner.kind})`, rpc: async (fn, args) => alter(fn, await inner.rpc(fn, args)) };
}
