// Turns a rank's share of an epoch into batches, preparing the next few while the trainer computes.
//
// Reproducibility: sample k of this rank in epoch e is augmented with Rng(seed, e, p), p being its
// position in the epoch's global order (sampler.globalPosition(k)). Its draws therefore depend on
// neither batch size, prefetch depth, completion order nor world size, and a duplicate added by the
// sampler's wrap-around padding gets draws of its own.
//
// Resume: batches(epoch, k) starts at batch k without loading the k*batchSize samples before it,
// and yields exactly what batches k.. of an uninterrupted pass would have been.
//
// The seam for a worker pool: all per-sample work goes through a SamplePreparer, a function of plain
// data (SampleJob) to a PreparedSample. localPreparer runs it here (sharp already decodes off the main
// thread); a worker_threads pool can implement the same signature by posting the job and rebuilding
// the transform from its options in the worker.

import { Rng } from '../util/rng';
import type { DistributedSampler } from './distributed-sampler';
import type { SampleRef } from './folder-dataset';
import type { LoadedSample } from './load-sample';
import type { PreparedSample, Transform } from './transforms';

export interface SampleJob {
  ref: SampleRef;
  epoch: number;
  /** Position in the epoch's global order; keys the sample's Rng. */
  position: number;
  seed: number;
}

export type SamplePreparer = (job: SampleJob) => Promise<PreparedSample>;

/** Loads and transforms on this thread, with the Rng the class comment defines. */
export function localPreparer(load: (ref: SampleRef) => Promise<LoadedSample>, transform: Transform): SamplePreparer {
  return async (job) => transform(await load(job.ref), new Rng(job.seed, job.epoch, job.position));
}

export interface Batch {
  /** NHWC, 3 channels. */
  images: Float32Array;
  /** NHW. */
  labels: Int32Array;
  n: number;
  h: number;
  w: number;
  /** Batch number within this rank's epoch, 0-based. */
  index: number;
  /** Sample ids in batch order. */
  ids: string[];
}

interface BatchLoaderCommon {
  samples: SampleRef[];
  sampler: DistributedSampler;
  batchSize: number;
  seed: number;
  /** Batches in flight while the consumer works on one; default 2, 0 = load on demand. */
  prefetch?: number;
  /** Drop this rank's last incomplete batch; default true (training). Set false for evaluation. */
  dropLast?: boolean;
}

export type BatchLoaderOptions = BatchLoaderCommon &
  (
    | { load: (ref: SampleRef) => Promise<LoadedSample>; transform: Transform; prepare?: undefined }
    | { prepare: SamplePreparer; load?: undefined; transform?: undefined }
  );

export class BatchLoader {
  private readonly samples: SampleRef[];
  private readonly sampler: DistributedSampler;
  private readonly batchSize: number;
  private readonly seed: number;
  private readonly prefetch: number;
  private readonly dropLast: boolean;
  private readonly prepare: SamplePreparer;

  constructor(opts: BatchLoaderOptions) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize <= 0) {
      throw new Error(`BatchLoader: batchSize must be a positive integer, got ${opts.batchSize}`);
    }
    const prefetch = opts.prefetch ?? 2;
    if (!Number.isInteger(prefetch) || prefetch < 0) throw new Error(`BatchLoader: prefetch must be an integer >= 0, got ${prefetch}`);
    if (opts.sampler.size !== opts.samples.length) {
      throw new Error(`BatchLoader: the sampler covers ${opts.sampler.size} samples but ${opts.samples.length} were given`);
    }
    this.samples = opts.samples;
    this.sampler = opts.sampler;
    this.batchSize = opts.batchSize;
    this.seed = opts.seed;
    this.prefetch = prefetch;
    this.dropLast = opts.dropLast ?? true;
    if (opts.prepare !== undefined) this.prepare = opts.prepare;
    else if (opts.load !== undefined && opts.transform !== undefined) this.prepare = localPreparer(opts.load, opts.transform);
    else throw new Error('BatchLoader: give either prepare, or both load and transform');
  }

  /** Batches per epoch on this rank. */
  numBatches(): number {
    const n = this.sampler.numSamples / this.batchSize;
    return this.dropLast ? Math.floor(n) : Math.ceil(n);
  }

  /**
   * This rank's batches of `epoch`, from batch `startBatch` on. Arguments are checked here, at the
   * call, rather than at the first next().
   */
  batches(epoch: number, startBatch = 0): AsyncGenerator<Batch, void, undefined> {
    const total = this.numBatches();
    if (!Number.isInteger(epoch) || epoch < 0) throw new Error(`BatchLoader: epoch must be an integer >= 0, got ${epoch}`);
    if (!Number.isInteger(startBatch) || startBatch < 0 || startBatch > total) {
      throw new Error(`BatchLoader: startBatch ${startBatch} is outside 0..${total}`);
    }
    return this.generate(epoch, startBatch, total);
  }

  private async *generate(epoch: number, startBatch: number, total: number): AsyncGenerator<Batch, void, undefined> {
    const indices = this.sampler.indices(epoch);
    const pending: Promise<Batch>[] = [];
    let next = startBatch;
    const fill = (): void => {
      while (next < total && pending.length < this.prefetch + 1) {
        const p = this.makeBatch(epoch, next++, indices);
        // A prefetched batch may fail while the consumer still waits on an earlier one, or after it
        // stopped iterating; the failure is rethrown when (if) that batch is awaited, so mark it
        // handled here rather than let Node report it as unhandled.
        p.catch(() => undefined);
        pending.push(p);
      }
    };
    // While the consumer holds batch k (between yields), batches k+1..k+prefetch are in flight; the
    // refill happens when it asks for the next one, and includes the batch it will wait for.
    for (;;) {
      fill();
      const head = pending.shift();
      if (head === undefined) return;
      yield await head;
    }
  }

  private async makeBatch(epoch: number, index: number, indices: number[]): Promise<Batch> {
    const first = index * this.batchSize;
    const last = Math.min(first + this.batchSize, indices.length);
    const jobs: SampleJob[] = [];
    for (let k = first; k < last; k++) {
      jobs.push({ ref: this.samples[indices[k]], epoch, position: this.sampler.globalPosition(k), seed: this.seed });
    }
    const prepared = await Promise.all(jobs.map((job) => this.prepare(job)));
    return assemble(prepared, jobs, index);
  }
}

/** Packs same-sized samples into one NHWC image array and one NHW label array. */
function assemble(prepared: PreparedSample[], jobs: SampleJob[], index: number): Batch {
  const { height: h, width: w } = prepared[0];
  const plane = h * w;
  const images = new Float32Array(prepared.length * plane * 3);
  const labels = new Int32Array(prepared.length * plane);
  prepared.forEach((s, i) => {
    if (s.height !== h || s.width !== w || s.image.length !== plane * 3 || s.label.length !== plane) {
      throw new Error(
        `BatchLoader: batch ${index} mixes sizes: ${jobs[0].ref.image} is ${h}x${w} but ${jobs[i].ref.image} is ` +
          `${s.height}x${s.width} (image ${s.image.length} values, label ${s.label.length}); ` +
          'resize or crop to a fixed size, or use batch size 1',
      );
    }
    images.set(s.image, i * plane * 3);
    labels.set(s.label, i * plane);
  });
  return { images, labels, n: prepared.length, h, w, index, ids: jobs.map((j) => j.ref.id) };
}
