// Text for people: the progress line of a logging step and the per-class table of a validation.
import type { SegMetrics } from '../eval/confusion-matrix';

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(s % 60).padStart(2, '0')}s`;
}

const pct = (x: number) => (Number.isNaN(x) ? '  n/a' : (100 * x).toFixed(1).padStart(5));

export interface ProgressFields {
  epoch: number;
  epochs: number;
  epochIteration: number;
  itersPerEpoch: number;
  iteration: number;
  loss: number;
  lr: number;
  aAcc: number;
  mIoU: number;
  batchTime: number;
  dataTime: number;
  eta: number;
}

export function formatProgress(p: ProgressFields): string {
  return (
    `epoch ${p.epoch}/${p.epochs} iter ${p.epochIteration}/${p.itersPerEpoch} (${p.iteration}) ` +
    `loss ${p.loss.toFixed(4)} lr ${p.lr.toExponential(3)} aAcc ${pct(p.aAcc).trim()}% mIoU ${pct(p.mIoU).trim()}% ` +
    `time ${p.batchTime.toFixed(3)}s data ${p.dataTime.toFixed(3)}s eta ${formatDuration(p.eta)}`
  );
}

export function formatClassTable(names: readonly string[], m: SegMetrics): string {
  const width = Math.max(5, ...names.map((n) => n.length));
  const lines = [`${'class'.padEnd(width)}    IoU    Acc`];
  names.forEach((name, k) => lines.push(`${name.padEnd(width)}  ${pct(m.iou[k])}  ${pct(m.acc[k])}`));
  lines.push(`${'mean'.padEnd(width)}  ${pct(m.mIoU)}  ${pct(m.mAcc)}   aAcc ${pct(m.aAcc).trim()}%`);
  return lines.join('\n');
}
