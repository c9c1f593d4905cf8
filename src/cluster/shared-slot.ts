// A slot is where one collective's data lives while the comm thread works on it: a shared WebAssembly
// memory, so that the compute thread can write the input and read the result directly, the comm thread
// can hand views of it to ZeroMQ without copying, and the SIMD kernels can work on it in place.
//
//   [ scratch: one sub-chunk, for the received piece being added ][ data: the collective's elements ]
//
// Memories have a fixed size (shared memories must declare a maximum, and a fixed one keeps every view
// valid), so "growing" means the pool hands out a bigger slot; the old one is dropped once idle.

import { wasm, type WasmMemory } from './wasm-api';

const PAGE = 65536;
const MAX_BYTES = 65536 * PAGE; // wasm32 address space

export interface SlotDescriptor {
  id: number;
  memory: WasmMemory;
  /** Byte offset of the scratch area (always 0) and its size: room for one sub-chunk. */
  scratchBytes: number;
  /** Byte offset where the elements start. */
  dataOffset: number;
  /** How many float32 elements fit. */
  capacity: number;
}

let nextSlotId = 1;

export function createSlot(capacity: number, scratchBytes: number): SlotDescriptor {
  const scratch = Math.ceil(scratchBytes / 64) * 64;
  const bytes = scratch + capacity * 4;
  if (bytes > MAX_BYTES) {
    throw new RangeError(`a collective of ${capacity} float32 elements does not fit in one 4 GiB shared slot`);
  }
  const pages = Math.max(1, Math.ceil(bytes / PAGE));
  const memory = new wasm.Memory({ initial: pages, maximum: pages, shared: true });
  return {
    id: nextSlotId++,
    memory,
    scratchBytes: scratch,
    dataOffset: scratch,
    capacity: Math.floor((pages * PAGE - scratch) / 4),
  };
}

/** The float32 view of a slot's first `length` elements. */
export function slotData(slot: SlotDescriptor, length: number): Float32Array {
  return new Float32Array(slot.memory.buffer, slot.dataOffset, length);
}

/**
 * Slots for the compute thread's collectives. A slot is busy from the moment its input is written until
 * its result has been copied out. Sizes round up (to 1/8 of the next power of two) so that gradient
 * buckets of similar size share slots instead of each allocating its own.
 *
 * A released slot is quarantined until one more collective has completed. The ring's last zero-copy
 * send from a slot (this rank's finished chunk, at the start of the all-gather) is not confirmed by the
 * collective's own completion; it is confirmed by the next one, because the next rank must have
 * received it before it could finish this collective and start the next. Until then the slot must not
 * be overwritten, and the quarantine is what lets the comm thread skip copying that chunk.
 */
export class SlotPool {
  private readonly free: { slot: SlotDescriptor; after: number }[] = [];
  /** Slots allocated since the comm thread last heard of them; it must receive their memory once. */
  private readonly announced = new Set<number>();
  private completed = 0;

  constructor(
    private readonly scratchBytes: number,
    private readonly maxIdleSlots = 8,
  ) {}

  /** Called once per completed collective (of any kind), in completion order. */
  noteCompleted(): void {
    this.completed++;
  }

  acquire(length: number): SlotDescriptor {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const { slot, after } = this.free[i];
      if (after >= this.completed || slot.capacity < length) continue;
      if (best < 0 || slot.capacity < this.free[best].slot.capacity) best = i;
    }
    if (best >= 0) return this.free.splice(best, 1)[0].slot;
    return createSlot(roundCapacity(length), this.scratchBytes);
  }

  /** Returns a slot whose collective has completed; returns the ids of slots dropped so the comm thread can forget them. */
  release(slot: SlotDescriptor): number[] {
    this.free.push({ slot, after: this.completed });
    const dropped: number[] = [];
    while (this.free.length > this.maxIdleSlots) {
      // Drop the smallest: the big ones are the expensive ones to re-create.
      let smallest = 0;
      for (let i = 1; i < this.free.length; i++) if (this.free[i].slot.capacity < this.free[smallest].slot.capacity) smallest = i;
      const [{ slot: s }] = this.free.splice(smallest, 1);
      this.announced.delete(s.id);
      dropped.push(s.id);
    }
    return dropped;
  }

  /** True the first time a slot is used, when its memory must travel to the comm thread. */
  needsAnnouncing(slot: SlotDescriptor): boolean {
    if (this.announced.has(slot.id)) return false;
    this.announced.add(slot.id);
    return true;
  }
}

function roundCapacity(length: number): number {
  if (length <= 16384) return 16384;
  const pow = 2 ** Math.ceil(Math.log2(length));
  const step = pow / 8;
  return Math.ceil(length / step) * step;
}
