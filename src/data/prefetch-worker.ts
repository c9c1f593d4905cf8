// The body of one DataPrefetcher worker thread: receives jobs, decodes and augments whole samples, and
// posts back the image and label with their buffers transferred (no copy). Loaded by path from
// dist/src/data/prefetch-worker.js (see prefetcher.ts).
//
// A worker runs up to `concurrency` jobs at once: while one sample's JPEG is decoded by libvips on the
// libuv pool, the thread can augment another. The ids of the jobs it is running are kept in a shared
// Int32Array, so that if the thread dies the main thread still knows which files it was on.

import { readFileSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import type { SampleJob } from './batch-loader';
import { buildPreparer, type PreparerSpec } from './preparer-spec';
import { DataError } from './data-error';

export interface WorkerInit {
  index: number;
  pipelines: Record<string, PreparerSpec>;
  concurrency: number;
  /** Int32Array(concurrency) over a SharedArrayBuffer: ids of running jobs, -1 for a free slot. */
  active: SharedArrayBuffer;
  /** Test hooks: die on the sample with this id, by an uncaught exception or by process.exit. */
  faults?: { crashOn?: string; exitOn?: string };
}

export type ToWorker = { kind: 'job'; id: number; pipeline: string; job: SampleJob } | { kind: 'cancel'; ids: number[] } | { kind: 'cpu'; id: number };

export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  file?: string;
  line?: number;
  detail?: string;
}

export type FromWorker =
  | { kind: 'done'; id: number; image: Float32Array; label: Int32Array; height: number; width: number }
  | { kind: 'failed'; id: number; error: SerializedError }
  | { kind: 'cpu'; id: number; seconds: number | null };

/** CPU seconds this thread has used (Linux: /proc/thread-self/stat), or null where that is not available. */
function threadCpuSeconds(): number | null {
  try {
    const fields = readFileSync('/proc/thread-self/stat', 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime in clock ticks (USER_HZ = 100)
  } catch {
    return null;
  }
}

export function serializeError(err: unknown): SerializedError {
  if (err instanceof DataError) return { name: err.name, message: err.message, stack: err.stack, file: err.file, line: err.line, detail: err.detail };
  if (err instanceof Error) return { name: err.name, message: err.message, stack: err.stack };
  return { name: 'Error', message: String(err) };
}

function main(): void {
  const port = parentPort;
  if (port === null) throw new Error('prefetch-worker.js must be started as a worker thread');
  const init = workerData as WorkerInit;
  const preparers = Object.fromEntries(Object.entries(init.pipelines).map(([name, spec]) => [name, buildPreparer(spec)]));
  const active = new Int32Array(init.active);
  const queue: Array<Extract<ToWorker, { kind: 'job' }>> = [];
  let running = 0;

  const run = async (msg: Extract<ToWorker, { kind: 'job' }>): Promise<void> => {
    const slot = active.indexOf(-1);
    Atomics.store(active, slot, msg.id);
    running++;
    try {
      const id = msg.job.ref.id;
      if (init.faults?.crashOn === id) await new Promise(() => setImmediate(() => { throw new Error(`injected crash on ${id}`); }));
      if (init.faults?.exitOn === id) process.exit(7);
      const prepare = preparers[msg.pipeline];
      if (prepare === undefined) throw new Error(`no pipeline named ${msg.pipeline}`);
      const s = await prepare(msg.job);
      const reply: FromWorker = { kind: 'done', id: msg.id, image: s.image, label: s.label, height: s.height, width: s.width };
      port.postMessage(reply, [s.image.buffer as ArrayBuffer, s.label.buffer as ArrayBuffer]);
    } catch (err) {
      const reply: FromWorker = { kind: 'failed', id: msg.id, error: serializeError(err) };
      port.postMessage(reply);
    } finally {
      Atomics.store(active, slot, -1);
      running--;
      pump();
    }
  };

  const pump = (): void => {
    while (running < init.concurrency && queue.length > 0) void run(queue.shift()!);
  };

  port.on('message', (msg: ToWorker) => {
    if (msg.kind === 'job') {
      queue.push(msg);
      pump();
    } else if (msg.kind === 'cpu') {
      port.postMessage({ kind: 'cpu', id: msg.id, seconds: threadCpuSeconds() } satisfies FromWorker);
    } else {
      const drop = new Set(msg.ids);
      for (let i = queue.length - 1; i >= 0; i--) if (drop.has(queue[i].id)) queue.splice(i, 1);
    }
  });
}

main();
