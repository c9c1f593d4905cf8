// Lines a checkpoint's tensors up with the model's, as torch's load_state_dict(strict=False) reports
// them: matched, missing (model tensors nothing maps to), unexpected (checkpoint keys that map to no
// model tensor) and shape-mismatched. Only names and shapes are looked at here; values are converted
// afterwards, for the matched tensors alone.
import type { RawTensor } from '../checkpoint/safetensors';
import { segdistShapeOf, torchShapeOf, torchToSegdist } from './conv-layout';
import { stripWrapperPrefixes, type KeyScheme } from './key-schemes';
import { toFloat32 } from './tensor-values';
import type { NamedArray } from '../checkpoint/safetensors';

/** pytorch: OIHW conv weights, converted on import; segdist: HWIO already (weights import output, checkpoints). */
export type WeightLayout = 'pytorch' | 'segdist';

export interface ShapeMismatch {
  key: string;
  target: string;
  /** Both in the file's layout (for PyTorch files, the model's HWIO shape is shown as OIHW). */
  checkpoint: number[];
  model: number[];
}

export interface ImportReport {
  file: string;
  layout: WeightLayout;
  scheme: string;
  /** Tensors matched under every scheme tried, when the scheme was picked automatically. */
  tried?: Array<{ scheme: string; matched: number }>;
  matched: Array<{ key: string; target: string }>;
  /** Model tensors no checkpoint tensor maps to: they keep their seeded initialisation. */
  missing: string[];
  /** Checkpoint keys (as stored) that map to no model tensor; target is what the scheme made of them. */
  unexpected: Array<{ key: string; target: string | null }>;
  mismatched: ShapeMismatch[];
  /** BN step counters: PyTorch keeps them, segdist has none; dropped, only counted. */
  numBatchesTracked: number;
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, i) => v === b[i]);

/** Names and shapes only: which checkpoint tensor goes where under `scheme`. */
export function matchStateDict(
  file: string, stored: ReadonlyMap<string, { shape: number[] }>, model: ReadonlyMap<string, number[]>,
  scheme: KeyScheme, layout: WeightLayout,
): ImportReport {
  const report: ImportReport = { file, layout, scheme: scheme.name, matched: [], missing: [], unexpected: [], mismatched: [], numBatchesTracked: 0 };
  const taken = new Set<string>();
  for (const [key, t] of stored) {
    const bare = stripWrapperPrefixes(key);
    if (bare === 'num_batches_tracked' || bare.endsWith('.num_batches_tracked')) {
      report.numBatchesTracked++;
      continue;
    }
    const target = scheme.toSegdist(bare);
    const modelShape = target === null ? undefined : model.get(target);
    // A second key for the same tensor (a file holding both `x` and `module.x`) is the unexpected one.
    if (target === null || modelShape === undefined || taken.has(target)) {
      report.unexpected.push({ key, target });
      continue;
    }
    taken.add(target);
    const asModel = layout === 'pytorch' ? segdistShapeOf(t.shape) : t.shape;
    if (sameShape(asModel, modelShape)) {
      report.matched.push({ key, target });
    } else {
      report.mismatched.push({ key, target, checkpoint: t.shape.slice(), model: layout === 'pytorch' ? torchShapeOf(modelShape) : modelShape.slice() });
    }
  }
  for (const name of model.keys()) if (!taken.has(name)) report.missing.push(name);
  return report;
}

/** The matched tensors as segdist stores them: float32, conv weights HWIO, keyed by model name. */
export function convertMatched(report: ImportReport, stored: ReadonlyMap<string, RawTensor>): Map<string, NamedArray> {
  const out = new Map<string, NamedArray>();
  for (const { key, target } of report.matched) {
    const t = stored.get(key)!;
    const values = toFloat32(t, `${report.file}: ${key}`);
    const data = report.layout === 'pytorch' ? torchToSegdist(values, t.shape) : values;
    out.set(target, { dtype: 'F32', shape: report.layout === 'pytorch' ? segdistShapeOf(t.shape) : t.shape.slice(), data });
  }
  return out;
}

/** What strict mode refuses: any missing, unexpected or mismatched tensor. */
export function isClean(report: ImportReport): boolean {
  return report.missing.length === 0 && report.unexpected.length === 0 && report.mismatched.length === 0;
}
