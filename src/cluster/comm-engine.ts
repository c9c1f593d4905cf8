// The comm thread's state for one job: rendezvous, the ring transport, the control client (and at rank 0
// the hub), the sequence counter, and the rules for failing. It runs one collective at a time, in the
// order the compute thread asked for them; every rank must ask in the same order, and the sequence
// numbers and name hashes on the wire catch it when they do not.
//
// Failure is final: after a timeout, a lost rank or a protocol error the ring's state (half-sent
// sub-chunks, stashed early messages) is meaningless, so every later call fails with the same error.
// A failure seen here is also sent to rank 0, which fans it out, so that the other ranks stop at once
// with the same explanation rather than each waiting out its own timeout.

import { hostname } from 'node:os';
import { CommError } from './comm-error';
import { ControlClient } from './control-client';
import type { RankStatus } from './control-message';
import type { DistEnv } from './dist-env';
import { localAddressToward, resolveHost, tcpEndpoint } from './host-address';
import { RendezvousServer } from './rendezvous';
import { startAllreduce, startBroadcast, type RingJob, type RingRun } from './ring-collectives';
import type { DataPlane, DataTransport, DataTransportOptions } from './data-transport';
import { nativeEligible, nativeRingAddon, startNativeAllreduce, type NativeAddon } from './native-ring';
import { RingTransport } from './ring-transport';
import { StreamTransport } from './stream-transport';
import type { F32Kernels } from './simd-kernels';
import { hashName, WireMismatchError } from './wire-header';
import type { WasmMemory } from './wasm-api';
import { withTimeout } from './with-timeout';

export interface CommEngineOptions {
  /** Every wait (a collective making no progress, a barrier) fails after this long. */
  timeoutMs: number;
  /** How long rendezvous may take (all ranks started and connected). */
  connectTimeoutMs: number;
  /** Pipelining unit of the ring, bytes. The same on every rank. */
  subChunkBytes: number;
  /** Minor GC every this many bytes received into transport buffers, to free them early; 0: never. */
  minorGcEveryBytes: number;
  /** How ranks exchange data: plain TCP streams with zero-copy receive (default) or ZeroMQ. The same on every rank. */
  dataPlane?: DataPlane;
  /** Large allreduces on the stream plane run in C where the addon is built (native-ring.ts). Default true. */
  nativeRing?: boolean;
  /** The address to bind data sockets on, instead of the interface that routes to MASTER_ADDR. */
  hostAddress?: string;
  warn?: (message: string) => void;
}

/** Where a collective's elements are: a shared memory, its kernels, and offsets into it. */
export interface SlotBinding {
  memory: WasmMemory;
  kernels: F32Kernels;
  dataOffset: number;
  scratchOffset: number;
  /** The slot will not be overwritten before this rank's next collective completes (see SlotPool). */
  guarded: boolean;
}

const RENDEZVOUS_GRACE_MS = 2000;
/**
 * When this rank's neighbour drops, rank 0 may already be fanning out the root cause (the neighbour may
 * have failed because another rank was lost); wait this long for it before blaming the neighbour.
 */
const LOST_GRACE_MS = 150;
/**
 * After a failure, keep the sockets open this long before closing them, so that the other ranks hear
 * the root cause from rank 0 before they see this rank's connections drop (and blame this rank).
 */
const FAILURE_LINGER_MS = 300;

interface Current {
  seq: number;
  name: string;
  kind: string;
  fail: (e: CommError) => void;
}

export class CommEngine {
  readonly rank: number;
  readonly worldSize: number;
  private hub: RendezvousServer | null = null;
  private control!: ControlClient;
  private transport!: DataTransport;
  /** The native ring, where it is built and may run on this transport (native-ring.ts). */
  private native: NativeAddon | null = null;
  private seq = 0;
  private current: Current | null = null;
  private completed = { seq: 0, name: '', kind: '' };
  private broken: CommError | null = null;
  private closed = false;
  private readonly knownNames = new Map<number, string>();

  private constructor(
    private readonly env: DistEnv,
    private readonly opts: CommEngineOptions,
  ) {
    this.rank = env.rank;
    this.worldSize = env.worldSize;
  }

  /** Runs the rendezvous and brings up the ring. Rejects with CommError('refused' | 'timeout' | ...). */
  static async connect(env: DistEnv, opts: CommEngineOptions): Promise<CommEngine> {
    if (env.worldSize < 2) throw new CommError('usage', 'CommEngine needs a world of at least 2 ranks');
    const engine = new CommEngine(env, opts);
    try {
      await engine.init();
    } catch (err) {
      engine.shutdown();
      throw CommError.from(err, 'usage');
    }
    return engine;
  }

  get dataEndpoint(): string {
    return this.transport.endpoint;
  }

  private async init(): Promise<void> {
    const { env, opts } = this;
    const deadline = Date.now() + opts.connectTimeoutMs;
    const masterIp = await resolveHost(env.masterAddr);
    const bindIp = opts.hostAddress ?? (await localAddressToward(masterIp));
    if (env.rank === 0) {
      this.hub = await RendezvousServer.start({
        worldSize: env.worldSize,
        token: env.jobToken,
        bindIp: masterIp,
        port: env.masterPort,
        subChunkBytes: opts.subChunkBytes,
        dataPlane: opts.dataPlane ?? 'stream',
        timeoutMs: opts.connectTimeoutMs,
        probeMs: this.probeMs(),
        warn: opts.warn,
      });
    }
    const transportOpts: DataTransportOptions = {
      rank: env.rank,
      worldSize: env.worldSize,
      bindIp,
      subChunkBytes: opts.subChunkBytes,
      sendTimeoutMs: opts.timeoutMs,
      minorGcEveryBytes: opts.minorGcEveryBytes,
      onLost: (rank, reason) => this.onLost(rank, reason),
      onFatal: (error) => this.fail(error, true),
      warn: opts.warn,
    };
    this.transport = (opts.dataPlane ?? 'stream') === 'zeromq' ? await RingTransport.bind(transportOpts) : await StreamTransport.bind(transportOpts);
    this.native = opts.nativeRing !== false && this.transport instanceof StreamTransport ? nativeRingAddon() : null;
    this.control = new ControlClient({
      rank: env.rank,
      worldSize: env.worldSize,
      hubEndpoint: tcpEndpoint(masterIp, env.masterPort),
      hubIp: masterIp,
      sendTimeoutMs: opts.timeoutMs,
      onAbort: (error) => this.fail(error, false),
      status: () => this.status(),
      warn: opts.warn,
    });
    const welcome = await this.control.register(
      {
        rank: env.rank,
        worldSize: env.worldSize,
        token: env.jobToken,
        dataEndpoint: this.transport.endpoint,
        host: hostname(),
        pid: process.pid,
        subChunkBytes: opts.subChunkBytes,
        dataPlane: opts.dataPlane ?? 'stream',
      },
      // Rank 0's hub has the same deadline and knows which ranks are missing; give its abort a moment
      // to arrive before falling back on this rank's vaguer timeout.
      Math.max(1, deadline - Date.now()) + RENDEZVOUS_GRACE_MS,
    );
    this.transport.connect(welcome.endpoints, welcome.nonce);
    await withTimeout(this.transport.waitConnected(), deadline - Date.now(), () => this.transport.connectFailure());
    await this.control.ready(Math.max(1, deadline - Date.now()) + RENDEZVOUS_GRACE_MS);
    if (this.broken) throw this.broken;
  }

  /** Sum (or mean) over all ranks of the slot's first `length` elements, in place; true if it ran in C. */
  async allreduce(name: string, slot: SlotBinding, length: number, mean: boolean): Promise<boolean> {
    let ranNative = false;
    await this.runRing(mean ? 'allreduce-mean' : 'allreduce', name, slot, length, (job, run) => {
      const native = this.native;
      ranNative = native !== null && nativeEligible(length, this.worldSize, this.opts.subChunkBytes) &&
        startNativeAllreduce(native, this.transport as StreamTransport, job, mean, this.rank, this.worldSize, run);
      if (!ranNative) startAllreduce(this.transport, job, mean, this.rank, this.worldSize, run);
    });
    return ranNative;
  }

  /** Rank 0's slot contents into every rank's slot. */
  broadcast(name: string, slot: SlotBinding, length: number): Promise<void> {
    return this.runRing('broadcast', name, slot, length, (job, run) => startBroadcast(this.transport, job, this.rank, this.worldSize, run));
  }

  /** Returns when every rank has called barrier with the same sequence number (and name). */
  async barrier(name: string, timeoutMs = this.opts.timeoutMs): Promise<void> {
    const seq = this.begin('barrier', name);
    await new Promise<void>((resolve, reject) => {
      let done = false;
      const finish = (err?: CommError) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.control.forgetBarrier(seq);
        this.end(seq, name, 'barrier', err);
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(() => {
        void this.describeTimeout(seq, name, 'barrier', timeoutMs, null).then((err) => {
          if (!done) this.fail(err, true);
          finish(err);
        });
      }, timeoutMs);
      this.current!.fail = finish;
      this.control.barrier(seq, name).then(
        () => finish(),
        (e) => {
          const err = CommError.from(e);
          if (err.code === 'protocol') this.fail(err, true);
          finish(this.inContext(err, seq, name, 'barrier'));
        },
      );
    });
  }

  /** Leaves the job: a last barrier so nobody mistakes our leaving for a crash, then closes the sockets. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.broken !== null) await new Promise((resolve) => setTimeout(resolve, FAILURE_LINGER_MS));
    if (this.broken === null) {
      // Peers may close their sockets as soon as they pass this barrier, so from here on a dropped
      // connection means "closing", not "lost".
      this.control.beginClose();
      this.transport.beginClose();
      try {
        await this.barrier('segdist.close', Math.min(this.opts.timeoutMs, 30_000));
      } catch {
        // Leaving anyway; a peer that never arrives is its launcher's concern.
      }
    }
    this.shutdown();
  }

  /** Closes every socket at once, failing whatever is running: the process is exiting. */
  closeNow(): void {
    if (this.closed) return;
    this.fail(new CommError('closed', `rank ${this.rank}: the process is exiting`), false);
    this.shutdown();
  }

  private shutdown(): void {
    this.closed = true;
    // After a failure nothing queued is worth waiting for (the peers are gone or failing too); in a
    // clean close the hub's last release messages still need a moment to leave.
    const linger = this.broken === null ? 1000 : 0;
    this.control?.close(linger);
    this.transport?.close();
    this.hub?.close(linger);
  }

  // --- running collectives ---------------------------------------------------------------------

  private runRing(kind: string, name: string, slot: SlotBinding, length: number, start: (job: RingJob, run: RingRun) => void): Promise<void> {
    const seq = this.begin(kind, name);
    const job: RingJob = {
      seq,
      name,
      nameHash: hashName(name),
      memory: slot.memory,
      dataOffset: slot.dataOffset,
      scratchOffset: slot.scratchOffset,
      length,
      kernels: slot.kernels,
      guarded: slot.guarded,
      subChunkBytes: this.opts.subChunkBytes,
      knownNames: this.knownNames,
    };
    return new Promise<void>((resolve, reject) => {
      let done = false;
      let lastProgress = Date.now();
      let lastStep = -1;
      const finish = (err?: CommError) => {
        if (done) return;
        done = true;
        clearInterval(watchdog);
        this.transport.end(seq);
        this.end(seq, name, kind, err);
        if (err) reject(err);
        else resolve();
      };
      // An inactivity timeout rather than a deadline: a big allreduce on a slow link is fine as long as
      // data keeps arriving.
      const timeoutMs = this.opts.timeoutMs;
      const watchdog = setInterval(() => {
        if (done || Date.now() - lastProgress < timeoutMs) return;
        clearInterval(watchdog);
        void this.describeTimeout(seq, name, kind, timeoutMs, lastStep).then((err) => {
          if (!done) this.fail(err, true);
          finish(err);
        });
      }, Math.max(10, Math.min(1000, timeoutMs / 8)));
      this.current!.fail = finish;
      const run: RingRun = {
        touch: (step) => {
          lastProgress = Date.now();
          lastStep = step;
        },
        complete: () => finish(),
        fail: (e) => {
          const err =
            e instanceof WireMismatchError ? new CommError('protocol', e.message, [e.peer]) : this.inContext(CommError.from(e), seq, name, kind);
          this.fail(err, true);
          finish(err);
        },
      };
      start(job, run);
    });
  }

  private begin(kind: string, name: string): number {
    if (this.closed) throw new CommError('closed', `${kind} '${name}' on rank ${this.rank}: the communicator is closed`);
    if (this.broken) {
      throw new CommError(
        this.broken.code,
        `${kind} '${name}' on rank ${this.rank} cannot run: the communicator failed earlier: ${this.broken.message}`,
        this.broken.ranks,
      );
    }
    if (this.current) throw new CommError('usage', `${kind} '${name}' started while '${this.current.name}' is running (collectives must be serial)`);
    const seq = ++this.seq;
    const hash = hashName(name);
    if (!this.knownNames.has(hash)) {
      if (this.knownNames.size > 10_000) this.knownNames.clear();
      this.knownNames.set(hash, name);
    }
    this.current = { seq, name, kind, fail: () => undefined };
    return seq;
  }

  private end(seq: number, name: string, kind: string, err: CommError | undefined): void {
    if (this.current?.seq === seq) this.current = null;
    if (!err) this.completed = { seq, name, kind };
  }

  // --- failure ---------------------------------------------------------------------------------

  private onLost(rank: number, reason: string): void {
    const error = new CommError('lost-rank', `rank ${rank} was lost: ${reason}`, [rank]);
    this.control.reportLost(rank, reason);
    setTimeout(() => this.fail(error, false), LOST_GRACE_MS);
  }

  /** Marks the engine broken and fails the running collective; `report` also tells rank 0. */
  private fail(error: CommError, report: boolean): void {
    if (this.broken !== null || this.closed) return;
    this.broken = error;
    if (report) this.control?.reportFailure(error);
    const cur = this.current;
    if (cur) cur.fail(this.inContext(error, cur.seq, cur.name, cur.kind));
  }

  /** Prefixes the collective to an error that does not already name it. */
  private inContext(error: CommError, seq: number, name: string, kind: string): CommError {
    if (error.message.includes(`'${name}' #${seq}`)) return error;
    return new CommError(error.code, `${kind} '${name}' #${seq} failed on rank ${this.rank}: ${error.message}`, error.ranks);
  }

  private status(): RankStatus {
    const cur = this.current;
    return { rank: this.rank, current: cur ? { seq: cur.seq, name: cur.name, kind: cur.kind } : null, completed: this.completed };
  }

  private probeMs(): number {
    return Math.max(200, Math.min(2000, this.opts.timeoutMs / 10));
  }

  /**
   * Turns "nothing arrived for timeoutMs" into the ranks to blame: asks rank 0 what every rank is doing,
   * and names the ranks that never reached this collective (or did not answer at all).
   */
  private async describeTimeout(seq: number, name: string, kind: string, timeoutMs: number, step: number | null): Promise<CommError> {
    const statuses = await this.control.queryStatus(this.probeMs() + 500);
    const head = `${kind} '${name}' #${seq} timed out on rank ${this.rank} after ${(timeoutMs / 1000).toFixed(1)} s`;
    const prev = this.transport.prev;
    if (statuses.every((s) => s === null)) {
      const who = kind === 'barrier' ? 'rank 0 (the barrier hub)' : `rank ${prev}`;
      return new CommError('timeout', `${head}: nothing arrived from ${who}, and rank 0 did not answer a status query`, kind === 'barrier' ? [0] : [prev]);
    }
    const late: string[] = [];
    const blamed: number[] = [];
    statuses.forEach((s, r) => {
      if (r === this.rank) return;
      if (s === null) {
        late.push(`rank ${r} did not answer (hung or lost)`);
        blamed.push(r);
        return;
      }
      const reached = s.current !== null ? s.current.seq : s.completed.seq;
      if (reached < seq) {
        const where =
          s.current !== null
            ? `it is still in ${s.current.kind} '${s.current.name}' #${s.current.seq}`
            : s.completed.seq > 0
              ? `its last collective was ${s.completed.kind} '${s.completed.name}' #${s.completed.seq}`
              : 'it has not run a collective yet';
        late.push(`rank ${r} did not arrive (${where})`);
        blamed.push(r);
      }
    });
    if (blamed.length > 0) return new CommError('timeout', `${head}: ${late.join('; ')}`, blamed);
    const at = step === null ? '' : ` (after step ${step})`;
    return new CommError('timeout', `${head}: every rank arrived, but no data came from rank ${prev}${at}`, [prev]);
  }
}
