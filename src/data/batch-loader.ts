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
// thread); DataPrefetcher (prefetcher.ts) implements the same signature with a worker_threads pool.
// The AbortSignal handed to the preparer fires when the epoch's iteration ends (finished, broken off
// by the consumer, or failed), so a pool can drop the work queued for batches nobody will take.
//
// Bad samples (skipBad): only a DataError (a file that is corrupt, missing, mis-sized or out of range)
// is skippable; any other failure still stops the epoch. In training ('replace') the bad sample's slot
// is filled by the next good sample of this rank's shard, augmented with the slot's own Rng, so batch
// sizes stay equal on every rank and the outcome is still a pure function of (seed, epoch, rank, the
// files). In evaluation ('drop') the sample is left out, so no image is counted twice.

import { Rng } from '../util/rng';
import { DataError } from './data-error';
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

export type SamplePreparer = (job: SampleJob, signal?: AbortSignal) => Promise<PreparedSample>;

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
  /** What to do with a sample that fails with a DataError: false (default) stops; see the file comment. */
  skipBad?: false | 'replace' | 'drop';
  /** Called once per bad sample per epoch when skipBad is on. */
  onSkip?: (event: SkipEvent) => void;
  /** Called when an epoch's iteration has yielded its last batch. */
  onEpochEnd?: (epoch: number, stats: EpochDataStats) => void;
}

export interface SkipEvent {
  epoch: number;
  id: string;
  error: DataError;
}

export interface EpochDataStats {
  /** Distinct bad samples met this epoch (in this iteration of it). */
  skipped: number;
  /** Their errors, in the order met. */
  errors: DataError[];
}

/** How far along this rank's shard a bad sample's replacement is looked for. */
const MAX_REPLACEMENT_TRIES = 16;

interface EpochState {
  epoch: number;
  indices: number[];
  signal: AbortSignal;
  /** Dataset index -> its error, so a known-bad sample is not decoded again as a replacement. */
  bad: Map<number, DataError>;
  stats: EpochDataStats;
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
  private readonly skipBad: false | 'replace' | 'drop';
  private readonly onSkip?: (event: SkipEvent) => void;
  private readonly onEpochEnd?: (epoch: number, stats: EpochDataStats) => void;

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
    this.skipBad = opts.skipBad ?? false;
    this.onSkip = opts.onSkip;
    this.onEpochEnd = opts.onEpochEnd;
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
    const abort = new AbortController();
    const state: EpochState = { epoch, indices: this.sampler.indices(epoch), signal: abort.signal, bad: new Map(), stats: { skipped: 0, errors: [] } };
    const pending: Promise<Batch | null>[] = [];
    let next = startBatch;
    const fill = (): void => {
      while (next < total && pending.length < this.prefetch + 1) {
        const p = this.makeBatch(state, next++);
        // A prefetched batch may fail while the consumer still waits on an earlier one, or after it
        // stopped iterating; the failure is rethrown when (if) that batch is awaited, so mark it
        // handled here rather than let Node report it as unhandled.
        p.catch(() => undefined);
        pending.push(p);
      }
    };
    try {
      // While the consumer holds batch k (between yields), batches k+1..k+prefetch are in flight; the
      // refill happens when it asks for the next one, and includes the batch it will wait for.
      for (;;) {
        fill();
        const head = pending.shift();
        if (head === undefined) break;
        const batch = await head;
        // Let the event loop turn before every batch, even one that was ready long ago: a training
        // step blocks this thread, and a signal handler (SIGINT: stop after this step) or a worker's
        // message only runs when the loop gets a turn. Awaiting settled promises alone never gives it one.
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (batch !== null) yield batch;
      }
      this.onEpochEnd?.(epoch, state.stats);
    } finally {
      // Finished, broken off or failed: whatever is still queued for this epoch is not wanted.
      abort.abort();
    }
  }

  /** Records a bad sample once per epoch. */
  private noteBad(state: EpochState, index: number, error: DataError): void {
    if (state.bad.has(index)) return;
    state.bad.set(index, error);
    state.stats.skipped++;
    state.stats.errors.push(error);
    this.onSkip?.({ epoch: state.epoch, id: this.samples[index].id, error });
  }

  /** Prepares slot k of this rank's shard, replacing or dropping a bad sample as configured. */
  private async prepareSlot(state: EpochState, k: number): Promise<{ job: SampleJob; sample: PreparedSample } | null> {
    const position = this.sampler.globalPosition(k);
    const attempt = async (shardIndex: number) => {
      const job: SampleJob = { ref: this.samples[state.indices[shardIndex]], epoch: state.epoch, position, seed: this.seed };
      return { job, sample: await this.prepare(job, state.signal) };
    };
    if (!this.skipBad) return attempt(k);
    const known = state.bad.get(state.indices[k]);
    let first: DataError;
    if (known === undefined) {
      try {
        return await attempt(k);
      } catch (err) {
        if (!(err instanceof DataError)) throw err;
        this.noteBad(state, state.indices[k], err);
        first = err;
      }
    } else {
      first = known;
    }
    if (this.skipBad === 'drop') return null;
    const n = state.indices.length;
    for (let t = 1; t <= Math.min(MAX_REPLACEMENT_TRIES, n - 1); t++) {
      const kk = (k + t) % n;
      if (state.bad.has(state.indices[kk])) continue;
      try {
        return await attempt(kk);
      } catch (err) {
        if (!(err instanceof DataError)) throw err;
        this.noteBad(state, state.indices[kk], err);
      }
    }
    throw new DataError(first.file, `${first.detail}; data.skip_bad found no good sample to take its place among the next ${Math.min(MAX_REPLACEMENT_TRIES, n - 1)} of this rank's shard`, { line: first.line, cause: first });
  }

  private async makeBatch(state: EpochState, index: number): Promise<Batch | null> {
    const first = index * this.batchSize;
    const last = Math.min(first + this.batchSize, state.indices.length);
    const slots: Promise<{ job: SampleJob; sample: PreparedSample } | null>[] = [];
    for (let k = first; k < last; k++) slots.push(this.prepareSlot(state, k));
    const done = (await Promise.all(slots)).filter((s) => s !== null);
    if (done.length === 0) return null; // every sample of an evaluation batch was bad and dropped
    return assemble(
      done.map((d) => d.sample),
      done.map((d) => d.job),
      index,
    );
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
