// Small server-rendered SVG charts for the dashboard: no chart library, no client JavaScript.
// Each chart is an <svg role="img"> with a <title> and <desc>, and the caller puts the same
// numbers in a table beside it for screen readers and copying.
import type { ReactNode } from 'react';

export const PALETTE = ['#4f46e5', '#0891b2', '#d97706', '#db2777', '#16a34a', '#7c3aed'];

export interface StackedSeries {
  name: string;
  /** One value per category, in category order. */
  values: number[];
}

/** Vertical stacked bars: one bar per category (e.g. a day), one colour per series (an event). */
export function StackedBarChart(props: { id: string; title: string; description: string; categories: string[]; series: StackedSeries[]; unit: string; width?: number }) {
  const { id, title, description, categories, series, unit } = props;
  const width = props.width ?? 640;
  const height = 220;
  const pad = { left: 40, right: 8, top: 10, bottom: 28 };
  const totals = categories.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] ?? 0), 0));
  const max = Math.max(1, ...totals);
  const ticks = niceTicks(max);
  const top = ticks[ticks.length - 1]!;
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const band = plotW / Math.max(1, categories.length);
  const y = (v: number) => pad.top + plotH - (v / top) * plotH;
  return (
    <figure className="chart">
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-labelledby={`${id}-t ${id}-d`} preserveAspectRatio="xMidYMid meet">
        <title id={`${id}-t`}>{title}</title>
        <desc id={`${id}-d`}>{description}</desc>
        {ticks.map((t) => (
          <g key={t}>
            <line x1={pad.left} x2={width - pad.right} y1={y(t)} y2={y(t)} className="grid-line" />
            <text x={pad.left - 6} y={y(t) + 4} textAnchor="end" className="axis">
              {t}
            </text>
          </g>
        ))}
        {categories.map((c, i) => {
          let acc = 0;
          return (
            <g key={c}>
              {series.map((s, k) => {
                const v = s.values[i] ?? 0;
                if (v === 0) return null;
                const rect = (
                  <rect key={s.name} x={pad.left + i * band + band * 0.15} width={band * 0.7} y={y(acc + v)} height={y(acc) - y(acc + v)} fill={PALETTE[k % PALETTE.length]}>
                    <title>{`${c} · ${s.name}: ${v} ${unit}`}</title>
                  </rect>
                );
                acc += v;
                return rect;
              })}
              {i % Math.ceil(categories.length / 8) === 0 ? (
                <text x={pad.left + i * band + band / 2} y={height - 8} textAnchor="middle" className="axis">
                  {c.slice(5)}
                </text>
              ) : null}
            </g>
          );
        })}
      </svg>
      <Legend names={series.map((s) => s.name)} />
    </figure>
  );
}

export interface HBar {
  label: string;
  value: number;
  /** Shown at the end of the bar instead of the raw value. */
  display?: string;
  tone?: 'good' | 'bad' | 'plain';
}

/** Horizontal bars, one row per item; negative values grow left from the zero line. */
export function HBarChart(props: { id: string; title: string; description: string; bars: HBar[]; width?: number }) {
  const { id, title, description, bars } = props;
  const width = props.width ?? 640;
  const row = 26;
  const label = Math.round(width * 0.25);
  const valueW = 80;
  const height = Math.max(row, bars.length * row) + 8;
  const min = Math.min(0, ...bars.map((b) => b.value));
  const max = Math.max(0, ...bars.map((b) => b.value));
  const span = max - min || 1;
  const plotW = width - label - valueW;
  const x = (v: number) => label + ((v - min) / span) * plotW;
  return (
    <figure className="chart">
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-labelledby={`${id}-t ${id}-d`} preserveAspectRatio="xMidYMid meet">
        <title id={`${id}-t`}>{title}</title>
        <desc id={`${id}-d`}>{description}</desc>
        <line x1={x(0)} x2={x(0)} y1={0} y2={height} className="grid-line" />
        {bars.map((b, i) => {
          const y0 = 4 + i * row;
          const left = Math.min(x(0), x(b.value));
          return (
            <g key={`${b.label}-${i}`}>
              <text x={label - 8} y={y0 + row / 2 + 4} textAnchor="end" className="axis">
                {b.label}
              </text>
              <rect x={left} y={y0 + 4} width={Math.max(1, Math.abs(x(b.value) - x(0)))} height={row - 10} className={`bar ${b.tone ?? 'plain'}`} />
              <text x={width - valueW + 6} y={y0 + row / 2 + 4} className="axis value">
                {b.display ?? String(b.value)}
              </text>
            </g>
          );
        })}
      </svg>
    </figure>
  );
}

function Legend({ names }: { names: string[] }): ReactNode {
  return (
    <figcaption className="legend">
      {names.map((n, k) => (
        <span key={n}>
          <i style={{ background: PALETTE[k % PALETTE.length] }} aria-hidden="true" /> {n}
        </span>
      ))}
    </figcaption>
  );
}

/** 0 and up to four round steps covering max. */
function niceTicks(max: number): number[] {
  const raw = max / 4;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(1, [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw);
  const ticks = [];
  for (let t = 0; t < max + step; t += step) {
    ticks.push(Math.round(t * 100) / 100);
    if (t >= max) break;
  }
  return ticks;
}
