// The compute thread's handle on the job's collectives.
//
// tfjs records gradients on a synchronous tape, and SyncBN needs an allreduce inside a forward pass and
// again inside a gradient function, neither of which may await. So besides the usual promise-returning
// collectives there is allreduceSumSync: it writes the data into a shared slot, posts the request to the
// comm thread and blocks in Atomics.wait until the comm thread rings the doorbell (comm-protocol.ts).
// Gradient buckets use the async path, so the comm thread reduces one bucket while the compute thread
// packs the next.
//
// With world size 1 there is nothing to talk to: no thread, no socket; every collective returns a copy
// of its input (sum and mean over one rank are the identity), and barriers return at once.

import * as path from 'node:path';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { nativeRingAddon } from './native-ring';
import { CommError } from './comm-error';
import { DOORBELL_INDEX, type CommReply, type CommRequest, type CommWorkerData } from './comm-protocol';
import type { DataPlane } from './data-transport';
import { readDistEnv, type DistEnv } from './dist-env';
import { createSlot, SlotPool, slotData, type SlotDescriptor } from './shared-slot';

export interface CommunicatorOptions {
  /** Every wait fails after this long without progress, naming the ranks that did not arrive. Default 10 min. */
  timeoutMs?: number;
  /** How long the rendezvous may take for all ranks to start and connect. Default 5 min. */
  connectTimeoutMs?: number;
  /** Pipelining unit of the ring allreduce, bytes; must be equal on all ranks. Default 1 MiB. */
  subChunkBytes?: number;
  /** Address to bind the data socket on; default: loopback for loopback jobs, else the interface that routes to MASTER_ADDR. */
  hostAddress?: string;
  /** Use plain JS loops instead of the wasm SIMD kernels (for comparison). */
  forceJsKernels?: boolean;
  /**
   * The comm thread runs a minor GC every this many bytes received into buffers of the data plane's
   * (every message on ZeroMQ; on the stream plane only messages its collective did not place, rare),
   * freeing them before V8 answers their "external memory pressure" with far costlier full
   * collections (memory-reclaimer.ts). Default 16 MiB; 0 disables.
   */
  minorGcEveryBytes?: number;
  /** Do not report dropped junk messages and refused peers on stderr. Default false. */
  quiet?: boolean;
  /**
   * How the ranks exchange data (data-transport.ts): 'stream', plain TCP connections whose payloads the
   * kernel writes straight into the shared slots (default), or 'zeromq'. Must be equal on all ranks.
   */
  dataPlane?: DataPlane;
  /**
   * Run large allreduces of the stream plane in C (native-ring.ts) where the addon was built at install;
   * the same messages and results as the JavaScript ring, at less CPU. Default true.
   */
  nativeRing?: boolean;
}

export type ReduceOp = 'sum' | 'mean';

const DEFAULTS = {
  timeoutMs: 600_000,
  connectTimeoutMs: 300_000,
  subChunkBytes: 1 << 20,
  minorGcEveryBytes: 16 << 20,
};

interface Pending {
  resolve: () => void;
  reject: (e: CommError) => void;
}

export class Communicator {
  readonly rank: number;
  readonly localRank: number;
  readonly worldSize: number;
  /** This rank's data endpoint (empty for world size 1). */
  readonly dataEndpoint: string;
  /** Whether the comm thread adds with wasm SIMD. */
  readonly simd: boolean;
  /** How this job's ranks exchange collective data (the same on every rank). */
  get dataPlane(): DataPlane {
    return this.opts.dataPlane;
  }

  /** Allreduces of this communicator that ran in the native ring so far. */
  get nativeAllreduces(): number {
    return this.nativeRuns;
  }

  /** Whether large allreduces run in C (the stream plane, the addon built, not turned off). */
  get nativeRing(): boolean {
    return this.worldSize > 1 && this.opts.nativeRing && this.opts.dataPlane === 'stream' && nativeRingAddon() !== null;
  }

  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private nativeRuns = 0;
  private failure: CommError | null = null;
  private closed = false;
  /** The comm thread has exited, or reported a fatal error and is exiting. */
  private workerGone = false;
  private readonly bell: Int32Array | null;
  private readonly pool: SlotPool | null;
  /** sharedArray() memories, by their buffer. */
  private readonly shared = new Map<ArrayBufferLike, SlotDescriptor>();

  private constructor(
    env: DistEnv,
    private readonly opts: Required<Omit<CommunicatorOptions, 'hostAddress'>>,
    private readonly worker: Worker | null,
    private readonly port: MessagePort | null,
    doorbell: SharedArrayBuffer | null,
    ready: Extract<CommReply, { type: 'ready' }> | null,
    private readonly workerExited: Promise<number> | null = null,
  ) {
    this.rank = env.rank;
    this.localRank = env.localRank;
    this.worldSize = env.worldSize;
    this.dataEndpoint = ready?.dataEndpoint ?? '';
    this.simd = ready?.simd ?? false;
    this.bell = doorbell ? new Int32Array(doorbell) : null;
    this.pool = worker ? new SlotPool(opts.subChunkBytes) : null;
    if (port && worker) {
      process.on('exit', this.onProcessExit);
      port.on('message', (msg: CommReply) => this.dispatch(msg));
      port.unref();
      worker.unref();
      worker.on('error', (err) => this.breakWith(new CommError('closed', `rank ${this.rank}: the comm thread crashed: ${err.message}`)));
      worker.on('exit', (code) => {
        this.workerGone = true;
        if (!this.closed) this.breakWith(new CommError('closed', `rank ${this.rank}: the comm thread exited (code ${code})`));
      });
    }
  }

  /**
   * Joins the job described by `env` (default: the launcher's environment variables). Resolves once
   * every rank has joined and the ring is connected. Rejects with a CommError: 'refused' (with rank 0's
   * reason: token, world size, duplicate rank), 'timeout' (naming the ranks that did not show up), or
   * 'usage' (bad settings, port in use).
   */
  static async connect(env: DistEnv = readDistEnv(), options: CommunicatorOptions = {}): Promise<Communicator> {
    const opts = resolveOptions(options);
    if (env.worldSize === 1) return new Communicator(env, opts, null, null, null, null);

    const doorbell = new SharedArrayBuffer(4);
    const { port1, port2 } = new MessageChannel();
    const data: CommWorkerData = {
      env,
      options: {
        timeoutMs: opts.timeoutMs,
        connectTimeoutMs: opts.connectTimeoutMs,
        subChunkBytes: opts.subChunkBytes,
        minorGcEveryBytes: opts.minorGcEveryBytes,
        hostAddress: options.hostAddress,
        forceJsKernels: opts.forceJsKernels,
        quiet: opts.quiet,
        dataPlane: opts.dataPlane,
        nativeRing: opts.nativeRing,
      },
      doorbell,
      port: port2,
    };
    // The compiled worker sits next to this file in dist/; worker threads cannot load TypeScript.
    const worker = new Worker(path.join(__dirname, 'comm-worker.js'), {
      workerData: data,
      transferList: [port2],
      stdout: false,
      stderr: false,
    });
    const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
    const ready = await new Promise<Extract<CommReply, { type: 'ready' }>>((resolve, reject) => {
      const onReply = (msg: CommReply) => {
        worker.off('exit', onExit);
        worker.off('error', onError);
        port1.off('message', onReply);
        if (msg.type === 'ready') resolve(msg);
        else if (msg.type === 'connect-failed') reject(CommError.fromData(msg.error));
        else reject(new CommError('closed', `rank ${env.rank}: unexpected ${msg.type} from the comm thread during rendezvous`));
      };
      // The thread posts why it failed and then ends; 'exit' may be dispatched before that message,
      // so take it from the port first.
      const onExit = (code: number) => {
        const pending = receiveMessageOnPort(port1);
        if (pending !== undefined) onReply(pending.message as CommReply);
        else reject(new CommError('closed', `rank ${env.rank}: the comm thread exited during rendezvous (code ${code})`));
      };
      const onError = (err: Error) => reject(new CommError('closed', `rank ${env.rank}: the comm thread crashed during rendezvous: ${err.message}`));
      worker.once('exit', onExit);
      worker.once('error', onError);
      port1.on('message', onReply);
    }).catch(async (err: unknown) => {
      port1.close();
      await waitForExit(worker, exited, 10_000);
      throw err;
    });
    return new Communicator(env, opts, worker, port1, doorbell, ready, exited);
  }

  // Every copying collective returns a new array unless `out` is given (it may be `data` itself):
  // reusing one avoids allocating, and later collecting, an array of the full size on every call.

  /**
   * Sum of `data` over all ranks, computed while this thread blocks: usable where nothing may await,
   * such as inside a tf.customGrad forward or gradient function (SyncBN). Runs after any asynchronous
   * collectives already requested, in request order.
   */
  allreduceSumSync(name: string, data: Float32Array, out?: Float32Array): Float32Array {
    this.checkArgs('allreduceSumSync', name, data, out);
    if (this.worker === null) return copyTo(data, out);
    return this.runSync(data, out, (slot, id) => ({
      type: 'allreduce', id, name, slotId: slot.id, offset: slot.dataOffset, length: data.length, mean: false, guarded: true,
    }));
  }

  /** Rank 0's `data` on every rank, computed while this thread blocks. */
  broadcastSync(name: string, data: Float32Array, out?: Float32Array): Float32Array {
    this.checkArgs('broadcastSync', name, data, out);
    if (this.worker === null) return copyTo(data, out);
    return this.runSync(data, out, (slot, id) => ({ type: 'broadcast', id, name, slotId: slot.id, offset: slot.dataOffset, length: data.length }));
  }

  /** Sum (or mean) of `data` over all ranks; `data` is not modified (unless it is `out`). */
  allreduce(name: string, data: Float32Array, op: ReduceOp = 'sum', out?: Float32Array): Promise<Float32Array> {
    try {
      this.checkArgs('allreduce', name, data, out);
      if (op !== 'sum' && op !== 'mean') throw new CommError('usage', `allreduce '${name}': unknown op ${String(op)} (sum or mean)`);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.worker === null) return Promise.resolve(copyTo(data, out));
    return this.runAsync(data, out, (slot, id) => ({
      type: 'allreduce', id, name, slotId: slot.id, offset: slot.dataOffset, length: data.length, mean: op === 'mean', guarded: true,
    }));
  }

  /** Mean of `data` over all ranks. */
  allreduceMean(name: string, data: Float32Array, out?: Float32Array): Promise<Float32Array> {
    return this.allreduce(name, data, 'mean', out);
  }

  /** Rank 0's `data` on every rank (all ranks pass arrays of the same length). */
  broadcast(name: string, data: Float32Array, out?: Float32Array): Promise<Float32Array> {
    try {
      this.checkArgs('broadcast', name, data, out);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.worker === null) return Promise.resolve(copyTo(data, out));
    return this.runAsync(data, out, (slot, id) => ({ type: 'broadcast', id, name, slotId: slot.id, offset: slot.dataOffset, length: data.length }));
  }

  /**
   * A Float32Array in memory shared with the comm thread. Collectives on it (allreduceInPlace) run in
   * place: no copy in, no copy out, which matters for big gradient buckets. Release it with
   * releaseShared when done. With world size 1 it is an ordinary array.
   */
  sharedArray(length: number): Float32Array {
    if (!Number.isSafeInteger(length) || length < 0) throw new CommError('usage', `sharedArray: bad length ${length}`);
    if (this.worker === null) return new Float32Array(length);
    this.checkUsable();
    const slot = createSlot(length, this.opts.subChunkBytes);
    this.announce(slot);
    this.shared.set(slot.memory.buffer, slot);
    return slotData(slot, length);
  }

  /** Forgets a sharedArray; its memory is freed once nothing refers to it. */
  releaseShared(data: Float32Array): void {
    const slot = this.shared.get(data.buffer);
    if (slot === undefined) return;
    this.shared.delete(data.buffer);
    if (!this.closed && this.failure === null) this.port!.postMessage({ type: 'drop-slots', slotIds: [slot.id] } satisfies CommRequest);
  }

  /**
   * Sum (or mean) over all ranks, written back into `data`, which must be a sharedArray (or a
   * subarray of one). Do not touch `data` until the promise settles.
   *
   * `untouchedUntilNextCollective`: the caller promises not to write into `data` until another
   * collective of this communicator has completed (reading is fine), e.g. by alternating two sets of
   * buffers. The ring may then send this rank's finished chunk straight from `data` instead of from a
   * copy: ZeroMQ may still be reading it after this promise resolves, until the next collective ends.
   */
  allreduceInPlace(name: string, data: Float32Array, op: ReduceOp = 'sum', untouchedUntilNextCollective = false): Promise<void> {
    try {
      this.checkArgs('allreduceInPlace', name, data);
      if (op !== 'sum' && op !== 'mean') throw new CommError('usage', `allreduceInPlace '${name}': unknown op ${String(op)} (sum or mean)`);
      if (this.worker === null) return Promise.resolve();
      this.checkUsable();
      const slot = this.shared.get(data.buffer);
      if (slot === undefined) throw new CommError('usage', `allreduceInPlace '${name}': data must come from sharedArray() of this communicator`);
      if (data.byteOffset < slot.dataOffset) throw new CommError('usage', `allreduceInPlace '${name}': data starts before the shared array`);
      const id = this.nextId++;
      return this.request(
        {
          type: 'allreduce', id, name, slotId: slot.id, offset: data.byteOffset, length: data.length, mean: op === 'mean',
          guarded: untouchedUntilNextCollective,
        },
        id,
      );
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Resolves when every rank has reached this barrier. */
  async barrier(name: string): Promise<void> {
    this.checkArgs('barrier', name, new Float32Array(0));
    if (this.worker === null) return;
    const id = this.nextId++;
    await this.request({ type: 'barrier', id, name }, id);
  }

  /**
   * Leaves the job. The ranks pass a last barrier first, so that no rank mistakes another's leaving for
   * a crash; a communicator that already failed just closes its sockets. Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed || this.worker === null) {
      this.closed = true;
      return;
    }
    // A failed communicator skips the barrier but still closes its sockets in the comm thread, unless
    // that thread is already gone. The close barrier has its own timeout; the race is a backstop.
    if (!this.workerGone) {
      const id = this.nextId++;
      const closed = new Promise<void>((resolve) => this.pending.set(id, { resolve, reject: () => resolve() }));
      this.port!.ref();
      this.port!.postMessage({ type: 'close', id } satisfies CommRequest);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([closed, this.workerExited!, new Promise((resolve) => (timer = setTimeout(resolve, 60_000)))]);
      clearTimeout(timer);
    }
    this.closed = true;
    process.off('exit', this.onProcessExit);
    this.port!.close();
    await waitForExit(this.worker, this.workerExited!, 10_000);
  }

  // --- plumbing --------------------------------------------------------------------------------

  /**
   * A process that exits without close() (an error, process.exit, or just returning) would tear down
   * the comm thread with its ZeroMQ sockets open, which aborts the process (SIGABRT) instead of letting
   * it exit with its own status. So on 'exit' the comm thread is told to close its sockets, and this
   * thread waits for that, synchronously (an 'exit' handler cannot await), for at most two seconds.
   */
  private readonly onProcessExit = (): void => {
    if (this.closed || this.worker === null || this.workerGone) return;
    this.closed = true;
    const id = this.nextId++;
    try {
      this.port!.postMessage({ type: 'exit-now', id } satisfies CommRequest);
      const deadline = Date.now() + 2000;
      const bell = this.bell!;
      for (;;) {
        const seen = Atomics.load(bell, DOORBELL_INDEX);
        for (let msg = receiveMessageOnPort(this.port!); msg !== undefined; msg = receiveMessageOnPort(this.port!)) {
          const reply = msg.message as CommReply;
          if (reply.type === 'done' && reply.id === id) return;
        }
        const left = deadline - Date.now();
        if (left <= 0) return;
        Atomics.wait(bell, DOORBELL_INDEX, seen, left);
      }
    } catch {
      // Exiting anyway.
    }
  };

  private runSync(data: Float32Array, out: Float32Array | undefined, make: (slot: SlotDescriptor, id: number) => CommRequest): Float32Array {
    this.checkUsable();
    const slot = this.takeSlot(data);
    const id = this.nextId++;
    const req = make(slot, id);
    try {
      this.port!.postMessage(req);
      const reply = this.waitSync(id, req);
      if (reply.type === 'failed') throw this.noteFailure(CommError.fromData(reply.error));
      return copyTo(slotData(slot, data.length), out);
    } finally {
      this.giveSlot(slot);
    }
  }

  private async runAsync(data: Float32Array, out: Float32Array | undefined, make: (slot: SlotDescriptor, id: number) => CommRequest): Promise<Float32Array> {
    this.checkUsable();
    const slot = this.takeSlot(data);
    const id = this.nextId++;
    try {
      await this.request(make(slot, id), id);
      return copyTo(slotData(slot, data.length), out);
    } finally {
      this.giveSlot(slot);
    }
  }

  private request(req: CommRequest, id: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.checkUsable();
      this.pending.set(id, { resolve, reject });
      this.port!.ref(); // keep the process alive while a collective is outstanding
      this.port!.postMessage(req);
    });
  }

  /** Blocks until the reply to `id` arrives, handing other replies to their promises on the way. */
  private waitSync(id: number, req: CommRequest): CommReply {
    const bell = this.bell!;
    // The comm thread reports its own timeouts (timeoutMs, plus a status probe); this is only a
    // backstop against a comm thread that died without a word.
    const deadline = Date.now() + this.opts.timeoutMs + 60_000;
    for (;;) {
      const seen = Atomics.load(bell, DOORBELL_INDEX);
      for (let msg = receiveMessageOnPort(this.port!); msg !== undefined; msg = receiveMessageOnPort(this.port!)) {
        const reply = msg.message as CommReply;
        if ((reply.type === 'done' || reply.type === 'failed') && reply.id === id) {
          this.pool!.noteCompleted();
          if (reply.type === 'done' && reply.native) this.nativeRuns++;
          return reply;
        }
        this.dispatch(reply);
        if (reply.type === 'fatal') throw this.failure!;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw this.noteFailure(
          new CommError('timeout', `rank ${this.rank}: the comm thread did not answer ${req.type} '${'name' in req ? req.name : ''}' (it may have died)`),
        );
      }
      Atomics.wait(bell, DOORBELL_INDEX, seen, Math.min(left, 1000));
    }
  }

  private dispatch(msg: CommReply): void {
    if (msg.type === 'fatal') {
      this.workerGone = true;
      const err = CommError.fromData(msg.error);
      this.breakWith(new CommError(err.code, `rank ${this.rank}: the comm thread failed: ${err.message}`, err.ranks));
      return;
    }
    if (msg.type !== 'done' && msg.type !== 'failed') return;
    this.pool!.noteCompleted();
    const p = this.pending.get(msg.id);
    if (p === undefined) return;
    this.pending.delete(msg.id);
    if (this.pending.size === 0) this.port?.unref();
    if (msg.type === 'done' && msg.native) this.nativeRuns++;
    if (msg.type === 'done') p.resolve();
    else p.reject(this.noteFailure(CommError.fromData(msg.error)));
  }

  private takeSlot(data: Float32Array): SlotDescriptor {
    const slot = this.pool!.acquire(data.length);
    if (this.pool!.needsAnnouncing(slot)) this.announce(slot);
    slotData(slot, data.length).set(data);
    return slot;
  }

  private announce(slot: SlotDescriptor): void {
    this.port!.postMessage({ type: 'slot', slotId: slot.id, memory: slot.memory, dataOffset: slot.dataOffset, scratchOffset: 0 } satisfies CommRequest);
  }

  private giveSlot(slot: SlotDescriptor): void {
    const dropped = this.pool!.release(slot);
    if (dropped.length > 0 && !this.closed) this.port!.postMessage({ type: 'drop-slots', slotIds: dropped } satisfies CommRequest);
  }

  private noteFailure(err: CommError): CommError {
    if (err.code !== 'usage' && this.failure === null) this.failure = err;
    return err;
  }

  private breakWith(err: CommError): void {
    if (this.failure === null) this.failure = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.port?.unref();
  }

  private checkUsable(): void {
    if (this.closed) throw new CommError('closed', `rank ${this.rank}: the communicator is closed`);
    if (this.failure !== null) {
      throw new CommError(this.failure.code, `rank ${this.rank}: the communicator failed earlier: ${this.failure.message}`, this.failure.ranks);
    }
  }

  private checkArgs(what: string, name: string, data: Float32Array, out?: Float32Array): void {
    if (typeof name !== 'string' || name.length === 0) throw new CommError('usage', `${what}: the collective needs a non-empty name`);
    if (!(data instanceof Float32Array)) throw new CommError('usage', `${what} '${name}': data must be a Float32Array`);
    if (out !== undefined && (!(out instanceof Float32Array) || out.length !== data.length)) {
      throw new CommError('usage', `${what} '${name}': out must be a Float32Array of the same length as data (${data.length})`);
    }
    if (this.closed) throw new CommError('closed', `${what} '${name}' on rank ${this.rank}: the communicator is closed`);
  }
}

/**
 * Waits for the comm thread to finish on its own (its sockets closed, its port closed). Terminating it
 * while ZeroMQ still holds sockets aborts the whole process, so termination is only the last resort.
 */
async function waitForExit(worker: Worker, exited: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const ok = await Promise.race([exited.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)))]);
  clearTimeout(timer);
  if (!ok) await worker.terminate();
}

/** The result of a collective over one rank: `data` itself, copied into `out` or a new array. */
function copyTo(data: Float32Array, out: Float32Array | undefined): Float32Array {
  if (out === undefined) return data.slice();
  if (out !== data) out.set(data);
  return out;
}

function resolveOptions(o: CommunicatorOptions): Required<Omit<CommunicatorOptions, 'hostAddress'>> {
  const timeoutMs = o.timeoutMs ?? DEFAULTS.timeoutMs;
  const connectTimeoutMs = o.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs;
  const subChunkBytes = o.subChunkBytes ?? DEFAULTS.subChunkBytes;
  for (const [k, v] of [['timeoutMs', timeoutMs], ['connectTimeoutMs', connectTimeoutMs]] as const) {
    if (!Number.isFinite(v) || v <= 0) throw new CommError('usage', `Communicator option ${k}=${v} must be a positive number of milliseconds`);
  }
  if (!Number.isInteger(subChunkBytes) || subChunkBytes < 4096 || subChunkBytes > 64 << 20 || subChunkBytes % 64 !== 0) {
    throw new CommError('usage', `Communicator option subChunkBytes=${subChunkBytes} must be a multiple of 64 between 4 KiB and 64 MiB`);
  }
  const minorGcEveryBytes = o.minorGcEveryBytes ?? DEFAULTS.minorGcEveryBytes;
  if (!Number.isSafeInteger(minorGcEveryBytes) || minorGcEveryBytes < 0) {
    throw new CommError('usage', `Communicator option minorGcEveryBytes=${minorGcEveryBytes} must be a non-negative integer`);
  }
  const dataPlane = o.dataPlane ?? 'stream';
  if (dataPlane !== 'stream' && dataPlane !== 'zeromq') throw new CommError('usage', `Communicator option dataPlane=${String(dataPlane)} must be 'stream' or 'zeromq'`);
  return {
    timeoutMs, connectTimeoutMs, subChunkBytes, minorGcEveryBytes, forceJsKernels: o.forceJsKernels ?? false, quiet: o.quiet ?? false, dataPlane,
    nativeRing: o.nativeRing ?? true,
  };
}
