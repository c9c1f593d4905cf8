// Ring allreduce and ring broadcast over a DataTransport, on data that lives in a shared slot.
//
// Allreduce: the n ranks split the data into n chunks; in n-1 reduce-scatter steps each rank passes a
// partial sum of one chunk to the next rank, which adds its own and passes it on, until rank r holds
// the full sum of chunk r+1; in n-1 all-gather steps the finished chunks travel once more round the
// ring. Each rank sends and receives 2(n-1)/n of the data, the least any allreduce can.
//
// Pipelining: every chunk is cut into sub-chunks of `subChunkBytes` and each sub-chunk moves through
// the steps on its own, as soon as its previous step arrived. So while the comm thread adds one
// sub-chunk, the kernel is sending the one before and receiving the one after.
//
// Where received bytes land: a transport that can (the stream plane) reads a partial sum straight into
// the slot's scratch area, from where the SIMD kernel adds it, and a finished chunk straight into its
// place in the slot; otherwise (ZeroMQ, or a message that arrived before its collective began) the
// payload comes in a buffer of the transport's and is copied.
//
// Zero copy, and when a buffer may be reused: sends are views of memory that the kernel (or ZeroMQ's
// I/O thread) reads later, so a view must not change until the bytes have left. Within a collective,
// views of the slot are sent in reduce-scatter, and the value sent always comes back round the ring (as
// part of a finished chunk) before this rank overwrites that part of the slot, so causality guarantees
// the send completed; the same holds for this rank's own chunk sent at step 0. After the collective:
// - the stream plane confirms sends (DataTransport.confirmsSends), and a collective completes only once
//   all of its payloads have left, so finished chunks are received into and sent from the slot itself;
// - on ZeroMQ the sends that do not come back round (this rank's finished chunk at the start of the
//   all-gather) are confirmed only by the next collective's completion (the next rank must have
//   received them before it could finish this collective and start the next). Pool slots wait for that
//   before reuse (SlotPool), so for those ("guarded") the finished chunk goes out from the slot; a
//   caller's own shared array cannot be held back, so for those it goes out from a copy (1/n of the
//   data). Forwarded chunks go out from the buffers ZeroMQ received them in.

import type { CommError } from './comm-error';
import type { F32Kernels } from './simd-kernels';
import { expectHeader, WireDtype, WireMismatchError, WireOp, type CollectiveContext, type WireHeader } from './wire-header';
import type { DataTransport } from './data-transport';
import type { WasmMemory } from './wasm-api';

export interface RingJob {
  seq: number;
  name: string;
  nameHash: number;
  memory: WasmMemory;
  /** Byte offset of the elements in `memory`. */
  dataOffset: number;
  /** Byte offset of a scratch area of at least one sub-chunk. */
  scratchOffset: number;
  length: number;
  kernels: F32Kernels;
  /** The slot stays unchanged until this rank's next collective completes, so it may be sent from after this one. */
  guarded: boolean;
  subChunkBytes: number;
  /** For error messages: names this rank has used, by hash. */
  knownNames: ReadonlyMap<number, string>;
}

/** How a collective reports back to the engine that runs it. */
export interface RingRun {
  /** A message arrived: the collective is making progress. */
  touch(step: number): void;
  complete(): void;
  fail(error: CommError | Error): void;
}

/** Element range [lo, hi) of chunk c when `length` elements are split into n near-equal chunks. */
export function chunkRange(length: number, n: number, c: number): [number, number] {
  const base = Math.floor(length / n);
  const rem = length % n;
  const lo = c * base + Math.min(c, rem);
  return [lo, lo + base + (c < rem ? 1 : 0)];
}

/** The chunk rank `rank` receives at `step`: reduce-scatter r-1-s, all-gather r-(s-(n-1)). */
function chunkAtStep(rank: number, n: number, step: number): number {
  const c = step < n - 1 ? rank - 1 - step : rank - (step - (n - 1));
  return ((c % n) + n) % n;
}

/** Sub-chunks per chunk when `length` elements are split into n chunks cut into sub-chunks of `subChunkBytes`. */
export function subChunkCount(length: number, n: number, subChunkBytes: number): number {
  return Math.max(1, Math.ceil(Math.ceil(length / n) / (subChunkBytes >>> 2)));
}

/** Element range [lo, hi) of sub-chunk j of chunk c. */
function subRange(job: RingJob, n: number, c: number, j: number): [number, number] {
  const subElems = job.subChunkBytes >>> 2;
  const [lo, hi] = chunkRange(job.length, n, c);
  return [Math.min(lo + j * subElems, hi), Math.min(lo + (j + 1) * subElems, hi)];
}

/**
 * The checks every message of a ring allreduce gets, wherever it was received (here, or in the native
 * loop, native-ring.ts): `step` is the step this rank expects next of the message's sub-chunk. Returns
 * the element range the message carries; throws a WireMismatchError naming both ranks otherwise.
 */
export function expectRingMessage(h: WireHeader, job: RingJob, mean: boolean, rank: number, prev: number, n: number, step: number): [number, number] {
  const op = mean ? WireOp.AllreduceMean : WireOp.AllreduceSum;
  const ctx: CollectiveContext = { rank, name: job.name, kind: mean ? 'allreduce-mean' : 'allreduce', knownNames: job.knownNames };
  const nsub = subChunkCount(job.length, n, job.subChunkBytes);
  const steps = 2 * (n - 1);
  const totalBytes = job.length * 4;
  if (h.chunk >= nsub) {
    expectHeader(h, { op, dtype: WireDtype.Float32, sender: prev, seq: job.seq, nameHash: job.nameHash, totalBytes, chunk: nsub - 1 }, ctx);
  }
  const j = h.chunk;
  if (step >= steps) {
    throw new WireMismatchError(
      `${ctx.kind} '${job.name}' #${job.seq} on rank ${rank}: rank ${prev} sent sub-chunk ${j} more than ${steps} times`,
      rank, prev, job.name,
    );
  }
  const [lo, hi] = subRange(job, n, chunkAtStep(rank, n, step), j);
  expectHeader(h, {
    op, dtype: WireDtype.Float32, sender: prev, seq: job.seq, nameHash: job.nameHash, totalBytes,
    step, chunk: j, byteLength: (hi - lo) * 4,
  }, ctx);
  return [lo, hi];
}

/**
 * Sum (or mean) of `job`'s slot over all ranks, in place. Starts the pipeline and returns; `run` hears
 * of progress, completion and failure.
 */
export function startAllreduce(t: DataTransport, job: RingJob, mean: boolean, rank: number, n: number, run: RingRun): void {
  const op = mean ? WireOp.AllreduceMean : WireOp.AllreduceSum;
  const nsub = subChunkCount(job.length, n, job.subChunkBytes);
  const totalBytes = job.length * 4;
  const steps = 2 * (n - 1);
  const expectedMessages = steps * nsub;
  const nextStep = new Int32Array(nsub);
  const memU8 = () => new Uint8Array(job.memory.buffer);
  let received = 0;

  const sub = (c: number, j: number): [number, number] => subRange(job, n, c, j);
  const header = (step: number, j: number, bytes: number): WireHeader => ({
    op, dtype: WireDtype.Float32, sender: rank, seq: job.seq, nameHash: job.nameHash,
    step, chunk: j, byteLength: bytes, totalBytes,
  });
  const slotView = (lo: number, hi: number) => Buffer.from(job.memory.buffer as SharedArrayBuffer, job.dataOffset + lo * 4, (hi - lo) * 4);
  // Whether finished chunks may be sent from (and received into) the slot ("Zero copy" above).
  const fromSlot = job.guarded || t.confirmsSends;
  const chunkAt = (step: number) => chunkAtStep(rank, n, step);

  // Where a message's payload should land, if the transport can put it there: a partial sum in the
  // scratch area, a finished chunk in its place. Anything unexpected: undefined,
  // and onMessage rejects it.
  const place = (h: WireHeader): Uint8Array | undefined => {
    const j = h.chunk;
    if (j >= nsub || h.seq !== job.seq || h.op !== op) return undefined;
    const step = nextStep[j];
    if (step >= steps || h.step !== step) return undefined;
    const [lo, hi] = sub(chunkAt(step), j);
    if (h.byteLength !== (hi - lo) * 4) return undefined;
    if (step < n - 1) return new Uint8Array(job.memory.buffer, job.scratchOffset, h.byteLength);
    return fromSlot ? new Uint8Array(job.memory.buffer, job.dataOffset + lo * 4, h.byteLength) : undefined;
  };

  const onMessage = (h: WireHeader, payload: Uint8Array, placed: boolean) => {
    try {
      const j = h.chunk;
      const step = j < nsub ? nextStep[j] : 0;
      const [lo, hi] = expectRingMessage(h, job, mean, rank, t.prev, n, step);
      nextStep[j] = step + 1;
      run.touch(step);
      const dst = job.dataOffset + lo * 4;
      const bytes = payload.byteLength;
      if (step < n - 1) {
        // Reduce-scatter: add the partial sum into ours. The SIMD kernel sees only wasm memory, so the
        // received bytes must be in the scratch area (placed there, or copied).
        if (!placed) memU8().set(payload, job.scratchOffset);
        job.kernels.add(dst, job.scratchOffset, hi - lo);
        if (step < n - 2) {
          t.send(header(step + 1, j, bytes), slotView(lo, hi));
        } else {
          // This rank now holds the finished chunk: divide for a mean, then start the all-gather.
          // From the slot where that is safe, else from a copy ("Zero copy" above).
          if (mean) job.kernels.divide(dst, hi - lo, n);
          if (fromSlot) {
            t.send(header(step + 1, j, bytes), slotView(lo, hi));
          } else {
            const copy = placed ? Buffer.allocUnsafe(bytes) : payload;
            copy.set(memU8().subarray(dst, dst + bytes));
            t.send(header(step + 1, j, bytes), copy);
          }
        }
      } else {
        // All-gather: a finished chunk. Placed means it is already in the slot.
        if (!placed) memU8().set(payload, dst);
        if (step < steps - 1) t.send(header(step + 1, j, bytes), placed ? slotView(lo, hi) : payload);
      }
      // Done once everything has arrived and (where the transport can tell) everything sent has left.
      if (++received === expectedMessages) t.afterSends(() => run.complete());
    } catch (err) {
      run.fail(err as Error);
    }
  };

  // Our own step-0 sends go first: begin() may deliver stashed early messages at once, and their
  // handlers send later steps, which must not overtake step 0 on the wire.
  for (let j = 0; j < nsub; j++) {
    const [lo, hi] = sub(rank, j);
    t.send(header(0, j, (hi - lo) * 4), slotView(lo, hi));
  }
  t.begin(job.seq, onMessage, place);
}

/**
 * Copies rank 0's slot into every rank's slot. The data flows 0 -> 1 -> ... -> n-1 in sub-chunks, each
 * rank forwarding a sub-chunk as soon as it has it; the last rank then acknowledges to rank 0, so rank 0
 * finishes only when everyone has the data (and its slot is no longer being read by ZeroMQ).
 */
export function startBroadcast(t: DataTransport, job: RingJob, rank: number, n: number, run: RingRun): void {
  const subElems = job.subChunkBytes >>> 2;
  const nsub = Math.max(1, Math.ceil(job.length / subElems));
  const totalBytes = job.length * 4;
  const ctx: CollectiveContext = { rank, name: job.name, kind: 'broadcast', knownNames: job.knownNames };
  const range = (j: number): [number, number] => [Math.min(j * subElems, job.length), Math.min((j + 1) * subElems, job.length)];
  const header = (op: WireOp, j: number, bytes: number): WireHeader => ({
    op, dtype: WireDtype.Float32, sender: rank, seq: job.seq, nameHash: job.nameHash,
    step: 0, chunk: j, byteLength: bytes, totalBytes,
  });
  let received = 0;

  if (rank === 0) {
    t.begin(job.seq, (h) => {
      try {
        expectHeader(h, { op: WireOp.BroadcastAck, dtype: WireDtype.Float32, sender: n - 1, seq: job.seq, nameHash: job.nameHash, totalBytes, step: 0, chunk: 0, byteLength: 0 }, ctx);
        run.touch(0);
        run.complete();
      } catch (err) {
        run.fail(err as Error);
      }
    });
    for (let j = 0; j < nsub; j++) {
      const [lo, hi] = range(j);
      t.send(header(WireOp.Broadcast, j, (hi - lo) * 4), Buffer.from(job.memory.buffer as SharedArrayBuffer, job.dataOffset + lo * 4, (hi - lo) * 4));
    }
    return;
  }

  // Sub-chunk j lands in its place in the slot and is forwarded from there where the transport confirms
  // sends ("Zero copy" above); otherwise it comes in a buffer of the transport's, is copied, and that
  // buffer is forwarded.
  const place = (h: WireHeader): Uint8Array | undefined => {
    const [lo, hi] = range(received);
    if (!t.confirmsSends || h.op !== WireOp.Broadcast || h.seq !== job.seq || h.chunk !== received || h.byteLength !== (hi - lo) * 4) return undefined;
    return new Uint8Array(job.memory.buffer, job.dataOffset + lo * 4, h.byteLength);
  };
  t.begin(job.seq, (h, payload, placed) => {
    try {
      const j = received;
      const [lo, hi] = range(j);
      expectHeader(h, { op: WireOp.Broadcast, dtype: WireDtype.Float32, sender: t.prev, seq: job.seq, nameHash: job.nameHash, totalBytes, step: 0, chunk: j, byteLength: (hi - lo) * 4 }, ctx);
      run.touch(0);
      if (!placed) new Uint8Array(job.memory.buffer).set(payload, job.dataOffset + lo * 4);
      if (rank < n - 1) t.send(header(WireOp.Broadcast, j, payload.byteLength), payload);
      if (++received === nsub) {
        if (rank === n - 1) t.send(header(WireOp.BroadcastAck, 0, 0), Buffer.alloc(0));
        t.afterSends(() => run.complete());
      }
    } catch (err) {
      run.fail(err as Error);
    }
  }, place);
}
