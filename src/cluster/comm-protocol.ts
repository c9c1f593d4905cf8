// What the compute thread (Communicator) and the comm thread (comm-worker) say to each other.
//
// Requests go over a MessagePort, in order. Replies go back over the same port, and after posting each
// reply the comm thread bumps a counter in a SharedArrayBuffer (the doorbell) and notifies it: a compute
// thread blocked in Atomics.wait inside a synchronous collective wakes on the doorbell and takes the reply
// with receiveMessageOnPort, without ever returning to its event loop; an asynchronous caller gets the
// same reply as an ordinary 'message' event. The data itself never travels in messages: it is in slots,
// shared memories that both threads see (shared-slot.ts).

import type { CommErrorData } from './comm-error';
import type { CommEngineOptions } from './comm-engine';
import type { MessagePort } from 'node:worker_threads';
import type { DistEnv } from './dist-env';
import type { WasmMemory } from './wasm-api';

export interface CommWorkerData {
  env: DistEnv;
  options: Omit<CommEngineOptions, 'warn'> & { forceJsKernels: boolean; quiet: boolean };
  /** Int32Array(1) over this buffer: the doorbell. */
  doorbell: SharedArrayBuffer;
  port: MessagePort;
}

export type CommRequest =
  /** A new slot: its memory travels once, later requests name it by id. */
  | { type: 'slot'; slotId: number; memory: WasmMemory; dataOffset: number; scratchOffset: number }
  | { type: 'drop-slots'; slotIds: number[] }
  /**
   * `offset`: byte offset of the elements in the slot's memory. `guarded`: the slot is a pool slot whose
   * reuse waits for the next collective (SlotPool), so the ring may send its finished chunk from it.
   */
  | { type: 'allreduce'; id: number; name: string; slotId: number; offset: number; length: number; mean: boolean; guarded: boolean }
  | { type: 'broadcast'; id: number; name: string; slotId: number; offset: number; length: number }
  | { type: 'barrier'; id: number; name: string }
  | { type: 'close'; id: number }
  /**
   * The process is exiting without close(): close every socket now, synchronously, before Node tears
   * the thread down (ZeroMQ sockets still open at that point abort the whole process).
   */
  | { type: 'exit-now'; id: number };

export type CommReply =
  | { type: 'ready'; rank: number; worldSize: number; dataEndpoint: string; simd: boolean }
  | { type: 'connect-failed'; error: CommErrorData }
  /** `native`: an allreduce that ran in the native ring (native-ring.ts). */
  | { type: 'done'; id: number; native?: boolean }
  | { type: 'failed'; id: number; error: CommErrorData }
  /** The comm thread hit a bug (an uncaught exception) and shut down; every pending call fails with it. */
  | { type: 'fatal'; error: CommErrorData };

export const DOORBELL_INDEX = 0;
