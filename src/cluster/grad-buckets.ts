// Gradient averaging in buckets. A network has dozens to hundreds of parameter tensors, many tiny (BN
// scales and biases); an allreduce each would pay the per-collective latency hundreds of times per step.
// Fusing them into buckets of ~25 MB (PyTorch DDP's default) keeps collectives big enough to run at
// bandwidth, and having several buckets lets the comm thread reduce one while the compute thread packs
// the next.
//
// The layout is a pure function of the ordered (name, length) list, so every rank computes the same
// buckets without talking; a rank whose list differs is caught on the wire (bucket name or size).

export interface NamedArray {
  name: string;
  data: Float32Array;
}

/** What GradBuckets needs of a communicator; the in-place trio, when present, saves two copies per bucket. */
export interface MeanAllreducer {
  readonly worldSize: number;
  allreduceMean(name: string, data: Float32Array): Promise<Float32Array>;
  sharedArray?(length: number): Float32Array;
  allreduceInPlace?(name: string, data: Float32Array, op: 'sum' | 'mean', untouchedUntilNextCollective?: boolean): Promise<void>;
  releaseShared?(data: Float32Array): void;
}

export interface BucketEntry {
  /** Index into the input list. */
  index: number;
  name: string;
  /** Element offset within the bucket. */
  offset: number;
  length: number;
}

export interface Bucket {
  entries: BucketEntry[];
  /** Total elements. */
  length: number;
}

export const DEFAULT_BUCKET_BYTES = 25 * 1024 * 1024;

/**
 * Packs tensors, in order, into buckets of at most `bucketBytes` (a tensor larger than that gets a
 * bucket of its own). Order is kept so that a caller can put the gradients that are ready first
 * (the last layers', in backprop order) into the first buckets.
 */
export function planBuckets(items: readonly { name: string; length: number }[], bucketBytes = DEFAULT_BUCKET_BYTES): Bucket[] {
  if (!(bucketBytes >= 4)) throw new RangeError(`bucketBytes=${bucketBytes} must be at least 4`);
  const cap = Math.floor(bucketBytes / 4);
  const buckets: Bucket[] = [];
  let cur: Bucket = { entries: [], length: 0 };
  items.forEach((item, index) => {
    if (cur.entries.length > 0 && cur.length + item.length > cap) {
      buckets.push(cur);
      cur = { entries: [], length: 0 };
    }
    cur.entries.push({ index, name: item.name, offset: cur.length, length: item.length });
    cur.length += item.length;
  });
  if (cur.entries.length > 0) buckets.push(cur);
  return buckets;
}

export interface GradBucketsOptions {
  /** Bucket size threshold in bytes. Default 25 MiB. */
  bucketBytes?: number;
  /** Prefix of the collectives' names, e.g. 'grad'. */
  name?: string;
}

export class GradBuckets {
  private readonly bucketBytes: number;
  private readonly prefix: string;
  private plan: Bucket[] = [];
  private planKey = '';
  /**
   * Packing buffers, one per bucket, in two sets used on alternate calls. A set is written again only
   * two calls later, after the other set's collectives completed, which is what lets the ring send
   * from these buffers without a protective copy (Communicator.allreduceInPlace).
   */
  private sets: Float32Array[][] = [[], []];
  private calls = 0;

  constructor(
    private readonly comm: MeanAllreducer,
    options: GradBucketsOptions = {},
  ) {
    this.bucketBytes = options.bucketBytes ?? DEFAULT_BUCKET_BYTES;
    this.prefix = options.name ?? 'grad';
  }

  /** The current layout (after the first call). */
  get buckets(): readonly Bucket[] {
    return this.plan;
  }

  /**
   * The mean over all ranks of each array, returned in the input order under the same names. The
   * results are views into one array per bucket, valid until the call after next; the inputs are not
   * modified. With world size 1 the inputs are returned as they are.
   */
  async averaged(grads: readonly NamedArray[]): Promise<NamedArray[]> {
    if (this.comm.worldSize === 1) return grads.map((g) => ({ name: g.name, data: g.data }));
    this.replan(grads);
    const set = this.sets[this.calls++ % 2];
    // Pack and submit bucket by bucket: the comm thread starts on bucket 0 while we pack bucket 1.
    const results = this.plan.map(async (bucket, b) => {
      const buf = set[b];
      for (const e of bucket.entries) buf.set(grads[e.index].data, e.offset);
      const name = `${this.prefix}.bucket${b}`;
      if (this.inPlace) {
        await this.comm.allreduceInPlace!(name, buf, 'mean', true);
        return buf;
      }
      return this.comm.allreduceMean(name, buf);
    });
    const reduced = await Promise.all(results);
    const out = new Array<NamedArray>(grads.length);
    this.plan.forEach((bucket, b) => {
      for (const e of bucket.entries) out[e.index] = { name: e.name, data: reduced[b].subarray(e.offset, e.offset + e.length) };
    });
    return out;
  }

  private replan(grads: readonly NamedArray[]): void {
    const key = grads.map((g) => `${g.name}:${g.data.length}`).join('|');
    if (key === this.planKey) return;
    const names = new Set<string>();
    for (const g of grads) {
      if (names.has(g.name)) throw new Error(`GradBuckets: gradient '${g.name}' appears twice`);
      names.add(g.name);
    }
    this.plan = planBuckets(
      grads.map((g) => ({ name: g.name, length: g.data.length })),
      this.bucketBytes,
    );
    this.releaseBuffers();
    const alloc = (n: number) => (this.inPlace ? this.comm.sharedArray!(n) : new Float32Array(n));
    this.sets = [this.plan.map((b) => alloc(b.length)), this.plan.map((b) => alloc(b.length))];
    this.planKey = key;
  }

  /** Frees the bucket buffers (shared memory with the comm thread). */
  dispose(): void {
    this.releaseBuffers();
    this.plan = [];
    this.planKey = '';
  }

  private releaseBuffers(): void {
    for (const set of this.sets) for (const buf of set) this.comm.releaseShared?.(buf);
    this.sets = [[], []];
  }

  private get inPlace(): boolean {
    return this.comm.sharedArray !== undefined && this.comm.allreduceInPlace !== undefined;
  }
}
