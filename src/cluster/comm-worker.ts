// Entry point of the comm thread (node:worker_threads). It owns every socket of this rank through a
// CommEngine and runs the compute thread's requests one after another, replying through the port and
// ringing the doorbell (see comm-protocol.ts). Loaded by Communicator from dist/ by path.

import { workerData } from 'node:worker_threads';
import { CommError } from './comm-error';
import { CommEngine, type SlotBinding } from './comm-engine';
import { DOORBELL_INDEX, type CommReply, type CommRequest, type CommWorkerData } from './comm-protocol';
import { kernelsFor, simdAvailable } from './simd-kernels';

const { env, options, doorbell, port } = workerData as CommWorkerData;
const bell = new Int32Array(doorbell);
const slots = new Map<number, SlotBinding>();

function reply(msg: CommReply): void {
  port.postMessage(msg);
  Atomics.add(bell, DOORBELL_INDEX, 1);
  Atomics.notify(bell, DOORBELL_INDEX);
}

function slot(id: number): SlotBinding {
  const s = slots.get(id);
  if (s === undefined) throw new CommError('usage', `comm thread: unknown slot ${id}`);
  return s;
}

async function run(engine: CommEngine, req: Exclude<CommRequest, { type: 'slot' | 'drop-slots' | 'exit-now' }>): Promise<void> {
  try {
    switch (req.type) {
      case 'allreduce': {
        const native = await engine.allreduce(req.name, { ...slot(req.slotId), dataOffset: req.offset, guarded: req.guarded }, req.length, req.mean);
        reply({ type: 'done', id: req.id, native });
        return;
      }
      case 'broadcast':
        await engine.broadcast(req.name, { ...slot(req.slotId), dataOffset: req.offset, guarded: true }, req.length);
        break;
      case 'barrier':
        await engine.barrier(req.name);
        break;
      case 'close':
        await engine.close();
        reply({ type: 'done', id: req.id });
        port.close();
        return;
    }
    reply({ type: 'done', id: req.id });
  } catch (err) {
    reply({ type: 'failed', id: req.id, error: CommError.from(err).toData() });
  }
}

let running: CommEngine | null = null;

// A bug in the comm thread must not leave the compute thread blocked in Atomics.wait until its backstop
// timeout: report it, close the sockets, and stop.
function onFatal(err: unknown): void {
  reply({ type: 'fatal', error: CommError.from(err, 'closed').toData() });
  running?.closeNow();
  port.close();
}
process.on('uncaughtException', onFatal);
process.on('unhandledRejection', onFatal);

async function main(): Promise<void> {
  let engine: CommEngine;
  try {
    engine = await CommEngine.connect(env, { ...options, warn: options.quiet ? () => undefined : undefined });
  } catch (err) {
    reply({ type: 'connect-failed', error: CommError.from(err).toData() });
    port.close();
    return;
  }
  running = engine;
  // One collective at a time, in the order the compute thread asked: every rank must see the same order.
  let chain: Promise<void> = Promise.resolve();
  port.on('message', (req: CommRequest) => {
    if (req.type === 'slot') {
      slots.set(req.slotId, {
        memory: req.memory,
        kernels: kernelsFor(req.memory, options.forceJsKernels),
        dataOffset: req.dataOffset,
        scratchOffset: req.scratchOffset,
        guarded: false,
      });
      return;
    }
    if (req.type === 'drop-slots') {
      for (const id of req.slotIds) slots.delete(id);
      return;
    }
    if (req.type === 'exit-now') {
      engine.closeNow();
      reply({ type: 'done', id: req.id });
      port.close();
      return;
    }
    chain = chain.then(() => run(engine, req));
  });
  reply({ type: 'ready', rank: engine.rank, worldSize: engine.worldSize, dataEndpoint: engine.dataEndpoint, simd: simdAvailable() && !options.forceJsKernels });
}

void main();
