// Styling hooks shared by every component: a `className` for the root, a `classNames` object with
// one key per part ("slot"), and stable data attributes: the root has data-creditkit="<component>",
// each part data-creditkit="<component>-<slot>". Nothing is styled inline.

export type ClassNames<Slot extends string> = Partial<Record<Slot | 'root', string>>;

export function cx(...names: Array<string | false | null | undefined>): string | undefined {
  const joined = names.filter(Boolean).join(' ');
  return joined || undefined;
}

/** Props for one component's root and parts: `root()` and `part('value')`. */
export function slots<Slot extends string>(component: string, classNames: ClassNames<Slot> | undefined, className?: string) {
  return {
    root: () => ({ 'data-creditkit': component, className: cx(classNames?.root, className) }),
    part: (slot: Slot) => ({ 'data-creditkit': `${component}-${slot}`, className: cx(classNames?.[slot]) }),
  };
}
