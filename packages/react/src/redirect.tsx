'use client';
// The one behaviour BuyCreditsButton and ManageSubscriptionLink share: ask your server for a
// Stripe URL (checkout or portal), then go there. Busy from the click until the page leaves, so a
// double click cannot open two sessions; a failure ends the busy state and is kept to show.
import { useCallback, useEffect, useRef, useState, type ButtonHTMLAttributes, type ReactNode } from 'react';
import { useCreditkit } from './context.tsx';
import { slots, type ClassNames } from './slots.ts';

export interface Redirect {
  busy: boolean;
  error: unknown;
  start: () => Promise<void>;
}

export function useRedirect(
  createUrl: (() => Promise<string>) | undefined,
  missing: string,
  onError: ((error: unknown) => void) | undefined,
): Redirect {
  const { navigate } = useCreditkit();
  const [state, setState] = useState<{ busy: boolean; error: unknown }>({ busy: false, error: null });
  const inFlight = useRef(false);

  // Back from Stripe via the back/forward cache, the page comes back as it was left: busy.
  useEffect(() => {
    const onPageShow = (event: PageTransitionEvent) => {
      if (!event.persisted) return;
      inFlight.current = false;
      setState({ busy: false, error: null });
    };
    window.addEventListener('pageshow', onPageShow);
    return () => window.removeEventListener('pageshow', onPageShow);
  }, []);

  const start = useCallback(async () => {
    if (inFlight.current) return;
    inFlight.current = true;
    setState({ busy: true, error: null });
    try {
      if (!createUrl) throw new Error(missing);
      const url = await createUrl();
      if (typeof url !== 'string' || url === '') throw new Error('the server returned no URL');
      await navigate(url);
      // still busy: the page is leaving
    } catch (error) {
      inFlight.current = false;
      setState({ busy: false, error });
      onError?.(error);
    }
  }, [createUrl, missing, navigate, onError]);

  return { busy: state.busy, error: state.error, start };
}

export type RedirectButtonSlot = 'button' | 'error';

/** The button props both components take, besides their own. */
export type RedirectButtonProps = Omit<ButtonHTMLAttributes<HTMLButtonElement>, 'onClick' | 'type' | 'className' | 'onError'> & {
  children?: ReactNode;
  /** Shown (role=alert) when the session cannot be created. Default: a short sentence; the error goes to onError. */
  errorMessage?: ReactNode;
  onError?: (error: unknown) => void;
  className?: string;
  classNames?: ClassNames<RedirectButtonSlot>;
};

/** A real <button>: disabled and aria-busy while the URL is made, then an alert if that failed. */
export function RedirectButton({
  component,
  createUrl,
  missing,
  label,
  failure,
  props,
}: {
  component: string;
  createUrl: (() => Promise<string>) | undefined;
  missing: string;
  label: ReactNode;
  failure: ReactNode;
  props: RedirectButtonProps;
}): ReactNode {
  const { children, errorMessage, onError, className, classNames, disabled, ...buttonProps } = props;
  const { busy, error, start } = useRedirect(createUrl, missing, onError);
  const s = slots(component, classNames, className);
  return (
    <span {...s.root()} data-state={busy ? 'busy' : error ? 'error' : 'idle'}>
      <button {...buttonProps} {...s.part('button')} type="button" disabled={disabled || busy} aria-busy={busy} onClick={start}>
        {children ?? label}
      </button>
      {error ? (
        <span {...s.part('error')} role="alert">
          {errorMessage ?? failure}
        </span>
      ) : null}
    </span>
  );
}
