import { ConfigError } from '../config/config-error';

export interface Monitor {
  metric: string;
  mode: 'max' | 'min';
}

/** Parses checkpoint.monitor, "max val/mIoU" or "min val/loss". */
export function parseMonitor(spec: string | null): Monitor | null {
  if (spec === null) return null;
  const m = /^\s*(max|min)\s+(\S+)\s*$/.exec(spec);
  if (!m) throw new ConfigError(`checkpoint.monitor: expected "max <metric>" or "min <metric>", got '${spec}'`);
  return { mode: m[1] as Monitor['mode'], metric: m[2] };
}

export function isImprovement(value: number, best: number | undefined, mode: Monitor['mode']): boolean {
  if (Number.isNaN(value)) return false;
  if (best === undefined) return true;
  return mode === 'max' ? value > best : value < best;
}
