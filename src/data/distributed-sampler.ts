// Splits one epoch's sample order across ranks.
//
// Every rank computes the same permutation from (seed, epoch) alone, so no rank needs to hear from
// another to agree on the order. Rank r takes global positions r, r + W, r + 2W, ...: with batch b per
// rank, step t on all ranks together covers positions t*W*b .. (t+1)*W*b - 1, exactly the batch that a
// single trainer with batch W*b would take at step t, which is what makes N trainers equivalent to one.
//
// Training (padding, the default): the order is padded by wrapping around to a multiple of W so every
// rank runs the same number of steps (a rank that runs out early would hang its peers' collectives).
// dropLast instead cuts the tail. Evaluation (padding: false): nothing is repeated or dropped, so
// every image is counted exactly once; ranks then hold up to one sample more than others, and
// countFor(rank) says how many each has.

import { keyOf, Rng } from '../util/rng';

export interface DistributedSamplerOptions {
  /** Number of samples in the dataset. */
  size: number;
  rank: number;
  worldSize: number;
  /** Shuffle per epoch; false keeps dataset order. */
  shuffle: boolean;
  seed: number;
  /** Drop the tail to a multiple of worldSize instead of padding. Not with padding: false. */
  dropLast?: boolean;
  /** Default true. false: no sample repeated, shards may differ in length by one. */
  padding?: boolean;
}

const SHUFFLE_KEY = keyOf('distributed-sampler');

export class DistributedSampler {
  readonly size: number;
  readonly rank: number;
  readonly worldSize: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  readonly padding: boolean;
  /** Length of the global order after padding or dropping (a multiple of worldSize when padding). */
  readonly totalSize: number;
  /** Samples this rank takes per epoch. */
  readonly numSamples: number;

  constructor(opts: DistributedSamplerOptions) {
    const { size, rank, worldSize } = opts;
    if (!Number.isInteger(size) || size <= 0) throw new Error(`DistributedSampler: size must be a positive integer, got ${size}`);
    if (!Number.isInteger(worldSize) || worldSize <= 0) throw new Error(`DistributedSampler: worldSize must be a positive integer, got ${worldSize}`);
    if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
      throw new Error(`DistributedSampler: rank ${rank} is not in 0..${worldSize - 1}`);
    }
    this.size = size;
    this.rank = rank;
    this.worldSize = worldSize;
    this.shuffle = opts.shuffle;
    this.seed = opts.seed;
    this.dropLast = opts.dropLast ?? false;
    this.padding = opts.padding ?? true;
    if (this.dropLast && !this.padding) throw new Error('DistributedSampler: dropLast and padding: false contradict each other');
    if (this.dropLast) {
      this.totalSize = Math.floor(size / worldSize) * worldSize;
      if (this.totalSize === 0) throw new Error(`DistributedSampler: dropLast leaves no samples (${size} samples, ${worldSize} ranks)`);
    } else if (this.padding) {
      this.totalSize = Math.ceil(size / worldSize) * worldSize;
    } else {
      this.totalSize = size;
    }
    this.numSamples = this.countFor(rank);
  }

  /** How many samples `rank` takes per epoch (the same for every rank unless padding is false). */
  countFor(rank: number): number {
    if (!Number.isInteger(rank) || rank < 0 || rank >= this.worldSize) {
      throw new Error(`DistributedSampler: rank ${rank} is not in 0..${this.worldSize - 1}`);
    }
    return Math.max(0, Math.ceil((this.totalSize - rank) / this.worldSize));
  }

  /** The whole epoch's order (dataset indices), padded or cut to totalSize; identical on every rank. */
  globalOrder(epoch: number): number[] {
    const base = this.shuffle ? new Rng(this.seed, SHUFFLE_KEY, epoch).permutation(this.size) : Array.from({ length: this.size }, (_, i) => i);
    const order = new Array<number>(this.totalSize);
    for (let i = 0; i < this.totalSize; i++) order[i] = base[i % this.size];
    return order;
  }

  /** Position in globalOrder of this rank's k-th sample. */
  globalPosition(k: number): number {
    return k * this.worldSize + this.rank;
  }

  /** This rank's dataset indices for `epoch`, in the order it should visit them. */
  indices(epoch: number): number[] {
    const order = this.globalOrder(epoch);
    const mine = new Array<number>(this.numSamples);
    for (let k = 0; k < this.numSamples; k++) mine[k] = order[this.globalPosition(k)];
    return mine;
  }
}
