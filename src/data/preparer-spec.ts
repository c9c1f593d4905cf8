// Everything a thread needs to turn a SampleJob into a PreparedSample, as plain data: how to load
// (class count, ignore index, label lookups) and which transform list to run. The main thread builds
// one per pipeline (train, val); a worker thread receives it through workerData (structured clone)
// and builds the same preparer, so threads and the in-process path run identical code.

import { compileTransforms, type PipelineContext } from './augment';
import type { TransformSpec } from './augment-spec';
import { localPreparer, type SamplePreparer } from './batch-loader';
import { loadSample, type LoadSampleOptions } from './load-sample';

export interface PreparerSpec {
  load: LoadSampleOptions;
  /** A list already checked by checkTransforms (defaults filled in). */
  transforms: TransformSpec[];
  context: PipelineContext;
}

/** The preparer of a spec, running on the calling thread. */
export function buildPreparer(spec: PreparerSpec): SamplePreparer {
  const transform = compileTransforms(spec.transforms, spec.context);
  return localPreparer((ref) => loadSample(ref, spec.load), transform);
}
