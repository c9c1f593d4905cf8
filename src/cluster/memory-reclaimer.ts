// (This matters for the ZeroMQ data plane; the stream plane receives into the slots themselves and
// allocates only for messages that its collective does not place, which a correct run does not send.)
// zeromq.js hands every received message over 128 bytes to JS as a Buffer over ZeroMQ's own memory and
// reports that memory to V8 as external. A 25M-float allreduce receives ~100 MB of such Buffers per
// rank, all garbage a moment later, but the JS objects are tiny, so the young generation never fills
// and V8 only notices through "external memory pressure", which it answers with mark-compact
// collections: measured at ~30 ms of work per 100 MB received, a quarter of the allreduce's CPU.
//
// A minor GC (scavenge) frees those young Buffers for well under a millisecond, before the pressure
// builds. So the comm thread asks for one every `everyBytes` received. The gc function is the one
// `--expose-gc` provides; if the process was not started with it, the flag is set at runtime, which
// affects only contexts created afterwards (so nothing else in the process is changed). Where neither
// works, this does nothing and V8 collects as it would anyway.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type GcFunction = (options?: { type?: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void;

let cached: GcFunction | null | undefined;

function gcFunction(): GcFunction | null {
  if (cached !== undefined) return cached;
  cached = null;
  const existing = (globalThis as { gc?: unknown }).gc;
  if (typeof existing === 'function') {
    cached = existing as GcFunction;
    return cached;
  }
  try {
    setFlagsFromString('--expose-gc');
    const fn = runInNewContext('gc') as unknown;
    if (typeof fn === 'function') cached = fn as GcFunction;
  } catch {
    cached = null;
  }
  return cached;
}

export class MemoryReclaimer {
  private received = 0;
  private readonly gc: GcFunction | null;

  /** `everyBytes` 0 disables it. */
  constructor(private readonly everyBytes: number) {
    this.gc = everyBytes > 0 ? gcFunction() : null;
  }

  get active(): boolean {
    return this.gc !== null;
  }

  /** Counts received bytes; runs a minor GC each time another `everyBytes` have arrived. */
  noteReceived(bytes: number): void {
    if (this.gc === null) return;
    this.received += bytes;
    if (this.received >= this.everyBytes) {
      this.received = 0;
      this.gc({ type: 'minor' });
    }
  }
}
