'use client';
// The ledger as a table, newest first, a page at a time with a "Load more" button. Amounts are
// shown unsigned (the Activity column says which way they went), so nothing reads as negative.
import { useEffect, useId, useRef, type ReactNode } from 'react';
import type { HistoryEntry } from '@creditkit/core';
import { useCreditkit } from '../context.tsx';
import { formatCount, formatDate } from '../format.ts';
import { useHistory } from '../hooks.ts';
import { slots, type ClassNames } from '../slots.ts';

export type UsageHistorySlot = 'table' | 'caption' | 'header' | 'row' | 'cell' | 'empty' | 'button' | 'error';

export interface UsageHistoryProps {
  /** Entries per page (default 20, at most 1000). */
  pageSize?: number;
  /** Default "Usage history". */
  caption?: ReactNode;
  /** The Activity cell of an entry. Default: "Credits added", "Used: image_gen", "Credits expired", … */
  describe?: (entry: HistoryEntry) => ReactNode;
  /** Text of the button (default "Load more"). */
  loadMoreLabel?: ReactNode;
  className?: string;
  classNames?: ClassNames<UsageHistorySlot>;
}

/** The default Activity text of a ledger entry. */
export function describeEntry(entry: HistoryEntry): string {
  const added = entry.amount >= 0;
  switch (entry.kind) {
    case 'grant':
      return 'Credits added';
    case 'consume':
      return entry.event ? `Used: ${entry.event}` : 'Credits used';
    case 'expire':
      return 'Credits expired';
    case 'adjust':
      return added ? 'Adjustment: added' : 'Adjustment: removed';
    default:
      return `${entry.kind}: ${added ? 'added' : 'removed'}`;
  }
}

const COLUMNS = ['Date', 'Activity', 'Credits', 'Balance'] as const;

export function UsageHistory({ pageSize, caption, describe = describeEntry, loadMoreLabel, className, classNames }: UsageHistoryProps): ReactNode {
  const { accountId, locale } = useCreditkit();
  const history = useHistory({ ...(pageSize === undefined ? {} : { pageSize }) });
  const tableRef = useRef<HTMLTableElement>(null);
  const buttonRef = useRef<HTMLButtonElement>(null);
  const refocus = useRef(false);
  const captionId = useId();
  // The button goes away after the last page: keep keyboard focus in the table, not on <body>.
  useEffect(() => {
    if (history.hasNextPage || !refocus.current) return;
    refocus.current = false;
    tableRef.current?.focus();
  }, [history.hasNextPage]);
  if (accountId === null) return null;

  const s = slots('usage-history', classNames, className);
  const entries = history.data?.pages.flatMap((page) => page.entries) ?? [];
  const loading = history.isPending;
  const failed = history.isError && !history.isFetchingNextPage;
  const fetchingMore = history.isFetchingNextPage;

  function loadMore() {
    if (fetchingMore) return;
    refocus.current = document.activeElement === buttonRef.current;
    void history.fetchNextPage();
  }

  let body: ReactNode;
  if (entries.length > 0) {
    body = entries.map((entry) => (
      <tr key={entry.id} {...s.part('row')} data-kind={entry.kind} data-direction={entry.amount >= 0 ? 'in' : 'out'}>
        <td {...s.part('cell')}>
          <time dateTime={entry.createdAt}>{formatDate(entry.createdAt, locale, true)}</time>
        </td>
        <td {...s.part('cell')}>{describe(entry)}</td>
        <td {...s.part('cell')}>{formatCount(Math.abs(entry.amount), locale)}</td>
        <td {...s.part('cell')}>{formatCount(entry.balanceAfter, locale)}</td>
      </tr>
    ));
  } else {
    body = (
      <tr {...s.part('row')}>
        <td {...s.part('empty')} colSpan={COLUMNS.length} {...(loading ? { 'data-placeholder': '' } : {})}>
          {loading ? 'Loading…' : failed ? '—' : 'No activity yet'}
        </td>
      </tr>
    );
  }

  return (
    <div {...s.root()} aria-busy={loading || fetchingMore} data-state={loading ? 'loading' : failed ? 'error' : 'ready'}>
      <table {...s.part('table')} ref={tableRef} tabIndex={-1} aria-labelledby={captionId}>
        <caption {...s.part('caption')} id={captionId}>
          {caption ?? 'Usage history'}
        </caption>
        <thead>
          <tr>
            {COLUMNS.map((column) => (
              <th key={column} {...s.part('header')} scope="col">
                {column}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>{body}</tbody>
      </table>
      {failed ? (
        <p {...s.part('error')} role="alert">
          Usage history could not be loaded.
        </p>
      ) : null}
      {history.hasNextPage ? (
        // aria-disabled, not disabled, while fetching: a disabled button would drop keyboard focus
        <button {...s.part('button')} ref={buttonRef} type="button" aria-disabled={fetchingMore} aria-busy={fetchingMore} onClick={loadMore}>
          {loadMoreLabel ?? 'Load more'}
        </button>
      ) : null}
    </div>
  );
}
