// DataPrefetcher: a pool of worker threads that decode and augment whole samples, behind the
// SamplePreparer seam of BatchLoader. BatchLoader decides what is prepared and keeps K batches in
// flight ahead of the step (data.prefetch); the pool decides where.
//
// - Jobs are handed to the worker with the fewest outstanding jobs the moment BatchLoader asks for
//   them, not when a worker frees up: the training step blocks the main thread for seconds (tfjs
//   runs synchronously), and workers must be able to go on through their queue meanwhile. Finished
//   samples wait as messages until the main thread looks again.
// - Order and content do not depend on the pool: a sample's augmentation is keyed by (seed, epoch,
//   position) and BatchLoader assembles by position, so 0, 1 or 8 threads give the same batches.
// - Samples come back as Float32Array / Int32Array whose buffers are transferred, not copied.
// - Shutdown: a worker holds the process open only while it has work; idle workers are unref'd, so a
//   run that ends (or stops on SIGINT) without calling close() still exits. close() terminates them.
//   The end of an epoch's iteration (finished, broken off, failed) cancels its queued jobs through
//   the AbortSignal BatchLoader passes.
// - A worker that dies (an uncaught exception, process.exit, a failed start) is reported with the
//   files it was preparing; the pool then stops: every outstanding and later job fails with that
//   error, so the training loop stops at the batch it waits for, and the other threads are ended.

import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { SampleJob, SamplePreparer } from './batch-loader';
import { DataError } from './data-error';
import type { FromWorker, SerializedError, ToWorker, WorkerInit } from './prefetch-worker';
import type { PreparerSpec } from './preparer-spec';
import type { PreparedSample } from './transforms';

export interface DataPrefetcherOptions {
  /** Worker threads, at least 1 (use the in-process preparer for none). */
  workers: number;
  /** Named pipelines (e.g. train, val) the workers can run. */
  pipelines: Record<string, PreparerSpec>;
  /** Jobs one worker runs at once; default 2 (one decoding while another is augmented). */
  perWorker?: number;
  /** Test hooks, see WorkerInit.faults. */
  faults?: WorkerInit['faults'];
}

/** The pool size when the config leaves it open: the cores left per trainer after its compute thread, 1 to 4. */
export function defaultWorkerCount(trainersOnHost = 1, cores = os.availableParallelism()): number {
  return Math.max(1, Math.min(4, Math.floor(cores / Math.max(1, trainersOnHost)) - 1));
}

/** A worker thread died; names the files it was on. */
export class DataWorkerError extends Error {
  constructor(
    message: string,
    readonly files: string[],
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'DataWorkerError';
  }
}

export function deserializeError(e: SerializedError): Error {
  if (e.name === 'DataError' && e.file !== undefined && e.detail !== undefined) return new DataError(e.file, e.detail, { line: e.line });
  const err = new Error(e.message);
  err.name = e.name;
  if (e.stack !== undefined) err.stack = e.stack;
  return err;
}

interface Pending {
  id: number;
  job: SampleJob;
  slot: WorkerSlot;
  resolve: (s: PreparedSample) => void;
  reject: (e: Error) => void;
  signal?: AbortSignal;
}

interface WorkerSlot {
  index: number;
  worker: Worker;
  active: Int32Array;
  outstanding: number;
  exited: boolean;
}

const WORKER_FILE = path.join(__dirname, 'prefetch-worker.js');

export class DataPrefetcher {
  readonly size: number;
  private readonly slots: WorkerSlot[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private failure: Error | null = null;
  private closed = false;
  private readonly cancelBatches = new Map<WorkerSlot, number[]>();
  private cancelScheduled = false;
  /** Jobs per AbortSignal: one 'abort' listener per signal (an epoch), not one per job. */
  private readonly bySignal = new WeakMap<AbortSignal, Set<Pending>>();
  /** Samples finished per worker, for the benchmark and the logs. */
  readonly completed: number[];

  constructor(opts: DataPrefetcherOptions) {
    if (!Number.isInteger(opts.workers) || opts.workers < 1) throw new Error(`DataPrefetcher: workers must be an integer >= 1, got ${opts.workers}`);
    const perWorker = opts.perWorker ?? 2;
    if (!Number.isInteger(perWorker) || perWorker < 1) throw new Error(`DataPrefetcher: perWorker must be an integer >= 1, got ${perWorker}`);
    this.size = opts.workers;
    this.completed = new Array<number>(opts.workers).fill(0);
    for (let index = 0; index < opts.workers; index++) {
      const shared = new SharedArrayBuffer(4 * perWorker);
      const active = new Int32Array(shared).fill(-1);
      const init: WorkerInit = { index, pipelines: opts.pipelines, concurrency: perWorker, active: shared, faults: opts.faults };
      const worker = new Worker(WORKER_FILE, { workerData: init, name: `segdist-data-${index}` });
      const slot: WorkerSlot = { index, worker, active, outstanding: 0, exited: false };
      worker.on('message', (m: FromWorker) => this.onMessage(slot, m));
      worker.on('error', (err) => this.onWorkerDeath(slot, err));
      worker.on('exit', (code) => {
        slot.exited = true;
        if (!this.closed) this.onWorkerDeath(slot, new Error(`exited with code ${code}`));
      });
      worker.unref();
      this.slots.push(slot);
    }
  }

  /** Jobs handed to the pool and not yet settled. */
  get outstanding(): number {
    return this.pending.size;
  }

  /** A SamplePreparer running the named pipeline on the pool. */
  preparer(pipeline: string): SamplePreparer {
    return (job, signal) => this.submit(pipeline, job, signal);
  }

  private submit(pipeline: string, job: SampleJob, signal?: AbortSignal): Promise<PreparedSample> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error('DataPrefetcher: closed'));
    if (signal?.aborted) return Promise.reject(abortError());
    let slot = this.slots[0];
    for (const s of this.slots) if (s.outstanding < slot.outstanding) slot = s;
    const id = this.nextId++;
    return new Promise<PreparedSample>((resolve, reject) => {
      const p: Pending = { id, job, slot, resolve, reject, signal };
      if (signal !== undefined) {
        let set = this.bySignal.get(signal);
        if (set === undefined) {
          const jobs = new Set<Pending>();
          set = jobs;
          this.bySignal.set(signal, jobs);
          signal.addEventListener(
            'abort',
            () => {
              this.bySignal.delete(signal);
              for (const q of [...jobs]) this.cancel(q);
            },
            { once: true },
          );
        }
        set.add(p);
      }
      this.pending.set(id, p);
      if (slot.outstanding++ === 0) slot.worker.ref();
      const msg: ToWorker = { kind: 'job', id, pipeline, job };
      slot.worker.postMessage(msg);
    });
  }

  /** Forgets a job: it fails with an AbortError here and is dropped from its worker's queue. */
  private cancel(p: Pending): void {
    if (!this.settle(p)) return;
    p.reject(abortError());
    const ids = this.cancelBatches.get(p.slot) ?? [];
    ids.push(p.id);
    this.cancelBatches.set(p.slot, ids);
    if (!this.cancelScheduled) {
      // One message per worker for all the jobs an epoch's end cancels at once.
      this.cancelScheduled = true;
      queueMicrotask(() => {
        this.cancelScheduled = false;
        for (const [slot, list] of this.cancelBatches) if (!slot.exited) slot.worker.postMessage({ kind: 'cancel', ids: list } satisfies ToWorker);
        this.cancelBatches.clear();
      });
    }
  }

  /** Removes a job from the books; false if it was settled already. */
  private settle(p: Pending): boolean {
    if (!this.pending.delete(p.id)) return false;
    if (p.signal !== undefined) this.bySignal.get(p.signal)?.delete(p);
    if (--p.slot.outstanding === 0 && !p.slot.exited) p.slot.worker.unref();
    return true;
  }

  /**
   * CPU seconds each worker thread has used so far (Linux; null elsewhere), for the benchmark: the
   * augmentation work of a thread, apart from the libvips/libuv threads that decode for it.
   */
  async threadCpuSeconds(): Promise<Array<number | null>> {
    return Promise.all(
      this.slots.map(
        (slot) =>
          new Promise<number | null>((resolve) => {
            const id = this.nextId++;
            if (slot.exited) return resolve(null);
            const onMsg = (m: FromWorker) => {
              if (m.kind === 'cpu' && m.id === id) {
                slot.worker.off('message', onMsg);
                if (slot.outstanding === 0) slot.worker.unref();
                resolve(m.seconds);
              }
            };
            slot.worker.on('message', onMsg);
            slot.worker.ref(); // an idle worker is unref'd: keep the process alive for the answer
            slot.worker.postMessage({ kind: 'cpu', id } satisfies ToWorker);
          }),
      ),
    );
  }

  private onMessage(slot: WorkerSlot, m: FromWorker): void {
    if (m.kind === 'cpu') return;
    const p = this.pending.get(m.id);
    if (p === undefined || !this.settle(p)) return; // cancelled meanwhile
    if (m.kind === 'done') {
      this.completed[slot.index]++;
      p.resolve({ image: m.image, label: m.label, height: m.height, width: m.width });
    } else {
      p.reject(deserializeError(m.error));
    }
  }

  private onWorkerDeath(slot: WorkerSlot, err: Error): void {
    if (this.failure !== null || this.closed) return;
    const running = new Set<number>();
    for (let i = 0; i < slot.active.length; i++) {
      const id = Atomics.load(slot.active, i);
      if (id >= 0) running.add(id);
    }
    const files = [...this.pending.values()].filter((p) => running.has(p.id)).flatMap((p) => [p.job.ref.image, p.job.ref.label]);
    const where = files.length > 0 ? ` while preparing ${files.join(', ')}` : '';
    this.failure = new DataWorkerError(`data worker ${slot.index} died${where}: ${err.message}`, files, { cause: err });
    for (const p of [...this.pending.values()]) {
      this.settle(p);
      p.reject(this.failure);
    }
    void this.terminate();
  }

  private async terminate(): Promise<void> {
    await Promise.all(
      this.slots.map(async (s) => {
        if (!s.exited) await s.worker.terminate();
      }),
    );
  }

  /** Ends every thread; outstanding jobs fail. Safe to call more than once. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = this.failure ?? new Error('DataPrefetcher: closed');
    for (const p of [...this.pending.values()]) {
      this.settle(p);
      p.reject(err);
    }
    await this.terminate();
  }
}

function abortError(): Error {
  const e = new Error('sample preparation cancelled: its epoch iteration ended');
  e.name = 'AbortError';
  return e;
}
