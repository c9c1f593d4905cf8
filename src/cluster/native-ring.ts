// The ring allreduce in C (native/ring_allreduce.c), on the stream plane's sockets, for the large
// allreduces where the JavaScript path's cost per message shows: with as many ranks as cores an
// allreduce is CPU-bound, and Node's stream machinery per read and write plus the per-message handler
// cost about as much as gloo's whole user time (docs/benchmarks.md). The protocol on the wire is the
// same (headers, sub-chunks, order of additions), so a rank with the addon and one without interoperate
// and compute the same bits; which path ran is a local choice, per collective.
//
// The addon is optional: npm's install step builds it where a compiler is (tools/build-native.js), and
// without it every collective runs in JavaScript. `dist.native_ring: false` (Communicator option
// nativeRing) turns it off.
//
// Division of labour: C moves and adds the bytes and checks each header; JavaScript lends it the
// sockets (StreamTransport.lend), watches its progress counter for the engine's inactivity timeout,
// aborts it when the collective fails elsewhere, and turns what it reports into the same errors the
// JavaScript path raises (a rejected header comes back raw and is judged by the same checks).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { CommError } from './comm-error';
import { expectRingMessage, subChunkCount, type RingJob, type RingRun } from './ring-collectives';
import type { StreamTransport } from './stream-transport';
import { WireDtype, WireOp } from './wire-header';

interface NativeResult {
  code: number;
  errno: number;
  /** With BAD_HEADER: the 40 bytes it refused. */
  header?: Buffer;
  /** With BAD_HEADER: the step it expected next of that sub-chunk. */
  expectStep?: number;
}

export interface NativeAddon {
  start(
    inFd: number, outFd: number, data: Uint8Array, scratch: Uint8Array, control: Int32Array, pre: Uint8Array,
    params: Float64Array, done: (result: NativeResult) => void,
  ): void;
}

const OK = 0;
const ABORTED = 1;
const BAD_HEADER = 2;
const LOST_PREV = 3;
const LOST_NEXT = 4;

/** Below this many elements the JavaScript ring is as fast (one pool-thread round trip per collective). */
export const NATIVE_MIN_ELEMENTS = 1 << 16;

let addon: NativeAddon | null | undefined;

/** native/build/Release/segdist_native.node, found upward from this file; null where it was not built. */
export function nativeRingAddon(): NativeAddon | null {
  if (addon !== undefined) return addon;
  addon = null;
  for (let d = __dirname; ; d = path.dirname(d)) {
    const p = path.join(d, 'native', 'build', 'Release', 'segdist_native.node');
    if (fs.existsSync(p)) {
      try {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        addon = require(p) as NativeAddon;
      } catch {
        addon = null; // built for another Node: the JavaScript ring it is
      }
      break;
    }
    if (path.dirname(d) === d) break;
  }
  return addon;
}

/**
 * Whether an allreduce of `length` elements goes native: large enough to matter, and every sub-chunk
 * message non-empty (the JavaScript side keeps payload-less early messages in a stash that the native
 * loop would not see).
 */
export function nativeEligible(length: number, n: number, subChunkBytes: number): boolean {
  if (length < NATIVE_MIN_ELEMENTS) return false;
  return Math.floor(length / n) > (subChunkCount(length, n, subChunkBytes) - 1) * (subChunkBytes >>> 2);
}

/**
 * Runs `job` (an allreduce) in C on `t`'s sockets and reports to `run` as startAllreduce does. Returns
 * false, having started nothing, where the sockets cannot be lent right now (the caller then runs the
 * JavaScript ring).
 */
export function startNativeAllreduce(native: NativeAddon, t: StreamTransport, job: RingJob, mean: boolean, rank: number, n: number, run: RingRun): boolean {
  const control = new Int32Array(new SharedArrayBuffer(8)); // [abort, messages received]
  const lease = t.lend(job.seq, control);
  if (lease === null) return false;
  const nsub = subChunkCount(job.length, n, job.subChunkBytes);
  let seen = 0;
  // The engine's watchdog fails a collective that makes no progress for its timeout: tell it of ours.
  const progress = setInterval(() => {
    const got = Atomics.load(control, 1);
    if (got !== seen) {
      seen = got;
      run.touch(Math.floor((got - 1) / nsub));
    }
  }, 100);
  const params = Float64Array.of(rank, n, job.seq, job.nameHash, mean ? 1 : 0, job.subChunkBytes);
  const done = (r: NativeResult) => {
    clearInterval(progress);
    t.giveBack(r.code === OK);
    if (r.code === OK) return run.complete();
    if (r.code === ABORTED) return; // the collective already failed, and said why
    if (r.code === LOST_PREV) return t.reportLost(t.prev);
    if (r.code === LOST_NEXT) return t.reportLost(t.next);
    if (r.code === BAD_HEADER) return judgeHeader(t, job, mean, rank, n, r, run);
    run.fail(new CommError('protocol', `rank ${rank}: data socket failed (errno ${r.errno})`));
  };
  try {
    native.start(
      lease.inFd, lease.outFd,
      new Uint8Array(job.memory.buffer, job.dataOffset, job.length * 4),
      new Uint8Array(job.memory.buffer, job.scratchOffset, job.subChunkBytes),
      control, lease.pre, params, done,
    );
  } catch (err) {
    // Refused its arguments: a bug, not a condition to run around (the lent stream is not where the
    // JavaScript ring could pick it up), so the collective fails saying so.
    clearInterval(progress);
    t.giveBack(false);
    run.fail(new CommError('protocol', `rank ${rank}: the native ring refused to start: ${(err as Error).message}`));
  }
  return true;
}

/** A header the C loop refused, judged by the JavaScript path's own checks, so the error is the same. */
function judgeHeader(t: StreamTransport, job: RingJob, mean: boolean, rank: number, n: number, r: NativeResult, run: RingRun): void {
  const h = t.decodeData(r.header!);
  if (h === null) return; // the transport failed, naming the rank
  try {
    expectRingMessage(h, job, mean, rank, t.prev, n, r.expectStep ?? 0);
  } catch (err) {
    return run.fail(err as Error);
  }
  run.fail(new CommError('protocol', `rank ${rank} refused a message from rank ${t.prev} (${WireOp[h.op]} #${h.seq}, ${WireDtype[h.dtype]}, step ${h.step}, chunk ${h.chunk})`, [t.prev]));
}
