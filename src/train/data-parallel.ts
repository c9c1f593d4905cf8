// What the training loop needs from the other trainers, over src/cluster's Communicator: gradient
// averaging, SyncBN statistics, identical starting state, exact metric sums, agreement to stop.
// A job of one process is the same object with nothing to talk to, so the loop never branches on
// the world size.
import * as tf from '@tensorflow/tfjs';
import { Communicator } from '../cluster/communicator';
import type { DataPlane } from '../cluster/data-transport';
import { readDistEnv } from '../cluster/dist-env';
import { GradBuckets } from '../cluster/grad-buckets';
import type { StatReducer } from '../models/context';

export interface DataParallelOptions {
  /** Seconds a collective may wait for a peer before failing, naming it. */
  timeoutS: number;
  bucketMb: number;
  /** How trainers exchange collective data (dist.data_plane). */
  dataPlane?: DataPlane;
  /** Large allreduces in C where built (dist.native_ring). */
  nativeRing?: boolean;
}

export class DataParallel {
  readonly rank: number;
  readonly worldSize: number;
  /** For SyncBN; absent in a job of one (BN is then plain BN). */
  readonly statReducer: StatReducer | undefined;
  /** Seconds spent in collectives since the last call to takeCommSeconds(). */
  private commSeconds = 0;
  private readonly buckets: GradBuckets;

  /** How the trainers exchange collective data (dist.data_plane). */
  get dataPlane(): DataPlane {
    return this.comm.dataPlane;
  }

  /** Whether large allreduces run in C (dist.native_ring, and the build present). */
  get nativeRing(): boolean {
    return this.comm.nativeRing;
  }

  private constructor(private readonly comm: Communicator, bucketMb: number) {
    this.rank = comm.rank;
    this.worldSize = comm.worldSize;
    this.buckets = new GradBuckets(comm, { bucketBytes: bucketMb * 1024 * 1024, name: 'grad' });
    this.statReducer = comm.worldSize > 1
      ? { worldSize: comm.worldSize, allreduceSum: (name: string, data: Float32Array): Float32Array => this.timed(() => comm.allreduceSumSync(`bn:${name}`, data)) }
      : undefined;
  }

  /** Joins the job described by the launcher's environment variables (a job of one without them). */
  static async join(opts: DataParallelOptions): Promise<DataParallel> {
    const comm = await Communicator.connect(readDistEnv(), { timeoutMs: opts.timeoutS * 1000, dataPlane: opts.dataPlane, nativeRing: opts.nativeRing });
    return new DataParallel(comm, opts.bucketMb);
  }

  /** Averages gradients over all trainers; takes ownership of the given tensors. */
  async averageGradients(grads: Map<string, tf.Tensor>): Promise<Map<string, tf.Tensor>> {
    if (this.worldSize === 1) return grads;
    const named = [...grads].map(([name, t]) => ({ name, data: t.dataSync() as Float32Array, shape: t.shape }));
    tf.dispose([...grads.values()]);
    const start = performance.now();
    const averaged = await this.buckets.averaged(named);
    this.commSeconds += (performance.now() - start) / 1000;
    // The averaged arrays are views into the bucket buffers, which are reused: copy into tensors now.
    return new Map(averaged.map((g, i) => [g.name, tf.tensor(g.data, named[i].shape, 'float32')]));
  }

  /** Whether any trainer asked to stop; every trainer gets the same answer, so all stop at one step. */
  async anyStop(local: boolean): Promise<boolean> {
    if (this.worldSize === 1) return local;
    const start = performance.now();
    const [votes] = await this.comm.allreduce('stop', Float32Array.of(local ? 1 : 0));
    this.commSeconds += (performance.now() - start) / 1000;
    return votes > 0;
  }

  /** Makes every trainer's variables rank 0's (initial weights, or a checkpoint rank 0 loaded). */
  async broadcastVariables(name: string, vars: ReadonlyArray<tf.Variable>): Promise<void> {
    if (this.worldSize === 1) return;
    const total = vars.reduce((n, v) => n + v.size, 0);
    const flat = new Float32Array(total);
    let off = 0;
    for (const v of vars) {
      flat.set(v.dataSync() as Float32Array, off);
      off += v.size;
    }
    const got = await this.comm.broadcast(name, flat);
    off = 0;
    for (const v of vars) {
      const part = got.subarray(off, off + v.size);
      tf.tidy(() => v.assign(tf.tensor(part, v.shape, 'float32')));
      off += v.size;
    }
  }

  /** Rank 0's JSON-serialisable value, on every trainer. */
  async broadcastJson<T>(name: string, value: T): Promise<T> {
    if (this.worldSize === 1) return value;
    const bytes = this.rank === 0 ? new TextEncoder().encode(JSON.stringify(value)) : new Uint8Array(0);
    const [len] = await this.comm.broadcast(`${name}.length`, Float32Array.of(bytes.length));
    const payload = await this.comm.broadcast(`${name}.bytes`, this.rank === 0 ? Float32Array.from(bytes) : new Float32Array(len));
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(payload))) as T;
  }

  /**
   * Sums non-negative integer counts (confusion matrices) exactly. The ring adds float32, exact only
   * below 2^24, so each count travels as a high and a low part, each summed exactly.
   */
  async sumCounts(name: string, counts: Float64Array): Promise<Float64Array> {
    if (this.worldSize === 1) return counts;
    const SPLIT = 2 ** 20;
    const parts = new Float32Array(counts.length * 2);
    counts.forEach((c, i) => {
      if (!Number.isInteger(c) || c < 0 || c >= 2 ** 44) throw new Error(`sumCounts: ${c} is not a count it can sum exactly`);
      parts[2 * i] = Math.floor(c / SPLIT);
      parts[2 * i + 1] = c % SPLIT;
    });
    const start = performance.now();
    const summed = await this.comm.allreduce(name, parts);
    this.commSeconds += (performance.now() - start) / 1000;
    return Float64Array.from({ length: counts.length }, (_, i) => summed[2 * i] * SPLIT + summed[2 * i + 1]);
  }

  /** Sums of a few floats (losses); float32 on the wire, so not exact like sumCounts. */
  async sumFloats(name: string, values: Float64Array): Promise<Float64Array> {
    if (this.worldSize === 1) return values;
    return Float64Array.from(await this.comm.allreduce(name, Float32Array.from(values)));
  }

  async barrier(name: string): Promise<void> {
    if (this.worldSize > 1) await this.comm.barrier(name);
  }

  /** Communication seconds since the last call. */
  takeCommSeconds(): number {
    const s = this.commSeconds;
    this.commSeconds = 0;
    return s;
  }

  async close(): Promise<void> {
    await this.comm.close();
  }

  private timed<T>(fn: () => T): T {
    const start = performance.now();
    try {
      return fn();
    } finally {
      this.commSeconds += (performance.now() - start) / 1000;
    }
  }
}
